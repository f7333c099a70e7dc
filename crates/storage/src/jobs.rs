//! [`JobQueue`] on sea-orm.
//!
//! Claiming is one atomic step per backend:
//! - PostgreSQL: `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`;
//! - MySQL/MariaDB: in a READ COMMITTED transaction, `SELECT ... FOR UPDATE SKIP LOCKED`, then
//!   `UPDATE` and read back by the fresh lease token, run again if InnoDB reports a deadlock;
//! - SQLite: `UPDATE ... WHERE id IN (SELECT ...) RETURNING`, atomic because SQLite has one
//!   writer at a time.
//!
//! A running job's `run_at` holds its lease expiry, so one index finds both due jobs and jobs
//! whose worker died: one ordered range of it per status, expired leases first.

mod complete;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::{
    AccountId, ClaimedJob, Job, JobId, JobKind, JobLease, JobStatus, JobWork, NewJob,
};
use insta_router_ports::{JobQueue, RepoError};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, IsolationLevel, QueryResult, Statement, TransactionTrait,
    Value,
};

use crate::backend::Backend;
use crate::error::{retry_deadlocks, unavailable};
use crate::sql::{chunks, insert_into};
use crate::time::{from_micros, to_micros};

pub(crate) const COLUMNS: [&str; 12] = [
    "id",
    "kind",
    "account_id",
    "subject",
    "payload",
    "status",
    "attempts",
    "run_at",
    "lease_token",
    "last_error",
    "created_at",
    "updated_at",
];

pub(crate) const SELECT_COLUMNS: &str = "id, kind, account_id, subject, payload, status, attempts, run_at, lease_token, last_error, created_at";

/// Jobs in the `jobs` table.
#[derive(Debug, Clone)]
pub struct SeaJobQueue {
    db: DatabaseConnection,
    backend: Backend,
}

impl SeaJobQueue {
    pub(crate) fn new(db: DatabaseConnection, backend: Backend) -> Self {
        Self { db, backend }
    }

    fn statement(&self, sql: String, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(self.db.get_database_backend(), sql, values)
    }

    /// `?` or `$n`.
    fn mark(&self, n: usize) -> String {
        match self.backend {
            Backend::Postgres => format!("${n}"),
            Backend::Sqlite | Backend::MySql => "?".to_owned(),
        }
    }

    /// The jobs of `status` and `kinds` due by `now`, oldest first, at most `limit`, as a
    /// select of their ids with its values, numbering placeholders from `first`.
    ///
    /// One status per select: with `status IN ('queued', 'running')` the `(status, kind,
    /// run_at)` index yields each status's rows in `run_at` order but not the two together,
    /// so the database read every due job and sorted them to take the first few, a cost
    /// that grew with the backlog (about 600 rows read per claim in the PostgreSQL e2e
    /// benchmark). One status is one range of that index, read in order and stopped at
    /// `limit`.
    fn due_ids(
        &self,
        status: JobStatus,
        kinds: &[JobKind],
        now: i64,
        first: usize,
        limit: u32,
        lock: &str,
    ) -> (String, Vec<Value>) {
        let kind_marks: Vec<String> = (0..kinds.len()).map(|i| self.mark(first + 2 + i)).collect();
        let sql = format!(
            "SELECT id FROM jobs WHERE status = '{}' AND run_at <= {} AND kind IN ({}) \
             ORDER BY run_at LIMIT {limit}{lock}",
            status.as_str(),
            self.mark(first + 1),
            kind_marks.join(", "),
        );
        let mut values: Vec<Value> = vec![now.into()];
        values.extend(kinds.iter().map(|k| Value::from(k.as_str())));
        (sql, values)
    }

