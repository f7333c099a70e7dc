//! The inbound pipeline's tables: `webhook_journal` (every signed request body, verbatim),
//! `inbound_events` (events that are not messages: reactions, reads, deletions, referrals,
//! and what this version does not understand), `jobs` (the transactional outbox), and the
//! `messages.context` column (button payloads, referral, standby).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

use crate::{ID_LEN, META_ID_LEN};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// Text or bytes that may exceed MySQL's 64 KiB `TEXT`/`BLOB`.
fn large(def: &mut ColumnDef, backend: DatabaseBackend, binary: bool) -> ColumnDef {
    match (backend, binary) {
        (DatabaseBackend::MySql, true) => def.custom(Alias::new("LONGBLOB")),
        (DatabaseBackend::MySql, false) => def.custom(Alias::new("LONGTEXT")),
        (_, true) => def.blob(),
        (_, false) => def.text(),
    }
    .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(ColumnDef::new(Messages::Context).text().null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(WebhookJournal::Table)
                    .col(
                        ColumnDef::new(WebhookJournal::Id)
                            .string_len(ID_LEN)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(WebhookJournal::ReceivedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        large(&mut ColumnDef::new(WebhookJournal::Body), backend, true)
                            .not_null()
                            .to_owned(),
                    )
                    .col(
                        ColumnDef::new(WebhookJournal::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(WebhookJournal::Error).text().null())
                    .col(ColumnDef::new(WebhookJournal::Events).integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_journal_received")
                    .table(WebhookJournal::Table)
                    .col(WebhookJournal::ReceivedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(InboundEvents::Table)
                    .col(
                        ColumnDef::new(InboundEvents::Id)
                            .string_len(ID_LEN)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(InboundEvents::InstagramAccountId)
                            .string_len(META_ID_LEN)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(InboundEvents::Kind)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(InboundEvents::CustomerId)
                            .string_len(META_ID_LEN)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(InboundEvents::Mid)
                            .string_len(META_ID_LEN)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(InboundEvents::DedupKey)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        large(&mut ColumnDef::new(InboundEvents::Detail), backend, false)
                            .not_null()
                            .to_owned(),
                    )
                    .col(
                        ColumnDef::new(InboundEvents::OccurredAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(InboundEvents::ReceivedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(InboundEvents::WebhookId)
                            .string_len(ID_LEN)
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        for index in [
            Index::create()
                .name("ux_inbound_events_account_key")
                .table(InboundEvents::Table)
                .col(InboundEvents::InstagramAccountId)
                .col(InboundEvents::DedupKey)
                .unique()
                .to_owned(),
            Index::create()
                .name("idx_inbound_events_account_time")
                .table(InboundEvents::Table)
                .col(InboundEvents::InstagramAccountId)
                .col(InboundEvents::OccurredAt)
                .to_owned(),
        ] {
            manager.create_index(index).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .col(
                        ColumnDef::new(Jobs::Id)
                            .string_len(ID_LEN)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Jobs::Kind).string_len(32).not_null())
                    .col(ColumnDef::new(Jobs::AccountId).string_len(ID_LEN).null())
                    .col(ColumnDef::new(Jobs::Subject).string_len(ID_LEN).not_null())
                    .col(
                        large(&mut ColumnDef::new(Jobs::Payload), backend, false)
                            .not_null()
                            .to_owned(),
                    )
                    .col(ColumnDef::new(Jobs::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Jobs::Attempts).integer().not_null())
                    // While queued: when the job may run. While running: when its lease runs
                    // out, so one index finds both due and abandoned jobs.
                    .col(ColumnDef::new(Jobs::RunAt).big_integer().not_null())
                    .col(ColumnDef::new(Jobs::LeaseToken).string_len(ID_LEN).null())
                    .col(ColumnDef::new(Jobs::LastError).text().null())
                    .col(ColumnDef::new(Jobs::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Jobs::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        for index in [
            Index::create()
                .name("idx_jobs_due")
                .table(Jobs::Table)
                .col(Jobs::Status)
                .col(Jobs::Kind)
                .col(Jobs::RunAt)
                .to_owned(),
            Index::create()
                .name("idx_jobs_subject")
                .table(Jobs::Table)
                .col(Jobs::Subject)
                .to_owned(),
        ] {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Jobs::Table.into_iden(),
            InboundEvents::Table.into_iden(),
            WebhookJournal::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .drop_column(Messages::Context)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Context,
}

#[derive(DeriveIden)]
enum WebhookJournal {
    Table,
    Id,
    ReceivedAt,
    Body,
    Status,
    Error,
    Events,
}

#[derive(DeriveIden)]
enum InboundEvents {
    Table,
    Id,
    InstagramAccountId,
    Kind,
    CustomerId,
    Mid,
    DedupKey,
    Detail,
    OccurredAt,
    ReceivedAt,
    WebhookId,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    Kind,
    AccountId,
    Subject,
    Payload,
    Status,
    Attempts,
    RunAt,
    LeaseToken,
    LastError,
    CreatedAt,
    UpdatedAt,
}
