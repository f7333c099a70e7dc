//! What every answer carries (security headers, the request id), CORS, and the answers to a
//! cursor this API never handed out.

use insta_router_blackbox::TestServer;
use insta_router_instagram::sign_body;
use reqwest::Method;
use serde_json::{Value, json};

const SECRET: &str = "instagram-app-secret";

fn assert_edges(response: &reqwest::Response, what: &str) {
    let headers = response.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    let id = headers["x-request-id"].to_str().unwrap();
    assert!(!id.is_empty(), "{what}");
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_a_request_id() {
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", SECRET)
        .start()
        .await;
    let body = r#"{"object":"instagram","entry":[]}"#;
    let unsigned = server
        .client
        .post(format!("{}/webhooks/instagram", server.url))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    assert_edges(&unsigned, "a refused webhook");
    let signed = server
        .post_webhook(body, Some(&sign_body(SECRET, body.as_bytes())))
        .await;
    assert_eq!(signed.status(), 200);
    assert_edges(&signed, "a stored webhook");
    let no_key = server
        .client
        .get(format!("{}/api/v1/accounts", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    assert_edges(&no_key, "401 from the authentication");
    for path in [
        "/",
        "/health",
        "/nope",
        "/openapi.json",
        "/docs/",
        "/redoc",
        "/metrics",
    ] {
        let response = server.get(path).await;
        assert_edges(&response, path);
    }
    let listed = server
        .api(Method::GET, "/api/v1/accounts")
        .send()
        .await
        .unwrap();
    assert_edges(&listed, "the API");
}

#[tokio::test]
async fn a_request_id_is_echoed_generated_or_replaced_and_on_the_log_lines() {
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", SECRET)
        .start()
        .await;
    let send = |id: Option<&str>| {
        let mut request = server
            .client
            .post(format!("{}/webhooks/instagram", server.url))
            .header("x-hub-signature-256", "sha256=00")
            .body("{}");
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        request.send()
    };
    // The refusal is logged inside the request's span.
    let refusal_logged = async |id: String| {
        let span = format!("request_id={id}}}");
        server.wait_for_log(&[&span, "webhook refused"]).await
    };
    let echoed = send(Some("trace-0190.abc")).await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-0190.abc");
    refusal_logged("trace-0190.abc".to_owned()).await;
    let generated = send(None).await.unwrap();
    let id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    refusal_logged(id).await;
    let replaced = send(Some("<script>alert(1)</script>")).await.unwrap();
    let id = replaced.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32, "a made-up id is not echoed: {id}");
    // Its refusal is logged under the id that replaced it, and the made-up one nowhere.
    refusal_logged(id.to_owned()).await;
    assert!(!server.output().contains("<script>"));
}

#[tokio::test]
async fn cors_is_closed_unless_an_origin_is_configured() {
    let preflight = |server: &TestServer, origin: &str| {
        server
            .client
            .request(Method::OPTIONS, format!("{}/api/v1/accounts", server.url))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let closed = TestServer::start().await;
    let response = preflight(&closed, "https://crm.example").await.unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin"),
        "{:?}",
        response.headers()
    );
    let simple = closed
        .api(Method::GET, "/api/v1/accounts")
        .header("origin", "https://crm.example")
        .send()
        .await
        .unwrap();
    assert!(!simple.headers().contains_key("access-control-allow-origin"));

    let open = TestServer::builder()
        .env(
            "CORS_ALLOWED_ORIGINS",
            "https://crm.example, https://admin.example",
        )
        .start()
        .await;
    let response = preflight(&open, "https://crm.example").await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://crm.example"
    );
    let simple = open
        .api(Method::GET, "/api/v1/accounts")
        .header("origin", "https://admin.example")
        .send()
        .await
        .unwrap();
    assert_eq!(simple.status(), 200);
    assert_eq!(
        simple.headers()["access-control-allow-origin"],
        "https://admin.example"
    );
    let other = preflight(&open, "https://evil.example").await.unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    assert_edges(&other, "a refused preflight");
}

#[tokio::test]
async fn a_bad_cors_origin_is_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = insta_router_blackbox::command(dir.path())
        .arg("serve")
        .env("CORS_ALLOWED_ORIGINS", "crm.example/path")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("CORS_ALLOWED_ORIGINS"));
}

#[tokio::test]
async fn a_cursor_this_api_never_returned_is_422_on_every_list() {
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", SECRET)
        .start()
        .await;
    let account: Value = server
        .api(Method::POST, "/api/v1/accounts")
        .json(&json!({"instagram_account_id": "17841400000000001", "username": "shop", "access_token": "t"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let account_id = account["account_id"].as_str().unwrap();
    // A conversation to page through.
    let body = insta_router_blackbox::text_webhook("17841400000000001", "mid.1", "hi");
    let stored = server
        .post_webhook(&body, Some(&sign_body(SECRET, body.as_bytes())))
        .await;
    assert_eq!(stored.status(), 200);
    let lists = [
        "/api/v1/accounts".to_owned(),
        "/api/v1/deliveries".to_owned(),
        format!("/api/v1/accounts/{account_id}/conversations"),
        "/api/v1/conversations/conv_555_17841400000000001/messages".to_owned(),
    ];
    for list in &lists {
        for cursor in ["", "x", "bm90LWEtY3Vyc29y", "%00%ff"] {
            let path = format!("{list}?cursor={cursor}");
            let response = server.api(Method::GET, &path).send().await.unwrap();
            assert_eq!(response.status(), 422, "{path}");
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{path}"
            );
            let problem: Value = response.json().await.unwrap();
            assert_eq!(problem["errors"][0]["field"], "cursor", "{path}: {problem}");
        }
    }
}
