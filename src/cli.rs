//! Command line: owns argument parsing, turning every start-up failure into one line on stderr
//! and an exit code (2 for configuration and usage errors, 1 for everything else), and running
//! the chosen subcommand. Subcommands delegate to the library modules; no logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{CONFIG_FILE_ENV, Config};
use crate::storage::Database;

/// Exit code for configuration and usage errors (clap uses the same for bad arguments).
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for failures at run time (database, listener, ...).
pub const EXIT_FAILURE: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Answers Twilio phone calls for AI voice agents."
)]
pub struct Cli {
    /// Configuration file layered over the built-in defaults (environment variables still win).
    #[arg(long, global = true, value_name = "FILE", env = CONFIG_FILE_ENV)]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: HTTP listener, health checks, database (migrated on start).
    Serve,
    /// Apply database migrations and exit. Running it again is a no-op.
    Migrate,
    /// Load demo CRM data: customers, facts, tasks and past calls.
    Seed(SeedArgs),
    /// Everything on the embedded defaults: SQLite, seeded CRM data, the provider stand-ins, the
    /// server and a few simulated calls (returning, new, barge-in, crash), then the dashboard.
    Demo(DemoArgs),
    /// Only the provider stand-ins (OpenAI-compatible chat and speech, Deepgram-compatible
    /// listen) in their own process, for load tests that keep them off the server's CPU and
    /// memory. Point `llm.base_url`, `tts.base_url` and `stt.base_url` at the printed URL.
    Standins(StandinsArgs),
}

#[derive(Debug, Args)]
pub struct StandinsArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub bind: std::net::SocketAddr,
    /// Chat: time to the first token (default: the stand-ins' own, printed at start).
    #[arg(long)]
    pub ttft_ms: Option<u64>,
    /// Chat: between tokens.
    #[arg(long)]
    pub token_ms: Option<u64>,
    /// Speech synthesis: before the audio response starts.
    #[arg(long)]
    pub tts_latency_ms: Option<u64>,
    /// Speech to text: before each final result (after the endpointing silence, which the
    /// server asks for with `stt.endpointing_ms`).
    #[arg(long)]
    pub stt_final_delay_ms: Option<u64>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Stop the server once the demo calls are done (instead of leaving it up).
    #[arg(long)]
    pub exit_after_calls: bool,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// How many customers to create.
    #[arg(long, default_value_t = 1000)]
    pub customers: u64,
    /// Seed of the pseudo-random generator; the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Everything `main` does.
pub fn main() -> ExitCode {
    // ring as the process-wide rustls provider: no aws-lc, no cmake. An error only means a
    // provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut log = config.log.clone();
    if matches!(cli.command, Command::Demo(_)) && log.level == "info" {
        // The demo prints each call's walk itself; the server's info lines would bury it.
        log.level = "warn".into();
    }
    if let Err(error) = crate::telemetry::init(&log) {
        eprintln!("error: {error}");
        return ExitCode::from(EXIT_CONFIG);
    }
    crate::telemetry::log_panics();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(run(cli.command, config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Serve(#[from] crate::http::ServeError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Seed(#[from] crate::seed::SeedError),
    #[error(transparent)]
    Demo(#[from] crate::demo::DemoError),
    #[error("cannot start the stand-ins: {0}")]
    Standins(std::io::Error),
}

/// Runs one subcommand with a loaded configuration.
pub async fn run(command: Command, config: Config) -> Result<(), CliError> {
    match command {
        Command::Serve => {
            crate::http::serve(config, crate::http::shutdown_signal()).await?;
        }
        Command::Migrate => {
            let db = Database::connect_with_config(&config.database).await?;
            let applied = db.migrate().await?;
            let all = db.applied_migrations().await?;
            println!(
                "migrations: {} applied now, {} in total ({} at {})",
                applied.len(),
                all.len(),
                db.backend(),
                db.display_url()
            );
            db.close().await;
        }
        Command::Demo(args) => {
            crate::demo::run(
                config,
                args.exit_after_calls,
                crate::http::shutdown_signal(),
            )
            .await?;
        }
        Command::Standins(args) => {
            use switchboard_providers::standins::{StandinConfig, spawn_standins};
            let ms = std::time::Duration::from_millis;
            let defaults = StandinConfig::default();
            let config = StandinConfig {
                ttft: args.ttft_ms.map_or(defaults.ttft, ms),
                token_delay: args.token_ms.map_or(defaults.token_delay, ms),
                speech_latency: args.tts_latency_ms.map_or(defaults.speech_latency, ms),
                stt_final_delay: args.stt_final_delay_ms.map_or(defaults.stt_final_delay, ms),
                ..defaults
            };
            let shown = format!(
                "ttft {} ms, {} ms per token, speech latency {} ms, final transcript delay {} ms",
                config.ttft.as_millis(),
                config.token_delay.as_millis(),
                config.speech_latency.as_millis(),
                config.stt_final_delay.as_millis()
            );
            let standins = spawn_standins(args.bind, config)
                .await
                .map_err(CliError::Standins)?;
            let url = standins.base_url();
            println!(
                "stand-ins listening: chat, speech and listen at {url}\n({shown})\n\
                 serve with: SWITCHBOARD__LLM__BASE_URL={url} SWITCHBOARD__TTS__BASE_URL={url} SWITCHBOARD__STT__BASE_URL={url}"
            );
            crate::http::shutdown_signal().await;
        }
        Command::Seed(args) => {
            let db = Database::connect_with_config(&config.database).await?;
            db.migrate().await?;
            crate::seed::seed(
                &db,
                &crate::seed::SeedOptions {
                    customers: args.customers,
                    seed: args.seed,
                    progress: true,
                },
            )
            .await?;
            db.close().await;
        }
    }
    Ok(())
}
