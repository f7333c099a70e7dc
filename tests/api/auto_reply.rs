//! Auto-replies end to end: a signed DM in, one reply out through a fake Graph API.

use insta_router_blackbox::{TestServer, graph_sends};
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const APP_SECRET: &str = "instagram-app-secret";
const ACCOUNT: &str = "17841400000000001";
const TOKEN: &str = "IGQVJ-account-token";

async fn graph(profile: ResponseTemplate) -> MockServer {
    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/555"))
        .respond_with(profile)
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"recipient_id": "555", "message_id": "mid.reply.1"})),
        )
        .mount(&graph)
        .await;
    graph
}

async fn server_with_order66(graph: &MockServer) -> TestServer {
    server_with_rule(
        &graph.uri(),
        "order66",
        "Order 66 confirmed, {username}! Your request has been received.",
    )
    .await
}

/// A server on the Graph API at `graph_url` with the shop connected and one rule answering
/// `keyword` with `reply`.
async fn server_with_rule(graph_url: &str, keyword: &str, reply: &str) -> TestServer {
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", APP_SECRET)
        .env("INSTAGRAM_API_BASE_URL", graph_url)
        .env("DELIVERY_POLL_INTERVAL_MS", "50")
        .secret(TOKEN)
        .start()
        .await;
    let account: Value = server
        .api(Method::POST, "/api/v1/accounts")
        .json(&json!({"instagram_account_id": ACCOUNT, "username": "shop", "access_token": TOKEN}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let account_id = account["account_id"].as_str().unwrap();
    let created = server
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{account_id}/rules"),
        )
        .json(&json!({
            "name": keyword,
            "conditions": [{"type": "keywords", "any_of": [keyword]}],
            "reply": {"text": reply},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    server
}

fn dm(mid: &str, text: &str, echo: bool) -> String {
    let (sender, recipient) = if echo {
        (ACCOUNT, "555")
    } else {
        ("555", ACCOUNT)
    };
    let mut message = json!({"mid": mid, "text": text});
    if echo {
        message["is_echo"] = json!(true);
    }
    json!({
        "object": "instagram",
        "entry": [{"id": ACCOUNT, "time": 1_700_000_000_000_u64, "messaging": [{
            "sender": {"id": sender}, "recipient": {"id": recipient},
            "timestamp": chrono_now_millis(), "message": message,
        }]}],
    })
    .to_string()
}

/// Now, in milliseconds: inside Meta's 24-hour window.
fn chrono_now_millis() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The Send API requests so far, after waiting for at least `n`.
async fn sends(graph: &MockServer, n: usize, server: &TestServer) -> Vec<Value> {
    server
        .eventually(&format!("{n} Send API requests"), async || {
            let sent = graph_sends(graph).await;
            (sent.len() >= n).then_some(sent)
        })
        .await
}

#[tokio::test]
async fn order66_gets_exactly_one_reply_with_the_username() {
    let graph = graph(
        ResponseTemplate::new(200)
            .set_body_json(json!({"username": "jane", "name": "Jane Doe", "id": "555"})),
    )
    .await;
    let server = server_with_order66(&graph).await;
    let body = dm("mid.order66", "Hi ORDER66 please", false);
    server.deliver_webhook(&body).await;
    let sent = sends(&graph, 1, &server).await;
    assert_eq!(sent[0]["recipient"]["id"], "555");
    assert_eq!(sent[0]["messaging_type"], "RESPONSE");
    assert_eq!(
        sent[0]["message"]["text"],
        "Order 66 confirmed, @jane! Your request has been received."
    );
    assert_eq!(sent[0]["authorization"], format!("Bearer {TOKEN}"));
    // The profile lookup authenticates by header too: no token in any URL.
    let lookups: Vec<_> = graph
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "GET")
        .collect();
    assert_eq!(lookups.len(), 1);
    assert_eq!(lookups[0].url.query(), Some("fields=name%2Cusername"));
    assert_eq!(
        lookups[0].headers["authorization"],
        format!("Bearer {TOKEN}").as_str()
    );

    // Meta redelivers the same DM; the business echoes (from the app) a text with the
    // keyword; the echo of our own reply arrives: none of them is answered.
    server.deliver_webhook(&body).await;
    server
        .deliver_webhook(&dm("mid.human", "ORDER66 is noted", true))
        .await;
    server
        .deliver_webhook(&dm("mid.reply.1", "Order 66 confirmed, @jane!", true))
        .await;
    server.settled().await;
    assert_eq!(sends(&graph, 1, &server).await.len(), 1);
}

#[tokio::test]
async fn a_broken_profile_lookup_uses_the_fallback_name() {
    let graph = graph(ResponseTemplate::new(500)).await;
    let server = server_with_order66(&graph).await;
    server
        .deliver_webhook(&dm("mid.fallback", "order66", false))
        .await;
    let sent = sends(&graph, 1, &server).await;
    assert_eq!(
        sent[0]["message"]["text"],
        "Order 66 confirmed, there! Your request has been received."
    );
    // The failure is logged, and the token with it nowhere.
    let output = server.output();
    assert!(output.contains("profile lookup failed"), "{output}");
    assert!(!output.contains(TOKEN), "{output}");
}

#[tokio::test]
async fn an_unreachable_graph_api_leaves_no_token_in_the_log() {
    // A port nothing listens on: the request itself fails, and its error text would carry
    // the URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let server = server_with_rule(
        &format!("http://{address}/v21.0"),
        "hello",
        "Hi {username}!",
    )
    .await;
    server
        .deliver_webhook(&dm("mid.unreachable", "hello", false))
        .await;
    server.wait_for_log(&["profile lookup failed"]).await;
    // The send fails too; wait until the auto-reply worker has counted its outcome.
    server
        .eventually("the auto-reply's outcome counted", async || {
            let metrics = server.get("/metrics").await.text().await.unwrap();
            metrics
                .contains("insta_router_auto_replies_total")
                .then_some(())
        })
        .await;
    let output = server.output();
    assert!(!output.contains(TOKEN), "{output}");
    assert!(!output.contains("access_token"), "{output}");
}