    /// MySQL's claim: `SELECT ... FOR UPDATE SKIP LOCKED`, `UPDATE`, read back by the lease
    /// token, in one transaction at READ COMMITTED. At InnoDB's default REPEATABLE READ the
    /// locking read also takes gap locks, and the `UPDATE` moving rows within the `(status,
    /// run_at)` index then deadlocks against a concurrent claimer's gaps.
    async fn claim_mysql(
        &self,
        kinds: &[JobKind],
        limit: u32,
        now_micros: i64,
        token: &str,
        set: &str,
        set_values: &[Value],
    ) -> Result<Vec<QueryResult>, RepoError> {
        let txn = self
            .db
            .begin_with_config(Some(IsolationLevel::ReadCommitted), None)
            .await
            .map_err(unavailable)?;
        // Jobs whose lease expired first, then queued ones, each in index order.
        let mut ids: Vec<String> = Vec::new();
        for status in [JobStatus::Running, JobStatus::Queued] {
            let left = limit.saturating_sub(u32::try_from(ids.len()).unwrap_or(limit));
            if left == 0 {
                break;
            }
            let (select, values) = self.due_ids(
                status,
                kinds,
                now_micros,
                0,
                left,
                " FOR UPDATE SKIP LOCKED",
            );
            for row in txn
                .query_all_raw(self.statement(select, values))
                .await
                .map_err(unavailable)?
            {
                ids.push(row.try_get_by_index::<String>(0).map_err(unavailable)?);
            }
        }
        if ids.is_empty() {
            txn.commit().await.map_err(unavailable)?;
            return Ok(Vec::new());
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let mut values = set_values.to_vec();
        values.extend(ids.iter().map(|id| Value::from(id.as_str())));
        txn.execute_raw(self.statement(
            format!("UPDATE jobs SET {set} WHERE id IN ({marks})"),
            values,
        ))
        .await
        .map_err(unavailable)?;
        let rows = txn
            .query_all_raw(self.statement(
                format!("SELECT {SELECT_COLUMNS} FROM jobs WHERE lease_token = ?"),
                vec![token.into()],
            ))
            .await
            .map_err(unavailable)?;
        txn.commit().await.map_err(unavailable)?;
        Ok(rows)
    }

    async fn finish(
        &self,
        lease: &JobLease,
        status: JobStatus,
        run_at: Option<DateTime<Utc>>,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        let statement = finish_statement(&self.db, lease, status, run_at, error, now);
        let result = self.db.execute_raw(statement).await.map_err(unavailable)?;
        Ok(result.rows_affected() == 1)
    }
}

/// The update that resolves the job `lease` holds, if it still holds it.
fn finish_statement(
    conn: &impl ConnectionTrait,
    lease: &JobLease,
    status: JobStatus,
    run_at: Option<DateTime<Utc>>,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Statement {
    let mut update = Query::update();
    update
        .table(Alias::new("jobs"))
        .value(Alias::new("status"), status.as_str())
        .value(Alias::new("lease_token"), Option::<String>::None)
        .value(Alias::new("updated_at"), to_micros(now))
        .and_where(Expr::col(Alias::new("id")).eq(lease.job_id.as_str()))
        .and_where(Expr::col(Alias::new("status")).eq(JobStatus::Running.as_str()))
        .and_where(Expr::col(Alias::new("lease_token")).eq(lease.token.as_str()));
    if let Some(at) = run_at {
        update.value(Alias::new("run_at"), to_micros(at));
    }
    if let Some(error) = error {
        update.value(Alias::new("last_error"), error);
    }
    conn.get_database_backend().build(&update)
}

/// A new job as the values of [`COLUMNS`]: queued, due at its `run_at`.
pub(crate) fn job_row(j: &NewJob) -> Vec<Value> {
    let at = to_micros(j.run_at);
    vec![
        j.id.as_str().into(),
        j.kind().as_str().into(),
        j.account_id.as_ref().map(|a| a.as_str().to_owned()).into(),
        j.subject.as_str().into(),
        crate::compact::encode(j.work.payload()).into(),
        JobStatus::Queued.as_str().into(),
        0_i32.into(),
        at.into(),
        Option::<String>::None.into(),
        Option::<String>::None.into(),
        at.into(),
        at.into(),
    ]
}

/// Inserts jobs on any connection or transaction.
pub(crate) async fn insert_jobs(
    conn: &impl ConnectionTrait,
    jobs: &[NewJob],
) -> Result<(), RepoError> {
    let rows: Vec<Vec<Value>> = jobs.iter().map(job_row).collect();
    for chunk in chunks(rows, COLUMNS.len()) {
        let insert = insert_into("jobs", &COLUMNS, chunk)?;
        conn.execute_raw(conn.get_database_backend().build(&insert))
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

#[async_trait]
impl JobQueue for SeaJobQueue {
    async fn enqueue(&self, jobs: &[NewJob]) -> Result<(), RepoError> {
        insert_jobs(&self.db, jobs).await
    }

    async fn claim(
        &self,
        kinds: &[JobKind],
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedJob>, RepoError> {
        if kinds.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let token = format!("lease_{:032x}", uuid::Uuid::now_v7().as_u128());
        let now_micros = to_micros(now);
        let lease_micros = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX);
        let until = now_micros.saturating_add(lease_micros);
        // SET status, attempts, run_at (the lease expiry), lease_token, updated_at.
        let set = format!(
            "status = 'running', attempts = attempts + 1, run_at = {}, lease_token = {}, updated_at = {}",
            self.mark(1),
            self.mark(2),
            self.mark(3)
        );
        let set_values: Vec<Value> = vec![until.into(), token.as_str().into(), now_micros.into()];
        let rows = match self.backend {
            Backend::Postgres | Backend::Sqlite => {
                let lock = if self.backend == Backend::Postgres {
                    " FOR UPDATE SKIP LOCKED"
                } else {
                    ""
                };
                // Jobs whose lease expired first, then queued ones: the second select runs
                // only for as many rows as the first did not find.
                let (expired, expired_values) =
                    self.due_ids(JobStatus::Running, kinds, now_micros, 3, limit, lock);
                let after = 3 + expired_values.len();
                let (queued, queued_values) =
                    self.due_ids(JobStatus::Queued, kinds, now_micros, after, limit, lock);
                let sql = format!(
                    "UPDATE jobs SET {set} WHERE id IN (SELECT id FROM \
                     (SELECT id FROM ({expired}) a UNION ALL SELECT id FROM ({queued}) b) s \
                     LIMIT {limit}) RETURNING {SELECT_COLUMNS}"
                );
                let mut values = set_values;
                values.extend(expired_values);
                values.extend(queued_values);
                self.db
                    .query_all_raw(self.statement(sql, values))
                    .await
                    .map_err(unavailable)?
            }
            Backend::MySql => {
                retry_deadlocks(|| {
                    self.claim_mysql(kinds, limit, now_micros, &token, &set, &set_values)
                })
                .await?
            }
        };
        let mut claimed = rows
            .iter()
            .map(|row| {
                let job = job_from_row(row)?;
                Ok(ClaimedJob {
                    lease: JobLease {
                        job_id: job.id.clone(),
                        token: token.clone(),
                    },
                    job,
                })
            })
            .collect::<Result<Vec<_>, RepoError>>()?;
        claimed.sort_by_key(|c| c.job.created_at);
        Ok(claimed)
    }

    async fn release(
        &self,
        lease: &JobLease,
        at: DateTime<Utc>,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        let mut update = Query::update();
        update
            .table(Alias::new("jobs"))
            .value(Alias::new("status"), JobStatus::Queued.as_str())
            .value(Alias::new("run_at"), to_micros(at))
            .value(Alias::new("lease_token"), Option::<String>::None)
            .value(Alias::new("last_error"), note)
            .value(Alias::new("updated_at"), to_micros(now))
            .value(
                Alias::new("attempts"),
                Expr::cust("CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END"),
            )
            .and_where(Expr::col(Alias::new("id")).eq(lease.job_id.as_str()))
            .and_where(Expr::col(Alias::new("status")).eq(JobStatus::Running.as_str()))
            .and_where(Expr::col(Alias::new("lease_token")).eq(lease.token.as_str()));
        let statement = self.db.get_database_backend().build(&update);
        let result = self.db.execute_raw(statement).await.map_err(unavailable)?;
        Ok(result.rows_affected() == 1)
    }

    async fn complete(&self, lease: &JobLease, now: DateTime<Utc>) -> Result<bool, RepoError> {
        self.finish(lease, JobStatus::Done, None, None, now).await
    }

    async fn complete_many(
        &self,
        leases: &[JobLease],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, RepoError> {
        self.complete_group(leases, now).await
    }

    async fn retry_at(
        &self,
        lease: &JobLease,
        at: DateTime<Utc>,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        self.finish(lease, JobStatus::Queued, Some(at), Some(error), now)
            .await
    }

    async fn dead_letter(
        &self,
        lease: &JobLease,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        self.finish(lease, JobStatus::Dead, None, Some(error), now)
            .await
    }

    async fn get(&self, id: &JobId) -> Result<Option<Job>, RepoError> {
        let sql = format!(
            "SELECT {SELECT_COLUMNS} FROM jobs WHERE id = {}",
            self.mark(1)
        );
        let row = self
            .db
            .query_one_raw(self.statement(sql, vec![id.as_str().into()]))
            .await
            .map_err(unavailable)?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn list_by_subject(&self, subject: &str) -> Result<Vec<Job>, RepoError> {
        let sql = format!(
            "SELECT {SELECT_COLUMNS} FROM jobs WHERE subject = {} ORDER BY created_at, id",
            self.mark(1)
        );
        let rows = self
            .db
            .query_all_raw(self.statement(sql, vec![subject.into()]))
            .await
            .map_err(unavailable)?;
        rows.iter().map(job_from_row).collect()
    }

    async fn counts(&self) -> Result<Vec<(JobKind, JobStatus, u64)>, RepoError> {
        let sql = "SELECT kind, status, count(*) AS n FROM jobs \
                   WHERE status IN ('queued', 'running', 'dead') GROUP BY kind, status";
        let rows = self
            .db
            .query_all_raw(self.statement(sql.to_owned(), Vec::new()))
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let text = |i| row.try_get_by_index::<String>(i).map_err(unavailable);
                let (kind, status) = (text(0)?, text(1)?);
                let n: i64 = row.try_get_by_index(2).map_err(unavailable)?;
                Ok((
                    JobKind::parse(&kind)
                        .ok_or_else(|| RepoError::Corrupt(format!("job kind {kind}")))?,
                    JobStatus::parse(&status)
                        .ok_or_else(|| RepoError::Corrupt(format!("job status {status}")))?,
                    u64::try_from(n).unwrap_or_default(),
                ))
            })
            .collect()
    }
}

pub(crate) fn job_from_row(row: &QueryResult) -> Result<Job, RepoError> {
    let text = |col: &str| row.try_get::<String>("", col).map_err(unavailable);
    let int = |col: &str| row.try_get::<i64>("", col).map_err(unavailable);
    let id = text("id")?;
    let corrupt = |what: String| RepoError::Corrupt(format!("job {id}: {what}"));
    let status =
        JobStatus::parse(&text("status")?).ok_or_else(|| corrupt("unknown status".to_owned()))?;
    let run_at = from_micros(int("run_at")?)?;
    let kind = JobKind::parse(&text("kind")?).ok_or_else(|| corrupt("unknown kind".to_owned()))?;
    let attempts: i32 = row.try_get("", "attempts").map_err(unavailable)?;
    Ok(Job {
        id: JobId::parse("id", &id).map_err(|e| corrupt(e.to_string()))?,
        work: JobWork::from_stored(
            kind,
            &crate::compact::decode(&text("payload")?).map_err(corrupt)?,
        )
        .map_err(|e| corrupt(e.to_string()))?,
        account_id: row
            .try_get::<Option<String>>("", "account_id")
            .map_err(unavailable)?
            .map(|a| AccountId::parse("account_id", &a))
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
        subject: text("subject")?,
        status,
        attempts: u32::try_from(attempts).unwrap_or_default(),
        run_at,
        lease_until: (status == JobStatus::Running).then_some(run_at),
        last_error: row
            .try_get::<Option<String>>("", "last_error")
            .map_err(unavailable)?,
        created_at: from_micros(int("created_at")?)?,
    })
}
