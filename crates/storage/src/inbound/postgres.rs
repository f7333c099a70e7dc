//! The inbound batch on PostgreSQL, as one statement whose text never changes.
//!
//! Data-modifying CTEs chain the inserts: the messages and events that were new come out of
//! their `INSERT ... ON CONFLICT DO NOTHING RETURNING`, and the conversations and jobs are
//! written from those rows. One statement is atomic on its own, so the batch costs one round
//! trip and one commit (one fsync) instead of a transaction of several statements.
//!
//! Each table's rows travel as one JSON parameter (an array of objects keyed by column), read
//! back with `json_populate_recordset` against the table's own row type. So every batch,
//! whatever its size, is the same statement of four parameters: prepared once per connection
//! and planned from then on without parsing again, where multi-row `VALUES` made nearly every
//! group a new statement of hundreds of parameters for PostgreSQL to parse and plan.
//!
//! The sub-statements share one snapshot and cannot see each other's rows, so a batch that
//! marks deletions (which may concern a message inserted by the same batch) takes the
//! statement-by-statement path instead.

use std::fmt::Write as _;

use std::sync::LazyLock;

use insta_router_domain::{EventId, MessageId};
use insta_router_ports::{BatchOutcome, InboundBatch, RepoError};
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, Statement, Value};

use super::rows::{EVENT_COLUMNS, JOURNAL_COLUMNS, JOURNAL_UPSERT, event_row, journal_row};
use crate::backend::Backend;
use crate::conversations::{COLUMNS as CONVERSATION_COLUMNS, merge_sql};
use crate::error::unavailable;
use crate::messages::{columns as message_columns, message_row};
use crate::time::to_micros;

/// Whether [`store`] can write `batch`.
pub(crate) fn fits(batch: &InboundBatch) -> bool {
    batch.deletions.is_empty()
}

/// The batch statement: `$1` journal entries, `$2` messages, `$3` events, `$4` jobs, `$5`
/// the routes the jobs were planned for, each a JSON array. `g` checks the routes against
/// the accounts and rules tables; when one differs, every insert selects nothing and the statement
/// answers one row `('r', '')`. The conversations of the new messages are merged per
/// conversation first (a statement may not touch a row twice), then into the table. Jobs
/// travel as the columns that vary ([`JOB_FIELDS`]); a new job's status, attempts and times
/// are the same for all.
static BATCH_SQL: LazyLock<String> = LazyLock::new(|| {
    let journal = JOURNAL_COLUMNS.join(", ");
    let messages = message_columns().join(", ");
    let events = EVENT_COLUMNS.join(", ");
    let conversations = CONVERSATION_COLUMNS.join(", ");
    let merge = merge_sql(Backend::Postgres);
    let upsert = JOURNAL_UPSERT;
    let answers = super::ANSWERS_SQL;
    format!(
        "WITH g AS (SELECT NOT EXISTS (SELECT 1 \
           FROM json_to_recordset($5::json) AS r(instagram_account_id text, account_id text, crm boolean, answers boolean) \
           LEFT JOIN accounts a ON a.instagram_account_id = r.instagram_account_id \
           WHERE a.id IS DISTINCT FROM r.account_id \
              OR (a.id IS NOT NULL AND (coalesce(a.crm_webhook_url, '') <> '') IS DISTINCT FROM r.crm) \
              OR (a.id IS NOT NULL AND ({answers}) IS DISTINCT FROM r.answers)) AS ok), \
         j AS (INSERT INTO webhook_journal ({journal}) \
           SELECT {journal} FROM json_populate_recordset(NULL::webhook_journal, $1::json) \
           WHERE (SELECT ok FROM g){upsert}), \
         m AS (INSERT INTO messages ({messages}) \
           SELECT {messages} FROM json_populate_recordset(NULL::messages, $2::json) \
           WHERE (SELECT ok FROM g) ON CONFLICT (instagram_account_id, mid) DO NOTHING \
           RETURNING id, conversation_id, instagram_account_id, direction, sender_id, recipient_id, timestamp), \
         e AS (INSERT INTO inbound_events ({events}) \
           SELECT {events} FROM json_populate_recordset(NULL::inbound_events, $3::json) \
           WHERE (SELECT ok FROM g) ON CONFLICT (instagram_account_id, dedup_key) DO NOTHING RETURNING id), \
         c AS (INSERT INTO conversations ({conversations}) \
           SELECT conversation_id, min(instagram_account_id), \
                  min(CASE WHEN direction = 'inbound' THEN sender_id ELSE recipient_id END), \
                  min(timestamp), max(timestamp), max(CASE WHEN direction = 'inbound' THEN timestamp END) \
           FROM m GROUP BY conversation_id ORDER BY conversation_id{merge}), \
         q AS (INSERT INTO jobs (id, kind, account_id, subject, payload, status, attempts, run_at, lease_token, last_error, created_at, updated_at) \
           SELECT v.id, v.kind, v.account_id, v.subject, v.payload, 'queued', 0, v.run_at, NULL, NULL, v.run_at, v.run_at \
           FROM json_to_recordset($4::json) AS v(id text, kind text, account_id text, subject text, payload text, run_at bigint) \
           WHERE v.subject IN (SELECT id FROM m) OR v.subject IN (SELECT id FROM e)) \
         SELECT 'm' AS t, id FROM m UNION ALL SELECT 'e' AS t, id FROM e \
         UNION ALL SELECT 'r' AS t, '' FROM g WHERE NOT ok"
    )
});

