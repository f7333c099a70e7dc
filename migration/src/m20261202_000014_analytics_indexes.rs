//! Indexes for the analytics (measured by `cargo xtask bench analytics`):
//! - which business messages were auto-replies is asked per answer
//!   (`auto_replies.reply_message_id`), a full scan of `auto_replies` each time without it;
//! - deliveries of every account in a range of time (`jobs (kind, created_at)`), a full scan
//!   of the jobs without it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const NAME: &str = "idx_auto_replies_reply";
const JOBS: &str = "idx_jobs_kind_created";

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
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(JOBS)
                    .table(Jobs::Table)
                    .col(Jobs::Kind)
                    .col(Jobs::CreatedAt)
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

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Kind,
    CreatedAt,
}
