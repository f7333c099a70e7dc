//! [`InboundStore`] on sea-orm: one database transaction per batch, multi-row statements
//! throughout. On a SQLite file a thread of its own writes the batch (`inbound_sqlite`), on
//! PostgreSQL one statement of chained CTEs (`inbound_postgres`), on MySQL, in-memory SQLite
//! and for PostgreSQL batches that do not fit one statement a sequence of statements in one
//! transaction.

use async_trait::async_trait;
use std::collections::{HashMap, HashSet};

use insta_router_domain::{
    AccountId, Conversation, ConversationId, Direction, EventId, InboundEvent, InboundEventKind,
    InstagramAccountId, Message, MessageId, NewJob, Parties,
};
use insta_router_ports::{
    BatchOutcome, Deletion, EventRecord, InboundBatch, InboundStore, JournalEntry, PlannedJob,
    RepoError, with_account_id,
};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, InsertStatement, OnConflict, Query};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, QueryResult, Statement,
    TransactionTrait, Value,
};
use serde_json::json;

use crate::Backend;
use crate::conversations::upsert_sql;
use crate::error::{retry_deadlocks, unavailable};
use crate::inbound_sqlite::SqliteWriter;
use crate::messages::message_row;
use crate::time::to_micros;

/// Most bound values per statement: under SQLite's 32766 and PostgreSQL's 65535.
const MAX_PARAMS: usize = 30_000;

/// The inbound pipeline's tables.
#[derive(Debug, Clone)]
pub struct SeaInboundStore {
    db: DatabaseConnection,
    backend: Backend,
    /// On a SQLite file, the thread that writes the batches (see `inbound_sqlite`).
    sqlite: Option<SqliteWriter>,
}

impl SeaInboundStore {
    pub(crate) fn new(
        db: DatabaseConnection,
        backend: Backend,
        sqlite: Option<SqliteWriter>,
    ) -> Self {
        Self {
            db,
            backend,
            sqlite,
        }
    }
}

#[async_trait]
impl InboundStore for SeaInboundStore {
    async fn store(&self, batch: InboundBatch) -> Result<BatchOutcome, RepoError> {
        if let Some(writer) = &self.sqlite {
            return writer.store(batch).await;
        }
        retry_deadlocks(|| self.store_once(&batch)).await
    }
}

impl SeaInboundStore {
    async fn store_once(&self, batch: &InboundBatch) -> Result<BatchOutcome, RepoError> {
        if self.backend == Backend::Postgres && crate::inbound_postgres::fits(batch) {
            return crate::inbound_postgres::store(&self.db, batch).await;
        }
        let txn = self.db.begin().await.map_err(unavailable)?;
        let unit = SeaInboundUnit {
            txn,
            backend: self.backend,
        };
        unit.append_journal(&batch.journal).await?;
        let new_messages = unit.insert_messages(&batch.messages).await?;
        let new_events = unit.insert_events(&batch.events).await?;
        let is_new: HashSet<&str> = new_messages
            .iter()
            .map(MessageId::as_str)
            .chain(new_events.iter().map(EventId::as_str))
            .collect();

        let deletions: Vec<&Deletion> = batch
            .deletions
            .iter()
            .filter(|d| is_new.contains(d.event_id.as_str()))
            .collect();
        unit.mark_deleted(&deletions).await?;

        let mut conversations: HashMap<&ConversationId, Conversation> = HashMap::new();
        for message in batch
            .messages
            .iter()
            .filter(|m| is_new.contains(m.id.as_str()))
        {
            let inbound = message.direction == Direction::Inbound;
            conversations
                .entry(&message.conversation_id)
                .and_modify(|c| c.record(message.sent_at, inbound))
                .or_insert_with(|| {
                    Conversation::start(
                        message.instagram_account_id.clone(),
                        message.customer_id().clone(),
                        message.sent_at,
                        inbound,
                    )
                });
        }
        // In key order, so concurrent batches lock shared conversations in the same order.
        let mut conversations: Vec<Conversation> = conversations.into_values().collect();
        conversations.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        unit.record_conversations(&conversations).await?;

        let planned: Vec<&PlannedJob> = batch
            .jobs
            .iter()
            .filter(|j| is_new.contains(j.job.subject.as_str()))
            .collect();
        let mut accounts: Vec<&InstagramAccountId> =
            planned.iter().map(|j| &j.instagram_account_id).collect();
        accounts.sort();
        accounts.dedup();
        let routes: HashMap<InstagramAccountId, (AccountId, bool)> = unit
            .routes(&accounts)
            .await?
            .into_iter()
            .map(|r| (r.instagram_account_id, (r.account_id, r.forwards_to_crm)))
            .collect();
        let jobs: Vec<NewJob> = planned
            .into_iter()
            .filter_map(|planned| {
                let route = routes.get(&planned.instagram_account_id);
                if planned.requires_crm && !route.is_some_and(|(_, crm)| *crm) {
                    return None;
                }
                let mut job = planned.job.clone();
                if let Some((id, _)) = route {
                    job.payload = with_account_id(&job.payload, id);
                    job.account_id = Some(id.clone());
                }
                Some(job)
            })
            .collect();
        crate::jobs::insert_jobs(&unit.txn, &jobs).await?;
        unit.txn.commit().await.map_err(unavailable)?;
        Ok(BatchOutcome {
            new_messages,
            new_events,
        })
    }
}

