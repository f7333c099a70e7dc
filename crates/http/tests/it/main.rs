//! The HTTP handlers through actix's test service, every port mocked: the status, the
//! problem body and the headers each kind of request gets, and which ports it touches (a mock
//! with no expectation fails the test when called).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::test::{TestRequest, call_service, init_service, read_body};
use chrono::{DateTime, Utc};
use insta_router_app::{
    AccountService, ApiKeyService, App, DeliveryService, DeliverySettings, InboxService,
    IngestPorts, IngestSettings, Ingestor, JournalReplayer, PlaintextCipher, ReplayPorts,
    ReplaySettings, RuleService, SendPorts, SendService, SendSettings, key_hash,
};
use insta_router_domain::{
    AccountId, ApiKey, ApiKeyId, Direction, InboundEvent, InboundEventKind, InstagramAccountId,
    InstagramMessageId, InstagramUserId, KeyScope, MessageContext, MessageKind, Parties,
    ReceivedMessage,
};
use insta_router_http::{HttpSettings, Limiters, RateLimits};
use insta_router_ports::{
    BatchOutcome, MockAccountRepository, MockApiKeyStore, MockClock, MockConversationRepository,
    MockCrmSender, MockDeliveryStore, MockHealthCheck, MockInboundStore, MockInbox, MockJobQueue,
    MockMessageRepository, MockMessenger, MockNotificationParser, MockOutboundStore,
    MockRuleRepository, MockWebhookJournal, MockWebhookSignatures, RepoError, SignatureError,
};
use serde_json::Value;

mod openapi;

