//! The inbound batch as multi-row statements in one transaction: MySQL/MariaDB, in-memory
//! SQLite, and PostgreSQL batches that mark deletions.

use std::collections::{HashMap, HashSet};

use insta_router_domain::NewJob;
use insta_router_domain::{Conversation, ConversationId, EventId, MessageId};
use insta_router_ports::{BatchOutcome, Deletion, InboundBatch, RepoError};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, QueryResult, TransactionTrait, Value,
};

use super::rows::{EVENT_COLUMNS, JOURNAL_COLUMNS, event_row, journal_on_conflict, journal_row};
use crate::backend::Backend;
use crate::error::unavailable;
use crate::messages::{columns as message_columns, message_row};
use crate::sql::{chunks, insert_into};
use crate::time::to_micros;

pub(super) async fn store(
    db: &DatabaseConnection,
    backend: Backend,
    batch: &InboundBatch,
) -> Result<BatchOutcome, RepoError> {
    let txn = db.begin().await.map_err(unavailable)?;
    if !batch.routes.is_empty() {
        let accounts: Vec<_> = batch.routes.iter().map(|(a, _)| a.clone()).collect();
        let found = super::read_routes(&txn, &accounts).await?;
        if !super::routes_hold(&batch.routes, &found) {
            return Ok(super::routes_changed());
        }
    }
    let unit = Unit { txn, backend };
    unit.append_journal(batch).await?;
    let message_rows = batch
        .messages
        .iter()
        .map(message_row)
        .collect::<Result<Vec<_>, _>>()?;
    let new_messages = unit
        .insert_if_absent(
            "messages",
            &message_columns(),
            &["instagram_account_id", "mid"],
            message_rows,
        )
        .await?
        .iter()
        .map(|id| MessageId::parse("id", id).map_err(|e| RepoError::Corrupt(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let new_events = unit
        .insert_if_absent(
            "inbound_events",
            &EVENT_COLUMNS,
            &["instagram_account_id", "dedup_key"],
            batch.events.iter().map(event_row).collect(),
        )
        .await?
        .iter()
        .map(|id| EventId::parse("id", id).map_err(|e| RepoError::Corrupt(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let is_new: HashSet<&str> = new_messages
        .iter()
        .map(MessageId::as_str)
        .chain(new_events.iter().map(EventId::as_str))
        .collect();

    unit.mark_deleted(
        batch
            .deletions
            .iter()
            .filter(|d| is_new.contains(d.event_id.as_str())),
    )
    .await?;

    // One row per conversation: a multi-row upsert may not touch a row twice.
    let mut conversations: HashMap<&ConversationId, Conversation> = HashMap::new();
    for message in batch
        .messages
        .iter()
        .filter(|m| is_new.contains(m.id.as_str()))
    {
        conversations
            .entry(&message.conversation_id)
            .and_modify(|c| c.record_message(message))
            .or_insert_with(|| Conversation::of_message(message));
    }
    let conversations: Vec<Conversation> = conversations.into_values().collect();
    crate::conversations::record_on(&unit.txn, backend, &conversations).await?;

    let jobs: Vec<NewJob> = batch
        .jobs_about(|subject| is_new.contains(subject))
        .cloned()
        .collect();
    crate::jobs::insert_jobs(&unit.txn, &jobs).await?;
    unit.txn.commit().await.map_err(unavailable)?;
    Ok(BatchOutcome {
        new_messages,
        new_events,
        routes_changed: false,
    })
}

struct Unit {
    txn: DatabaseTransaction,
    backend: Backend,
}

impl Unit {
    async fn append_journal(&self, batch: &InboundBatch) -> Result<(), RepoError> {
        let rows = batch.journal.iter().map(journal_row).collect();
        for chunk in chunks(rows, JOURNAL_COLUMNS.len()) {
            let mut insert = insert_into("webhook_journal", &JOURNAL_COLUMNS, chunk)?;
            insert.on_conflict(journal_on_conflict());
            let statement = self.txn.get_database_backend().build(&insert);
            self.txn.execute_raw(statement).await.map_err(unavailable)?;
        }
        Ok(())
    }

    /// Runs an insert-if-absent of `rows` into `table` and returns the ids of the rows
    /// inserted: with `RETURNING` where the backend has it, else by reading the fresh ids back
    /// (they are new, so any found was inserted now).
    async fn insert_if_absent(
        &self,
        table: &str,
        columns: &[&str],
        unique: &[&str],
        rows: Vec<Vec<Value>>,
    ) -> Result<Vec<String>, RepoError> {
        let db = self.txn.get_database_backend();
        let mut inserted = Vec::new();
        for chunk in chunks(rows, columns.len()) {
            let ids: Vec<Value> = chunk.iter().map(|row| row[0].clone()).collect();
            let mut insert = insert_into(table, columns, chunk)?;
            insert.on_conflict(
                OnConflict::columns(unique.iter().map(|c| Alias::new(*c)))
                    .do_nothing_on([Alias::new("id")])
                    .to_owned(),
            );
            let rows = if self.backend == Backend::MySql {
                self.txn
                    .execute_raw(db.build(&insert))
                    .await
                    .map_err(unavailable)?;
                let select = Query::select()
                    .column(Alias::new("id"))
                    .from(Alias::new(table))
                    .and_where(Expr::col(Alias::new("id")).is_in(ids))
                    .to_owned();
                self.query(db.build(&select)).await?
            } else {
                insert.returning_col(Alias::new("id"));
                self.query(db.build(&insert)).await?
            };
            for row in &rows {
                inserted.push(row.try_get_by_index::<String>(0).map_err(unavailable)?);
            }
        }
        Ok(inserted)
    }

    async fn query(&self, statement: sea_orm::Statement) -> Result<Vec<QueryResult>, RepoError> {
        self.txn.query_all_raw(statement).await.map_err(unavailable)
    }

    async fn mark_deleted(
        &self,
        deletions: impl Iterator<Item = &Deletion>,
    ) -> Result<(), RepoError> {
        for deletion in deletions {
            let update = Query::update()
                .table(Alias::new("messages"))
                .value(Alias::new("deleted_at"), to_micros(deletion.at))
                .and_where(
                    Expr::col(Alias::new("instagram_account_id")).eq(deletion.account.as_str()),
                )
                .and_where(Expr::col(Alias::new("mid")).eq(deletion.mid.as_str()))
                .and_where(Expr::col(Alias::new("deleted_at")).is_null())
                .to_owned();
            let statement = self.txn.get_database_backend().build(&update);
            self.txn.execute_raw(statement).await.map_err(unavailable)?;
        }
        Ok(())
    }
}
