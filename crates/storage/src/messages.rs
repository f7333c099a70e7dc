//! [`MessageRepository`] on sea-orm.

use async_trait::async_trait;
use insta_router_domain::{
    Attachment, AttachmentKind, ConversationId, Direction, FieldError, InstagramAccountId,
    InstagramMessageId, InstagramUserId, Message, MessageContext, MessageId, MessageKind, Referral,
    ReplyTo,
};
use insta_router_ports::{MessageRepository, Page, PageRequest, RepoError};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend,
    DatabaseConnection, EntityTrait, IdenStatic, Iterable, QueryFilter, QueryOrder, QuerySelect,
    Value,
};
use serde::{Deserialize, Serialize};

use crate::entity::messages::{ActiveModel, Column, Entity, Model};

/// The columns of `messages`, in the entity's order, which is the order [`message_row`] gives
/// values in.
pub(crate) fn columns() -> Vec<&'static str> {
    Column::iter().map(|c| c.as_str()).collect()
}

/// One message as the values of [`columns`].
pub(crate) fn message_row(message: &Message) -> Result<Vec<Value>, RepoError> {
    let active = to_active(message)?;
    Ok(Column::iter()
        .map(|c| active.get(c).into_value().unwrap_or(Value::String(None)))
        .collect())
}

/// A referral as stored.
pub(crate) fn referral_json(r: &Referral) -> serde_json::Value {
    serde_json::json!({
        "ref": r.ref_param, "source": r.source, "type": r.kind,
        "ad_id": r.ad_id, "ad_title": r.ad_title,
    })
}

#[derive(Serialize, Deserialize, Default)]
struct StoredContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    referral: Option<StoredReferral>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    standby: bool,
}

#[derive(Serialize, Deserialize)]
struct StoredReferral {
    #[serde(rename = "ref")]
    ref_param: Option<String>,
    source: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    ad_id: Option<String>,
    ad_title: Option<String>,
}
use crate::error::{map_err, unavailable};
use crate::page::{after_time_cursor, into_page, time_cursor};
use crate::sql::MAX_PARAMS;
use crate::time::{from_micros, to_micros};

/// Messages in the `messages` table.
#[derive(Debug, Clone)]
pub struct SeaMessageRepository {
    db: DatabaseConnection,
}

impl SeaMessageRepository {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait]
impl MessageRepository for SeaMessageRepository {
    #[tracing::instrument(skip_all, fields(message_id = %message.id))]
    async fn insert_if_absent(&self, message: &Message) -> Result<bool, RepoError> {
        insert_if_absent(&self.db, message).await
    }

    async fn get(&self, id: &MessageId) -> Result<Option<Message>, RepoError> {
        let row = Entity::find_by_id(id.as_str().to_owned())
            .one(&self.db)
            .await
            .map_err(unavailable)?;
        row.map(from_model).transpose()
    }

    async fn list_by_conversation(
        &self,
        conversation: &ConversationId,
        page: PageRequest,
    ) -> Result<Page<Message>, RepoError> {
        let limit = page.effective_limit();
        let mut query = Entity::find()
            .filter(Column::ConversationId.eq(conversation.as_str()))
            .order_by_desc(Column::Timestamp)
            .order_by_desc(Column::Id)
            .limit(u64::from(limit) + 1);
        if let Some(after) = &page.after {
            query = query.filter(after_time_cursor(after, Column::Timestamp, Column::Id)?);
        }
        let rows = query.all(&self.db).await.map_err(unavailable)?;
        into_page(rows, limit, |r| time_cursor(r.timestamp, &r.id), from_model)
    }
}

/// Stores `message` on any connection or transaction unless one with the same account and
/// mid exists; returns whether it was stored.
pub(crate) async fn insert_if_absent(
    conn: &impl ConnectionTrait,
    message: &Message,
) -> Result<bool, RepoError> {
    let insert = Entity::insert(to_active(message)?);
    if conn.get_database_backend() == DatabaseBackend::MySql {
        // MySQL has no `ON CONFLICT DO NOTHING`, and its `ON DUPLICATE KEY` form reports a
        // found row as affected; a duplicate-key error leaves the transaction usable there.
        return match insert
            .exec_without_returning(conn)
            .await
            .map_err(map_err("mid"))
        {
            Ok(_) => Ok(true),
            Err(RepoError::Conflict { .. }) => Ok(false),
            Err(other) => Err(other),
        };
    }
    let inserted = insert
        .on_conflict(same_mid())
        .exec_without_returning(conn)
        .await
        .map_err(unavailable)?;
    Ok(inserted > 0)
}

/// What a stored message with the same account and mid makes an insert do: nothing.
fn same_mid() -> OnConflict {
    OnConflict::columns([Column::InstagramAccountId, Column::Mid])
        .do_nothing()
        .to_owned()
}

