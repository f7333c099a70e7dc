//! The inbound unit of work: all or nothing, duplicates skipped and reported.

use chrono::{DateTime, Utc};
use insta_router_domain::{
    Account, AccountId, Conversation, ConversationId, CrmWebhookUrl, Direction, EventId,
    InboundEvent, InboundEventKind, InstagramAccountId, InstagramMessageId, InstagramUserId, JobId,
    JobKind, JobWork, Message, MessageContext, MessageId, MessageKind, NewJob, Parties,
    ReactionAction, Route, SealedSecret, Username, WebhookId,
};
use insta_router_ports::{
    AccountRepository, BatchOutcome, ConversationRepository, Deletion, EventRecord, InboundBatch,
    InboundStore, JobQueue, JournalEntry, JournalStatus, MessageRepository, RuleRepository,
    StoredRule,
};
use insta_router_storage::Database;

use insta_router_storage::testing;

use crate::{at, migrated};

const ACCOUNT: &str = "17841400000000001";
const CUSTOMER: &str = "1234567890123456";

fn account_id() -> InstagramAccountId {
    InstagramAccountId::parse("a", ACCOUNT).unwrap()
}

pub(crate) fn message(n: u128, mid: &str, secs: i64) -> Message {
    let account = account_id();
    let customer = InstagramUserId::parse("c", CUSTOMER).unwrap();
    Message {
        id: MessageId::from_u128(n),
        conversation_id: ConversationId::for_pair(&account, &customer),
        recipient_id: account.to_user_id(),
        instagram_account_id: account,
        mid: Some(InstagramMessageId::parse("mid", mid).unwrap()),
        direction: Direction::Inbound,
        sender_id: customer,
        kind: MessageKind::Text,
        text: Some(format!("text {n} ❤️")),
        attachments: Vec::new(),
        reply_to: None,
        context: MessageContext::default(),
        sent_at: at(secs),
        created_at: at(secs),
        deleted_at: None,
    }
}

fn reaction(n: u128, secs: i64) -> EventRecord {
    EventRecord {
        id: EventId::from_u128(n),
        webhook_id: WebhookId::from_u128(1),
        received_at: at(secs),
        event: InboundEvent {
            occurred_at: at(secs),
            standby: false,
            kind: InboundEventKind::Reaction {
                parties: Parties {
                    account: account_id(),
                    customer: InstagramUserId::parse("c", CUSTOMER).unwrap(),
                },
                mid: InstagramMessageId::parse("mid", "mid.1").unwrap(),
                action: ReactionAction::React,
                reaction: Some("love".into()),
                emoji: Some("\u{2764}\u{fe0f}".into()),
            },
        },
    }
}

fn journal(n: u128, at: DateTime<Utc>) -> JournalEntry {
    JournalEntry {
        id: WebhookId::from_u128(n),
        received_at: at,
        body: b"{\"object\":\"instagram\",\"entry\":[]} \xff raw bytes".to_vec(),
        status: JournalStatus::Accepted,
        error: None,
        events: 1,
    }
}

fn job(n: u128, kind: JobKind, subject: &str) -> NewJob {
    NewJob {
        id: JobId::from_u128(n),
        work: JobWork::from_stored(kind, "{}").unwrap(),
        account_id: None,
        subject: subject.to_owned(),
        run_at: at(0),
    }
}

pub(crate) async fn add_account(db: &Database, n: u128, instagram_id: &str, crm: bool) {
    db.accounts()
        .insert(&Account {
            id: AccountId::from_u128(n),
            instagram_account_id: InstagramAccountId::parse("i", instagram_id).unwrap(),
            username: Username::parse(&format!("shop{n}")).unwrap(),
            access_token: SealedSecret::new("plain:t".into()),
            crm_webhook_url: crm.then(|| CrmWebhookUrl::parse("https://crm.example/h").unwrap()),
            webhook_secret: crm.then(|| SealedSecret::new("plain:s".into())),
            delivery: Default::default(),
            token_failure: None,
            token_life: Default::default(),
            created_at: at(0),
            updated_at: at(0),
        })
        .await
        .unwrap();
}

