//! `GET /`, `GET /health` and `GET /ready`.

use insta_router_blackbox::TestServer;
use serde_json::Value;

#[tokio::test]
async fn root_names_the_service_and_its_version() {
    let server = TestServer::start().await;
    let response = server.get("/").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], "insta-router");
    assert_eq!(body["version"], "0.1.0");
    assert_eq!(body["webhook_url"], "/webhooks/instagram");
    assert_eq!(body["environment"], "development");
}

#[tokio::test]
async fn health_reports_the_database() {
    let server = TestServer::start().await;
    let response = server.get("/health").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["database"], "ok");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn unknown_routes_are_problem_json_404() {
    let server = TestServer::start().await;
    let response = server.get("/nope").await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

/// Needs a database server the test can take away; runs in the PostgreSQL suite
/// (`TEST_BLACKBOX_DB=postgres`), which `.ci/run` always runs.
#[tokio::test]
async fn health_is_503_when_the_database_goes_away() {
    if insta_router_blackbox::backend() != "postgres" {
        return;
    }
    let server = TestServer::start().await;
    assert_eq!(server.get("/health").await.status(), 200);
    let admin = std::env::var("TEST_POSTGRES_URL").unwrap();
    let name = server.db.url.rsplit('/').next().unwrap().to_owned();
    let status = std::process::Command::new("psql")
        .args([&admin, "-qc", &format!("DROP DATABASE {name} WITH (FORCE)")])
        .status()
        .expect("run psql");
    assert!(status.success());
    let response = server.get("/health").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["database"], "unreachable");
}

#[tokio::test]
async fn ready_turns_503_on_sigterm_while_requests_are_still_served() {
    let mut server = TestServer::builder()
        .env("SHUTDOWN_DRAIN_DELAY", "30")
        .env("INSTAGRAM_APP_SECRET", "drain-secret")
        .start()
        .await;
    let response = server.get("/ready").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["schema"], "current");
    assert_eq!(body["workers"], "running");
    assert_eq!(body["shutting_down"], false);

    server.send_sigterm();
    let body = server
        .eventually("/ready to turn 503", async || {
            let response = server.get("/ready").await;
            (response.status() == 503).then_some(())?;
            response.json::<Value>().await.ok()
        })
        .await;
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["shutting_down"], true, "{body}");
    // Still serving while draining: the process is alive, and a webhook is stored.
    assert_eq!(server.get("/health").await.status(), 200);
    let stored = server
        .deliver_webhook(&insta_router_blackbox::text_webhook(
            "17841400000000001",
            "mid.draining",
            "hello",
        ))
        .await;
    assert_eq!(stored["messages_processed"], 1, "{stored}");

    // A second signal skips the rest of the drain.
    server.send_sigterm();
    let status = server.wait_for_exit();
    assert!(status.success(), "{status:?}\n{}", server.output());
    assert!(server.output().contains("/ready answers 503"));
}
