//! [`ConversationRepository`] on sea-orm.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::{
    Conversation, ConversationId, Direction, FieldError, InstagramAccountId, InstagramUserId,
};
use insta_router_ports::{
    ConversationRepository, ConversationSummary, Inbox, MessageRepository, Page, PageRequest,
    RepoError,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, Value,
};

use crate::SeaMessageRepository;
use crate::backend::Backend;
use crate::entity::conversations::{Column, Entity, Model};
use crate::error::unavailable;
use crate::page::{after_time_cursor, into_page, time_cursor};
use crate::sql::{MAX_PARAMS, int_at, statement, value_groups};
use crate::time::{from_micros, to_micros};

/// Conversations in the `conversations` table.
#[derive(Debug, Clone)]
pub struct SeaConversationRepository {
    db: DatabaseConnection,
    backend: Backend,
}

impl SeaConversationRepository {
    pub(crate) fn new(db: DatabaseConnection, backend: Backend) -> Self {
        Self { db, backend }
    }
}

/// The conversations table's columns, in the order of [`conversation_row`].
pub(crate) const COLUMNS: [&str; 6] = [
    "id",
    "instagram_account_id",
    "customer_id",
    "started_at",
    "last_message_at",
    "last_inbound_at",
];

/// What writing a conversation that exists does, per backend: the earliest start, the latest
/// message and the latest inbound time win, whatever order writers commit in (the SQL form of
/// [`Conversation::record`]).
pub(crate) fn merge_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            " ON CONFLICT (id) DO UPDATE SET \
             started_at = min(conversations.started_at, excluded.started_at), \
             last_message_at = max(conversations.last_message_at, excluded.last_message_at), \
             last_inbound_at = max(coalesce(conversations.last_inbound_at, excluded.last_inbound_at), coalesce(excluded.last_inbound_at, conversations.last_inbound_at))"
        }
        Backend::Postgres => {
            " ON CONFLICT (id) DO UPDATE SET \
             started_at = LEAST(conversations.started_at, excluded.started_at), \
             last_message_at = GREATEST(conversations.last_message_at, excluded.last_message_at), \
             last_inbound_at = GREATEST(conversations.last_inbound_at, excluded.last_inbound_at)"
        }
        // `VALUES(col)`, not the row alias of MySQL 8.0.19+, which MariaDB lacks.
        Backend::MySql => {
            " ON DUPLICATE KEY UPDATE \
             started_at = LEAST(started_at, VALUES(started_at)), \
             last_message_at = GREATEST(last_message_at, VALUES(last_message_at)), \
             last_inbound_at = GREATEST(COALESCE(last_inbound_at, VALUES(last_inbound_at)), COALESCE(VALUES(last_inbound_at), last_inbound_at))"
        }
    }
}

/// The upsert of `rows` conversations (distinct ids), merged into those that exist.
pub(crate) fn upsert_sql(backend: Backend, rows: usize) -> String {
    format!(
        "INSERT INTO conversations ({}) VALUES {}{}",
        COLUMNS.join(", "),
        value_groups(backend, rows, COLUMNS.len()),
        merge_sql(backend)
    )
}

/// `conversation`'s values in [`COLUMNS`] order.
pub(crate) fn conversation_row(c: &Conversation) -> Vec<Value> {
    vec![
        c.id.as_str().into(),
        c.instagram_account_id.as_str().into(),
        c.customer_id.as_str().into(),
        to_micros(c.started_at).into(),
        to_micros(c.last_message_at).into(),
        c.last_inbound_at.map(to_micros).into(),
    ]
}

/// Records `conversations` on any connection or transaction, in id order so that concurrent
/// writers lock shared conversations in the same order. Several with one id are merged first:
/// a multi-row upsert may not touch a row twice.
pub(crate) async fn record_on(
    conn: &impl ConnectionTrait,
    backend: Backend,
    conversations: &[Conversation],
) -> Result<(), RepoError> {
    let mut sorted: Vec<Conversation> = Vec::with_capacity(conversations.len());
    let mut by_id: Vec<&Conversation> = conversations.iter().collect();
    by_id.sort_by(|a, b| a.id.cmp(&b.id));
    for c in by_id {
        match sorted.last_mut() {
            Some(last) if last.id == c.id => {
                last.record(c.started_at, false);
                last.record(c.last_message_at, false);
                if let Some(at) = c.last_inbound_at {
                    last.record(at, true);
                }
            }
            _ => sorted.push(c.clone()),
        }
    }
    for chunk in sorted.chunks(MAX_PARAMS / COLUMNS.len()) {
        let values = chunk.iter().flat_map(conversation_row).collect::<Vec<_>>();
        let statement = Statement::from_sql_and_values(
            conn.get_database_backend(),
            upsert_sql(backend, chunk.len()),
            values,
        );
        conn.execute_raw(statement).await.map_err(unavailable)?;
    }
    Ok(())
}

#[async_trait]
impl ConversationRepository for SeaConversationRepository {
    #[tracing::instrument(skip_all, fields(conversation_id = %conversation.id))]
    async fn record(&self, conversation: &Conversation) -> Result<(), RepoError> {
        record_on(&self.db, self.backend, std::slice::from_ref(conversation)).await
    }

