//! Instagram comments: stored once each, forwarded to the CRM as `comment.created`.

use std::path::PathBuf;

use insta_router_blackbox::TestServer;
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const CRM_SECRET: &str = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/webhook")
            .join(name),
    )
    .unwrap()
}

#[tokio::test]
async fn a_comment_is_stored_once_and_reaches_the_crm_as_comment_created() {
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&crm)
        .await;
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", "comment-secret")
        .env("CRM_ALLOW_PRIVATE_NETWORKS", "true")
        .secret(CRM_SECRET)
        .secret("IGQVJ-token")
        .start()
        .await;
    let response = server
        .api(Method::POST, "/api/v1/accounts")
        .json(&json!({
            "instagram_account_id": "17841400000000001",
            "username": "myshop",
            "access_token": "IGQVJ-token",
            "crm_webhook_url": format!("{}/crm", crm.uri()),
            "webhook_secret": CRM_SECRET,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let account: Value = response.json().await.unwrap();

    // The comment, Meta's retry of it, a live comment and the account's own public reply.
    let mut processed = Vec::new();
    for name in [
        "comment-changes.json",
        "comment-changes.json",
        "live-comment.json",
        "comment-reply-ad.json",
    ] {
        let answer = server.deliver_webhook(&fixture(name)).await;
        processed.push(answer["messages_processed"].as_u64().unwrap());
    }
    assert_eq!(processed, [1, 0, 1, 1], "the retry stores nothing new");

    let bodies: Vec<Value> = server
        .eventually("three comment.created deliveries", async || {
            let requests = crm.received_requests().await.unwrap();
            (requests.len() >= 3).then_some(requests)
        })
        .await
        .iter()
        .map(|r| {
            standardwebhooks::Webhook::new(CRM_SECRET)
                .unwrap()
                .verify(&r.body, &r.headers)
                .unwrap();
            serde_json::from_slice(&r.body).unwrap()
        })
        .collect();
    server.settled().await;
    assert_eq!(crm.received_requests().await.unwrap().len(), 3, "once each");
    let by_id = |id: &str| {
        bodies
            .iter()
            .find(|b| b["data"]["comment_id"] == id)
            .unwrap_or_else(|| panic!("no delivery of {id}: {bodies:?}"))
    };
    let first = by_id("17900000000000099");
    assert_eq!(first["type"], "comment.created");
    let data = &first["data"];
    assert_eq!(data["account_id"], account["account_id"]);
    assert_eq!(data["kind"], "comment");
    assert_eq!(data["text"], "price?");
    assert_eq!(
        data["from"],
        json!({"id": "1234567890123456", "username": "jane"})
    );
    assert_eq!(data["media"]["id"], "17800000000000055");
    assert_eq!(data["media"]["media_product_type"], "FEED");
    assert_eq!(data["parent_id"], Value::Null);
    assert_eq!(data["live"], false);
    assert_eq!(data["by_account"], false);
    assert!(data.get("conversation_id").is_none(), "{data}");
    assert_eq!(by_id("17900000000000111")["data"]["live"], true);
    let reply = &by_id("17900000000000222")["data"];
    assert_eq!(reply["parent_id"], "17900000000000099");
    assert_eq!(reply["by_account"], true);
    assert_eq!(reply["media"]["ad_title"], "Winter sale");
}
