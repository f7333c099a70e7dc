//! `GET|POST /webhooks/instagram`, end to end: every fixture, signed, and what is stored.

use std::path::PathBuf;

use insta_router_blackbox::TestServer;
use insta_router_instagram::sign_body;
use insta_router_storage::Database;
use insta_router_storage::testing;
use reqwest::Method;
use serde_json::{Value, json};

const IG_SECRET: &str = "instagram-app-secret";
const FB_SECRET: &str = "facebook-app-secret";
const VERIFY_TOKEN: &str = "verify-me-please";
const ACCOUNT: &str = "17841400000000001";

async fn server() -> TestServer {
    TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", IG_SECRET)
        .env("FACEBOOK_APP_SECRET", FB_SECRET)
        .env("FACEBOOK_VERIFY_TOKEN", VERIFY_TOKEN)
        .start()
        .await
}

/// A fixture's text, wrapped into a notification when it is a bare messaging item.
fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/webhook")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    if text.contains("\"entry\"") {
        text
    } else {
        format!(
            r#"{{"object":"instagram","entry":[{{"id":"{ACCOUNT}","time":1700000000000,"messaging":[{text}]}}]}}"#
        )
    }
}

async fn post_signed(server: &TestServer, body: &str, secret: &str) -> reqwest::Response {
    post_with(server, body, Some(&sign_body(secret, body.as_bytes()))).await
}

async fn post_with(server: &TestServer, body: &str, signature: Option<&str>) -> reqwest::Response {
    server.post_webhook(body, signature).await
}

/// Posts a signed body and returns `messages_processed`, asserting a 200.
async fn deliver(server: &TestServer, body: &str) -> u64 {
    let response = post_signed(server, body, IG_SECRET).await;
    assert_eq!(response.status(), 200, "{}", server.output());
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "ok");
    answer["messages_processed"].as_u64().unwrap()
}

async fn rows(db: &Database, sql: &str) -> Vec<Value> {
    testing::rows(db, sql).await
}

async fn count(db: &Database, table: &str) -> u64 {
    db.row_count(table).await.unwrap()
}

async fn message(db: &Database, mid: &str) -> Value {
    let found = rows(
        db,
        &format!(
            "SELECT id, instagram_account_id, direction, kind, message_text, attachments, reply_to, context, deleted_at, sender_id, recipient_id FROM messages WHERE mid = '{mid}'"
        ),
    )
    .await;
    assert_eq!(found.len(), 1, "one message {mid}: {found:?}");
    found.into_iter().next().unwrap()
}

async fn events(db: &Database, kind: &str) -> Vec<Value> {
    rows(
        db,
        &format!("SELECT instagram_account_id, customer_id, mid, detail FROM inbound_events WHERE kind = '{kind}' ORDER BY occurred_at"),
    )
    .await
}

async fn jobs_about(db: &Database, subject: &str) -> Vec<(String, String)> {
    rows(
        db,
        &format!("SELECT kind, payload FROM jobs WHERE subject = '{subject}' ORDER BY kind"),
    )
    .await
    .into_iter()
    .map(|r| {
        (
            r["kind"].as_str().unwrap().to_owned(),
            insta_router_storage::testing::job_payload(r["payload"].as_str().unwrap()),
        )
    })
    .collect()
}

