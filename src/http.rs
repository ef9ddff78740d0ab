//! HTTP: owns the one listener, the axum router, the shared [`AppState`], the background database
//! connector and graceful shutdown. Feature modules (Twilio edge, operator API) add their routes
//! in [`router`]; they never bind sockets of their own.
//!
//! The server starts answering at once, before the database is reachable: `/healthz` says the
//! process is alive, `/readyz` says whether calls can be served and, if not, why.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::storage::{Database, NotReady};

/// First and longest pause between database connection attempts.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);

// === AppState ===

/// What every handler can reach. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AppState {
    inner: Arc<AppStateInner>,
}

struct AppStateInner {
    config: Config,
    database: RwLock<DatabaseStatus>,
    calls: crate::calls::CallService,
    call_totals: Arc<crate::operator::CallTotals>,
    /// The operator event stream's shared feed (see [`crate::operator::event_feed`]).
    event_feed: std::sync::OnceLock<tokio::sync::broadcast::Sender<bytes::Bytes>>,
}

/// Where the database connection stands.
#[derive(Debug, Clone)]
pub enum DatabaseStatus {
    /// Not connected (or not migrated) yet; `last_error` says why the last attempt failed.
    Connecting {
        attempts: u32,
        last_error: Option<String>,
    },
    /// Connected and migrated.
    Connected(Database),
}

