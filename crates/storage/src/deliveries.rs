//! [`DeliveryStore`] on sea-orm: deliveries are the `crm_delivery` jobs, their attempts the
//! `delivery_attempts` rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::{AccountId, Job, JobId, JobKind, JobStatus};
use insta_router_ports::{
    AttemptRecord, DeliveryAttempt, DeliveryFilter, DeliveryStore, Page, PageRequest, RepoError,
    RetryNow,
};
use sea_orm::sea_query::{
    Alias, Cond, Expr, ExprTrait, Order, Query, SelectStatement, UpdateStatement,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult};

use crate::error::{retry_deadlocks, unavailable};
use crate::jobs::{SELECT_COLUMNS, job_from_row};
use crate::page::{into_page, time_cursor};
use crate::time::{from_micros, to_micros};

mod record;

/// Longest response body kept per attempt, in bytes.
pub const MAX_RESPONSE_BODY: usize = 2048;

/// The columns of `delivery_attempts` besides `job_id`.
const ATTEMPT_COLUMNS: [&str; 7] = [
    "attempt",
    "started_at",
    "duration_ms",
    "outcome",
    "status_code",
    "response_body",
    "error",
];

fn col(name: &str) -> Alias {
    Alias::new(name)
}

/// Deliveries and their attempts.
#[derive(Debug, Clone)]
pub struct SeaDeliveryStore {
    db: DatabaseConnection,
}

impl SeaDeliveryStore {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    fn select_jobs(&self) -> SelectStatement {
        let mut select = Query::select();
        select
            .from(col("jobs"))
            .expr(Expr::cust(SELECT_COLUMNS))
            .and_where(Expr::col(col("kind")).eq(JobKind::CrmDelivery.as_str()));
        select
    }

    async fn query(&self, select: &SelectStatement) -> Result<Vec<QueryResult>, RepoError> {
        let statement = self.db.get_database_backend().build(select);
        self.db.query_all_raw(statement).await.map_err(unavailable)
    }

    async fn get(&self, id: &JobId) -> Result<Option<Job>, RepoError> {
        let mut select = self.select_jobs();
        select.and_where(Expr::col(col("id")).eq(id.as_str()));
        self.query(&select)
            .await?
            .first()
            .map(job_from_row)
            .transpose()
    }

    /// Sets `status = 'queued', run_at = now` on the rows `update` selects, and `attempts = 0`
    /// when `fresh_attempts` (each column is assigned once: PostgreSQL refuses a second).
    fn requeue(update: &mut UpdateStatement, now: DateTime<Utc>, fresh_attempts: bool) {
        update
            .table(col("jobs"))
            .value(col("status"), JobStatus::Queued.as_str())
            .value(col("run_at"), to_micros(now))
            .value(col("lease_token"), Option::<String>::None)
            .value(col("updated_at"), to_micros(now))
            .and_where(Expr::col(col("kind")).eq(JobKind::CrmDelivery.as_str()));
        if fresh_attempts {
            update.value(col("attempts"), 0);
        }
    }
}

