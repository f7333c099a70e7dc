//! Online backups of a SQLite database: `VACUUM INTO` a new file beside the target, opened
//! again and checked before it takes the target's name.
//!
//! `VACUUM INTO` reads the whole database inside one read transaction, so the copy is the
//! database as it was at one moment, whatever the server writes meanwhile (WAL readers never
//! block the writer). SQLite's page-by-page backup API starts over whenever another
//! connection writes, which under steady webhooks would never end.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

/// What a finished backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// Where it was written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The migrations applied in it, oldest first.
    pub migrations: Vec<String>,
    /// Rows per table (migrations' bookkeeping table aside), by table name.
    pub rows: Vec<(String, u64)>,
    /// How long the copy and its check took.
    pub took: Duration,
}

/// Why a backup was not made.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The target exists; a backup never overwrites a file.
    #[error("{} exists; choose another file name or remove it first", .0.display())]
    TargetExists(PathBuf),
    /// The target's directory is missing.
    #[error("the directory {} does not exist; create it first", .0.display())]
    NoDirectory(PathBuf),
    /// The database to copy is not there.
    #[error("there is no database at {}; check DATABASE_URL", .0.display())]
    NoSource(PathBuf),
    /// SQLite refused (I/O, permission, full disk); nothing was left behind.
    #[error("{what}: {source}")]
    Sqlite {
        /// The step that failed.
        what: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The copy was made but does not read back as a sound database; it was removed.
    #[error("the copy failed its check ({0}); it was removed")]
    Corrupt(String),
    /// Moving the checked copy to its name, or syncing it, failed.
    #[error("cannot finish {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Copies the SQLite database at `source` to `target` while other processes keep writing
/// to it, checks the copy (`PRAGMA quick_check`, the migrations table, every table counted)
/// and syncs it to disk. The copy is written as `target.partial` first and renamed only
/// once checked, so `target` is either absent or a whole, checked backup.
///
/// Blocking: run it on a thread that may block.
///
/// # Errors
///
/// [`BackupError`]: the target exists, a directory is missing, SQLite fails, or the copy
/// does not check out.
pub fn backup_sqlite(source: &Path, target: &Path) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    if target.exists() {
        return Err(BackupError::TargetExists(target.to_owned()));
    }
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(BackupError::NoDirectory(dir));
    }
    if !source.is_file() {
        return Err(BackupError::NoSource(source.to_owned()));
    }
    let mut partial = target.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    // A partial file is what an interrupted backup left: never anything else's.
    let _ = std::fs::remove_file(&partial);
    let result = copy_and_check(source, &partial).and_then(|(migrations, rows)| {
        sync(&partial)?;
        std::fs::rename(&partial, target).map_err(|source| BackupError::Io {
            path: target.to_owned(),
            source,
        })?;
        sync_dir(&dir)?;
        Ok((migrations, rows))
    });
    let (migrations, rows) = match result {
        Ok(found) => found,
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            return Err(err);
        }
    };
    let bytes = std::fs::metadata(target).map_or(0, |m| m.len());
    Ok(BackupReport {
        path: target.to_owned(),
        bytes,
        migrations,
        rows,
        took: started.elapsed(),
    })
}

type Contents = (Vec<String>, Vec<(String, u64)>);

fn copy_and_check(source: &Path, partial: &Path) -> Result<Contents, BackupError> {
    let sqlite = |what: &str| {
        let what = what.to_owned();
        move |source| BackupError::Sqlite { what, source }
    };
    {
        // Read-only: this process never checkpoints or changes the server's database.
        let from = Connection::open_with_flags(
            source,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite(&format!("cannot open {}", source.display())))?;
        from.busy_timeout(Duration::from_secs(30))
            .map_err(sqlite("cannot set a busy timeout"))?;
        let target = partial.to_string_lossy();
        from.execute("VACUUM INTO ?1", [target.as_ref()])
            .map_err(sqlite(&format!("cannot copy the database to {target}")))?;
    }
    let copy = Connection::open_with_flags(
        partial,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite("cannot open the copy"))?;
    let check: String = copy
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(sqlite("cannot check the copy"))?;
    if check != "ok" {
        return Err(BackupError::Corrupt(check));
    }
    let migrations = copy
        .prepare("SELECT version FROM seaql_migrations ORDER BY version")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| BackupError::Corrupt(format!("no migrations table: {e}")))?;
    let tables = copy
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             AND name <> 'seaql_migrations' ORDER BY name",
        )
        .and_then(|mut stmt| {
            stmt.query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(sqlite("cannot list the copy's tables"))?;
    let mut rows = Vec::with_capacity(tables.len());
    for table in tables {
        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
        let n: i64 = copy
            .query_row(&format!("SELECT count(*) FROM {quoted}"), [], |row| {
                row.get(0)
            })
            .map_err(|e| BackupError::Corrupt(format!("cannot read {table}: {e}")))?;
        rows.push((table, u64::try_from(n).unwrap_or(0)));
    }
    Ok((migrations, rows))
}

fn sync(path: &Path) -> Result<(), BackupError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|source| BackupError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Makes the rename durable; on systems where a directory cannot be opened, a no-op.
fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    match std::fs::File::open(dir) {
        Ok(f) => f.sync_all().map_err(|source| BackupError::Io {
            path: dir.to_owned(),
            source,
        }),
        Err(_) => Ok(()),
    }
}
