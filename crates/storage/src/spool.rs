//! [`WebhookSpool`] in a directory: one file per webhook request, kept while the database
//! refuses even the journal.
//!
//! A file is written under a temporary name, synced, renamed to `<webhook id>.webhook` and
//! the directory synced, so a file under its final name is complete and survives a crash or a
//! power cut. Webhook ids are UUIDv7-based, so their names sort by arrival. Several
//! instances may share a directory: a request moved twice into the database is deduplicated
//! like any retry of Meta's.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use insta_router_domain::WebhookId;
use insta_router_ports::{JournalEntry, JournalStatus, RepoError, WebhookSpool};

use crate::time::{from_micros, to_micros};

/// The first line of every spool file.
const MAGIC: &str = "insta-router spool v1";
/// The spool files' extension.
const EXTENSION: &str = "webhook";

/// A spool directory.
#[derive(Debug, Clone)]
pub struct DirSpool {
    dir: PathBuf,
}

impl DirSpool {
    /// Opens the spool in `dir`, creating the directory when it is missing.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created or is not writable.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        // Fails now, at start-up, rather than during an outage.
        let probe = dir.join(".probe");
        File::create(&probe)?;
        fs::remove_file(&probe)?;
        Ok(Self { dir })
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &WebhookId) -> PathBuf {
        self.dir.join(format!("{id}.{EXTENSION}"))
    }

    /// The ids of the spooled files, oldest first.
    fn ids(&self) -> io::Result<Vec<WebhookId>> {
        let mut ids = Vec::new();
        for dirent in fs::read_dir(&self.dir)? {
            let name = dirent?.file_name();
            let Some(stem) = name
                .to_str()
                .and_then(|n| n.strip_suffix(&format!(".{EXTENSION}")))
            else {
                continue;
            };
            if let Ok(id) = WebhookId::parse("file", stem) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn write(&self, entry: &JournalEntry) -> io::Result<()> {
        let target = self.path(&entry.id);
        let temporary = self.dir.join(format!(".{}.tmp", entry.id));
        let mut file = File::create(&temporary)?;
        let written = (|| {
            write!(file, "{MAGIC}\n{}\n", to_micros(entry.received_at))?;
            file.write_all(&entry.body)?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temporary);
            return Err(e);
        }
        fs::rename(&temporary, &target)?;
        File::open(&self.dir)?.sync_all()
    }

    fn read(&self, id: &WebhookId) -> io::Result<Option<JournalEntry>> {
        let bytes = match fs::read(self.path(id)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let corrupt = || io::Error::new(io::ErrorKind::InvalidData, format!("spool file {id}"));
        let mut parts = bytes.splitn(3, |b| *b == b'\n');
        let (Some(magic), Some(micros), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(corrupt());
        };
        if magic != MAGIC.as_bytes() {
            return Err(corrupt());
        }
        let received_at = std::str::from_utf8(micros)
            .ok()
            .and_then(|m| m.parse::<i64>().ok())
            .and_then(|m| from_micros(m).ok())
            .ok_or_else(corrupt)?;
        Ok(Some(JournalEntry {
            id: id.clone(),
            received_at,
            body: body.to_vec(),
            status: JournalStatus::Spooled,
            error: None,
            events: 0,
        }))
    }
}

fn unavailable(e: io::Error) -> RepoError {
    RepoError::Unavailable(Box::new(e))
}

/// Runs file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, RepoError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RepoError::Unavailable(Box::new(e)))?
        .map_err(unavailable)
}

#[async_trait]
impl WebhookSpool for DirSpool {
    async fn put(&self, entry: &JournalEntry) -> Result<(), RepoError> {
        let spool = self.clone();
        let entry = entry.clone();
        blocking(move || spool.write(&entry)).await
    }

    async fn list(&self, limit: usize) -> Result<Vec<JournalEntry>, RepoError> {
        let spool = self.clone();
        blocking(move || {
            let mut entries = Vec::new();
            for id in spool.ids()?.into_iter().take(limit) {
                match spool.read(&id) {
                    Ok(Some(entry)) => entries.push(entry),
                    Ok(None) => {}
                    // Left where it is, for an operator to look at; the others go on.
                    Err(e) => tracing::error!(error = %e, "unreadable spool file"),
                }
            }
            Ok(entries)
        })
        .await
    }

    async fn get(&self, id: &WebhookId) -> Result<Option<JournalEntry>, RepoError> {
        let spool = self.clone();
        let id = id.clone();
        blocking(move || spool.read(&id)).await
    }

    async fn count(&self) -> Result<usize, RepoError> {
        let spool = self.clone();
        blocking(move || spool.ids().map(|ids| ids.len())).await
    }

    async fn remove(&self, id: &WebhookId) -> Result<(), RepoError> {
        let path = self.path(id);
        blocking(move || match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
    }
}
