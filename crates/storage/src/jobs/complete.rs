//! Send jobs completed as a group (see the app's `group.rs`): each fenced on its lease.

use chrono::{DateTime, Utc};
use insta_router_domain::{JobLease, JobStatus};
use insta_router_ports::RepoError;
use sea_orm::{ConnectionTrait, TransactionTrait};

use super::{SeaJobQueue, finish_statement};
use crate::backend::Backend;
use crate::error::{retry_deadlocks, unavailable};
use crate::sql::{returned, statement};
use crate::time::to_micros;

impl SeaJobQueue {
    /// Marks each of `leases` done if it still holds its job; one answer per lease, in order.
    pub(super) async fn complete_group(
        &self,
        leases: &[JobLease],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, RepoError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        if self.backend == Backend::MySql {
            return self.complete_each(leases, now).await;
        }
        // One statement for the group, each job fenced on its own lease; the ids it changed
        // come back.
        let fences = vec!["(id = ? AND lease_token = ?)"; leases.len()].join(" OR ");
        let values = [
            JobStatus::Done.as_str().into(),
            to_micros(now).into(),
            JobStatus::Running.as_str().into(),
        ]
        .into_iter()
        .chain(
            leases
                .iter()
                .flat_map(|l| [l.job_id.as_str().into(), l.token.as_str().into()]),
        )
        .collect();
        let rows = self
            .db
            .query_all_raw(statement(
                self.db.get_database_backend(),
                &format!(
                    "UPDATE jobs SET status = ?, lease_token = NULL, updated_at = ? \
                     WHERE status = ? AND ({fences}) RETURNING id"
                ),
                values,
            ))
            .await
            .map_err(unavailable)?;
        returned(&rows, leases.iter().map(|l| l.job_id.as_str()))
    }

    /// MySQL has no `UPDATE ... RETURNING`: one fenced statement per lease, in one
    /// transaction, in id order so that concurrent groups lock shared rows in the same order.
    async fn complete_each(
        &self,
        leases: &[JobLease],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, RepoError> {
        let mut order: Vec<usize> = (0..leases.len()).collect();
        order.sort_by_key(|&i| leases[i].job_id.as_str());
        retry_deadlocks(|| async {
            let txn = self.db.begin().await.map_err(unavailable)?;
            let mut done = vec![false; leases.len()];
            for &i in &order {
                let statement =
                    finish_statement(&txn, &leases[i], JobStatus::Done, None, None, now);
                done[i] = txn
                    .execute_raw(statement)
                    .await
                    .map_err(unavailable)?
                    .rows_affected()
                    == 1;
            }
            txn.commit().await.map_err(unavailable)?;
            Ok(done)
        })
        .await
    }
}
