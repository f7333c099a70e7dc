//! [`WebhookJournal`] on sea-orm: failed requests kept with their replay jobs, and the journal
//! read back. Failed entries are found through their `webhook_replay` jobs (indexed by status
//! and kind), so listing them never scans the journal of every request ever received.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::{JobId, JobKind, JobStatus, NewJob, WebhookId};
use insta_router_ports::{
    JournalEntry, JournalStatus, JournalSummary, ReplayState, RepoError, WebhookJournal,
};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, Statement, TransactionTrait};

use crate::backend::Backend;
use crate::error::{retry_deadlocks, unavailable};
use crate::inbound::rows::{JOURNAL_COLUMNS, journal_on_conflict, journal_row};
use crate::sql::insert_into;
use crate::time::{from_micros, to_micros};

/// The journal of webhook requests.
#[derive(Debug, Clone)]
pub struct SeaWebhookJournal {
    db: DatabaseConnection,
    backend: Backend,
}

impl SeaWebhookJournal {
    pub(crate) fn new(db: DatabaseConnection, backend: Backend) -> Self {
        Self { db, backend }
    }

    fn statement(&self, sql: String, values: Vec<sea_orm::Value>) -> Statement {
        Statement::from_sql_and_values(self.db.get_database_backend(), sql, values)
    }

    /// `?` or `$n`.
    fn mark(&self, n: usize) -> String {
        match self.backend {
            Backend::Postgres => format!("${n}"),
            Backend::Sqlite | Backend::MySql => "?".to_owned(),
        }
    }

    async fn keep_once(
        &self,
        entries: &[JournalEntry],
        replays: &[NewJob],
    ) -> Result<(), RepoError> {
        let txn = self.db.begin().await.map_err(unavailable)?;
        let backend = txn.get_database_backend();
        if !entries.is_empty() {
            let mut insert = insert_into(
                "webhook_journal",
                &JOURNAL_COLUMNS,
                entries.iter().map(journal_row).collect(),
            )?;
            insert.on_conflict(journal_on_conflict());
            txn.execute_raw(backend.build(&insert))
                .await
                .map_err(unavailable)?;
        }
        if !replays.is_empty() {
            let mut insert = insert_into(
                "jobs",
                &crate::jobs::COLUMNS,
                replays.iter().map(crate::jobs::job_row).collect(),
            )?;
            insert.on_conflict(
                OnConflict::column(Alias::new("id"))
                    .do_nothing_on([Alias::new("id")])
                    .to_owned(),
            );
            txn.execute_raw(backend.build(&insert))
                .await
                .map_err(unavailable)?;
        }
        txn.commit().await.map_err(unavailable)
    }
}

/// The columns of a [`JournalSummary`], the body's length as a 64-bit integer everywhere.
fn summary_columns(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => {
            "w.id, w.received_at, w.status, w.error, w.events, \
             octet_length(w.body)::bigint AS bytes, j.attempts, j.run_at"
        }
        Backend::Sqlite | Backend::MySql => {
            "w.id, w.received_at, w.status, w.error, w.events, \
             LENGTH(w.body) AS bytes, j.attempts, j.run_at"
        }
    }
}

fn summary_from_row(row: &QueryResult) -> Result<JournalSummary, RepoError> {
    let id: String = row.try_get("", "id").map_err(unavailable)?;
    let status: String = row.try_get("", "status").map_err(unavailable)?;
    let events: i32 = row.try_get("", "events").map_err(unavailable)?;
    let bytes: i64 = row.try_get("", "bytes").map_err(unavailable)?;
    let attempts: Option<i32> = row.try_get("", "attempts").map_err(unavailable)?;
    let run_at: Option<i64> = row.try_get("", "run_at").map_err(unavailable)?;
    let status = JournalStatus::parse(&status)
        .ok_or_else(|| RepoError::Corrupt(format!("journal status {status:?}")))?;
    Ok(JournalSummary {
        id: WebhookId::parse("id", &id).map_err(|e| RepoError::Corrupt(e.to_string()))?,
        received_at: from_micros(row.try_get("", "received_at").map_err(unavailable)?)?,
        status,
        error: row.try_get("", "error").map_err(unavailable)?,
        events: u32::try_from(events).unwrap_or_default(),
        bytes: u64::try_from(bytes).unwrap_or_default(),
        replay: match (status, attempts, run_at) {
            (JournalStatus::Failed, Some(attempts), Some(run_at)) => Some(ReplayState {
                attempts: u32::try_from(attempts).unwrap_or_default(),
                next_at: from_micros(run_at)?,
            }),
            _ => None,
        },
    })
}

#[async_trait]
impl WebhookJournal for SeaWebhookJournal {
    async fn keep_for_replay(
        &self,
        entries: &[JournalEntry],
        replays: &[NewJob],
    ) -> Result<(), RepoError> {
        retry_deadlocks(|| self.keep_once(entries, replays)).await
    }

