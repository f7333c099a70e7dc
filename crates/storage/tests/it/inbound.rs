//! The inbound unit of work: all or nothing, duplicates skipped and reported.

use chrono::{DateTime, Utc};
use insta_router_domain::{
    Account, AccountId, Conversation, ConversationId, CrmWebhookUrl, Direction, EventId,
    InboundEvent, InboundEventKind, InstagramAccountId, InstagramMessageId, InstagramUserId, JobId,
    JobKind, Message, MessageContext, MessageId, MessageKind, NewJob, Parties, ReactionAction,
    SealedSecret, Username, WebhookId,
};
use insta_router_ports::{
    AccountRepository, ConversationRepository, Deletion, EventRecord, InboundStore, JobQueue,
    JournalEntry, JournalStatus, MessageRepository,
};
use insta_router_storage::Database;

use crate::{at, migrated};

const ACCOUNT: &str = "17841400000000001";
const CUSTOMER: &str = "1234567890123456";

fn account_id() -> InstagramAccountId {
    InstagramAccountId::parse("a", ACCOUNT).unwrap()
}

fn message(n: u128, mid: &str, secs: i64) -> Message {
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

fn job(n: u128, subject: &MessageId) -> NewJob {
    NewJob {
        id: JobId::from_u128(n),
        kind: JobKind::CrmDelivery,
        account_id: None,
        subject: subject.as_str().to_owned(),
        payload: "{}".into(),
        run_at: at(0),
    }
}

async fn count(db: &Database, table: &str) -> u64 {
    db.row_count(table).await.unwrap()
}

#[tokio::test]
async fn a_committed_unit_stores_everything_and_a_dropped_one_nothing() {
    for (test_db, db) in migrated().await {
        let store = db.inbound();
        let m = message(1, "mid.1", 0);
        let conversation = Conversation::start(
            account_id(),
            InstagramUserId::parse("c", CUSTOMER).unwrap(),
            at(0),
            true,
        );

        let mut unit = store.begin().await.unwrap();
        unit.append_journal(&[journal(1, at(0))]).await.unwrap();
        assert_eq!(
            unit.insert_messages(std::slice::from_ref(&m))
                .await
                .unwrap(),
            vec![m.id.clone()]
        );
        unit.insert_events(&[reaction(1, 0)]).await.unwrap();
        unit.record_conversations(std::slice::from_ref(&conversation))
            .await
            .unwrap();
        unit.enqueue(&[job(1, &m.id)]).await.unwrap();
        drop(unit);
        for table in [
            "webhook_journal",
            "messages",
            "inbound_events",
            "conversations",
            "jobs",
        ] {
            assert_eq!(
                count(&db, table).await,
                0,
                "{table} after rollback, {:?}",
                test_db.backend()
            );
        }

        let mut unit = store.begin().await.unwrap();
        unit.append_journal(&[journal(1, at(0))]).await.unwrap();
        unit.insert_messages(std::slice::from_ref(&m))
            .await
            .unwrap();
        unit.insert_events(&[reaction(1, 0)]).await.unwrap();
        unit.record_conversations(std::slice::from_ref(&conversation))
            .await
            .unwrap();
        unit.enqueue(&[job(1, &m.id)]).await.unwrap();
        unit.commit().await.unwrap();
        for table in [
            "webhook_journal",
            "messages",
            "inbound_events",
            "conversations",
            "jobs",
        ] {
            assert_eq!(
                count(&db, table).await,
                1,
                "{table}, {:?}",
                test_db.backend()
            );
        }
        assert_eq!(db.messages().get(&m.id).await.unwrap(), Some(m.clone()));
        assert_eq!(
            db.conversations().get(&conversation.id).await.unwrap(),
            Some(conversation)
        );
        let jobs = db.jobs().list_by_subject(m.id.as_str()).await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].kind, JobKind::CrmDelivery);
    }
}

#[tokio::test]
async fn duplicates_are_skipped_and_only_new_rows_are_reported() {
    for (test_db, db) in migrated().await {
        let store = db.inbound();
        let mut unit = store.begin().await.unwrap();
        unit.insert_messages(&[message(1, "mid.1", 0)])
            .await
            .unwrap();
        unit.insert_events(&[reaction(1, 0)]).await.unwrap();
        unit.commit().await.unwrap();

        // Meta's retry: the same mid and the same reaction again, next to new ones.
        let mut unit = store.begin().await.unwrap();
        let inserted = unit
            .insert_messages(&[message(2, "mid.1", 0), message(3, "mid.3", 1)])
            .await
            .unwrap();
        assert_eq!(
            inserted,
            vec![MessageId::from_u128(3)],
            "{:?}",
            test_db.backend()
        );
        let inserted = unit
            .insert_events(&[reaction(2, 0), reaction(3, 5)])
            .await
            .unwrap();
        assert_eq!(
            inserted,
            vec![EventId::from_u128(3)],
            "{:?}",
            test_db.backend()
        );
        unit.commit().await.unwrap();
        assert_eq!(count(&db, "messages").await, 2);
        assert_eq!(count(&db, "inbound_events").await, 2);
        assert_eq!(
            db.messages().get(&MessageId::from_u128(2)).await.unwrap(),
            None
        );
    }
}

