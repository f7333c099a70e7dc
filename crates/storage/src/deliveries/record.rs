//! Recording a batch of delivery attempts in one transaction, each fenced on its lease.
//!
//! Delivered jobs, the common case, are resolved with one statement per lease token (a worker's
//! claim has one token); retries and dead letters, which carry their own `run_at` and error,
//! one statement each. The attempts are then numbered after their jobs' earlier attempts with
//! one query and inserted with one multi-row statement.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use insta_router_domain::JobStatus;
use insta_router_ports::{AttemptRecord, DeliveryResolution, RepoError};
use sea_orm::sea_query::{Cond, Expr, ExprTrait, Query, ReturningClause};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, TransactionTrait,
};

use super::{ATTEMPT_COLUMNS, col, truncate};
use crate::error::unavailable;
use crate::time::to_micros;

/// Records `records` in one transaction on `db`; see
/// [`insta_router_ports::DeliveryStore::record`].
pub(super) async fn record(
    db: &DatabaseConnection,
    records: &[AttemptRecord],
    now: DateTime<Utc>,
) -> Result<Vec<bool>, RepoError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let txn = db.begin().await.map_err(unavailable)?;
    // Jobs are resolved first, so that SQLite takes its write lock at once, and in id order,
    // so that concurrent batches lock shared rows in the same order.
    let mut recorded = vec![false; records.len()];
    let mut delivered: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, record) in records.iter().enumerate() {
        if record.resolution == DeliveryResolution::Done {
            delivered
                .entry(record.lease.token.as_str())
                .or_default()
                .push(i);
        }
    }
    for (token, indexes) in delivered {
        let mut ids: Vec<&str> = indexes
            .iter()
            .map(|&i| records[i].lease.job_id.as_str())
            .collect();
        ids.sort_unstable();
        let done = resolve_delivered(&txn, token, &ids, now).await?;
        for i in indexes {
            recorded[i] = done.contains(records[i].lease.job_id.as_str());
        }
    }
    let mut failed: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].resolution != DeliveryResolution::Done)
        .collect();
    failed.sort_by_key(|&i| records[i].lease.job_id.as_str());
    for i in failed {
        recorded[i] = resolve_failed(&txn, &records[i], now).await?;
    }
    let kept: Vec<&AttemptRecord> = records
        .iter()
        .zip(&recorded)
        .filter_map(|(record, &yes)| yes.then_some(record))
        .collect();
    if kept.is_empty() {
        txn.rollback().await.map_err(unavailable)?;
        return Ok(recorded);
    }
    insert_attempts(&txn, &kept).await?;
    for record in &kept {
        if let DeliveryResolution::DeadAndDisable(account) = &record.resolution {
            let mut disable = Query::update();
            disable
                .table(col("accounts"))
                .value(col("crm_disabled_at"), to_micros(now))
                .and_where(Expr::col(col("id")).eq(account.as_str()))
                .and_where(Expr::col(col("crm_disabled_at")).is_null());
            txn.execute_raw(txn.get_database_backend().build(&disable))
                .await
                .map_err(unavailable)?;
        }
    }
    txn.commit().await.map_err(unavailable)?;
    Ok(recorded)
}

/// Marks the jobs of `ids` still running under `token` done; answers which were.
async fn resolve_delivered(
    txn: &DatabaseTransaction,
    token: &str,
    ids: &[&str],
    now: DateTime<Utc>,
) -> Result<HashSet<String>, RepoError> {
    let backend = txn.get_database_backend();
    let held = Cond::all()
        .add(Expr::col(col("status")).eq(JobStatus::Running.as_str()))
        .add(Expr::col(col("lease_token")).eq(token))
        .add(Expr::col(col("id")).is_in(ids.iter().copied()));
    let mut update = Query::update();
    update
        .table(col("jobs"))
        .value(col("status"), JobStatus::Done.as_str())
        .value(col("lease_token"), Option::<String>::None)
        .value(col("updated_at"), to_micros(now))
        .cond_where(held.clone());
    let rows = if backend == DatabaseBackend::MySql {
        // No `UPDATE ... RETURNING` on MySQL: the rows are locked and read first.
        let mut select = Query::select();
        select
            .column(col("id"))
            .from(col("jobs"))
            .cond_where(held)
            .lock_exclusive();
        let rows = txn
            .query_all_raw(backend.build(&select))
            .await
            .map_err(unavailable)?;
        txn.execute_raw(backend.build(&update))
            .await
            .map_err(unavailable)?;
        rows
    } else {
        update.returning(ReturningClause::Columns(vec![col("id").into()]));
        txn.query_all_raw(backend.build(&update))
            .await
            .map_err(unavailable)?
    };
    rows.iter()
        .map(|row| row.try_get_by_index::<String>(0).map_err(unavailable))
        .collect()
}

