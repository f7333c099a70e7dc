//! An index for the response-time analytics: which business messages were auto-replies is
//! asked per answer (`auto_replies.reply_message_id`), a full scan of `auto_replies` each
//! time without it (measured by `cargo xtask bench analytics`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const NAME: &str = "idx_auto_replies_reply";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NAME)
                    .table(AutoReplies::Table)
                    .col(AutoReplies::ReplyMessageId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(NAME)
                    .table(AutoReplies::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum AutoReplies {
    Table,
    ReplyMessageId,
}