    async fn get(&self, id: &WebhookId) -> Result<Option<JournalEntry>, RepoError> {
        let select = Query::select()
            .columns(JOURNAL_COLUMNS.map(Alias::new))
            .from(Alias::new("webhook_journal"))
            .and_where(Expr::col(Alias::new("id")).eq(id.as_str()))
            .to_owned();
        let Some(row) = self
            .db
            .query_one_raw(self.db.get_database_backend().build(&select))
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let status: String = row.try_get("", "status").map_err(unavailable)?;
        let events: i32 = row.try_get("", "events").map_err(unavailable)?;
        Ok(Some(JournalEntry {
            id: id.clone(),
            received_at: from_micros(row.try_get("", "received_at").map_err(unavailable)?)?,
            body: row.try_get("", "body").map_err(unavailable)?,
            status: JournalStatus::parse(&status)
                .ok_or_else(|| RepoError::Corrupt(format!("journal status {status:?}")))?,
            error: row.try_get("", "error").map_err(unavailable)?,
            events: u32::try_from(events).unwrap_or_default(),
        }))
    }

    async fn record_error(&self, id: &WebhookId, error: &str) -> Result<(), RepoError> {
        let update = Query::update()
            .table(Alias::new("webhook_journal"))
            .value(Alias::new("error"), error)
            .and_where(Expr::col(Alias::new("id")).eq(id.as_str()))
            .and_where(Expr::col(Alias::new("status")).eq(JournalStatus::Failed.as_str()))
            .to_owned();
        self.db
            .execute_raw(self.db.get_database_backend().build(&update))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn close_replay(&self, id: &WebhookId, now: DateTime<Utc>) -> Result<(), RepoError> {
        let update = Query::update()
            .table(Alias::new("jobs"))
            .value(Alias::new("status"), JobStatus::Done.as_str())
            .value(Alias::new("lease_token"), Option::<String>::None)
            .value(Alias::new("updated_at"), to_micros(now))
            .and_where(Expr::col(Alias::new("id")).eq(JobId::replaying(id).as_str()))
            .and_where(
                Expr::col(Alias::new("status"))
                    .is_in([JobStatus::Queued.as_str(), JobStatus::Running.as_str()]),
            )
            .to_owned();
        self.db
            .execute_raw(self.db.get_database_backend().build(&update))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn list(
        &self,
        status: Option<JournalStatus>,
        limit: u32,
    ) -> Result<Vec<JournalSummary>, RepoError> {
        let limit = Ord::min(limit, 100_000);
        let columns = summary_columns(self.backend);
        // The kind is written out, not bound: the index on `jobs.subject` holds the replay
        // jobs alone (a partial index), and a planner can only use it when the query names
        // the same kind.
        let replay = JobKind::WebhookReplay.as_str();
        let (sql, values) = if status == Some(JournalStatus::Failed) {
            // From the replay jobs: the index on (status, kind) finds them.
            (
                format!(
                    "SELECT {columns} FROM jobs j JOIN webhook_journal w ON w.id = j.subject \
                     WHERE j.status IN ('queued', 'running') AND j.kind = '{replay}' AND w.status = 'failed' \
                     ORDER BY w.received_at DESC LIMIT {limit}"
                ),
                Vec::new(),
            )
        } else {
            let mut values: Vec<sea_orm::Value> = Vec::new();
            let filter = match status {
                Some(status) => {
                    values.push(status.as_str().into());
                    format!("WHERE w.status = {}", self.mark(1))
                }
                None => String::new(),
            };
            (
                format!(
                    "SELECT {columns} FROM webhook_journal w LEFT JOIN jobs j \
                     ON j.subject = w.id AND j.kind = '{replay}' AND j.status IN ('queued', 'running') \
                     {filter} ORDER BY w.received_at DESC LIMIT {limit}"
                ),
                values,
            )
        };
        let rows = self
            .db
            .query_all_raw(self.statement(sql, values))
            .await
            .map_err(unavailable)?;
        rows.iter().map(summary_from_row).collect()
    }

    async fn awaiting_replay(&self) -> Result<u64, RepoError> {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM jobs WHERE status IN ('queued', 'running') AND kind = {}",
            self.mark(1)
        );
        let row = self
            .db
            .query_one_raw(self.statement(sql, vec![JobKind::WebhookReplay.as_str().into()]))
            .await
            .map_err(unavailable)?
            .ok_or_else(|| RepoError::Corrupt("COUNT(*) returned no row".to_owned()))?;
        let n: i64 = row.try_get_by_index(0).map_err(unavailable)?;
        Ok(u64::try_from(n).unwrap_or_default())
    }
}
