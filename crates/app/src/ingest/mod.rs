//! Ingesting verified webhook requests: journal, events, conversations and follow-up jobs,
//! committed before the request is answered.
//!
//! # Group commit
//!
//! One transaction per request would cap throughput at the database's commit rate. Instead
//! each request is prepared in its caller's task (parsed, ids, messages, CRM bodies, jobs:
//! work that runs on every core at once), then goes to writer tasks through a queue; a writer
//! takes every request waiting (up to `max_batch`), writes them all in one transaction,
//! commits, and only then answers each of them. Under light load a group is one request and
//! nothing waits; under heavy load the cost of a commit is shared by the whole group.
//!
//! # Nothing answered 200 is lost
//!
//! A request is answered 200 only when its events are committed, or when its body is kept
//! somewhere a replay is guaranteed to find it:
//!
//! 1. When a group fails, each of its requests is written again on its own (with fresh ids),
//!    so one request the database refuses cannot fail the others.
//! 2. A request that still fails is journaled as `failed` together with a `webhook_replay`
//!    job, in one transaction: the replayer ([`crate::JournalReplayer`]) stores its events
//!    again through this same path, with backoff, until they are stored.
//! 3. When the database refuses even that, the body goes to the local spool (a directory,
//!    synced to disk), which the replayer moves into the journal once the database accepts
//!    writes again.
//! 4. When that fails too (no spool, a full disk), [`IngestError::Unavailable`]: the caller
//!    answers 503 and Meta retries the request later.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use insta_router_domain::WebhookId;
use insta_router_ports::{
    Clock, InboundStore, JournalEntry, JournalStatus, NotificationParser, RepoError,
    WebhookJournal, WebhookSpool, describe,
};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::new_id_bits;

mod batch;
mod rescue;
mod telemetry;

use batch::{Prepared, RouteHints, write};
use rescue::Rescue;
pub use telemetry::{Refusal, refused_webhook};

/// How the writers group requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestSettings {
    /// Writer tasks (the database chooses how many: see the storage adapter).
    pub writers: usize,
    /// Most requests written in one transaction.
    pub max_batch: usize,
    /// Requests that may wait for a writer before callers wait to enqueue.
    pub queue: usize,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            writers: 1,
            max_batch: 256,
            queue: 4096,
        }
    }
}

/// What the ingest needs.
#[derive(Clone)]
pub struct IngestPorts {
    /// Writes groups of requests.
    pub store: Arc<dyn InboundStore>,
    /// Keeps requests whose events could not be stored, for replay.
    pub journal: Arc<dyn WebhookJournal>,
    /// Keeps requests while the database refuses even the journal; `None`: such requests are
    /// refused (503) and Meta retries them.
    pub spool: Option<Arc<dyn WebhookSpool>>,
    /// Meta's wire format.
    pub parser: Arc<dyn NotificationParser>,
    /// The time replays are scheduled from.
    pub clock: Arc<dyn Clock>,
}

/// Where a request comes from, which decides where it goes when its events cannot be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Meta, now: kept for replay in the journal, else in the spool, else refused.
    Meta,
    /// This instance's spool: kept for replay in the journal, else left in the spool.
    Spool,
    /// A failed journal entry, replayed: on failure its replay job is rescheduled.
    Journal,
}

/// A verified webhook request.
#[derive(Debug, Clone)]
pub struct ReceivedWebhook {
    /// Its journal id: fresh for a request from Meta, the journaled one for a replay.
    pub id: WebhookId,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// The raw body, exactly as signed.
    pub body: Vec<u8>,
    /// Where it comes from.
    pub origin: Origin,
}

impl ReceivedWebhook {
    /// A request Meta just sent.
    pub fn from_meta(received_at: DateTime<Utc>, body: Vec<u8>) -> Self {
        Self {
            id: WebhookId::from_u128(new_id_bits()),
            received_at,
            body,
            origin: Origin::Meta,
        }
    }

