//! The inbound pipeline's store: one transaction per group of webhook requests, and the job
//! queue its follow-up work lands in.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::{
    AccountId, ClaimedJob, EventId, InboundEvent, InstagramAccountId, InstagramMessageId, Job,
    JobId, JobKind, JobLease, Message, MessageId, NewJob, WebhookId,
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
    /// The deletion event; the message is marked only when this event is new.
    pub event_id: EventId,
    /// The account.
    pub account: InstagramAccountId,
    /// The unsent message.
    pub mid: InstagramMessageId,
    /// When it was unsent.
    pub at: DateTime<Utc>,
}

/// A follow-up job, queued only if what it is about was stored by the same batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedJob {
    /// The job; its `subject` is the id of a message or event of the batch, and its
    /// `account_id` is filled in from the account configured for `instagram_account_id`.
    pub job: NewJob,
    /// The Instagram account the subject belongs to.
    pub instagram_account_id: InstagramAccountId,
    /// Queue it only when that account is configured with a CRM URL.
    pub requires_crm: bool,
}

/// Everything one group of webhook requests stores, written in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundBatch {
    /// The request bodies.
    pub journal: Vec<JournalEntry>,
    /// Messages, with distinct (account, mid) pairs; each is stored unless its account
    /// already has that mid.
    pub messages: Vec<Message>,
    /// Other events, with distinct (account, dedup key) pairs; each is stored unless its
    /// account already has that key.
    pub events: Vec<EventRecord>,
    /// Messages to mark unsent.
    pub deletions: Vec<Deletion>,
    /// Follow-up jobs.
    pub jobs: Vec<PlannedJob>,
}

/// What a batch stored for the first time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The messages stored (the others were duplicates).
    pub new_messages: Vec<MessageId>,
    /// The events stored.
    pub new_events: Vec<EventId>,
}

/// In the payload of a queued CRM delivery, the JSON member the store replaces with the
/// account's id (`"account_id":"acc_..."`) when it queues the delivery; see
/// [`InboundStore::store`].
pub const ACCOUNT_ID_PLACEHOLDER: &str = r#""account_id":null"#;

/// `payload` with [`ACCOUNT_ID_PLACEHOLDER`] replaced by `"account_id":"<account>"`. Account
/// ids are `acc_` and hex: nothing JSON would escape.
pub fn with_account_id(payload: &str, account: &AccountId) -> String {
    payload.replace(
        ACCOUNT_ID_PLACEHOLDER,
        &format!(r#""account_id":"{account}""#),
    )
}

/// Stores groups of webhook requests.
#[async_trait]
pub trait InboundStore: Send + Sync {
    /// In one transaction: appends the journal entries; stores the messages and events that
    /// are not duplicates; marks deleted messages for new deletion events; creates or merges
    /// the conversations of the new messages (earliest start, latest message, latest inbound);
    /// queues the planned jobs whose subject is new (CRM jobs only for accounts with a CRM URL,
    /// their payload's [`ACCOUNT_ID_PLACEHOLDER`] replaced by the account's id, and each job
    /// with that account's id). Commits, then reports what was new. Nothing is stored when it
    /// fails.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn store(&self, batch: InboundBatch) -> Result<BatchOutcome, RepoError>;
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

    /// Gives the claim back without counting it as an attempt: the job runs at `at`, with
    /// `note` as its last error; false when `lease` is no longer current.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn release(
        &self,
        lease: &JobLease,
        at: DateTime<Utc>,
        note: &str,
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
