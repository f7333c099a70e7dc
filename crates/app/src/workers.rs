//! The loop every kind of job worker runs: do a round of work; when a round finds nothing,
//! sleep until something may have changed (a commit, an explicit wake-up, the poll interval)
//! or until asked to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use insta_router_domain::{ClaimedJob, JobKind};
use insta_router_ports::JobQueue;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What wakes idle workers.
#[derive(Clone)]
pub(crate) struct Wakers {
    /// Changes after every webhook commit that queued jobs; `None` for workers whose jobs
    /// webhooks never queue.
    pub(crate) commits: Option<watch::Receiver<u64>>,
    /// Changes when jobs were queued to run now some other way (a retry, a replay).
    pub(crate) wakeups: Option<watch::Receiver<u64>>,
    /// Turns true when the workers should stop.
    pub(crate) stop: watch::Receiver<bool>,
    /// The longest an idle worker sleeps: retries come due by time, not by a signal.
    pub(crate) poll: Duration,
}

/// Spawns `count` workers that each run `round` (which reports whether it found work)
/// until `stop` turns true. A round in progress is finished first.
pub(crate) fn spawn<F, Fut>(count: usize, wakers: &Wakers, round: F) -> JoinSet<()>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let mut workers = JoinSet::new();
    for _ in 0..count.max(1) {
        let mut wakers = wakers.clone();
        let round = round.clone();
        workers.spawn(async move {
            loop {
                if *wakers.stop.borrow() {
                    return;
                }
                // Marks what has been seen before looking, so no signal slips in between.
                if let Some(commits) = &mut wakers.commits {
                    commits.borrow_and_update();
                }
                if let Some(wakeups) = &mut wakers.wakeups {
                    wakeups.borrow_and_update();
                }
                if round().await {
                    continue;
                }
                tokio::select! {
                    () = changed(wakers.commits.as_mut()) => {}
                    () = changed(wakers.wakeups.as_mut()) => {}
                    _ = wakers.stop.changed() => {}
                    () = tokio::time::sleep(wakers.poll) => {}
                }
            }
        });
    }
    workers
}

/// Resolves when `signal` changes; never when there is none or its sender is gone (so a
/// worker falls back on its poll instead of spinning).
async fn changed(signal: Option<&mut watch::Receiver<u64>>) {
    if let Some(signal) = signal
        && signal.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// Spawns `count` workers that each run `round(service)`.
pub(crate) fn start<S, F, Fut>(
    service: &Arc<S>,
    count: usize,
    wakers: &Wakers,
    round: F,
) -> JoinSet<()>
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let service = service.clone();
    spawn(count, wakers, move || round(service.clone()))
}

/// Claims up to `limit` due jobs of `kind`; a failure is logged and claims nothing.
pub(crate) async fn claim(
    jobs: &dyn JobQueue,
    kind: JobKind,
    limit: u32,
    lease: Duration,
    now: DateTime<Utc>,
) -> Vec<ClaimedJob> {
    match jobs.claim(&[kind], limit, lease, now).await {
        Ok(claimed) => claimed,
        Err(error) => {
            tracing::warn!(error = %insta_router_ports::describe(&error), kind = kind.as_str(), "cannot claim jobs");
            Vec::new()
        }
    }
}
