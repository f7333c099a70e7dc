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
    Account, AccountId, AttemptOutcome, ClaimedJob, Job, JobId, JobKind, JobStatus, NextStep,
    RetrySchedule, Secret, next_step,
};
use insta_router_ports::{
    AccountRepository, Clock, CredentialCipher, CrmRequest, CrmResponse, CrmSender,
    DeliveryAttempt, DeliveryFilter, DeliveryResolution, DeliveryStore, JobQueue, Page,
    PageRequest, RepoError, RetryNow,
};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::{new_id_bits, workers};

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
            batch: 8,
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

    /// Claims a batch and sends it, concurrently; false when nothing was due.
    async fn round(self: Arc<Self>) -> bool {
        let claimed = workers::claim(
            self.jobs.as_ref(),
            JobKind::CrmDelivery,
            self.settings.batch.max(1),
            self.settings.lease,
            self.clock.now(),
        )
        .await;
        if claimed.is_empty() {
            return false;
        }
        let mut sends = JoinSet::new();
        for job in claimed {
            let service = self.clone();
            sends.spawn(async move { service.deliver(job).await });
        }
        while sends.join_next().await.is_some() {}
        true
    }

    /// One attempt at one claimed delivery.
    async fn deliver(&self, claimed: ClaimedJob) {
        let ClaimedJob { job, lease } = claimed;
        let started_at = self.clock.now();
        let account = match self.account_of(&job).await {
            Ok(account) => account,
            Err(ACCOUNT_UNAVAILABLE) => {
                let later = started_at + TimeDelta::seconds(30);
                if let Err(error) = self
                    .jobs
                    .release(&lease, later, "the account could not be read", started_at)
                    .await
                {
                    tracing::warn!(%error, job_id = %job.id, "cannot release a delivery");
                }
                return;
            }
            Err(reason) => {
                // Nothing can be sent; kept dead, to be replayed once the account is fixed.
                self.finish(
                    &job,
                    &lease,
                    started_at,
                    skipped(reason),
                    DeliveryResolution::Dead,
                )
                .await;
                return;
            }
        };
        let Some(url) = account
            .crm_webhook_url
            .as_ref()
            .map(|u| u.as_str().to_owned())
        else {
            self.finish(
                &job,
                &lease,
                started_at,
                skipped("no_crm_url"),
                DeliveryResolution::Dead,
            )
            .await;
            return;
        };
        if account.delivery.disabled_at.is_some() {
            self.finish(
                &job,
                &lease,
                started_at,
                skipped("endpoint_disabled"),
                DeliveryResolution::Dead,
            )
            .await;
            return;
        }
        if let Some(until) = self.paused_until(&url, started_at) {
            if let Err(error) = self
                .jobs
                .release(
                    &lease,
                    until,
                    "endpoint paused after repeated failures",
                    started_at,
                )
                .await
            {
                tracing::warn!(%error, job_id = %job.id, "cannot release a delivery");
            }
            return;
        }
        let secrets = match self.secrets(&account, started_at) {
            Ok(secrets) => secrets,
            Err(reason) => {
                let response = CrmResponse {
                    outcome: AttemptOutcome::Refused,
                    duration: Duration::ZERO,
                    body: None,
                    error: Some(reason),
                };
                let resolution = self.resolve(&job, &account.id, &response.outcome, started_at);
                self.finish(&job, &lease, started_at, response, resolution)
                    .await;
                return;
            }
        };
        let slots = self.slots(&url);
        let Ok(_slot) = slots.acquire().await else {
            return;
        };
        let now = self.clock.now();
        let latest_start = job.lease_until.and_then(|until| {
            TimeDelta::from_std(self.settings.attempt_timeout)
                .ok()
                .and_then(|t| until.checked_sub_signed(t))
        });
        if latest_start.is_some_and(|latest| now >= latest) {
            if let Err(error) = self
                .jobs
                .release(
                    &lease,
                    now,
                    "waited for a free slot until its lease ran short",
                    now,
                )
                .await
            {
                tracing::warn!(%error, job_id = %job.id, "cannot release a delivery");
            }
            return;
        }
        let response = self
            .sender
            .send(CrmRequest {
                url: url.clone(),
                webhook_id: job.subject.clone(),
                body: job.payload.clone(),
                secrets,
            })
            .await;
        self.note_outcome(&url, &response.outcome, self.clock.now());
        let resolution = self.resolve(&job, &account.id, &response.outcome, started_at);
        if resolution == DeliveryResolution::Done {
            let since_created = started_at - job.created_at;
            if job.attempts > 1 {
                tracing::info!(job_id = %job.id, attempts = job.attempts, "delivered after retries");
            }
            if let Ok(latency) = since_created.to_std() {
                metrics::histogram!("insta_router_delivery_latency_seconds")
                    .record(latency.as_secs_f64() + response.duration.as_secs_f64());
            }
        }
        self.finish(&job, &lease, started_at, response, resolution)
            .await;
    }

    async fn account_of(&self, job: &Job) -> Result<Account, &'static str> {
        let Some(id) = &job.account_id else {
            return Err("no_account");
        };
        match self.accounts.get(id).await {
            Ok(Some(account)) => Ok(account),
            Ok(None) => Err("account_deleted"),
            Err(error) => {
                tracing::warn!(%error, job_id = %job.id, "cannot read the delivery's account");
                Err(ACCOUNT_UNAVAILABLE)
            }
        }
    }

    fn secrets(&self, account: &Account, now: DateTime<Utc>) -> Result<Vec<Secret>, String> {
        let current = account
            .webhook_secret
            .as_ref()
            .ok_or_else(|| "the account has no webhook secret".to_owned())?;
        let mut secrets = vec![self.cipher.open(current).map_err(|e| e.to_string())?];
        if let Some(previous) = account.delivery.previous_secret_at(now)
            && let Ok(previous) = self.cipher.open(previous)
        {
            secrets.push(previous);
        }
        Ok(secrets)
    }

    fn resolve(
        &self,
        job: &Job,
        account: &AccountId,
        outcome: &AttemptOutcome,
        now: DateTime<Utc>,
    ) -> DeliveryResolution {
        match next_step(
            &self.settings.schedule,
            job.attempts,
            outcome,
            jitter_draw(),
        ) {
            NextStep::Delivered => DeliveryResolution::Done,
            NextStep::RetryAfter(delay) => DeliveryResolution::RetryAt(
                TimeDelta::from_std(delay)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
            ),
            NextStep::DeadLetter => DeliveryResolution::Dead,
            NextStep::DisableEndpoint => DeliveryResolution::DeadAndDisable(account.clone()),
        }
    }

    async fn finish(
        &self,
        job: &Job,
        lease: &insta_router_domain::JobLease,
        started_at: DateTime<Utc>,
        response: CrmResponse,
        resolution: DeliveryResolution,
    ) {
        // A skipped attempt is recorded under its reason (`endpoint_disabled`, ...).
        let outcome = response
            .error
            .as_deref()
            .and_then(|e| e.strip_prefix(SKIP_PREFIX))
            .map_or_else(|| response.outcome.kind().to_owned(), str::to_owned);
        metrics::counter!("insta_router_delivery_attempts_total", "outcome" => outcome.clone())
            .increment(1);
        metrics::histogram!("insta_router_delivery_attempt_seconds")
            .record(response.duration.as_secs_f64());
        let status_code = match response.outcome {
            AttemptOutcome::Answered { status, .. } => Some(status),
            _ => None,
        };
        let attempt = DeliveryAttempt {
            job_id: job.id.clone(),
            attempt: job.attempts,
            started_at,
            duration_ms: u64::try_from(response.duration.as_millis()).unwrap_or(u64::MAX),
            outcome,
            status_code,
            response_body: response.body,
            error: response.error,
        };
        match &resolution {
            DeliveryResolution::Dead | DeliveryResolution::DeadAndDisable(_) => {
                metrics::counter!("insta_router_delivery_dead_letters_total").increment(1);
                tracing::warn!(job_id = %job.id, attempts = job.attempts, outcome = %attempt.outcome, "delivery dead-lettered");
            }
            DeliveryResolution::RetryAt(at) => {
                tracing::debug!(job_id = %job.id, attempts = job.attempts, outcome = %attempt.outcome, retry_at = %at, "delivery failed; retrying");
            }
            DeliveryResolution::Done => {}
        }
        if let DeliveryResolution::DeadAndDisable(account) = &resolution {
            tracing::warn!(account_id = %account, "the CRM answered 410 Gone; its endpoint is disabled until its URL or secret is set again");
        }
        match self
            .store
            .record(lease, &attempt, &resolution, self.clock.now())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job_id = %job.id, "the delivery's lease ran out before its result was recorded; another worker has it");
            }
            Err(error) => {
                // The lease runs out and the delivery is tried again: at least once.
                tracing::error!(%error, job_id = %job.id, "cannot record a delivery attempt");
            }
        }
    }

    fn slots(&self, url: &str) -> Arc<Semaphore> {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let endpoint = endpoints.entry(url.to_owned()).or_default();
        endpoint
            .slots
            .get_or_insert_with(|| {
                Arc::new(Semaphore::new(
                    self.settings.per_endpoint_concurrency.max(1),
                ))
            })
            .clone()
    }

    fn paused_until(&self, url: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        endpoints
            .get(url)
            .and_then(|e| e.paused_until)
            .filter(|until| *until > now)
    }

    fn note_outcome(&self, url: &str, outcome: &AttemptOutcome, now: DateTime<Utc>) {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let endpoint = endpoints.entry(url.to_owned()).or_default();
        if matches!(outcome, AttemptOutcome::Answered { status, .. } if (200..300).contains(status))
        {
            endpoint.failures = 0;
            endpoint.paused_until = None;
            return;
        }
        endpoint.failures = endpoint.failures.saturating_add(1);
        if endpoint.failures >= self.settings.pause_after_failures.max(1) {
            let until = TimeDelta::from_std(self.settings.pause_for)
                .ok()
                .and_then(|d| now.checked_add_signed(d));
            if endpoint.paused_until.is_none_or(|p| p <= now) {
                tracing::warn!(
                    url,
                    failures = endpoint.failures,
                    "pausing deliveries to a failing CRM endpoint"
                );
            }
            endpoint.paused_until = until;
        }
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
            .filter(|j| j.kind == JobKind::CrmDelivery)
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

/// The marker of an attempt that made no request.
const SKIP_PREFIX: &str = "skipped: ";

/// Why [`DeliveryService::account_of`] found no account because the store failed.
const ACCOUNT_UNAVAILABLE: &str = "account_unavailable";

/// A non-attempt: why nothing was sent.
fn skipped(reason: &str) -> CrmResponse {
    CrmResponse {
        outcome: AttemptOutcome::Refused,
        duration: Duration::ZERO,
        body: None,
        error: Some(format!("{SKIP_PREFIX}{reason}")),
    }
}

/// A value in `[0, 1)` from the id generator's random bits.
fn jitter_draw() -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "53 bits fit an f64 exactly")]
    let bits = (new_id_bits() & ((1 << 53) - 1)) as f64;
    bits / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use insta_router_domain::{
        CrmDeliveryState, CrmWebhookUrl, InstagramAccountId, JobLease, SealedSecret, Username,
    };
    use insta_router_ports::{
        MockAccountRepository, MockClock, MockCrmSender, MockDeliveryStore, MockJobQueue,
    };

    use super::*;
    use crate::PlaintextCipher;

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000)
    }

    fn account(delivery: CrmDeliveryState) -> Account {
        Account {
            id: AccountId::from_u128(1),
            instagram_account_id: InstagramAccountId::parse("i", "1784").unwrap(),
            username: Username::parse("shop").unwrap(),
            crm_webhook_url: Some(CrmWebhookUrl::parse("https://crm.example/h").unwrap()),
            access_token: SealedSecret::new("plain:t".into()),
            webhook_secret: Some(SealedSecret::new("plain:new".into())),
            delivery,
            token_failure: None,
            created_at: now(),
            updated_at: now(),
        }
    }

    fn claimed(n: u128, attempts: u32) -> ClaimedJob {
        let id = JobId::from_u128(n);
        ClaimedJob {
            job: Job {
                id: id.clone(),
                kind: JobKind::CrmDelivery,
                account_id: Some(AccountId::from_u128(1)),
                subject: format!("msg_{n}"),
                payload: r#"{"type":"message.received"}"#.to_owned(),
                status: JobStatus::Running,
                attempts,
                run_at: now() + TimeDelta::seconds(60),
                lease_until: Some(now() + TimeDelta::seconds(60)),
                last_error: None,
                created_at: now(),
            },
            lease: JobLease {
                job_id: id,
                token: format!("lease_{n}"),
            },
        }
    }

    fn answered(status: u16) -> CrmResponse {
        CrmResponse {
            outcome: AttemptOutcome::Answered {
                status,
                retry_after: None,
            },
            duration: Duration::from_millis(3),
            body: None,
            error: None,
        }
    }

    struct Mocks {
        jobs: MockJobQueue,
        store: MockDeliveryStore,
        accounts: MockAccountRepository,
        sender: MockCrmSender,
    }

    impl Mocks {
        fn new(account: Option<Account>) -> Self {
            let mut accounts = MockAccountRepository::new();
            accounts
                .expect_get()
                .returning(move |_| Ok(account.clone()));
            Self {
                jobs: MockJobQueue::new(),
                store: MockDeliveryStore::new(),
                accounts,
                sender: MockCrmSender::new(),
            }
        }

        fn service(self, settings: DeliverySettings) -> DeliveryService {
            let mut clock = MockClock::new();
            clock.expect_now().returning(now);
            DeliveryService::new(
                Arc::new(self.jobs),
                Arc::new(self.store),
                Arc::new(self.accounts),
                Arc::new(PlaintextCipher),
                Arc::new(self.sender),
                Arc::new(clock),
                settings,
            )
        }
    }

    #[tokio::test]
    async fn outcomes_map_to_resolutions_on_the_schedule() {
        let mut mocks = Mocks::new(Some(account(CrmDeliveryState::default())));
        let statuses = [200_u16, 503, 410];
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        mocks
            .sender
            .expect_send()
            .times(3)
            .returning(move |request| {
                // The stored body and the event's id, signed with the current secret.
                assert_eq!(request.body, r#"{"type":"message.received"}"#);
                assert!(request.webhook_id.starts_with("msg_"));
                assert_eq!(request.secrets.len(), 1);
                assert_eq!(request.secrets[0].expose(), "new");
                answered(statuses[seen.fetch_add(1, Ordering::SeqCst)])
            });
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let log = recorded.clone();
        mocks
            .store
            .expect_record()
            .times(3)
            .returning(move |_, attempt, resolution, _| {
                log.lock()
                    .unwrap()
                    .push((attempt.outcome.clone(), resolution.clone()));
                Ok(true)
            });
        let service = mocks.service(DeliverySettings::default());
        service.deliver(claimed(1, 1)).await;
        service.deliver(claimed(2, 1)).await;
        service.deliver(claimed(3, 1)).await;
        let recorded = recorded.lock().unwrap().clone();
        assert_eq!(
            recorded[0],
            ("delivered".to_owned(), DeliveryResolution::Done)
        );
        // After the first attempt the schedule says 5 s, +-20 %.
        match &recorded[1] {
            (outcome, DeliveryResolution::RetryAt(at)) => {
                assert_eq!(outcome, "http_error");
                let delay = *at - now();
                assert!(delay >= TimeDelta::seconds(4) && delay <= TimeDelta::seconds(6));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            recorded[2],
            (
                "gone".to_owned(),
                DeliveryResolution::DeadAndDisable(AccountId::from_u128(1))
            )
        );
    }

    #[tokio::test]
    async fn a_failure_streak_pauses_the_endpoint_without_using_attempts() {
        let mut mocks = Mocks::new(Some(account(CrmDeliveryState::default())));
        mocks
            .sender
            .expect_send()
            .times(2)
            .returning(|_| answered(500));
        mocks
            .store
            .expect_record()
            .times(2)
            .returning(|_, _, _, _| Ok(true));
        mocks
            .jobs
            .expect_release()
            .times(1)
            .withf(|lease, at, _, _| {
                lease.token == "lease_3" && *at == now() + TimeDelta::seconds(60)
            })
            .returning(|_, _, _, _| Ok(true));
        let service = mocks.service(DeliverySettings {
            pause_after_failures: 2,
            pause_for: Duration::from_secs(60),
            ..DeliverySettings::default()
        });
        for n in 1..=3 {
            service.deliver(claimed(n, 1)).await;
        }
    }

    #[tokio::test]
    async fn a_lease_too_short_for_an_attempt_is_released_unsent() {
        let mut mocks = Mocks::new(Some(account(CrmDeliveryState::default())));
        mocks.sender.expect_send().never();
        mocks
            .jobs
            .expect_release()
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        let mut job = claimed(1, 1);
        // The lease ends in 5 s; an attempt may take 10.
        job.job.lease_until = Some(now() + TimeDelta::seconds(5));
        mocks
            .service(DeliverySettings::default())
            .deliver(job)
            .await;
    }

    #[tokio::test]
    async fn a_secret_in_its_grace_period_signs_too() {
        let mut mocks = Mocks::new(Some(account(CrmDeliveryState {
            disabled_at: None,
            previous_secret: Some(SealedSecret::new("plain:old".into())),
            previous_secret_until: Some(now() + TimeDelta::hours(1)),
        })));
        mocks.sender.expect_send().times(1).returning(|request| {
            let secrets: Vec<&str> = request.secrets.iter().map(Secret::expose).collect();
            assert_eq!(secrets, ["new", "old"]);
            answered(204)
        });
        mocks
            .store
            .expect_record()
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        mocks
            .service(DeliverySettings::default())
            .deliver(claimed(1, 1))
            .await;
    }

    #[tokio::test]
    async fn nothing_is_sent_for_a_disabled_endpoint_or_a_deleted_account() {
        let disabled = account(CrmDeliveryState {
            disabled_at: Some(now()),
            ..CrmDeliveryState::default()
        });
        for (account, reason) in [
            (Some(disabled), "endpoint_disabled"),
            (None, "account_deleted"),
        ] {
            let mut mocks = Mocks::new(account);
            mocks.sender.expect_send().never();
            mocks
                .store
                .expect_record()
                .times(1)
                .withf(move |_, attempt, resolution, _| {
                    attempt.outcome == reason
                        && attempt.status_code.is_none()
                        && *resolution == DeliveryResolution::Dead
                })
                .returning(|_, _, _, _| Ok(true));
            mocks
                .service(DeliverySettings::default())
                .deliver(claimed(1, 1))
                .await;
        }
    }
}
