//! The auto-reply worker against mocked ports: one reply per message, Graph failures.

use insta_router_domain::rules::ConversationFacts;
use insta_router_domain::{
    AccountId, ConversationId, InstagramMessageId, RuleId, SealedSecret, Username,
};
use insta_router_ports::{
    MockAccountRepository, MockAutoReplyStore, MockClock, MockJobQueue, MockMessageRepository,
    MockMessenger, MockRuleRepository, StoredRule,
};
use mockall::predicate::eq;

use super::*;
use crate::PlaintextCipher;

fn now() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000)
}

fn account() -> Account {
    Account {
        id: AccountId::from_u128(1),
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

fn inbound(text: &str) -> Message {
    let account = InstagramAccountId::parse("i", "1784").unwrap();
    let customer = InstagramUserId::parse("c", "555").unwrap();
    Message {
        id: MessageId::from_u128(9),
        conversation_id: ConversationId::for_pair(&account, &customer),
        instagram_account_id: account.clone(),
        mid: Some(InstagramMessageId::parse("m", "mid.9").unwrap()),
        direction: Direction::Inbound,
        sender_id: customer,
        recipient_id: account.to_user_id(),
        kind: MessageKind::Text,
        text: Some(text.to_owned()),
        attachments: Vec::new(),
        reply_to: None,
        context: MessageContext::default(),
        sent_at: now(),
        created_at: now(),
        deleted_at: None,
    }
}

struct Mocks {
    replies: MockAutoReplyStore,
    messenger: MockMessenger,
}

fn build(mocks: Mocks, text: &str) -> AutoReplyService {
    let message = inbound(text);
    let mut messages = MockMessageRepository::new();
    messages
        .expect_get()
        .returning(move |_| Ok(Some(message.clone())));
    let mut accounts = MockAccountRepository::new();
    accounts
        .expect_find_by_instagram_id()
        .returning(|_| Ok(Some(account())));
    accounts.expect_get().returning(|_| Ok(Some(account())));
    let mut rules = MockRuleRepository::new();
    rules.expect_list_by_account().returning(|_| {
        Ok(vec![StoredRule {
            id: RuleId::from_u128(5),
            account_id: AccountId::from_u128(1),
            priority: 0,
            enabled: true,
            definition: r#"{"name":"order66","conditions":[{"type":"keywords","any_of":["order66"]}],"reply":{"text":"Order 66 confirmed, {username}!"}}"#.to_owned(),
            created_at: now(),
            updated_at: now(),
        }])
    });
    let clock = || {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        Arc::new(clock)
    };
    let rules = Arc::new(RuleService::new(
        Arc::new(rules),
        Arc::new(MockAccountRepository::new()),
        clock(),
        "there".to_owned(),
    ));
    AutoReplyService::new(
        AutoReplyPorts {
            jobs: Arc::new(MockJobQueue::new()),
            messages: Arc::new(messages),
            accounts: Arc::new(accounts),
            replies: Arc::new(mocks.replies),
            messenger: Arc::new(mocks.messenger),
            cipher: Arc::new(PlaintextCipher),
            clock: clock(),
            comments: Arc::new(insta_router_ports::MockCommentStore::new()),
        },
        rules,
        AutoReplySettings::default(),
    )
}

fn replies(begins: bool) -> MockAutoReplyStore {
    let mut replies = MockAutoReplyStore::new();
    replies
        .expect_facts()
        .returning(|_, _| Ok(ConversationFacts::default()));
    replies
        .expect_begin()
        .times(1)
        .returning(move |_| Ok(begins));
    // Each evaluation is counted once, as fired.
    replies
        .expect_count_evaluation()
        .times(1)
        .withf(|_, _, outcome| outcome == "fired")
        .returning(|_, _, _| Ok(()));
    replies
}

fn messenger(result: Result<&'static str, GraphError>) -> MockMessenger {
    let mut messenger = MockMessenger::new();
    messenger.expect_profile().returning(|_, _| {
        Ok(Profile {
            username: Some("jane".into()),
            name: None,
        })
    });
    messenger
        .expect_send()
        .withf(|token, to, content, messaging| {
            token.expose() == "token"
                && *to
                    == insta_router_domain::Recipient::User(
                        InstagramUserId::parse("c", "555").unwrap(),
                    )
                && content.text() == Some("Order 66 confirmed, @jane!")
                && *messaging == MessagingType::Response
        })
        .times(1)
        .returning(move |_, _, _, _| {
            result
                .clone()
                .map(|mid| InstagramMessageId::parse("m", mid).unwrap())
        });
    messenger
}

#[tokio::test]
async fn a_matching_message_is_answered_with_the_profile_and_recorded() {
    let mut replies = replies(true);
    replies
        .expect_sent()
        .withf(|trigger, reply| {
            trigger == &MessageId::from_u128(9)
                && reply.direction == Direction::Outbound
                && reply.mid.as_ref().map(InstagramMessageId::as_str) == Some("mid.reply")
        })
        .times(1)
        .returning(|_, _| Ok(()));
    let service = build(
        Mocks {
            replies,
            messenger: messenger(Ok("mid.reply")),
        },
        "Hi ORDER66",
    );
    assert_eq!(
        service.answer(&MessageId::from_u128(9), 1).await,
        Outcome::Done
    );
}

#[tokio::test]
async fn a_message_answered_already_is_not_sent_again() {
    let mut messenger = MockMessenger::new();
    messenger.expect_send().never();
    let service = build(
        Mocks {
            replies: replies(false),
            messenger,
        },
        "order66",
    );
    assert_eq!(
        service.answer(&MessageId::from_u128(9), 1).await,
        Outcome::Done
    );
}

#[tokio::test]
async fn graph_failures_retry_give_up_or_never_resend() {
    // Temporary: the claim is given back and the job retried.
    let mut transient = replies(true);
    transient
        .expect_abandon()
        .with(eq(MessageId::from_u128(9)))
        .times(1)
        .returning(|_| Ok(()));
    let service = build(
        Mocks {
            replies: transient,
            messenger: messenger(Err(GraphError::Transient {
                code: Some(4),
                message: "rate".into(),
            })),
        },
        "order66",
    );
    assert!(matches!(
        service.answer(&MessageId::from_u128(9), 1).await,
        Outcome::RetryAt(at, _) if at == now() + TimeDelta::seconds(10)
    ));
    // Permanent: recorded with Meta's code; the job is given up.
    let mut permanent = replies(true);
    permanent
        .expect_settle()
        .withf(|_, status, error| status == "failed" && error.contains("551"))
        .times(1)
        .returning(|_, _, _| Ok(()));
    let service = build(
        Mocks {
            replies: permanent,
            messenger: messenger(Err(GraphError::Permanent {
                code: Some(551),
                subcode: Some(1_545_041),
                message: "unavailable".into(),
            })),
        },
        "order66",
    );
    assert!(matches!(
        service.answer(&MessageId::from_u128(9), 1).await,
        Outcome::Dead(e) if e.contains("551")
    ));
    // Unknown: perhaps delivered, so settled and never sent again.
    let mut unknown = replies(true);
    unknown
        .expect_settle()
        .withf(|_, status, _| status == "unknown")
        .times(1)
        .returning(|_, _, _| Ok(()));
    let service = build(
        Mocks {
            replies: unknown,
            messenger: messenger(Err(GraphError::Unknown("timeout".into()))),
        },
        "order66",
    );
    assert!(matches!(
        service.answer(&MessageId::from_u128(9), 1).await,
        Outcome::Dead(_)
    ));
}