/// Gives account `n` a rule, on or off.
async fn add_rule(db: &Database, n: u128, rule: u128, enabled: bool) {
    db.rules()
        .insert(&StoredRule {
            id: insta_router_domain::RuleId::from_u128(rule),
            account_id: AccountId::from_u128(n),
            priority: 0,
            enabled,
            definition: "{}".into(),
            created_at: at(0),
            updated_at: at(0),
        })
        .await
        .unwrap();
}

async fn count(db: &Database, table: &str) -> u64 {
    db.row_count(table).await.unwrap()
}

#[tokio::test]
async fn a_batch_stores_journal_messages_events_conversations_and_jobs() {
    for (test_db, db) in migrated().await {
        let m = message(1, "mid.1", 0);
        let r = reaction(1, 0);
        let batch = InboundBatch {
            journal: vec![journal(1, at(0))],
            messages: vec![m.clone()],
            events: vec![r.clone()],
            deletions: Vec::new(),
            jobs: vec![
                job(1, JobKind::AutoReply, m.id.as_str()),
                job(2, JobKind::CrmDelivery, r.id.as_str()),
            ],
            routes: Vec::new(),
        };
        let outcome = db.inbound().store(batch.clone()).await.unwrap();
        assert_eq!(
            outcome,
            BatchOutcome {
                new_messages: vec![m.id.clone()],
                new_events: vec![r.id.clone()],
                routes_changed: false,
            },
            "{:?}",
            test_db.backend()
        );
        for table in [
            "webhook_journal",
            "messages",
            "inbound_events",
            "conversations",
        ] {
            assert_eq!(
                count(&db, table).await,
                1,
                "{table}, {:?}",
                test_db.backend()
            );
        }
        assert_eq!(db.messages().get(&m.id).await.unwrap(), Some(m.clone()));
        let conversation = db
            .conversations()
            .get(&m.conversation_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (conversation.started_at, conversation.last_inbound_at),
            (at(0), Some(at(0)))
        );
        let jobs = db.jobs().list_by_subject(m.id.as_str()).await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].kind(), JobKind::AutoReply);
        assert_eq!(jobs[0].account_id, None, "no account is configured");
        assert_eq!(
            db.jobs()
                .list_by_subject(r.id.as_str())
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn bodies_texts_and_payloads_are_stored_byte_for_byte() {
    // Whatever the backend carries rows in (bound values, JSON on PostgreSQL), the raw body,
    // a text and a job payload come back exactly as given.
    let body = b"{\"entry\":[]}\x00\xff\\x41 \"quoted\" \\ \n\x7f".to_vec();
    let text = "quote \" backslash \\ \\x41 newline \n tab \t control \u{1} nul-free \u{2764}\u{fe0f} \u{1F600}";
    let payload = r#"{"account_id":null,"text":"\"\\ \u0001 \u2764","n":1.5e3}"#;
    for (test_db, db) in migrated().await {
        add_account(&db, 9, ACCOUNT, true).await;
        let mut m = message(1, "mid.verbatim", 0);
        m.text = Some(text.to_owned());
        let mut entry = journal(1, at(0));
        entry.body.clone_from(&body);
        let mut crm = job(1, JobKind::CrmDelivery, m.id.as_str());
        crm.work = JobWork::CrmDelivery {
            body: payload.to_owned(),
        };
        let batch = InboundBatch {
            journal: vec![entry],
            messages: vec![m.clone()],
            events: Vec::new(),
            deletions: Vec::new(),
            jobs: vec![crm],
            routes: Vec::new(),
        };
        db.inbound().store(batch.clone()).await.unwrap();
        let backend = test_db.backend();
        assert_eq!(
            db.messages().get(&m.id).await.unwrap(),
            Some(m.clone()),
            "{backend:?}"
        );
        let hex = match backend {
            insta_router_storage::Backend::Postgres => "encode(body, 'hex')",
            _ => "lower(hex(body))",
        };
        let stored = testing::rows(&db, &format!("SELECT {hex} AS h FROM webhook_journal")).await;
        assert_eq!(
            stored[0]["h"].as_str(),
            Some(hex::encode(&body).as_str()),
            "{backend:?}"
        );
        let jobs = db.jobs().list_by_subject(m.id.as_str()).await.unwrap();
        assert_eq!(jobs[0].work.payload(), payload, "{backend:?}");
    }
}

#[tokio::test]
async fn a_failing_batch_stores_nothing() {
    for (test_db, db) in migrated().await {
        // Failing late, after the journal and the messages went in: two jobs with one id.
        let subject = message(2, "mid.2", 0).id.to_string();
        let batch = InboundBatch {
            journal: vec![journal(2, at(0))],
            messages: vec![message(2, "mid.2", 0)],
            jobs: vec![
                job(1, JobKind::AutoReply, &subject),
                job(1, JobKind::AutoReply, &subject),
            ],
            ..InboundBatch::default()
        };
        assert!(db.inbound().store(batch.clone()).await.is_err());
        for table in ["webhook_journal", "messages", "conversations", "jobs"] {
            assert_eq!(
                count(&db, table).await,
                0,
                "{table}, {:?}",
                test_db.backend()
            );
        }
        // Nothing is left open: the writer and the other connections write again.
        add_account(&db, 1, "17841400000000077", false).await;
        let batch = InboundBatch {
            journal: vec![journal(3, at(0))],
            messages: vec![message(3, "mid.3", 0)],
            ..InboundBatch::default()
        };
        let outcome = db
            .inbound()
            .store(batch.clone())
            .await
            .expect("a good batch after bad ones");
        assert_eq!(outcome.new_messages.len(), 1, "{:?}", test_db.backend());
        assert_eq!(count(&db, "messages").await, 1);
        assert_eq!(count(&db, "accounts").await, 1);
    }
}

#[tokio::test]
async fn duplicates_are_skipped_and_get_no_jobs() {
    for (test_db, db) in migrated().await {
        let store = db.inbound();
        store
            .store(InboundBatch {
                messages: vec![message(1, "mid.1", 0)],
                events: vec![reaction(1, 0)],
                ..InboundBatch::default()
            })
            .await
            .unwrap();

        // Meta's retry: the same mid and the same reaction again, next to new ones.
        let batch = InboundBatch {
            messages: vec![message(2, "mid.1", 0), message(3, "mid.3", 1)],
            events: vec![reaction(2, 0), reaction(3, 5)],
            jobs: vec![
                job(1, JobKind::AutoReply, MessageId::from_u128(2).as_str()),
                job(2, JobKind::AutoReply, MessageId::from_u128(3).as_str()),
                job(3, JobKind::CrmDelivery, EventId::from_u128(2).as_str()),
            ],
            ..InboundBatch::default()
        };
        let outcome = store.store(batch.clone()).await.unwrap();
        assert_eq!(
            outcome.new_messages,
            vec![MessageId::from_u128(3)],
            "{:?}",
            test_db.backend()
        );
        assert_eq!(outcome.new_events, vec![EventId::from_u128(3)]);
        assert_eq!(count(&db, "messages").await, 2);
        assert_eq!(count(&db, "inbound_events").await, 2);
        assert_eq!(count(&db, "jobs").await, 1, "only the new message's job");
        assert_eq!(
            db.messages().get(&MessageId::from_u128(2)).await.unwrap(),
            None
        );
    }
}

#[tokio::test]
async fn large_batches_are_split_under_the_parameter_limits() {
    for (test_db, db) in migrated().await {
        let messages: Vec<Message> = (0..2_500)
            .map(|n| message(n + 1, &format!("mid.{n}"), 0))
            .collect();
        let jobs = messages
            .iter()
            .enumerate()
            .map(|(n, m)| job(n as u128 + 1, JobKind::AutoReply, m.id.as_str()))
            .collect();
        let outcome = db
            .inbound()
            .store(InboundBatch {
                messages,
                jobs,
                ..InboundBatch::default()
            })
            .await
            .unwrap();
        assert_eq!(outcome.new_messages.len(), 2_500, "{:?}", test_db.backend());
        assert_eq!(count(&db, "messages").await, 2_500);
        assert_eq!(count(&db, "jobs").await, 2_500);
    }
}

#[tokio::test]
async fn a_batch_planned_for_routes_that_no_longer_hold_writes_nothing() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let unknown = InstagramAccountId::parse("a", "999").unwrap();
        let held = Route {
            account_id: AccountId::from_u128(1),
            forwards_to_crm: true,
            answers: false,
        };
        let batch = |n: u128, assumed: Option<Route>, deletions: bool| {
            let m = message(n, &format!("mid.{n}"), 0);
            InboundBatch {
                journal: vec![journal(n, at(0))],
                jobs: vec![job(n, JobKind::AutoReply, m.id.as_str())],
                messages: vec![m],
                // A batch that marks deletions takes the other PostgreSQL path.
                deletions: if deletions {
                    vec![Deletion {
                        event_id: EventId::from_u128(n),
                        account: account_id(),
                        mid: InstagramMessageId::parse("m", "mid.0").unwrap(),
                        at: at(1),
                    }]
                } else {
                    Vec::new()
                },
                routes: vec![(account_id(), assumed), (unknown.clone(), None)],
                ..InboundBatch::default()
            }
        };
        let stale = [
            // Planned for an account that is not configured (yet, or any more).
            Some(held.clone()),
            // Configured now, but planned before it was.
            None,
            // Moved to another account.
            Some(Route {
                account_id: AccountId::from_u128(2),
                ..held.clone()
            }),
            // Its CRM removed.
            Some(Route {
                forwards_to_crm: false,
                ..held.clone()
            }),
            // Planned with rules, which are all off now.
            Some(Route {
                answers: true,
                ..held.clone()
            }),
        ];
        for (n, assumed) in (1_u128..).zip(stale) {
            if n == 2 {
                add_account(&db, 1, ACCOUNT, true).await;
                add_rule(&db, 1, 1, false).await;
            }
            for deletions in [false, true] {
                let outcome = db
                    .inbound()
                    .store(batch(n, assumed.clone(), deletions))
                    .await
                    .unwrap();
                assert_eq!(
                    outcome,
                    BatchOutcome {
                        routes_changed: true,
                        ..BatchOutcome::default()
                    },
                    "{backend:?} plan {n}, deletions {deletions}"
                );
                for table in ["webhook_journal", "messages", "conversations", "jobs"] {
                    assert_eq!(count(&db, table).await, 0, "{backend:?} {table} plan {n}");
                }
            }
        }
        // Planned for the routes that hold: written.
        for (n, deletions) in [(8, false), (9, true)] {
            let outcome = db
                .inbound()
                .store(batch(n, Some(held.clone()), deletions))
                .await
                .unwrap();
            assert_eq!(
                outcome.new_messages,
                [MessageId::from_u128(n)],
                "{backend:?}"
            );
            assert!(!outcome.routes_changed, "{backend:?}");
        }
        // A rule switched on since: the plan without rules no longer holds, one with them does.
        let mut rule = db
            .rules()
            .get(&insta_router_domain::RuleId::from_u128(1))
            .await
            .unwrap()
            .unwrap();
        rule.enabled = true;
        assert!(db.rules().update(&rule).await.unwrap());
        let answering = Route {
            answers: true,
            ..held.clone()
        };
        for (n, deletions) in [(10, false), (11, true)] {
            let stale = db
                .inbound()
                .store(batch(n, Some(held.clone()), deletions))
                .await
                .unwrap();
            assert!(stale.routes_changed, "{backend:?} deletions {deletions}");
            let outcome = db
                .inbound()
                .store(batch(n, Some(answering.clone()), deletions))
                .await
                .unwrap();
            assert_eq!(
                outcome.new_messages,
                [MessageId::from_u128(n)],
                "{backend:?}"
            );
        }
        assert_eq!(count(&db, "jobs").await, 4, "{backend:?}");
    }
}

