//! Retention: old rows pruned in the background, in small batches, and previewed by
//! `insta-router prune --dry-run`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use insta_router_ports::{Clock, Prunable, RepoError, RetentionStore};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::workers::{self, Wakers};

/// How long each class of rows is kept (`None`: for ever), and how pruning paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Raw webhook bodies (never those awaiting replay).
    pub journal: Option<Duration>,
    /// Finished auto-reply, send and replay jobs.
    pub done_jobs: Option<Duration>,
    /// Delivered CRM deliveries with their attempts.
    pub deliveries: Option<Duration>,
    /// Dead letters.
    pub dead_letters: Option<Duration>,
    /// Messages and the other stored events.
    pub messages: Option<Duration>,
    /// Time between two passes.
    pub interval: Duration,
    /// Rows per delete.
    pub batch: u32,
    /// The least pause between two deletes.
    pub pause: Duration,
    /// Pause after a delete as many times as long as the delete took, at least: with 19,
    /// pruning takes at most a twentieth of the database's time, so the webhook path beside
    /// it loses at most about 5 % (a backlog then takes longer to clear).
    pub pace: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        let days = |n: u64| Some(Duration::from_secs(n * 86_400));
        Self {
            journal: days(14),
            done_jobs: days(7),
            deliveries: days(30),
            dead_letters: None,
            messages: None,
            interval: Duration::from_secs(3600),
            batch: 500,
            pause: Duration::from_millis(20),
            pace: 19,
        }
    }
}

impl RetentionPolicy {
    /// How long `what` is kept; `None`: for ever.
    pub fn age(&self, what: Prunable) -> Option<Duration> {
        match what {
            Prunable::Journal => self.journal,
            Prunable::DoneJobs => self.done_jobs,
            Prunable::Deliveries => self.deliveries,
            Prunable::DeadLetters => self.dead_letters,
            Prunable::Messages | Prunable::Events => self.messages,
        }
        .filter(|age| !age.is_zero())
    }
}

/// Prunes old rows.
pub struct RetentionService {
    store: Arc<dyn RetentionStore>,
    clock: Arc<dyn Clock>,
    policy: RetentionPolicy,
}

impl RetentionService {
    /// The service on its ports.
    pub fn new(
        store: Arc<dyn RetentionStore>,
        clock: Arc<dyn Clock>,
        policy: RetentionPolicy,
    ) -> Self {
        Self {
            store,
            clock,
            policy,
        }
    }

    /// The instant before which `what` is old, now; `None` when it is kept for ever.
    fn cutoff(&self, what: Prunable) -> Option<DateTime<Utc>> {
        let age = chrono::Duration::from_std(self.policy.age(what)?).ok()?;
        self.clock.now().checked_sub_signed(age)
    }

    /// What a pass would delete now, by class (`None`: kept for ever).
    ///
    /// # Errors
    ///
    /// The store's.
    pub async fn preview(&self) -> Result<Vec<(Prunable, Option<u64>)>, RepoError> {
        let mut preview = Vec::new();
        for what in Prunable::ALL {
            let count = match self.cutoff(what) {
                Some(before) => Some(self.store.count_older(what, before).await?),
                None => None,
            };
            preview.push((what, count));
        }
        Ok(preview)
    }

    /// Deletes every old row, batch by batch; how many went, by class.
    ///
    /// # Errors
    ///
    /// The store's; the rows deleted before it stay deleted.
    pub async fn prune(&self) -> Result<Vec<(Prunable, u64)>, RepoError> {
        let mut pruned = Vec::new();
        for what in Prunable::ALL {
            let Some(before) = self.cutoff(what) else {
                continue;
            };
            let mut total = 0;
            loop {
                let started = std::time::Instant::now();
                let deleted = self
                    .store
                    .delete_older(what, before, self.policy.batch)
                    .await?;
                let took = started.elapsed();
                total += deleted;
                metrics::counter!("insta_router_pruned_rows_total", "what" => what.as_str())
                    .increment(deleted);
                if deleted < u64::from(self.policy.batch) {
                    break;
                }
                tokio::time::sleep(self.policy.pause.max(took * self.policy.pace)).await;
            }
            if total > 0 {
                tracing::info!(what = what.as_str(), rows = total, "old rows pruned");
            }
            pruned.push((what, total));
        }
        Ok(pruned)
    }

    /// Runs a pass every `interval` until `stop` turns true (the first one right away).
    pub fn start(self: &Arc<Self>, stop: watch::Receiver<bool>) -> JoinSet<()> {
        let wakers = Wakers {
            commits: None,
            wakeups: None,
            stop,
            poll: self.policy.interval,
        };
        workers::start(self, 1, &wakers, |retention| async move {
            if let Err(error) = retention.prune().await {
                tracing::warn!(error = %crate::describe(&error), "pruning old rows failed; trying again at the next pass");
            }
            false
        })
    }
}

#[cfg(test)]
mod tests;
