//! The `accounts` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub instagram_account_id: String,
    pub username: String,
    pub access_token_encrypted: String,
    pub crm_webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub crm_disabled_at: Option<i64>,
    pub previous_webhook_secret: Option<String>,
    pub previous_secret_until: Option<i64>,
    pub token_invalid_at: Option<i64>,
    pub token_error: Option<String>,
    pub token_set_at: Option<i64>,
    pub token_expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