#[tokio::test]
async fn routes_name_the_configured_accounts_whether_they_have_a_crm_and_enabled_rules() {
    for (test_db, db) in migrated().await {
        add_account(&db, 1, ACCOUNT, true).await;
        add_account(&db, 2, "17841400000000002", false).await;
        // Account 1 has one rule on and one off; account 2 only one off.
        add_rule(&db, 1, 1, true).await;
        add_rule(&db, 1, 2, false).await;
        add_rule(&db, 2, 3, false).await;
        let other = InstagramAccountId::parse("a", "17841400000000002").unwrap();
        let unknown = InstagramAccountId::parse("a", "999").unwrap();
        let mut routes = db
            .inbound()
            .routes(&[account_id(), other.clone(), unknown])
            .await
            .unwrap();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        let backend = test_db.backend();
        assert_eq!(
            routes,
            vec![
                (
                    account_id(),
                    Route {
                        account_id: AccountId::from_u128(1),
                        forwards_to_crm: true,
                        answers: true,
                    }
                ),
                (
                    other,
                    Route {
                        account_id: AccountId::from_u128(2),
                        forwards_to_crm: false,
                        answers: false,
                    }
                ),
            ],
            "{backend:?}"
        );
        assert!(db.inbound().routes(&[]).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn jobs_are_queued_as_given_for_what_is_new() {
    for (test_db, db) in migrated().await {
        add_account(&db, 1, ACCOUNT, true).await;
        let m = message(1, "mid.1", 0);
        let mut crm = job(10, JobKind::CrmDelivery, m.id.as_str());
        crm.account_id = Some(AccountId::from_u128(1));
        crm.work = JobWork::CrmDelivery {
            body: r#"{"data":{"account_id":"acc","message":"it's"}}"#.into(),
        };
        let reply = job(11, JobKind::AutoReply, m.id.as_str());
        let unrelated = job(12, JobKind::AutoReply, "msg_not_in_this_batch");
        db.inbound()
            .store(InboundBatch {
                messages: vec![m.clone()],
                jobs: vec![crm.clone(), reply.clone(), unrelated],
                ..InboundBatch::default()
            })
            .await
            .unwrap();
        let mut stored = db.jobs().list_by_subject(m.id.as_str()).await.unwrap();
        stored.sort_by_key(|j| j.id.clone());
        let stored: Vec<(JobId, Option<AccountId>, JobWork)> = stored
            .into_iter()
            .map(|j| (j.id, j.account_id, j.work))
            .collect();
        assert_eq!(
            stored,
            vec![
                (crm.id, crm.account_id, crm.work),
                (reply.id, None, reply.work)
            ],
            "{:?}",
            test_db.backend()
        );
        assert_eq!(count(&db, "jobs").await, 2, "{:?}", test_db.backend());
    }
}

#[tokio::test]
async fn new_deletions_mark_stored_messages_once() {
    for (test_db, db) in migrated().await {
        let store = db.inbound();
        store
            .store(InboundBatch {
                messages: vec![message(1, "mid.1", 0)],
                ..InboundBatch::default()
            })
            .await
            .unwrap();
        let deletion = |n: u128, secs| Deletion {
            event_id: EventId::from_u128(n),
            account: account_id(),
            mid: InstagramMessageId::parse("m", "mid.1").unwrap(),
            at: at(secs),
        };
        let deleted_event = |n: u128, secs| {
            let mut r = reaction(n, secs);
            r.event.kind = InboundEventKind::Deleted {
                parties: Parties {
                    account: account_id(),
                    customer: InstagramUserId::parse("c", CUSTOMER).unwrap(),
                },
                mid: InstagramMessageId::parse("m", "mid.1").unwrap(),
            };
            r
        };
        for (n, secs) in [(1, 5), (2, 9)] {
            store
                .store(InboundBatch {
                    events: vec![deleted_event(n, secs)],
                    deletions: vec![deletion(n, secs)],
                    ..InboundBatch::default()
                })
                .await
                .unwrap();
        }
        let stored = db
            .messages()
            .get(&MessageId::from_u128(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.deleted_at, Some(at(5)), "{:?}", test_db.backend());
        assert_eq!(
            count(&db, "inbound_events").await,
            1,
            "the repeat is a duplicate"
        );
    }
}

#[tokio::test]
async fn conversations_merge_with_stored_rows_and_within_a_batch() {
    for (test_db, db) in migrated().await {
        let customer = InstagramUserId::parse("c", CUSTOMER).unwrap();
        db.conversations()
            .record(&Conversation::start(
                account_id(),
                customer.clone(),
                at(10),
                true,
            ))
            .await
            .unwrap();
        let mut echo = message(2, "mid.2", 20);
        echo.direction = Direction::Outbound;
        echo.sender_id = account_id().to_user_id();
        echo.recipient_id = customer.clone();
        db.inbound()
            .store(InboundBatch {
                messages: vec![message(1, "mid.1", 5), echo],
                ..InboundBatch::default()
            })
            .await
            .unwrap();
        let one = db
            .conversations()
            .get(&ConversationId::for_pair(&account_id(), &customer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (one.started_at, one.last_message_at, one.last_inbound_at),
            (at(5), at(20), Some(at(10))),
            "{:?}",
            test_db.backend()
        );
        assert_eq!(count(&db, "conversations").await, 1);
    }
}

#[tokio::test]
async fn sqlite_checkpoints_the_wal_in_the_background() {
    let test_db = insta_router_storage::testing::sqlite();
    let db = test_db.connect().await;
    db.migrate_up().await.unwrap();
    let path = test_db
        .url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let size = |p: &str| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    // Let a checkpoint pass, then write: the rows go to the WAL only.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let before = size(&path);
    let messages: Vec<Message> = (0..500)
        .map(|n| message(n + 1, &format!("mid.{n}"), 0))
        .collect();
    // Kept past the close, as the service's ingest pipeline keeps its store.
    let store = db.inbound();
    store
        .store(InboundBatch {
            messages,
            ..InboundBatch::default()
        })
        .await
        .unwrap();
    assert!(size(&format!("{path}-wal")) > 0, "written to the WAL");
    // Nothing in the write path checkpoints; the background task copies the WAL into the
    // database file within a second.
    let mut grown = false;
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if size(&path) > before {
            grown = true;
            break;
        }
    }
    assert!(grown, "database file still {before} bytes after 3 s");
    db.close().await.unwrap();
    // Every connection, the writer's too, is closed: the last one folded the WAL into the
    // database and removed it.
    assert!(
        !std::path::Path::new(&format!("{path}-wal")).exists(),
        "closing folds the WAL in and removes it"
    );
    drop(store);
}

/// A CRM body as the app renders it for `message.received`.
const CRM_BODY: &str = r#"{"data":{"account_id":"acc_01a23464d02b736d87b8d0dafa896505","attachments":[{"title":null,"type":"image","url":"https://cdn.example/1.jpg"}],"conversation_id":"conv_1234567890123456_17841400000000001","direction":"inbound","event":"message.received","id":"msg_01a23464d1707359ac6750297e345693","instagram_account_id":"17841400000000001","instagram_message_id":"aWdfZAG1faXRlbToxOklHTWVzc2FnZA","message":"is the blue one in stock? \"size\" M \u0001","message_id":"aWdfZAG1faXRlbToxOklHTWVzc2FnZA","message_type":"text","payload":null,"recipient_id":"17841400000000001","referral":null,"reply_to":null,"sender_id":"1234567890123456","sender_username":null,"standby":false,"timestamp":"2026-12-02T01:00:00.123000Z"},"timestamp":"2026-12-02T01:00:00.123000Z","type":"message.received"}"#;

#[tokio::test]
async fn crm_bodies_are_stored_in_under_half_their_length_and_read_back_byte_for_byte() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        add_account(&db, 1, ACCOUNT, true).await;
        let m = message(1, "mid.compact", 0);
        let mut crm = job(20, JobKind::CrmDelivery, m.id.as_str());
        crm.work = JobWork::CrmDelivery {
            body: CRM_BODY.to_owned(),
        };
        // The webhook path's batch (SQLite's writer thread, PostgreSQL's JSON rows) and the
        // queue's own insert (every other producer) store it the same way.
        db.inbound()
            .store(InboundBatch {
                messages: vec![m.clone()],
                jobs: vec![crm.clone()],
                ..InboundBatch::default()
            })
            .await
            .unwrap();
        let mut queued = job(21, JobKind::CrmDelivery, "msg_queued");
        queued.work = crm.work.clone();
        db.jobs().enqueue(&[queued.clone()]).await.unwrap();
        // A text with a control character of its own is stored as it is.
        let mut odd = job(22, JobKind::CrmDelivery, "msg_odd");
        odd.work = JobWork::CrmDelivery {
            body: "raw \u{1} \u{1e} \u{1d} text".to_owned(),
        };
        db.jobs().enqueue(&[odd.clone()]).await.unwrap();

        for sent in [&crm, &queued, &odd] {
            let read = db.jobs().get(&sent.id).await.unwrap().unwrap();
            assert_eq!(read.work, sent.work, "{backend:?}");
        }
        // As text: SQLite gives an expression's number no type the JSON rows can read.
        let length = match backend {
            insta_router_storage::Backend::Postgres => "CAST(octet_length(payload) AS TEXT)",
            insta_router_storage::Backend::MySql => "CAST(LENGTH(payload) AS CHAR)",
            insta_router_storage::Backend::Sqlite => "CAST(length(payload) AS TEXT)",
        };
        let stored = testing::rows(
            &db,
            &format!(
                "SELECT {length} AS n FROM jobs WHERE id IN ('{}', '{}')",
                crm.id, queued.id
            ),
        )
        .await;
        assert_eq!(stored.len(), 2, "{backend:?}");
        for row in stored {
            let n: i64 = row["n"]
                .as_str()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{backend:?}: {row}"));
            assert!(
                n * 2 < i64::try_from(CRM_BODY.len()).unwrap(),
                "{backend:?}: {n} of {} bytes",
                CRM_BODY.len()
            );
        }
    }
}

#[tokio::test]
async fn payloads_written_before_the_compact_form_are_read_as_they_are() {
    const OLD_BODY: &str =
        r#"{"data":{"account_id":"acc_1","message":"hi"},"type":"message.received"}"#;
    for (test_db, db) in migrated().await {
        testing::execute(
            &db,
            &format!(
                "INSERT INTO jobs (id, kind, account_id, subject, payload, status, attempts, run_at, \
                 lease_token, last_error, created_at, updated_at) VALUES \
                 ('{}', 'crm_delivery', NULL, 'msg_old', '{}', 'queued', 0, 0, NULL, NULL, 0, 0)",
                JobId::from_u128(30),
                OLD_BODY
            ),
        )
        .await;
        let read = db.jobs().get(&JobId::from_u128(30)).await.unwrap().unwrap();
        assert_eq!(
            read.work,
            JobWork::CrmDelivery {
                body: OLD_BODY.to_owned()
            },
            "{:?}",
            test_db.backend()
        );
    }
}
