//! Secrets hygiene: one server at debug level goes through the security, sending, auto-reply
//! and delivery paths, failures included (a Graph API and a CRM that fail first and quote the
//! credential back, bad keys, a revoked key, forged webhooks, a token change, a key rotation),
//! and no secret it was given or made shows in its log, its metrics, its answers or the output
//! of its commands: not in the clear, not in base64, not percent-encoded.
//!
//! Every other black-box test checks its server's log for the secrets it names when the server
//! is dropped (`ServerBuilder::secret`); this one looks everywhere, at debug level.

use insta_router_blackbox::{TestServer, command, graph_sends, leaked_secret};
use insta_router_instagram::sign_body;
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const APP_SECRET: &str = "hygiene-app-secret-5150";
const VERIFY_TOKEN: &str = "hygiene-verify-token-1984";
const IG: &str = "17841400000000001";
const TOKEN: &str = "IGQVJ-hygiene-token-first";
const NEW_TOKEN: &str = "IGQVJ-hygiene-token-second";
const CRM_SECRET: &str = "hygiene-crm-secret-2112";
/// A credential some CRMs take in their webhook URL's query.
const URL_CREDENTIAL: &str = "hygiene-url-credential-42";
const NEW_ENCRYPTION_KEY: &str = "NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ=";

/// A Graph API whose first answer to each call with each token fails and quotes the token
/// back, as an upstream error text might.
async fn graph() -> MockServer {
    let graph = MockServer::start().await;
    let quoting = |status: u16, token: &str| {
        ResponseTemplate::new(status).set_body_json(json!({"error": {
            "message": format!("An unexpected error has occurred (access_token={token})"),
            "type": "OAuthException", "code": 2, "is_transient": true}}))
    };
    for token in [TOKEN, NEW_TOKEN] {
        let bearer = format!("Bearer {token}");
        Mock::given(method("GET"))
            .and(path("/555"))
            .and(header("authorization", bearer.as_str()))
            .respond_with(quoting(500, token))
            .up_to_n_times(1)
            .mount(&graph)
            .await;
        Mock::given(method("POST"))
            .and(path("/me/messages"))
            .and(header("authorization", bearer.as_str()))
            .respond_with(quoting(500, token))
            .up_to_n_times(1)
            .mount(&graph)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/555"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"name": "Ann", "username": "ann"})),
        )
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"recipient_id": "555", "message_id": "mid.out"})),
        )
        .mount(&graph)
        .await;
    graph
}

/// A CRM that refuses the first delivery, quoting the signature headers it got, then accepts.
async fn crm() -> MockServer {
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string(format!(
            "refused: the secret {CRM_SECRET} and the key {URL_CREDENTIAL} do not match"
        )))
        .up_to_n_times(1)
        .mount(&crm)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&crm)
        .await;
    crm
}

/// Every answer the test read, to look for secrets in afterwards.
#[derive(Default)]
struct Answers(Vec<String>);