/// How events for one Instagram account are routed.
struct Route {
    instagram_account_id: InstagramAccountId,
    account_id: AccountId,
    forwards_to_crm: bool,
}

struct SeaInboundUnit {
    txn: DatabaseTransaction,
    backend: Backend,
}

impl SeaInboundUnit {
    fn db_backend(&self) -> sea_orm::DatabaseBackend {
        self.txn.get_database_backend()
    }

    async fn execute(&self, statement: &InsertStatement) -> Result<(), RepoError> {
        let statement = self.db_backend().build(statement);
        self.txn.execute_raw(statement).await.map_err(unavailable)?;
        Ok(())
    }

    async fn query(&self, statement: Statement) -> Result<Vec<QueryResult>, RepoError> {
        self.txn.query_all_raw(statement).await.map_err(unavailable)
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
        let mut inserted = Vec::new();
        for chunk in chunks(rows, columns.len()) {
            let ids: Vec<Value> = chunk.iter().map(|row| row[0].clone()).collect();
            let mut insert = insert_into(table, columns, chunk)?;
            insert.on_conflict(
                OnConflict::columns(unique.iter().map(|c| Alias::new(*c)))
                    .do_nothing_on([Alias::new("id")])
                    .to_owned(),
            );
            if self.backend == Backend::MySql {
                self.execute(&insert).await?;
                let select = Query::select()
                    .column(Alias::new("id"))
                    .from(Alias::new(table))
                    .and_where(Expr::col(Alias::new("id")).is_in(ids))
                    .to_owned();
                let rows = self.query(self.db_backend().build(&select)).await?;
                inserted.extend(ids_of(&rows)?);
            } else {
                insert.returning_col(Alias::new("id"));
                let rows = self.query(self.db_backend().build(&insert)).await?;
                inserted.extend(ids_of(&rows)?);
            }
        }
        Ok(inserted)
    }
}

impl SeaInboundUnit {
    async fn append_journal(&self, entries: &[JournalEntry]) -> Result<(), RepoError> {
        let columns = JOURNAL_COLUMNS;
        let rows = entries.iter().map(journal_row).collect();
        for chunk in chunks(rows, columns.len()) {
            let mut insert = insert_into("webhook_journal", &columns, chunk)?;
            insert.on_conflict(journal_on_conflict());
            self.execute(&insert).await?;
        }
        Ok(())
    }

    async fn routes(&self, accounts: &[&InstagramAccountId]) -> Result<Vec<Route>, RepoError> {
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        let select = Query::select()
            .columns([
                Alias::new("id"),
                Alias::new("instagram_account_id"),
                Alias::new("crm_webhook_url"),
            ])
            .from(Alias::new("accounts"))
            .and_where(
                Expr::col(Alias::new("instagram_account_id"))
                    .is_in(accounts.iter().map(|a| a.as_str().to_owned())),
            )
            .to_owned();
        let rows = self.query(self.db_backend().build(&select)).await?;
        rows.iter()
            .map(|row| {
                let get = |col: &str| row.try_get::<String>("", col).map_err(unavailable);
                let corrupt = |e: insta_router_domain::FieldError| {
                    RepoError::Corrupt(format!("account route: {e}"))
                };
                let url = row
                    .try_get::<Option<String>>("", "crm_webhook_url")
                    .map_err(unavailable)?;
                Ok(Route {
                    instagram_account_id: InstagramAccountId::parse(
                        "instagram_account_id",
                        &get("instagram_account_id")?,
                    )
                    .map_err(corrupt)?,
                    account_id: AccountId::parse("id", &get("id")?).map_err(corrupt)?,
                    forwards_to_crm: url.is_some_and(|u| !u.is_empty()),
                })
            })
            .collect()
    }

