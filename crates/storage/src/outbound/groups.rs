//! The send path's group commits: many sends accepted, started or settled in one
//! transaction (see the app's `group.rs`), each fenced on its own key or status.

use std::collections::HashSet;

use insta_router_domain::{MessageId, NewJob, OutboundMessage, OutboundStatus};
use insta_router_ports::{Accepted, RepoError, Settlement};
use sea_orm::{ConnectionTrait, TransactionTrait, Value};

use super::SeaOutboundStore;
use crate::backend::Backend;
use crate::conversations::record_on;
use crate::error::{retry_deadlocks, unavailable};
use crate::jobs::insert_jobs;
use crate::messages;
use crate::sql::{MAX_PARAMS, returned, statement};
use crate::time::to_micros;

impl SeaOutboundStore {
    #[tracing::instrument(skip_all, fields(sends = sends.len()))]
    pub(super) async fn accept_group(
        &self,
        sends: &[(OutboundMessage, NewJob)],
    ) -> Result<Vec<Result<Accepted, RepoError>>, RepoError> {
        // In key order, so that concurrent batches meet on shared keys in the same order.
        let mut order: Vec<usize> = (0..sends.len()).collect();
        order.sort_by_key(|&i| {
            let r = &sends[i].0.request;
            (r.account_id.as_str(), r.idempotency_key.as_str())
        });
        let created = retry_deadlocks(|| async {
            let txn = self.db.begin().await.map_err(unavailable)?;
            let mut created = vec![false; sends.len()];
            if self.backend == Backend::MySql {
                for &i in &order {
                    created[i] = self.insert(&txn, &sends[i].0).await?;
                }
            } else {
                let ordered: Vec<&OutboundMessage> = order.iter().map(|&i| &sends[i].0).collect();
                for (&i, inserted) in order.iter().zip(self.insert_many(&txn, &ordered).await?) {
                    created[i] = inserted;
                }
            }
            let jobs: Vec<NewJob> = sends
                .iter()
                .zip(&created)
                .filter(|(_, yes)| **yes)
                .map(|((_, job), _)| job.clone())
                .collect();
            if jobs.is_empty() {
                txn.rollback().await.map_err(unavailable)?;
            } else {
                insert_jobs(&txn, &jobs).await?;
                txn.commit().await.map_err(unavailable)?;
            }
            Ok(created)
        })
        .await?;
        let mut answers = Vec::with_capacity(sends.len());
        for ((message, _), created) in sends.iter().zip(created) {
            answers.push(if created {
                Ok(Accepted::Created)
            } else {
                self.existing(message).await
            });
        }
        Ok(answers)
    }

