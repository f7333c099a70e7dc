//! The ingest against fakes of its ports: grouping, rescue, journal and spool.
use std::sync::Mutex as StdMutex;

use chrono::TimeDelta;
use insta_router_domain::{
    InboundEvent, InstagramMessageId, InstagramUserId, MessageContext, Parties, ReceivedMessage,
};
use insta_router_ports::{BatchOutcome, JournalSummary, MockClock};

use super::*;
use insta_router_domain::{
    Direction, InboundEventKind, InstagramAccountId, JobId, JobWork, MessageId, MessageKind,
    NewJob, Route,
};
use insta_router_ports::{InboundBatch, WebhookJournal, WebhookSpool};

fn now() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000)
}

/// Bodies are comma-separated mids; each is one inbound text message.
struct Mids;

impl NotificationParser for Mids {
    fn parse(&self, body: &[u8], received_at: DateTime<Utc>) -> Result<Vec<InboundEvent>, String> {
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
    async fn routes(
        &self,
        _: &[InstagramAccountId],
    ) -> Result<Vec<(InstagramAccountId, Route)>, RepoError> {
        Ok(Vec::new())
    }

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
            routes_changed: false,
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
    assert_eq!(job.work, JobWork::WebhookReplay);
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

mod planning;
