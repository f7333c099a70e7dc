//! The inbound batch on a SQLite file, written by a thread of its own through rusqlite.
//!
//! SQLite has one writer at a time, and on the webhook path that writer sets the pace. Through
//! sqlx every statement was a round trip between a tokio task and the connection's worker
//! thread, every row read back another, and a batch's SQL text changed with its size, so each
//! group was a new multi-row script to bind and run. Here one thread owns the writing
//! connection: a batch is one message to it and one answer back, and it runs the same
//! handful of prepared single-row statements for every event (SQLite's own fastest path), so
//! a duplicate is known from the row count of its insert instead of read back.
//!
//! Only the inbound store writes through this connection, so its page cache stays warm:
//! SQLite discards a connection's cache whenever another connection has written.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use insta_router_domain::{Conversation, InstagramAccountId, Route};
use insta_router_ports::{BatchOutcome, InboundBatch, RepoError};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql, TransactionBehavior, params_from_iter};
use sea_orm::Value;
use tokio::sync::oneshot;

use super::rows::{EVENT_COLUMNS, JOURNAL_COLUMNS, JOURNAL_UPSERT, event_row, journal_row};
use crate::backend::Backend;
use crate::conversations::{conversation_row, upsert_sql};
use crate::messages::{columns as message_columns, message_row};
use crate::time::to_micros;

/// How the writer opens its connection.
#[derive(Debug, Clone)]
pub(crate) struct WriterOptions {
    /// The database file.
    pub path: PathBuf,
    /// `synchronous=FULL` instead of `NORMAL`.
    pub synchronous_full: bool,
    /// Page cache, in KiB.
    pub cache_kib: u32,
    /// `journal_size_limit`, in bytes.
    pub wal_size_limit: u64,
}

/// The handle of the writer thread; the thread stops when the last handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct SqliteWriter {
    requests: mpsc::Sender<Request>,
}

/// The routes of some accounts.
type Routes = Vec<(InstagramAccountId, Route)>;

enum Request {
    /// Write a batch and answer with its outcome.
    Store {
        batch: InboundBatch,
        reply: oneshot::Sender<Result<BatchOutcome, RepoError>>,
    },
    /// Read the routes of these accounts.
    Routes {
        accounts: Vec<InstagramAccountId>,
        reply: oneshot::Sender<Result<Routes, RepoError>>,
    },
    /// Close the connection (a later batch opens it again), then answer.
    Close(oneshot::Sender<()>),
}

impl SqliteWriter {
    /// Starts the thread. Its connection is opened with the first batch, after the
    /// migrations ran: a connection that cached the schema before a migration would not see
    /// the new tables and indexes when it prepares a statement.
    pub(crate) fn start(options: WriterOptions) -> std::io::Result<Self> {
        let (requests, receiver) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || run(&options, &receiver))?;
        Ok(Self { requests })
    }

    /// Writes `batch` in one transaction; see [`insta_router_ports::InboundStore::store`].
    pub(crate) async fn store(&self, batch: InboundBatch) -> Result<BatchOutcome, RepoError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Store { batch, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// The routes of `accounts`; see [`insta_router_ports::InboundStore::routes`]. Read by the
    /// writer, whose connection is warm, between two batches.
    pub(crate) async fn routes(
        &self,
        accounts: Vec<InstagramAccountId>,
    ) -> Result<Routes, RepoError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Routes { accounts, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Closes the writer's connection, so that the last connection to close can fold the WAL
    /// into the database and remove it.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.requests.send(Request::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

fn stopped() -> RepoError {
    RepoError::Unavailable("the SQLite writer thread has stopped".into())
}

fn run(options: &WriterOptions, requests: &mpsc::Receiver<Request>) {
    let mut connection: Option<Connection> = None;
    while let Ok(request) = requests.recv() {
        match request {
            Request::Close(done) => {
                connection = None;
                let _ = done.send(());
            }
            Request::Store { batch, reply } => {
                let started = std::time::Instant::now();
                let outcome = connected(&mut connection, options).and_then(|c| write(c, &batch));
                tracing::debug!(
                    journal = batch.journal.len(),
                    micros = started.elapsed().as_micros(),
                    "sqlite batch written"
                );
                if let Err(e) = &outcome {
                    tracing::warn!(error = %insta_router_ports::describe(e), "inbound batch failed on SQLite");
                }
                let _ = reply.send(outcome);
            }
            Request::Routes { accounts, reply } => {
                let found = connected(&mut connection, options).and_then(|c| routes(c, &accounts));
                let _ = reply.send(found);
            }
        }
    }
}

/// The writer's connection, opened when there is none (first use, or after a close).
fn connected<'c>(
    connection: &'c mut Option<Connection>,
    options: &WriterOptions,
) -> Result<&'c mut Connection, RepoError> {
    if connection.is_none() {
        *connection = Some(open(options).map_err(unavailable)?);
    }
    connection
        .as_mut()
        .ok_or_else(|| RepoError::Unavailable("the SQLite connection is not open".into()))
}

