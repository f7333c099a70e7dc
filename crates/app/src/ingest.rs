//! Ingesting verified webhook requests: journal, events, conversations and follow-up jobs,
//! committed before the request is answered.
//!
//! # Group commit
//!
//! One transaction per request would cap throughput at the database's commit rate. Instead
//! each request is prepared in its caller's task (ids, messages, CRM bodies, jobs: work that
//! runs on every core at once), then goes to writer tasks through a queue; a writer takes
//! every request waiting (up to `max_batch`), writes them all in one transaction, commits,
//! and only then answers each of them. Under light load a group is one request and nothing
//! waits; under heavy load the cost of a commit is shared by the whole group.
//!
//! When a group fails, each of its requests is retried on its own, so one request the
//! database refuses cannot fail the others. A request that still fails while the database
//! accepts its journal entry is journaled as `failed` (kept verbatim for replay) and answered;
//! when even that fails the database is unavailable and the caller answers 500, so Meta
//! retries.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use insta_router_domain::{
    ConversationId, Direction, EventId, InboundEvent, InboundEventKind, InstagramAccountId, JobId,
    JobKind, Message, MessageId, MessageKind, NewJob, WebhookId,
};
use insta_router_ports::{
    Deletion, EventRecord, InboundBatch, InboundStore, JournalEntry, JournalStatus, PlannedJob,
    RepoError,
};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::crm_payload;
use crate::new_id_bits;

/// How the writers group requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestSettings {
    /// Writer tasks: one on SQLite (one writer at a time anyway), a few on servers.
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

/// A verified webhook request.
#[derive(Debug, Clone)]
pub struct ReceivedWebhook {
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// The raw body, exactly as signed.
    pub body: Vec<u8>,
    /// Its events, or why it is not a usable notification.
    pub parsed: Result<Vec<InboundEvent>, String>,
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestReport {
    /// Its journal id.
    pub webhook_id: WebhookId,
    /// How many of its events were new (stored for the first time).
    pub processed: u32,
    /// How it was journaled.
    pub status: JournalStatus,
}

/// Why a request could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The database refused even the journal entry.
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
}

