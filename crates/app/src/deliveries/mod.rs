//! Delivering stored events to CRMs: workers that claim `crm_delivery` jobs with a lease, send
//! them outside any transaction, record every attempt, and retry, dead-letter or finish them;
//! plus what the API does with deliveries (list, inspect, retry now, replay).
//!
//! Correctness lives in the database (leases, fenced results); what this module keeps in
//! memory only shapes the load: a concurrency limit per endpoint, and a pause for an endpoint
//! in a long failure streak.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use insta_router_domain::{
    Account, AccountId, AttemptOutcome, ClaimedJob, Job, JobId, JobKind, JobLease, JobStatus,
    JobWork, NextStep, RetrySchedule, Secret, next_step,
};
use insta_router_ports::{
    AccountRepository, AttemptRecord, Clock, CredentialCipher, CrmRequest, CrmResponse, CrmSender,
    DeliveryAttempt, DeliveryFilter, DeliveryResolution, DeliveryStore, JobQueue, Page,
    PageRequest, RepoError, RetryNow,
};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::{new_id_bits, workers};

mod worker;

use skips::{ACCOUNT_UNAVAILABLE, SKIP_PREFIX, jitter_draw, skipped};
mod endpoints;
mod skips;

/// How deliveries are worked.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Worker tasks; each claims up to `batch` deliveries at a time and sends them
    /// concurrently.
    pub workers: usize,
    /// Most deliveries one worker claims at once.
    pub batch: u32,
    /// How long a claim holds. A worker that dies leaves its deliveries to others after this.
    pub lease: Duration,
    /// The longest one attempt may take (the sender's total timeout). A delivery that
    /// waited for a free slot until its lease could run out mid-request is released instead
    /// of sent, so no second worker sends it at the same time.
    pub attempt_timeout: Duration,
    /// How often an idle worker looks for due deliveries (retries come due by time, not by
    /// a commit).
    pub poll_interval: Duration,
    /// When attempts are made.
    pub schedule: RetrySchedule,
    /// Most concurrent requests to one CRM URL.
    pub per_endpoint_concurrency: usize,
    /// Consecutive failures after which an endpoint is paused.
    pub pause_after_failures: u32,
    /// How long a pause lasts; deliveries to a paused endpoint wait without using up
    /// attempts.
    pub pause_for: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            workers: 4,
            batch: 32,
            lease: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            schedule: RetrySchedule::default(),
            per_endpoint_concurrency: 8,
            pause_after_failures: 20,
            pause_for: Duration::from_secs(60),
        }
    }
}

/// Why a delivery request failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// No such delivery.
    #[error("delivery {0} not found")]
    NotFound(JobId),
    /// A worker is sending it right now.
    #[error("delivery {0} is being sent right now")]
    Running(JobId),
    /// It was delivered already.
    #[error("delivery {0} was delivered already")]
    AlreadyDelivered(JobId),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] RepoError),
}

/// A delivery with its attempts.
#[derive(Debug, Clone)]
pub struct DeliveryDetail {
    /// The delivery.
    pub job: Job,
    /// Its attempts, first first.
    pub attempts: Vec<DeliveryAttempt>,
}

/// Per-endpoint state that shapes the load.
#[derive(Default)]
struct Endpoint {
    slots: Option<Arc<Semaphore>>,
    failures: u32,
    paused_until: Option<DateTime<Utc>>,
}

/// The delivery use cases and their workers.
pub struct DeliveryService {
    jobs: Arc<dyn JobQueue>,
    store: Arc<dyn DeliveryStore>,
    accounts: Arc<dyn AccountRepository>,
    cipher: Arc<dyn CredentialCipher>,
    sender: Arc<dyn CrmSender>,
    clock: Arc<dyn Clock>,
    settings: DeliverySettings,
    endpoints: Mutex<HashMap<String, Endpoint>>,
    wakeups: watch::Sender<u64>,
}

