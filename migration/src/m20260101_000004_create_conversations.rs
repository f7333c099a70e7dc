//! `conversations`: one row per (account, customer), keyed by the derived conversation id.

use sea_orm_migration::prelude::*;

use crate::META_ID_LEN;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Conversations::Table)
                    .col(
                        ColumnDef::new(Conversations::Id)
                            .string_len(2 * META_ID_LEN + 8)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Conversations::InstagramAccountId)
                            .string_len(META_ID_LEN)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Conversations::CustomerId)
                            .string_len(META_ID_LEN)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Conversations::StartedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Conversations::LastMessageAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Conversations::LastInboundAt)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_conversations_account_recent")
                    .table(Conversations::Table)
                    .col(Conversations::InstagramAccountId)
                    .col(Conversations::LastMessageAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Conversations::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Conversations {
    Table,
    Id,
    InstagramAccountId,
    CustomerId,
    StartedAt,
    LastMessageAt,
    LastInboundAt,
}
