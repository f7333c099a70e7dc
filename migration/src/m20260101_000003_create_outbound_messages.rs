//! `outbound_messages`: messages a CRM asked us to send, as in the original service.

use sea_orm_migration::prelude::*;

use crate::{ID_LEN, META_ID_LEN};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OutboundMessages::Table)
                    .col(
                        ColumnDef::new(OutboundMessages::Id)
                            .string_len(ID_LEN)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(OutboundMessages::AccountId)
                            .string_len(ID_LEN)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OutboundMessages::RecipientId)
                            .string_len(META_ID_LEN)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OutboundMessages::MessageText)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OutboundMessages::IdempotencyKey)
                            .string_len(META_ID_LEN)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OutboundMessages::Status)
                            .string_len(16)
                            .not_null()
                            .default("pending"),
                    )
                    .col(
                        ColumnDef::new(OutboundMessages::InstagramMessageId)
                            .string_len(META_ID_LEN)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(OutboundMessages::ErrorCode)
                            .string_len(64)
                            .null(),
                    )
                    .col(ColumnDef::new(OutboundMessages::ErrorMessage).text().null())
                    .col(
                        ColumnDef::new(OutboundMessages::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OutboundMessages::SentAt)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        for index in [
            Index::create()
                .name("ux_outbound_messages_idempotency_key")
                .table(OutboundMessages::Table)
                .col(OutboundMessages::IdempotencyKey)
                .unique()
                .to_owned(),
            Index::create()
                .name("idx_outbound_messages_account_status")
                .table(OutboundMessages::Table)
                .col(OutboundMessages::AccountId)
                .col(OutboundMessages::Status)
                .to_owned(),
        ] {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OutboundMessages::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum OutboundMessages {
    Table,
    Id,
    AccountId,
    RecipientId,
    MessageText,
    IdempotencyKey,
    Status,
    InstagramMessageId,
    ErrorCode,
    ErrorMessage,
    CreatedAt,
    SentAt,
}
