//! Two indexes that cost bytes and writes on every stored message (issue 20, item 6,
//! measured by the breakdown `cargo xtask bench ingest` prints):
//! - `idx_sender` (`messages.sender_id`, from the original service's schema): no query looks
//!   messages up by sender alone; conversations have their own table, and the analytics count
//!   senders within a time range, which `idx_timestamp` serves;
//! - `idx_jobs_subject` (`jobs.subject`) served only the journal's listing, which looks up
//!   each entry's `webhook_replay` job: on SQLite and PostgreSQL it now holds those jobs alone
//!   (a partial index), where it held a row per CRM delivery and auto-reply. MySQL has no
//!   partial indexes and keeps the whole one.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const SENDER: &str = "idx_sender";
const SUBJECT: &str = "idx_jobs_subject";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(SENDER).table(Messages::Table).to_owned())
            .await?;
        if manager.get_database_backend() != DatabaseBackend::MySql {
            manager
                .drop_index(Index::drop().name(SUBJECT).table(Jobs::Table).to_owned())
                .await?;
            manager
                .get_connection()
                .execute_unprepared(&format!(
                    "CREATE INDEX {SUBJECT} ON jobs (subject) WHERE kind = 'webhook_replay'"
                ))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::MySql {
            manager
                .drop_index(Index::drop().name(SUBJECT).table(Jobs::Table).to_owned())
                .await?;
            manager
                .create_index(
                    Index::create()
                        .name(SUBJECT)
                        .table(Jobs::Table)
                        .col(Jobs::Subject)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name(SENDER)
                    .table(Messages::Table)
                    .col(Messages::SenderId)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    SenderId,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Subject,
}
