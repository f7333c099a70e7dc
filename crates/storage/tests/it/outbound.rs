//! Sends: one per key and account, attempts fenced on the status, settled in one
//! transaction with the sent copy and the CRM event, echoes found for unknown outcomes; and
//! the inbox view of conversations.

use insta_router_domain::rules::QuickReply;
use insta_router_domain::{
    AccountId, Conversation, ConversationId, Direction, InstagramAccountId, InstagramMessageId,
    InstagramUserId, JobId, JobWork, MessageId, NewJob, OutboundContent, OutboundMessage,
    OutboundStatus, RawSendRequest, SendError, SendRequest,
};
use insta_router_ports::{
    Accepted, ConversationRepository, Inbox, JobQueue, MessageRepository, OutboundStore,
    PageRequest, RepoError, Settlement,
};

use crate::inbound::message;
use crate::{at, migrated};

const ACCOUNT: &str = "17841400000000001";
const CUSTOMER: &str = "1234567890123456";

/// One send through the group commit, alone.
async fn accept(
    store: &impl OutboundStore,
    message: &OutboundMessage,
    job: &NewJob,
) -> Result<Accepted, RepoError> {
    store
        .accept_many(&[(message.clone(), job.clone())])
        .await?
        .remove(0)
}

/// One send marked `sending` through the group commit, alone.
async fn start_attempt(store: &impl OutboundStore, id: &MessageId) -> Result<bool, RepoError> {
    Ok(store.start_attempts(std::slice::from_ref(id)).await?[0])
}

/// One settlement through the group commit, alone.
async fn settle(
    store: &impl OutboundStore,
    id: &MessageId,
    from: OutboundStatus,
    settlement: &Settlement,
) -> Result<bool, RepoError> {
    Ok(store
        .settle_many(&[(id.clone(), from, settlement.clone())])
        .await?[0])
}

fn send(n: u128, account: &str, key: &str, text: &str) -> OutboundMessage {
    let quick = vec![QuickReply {
        title: "Yes".into(),
        payload: "YES".into(),
    }];
    let request = SendRequest::parse(RawSendRequest {
        account_id: account,
        recipient_id: CUSTOMER,
        text: Some(text),
        quick_replies: quick,
        human_agent: true,
        idempotency_key: Some(key),
        metadata: Some(r#"{"ticket":42}"#.into()),
        ..RawSendRequest::default()
    })
    .unwrap();
    OutboundMessage {
        id: MessageId::from_u128(n),
        request,
        fingerprint: format!("fp-{text}"),
        status: OutboundStatus::Pending,
        instagram_message_id: None,
        error: None,
        attempts: 0,
        created_at: at(0),
        sent_at: None,
    }
}

fn job(n: u128, subject: &MessageId) -> NewJob {
    NewJob {
        id: JobId::from_u128(n),
        work: JobWork::Send {
            recipient: InstagramUserId::parse("r", "42").unwrap(),
        },
        account_id: None,
        subject: subject.to_string(),
        run_at: at(0),
    }
}

/// A claimed batch of sends is read with one query: the ones that exist, whole, and none
/// for an unknown id.
#[tokio::test]
async fn a_batch_of_sends_is_read_whole_and_unknown_ids_are_left_out() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let store = db.outbound();
        let a = AccountId::from_u128(1).to_string();
        let stored: Vec<OutboundMessage> = (1..=3)
            .map(|n| send(n, &a, &format!("key-{n}"), &format!("Text {n}")))
            .collect();
        for (i, message) in stored.iter().enumerate() {
            accept(&store, message, &job(100 + i as u128, &message.id))
                .await
                .unwrap();
        }
        let ids = [
            stored[2].id.clone(),
            MessageId::from_u128(99),
            stored[0].id.clone(),
        ];
        let mut found = store.get_many(&ids).await.unwrap();
        found.sort_by(|x, y| x.id.cmp(&y.id));
        assert_eq!(
            found,
            vec![stored[0].clone(), stored[2].clone()],
            "{backend:?}"
        );
        assert!(store.get_many(&[]).await.unwrap().is_empty(), "{backend:?}");
    }
}

