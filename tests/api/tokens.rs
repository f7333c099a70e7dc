//! The access token's lifecycle: a long-lived token near its expiry is refreshed once and the
//! next send uses the new one; a dead token is told to the CRM once, however many sends fail.

use insta_router_blackbox::{TestServer, graph_fixture};
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CRM_SECRET: &str = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=";

async fn crm() -> MockServer {
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&crm)
        .await;
    crm
}

/// The CRM's events of `kind`, once at least `n` arrived.
async fn events(server: &TestServer, crm: &MockServer, kind: &str, n: usize) -> Vec<Value> {
    server
        .eventually(&format!("{n} {kind} at the CRM"), async || {
            let found: Vec<Value> = crm
                .received_requests()
                .await
                .unwrap()
                .iter()
                .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
                .filter(|b| b["type"] == kind)
                .collect();
            (found.len() >= n).then_some(found)
        })
        .await
}

async fn connect(server: &TestServer, crm: &MockServer, token: &str) -> String {
    let response = server
        .api(Method::POST, "/api/v1/accounts")
        .json(
            &json!({"instagram_account_id": "17841400000000001", "username": "myshop",
            "access_token": token, "crm_webhook_url": format!("{}/crm", crm.uri()),
            "webhook_secret": CRM_SECRET}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["account_id"].as_str().unwrap().to_owned()
}

async fn send(server: &TestServer, account: &str, recipient: &str, key: &str) -> String {
    let response = server
        .api(Method::POST, "/api/v1/messages/send")
        .json(
            &json!({"account_id": account, "recipient_id": recipient, "message": "Hi",
            "idempotency_key": key}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    body["message_id"].as_str().unwrap().to_owned()
}

fn micros_from_now(days: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    i64::try_from(now).unwrap() + days * 86_400_000_000
}

#[tokio::test]
async fn a_token_near_its_expiry_is_refreshed_once_and_the_next_send_uses_the_new_one() {
    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/refresh_access_token"))
        .and(header("authorization", "Bearer IGQVJ-old"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(graph_fixture("refresh-access-token.json")),
        )
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"recipient_id": "1234567890123456", "message_id": "mid.after.refresh"}),
        ))
        .mount(&graph)
        .await;
    let crm = crm().await;
    let server = TestServer::builder()
        .env("INSTAGRAM_API_BASE_URL", &graph.uri())
        .env("CRM_ALLOW_PRIVATE_NETWORKS", "true")
        .env("TOKEN_REFRESH_INTERVAL", "200ms")
        .secret("IGQVJ-old")
        .secret("IGQVJ-new")
        .secret(CRM_SECRET)
        .start()
        .await;
    let account = connect(&server, &crm, "IGQVJ-old").await;
    let fresh = server
        .api_json(Method::GET, &format!("/api/v1/accounts/{account}"))
        .await;
    assert_eq!(fresh["token_state"], "unknown", "{fresh}");

    // The token was set 55 days ago and expires in 5: due.
    let db = server.db.connect().await;
    insta_router_storage::testing::execute(
        &db,
        &format!(
            "UPDATE accounts SET token_set_at = {}, token_expires_at = {} WHERE id = '{account}'",
            micros_from_now(-55),
            micros_from_now(5)
        ),
    )
    .await;
    let refreshed = events(&server, &crm, "account.token_refreshed", 1).await;
    assert_eq!(refreshed[0]["data"]["account_id"], account.as_str());
    assert!(
        refreshed[0]["data"]["token_expires_at"].is_string(),
        "{}",
        refreshed[0]
    );
    let shown = server
        .api_json(Method::GET, &format!("/api/v1/accounts/{account}"))
        .await;
    assert_eq!(shown["token_state"], "valid", "{shown}");
    assert!(shown["token_expires_at"].is_string(), "{shown}");

    let id = send(&server, &account, "1234567890123456", "after-refresh").await;
    server
        .eventually("the send to go out", async || {
            let status = server
                .api_json(Method::GET, &format!("/api/v1/messages/{id}/status"))
                .await;
            (status["status"] == "sent").then_some(())
        })
        .await;
    let sends = insta_router_blackbox::graph_sends(&graph).await;
    assert_eq!(sends[0]["authorization"], "Bearer IGQVJ-new");
    // Refreshed once: by now the refresher has passed many times (every 200 ms).
    events(&server, &crm, "message.sent", 1).await;
    let refreshes = graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/refresh_access_token")
        .count();
    assert_eq!(refreshes, 1);
    assert_eq!(
        events(&server, &crm, "account.token_refreshed", 1)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn a_dead_token_is_told_to_the_crm_once_for_many_failed_sends() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": "Error validating access token: Session has expired", "type": "OAuthException", "code": 190, "error_subcode": 463}
        })))
        .mount(&graph)
        .await;
    let crm = crm().await;
    let server = TestServer::builder()
        .env("INSTAGRAM_API_BASE_URL", &graph.uri())
        .env("CRM_ALLOW_PRIVATE_NETWORKS", "true")
        .secret("IGQVJ-dead")
        .secret(CRM_SECRET)
        .start()
        .await;
    let account = connect(&server, &crm, "IGQVJ-dead").await;
    for n in 0..6 {
        send(
            &server,
            &account,
            &format!("12345678901234{n:02}"),
            &format!("k-{n}"),
        )
        .await;
    }
    // Every send fails (Meta's 190, or ours once the token is marked), each told to the CRM.
    events(&server, &crm, "message.failed", 6).await;
    server.settled().await;
    let invalid = events(&server, &crm, "account.token_invalid", 1).await;
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert!(
        invalid[0]["data"]["error"]
            .as_str()
            .unwrap()
            .contains("Session has expired"),
        "{}",
        invalid[0]
    );
    let shown = server
        .api_json(Method::GET, &format!("/api/v1/accounts/{account}"))
        .await;
    assert_eq!(shown["token_state"], "invalid", "{shown}");
}
