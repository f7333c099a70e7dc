//! The API documentation is complete and served without any outside request.

use insta_router_blackbox::TestServer;
use serde_json::Value;

#[tokio::test]
async fn openapi_documents_every_route_with_errors() {
    let server = TestServer::start().await;
    let spec: Value = server.get("/openapi.json").await.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/", vec!["get"]),
        ("/health", vec!["get"]),
        ("/api/v1/accounts", vec!["get", "post"]),
        (
            "/api/v1/accounts/{account_id}",
            vec!["get", "patch", "delete"],
        ),
    ] {
        for method in methods {
            assert!(
                paths[path][method].is_object(),
                "{method} {path} is not documented"
            );
        }
    }
    let create = &paths["/api/v1/accounts"]["post"];
    for status in ["201", "401", "409", "422"] {
        assert!(
            create["responses"][status].is_object(),
            "POST /api/v1/accounts lacks {status}"
        );
    }
    assert!(spec["components"]["schemas"]["CreateAccountRequest"].is_object());
    assert!(spec["components"]["securitySchemes"]["api_key"].is_object());
}

/// Every `src=`/`href=` of a page must point at the server itself.
fn assert_no_outside_assets(page: &str) {
    for attr in ["src=\"", "href=\""] {
        for rest in page.split(attr).skip(1) {
            let target = rest.split('"').next().unwrap();
            assert!(!target.contains("//"), "page loads {target} from elsewhere");
        }
    }
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary() {
    let server = TestServer::start().await;
    let redirect = server
        .client
        .get(format!("{}/docs", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.url().path(), "/docs/");
    let page = server.get("/docs/").await.text().await.unwrap();
    assert!(page.contains("swagger-ui"));
    assert_no_outside_assets(&page);
    for asset in [
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "swagger-initializer.js",
    ] {
        let response = server.get(&format!("/docs/{asset}")).await;
        assert_eq!(response.status(), 200, "{asset}");
        assert!(response.bytes().await.unwrap().len() > 100, "{asset}");
    }
    let init = server
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"));
    // No online validator: the page would send the spec's URL to validator.swagger.io.
    assert!(
        init.contains(r#""validatorUrl": "none""#) || init.contains(r#""validatorUrl":"none""#),
        "{init}"
    );
    assert!(!init.contains("validator.swagger.io"), "{init}");
}

#[tokio::test]
async fn redoc_is_served_from_the_binary() {
    let server = TestServer::start().await;
    let page = server.get("/redoc").await.text().await.unwrap();
    assert!(page.contains("/redoc/redoc.standalone.js") && page.contains("/openapi.json"));
    assert_no_outside_assets(&page);
    let script = server.get("/redoc/redoc.standalone.js").await;
    assert_eq!(script.status(), 200);
    let script = script.text().await.unwrap();
    assert!(script.len() > 500_000);
    assert!(!script.contains("cdn.redoc.ly"));
    assert_eq!(server.get("/redoc/logo-mini.svg").await.status(), 200);
}

/// The shell block of docs/API.md's quickstart.
fn quickstart() -> String {
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/API.md"),
    )
    .unwrap();
    let after = page
        .split("<!-- quickstart:")
        .nth(1)
        .expect("docs/API.md marks its quickstart");
    let block = after.split("```sh\n").nth(1).unwrap();
    block.split("\n```").next().unwrap().to_owned()
}

#[tokio::test]
async fn the_api_quickstart_runs_as_written() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"recipient_id": "1234567890123456", "message_id": "mid.quickstart"}),
        ))
        .mount(&graph)
        .await;
    let server = TestServer::builder()
        .env("INSTAGRAM_API_BASE_URL", &graph.uri())
        .secret("IGAAexample")
        .start()
        .await;
    let (script, base, key) = (quickstart(), server.url.clone(), server.api_key.clone());
    let run = move || {
        std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .env("BASE", base)
            .env("ADMIN_KEY", key)
            .output()
            .unwrap()
    };
    let output = tokio::task::spawn_blocking(run).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The status and the conversations, as jq printed them.
    let (status, conversations) = stdout.split_once("}\n{").unwrap();
    let status: Value = serde_json::from_str(&format!("{status}}}")).unwrap();
    let conversations: Value = serde_json::from_str(&format!("{{{conversations}")).unwrap();
    assert_eq!(status["recipient_id"], "1234567890123456", "{status}");
    assert_eq!(status["idempotency_key"], "order-1001-shipped");
    assert!(conversations["data"].is_array(), "{conversations}");
    // The send went out to (the fake) Meta once, with the quickstart's text and token.
    let message = status["message_id"].as_str().unwrap().to_owned();
    server
        .eventually("the quickstart's send to be sent", async || {
            let body: Value = server
                .api(
                    reqwest::Method::GET,
                    &format!("/api/v1/messages/{message}/status"),
                )
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (body["status"] == "sent").then_some(())
        })
        .await;
    let sent = insta_router_blackbox::graph_sends(&graph).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["message"]["text"], "Hi! Your order has shipped.");
}