impl Answers {
    async fn read(&mut self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = format!("{:?}", response.headers());
        let text = response.text().await.expect("body");
        self.0.push(format!("{status} {headers} {text}"));
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn no_secret_shows_in_logs_metrics_answers_or_command_output() {
    let graph = graph().await;
    let crm = crm().await;
    let mut server = TestServer::builder()
        .env("LOG_LEVEL", "debug")
        .env("INSTAGRAM_APP_SECRET", APP_SECRET)
        .env("FACEBOOK_VERIFY_TOKEN", VERIFY_TOKEN)
        .env("INSTAGRAM_API_BASE_URL", &graph.uri())
        .env("CRM_ALLOW_PRIVATE_NETWORKS", "true")
        .env("CRM_RETRY_SCHEDULE", "100ms, 100ms")
        .env("SEND_RETRY_SCHEDULE", "100ms, 100ms")
        .env("DELIVERY_POLL_INTERVAL_MS", "50")
        .secret(TOKEN)
        .secret(NEW_TOKEN)
        .secret(CRM_SECRET)
        .secret(URL_CREDENTIAL)
        .start()
        .await;
    let mut answers = Answers::default();
    let mut secrets = server.secrets();
    secrets.push(server.api_key.clone());

    // Accounts, keys, scopes.
    let (status, account) = answers
        .read(server.api(Method::POST, "/api/v1/accounts").json(&json!({
            "instagram_account_id": IG, "username": "shop", "access_token": TOKEN,
            "crm_webhook_url": format!("{}/crm?key={URL_CREDENTIAL}", crm.uri()),
            "webhook_secret": CRM_SECRET,
        })))
        .await;
    assert_eq!(status, 201, "{account}");
    let account = account["account_id"].as_str().unwrap().to_owned();
    // The answers that make keys show them, once: kept out of the answers looked through.
    let mut made = Vec::new();
    for body in [json!({"name": "ops"}), json!({"account_id": account})] {
        let created: Value = server
            .api(Method::POST, "/api/v1/api-keys")
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        made.push((
            created["key_id"].as_str().unwrap().to_owned(),
            created["api_key"].as_str().unwrap().to_owned(),
        ));
    }
    let (admin_key, account_key) = (made[0].1.clone(), made[1].1.clone());
    secrets.extend([admin_key.clone(), account_key.clone()]);
    answers
        .read(server.api_as(&admin_key, Method::GET, "/api/v1/api-keys"))
        .await;
    answers
        .read(server.api_as(
            &account_key,
            Method::GET,
            &format!("/api/v1/accounts/{account}"),
        ))
        .await;
    let (status, _) = answers
        .read(server.api_as(&account_key, Method::GET, "/api/v1/api-keys"))
        .await;
    assert_eq!(status, 403);
    let unknown = format!("irk_{}", "Z".repeat(43));
    secrets.push(unknown.clone());
    for key in [unknown.as_str(), "irk_short", TOKEN] {
        let (status, _) = answers
            .read(server.api_as(key, Method::GET, "/api/v1/accounts"))
            .await;
        assert_eq!(status, 401);
    }
    answers
        .read(
            server
                .client
                .get(format!("{}/api/v1/accounts", server.url))
                .basic_auth("admin", Some(&admin_key)),
        )
        .await;

    // Auto-reply: the profile lookup and the first send fail, quoting the token.
    let (status, _) = answers
        .read(
            server
                .api(Method::POST, &format!("/api/v1/accounts/{account}/rules"))
                .json(&json!({
                    "name": "hello",
                    "conditions": [{"type": "keywords", "any_of": ["hello"]}],
                    "reply": {"text": "Hi {username}!"},
                })),
        )
        .await;
    assert_eq!(status, 201);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let dm = |mid: &str| {
        json!({"object": "instagram", "entry": [{"id": IG, "time": now, "messaging": [{
            "sender": {"id": "555"}, "recipient": {"id": IG}, "timestamp": now,
            "message": {"mid": mid, "text": "hello"}}]}]})
        .to_string()
    };
    let body = dm("mid.hygiene.1");
    assert_eq!(
        server
            .post_webhook(&body, Some(&sign_body(APP_SECRET, body.as_bytes())))
            .await
            .status(),
        200
    );
    // Forged and unsigned webhooks, a wrong and a right verification.
    let forged = dm("mid.forged");
    for signature in [Some(sign_body("not-the-secret", forged.as_bytes())), None] {
        let status = server
            .post_webhook(&forged, signature.as_deref())
            .await
            .status();
        assert_eq!(status, 401);
    }
    for token in ["wrong-token", VERIFY_TOKEN] {
        answers
            .read(server.client.get(format!(
                "{}/webhooks/instagram?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=42",
                server.url
            )))
            .await;
    }
    server
        .eventually("the auto-reply goes out after a failure", async || {
            (graph_sends(&graph).await.len() >= 2).then_some(())
        })
        .await;

    // The CRM refuses once, then takes the DM.
    server
        .eventually("the CRM takes the DM on its second try", async || {
            let received = crm.received_requests().await.unwrap_or_default();
            (received.len() >= 2).then_some(())
        })
        .await;

    // Sending with the account key, after a token change, the first try failing.
    answers
        .read(
            server
                .api(Method::PATCH, &format!("/api/v1/accounts/{account}"))
                .json(&json!({"access_token": NEW_TOKEN})),
        )
        .await;
    let (status, sent) = answers
        .read(
            server
                .api_as(&account_key, Method::POST, "/api/v1/messages/send")
                .json(&json!({"account_id": account, "recipient_id": "555",
                    "message": "your order shipped", "idempotency_key": "hygiene-1"})),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    let message = sent["message_id"].as_str().unwrap().to_owned();
    server
        .eventually("the send goes out after a failure", async || {
            graph_sends(&graph)
                .await
                .iter()
                .any(|s| s["authorization"] == format!("Bearer {NEW_TOKEN}"))
                .then_some(())
        })
        .await;
    let (_, deliveries) = answers
        .read(server.api(Method::GET, "/api/v1/deliveries"))
        .await;
    let delivery = deliveries["data"][0]["delivery_id"].as_str().unwrap();
    for path in [
        format!("/api/v1/deliveries/{delivery}"),
        format!("/api/v1/messages/{message}"),
        format!("/api/v1/accounts/{account}/conversations"),
        "/api/v1/accounts".to_owned(),
    ] {
        answers.read(server.api(Method::GET, &path)).await;
    }

    // A revoked key.
    answers
        .read(server.api(Method::DELETE, &format!("/api/v1/api-keys/{}", made[1].0)))
        .await;
    let (status, _) = answers
        .read(server.api_as(&account_key, Method::GET, "/api/v1/accounts"))
        .await;
    assert_eq!(status, 401);

    let metrics = server.get("/metrics").await.text().await.unwrap();

    // The commands operators run: keys, and a new encryption key.
    assert!(server.terminate().success());
    let run = |args: &[&str]| {
        let output = command(server.dir.path())
            .env("DATABASE_URL", &server.db.url)
            .env("ENCRYPTION_KEY", NEW_ENCRYPTION_KEY)
            .env(
                "ENCRYPTION_KEY_PREVIOUS",
                insta_router_blackbox::TEST_ENCRYPTION_KEY,
            )
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {output:?}");
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    let commands = [
        run(&["reencrypt"]),
        run(&["api-key", "list"]),
        run(&["api-key", "list", "--json"]),
        run(&["journal", "list"]),
    ]
    .join("\n");
    secrets.push(NEW_ENCRYPTION_KEY.to_owned());

    // The log went through failures at debug level...
    let log = server.output();
    for seen in ["profile lookup failed", "DEBUG"] {
        assert!(log.contains(seen), "{seen:?} is not in the log:\n{log}");
    }
    // The CRM URL is the account's setting, read back as given by keys that see the account
    // (SECURITY.md): its credential is a secret everywhere else.
    let in_answers: Vec<String> = secrets
        .iter()
        .filter(|s| *s != URL_CREDENTIAL)
        .cloned()
        .collect();
    for (what, text, secrets) in [
        ("the log", log.as_str(), &secrets),
        ("the metrics", metrics.as_str(), &secrets),
        ("the answers", &answers.0.join("\n"), &in_answers),
        ("the commands' output", commands.as_str(), &secrets),
    ] {
        // ...where the bootstrap key shows once, on its line, and nothing else does.
        if let Some(leak) = leaked_secret(text, secrets) {
            panic!("{what} show a secret: {leak}");
        }
    }
    assert_eq!(log.matches(server.api_key.as_str()).count(), 1);
}
