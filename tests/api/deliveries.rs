//! CRM forwarding, end to end: signed webhooks in, signed deliveries out to a real HTTP CRM
//! (wiremock on loopback), retries, dead letters, replay, the deliveries API and metrics.
//!
//! Schedules are configured in milliseconds, so no test waits for real minutes.

use std::time::Duration;

use insta_router_blackbox::{ServerBuilder, TestServer};
use reqwest::Method;
use ring::hmac;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const APP_SECRET: &str = "instagram-app-secret";
const CRM_SECRET: &str = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=";
const ACCOUNT: &str = "17841400000000001";

/// Settings for delivering to loopback CRMs on a fast schedule.
fn builder(schedule: &str) -> ServerBuilder {
    TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", APP_SECRET)
        .env("CRM_ALLOW_PRIVATE_NETWORKS", "true")
        .env("CRM_RETRY_SCHEDULE", schedule)
        .env("CRM_OVERLOAD_BACKOFF", "100ms")
        .env("CRM_WEBHOOK_TIMEOUT", "0.5")
        .env("DELIVERY_POLL_INTERVAL_MS", "50")
        .secret(CRM_SECRET)
        .secret("IGQVJ-token")
}

/// A server that delivers to loopback CRMs on a fast schedule.
async fn server(schedule: &str) -> TestServer {
    builder(schedule).start().await
}

/// A CRM that answers every delivery with `response`.
async fn crm_answering(response: ResponseTemplate) -> MockServer {
    let crm = MockServer::start().await;
    answer_with(&crm, response).await;
    crm
}

/// From now on `crm` answers with `response`, and has forgotten what it received.
async fn answer_with(crm: &MockServer, response: ResponseTemplate) {
    crm.reset().await;
    Mock::given(method("POST"))
        .respond_with(response)
        .mount(crm)
        .await;
}

/// Replays the account's dead letters (with `body`, or none); returns how many.
async fn replay(server: &TestServer, account_id: &str, body: Option<Value>) -> u64 {
    let mut request = server.api(
        Method::POST,
        &format!("/api/v1/accounts/{account_id}/deliveries/replay"),
    );
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["replayed"]
        .as_u64()
        .unwrap()
}

/// Waits until `query` lists `n` deliveries.
async fn wait_for(server: &TestServer, query: &str, n: usize) {
    server
        .eventually(&format!("{n} deliveries for {query}"), async || {
            (deliveries(server, query).await.len() >= n).then_some(())
        })
        .await;
}

