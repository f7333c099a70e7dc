//! The replay worker: drains the spool into the journal and replays due journal entries on their schedule.

#[allow(clippy::wildcard_imports)]
use super::*;

impl JournalReplayer {
    /// One round: the spool first (oldest requests), then the due journal entries. True when
    /// there may be more to do at once.
    pub async fn round(&self) -> bool {
        let spooled = self.drain_spool().await;
        let replayed = self.replay_due().await;
        spooled || replayed
    }

    /// Moves up to a round of spooled requests into the database; true when it moved a full
    /// round. Stops at the first the database refuses: it is down still.
    pub(super) async fn drain_spool(&self) -> bool {
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
    pub(super) async fn ingest_all(
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
    pub(super) async fn replay_due(&self) -> bool {
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
    pub(super) async fn load(&self, job: &ClaimedJob) -> Result<Option<JournalEntry>, RepoError> {
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

    pub(super) async fn finish(&self, job: &ClaimedJob) {
        let now = self.ports.clock.now();
        if let Err(error) = self.ports.jobs.complete(&job.lease, now).await {
            // The lease runs out and the job is claimed again: the entry is stored by then.
            tracing::warn!(job_id = %job.lease.job_id, error = %describe(&error), "cannot complete a replay job");
        }
    }

    pub(super) async fn reschedule(&self, job: &ClaimedJob, cause: &str) {
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
}
