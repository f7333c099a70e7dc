//! The inbound batch on PostgreSQL, as one statement.
//!
//! Data-modifying CTEs chain the inserts: the messages and events that were new come out of
//! their `INSERT ... ON CONFLICT DO NOTHING RETURNING`, and the conversations and jobs are
//! written from those rows. One statement is atomic on its own, so the batch costs one round
//! trip and one commit (one fsync) instead of a transaction of several statements.
//!
//! The sub-statements share one snapshot and cannot see each other's rows, so a batch that
//! marks deletions (which may concern a message inserted by the same batch) takes the
//! statement-by-statement path instead; so does a batch too large for PostgreSQL's 65 535
//! parameters.

use insta_router_domain::{EventId, MessageId};
use insta_router_ports::{ACCOUNT_ID_PLACEHOLDER, BatchOutcome, InboundBatch, RepoError};
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, Statement, Value};

use crate::Backend;
use crate::error::unavailable;
use crate::inbound::{EVENT_COLUMNS, JOURNAL_COLUMNS, conversation_merge, event_row, journal_row};
use crate::messages::{columns as message_columns, message_row};
use crate::time::to_micros;

/// Parameters per statement PostgreSQL accepts, with room to spare.
const MAX_PARAMS: usize = 60_000;

/// Whether [`store`] can write `batch`.
pub(crate) fn fits(batch: &InboundBatch) -> bool {
    let params = batch.journal.len() * JOURNAL_COLUMNS.len()
        + batch.messages.len() * message_columns().len()
        + batch.events.len() * EVENT_COLUMNS.len()
        + batch.jobs.len() * 7;
    batch.deletions.is_empty() && params <= MAX_PARAMS
}

#[derive(Default)]
struct Query {
    sql: String,
    values: Vec<Value>,
}

impl Query {
    /// `($n, $n+1, ...)` for one row, binding its values.
    fn row(&mut self, row: Vec<Value>) -> String {
        let marks: Vec<String> = row
            .into_iter()
            .map(|v| {
                self.values.push(v);
                format!("${}", self.values.len())
            })
            .collect();
        format!("({})", marks.join(", "))
    }

    fn rows(&mut self, rows: Vec<Vec<Value>>) -> String {
        let rows: Vec<String> = rows.into_iter().map(|r| self.row(r)).collect();
        rows.join(", ")
    }
}