/// The ports a test sets expectations on; every other port is a mock that must not be called.
#[derive(Default)]
struct Ports {
    accounts: MockAccountRepository,
    keys: MockApiKeyStore,
    health: MockHealthCheck,
    signatures: MockWebhookSignatures,
    parser: MockNotificationParser,
    inbound: MockInboundStore,
    journal: MockWebhookJournal,
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

const MAX_WEBHOOK_BYTES: usize = 4096;

/// The application on `ports`, with the settings of a development server.
fn wire(ports: Ports) -> (Arc<App>, HttpSettings) {
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    let clock: Arc<MockClock> = Arc::new(clock);
    let cipher = Arc::new(PlaintextCipher);
    let accounts: Arc<MockAccountRepository> = Arc::new(ports.accounts);
    let jobs = Arc::new(MockJobQueue::new());
    let ingest = Arc::new(Ingestor::start(
        IngestPorts {
            store: Arc::new(ports.inbound),
            journal: Arc::new(ports.journal),
            spool: None,
            parser: Arc::new(ports.parser),
            clock: clock.clone(),
        },
        IngestSettings::default(),
    ));
    let app = App {
        accounts: AccountService::new(accounts.clone(), cipher.clone(), clock.clone()),
        analytics: insta_router_app::AnalyticsService::new(
            Arc::new(insta_router_ports::MockAnalyticsStore::new()),
            accounts.clone(),
        ),
        profiles: insta_router_app::ProfileService::new(
            accounts.clone(),
            cipher.clone(),
            Arc::new(insta_router_ports::MockMessengerProfile::new()),
        ),
        subscriptions: insta_router_app::SubscriptionService::new(
            accounts.clone(),
            cipher.clone(),
            Arc::new(MockMessenger::new()),
            false,
        ),
        keys: ApiKeyService::new(Arc::new(ports.keys), accounts.clone(), clock.clone()),
        replayer: Arc::new(JournalReplayer::new(
            ReplayPorts {
                jobs: jobs.clone(),
                journal: Arc::new(MockWebhookJournal::new()),
                spool: None,
                clock: clock.clone(),
            },
            ingest.clone(),
            ReplaySettings::default(),
        )),
        ingest,
        deliveries: Arc::new(DeliveryService::new(
            jobs.clone(),
            Arc::new(MockDeliveryStore::new()),
            accounts.clone(),
            cipher.clone(),
            Arc::new(MockCrmSender::new()),
            clock.clone(),
            DeliverySettings::default(),
        )),
        rules: Arc::new(RuleService::new(
            Arc::new(MockRuleRepository::new()),
            accounts.clone(),
            clock.clone(),
            "there".into(),
        )),
        sending: Arc::new(SendService::new(
            SendPorts {
                outbound: Arc::new(MockOutboundStore::new()),
                accounts: accounts.clone(),
                conversations: Arc::new(MockConversationRepository::new()),
                jobs,
                messenger: Arc::new(MockMessenger::new()),
                cipher: cipher.clone(),
                clock: clock.clone(),
                comments: Arc::new(insta_router_ports::MockCommentStore::new()),
            },
            SendSettings::default(),
            Arc::new(|| {}),
        )),
        inbox: InboxService::new(
            Arc::new(MockInbox::new()),
            Arc::new(MockConversationRepository::new()),
            Arc::new(MockMessageRepository::new()),
            accounts,
            Arc::new(MockMessenger::new()),
            cipher,
            clock,
        ),
        health: Arc::new(ports.health),
        readiness: Arc::default(),
    };
    let settings = HttpSettings {
        environment: "development".into(),
        max_json_bytes: 65_536,
        max_webhook_bytes: MAX_WEBHOOK_BYTES,
        verify_token: "verify-me".into(),
        signatures: Arc::new(ports.signatures),
        metrics: None,
        metrics_token: None,
        configured_account: None,
        cors_allowed_origins: Vec::new(),
        limiters: Arc::new(Limiters::new(RateLimits {
            per_key_per_second: 0,
            failures_per_minute: 0,
        })),
    };
    (Arc::new(app), settings)
}

/// Sends `request` to the application on `ports`; returns the status, the headers and the
/// body as JSON (`Value::Null` when it is not JSON).
async fn call(
    ports: Ports,
    request: TestRequest,
) -> (StatusCode, actix_web::http::header::HeaderMap, Value) {
    let (app, settings) = wire(ports);
    let service = init_service(insta_router_http::app(app, settings)).await;
    let response = call_service(&service, request.to_request()).await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_body(response).await;
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// Checks that the answer is a problem+json document of `status`.
fn assert_problem(
    status: StatusCode,
    headers: &actix_web::http::header::HeaderMap,
    body: &Value,
    want: u16,
) {
    assert_eq!(status.as_u16(), want, "{body}");
    assert_eq!(
        headers.get("content-type").unwrap().to_str().unwrap(),
        "application/problem+json",
        "{body}"
    );
    assert_eq!(body["status"], want, "{body}");
    assert!(
        body["type"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
}

const KEY: &str = "irk_0123456789abcdefghijABCDEFGHIJ0123456789abc";

/// A key store that knows [`KEY`] with `scope`.
fn keys(scope: KeyScope) -> MockApiKeyStore {
    let mut keys = MockApiKeyStore::new();
    let hash = key_hash(KEY);
    keys.expect_find_by_hashes().returning(move |hashes| {
        Ok(hashes
            .iter()
            .filter(|h| **h == hash)
            .map(|h| {
                let key = ApiKey {
                    id: ApiKeyId::from_u128(1),
                    name: None,
                    scope: scope.clone(),
                    created_at: now(),
                    last_used_at: None,
                    revoked_at: None,
                };
                (h.clone(), key)
            })
            .collect())
    });
    keys.expect_touch().returning(|_, _| Ok(()));
    keys
}

fn bearer(request: TestRequest) -> TestRequest {
    request.insert_header(("Authorization", format!("Bearer {KEY}")))
}

#[actix_web::test]
async fn health_is_200_while_the_database_answers_and_503_when_it_does_not() {
    for (answers, want) in [(true, 200), (false, 503)] {
        let mut ports = Ports::default();
        ports.health.expect_ping().returning(move || {
            if answers {
                Ok(())
            } else {
                Err(RepoError::Unavailable("connection refused".into()))
            }
        });
        let (status, _, body) = call(ports, TestRequest::get().uri("/health")).await;
        assert_eq!(status.as_u16(), want, "{body}");
        assert_eq!(body["database"], if answers { "ok" } else { "unreachable" });
    }
}

#[actix_web::test]
async fn ready_is_503_with_the_reason_when_the_schema_is_behind_or_the_database_gone() {
    for (answers, current, want, schema) in [
        (true, true, 200, "current"),
        (true, false, 503, "pending"),
        (false, true, 503, "unknown"),
    ] {
        let mut ports = Ports::default();
        ports.health.expect_ping().returning(move || {
            if answers {
                Ok(())
            } else {
                Err(RepoError::Unavailable("connection refused".into()))
            }
        });
        ports
            .health
            .expect_schema_current()
            .returning(move || Ok(current));
        let (status, _, body) = call(ports, TestRequest::get().uri("/ready")).await;
        assert_eq!(status.as_u16(), want, "{body}");
        assert_eq!(
            body["status"],
            if want == 200 { "ready" } else { "not_ready" }
        );
        assert_eq!(body["schema"], schema, "{body}");
        assert_eq!(body["database"], if answers { "ok" } else { "unreachable" });
        assert_eq!(body["shutting_down"], false);
    }
}

#[actix_web::test]
async fn ready_is_503_while_draining_and_health_stays_200() {
    let mut ports = Ports::default();
    ports.health.expect_ping().returning(|| Ok(()));
    ports.health.expect_schema_current().returning(|| Ok(true));
    let (app, settings) = wire(ports);
    app.readiness.drain();
    let service = init_service(insta_router_http::app(app, settings)).await;
    let ready = call_service(&service, TestRequest::get().uri("/ready").to_request()).await;
    assert_eq!(ready.status(), 503);
    let body: Value = serde_json::from_slice(&read_body(ready).await).unwrap();
    assert_eq!(body["shutting_down"], true);
    let health = call_service(&service, TestRequest::get().uri("/health").to_request()).await;
    assert_eq!(health.status(), 200);
}

#[actix_web::test]
async fn a_webhook_with_a_bad_signature_is_401_and_reaches_nothing_behind() {
    for (refusal, detail) in [
        (
            SignatureError::Missing,
            "missing X-Hub-Signature-256 header",
        ),
        (SignatureError::Mismatch, "invalid signature"),
    ] {
        let mut ports = Ports::default();
        ports
            .signatures
            .expect_verify()
            .times(1)
            .returning(move |_, _| Err(refusal));
        let request = TestRequest::post()
            .uri("/webhooks/instagram")
            .insert_header(("X-Hub-Signature-256", "sha256=00"))
            .set_payload(r#"{"object":"instagram","entry":[]}"#);
        let (status, headers, body) = call(ports, request).await;
        assert_problem(status, &headers, &body, 401);
        assert_eq!(body["detail"], detail);
    }
}

#[actix_web::test]
async fn a_webhook_over_the_size_limit_is_413_before_its_signature_is_checked() {
    let request = TestRequest::post()
        .uri("/webhooks/instagram")
        .set_payload(vec![b' '; MAX_WEBHOOK_BYTES + 1]);
    let (status, headers, body) = call(Ports::default(), request).await;
    assert_problem(status, &headers, &body, 413);
}

fn message(mid: &str) -> InboundEvent {
    InboundEvent {
        occurred_at: now(),
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
    }
}

#[actix_web::test]
async fn a_signed_webhook_is_stored_then_answered_200_with_what_was_new() {
    let mut ports = Ports::default();
    ports
        .signatures
        .expect_verify()
        .withf(|body, header| body == b"{}" && *header == Some("sha256=ab"))
        .returning(|_, _| Ok(()));
    ports
        .parser
        .expect_parse()
        .returning(|_, _| Ok(vec![message("mid.1"), message("mid.2")]));
    ports.inbound.expect_routes().returning(|_| Ok(Vec::new()));
    ports.inbound.expect_store().times(1).returning(|batch| {
        // The second message was stored before: only the first is new.
        Ok(BatchOutcome {
            new_messages: vec![batch.messages[0].id.clone()],
            new_events: Vec::new(),
            routes_changed: false,
        })
    });
    let request = TestRequest::post()
        .uri("/webhooks/instagram")
        .insert_header(("X-Hub-Signature-256", "sha256=ab"))
        .set_payload("{}");
    let (status, _, body) = call(ports, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"status": "ok", "messages_processed": 1})
    );
}

#[actix_web::test]
async fn a_webhook_that_cannot_be_stored_nor_kept_is_503_so_meta_retries() {
    let mut ports = Ports::default();
    ports.signatures.expect_verify().returning(|_, _| Ok(()));
    ports
        .parser
        .expect_parse()
        .returning(|_, _| Ok(vec![message("mid.1")]));
    ports
        .inbound
        .expect_routes()
        .returning(|_| Err(RepoError::Unavailable("connection refused".into())));
    ports.inbound.expect_store().never();
    ports
        .journal
        .expect_keep_for_replay()
        .times(1)
        .returning(|_, _| Err(RepoError::Unavailable("connection refused".into())));
    // No spool either: nowhere to keep it.
    let request = TestRequest::post()
        .uri("/webhooks/instagram")
        .set_payload("{}");
    let (status, headers, body) = call(ports, request).await;
    assert_problem(status, &headers, &body, 503);
}

#[actix_web::test]
async fn the_api_wants_a_bearer_key_and_says_so() {
    for authorization in [None, Some("Bearer not-a-key"), Some("Basic dXNlcjpwdw==")] {
        let mut request = TestRequest::get().uri("/api/v1/accounts");
        if let Some(value) = authorization {
            request = request.insert_header(("Authorization", value));
        }
        let (status, headers, body) = call(Ports::default(), request).await;
        assert_problem(status, &headers, &body, 401);
        assert!(
            headers
                .get("www-authenticate")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{headers:?}"
        );
    }
}

#[actix_web::test]
async fn an_account_key_gets_404_for_another_account_without_a_lookup() {
    let mut ports = Ports {
        keys: keys(KeyScope::Account(AccountId::from_u128(1))),
        ..Ports::default()
    };
    ports.accounts.expect_get().never();
    let other = AccountId::from_u128(2);
    let request = bearer(TestRequest::get().uri(&format!("/api/v1/accounts/{other}")));
    let (status, headers, body) = call(ports, request).await;
    assert_problem(status, &headers, &body, 404);
}

#[actix_web::test]
async fn a_missing_account_is_404_and_a_failing_database_503_never_500() {
    let mut ports = Ports {
        keys: keys(KeyScope::Admin),
        ..Ports::default()
    };
    ports.accounts.expect_get().returning(|_| Ok(None));
    let id = AccountId::from_u128(9);
    let (status, headers, body) = call(
        ports,
        bearer(TestRequest::get().uri(&format!("/api/v1/accounts/{id}"))),
    )
    .await;
    assert_problem(status, &headers, &body, 404);

    let mut ports = Ports {
        keys: keys(KeyScope::Admin),
        ..Ports::default()
    };
    ports
        .accounts
        .expect_get()
        .returning(|_| Err(RepoError::Unavailable("disk I/O error".into())));
    let (status, headers, body) = call(
        ports,
        bearer(TestRequest::get().uri(&format!("/api/v1/accounts/{id}"))),
    )
    .await;
    assert_problem(status, &headers, &body, 503);
    assert!(
        !body.to_string().contains("disk I/O"),
        "internal causes stay in the log: {body}"
    );
}

#[actix_web::test]
async fn a_malformed_body_is_422_naming_the_field() {
    for (body, field) in [
        (
            r#"{"instagram_account_id": "1784", "username": "shop"}"#,
            "access_token",
        ),
        (
            r#"{"instagram_account_id": "", "username": "shop", "access_token": "t"}"#,
            "instagram_account_id",
        ),
    ] {
        let ports = Ports {
            keys: keys(KeyScope::Admin),
            ..Ports::default()
        };
        let request = bearer(
            TestRequest::post()
                .uri("/api/v1/accounts")
                .insert_header(("Content-Type", "application/json"))
                .set_payload(body),
        );
        let (status, headers, body) = call(ports, request).await;
        assert_problem(status, &headers, &body, 422);
        assert!(body.to_string().contains(field), "{field} in {body}");
    }
}