    async fn insert_messages(&self, messages: &[Message]) -> Result<Vec<MessageId>, RepoError> {
        let rows = messages
            .iter()
            .map(message_row)
            .collect::<Result<Vec<_>, _>>()?;
        let ids = self
            .insert_if_absent(
                "messages",
                &crate::messages::columns(),
                &["instagram_account_id", "mid"],
                rows,
            )
            .await?;
        ids.iter()
            .map(|id| MessageId::parse("id", id).map_err(|e| RepoError::Corrupt(e.to_string())))
            .collect()
    }

    async fn insert_events(&self, events: &[EventRecord]) -> Result<Vec<EventId>, RepoError> {
        let columns = EVENT_COLUMNS;
        let rows = events.iter().map(event_row).collect();
        let ids = self
            .insert_if_absent(
                "inbound_events",
                &columns,
                &["instagram_account_id", "dedup_key"],
                rows,
            )
            .await?;
        ids.iter()
            .map(|id| EventId::parse("id", id).map_err(|e| RepoError::Corrupt(e.to_string())))
            .collect()
    }

    async fn mark_deleted(&self, deletions: &[&Deletion]) -> Result<(), RepoError> {
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
            self.txn
                .execute_raw(self.db_backend().build(&update))
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn record_conversations(&self, conversations: &[Conversation]) -> Result<(), RepoError> {
        // One statement per chunk: the upsert's VALUES group repeated; rows in id order, so
        // concurrent writers lock conversations in the same order.
        let mut sorted: Vec<&Conversation> = conversations.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        for chunk in sorted.chunks(MAX_PARAMS / 6) {
            let single = upsert_sql(self.backend);
            let (head, tail) = split_values(single);
            let mut sql = String::from(head);
            let mut values = Vec::with_capacity(chunk.len() * 6);
            for (i, c) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&placeholders(self.backend, i * 6, 6));
                values.extend([
                    Value::from(c.id.as_str()),
                    c.instagram_account_id.as_str().into(),
                    c.customer_id.as_str().into(),
                    to_micros(c.started_at).into(),
                    to_micros(c.last_message_at).into(),
                    c.last_inbound_at.map(to_micros).into(),
                ]);
            }
            sql.push_str(tail);
            let statement = Statement::from_sql_and_values(self.db_backend(), sql, values);
            self.txn.execute_raw(statement).await.map_err(unavailable)?;
        }
        Ok(())
    }
}

pub(crate) const JOURNAL_COLUMNS: [&str; 6] =
    ["id", "received_at", "body", "status", "error", "events"];

/// What writing a journal entry whose id is journaled already does (a replay of a failed
/// entry): the entry takes the new status, error and event count; its body stays.
pub(crate) const JOURNAL_UPSERT: &str = " ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
     error = excluded.error, events = excluded.events";

/// [`JOURNAL_UPSERT`] for sea-query (MySQL's `ON DUPLICATE KEY UPDATE`).
pub(crate) fn journal_on_conflict() -> OnConflict {
    OnConflict::column(Alias::new("id"))
        .update_columns([
            Alias::new("status"),
            Alias::new("error"),
            Alias::new("events"),
        ])
        .to_owned()
}

pub(crate) fn journal_row(e: &JournalEntry) -> Vec<Value> {
    vec![
        e.id.as_str().into(),
        to_micros(e.received_at).into(),
        e.body.clone().into(),
        e.status.as_str().into(),
        e.error.clone().into(),
        i64::from(e.events).into(),
    ]
}

pub(crate) const EVENT_COLUMNS: [&str; 10] = [
    "id",
    "instagram_account_id",
    "kind",
    "customer_id",
    "mid",
    "dedup_key",
    "detail",
    "occurred_at",
    "received_at",
    "webhook_id",
];

pub(crate) fn event_row(r: &EventRecord) -> Vec<Value> {
    let parties = r.event.parties();
    vec![
        r.id.as_str().into(),
        r.event
            .account()
            .map_or("", InstagramAccountId::as_str)
            .into(),
        r.event.kind_name().into(),
        parties.map(|p| p.customer.as_str().to_owned()).into(),
        target_mid(&r.event).into(),
        dedup_hash(&r.event.dedup_key()).into(),
        event_detail(&r.event).into(),
        to_micros(r.event.occurred_at).into(),
        to_micros(r.received_at).into(),
        r.webhook_id.as_str().into(),
    ]
}

