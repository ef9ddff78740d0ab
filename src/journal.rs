//! The persistence journal: an append-only JSON-lines file (`persistence.journal_path`/
//! `persistence.jsonl`) where the persistence actor spills conversation rows and call records it
//! cannot write to the database (database down or slow, buffer over `persistence.max_buffered_rows`).
//!
//! Sync policy: every append is one `write` of whole lines followed by `fsync` (`sync_data`)
//! before it returns, and the actor forgets rows only after that. So a hard kill loses nothing
//! that was spilled; a kill in the middle of an append leaves at most one torn last line, which
//! replay skips (those rows were still in memory, not yet forgotten, and were lost with the
//! process). Replay reads the whole file; after every entry is in the database the file is
//! truncated (and synced). A failing journal (disk full, permissions) is loud: an error log from
//! the actor and `switchboard_journal_errors_total`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use switchboard_actors::ports::{JournalEntry, PortError, SpillJournal};

/// File name inside `persistence.journal_path`.
pub const JOURNAL_FILE: &str = "persistence.jsonl";

pub struct FileJournal {
    dir: PathBuf,
    file: PathBuf,
    /// One operation at a time (the actor is the only user, but a restarted one may overlap).
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl FileJournal {
    /// A journal in `dir` (created on first append when missing).
    pub fn new(dir: &Path) -> FileJournal {
        FileJournal {
            dir: dir.to_owned(),
            file: dir.join(JOURNAL_FILE),
            lock: Arc::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Entries currently in the file (for tests and tooling).
    pub fn read_entries(path: &Path) -> std::io::Result<Vec<JournalEntry>> {
        read(path)
    }
}

fn error(what: &str, path: &Path, e: impl std::fmt::Display) -> PortError {
    metrics::counter!("switchboard_journal_errors_total").increment(1);
    PortError::unavailable(format!("journal {what} {}: {e}", path.display()))
}

fn read(path: &Path) -> std::io::Result<Vec<JournalEntry>> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let bytes = std::fs::read(path)?;
    let complete = bytes.ends_with(b"\n");
    let lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut entries = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_slice::<JournalEntry>(line) {
            Ok(entry) => entries.push(entry),
            Err(e) if i + 1 == lines.len() && !complete => {
                tracing::warn!(path = %path.display(), error = %e, "skipping the torn last line of the journal (a hard kill during an append)");
            }
            Err(e) => {
                metrics::counter!("switchboard_journal_errors_total").increment(1);
                tracing::error!(path = %path.display(), line = i + 1, error = %e, "skipping an unreadable journal line");
            }
        }
    }
    Ok(entries)
}

#[async_trait]
impl SpillJournal for FileJournal {
    async fn append(&self, entries: &[JournalEntry]) -> Result<(), PortError> {
        let mut buf = Vec::with_capacity(entries.len() * 256);
        for entry in entries {
            serde_json::to_writer(&mut buf, entry).map_err(|e| error("encode", &self.file, e))?;
            buf.push(b'\n');
        }
        let _guard = self.lock.lock().await;
        let (dir, file) = (self.dir.clone(), self.file.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)?;
            f.write_all(&buf)?;
            f.sync_data()
        })
        .await
        .map_err(|e| error("append", &self.file, e))?
        .map_err(|e| error("append", &self.file, e))
    }

    async fn load(&self) -> Result<Vec<JournalEntry>, PortError> {
        let _guard = self.lock.lock().await;
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || read(&file))
            .await
            .map_err(|e| error("read", &self.file, e))?
            .map_err(|e| error("read", &self.file, e))
    }

    async fn clear(&self) -> Result<(), PortError> {
        let _guard = self.lock.lock().await;
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            match std::fs::OpenOptions::new().write(true).open(&file) {
                Ok(f) => {
                    f.set_len(0)?;
                    f.sync_all()
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| error("clear", &self.file, e))?
        .map_err(|e| error("clear", &self.file, e))
    }
}
