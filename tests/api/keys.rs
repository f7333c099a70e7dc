//! API keys: every authenticated route refuses a missing, bad or revoked key; an account key
//! reaches its own account only, on every route; keys are made, listed and revoked from the
//! command line and the API, and a revocation holds at once on every instance.

use std::time::Duration;

use insta_router_blackbox::{TestServer, text_webhook};
use insta_router_instagram::sign_body;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "instagram-app-secret";
const IG_A: &str = "17841400000000001";
const IG_B: &str = "17841400000000002";

async fn server(graph: &MockServer) -> TestServer {
    TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", SECRET)
        .env("INSTAGRAM_API_BASE_URL", &graph.uri())
        .env("CRM_ALLOW_PRIVATE_NETWORKS", "true")
        .env("DELIVERY_POLL_INTERVAL_MS", "50")
        .secret(&format!("token-{IG_A}"))
        .secret(&format!("token-{IG_B}"))
        .secret("crm-secret")
        .start()
        .await
}

async fn graph() -> MockServer {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"recipient_id": "555", "message_id": "mid.sent"})),
        )
        .mount(&graph)
        .await;
    graph
}

/// Every operation of the served document that requires an API key, as (method, path) with
/// its parameters filled in by `fill`.
async fn secured_operations(server: &TestServer) -> Vec<(Method, String)> {
    let spec: Value = server.get("/openapi.json").await.json().await.unwrap();
    let mut operations = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (verb, operation) in item.as_object().unwrap() {
            if operation["security"].is_null() {
                continue;
            }
            let method = Method::from_bytes(verb.to_ascii_uppercase().as_bytes()).unwrap();
            operations.push((method, fill(path)));
        }
    }
    operations
}

/// A documented path with made-up ids of the right shapes.
fn fill(path: &str) -> String {
    path.replace("{account_id}", "acc_0190000000007000800000000000000a")
        .replace("{conversation_id}", "conv_555_17841400000000001")
        .replace("{delivery_id}", "dlv_0190000000007000800000000000000a")
        .replace("{rule_id}", "rule_0190000000007000800000000000000a")
        .replace("{message_id}", "msg_0190000000007000800000000000000a")
        .replace("{key_id}", "key_0190000000007000800000000000000a")
}

fn request(
    server: &TestServer,
    method: &Method,
    path: &str,
    auth: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut request = server
        .client
        .request(method.clone(), format!("{}{path}", server.url))
        .header("content-type", "application/json")
        .body("{}");
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    request
}

