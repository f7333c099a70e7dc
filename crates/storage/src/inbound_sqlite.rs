//! The inbound batch on SQLite, as one script.
//!
//! sqlx runs each SQLite connection on its own thread; every statement is a round trip to it,
//! and under load each round trip waits for the scheduler. A batch written statement by
//! statement spent most of its time in those waits. Here the whole batch (journal, messages,
//! events, deletions, conversations, jobs, and the read-back of what was new) is one
//! multi-statement query: SQLite prepares and runs the statements one after the other on that
//! thread, and sqlx binds the positional parameters across them in order.
//!
//! What depends on which rows were new is decided in SQL: the ids of messages and events are
//! fresh, so one that exists after its `INSERT ... DO NOTHING` was inserted by this batch.

use insta_router_ports::{BatchOutcome, InboundBatch, RepoError};
use sea_orm::{ConnectionTrait, DatabaseTransaction, Statement, Value};

use crate::Backend;
use crate::error::unavailable;
use crate::inbound::{
    EVENT_COLUMNS, JOURNAL_COLUMNS, conversation_merge, event_row, journal_row, outcome_from_rows,
    payload_with_account_sql,
};
use crate::messages::{columns as message_columns, message_row};
use crate::time::to_micros;

/// Most parameters of one statement; SQLite allows 32766.
const MAX_PARAMS: usize = 30_000;

/// A script being written: SQL text and its parameters, in order.
#[derive(Default)]
struct Script {
    sql: String,
    values: Vec<Value>,
}

impl Script {
    /// `INSERT INTO table (columns) VALUES (?, ...), ... suffix;` per chunk of rows.
    fn insert(&mut self, table: &str, columns: &[&str], rows: Vec<Vec<Value>>, suffix: &str) {
        let per_chunk = (MAX_PARAMS / columns.len()).max(1);
        let row_marks = format!("({})", vec!["?"; columns.len()].join(", "));
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            self.sql.push_str(&format!(
                "INSERT INTO {table} ({}) VALUES ",
                columns.join(", ")
            ));
            for (i, row) in rows.by_ref().take(per_chunk).enumerate() {
                if i > 0 {
                    self.sql.push_str(", ");
                }
                self.sql.push_str(&row_marks);
                self.values.extend(row);
            }
            self.sql.push_str(suffix);
            self.sql.push_str(";\n");
        }
    }

    /// `?, ?, ...` for `ids`, with their values.
    fn list(&mut self, ids: &[String]) -> String {
        self.values
            .extend(ids.iter().map(|id| Value::from(id.as_str())));
        vec!["?"; ids.len()].join(", ")
    }
}

pub(crate) async fn store(
    txn: &DatabaseTransaction,
    batch: &InboundBatch,
) -> Result<BatchOutcome, RepoError> {
    let mut script = Script::default();
    script.insert(
        "webhook_journal",
        &JOURNAL_COLUMNS,
        batch.journal.iter().map(journal_row).collect(),
        "",
    );
    let message_rows = batch
        .messages
        .iter()
        .map(message_row)
        .collect::<Result<Vec<_>, _>>()?;
    script.insert(
        "messages",
        &message_columns(),
        message_rows,
        " ON CONFLICT (instagram_account_id, mid) DO NOTHING",
    );
    script.insert(
        "inbound_events",
        &EVENT_COLUMNS,
        batch.events.iter().map(event_row).collect(),
        " ON CONFLICT (instagram_account_id, dedup_key) DO NOTHING",
    );
    for deletion in &batch.deletions {
        script.sql.push_str(
            "UPDATE messages SET deleted_at = ? WHERE instagram_account_id = ? AND mid = ? \
             AND deleted_at IS NULL AND EXISTS (SELECT 1 FROM inbound_events WHERE id = ?);\n",
        );
        script.values.extend([
            Value::from(to_micros(deletion.at)),
            deletion.account.as_str().into(),
            deletion.mid.as_str().into(),
            deletion.event_id.as_str().into(),
        ]);
    }
    let message_ids: Vec<String> = batch
        .messages
        .iter()
        .map(|m| m.id.as_str().to_owned())
        .collect();
    for chunk in message_ids.chunks(MAX_PARAMS) {
        let marks = script.list(chunk);
        // The conversations of the new messages, merged with the stored ones: earliest start,
        // latest message, latest inbound message.
        script.sql.push_str(&format!(
            "INSERT INTO conversations (id, instagram_account_id, customer_id, started_at, last_message_at, last_inbound_at) \
             SELECT conversation_id, instagram_account_id, \
                    CASE WHEN direction = 'inbound' THEN sender_id ELSE recipient_id END, \
                    min(timestamp), max(timestamp), max(CASE WHEN direction = 'inbound' THEN timestamp END) \
             FROM messages WHERE id IN ({marks}) GROUP BY conversation_id{};\n",
            conversation_merge(Backend::Sqlite)
        ));
    }
    // Jobs: only about what is new, CRM jobs only for accounts with a CRM URL, each with the
    // account's id when the account is configured.
    let per_chunk = MAX_PARAMS / 7;
    let payload = payload_with_account_sql("v.payload", Backend::Sqlite);
    for chunk in batch.jobs.chunks(per_chunk) {
        let rows = vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        script.sql.push_str(&format!(
            "WITH v(id, kind, subject, account, payload, run_at, crm) AS (VALUES {rows}) \
             INSERT INTO jobs (id, kind, account_id, subject, payload, status, attempts, run_at, lease_token, last_error, created_at, updated_at) \
             SELECT v.id, v.kind, a.id, v.subject, {payload}, 'queued', 0, v.run_at, NULL, NULL, v.run_at, v.run_at \
             FROM v LEFT JOIN accounts a ON a.instagram_account_id = v.account \
             WHERE (EXISTS (SELECT 1 FROM messages m WHERE m.id = v.subject) \
                    OR EXISTS (SELECT 1 FROM inbound_events e WHERE e.id = v.subject)) \
               AND (v.crm = 0 OR coalesce(a.crm_webhook_url, '') <> '');\n"
        ));
        for planned in chunk {
            let job = &planned.job;
            script.values.extend([
                Value::from(job.id.as_str()),
                job.kind.as_str().into(),
                job.subject.as_str().into(),
                planned.instagram_account_id.as_str().into(),
                job.payload.as_str().into(),
                to_micros(job.run_at).into(),
                i32::from(planned.requires_crm).into(),
            ]);
        }
    }
    // What was new.
    for chunk in message_ids.chunks(MAX_PARAMS) {
        let marks = script.list(chunk);
        script.sql.push_str(&format!(
            "SELECT 'm' AS t, id FROM messages WHERE id IN ({marks});\n"
        ));
    }
    let event_ids: Vec<String> = batch
        .events
        .iter()
        .map(|e| e.id.as_str().to_owned())
        .collect();
    for chunk in event_ids.chunks(MAX_PARAMS) {
        let marks = script.list(chunk);
        script.sql.push_str(&format!(
            "SELECT 'e' AS t, id FROM inbound_events WHERE id IN ({marks});\n"
        ));
    }
    if script.sql.is_empty() {
        return Ok(BatchOutcome::default());
    }
    let statement =
        Statement::from_sql_and_values(txn.get_database_backend(), script.sql, script.values);
    let rows = txn.query_all_raw(statement).await.map_err(unavailable)?;
    outcome_from_rows(&rows)
}
