//! Wiring: the shared actors under their own supervisor, and the CallSupervisor. The server builds
//! a `Runtime` from ports (real adapters) and tests build one from `testing` (in memory).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, MessagingErr, SupervisionEvent, call_t,
};
use tokio::sync::{mpsc, oneshot};

use crate::cache::{CacheStats, ContextCache, ContextCaches, SharedContextCache};
use crate::crm::{CrmActor, CrmArgs, CrmMsg, CrmStats};
use crate::domain::*;
use crate::handle::{CallHandle, GreetingSource, LiveCalls, Outbound};
use crate::llm::{LlmActor, LlmArgs, LlmMsg, LlmStats};
use crate::machine::MachineConfig;
use crate::names::{NameStats, NamesActor, NamesArgs, NamesMsg};
use crate::persistence::{
    PersistenceActor, PersistenceArgs, PersistenceHandle, PersistenceMsg, PersistenceStats,
};
use crate::ports::*;
use crate::supervisor::{CallSupervisor, StartCallError, SupervisorArgs, SupervisorMsg};

/// A shared actor's address that stays valid across restarts of that actor.
pub struct Shared<M: Send + 'static> {
    current: Arc<RwLock<ActorRef<M>>>,
}

impl<M: Send + 'static> Clone for Shared<M> {
    fn clone(&self) -> Self {
        Shared {
            current: self.current.clone(),
        }
    }
}

impl<M: Send + 'static> Shared<M> {
    fn new(r: ActorRef<M>) -> Self {
        Shared {
            current: Arc::new(RwLock::new(r)),
        }
    }
    pub fn cast(&self, msg: M) -> Result<(), MessagingErr<M>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .cast(msg)
    }
    pub fn actor(&self) -> ActorRef<M> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    fn swap(&self, r: ActorRef<M>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = r;
    }
}

/// Everything a call actor talks to.
pub struct Services {
    pub crm: Shared<CrmMsg>,
    pub llm: Shared<LlmMsg>,
    pub persistence: PersistenceHandle,
    pub names: Shared<NamesMsg>,
    pub calls: LiveCalls,
    pub clock: Arc<dyn Clock>,
    pub machine_config: Arc<MachineConfig>,
    pub speech: Arc<dyn SpeechSynth>,
    pub greeting: GreetingSource,
    /// Writes the call summary at finalizing.
    pub summary_llm: Arc<dyn LlmClient>,
    pub summary_deadline: Duration,
    /// What the model's tools run against.
    pub tools: crate::tools::ToolPorts,
}

/// Limits of the runtime. Defaults suit one small node.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    pub machine: MachineConfig,
    pub prefetch_timeout: Duration,
    pub max_prefetch_in_flight: usize,
    pub max_llm_streams: usize,
    pub batch_max: usize,
    pub flush_interval: Duration,
    /// Buffered rows beyond this are spilled to the journal (when there is one).
    pub max_buffered_rows: usize,
    /// How long the LLM may take to summarize a finished call before the fallback summary is used.
    pub summary_deadline: Duration,
    pub max_restarts: usize,
    pub restart_window: Duration,
    /// How long a customer context stays cached (memory and shared tier).
    pub cache_ttl: Duration,
    /// Most contexts in the memory tier; 0 turns it off.
    pub cache_max_entries: usize,
    /// Longest the shared cache tier may take before a lookup goes on to the store.
    pub shared_cache_timeout: Duration,
    /// How long the LLM may take to pick a name the rules were unsure of.
    pub llm_name_deadline: Duration,
    /// How long one tool call may take before it answers with a timeout error.
    pub tool_deadline: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            machine: MachineConfig::default(),
            prefetch_timeout: Duration::from_millis(2000),
            max_prefetch_in_flight: 512,
            max_llm_streams: 4096,
            batch_max: 500,
            flush_interval: Duration::from_millis(50),
            max_buffered_rows: 10_000,
            summary_deadline: Duration::from_secs(3),
            max_restarts: 3,
            restart_window: Duration::from_secs(60),
            cache_ttl: Duration::from_secs(300),
            cache_max_entries: 100_000,
            shared_cache_timeout: Duration::from_millis(50),
            llm_name_deadline: crate::names::LLM_NAME_DEADLINE,
            tool_deadline: Duration::from_secs(2),
        }
    }
}