/// An `INSERT INTO table (columns) VALUES ...` of `rows`.
pub(crate) fn insert_into(
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
) -> Result<InsertStatement, RepoError> {
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new(table))
        .columns(columns.iter().map(|c| Alias::new(*c)));
    for row in rows {
        insert
            .values(row.into_iter().map(Expr::val))
            .map_err(|e| RepoError::Corrupt(format!("building an insert into {table}: {e}")))?;
    }
    Ok(insert)
}

/// `rows` in chunks that stay under the bound-parameter limits.
pub(crate) fn chunks(rows: Vec<Vec<Value>>, columns: usize) -> Vec<Vec<Vec<Value>>> {
    let per_chunk = (MAX_PARAMS / columns.max(1)).max(1);
    let mut out = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        out.push(rows.by_ref().take(per_chunk).collect());
    }
    out
}

fn ids_of(rows: &[QueryResult]) -> Result<Vec<String>, RepoError> {
    rows.iter()
        .map(|r| r.try_get_by_index::<String>(0).map_err(unavailable))
        .collect()
}

/// The `ON CONFLICT ... DO UPDATE` of the conversation upsert, which merges timestamps, for
/// statements that insert conversations from a `SELECT`.
pub(crate) fn conversation_merge(backend: Backend) -> &'static str {
    split_values(upsert_sql(backend)).1
}

/// Splits a single-row `INSERT ... VALUES (...) rest` into `INSERT ... VALUES ` and ` rest`.
fn split_values(sql: &str) -> (&str, &str) {
    let start = sql
        .find("VALUES (")
        .map_or(sql.len(), |i| i + "VALUES ".len());
    let end = sql[start..].find(')').map_or(sql.len(), |i| start + i + 1);
    (&sql[..start], &sql[end..])
}

/// `(?, ?, ...)` or `($n, ...)` for one row of `count` values after `offset` earlier ones.
fn placeholders(backend: Backend, offset: usize, count: usize) -> String {
    let marks: Vec<String> = (1..=count)
        .map(|i| match backend {
            Backend::Postgres => format!("${}", offset + i),
            Backend::Sqlite | Backend::MySql => "?".to_owned(),
        })
        .collect();
    format!("({})", marks.join(", "))
}

/// The dedup key as stored: its SHA-256, so keys of any length fit one short indexed column.
fn dedup_hash(key: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, key.as_bytes()))
}

fn target_mid(event: &InboundEvent) -> Option<String> {
    match &event.kind {
        InboundEventKind::Deleted { mid, .. } | InboundEventKind::Reaction { mid, .. } => {
            Some(mid.as_str().to_owned())
        }
        InboundEventKind::Read { mid, .. } => mid.as_ref().map(|m| m.as_str().to_owned()),
        InboundEventKind::Message(m) => Some(m.mid.as_str().to_owned()),
        InboundEventKind::Postback { .. }
        | InboundEventKind::Referral { .. }
        | InboundEventKind::Unrecognized { .. } => None,
    }
}

/// The kind-specific part of an event, as JSON.
pub(crate) fn event_detail(event: &InboundEvent) -> String {
    let parties =
        |p: &Parties| json!({"account": p.account.as_str(), "customer": p.customer.as_str()});
    let detail = match &event.kind {
        InboundEventKind::Message(m) => {
            json!({"parties": parties(&m.parties), "mid": m.mid.as_str()})
        }
        InboundEventKind::Deleted { parties: p, mid } => {
            json!({"parties": parties(p), "mid": mid.as_str()})
        }
        InboundEventKind::Reaction {
            parties: p,
            mid,
            action,
            reaction,
            emoji,
        } => json!({
            "parties": parties(p), "mid": mid.as_str(), "action": action.as_str(),
            "reaction": reaction, "emoji": emoji,
        }),
        InboundEventKind::Read { parties: p, mid } => {
            json!({"parties": parties(p), "mid": mid.as_ref().map(|m| m.as_str())})
        }
        InboundEventKind::Postback {
            parties: p,
            title,
            payload,
        } => json!({"parties": parties(p), "title": title, "payload": payload}),
        InboundEventKind::Referral {
            parties: p,
            referral,
        } => json!({
            "parties": parties(p),
            "referral": crate::messages::referral_json(referral),
        }),
        InboundEventKind::Unrecognized {
            field, reason, raw, ..
        } => json!({"field": field, "reason": reason, "raw": raw}),
    };
    let mut detail = detail;
    if event.standby {
        detail["standby"] = json!(true);
    }
    detail.to_string()
}
