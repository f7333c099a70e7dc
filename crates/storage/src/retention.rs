//! [`RetentionStore`]: old rows deleted in small batches, each a select of ids and a delete
//! of those ids, so no statement holds a write lock for long on any backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_ports::{Prunable, RepoError, RetentionStore};
use sea_orm::sea_query::{Alias, Cond, Expr, ExprTrait, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DatabaseConnection, Value};

use crate::error::unavailable;
use crate::time::to_micros;

/// Deletes old rows.
#[derive(Debug, Clone)]
pub struct SeaRetentionStore {
    db: DatabaseConnection,
}

impl SeaRetentionStore {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

fn col(name: &str) -> Alias {
    Alias::new(name)
}

/// The table of `what` and the condition its old rows meet.
fn old_rows(what: Prunable, before: DateTime<Utc>) -> (&'static str, Cond) {
    let before = to_micros(before);
    let jobs = |status: &str| {
        Cond::all()
            .add(Expr::col(col("status")).eq(status))
            .add(Expr::col(col("updated_at")).lt(before))
    };
    match what {
        Prunable::Journal => (
            "webhook_journal",
            Cond::all()
                .add(Expr::col(col("status")).ne("failed"))
                .add(Expr::col(col("received_at")).lt(before)),
        ),
        Prunable::DoneJobs => (
            "jobs",
            jobs("done").add(Expr::col(col("kind")).ne("crm_delivery")),
        ),
        Prunable::Deliveries => (
            "jobs",
            jobs("done").add(Expr::col(col("kind")).eq("crm_delivery")),
        ),
        Prunable::DeadLetters => ("jobs", jobs("dead")),
        Prunable::Messages => (
            "messages",
            Cond::all().add(Expr::col(col("created_at")).lt(before)),
        ),
        Prunable::Events => (
            "inbound_events",
            Cond::all().add(Expr::col(col("received_at")).lt(before)),
        ),
    }
}

impl SeaRetentionStore {
    async fn query(
        &self,
        select: &SelectStatement,
    ) -> Result<Vec<sea_orm::QueryResult>, RepoError> {
        let statement = self.db.get_database_backend().build(select);
        self.db.query_all_raw(statement).await.map_err(unavailable)
    }

    async fn delete_ids(&self, table: &str, column: &str, ids: &[Value]) -> Result<u64, RepoError> {
        let delete = Query::delete()
            .from_table(col(table))
            .and_where(Expr::col(col(column)).is_in(ids.iter().cloned()))
            .to_owned();
        let statement = self.db.get_database_backend().build(&delete);
        Ok(self
            .db
            .execute_raw(statement)
            .await
            .map_err(unavailable)?
            .rows_affected())
    }
}

#[async_trait]
impl RetentionStore for SeaRetentionStore {
    async fn count_older(&self, what: Prunable, before: DateTime<Utc>) -> Result<u64, RepoError> {
        let (table, cond) = old_rows(what, before);
        let select = Query::select()
            .expr(Expr::col(col("id")).count())
            .from(col(table))
            .cond_where(cond)
            .to_owned();
        let rows = self.query(&select).await?;
        let n: i64 = match rows.first() {
            Some(row) => row.try_get_by_index(0).map_err(unavailable)?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or_default())
    }

    async fn delete_older(
        &self,
        what: Prunable,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, RepoError> {
        let (table, cond) = old_rows(what, before);
        let select = Query::select()
            .column(col("id"))
            .from(col(table))
            .cond_where(cond)
            .limit(u64::from(limit))
            .to_owned();
        let ids: Vec<Value> = self
            .query(&select)
            .await?
            .iter()
            .map(|row| row.try_get_by_index::<String>(0).map(Value::from))
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        if ids.is_empty() {
            return Ok(0);
        }
        if table == "jobs" {
            // A delivery's attempts go first, so none is ever left without its delivery.
            self.delete_ids("delivery_attempts", "job_id", &ids).await?;
        }
        self.delete_ids(table, "id", &ids).await
    }
}
