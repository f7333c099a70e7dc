//! Sending against mocked ports: idempotency keys, interrupted and settled sends, private
//! replies and Meta's rules for them.

use insta_router_domain::{
    Account, InstagramUserId, RawSendRequest, Recipient, SealedSecret, Username,
};
use insta_router_ports::{
    MockAccountRepository, MockClock, MockCommentStore, MockConversationRepository, MockJobQueue,
    MockMessenger, MockOutboundStore, StoredComment,
};

use super::*;
use crate::PlaintextCipher;

fn now() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000)
}

fn request(text: &str, key: &str) -> SendRequest {
    SendRequest::parse(RawSendRequest {
        account_id: "acc_0123456789ab",
        recipient_id: "555",
        text: Some(text),
        idempotency_key: Some(key),
        ..RawSendRequest::default()
    })
    .unwrap()
}

fn stored(status: OutboundStatus) -> OutboundMessage {
    let request = request("Hi", "k");
    OutboundMessage {
        id: MessageId::from_u128(7),
        fingerprint: fingerprint(&request),
        request,
        status,
        instagram_message_id: None,
        error: None,
        attempts: 1,
        created_at: now(),
        sent_at: None,
    }
}

fn account() -> Account {
    Account {
        id: AccountId::parse("a", "acc_0123456789ab").unwrap(),
        instagram_account_id: InstagramAccountId::parse("i", "1784").unwrap(),
        username: Username::parse("shop").unwrap(),
        crm_webhook_url: None,
        access_token: SealedSecret::new("plain:token".into()),
        webhook_secret: None,
        delivery: Default::default(),
        token_failure: None,
        token_life: Default::default(),
        created_at: now(),
        updated_at: now(),
    }
}

fn service(outbound: MockOutboundStore, messenger: MockMessenger) -> SendService {
    service_with(outbound, messenger, MockCommentStore::new())
}

fn service_with(
    outbound: MockOutboundStore,
    messenger: MockMessenger,
    comments: MockCommentStore,
) -> SendService {
    let mut accounts = MockAccountRepository::new();
    accounts.expect_get().returning(|_| Ok(Some(account())));
    accounts.expect_existing().returning(|ids| Ok(ids.to_vec()));
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    SendService::new(
        SendPorts {
            outbound: Arc::new(outbound),
            accounts: Arc::new(accounts),
            conversations: Arc::new(MockConversationRepository::new()),
            jobs: Arc::new(MockJobQueue::new()),
            messenger: Arc::new(messenger),
            cipher: Arc::new(PlaintextCipher),
            clock: Arc::new(clock),
            comments: Arc::new(comments),
        },
        SendSettings::default(),
        Arc::new(|| {}),
    )
}

#[test]
fn the_fingerprint_covers_the_request_but_not_its_key() {
    assert_eq!(
        fingerprint(&request("Hi", "a")),
        fingerprint(&request("Hi", "b"))
    );
    assert_ne!(
        fingerprint(&request("Hi", "a")),
        fingerprint(&request("Ho", "a"))
    );
    let mut human = request("Hi", "a");
    human.human_agent = true;
    assert_ne!(fingerprint(&human), fingerprint(&request("Hi", "a")));
    let mut other = request("Hi", "a");
    other.recipient_id = InstagramUserId::parse("r", "556").unwrap();
    assert_ne!(fingerprint(&other), fingerprint(&request("Hi", "a")));
}

#[tokio::test]
async fn a_taken_key_replays_the_same_request_and_refuses_another() {
    let mut outbound = MockOutboundStore::new();
    outbound.expect_accept_many().returning(|sends| {
        Ok(sends
            .iter()
            .map(|_| Ok(Accepted::Existing(Box::new(stored(OutboundStatus::Sent)))))
            .collect())
    });
    let service = service(outbound, MockMessenger::new());
    let replay = service.send(request("Hi", "k")).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.message.id, MessageId::from_u128(7));
    assert!(matches!(
        service.send(request("Something else", "k")).await,
        Err(SendFailure::KeyReused(key)) if key == "k"
    ));
}

#[tokio::test]
async fn a_key_being_stored_by_another_request_is_in_flight() {
    let mut outbound = MockOutboundStore::new();
    outbound.expect_accept_many().returning(|sends| {
        Ok(sends
            .iter()
            .map(|_| {
                Err(RepoError::Conflict {
                    field: "idempotency_key",
                })
            })
            .collect())
    });
    let service = service(outbound, MockMessenger::new());
    assert!(matches!(
        service.send(request("Hi", "k")).await,
        Err(SendFailure::KeyInFlight(_))
    ));
}

