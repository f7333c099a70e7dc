//! Group commit: concurrent requests and workers share one transaction, or one query.
//!
//! A caller queues its item and awaits the answer. When no writer is running, the caller
//! that queued starts one: a task that takes every queued item (up to its group's limit),
//! writes them with one store call, answers each caller, and goes again until the queue is
//! empty. While one group is being written the next one gathers, so under load a group is as
//! large as what arrived during the previous commit, and at low rates an item is written
//! alone, at once. On the send path, accepts (`OutboundStore::accept_many`), settlements
//! (`OutboundStore::settle_many`) and the account checks each have a group; before, every
//! accept and every settlement was its own transaction, and on SQLite each waited its turn
//! for the write lock. API keys are looked up in groups too (`ApiKeyStore::find_by_hashes`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use insta_router_ports::RepoError;
use tokio::sync::oneshot;

/// What a group's writer returns: one answer per item, in order.
pub(crate) type Written<O> = Pin<Box<dyn Future<Output = Result<Vec<O>, RepoError>> + Send>>;

type Writer<I, O> = Arc<dyn Fn(Vec<I>) -> Written<O> + Send + Sync>;

type Waiting<I, O> = Vec<(I, oneshot::Sender<Result<O, RepoError>>)>;

/// Items waiting to be written together, and whether a writer is running.
pub(crate) struct Group<I, O> {
    waiting: Mutex<Waiting<I, O>>,
    writing: AtomicBool,
    limit: usize,
    write: Writer<I, O>,
}

impl<I: Send + 'static, O: Send + 'static> Group<I, O> {
    /// A group writing at most `limit` items at a time with `write`.
    pub(crate) fn new(
        limit: usize,
        write: impl Fn(Vec<I>) -> Written<O> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            waiting: Mutex::default(),
            writing: AtomicBool::new(false),
            limit,
            write: Arc::new(write),
        })
    }

    /// Writes `item` in the next group; its answer.
    pub(crate) async fn submit(self: &Arc<Self>, item: I) -> Result<O, RepoError> {
        let (answer, answered) = oneshot::channel();
        self.lock().push((item, answer));
        self.start_writer();
        answered
            .await
            .unwrap_or_else(|_| Err(RepoError::Unavailable("the group writer stopped".into())))
    }

    fn lock(&self) -> MutexGuard<'_, Waiting<I, O>> {
        // A panic while the lock was held left the queue itself intact.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a writer unless one is running. A writer that finds the queue empty stops, and
    /// looks once more after it said so: an item queued in between is never left waiting.
    fn start_writer(self: &Arc<Self>) {
        if self.writing.swap(true, Ordering::SeqCst) {
            return;
        }
        let group = self.clone();
        tokio::spawn(async move {
            loop {
                let items: Waiting<I, O> = {
                    let mut waiting = group.lock();
                    let n = waiting.len().min(group.limit);
                    waiting.drain(..n).collect()
                };
                if items.is_empty() {
                    group.writing.store(false, Ordering::SeqCst);
                    if group.lock().is_empty() || group.writing.swap(true, Ordering::SeqCst) {
                        return;
                    }
                    continue;
                }
                let (items, answers): (Vec<I>, Vec<_>) = items.into_iter().unzip();
                answer(answers, (group.write)(items).await);
            }
        });
    }
}

/// Answers each caller of a group with its result, or all with the group's failure.
fn answer<O>(
    answers: Vec<oneshot::Sender<Result<O, RepoError>>>,
    written: Result<Vec<O>, RepoError>,
) {
    match written {
        Ok(results) if results.len() == answers.len() => {
            for (answer, result) in answers.into_iter().zip(results) {
                let _ = answer.send(Ok(result));
            }
        }
        Ok(results) => {
            let error = format!("{} answers for {} items", results.len(), answers.len());
            for answer in answers {
                let _ = answer.send(Err(RepoError::Corrupt(error.clone())));
            }
        }
        Err(error) => {
            // Nothing of the group was written: each caller fails with the one cause.
            let shared = Arc::new(error);
            for answer in answers {
                let _ = answer.send(Err(RepoError::Unavailable(Box::new(shared.clone()))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Items submitted while a group is being written are written together next, each
    /// caller gets its own answer, and a failed group fails each of its callers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_items_share_groups_and_each_gets_its_answer() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        let seen = calls.clone();
        let group = Group::new(100, move |items: Vec<u32>| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let mut gate = gate.clone();
            Box::pin(async move {
                // The first group waits until every other item is queued.
                if n == 0 {
                    let _ = gate.wait_for(|open| *open).await;
                }
                if items.contains(&13) {
                    return Err(RepoError::Unavailable("refused".into()));
                }
                Ok(items.into_iter().map(|i| i * 2).collect())
            }) as Written<u32>
        });
        let first = tokio::spawn({
            let group = group.clone();
            async move { group.submit(1).await }
        });
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (2..=20)
            .map(|i| {
                let group = group.clone();
                tokio::spawn(async move { group.submit(i).await })
            })
            .collect();
        while group.lock().len() < 19 {
            tokio::task::yield_now().await;
        }
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 2);
        // One group: it held 13, so the store refused it and every caller in it is told.
        for task in rest {
            let answer = task.await.unwrap();
            assert!(
                matches!(answer, Err(RepoError::Unavailable(_))),
                "{answer:?}"
            );
        }
        // The first item alone, then the 19 others together.
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(group.submit(21).await.is_ok_and(|n| n == 42));
    }
}