    pub(super) async fn start_group(&self, ids: &[MessageId]) -> Result<Vec<bool>, RepoError> {
        if self.backend != Backend::MySql {
            // One statement for the group: the ids it changed come back.
            let rows = self
                .db
                .query_all_raw(statement(
                    self.db.get_database_backend(),
                    &format!(
                        "UPDATE outbound_messages SET status = ?, attempts = attempts + 1 \
                         WHERE status = ? AND id IN ({}) RETURNING id",
                        vec!["?"; ids.len()].join(", ")
                    ),
                    [
                        OutboundStatus::Sending.as_str().into(),
                        OutboundStatus::Pending.as_str().into(),
                    ]
                    .into_iter()
                    .chain(ids.iter().map(|id| id.as_str().into()))
                    .collect(),
                ))
                .await
                .map_err(unavailable)?;
            // An id that comes twice was started by its first place only.
            return returned(&rows, ids.iter().map(MessageId::as_str));
        }
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].as_str());
        retry_deadlocks(|| async {
            let txn = self.db.begin().await.map_err(unavailable)?;
            let mut started = vec![false; ids.len()];
            for &i in &order {
                let result = txn
                    .execute_raw(statement(
                        txn.get_database_backend(),
                        "UPDATE outbound_messages SET status = ?, attempts = attempts + 1 WHERE id = ? AND status = ?",
                        vec![
                            OutboundStatus::Sending.as_str().into(),
                            ids[i].as_str().into(),
                            OutboundStatus::Pending.as_str().into(),
                        ],
                    ))
                    .await
                    .map_err(unavailable)?;
                started[i] = result.rows_affected() == 1;
            }
            txn.commit().await.map_err(unavailable)?;
            Ok(started)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(settlements = settlements.len()))]
    pub(super) async fn settle_group(
        &self,
        settlements: &[(MessageId, OutboundStatus, Settlement)],
    ) -> Result<Vec<bool>, RepoError> {
        let distinct = settlements
            .iter()
            .map(|(id, _, _)| id.as_str())
            .collect::<HashSet<_>>()
            .len()
            == settlements.len();
        if self.backend == Backend::MySql || !distinct {
            return self.settle_each(settlements).await;
        }
        retry_deadlocks(|| async {
            let txn = self.db.begin().await.map_err(unavailable)?;
            let applied = settle_rows(&txn, settlements).await?;
            if !applied.contains(&true) {
                txn.rollback().await.map_err(unavailable)?;
                return Ok(applied);
            }
            let settled = settlements
                .iter()
                .zip(&applied)
                .filter(|(_, applied)| **applied)
                .map(|((_, _, settlement), _)| settlement);
            let (mut copies, mut conversations, mut jobs) = (Vec::new(), Vec::new(), Vec::new());
            for settlement in settled {
                if let Some((copy, conversation)) = &settlement.copy {
                    copies.push(copy.clone());
                    conversations.push(conversation.clone());
                }
                jobs.extend(settlement.crm_event.iter().cloned());
            }
            // Their echoes may be stored already, under the same mids: then those rows stand.
            messages::insert_many_if_absent(&txn, &copies).await?;
            record_on(&txn, self.backend, &conversations).await?;
            insert_jobs(&txn, &jobs).await?;
            txn.commit().await.map_err(unavailable)?;
            Ok(applied)
        })
        .await
    }

    /// One send after another, in id order so that concurrent groups lock shared rows in the
    /// same order: MySQL has no `UPDATE ... RETURNING`, and a send that comes twice in a
    /// group is settled by its first place only.
    async fn settle_each(
        &self,
        settlements: &[(MessageId, OutboundStatus, Settlement)],
    ) -> Result<Vec<bool>, RepoError> {
        let mut order: Vec<usize> = (0..settlements.len()).collect();
        order.sort_by_key(|&i| settlements[i].0.as_str());
        retry_deadlocks(|| async {
            let txn = self.db.begin().await.map_err(unavailable)?;
            let mut applied = vec![false; settlements.len()];
            for &i in &order {
                let (id, from, settlement) = &settlements[i];
                applied[i] = settle_on(&txn, self.backend, id, *from, settlement).await?;
            }
            if applied.contains(&true) {
                txn.commit().await.map_err(unavailable)?;
            } else {
                txn.rollback().await.map_err(unavailable)?;
            }
            Ok(applied)
        })
        .await
    }

    /// The answer to `message` when its insert wrote nothing: the send stored under its key,
    /// or why there is none to return.
    async fn existing(&self, message: &OutboundMessage) -> Result<Accepted, RepoError> {
        let r = &message.request;
        if let Some(existing) = self.by_key(&r.account_id, &r.idempotency_key).await? {
            return Ok(Accepted::Existing(Box::new(existing)));
        }
        // A private reply whose comment has one already, under another key.
        if let Some(comment) = &r.reply_to_comment
            && self.replied(&r.account_id, comment).await?
        {
            return Err(RepoError::Conflict {
                field: "comment_id",
            });
        }
        // Taken by a request that has not committed, or rolled back since.
        Err(RepoError::Conflict {
            field: "idempotency_key",
        })
    }
}