/// Connects the account, delivering to `crm`; returns its id.
async fn connect(server: &TestServer, crm: &MockServer) -> String {
    let response = server
        .api(Method::POST, "/api/v1/accounts")
        .json(&json!({
            "instagram_account_id": ACCOUNT,
            "username": "shop",
            "access_token": "IGQVJ-token",
            "crm_webhook_url": format!("{}/crm", crm.uri()),
            "webhook_secret": CRM_SECRET,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["account_id"].as_str().unwrap().to_owned()
}

fn text_webhook(mid: &str, text: &str) -> String {
    insta_router_blackbox::text_webhook(ACCOUNT, mid, text)
}

/// Waits until `crm` has received `n` requests; returns them.
async fn received(crm: &MockServer, n: usize, server: &TestServer) -> Vec<Request> {
    server
        .eventually(&format!("{n} requests at the CRM"), async || {
            let requests = crm.received_requests().await.unwrap();
            (requests.len() >= n).then_some(requests)
        })
        .await
}

/// Waits (up to a minute: leases of a killed process run out first) until `crm` has received
/// `events` distinct events, whatever the repeats.
async fn every_event_at(crm: &MockServer, events: usize, server: &TestServer) {
    server
        .eventually_within(
            Duration::from_secs(60),
            &format!("all {events} events at the CRM"),
            async || {
                let ids: std::collections::HashSet<String> = crm
                    .received_requests()
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| header(r, "webhook-id"))
                    .collect();
                (ids.len() == events).then_some(())
            },
        )
        .await;
}

/// The account's deliveries, newest first.
async fn deliveries(server: &TestServer, query: &str) -> Vec<Value> {
    let response = server
        .api(Method::GET, &format!("/api/v1/deliveries?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["data"].as_array().unwrap().clone()
}

/// Waits until the only delivery has `status`; returns its detail.
async fn settled(server: &TestServer, status: &str) -> Value {
    let id = server
        .eventually(&format!("the delivery to become {status}"), async || {
            let list = deliveries(server, "").await;
            let first = list.first().filter(|first| first["status"] == status)?;
            first["delivery_id"].as_str().map(str::to_owned)
        })
        .await;
    let detail = server
        .api(Method::GET, &format!("/api/v1/deliveries/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(detail.status(), 200);
    detail.json().await.unwrap()
}

fn header(request: &Request, name: &str) -> String {
    request
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn an_event_reaches_the_crm_once_signed_and_verifiable() {
    let crm = crm_answering(ResponseTemplate::new(200)).await;
    let server = server("0s, 1s").await;
    let account_id = connect(&server, &crm).await;
    let body = text_webhook("mid.ORDER66", "Hi ORDER66 please");
    server.deliver_webhook(&body).await;
    let requests = received(&crm, 1, &server).await;
    let request = &requests[0];

    // An independent Standard Webhooks verifier accepts it.
    standardwebhooks::Webhook::new(CRM_SECRET)
        .unwrap()
        .verify(&request.body, &request.headers)
        .unwrap();
    // X-Hub-Signature-256 as the original computed it, by hand.
    let key = hmac::Key::new(hmac::HMAC_SHA256, CRM_SECRET.as_bytes());
    let tag = hmac::sign(&key, &request.body);
    assert_eq!(
        header(request, "x-hub-signature-256"),
        format!("sha256={}", hex::encode(tag.as_ref()))
    );
    assert!(header(request, "user-agent").starts_with("insta-router/"));

    // The original service's fields, and ours.
    let delivered: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(delivered["type"], "message.received");
    let data = &delivered["data"];
    assert_eq!(data["event"], "message.received");
    assert_eq!(data["account_id"], account_id.as_str());
    assert_eq!(data["message_id"], "mid.ORDER66");
    assert_eq!(data["instagram_message_id"], "mid.ORDER66");
    assert_eq!(data["sender_id"], "555");
    assert_eq!(data["message"], "Hi ORDER66 please");
    assert_eq!(data["message_type"], "text");
    assert_eq!(data["timestamp"], "2023-11-14T22:13:20.123000Z");
    assert_eq!(data["conversation_id"], format!("conv_555_{ACCOUNT}"));
    assert_eq!(header(request, "webhook-id"), data["id"].as_str().unwrap());

    // Meta's retry of the same event is stored once and forwarded once.
    server.deliver_webhook(&body).await;
    let detail = settled(&server, "delivered").await;
    assert_eq!(detail["attempts"], 1);
    assert_eq!(detail["attempts_made"][0]["status_code"], 200);
    assert_eq!(detail["attempts_made"][0]["outcome"], "delivered");
    assert_eq!(detail["payload"].as_str().unwrap().as_bytes(), request.body);
    server.settled().await;
    assert_eq!(crm.received_requests().await.unwrap().len(), 1);
    assert_eq!(deliveries(&server, "").await.len(), 1);

    // The metrics count the attempt.
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"insta_router_delivery_attempts_total{outcome="delivered"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn failures_are_retried_with_the_same_id_and_bytes_until_accepted() {
    // First a 500, then a timeout, then a 429, then success.
    let crm = MockServer::start().await;
    for (response, times) in [
        (ResponseTemplate::new(500).set_body_string("boom"), Some(1)),
        (
            ResponseTemplate::new(200).set_delay(Duration::from_secs(2)),
            Some(1),
        ),
        (
            ResponseTemplate::new(429).insert_header("Retry-After", "0"),
            Some(1),
        ),
        (ResponseTemplate::new(204), None),
    ] {
        let mock = Mock::given(method("POST")).respond_with(response);
        match times {
            Some(n) => mock.up_to_n_times(n).mount(&crm).await,
            None => mock.mount(&crm).await,
        }
    }
    let server = server("0s, 100ms, 100ms, 100ms, 100ms").await;
    connect(&server, &crm).await;
    server
        .deliver_webhook(&text_webhook("mid.retry", "hello"))
        .await;
    let detail = settled(&server, "delivered").await;
    let requests = received(&crm, 4, &server).await;
    assert_eq!(requests.len(), 4);
    let id = header(&requests[0], "webhook-id");
    for request in &requests {
        assert_eq!(header(request, "webhook-id"), id);
        assert_eq!(request.body, requests[0].body);
        standardwebhooks::Webhook::new(CRM_SECRET)
            .unwrap()
            .verify(&request.body, &request.headers)
            .unwrap();
    }
    let outcomes: Vec<&str> = detail["attempts_made"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["http_error", "timeout", "throttled", "delivered"],
        "{detail}"
    );
    assert_eq!(detail["attempts_made"][0]["response_body"], "boom");
    assert_eq!(detail["webhook_id"], id.as_str());
    // Each retry is one INFO line with its cause.
    let output = server.output();
    let retries: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("INFO") && l.contains("delivery failed; retrying"))
        .collect();
    assert_eq!(retries.len(), 3, "{output}");
    assert!(retries[0].contains("the CRM answered HTTP 500"), "{output}");
    assert!(retries[1].contains("timeout"), "{output}");
    assert!(retries[2].contains("the CRM answered HTTP 429"), "{output}");
}

#[tokio::test]
async fn exhausted_deliveries_are_dead_lettered_and_replay_delivers_them() {
    let crm = crm_answering(ResponseTemplate::new(503)).await;
    let server = server("0s, 100ms").await;
    let account_id = connect(&server, &crm).await;
    server
        .deliver_webhook(&text_webhook("mid.dead", "hello"))
        .await;
    let dead = settled(&server, "dead").await;
    assert_eq!(dead["attempts"], 2);
    let failed = crm.received_requests().await.unwrap();
    assert_eq!(failed.len(), 2);
    assert_eq!(
        deliveries(&server, &format!("status=dead&account_id={account_id}"))
            .await
            .len(),
        1
    );
    assert!(deliveries(&server, "status=delivered").await.is_empty());

    // The CRM recovers; a replay delivers the same event with the same id and bytes.
    answer_with(&crm, ResponseTemplate::new(200)).await;
    assert_eq!(replay(&server, &account_id, None).await, 1);
    let delivered = settled(&server, "delivered").await;
    let requests = received(&crm, 1, &server).await;
    assert_eq!(
        header(&requests[0], "webhook-id"),
        header(&failed[0], "webhook-id")
    );
    assert_eq!(requests[0].body, failed[0].body);
    // Three attempts in all: two before the replay, one after.
    assert_eq!(delivered["attempts_made"].as_array().unwrap().len(), 3);

    // Retrying a delivered delivery is a conflict; an unknown one is not found.
    let id = delivered["delivery_id"].as_str().unwrap();
    let again = server
        .api(Method::POST, &format!("/api/v1/deliveries/{id}/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let unknown = server
        .api(
            Method::POST,
            "/api/v1/deliveries/dlv_00000000000000000000000000000000/retry",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("insta_router_delivery_dead_letters_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn gone_disables_the_endpoint_until_it_is_set_again() {
    let crm = crm_answering(ResponseTemplate::new(410)).await;
    let server = server("0s, 100ms, 100ms").await;
    let account_id = connect(&server, &crm).await;
    server
        .deliver_webhook(&text_webhook("mid.gone1", "one"))
        .await;
    let dead = settled(&server, "dead").await;
    assert_eq!(dead["attempts_made"][0]["outcome"], "gone");
    let account: Value = server
        .api(Method::GET, &format!("/api/v1/accounts/{account_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(account["crm_disabled_at"].is_string(), "{account}");

    // While disabled, nothing is sent: the next event is dead-lettered without a request.
    server
        .deliver_webhook(&text_webhook("mid.gone2", "two"))
        .await;
    wait_for(&server, "status=dead", 2).await;
    assert_eq!(crm.received_requests().await.unwrap().len(), 1);
    let list = deliveries(&server, "status=dead").await;
    let newest = list[0]["delivery_id"].as_str().unwrap();
    let detail: Value = server
        .api(Method::GET, &format!("/api/v1/deliveries/{newest}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["attempts_made"][0]["outcome"], "endpoint_disabled");

    // Setting the URL again re-enables it; the replay delivers both.
    answer_with(&crm, ResponseTemplate::new(200)).await;
    let patched = server
        .api(Method::PATCH, &format!("/api/v1/accounts/{account_id}"))
        .json(&json!({"crm_webhook_url": format!("{}/crm-v2", crm.uri())}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert!(patched["crm_disabled_at"].is_null(), "{patched}");
    assert_eq!(replay(&server, &account_id, Some(json!({}))).await, 2);
    let requests = received(&crm, 2, &server).await;
    assert!(requests.iter().all(|r| r.url.path() == "/crm-v2"));
}

#[tokio::test]
async fn a_rotated_secret_keeps_signing_beside_the_new_one() {
    let crm = crm_answering(ResponseTemplate::new(200)).await;
    let server = server("0s, 1s").await;
    let account_id = connect(&server, &crm).await;
    let new_secret = "whsec_bmV3LXNlY3JldC1rZXktZm9yLXRlc3Rz";
    let patched = server
        .api(Method::PATCH, &format!("/api/v1/accounts/{account_id}"))
        .json(&json!({"webhook_secret": new_secret}))
        .send()
        .await
        .unwrap();
    let patched: Value = patched.json().await.unwrap();
    assert!(patched["previous_secret_until"].is_string(), "{patched}");
    server
        .deliver_webhook(&text_webhook("mid.rotate", "hi"))
        .await;
    let requests = received(&crm, 1, &server).await;
    for secret in [new_secret, CRM_SECRET] {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&requests[0].body, &requests[0].headers)
            .unwrap();
    }
    // X-Hub-Signature-256 uses the new secret only.
    let key = hmac::Key::new(hmac::HMAC_SHA256, new_secret.as_bytes());
    let tag = hmac::sign(&key, &requests[0].body);
    assert_eq!(
        header(&requests[0], "x-hub-signature-256"),
        format!("sha256={}", hex::encode(tag.as_ref()))
    );
}

#[tokio::test]
async fn bad_delivery_requests_get_clear_errors() {
    let server = server("0s").await;
    for (path, status) in [
        ("/api/v1/deliveries?status=lost", 422),
        ("/api/v1/deliveries?since=yesterday", 422),
        ("/api/v1/deliveries?account_id=nope", 422),
        ("/api/v1/deliveries?cursor=%%%", 422),
        ("/api/v1/deliveries/dlv_zz", 404),
        (
            "/api/v1/deliveries/job_00000000000000000000000000000000",
            404,
        ),
    ] {
        let response = server.api(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
    }
    let unauthenticated = server.get("/api/v1/deliveries").await;
    assert_eq!(unauthenticated.status(), 401);
    let replay = server
        .api(
            Method::POST,
            "/api/v1/accounts/acc_00000000000000000000000000000000/deliveries/replay",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 404);
}

#[tokio::test]
async fn a_killed_server_loses_no_delivery() {
    const EVENTS: usize = 20;
    // A slow CRM, so that deliveries are in flight when the process dies.
    let crm = crm_answering(ResponseTemplate::new(200).set_delay(Duration::from_millis(400))).await;
    let mut server = builder("0s, 100ms, 100ms")
        .env("CRM_WEBHOOK_TIMEOUT", "1")
        .env("DELIVERY_LEASE", "2")
        .env("DELIVERY_WORKERS", "1")
        .start()
        .await;
    connect(&server, &crm).await;
    for n in 0..EVENTS {
        server
            .deliver_webhook(&text_webhook(&format!("mid.crash.{n}"), "hi"))
            .await;
    }
    // Some requests have reached the CRM and more are on their way: kill -9.
    received(&crm, 2, &server).await;
    server.kill_and_restart().await;

    every_event_at(&crm, EVENTS, &server).await;
    // Every delivery ends delivered; at least once each, and nothing else arrived.
    wait_for(&server, "status=delivered&limit=200", EVENTS).await;
    assert_eq!(deliveries(&server, "limit=200").await.len(), EVENTS);
}

#[tokio::test]
async fn two_instances_share_the_deliveries_without_double_claims() {
    const EVENTS: usize = 40;
    let crm = crm_answering(ResponseTemplate::new(200).set_delay(Duration::from_millis(20))).await;
    let first = builder("0s, 100ms").start().await;
    let second = builder("0s, 100ms").start_sharing(&first).await;
    connect(&first, &crm).await;
    for n in 0..EVENTS {
        let server = if n % 2 == 0 { &first } else { &second };
        server
            .deliver_webhook(&text_webhook(&format!("mid.pair.{n}"), "hi"))
            .await;
    }
    let requests = received(&crm, EVENTS, &first).await;
    wait_for(&first, "status=delivered&limit=200", EVENTS).await;
    // One request per event: no delivery was claimed by both instances.
    first.settled().await;
    let requests_now = crm.received_requests().await.unwrap();
    assert_eq!(requests_now.len(), EVENTS, "{} requests", requests.len());
    let ids: std::collections::HashSet<String> = requests_now
        .iter()
        .map(|r| header(r, "webhook-id"))
        .collect();
    assert_eq!(ids.len(), EVENTS);
    for delivery in deliveries(&first, "limit=200").await {
        assert_eq!(delivery["attempts"], 1, "{delivery}");
    }
    // Each instance counts what it sent; together, once per event.
    let mut sent = 0;
    for server in [&first, &second] {
        let metrics = server.get("/metrics").await.text().await.unwrap();
        sent += metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(r#"insta_router_delivery_attempts_total{outcome="delivered"} "#)
            })
            .map_or(0, |n| n.trim().parse::<usize>().unwrap());
    }
    assert_eq!(sent, EVENTS);
}

#[tokio::test]
async fn instances_started_together_both_serve_and_a_killed_one_loses_no_event() {
    const EVENTS: usize = 30;
    let crm = crm_answering(ResponseTemplate::new(200).set_delay(Duration::from_millis(200))).await;
    let (first, mut second) = builder("0s, 100ms")
        .env("DELIVERY_LEASE", "2")
        .env("CRM_WEBHOOK_TIMEOUT", "1")
        .start_pair()
        .await;
    for server in [&first, &second] {
        let ready = server.get("/ready").await;
        assert_eq!(ready.status(), 200, "{}", server.output());
    }
    connect(&first, &crm).await;
    for n in 0..EVENTS {
        // Through both, until the second is killed a third of the way in, deliveries of its
        // own in flight.
        if n == EVENTS / 3 {
            second.kill();
        }
        let server = if n % 2 == 1 && n < EVENTS / 3 {
            &second
        } else {
            &first
        };
        server
            .deliver_webhook(&text_webhook(&format!("mid.rolling.{n}"), "hi"))
            .await;
    }
    // Every acknowledged event reaches the CRM: the killed instance's leased deliveries are
    // taken over when their leases run out.
    every_event_at(&crm, EVENTS, &first).await;
    // Every delivery delivered: none is attempted again.
    wait_for(&first, "status=delivered&limit=200", EVENTS).await;
    // Repeats only for what the killed instance had claimed: at most the events that had
    // arrived when it died.
    let requests = crm.received_requests().await.unwrap().len();
    assert!(
        requests <= EVENTS + EVENTS / 3,
        "{requests} requests for {EVENTS} events"
    );
}
