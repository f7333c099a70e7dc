//! [`OutboundStore`] on sea-orm: the `outbound_messages` table, written in one transaction
//! with the send job, and with the sent copy and CRM event when a send settles.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use insta_router_domain::rules::QuickReply;
use insta_router_domain::{
    AccountId, ConversationId, Direction, IdempotencyKey, InstagramAccountId, InstagramCommentId,
    InstagramMessageId, InstagramUserId, Media, MediaKind, MessageId, NewJob, OutboundContent,
    OutboundMessage, OutboundStatus, SendError, SendRequest,
};
use insta_router_ports::{Accepted, OutboundStore, RepoError, Settlement};
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, Value};
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::{map_err, unavailable};
use crate::sql::{MAX_PARAMS, int_at, returned, statement};
use crate::time::{from_micros, to_micros};

mod groups;

const COLUMNS: &str = "id, account_id, recipient_id, message_text, idempotency_key, status, \
     instagram_message_id, error_code, error_message, created_at, sent_at, content, human_agent, \
     metadata, fingerprint, error_subcode, error_retryable, attempts, reply_to_comment";

/// Sends in the `outbound_messages` table.
#[derive(Debug, Clone)]
pub struct SeaOutboundStore {
    db: DatabaseConnection,
    backend: Backend,
}

/// What a send carries besides its text, as stored in `content`.
#[derive(Serialize, Deserialize, Default)]
struct StoredContent {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    quick_replies: Vec<StoredQuickReply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attachment: Option<StoredMedia>,
}

#[derive(Serialize, Deserialize)]
struct StoredQuickReply {
    title: String,
    payload: String,
}

#[derive(Serialize, Deserialize)]
struct StoredMedia {
    #[serde(rename = "type")]
    kind: String,
    url: String,
}

impl SeaOutboundStore {
    pub(crate) fn new(db: DatabaseConnection, backend: Backend) -> Self {
        Self { db, backend }
    }

    async fn by_key(
        &self,
        account: &AccountId,
        key: &IdempotencyKey,
    ) -> Result<Option<OutboundMessage>, RepoError> {
        let row = self
            .db
            .query_one_raw(statement(
                self.db.get_database_backend(),
                &format!(
                    "SELECT {COLUMNS} FROM outbound_messages WHERE account_id = ? AND idempotency_key = ?"
                ),
                vec![account.as_str().into(), key.as_str().into()],
            ))
            .await
            .map_err(unavailable)?;
        row.as_ref().map(from_row).transpose()
    }

    /// Whether the account has a private reply to `comment` stored.
    async fn replied(
        &self,
        account: &AccountId,
        comment: &InstagramCommentId,
    ) -> Result<bool, RepoError> {
        let row = self
            .db
            .query_one_raw(statement(
                self.db.get_database_backend(),
                "SELECT id FROM outbound_messages WHERE account_id = ? AND reply_to_comment = ?",
                vec![account.as_str().into(), comment.as_str().into()],
            ))
            .await
            .map_err(unavailable)?;
        Ok(row.is_some())
    }

