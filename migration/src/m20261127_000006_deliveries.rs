//! CRM deliveries: `delivery_attempts` (one row per HTTP attempt of a `crm_delivery` job), the
//! account's delivery state (`crm_disabled_at`: the CRM answered 410; the previous signing
//! secret and until when it still signs, for rotation), and an index to list an account's
//! deliveries by time.

use sea_orm_migration::prelude::*;

use crate::ID_LEN;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in [
            ColumnDef::new(Accounts::CrmDisabledAt)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Accounts::PreviousWebhookSecret)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(Accounts::PreviousSecretUntil)
                .big_integer()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Accounts::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(DeliveryAttempts::Table)
                    .col(
                        ColumnDef::new(DeliveryAttempts::JobId)
                            .string_len(ID_LEN)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryAttempts::Attempt)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryAttempts::StartedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryAttempts::DurationMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryAttempts::Outcome)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeliveryAttempts::StatusCode)
                            .integer()
                            .null(),
                    )
                    .col(ColumnDef::new(DeliveryAttempts::ResponseBody).text().null())
                    .col(ColumnDef::new(DeliveryAttempts::Error).text().null())
                    .primary_key(
                        Index::create()
                            .col(DeliveryAttempts::JobId)
                            .col(DeliveryAttempts::Attempt),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_jobs_account_created")
                    .table(Jobs::Table)
                    .col(Jobs::AccountId)
                    .col(Jobs::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_jobs_account_created")
                    .table(Jobs::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(DeliveryAttempts::Table).to_owned())
            .await?;
        for column in [
            Accounts::PreviousSecretUntil,
            Accounts::PreviousWebhookSecret,
            Accounts::CrmDisabledAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Accounts::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    CrmDisabledAt,
    PreviousWebhookSecret,
    PreviousSecretUntil,
}

#[derive(DeriveIden)]
enum DeliveryAttempts {
    Table,
    JobId,
    Attempt,
    StartedAt,
    DurationMs,
    Outcome,
    StatusCode,
    ResponseBody,
    Error,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    AccountId,
    CreatedAt,
}