#[tokio::test]
async fn a_send_found_mid_call_becomes_unknown_and_is_never_sent_again() {
    let mut outbound = MockOutboundStore::new();
    outbound
        .expect_get_many()
        .times(1)
        .returning(|_| Ok(vec![stored(OutboundStatus::Sending)]));
    outbound
        .expect_settle_many()
        .withf(|settlements| {
            let (_, from, s) = &settlements[0];
            settlements.len() == 1
                && *from == OutboundStatus::Sending
                && s.status == OutboundStatus::Unknown
                && s.error
                    .as_ref()
                    .is_some_and(|e| e.code == "outcome_unknown")
        })
        .times(1)
        .returning(|_| Ok(vec![true]));
    let mut messenger = MockMessenger::new();
    messenger.expect_send().never();
    let service = service(outbound, messenger);
    let id = MessageId::from_u128(7);
    let round = service.prepare(std::slice::from_ref(&id)).await;
    let outcome = service.work(&id, &round).await.unwrap();
    // Its echo is looked for next.
    assert!(matches!(outcome, Outcome::RetryAt(at, _) if at > now()));
}

#[tokio::test]
async fn a_settled_send_is_left_alone() {
    for status in [OutboundStatus::Sent, OutboundStatus::Failed] {
        let mut outbound = MockOutboundStore::new();
        outbound
            .expect_get_many()
            .times(1)
            .returning(move |_| Ok(vec![stored(status)]));
        outbound.expect_start_attempts().never();
        let mut messenger = MockMessenger::new();
        messenger.expect_send().never();
        let service = service(outbound, messenger);
        let id = MessageId::from_u128(7);
        let round = service.prepare(std::slice::from_ref(&id)).await;
        assert_eq!(service.work(&id, &round).await.unwrap(), Outcome::Done);
    }
}

#[tokio::test]
async fn a_round_reads_its_sends_their_account_and_their_conversations_once() {
    // Three pending sends, two recipients, one account: one read of each kind for all.
    let sends: Vec<OutboundMessage> = [(1, "555"), (2, "556"), (3, "555")]
        .into_iter()
        .map(|(n, recipient)| {
            let mut send = stored(OutboundStatus::Pending);
            send.id = MessageId::from_u128(n);
            send.request.recipient_id = InstagramUserId::parse("r", recipient).unwrap();
            send
        })
        .collect();
    let mut outbound = MockOutboundStore::new();
    let batch = sends.clone();
    outbound
        .expect_get_many()
        .times(1)
        .returning(move |_| Ok(batch.clone()));
    outbound.expect_get().never();
    outbound
        .expect_start_attempts()
        .returning(|ids| Ok(vec![true; ids.len()]));
    outbound
        .expect_settle_many()
        .returning(|settlements| Ok(vec![true; settlements.len()]));
    let mut accounts = MockAccountRepository::new();
    accounts
        .expect_get()
        .times(1)
        .returning(|_| Ok(Some(account())));
    let mut conversations = MockConversationRepository::new();
    conversations
        .expect_get_many()
        .times(1)
        .withf(|ids| ids.len() == 2)
        .returning(|_| {
            // 555 wrote an hour ago; 556 two days ago, outside the messaging window.
            Ok([("555", 1), ("556", 48)]
                .into_iter()
                .map(|(customer, hours)| {
                    Conversation::start(
                        account().instagram_account_id,
                        InstagramUserId::parse("c", customer).unwrap(),
                        now() - TimeDelta::hours(hours),
                        true,
                    )
                })
                .collect())
        });
    conversations.expect_get().never();
    let mut messenger = MockMessenger::new();
    messenger
        .expect_send()
        .times(2)
        .withf(|_, recipient, _, _| {
            *recipient == Recipient::User(InstagramUserId::parse("r", "555").unwrap())
        })
        .returning(|_, _, _, _| {
            Ok(insta_router_domain::InstagramMessageId::parse("m", "mid.1").unwrap())
        });
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    let service = SendService::new(
        SendPorts {
            outbound: Arc::new(outbound),
            accounts: Arc::new(accounts),
            conversations: Arc::new(conversations),
            jobs: Arc::new(MockJobQueue::new()),
            messenger: Arc::new(messenger),
            cipher: Arc::new(PlaintextCipher),
            clock: Arc::new(clock),
            comments: Arc::new(MockCommentStore::new()),
        },
        SendSettings::default(),
        Arc::new(|| {}),
    );
    let ids: Vec<MessageId> = sends.iter().map(|s| s.id.clone()).collect();
    let round = service.prepare(&ids).await;
    for id in &ids {
        assert_eq!(service.work(id, &round).await.unwrap(), Outcome::Done);
    }
}

