//! Private replies to comments: a send may answer a comment (Meta's `recipient.comment_id`),
//! at most one per comment and account.

use sea_orm_migration::prelude::*;

use crate::META_ID_LEN;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OutboundMessages::Table)
                    .add_column(
                        ColumnDef::new(OutboundMessages::ReplyToComment)
                            .string_len(META_ID_LEN)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        // One private reply per comment (Meta allows one); rows of plain sends hold NULL,
        // which a unique index never compares equal on any of the three databases.
        manager
            .create_index(
                Index::create()
                    .name("ux_outbound_messages_account_comment")
                    .table(OutboundMessages::Table)
                    .col(OutboundMessages::AccountId)
                    .col(OutboundMessages::ReplyToComment)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ux_outbound_messages_account_comment")
                    .table(OutboundMessages::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OutboundMessages::Table)
                    .drop_column(OutboundMessages::ReplyToComment)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum OutboundMessages {
    Table,
    AccountId,
    ReplyToComment,
}
