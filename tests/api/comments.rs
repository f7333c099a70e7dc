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

/// A `comments` notification of comment `id` by `author`, made `ago` before now.
fn comment_webhook(id: &str, author: &str, ago: std::time::Duration, live: bool) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    json!({
        "object": "instagram",
        "entry": [{
            "id": "17841400000000001",
            "time": u64::try_from((now - ago).as_millis()).unwrap(),
            "changes": [{
                "field": if live { "live_comments" } else { "comments" },
                "value": {
                    "id": id,
                    "from": {"id": author, "username": "jane"},
                    "text": "PRICE",
                    "media": {"id": "17800000000000055", "media_product_type": if live { "LIVE" } else { "REELS" }},
                },
            }],
        }],
    })
    .to_string()
}

#[tokio::test]
async fn a_private_reply_goes_out_once_addressed_to_the_comment_within_metas_rules() {
    use wiremock::matchers::path;

    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(insta_router_blackbox::graph_fixture("private-reply.json")),
        )
        .mount(&graph)
        .await;
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", "comment-secret")
        .env("INSTAGRAM_API_BASE_URL", &graph.uri())
        .secret("IGQVJ-token")
        .start()
        .await;
    let account: Value = server
        .api(Method::POST, "/api/v1/accounts")
        .json(
            &json!({"instagram_account_id": "17841400000000001", "username": "myshop",
            "access_token": "IGQVJ-token"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let account_id = account["account_id"].as_str().unwrap().to_owned();
    let hour = std::time::Duration::from_secs(3600);
    for (id, ago, live) in [
        ("17900000000000301", hour, false),
        ("17900000000000302", 8 * 24 * hour, false),
        ("17900000000000303", 5 * hour, true),
    ] {
        server
            .deliver_webhook(&comment_webhook(id, "1234567890123456", ago, live))
            .await;
    }
    let reply = async |comment: &str, key: &str| {
        server
            .api(
                Method::POST,
                &format!("/api/v1/comments/{comment}/private-reply"),
            )
            .json(&json!({"account_id": account_id, "text": "Here is the link: https://shop.example/p/42",
                "idempotency_key": key}))
            .send()
            .await
            .unwrap()
    };

    let first = reply("17900000000000301", "reply-301").await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let id = first["message_id"].as_str().unwrap().to_owned();
    let status = server
        .eventually("the private reply to be sent", async || {
            let status = server
                .api_json(Method::GET, &format!("/api/v1/messages/{id}/status"))
                .await;
            (status["status"] == "sent").then_some(status)
        })
        .await;
    assert_eq!(status["comment_id"], "17900000000000301");
    assert_eq!(status["recipient_id"], "1234567890123456");
    assert_eq!(status["instagram_message_id"], "mid.private.1");

    // A retry with the key replays; another reply to the comment is refused; so are a
    // comment over 7 days old, a live comment of a broadcast that ended, and an unknown one.
    let again = reply("17900000000000301", "reply-301").await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let second = reply("17900000000000301", "reply-301-b").await;
    assert_eq!(second.status(), 409);
    let problem: Value = second.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("private reply already"),
        "{problem}"
    );
    let old = reply("17900000000000302", "reply-302").await;
    assert_eq!(old.status(), 422);
    let problem: Value = old.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("7 days"),
        "{problem}"
    );
    assert_eq!(reply("17900000000000303", "reply-303").await.status(), 422);
    assert_eq!(reply("17900000000000399", "reply-399").await.status(), 404);

    server.settled().await;
    let sends = insta_router_blackbox::graph_sends(&graph).await;
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(
        sends[0]["recipient"],
        json!({"comment_id": "17900000000000301"})
    );
    assert_eq!(
        sends[0]["message"]["text"],
        "Here is the link: https://shop.example/p/42"
    );
    assert!(sends[0].get("messaging_type").is_none(), "{}", sends[0]);

    // The reply opened a conversation with the author, which lists the reply.
    let conversations = server
        .api_json(
            Method::GET,
            &format!("/api/v1/accounts/{account_id}/conversations"),
        )
        .await;
    assert_eq!(
        conversations["data"][0]["customer_id"], "1234567890123456",
        "{conversations}"
    );
}

