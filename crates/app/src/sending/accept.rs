//! The group commit of the send path: concurrent accepts share one transaction.
//!
//! A request queues its send and awaits the answer. When no writer is running, the request
//! that queued starts one: a task that takes every queued send, stores them with one
//! [`OutboundStore::accept_many`], answers each request, and goes again until the queue is
//! empty. While one group is being written the next one gathers, so under load a group is
//! as large as the requests that arrived during the previous commit, and at low rates a send
//! is written alone, at once. Before, every accept was its own transaction, and on SQLite
//! each waited its turn for the write lock.
//!
//! Idempotency is the store's: a key taken by an earlier send of the same group is answered
//! with that send, as if the requests had come one after the other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use insta_router_domain::{NewJob, OutboundMessage};
use insta_router_ports::{Accepted, OutboundStore, RepoError};
use tokio::sync::oneshot;

/// Most sends written in one transaction.
const GROUP: usize = 128;

type Answer = oneshot::Sender<Result<Accepted, RepoError>>;

/// The sends waiting to be written, and whether a writer is running.
#[derive(Default)]
pub(super) struct AcceptQueue {
    waiting: Mutex<Vec<(OutboundMessage, NewJob, Answer)>>,
    writing: AtomicBool,
}

impl AcceptQueue {
    /// Stores `message` and queues `job` in the next group; the store's answer.
    pub(super) async fn accept(
        self: &Arc<Self>,
        store: &Arc<dyn OutboundStore>,
        message: OutboundMessage,
        job: NewJob,
    ) -> Result<Accepted, RepoError> {
        let (answer, answered) = oneshot::channel();
        self.lock().push((message, job, answer));
        self.start_writer(store);
        answered
            .await
            .unwrap_or_else(|_| Err(RepoError::Unavailable("the send writer stopped".into())))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(OutboundMessage, NewJob, Answer)>> {
        // A panic while the lock was held left the queue itself intact.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a writer unless one is running. A writer that finds the queue empty stops, and
    /// looks once more after it said so: a send queued in between is never left waiting.
    fn start_writer(self: &Arc<Self>, store: &Arc<dyn OutboundStore>) {
        if self.writing.swap(true, Ordering::SeqCst) {
            return;
        }
        let (queue, store) = (self.clone(), store.clone());
        tokio::spawn(async move {
            loop {
                let group: Vec<_> = {
                    let mut waiting = queue.lock();
                    let n = waiting.len().min(GROUP);
                    waiting.drain(..n).collect()
                };
                if group.is_empty() {
                    queue.writing.store(false, Ordering::SeqCst);
                    if queue.lock().is_empty() || queue.writing.swap(true, Ordering::SeqCst) {
                        return;
                    }
                    continue;
                }
                write(store.as_ref(), group).await;
            }
        });
    }
}

/// Writes one group and answers each of its requests.
async fn write(store: &dyn OutboundStore, group: Vec<(OutboundMessage, NewJob, Answer)>) {
    let (sends, answers): (Vec<_>, Vec<_>) = group
        .into_iter()
        .map(|(message, job, answer)| ((message, job), answer))
        .unzip();
    match store.accept_many(&sends).await {
        Ok(results) if results.len() == answers.len() => {
            for (answer, result) in answers.into_iter().zip(results) {
                let _ = answer.send(result);
            }
        }
        Ok(results) => {
            let error = format!("{} answers for {} sends", results.len(), answers.len());
            for answer in answers {
                let _ = answer.send(Err(RepoError::Corrupt(error.clone())));
            }
        }
        Err(error) => {
            // Nothing of the group was stored: each request fails with the one cause.
            let shared = Arc::new(error);
            for answer in answers {
                let _ = answer.send(Err(RepoError::Unavailable(Box::new(shared.clone()))));
            }
        }
    }
}
