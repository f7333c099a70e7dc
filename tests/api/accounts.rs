//! The accounts API, end to end.

use insta_router_blackbox::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

const TOKEN: &str = "IGQVJ-secret-access-token";
const SECRET: &str = "crm-signing-secret-value";

fn new_account(instagram_account_id: &str) -> Value {
    json!({
        "instagram_account_id": instagram_account_id,
        "username": "shop.example",
        "access_token": TOKEN,
        "crm_webhook_url": "https://crm.example/hooks/instagram",
        "webhook_secret": SECRET,
    })
}

/// Asserts the response is problem+json with `status`, and returns the document.
async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    body
}

fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `/api/v1/accounts/{id}` of an account as the API returned it.
fn account_path(created: &Value) -> String {
    format!(
        "/api/v1/accounts/{}",
        created["account_id"].as_str().unwrap()
    )
}

async fn patch(server: &TestServer, path: &str, body: &Value) -> reqwest::Response {
    server
        .api(Method::PATCH, path)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn create(server: &TestServer, body: &Value) -> reqwest::Response {
    server
        .api(Method::POST, "/api/v1/accounts")
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn create_then_get_returns_the_account_without_credentials() {
    let server = TestServer::start().await;
    let response = create(&server, &new_account("17841400000000001")).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let id = created["account_id"].as_str().unwrap();
    assert!(id.starts_with("acc_"));
    assert_eq!(location, format!("/api/v1/accounts/{id}"));
    assert_eq!(created["instagram_account_id"], "17841400000000001");
    assert_eq!(created["username"], "shop.example");
    assert_eq!(
        created["crm_webhook_url"],
        "https://crm.example/hooks/instagram"
    );
    assert_eq!(created["has_webhook_secret"], true);
    assert!(created.get("access_token").is_none() && created.get("webhook_secret").is_none());

    let fetched: Value = server
        .api(Method::GET, &location)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, created);
}

#[tokio::test]
async fn a_duplicate_instagram_account_id_is_409() {
    let server = TestServer::start().await;
    assert_eq!(create(&server, &new_account("dup")).await.status(), 201);
    let body = problem(create(&server, &new_account("dup")).await, 409).await;
    assert_eq!(error_fields(&body), ["instagram_account_id"]);
    let list: Value = server
        .api(Method::GET, "/api/v1/accounts")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn invalid_fields_are_422_naming_each_field() {
    let server = TestServer::start().await;
    let body = json!({
        "instagram_account_id": "has space",
        "username": "",
        "access_token": TOKEN,
        "crm_webhook_url": "not a url",
    });
    let problem = problem(create(&server, &body).await, 422).await;
    // With the URL itself invalid, whether it lacks a secret is not judged.
    assert_eq!(
        error_fields(&problem),
        ["instagram_account_id", "username", "crm_webhook_url"]
    );

    let missing = json!({ "instagram_account_id": "1", "access_token": TOKEN });
    let problem = self::problem(create(&server, &missing).await, 422).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("username"),
        "{problem}"
    );

    let wrong_type = json!({ "instagram_account_id": 17841400000000001_u64, "username": "x", "access_token": TOKEN });
    self::problem(create(&server, &wrong_type).await, 422).await;

    let malformed = server
        .api(Method::POST, "/api/v1/accounts")
        .header("content-type", "application/json")
        .body("{\"instagram_account_id\": ")
        .send()
        .await
        .unwrap();
    self::problem(malformed, 422).await;

    let not_json = server
        .api(Method::POST, "/api/v1/accounts")
        .body("x=1")
        .send()
        .await
        .unwrap();
    self::problem(not_json, 415).await;

    let huge = json!({ "instagram_account_id": "1", "username": "x", "access_token": "a".repeat(100_000) });
    self::problem(create(&server, &huge).await, 413).await;
}

#[tokio::test]
async fn requests_without_a_bearer_token_are_401_before_the_body_is_read() {
    let server = TestServer::start().await;
    let url = format!("{}/api/v1/accounts", server.url);
    for auth in [None, Some("Basic abc"), Some("Bearer "), Some("Bearer    ")] {
        let mut request = server
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body("not json");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        problem(response, 401).await;
    }
    problem(server.client.get(&url).send().await.unwrap(), 401).await;
}

#[tokio::test]
async fn listing_pages_through_every_account() {
    let server = TestServer::start().await;
    for n in 0..5 {
        assert_eq!(
            create(&server, &new_account(&format!("ig{n}")))
                .await
                .status(),
            201
        );
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/accounts?limit=2".to_owned();
    loop {
        let page: Value = server
            .api(Method::GET, &path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(
            data.iter()
                .map(|a| a["instagram_account_id"].as_str().unwrap().to_owned()),
        );
        if page["has_more"] == false {
            assert!(page["next_cursor"].is_null());
            break;
        }
        path = format!(
            "/api/v1/accounts?limit=2&cursor={}",
            page["next_cursor"].as_str().unwrap()
        );
    }
    assert_eq!(seen, ["ig0", "ig1", "ig2", "ig3", "ig4"]);

    for bad in ["?limit=0", "?limit=201", "?limit=ten", "?cursor=%25%25%25"] {
        let response = server
            .api(Method::GET, &format!("/api/v1/accounts{bad}"))
            .send()
            .await
            .unwrap();
        problem(response, 422).await;
    }
}

#[tokio::test]
async fn patch_changes_only_what_is_sent() {
    let server = TestServer::start().await;
    let created: Value = create(&server, &new_account("p1"))
        .await
        .json()
        .await
        .unwrap();
    let path = account_path(&created);

    let renamed: Value = patch(
        &server,
        &path,
        &json!({ "username": "@renamed", "access_token": "new-token" }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(renamed["username"], "renamed");
    assert_eq!(renamed["crm_webhook_url"], created["crm_webhook_url"]);
    assert_eq!(renamed["created_at"], created["created_at"]);
    assert_ne!(renamed["updated_at"], created["updated_at"]);

    let cleared: Value = patch(&server, &path, &json!({ "crm_webhook_url": null }))
        .await
        .json()
        .await
        .unwrap();
    assert!(cleared["crm_webhook_url"].is_null());
    assert_eq!(cleared["username"], "renamed");

    let bad = patch(&server, &path, &json!({ "username": "bad name" })).await;
    assert_eq!(error_fields(&problem(bad, 422).await), ["username"]);

    create(&server, &new_account("p2")).await;
    let clash = patch(&server, &path, &json!({ "instagram_account_id": "p2" })).await;
    problem(clash, 409).await;
}

#[tokio::test]
async fn a_crm_url_cannot_be_set_without_a_secret() {
    let server = TestServer::start().await;
    let created: Value = create(
        &server,
        &json!({ "instagram_account_id": "n1", "username": "x", "access_token": TOKEN }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(created["crm_webhook_url"].is_null());
    assert_eq!(created["has_webhook_secret"], false);
    let path = account_path(&created);
    let response = patch(
        &server,
        &path,
        &json!({ "crm_webhook_url": "https://crm.example/x" }),
    )
    .await;
    assert_eq!(
        error_fields(&problem(response, 422).await),
        ["webhook_secret"]
    );
    let response = patch(
        &server,
        &path,
        &json!({ "crm_webhook_url": "https://crm.example/x", "webhook_secret": "whsec_c2VjcmV0" }),
    )
    .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn delete_then_every_operation_is_404() {
    let server = TestServer::start().await;
    let created: Value = create(&server, &new_account("d1"))
        .await
        .json()
        .await
        .unwrap();
    let path = account_path(&created);
    assert_eq!(
        server
            .api(Method::DELETE, &path)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    problem(server.api(Method::DELETE, &path).send().await.unwrap(), 404).await;
    problem(server.api(Method::GET, &path).send().await.unwrap(), 404).await;
    problem(patch(&server, &path, &json!({"username": "x"})).await, 404).await;
    problem(
        server
            .api(Method::GET, "/api/v1/accounts/not-an-id")
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    // The Instagram account id is free again.
    assert_eq!(create(&server, &new_account("d1")).await.status(), 201);
}

#[tokio::test]
async fn credentials_never_appear_in_any_response_or_log() {
    let server = TestServer::start().await;
    let mut bodies = Vec::new();
    let response = create(&server, &new_account("s1")).await;
    let created: Value = response.json().await.unwrap();
    bodies.push(created.to_string());
    let path = account_path(&created);
    for request in [
        server.api(Method::GET, &path),
        server.api(Method::GET, "/api/v1/accounts"),
        server
            .api(Method::PATCH, &path)
            .json(&json!({ "webhook_secret": format!("{SECRET}-2") })),
        server
            .api(Method::POST, "/api/v1/accounts")
            .json(&new_account("s1")),
    ] {
        bodies.push(request.send().await.unwrap().text().await.unwrap());
    }
    for body in &bodies {
        assert!(!body.contains(TOKEN) && !body.contains(SECRET), "{body}");
    }
    let output = server.output();
    assert!(
        !output.contains(TOKEN) && !output.contains(SECRET),
        "{output}"
    );
}