fn truncate(text: &str) -> String {
    if text.len() <= MAX_RESPONSE_BODY {
        return text.to_owned();
    }
    let mut end = MAX_RESPONSE_BODY;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[async_trait]
impl DeliveryStore for SeaDeliveryStore {
    async fn record(
        &self,
        records: &[AttemptRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, RepoError> {
        retry_deadlocks(|| record::record(&self.db, records, now)).await
    }

    async fn list(
        &self,
        filter: &DeliveryFilter,
        page: PageRequest,
    ) -> Result<Page<Job>, RepoError> {
        let limit = page.effective_limit();
        let mut select = self.select_jobs();
        if let Some(account) = &filter.account_id {
            select.and_where(Expr::col(col("account_id")).eq(account.as_str()));
        }
        if let Some(status) = filter.status {
            select.and_where(Expr::col(col("status")).eq(status.as_str()));
        }
        if let Some(since) = filter.since {
            select.and_where(Expr::col(col("created_at")).gte(to_micros(since)));
        }
        if let Some(until) = filter.until {
            select.and_where(Expr::col(col("created_at")).lt(to_micros(until)));
        }
        if let Some(cursor) = &page.after {
            let (micros, last_id) = cursor.split_once(':').ok_or(RepoError::InvalidCursor)?;
            let micros: i64 = micros.parse().map_err(|_| RepoError::InvalidCursor)?;
            select.cond_where(
                Cond::any()
                    .add(Expr::col(col("created_at")).lt(micros))
                    .add(
                        Cond::all()
                            .add(Expr::col(col("created_at")).eq(micros))
                            .add(Expr::col(col("id")).lt(last_id)),
                    ),
            );
        }
        select
            .order_by(col("created_at"), Order::Desc)
            .order_by(col("id"), Order::Desc)
            .limit(u64::from(limit) + 1);
        let rows = self
            .query(&select)
            .await?
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        into_page(
            rows,
            limit,
            |job| time_cursor(to_micros(job.created_at), job.id.as_str()),
            Ok,
        )
    }

    async fn attempts(&self, job: &JobId) -> Result<Vec<DeliveryAttempt>, RepoError> {
        let mut select = Query::select();
        select
            .columns(ATTEMPT_COLUMNS.map(col))
            .from(col("delivery_attempts"))
            .and_where(Expr::col(col("job_id")).eq(job.as_str()))
            .order_by(col("attempt"), Order::Asc);
        self.query(&select)
            .await?
            .iter()
            .map(|row| {
                let attempt: i32 = row.try_get("", "attempt").map_err(unavailable)?;
                let duration: i64 = row.try_get("", "duration_ms").map_err(unavailable)?;
                let status: Option<i32> = row.try_get("", "status_code").map_err(unavailable)?;
                Ok(DeliveryAttempt {
                    job_id: job.clone(),
                    attempt: u32::try_from(attempt).unwrap_or_default(),
                    started_at: from_micros(row.try_get("", "started_at").map_err(unavailable)?)?,
                    duration_ms: u64::try_from(duration).unwrap_or_default(),
                    outcome: row.try_get("", "outcome").map_err(unavailable)?,
                    status_code: status.and_then(|s| u16::try_from(s).ok()),
                    response_body: row.try_get("", "response_body").map_err(unavailable)?,
                    error: row.try_get("", "error").map_err(unavailable)?,
                })
            })
            .collect()
    }

    async fn retry_now(&self, id: &JobId, now: DateTime<Utc>) -> Result<RetryNow, RepoError> {
        let Some(job) = self.get(id).await? else {
            return Ok(RetryNow::NotFound);
        };
        let mut update = Query::update();
        // A dead delivery gets a fresh set of attempts; one waiting for a retry is moved up,
        // keeping its place in the schedule.
        Self::requeue(&mut update, now, job.status != JobStatus::Queued);
        update
            .and_where(Expr::col(col("id")).eq(id.as_str()))
            .and_where(
                Expr::col(col("status"))
                    .is_in([JobStatus::Queued.as_str(), JobStatus::Dead.as_str()]),
            );
        let changed = self
            .db
            .execute_raw(self.db.get_database_backend().build(&update))
            .await
            .map_err(unavailable)?
            .rows_affected();
        if changed == 1 {
            return Ok(self
                .get(id)
                .await?
                .map_or(RetryNow::NotFound, RetryNow::Queued));
        }
        // Its state changed under us, or it was not retryable: say which.
        Ok(match self.get(id).await?.map(|j| j.status) {
            None => RetryNow::NotFound,
            Some(JobStatus::Done) => RetryNow::AlreadyDelivered,
            Some(_) => RetryNow::Running,
        })
    }

    async fn replay_dead(
        &self,
        account: &AccountId,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<u64, RepoError> {
        let mut update = Query::update();
        Self::requeue(&mut update, now, true);
        update
            .and_where(Expr::col(col("account_id")).eq(account.as_str()))
            .and_where(Expr::col(col("status")).eq(JobStatus::Dead.as_str()));
        if let Some(since) = since {
            update.and_where(Expr::col(col("created_at")).gte(to_micros(since)));
        }
        if let Some(until) = until {
            update.and_where(Expr::col(col("created_at")).lt(to_micros(until)));
        }
        Ok(self
            .db
            .execute_raw(self.db.get_database_backend().build(&update))
            .await
            .map_err(unavailable)?
            .rows_affected())
    }

    async fn counts(&self) -> Result<Vec<(JobStatus, u64)>, RepoError> {
        let mut select = Query::select();
        select
            .column(col("status"))
            .expr(Expr::col(col("id")).count())
            .from(col("jobs"))
            // Not the delivered ones: they only grow, and counting them would scan them all.
            .and_where(Expr::col(col("status")).is_in([
                JobStatus::Queued.as_str(),
                JobStatus::Running.as_str(),
                JobStatus::Dead.as_str(),
            ]))
            .and_where(Expr::col(col("kind")).eq(JobKind::CrmDelivery.as_str()))
            .group_by_col(col("status"));
        self.query(&select)
            .await?
            .iter()
            .map(|row| {
                let status: String = row.try_get_by_index(0).map_err(unavailable)?;
                let count: i64 = row.try_get_by_index(1).map_err(unavailable)?;
                let status = JobStatus::parse(&status)
                    .ok_or_else(|| RepoError::Corrupt(format!("job status {status}")))?;
                Ok((status, u64::try_from(count).unwrap_or_default()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("short"), "short");
        let long = "é".repeat(MAX_RESPONSE_BODY);
        let cut = truncate(&long);
        assert!(cut.len() <= MAX_RESPONSE_BODY && cut.len() >= MAX_RESPONSE_BODY - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
