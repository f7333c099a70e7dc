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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use insta_router_domain::{
    ConversationId, Direction, EventId, InboundEventKind, InstagramAccountId, JobId, JobKind,
    Message, MessageId, MessageKind, NewJob, WebhookId, replay_delay,
};
use insta_router_ports::{
    Clock, Deletion, EventRecord, InboundBatch, InboundStore, JournalEntry, JournalStatus,
    NotificationParser, PlannedJob, RepoError, WebhookJournal, WebhookSpool, describe,
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
}

impl Ingestor {
    /// Starts the writer tasks on the current tokio runtime.
    pub fn start(ports: IngestPorts, settings: IngestSettings) -> Self {
        let (sender, receiver) = mpsc::channel::<Pending>(settings.queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let (committed, commits) = watch::channel(0_u64);
        let committed = Arc::new(committed);
        let max_batch = settings.max_batch.max(1);
        let parser = ports.parser.clone();
        let writers = (0..settings.writers.max(1))
            .map(|_| {
                let receiver = receiver.clone();
                let ports = ports.clone();
                let committed = committed.clone();
                tokio::spawn(async move {
                    let mut batch = Vec::with_capacity(max_batch);
                    loop {
                        let received = receiver.lock().await.recv_many(&mut batch, max_batch).await;
                        if received == 0 {
                            break;
                        }
                        if write_group(&ports, std::mem::take(&mut batch)).await {
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
        let (reply, answer) = oneshot::channel();
        sender
            .send(Pending {
                prepared: Prepared::new(webhook, self.parser.as_ref()),
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
async fn write_group(ports: &IngestPorts, group: Vec<Pending>) -> bool {
    let (replies, prepared): (Vec<_>, Vec<_>) =
        group.into_iter().map(|p| (p.reply, p.prepared)).unzip();
    let started = std::time::Instant::now();
    match write(ports.store.as_ref(), &prepared).await {
        Ok(reports) => {
            tracing::debug!(
                requests = prepared.len(),
                micros = started.elapsed().as_micros(),
                "group written"
            );
            let new = reports.iter().any(|r| r.processed > 0);
            for ((reply, report), prepared) in replies.into_iter().zip(reports).zip(&prepared) {
                count(prepared.origin, report.status);
                let _ = reply.send(Ok(report));
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
                group_error: Some(group_error),
                alone,
                journal_refused: false,
            };
            let mut new = false;
            for (reply, prepared) in replies.into_iter().zip(prepared) {
                let origin = prepared.origin;
                let result = rescue.rescue(prepared).await;
                if let Ok(report) = &result {
                    new |= report.processed > 0;
                    count(origin, report.status);
                } else if origin == Origin::Meta {
                    metrics::counter!("insta_router_webhooks_total", "outcome" => "refused")
                        .increment(1);
                }
                let _ = reply.send(result);
            }
            new
        }
    }
}

/// Counts a request from Meta by what became of it.
fn count(origin: Origin, status: JournalStatus) {
    if origin == Origin::Meta {
        metrics::counter!("insta_router_webhooks_total", "outcome" => status.as_str()).increment(1);
    }
}

/// The requests of a failed group, each written alone, else kept for replay.
struct Rescue<'a> {
    ports: &'a IngestPorts,
    /// The group's error, which is the error of a group of one.
    group_error: Option<RepoError>,
    /// Whether to write each request alone (not for a group of one: that was the write).
    alone: bool,
    /// Set once the database refused even a journal entry: the group's remaining requests go
    /// straight to the spool instead of waiting for the database again.
    journal_refused: bool,
}

impl Rescue<'_> {
    async fn rescue(&mut self, prepared: Prepared) -> Result<IngestReport, IngestError> {
        let ports = self.ports;
        let error = if self.alone && !self.journal_refused {
            // Fresh ids: the group may have been committed after all (a connection lost
            // during the commit), and rows with these ids would then pass for new ones.
            let fresh = prepared.again(ports.parser.as_ref());
            match write(ports.store.as_ref(), std::slice::from_ref(&fresh)).await {
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
                kind: JobKind::WebhookReplay,
                account_id: None,
                subject: id.as_str().to_owned(),
                payload: String::new(),
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

/// One request, ready to write: ids assigned, messages, event records, CRM bodies and jobs
/// built. Preparing happens in the caller's task, on every core at once; the group writer,
/// which sets the pace, only picks the first occurrence of each event and hands the group to
/// the store.
struct Prepared {
    origin: Origin,
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
    /// Parses the request and takes its body over: it is the largest part, and the journal
    /// keeps it.
    fn new(webhook: ReceivedWebhook, parser: &dyn NotificationParser) -> Self {
        let parsed = parser.parse(&webhook.body, webhook.received_at);
        if let Err(reason) = &parsed
            && webhook.origin == Origin::Meta
        {
            tracing::warn!(%reason, "signed webhook is not a usable notification; journaling it");
        }
        let id = webhook.id;
        let (events, status, error) = match &parsed {
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
            origin: webhook.origin,
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

impl Prepared {
    /// The same request prepared again, with fresh ids (the journal id stays).
    fn again(&self, parser: &dyn NotificationParser) -> Self {
        Self::new(
            ReceivedWebhook {
                id: self.journal.id.clone(),
                received_at: self.journal.received_at,
                body: self.journal.body.clone(),
                origin: self.origin,
            },
            parser,
        )
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use chrono::TimeDelta;
    use insta_router_domain::{
        InboundEvent, InstagramMessageId, InstagramUserId, MessageContext, Parties, ReceivedMessage,
    };
    use insta_router_ports::{BatchOutcome, JournalSummary, MockClock};

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000)
    }

    /// Bodies are comma-separated mids; each is one inbound text message.
    struct Mids;

    impl NotificationParser for Mids {
        fn parse(
            &self,
            body: &[u8],
            received_at: DateTime<Utc>,
        ) -> Result<Vec<InboundEvent>, String> {
            let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
            Ok(text
                .split(',')
                .map(|mid| InboundEvent {
                    occurred_at: received_at,
                    standby: false,
                    kind: InboundEventKind::Message(ReceivedMessage {
                        parties: Parties {
                            account: InstagramAccountId::parse("a", "1784").unwrap(),
                            customer: InstagramUserId::parse("c", "42").unwrap(),
                        },
                        mid: InstagramMessageId::parse("mid", mid).unwrap(),
                        direction: Direction::Inbound,
                        kind: MessageKind::Text,
                        text: Some("hi".into()),
                        attachments: Vec::new(),
                        reply_to: None,
                        context: MessageContext::default(),
                    }),
                })
                .collect())
        }
    }

    /// A database that refuses batches holding the `poison` mid, or everything when down.
    #[derive(Default)]
    struct Db {
        poison: Option<&'static str>,
        down: bool,
        journal_down: bool,
        /// Every batch tried: the message ids of each.
        tried: Vec<Vec<MessageId>>,
        /// Committed mids.
        stored: Vec<String>,
        kept: Vec<(JournalEntry, NewJob)>,
    }

    #[derive(Clone, Default)]
    struct Fake(Arc<StdMutex<Db>>);

    impl Fake {
        fn with(f: impl FnOnce(&mut Db)) -> Self {
            let fake = Self::default();
            f(&mut fake.0.lock().unwrap());
            fake
        }
        fn db(&self) -> std::sync::MutexGuard<'_, Db> {
            self.0.lock().unwrap()
        }
    }

    #[async_trait::async_trait]
    impl InboundStore for Fake {
        async fn store(&self, batch: InboundBatch) -> Result<BatchOutcome, RepoError> {
            let mut db = self.db();
            db.tried
                .push(batch.messages.iter().map(|m| m.id.clone()).collect());
            let mids: Vec<String> = batch
                .messages
                .iter()
                .filter_map(|m| m.mid.as_ref().map(|m| m.as_str().to_owned()))
                .collect();
            if db.down {
                return Err(RepoError::Unavailable("connection refused".into()));
            }
            if let Some(poison) = db.poison
                && mids.iter().any(|m| m == poison)
            {
                return Err(RepoError::Unavailable(
                    format!("CHECK constraint failed: {poison} refused").into(),
                ));
            }
            db.stored.extend(mids);
            Ok(BatchOutcome {
                new_messages: batch.messages.iter().map(|m| m.id.clone()).collect(),
                new_events: Vec::new(),
            })
        }
    }

    #[async_trait::async_trait]
    impl WebhookJournal for Fake {
        async fn keep_for_replay(
            &self,
            entries: &[JournalEntry],
            replays: &[NewJob],
        ) -> Result<(), RepoError> {
            let mut db = self.db();
            if db.down || db.journal_down {
                return Err(RepoError::Unavailable("connection refused".into()));
            }
            db.kept
                .extend(entries.iter().cloned().zip(replays.iter().cloned()));
            Ok(())
        }
        async fn get(&self, _: &WebhookId) -> Result<Option<JournalEntry>, RepoError> {
            Ok(None)
        }
        async fn record_error(&self, _: &WebhookId, _: &str) -> Result<(), RepoError> {
            Ok(())
        }
        async fn close_replay(&self, _: &WebhookId, _: DateTime<Utc>) -> Result<(), RepoError> {
            Ok(())
        }
        async fn list(
            &self,
            _: Option<JournalStatus>,
            _: u32,
        ) -> Result<Vec<JournalSummary>, RepoError> {
            Ok(Vec::new())
        }
        async fn awaiting_replay(&self) -> Result<u64, RepoError> {
            Ok(0)
        }
    }

    #[derive(Default)]
    struct Spool {
        full: bool,
        kept: StdMutex<Vec<JournalEntry>>,
    }

    #[async_trait::async_trait]
    impl WebhookSpool for Spool {
        async fn put(&self, entry: &JournalEntry) -> Result<(), RepoError> {
            if self.full {
                return Err(RepoError::Unavailable("no space left on device".into()));
            }
            self.kept.lock().unwrap().push(entry.clone());
            Ok(())
        }
        async fn list(&self, _: usize) -> Result<Vec<JournalEntry>, RepoError> {
            Ok(self.kept.lock().unwrap().clone())
        }
        async fn get(&self, _: &WebhookId) -> Result<Option<JournalEntry>, RepoError> {
            Ok(None)
        }
        async fn count(&self) -> Result<usize, RepoError> {
            Ok(self.kept.lock().unwrap().len())
        }
        async fn remove(&self, _: &WebhookId) -> Result<(), RepoError> {
            Ok(())
        }
    }

    fn ingestor(fake: &Fake, spool: Option<Arc<Spool>>) -> Ingestor {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        Ingestor::start(
            IngestPorts {
                store: Arc::new(fake.clone()),
                journal: Arc::new(fake.clone()),
                spool: spool.map(|s| s as Arc<dyn WebhookSpool>),
                parser: Arc::new(Mids),
                clock: Arc::new(clock),
            },
            IngestSettings::default(),
        )
    }

    fn from_meta(mids: &str) -> ReceivedWebhook {
        ReceivedWebhook::from_meta(now(), mids.as_bytes().to_vec())
    }

    /// Ingests the bodies concurrently: queued before the writer runs, they form one group.
    async fn ingest_group(
        ingestor: &Ingestor,
        bodies: &[&str],
    ) -> Vec<Result<IngestReport, IngestError>> {
        let mut futures: Vec<_> = bodies
            .iter()
            .map(|b| Box::pin(ingestor.ingest(from_meta(b))))
            .collect();
        let mut results: Vec<Option<Result<IngestReport, IngestError>>> =
            futures.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (slot, future) in results.iter_mut().zip(futures.iter_mut()) {
                if slot.is_none() {
                    match future.as_mut().poll(cx) {
                        std::task::Poll::Ready(r) => *slot = Some(r),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        results.into_iter().map(Option::unwrap).collect()
    }

    #[tokio::test]
    async fn a_refused_request_is_journaled_for_replay_and_spares_its_group() {
        let fake = Fake::with(|db| db.poison = Some("mid.poison"));
        let ingestor = ingestor(&fake, Some(Arc::default()));
        let results = ingest_group(&ingestor, &["mid.1", "mid.poison", "mid.2"]).await;
        let statuses: Vec<_> = results
            .iter()
            .map(|r| r.as_ref().map(|r| (r.status, r.processed)).unwrap())
            .collect();
        assert_eq!(
            statuses,
            [
                (JournalStatus::Accepted, 1),
                (JournalStatus::Failed, 0),
                (JournalStatus::Accepted, 1)
            ]
        );
        let db = fake.db();
        assert_eq!(db.stored, ["mid.1", "mid.2"]);
        // The group, then each request alone with fresh ids.
        assert_eq!(db.tried.len(), 4);
        assert!(
            db.tried[1..]
                .iter()
                .all(|ids| !db.tried[0].contains(&ids[0]))
        );
        let (entry, job) = &db.kept[0];
        let id = results[1].as_ref().unwrap().webhook_id.clone();
        assert_eq!(entry.id, id);
        assert_eq!(entry.status, JournalStatus::Failed);
        assert_eq!(entry.body, b"mid.poison");
        assert_eq!(
            entry.error.as_deref(),
            Some("storage unavailable: CHECK constraint failed: mid.poison refused"),
            "the real cause"
        );
        assert_eq!(job.id, JobId::replaying(&id));
        assert_eq!(job.kind, JobKind::WebhookReplay);
        assert_eq!(job.subject, id.as_str());
        assert_eq!(job.run_at, now() + TimeDelta::seconds(1));
    }

    #[tokio::test]
    async fn a_lone_request_is_not_written_twice_before_it_is_journaled() {
        let fake = Fake::with(|db| db.poison = Some("mid.poison"));
        let ingestor = ingestor(&fake, None);
        let report = ingestor.ingest(from_meta("mid.poison")).await.unwrap();
        assert_eq!(report.status, JournalStatus::Failed);
        assert_eq!(fake.db().tried.len(), 1);
        assert_eq!(fake.db().kept.len(), 1);
    }

    #[tokio::test]
    async fn a_database_that_refuses_even_the_journal_sends_requests_to_the_spool() {
        let fake = Fake::with(|db| db.down = true);
        let spool = Arc::new(Spool::default());
        let ingestor = ingestor(&fake, Some(spool.clone()));
        let results = ingest_group(&ingestor, &["mid.1", "mid.2", "mid.3"]).await;
        for result in &results {
            assert_eq!(result.as_ref().unwrap().status, JournalStatus::Spooled);
        }
        let kept = spool.kept.lock().unwrap();
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[2].body, b"mid.3");
        // The group, the first alone; once the journal was refused, no more waiting on the
        // database for this group.
        assert_eq!(fake.db().tried.len(), 2);
    }

    #[tokio::test]
    async fn with_nowhere_to_keep_it_a_request_is_refused_so_meta_retries() {
        let fake = Fake::with(|db| db.down = true);
        for spool in [
            None,
            Some(Arc::new(Spool {
                full: true,
                ..Spool::default()
            })),
        ] {
            let ingestor = ingestor(&fake, spool);
            let result = ingestor.ingest(from_meta("mid.1")).await;
            assert!(
                matches!(result, Err(IngestError::Unavailable(_))),
                "{result:?}"
            );
        }
        assert!(fake.db().stored.is_empty());
    }

    #[tokio::test]
    async fn replays_are_not_kept_again_and_spooled_requests_not_spooled_again() {
        let fake = Fake::with(|db| db.poison = Some("mid.poison"));
        let spool = Arc::new(Spool::default());
        let ingestor = ingestor(&fake, Some(spool.clone()));
        let entry = JournalEntry {
            id: WebhookId::from_u128(7),
            received_at: now(),
            body: b"mid.poison".to_vec(),
            status: JournalStatus::Failed,
            error: None,
            events: 1,
        };
        let replayed = ingestor
            .ingest(ReceivedWebhook::replay(entry.clone(), Origin::Journal))
            .await;
        assert!(matches!(replayed, Err(IngestError::Unavailable(_))));
        assert!(fake.db().kept.is_empty(), "its replay job reschedules it");

        // From the spool: into the journal, with the spooled id.
        let moved = ingestor
            .ingest(ReceivedWebhook::replay(entry.clone(), Origin::Spool))
            .await
            .unwrap();
        assert_eq!(moved.status, JournalStatus::Failed);
        assert_eq!(fake.db().kept[0].0.id, entry.id);
        // And when the journal refuses it, it stays where it is: not spooled a second time.
        fake.db().journal_down = true;
        let left = ingestor
            .ingest(ReceivedWebhook::replay(entry, Origin::Spool))
            .await;
        assert!(matches!(left, Err(IngestError::Unavailable(_))));
        assert!(spool.kept.lock().unwrap().is_empty());
    }

    #[test]
    fn causes_are_described_in_full_once() {
        let error = RepoError::Unavailable("disk I/O error".into());
        assert_eq!(describe(&error), "storage unavailable: disk I/O error");
        let error = IngestError::Unavailable(error);
        assert_eq!(
            describe(&error),
            "the database is unavailable: storage unavailable: disk I/O error"
        );
    }
}