/// The adapters the runtime runs on.
pub struct Ports {
    pub crm: Arc<dyn CrmStore>,
    pub conversations: Arc<dyn ConversationStore>,
    pub names: Arc<dyn NameStore>,
    /// Where the `create_task` tool writes.
    pub tasks: Arc<dyn crate::ports::TaskStore>,
    pub llm: Arc<dyn LlmClient>,
    pub speech: Arc<dyn SpeechSynth>,
    /// How the generic greeting is voiced (pre-rendered audio, or Twilio's welcome greeting).
    pub greeting: GreetingSource,
    pub clock: Arc<dyn Clock>,
    /// Where persistence spills rows it cannot keep in memory (`None`: never spill).
    pub journal: Option<Arc<dyn SpillJournal>>,
}

#[derive(Clone)]
pub struct RuntimeStats {
    pub crm: Arc<CrmStats>,
    pub llm: Arc<LlmStats>,
    pub persistence: Arc<PersistenceStats>,
    pub cache: Arc<CacheStats>,
    pub names: Arc<NameStats>,
}

#[derive(Debug, thiserror::Error)]
#[error("runtime failed to start: {0}")]
pub struct RuntimeError(String);

pub struct Runtime {
    pub calls: LiveCalls,
    pub services: Arc<Services>,
    pub stats: RuntimeStats,
    /// The customer-context cache (memory tier, and the shared tier when configured).
    pub caches: ContextCaches,
    supervisor: ActorRef<SupervisorMsg>,
    shared_supervisor: ActorRef<()>,
    persistence_args: PersistenceArgs,
}

impl Runtime {
    pub async fn start(config: RuntimeConfig, ports: Ports) -> Result<Runtime, RuntimeError> {
        Self::start_with_shared_cache(config, ports, None).await
    }

    /// [`Runtime::start`] with a shared (fleet-wide) context cache tier, e.g. Redis.
    pub async fn start_with_shared_cache(
        config: RuntimeConfig,
        ports: Ports,
        shared_cache: Option<Arc<dyn SharedContextCache>>,
    ) -> Result<Runtime, RuntimeError> {
        let calls = LiveCalls::new();
        let caches = ContextCaches {
            memory: Arc::new(ContextCache::new(
                config.cache_ttl,
                config.cache_max_entries,
                ports.clock.clone(),
            )),
            shared: shared_cache,
            stats: Arc::new(CacheStats::default()),
        };
        let stats = RuntimeStats {
            crm: Arc::new(CrmStats::default()),
            llm: Arc::new(LlmStats::default()),
            persistence: Arc::new(PersistenceStats::default()),
            cache: caches.stats.clone(),
            names: Arc::new(NameStats::default()),
        };
        let persistence_args = PersistenceArgs {
            store: ports.conversations.clone(),
            calls: calls.clone(),
            batch_max: config.batch_max.max(1),
            flush_interval: config.flush_interval,
            max_buffered: config.max_buffered_rows.max(1),
            journal: ports.journal.clone(),
            pending: Arc::new(std::sync::Mutex::new(
                crate::persistence::Pending::replaying(),
            )),
            stats: stats.persistence.clone(),
        };
        let children = vec![
            SharedChild::Crm(CrmArgs {
                store: ports.crm.clone(),
                calls: calls.clone(),
                timeout: config.prefetch_timeout,
                max_in_flight: config.max_prefetch_in_flight.max(1),
                in_flight: Default::default(),
                stats: stats.crm.clone(),
                caches: caches.clone(),
                shared_timeout: config.shared_cache_timeout,
            }),
            SharedChild::Llm(LlmArgs {
                client: ports.llm.clone(),
                calls: calls.clone(),
                max_streams: config.max_llm_streams.max(1),
                streams: Arc::new(DashMap::new()),
                stats: stats.llm.clone(),
            }),
            SharedChild::Persistence(persistence_args.clone()),
            SharedChild::Names(NamesArgs {
                store: ports.names.clone(),
                calls: calls.clone(),
                llm: Some(ports.llm.clone()),
                llm_deadline: config.llm_name_deadline,
                caches: Some(caches.clone()),
                stats: stats.names.clone(),
                store_retry_base: crate::names::STORE_RETRY_BASE,
            }),
        ];
        let (refs_tx, refs_rx) = oneshot::channel();
        let (shared_supervisor, _) = Actor::spawn(None, SharedSupervisor, (children, refs_tx))
            .await
            .map_err(|e| RuntimeError(e.to_string()))?;
        let refs = refs_rx
            .await
            .map_err(|_| RuntimeError("shared actors did not start".into()))?;
        let services = Arc::new(Services {
            crm: refs.crm,
            llm: refs.llm,
            persistence: PersistenceHandle {
                pending: persistence_args.pending.clone(),
                actor: refs.persistence,
                batch_max: persistence_args.batch_max,
                max_buffered: persistence_args.max_buffered,
                summarizing: Default::default(),
            },
            names: refs.names,
            calls: calls.clone(),
            clock: ports.clock.clone(),
            machine_config: Arc::new(config.machine.clone()),
            speech: ports.speech.clone(),
            greeting: ports.greeting.clone(),
            summary_llm: ports.llm.clone(),
            summary_deadline: config.summary_deadline,
            tools: crate::tools::ToolPorts {
                crm: ports.crm.clone(),
                tasks: ports.tasks.clone(),
                deadline: config.tool_deadline,
            },
        });
        let (supervisor, _) = Actor::spawn(
            None,
            CallSupervisor,
            SupervisorArgs {
                services: services.clone(),
                max_restarts: config.max_restarts,
                restart_window: config.restart_window,
            },
        )
        .await
        .map_err(|e| RuntimeError(e.to_string()))?;
        Ok(Runtime {
            calls,
            services,
            stats,
            caches,
            supervisor,
            shared_supervisor,
            persistence_args,
        })
    }

