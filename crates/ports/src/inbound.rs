//! The inbound pipeline's store: one transaction per group of webhook requests, and the job
//! queue its follow-up work lands in.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::{
    ClaimedJob, EventId, InboundEvent, InstagramAccountId, InstagramMessageId, Job, JobId, JobKind,
    JobLease, JobStatus, Message, MessageId, NewJob, Route, WebhookId,
};

use crate::RepoError;

/// What became of a journaled request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalStatus {
    /// Parsed; its events are stored.
    Accepted,
    /// Signed, but not a usable notification (bad JSON, wrong shape); only the body is kept.
    Unusable,
    /// Storing its events failed while the journal could still be written: the body is kept
    /// and a `webhook_replay` job stores its events again, with backoff, until it succeeds
    /// (the status then becomes `accepted`).
    Failed,
    /// Not even the journal could be written (the database was unreachable): the body is kept
    /// in this instance's local spool, and moved into the journal as soon as the database
    /// accepts writes again. Never a status stored in the database.
    Spooled,
}

impl JournalStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Unusable => "unusable",
            Self::Failed => "failed",
            Self::Spooled => "spooled",
        }
    }

    /// Parses [`JournalStatus::as_str`]'s output.
    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Accepted, Self::Unusable, Self::Failed, Self::Spooled]
            .into_iter()
            .find(|s| s.as_str() == raw)
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
    /// Follow-up jobs, each about a message or event of the batch (its `subject`): queued
    /// only when that message or event is new.
    pub jobs: Vec<NewJob>,
    /// The routes the jobs were planned for, by Instagram account (`None`: no account is
    /// configured for it). The store compares them with the accounts table inside its
    /// transaction; when any differs, it writes nothing and answers
    /// [`BatchOutcome::routes_changed`], so the batch is planned again and never queues a job
    /// for a route that no longer holds.
    pub routes: Vec<(InstagramAccountId, Option<Route>)>,
}

impl InboundBatch {
    /// The jobs to queue, once `is_new` tells which subjects the batch stored.
    pub fn jobs_about<'a>(
        &'a self,
        is_new: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = &'a NewJob> + 'a {
        self.jobs.iter().filter(move |j| is_new(&j.subject))
    }
}

/// What a batch stored for the first time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The messages stored (the others were duplicates).
    pub new_messages: Vec<MessageId>,
    /// The events stored.
    pub new_events: Vec<EventId>,
    /// The batch's [`InboundBatch::routes`] no longer hold: nothing was written.
    pub routes_changed: bool,
}

/// Stores groups of webhook requests.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait InboundStore: Send + Sync {
    /// The routes of those of `accounts` that are configured (an account missing from the
    /// answer has none), read at once when a batch is planned for accounts whose routes are
    /// not known yet, or no longer hold.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn routes(
        &self,
        accounts: &[InstagramAccountId],
    ) -> Result<Vec<(InstagramAccountId, Route)>, RepoError>;

    /// In one transaction: writes the journal entries (an entry already journaled under the
    /// same id, a replay's, gets the new status and error); stores the messages and events that
    /// are not duplicates; marks deleted messages for new deletion events; creates or merges
    /// the conversations of the new messages (earliest start, latest message, latest inbound);
    /// queues the jobs whose subject is new, as they are. Commits, then reports what was new.
    /// Nothing is stored when it fails, or when the routes the batch was planned for no longer
    /// hold (the outcome then says [`BatchOutcome::routes_changed`]).
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn store(&self, batch: InboundBatch) -> Result<BatchOutcome, RepoError>;
}

/// Turns a verified webhook body into events: Meta's wire format, behind a port so the
/// ingest can parse the bodies it replays from the journal exactly as it parsed them live.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait NotificationParser: Send + Sync {
    /// The body's events, or why it is not a usable notification.
    ///
    /// # Errors
    ///
    /// The reason, as text, when the body is not a usable notification.
    fn parse(&self, body: &[u8], received_at: DateTime<Utc>) -> Result<Vec<InboundEvent>, String>;
}

/// The replay of a failed journal entry, as its job shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayState {
    /// Replays tried so far.
    pub attempts: u32,
    /// When the next replay is due (or, while one runs, when its lease runs out).
    pub next_at: DateTime<Utc>,
}

/// A journal entry without its body, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSummary {
    /// Its id.
    pub id: WebhookId,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// What became of it.
    pub status: JournalStatus,
    /// Why it was unusable or failed.
    pub error: Option<String>,
    /// How many events it held.
    pub events: u32,
    /// The body's size in bytes.
    pub bytes: u64,
    /// For a failed entry, its replay.
    pub replay: Option<ReplayState>,
}

/// The journal of webhook requests, beyond the inbound batch: keeping failed requests for
/// replay, and reading the journal back.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait WebhookJournal: Send + Sync {
    /// In one transaction: writes `entries` (status `failed`, each with its error; an entry
    /// already journaled under the same id is updated) and queues `replays` (a job whose id
    /// is already queued is left as it is).
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`]: nothing was written.
    async fn keep_for_replay(
        &self,
        entries: &[JournalEntry],
        replays: &[NewJob],
    ) -> Result<(), RepoError>;

    /// The entry with id `id`, body included.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn get(&self, id: &WebhookId) -> Result<Option<JournalEntry>, RepoError>;

    /// Records why the latest replay of the failed entry `id` failed.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn record_error(&self, id: &WebhookId, error: &str) -> Result<(), RepoError>;

    /// Marks the replay job of `id` done: its entry was replayed outside the job (by hand).
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn close_replay(&self, id: &WebhookId, now: DateTime<Utc>) -> Result<(), RepoError>;

    /// Up to `limit` entries with `status` (any when `None`), newest first; failed entries with
    /// their replay.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn list(
        &self,
        status: Option<JournalStatus>,
        limit: u32,
    ) -> Result<Vec<JournalSummary>, RepoError>;

    /// How many failed entries wait for their replay.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn awaiting_replay(&self) -> Result<u64, RepoError>;
}

/// Where webhook bodies are kept while the database refuses even the journal: durable storage
/// local to the instance (a directory), read back into the journal when the database is back.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait WebhookSpool: Send + Sync {
    /// Keeps `entry`'s id, arrival time and body; durable (on disk, synced) once it returns.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] when it could not be kept (a full disk): then nothing was.
    async fn put(&self, entry: &JournalEntry) -> Result<(), RepoError>;

    /// Up to `limit` spooled entries, oldest first, with status [`JournalStatus::Spooled`].
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] when the spool cannot be read.
    async fn list(&self, limit: usize) -> Result<Vec<JournalEntry>, RepoError>;

    /// The spooled entry `id`.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] when the spool cannot be read.
    async fn get(&self, id: &WebhookId) -> Result<Option<JournalEntry>, RepoError>;

    /// How many entries are spooled.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] when the spool cannot be read.
    async fn count(&self) -> Result<usize, RepoError>;

    /// Forgets the entry `id` (it is in the database now); an unknown id is no error.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn remove(&self, id: &WebhookId) -> Result<(), RepoError>;
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

    /// [`Self::complete`] for each of `leases`, in one transaction (a group commit of
    /// concurrent workers); one answer per lease, in order.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] when the transaction fails: nothing was written.
    async fn complete_many(
        &self,
        leases: &[JobLease],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, RepoError>;

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

    /// How many jobs are queued, running or dead, by kind and status (the done ones are not
    /// counted: they only grow until retention prunes them).
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn counts(&self) -> Result<Vec<(JobKind, JobStatus, u64)>, RepoError>;
}
