//! [`CommentStore`] on sea-orm: comments are inbound events of kind `comment`, found again by
//! their dedup key (the unique index on account and key).

use async_trait::async_trait;
use insta_router_domain::{InboundEvent, InstagramAccountId, InstagramCommentId, InstagramUserId};
use insta_router_ports::{CommentStore, RepoError, StoredComment};
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
}

#[async_trait]
impl CommentStore for SeaCommentStore {
    async fn comment(
        &self,
        account: &InstagramAccountId,
        id: &InstagramCommentId,
    ) -> Result<Option<StoredComment>, RepoError> {
        let row = self
            .db
            .query_one_raw(statement(
                self.db.get_database_backend(),
                "SELECT customer_id, occurred_at, detail FROM inbound_events \
                 WHERE instagram_account_id = ? AND dedup_key = ? AND kind = 'comment'",
                vec![
                    account.as_str().into(),
                    dedup_hash(&InboundEvent::comment_key(id)).into(),
                ],
            ))
            .await
            .map_err(unavailable)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let corrupt = |e: &dyn std::fmt::Display| RepoError::Corrupt(format!("comment {id}: {e}"));
        let author: Option<String> = row.try_get("", "customer_id").map_err(unavailable)?;
        let author = InstagramUserId::parse("customer_id", &author.unwrap_or_default())
            .map_err(|e| corrupt(&e))?;
        let detail: String = row.try_get("", "detail").map_err(unavailable)?;
        let detail: serde_json::Value = serde_json::from_str(&detail).map_err(|e| corrupt(&e))?;
        Ok(Some(StoredComment {
            author,
            at: from_micros(row.try_get::<i64>("", "occurred_at").map_err(unavailable)?)?,
            live: detail["live"].as_bool().unwrap_or(false),
        }))
    }
}
