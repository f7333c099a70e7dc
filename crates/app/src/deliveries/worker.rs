//! The delivery workers: claim CRM deliveries, sign and send each, and record what the CRM answered on the retry schedule.

#[allow(clippy::wildcard_imports)]
use super::*;

impl DeliveryService {
    /// Claims a batch and sends it, concurrently; whether the batch was full (more may be
    /// due).
    pub(super) async fn round(self: Arc<Self>) -> bool {
        let limit = self.settings.batch.max(1);
        let claimed = workers::claim(
            self.jobs.as_ref(),
            JobKind::CrmDelivery,
            limit,
            self.settings.lease,
            self.clock.now(),
        )
        .await;
        if claimed.is_empty() {
            return false;
        }
        let full = claimed.len() >= limit as usize;
        self.work(claimed).await;
        full
    }

    /// Sends `claimed` concurrently, then records every attempt in one transaction. Each
    /// account is read once per batch.
    pub(super) async fn work(self: &Arc<Self>, claimed: Vec<ClaimedJob>) {
        let mut accounts: HashMap<Option<AccountId>, Arc<Result<Account, &'static str>>> =
            HashMap::new();
        let mut sends = JoinSet::new();
        for job in claimed {
            let account = match accounts.get(&job.job.account_id) {
                Some(account) => account.clone(),
                None => {
                    let account = Arc::new(self.account_of(&job.job).await);
                    accounts.insert(job.job.account_id.clone(), account.clone());
                    account
                }
            };
            let service = self.clone();
            sends.spawn(async move { service.deliver(job, &account).await });
        }
        let mut records = Vec::new();
        while let Some(done) = sends.join_next().await {
            if let Ok(Some(record)) = done {
                records.push(record);
            }
        }
        self.record(&records).await;
    }

    /// One attempt at one claimed delivery: what to record, or nothing when the delivery was
    /// released unsent (its account could not be read, its endpoint is paused, or its lease
    /// ran short).
    async fn deliver(
        &self,
        claimed: ClaimedJob,
        account: &Result<Account, &'static str>,
    ) -> Option<AttemptRecord> {
        let ClaimedJob { job, lease } = claimed;
        let started_at = self.clock.now();
        let account = match account {
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
                return None;
            }
            Err(reason) => {
                // Nothing can be sent; kept dead, to be replayed once the account is fixed.
                return Some(self.finish(
                    job,
                    lease,
                    started_at,
                    skipped(reason),
                    DeliveryResolution::Dead,
                ));
            }
        };
        let Some(url) = account
            .crm_webhook_url
            .as_ref()
            .map(|u| u.as_str().to_owned())
        else {
            return Some(self.finish(
                job,
                lease,
                started_at,
                skipped("no_crm_url"),
                DeliveryResolution::Dead,
            ));
        };
        if account.delivery.disabled_at.is_some() {
            return Some(self.finish(
                job,
                lease,
                started_at,
                skipped("endpoint_disabled"),
                DeliveryResolution::Dead,
            ));
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
            return None;
        }
        let secrets = match self.secrets(account, started_at) {
            Ok(secrets) => secrets,
            Err(reason) => {
                let response = CrmResponse {
                    outcome: AttemptOutcome::Refused,
                    duration: Duration::ZERO,
                    body: None,
                    error: Some(reason),
                };
                let resolution = self.resolve(&job, &account.id, &response.outcome, started_at);
                return Some(self.finish(job, lease, started_at, response, resolution));
            }
        };
        let slots = self.slots(&url);
        let Ok(_slot) = slots.acquire().await else {
            return None;
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
            return None;
        }
        let response = self
            .sender
            .send(CrmRequest {
                url: url.clone(),
                webhook_id: job.subject.clone(),
                body: match &job.work {
                    JobWork::CrmDelivery { body } => body.clone(),
                    other => other.payload().to_owned(),
                },
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
        Some(self.finish(job, lease, started_at, response, resolution))
    }

    pub(super) async fn account_of(&self, job: &Job) -> Result<Account, &'static str> {
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

    pub(super) fn secrets(
        &self,
        account: &Account,
        now: DateTime<Utc>,
    ) -> Result<Vec<Secret>, String> {
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

    pub(super) fn resolve(
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

    /// The record of an attempt, counted in the metrics and logged when it failed.
    fn finish(
        &self,
        job: Job,
        lease: JobLease,
        started_at: DateTime<Utc>,
        response: CrmResponse,
        resolution: DeliveryResolution,
    ) -> AttemptRecord {
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
                tracing::warn!(job_id = %job.id, attempts = job.attempts, outcome = %attempt.outcome, cause = %attempt_cause(&attempt), "delivery dead-lettered");
            }
            DeliveryResolution::RetryAt(at) => {
                tracing::info!(job_id = %job.id, attempts = job.attempts, outcome = %attempt.outcome, cause = %attempt_cause(&attempt), retry_at = %at, "delivery failed; retrying");
            }
            DeliveryResolution::Done => {}
        }
        if let DeliveryResolution::DeadAndDisable(account) = &resolution {
            tracing::warn!(account_id = %account, "the CRM answered 410 Gone; its endpoint is disabled until its URL or secret is set again");
        }
        AttemptRecord {
            lease,
            attempt,
            resolution,
        }
    }

    /// Records a batch's attempts; a failure leaves them to be tried again when their leases
    /// run out (at least once).
    async fn record(&self, records: &[AttemptRecord]) {
        if records.is_empty() {
            return;
        }
        match self.store.record(records, self.clock.now()).await {
            Ok(recorded) => {
                for (record, _) in records.iter().zip(recorded).filter(|(_, yes)| !yes) {
                    tracing::warn!(job_id = %record.lease.job_id, "the delivery's lease ran out before its result was recorded; another worker has it");
                }
            }
            Err(error) => {
                tracing::error!(%error, deliveries = records.len(), "cannot record delivery attempts");
            }
        }
    }
}

/// Why an attempt failed, for the log: the CRM's status, or the connection's error.
fn attempt_cause(attempt: &DeliveryAttempt) -> String {
    match (attempt.status_code, &attempt.error) {
        (Some(status), _) => format!("the CRM answered HTTP {status}"),
        (None, Some(error)) => error.clone(),
        (None, None) => attempt.outcome.clone(),
    }
}