impl Ingestor {
    /// Starts the writer tasks on the current tokio runtime.
    pub fn start(store: Arc<dyn InboundStore>, settings: IngestSettings) -> Self {
        let (sender, receiver) = mpsc::channel::<Pending>(settings.queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let (committed, commits) = watch::channel(0_u64);
        let committed = Arc::new(committed);
        let max_batch = settings.max_batch.max(1);
        let writers = (0..settings.writers.max(1))
            .map(|_| {
                let receiver = receiver.clone();
                let store = store.clone();
                let committed = committed.clone();
                tokio::spawn(async move {
                    let mut batch = Vec::with_capacity(max_batch);
                    loop {
                        let received = receiver.lock().await.recv_many(&mut batch, max_batch).await;
                        if received == 0 {
                            break;
                        }
                        if write_group(store.as_ref(), std::mem::take(&mut batch)).await {
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
        }
    }

    /// Changes after every commit that stored something new: workers wait on it to pick up
    /// the jobs just queued within milliseconds instead of at their next poll.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.clone()
    }

    /// Stores one request; returns once it is committed.
    ///
    /// # Errors
    ///
    /// [`IngestError::Unavailable`] when nothing of it could be stored.
    pub async fn ingest(&self, webhook: ReceivedWebhook) -> Result<IngestReport, IngestError> {
        let sender = self
            .sender
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or(IngestError::ShuttingDown)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Pending {
                prepared: Prepared::new(webhook),
                reply,
            })
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
async fn write_group(store: &dyn InboundStore, group: Vec<Pending>) -> bool {
    let (replies, prepared): (Vec<_>, Vec<_>) =
        group.into_iter().map(|p| (p.reply, p.prepared)).unzip();
    let started = std::time::Instant::now();
    match write(store, &prepared).await {
        Ok(reports) => {
            tracing::debug!(
                requests = prepared.len(),
                micros = started.elapsed().as_micros(),
                "group written"
            );
            let new = reports.iter().any(|r| r.processed > 0);
            for (reply, report) in replies.into_iter().zip(reports) {
                let _ = reply.send(Ok(report));
            }
            new
        }
        Err(group_error) => {
            if prepared.len() > 1 {
                tracing::warn!(error = %group_error, requests = prepared.len(), "group write failed; writing its requests one by one");
            }
            let mut new = false;
            for (reply, prepared) in replies.into_iter().zip(prepared) {
                let result = write_alone(store, prepared).await;
                new |= result.as_ref().is_ok_and(|r| r.processed > 0);
                let _ = reply.send(result);
            }
            new
        }
    }
}

async fn write_alone(
    store: &dyn InboundStore,
    prepared: Prepared,
) -> Result<IngestReport, IngestError> {
    let one = std::slice::from_ref(&prepared);
    if let Ok(mut reports) = write(store, one).await {
        return reports.pop().ok_or(IngestError::ShuttingDown);
    }
    // Once more, for a transient failure (a deadlock, a dropped connection).
    let last = match write(store, one).await {
        Ok(mut reports) => return reports.pop().ok_or(IngestError::ShuttingDown),
        Err(e) => e,
    };
    tracing::error!(error = %last, webhook_id = %prepared.journal.id, "cannot store a webhook's events; journaling its body as failed");
    let mut journal = prepared.journal.clone();
    journal.status = JournalStatus::Failed;
    journal.error = Some(last.to_string());
    let batch = InboundBatch {
        journal: vec![journal.clone()],
        ..InboundBatch::default()
    };
    match store.store(batch).await {
        Ok(_) => Ok(IngestReport {
            webhook_id: journal.id,
            processed: 0,
            status: JournalStatus::Failed,
        }),
        Err(e) => Err(IngestError::Unavailable(e)),
    }
}

/// One request, ready to write: ids assigned, messages, event records, CRM bodies and jobs
/// built. Preparing happens in the caller's task, on every core at once; the group writer,
/// which sets the pace, only picks the first occurrence of each event and hands the group to
/// the store.
struct Prepared {
    journal: JournalEntry,
    events: Vec<PreparedEvent>,
}

struct PreparedEvent {
    item: Item,
    /// The jobs to queue when the event is new.
    jobs: Vec<PlannedJob>,
}

enum Item {
    Message(Message),
    Other {
        record: EventRecord,
        deletion: Option<Deletion>,
    },
}

impl Prepared {
    /// Takes the request's body over: it is the largest part, and the journal keeps it.
    fn new(webhook: ReceivedWebhook) -> Self {
        let id = WebhookId::from_u128(new_id_bits());
        let (events, status, error) = match &webhook.parsed {
            Ok(events) => (events.as_slice(), JournalStatus::Accepted, None),
            Err(reason) => (&[][..], JournalStatus::Unusable, Some(reason.clone())),
        };
        let now = webhook.received_at;
        let prepared = events
            .iter()
            .map(|event| match &event.kind {
                InboundEventKind::Message(m) => {
                    let message = Message {
                        id: MessageId::from_u128(new_id_bits()),
                        instagram_account_id: m.parties.account.clone(),
                        conversation_id: ConversationId::for_pair(
                            &m.parties.account,
                            &m.parties.customer,
                        ),
                        mid: Some(m.mid.clone()),
                        direction: m.direction,
                        sender_id: m.sender(),
                        recipient_id: m.recipient(),
                        kind: m.kind.clone(),
                        text: m.text.clone(),
                        attachments: m.attachments.clone(),
                        reply_to: m.reply_to.clone(),
                        context: m.context.clone(),
                        sent_at: event.occurred_at,
                        created_at: now,
                        deleted_at: None,
                    };
                    let account = &message.instagram_account_id;
                    let mut jobs = Vec::with_capacity(2);
                    if m.direction == Direction::Inbound && !event.standby {
                        jobs.push(job(
                            JobKind::AutoReply,
                            account,
                            false,
                            message.id.as_str(),
                            format!(
                                r#"{{"event":"message.received","subject":"{}"}}"#,
                                message.id
                            ),
                            now,
                        ));
                    }
                    let crm_event = match (message.direction, &message.kind) {
                        (Direction::Outbound, _) => "message.echo",
                        (Direction::Inbound, MessageKind::Postback) => "message.postback",
                        (Direction::Inbound, _) => "message.received",
                    };
                    jobs.push(job(
                        JobKind::CrmDelivery,
                        account,
                        true,
                        message.id.as_str(),
                        crm_payload::message_body(crm_event, &message),
                        now,
                    ));
                    PreparedEvent {
                        item: Item::Message(message),
                        jobs,
                    }
                }
                kind => {
                    let record = EventRecord {
                        id: EventId::from_u128(new_id_bits()),
                        webhook_id: id.clone(),
                        received_at: now,
                        event: event.clone(),
                    };
                    let deletion = match kind {
                        InboundEventKind::Deleted { parties, mid } => Some(Deletion {
                            event_id: record.id.clone(),
                            account: parties.account.clone(),
                            mid: mid.clone(),
                            at: event.occurred_at,
                        }),
                        _ => None,
                    };
                    let crm_event = match kind {
                        InboundEventKind::Deleted { .. } => Some("message.deleted"),
                        InboundEventKind::Reaction { .. } => Some("message.reaction"),
                        InboundEventKind::Read { .. } => Some("message.read"),
                        InboundEventKind::Postback { .. } => Some("message.postback"),
                        InboundEventKind::Referral { .. } => Some("message.referral"),
                        InboundEventKind::Message(_) | InboundEventKind::Unrecognized { .. } => {
                            None
                        }
                    };
                    let jobs = match (crm_event, event.account()) {
                        (Some(crm_event), Some(account)) => vec![job(
                            JobKind::CrmDelivery,
                            account,
                            true,
                            record.id.as_str(),
                            crm_payload::event_body(crm_event, &record.id, event),
                            now,
                        )],
                        _ => Vec::new(),
                    };
                    PreparedEvent {
                        item: Item::Other { record, deletion },
                        jobs,
                    }
                }
            })
            .collect();
        Self {
            journal: JournalEntry {
                id,
                received_at: webhook.received_at,
                body: webhook.body,
                status,
                error,
                events: u32::try_from(events.len()).unwrap_or(u32::MAX),
            },
            events: prepared,
        }
    }
}

/// Writes a group in one transaction; returns one report per request.
async fn write(
    store: &dyn InboundStore,
    group: &[Prepared],
) -> Result<Vec<IngestReport>, RepoError> {
    let mut batch = InboundBatch {
        journal: group.iter().map(|p| p.journal.clone()).collect(),
        ..InboundBatch::default()
    };
    // First occurrence of each message and event in the group; repeats are dropped here and
    // credited to no one.
    let mut seen_messages: HashSet<(&InstagramAccountId, &str)> = HashSet::new();
    let mut seen_events: HashSet<(Option<&InstagramAccountId>, String)> = HashSet::new();
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (index, prepared) in group.iter().enumerate() {
        for event in &prepared.events {
            match &event.item {
                Item::Message(message) => {
                    let mid = message.mid.as_ref().map_or("", |m| m.as_str());
                    if !seen_messages.insert((&message.instagram_account_id, mid)) {
                        continue;
                    }
                    owner.insert(message.id.as_str(), index);
                    batch.messages.push(message.clone());
                }
                Item::Other { record, deletion } => {
                    if !seen_events.insert((record.event.account(), record.event.dedup_key())) {
                        continue;
                    }
                    owner.insert(record.id.as_str(), index);
                    batch.deletions.extend(deletion.iter().cloned());
                    batch.events.push(record.clone());
                }
            }
            batch.jobs.extend(event.jobs.iter().cloned());
        }
    }
    let outcome = store.store(batch).await?;
    let mut processed = vec![0_u32; group.len()];
    let new_ids = outcome
        .new_messages
        .iter()
        .map(MessageId::as_str)
        .chain(outcome.new_events.iter().map(EventId::as_str));
    for id in new_ids {
        if let Some(&index) = owner.get(id) {
            processed[index] += 1;
        }
    }
    Ok(group
        .iter()
        .zip(processed)
        .map(|(p, processed)| IngestReport {
            webhook_id: p.journal.id.clone(),
            processed,
            status: p.journal.status,
        })
        .collect())
}

/// A job about `subject`. A CRM delivery's payload is the body it sends.
fn job(
    kind: JobKind,
    account: &InstagramAccountId,
    requires_crm: bool,
    subject: &str,
    payload: String,
    now: DateTime<Utc>,
) -> PlannedJob {
    PlannedJob {
        job: NewJob {
            id: JobId::from_u128(new_id_bits()),
            kind,
            account_id: None,
            subject: subject.to_owned(),
            payload,
            run_at: now,
        },
        instagram_account_id: account.clone(),
        requires_crm,
    }
}
