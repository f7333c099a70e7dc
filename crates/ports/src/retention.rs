//! Retention: what may be deleted once it is old enough.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::RepoError;

/// A class of rows that retention prunes, each by its own age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prunable {
    /// Raw webhook bodies in the journal, by arrival; never those still awaiting replay
    /// (`failed`).
    Journal,
    /// Finished jobs other than CRM deliveries (auto-replies, sends, replays), by their last
    /// change.
    DoneJobs,
    /// Delivered CRM deliveries with their attempts, by their last change.
    Deliveries,
    /// Dead-lettered jobs (deliveries with their attempts), by their last change.
    DeadLetters,
    /// Stored messages, by when they were stored.
    Messages,
    /// Stored events other than messages, by arrival.
    Events,
}

impl Prunable {
    /// Every class, in the order a pass prunes them.
    pub const ALL: [Self; 6] = [
        Self::Journal,
        Self::DoneJobs,
        Self::Deliveries,
        Self::DeadLetters,
        Self::Messages,
        Self::Events,
    ];

    /// A short name, for logs, metrics and `prune --dry-run`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Journal => "webhook_journal",
            Self::DoneJobs => "done_jobs",
            Self::Deliveries => "delivered_deliveries",
            Self::DeadLetters => "dead_letters",
            Self::Messages => "messages",
            Self::Events => "events",
        }
    }
}

/// Deletes old rows in small batches.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// How many rows of `what` are older than `before`.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn count_older(&self, what: Prunable, before: DateTime<Utc>) -> Result<u64, RepoError>;

    /// Deletes up to `limit` rows of `what` older than `before` (with what belongs to them:
    /// a delivery's attempts); returns how many rows of `what` went. Each call is short, so
    /// that it never holds a write lock for long.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn delete_older(
        &self,
        what: Prunable,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, RepoError>;
}