#[tokio::test]
async fn every_authenticated_route_refuses_a_missing_bad_or_revoked_key() {
    let graph = graph().await;
    let server = server(&graph).await;
    let revoked: Value = server
        .api(Method::POST, "/api/v1/api-keys")
        .json(&json!({"name": "to revoke"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let revoked_key = revoked["api_key"].as_str().unwrap().to_owned();
    let revoked_id = revoked["key_id"].as_str().unwrap();
    assert_eq!(
        server
            .api(Method::DELETE, &format!("/api/v1/api-keys/{revoked_id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let operations = secured_operations(&server).await;
    assert!(operations.len() >= 20, "{operations:?}");
    let unknown = format!("Bearer irk_{}", "u".repeat(43));
    let revoked = format!("Bearer {revoked_key}");
    for (method, path) in &operations {
        for auth in [
            None,
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic dXNlcjpwYXNz"),
            Some("Bearer not-a-key"),
            Some(unknown.as_str()),
            Some(revoked.as_str()),
        ] {
            let response = request(&server, method, path, auth).send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} with {auth:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
        }
    }
    // The admin key itself still works.
    let listed = server
        .api(Method::GET, "/api/v1/accounts")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
}

/// Two accounts with a conversation, a delivery, a rule and a send each; the ids.
struct Shop {
    account: String,
    conversation: String,
    delivery: String,
    rule: String,
    send: String,
}

async fn shop(server: &TestServer, crm: &MockServer, ig: &str, username: &str) -> Shop {
    let account: Value = server
        .api(Method::POST, "/api/v1/accounts")
        .json(&json!({
            "instagram_account_id": ig, "username": username, "access_token": format!("token-{ig}"),
            "crm_webhook_url": format!("{}/crm", crm.uri()), "webhook_secret": "crm-secret",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let account = account["account_id"].as_str().unwrap().to_owned();
    let body = text_webhook(ig, &format!("mid.{ig}"), "hello");
    let response = server
        .post_webhook(&body, Some(&sign_body(SECRET, body.as_bytes())))
        .await;
    assert_eq!(response.status(), 200);
    let rule: Value = server
        .api(Method::POST, &format!("/api/v1/accounts/{account}/rules"))
        .json(&json!({"name": "hi", "conditions": [{"type": "keywords", "any_of": ["zzz"]}], "reply": {"text": "hi"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let send: Value = server
        .api(Method::POST, "/api/v1/messages/send")
        .json(&json!({"account_id": account, "recipient_id": "555", "message": "hi", "idempotency_key": format!("k-{ig}")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let delivery = server
        .eventually("the account's delivery", async || {
            let listed: Value = server
                .api(
                    Method::GET,
                    &format!("/api/v1/deliveries?account_id={account}"),
                )
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            listed["data"][0]["delivery_id"].as_str().map(str::to_owned)
        })
        .await;
    Shop {
        conversation: format!("conv_555_{ig}"),
        account,
        delivery,
        rule: rule["rule_id"].as_str().unwrap().to_owned(),
        send: send["message_id"].as_str().unwrap().to_owned(),
    }
}

async fn status(
    server: &TestServer,
    key: &str,
    method: Method,
    path: &str,
    body: Value,
) -> StatusCode {
    server
        .api_as(key, method, path)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn an_account_key_reaches_its_own_account_only_on_every_route() {
    let graph = graph().await;
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&crm)
        .await;
    let server = server(&graph).await;
    let a = shop(&server, &crm, IG_A, "shop_a").await;
    let b = shop(&server, &crm, IG_B, "shop_b").await;
    let made: Value = server
        .api(Method::POST, "/api/v1/api-keys")
        .json(&json!({"name": "shop a", "account_id": a.account}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(made["scope"], "account");
    let key = made["api_key"].as_str().unwrap().to_owned();

    // Its own account: every route answers.
    for (method, path, body, expected) in [
        (
            Method::GET,
            format!("/api/v1/accounts/{}", a.account),
            json!({}),
            200,
        ),
        (
            Method::PATCH,
            format!("/api/v1/accounts/{}", a.account),
            json!({"username": "shop_a2"}),
            200,
        ),
        (
            Method::GET,
            format!("/api/v1/accounts/{}/conversations", a.account),
            json!({}),
            200,
        ),
        (
            Method::GET,
            format!("/api/v1/conversations/{}/messages", a.conversation),
            json!({}),
            200,
        ),
        (
            Method::GET,
            format!("/api/v1/deliveries/{}", a.delivery),
            json!({}),
            200,
        ),
        (
            Method::GET,
            format!("/api/v1/accounts/{}/rules", a.account),
            json!({}),
            200,
        ),
        (
            Method::GET,
            format!("/api/v1/accounts/{}/rules/{}", a.account, a.rule),
            json!({}),
            200,
        ),
        (
            Method::GET,
            format!("/api/v1/messages/{}/status", a.send),
            json!({}),
            200,
        ),
        (
            Method::POST,
            "/api/v1/rules/test".to_owned(),
            json!({"account_id": a.account, "text": "zzz"}),
            200,
        ),
        (
            Method::POST,
            "/api/v1/messages/send".to_owned(),
            json!({"account_id": a.account, "recipient_id": "555", "message": "again", "idempotency_key": "own-2"}),
            202,
        ),
        (
            Method::POST,
            format!("/api/v1/accounts/{}/deliveries/replay", a.account),
            json!({}),
            202,
        ),
    ] {
        assert_eq!(
            status(&server, &key, method.clone(), &path, body).await,
            expected,
            "{method} {path}"
        );
    }

    // The other account's resources do not exist for it.
    for (method, path, body) in [
        (
            Method::GET,
            format!("/api/v1/accounts/{}", b.account),
            json!({}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/accounts/{}", b.account),
            json!({"username": "stolen"}),
        ),
        (
            Method::GET,
            format!("/api/v1/accounts/{}/conversations", b.account),
            json!({}),
        ),
        (
            Method::GET,
            format!("/api/v1/conversations/{}/messages", b.conversation),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/conversations/{}/read", b.conversation),
            json!({}),
        ),
        (
            Method::GET,
            format!("/api/v1/deliveries/{}", b.delivery),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/deliveries/{}/retry", b.delivery),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/accounts/{}/deliveries/replay", b.account),
            json!({}),
        ),
        (
            Method::GET,
            format!("/api/v1/accounts/{}/rules", b.account),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/accounts/{}/rules", b.account),
            json!({"name": "x", "conditions": [{"type": "keywords", "any_of": ["x"]}], "reply": {"text": "x"}}),
        ),
        (
            Method::GET,
            format!("/api/v1/accounts/{}/rules/{}", b.account, b.rule),
            json!({}),
        ),
        (
            Method::PUT,
            format!("/api/v1/accounts/{}/rules/{}", b.account, b.rule),
            json!({"name": "x", "conditions": [{"type": "keywords", "any_of": ["x"]}], "reply": {"text": "x"}}),
        ),
        (
            Method::DELETE,
            format!("/api/v1/accounts/{}/rules/{}", b.account, b.rule),
            json!({}),
        ),
        (
            Method::POST,
            "/api/v1/rules/test".to_owned(),
            json!({"account_id": b.account, "text": "zzz"}),
        ),
        (
            Method::POST,
            "/api/v1/messages/send".to_owned(),
            json!({"account_id": b.account, "recipient_id": "555", "message": "spoof", "idempotency_key": "spoof-1"}),
        ),
        (
            Method::GET,
            format!("/api/v1/messages/{}/status", b.send),
            json!({}),
        ),
        (
            Method::POST,
            "/webhooks/send".to_owned(),
            json!({"account_id": b.account, "recipient_id": "555", "message_text": "spoof"}),
        ),
    ] {
        let response = server
            .api_as(&key, method.clone(), &path)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
        let problem: Value = response.json().await.unwrap();
        assert!(!problem.to_string().contains("shop_b"), "{problem}");
    }
    // Admin operations are forbidden.
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/accounts".to_owned(),
            json!({"instagram_account_id": "9", "username": "x", "access_token": "t"}),
        ),
        (
            Method::DELETE,
            format!("/api/v1/accounts/{}", a.account),
            json!({}),
        ),
        (
            Method::DELETE,
            format!("/api/v1/accounts/{}", b.account),
            json!({}),
        ),
        (Method::GET, "/api/v1/api-keys".to_owned(), json!({})),
        (Method::POST, "/api/v1/api-keys".to_owned(), json!({})),
        (
            Method::DELETE,
            format!("/api/v1/api-keys/{}", made["key_id"].as_str().unwrap()),
            json!({}),
        ),
    ] {
        assert_eq!(
            status(&server, &key, method.clone(), &path, body).await,
            403,
            "{method} {path}"
        );
    }
    // Lists are filtered.
    let accounts: Value = server
        .api_as(&key, Method::GET, "/api/v1/accounts")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = accounts["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.account.as_str()]);
    let deliveries: Value = server
        .api_as(&key, Method::GET, "/api/v1/deliveries")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!deliveries["data"].as_array().unwrap().is_empty());
    for delivery in deliveries["data"].as_array().unwrap() {
        assert_eq!(delivery["account_id"], a.account.as_str(), "{delivery}");
    }
    let other: Value = server
        .api_as(
            &key,
            Method::GET,
            &format!("/api/v1/deliveries?account_id={}", b.account),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["data"], json!([]));
    // Nothing of B changed.
    let b_now: Value = server
        .api(Method::GET, &format!("/api/v1/accounts/{}", b.account))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b_now["username"], "shop_b");
    let rules: Value = server
        .api(
            Method::GET,
            &format!("/api/v1/accounts/{}/rules", b.account),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rules["data"].as_array().unwrap().len(), 1, "{rules}");
    // Deleting an account revokes its keys.
    assert_eq!(
        status(
            &server,
            &server.api_key,
            Method::DELETE,
            &format!("/api/v1/accounts/{}", a.account),
            json!({})
        )
        .await,
        204
    );
    assert_eq!(
        status(
            &server,
            &key,
            Method::GET,
            &format!("/api/v1/accounts/{}", a.account),
            json!({})
        )
        .await,
        401
    );
}

fn cli(server: &TestServer, args: &[&str]) -> std::process::Output {
    insta_router_blackbox::command(server.dir.path())
        .env("DATABASE_URL", &server.db.url)
        .arg("api-key")
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn keys_from_the_command_line_work_and_a_revocation_holds_at_once_everywhere() {
    let graph = graph().await;
    let first = server(&graph).await;
    assert!(first.api_key.starts_with("irk_"), "{}", first.output());
    let second = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", SECRET)
        .start_sharing(&first)
        .await;
    assert!(
        !second.output().contains("admin API key:"),
        "a key exists: no second bootstrap"
    );

    let made = cli(&first, &["create", "--name", "ci pipeline", "--json"]);
    assert!(made.status.success(), "{made:?}");
    let made: Value = serde_json::from_slice(&made.stdout).unwrap();
    let key = made["api_key"].as_str().unwrap().to_owned();
    let id = made["key_id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("irk_") && key.len() >= 4 + 32, "{key}");
    assert!(key[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
    assert!(id.starts_with("key_"));
    assert_eq!(made["scope"], "admin");
    for server in [&first, &second] {
        assert_eq!(
            status(server, &key, Method::GET, "/api/v1/accounts", json!({})).await,
            200
        );
    }

    // The list shows every key, never a key's text; last use is recorded.
    let listed = cli(&first, &["list", "--json"]);
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(!text.contains("irk_"), "{text}");
    let entries: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let entry = entries.iter().find(|e| e["key_id"] == id.as_str()).unwrap();
    assert_eq!(entry["name"], "ci pipeline");
    assert!(entry["last_used_at"].is_string(), "{entry}");
    assert!(entry["revoked_at"].is_null());
    let api_list: Value = first
        .api(Method::GET, "/api/v1/api-keys")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!api_list.to_string().contains("irk_"), "{api_list}");
    assert!(api_list.as_array().unwrap().len() >= 2);

    // An account key for an account that does not exist is refused.
    let refused = cli(
        &first,
        &[
            "create",
            "--account",
            "acc_0190000000007000800000000000000a",
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not found"));

    let revoked = cli(&first, &["revoke", &id]);
    assert!(revoked.status.success(), "{revoked:?}");
    for server in [&first, &second] {
        assert_eq!(
            status(server, &key, Method::GET, "/api/v1/accounts", json!({})).await,
            401,
            "revoked on every instance, no restart"
        );
    }
    let unknown = cli(&first, &["revoke", "key_0190000000007000800000000000000a"]);
    assert!(!unknown.status.success());
    // The key's text is nowhere in the database: only its hash.
    let db = first.db.connect().await;
    let rows = insta_router_storage::testing::rows(&db, "SELECT key_hash FROM api_keys").await;
    for row in &rows {
        assert_eq!(row["key_hash"].as_str().unwrap().len(), 64);
    }
    assert!(!format!("{rows:?}").contains(&key[4..]));
}

#[tokio::test]
async fn production_never_makes_a_key_by_itself() {
    let server = TestServer::builder()
        .env("ENVIRONMENT", "production")
        .env("INSTAGRAM_APP_SECRET", SECRET)
        .env("FACEBOOK_VERIFY_TOKEN", "verify")
        .start()
        .await;
    assert!(server.api_key.is_empty());
    let output = server.output();
    assert!(!output.contains("admin API key:"), "{output}");
    assert!(output.contains("api-key create"), "{output}");
}

async fn until_ok(server: &TestServer, key: &str, retry_after: u64) -> StatusCode {
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    status(server, key, Method::GET, "/api/v1/accounts", json!({})).await
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_recover() {
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", SECRET)
        .env("API_RATE_LIMIT", "2")
        .env("AUTH_FAILURE_LIMIT", "3")
        .start()
        .await;
    let other: Value = server
        .api(Method::POST, "/api/v1/api-keys")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let other = other["api_key"].as_str().unwrap().to_owned();
    // A burst of twice the rate, then 429.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            status(
                &server,
                &server.api_key,
                Method::GET,
                "/api/v1/accounts",
                json!({}),
            )
            .await
            .as_u16(),
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let limited = server
        .api(Method::GET, "/api/v1/accounts")
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    // Another key has its own budget; the first recovers after Retry-After.
    assert_eq!(
        status(&server, &other, Method::GET, "/api/v1/accounts", json!({})).await,
        200
    );
    assert_eq!(until_ok(&server, &server.api_key, retry_after).await, 200);

    // Failed authentications from one address: 401, then 429; a good key still passes.
    let bad = format!("irk_{}", "b".repeat(43));
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            status(&server, &bad, Method::GET, "/api/v1/accounts", json!({}))
                .await
                .as_u16(),
        );
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    assert_eq!(
        status(&server, &other, Method::GET, "/api/v1/accounts", json!({})).await,
        200
    );

    // Forged webhooks: 401, then 429; Meta's signed ones never.
    let body = text_webhook(IG_A, "mid.signed", "hi");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            server
                .post_webhook(&body, Some("sha256=00"))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    for n in 0..10 {
        let body = text_webhook(IG_A, &format!("mid.signed.{n}"), "hi");
        let response = server
            .post_webhook(&body, Some(&sign_body(SECRET, body.as_bytes())))
            .await;
        assert_eq!(response.status(), 200);
    }
}
