//! Replaying webhook requests whose events could not be stored when they arrived.
//!
//! Two places hold them (see [`crate::ingest`]): the journal, as `failed` entries each with a
//! `webhook_replay` job, and this instance's local spool, for requests that arrived while the
//! database refused even the journal. A worker moves spooled requests into the database as
//! soon as it accepts writes, and replays due journal entries through the same ingest path as
//! Meta's requests, deduplicated like any retry of Meta's. A replay that fails is rescheduled
//! with backoff ([`replay_delay`]) and never given up on; each entry has its own job, so one
//! that keeps failing (a poison body) never holds the others back.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use insta_router_domain::{ClaimedJob, JobKind, WebhookId, replay_delay};
use insta_router_ports::{
    Clock, JobQueue, JournalEntry, JournalStatus, JournalSummary, RepoError, WebhookJournal,
    WebhookSpool, describe,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::ingest::{IngestError, Ingestor, Origin, ReceivedWebhook};
use crate::workers::{self, Wakers};

/// Most entries one round replays (they are ingested together, so they share commits).
const ROUND: usize = 64;

/// What the replayer needs.
#[derive(Clone)]
pub struct ReplayPorts {
    /// The `webhook_replay` jobs.
    pub jobs: Arc<dyn JobQueue>,
    /// The journal.
    pub journal: Arc<dyn WebhookJournal>,
    /// This instance's spool, when it has one.
    pub spool: Option<Arc<dyn WebhookSpool>>,
    /// Now.
    pub clock: Arc<dyn Clock>,
}

/// How the replay worker runs.
#[derive(Debug, Clone, Copy)]
pub struct ReplaySettings {
    /// How long a claimed replay is leased.
    pub lease: Duration,
    /// The longest an idle worker sleeps.
    pub poll: Duration,
}

impl Default for ReplaySettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
        }
    }
}

/// What one replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Its events are stored now (`processed` of them were new).
    Stored {
        /// Events stored for the first time.
        processed: u32,
    },
    /// It was stored already (by an earlier replay); nothing was done.
    AlreadyStored,
    /// It failed again, for this reason; it stays kept for replay.
    Failed(String),
}

/// Why a replay could not even be tried.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No journaled or spooled webhook has this id.
    #[error("no webhook {0} in the journal or the spool")]
    NotFound(WebhookId),
    /// The database could not be read.
    #[error("the database is unavailable")]
    Unavailable(#[from] RepoError),
}

/// Replays failed and spooled webhook requests.
pub struct JournalReplayer {
    ports: ReplayPorts,
    ingest: Arc<Ingestor>,
    settings: ReplaySettings,
}

impl JournalReplayer {
    /// A replayer storing through `ingest`.
    pub fn new(ports: ReplayPorts, ingest: Arc<Ingestor>, settings: ReplaySettings) -> Self {
        Self {
            ports,
            ingest,
            settings,
        }
    }

    /// Starts the replay worker: it wakes on every webhook commit (the database takes writes
    /// again), on its poll, and stops when `stop` turns true.
    pub fn start(self: &Arc<Self>, stop: watch::Receiver<bool>) -> JoinSet<()> {
        let wakers = Wakers {
            commits: Some(self.ingest.commits()),
            wakeups: None,
            stop,
            poll: self.settings.poll,
        };
        workers::start(self, 1, &wakers, |replayer| async move {
            replayer.round().await
        })
    }

    /// One round: the spool first (oldest requests), then the due journal entries. True when
    /// there may be more to do at once.
    pub async fn round(&self) -> bool {
        let spooled = self.drain_spool().await;
        let replayed = self.replay_due().await;
        spooled || replayed
    }