    /// Inserts the send unless its key is taken; true when inserted. MySQL, where a taken key
    /// is a duplicate-key error that leaves the transaction usable (see [`Self::insert_many`]).
    async fn insert(
        &self,
        conn: &impl ConnectionTrait,
        message: &OutboundMessage,
    ) -> Result<bool, RepoError> {
        let values = send_row(message)?;
        let sql = format!(
            "INSERT INTO outbound_messages ({COLUMNS}) VALUES ({})",
            vec!["?"; values.len()].join(", ")
        );
        match conn
            .execute_raw(statement(conn.get_database_backend(), &sql, values.into()))
            .await
            .map_err(map_err("idempotency_key"))
        {
            Ok(result) => Ok(result.rows_affected() == 1),
            Err(RepoError::Conflict { .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// Inserts each of `sends` unless its key is taken, with one statement per chunk (SQLite
    /// and PostgreSQL); which were inserted. Of several with one key, the first is.
    async fn insert_many(
        &self,
        conn: &impl ConnectionTrait,
        sends: &[&OutboundMessage],
    ) -> Result<Vec<bool>, RepoError> {
        let mut inserted = Vec::with_capacity(sends.len());
        for chunk in sends.chunks(MAX_PARAMS / WIDTH) {
            let mut values = Vec::with_capacity(chunk.len() * WIDTH);
            for message in chunk {
                values.extend(send_row(message)?);
            }
            // Without a conflict target: SQLite checks a target against the schema the
            // connection cached, and a connection opened before migration 8 does not know the
            // (account_id, idempotency_key) index yet. The only other unique key is the
            // random id.
            let sql = format!(
                "INSERT INTO outbound_messages ({COLUMNS}) VALUES {} ON CONFLICT DO NOTHING RETURNING id",
                vec![format!("({})", vec!["?"; WIDTH].join(", ")); chunk.len()].join(", ")
            );
            let rows = conn
                .query_all_raw(statement(conn.get_database_backend(), &sql, values))
                .await
                .map_err(unavailable)?;
            inserted.extend(returned(&rows, chunk.iter().map(|m| m.id.as_str()))?);
        }
        Ok(inserted)
    }
}

/// How many values a send's row has: [`COLUMNS`] in [`send_row`].
const WIDTH: usize = 19;

/// `message`'s values in [`COLUMNS`] order.
fn send_row(message: &OutboundMessage) -> Result<[Value; WIDTH], RepoError> {
    let (text, content) = stored_content(&message.request.content)?;
    let r = &message.request;
    Ok([
        message.id.as_str().into(),
        r.account_id.as_str().into(),
        r.recipient_id.as_str().into(),
        text.into(),
        r.idempotency_key.as_str().into(),
        message.status.as_str().into(),
        message
            .instagram_message_id
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .into(),
        message.error.as_ref().map(|e| e.code.clone()).into(),
        message.error.as_ref().map(|e| e.message.clone()).into(),
        to_micros(message.created_at).into(),
        message.sent_at.map(to_micros).into(),
        content.into(),
        r.human_agent.into(),
        r.metadata.clone().into(),
        message.fingerprint.as_str().into(),
        message.error.as_ref().and_then(|e| e.subcode).into(),
        message.error.as_ref().map(|e| e.retryable).into(),
        i32::try_from(message.attempts).unwrap_or(i32::MAX).into(),
        r.reply_to_comment
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .into(),
    ])
}

fn stored_content(content: &OutboundContent) -> Result<(String, Option<String>), RepoError> {
    let (text, stored) = match content {
        OutboundContent::Text {
            text,
            quick_replies,
        } => (
            text.clone(),
            StoredContent {
                quick_replies: quick_replies
                    .iter()
                    .map(|q| StoredQuickReply {
                        title: q.title.clone(),
                        payload: q.payload.clone(),
                    })
                    .collect(),
                attachment: None,
            },
        ),
        OutboundContent::Media(media) => (
            String::new(),
            StoredContent {
                quick_replies: Vec::new(),
                attachment: Some(StoredMedia {
                    kind: media.kind.as_str().to_owned(),
                    url: media.url.clone(),
                }),
            },
        ),
    };
    let json = if stored.quick_replies.is_empty() && stored.attachment.is_none() {
        None
    } else {
        Some(
            serde_json::to_string(&stored)
                .map_err(|e| RepoError::Corrupt(format!("outbound content: {e}")))?,
        )
    };
    Ok((text, json))
}

fn from_row(row: &QueryResult) -> Result<OutboundMessage, RepoError> {
    let get_str = |column: &str| -> Result<String, RepoError> {
        row.try_get::<String>("", column).map_err(unavailable)
    };
    let get_opt = |column: &str| -> Result<Option<String>, RepoError> {
        row.try_get::<Option<String>>("", column)
            .map_err(unavailable)
    };
    let id = get_str("id")?;
    let corrupt = |e: &dyn std::fmt::Display| RepoError::Corrupt(format!("send {id}: {e}"));
    let text = get_str("message_text")?;
    let stored: StoredContent = match get_opt("content")? {
        Some(json) => serde_json::from_str(&json).map_err(|e| corrupt(&e))?,
        None => StoredContent::default(),
    };
    let content = match stored.attachment {
        Some(media) => OutboundContent::Media(Media {
            kind: MediaKind::parse(&media.kind)
                .ok_or_else(|| corrupt(&format!("attachment type {}", media.kind)))?,
            url: media.url,
        }),
        None => OutboundContent::Text {
            text,
            quick_replies: stored
                .quick_replies
                .into_iter()
                .map(|q| QuickReply {
                    title: q.title,
                    payload: q.payload,
                })
                .collect(),
        },
    };
    let status = get_str("status")?;
    let error = match get_opt("error_code")? {
        Some(code) => Some(SendError {
            code,
            subcode: row
                .try_get::<Option<i64>>("", "error_subcode")
                .map_err(unavailable)?,
            message: get_opt("error_message")?.unwrap_or_default(),
            retryable: row
                .try_get::<Option<bool>>("", "error_retryable")
                .map_err(unavailable)?
                .unwrap_or(false),
        }),
        None => None,
    };
    Ok(OutboundMessage {
        id: MessageId::parse("id", &id).map_err(|e| corrupt(&e))?,
        request: SendRequest {
            account_id: AccountId::parse("account_id", &get_str("account_id")?)
                .map_err(|e| corrupt(&e))?,
            recipient_id: InstagramUserId::parse("recipient_id", &get_str("recipient_id")?)
                .map_err(|e| corrupt(&e))?,
            content,
            human_agent: row
                .try_get::<bool>("", "human_agent")
                .map_err(unavailable)?,
            idempotency_key: IdempotencyKey::parse(&get_str("idempotency_key")?)
                .map_err(|e| corrupt(&e))?,
            metadata: get_opt("metadata")?,
            reply_to_comment: get_opt("reply_to_comment")?
                .map(|c| InstagramCommentId::parse("reply_to_comment", &c))
                .transpose()
                .map_err(|e| corrupt(&e))?,
        },
        fingerprint: get_str("fingerprint")?,
        status: OutboundStatus::parse(&status).ok_or_else(|| corrupt(&status))?,
        instagram_message_id: get_opt("instagram_message_id")?
            .map(|m| InstagramMessageId::parse("instagram_message_id", &m))
            .transpose()
            .map_err(|e| corrupt(&e))?,
        error,
        attempts: u32::try_from(int_at(row, 17).unwrap_or(0)).unwrap_or(0),
        created_at: from_micros(row.try_get::<i64>("", "created_at").map_err(unavailable)?)?,
        sent_at: row
            .try_get::<Option<i64>>("", "sent_at")
            .map_err(unavailable)?
            .map(from_micros)
            .transpose()?,
    })
}

#[async_trait]
impl OutboundStore for SeaOutboundStore {
    async fn accept_many(
        &self,
        sends: &[(OutboundMessage, NewJob)],
    ) -> Result<Vec<Result<Accepted, RepoError>>, RepoError> {
        self.accept_group(sends).await
    }

    async fn get(&self, id: &MessageId) -> Result<Option<OutboundMessage>, RepoError> {
        let row = self
            .db
            .query_one_raw(statement(
                self.db.get_database_backend(),
                &format!("SELECT {COLUMNS} FROM outbound_messages WHERE id = ?"),
                vec![id.as_str().into()],
            ))
            .await
            .map_err(unavailable)?;
        row.as_ref().map(from_row).transpose()
    }

    async fn get_many(&self, ids: &[MessageId]) -> Result<Vec<OutboundMessage>, RepoError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_PARAMS) {
            let rows = self
                .db
                .query_all_raw(statement(
                    self.db.get_database_backend(),
                    &format!(
                        "SELECT {COLUMNS} FROM outbound_messages WHERE id IN ({})",
                        vec!["?"; chunk.len()].join(", ")
                    ),
                    chunk.iter().map(|id| id.as_str().into()).collect(),
                ))
                .await
                .map_err(unavailable)?;
            for row in &rows {
                found.push(from_row(row)?);
            }
        }
        Ok(found)
    }

    async fn start_attempts(&self, ids: &[MessageId]) -> Result<Vec<bool>, RepoError> {
        self.start_group(ids).await
    }

    async fn settle_many(
        &self,
        settlements: &[(MessageId, OutboundStatus, Settlement)],
    ) -> Result<Vec<bool>, RepoError> {
        self.settle_group(settlements).await
    }

    async fn find_echo(
        &self,
        account: &InstagramAccountId,
        conversation: &ConversationId,
        text: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<(InstagramMessageId, DateTime<Utc>)>, RepoError> {
        let backend = self.db.get_database_backend();
        // Meta's clock and ours differ a little: look a minute before the send was accepted.
        let since = since - TimeDelta::minutes(1);
        let row = self
            .db
            .query_one_raw(statement(
                backend,
                "SELECT m.mid, m.timestamp FROM messages m WHERE m.instagram_account_id = ? \
                 AND m.conversation_id = ? AND m.direction = ? AND m.message_text = ? AND m.timestamp >= ? \
                 AND m.mid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM outbound_messages o \
                 WHERE o.instagram_message_id = m.mid) ORDER BY m.timestamp LIMIT 1",
                vec![
                    account.as_str().into(),
                    conversation.as_str().into(),
                    Direction::Outbound.as_str().into(),
                    text.into(),
                    to_micros(since).into(),
                ],
            ))
            .await
            .map_err(unavailable)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mid: String = row.try_get_by_index(0).map_err(unavailable)?;
        let at: i64 = row.try_get_by_index(1).map_err(unavailable)?;
        let mid = InstagramMessageId::parse("mid", &mid)
            .map_err(|e| RepoError::Corrupt(format!("echo: {e}")))?;
        Ok(Some((mid, from_micros(at)?)))
    }
}
