//! The inbound pipeline's store: one unit of work per group of webhook requests, and the job
//! queue its follow-up work lands in.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::{
    AccountId, ClaimedJob, Conversation, EventId, InboundEvent, InstagramAccountId,
    InstagramMessageId, Job, JobId, JobKind, JobLease, Message, MessageId, NewJob, WebhookId,
};

use crate::RepoError;

/// What became of a journaled request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalStatus {
    /// Parsed; its events are stored.
    Accepted,
    /// Signed, but not a usable notification (bad JSON, wrong shape); only the body is kept.
    Unusable,
    /// Parsed, but storing its events failed while the journal could still be written; the
    /// body is kept for replay.
    Failed,
}

impl JournalStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Unusable => "unusable",
            Self::Failed => "failed",
        }
    }
}

/// One signed webhook request, as journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Its id.
    pub id: WebhookId,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// The raw body, exactly as signed.
    pub body: Vec<u8>,
    /// What became of it.
    pub status: JournalStatus,
    /// Why it was unusable or failed.
    pub error: Option<String>,
    /// How many events it held.
    pub events: u32,
}

/// How events for one Instagram account are routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRoute {
    /// Meta's id of the account.
    pub instagram_account_id: InstagramAccountId,
    /// Our id of the account.
    pub account_id: AccountId,
    /// Whether the account has a CRM to forward events to.
    pub forwards_to_crm: bool,
}

/// An event that is not a message, to be stored once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Its id.
    pub id: EventId,
    /// The request it came in.
    pub webhook_id: WebhookId,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// The event; [`InboundEvent::dedup_key`] decides what is a duplicate.
    pub event: InboundEvent,
}

/// A message the customer unsent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The account.
    pub account: InstagramAccountId,
    /// The unsent message.
    pub mid: InstagramMessageId,
    /// When it was unsent.
    pub at: DateTime<Utc>,
}

/// Opens units of work on the inbound store.
#[async_trait]
pub trait InboundStore: Send + Sync {
    /// Starts a unit of work: everything written through it is committed together or not at
    /// all.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn begin(&self) -> Result<Box<dyn InboundUnit>, RepoError>;
}

/// One transaction of the inbound store. Every method takes many rows at once, so a group of
/// requests costs a handful of statements. Dropping it without [`InboundUnit::commit`] rolls
/// everything back.
#[async_trait]
pub trait InboundUnit: Send {
    /// Appends request bodies to the journal.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn append_journal(&mut self, entries: &[JournalEntry]) -> Result<(), RepoError>;

    /// The routes of those of `accounts` that are configured.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn routes(
        &mut self,
        accounts: &[InstagramAccountId],
    ) -> Result<Vec<AccountRoute>, RepoError>;

    /// Stores each message unless its account already has one with the same `mid`; returns
    /// the ids of those stored. Messages must have distinct (account, mid) pairs.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`]. Duplicates are not errors.
    async fn insert_messages(&mut self, messages: &[Message]) -> Result<Vec<MessageId>, RepoError>;

    /// Stores each event unless its account already has one with the same dedup key; returns
    /// the ids of those stored. Events must have distinct (account, key) pairs.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`]. Duplicates are not errors.
    async fn insert_events(&mut self, events: &[EventRecord]) -> Result<Vec<EventId>, RepoError>;

    /// Marks unsent messages deleted, where stored and not yet marked.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn mark_deleted(&mut self, deletions: &[Deletion]) -> Result<(), RepoError>;

    /// Creates or merges conversations, as [`crate::ConversationRepository::record`] does.
    /// Conversations must have distinct ids.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn record_conversations(
        &mut self,
        conversations: &[Conversation],
    ) -> Result<(), RepoError>;

    /// Queues jobs.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn enqueue(&mut self, jobs: &[NewJob]) -> Result<(), RepoError>;

    /// Commits everything.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`]; nothing is stored then.
    async fn commit(self: Box<Self>) -> Result<(), RepoError>;
}

/// Queued work, claimed by workers with a lease.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Queues jobs outside any other unit of work.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn enqueue(&self, jobs: &[NewJob]) -> Result<(), RepoError>;

    /// Claims up to `limit` jobs of `kinds` that are due at `now` (queued with `run_at` past,
    /// or running with an expired lease), oldest first, leasing them for `lease`. Concurrent
    /// callers, in this process or another, never claim the same job while its lease holds.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn claim(
        &self,
        kinds: &[JobKind],
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedJob>, RepoError>;

    /// Marks the job done; false when `lease` is no longer the job's current lease.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn complete(&self, lease: &JobLease, now: DateTime<Utc>) -> Result<bool, RepoError>;

    /// Puts the job back in the queue to run at `at`, recording `error`; false when `lease` is
    /// no longer current.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn retry_at(
        &self,
        lease: &JobLease,
        at: DateTime<Utc>,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError>;

    /// Gives up on the job, recording `error`; false when `lease` is no longer current.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn dead_letter(
        &self,
        lease: &JobLease,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError>;

    /// The job with id `id`.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn get(&self, id: &JobId) -> Result<Option<Job>, RepoError>;

    /// The jobs about `subject` (a message or event id), oldest first.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn list_by_subject(&self, subject: &str) -> Result<Vec<Job>, RepoError>;
}
