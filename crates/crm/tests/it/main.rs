//! The HTTP sender against a real HTTP server (wiremock on loopback): what a CRM receives,
//! checked with an independent Standard Webhooks verifier.

// A test binary: unwraps state what is expected.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use insta_router_crm::{BuildError, HttpCrmSender, SenderSettings};
use insta_router_domain::{AttemptOutcome, Secret};
use insta_router_ports::{CrmRequest, CrmSender};
use ring::hmac;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD_SECRET: &str = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=";
const BODY: &str = r#"{"data":{"account_id":"acc_1","message":"Hi ☕"},"type":"message.received"}"#;

fn sender() -> HttpCrmSender {
    HttpCrmSender::new(&SenderSettings {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_millis(500),
        allow_private_networks: true,
        user_agent: None,
    })
    .unwrap()
}

fn request(url: String, secrets: &[&str]) -> CrmRequest {
    CrmRequest {
        url,
        webhook_id: "msg_0190abc".to_owned(),
        body: BODY.to_owned(),
        secrets: secrets
            .iter()
            .map(|s| Secret::new((*s).to_owned()))
            .collect(),
    }
}

#[tokio::test]
async fn a_delivery_carries_the_stored_bytes_and_verifiable_signatures() {
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&crm)
        .await;
    let response = sender()
        .send(request(format!("{}/crm", crm.uri()), &[SECRET, OLD_SECRET]))
        .await;
    assert_eq!(
        response.outcome,
        AttemptOutcome::Answered {
            status: 204,
            retry_after: None
        }
    );
    let received = crm.received_requests().await.unwrap();
    let req = &received[0];
    assert_eq!(req.body, BODY.as_bytes());
    let header = |name: &str| req.headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(header("webhook-id"), "msg_0190abc");
    assert_eq!(header("content-type"), "application/json");
    assert!(header("user-agent").starts_with("insta-router/"));

    // A configured agent replaces ours; one that is no header value is refused up front.
    let agent = "ShopCRM-Gateway/2 (+https://shop.example)";
    let custom = HttpCrmSender::new(&SenderSettings {
        user_agent: Some(agent.to_owned()),
        allow_private_networks: true,
        ..SenderSettings::default()
    })
    .unwrap();
    custom
        .send(request(format!("{}/agent", crm.uri()), &[SECRET]))
        .await;
    let received = crm.received_requests().await.unwrap();
    let agents: Vec<_> = received
        .iter()
        .map(|r| r.headers.get("user-agent").unwrap().to_str().unwrap())
        .collect();
    assert_eq!(agents[1], agent);
    let refused = HttpCrmSender::new(&SenderSettings {
        user_agent: Some("bad\nagent".to_owned()),
        ..SenderSettings::default()
    });
    assert!(matches!(refused, Err(BuildError::UserAgent(_))));
    // Both secrets sign during a rotation; each verifies on its own.
    assert_eq!(header("webhook-signature").split(' ').count(), 2);
    for secret in [SECRET, OLD_SECRET] {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&req.body, &req.headers)
            .unwrap();
    }
    assert!(
        standardwebhooks::Webhook::new("whsec_b3RoZXI=")
            .unwrap()
            .verify(&req.body, &req.headers)
            .is_err()
    );
    // X-Hub-Signature-256 as the original computed it: keyed with the secret as configured.
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let expected = format!("sha256={}", hex::encode(hmac::sign(&key, BODY.as_bytes())));
    assert_eq!(header("x-hub-signature-256"), expected);
}

#[tokio::test]
async fn answers_are_reported_with_retry_after_and_the_start_of_the_body() {
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(503)
                .insert_header("Retry-After", "120")
                .set_body_string("x".repeat(10_000)),
        )
        .mount(&crm)
        .await;
    let response = sender().send(request(crm.uri(), &[SECRET])).await;
    assert_eq!(
        response.outcome,
        AttemptOutcome::Answered {
            status: 503,
            retry_after: Some(Duration::from_secs(120))
        }
    );
    assert_eq!(response.body.unwrap().len(), 2048);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", "http://example.com/"))
        .expect(1)
        .mount(&crm)
        .await;
    let response = sender().send(request(crm.uri(), &[SECRET])).await;
    assert_eq!(response.outcome.kind(), "http_error");
}

#[tokio::test]
async fn slow_and_absent_crms_are_told_apart() {
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&crm)
        .await;
    let response = sender().send(request(crm.uri(), &[SECRET])).await;
    assert_eq!(response.outcome, AttemptOutcome::Timeout);
    assert!(response.duration < Duration::from_secs(3));

    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let response = sender()
        .send(request(format!("http://127.0.0.1:{port}/"), &[SECRET]))
        .await;
    assert_eq!(response.outcome, AttemptOutcome::Unreachable);
    assert!(response.error.is_some());
}