impl DeliveryService {
    /// A service over these ports.
    pub fn new(
        jobs: Arc<dyn JobQueue>,
        store: Arc<dyn DeliveryStore>,
        accounts: Arc<dyn AccountRepository>,
        cipher: Arc<dyn CredentialCipher>,
        sender: Arc<dyn CrmSender>,
        clock: Arc<dyn Clock>,
        settings: DeliverySettings,
    ) -> Self {
        Self {
            jobs,
            store,
            accounts,
            cipher,
            sender,
            clock,
            settings,
            endpoints: Mutex::new(HashMap::new()),
            wakeups: watch::Sender::new(0),
        }
    }

    /// Wakes idle workers: deliveries were queued to run now (a retry, a replay).
    pub fn wake(&self) {
        self.wakeups.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Starts the workers on the current runtime. They wake on `commits` (a change means new
    /// jobs) and on [`DeliveryService::wake`], poll otherwise, and stop once `stop` turns
    /// true, finishing the deliveries they hold.
    pub fn start(
        self: &Arc<Self>,
        commits: watch::Receiver<u64>,
        stop: watch::Receiver<bool>,
    ) -> JoinSet<()> {
        let wakers = workers::Wakers {
            commits: Some(commits),
            wakeups: Some(self.wakeups.subscribe()),
            stop,
            poll: self.settings.poll_interval,
        };
        workers::start(self, self.settings.workers, &wakers, Self::round)
    }

    /// Deliveries matching `filter`, newest first.
    ///
    /// # Errors
    ///
    /// [`DeliveryError::Storage`].
    pub async fn list(
        &self,
        filter: &DeliveryFilter,
        page: PageRequest,
    ) -> Result<Page<Job>, DeliveryError> {
        Ok(self.store.list(filter, page).await?)
    }

    /// One delivery with its attempts.
    ///
    /// # Errors
    ///
    /// [`DeliveryError::NotFound`] or [`DeliveryError::Storage`].
    pub async fn get(&self, id: &JobId) -> Result<DeliveryDetail, DeliveryError> {
        let job = self
            .jobs
            .get(id)
            .await?
            .filter(|j| j.kind() == JobKind::CrmDelivery)
            .ok_or_else(|| DeliveryError::NotFound(id.clone()))?;
        let attempts = self.store.attempts(id).await?;
        Ok(DeliveryDetail { job, attempts })
    }

    /// Queues a waiting or dead delivery to be sent now.
    ///
    /// # Errors
    ///
    /// [`DeliveryError::NotFound`], [`DeliveryError::Running`],
    /// [`DeliveryError::AlreadyDelivered`] or [`DeliveryError::Storage`].
    pub async fn retry_now(&self, id: &JobId) -> Result<Job, DeliveryError> {
        match self.store.retry_now(id, self.clock.now()).await? {
            RetryNow::Queued(job) => Ok(job),
            RetryNow::NotFound => Err(DeliveryError::NotFound(id.clone())),
            RetryNow::Running => Err(DeliveryError::Running(id.clone())),
            RetryNow::AlreadyDelivered => Err(DeliveryError::AlreadyDelivered(id.clone())),
        }
    }

    /// Queues the account's dead-lettered deliveries created in `[since, until)` again.
    ///
    /// # Errors
    ///
    /// [`DeliveryError::Storage`].
    pub async fn replay(
        &self,
        account: &AccountId,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<u64, DeliveryError> {
        let replayed = self
            .store
            .replay_dead(account, since, until, self.clock.now())
            .await?;
        tracing::info!(account_id = %account, replayed, "dead-lettered deliveries replayed");
        Ok(replayed)
    }

    /// Publishes how many deliveries wait, run, or are dead, as gauges.
    ///
    /// # Errors
    ///
    /// [`DeliveryError::Storage`].
    pub async fn publish_queue_depth(&self) -> Result<(), DeliveryError> {
        let counts = self.store.counts().await?;
        for status in [JobStatus::Queued, JobStatus::Running, JobStatus::Dead] {
            let n = counts
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            #[allow(clippy::cast_precision_loss, reason = "a gauge; counts far below 2^52")]
            metrics::gauge!("insta_router_deliveries", "status" => status.as_str()).set(n as f64);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
