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

mod worker;

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
