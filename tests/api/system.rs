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

/// The value of the series `name` with `labels` in a Prometheus text scrape (0 when absent).
fn series(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            series.split('{').next() == Some(name)
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_count_the_webhook_traffic_and_want_their_token() {
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", "metrics-secret")
        .env("METRICS_TOKEN", "scrape-token")
        .secret("scrape-token")
        .start()
        .await;
    assert_eq!(server.get("/metrics").await.status(), 401);
    let scrape = async || {
        let response = server
            .client
            .get(format!("{}/metrics", server.url))
            .bearer_auth("scrape-token")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    };
    let before = scrape().await;

    let account = "17841400000000001";
    for mid in ["mid.m1", "mid.m1", "mid.m2"] {
        let body = insta_router_blackbox::text_webhook(account, mid, "hello");
        server.deliver_webhook(&body).await;
    }
    let body = insta_router_blackbox::text_webhook(account, "mid.m3", "hello");
    assert_eq!(server.post_webhook(&body, None).await.status(), 401);
    assert_eq!(
        server.post_webhook(&body, Some("sha256=00")).await.status(),
        401
    );

    let after = scrape().await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        series(&after, name, labels) - series(&before, name, labels)
    };
    let requests = "insta_router_webhook_requests_total";
    assert_eq!(moved(requests, &[("result", "accepted")]), 2.0, "{after}");
    assert_eq!(moved(requests, &[("result", "duplicate")]), 1.0, "{after}");
    assert_eq!(moved(requests, &[("result", "unsigned")]), 1.0, "{after}");
    assert_eq!(
        moved(requests, &[("result", "bad_signature")]),
        1.0,
        "{after}"
    );
    assert_eq!(moved(requests, &[("result", "failed")]), 0.0, "{after}");
    assert_eq!(
        moved("insta_router_webhook_events_total", &[("kind", "message")]),
        3.0,
        "{after}"
    );
    assert_eq!(
        moved("insta_router_ingest_seconds_count", &[]),
        3.0,
        "{after}"
    );
    let groups = moved("insta_router_ingest_group_requests_count", &[]);
    assert!((1.0..=3.0).contains(&groups), "{groups}\n{after}");
    assert_eq!(
        moved("insta_router_ingest_group_requests_sum", &[]),
        3.0,
        "{after}"
    );

    // The gauges come with the housekeeping tick (every 5 s).
    let gauges = server
        .eventually("the job and pool gauges", async || {
            let text = scrape().await;
            (text.contains("insta_router_jobs{") && text.contains("insta_router_db_connections{"))
                .then_some(text)
        })
        .await;
    // Two new messages, each with an auto-reply job for an account that is not configured.
    let auto_replies: f64 = ["queued", "running", "dead"]
        .iter()
        .map(|s| {
            series(
                &gauges,
                "insta_router_jobs",
                &[("kind", "auto_reply"), ("status", s)],
            )
        })
        .sum();
    assert!(auto_replies <= 2.0, "{gauges}");
    assert!(
        series(&gauges, "insta_router_db_connections", &[("state", "idle")])
            + series(
                &gauges,
                "insta_router_db_connections",
                &[("state", "in_use")]
            )
            >= 1.0,
        "{gauges}"
    );
}