impl AppState {
    /// State whose database is not connected yet (see [`Server::run`]).
    pub fn new(config: Config, calls: crate::calls::CallService) -> AppState {
        AppState {
            inner: Arc::new(AppStateInner {
                config,
                calls,
                call_totals: Arc::default(),
                event_feed: std::sync::OnceLock::new(),
                database: RwLock::new(DatabaseStatus::Connecting {
                    attempts: 0,
                    last_error: None,
                }),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The database, once connected and migrated.
    pub fn database(&self) -> Option<Database> {
        match &*self.read_status() {
            DatabaseStatus::Connected(db) => Some(db.clone()),
            DatabaseStatus::Connecting { .. } => None,
        }
    }

    pub fn database_status(&self) -> DatabaseStatus {
        self.read_status().clone()
    }

    pub fn set_database(&self, database: Database) {
        self.inner.calls.db.set(database.clone());
        *self.write_status() = DatabaseStatus::Connected(database);
    }

    /// The call runtime: live calls, the supervisor and the shared actors.
    pub fn runtime(&self) -> &switchboard_actors::Runtime {
        &self.inner.calls.runtime
    }

    pub fn calls(&self) -> &crate::calls::CallService {
        &self.inner.calls
    }

    /// Calls started and ended, and restarts, since this process started (see
    /// [`crate::operator::observe_calls`]).
    pub fn call_totals(&self) -> &Arc<crate::operator::CallTotals> {
        &self.inner.call_totals
    }

    /// A receiver of the operator event feed, started by `start` on first use.
    pub fn event_feed(
        &self,
        start: impl FnOnce() -> tokio::sync::broadcast::Sender<bytes::Bytes>,
    ) -> tokio::sync::broadcast::Receiver<bytes::Bytes> {
        self.inner.event_feed.get_or_init(start).subscribe()
    }

    /// Region for caller ids written without a country code (`twilio.default_region`).
    pub fn phone_region(&self) -> switchboard_actors::phone::Region {
        self.inner.calls.region
    }

    fn record_connect_failure(&self, attempts: u32, error: String) {
        *self.write_status() = DatabaseStatus::Connecting {
            attempts,
            last_error: Some(error),
        };
    }

    /// Ready when the database answers and all migrations are applied.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        match self.database_status() {
            DatabaseStatus::Connected(db) => db.readiness().await,
            DatabaseStatus::Connecting {
                last_error: Some(error),
                attempts,
            } => Err(NotReady(format!(
                "database unreachable: {error} (attempt {attempts}, retrying)"
            ))),
            DatabaseStatus::Connecting {
                last_error: None, ..
            } => Err(NotReady(
                "database connection in progress (connecting and applying migrations)".to_owned(),
            )),
        }
    }

    // A poisoned lock only means a writer panicked mid-assignment of a plain enum; the value
    // is still whole, so keep serving it.
    fn read_status(&self) -> std::sync::RwLockReadGuard<'_, DatabaseStatus> {
        self.inner
            .database
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_status(&self) -> std::sync::RwLockWriteGuard<'_, DatabaseStatus> {
        self.inner
            .database
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// === Router ===

/// Every route of the one listener.
pub fn router(state: AppState) -> Router {
    use crate::{edge, operator};
    use axum::routing::post;
    // Guarded by `operator.token` (`/` and `/metrics` per `operator.protect_dashboard` and
    // `operator.protect_metrics`).
    let operator_api = Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/metrics", get(metrics))
        .route("/api/v1/stats", get(operator::stats))
        .route("/api/v1/calls", get(operator::list_calls))
        .route("/api/v1/calls/events", get(operator::call_events))
        .route("/api/v1/calls/{sid}", get(operator::call_detail))
        .route("/api/v1/calls/{sid}/hangup", post(operator::hangup))
        .route("/api/v1/calls/{sid}/crash", post(operator::crash))
        .route(
            "/api/v1/customers/cache/invalidate",
            post(operator::invalidate_context),
        )
        .route(
            "/api/v1/customers/{id}/conversations",
            get(crate::history::conversations),
        )
        .route(
            "/api/v1/customers/{id}",
            axum::routing::delete(crate::history::delete_customer),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            operator::require_operator,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/twilio/voice", post(edge::webhook::voice))
        .route("/twilio/stream-status", post(edge::webhook::stream_status))
        .route("/twilio/media", get(edge::media::media_ws))
        .route("/twilio/relay", get(edge::relay::relay_ws))
        .merge(operator_api)
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// One debug line per request (method, path and query, status, time). Phone numbers in URLs are
/// masked by the log writer (`telemetry`), like everywhere else.
async fn log_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let uri = request.uri().clone();
    let started = tokio::time::Instant::now();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        %uri,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    response
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::render(&state),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.readiness().await {
        Ok(()) => {
            let backend = state.database().map(|db| db.backend().as_str());
            (
                StatusCode::OK,
                Json(json!({ "ready": true, "backend": backend })),
            )
        }
        Err(NotReady(reason)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": reason })),
        ),
    }
}

// === Server ===

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "cannot listen on {addr}: {source}; is another process using the port? change server.bind"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the HTTP server stopped with an error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Calls(#[from] crate::calls::CallServiceError),
}

/// A bound listener, not yet serving. Binding first lets callers (tests) learn the real port
/// when `server.bind` asks for port 0.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    local_addr: SocketAddr,
}

impl Server {
    /// Binds `server.bind`. For SQLite, also creates the database folder now, so a folder that
    /// cannot be created or written stops start-up with a clear error instead of retrying.
    pub async fn bind(config: Config) -> Result<Server, ServeError> {
        if crate::storage::Backend::from_url(&config.database.url)?
            == crate::storage::Backend::Sqlite
        {
            crate::storage::prepare_sqlite(&config.database.url)?;
        }
        let addr = config.server.bind;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let local_addr = listener.local_addr()?;
        if config.twilio.auth_token.is_set() && !config.twilio.validate_signatures {
            tracing::warn!(
                "twilio.validate_signatures = false: Twilio requests are NOT verified; for local development only"
            );
        } else if !config.twilio.auth_token.is_set() {
            tracing::warn!(
                "twilio.auth_token is not set: Twilio request signatures are NOT verified; for local development only"
            );
        }
        crate::metrics::handle();
        let calls = crate::calls::start(&config).await?;
        Ok(Server {
            listener,
            state: AppState::new(config, calls),
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish and closes the
    /// database. The database is connected (with retries) and migrated in the background.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server {
            listener,
            state,
            local_addr,
        } = self;
        tracing::info!(%local_addr, "listening");
        let connector = tokio::spawn(connect_until_ready(state.clone()));
        let observer = tokio::spawn(crate::operator::observe_calls(
            state.runtime().calls.clone(),
            state.call_totals().clone(),
        ));
        serve_http1(listener, router(state.clone()), shutdown).await;
        connector.abort();
        observer.abort();
        // Every conversation row still buffered is written before the database closes.
        let unwritten = state.runtime().flush().await;
        if unwritten > 0 {
            tracing::error!(unwritten, "rows could not be written before shutdown");
        }
        if let Some(db) = state.database() {
            db.close().await;
        }
        tracing::info!("stopped");
        // Spans still batched for the OpenTelemetry collector leave now (a blocking export).
        let _ = tokio::task::spawn_blocking(crate::telemetry::flush).await;
        Ok(())
    }
}

/// Accepts connections and serves `app` on each over HTTP/1.1 (with upgrades) until `shutdown`
/// completes; then stops accepting, lets every connection finish the request it is on, and
/// returns once they have closed. Upgraded sockets (the Twilio WebSockets) are no longer HTTP
/// connections and are not waited for: their calls end on their own.
///
/// hyper's own HTTP/1 builder instead of `axum::serve` (hyper-util's auto builder, which sniffs
/// for HTTP/2 through a `Rewind` wrapper): an upgraded socket can then be taken back as the
/// `TcpStream` itself and split without a lock (`edge::socket::connect`). Twilio speaks
/// HTTP/1.1 for webhooks and WebSocket upgrades alike.
async fn serve_http1(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // Connections watch `stop` to begin their graceful shutdown; each holds a `done` receiver
    // until it has closed.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let (done_tx, done_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small WebSocket frames (marks, text tokens, 20 ms of audio) must leave at once: with
        // Nagle's algorithm a frame can wait ~40 ms for the peer's delayed ACK.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
            drop(done);
        });
    }
    drop(listener);
    drop(stop_rx);
    drop(done_rx);
    // A connection that has not started its graceful shutdown yet sees the value change.
    let _ = stop_tx.send(());
    done_tx.closed().await;
}

/// An `accept` error: the peer gave up before we took the connection (try the next one at
/// once), or the process is out of descriptors or memory (wait a little, as `axum::serve`
/// does, instead of spinning).
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Binds and serves until `shutdown` completes.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    Server::bind(config).await?.run(shutdown).await
}

/// Connects and migrates, retrying with capped exponential backoff until it succeeds.
async fn connect_until_ready(state: AppState) {
    let config = state.config().database.clone();
    let mut attempts: u32 = 0;
    loop {
        attempts = attempts.saturating_add(1);
        let outcome = async {
            let db = Database::connect_with_config(&config).await?;
            let applied = db.migrate().await?;
            Ok::<_, crate::storage::StorageError>((db, applied))
        }
        .await;
        match outcome {
            Ok((db, applied)) => {
                tracing::info!(
                    backend = %db.backend(),
                    url = db.display_url(),
                    migrations_applied = applied.len(),
                    "database ready"
                );
                state.set_database(db);
                return;
            }
            Err(error) => {
                let delay = switchboard_actors::backoff::delay(RETRY_FIRST, attempts, RETRY_MAX);
                tracing::warn!(
                    %error,
                    attempt = attempts,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "database not ready"
                );
                state.record_connect_failure(attempts, error.to_string());
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
