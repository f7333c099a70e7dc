//! The requests of a group whose write failed: each written alone, else journaled for
//! replay, else spooled, else refused.

use insta_router_domain::{JobId, JobWork, NewJob, replay_delay};
use insta_router_ports::{JournalStatus, RepoError, describe};

use super::batch::{Prepared, RouteHints, write};
use super::{IngestError, IngestPorts, IngestReport, Origin};

/// The requests of a failed group, each written alone, else kept for replay.
pub(super) struct Rescue<'a> {
    pub(super) ports: &'a IngestPorts,
    /// The routes last read.
    pub(super) hints: &'a RouteHints,
    /// The group's error, which is the error of a group of one.
    pub(super) group_error: Option<RepoError>,
    /// Whether to write each request alone (not for a group of one: that was the write).
    pub(super) alone: bool,
    /// Set once the database refused even a journal entry: the group's remaining requests go
    /// straight to the spool instead of waiting for the database again.
    pub(super) journal_refused: bool,
}

impl Rescue<'_> {
    pub(super) async fn rescue(&mut self, prepared: Prepared) -> Result<IngestReport, IngestError> {
        let ports = self.ports;
        let error = if self.alone && !self.journal_refused {
            // Fresh ids: the group may have been committed after all (a connection lost
            // during the commit), and rows with these ids would then pass for new ones.
            let fresh = prepared.again(ports.parser.as_ref(), self.hints);
            match write(
                ports.store.as_ref(),
                self.hints,
                std::slice::from_ref(&fresh),
            )
            .await
            {
                Ok(mut reports) => return reports.pop().ok_or(IngestError::ShuttingDown),
                Err(e) => e,
            }
        } else {
            self.group_error.take().unwrap_or_else(|| {
                RepoError::Unavailable("the database refused the journal".into())
            })
        };
        let cause = describe(&error);
        if prepared.origin == Origin::Journal {
            // Its replay job is still queued; the replayer reschedules it.
            return Err(IngestError::Unavailable(error));
        }
        let id = prepared.journal.id.clone();
        let mut entry = prepared.journal;
        entry.status = JournalStatus::Failed;
        entry.error = Some(cause.clone());
        if !self.journal_refused {
            let now = ports.clock.now();
            let replay = NewJob {
                id: JobId::replaying(&id),
                work: JobWork::WebhookReplay,
                account_id: None,
                subject: id.as_str().to_owned(),
                run_at: now + replay_delay(1),
            };
            match ports
                .journal
                .keep_for_replay(std::slice::from_ref(&entry), &[replay])
                .await
            {
                Ok(()) => {
                    tracing::error!(webhook_id = %id, error = %cause, "cannot store a webhook's events; journaled as failed for replay");
                    return Ok(IngestReport {
                        webhook_id: id,
                        processed: 0,
                        status: JournalStatus::Failed,
                    });
                }
                Err(journal_error) => {
                    tracing::error!(webhook_id = %id, error = %cause, journal_error = %describe(&journal_error), "cannot store a webhook's events, nor journal it");
                    self.journal_refused = true;
                }
            }
        }
        if prepared.origin == Origin::Meta
            && let Some(spool) = &ports.spool
        {
            entry.status = JournalStatus::Spooled;
            match spool.put(&entry).await {
                Ok(()) => {
                    tracing::warn!(webhook_id = %id, "webhook kept in the local spool until the database accepts writes");
                    return Ok(IngestReport {
                        webhook_id: id,
                        processed: 0,
                        status: JournalStatus::Spooled,
                    });
                }
                Err(spool_error) => {
                    tracing::error!(webhook_id = %id, error = %describe(&spool_error), "cannot spool a webhook either");
                }
            }
        }
        Err(IngestError::Unavailable(error))
    }
}
