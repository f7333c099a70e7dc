//! CRM deliveries: the HTTP sender, and the store of attempts and delivery state.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::{AccountId, AttemptOutcome, Job, JobId, JobLease, JobStatus, Secret};

use crate::{Page, PageRequest, RepoError};

/// One delivery to send.
#[derive(Debug, Clone)]
pub struct CrmRequest {
    /// The account's CRM URL.
    pub url: String,
    /// `webhook-id`: the same for every attempt and replay of the event.
    pub webhook_id: String,
    /// The stored body, sent as it is.
    pub body: String,
    /// The signing secrets: the current one first, then one still in its rotation grace.
    pub secrets: Vec<Secret>,
}

/// What one attempt got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmResponse {
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// How long it took.
    pub duration: Duration,
    /// The start of the response body, when there was one.
    pub body: Option<String>,
    /// What went wrong, when no answer came.
    pub error: Option<String>,
}

/// Sends deliveries to CRMs.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CrmSender: Send + Sync {
    /// Signs and POSTs one delivery; never fails, every outcome is an answer.
    async fn send(&self, request: CrmRequest) -> CrmResponse;

    /// Whether `url` answers at all: a `HEAD` request with the same address rules,
    /// timeouts and TLS as deliveries, carrying no event. Every outcome is an answer.
    async fn probe(&self, url: &str) -> CrmResponse;
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// The delivery (its job).
    pub job_id: JobId,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// [`AttemptOutcome::kind`], or why no request was made (`endpoint_disabled`, ...).
    pub outcome: String,
    /// The HTTP status, when the CRM answered.
    pub status_code: Option<u16>,
    /// The start of the CRM's answer.
    pub response_body: Option<String>,
    /// What went wrong, when no answer came.
    pub error: Option<String>,
}

/// An attempt to record, with what it decided, under the lease it was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The lease the attempt was made under.
    pub lease: JobLease,
    /// The attempt.
    pub attempt: DeliveryAttempt,
    /// What happens to the delivery now.
    pub resolution: DeliveryResolution,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResolution {
    /// Delivered.
    Done,
    /// Queued again for `at`.
    RetryAt(DateTime<Utc>),
    /// Dead-lettered.
    Dead,
    /// Dead-lettered, and the account's endpoint disabled (the CRM said 410).
    DeadAndDisable(AccountId),
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// Only this account's.
    pub account_id: Option<AccountId>,
    /// Only in this state.
    pub status: Option<JobStatus>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
}

/// What a request to retry one delivery now found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryNow {
    /// Queued to run now.
    Queued(Job),
    /// No such delivery.
    NotFound,
    /// A worker holds it right now.
    Running,
    /// Already delivered.
    AlreadyDelivered,
}

/// Delivery state: attempts, resolutions, listings, replays.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// In one transaction, for each of `records` whose lease is still its job's current
    /// lease: records the attempt and resolves the job. Answers, in order, whether each was
    /// recorded; one whose lease was lost writes nothing (a slower worker must not overwrite
    /// a newer result). Several records share a transaction so that a worker's batch costs
    /// one commit, not one per delivery.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`]; then nothing was written.
    async fn record(
        &self,
        records: &[AttemptRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, RepoError>;

    /// Deliveries matching `filter`, newest first.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`], [`RepoError::Corrupt`] or [`RepoError::InvalidCursor`].
    async fn list(
        &self,
        filter: &DeliveryFilter,
        page: PageRequest,
    ) -> Result<Page<Job>, RepoError>;

    /// The attempts of a delivery, first first.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn attempts(&self, job: &JobId) -> Result<Vec<DeliveryAttempt>, RepoError>;

    /// Queues a delivery that is waiting or dead to run at `now`, with a fresh set of
    /// attempts when it was dead.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn retry_now(&self, job: &JobId, now: DateTime<Utc>) -> Result<RetryNow, RepoError>;

    /// Queues every dead-lettered delivery of `account` created in `[since, until)` to run at
    /// `now` with a fresh set of attempts; returns how many.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn replay_dead(
        &self,
        account: &AccountId,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<u64, RepoError>;

    /// How many deliveries wait, run, or are dead (not the delivered ones).
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn counts(&self) -> Result<Vec<(JobStatus, u64)>, RepoError>;
}