    /// Start a call: a call actor is spawned under the supervisor and gets `CallStarted`. The
    /// returned handle is where the socket reader sends every later event.
    pub async fn start_call(
        &self,
        start: CallStart,
        outbound: mpsc::Sender<Outbound>,
    ) -> Result<Arc<CallHandle>, StartCallError> {
        let result = call_t!(
            self.supervisor,
            |reply| SupervisorMsg::StartCall {
                start: Box::new(start),
                outbound,
                reply
            },
            5_000
        );
        result.map_err(|e| StartCallError::Spawn(e.to_string()))?
    }

    /// Drop a caller's cached customer context from every cache tier, so the next call from that
    /// phone reads the store. The runtime does this itself when a name is captured and when a
    /// call ends; call it whenever something else changes what the context holds (a task was
    /// created, completed or edited, a fact was added, the customer was edited or deleted).
    pub async fn invalidate_context(&self, phone_e164: &str) {
        self.caches.invalidate(phone_e164).await;
    }

    /// Chaos: make a live call's actor fail for real. False when no such call is live.
    pub async fn crash_call(&self, call_sid: &CallSid) -> bool {
        call_t!(
            self.supervisor,
            |reply| SupervisorMsg::Crash {
                call_sid: call_sid.clone(),
                reply
            },
            5_000
        )
        .unwrap_or(false)
    }

    /// Write everything pending now (first waiting, a little longer than the summary deadline,
    /// for call records still being summarized); returns the rows and records still unwritten.
    pub async fn flush(&self) -> usize {
        let patience =
            tokio::time::Instant::now() + self.services.summary_deadline + Duration::from_secs(1);
        while self.services.persistence.summarizing() > 0 && tokio::time::Instant::now() < patience
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = call_t!(
            self.services.persistence.actor(),
            PersistenceMsg::Flush,
            30_000
        )
        .unwrap_or_else(|_| self.persistence_args.backlog());
        left + self.services.persistence.summarizing()
    }

    /// Rows and call records waiting to be written.
    pub fn persistence_backlog(&self) -> usize {
        self.persistence_args.backlog()
    }

    /// The shared actors' current addresses (tests use them to crash one).
    pub fn shared_actor_cells(&self) -> Vec<ActorCell> {
        vec![
            self.services.crm.actor().get_cell(),
            self.services.llm.actor().get_cell(),
            self.services.persistence.actor().get_cell(),
            self.services.names.actor().get_cell(),
        ]
    }

