//! `messages`: every stored message, both directions.
//!
//! The original keyed this table by Meta's `mid`; here `id` is ours and `mid` is unique per
//! account, so the same mid seen by two connected accounts (one's inbound is the other's echo)
//! is stored for each.

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
                    .table(Messages::Table)
                    .col(
                        ColumnDef::new(Messages::Id)
                            .string_len(ID_LEN)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Messages::InstagramAccountId)
                            .string_len(META_ID_LEN)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Messages::ConversationId)
                            .string_len(2 * META_ID_LEN + 8)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Messages::Mid).string_len(META_ID_LEN).null())
                    .col(
                        ColumnDef::new(Messages::SenderId)
                            .string_len(META_ID_LEN)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Messages::RecipientId)
                            .string_len(META_ID_LEN)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Messages::MessageText).text().null())
                    .col(
                        ColumnDef::new(Messages::Direction)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Messages::Kind).string_len(32).not_null())
                    .col(ColumnDef::new(Messages::Attachments).text().null())
                    .col(ColumnDef::new(Messages::ReplyTo).text().null())
                    .col(ColumnDef::new(Messages::Timestamp).big_integer().not_null())
                    .col(ColumnDef::new(Messages::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Messages::DeletedAt).big_integer().null())
                    .to_owned(),
            )
            .await?;
        for index in [
            Index::create()
                .name("ux_messages_account_mid")
                .table(Messages::Table)
                .col(Messages::InstagramAccountId)
                .col(Messages::Mid)
                .unique()
                .to_owned(),
            Index::create()
                .name("idx_timestamp")
                .table(Messages::Table)
                .col(Messages::Timestamp)
                .to_owned(),
            Index::create()
                .name("idx_sender")
                .table(Messages::Table)
                .col(Messages::SenderId)
                .to_owned(),
            Index::create()
                .name("idx_messages_conversation")
                .table(Messages::Table)
                .col(Messages::ConversationId)
                .col(Messages::Timestamp)
                .to_owned(),
        ] {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Messages::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    InstagramAccountId,
    ConversationId,
    Mid,
    SenderId,
    RecipientId,
    MessageText,
    Direction,
    Kind,
    Attachments,
    ReplyTo,
    Timestamp,
    CreatedAt,
    DeletedAt,
}
