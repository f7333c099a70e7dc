//! The loop every kind of job worker runs: do a round of work; when a round leaves nothing
//! behind, sleep until something may have changed (a commit, an explicit wake-up, the poll
//! interval) or until asked to stop.
//!
//! A signal wakes one worker, not all: at a thousand webhook commits a second each carrying a
//! job or two, waking every worker made each of them run a claim (on SQLite a write) for
//! work one of them took, and cost more CPU than the work. A worker whose round took a full
//! batch wakes the next, so all of them work while the queue is long.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use insta_router_domain::{ClaimedJob, JobKind};
use insta_router_ports::JobQueue;
use tokio::sync::{Notify, watch};
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

/// Spawns `count` workers that each run `round` until `stop` turns true; a round in progress
/// is finished first. `round` answers whether work may be left (it took a full batch, or for
/// single workers that it found any): then the worker goes again at once, and wakes another.
pub(crate) fn spawn<F, Fut>(count: usize, wakers: &Wakers, round: F) -> JoinSet<()>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let count = count.max(1);
    let mut workers = JoinSet::new();
    // One permit per signal: `notify_one` keeps it until a worker waits, so a signal that
    // comes while every worker is busy is not lost.
    let ready = Arc::new(Notify::new());
    let mut forward = wakers.clone();
    let forwarded = ready.clone();
    workers.spawn(async move {
        loop {
            tokio::select! {
                () = changed(forward.commits.as_mut()) => forwarded.notify_one(),
                () = changed(forward.wakeups.as_mut()) => forwarded.notify_one(),
                stopped = forward.stop.changed() => {
                    if stopped.is_err() || *forward.stop.borrow() {
                        return;
                    }
                }
            }
        }
    });
    for _ in 0..count {
        let mut stop = wakers.stop.clone();
        let poll = wakers.poll;
        let ready = ready.clone();
        let round = round.clone();
        workers.spawn(async move {
            loop {
                if *stop.borrow() {
                    return;
                }
                if round().await {
                    if count > 1 {
                        ready.notify_one();
                    }
                    continue;
                }
                tokio::select! {
                    () = ready.notified() => {}
                    _ = stop.changed() => {}
                    () = tokio::time::sleep(poll) => {}
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

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    /// Three workers whose rounds report when they start and answer what the test says.
    fn workers(
        commits: watch::Receiver<u64>,
        stop: watch::Receiver<bool>,
    ) -> (
        JoinSet<()>,
        mpsc::UnboundedReceiver<mpsc::UnboundedSender<bool>>,
    ) {
        let (started, rounds) = mpsc::unbounded_channel();
        let wakers = Wakers {
            commits: Some(commits),
            wakeups: None,
            stop,
            poll: Duration::from_secs(3600),
        };
        let set = spawn(3, &wakers, move || {
            let started = started.clone();
            async move {
                let (answer, answered) = mpsc::unbounded_channel();
                started.send(answer).unwrap();
                let mut answered = answered;
                answered.recv().await.unwrap_or(false)
            }
        });
        (set, rounds)
    }

    /// No further round starts. On the single-threaded test runtime a yield runs every task
    /// that is ready first, so a woken worker would have started its round (and said so)
    /// before the yields end.
    async fn quiet(rounds: &mut mpsc::UnboundedReceiver<mpsc::UnboundedSender<bool>>) -> bool {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        rounds.try_recv().is_err()
    }

    #[tokio::test]
    async fn a_commit_wakes_one_worker_and_a_full_round_wakes_another() {
        let (commit, commits) = watch::channel(0_u64);
        let (stop, stopped) = watch::channel(false);
        let (mut set, mut rounds) = workers(commits, stopped);
        // Every worker looks once at start, finds little, and sleeps.
        for _ in 0..3 {
            rounds.recv().await.unwrap().send(false).unwrap();
        }
        assert!(quiet(&mut rounds).await);

        commit.send_modify(|n| *n += 1);
        rounds.recv().await.unwrap().send(false).unwrap();
        assert!(quiet(&mut rounds).await, "one commit, one round");

        // A full batch: its worker goes again, and wakes a second.
        commit.send_modify(|n| *n += 1);
        rounds.recv().await.unwrap().send(true).unwrap();
        rounds.recv().await.unwrap().send(false).unwrap();
        rounds.recv().await.unwrap().send(false).unwrap();
        assert!(quiet(&mut rounds).await);

        stop.send(true).unwrap();
        while set.join_next().await.is_some() {}
    }
}
