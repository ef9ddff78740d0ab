//! Storage: owns the connection pool, the embedded migrations and the readiness check, for both
//! backends through one code path (sqlx's `Any` driver). SQLite is the embedded default; a
//! `postgres://` URL selects PostgreSQL. Queries use `$1, $2, ...` placeholders, numbered in order
//! of first appearance, which both backends accept. Every time is `BIGINT` milliseconds since the
//! Unix epoch (UTC) in columns named `*_at_ms`, so both backends read times back identically.
//!
//! This module holds no business rules: CRM queries and the persistence adapters build on it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;

use crate::config::{DatabaseConfig, redact_url};

/// Migrations for the SQLite flavour of the schema (`migrations/sqlite`).
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
/// Migrations for the PostgreSQL flavour of the schema (`migrations/postgres`).
pub static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Pragmas applied to every new SQLite connection. WAL lets readers run beside the writer;
/// foreign keys are off by default in SQLite and the schema relies on them for cascades.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode = WAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 5000",
    "PRAGMA synchronous = NORMAL",
];

/// How long the readiness check may take before it reports the database as unreachable.
const READINESS_TIMEOUT: Duration = Duration::from_secs(3);

/// Which database a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Backend, StorageError> {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StorageError::UnsupportedUrl {
                url: redact_url(url),
            })
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// The embedded migrations for this backend.
    pub fn migrator(self) -> &'static Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub max_connections: u32,
    /// Longest one connection attempt (and one pool checkout) may take.
    pub connect_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            max_connections: 8,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl From<&DatabaseConfig> for ConnectOptions {
    fn from(config: &DatabaseConfig) -> Self {
        ConnectOptions {
            max_connections: config.max_connections,
            connect_timeout: config.connect_timeout(),
        }
    }
}

/// Errors that tell the operator what went wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database.url must start with sqlite:, postgres:// or postgresql://, got \"{url}\"")]
    UnsupportedUrl { url: String },
    #[error(
        "cannot create the database folder {path}: {source}; create it or point database.url elsewhere"
    )]
    CreateFolder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the database folder {path} is not writable: {source}; fix its permissions or point database.url elsewhere"
    )]
    NotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot connect to the database at {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("applying migrations to {url} failed: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// Why the database is not ready to serve calls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotReady(pub String);

/// A pooled connection to SQLite or PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// The URL with any password masked, for logs and errors.
    display_url: Arc<str>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .field("url", &self.display_url)
            .finish()
    }
}

impl Database {
    /// Connects to `url`. For SQLite the file's folder is created if missing and the file is
    /// created on first use. One attempt: callers that should wait for the database retry.
    pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Database, StorageError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let display_url: Arc<str> = redact_url(url).into();
        let connect_url = match backend {
            Backend::Sqlite => prepare_sqlite(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.connect_timeout);
        if backend == Backend::Sqlite {
            pool_options = pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    for pragma in SQLITE_PRAGMAS {
                        sqlx::query(*pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool =
            pool_options
                .connect(&connect_url)
                .await
                .map_err(|source| StorageError::Connect {
                    url: display_url.to_string(),
                    source,
                })?;
        Ok(Database {
            pool,
            backend,
            display_url,
        })
    }

    /// Connects with the `[database]` settings.
    pub async fn connect_with_config(config: &DatabaseConfig) -> Result<Database, StorageError> {
        Database::connect(&config.url, &ConnectOptions::from(config)).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The URL with any password masked.
    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    /// Applies the embedded migrations that are not applied yet; a no-op when all are.
    /// Returns the versions applied by this call.
    pub async fn migrate(&self) -> Result<Vec<i64>, StorageError> {
        let before = self.applied_migrations().await.unwrap_or_default();
        self.backend
            .migrator()
            .run(&self.pool)
            .await
            .map_err(|source| StorageError::Migrate {
                url: self.display_url.to_string(),
                source,
            })?;
        let after = self.applied_migrations().await?;
        Ok(after.into_iter().filter(|v| !before.contains(v)).collect())
    }

    /// Versions recorded as successfully applied, ascending. Errors if the migrations table is
    /// missing (nothing applied yet) or the database is unreachable.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>, StorageError> {
        let versions: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(versions)
    }

    /// Round-trips a trivial query.
    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Ready means: the database answers, and every embedded migration is applied.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        match tokio::time::timeout(READINESS_TIMEOUT, self.check_ready()).await {
            Ok(result) => result,
            Err(_) => Err(NotReady(format!(
                "database unreachable: no answer from {} within {}s",
                self.display_url,
                READINESS_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn check_ready(&self) -> Result<(), NotReady> {
        self.ping()
            .await
            .map_err(|e| NotReady(format!("database unreachable: {e}")))?;
        let applied = self.applied_migrations().await.map_err(|_| {
            NotReady("migrations not applied: run `switchboard migrate`".to_owned())
        })?;
        let pending: Vec<String> = self
            .backend
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
            .map(|m| m.version.to_string())
            .collect();
        if pending.is_empty() {
            Ok(())
        } else {
            Err(NotReady(format!(
                "migrations pending: {}; run `switchboard migrate`",
                pending.join(", ")
            )))
        }
    }

    /// Waits for in-flight queries and closes every connection (checkpoints SQLite's WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Milliseconds since the Unix epoch, the unit of every `*_at_ms` column.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The file a `sqlite:` URL names, or `None` for in-memory databases.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || path.starts_with("file:") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Makes sure a SQLite database can be created: creates its folder if missing and checks the
/// folder is writable (WAL needs to create side files next to the database). Returns the URL
/// to connect with, asking SQLite to create the file if missing.
pub fn prepare_sqlite(url: &str) -> Result<String, StorageError> {
    if let Some(path) = sqlite_path(url) {
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&folder).map_err(|source| StorageError::CreateFolder {
            path: folder.clone(),
            source,
        })?;
        check_writable(&folder)?;
    }
    let has_mode = url
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with("mode=")));
    Ok(if has_mode || sqlite_path(url).is_none() {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

fn check_writable(folder: &Path) -> Result<(), StorageError> {
    let probe = folder.join(format!(".switchboard-write-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .map_err(|source| StorageError::NotWritable {
            path: folder.to_owned(),
            source,
        })?;
    // Best effort: the probe is empty and harmless if it stays.
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_url() {
        assert_eq!(
            Backend::from_url("sqlite://data/x.db").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert!(Backend::from_url("mysql://h/db").is_err());
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite://data/switchboard.db"),
            Some(PathBuf::from("data/switchboard.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:///tmp/x.db?mode=rwc"),
            Some(PathBuf::from("/tmp/x.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }
}
