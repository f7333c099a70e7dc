//! [`CommentStore`] on sea-orm: comments are inbound events of kind `comment`, found again by
//! their dedup key (the unique index on account and key).

use async_trait::async_trait;
use insta_router_domain::{
    EventId, InboundEvent, InstagramAccountId, InstagramCommentId, InstagramUserId, Parties,
    ReceivedComment,
};
use insta_router_ports::{CommentEvent, CommentStore, RepoError, StoredComment};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::error::unavailable;
use crate::inbound::rows::dedup_hash;
use crate::sql::statement;
use crate::time::from_micros;

/// Comments in the `inbound_events` table.
#[derive(Debug, Clone)]
pub struct SeaCommentStore {
    db: DatabaseConnection,
}

impl SeaCommentStore {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// The comment event found by `condition` on `inbound_events`, whole.
    async fn read(
        &self,
        condition: &str,
        values: Vec<sea_orm::Value>,
    ) -> Result<Option<CommentEvent>, RepoError> {
        let row = self
            .db
            .query_one_raw(statement(
                self.db.get_database_backend(),
                &format!(
                    "SELECT id, occurred_at, detail FROM inbound_events \
                     WHERE {condition} AND kind = 'comment'"
                ),
                values,
            ))
            .await
            .map_err(unavailable)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: String = row.try_get("", "id").map_err(unavailable)?;
        let detail: String = row.try_get("", "detail").map_err(unavailable)?;
        let comment = from_detail(&detail)
            .map_err(|e| RepoError::Corrupt(format!("comment event {id}: {e}")))?;
        Ok(Some(CommentEvent {
            comment,
            at: from_micros(row.try_get::<i64>("", "occurred_at").map_err(unavailable)?)?,
        }))
    }
}

#[async_trait]
impl CommentStore for SeaCommentStore {
    async fn comment(
        &self,
        account: &InstagramAccountId,
        id: &InstagramCommentId,
    ) -> Result<Option<StoredComment>, RepoError> {
        let key = dedup_hash(&InboundEvent::comment_key(id));
        let found = self
            .read(
                "instagram_account_id = ? AND dedup_key = ?",
                vec![account.as_str().into(), key.into()],
            )
            .await?;
        Ok(found.map(|event| StoredComment {
            author: event.comment.parties.customer,
            at: event.at,
            live: event.comment.live,
        }))
    }

    async fn by_event(&self, id: &EventId) -> Result<Option<CommentEvent>, RepoError> {
        self.read("id = ?", vec![id.as_str().into()]).await
    }

    async fn count_by_author(
        &self,
        account: &InstagramAccountId,
        author: &InstagramUserId,
    ) -> Result<u64, RepoError> {
        let row = self
            .db
            .query_one_raw(statement(
                self.db.get_database_backend(),
                "SELECT count(*) FROM inbound_events \
                 WHERE instagram_account_id = ? AND kind = 'comment' AND customer_id = ?",
                vec![account.as_str().into(), author.as_str().into()],
            ))
            .await
            .map_err(unavailable)?;
        let n = row.and_then(|r| crate::sql::int_at(&r, 0)).unwrap_or(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// The comment written by `rows::event_detail`.
fn from_detail(detail: &str) -> Result<ReceivedComment, String> {
    let d: serde_json::Value = serde_json::from_str(detail).map_err(|e| e.to_string())?;
    let text = |key: &str| d[key].as_str().map(str::to_owned);
    let id = |key: &str| text(key).ok_or_else(|| format!("no {key}"));
    Ok(ReceivedComment {
        parties: Parties {
            account: InstagramAccountId::parse(
                "account",
                d["parties"]["account"].as_str().unwrap_or_default(),
            )
            .map_err(|e| e.to_string())?,
            customer: InstagramUserId::parse(
                "customer",
                d["parties"]["customer"].as_str().unwrap_or_default(),
            )
            .map_err(|e| e.to_string())?,
        },
        comment_id: InstagramCommentId::parse("comment_id", &id("comment_id")?)
            .map_err(|e| e.to_string())?,
        username: text("username"),
        text: text("text"),
        media_id: text("media_id"),
        media_product_type: text("media_product_type"),
        parent_id: text("parent_id")
            .map(|p| InstagramCommentId::parse("parent_id", &p))
            .transpose()
            .map_err(|e| e.to_string())?,
        live: d["live"].as_bool().unwrap_or(false),
        ad_id: text("ad_id"),
        ad_title: text("ad_title"),
    })
}