    /// Moves up to a round of spooled requests into the database; true when it moved a full
    /// round. Stops at the first the database refuses: it is down still.
    async fn drain_spool(&self) -> bool {
        let Some(spool) = &self.ports.spool else {
            return false;
        };
        let entries = match spool.list(ROUND).await {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(error = %describe(&error), "cannot read the webhook spool");
                return false;
            }
        };
        let full = entries.len() == ROUND;
        let results = self.ingest_all(entries, Origin::Spool).await;
        let mut moved = 0_usize;
        for (id, result) in results {
            match result {
                Ok(_) => {
                    if let Err(error) = spool.remove(&id).await {
                        // Left in the spool: moved again later, deduplicated then.
                        tracing::warn!(webhook_id = %id, error = %describe(&error), "cannot remove a spooled webhook");
                    }
                    moved += 1;
                }
                Err(error) => {
                    tracing::debug!(webhook_id = %id, error = %describe(&error), "spooled webhook not moved yet");
                }
            }
        }
        if moved > 0 {
            tracing::info!(moved, "spooled webhooks moved into the database");
        }
        full && moved > 0
    }

    /// Ingests `entries` concurrently, so they share the writers' commits.
    async fn ingest_all(
        &self,
        entries: Vec<JournalEntry>,
        origin: Origin,
    ) -> Vec<(WebhookId, Result<crate::IngestReport, IngestError>)> {
        let mut set = JoinSet::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let ingest = self.ingest.clone();
            set.spawn(async move {
                let id = entry.id.clone();
                let result = ingest.ingest(ReceivedWebhook::replay(entry, origin)).await;
                (index, id, result)
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = set.join_next().await {
            if let Ok(result) = joined {
                results.push(result);
            }
        }
        results.sort_by_key(|(index, _, _)| *index);
        results
            .into_iter()
            .map(|(_, id, result)| (id, result))
            .collect()
    }

    /// Replays the journal entries whose replay is due; true when it claimed a full round.
    async fn replay_due(&self) -> bool {
        let now = self.ports.clock.now();
        let claimed = workers::claim(
            self.ports.jobs.as_ref(),
            JobKind::WebhookReplay,
            u32::try_from(ROUND).unwrap_or(u32::MAX),
            self.settings.lease,
            now,
        )
        .await;
        let full = claimed.len() == ROUND;
        let mut due = Vec::new();
        for job in claimed {
            match self.load(&job).await {
                Ok(Some(entry)) => due.push((job, entry)),
                Ok(None) => self.finish(&job).await,
                Err(error) => self.reschedule(&job, &describe(&error)).await,
            }
        }
        let (jobs, entries): (Vec<_>, Vec<_>) = due.into_iter().unzip();
        let results = self.ingest_all(entries, Origin::Journal).await;
        for (id, result) in results {
            let Some(job) = jobs.iter().find(|j| j.job.subject == id.as_str()) else {
                continue;
            };
            match result {
                Ok(report) => {
                    metrics::counter!("insta_router_webhook_replays_total", "outcome" => "stored")
                        .increment(1);
                    tracing::info!(webhook_id = %id, processed = report.processed, attempt = job.job.attempts, "journaled webhook replayed; its events are stored");
                    self.finish(job).await;
                }
                Err(IngestError::ShuttingDown) => {
                    let _ = self
                        .ports
                        .jobs
                        .release(&job.lease, now, "shutting down", now)
                        .await;
                }
                Err(IngestError::Unavailable(error)) => {
                    metrics::counter!("insta_router_webhook_replays_total", "outcome" => "failed")
                        .increment(1);
                    let cause = describe(&error);
                    let _ = self.ports.journal.record_error(&id, &cause).await;
                    self.reschedule(job, &cause).await;
                }
            }
        }
        full
    }

    /// The journal entry a replay job is about, when it still awaits its replay.
    async fn load(&self, job: &ClaimedJob) -> Result<Option<JournalEntry>, RepoError> {
        let Ok(id) = WebhookId::parse("subject", &job.job.subject) else {
            tracing::error!(job_id = %job.lease.job_id, subject = %job.job.subject, "replay job about no webhook id");
            return Ok(None);
        };
        match self.ports.journal.get(&id).await? {
            Some(entry) if entry.status == JournalStatus::Failed => Ok(Some(entry)),
            // Replayed by hand already, or gone: nothing left to do.
            _ => Ok(None),
        }
    }

    async fn finish(&self, job: &ClaimedJob) {
        let now = self.ports.clock.now();
        if let Err(error) = self.ports.jobs.complete(&job.lease, now).await {
            // The lease runs out and the job is claimed again: the entry is stored by then.
            tracing::warn!(job_id = %job.lease.job_id, error = %describe(&error), "cannot complete a replay job");
        }
    }

    async fn reschedule(&self, job: &ClaimedJob, cause: &str) {
        let now = self.ports.clock.now();
        let next: DateTime<Utc> = now + replay_delay(job.job.attempts.saturating_add(1));
        tracing::warn!(
            webhook_id = %job.job.subject,
            attempt = job.job.attempts,
            next_at = %next.to_rfc3339(),
            reason = %cause,
            "journaled webhook not replayed yet; retrying later",
        );
        if let Err(error) = self.ports.jobs.retry_at(&job.lease, next, cause, now).await {
            tracing::warn!(job_id = %job.lease.job_id, error = %describe(&error), "cannot reschedule a replay job; its lease will run out");
        }
    }

    /// Replays the webhook `id` now, whatever its schedule: from the spool when it is
    /// spooled here, else from the journal.
    ///
    /// # Errors
    ///
    /// [`ReplayError::NotFound`] for an unknown id, [`ReplayError::Unavailable`] when the
    /// journal cannot be read.
    pub async fn replay_now(&self, id: &WebhookId) -> Result<ReplayOutcome, ReplayError> {
        if let Some(spool) = &self.ports.spool
            && let Some(entry) = spool.get(id).await?
        {
            return Ok(self.replay_spooled(spool.as_ref(), entry).await);
        }
        let entry = self
            .ports
            .journal
            .get(id)
            .await?
            .ok_or_else(|| ReplayError::NotFound(id.clone()))?;
        if entry.status != JournalStatus::Failed {
            return Ok(ReplayOutcome::AlreadyStored);
        }
        match self
            .ingest
            .ingest(ReceivedWebhook::replay(entry, Origin::Journal))
            .await
        {
            Ok(report) => {
                if let Err(error) = self
                    .ports
                    .journal
                    .close_replay(id, self.ports.clock.now())
                    .await
                {
                    // Its job finds the entry stored when it comes due, and completes then.
                    tracing::debug!(webhook_id = %id, error = %describe(&error), "replay job left to its schedule");
                }
                tracing::info!(webhook_id = %id, processed = report.processed, "journaled webhook replayed by hand");
                Ok(ReplayOutcome::Stored {
                    processed: report.processed,
                })
            }
            Err(error) => {
                let cause = describe(&error);
                let _ = self.ports.journal.record_error(id, &cause).await;
                Ok(ReplayOutcome::Failed(cause))
            }
        }
    }

    async fn replay_spooled(&self, spool: &dyn WebhookSpool, entry: JournalEntry) -> ReplayOutcome {
        let id = entry.id.clone();
        match self
            .ingest
            .ingest(ReceivedWebhook::replay(entry, Origin::Spool))
            .await
        {
            Ok(report) => {
                let _ = spool.remove(&id).await;
                match report.status {
                    JournalStatus::Failed => ReplayOutcome::Failed(
                        "moved into the journal, where it awaits its replay".to_owned(),
                    ),
                    _ => ReplayOutcome::Stored {
                        processed: report.processed,
                    },
                }
            }
            Err(error) => ReplayOutcome::Failed(describe(&error)),
        }
    }

    /// Replays every spooled and failed webhook now, oldest first; the outcome of each.
    ///
    /// # Errors
    ///
    /// [`ReplayError::Unavailable`] when the journal or the spool cannot be read.
    pub async fn replay_all(&self) -> Result<Vec<(WebhookId, ReplayOutcome)>, ReplayError> {
        let mut outcomes = Vec::new();
        if let Some(spool) = &self.ports.spool {
            for entry in spool.list(usize::MAX).await? {
                let id = entry.id.clone();
                outcomes.push((id, self.replay_spooled(spool.as_ref(), entry).await));
            }
        }
        let mut failed = self
            .ports
            .journal
            .list(Some(JournalStatus::Failed), u32::MAX)
            .await?;
        failed.reverse();
        for summary in failed {
            let outcome = self.replay_now(&summary.id).await?;
            outcomes.push((summary.id, outcome));
        }
        Ok(outcomes)
    }

    /// The journal's entries with `status` (any when `None`), newest first, spooled ones of
    /// this instance included when asked for.
    ///
    /// # Errors
    ///
    /// [`ReplayError::Unavailable`] when the journal or the spool cannot be read.
    pub async fn list(
        &self,
        status: Option<JournalStatus>,
        limit: u32,
    ) -> Result<Vec<JournalSummary>, ReplayError> {
        let mut listed = Vec::new();
        if matches!(status, None | Some(JournalStatus::Spooled))
            && let Some(spool) = &self.ports.spool
        {
            let mut spooled: Vec<JournalSummary> = spool
                .list(usize::MAX)
                .await?
                .into_iter()
                .map(|e| JournalSummary {
                    bytes: e.body.len() as u64,
                    id: e.id,
                    received_at: e.received_at,
                    status: JournalStatus::Spooled,
                    error: e.error,
                    events: e.events,
                    replay: None,
                })
                .collect();
            spooled.reverse();
            listed.extend(spooled);
        }
        if status != Some(JournalStatus::Spooled) {
            listed.extend(self.ports.journal.list(status, limit).await?);
        }
        listed.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(listed)
    }

    /// Publishes how many webhooks await replay, in the journal and in this instance's spool.
    ///
    /// # Errors
    ///
    /// [`ReplayError::Unavailable`] when they cannot be counted.
    pub async fn publish_backlog(&self) -> Result<(), ReplayError> {
        if let Some(spool) = &self.ports.spool {
            let spooled = spool.count().await?;
            #[allow(clippy::cast_precision_loss, reason = "a gauge")]
            metrics::gauge!("insta_router_webhooks_awaiting_replay", "in" => "spool")
                .set(spooled as f64);
        }
        let failed = self.ports.journal.awaiting_replay().await?;
        #[allow(clippy::cast_precision_loss, reason = "a gauge")]
        metrics::gauge!("insta_router_webhooks_awaiting_replay", "in" => "journal")
            .set(failed as f64);
        Ok(())
    }
}