    /// A kept request (from the journal or the spool), to store again.
    pub fn replay(entry: JournalEntry, origin: Origin) -> Self {
        Self {
            id: entry.id,
            received_at: entry.received_at,
            body: entry.body,
            origin,
        }
    }
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestReport {
    /// Its journal id.
    pub webhook_id: WebhookId,
    /// How many of its events were new (stored for the first time).
    pub processed: u32,
    /// How it was kept: `accepted` or `unusable` when stored, `failed` when journaled for
    /// replay, `spooled` when in the local spool.
    pub status: JournalStatus,
}

/// Why a request could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Its events could not be stored and its body could not be kept for replay (for a
    /// replay: its events could not be stored); the source says why.
    #[error("the database is unavailable")]
    Unavailable(#[source] RepoError),
    /// The service is shutting down.
    #[error("the service is shutting down")]
    ShuttingDown,
}

struct Pending {
    prepared: Prepared,
    reply: oneshot::Sender<Result<IngestReport, IngestError>>,
}

/// Stores verified webhook requests through group-committing writer tasks.
pub struct Ingestor {
    sender: std::sync::Mutex<Option<mpsc::Sender<Pending>>>,
    writers: std::sync::Mutex<Vec<JoinHandle<()>>>,
    commits: watch::Receiver<u64>,
    parser: Arc<dyn NotificationParser>,
    hints: RouteHints,
}

impl Ingestor {
    /// Starts the writer tasks on the current tokio runtime.
    pub fn start(ports: IngestPorts, settings: IngestSettings) -> Self {
        let (sender, receiver) = mpsc::channel::<Pending>(settings.queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let (committed, commits) = watch::channel(0_u64);
        let committed = Arc::new(committed);
        let max_batch = settings.max_batch.max(1);
        let hints = RouteHints::default();
        let parser = ports.parser.clone();
        let writers = (0..settings.writers.max(1))
            .map(|_| {
                let receiver = receiver.clone();
                let ports = ports.clone();
                let committed = committed.clone();
                let hints = hints.clone();
                tokio::spawn(async move {
                    let mut batch = Vec::with_capacity(max_batch);
                    loop {
                        let received = receiver.lock().await.recv_many(&mut batch, max_batch).await;
                        if received == 0 {
                            break;
                        }
                        if write_group(&ports, &hints, std::mem::take(&mut batch)).await {
                            committed.send_modify(|n| *n = n.wrapping_add(1));
                        }
                    }
                })
            })
            .collect();
        Self {
            sender: std::sync::Mutex::new(Some(sender)),
            writers: std::sync::Mutex::new(writers),
            commits,
            parser,
            hints,
        }
    }

    /// Changes after every commit that stored something new: workers wait on it to pick up
    /// the jobs just queued within milliseconds instead of at their next poll.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.clone()
    }

    /// Stores one request; returns once its events are committed or its body is kept for
    /// replay (see the module's documentation).
    ///
    /// # Errors
    ///
    /// [`IngestError::Unavailable`] when neither could be done.
    pub async fn ingest(&self, webhook: ReceivedWebhook) -> Result<IngestReport, IngestError> {
        let sender = self
            .sender
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or(IngestError::ShuttingDown)?;
        let prepared = Prepared::new(webhook, self.parser.as_ref(), &self.hints);
        prepared.count_received();
        let (reply, answer) = oneshot::channel();
        sender
            .send(Pending { prepared, reply })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        answer.await.map_err(|_| IngestError::ShuttingDown)?
    }

    /// Stops taking requests and waits for the writers to finish those already queued.
    pub async fn shutdown(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let writers = self
            .writers
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        for writer in writers {
            let _ = writer.await;
        }
    }
}

/// Writes a group and answers its requests; true when any of them stored something new.
async fn write_group(ports: &IngestPorts, hints: &RouteHints, group: Vec<Pending>) -> bool {
    let (replies, prepared): (Vec<_>, Vec<_>) =
        group.into_iter().map(|p| (p.reply, p.prepared)).unzip();
    let started = std::time::Instant::now();
    match write(ports.store.as_ref(), hints, &prepared).await {
        Ok(reports) => {
            tracing::debug!(
                requests = prepared.len(),
                micros = started.elapsed().as_micros(),
                "group written"
            );
            telemetry::group(prepared.len());
            let new = reports.iter().any(|r| r.processed > 0);
            for ((reply, report), prepared) in replies.into_iter().zip(reports).zip(&prepared) {
                let result = Ok(report);
                prepared.answer().answered(&result);
                let _ = reply.send(result);
            }
            new
        }
        Err(group_error) => {
            let alone = prepared.len() > 1;
            if alone {
                tracing::warn!(error = %describe(&group_error), requests = prepared.len(), "group write failed; writing its requests one by one");
            }
            let mut rescue = Rescue {
                ports,
                hints,
                group_error: Some(group_error),
                alone,
                journal_refused: false,
            };
            let mut new = false;
            for (reply, prepared) in replies.into_iter().zip(prepared) {
                let answer = prepared.answer();
                let result = rescue.rescue(prepared).await;
                if let Ok(report) = &result {
                    new |= report.processed > 0;
                }
                answer.answered(&result);
                let _ = reply.send(result);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests;