fn routes(conn: &Connection, accounts: &[InstagramAccountId]) -> Result<Routes, RepoError> {
    let mut select = conn
        .prepare_cached(&super::ONE_ROUTE_SQL)
        .map_err(unavailable)?;
    let mut found = Vec::new();
    for account in accounts {
        let mut rows = select.query([account.as_str()]).map_err(unavailable)?;
        if let Some(row) = rows.next().map_err(unavailable)? {
            found.push(super::route(
                row.get(0).map_err(unavailable)?,
                row.get(1).map_err(unavailable)?,
                row.get(2).map_err(unavailable)?,
                row.get::<_, String>(3).map_err(unavailable)? == "y",
            )?);
        }
    }
    Ok(found)
}

fn open(options: &WriterOptions) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        &options.path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_handler(Some(wait_briefly))?;
    let synchronous = if options.synchronous_full {
        "FULL"
    } else {
        "NORMAL"
    };
    // The pool's settings (see `Database::options`): the pool has set WAL mode on the file.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
         PRAGMA foreign_keys = ON; PRAGMA cache_size = -{}; PRAGMA temp_store = MEMORY; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {};",
        options.cache_kib, options.wal_size_limit
    ))?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

/// SQLite's busy handler for the writer: another connection (a delivery worker's claim or
/// record) holds the write lock, which it keeps for a millisecond or so. SQLite's own handler
/// sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms between looks, so a webhook that
/// found the lock taken waited tens of milliseconds after it was free: that was the
/// webhook path's p99 with delivery on. This one looks every 100 µs, until
/// [`crate::checkpoint::SQLITE_BUSY_TIMEOUT`].
fn wait_briefly(prior_calls: i32) -> bool {
    const STEP: Duration = Duration::from_micros(100);
    let waited = STEP.saturating_mul(u32::try_from(prior_calls).unwrap_or(u32::MAX));
    if waited >= crate::checkpoint::SQLITE_BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(STEP);
    true
}

fn unavailable(e: rusqlite::Error) -> RepoError {
    RepoError::Unavailable(Box::new(e))
}

/// `INSERT INTO table (columns) VALUES (?, ...) suffix`.
fn insert_sql(table: &str, columns: &[&str], suffix: &str) -> String {
    format!(
        "INSERT INTO {table} ({}) VALUES ({}){suffix}",
        columns.join(", "),
        vec!["?"; columns.len()].join(", ")
    )
}

/// A sea-orm value bound to a rusqlite statement: the row builders shared with the other
/// backends produce text, integers and blobs.
struct Bind<'a>(&'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::String(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(Some(b)) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::BigInt(Some(n)) => ToSqlOutput::Owned((*n).into()),
            Value::Int(Some(n)) => ToSqlOutput::Owned(i64::from(*n).into()),
            Value::String(None) | Value::Bytes(None) | Value::BigInt(None) | Value::Int(None) => {
                ToSqlOutput::Owned(rusqlite::types::Value::Null)
            }
            other => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("no SQLite binding for {other:?}").into(),
                ));
            }
        })
    }
}

fn execute(
    statement: &mut rusqlite::CachedStatement<'_>,
    row: &[Value],
) -> rusqlite::Result<usize> {
    statement.execute(params_from_iter(row.iter().map(Bind)))
}

fn write(conn: &mut Connection, batch: &InboundBatch) -> Result<BatchOutcome, RepoError> {
    let txn = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    if !batch.routes.is_empty() {
        let accounts: Vec<_> = batch.routes.iter().map(|(a, _)| a.clone()).collect();
        if !super::routes_hold(&batch.routes, &routes(&txn, &accounts)?) {
            return Ok(super::routes_changed());
        }
    }
    let outcome = write_in(&txn, batch)?;
    txn.commit().map_err(unavailable)?;
    Ok(outcome)
}