#[tokio::test]
async fn large_groups_are_split_under_the_parameter_limits() {
    for (test_db, db) in migrated().await {
        let store = db.inbound();
        let messages: Vec<Message> = (0..2_500)
            .map(|n| message(n + 1, &format!("mid.{n}"), 0))
            .collect();
        let mut unit = store.begin().await.unwrap();
        let inserted = unit.insert_messages(&messages).await.unwrap();
        unit.commit().await.unwrap();
        assert_eq!(inserted.len(), 2_500, "{:?}", test_db.backend());
        assert_eq!(count(&db, "messages").await, 2_500);
    }
}

#[tokio::test]
async fn routes_name_configured_accounts_and_whether_they_forward() {
    for (test_db, db) in migrated().await {
        let accounts = db.accounts();
        for (n, instagram_id, crm) in [(1, ACCOUNT, true), (2, "17841400000000002", false)] {
            accounts
                .insert(&Account {
                    id: AccountId::from_u128(n),
                    instagram_account_id: InstagramAccountId::parse("i", instagram_id).unwrap(),
                    username: Username::parse(&format!("shop{n}")).unwrap(),
                    access_token: SealedSecret::new("plain:t".into()),
                    crm_webhook_url: crm
                        .then(|| CrmWebhookUrl::parse("https://crm.example/h").unwrap()),
                    webhook_secret: crm.then(|| SealedSecret::new("plain:s".into())),
                    created_at: at(0),
                    updated_at: at(0),
                })
                .await
                .unwrap();
        }
        let mut unit = db.inbound().begin().await.unwrap();
        let mut routes = unit
            .routes(&[
                account_id(),
                InstagramAccountId::parse("i", "17841400000000002").unwrap(),
                InstagramAccountId::parse("i", "999").unwrap(),
            ])
            .await
            .unwrap();
        // Ended explicitly: MySQL's DROP DATABASE would wait on an open transaction.
        unit.commit().await.unwrap();
        routes.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        assert_eq!(routes.len(), 2, "{:?}", test_db.backend());
        assert_eq!(routes[0].account_id, AccountId::from_u128(1));
        assert!(routes[0].forwards_to_crm);
        assert!(!routes[1].forwards_to_crm);
    }
}

#[tokio::test]
async fn deletions_mark_stored_messages_once() {
    for (test_db, db) in migrated().await {
        let store = db.inbound();
        let mut unit = store.begin().await.unwrap();
        unit.insert_messages(&[message(1, "mid.1", 0)])
            .await
            .unwrap();
        let deletion = |secs| Deletion {
            account: account_id(),
            mid: InstagramMessageId::parse("m", "mid.1").unwrap(),
            at: at(secs),
        };
        unit.mark_deleted(&[deletion(5)]).await.unwrap();
        unit.mark_deleted(&[deletion(9)]).await.unwrap();
        unit.commit().await.unwrap();
        let stored = db
            .messages()
            .get(&MessageId::from_u128(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.deleted_at, Some(at(5)), "{:?}", test_db.backend());
    }
}

#[tokio::test]
async fn conversation_upserts_merge_with_stored_rows() {
    for (test_db, db) in migrated().await {
        let customer = |c: &str| InstagramUserId::parse("c", c).unwrap();
        db.conversations()
            .record(&Conversation::start(
                account_id(),
                customer("1"),
                at(10),
                true,
            ))
            .await
            .unwrap();
        let mut unit = db.inbound().begin().await.unwrap();
        unit.record_conversations(&[
            Conversation::start(account_id(), customer("1"), at(5), false),
            Conversation::start(account_id(), customer("2"), at(7), true),
        ])
        .await
        .unwrap();
        unit.commit().await.unwrap();
        let one = db
            .conversations()
            .get(&ConversationId::for_pair(&account_id(), &customer("1")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (one.started_at, one.last_message_at, one.last_inbound_at),
            (at(5), at(10), Some(at(10))),
            "{:?}",
            test_db.backend()
        );
        assert_eq!(count(&db, "conversations").await, 2);
    }
}
