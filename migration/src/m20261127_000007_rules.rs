//! Auto-reply rules: `rules` (an account's rules; the definition is a JSON document) and
//! `auto_replies` (each reply sent, or being sent, for a message: what cooldowns, hourly caps
//! and human takeover are computed from, and what keeps a message from being answered twice).

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
                    .table(Rules::Table)
                    .col(
                        ColumnDef::new(Rules::Id)
                            .string_len(ID_LEN)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Rules::AccountId)
                            .string_len(ID_LEN)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Rules::Priority).integer().not_null())
                    .col(ColumnDef::new(Rules::Enabled).boolean().not_null())
                    .col(ColumnDef::new(Rules::Definition).text().not_null())
                    .col(ColumnDef::new(Rules::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Rules::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_rules_account")
                    .table(Rules::Table)
                    .col(Rules::AccountId)
                    .col(Rules::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AutoReplies::Table)
                    .col(
                        ColumnDef::new(AutoReplies::TriggerMessageId)
                            .string_len(ID_LEN)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AutoReplies::ConversationId)
                            .string_len(2 * META_ID_LEN + 8)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AutoReplies::RuleId)
                            .string_len(ID_LEN)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AutoReplies::ReplyMessageId)
                            .string_len(ID_LEN)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(AutoReplies::Mid)
                            .string_len(META_ID_LEN)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(AutoReplies::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AutoReplies::Error).text().null())
                    .col(
                        ColumnDef::new(AutoReplies::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_auto_replies_conversation")
                    .table(AutoReplies::Table)
                    .col(AutoReplies::ConversationId)
                    .col(AutoReplies::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [AutoReplies::Table.into_iden(), Rules::Table.into_iden()] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Rules {
    Table,
    Id,
    AccountId,
    Priority,
    Enabled,
    Definition,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AutoReplies {
    Table,
    TriggerMessageId,
    ConversationId,
    RuleId,
    ReplyMessageId,
    Mid,
    Status,
    Error,
    CreatedAt,
}