#[tokio::test]
async fn verification_echoes_the_challenge_only_for_the_configured_token() {
    let server = server().await;
    let check = |query: &str| {
        server
            .client
            .get(format!("{}/webhooks/instagram?{query}", server.url))
            .send()
    };
    let ok = check(&format!(
        "hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
    ))
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        ok.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(ok.text().await.unwrap(), "1158201444", "verbatim, not JSON");

    for query in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1".to_owned(),
        format!("hub.mode=unsubscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1"),
        "hub.mode=subscribe&hub.challenge=1".to_owned(),
        String::new(),
    ] {
        let refused = check(&query).await.unwrap();
        assert_eq!(refused.status(), 403, "{query}");
        assert_eq!(
            refused.headers()["content-type"],
            "application/problem+json"
        );
    }

    // With no token configured, not even an empty token matches.
    let unconfigured = TestServer::start().await;
    let response = unconfigured
        .client
        .get(format!(
            "{}/webhooks/instagram?hub.mode=subscribe&hub.verify_token=&hub.challenge=1",
            unconfigured.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn unsigned_or_wrongly_signed_bodies_are_refused_and_nothing_is_stored() {
    let server = server().await;
    let body = fixture("text.json");
    let good = sign_body(IG_SECRET, body.as_bytes());
    for signature in [
        None,
        Some("invalid_format".to_owned()),
        Some("sha256=invalid_signature".to_owned()),
        Some(sign_body("another-secret", body.as_bytes())),
        Some(good[..good.len() - 1].to_owned()),
        // Signed over different bytes: the signature covers the raw body, not its meaning.
        Some(sign_body(IG_SECRET, body.replace('\n', " ").as_bytes())),
    ] {
        let response = post_with(&server, &body, signature.as_deref()).await;
        assert_eq!(response.status(), 401, "{signature:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    // An unsigned body is never parsed: not even a body that is not JSON shows up anywhere.
    assert_eq!(post_with(&server, "not json", None).await.status(), 401);
    let db = server.db.connect().await;
    for table in ["webhook_journal", "messages", "inbound_events", "jobs"] {
        assert_eq!(count(&db, table).await, 0, "{table}");
    }
    assert!(!server.output().contains("not a usable notification"));

    // Either app secret may sign.
    let response = post_signed(&server, &body, FB_SECRET).await;
    assert_eq!(response.status(), 200);
    assert_eq!(count(&db, "messages").await, 1);
}

#[tokio::test]
async fn while_an_app_secret_is_rotated_the_new_and_the_old_one_both_sign() {
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", "new-app-secret, old-app-secret")
        .start()
        .await;
    for (mid, secret, status) in [
        ("mid.new", "new-app-secret", 200),
        ("mid.old", "old-app-secret", 200),
        ("mid.other", IG_SECRET, 401),
    ] {
        let body = insta_router_blackbox::text_webhook(ACCOUNT, mid, "hi");
        let response = post_signed(&server, &body, secret).await;
        assert_eq!(response.status(), status, "{secret}");
    }
    let db = server.db.connect().await;
    assert_eq!(count(&db, "messages").await, 2);
}

#[tokio::test]
async fn every_fixture_is_stored_as_its_kind() {
    let server = server().await;
    let db = server.db.connect().await;
    // With rules, so that which events are offered to them shows.
    configure(&server, ACCOUNT, false, true).await;
    let names = [
        "text.json",
        "attachment-image.json",
        "story-mention.json",
        "story-reply.json",
        "quick-reply.json",
        "postback.json",
        "referral-ad.json",
        "referral-link.json",
        "reaction-react.json",
        "reaction-unreact.json",
        "read.json",
        "echo.json",
        "unsupported.json",
        "deleted.json",
        "batch.json",
        "dashboard-test-changes.json",
        "comment-changes.json",
    ];
    let mut processed = 0;
    for name in names {
        let n = deliver(&server, &fixture(name)).await;
        assert!(n >= 1, "{name} stored nothing new");
        processed += n;
    }
    assert_eq!(count(&db, "webhook_journal").await, names.len() as u64);

    let text = message(&db, "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDE6MzQwMjgyMzY2ODQxNzEwMzAxMjQ0MjU5").await;
    assert_eq!(text["kind"], "text");
    assert_eq!(text["direction"], "inbound");
    assert_eq!(text["instagram_account_id"], ACCOUNT);
    assert_eq!(text["message_text"], "Hi! order66 please");
    // The deletion that came later marked it, without storing a message of its own.
    assert!(
        !text["deleted_at"].is_null(),
        "unsent message is marked: {text}"
    );

    let image = message(&db, "mid.img.0001").await;
    assert_eq!(image["kind"], "image");
    assert!(
        image["attachments"]
            .as_str()
            .unwrap()
            .contains("asset_id=17900000000000001")
    );
    assert_eq!(
        message(&db, "mid.mention.0001").await["kind"],
        "story_mention"
    );
    let reply = message(&db, "mid.storyreply.0001").await;
    assert_eq!(reply["kind"], "story_reply");
    assert!(
        reply["reply_to"]
            .as_str()
            .unwrap()
            .contains("17949487764033669")
    );
    let quick = message(&db, "mid.qr.0001").await;
    assert_eq!(quick["kind"], "quick_reply");
    assert!(quick["context"].as_str().unwrap().contains("CONFIRM_YES"));
    let postback = message(&db, "mid.postback.0001").await;
    assert_eq!(postback["kind"], "postback");
    assert!(
        postback["context"]
            .as_str()
            .unwrap()
            .contains("SEARCH_ORDER")
    );
    let ad = message(&db, "mid.ctd.0001").await;
    assert!(
        ad["context"]
            .as_str()
            .unwrap()
            .contains("120200000000000001")
    );
    assert_eq!(
        message(&db, "mid.unsupported.0001").await["kind"],
        "unsupported"
    );

    let echo = message(&db, "mid.outbound.0001").await;
    assert_eq!(echo["direction"], "outbound");
    assert_eq!(echo["sender_id"], ACCOUNT);
    assert_eq!(echo["recipient_id"], "1234567890123456");
    let echo_jobs = jobs_about(&db, echo["id"].as_str().unwrap()).await;
    assert!(
        echo_jobs.iter().all(|(kind, _)| kind != "auto_reply"),
        "echoes are never auto-replied: {echo_jobs:?}"
    );
    let text_jobs = jobs_about(&db, text["id"].as_str().unwrap()).await;
    assert_eq!(text_jobs.len(), 1, "{text_jobs:?}");
    assert_eq!(text_jobs[0].0, "auto_reply");

    let reactions = events(&db, "reaction").await;
    assert_eq!(reactions.len(), 2);
    assert!(
        reactions[0]["detail"]
            .as_str()
            .unwrap()
            .contains("\"action\":\"react\"")
    );
    assert!(
        reactions[0]["detail"]
            .as_str()
            .unwrap()
            .contains("\u{2764}\u{fe0f}")
    );
    assert!(
        reactions[1]["detail"]
            .as_str()
            .unwrap()
            .contains("\"action\":\"unreact\"")
    );
    assert_eq!(reactions[0]["mid"], "mid.outbound.0001");
    let reads = events(&db, "read").await;
    assert_eq!(reads.len(), 2, "read.json and the batch's read: {reads:?}");
    assert_eq!(events(&db, "referral").await.len(), 1);
    assert_eq!(events(&db, "deleted").await.len(), 1);
    let comments = events(&db, "comment").await;
    assert_eq!(comments.len(), 1);
    let detail: Value = serde_json::from_str(comments[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["comment_id"], "17900000000000099");
    assert_eq!(detail["text"], "price?");
    assert_eq!(detail["media_id"], "17800000000000055");
    assert_eq!(detail["parties"]["customer"], "1234567890123456");
    assert_eq!(events(&db, "unrecognized").await.len(), 0);

    // The batch: the repeated mid once, the second account routed on its own.
    assert_eq!(
        message(&db, "mid.batch.A").await["instagram_account_id"],
        ACCOUNT
    );
    assert_eq!(
        message(&db, "mid.batch.B").await["instagram_account_id"],
        "17841400000000002"
    );
    // The dashboard's test payload: stored for its (unconfigured) account.
    assert_eq!(
        message(&db, "random_mid").await["instagram_account_id"],
        "23245"
    );

    let stored = count(&db, "messages").await + count(&db, "inbound_events").await;
    assert_eq!(processed, stored, "every new event counted once");
    assert!(count(&db, "conversations").await >= 3);
    // No account is configured: nothing is forwarded.
    assert!(
        rows(&db, "SELECT id FROM jobs WHERE kind = 'crm_delivery'")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn duplicates_within_and_across_requests_are_stored_and_queued_once() {
    let server = server().await;
    let db = server.db.connect().await;
    // Rules, so that each new inbound message is queued for them.
    configure(&server, ACCOUNT, false, true).await;
    configure(&server, "17841400000000002", false, true).await;
    let body = fixture("text.json");
    assert_eq!(deliver(&server, &body).await, 1);
    assert_eq!(deliver(&server, &body).await, 0, "Meta's retry is not new");
    assert_eq!(deliver(&server, &fixture("batch.json")).await, 3);
    assert_eq!(deliver(&server, &fixture("batch.json")).await, 0);
    assert_eq!(count(&db, "messages").await, 3);
    assert_eq!(
        count(&db, "jobs").await,
        3,
        "one auto-reply per new inbound message"
    );
    assert_eq!(
        count(&db, "webhook_journal").await,
        4,
        "every request is journaled"
    );

    // The same mid in many concurrent requests: stored once, counted once.
    let body = fixture("quick-reply.json");
    let answers = insta_router_blackbox::futures_join((0..12).map(|_| {
        let body = body.clone();
        let server = &server;
        async move { deliver(server, &body).await }
    }))
    .await;
    assert_eq!(answers.iter().sum::<u64>(), 1, "{answers:?}");
    message(&db, "mid.qr.0001").await;
}

#[tokio::test]
async fn concurrent_distinct_events_are_all_stored() {
    let server = server().await;
    let db = server.db.connect().await;
    configure(&server, ACCOUNT, false, true).await;
    let template = fixture("text.json");
    let answers = insta_router_blackbox::futures_join((0..64).map(|i| {
        let body = template.replace("\"mid\": \"aWdf", &format!("\"mid\": \"c{i}.aWdf"));
        let server = &server;
        async move { deliver(server, &body).await }
    }))
    .await;
    assert_eq!(answers, vec![1; 64]);
    assert_eq!(count(&db, "messages").await, 64);
    assert_eq!(count(&db, "webhook_journal").await, 64);
    assert_eq!(count(&db, "jobs").await, 64);
}

/// Configures Instagram account `ig`, with a CRM or not, and with an enabled rule (one that
/// never fires) or not.
async fn configure(server: &TestServer, ig: &str, crm: bool, rule: bool) {
    let mut account = json!({
        "instagram_account_id": ig,
        "username": format!("shop{}", &ig[ig.len() - 1..]),
        "access_token": "IGQVJ-token",
    });
    if crm {
        account["crm_webhook_url"] = json!("https://crm.example/hooks");
        account["webhook_secret"] = json!("crm-secret-value");
    }
    let response = server
        .api(Method::POST, "/api/v1/accounts")
        .json(&account)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    if rule {
        let account: Value = response.json().await.unwrap();
        let id = account["account_id"].as_str().unwrap();
        insta_router_blackbox::add_quiet_rule(server, id).await;
    }
}

#[tokio::test]
async fn configured_accounts_get_crm_deliveries_and_others_do_not() {
    let server = server().await;
    let db = server.db.connect().await;
    configure(&server, ACCOUNT, true, true).await;
    configure(&server, "17841400000000002", false, false).await;
    deliver(&server, &fixture("text.json")).await;
    deliver(&server, &fixture("echo.json")).await;
    deliver(&server, &fixture("reaction-react.json")).await;
    deliver(&server, &fixture("batch.json")).await;

    let text = message(&db, "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDE6MzQwMjgyMzY2ODQxNzEwMzAxMjQ0MjU5").await;
    let jobs = jobs_about(&db, text["id"].as_str().unwrap()).await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!(jobs[0].0, "auto_reply");
    assert_eq!(jobs[1].0, "crm_delivery");
    assert!(jobs[1].1.contains("message.received"));

    let echo = message(&db, "mid.outbound.0001").await;
    let jobs = jobs_about(&db, echo["id"].as_str().unwrap()).await;
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].1.contains("message.echo"));

    let reaction = rows(&db, "SELECT id FROM inbound_events WHERE kind = 'reaction'").await;
    let jobs = jobs_about(&db, reaction[0]["id"].as_str().unwrap()).await;
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].1.contains("message.reaction"));

    // The second account has no CRM and no rules: its message is stored, nothing queued.
    let other = message(&db, "mid.batch.B").await;
    let jobs = jobs_about(&db, other["id"].as_str().unwrap()).await;
    assert!(jobs.is_empty(), "{jobs:?}");
}

#[tokio::test]
async fn signed_but_unusable_bodies_are_journaled_and_acknowledged() {
    let server = server().await;
    let db = server.db.connect().await;
    for body in ["not json at all", "[1,2,3]", "{\"object\":\"instagram\"}"] {
        assert_eq!(deliver(&server, body).await, 0, "{body}");
    }
    let journal = rows(&db, "SELECT status, error FROM webhook_journal").await;
    assert_eq!(journal.len(), 3);
    for entry in &journal {
        assert_eq!(entry["status"], "unusable");
        assert!(
            entry["error"]
                .as_str()
                .unwrap()
                .contains("not a webhook notification")
        );
    }
    assert_eq!(count(&db, "messages").await, 0);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413() {
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", IG_SECRET)
        .env("MAX_WEBHOOK_BYTES", "2048")
        .start()
        .await;
    let padding = "x".repeat(4096);
    let body = fixture("text.json").replace("Hi! order66 please", &padding);
    let response = post_signed(&server, &body, IG_SECRET).await;
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let db = server.db.connect().await;
    assert_eq!(count(&db, "webhook_journal").await, 0);
    assert_eq!(
        deliver(&server, &fixture("text.json")).await,
        1,
        "normal bodies still pass"
    );
}

#[tokio::test]
async fn simulate_sends_a_signed_webhook_that_the_server_stores() {
    let server = server().await;
    let run = |args: Vec<String>, secret: Option<&str>| {
        let mut command = insta_router_blackbox::command(server.dir.path());
        if let Some(secret) = secret {
            command.env("INSTAGRAM_APP_SECRET", secret);
        }
        command.arg("simulate").args(args).output().unwrap()
    };
    let output = run(
        vec![
            "Hi! is the blue one in stock?".into(),
            "--url".into(),
            server.url.clone(),
        ],
        Some(IG_SECRET),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("200 OK") && stdout.contains("\"messages_processed\":1"),
        "{stdout}"
    );

    let fixture_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/webhook/batch.json");
    let output = run(
        vec![
            "--fixture".into(),
            fixture_path.display().to_string(),
            "--url".into(),
            server.url.clone(),
        ],
        Some(IG_SECRET),
    );
    assert!(output.status.success());
    let db = server.db.connect().await;
    let mut texts: Vec<String> = rows(&db, "SELECT message_text FROM messages")
        .await
        .iter()
        .map(|r| r["message_text"].as_str().unwrap().to_owned())
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        ["Hi! is the blue one in stock?", "first", "second account"],
        "the simulated message and the batch fixture's two"
    );

    // Signed with another secret, the server refuses it and simulate says so.
    let output = run(
        vec!["x".into(), "--url".into(), server.url.clone()],
        Some("wrong"),
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("401"));
    // Without a secret it explains what to set.
    let output = run(vec!["x".into(), "--url".into(), server.url.clone()], None);
    assert!(String::from_utf8_lossy(&output.stderr).contains("INSTAGRAM_APP_SECRET"));
}

#[tokio::test]
async fn simulate_waits_for_a_server_that_is_still_starting() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    // simulate first, as the README's recipe does while `cargo run` still builds.
    let mut simulate = insta_router_blackbox::command(dir.path())
        .env("INSTAGRAM_APP_SECRET", IG_SECRET)
        .env("PORT", port.to_string())
        .args(["simulate", "hello while starting", "--wait", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It says that it waits; only then does the server start, on that port.
    let mut stderr = std::io::BufReader::new(simulate.stderr.take().unwrap());
    let waiting = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        (line, stderr)
    });
    let (line, mut stderr) = waiting.await.unwrap();
    assert!(line.contains("waiting for the server"), "{line}");
    let simulate = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        (simulate.wait_with_output(), rest)
    });
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", IG_SECRET)
        .env("PORT", &port.to_string())
        .start()
        .await;
    let (output, stderr) = simulate.await.unwrap();
    let output = output.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("200 OK"), "{stdout}");
    let db = server.db.connect().await;
    let stored = rows(&db, "SELECT message_text FROM messages").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["message_text"], "hello while starting");
}
