//! Sending against mocked ports: idempotency keys, interrupted and settled sends.

use insta_router_domain::{Account, InstagramUserId, RawSendRequest, SealedSecret, Username};
use insta_router_ports::{
    MockAccountRepository, MockClock, MockConversationRepository, MockJobQueue, MockMessenger,
    MockOutboundStore,
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
        created_at: now(),
        updated_at: now(),
    }
}

fn service(outbound: MockOutboundStore, messenger: MockMessenger) -> SendService {
    let mut accounts = MockAccountRepository::new();
    accounts.expect_get().returning(|_| Ok(Some(account())));
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
    outbound
        .expect_accept()
        .returning(|_, _| Ok(Accepted::Existing(Box::new(stored(OutboundStatus::Sent)))));
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
    outbound.expect_accept().returning(|_, _| {
        Err(RepoError::Conflict {
            field: "idempotency_key",
        })
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
        .expect_get()
        .returning(|_| Ok(Some(stored(OutboundStatus::Sending))));
    outbound
        .expect_settle()
        .withf(|_, from, s| {
            *from == OutboundStatus::Sending
                && s.status == OutboundStatus::Unknown
                && s.error
                    .as_ref()
                    .is_some_and(|e| e.code == "outcome_unknown")
        })
        .times(1)
        .returning(|_, _, _| Ok(true));
    let mut messenger = MockMessenger::new();
    messenger.expect_send().never();
    let service = service(outbound, messenger);
    let outcome = service.work(&MessageId::from_u128(7)).await.unwrap();
    // Its echo is looked for next.
    assert!(matches!(outcome, Outcome::RetryAt(at, _) if at > now()));
}

#[tokio::test]
async fn a_settled_send_is_left_alone() {
    for status in [OutboundStatus::Sent, OutboundStatus::Failed] {
        let mut outbound = MockOutboundStore::new();
        outbound
            .expect_get()
            .returning(move |_| Ok(Some(stored(status))));
        outbound.expect_start_attempt().never();
        let mut messenger = MockMessenger::new();
        messenger.expect_send().never();
        let service = service(outbound, messenger);
        assert_eq!(
            service.work(&MessageId::from_u128(7)).await.unwrap(),
            Outcome::Done
        );
    }
}
