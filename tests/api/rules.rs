//! Auto-reply rules over HTTP: CRUD and the dry run.

use insta_router_blackbox::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

async fn account(server: &TestServer, instagram_id: &str) -> String {
    let response = server
        .api(Method::POST, "/api/v1/accounts")
        .json(&json!({
            "instagram_account_id": instagram_id,
            "username": "shop",
            "access_token": "IGQVJ-token",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["account_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn order66() -> Value {
    json!({
        "name": "order66",
        "priority": 10,
        "conditions": [{"type": "keywords", "any_of": ["order66"]}],
        "reply": {"text": "Order 66 confirmed, {username}! Your request has been received."},
    })
}

async fn send(
    server: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server.api(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn rules_round_trip_and_the_dry_run_says_why() {
    let server = TestServer::start().await;
    let account_id = account(&server, "17841400000000001").await;
    let base = format!("/api/v1/accounts/{account_id}/rules");

    let (status, created) = send(&server, Method::POST, &base, Some(order66())).await;
    assert_eq!(status, 201, "{created}");
    let rule_id = created["rule_id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "order66");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["cooldown_seconds"], 3600);
    let (_, list) = send(&server, Method::GET, &base, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let (status, one) = send(&server, Method::GET, &format!("{base}/{rule_id}"), None).await;
    assert_eq!(
        (status, one["rule_id"].as_str()),
        (200, Some(rule_id.as_str()))
    );

    // The dry run: which rule answers, with what, and why the others do not.
    let (status, trial) = send(
        &server,
        Method::POST,
        "/api/v1/rules/test",
        Some(json!({"account_id": account_id, "text": "Hi ORDER66 please"})),
    )
    .await;
    assert_eq!(status, 200, "{trial}");
    assert_eq!(trial["matched"], true);
    assert_eq!(trial["rule"]["rule_id"], rule_id.as_str());
    assert_eq!(
        trial["reply"],
        "Order 66 confirmed, @customer! Your request has been received."
    );
    let (_, miss) = send(
        &server,
        Method::POST,
        "/api/v1/rules/test",
        Some(json!({"account_id": account_id, "text": "hello"})),
    )
    .await;
    assert_eq!(miss["matched"], false);
    assert_eq!(miss["skipped"][0]["rule_id"], rule_id.as_str());
    assert_eq!(miss["skipped"][0]["reason"], "condition 0 does not match");

    // Replace: disabled, it no longer answers.
    let mut disabled = order66();
    disabled["enabled"] = json!(false);
    let (status, replaced) = send(
        &server,
        Method::PUT,
        &format!("{base}/{rule_id}"),
        Some(disabled),
    )
    .await;
    assert_eq!((status, &replaced["enabled"]), (200, &json!(false)));
    let (_, off) = send(
        &server,
        Method::POST,
        "/api/v1/rules/test",
        Some(json!({"account_id": account_id, "text": "order66"})),
    )
    .await;
    assert_eq!(off["skipped"][0]["reason"], "the rule is disabled");

    // Another account cannot see it.
    let other = account(&server, "17841400000000002").await;
    let (status, _) = send(
        &server,
        Method::GET,
        &format!("/api/v1/accounts/{other}/rules/{rule_id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);

    let (status, _) = send(&server, Method::DELETE, &format!("{base}/{rule_id}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = send(&server, Method::GET, &format!("{base}/{rule_id}"), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn invalid_rules_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let account_id = account(&server, "17841400000000001").await;
    let base = format!("/api/v1/accounts/{account_id}/rules");
    let bad = json!({
        "name": "bad",
        "conditions": [{"type": "keywords", "any_of": ["ok"]}, {"type": "regex", "pattern": "(unclosed"}],
        "reply": {"text": "Hello {customer}"},
    });
    let (status, problem) = send(&server, Method::POST, &base, Some(bad)).await;
    assert_eq!(status, 422, "{problem}");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["conditions[1].pattern", "reply.text"]);
    let (status, _) = send(
        &server,
        Method::POST,
        &base,
        Some(json!({"name": "x", "conditions": [{"type": "telepathy"}], "reply": {"text": "hi"}})),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = send(
        &server,
        Method::POST,
        "/api/v1/accounts/acc_00000000000000000000000000000000/rules",
        Some(order66()),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = send(
        &server,
        Method::POST,
        "/api/v1/rules/test",
        Some(json!({"account_id": account_id, "text": "x", "at": "yesterday"})),
    )
    .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn the_rules_file_seeds_connected_accounts_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.toml");
    std::fs::write(
        &file,
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rules.example.toml"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut server = TestServer::builder()
        .env("RULES_FILE", file.to_str().unwrap())
        .start()
        .await;
    // Not connected yet: nothing to seed.
    let account_id = account(&server, "17841400000000001").await;
    let base = format!("/api/v1/accounts/{account_id}/rules");
    let (_, list) = send(&server, Method::GET, &base, None).await;
    assert!(list["data"].as_array().unwrap().is_empty());
    // The next start seeds both example rules; the one after adds nothing.
    server.kill_and_restart().await;
    let (_, list) = send(&server, Method::GET, &base, None).await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["order66", "after hours"], "{}", server.output());
    server.kill_and_restart().await;
    let (_, list) = send(&server, Method::GET, &base, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
}