/// The account's comment `id`, by `author`, made `age` before now (`live`: on a broadcast).
fn comments(
    id: &'static str,
    author: &'static str,
    age: TimeDelta,
    live: bool,
) -> MockCommentStore {
    let mut comments = MockCommentStore::new();
    comments.expect_comment().returning(move |account, asked| {
        assert_eq!(account.as_str(), "1784");
        Ok((asked.as_str() == id).then(|| StoredComment {
            author: InstagramUserId::parse("a", author).unwrap(),
            at: now() - age,
            live,
        }))
    });
    comments
}

async fn reply(service: &SendService, comment: &str) -> Result<SendReceipt, SendFailure> {
    service
        .private_reply(
            &account().id,
            &InstagramCommentId::parse("c", comment).unwrap(),
            |author| {
                let mut request = request("Here is the link", "k-1");
                request.recipient_id = author.clone();
                Ok::<_, SendFailure>(request)
            },
        )
        .await
}

#[tokio::test]
async fn a_private_reply_goes_to_the_comments_author_addressed_to_the_comment() {
    let mut outbound = MockOutboundStore::new();
    outbound
        .expect_accept_many()
        .times(1)
        .withf(|sends| {
            let message = &sends[0].0;
            sends.len() == 1
                && message.request.recipient_id.as_str() == "777"
                && message.request.recipient()
                    == Recipient::Comment(InstagramCommentId::parse("c", "179").unwrap())
        })
        .returning(|_| Ok(vec![Ok(Accepted::Created)]));
    let service = service_with(
        outbound,
        MockMessenger::new(),
        comments("179", "777", TimeDelta::days(6), false),
    );
    let receipt = reply(&service, "179").await.unwrap();
    assert!(!receipt.replayed);
}

#[tokio::test]
async fn meta_rules_refuse_a_private_reply_before_anything_is_stored() {
    let refused = |comments: MockCommentStore| {
        let mut outbound = MockOutboundStore::new();
        outbound.expect_accept_many().never();
        service_with(outbound, MockMessenger::new(), comments)
    };
    let unknown = refused(comments("179", "777", TimeDelta::zero(), false));
    assert!(matches!(
        reply(&unknown, "180").await,
        Err(SendFailure::CommentNotFound(_))
    ));
    let old = refused(comments(
        "179",
        "777",
        TimeDelta::days(7) + TimeDelta::seconds(1),
        false,
    ));
    let Err(SendFailure::PrivateReplyClosed(why)) = reply(&old, "179").await else {
        panic!("a comment over 7 days old")
    };
    assert!(why.contains("7 days"), "{why}");
    let ended = refused(comments("179", "777", TimeDelta::hours(5), true));
    let Err(SendFailure::PrivateReplyClosed(why)) = reply(&ended, "179").await else {
        panic!("a live comment of an ended broadcast")
    };
    assert!(why.contains("live"), "{why}");
    let own = refused(comments("179", "1784", TimeDelta::zero(), false));
    assert!(matches!(
        reply(&own, "179").await,
        Err(SendFailure::PrivateReplyClosed(_))
    ));
}

#[tokio::test]
async fn a_second_private_reply_to_a_comment_is_a_conflict_naming_it() {
    let mut outbound = MockOutboundStore::new();
    outbound.expect_accept_many().returning(|sends| {
        Ok(sends
            .iter()
            .map(|_| {
                Err(RepoError::Conflict {
                    field: "comment_id",
                })
            })
            .collect())
    });
    let service = service_with(
        outbound,
        MockMessenger::new(),
        comments("179", "777", TimeDelta::hours(1), true),
    );
    let Err(SendFailure::CommentAnswered(comment)) = reply(&service, "179").await else {
        panic!("the comment has a reply")
    };
    assert_eq!(comment.as_str(), "179");
}