    async fn get(&self, id: &ConversationId) -> Result<Option<Conversation>, RepoError> {
        let row = Entity::find_by_id(id.as_str().to_owned())
            .one(&self.db)
            .await
            .map_err(unavailable)?;
        row.map(from_model).transpose()
    }

    async fn get_many(&self, ids: &[ConversationId]) -> Result<Vec<Conversation>, RepoError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_PARAMS) {
            let rows = Entity::find()
                .filter(Column::Id.is_in(chunk.iter().map(|id| id.as_str().to_owned())))
                .all(&self.db)
                .await
                .map_err(unavailable)?;
            for row in rows {
                found.push(from_model(row)?);
            }
        }
        Ok(found)
    }

    async fn list_by_account(
        &self,
        account: &InstagramAccountId,
        page: PageRequest,
    ) -> Result<Page<Conversation>, RepoError> {
        self.page_of(account, &page, from_model).await
    }
}

fn from_model(row: Model) -> Result<Conversation, RepoError> {
    let field = |e: FieldError| RepoError::Corrupt(format!("conversation {}: {e}", row.id));
    Ok(Conversation {
        id: ConversationId::parse("id", &row.id).map_err(field)?,
        instagram_account_id: InstagramAccountId::parse(
            "instagram_account_id",
            &row.instagram_account_id,
        )
        .map_err(field)?,
        customer_id: InstagramUserId::parse("customer_id", &row.customer_id).map_err(field)?,
        started_at: from_micros(row.started_at)?,
        last_message_at: from_micros(row.last_message_at)?,
        last_inbound_at: row.last_inbound_at.map(from_micros).transpose()?,
    })
}

#[async_trait]
impl Inbox for SeaConversationRepository {
    async fn conversations(
        &self,
        account: &InstagramAccountId,
        page: PageRequest,
    ) -> Result<Page<ConversationSummary>, RepoError> {
        let page = self.page_of(account, &page, Ok).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for row in page.items {
            items.push(self.summary(row).await?);
        }
        Ok(Page {
            items,
            next: page.next,
        })
    }

    async fn conversation(
        &self,
        id: &ConversationId,
    ) -> Result<Option<ConversationSummary>, RepoError> {
        let row = Entity::find_by_id(id.as_str().to_owned())
            .one(&self.db)
            .await
            .map_err(unavailable)?;
        match row {
            Some(row) => Ok(Some(self.summary(row).await?)),
            None => Ok(None),
        }
    }

    async fn mark_seen(&self, id: &ConversationId, at: DateTime<Utc>) -> Result<bool, RepoError> {
        let result = self
            .db
            .execute_raw(statement(
                self.db.get_database_backend(),
                "UPDATE conversations SET seen_at = ? WHERE id = ?",
                vec![to_micros(at).into(), id.as_str().into()],
            ))
            .await
            .map_err(unavailable)?;
        Ok(result.rows_affected() == 1)
    }
}

impl SeaConversationRepository {
    /// A page of an account's conversations, most recently active first.
    async fn page_of<T>(
        &self,
        account: &InstagramAccountId,
        page: &PageRequest,
        convert: impl Fn(Model) -> Result<T, RepoError>,
    ) -> Result<Page<T>, RepoError> {
        let limit = page.effective_limit();
        let mut query = Entity::find()
            .filter(Column::InstagramAccountId.eq(account.as_str()))
            .order_by_desc(Column::LastMessageAt)
            .order_by_desc(Column::Id)
            .limit(u64::from(limit) + 1);
        if let Some(after) = &page.after {
            query = query.filter(after_time_cursor(after, Column::LastMessageAt, Column::Id)?);
        }
        let rows = query.all(&self.db).await.map_err(unavailable)?;
        into_page(
            rows,
            limit,
            |r| time_cursor(r.last_message_at, &r.id),
            convert,
        )
    }

    /// The conversation with its newest message and unread count: inbound messages, not
    /// unsent, newer than both the business's last message and its last mark-seen.
    async fn summary(&self, row: Model) -> Result<ConversationSummary, RepoError> {
        let last_message = SeaMessageRepository::new(self.db.clone())
            .list_by_conversation(
                &ConversationId::parse("id", &row.id)
                    .map_err(|e| RepoError::Corrupt(format!("conversation: {e}")))?,
                PageRequest {
                    after: None,
                    limit: 1,
                },
            )
            .await?
            .items
            .pop();
        let unread = self
            .db
            .query_one_raw(statement(
                self.db.get_database_backend(),
                "SELECT count(*) FROM messages WHERE conversation_id = ? AND direction = ? \
                 AND deleted_at IS NULL AND timestamp > ? AND timestamp > coalesce((SELECT max(o.timestamp) \
                 FROM messages o WHERE o.conversation_id = ? AND o.direction = ?), 0)",
                vec![
                    row.id.as_str().into(),
                    Direction::Inbound.as_str().into(),
                    row.seen_at.unwrap_or(0).into(),
                    row.id.as_str().into(),
                    Direction::Outbound.as_str().into(),
                ],
            ))
            .await
            .map_err(unavailable)?
            .and_then(|r| int_at(&r, 0))
            .unwrap_or(0);
        let seen_at = row.seen_at.map(from_micros).transpose()?;
        Ok(ConversationSummary {
            conversation: from_model(row)?,
            last_message,
            unread: u32::try_from(unread).unwrap_or(u32::MAX),
            seen_at,
        })
    }
}