/// The fields of a job in the batch statement's `$4`.
const JOB_FIELDS: [&str; 6] = ["id", "kind", "account_id", "subject", "payload", "run_at"];

/// The fields of a route in the batch statement's `$5`.
const ROUTE_FIELDS: [&str; 4] = ["instagram_account_id", "account_id", "crm", "answers"];

/// Rows as a JSON array of objects keyed by `columns`, in the text forms PostgreSQL reads
/// into the columns' types (`bytea` as `\x` and hex).
fn json_rows(
    columns: &[&str],
    rows: impl Iterator<Item = Result<Vec<Value>, RepoError>>,
) -> Result<String, RepoError> {
    let mut json = String::from("[");
    for (n, row) in rows.enumerate() {
        if n > 0 {
            json.push(',');
        }
        json.push('{');
        for (i, (column, value)) in columns.iter().zip(row?).enumerate() {
            if i > 0 {
                json.push(',');
            }
            json_string(&mut json, column);
            json.push(':');
            match value {
                Value::String(Some(s)) => json_string(&mut json, &s),
                Value::Bytes(Some(b)) => {
                    json.push_str("\"\\\\x");
                    json.push_str(&hex::encode(&b));
                    json.push('"');
                }
                Value::BigInt(Some(n)) => {
                    let _ = write!(json, "{n}");
                }
                Value::Int(Some(n)) => {
                    let _ = write!(json, "{n}");
                }
                Value::Bool(Some(b)) => json.push_str(if b { "true" } else { "false" }),
                Value::String(None)
                | Value::Bytes(None)
                | Value::BigInt(None)
                | Value::Int(None)
                | Value::Bool(None) => json.push_str("null"),
                other => {
                    return Err(RepoError::Corrupt(format!(
                        "no JSON form for the {column} value {other:?}"
                    )));
                }
            }
        }
        json.push('}');
    }
    json.push(']');
    Ok(json)
}

/// `s` as a JSON string.
fn json_string(json: &mut String, s: &str) {
    // Writing a `str` into a `String` cannot fail.
    if let Ok(quoted) = serde_json::to_string(s) {
        json.push_str(&quoted);
    }
}

pub(crate) async fn store(
    db: &DatabaseConnection,
    batch: &InboundBatch,
) -> Result<BatchOutcome, RepoError> {
    let journal = json_rows(
        &JOURNAL_COLUMNS,
        batch.journal.iter().map(|e| Ok(journal_row(e))),
    )?;
    let messages = json_rows(&message_columns(), batch.messages.iter().map(message_row))?;
    let events = json_rows(
        &EVENT_COLUMNS,
        batch.events.iter().map(|e| Ok(event_row(e))),
    )?;
    let jobs = json_rows(
        &JOB_FIELDS,
        batch.jobs.iter().map(|job| {
            Ok(vec![
                Value::from(job.id.as_str()),
                job.kind().as_str().into(),
                job.account_id
                    .as_ref()
                    .map(|a| a.as_str().to_owned())
                    .into(),
                job.subject.as_str().into(),
                crate::compact::encode(job.work.payload()).into(),
                to_micros(job.run_at).into(),
            ])
        }),
    )?;
    let routes = json_rows(
        &ROUTE_FIELDS,
        batch.routes.iter().map(|(account, route)| {
            Ok(vec![
                Value::from(account.as_str()),
                route
                    .as_ref()
                    .map(|r| r.account_id.as_str().to_owned())
                    .into(),
                route.as_ref().map(|r| r.forwards_to_crm).into(),
                route.as_ref().map(|r| r.answers).into(),
            ])
        }),
    )?;
    let statement = Statement::from_sql_and_values(
        db.get_database_backend(),
        BATCH_SQL.as_str(),
        [journal, messages, events, jobs, routes].map(Value::from),
    );
    let rows = db.query_all_raw(statement).await.map_err(unavailable)?;
    outcome_from_rows(&rows)
}

/// The outcome of the batch statement: rows of `(t, id)` where `t` is `m` for a message and
/// `e` for an event, or the one row `('r', '')` when the routes no longer held.
fn outcome_from_rows(rows: &[QueryResult]) -> Result<BatchOutcome, RepoError> {
    let mut outcome = BatchOutcome::default();
    for row in rows {
        let table: String = row.try_get_by_index(0).map_err(unavailable)?;
        let id: String = row.try_get_by_index(1).map_err(unavailable)?;
        let corrupt = |e: insta_router_domain::FieldError| RepoError::Corrupt(e.to_string());
        if table == "r" {
            return Ok(super::routes_changed());
        }
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