/// A group of sends is one transaction: each new key is stored with its job, and a key that
/// an earlier send of the same group (or an earlier group) took is answered with that send.
#[tokio::test]
async fn a_group_stores_each_new_key_once_and_answers_repeats_with_the_first() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let store = db.outbound();
        let a = AccountId::from_u128(1).to_string();
        let b = AccountId::from_u128(2).to_string();
        let earlier = send(1, &a, "key-0", "Earlier");
        accept(&store, &earlier, &job(100, &earlier.id))
            .await
            .unwrap();
        let group = [
            send(2, &a, "key-2", "Two"),
            send(3, &a, "key-1", "One"),
            // The same key as the send before it, in the same group.
            send(4, &a, "key-1", "One again"),
            // Another account may use it.
            send(5, &b, "key-1", "B's"),
            // Taken by the earlier group.
            send(6, &a, "key-0", "Earlier again"),
        ];
        let sends: Vec<(OutboundMessage, NewJob)> = group
            .iter()
            .enumerate()
            .map(|(i, m)| (m.clone(), job(200 + i as u128, &m.id)))
            .collect();
        let answers: Vec<Accepted> = store
            .accept_many(&sends)
            .await
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            answers,
            vec![
                Accepted::Created,
                Accepted::Created,
                Accepted::Existing(Box::new(group[1].clone())),
                Accepted::Created,
                Accepted::Existing(Box::new(earlier.clone())),
            ],
            "{backend:?}"
        );
        for (n, queued) in [
            (200, true),
            (201, true),
            (202, false),
            (203, true),
            (204, false),
        ] {
            assert_eq!(
                db.jobs().get(&JobId::from_u128(n)).await.unwrap().is_some(),
                queued,
                "{backend:?} job {n}"
            );
        }
        assert_eq!(db.row_count("outbound_messages").await.unwrap(), 4);
    }
}

