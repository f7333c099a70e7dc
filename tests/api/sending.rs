//! Sending for CRMs end to end: the real binary, a fake Graph API and a fake CRM over
//! loopback.

use std::time::Duration;

use insta_router_blackbox::{TestServer, graph_sends};
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const APP_SECRET: &str = "instagram-app-secret";
const ACCOUNT: &str = "17841400000000001";
const TOKEN: &str = "IGQVJ-account-token";

/// A Graph API that takes every send, answering `m.<recipient>.<n>`-style ids.
async fn graph() -> MockServer {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"recipient_id": "555", "message_id": "mid.sent.1"})),
        )
        .mount(&graph)
        .await;
    graph
}

fn meta_error(status: u16, code: i64, subcode: i64, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"error": {
        "message": message, "type": "OAuthException", "code": code,
        "error_subcode": subcode, "fbtrace_id": "AbC"}}))
}

/// Mounts `response` for sends to `recipient`, ahead of the catch-all.
async fn answer_for(graph: &MockServer, recipient: &str, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .and(body_partial_json(json!({"recipient": {"id": recipient}})))
        .respond_with(response)
        .with_priority(1)
        .mount(graph)
        .await;
}

async fn server(graph: &MockServer, extra: &[(&str, &str)]) -> TestServer {
    let mut builder = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", APP_SECRET)
        .env("INSTAGRAM_API_BASE_URL", &graph.uri())
        .env("DELIVERY_POLL_INTERVAL_MS", "50")
        .env("SEND_RETRY_SCHEDULE", "50ms, 50ms, 50ms")
        .env("SEND_RECONCILE_INTERVAL", "100ms")
        .secret(TOKEN)
        .secret("IGQVJ-new-token")
        .secret("crm-secret");
    for (key, value) in extra {
        builder = builder.env(key, value);
    }
    builder.start().await
}

async fn create_account(server: &TestServer, crm: Option<&MockServer>) -> String {
    let mut body =
        json!({"instagram_account_id": ACCOUNT, "username": "shop", "access_token": TOKEN});
    if let Some(crm) = crm {
        body["crm_webhook_url"] = json!(format!("{}/hooks", crm.uri()));
        body["webhook_secret"] = json!("crm-secret");
    }
    let account: Value = server
        .api(Method::POST, "/api/v1/accounts")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    account["account_id"].as_str().unwrap().to_owned()
}

fn millis_ago(ago: Duration) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from((now - ago).as_millis()).unwrap()
}

/// A DM from `customer` (or, as an echo, to them), `ago` in the past.
fn dm(customer: &str, mid: &str, text: &str, echo: bool, ago: Duration) -> String {
    let (sender, recipient) = if echo {
        (ACCOUNT, customer)
    } else {
        (customer, ACCOUNT)
    };
    let mut message = json!({"mid": mid, "text": text});
    if echo {
        message["is_echo"] = json!(true);
    }
    json!({"object": "instagram", "entry": [{"id": ACCOUNT, "time": millis_ago(ago), "messaging": [{
        "sender": {"id": sender}, "recipient": {"id": recipient},
        "timestamp": millis_ago(ago), "message": message}]}]})
    .to_string()
}

async fn send(server: &TestServer, body: &Value) -> reqwest::Response {
    server
        .api(Method::POST, "/api/v1/messages/send")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn send_ok(server: &TestServer, body: &Value) -> String {
    let response = send(server, body).await;
    assert_eq!(response.status(), 202, "{}", server.output());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "pending");
    body["message_id"].as_str().unwrap().to_owned()
}

async fn status(server: &TestServer, id: &str) -> Value {
    server
        .api_json(Method::GET, &format!("/api/v1/messages/{id}/status"))
        .await
}

/// The status once it is no longer `pending`.
async fn settled(server: &TestServer, id: &str) -> Value {
    server
        .eventually(&format!("send {id} to leave pending"), async || {
            let status = status(server, id).await;
            (status["status"] != "pending").then_some(status)
        })
        .await
}