fn write_in(
    txn: &rusqlite::Transaction<'_>,
    batch: &InboundBatch,
) -> Result<BatchOutcome, RepoError> {
    let mut outcome = BatchOutcome::default();
    let mut new: HashSet<&str> = HashSet::new();

    let mut journal = txn
        .prepare_cached(&insert_sql(
            "webhook_journal",
            &JOURNAL_COLUMNS,
            JOURNAL_UPSERT,
        ))
        .map_err(unavailable)?;
    for entry in &batch.journal {
        execute(&mut journal, &journal_row(entry)).map_err(unavailable)?;
    }

    let mut messages = txn
        .prepare_cached(&insert_sql(
            "messages",
            &message_columns(),
            " ON CONFLICT (instagram_account_id, mid) DO NOTHING",
        ))
        .map_err(unavailable)?;
    let mut conversation = txn
        .prepare_cached(&upsert_sql(Backend::Sqlite, 1))
        .map_err(unavailable)?;
    for message in &batch.messages {
        if execute(&mut messages, &message_row(message)?).map_err(unavailable)? == 0 {
            continue;
        }
        new.insert(message.id.as_str());
        outcome.new_messages.push(message.id.clone());
        let row = conversation_row(&Conversation::of_message(message));
        execute(&mut conversation, &row).map_err(unavailable)?;
    }

    let mut events = txn
        .prepare_cached(&insert_sql(
            "inbound_events",
            &EVENT_COLUMNS,
            " ON CONFLICT (instagram_account_id, dedup_key) DO NOTHING",
        ))
        .map_err(unavailable)?;
    for event in &batch.events {
        if execute(&mut events, &event_row(event)).map_err(unavailable)? == 1 {
            new.insert(event.id.as_str());
            outcome.new_events.push(event.id.clone());
        }
    }

    for deletion in batch
        .deletions
        .iter()
        .filter(|d| new.contains(d.event_id.as_str()))
    {
        txn.prepare_cached(
            "UPDATE messages SET deleted_at = ? \
             WHERE instagram_account_id = ? AND mid = ? AND deleted_at IS NULL",
        )
        .and_then(|mut update| {
            update.execute(rusqlite::params![
                to_micros(deletion.at),
                deletion.account.as_str(),
                deletion.mid.as_str(),
            ])
        })
        .map_err(unavailable)?;
    }

    let mut jobs = txn
        .prepare_cached(&insert_sql("jobs", &crate::jobs::COLUMNS, ""))
        .map_err(unavailable)?;
    for job in batch.jobs_about(|subject| new.contains(subject)) {
        execute(&mut jobs, &crate::jobs::job_row(job)).map_err(unavailable)?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_waits_for_a_lock_in_short_steps_until_the_busy_timeout() {
        assert!(wait_briefly(0));
        assert!(wait_briefly(99_999), "10 s are 100,000 steps of 100 µs");
        assert!(!wait_briefly(100_000));
        assert!(!wait_briefly(i32::MAX));
    }

    #[test]
    fn a_batch_waits_for_another_connections_write_lock_and_then_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.db");
        let setup = Connection::open(&path).unwrap();
        setup
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER);")
            .unwrap();
        let options = WriterOptions {
            path: path.clone(),
            synchronous_full: false,
            cache_kib: 1024,
            wal_size_limit: 1 << 20,
        };
        let writer = open(&options).unwrap();
        // Another connection holds the write lock until told to let go.
        let (release, released) = mpsc::channel::<()>();
        let (locked, is_locked) = mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let other = Connection::open(&path).unwrap();
            other
                .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
                .unwrap();
            locked.send(()).unwrap();
            released.recv().unwrap();
            other.execute_batch("COMMIT").unwrap();
        });
        is_locked.recv().unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            release.send(()).unwrap();
        });
        // Waits in the busy handler instead of failing with SQLITE_BUSY.
        writer
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (2); COMMIT;")
            .unwrap();
        holder.join().unwrap();
        releaser.join().unwrap();
        let rows: i64 = writer
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2);
    }
}