#[tokio::test]
async fn one_send_per_key_and_account_with_its_job() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let store = db.outbound();
        let a = AccountId::from_u128(1).to_string();
        let b = AccountId::from_u128(2).to_string();
        let first = send(10, &a, "key-1", "Hello");
        assert_eq!(
            accept(&store, &first, &job(100, &first.id)).await.unwrap(),
            Accepted::Created,
            "{backend:?}"
        );
        // Read back whole.
        assert_eq!(store.get(&first.id).await.unwrap(), Some(first.clone()));
        // The same key again: the stored send, and no second job.
        let again = send(11, &a, "key-1", "Other text");
        match accept(&store, &again, &job(101, &again.id)).await.unwrap() {
            Accepted::Existing(existing) => assert_eq!(*existing, first, "{backend:?}"),
            Accepted::Created => panic!("{backend:?}: a key was used twice"),
        }
        assert!(
            db.jobs()
                .get(&JobId::from_u128(101))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            db.jobs()
                .get(&JobId::from_u128(100))
                .await
                .unwrap()
                .is_some()
        );
        // Keys are per account.
        let other = send(12, &b, "key-1", "Hello");
        assert_eq!(
            accept(&store, &other, &job(102, &other.id)).await.unwrap(),
            Accepted::Created
        );
        let media = OutboundMessage {
            request: SendRequest {
                content: OutboundContent::Media(insta_router_domain::Media {
                    kind: insta_router_domain::MediaKind::Video,
                    url: "https://shop.example/v.mp4".into(),
                }),
                metadata: None,
                human_agent: false,
                ..send(13, &a, "key-2", "x").request
            },
            ..send(13, &a, "key-2", "x")
        };
        accept(&store, &media, &job(103, &media.id)).await.unwrap();
        assert_eq!(
            store.get(&media.id).await.unwrap(),
            Some(media),
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn attempts_are_fenced_on_the_status_and_settle_with_their_copy_and_event() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let store = db.outbound();
        let a = AccountId::from_u128(1).to_string();
        let s = send(10, &a, "key", "Hello ❤️");
        accept(&store, &s, &job(100, &s.id)).await.unwrap();
        assert!(start_attempt(&store, &s.id).await.unwrap());
        // A second worker cannot start it too.
        assert!(!start_attempt(&store, &s.id).await.unwrap(), "{backend:?}");
        let account = InstagramAccountId::parse("a", ACCOUNT).unwrap();
        let customer = InstagramUserId::parse("c", CUSTOMER).unwrap();
        let mid = InstagramMessageId::parse("m", "mid.sent").unwrap();
        let mut copy = message(10, "mid.sent", 5);
        copy.direction = Direction::Outbound;
        let settlement = Settlement {
            status: OutboundStatus::Sent,
            instagram_message_id: Some(mid.clone()),
            sent_at: Some(at(5)),
            error: None,
            copy: Some((
                copy.clone(),
                Conversation::start(account.clone(), customer.clone(), at(5), false),
            )),
            crm_event: Some(NewJob {
                work: JobWork::CrmDelivery { body: "{}".into() },
                ..job(200, &s.id)
            }),
        };
        // Settling from the wrong status writes nothing.
        assert!(
            !settle(&store, &s.id, OutboundStatus::Pending, &settlement)
                .await
                .unwrap()
        );
        assert!(
            db.jobs()
                .get(&JobId::from_u128(200))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            settle(&store, &s.id, OutboundStatus::Sending, &settlement)
                .await
                .unwrap()
        );
        let sent = store.get(&s.id).await.unwrap().unwrap();
        assert_eq!(sent.status, OutboundStatus::Sent);
        assert_eq!(sent.attempts, 1);
        assert_eq!(sent.instagram_message_id, Some(mid));
        assert_eq!(sent.sent_at, Some(at(5)));
        assert!(db.messages().get(&copy.id).await.unwrap().is_some());
        assert!(
            db.jobs()
                .get(&JobId::from_u128(200))
                .await
                .unwrap()
                .is_some()
        );
        let conversation = db
            .conversations()
            .get(&ConversationId::for_pair(&account, &customer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(conversation.last_message_at, at(5), "{backend:?}");

        // A failure keeps Meta's code, subcode and whether to retry.
        let f = send(11, &a, "key-f", "Nope");
        accept(&store, &f, &job(101, &f.id)).await.unwrap();
        let error = SendError {
            code: "10".into(),
            subcode: Some(2_534_022),
            message: "outside of allowed window".into(),
            retryable: false,
        };
        let failed = Settlement {
            status: OutboundStatus::Failed,
            instagram_message_id: None,
            sent_at: None,
            error: Some(error.clone()),
            copy: None,
            crm_event: None,
        };
        assert!(
            settle(&store, &f.id, OutboundStatus::Pending, &failed)
                .await
                .unwrap()
        );
        assert_eq!(store.get(&f.id).await.unwrap().unwrap().error, Some(error));

        // Settled together, in one transaction: each fenced on its own status.
        let g = send(12, &a, "key-g", "G");
        let h = send(13, &a, "key-h", "H");
        for (m, n) in [(&g, 102), (&h, 103)] {
            accept(&store, m, &job(n, &m.id)).await.unwrap();
        }
        // Started together: a send already started (h, twice in the group) only once.
        assert_eq!(
            store
                .start_attempts(&[h.id.clone(), h.id.clone()])
                .await
                .unwrap(),
            [true, false],
            "{backend:?}"
        );
        let applied = store
            .settle_many(&[
                // h is `sending` now: a settlement from `pending` is stale.
                (h.id.clone(), OutboundStatus::Pending, failed.clone()),
                (g.id.clone(), OutboundStatus::Pending, failed.clone()),
            ])
            .await
            .unwrap();
        assert_eq!(applied, [false, true], "{backend:?}");
        assert_eq!(
            store.get(&g.id).await.unwrap().unwrap().status,
            OutboundStatus::Failed
        );
        assert_eq!(
            store.get(&h.id).await.unwrap().unwrap().status,
            OutboundStatus::Sending
        );
    }
}

#[tokio::test]
async fn a_settlement_group_writes_its_sends_copies_conversations_and_events_together() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let store = db.outbound();
        let a = AccountId::from_u128(1).to_string();
        let account = InstagramAccountId::parse("a", ACCOUNT).unwrap();
        let customer = InstagramUserId::parse("c", CUSTOMER).unwrap();
        let sends: Vec<OutboundMessage> = (0..4u128)
            .map(|n| send(30 + n, &a, &format!("key-{n}"), &format!("text {n}")))
            .collect();
        for (n, s) in (0u128..).zip(&sends) {
            accept(&store, s, &job(300 + n, &s.id)).await.unwrap();
        }
        let ids: Vec<MessageId> = sends.iter().map(|s| s.id.clone()).collect();
        assert_eq!(store.start_attempts(&ids).await.unwrap(), [true; 4]);
        // The echo of the third is stored already, under its mid.
        let mut echo = message(99, "mid.2", 2);
        echo.direction = Direction::Outbound;
        db.messages().insert_if_absent(&echo).await.unwrap();
        let sent = |n: u128, secs: i64| {
            let mid = format!("mid.{n}");
            let mut copy = message(30 + n, &mid, secs);
            copy.direction = Direction::Outbound;
            Settlement {
                status: OutboundStatus::Sent,
                instagram_message_id: Some(InstagramMessageId::parse("m", &mid).unwrap()),
                sent_at: Some(at(secs)),
                error: None,
                // All in one conversation: its upsert merges them.
                copy: Some((
                    copy,
                    Conversation::start(account.clone(), customer.clone(), at(secs), false),
                )),
                crm_event: Some(NewJob {
                    work: JobWork::CrmDelivery { body: "{}".into() },
                    ..job(400 + n, &MessageId::from_u128(30 + n))
                }),
            }
        };
        let applied = store
            .settle_many(&[
                (ids[0].clone(), OutboundStatus::Sending, sent(0, 7)),
                // Stale: it is `sending`, not `pending`; none of its parts is written.
                (ids[1].clone(), OutboundStatus::Pending, sent(1, 9)),
                (ids[2].clone(), OutboundStatus::Sending, sent(2, 8)),
                (ids[3].clone(), OutboundStatus::Sending, sent(3, 6)),
            ])
            .await
            .unwrap();
        assert_eq!(applied, [true, false, true, true], "{backend:?}");
        for (n, status) in [
            (0, OutboundStatus::Sent),
            (1, OutboundStatus::Sending),
            (2, OutboundStatus::Sent),
            (3, OutboundStatus::Sent),
        ] {
            let stored = store.get(&ids[n]).await.unwrap().unwrap();
            assert_eq!(stored.status, status, "send {n} on {backend:?}");
            let copy = db.messages().get(&ids[n]).await.unwrap();
            // The third's echo stands in for its copy.
            assert_eq!(copy.is_some(), n == 0 || n == 3, "copy {n} on {backend:?}");
            let event = db.jobs().get(&JobId::from_u128(400 + n as u128)).await;
            assert_eq!(event.unwrap().is_some(), n != 1, "event {n} on {backend:?}");
        }
        assert_eq!(
            store
                .get(&ids[0])
                .await
                .unwrap()
                .unwrap()
                .instagram_message_id,
            Some(InstagramMessageId::parse("m", "mid.0").unwrap())
        );
        assert!(db.messages().get(&echo.id).await.unwrap().is_some());
        let conversation = db
            .conversations()
            .get(&ConversationId::for_pair(&account, &customer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(conversation.started_at, at(6), "{backend:?}");
        assert_eq!(conversation.last_message_at, at(8), "{backend:?}");

        // A send twice in one group is settled by its first place only.
        let failed = |code: &str| Settlement {
            status: OutboundStatus::Failed,
            instagram_message_id: None,
            sent_at: None,
            error: Some(SendError {
                code: code.into(),
                subcode: None,
                message: "no".into(),
                retryable: false,
            }),
            copy: None,
            crm_event: None,
        };
        let applied = store
            .settle_many(&[
                (ids[1].clone(), OutboundStatus::Sending, failed("first")),
                (ids[1].clone(), OutboundStatus::Sending, failed("second")),
            ])
            .await
            .unwrap();
        assert_eq!(applied, [true, false], "{backend:?}");
        let stored = store.get(&ids[1]).await.unwrap().unwrap();
        assert_eq!(stored.error.unwrap().code, "first", "{backend:?}");
    }
}

#[tokio::test]
async fn the_echo_of_an_unknown_send_is_found_once() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let store = db.outbound();
        let account = InstagramAccountId::parse("a", ACCOUNT).unwrap();
        let customer = InstagramUserId::parse("c", CUSTOMER).unwrap();
        let conversation = ConversationId::for_pair(&account, &customer);
        let mut echo = message(20, "mid.echo", 3);
        echo.direction = Direction::Outbound;
        echo.text = Some("Hello".into());
        db.messages().insert_if_absent(&echo).await.unwrap();
        let found = store
            .find_echo(&account, &conversation, "Hello", at(0))
            .await
            .unwrap();
        assert_eq!(
            found,
            Some((InstagramMessageId::parse("m", "mid.echo").unwrap(), at(3))),
            "{backend:?}"
        );
        assert_eq!(
            store
                .find_echo(&account, &conversation, "Other", at(0))
                .await
                .unwrap(),
            None
        );
        // Echoes long before the send are not it.
        assert_eq!(
            store
                .find_echo(&account, &conversation, "Hello", at(600))
                .await
                .unwrap(),
            None
        );
        // Once a send holds that mid, it is not found for another.
        let a = AccountId::from_u128(1).to_string();
        let s = send(10, &a, "key", "Hello");
        accept(&store, &s, &job(100, &s.id)).await.unwrap();
        settle(
            &store,
            &s.id,
            OutboundStatus::Pending,
            &Settlement {
                status: OutboundStatus::Sent,
                instagram_message_id: Some(InstagramMessageId::parse("m", "mid.echo").unwrap()),
                sent_at: Some(at(3)),
                error: None,
                copy: None,
                crm_event: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(
            store
                .find_echo(&account, &conversation, "Hello", at(0))
                .await
                .unwrap(),
            None,
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn the_inbox_counts_unread_messages_until_answered_or_seen() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let account = InstagramAccountId::parse("a", ACCOUNT).unwrap();
        let customer = InstagramUserId::parse("c", CUSTOMER).unwrap();
        let id = ConversationId::for_pair(&account, &customer);
        let conversations = db.conversations();
        for (n, mid, secs) in [(1, "mid.1", 10), (2, "mid.2", 20)] {
            db.messages()
                .insert_if_absent(&message(n, mid, secs))
                .await
                .unwrap();
            conversations
                .record(&Conversation::start(
                    account.clone(),
                    customer.clone(),
                    at(secs),
                    true,
                ))
                .await
                .unwrap();
        }
        let page = Inbox::conversations(
            &conversations,
            &account,
            PageRequest {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
        assert_eq!(page.items.len(), 1);
        let summary = &page.items[0];
        assert_eq!(summary.unread, 2, "{backend:?}");
        assert_eq!(
            summary.last_message.as_ref().unwrap().id,
            MessageId::from_u128(2)
        );
        assert_eq!(summary.seen_at, None);

        // The business answers: nothing before it is unread.
        let mut reply = message(3, "mid.3", 30);
        reply.direction = Direction::Outbound;
        db.messages().insert_if_absent(&reply).await.unwrap();
        assert_eq!(
            conversations
                .conversation(&id)
                .await
                .unwrap()
                .unwrap()
                .unread,
            0
        );
        // The customer writes again, then the business marks it seen.
        db.messages()
            .insert_if_absent(&message(4, "mid.4", 40))
            .await
            .unwrap();
        assert_eq!(
            conversations
                .conversation(&id)
                .await
                .unwrap()
                .unwrap()
                .unread,
            1
        );
        assert!(conversations.mark_seen(&id, at(45)).await.unwrap());
        let seen = conversations.conversation(&id).await.unwrap().unwrap();
        assert_eq!(seen.unread, 0, "{backend:?}");
        assert_eq!(seen.seen_at, Some(at(45)));
        let missing = ConversationId::parse("c", "conv_1_2").unwrap();
        assert!(!conversations.mark_seen(&missing, at(45)).await.unwrap());
        assert!(
            conversations
                .conversation(&missing)
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn a_comment_is_found_by_its_id_and_gets_one_private_reply() {
    use insta_router_domain::{
        EventId, InboundEvent, InboundEventKind, InstagramCommentId, Parties, ReceivedComment,
        WebhookId,
    };
    use insta_router_ports::{CommentStore, EventRecord, InboundBatch, InboundStore, RepoError};

    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let comment_id = InstagramCommentId::parse("id", "17900000000000099").unwrap();
        let account = InstagramAccountId::parse("a", ACCOUNT).unwrap();
        let event = InboundEvent {
            occurred_at: at(30),
            standby: false,
            kind: InboundEventKind::Comment(ReceivedComment {
                parties: Parties {
                    account: account.clone(),
                    customer: InstagramUserId::parse("c", CUSTOMER).unwrap(),
                },
                comment_id: comment_id.clone(),
                username: Some("jane".into()),
                text: Some("price?".into()),
                media_id: Some("178".into()),
                media_product_type: Some("LIVE".into()),
                parent_id: None,
                live: true,
                ad_id: None,
                ad_title: None,
            }),
        };
        db.inbound()
            .store(InboundBatch {
                events: vec![EventRecord {
                    id: EventId::from_u128(1),
                    webhook_id: WebhookId::from_u128(1),
                    received_at: at(31),
                    event,
                }],
                ..InboundBatch::default()
            })
            .await
            .unwrap();
        let comments = db.comments();
        let found = comments
            .comment(&account, &comment_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.author.as_str(), CUSTOMER, "{backend:?}");
        assert_eq!(found.at, at(30), "{backend:?}");
        assert!(found.live, "{backend:?}");
        let other_account = InstagramAccountId::parse("a", "17841400000000002").unwrap();
        assert!(
            comments
                .comment(&other_account, &comment_id)
                .await
                .unwrap()
                .is_none()
        );
        let unknown = InstagramCommentId::parse("id", "17900000000000100").unwrap();
        assert!(
            comments
                .comment(&account, &unknown)
                .await
                .unwrap()
                .is_none()
        );

        // One private reply per comment and account: another key is a conflict on the
        // comment, the same key the first reply again; plain sends are not affected.
        let store = db.outbound();
        let owner = AccountId::from_u128(1).to_string();
        let reply = |n: u128, key: &str| {
            let mut message = send(n, &owner, key, "Here is the link");
            message.request.reply_to_comment = Some(comment_id.clone());
            message
        };
        let first = reply(20, "reply-1");
        assert_eq!(
            accept(&store, &first, &job(20, &first.id)).await.unwrap(),
            Accepted::Created,
            "{backend:?}"
        );
        let again = reply(21, "reply-2");
        assert!(
            matches!(
                accept(&store, &again, &job(21, &again.id)).await,
                Err(RepoError::Conflict {
                    field: "comment_id"
                })
            ),
            "{backend:?}"
        );
        let Accepted::Existing(existing) =
            accept(&store, &reply(22, "reply-1"), &job(22, &first.id))
                .await
                .unwrap()
        else {
            panic!("{backend:?}: the same key replays")
        };
        assert_eq!(existing.request.reply_to_comment, Some(comment_id.clone()));
        let stored = store.get(&first.id).await.unwrap().unwrap();
        assert_eq!(stored.request.reply_to_comment, Some(comment_id.clone()));
        for (n, key) in [(30, "plain-1"), (31, "plain-2")] {
            let plain = send(n, &owner, key, "Hello");
            assert_eq!(
                accept(&store, &plain, &job(n, &plain.id)).await.unwrap(),
                Accepted::Created,
                "{backend:?}"
            );
        }
    }
}