pub(crate) async fn store(
    db: &DatabaseConnection,
    batch: &InboundBatch,
) -> Result<BatchOutcome, RepoError> {
    let mut q = Query::default();
    let mut ctes: Vec<String> = Vec::new();
    if !batch.journal.is_empty() {
        let rows = q.rows(batch.journal.iter().map(journal_row).collect());
        ctes.push(format!(
            "j AS (INSERT INTO webhook_journal ({}) VALUES {rows})",
            JOURNAL_COLUMNS.join(", ")
        ));
    }
    let message_rows = batch
        .messages
        .iter()
        .map(message_row)
        .collect::<Result<Vec<_>, _>>()?;
    if message_rows.is_empty() {
        ctes.push(
            "m AS (SELECT id, conversation_id, instagram_account_id, direction, sender_id, recipient_id, timestamp FROM messages WHERE false)"
                .to_owned(),
        );
    } else {
        let rows = q.rows(message_rows);
        ctes.push(format!(
            "m AS (INSERT INTO messages ({}) VALUES {rows} \
             ON CONFLICT (instagram_account_id, mid) DO NOTHING \
             RETURNING id, conversation_id, instagram_account_id, direction, sender_id, recipient_id, timestamp)",
            message_columns().join(", ")
        ));
    }
    if batch.events.is_empty() {
        ctes.push("e AS (SELECT id FROM inbound_events WHERE false)".to_owned());
    } else {
        let rows = q.rows(batch.events.iter().map(event_row).collect());
        ctes.push(format!(
            "e AS (INSERT INTO inbound_events ({}) VALUES {rows} \
             ON CONFLICT (instagram_account_id, dedup_key) DO NOTHING RETURNING id)",
            EVENT_COLUMNS.join(", ")
        ));
    }
    ctes.push(format!(
        "c AS (INSERT INTO conversations (id, instagram_account_id, customer_id, started_at, last_message_at, last_inbound_at) \
         SELECT conversation_id, min(instagram_account_id), \
                min(CASE WHEN direction = 'inbound' THEN sender_id ELSE recipient_id END), \
                min(timestamp), max(timestamp), max(CASE WHEN direction = 'inbound' THEN timestamp END) \
         FROM m GROUP BY conversation_id ORDER BY conversation_id{})",
        conversation_merge(Backend::Postgres)
    ));
    if !batch.jobs.is_empty() {
        let rows = q.rows(
            batch
                .jobs
                .iter()
                .map(|planned| {
                    let job = &planned.job;
                    vec![
                        Value::from(job.id.as_str()),
                        job.kind.as_str().into(),
                        job.subject.as_str().into(),
                        planned.instagram_account_id.as_str().into(),
                        job.payload.as_str().into(),
                        to_micros(job.run_at).into(),
                        planned.requires_crm.into(),
                    ]
                })
                .collect(),
        );
        let payload = payload_with_account_sql("v.payload");
        ctes.push(format!(
            "q AS (INSERT INTO jobs (id, kind, account_id, subject, payload, status, attempts, run_at, lease_token, last_error, created_at, updated_at) \
             SELECT v.id, v.kind, a.id, v.subject, {payload}, 'queued', 0, v.run_at, NULL, NULL, v.run_at, v.run_at \
             FROM (VALUES {rows}) AS v(id, kind, subject, account, payload, run_at, crm) \
             LEFT JOIN accounts a ON a.instagram_account_id = v.account \
             WHERE (v.subject IN (SELECT id FROM m) OR v.subject IN (SELECT id FROM e)) \
               AND (NOT v.crm OR coalesce(a.crm_webhook_url, '') <> ''))"
        ));
    }
    q.sql = format!(
        "WITH {} SELECT 'm' AS t, id FROM m UNION ALL SELECT 'e' AS t, id FROM e",
        ctes.join(", ")
    );
    let statement = Statement::from_sql_and_values(db.get_database_backend(), q.sql, q.values);
    let rows = db.query_all_raw(statement).await.map_err(unavailable)?;
    outcome_from_rows(&rows)
}

/// The SQL expression of a job's payload with [`ACCOUNT_ID_PLACEHOLDER`] replaced by the id of
/// the joined account `a` (unchanged when there is none).
fn payload_with_account_sql(payload: &str) -> String {
    let placeholder = ACCOUNT_ID_PLACEHOLDER.replace('\'', "''");
    format!(
        "CASE WHEN a.id IS NULL THEN {payload} \
         ELSE replace({payload}, '{placeholder}', '\"account_id\":\"' || a.id || '\"') END"
    )
}

/// The outcome of the batch statement: rows of `(t, id)` where `t` is `m` for a message and
/// `e` for an event.
fn outcome_from_rows(rows: &[QueryResult]) -> Result<BatchOutcome, RepoError> {
    let mut outcome = BatchOutcome::default();
    for row in rows {
        let table: String = row.try_get_by_index(0).map_err(unavailable)?;
        let id: String = row.try_get_by_index(1).map_err(unavailable)?;
        let corrupt = |e: insta_router_domain::FieldError| RepoError::Corrupt(e.to_string());
        if table == "m" {
            outcome
                .new_messages
                .push(MessageId::parse("id", &id).map_err(corrupt)?);
        } else {
            outcome
                .new_events
                .push(EventId::parse("id", &id).map_err(corrupt)?);
        }
    }
    Ok(outcome)
}