/// Stores each of `messages` unless one with the same account and mid exists, with one
/// statement per chunk; SQLite and PostgreSQL only (MySQL: [`insert_if_absent`] each).
pub(crate) async fn insert_many_if_absent(
    conn: &impl ConnectionTrait,
    messages: &[Message],
) -> Result<(), RepoError> {
    for chunk in messages.chunks(MAX_PARAMS / Column::iter().count()) {
        if chunk.is_empty() {
            continue;
        }
        let rows = chunk.iter().map(to_active).collect::<Result<Vec<_>, _>>()?;
        Entity::insert_many(rows)
            .on_conflict(same_mid())
            .exec_without_returning(conn)
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct StoredAttachment {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredReplyTo {
    Mid(String),
    Story {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
}

fn to_active(message: &Message) -> Result<ActiveModel, RepoError> {
    let encode = |e: serde_json::Error| RepoError::Corrupt(format!("cannot encode message: {e}"));
    let attachments = if message.attachments.is_empty() {
        None
    } else {
        let stored: Vec<StoredAttachment> = message
            .attachments
            .iter()
            .map(|a| StoredAttachment {
                kind: a.kind.as_str().to_owned(),
                url: a.url.clone(),
                title: a.title.clone(),
            })
            .collect();
        Some(serde_json::to_string(&stored).map_err(encode)?)
    };
    let reply_to = message
        .reply_to
        .as_ref()
        .map(|r| {
            let stored = match r {
                ReplyTo::Message(mid) => StoredReplyTo::Mid(mid.as_str().to_owned()),
                ReplyTo::Story { id, url } => StoredReplyTo::Story {
                    id: id.clone(),
                    url: url.clone(),
                },
            };
            serde_json::to_string(&stored).map_err(encode)
        })
        .transpose()?;
    let context = if message.context.is_empty() {
        None
    } else {
        let c = &message.context;
        let stored = StoredContext {
            payload: c.payload.clone(),
            referral: c.referral.as_ref().map(|r| StoredReferral {
                ref_param: r.ref_param.clone(),
                source: r.source.clone(),
                kind: r.kind.clone(),
                ad_id: r.ad_id.clone(),
                ad_title: r.ad_title.clone(),
            }),
            standby: c.standby,
        };
        Some(serde_json::to_string(&stored).map_err(encode)?)
    };
    Ok(ActiveModel {
        id: Set(message.id.as_str().to_owned()),
        instagram_account_id: Set(message.instagram_account_id.as_str().to_owned()),
        conversation_id: Set(message.conversation_id.as_str().to_owned()),
        mid: Set(message.mid.as_ref().map(|m| m.as_str().to_owned())),
        sender_id: Set(message.sender_id.as_str().to_owned()),
        recipient_id: Set(message.recipient_id.as_str().to_owned()),
        message_text: Set(message.text.clone()),
        direction: Set(message.direction.as_str().to_owned()),
        kind: Set(message.kind.as_str().to_owned()),
        attachments: Set(attachments),
        reply_to: Set(reply_to),
        timestamp: Set(to_micros(message.sent_at)),
        created_at: Set(to_micros(message.created_at)),
        deleted_at: Set(message.deleted_at.map(to_micros)),
        context: Set(context),
    })
}

fn from_model(row: Model) -> Result<Message, RepoError> {
    let corrupt = |what: String| RepoError::Corrupt(format!("message {}: {what}", row.id));
    let field = |e: FieldError| corrupt(e.to_string());
    let attachments = match &row.attachments {
        None => Vec::new(),
        Some(json) => serde_json::from_str::<Vec<StoredAttachment>>(json)
            .map_err(|e| corrupt(e.to_string()))?
            .into_iter()
            .map(|a| Attachment {
                kind: AttachmentKind::parse(&a.kind),
                url: a.url,
                title: a.title,
            })
            .collect(),
    };
    let reply_to = match &row.reply_to {
        None => None,
        Some(json) => Some(
            match serde_json::from_str::<StoredReplyTo>(json).map_err(|e| corrupt(e.to_string()))? {
                StoredReplyTo::Mid(mid) => {
                    ReplyTo::Message(InstagramMessageId::parse("reply_to", &mid).map_err(field)?)
                }
                StoredReplyTo::Story { id, url } => ReplyTo::Story { id, url },
            },
        ),
    };
    let context = match &row.context {
        None => MessageContext::default(),
        Some(json) => {
            let c: StoredContext =
                serde_json::from_str(json).map_err(|e| corrupt(e.to_string()))?;
            MessageContext {
                payload: c.payload,
                referral: c.referral.map(|r| Referral {
                    ref_param: r.ref_param,
                    source: r.source,
                    kind: r.kind,
                    ad_id: r.ad_id,
                    ad_title: r.ad_title,
                }),
                standby: c.standby,
            }
        }
    };
    Ok(Message {
        id: MessageId::parse("id", &row.id).map_err(field)?,
        instagram_account_id: InstagramAccountId::parse(
            "instagram_account_id",
            &row.instagram_account_id,
        )
        .map_err(field)?,
        conversation_id: ConversationId::parse("conversation_id", &row.conversation_id)
            .map_err(field)?,
        mid: row
            .mid
            .as_deref()
            .map(|m| InstagramMessageId::parse("mid", m))
            .transpose()
            .map_err(field)?,
        direction: Direction::parse(&row.direction)
            .ok_or_else(|| corrupt(format!("unknown direction {}", row.direction)))?,
        sender_id: InstagramUserId::parse("sender_id", &row.sender_id).map_err(field)?,
        recipient_id: InstagramUserId::parse("recipient_id", &row.recipient_id).map_err(field)?,
        kind: MessageKind::parse(&row.kind),
        text: row.message_text.clone(),
        attachments,
        reply_to,
        context,
        sent_at: from_micros(row.timestamp)?,
        created_at: from_micros(row.created_at)?,
        deleted_at: row.deleted_at.map(from_micros).transpose()?,
    })
}
