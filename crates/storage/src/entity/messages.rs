//! The `messages` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub instagram_account_id: String,
    pub conversation_id: String,
    pub mid: Option<String>,
    pub sender_id: String,
    pub recipient_id: String,
    pub message_text: Option<String>,
    pub direction: String,
    pub kind: String,
    /// JSON array of `{type, url, title}`.
    pub attachments: Option<String>,
    /// JSON `{mid}` or `{story: {id, url}}`.
    pub reply_to: Option<String>,
    pub timestamp: i64,
    pub created_at: i64,
    pub deleted_at: Option<i64>,
    /// JSON `{payload, referral, standby}`, absent when empty.
    pub context: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