    /// Graceful shutdown: flush persistence, then stop the actors.
    pub async fn shutdown(self) -> usize {
        let left = self.flush().await;
        self.supervisor.stop(Some("shutdown".into()));
        self.shared_supervisor.stop(Some("shutdown".into()));
        left
    }
}

// === the shared actors' supervisor ===

#[derive(Clone)]
enum SharedChild {
    Crm(CrmArgs),
    Llm(LlmArgs),
    Persistence(PersistenceArgs),
    Names(NamesArgs),
}

struct SharedRefs {
    crm: Shared<CrmMsg>,
    llm: Shared<LlmMsg>,
    persistence: Shared<PersistenceMsg>,
    names: Shared<NamesMsg>,
}

struct SharedSupervisor;

struct SharedSupervisorState {
    children: Vec<(ActorId, SharedChild)>,
    refs: SharedRefs,
}

async fn spawn_child(
    child: &SharedChild,
    sup: ActorCell,
) -> Result<(ActorCell, ActorId), ractor::SpawnErr> {
    let cell = match child {
        SharedChild::Crm(a) => Actor::spawn_linked(None, CrmActor, a.clone(), sup)
            .await?
            .0
            .get_cell(),
        SharedChild::Llm(a) => Actor::spawn_linked(None, LlmActor, a.clone(), sup)
            .await?
            .0
            .get_cell(),
        SharedChild::Persistence(a) => Actor::spawn_linked(None, PersistenceActor, a.clone(), sup)
            .await?
            .0
            .get_cell(),
        SharedChild::Names(a) => Actor::spawn_linked(None, NamesActor, a.clone(), sup)
            .await?
            .0
            .get_cell(),
    };
    let id = cell.get_id();
    Ok((cell, id))
}

impl Actor for SharedSupervisor {
    type Msg = ();
    type State = SharedSupervisorState;
    type Arguments = (Vec<SharedChild>, oneshot::Sender<SharedRefs>);

    async fn pre_start(
        &self,
        me: ActorRef<()>,
        (specs, refs_tx): Self::Arguments,
    ) -> Result<SharedSupervisorState, ActorProcessingErr> {
        let mut children = Vec::new();
        let mut crm = None;
        let mut llm = None;
        let mut persistence = None;
        let mut names = None;
        for spec in specs {
            let (cell, id) = spawn_child(&spec, me.get_cell()).await?;
            match &spec {
                SharedChild::Crm(_) => crm = Some(Shared::new(cell.into())),
                SharedChild::Llm(_) => llm = Some(Shared::new(cell.into())),
                SharedChild::Persistence(_) => persistence = Some(Shared::new(cell.into())),
                SharedChild::Names(_) => names = Some(Shared::new(cell.into())),
            }
            children.push((id, spec));
        }
        let (Some(crm), Some(llm), Some(persistence), Some(names)) = (crm, llm, persistence, names)
        else {
            return Err("a shared actor is missing".into());
        };
        let refs = SharedRefs {
            crm,
            llm,
            persistence,
            names,
        };
        let copy = SharedRefs {
            crm: refs.crm.clone(),
            llm: refs.llm.clone(),
            persistence: refs.persistence.clone(),
            names: refs.names.clone(),
        };
        let _ = refs_tx.send(copy);
        Ok(SharedSupervisorState { children, refs })
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<()>,
        evt: SupervisionEvent,
        st: &mut SharedSupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // A shared actor only ever stops with the whole runtime, so a failure or an unexpected
        // termination both mean: start a new one with the same arguments.
        let (cell, why) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "terminated".into()))
            }
            _ => return Ok(()),
        };
        {
            let Some(pos) = st.children.iter().position(|(id, _)| *id == cell.get_id()) else {
                return Ok(());
            };
            let (_, spec) = st.children.remove(pos);
            tracing::error!(reason = %why, "shared actor stopped; restarting it");
            let (cell, id) = spawn_child(&spec, me.get_cell()).await?;
            match &spec {
                SharedChild::Crm(_) => st.refs.crm.swap(cell.into()),
                SharedChild::Llm(_) => st.refs.llm.swap(cell.into()),
                SharedChild::Persistence(_) => st.refs.persistence.swap(cell.into()),
                SharedChild::Names(_) => st.refs.names.swap(cell.into()),
            }
            st.children.push((id, spec));
        }
        Ok(())
    }
}