/// The send rows' part of `settlements` (distinct ids) on `txn`, one statement for many
/// rows: each send takes its settlement if its status is still the one it names; which did.
async fn settle_rows(
    txn: &sea_orm::DatabaseTransaction,
    settlements: &[(MessageId, OutboundStatus, Settlement)],
) -> Result<Vec<bool>, RepoError> {
    const COLUMNS: usize = 9;
    let mut applied = Vec::with_capacity(settlements.len());
    for chunk in settlements.chunks(MAX_PARAMS / COLUMNS) {
        let mut values = Vec::with_capacity(chunk.len() * COLUMNS);
        for (id, from, settlement) in chunk {
            values.extend(settlement_row(id, *from, settlement));
        }
        // `column1` ... are the names SQLite and PostgreSQL give a VALUES list's columns.
        let sql = format!(
            "UPDATE outbound_messages SET status = v.column2, \
             instagram_message_id = coalesce(v.column3, outbound_messages.instagram_message_id), \
             sent_at = coalesce(v.column4, outbound_messages.sent_at), error_code = v.column5, \
             error_message = v.column6, error_subcode = v.column7, error_retryable = v.column8 \
             FROM (VALUES {}) AS v \
             WHERE outbound_messages.id = v.column1 AND outbound_messages.status = v.column9 \
             RETURNING outbound_messages.id",
            vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
        );
        let rows = txn
            .query_all_raw(statement(txn.get_database_backend(), &sql, values))
            .await
            .map_err(unavailable)?;
        applied.extend(returned(&rows, chunk.iter().map(|(id, _, _)| id.as_str()))?);
    }
    Ok(applied)
}

/// The send row's new values for `settlement` of the send `id` from `from`: its id, status,
/// mid, sent time, error code, message, subcode and retryability, and the status it must have.
fn settlement_row(id: &MessageId, from: OutboundStatus, settlement: &Settlement) -> [Value; 9] {
    let error = settlement.error.as_ref();
    [
        id.as_str().into(),
        settlement.status.as_str().into(),
        settlement
            .instagram_message_id
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .into(),
        settlement.sent_at.map(to_micros).into(),
        error.map(|e| e.code.clone()).into(),
        error.map(|e| e.message.clone()).into(),
        error.and_then(|e| e.subcode).into(),
        error.map(|e| e.retryable).into(),
        from.as_str().into(),
    ]
}

/// Applies `settlement` to the send `id` if its status is `from`, on `txn`: the send's row,
/// its copy in the conversation, its CRM event; whether it applied.
async fn settle_on(
    txn: &sea_orm::DatabaseTransaction,
    backend: Backend,
    id: &MessageId,
    from: OutboundStatus,
    settlement: &Settlement,
) -> Result<bool, RepoError> {
    // The same values as `settle_rows`, the id and status moved to the WHERE clause.
    let [
        id_value,
        status,
        mid,
        sent_at,
        code,
        message,
        subcode,
        retryable,
        from_value,
    ] = settlement_row(id, from, settlement);
    let updated = txn
        .execute_raw(statement(
            txn.get_database_backend(),
            "UPDATE outbound_messages SET status = ?, instagram_message_id = coalesce(?, instagram_message_id), \
             sent_at = coalesce(?, sent_at), error_code = ?, error_message = ?, error_subcode = ?, \
             error_retryable = ? WHERE id = ? AND status = ?",
            vec![
                status, mid, sent_at, code, message, subcode, retryable, id_value, from_value,
            ],
        ))
        .await
        .map_err(unavailable)?;
    if updated.rows_affected() != 1 {
        return Ok(false);
    }
    if let Some((copy, conversation)) = &settlement.copy {
        // Its echo may be stored already, under the same mid: then that row stands.
        messages::insert_if_absent(txn, copy).await?;
        record_on(txn, backend, std::slice::from_ref(conversation)).await?;
    }
    if let Some(job) = &settlement.crm_event {
        insert_jobs(txn, std::slice::from_ref(job)).await?;
    }
    Ok(true)
}
