//! Analytics through the API: message volumes per bucket from what was received, scoped like
//! every other route.

use insta_router_blackbox::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

const A: &str = "17841400000000001";
const B: &str = "17841400000000002";

/// A notification of a text from `customer` to `account`, sent now.
fn dm(account: &str, customer: &str, mid: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    json!({"object": "instagram", "entry": [{"id": account, "time": now, "messaging": [{
        "sender": {"id": customer}, "recipient": {"id": account}, "timestamp": now,
        "message": {"mid": mid, "text": "hi"}}]}]})
    .to_string()
}

async fn create(server: &TestServer, ig: &str) -> String {
    let body: Value = server
        .api(Method::POST, "/api/v1/accounts")
        .json(&json!({"instagram_account_id": ig, "username": "shop", "access_token": "IGQVJ-t"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["account_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn message_volumes_count_what_was_received_per_account_and_bucket() {
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", "analytics-secret")
        .env("SUBSCRIBE_ON_CREATE", "false")
        .start()
        .await;
    let a = create(&server, A).await;
    let b = create(&server, B).await;
    for (account, customer, mid) in [
        (A, "1001", "mid.a.1"),
        (A, "1001", "mid.a.2"),
        (A, "1002", "mid.a.3"),
        (B, "2001", "mid.b.1"),
    ] {
        server.deliver_webhook(&dm(account, customer, mid)).await;
    }
    // Meta's retry counts once.
    server.deliver_webhook(&dm(A, "1001", "mid.a.1")).await;

    let all = server
        .api_json(Method::GET, "/api/v1/analytics/messages?bucket=hour")
        .await;
    assert_eq!(all["account_id"], Value::Null);
    assert_eq!(all["totals"]["inbound"], 4, "{all}");
    // The last 24 hours, widened to whole hours: 25 buckets (24 on the hour exactly).
    let buckets = all["buckets"].as_array().unwrap().len();
    assert!((24..=25).contains(&buckets), "{all}");

    let one = server
        .api_json(
            Method::GET,
            &format!("/api/v1/analytics/messages?bucket=hour&account_id={a}"),
        )
        .await;
    assert_eq!(one["totals"]["inbound"], 3, "{one}");
    assert_eq!(one["totals"]["outbound"], 0, "{one}");
    assert_eq!(one["totals"]["unique_customers"], 2, "{one}");
    assert_eq!(one["totals"]["new_conversations"], 2, "{one}");
    let last = one["buckets"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["inbound"], json!({"text": 3}), "{one}");

    // An account key sees its own account by default, and no other.
    let key: Value = server
        .api(Method::POST, "/api/v1/api-keys")
        .json(&json!({"name": "crm-b", "account_id": b}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["api_key"].as_str().unwrap().to_owned();
    let own: Value = server
        .api_as(&key, Method::GET, "/api/v1/analytics/messages")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(own["account_id"], b.as_str());
    assert_eq!(own["totals"]["inbound"], 1, "{own}");
    let other = server
        .api_as(
            &key,
            Method::GET,
            &format!("/api/v1/analytics/messages?account_id={a}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);

    for bad in [
        "bucket=week",
        "from=yesterday",
        "bucket=hour&from=2020-01-01T00:00:00Z",
        "from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z",
    ] {
        let response = server
            .api(Method::GET, &format!("/api/v1/analytics/messages?{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{bad}");
    }
}

#[tokio::test]
async fn sends_are_counted_by_where_they_stand_and_failures_by_code() {
    use wiremock::matchers::{body_partial_json, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .and(body_partial_json(json!({"recipient": {"id": "1002"}})))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": "This person isn't available right now.", "code": 551}
        })))
        .with_priority(1)
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"message_id": "mid.ok"})))
        .mount(&graph)
        .await;
    let server = TestServer::builder()
        .env("INSTAGRAM_API_BASE_URL", &graph.uri())
        .env("SUBSCRIBE_ON_CREATE", "false")
        .start()
        .await;
    let a = create(&server, A).await;
    let b = create(&server, B).await;
    let mut ids = Vec::new();
    for (account, recipient) in [(&a, "1001"), (&a, "1002"), (&b, "1001")] {
        let body: Value = server
            .api(Method::POST, "/api/v1/messages/send")
            .json(
                &json!({"account_id": account, "recipient_id": recipient, "message": "hi",
                "idempotency_key": format!("k-{account}-{recipient}")}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(body["message_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        server
            .eventually("the send to settle", async || {
                let status = server
                    .api_json(Method::GET, &format!("/api/v1/messages/{id}/status"))
                    .await;
                (status["status"] != "pending").then_some(())
            })
            .await;
    }
    let one = server
        .api_json(
            Method::GET,
            &format!("/api/v1/analytics/sends?bucket=hour&account_id={a}"),
        )
        .await;
    assert_eq!(one["accepted"], 2, "{one}");
    assert_eq!(one["by_status"], json!({"failed": 1, "sent": 1}), "{one}");
    assert_eq!(one["by_code"], json!({"551": 1}), "{one}");
    let last = one["buckets"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["by_status"], json!({"failed": 1, "sent": 1}), "{one}");
    let all = server
        .api_json(Method::GET, "/api/v1/analytics/sends")
        .await;
    assert_eq!(all["accepted"], 3, "{all}");
}

#[tokio::test]
async fn deliveries_say_how_many_reached_the_crm_at_the_first_attempt_and_how_fast() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&crm)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&crm)
        .await;
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", "analytics-secret")
        .env("SUBSCRIBE_ON_CREATE", "false")
        .env("CRM_ALLOW_PRIVATE_NETWORKS", "true")
        .env("CRM_RETRY_SCHEDULE", "0s, 100ms, 100ms")
        .secret("crm-secret")
        .start()
        .await;
    let body: Value = server
        .api(Method::POST, "/api/v1/accounts")
        .json(
            &json!({"instagram_account_id": A, "username": "shop", "access_token": "IGQVJ-t",
            "crm_webhook_url": format!("{}/crm", crm.uri()), "webhook_secret": "crm-secret"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let account = body["account_id"].as_str().unwrap().to_owned();
    for n in 0..3 {
        server
            .deliver_webhook(&dm(A, "1001", &format!("mid.d.{n}")))
            .await;
    }
    let query = format!("/api/v1/analytics/deliveries?bucket=hour&account_id={account}");
    let stats = server
        .eventually("every delivery delivered", async || {
            let stats = server.api_json(Method::GET, &query).await;
            (stats["delivered"] == 3).then_some(stats)
        })
        .await;
    assert_eq!(stats["total"], 3, "{stats}");
    assert_eq!(stats["dead"], 0, "{stats}");
    assert_eq!(stats["pending"], 0, "{stats}");
    assert_eq!(stats["success_rate"], 1.0, "{stats}");
    let first = stats["first_attempt_rate"].as_f64().unwrap();
    assert!(
        (first - 2.0 / 3.0).abs() < 1e-9,
        "one needed a second attempt: {stats}"
    );
    let (p50, p99) = (
        stats["latency_p50_ms"].as_u64().unwrap(),
        stats["latency_p99_ms"].as_u64().unwrap(),
    );
    assert!(p50 <= p99, "{stats}");
}

/// The business's own message to `customer`, as Meta echoes it, `later_ms` after now.
fn echo(account: &str, customer: &str, mid: &str, later_ms: u128) -> String {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + later_ms;
    json!({"object": "instagram", "entry": [{"id": account, "time": at, "messaging": [{
        "sender": {"id": account}, "recipient": {"id": customer}, "timestamp": at,
        "message": {"mid": mid, "text": "on it", "is_echo": true}}]}]})
    .to_string()
}

#[tokio::test]
async fn response_times_say_how_fast_and_by_whom_each_turn_was_answered() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"message_id": "mid.api.answer"})),
        )
        .mount(&graph)
        .await;
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", "analytics-secret")
        .env("INSTAGRAM_API_BASE_URL", &graph.uri())
        .env("SUBSCRIBE_ON_CREATE", "false")
        .start()
        .await;
    let a = create(&server, A).await;
    for (customer, mid) in [
        ("1001", "mid.t.1"),
        ("1002", "mid.t.2"),
        ("1003", "mid.t.3"),
    ] {
        server.deliver_webhook(&dm(A, customer, mid)).await;
    }
    // 1001 is answered through the API, 1002 by a person in Instagram, 1003 not at all.
    let sent: Value = server
        .api(Method::POST, "/api/v1/messages/send")
        .json(
            &json!({"account_id": a, "recipient_id": "1001", "message": "Hello!",
            "idempotency_key": "answer-1001"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = sent["message_id"].as_str().unwrap().to_owned();
    server
        .eventually("the API answer to be sent", async || {
            let status = server
                .api_json(Method::GET, &format!("/api/v1/messages/{id}/status"))
                .await;
            (status["status"] == "sent").then_some(())
        })
        .await;
    server
        .deliver_webhook(&echo(A, "1002", "mid.t.echo", 1_000))
        .await;

    let times = server
        .api_json(
            Method::GET,
            &format!("/api/v1/analytics/response-times?bucket=hour&account_id={a}"),
        )
        .await;
    assert_eq!(times["turns"], 3, "{times}");
    assert_eq!(times["unanswered"], 1, "{times}");
    assert_eq!(times["overall"]["answered"], 2, "{times}");
    assert_eq!(times["by_responder"]["api"]["answered"], 1, "{times}");
    assert_eq!(times["by_responder"]["human"]["answered"], 1, "{times}");
    assert!(times["by_responder"].get("auto_reply").is_none(), "{times}");
    // Both answers came within minutes: two of the three turns.
    let within = times["overall"]["within_5m"].as_f64().unwrap();
    assert!((within - 2.0 / 3.0).abs() < 1e-9, "{times}");
    assert!(
        times["overall"]["p50_seconds"].as_f64().unwrap() < 300.0,
        "{times}"
    );
}

#[tokio::test]
async fn auto_replies_are_counted_per_rule_by_status() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"message_id": "mid.auto.reply"})),
        )
        .mount(&graph)
        .await;
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", "analytics-secret")
        .env("INSTAGRAM_API_BASE_URL", &graph.uri())
        .env("SUBSCRIBE_ON_CREATE", "false")
        .start()
        .await;
    let a = create(&server, A).await;
    let rule: Value = server
        .api(Method::POST, &format!("/api/v1/accounts/{a}/rules"))
        .json(
            &json!({"name": "order66", "conditions": [{"type": "keywords", "any_of": ["order66"]}],
            "reply": {"text": "Order 66 confirmed!"}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (customer, mid) in [("1001", "mid.r.1"), ("1002", "mid.r.2")] {
        let body = dm(A, customer, mid).replace("\"hi\"", "\"order66 please\"");
        server.deliver_webhook(&body).await;
    }
    // One that no rule answers.
    server.deliver_webhook(&dm(A, "1003", "mid.r.3")).await;
    let stats = server
        .eventually("both auto-replies sent", async || {
            let stats = server
                .api_json(
                    Method::GET,
                    &format!("/api/v1/analytics/auto-replies?bucket=hour&account_id={a}"),
                )
                .await;
            (stats["rules"][0]["by_status"]["sent"] == 2).then_some(stats)
        })
        .await;
    assert_eq!(stats["total"], 2, "{stats}");
    assert_eq!(stats["rules"][0]["rule_id"], rule["rule_id"], "{stats}");
    assert_eq!(stats["rules"][0]["name"], "order66", "{stats}");
    let evaluations = server
        .eventually("three evaluations counted", async || {
            let stats = server
                .api_json(
                    Method::GET,
                    &format!("/api/v1/analytics/auto-replies?bucket=hour&account_id={a}"),
                )
                .await;
            let e = stats["evaluations"].clone();
            (e["fired"].as_u64().unwrap_or(0) + e["no_rule_matched"].as_u64().unwrap_or(0) == 3)
                .then_some(e)
        })
        .await;
    assert_eq!(evaluations, json!({"fired": 2, "no_rule_matched": 1}));
}
