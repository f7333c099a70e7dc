//! Replays of failed webhooks: every journal entry already `failed` (kept by an earlier
//! version, which never replayed them) gets its `webhook_replay` job, due at once, so the
//! events Meta was told we received are stored after all. The job's id is the entry's id
//! with the `job_` prefix: one replay per entry.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let job_id = match manager.get_database_backend() {
            DatabaseBackend::MySql => "CONCAT('job_', SUBSTRING(w.id, 5))",
            _ => "'job_' || substr(w.id, 5)",
        };
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "INSERT INTO jobs (id, kind, account_id, subject, payload, status, attempts, run_at, \
                 lease_token, last_error, created_at, updated_at) \
                 SELECT {job_id}, 'webhook_replay', NULL, w.id, '', 'queued', 0, w.received_at, \
                 NULL, w.error, w.received_at, w.received_at \
                 FROM webhook_journal w WHERE w.status = 'failed' AND NOT EXISTS \
                 (SELECT 1 FROM jobs j WHERE j.subject = w.id AND j.kind = 'webhook_replay')"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The earlier version knows no such jobs; its failed entries stay `failed`.
        manager
            .get_connection()
            .execute_unprepared("DELETE FROM jobs WHERE kind = 'webhook_replay'")
            .await?;
        Ok(())
    }
}