/// Queues a failed job again, or dead-letters it, if `record`'s lease still holds it.
async fn resolve_failed(
    txn: &DatabaseTransaction,
    record: &AttemptRecord,
    now: DateTime<Utc>,
) -> Result<bool, RepoError> {
    let AttemptRecord {
        lease,
        attempt,
        resolution,
    } = record;
    let mut update = Query::update();
    update
        .table(col("jobs"))
        .value(col("lease_token"), Option::<String>::None)
        .value(col("updated_at"), to_micros(now))
        .and_where(Expr::col(col("id")).eq(lease.job_id.as_str()))
        .and_where(Expr::col(col("status")).eq(JobStatus::Running.as_str()))
        .and_where(Expr::col(col("lease_token")).eq(lease.token.as_str()));
    let error = attempt.error.clone().or_else(|| {
        attempt
            .status_code
            .map(|code| format!("HTTP {code} ({})", attempt.outcome))
    });
    match resolution {
        DeliveryResolution::Done => return Ok(false),
        DeliveryResolution::RetryAt(at) => {
            update
                .value(col("status"), JobStatus::Queued.as_str())
                .value(col("run_at"), to_micros(*at))
                .value(col("last_error"), error);
        }
        DeliveryResolution::Dead | DeliveryResolution::DeadAndDisable(_) => {
            update
                .value(col("status"), JobStatus::Dead.as_str())
                .value(col("last_error"), error);
        }
    }
    let changed = txn
        .execute_raw(txn.get_database_backend().build(&update))
        .await
        .map_err(unavailable)?
        .rows_affected();
    Ok(changed == 1)
}

/// The query for the latest attempt number of each job of `kept`: rows of its id and the
/// number, or NULL (PostgreSQL) or no row (the others) when it has none.
///
/// On PostgreSQL, one lookup per job, each the last entry of that job in the primary key.
/// `job_id IN (...) GROUP BY job_id` was planned as a scan of the whole table whenever the
/// table had no statistics (autovacuum off, or not run yet): with no `n_distinct` for
/// `job_id`, 32 ids were estimated at a sixth of the rows. In a 30-second e2e run at
/// 3,000/s, that was 2,460 sequential scans reading 97.9 million rows. The job ids travel as
/// one comma-joined parameter (ids hold no comma), so the text never changes and a cached
/// plan fits every batch.
fn latest_attempts(backend: DatabaseBackend, kept: &[&AttemptRecord]) -> sea_orm::Statement {
    if backend == DatabaseBackend::Postgres {
        let ids: Vec<&str> = kept.iter().map(|r| r.lease.job_id.as_str()).collect();
        return sea_orm::Statement::from_sql_and_values(
            backend,
            "SELECT u.id, (SELECT d.attempt FROM delivery_attempts d WHERE d.job_id = u.id \
             ORDER BY d.attempt DESC LIMIT 1) FROM unnest(string_to_array($1, ',')) AS u(id)",
            [sea_orm::Value::from(ids.join(","))],
        );
    }
    let mut latest = Query::select();
    latest
        .column(col("job_id"))
        .expr(Expr::cust("max(attempt)"))
        .from(col("delivery_attempts"))
        .and_where(Expr::col(col("job_id")).is_in(kept.iter().map(|r| r.lease.job_id.as_str())))
        .group_by_col(col("job_id"));
    backend.build(&latest)
}

/// Inserts the attempts of `kept`, each numbered after its job's earlier attempts (the job
/// rows are locked, or on SQLite the database, so no other attempt of them is numbered
/// concurrently).
async fn insert_attempts(
    txn: &DatabaseTransaction,
    kept: &[&AttemptRecord],
) -> Result<(), RepoError> {
    let backend = txn.get_database_backend();
    let mut numbers: HashMap<String, i64> = HashMap::new();
    for row in txn
        .query_all_raw(latest_attempts(backend, kept))
        .await
        .map_err(unavailable)?
    {
        let job: String = row.try_get_by_index(0).map_err(unavailable)?;
        // An INT's max is INT on PostgreSQL and MySQL, and INTEGER on SQLite; none yet is NULL.
        let number = row
            .try_get_by_index::<Option<i64>>(1)
            .or_else(|_| {
                row.try_get_by_index::<Option<i32>>(1)
                    .map(|n| n.map(i64::from))
            })
            .map_err(unavailable)?;
        if let Some(number) = number {
            numbers.insert(job, number);
        }
    }
    let mut insert = Query::insert();
    insert
        .into_table(col("delivery_attempts"))
        .columns(std::iter::once("job_id").chain(ATTEMPT_COLUMNS).map(col));
    for record in kept {
        let attempt = &record.attempt;
        let number = numbers
            .entry(record.lease.job_id.as_str().to_owned())
            .or_insert(0);
        *number += 1;
        insert
            .values([
                record.lease.job_id.as_str().into(),
                (*number).into(),
                to_micros(attempt.started_at).into(),
                i64::try_from(attempt.duration_ms)
                    .unwrap_or(i64::MAX)
                    .into(),
                attempt.outcome.as_str().into(),
                attempt.status_code.map(i32::from).into(),
                attempt.response_body.as_deref().map(truncate).into(),
                attempt.error.as_deref().map(truncate).into(),
            ])
            .map_err(|e| RepoError::Corrupt(format!("delivery attempt row: {e}")))?;
    }
    txn.execute_raw(backend.build(&insert))
        .await
        .map_err(unavailable)?;
    Ok(())
}