#[tokio::test]
async fn comment_rules_are_validated_and_the_dry_run_tries_them_on_a_comment() {
    let server = TestServer::start().await;
    let account: Value = server
        .api(Method::POST, "/api/v1/accounts")
        .json(
            &json!({"instagram_account_id": "17841400000000001", "username": "myshop",
            "access_token": "IGQVJ-token"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let account_id = account["account_id"].as_str().unwrap();
    let rules = format!("/api/v1/accounts/{account_id}/rules");
    let create = async |rule: Value| {
        server
            .api(Method::POST, &rules)
            .json(&rule)
            .send()
            .await
            .unwrap()
    };
    let created = create(json!({
        "name": "price on the winter reel",
        "conditions": [
            {"type": "comment", "media_ids": ["17800000000000055"]},
            {"type": "keywords", "any_of": ["price"]},
        ],
        "reply": {"text": "Hi {username}, here is the link: https://shop.example/p/42",
                  "public_reply": "Sent you a DM, {username}!"},
    }))
    .await;
    assert_eq!(created.status(), 201);
    let rule: Value = created.json().await.unwrap();
    assert_eq!(
        rule["reply"]["public_reply"], "Sent you a DM, {username}!",
        "{rule}"
    );
    for (bad, field) in [
        (
            json!({"name": "x", "conditions": [{"type": "comment"}, {"type": "story_mention"}],
                   "reply": {"text": "hi"}}),
            "conditions[1]",
        ),
        (
            json!({"name": "x", "conditions": [{"type": "first_comment"}], "reply": {"text": "hi"}}),
            "conditions[0]",
        ),
        (
            json!({"name": "x", "conditions": [{"type": "keywords", "any_of": ["a"]}],
                   "reply": {"text": "hi", "public_reply": "hello"}}),
            "reply.public_reply",
        ),
    ] {
        let refused = create(bad).await;
        assert_eq!(refused.status(), 422);
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }

    let test = async |body: Value| {
        let mut body = body;
        body["account_id"] = json!(account_id);
        let response = server
            .api(Method::POST, "/api/v1/rules/test")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()
    };
    let on_reel = test(json!({"message_type": "comment", "text": "PRICE?",
        "media_id": "17800000000000055"}))
    .await;
    assert_eq!(on_reel["matched"], true, "{on_reel}");
    assert!(rule["rule_id"].is_string(), "{rule}");
    assert_eq!(on_reel["rule"]["rule_id"], rule["rule_id"]);
    let elsewhere =
        test(json!({"message_type": "comment", "text": "price?", "media_id": "1"})).await;
    assert_eq!(elsewhere["matched"], false, "{elsewhere}");
    assert_eq!(
        elsewhere["skipped"][0]["reason"],
        "condition 0 does not match"
    );
    // A DM saying the same is not a comment: the comment rule never answers it.
    let dm = test(json!({"text": "price?"})).await;
    assert_eq!(dm["matched"], false, "{dm}");
}

#[tokio::test]
async fn a_comment_rule_answers_once_privately_and_publicly_and_the_api_cannot_reply_again() {
    use wiremock::matchers::path;

    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(insta_router_blackbox::graph_fixture("private-reply.json")),
        )
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path("/17900000000000401/replies"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "17900000000000402"})))
        .mount(&graph)
        .await;
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&crm)
        .await;
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", "comment-secret")
        .env("INSTAGRAM_API_BASE_URL", &graph.uri())
        .env("CRM_ALLOW_PRIVATE_NETWORKS", "true")
        .env("SUBSCRIBE_ON_CREATE", "false")
        .secret("IGQVJ-token")
        .secret(CRM_SECRET)
        .start()
        .await;
    let account: Value = server
        .api(Method::POST, "/api/v1/accounts")
        .json(
            &json!({"instagram_account_id": "17841400000000001", "username": "myshop",
            "access_token": "IGQVJ-token", "crm_webhook_url": format!("{}/crm", crm.uri()),
            "webhook_secret": CRM_SECRET}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let account_id = account["account_id"].as_str().unwrap().to_owned();
    let created = server
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{account_id}/rules"),
        )
        .json(&json!({
            "name": "price",
            "conditions": [{"type": "comment"}, {"type": "keywords", "any_of": ["price"]}],
            "reply": {"text": "Hi {username}! The link: https://shop.example/p/42",
                      "public_reply": "Sent you a DM!"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    // The comment, and Meta's retry of it.
    let webhook = comment_webhook(
        "17900000000000401",
        "1234567890123456",
        std::time::Duration::from_secs(60),
        false,
    );
    server.deliver_webhook(&webhook).await;
    server.deliver_webhook(&webhook).await;
    let answered = server
        .eventually("comment.auto_reply at the CRM", async || {
            let bodies: Vec<Value> = crm
                .received_requests()
                .await
                .unwrap()
                .iter()
                .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
                .collect();
            let sent = bodies.iter().any(|b| b["type"] == "message.sent");
            let answered: Vec<Value> = bodies
                .into_iter()
                .filter(|b| b["type"] == "comment.auto_reply")
                .collect();
            (sent && !answered.is_empty()).then_some(answered)
        })
        .await;
    server.settled().await;
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0]["data"]["comment_id"], "17900000000000401");
    assert_eq!(answered[0]["data"]["public_reply_id"], "17900000000000402");

    let sends = insta_router_blackbox::graph_sends(&graph).await;
    assert_eq!(sends.len(), 1, "exactly one private reply: {sends:?}");
    assert_eq!(
        sends[0]["recipient"],
        json!({"comment_id": "17900000000000401"})
    );
    assert_eq!(
        sends[0]["message"]["text"],
        "Hi @jane! The link: https://shop.example/p/42"
    );
    let public: Vec<Value> = graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/17900000000000401/replies")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(public, [json!({"message": "Sent you a DM!"})]);

    // The CRM's own private reply to the same comment is refused without calling Meta.
    let again = server
        .api(
            Method::POST,
            "/api/v1/comments/17900000000000401/private-reply",
        )
        .json(&json!({"account_id": account_id, "text": "hello", "idempotency_key": "crm-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    assert_eq!(insta_router_blackbox::graph_sends(&graph).await.len(), 1);
}