/// The CRM bodies of type `kind`, after waiting for at least `n`.
async fn crm_events(server: &TestServer, crm: &MockServer, kind: &str, n: usize) -> Vec<Value> {
    server
        .eventually(&format!("{n} {kind} events at the CRM"), async || {
            let events: Vec<Value> = crm
                .received_requests()
                .await
                .unwrap()
                .iter()
                .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
                .filter(|b| b["type"] == kind)
                .collect();
            (events.len() >= n).then_some(events)
        })
        .await
}

async fn crm() -> MockServer {
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&crm)
        .await;
    crm
}

#[tokio::test]
async fn a_send_reaches_meta_once_and_a_retried_request_replays_it() {
    let graph = graph().await;
    let crm = crm().await;
    let server = server(&graph, &[("CRM_ALLOW_PRIVATE_NETWORKS", "true")]).await;
    let account = create_account(&server, Some(&crm)).await;
    server
        .deliver_webhook(&dm(
            "555",
            "mid.in.1",
            "Where is my order?",
            false,
            Duration::ZERO,
        ))
        .await;
    let request = json!({
        "account_id": account, "recipient_id": "555", "message": "It ships today.",
        "quick_replies": [{"title": "Track", "payload": "TRACK"}],
        "idempotency_key": "order-66-shipped", "metadata": {"ticket": 42},
    });
    let id = send_ok(&server, &request).await;
    let done = settled(&server, &id).await;
    assert_eq!(done["status"], "sent", "{done}");
    assert_eq!(done["instagram_message_id"], "mid.sent.1");
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["metadata"], json!({"ticket": 42}));
    assert!(done["error"].is_null());

    let sends = graph_sends(&graph).await;
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0]["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(sends[0]["recipient"]["id"], "555");
    assert_eq!(sends[0]["messaging_type"], "RESPONSE");
    assert_eq!(sends[0]["message"]["text"], "It ships today.");
    assert_eq!(
        sends[0]["message"]["quick_replies"],
        json!([{"content_type": "text", "title": "Track", "payload": "TRACK"}])
    );

    // The CRM hears of it, with its metadata.
    let sent = crm_events(&server, &crm, "message.sent", 1).await;
    assert_eq!(sent[0]["data"]["message_id"], id.as_str());
    assert_eq!(sent[0]["data"]["instagram_message_id"], "mid.sent.1");
    assert_eq!(sent[0]["data"]["metadata"], json!({"ticket": 42}));

    // The same request again, in the body or as the header: the first answer, nothing sent.
    let again = send(&server, &request).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["message_id"], id.as_str());
    let mut by_header = request.clone();
    by_header.as_object_mut().unwrap().remove("idempotency_key");
    let replay = server
        .api(Method::POST, "/api/v1/messages/send")
        .header("Idempotency-Key", "\"order-66-shipped\"")
        .json(&by_header)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");

    // The same key with another text is refused.
    let mut other = request.clone();
    other["message"] = json!("Something else");
    let refused = send(&server, &other).await;
    assert_eq!(refused.status(), 422);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://insta-router.dev/problems/idempotency-key-reused"
    );
    server.settled().await;
    assert_eq!(graph_sends(&graph).await.len(), 1);

    // The history holds both directions, newest first, the send under its own id.
    let conversation = format!("conv_555_{ACCOUNT}");
    let history: Value = server
        .api_json(
            Method::GET,
            &format!("/api/v1/conversations/{conversation}/messages"),
        )
        .await;
    let data = history["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{history}");
    assert_eq!(data[0]["message_id"], id.as_str());
    assert_eq!(data[0]["direction"], "outbound");
    assert_eq!(data[0]["text"], "It ships today.");
    assert_eq!(data[1]["direction"], "inbound");

    // Meta's echo of the sent message is not stored a second time.
    server
        .deliver_webhook(&dm(
            "555",
            "mid.sent.1",
            "It ships today.",
            true,
            Duration::ZERO,
        ))
        .await;
    let history: Value = server
        .api_json(
            Method::GET,
            &format!("/api/v1/conversations/{conversation}/messages"),
        )
        .await;
    assert_eq!(history["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn twenty_concurrent_requests_with_one_key_make_one_graph_call() {
    let graph = graph().await;
    let server = server(&graph, &[]).await;
    let account = create_account(&server, None).await;
    let request = json!({"account_id": account, "recipient_id": "555",
        "message": "Exactly once", "idempotency_key": "concurrent-key"});
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let request = server
            .api(Method::POST, "/api/v1/messages/send")
            .json(&request);
        requests.spawn(request.send());
    }
    let responses: Vec<reqwest::Response> = requests
        .join_all()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    let mut fresh = 0;
    for response in responses {
        let status = response.status().as_u16();
        assert!(
            status == 202 || status == 409,
            "{status}: {}",
            response.text().await.unwrap()
        );
        if status == 202 {
            if response.headers().get("idempotent-replayed").is_none() {
                fresh += 1;
            }
            let body: Value = response.json().await.unwrap();
            ids.insert(body["message_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(ids.len(), 1);
    let id = ids.into_iter().next().unwrap();
    assert_eq!(settled(&server, &id).await["status"], "sent");
    server.settled().await;
    assert_eq!(graph_sends(&graph).await.len(), 1);
}

#[tokio::test]
async fn each_graph_error_class_ends_in_the_right_status_with_metas_code() {
    let graph = graph().await;
    let crm = crm().await;
    answer_for(
        &graph,
        "1001",
        meta_error(
            403,
            10,
            2_534_022,
            "This message is sent outside of allowed window.",
        ),
    )
    .await;
    answer_for(
        &graph,
        "1002",
        meta_error(
            400,
            551,
            1_545_041,
            "This person isn't available right now.",
        ),
    )
    .await;
    answer_for(
        &graph,
        "1003",
        meta_error(400, 100, 2_018_001, "No matching user found"),
    )
    .await;
    // A rate limit twice, then through.
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .and(body_partial_json(json!({"recipient": {"id": "1004"}})))
        .respond_with(meta_error(
            400,
            613,
            0,
            "Calls to this api have exceeded the rate limit.",
        ))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&graph)
        .await;
    answer_for(&graph, "1005", ResponseTemplate::new(503)).await;
    answer_for(
        &graph,
        "1006",
        ResponseTemplate::new(200)
            .set_delay(Duration::from_secs(3))
            .set_body_json(json!({"recipient_id": "1006", "message_id": "mid.slow"})),
    )
    .await;
    let server = server(
        &graph,
        &[
            ("GRAPH_API_TIMEOUT", "1"),
            ("CRM_ALLOW_PRIVATE_NETWORKS", "true"),
        ],
    )
    .await;
    let account = create_account(&server, Some(&crm)).await;
    let mut ids = Vec::new();
    for recipient in ["1001", "1002", "1003", "1004", "1005", "1006"] {
        let request = json!({"account_id": account, "recipient_id": recipient,
            "message": format!("Hello {recipient}"), "idempotency_key": format!("k-{recipient}")});
        ids.push(send_ok(&server, &request).await);
    }
    let mut results = Vec::new();
    for id in &ids {
        results.push(settled(&server, id).await);
    }
    let code = |i: usize| {
        results[i]["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(results[0]["status"], "failed");
    assert_eq!(code(0), "10");
    assert_eq!(results[0]["error"]["subcode"], 2_534_022);
    assert_eq!(results[0]["error"]["retryable"], false);
    assert_eq!(results[0]["attempts"], 1);
    assert_eq!(results[1]["status"], "failed");
    assert_eq!(code(1), "551");
    assert_eq!(results[2]["status"], "failed");
    assert_eq!(code(2), "100");
    assert_eq!(results[2]["error"]["message"], "No matching user found");
    assert_eq!(results[3]["status"], "sent", "{}", results[3]);
    assert_eq!(results[3]["attempts"], 3);
    // Meta down through every retry: failed, but worth trying again later.
    assert_eq!(results[4]["status"], "failed");
    assert_eq!(code(4), "temporary_failure");
    assert_eq!(results[4]["error"]["retryable"], true);
    assert_eq!(results[4]["attempts"], 4);
    // No answer in time: unknown, never resent.
    assert_eq!(results[5]["status"], "unknown", "{}", results[5]);
    assert_eq!(code(5), "outcome_unknown");
    let sends = graph_sends(&graph).await;
    let to = |r: &str| sends.iter().filter(|s| s["recipient"]["id"] == r).count();
    assert_eq!(
        [
            to("1001"),
            to("1002"),
            to("1003"),
            to("1004"),
            to("1005"),
            to("1006")
        ],
        [1, 1, 1, 3, 4, 1]
    );

    // Meta's echo of the slow message arrives: the unknown send becomes sent, with its mid.
    server
        .deliver_webhook(&dm("1006", "mid.slow", "Hello 1006", true, Duration::ZERO))
        .await;
    let sent = server
        .eventually("the slow send's echo to make it sent", async || {
            let status = status(&server, &ids[5]).await;
            (status["status"] == "sent").then_some(status)
        })
        .await;
    assert_eq!(sent["instagram_message_id"], "mid.slow");
    assert_eq!(to("1006"), 1);

    // One INFO line per retry and per failure, with Meta's code and text.
    let output = server.output();
    let lines = |needle: &str| output.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        lines("send failed; retrying: 613: Calls to this api"),
        2,
        "{output}"
    );
    assert_eq!(
        lines("send failed; retrying: temporary_failure: HTTP 503"),
        3,
        "{output}"
    );
    assert_eq!(lines("send failed: No matching user found"), 1, "{output}");
    assert_eq!(lines("send outcome unknown, not sent again"), 1, "{output}");

    // The CRM heard of each failure with Meta's code.
    let failed = crm_events(&server, &crm, "message.failed", 4).await;
    let codes: std::collections::BTreeSet<String> = failed
        .iter()
        .map(|e| e["data"]["error"]["code"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        ["10", "551", "100", "temporary_failure"]
            .iter()
            .all(|c| codes.contains(*c)),
        "{codes:?}"
    );
}

#[tokio::test]
async fn a_refused_token_marks_the_account_and_fails_later_sends_without_calling_meta() {
    let graph = graph().await;
    answer_for(
        &graph,
        "2001",
        meta_error(
            400,
            190,
            463,
            "Error validating access token: Session has expired.",
        ),
    )
    .await;
    let server = server(&graph, &[]).await;
    let account = create_account(&server, None).await;
    let first = send_ok(
        &server,
        &json!({"account_id": account, "recipient_id": "2001", "message": "Hi", "idempotency_key": "t1"}),
    )
    .await;
    let first = settled(&server, &first).await;
    assert_eq!(first["status"], "failed");
    assert_eq!(first["error"]["code"], "190");
    assert_eq!(first["error"]["subcode"], 463);
    let shown: Value = server
        .api_json(Method::GET, &format!("/api/v1/accounts/{account}"))
        .await;
    assert!(shown["token_invalid_at"].is_string(), "{shown}");
    assert!(
        shown["token_error"]
            .as_str()
            .unwrap()
            .contains("Session has expired")
    );

    let second = send_ok(
        &server,
        &json!({"account_id": account, "recipient_id": "555", "message": "Hi", "idempotency_key": "t2"}),
    )
    .await;
    let second = settled(&server, &second).await;
    assert_eq!(second["error"]["code"], "token_invalid");
    assert_eq!(graph_sends(&graph).await.len(), 1);

    // A new token brings the account back.
    let patched = server
        .api(Method::PATCH, &format!("/api/v1/accounts/{account}"))
        .json(&json!({"access_token": "IGQVJ-new-token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert!(patched["token_invalid_at"].is_null());
    let third = send_ok(
        &server,
        &json!({"account_id": account, "recipient_id": "555", "message": "Hi", "idempotency_key": "t3"}),
    )
    .await;
    assert_eq!(settled(&server, &third).await["status"], "sent");
    let sends = graph_sends(&graph).await;
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[1]["authorization"], "Bearer IGQVJ-new-token");
}

#[tokio::test]
async fn outside_the_window_only_a_persons_answer_goes_out_tagged_human_agent() {
    let graph = graph().await;
    let server = server(&graph, &[]).await;
    let account = create_account(&server, None).await;
    server
        .deliver_webhook(&dm(
            "777",
            "mid.old",
            "Hello?",
            false,
            Duration::from_secs(2 * 24 * 3600),
        ))
        .await;
    let bot = send_ok(
        &server,
        &json!({"account_id": account, "recipient_id": "777", "message": "Automated", "idempotency_key": "w1"}),
    )
    .await;
    let bot = settled(&server, &bot).await;
    assert_eq!(bot["status"], "failed");
    assert_eq!(bot["error"]["code"], "outside_window");
    assert_eq!(bot["attempts"], 0);
    assert!(graph_sends(&graph).await.is_empty());

    let human = send_ok(
        &server,
        &json!({"account_id": account, "recipient_id": "777", "message": "Sorry for the delay",
            "human_agent": true, "idempotency_key": "w2"}),
    )
    .await;
    assert_eq!(settled(&server, &human).await["status"], "sent");
    let sends = graph_sends(&graph).await;
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0]["messaging_type"], "MESSAGE_TAG");
    assert_eq!(sends[0]["tag"], "HUMAN_AGENT");

    // The inbox shows the window closed, and the answer counts as read.
    let conversations: Value = server
        .api_json(
            Method::GET,
            &format!("/api/v1/accounts/{account}/conversations"),
        )
        .await;
    let c = &conversations["data"][0];
    assert_eq!(c["customer_id"], "777");
    assert_eq!(c["window_open"], false);
    assert_eq!(c["unread_count"], 0);
    assert_eq!(c["last_message"]["text"], "Sorry for the delay");
}

#[tokio::test]
async fn media_sends_by_url_and_bad_requests_get_clear_errors() {
    let graph = graph().await;
    let server = server(&graph, &[]).await;
    let account = create_account(&server, None).await;
    let image = send_ok(
        &server,
        &json!({"account_id": account, "recipient_id": "555", "idempotency_key": "img",
            "attachment": {"type": "image", "url": "https://shop.example/p/42.jpg"}}),
    )
    .await;
    assert_eq!(settled(&server, &image).await["status"], "sent");
    let sends = graph_sends(&graph).await;
    assert_eq!(
        sends[0]["message"],
        json!({"attachment": {"type": "image", "payload": {"url": "https://shop.example/p/42.jpg", "is_reusable": true}}})
    );

    let too_long = send(
        &server,
        &json!({"account_id": account, "recipient_id": "555", "idempotency_key": "long",
            "message": "ä".repeat(501)}),
    )
    .await;
    assert_eq!(too_long.status(), 422);
    let problem: Value = too_long.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "message");

    let missing = send(
        &server,
        &json!({"account_id": account, "recipient_id": "555", "message": "no key"}),
    )
    .await;
    assert_eq!(missing.status(), 422);
    let problem: Value = missing.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "idempotency_key");

    let unknown = send(
        &server,
        &json!({"account_id": "acc_0000000000000000000000000000dead", "recipient_id": "555",
            "message": "hi", "idempotency_key": "x"}),
    )
    .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        server
            .api(
                Method::GET,
                "/api/v1/messages/msg_0000000000000000000000000000dead/status"
            )
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let not_json = server
        .api(Method::POST, "/api/v1/messages/send")
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 422);
    assert_eq!(graph_sends(&graph).await.len(), 1);
}

#[tokio::test]
async fn marking_a_conversation_read_clears_its_unread_count_and_tells_meta() {
    let graph = graph().await;
    let server = server(&graph, &[]).await;
    create_account(&server, None).await;
    for (mid, text) in [("mid.r1", "one"), ("mid.r2", "two")] {
        server
            .deliver_webhook(&dm("888", mid, text, false, Duration::ZERO))
            .await;
    }
    let conversation = format!("conv_888_{ACCOUNT}");
    let accounts: Value = server.api_json(Method::GET, "/api/v1/accounts").await;
    let account = accounts["data"][0]["account_id"].as_str().unwrap();
    let list: Value = server
        .api_json(
            Method::GET,
            &format!("/api/v1/accounts/{account}/conversations"),
        )
        .await;
    assert_eq!(list["data"][0]["unread_count"], 2);
    assert_eq!(list["data"][0]["window_open"], true);
    let read = server
        .api(
            Method::POST,
            &format!("/api/v1/conversations/{conversation}/read"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["unread_count"], 0);
    assert!(read["seen_at"].is_string());
    let sends = graph_sends(&graph).await;
    assert_eq!(
        sends[0],
        json!({"recipient": {"id": "888"}, "sender_action": "mark_seen", "authorization": format!("Bearer {TOKEN}")})
    );
    let missing = server
        .api(Method::POST, "/api/v1/conversations/conv_1_2/read")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn the_original_send_endpoint_is_an_authenticated_deprecated_alias() {
    let graph = graph().await;
    let server = server(
        &graph,
        &[
            ("INSTAGRAM_BUSINESS_ACCOUNT_ID", ACCOUNT),
            ("INSTAGRAM_PAGE_ACCESS_TOKEN", "IGQVJ-env-token"),
        ],
    )
    .await;
    let body = json!({"recipient_id": "555", "message_text": "From the old API"});
    let anonymous = reqwest::Client::new()
        .post(format!("{}/webhooks/send", server.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let response = server
        .api(Method::POST, "/webhooks/send")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["deprecation"], "true");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["success"], true);
    let id = answer["message_id"].as_str().unwrap();
    assert_eq!(settled(&server, id).await["status"], "sent");
    // Sent with the configured account's token, which start-up connected.
    let sends = graph_sends(&graph).await;
    assert_eq!(sends[0]["authorization"], "Bearer IGQVJ-env-token");
    assert_eq!(sends[0]["message"]["text"], "From the old API");
    let accounts: Value = server.api_json(Method::GET, "/api/v1/accounts").await;
    assert_eq!(accounts["data"][0]["instagram_account_id"], ACCOUNT);
}

#[tokio::test]
async fn a_killed_server_resumes_queued_sends_without_sending_any_twice() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_millis(300))
                .set_body_json(json!({"recipient_id": "555", "message_id": "mid.any"})),
        )
        .mount(&graph)
        .await;
    let mut server = server(
        &graph,
        &[
            ("SEND_WORKERS", "1"),
            ("GRAPH_API_TIMEOUT", "1"),
            ("CRM_WEBHOOK_TIMEOUT", "1"),
            ("DELIVERY_LEASE", "2"),
        ],
    )
    .await;
    let account = create_account(&server, None).await;
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(
            send_ok(
                &server,
                &json!({"account_id": account, "recipient_id": "555",
                    "message": format!("Message {n}"), "idempotency_key": format!("crash-{n}")}),
            )
            .await,
        );
    }
    server
        .eventually("3 Send API requests", async || {
            (graph_sends(&graph).await.len() >= 3).then_some(())
        })
        .await;
    server.kill_and_restart().await;
    let mut sent = 0;
    let mut unknown = 0;
    for id in &ids {
        match settled(&server, id).await["status"].as_str().unwrap() {
            "sent" => sent += 1,
            "unknown" => unknown += 1,
            other => panic!("{other}\n{}", server.output()),
        }
    }
    // At most the one send in flight at the kill is unknown; every other was sent.
    assert!(unknown <= 1, "{unknown} unknown");
    assert_eq!(sent + unknown, 10);
    let sends = graph_sends(&graph).await;
    let mut texts: Vec<String> = sends
        .iter()
        .map(|s| s["message"]["text"].as_str().unwrap().to_owned())
        .collect();
    texts.sort();
    let total = texts.len();
    texts.dedup();
    assert_eq!(
        texts.len(),
        total,
        "a message reached Meta twice: {texts:?}"
    );
    // Every sent one reached Meta; the unknown one may have, or not yet.
    assert!(
        sent <= total && total <= 10,
        "{sent} sent, {total} reached Meta"
    );
}
