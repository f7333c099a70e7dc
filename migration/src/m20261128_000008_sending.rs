//! Sending for CRMs: what a send request carries besides its text (an attachment or quick
//! replies, the human-agent flag, the client's metadata), the request's fingerprint for
//! idempotency, Meta's error detail and the attempt count; idempotency keys become unique per
//! account instead of globally; accounts record a token Meta refused (code 190); conversations
//! record when the business last marked them seen.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        let columns: [(DynIden, ColumnDef); 10] = [
            (
                OutboundMessages::Table.into_iden(),
                ColumnDef::new(OutboundMessages::Content)
                    .text()
                    .null()
                    .to_owned(),
            ),
            (
                OutboundMessages::Table.into_iden(),
                ColumnDef::new(OutboundMessages::HumanAgent)
                    .boolean()
                    .not_null()
                    .default(false)
                    .to_owned(),
            ),
            (
                OutboundMessages::Table.into_iden(),
                ColumnDef::new(OutboundMessages::Metadata)
                    .text()
                    .null()
                    .to_owned(),
            ),
            (
                OutboundMessages::Table.into_iden(),
                ColumnDef::new(OutboundMessages::Fingerprint)
                    .string_len(64)
                    .not_null()
                    .default("")
                    .to_owned(),
            ),
            (
                OutboundMessages::Table.into_iden(),
                ColumnDef::new(OutboundMessages::ErrorSubcode)
                    .big_integer()
                    .null()
                    .to_owned(),
            ),
            (
                OutboundMessages::Table.into_iden(),
                ColumnDef::new(OutboundMessages::ErrorRetryable)
                    .boolean()
                    .null()
                    .to_owned(),
            ),
            (
                OutboundMessages::Table.into_iden(),
                ColumnDef::new(OutboundMessages::Attempts)
                    .integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
            ),
            (
                Accounts::Table.into_iden(),
                ColumnDef::new(Accounts::TokenInvalidAt)
                    .big_integer()
                    .null()
                    .to_owned(),
            ),
            (
                Accounts::Table.into_iden(),
                ColumnDef::new(Accounts::TokenError)
                    .text()
                    .null()
                    .to_owned(),
            ),
            (
                Conversations::Table.into_iden(),
                ColumnDef::new(Conversations::SeenAt)
                    .big_integer()
                    .null()
                    .to_owned(),
            ),
        ];
        for (table, mut column) in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("ux_outbound_messages_idempotency_key")
                    .table(OutboundMessages::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_outbound_messages_account_key")
                    .table(OutboundMessages::Table)
                    .col(OutboundMessages::AccountId)
                    .col(OutboundMessages::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Reconciling a send whose outcome is unknown asks whether an echo's mid is taken.
        manager
            .create_index(
                Index::create()
                    .name("idx_outbound_messages_mid")
                    .table(OutboundMessages::Table)
                    .col(OutboundMessages::InstagramMessageId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_outbound_messages_mid")
                    .table(OutboundMessages::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ux_outbound_messages_account_key")
                    .table(OutboundMessages::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_outbound_messages_idempotency_key")
                    .table(OutboundMessages::Table)
                    .col(OutboundMessages::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        let columns: [(DynIden, DynIden); 10] = [
            (
                Conversations::Table.into_iden(),
                Conversations::SeenAt.into_iden(),
            ),
            (
                Accounts::Table.into_iden(),
                Accounts::TokenError.into_iden(),
            ),
            (
                Accounts::Table.into_iden(),
                Accounts::TokenInvalidAt.into_iden(),
            ),
            (
                OutboundMessages::Table.into_iden(),
                OutboundMessages::Attempts.into_iden(),
            ),
            (
                OutboundMessages::Table.into_iden(),
                OutboundMessages::ErrorRetryable.into_iden(),
            ),
            (
                OutboundMessages::Table.into_iden(),
                OutboundMessages::ErrorSubcode.into_iden(),
            ),
            (
                OutboundMessages::Table.into_iden(),
                OutboundMessages::Fingerprint.into_iden(),
            ),
            (
                OutboundMessages::Table.into_iden(),
                OutboundMessages::Metadata.into_iden(),
            ),
            (
                OutboundMessages::Table.into_iden(),
                OutboundMessages::HumanAgent.into_iden(),
            ),
            (
                OutboundMessages::Table.into_iden(),
                OutboundMessages::Content.into_iden(),
            ),
        ];
        for (table, column) in columns {
            manager
                .alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum OutboundMessages {
    Table,
    AccountId,
    IdempotencyKey,
    InstagramMessageId,
    Content,
    HumanAgent,
    Metadata,
    Fingerprint,
    ErrorSubcode,
    ErrorRetryable,
    Attempts,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    TokenInvalidAt,
    TokenError,
}

#[derive(DeriveIden)]
enum Conversations {
    Table,
    SeenAt,
}
