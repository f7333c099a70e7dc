//! Credentials at rest: sealed with AES-256-GCM under `ENCRYPTION_KEY`, nowhere in the
//! database in the clear (nor base64), plain rows of earlier versions sealed at start, and a
//! key rotation with `reencrypt` that keeps every account sending and delivering.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use insta_router_blackbox::{TestServer, command, graph_sends, text_webhook};
use insta_router_instagram::sign_body;
use insta_router_storage::testing;
use reqwest::Method;
use ring::hmac;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const APP_SECRET: &str = "instagram-app-secret";
const IG: &str = "17841400000000001";
const TOKEN: &str = "EAAB-very-secret-access-token-4711";
const CRM_SECRET: &str = "crm-signing-secret-0815";
const KEY_1: &str = "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=";
const KEY_2: &str = "MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjI=";

async fn graph() -> MockServer {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/me/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"recipient_id": "555", "message_id": "mid.sent"})),
        )
        .mount(&graph)
        .await;
    graph
}

async fn crm() -> MockServer {
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&crm)
        .await;
    crm
}

fn builder(graph: &MockServer, key: &str) -> insta_router_blackbox::ServerBuilder {
    TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", APP_SECRET)
        .env("INSTAGRAM_API_BASE_URL", &graph.uri())
        .env("CRM_ALLOW_PRIVATE_NETWORKS", "true")
        .env("DELIVERY_POLL_INTERVAL_MS", "50")
        .env("ENCRYPTION_KEY", key)
        .secret(TOKEN)
        .secret(CRM_SECRET)
        .secret(&format!("{CRM_SECRET}-new"))
}

async fn connect(server: &TestServer, crm: &MockServer) -> String {
    let response = server
        .api(Method::POST, "/api/v1/accounts")
        .json(&json!({
            "instagram_account_id": IG, "username": "shop", "access_token": TOKEN,
            "crm_webhook_url": format!("{}/crm", crm.uri()), "webhook_secret": CRM_SECRET,
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

/// Every form a secret could take in a file: as it is, and in base64.
fn forms(secret: &str) -> Vec<Vec<u8>> {
    vec![
        secret.as_bytes().to_vec(),
        STANDARD.encode(secret).into_bytes(),
        URL_SAFE_NO_PAD.encode(secret).into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The stored credentials of every account, as text.
async fn stored_credentials(server: &TestServer) -> String {
    let db = server.db.connect().await;
    let rows = testing::rows(
        &db,
        "SELECT access_token_encrypted, webhook_secret, previous_webhook_secret FROM accounts",
    )
    .await;
    format!("{rows:?}")
}

/// Sends one message for `account` and waits until the Graph API got it.
async fn send_and_wait(server: &TestServer, graph: &MockServer, account: &str, n: usize) {
    let response = server
        .api(Method::POST, "/api/v1/messages/send")
        .json(&json!({"account_id": account, "recipient_id": "555", "message": "hello", "idempotency_key": format!("k{n}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    let sent = server
        .eventually(&format!("{n} Send API requests"), async || {
            let sent = graph_sends(graph).await;
            (sent.len() >= n).then_some(sent)
        })
        .await;
    assert_eq!(sent[n - 1]["authorization"], format!("Bearer {TOKEN}"));
}

/// Posts a webhook and waits until the CRM got it, signed with `CRM_SECRET`.
async fn deliver_and_wait(server: &TestServer, crm: &MockServer, mid: &str) {
    let body = text_webhook(IG, mid, "hi");
    let response = server
        .post_webhook(&body, Some(&sign_body(APP_SECRET, body.as_bytes())))
        .await;
    assert_eq!(response.status(), 200);
    let request: Request = server
        .eventually(&format!("{mid} at the CRM"), async || {
            let received: Vec<Request> = crm.received_requests().await.unwrap_or_default();
            received
                .into_iter()
                .find(|r| String::from_utf8_lossy(&r.body).contains(mid))
        })
        .await;
    let key = hmac::Key::new(hmac::HMAC_SHA256, CRM_SECRET.as_bytes());
    let expected = format!(
        "sha256={}",
        hex::encode(hmac::sign(&key, &request.body).as_ref())
    );
    assert_eq!(request.headers["x-hub-signature-256"], expected.as_str());
}

#[tokio::test]
async fn credentials_are_nowhere_in_the_database_in_the_clear() {
    let graph = graph().await;
    let crm = crm().await;
    let server = builder(&graph, KEY_1).start().await;
    let account = connect(&server, &crm).await;
    // A rotated CRM secret keeps the old one, sealed, for its grace period.
    let patched = server
        .api(Method::PATCH, &format!("/api/v1/accounts/{account}"))
        .json(&json!({"webhook_secret": format!("{CRM_SECRET}-new")}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    send_and_wait(&server, &graph, &account, 1).await;

    let stored = stored_credentials(&server).await;
    for secret in [TOKEN, CRM_SECRET] {
        for form in forms(secret) {
            assert!(!contains(stored.as_bytes(), &form), "{stored}");
        }
    }
    assert!(!stored.contains("plain:"), "{stored}");
    // On SQLite, the file and its WAL themselves.
    if insta_router_blackbox::backend() == "sqlite" {
        let file = server.db.url.trim_start_matches("sqlite://");
        let file = file.split('?').next().unwrap();
        let mut bytes = std::fs::read(file).unwrap();
        bytes.extend(std::fs::read(format!("{file}-wal")).unwrap_or_default());
        for secret in [TOKEN, CRM_SECRET] {
            for form in forms(secret) {
                assert!(!contains(&bytes, &form), "{secret} is in the database file");
            }
        }
        assert!(!contains(&bytes, b"plain:"));
    }
}

#[tokio::test]
async fn plain_credentials_of_an_earlier_version_are_sealed_at_start() {
    let graph = graph().await;
    let crm = crm().await;
    let mut server = builder(&graph, KEY_1).start().await;
    let account = connect(&server, &crm).await;
    let db = server.db.connect().await;
    // As an earlier version stored them.
    testing::execute(
        &db,
        &format!(
            "UPDATE accounts SET access_token_encrypted = 'plain:{TOKEN}', webhook_secret = 'plain:{CRM_SECRET}'"
        ),
    )
    .await;
    server.kill_and_restart().await;
    let stored = stored_credentials(&server).await;
    assert!(
        !stored.contains("plain:") && !stored.contains(TOKEN),
        "{stored}"
    );
    assert!(
        server
            .output()
            .contains("credentials stored in plain text are encrypted now")
    );
    send_and_wait(&server, &graph, &account, 1).await;
    deliver_and_wait(&server, &crm, "mid.after.sealing").await;
}

#[tokio::test]
async fn reencrypt_moves_every_credential_to_a_new_key_and_accounts_keep_working() {
    let graph = graph().await;
    let crm = crm().await;
    let mut old = builder(&graph, KEY_1).start().await;
    let account = connect(&old, &crm).await;
    send_and_wait(&old, &graph, &account, 1).await;
    assert!(old.terminate().success());

    let reencrypt = |key: &str, previous: &str| {
        command(old.dir.path())
            .env("DATABASE_URL", &old.db.url)
            .env("ENCRYPTION_KEY", key)
            .env("ENCRYPTION_KEY_PREVIOUS", previous)
            .arg("reencrypt")
            .output()
            .unwrap()
    };
    // Without the old key, nothing can be opened: said, and nothing changes.
    let blind = reencrypt(KEY_2, "");
    assert_eq!(blind.status.code(), Some(1), "{blind:?}");
    assert!(String::from_utf8_lossy(&blind.stdout).contains("ENCRYPTION_KEY_PREVIOUS"));
    let done = reencrypt(KEY_2, KEY_1);
    assert!(done.status.success(), "{done:?}");
    let text = String::from_utf8_lossy(&done.stdout);
    assert!(text.contains("1 accounts, 2 credentials"), "{text}");

    // The new key alone serves now.
    let new = builder(&graph, KEY_2).start_sharing(&old).await;
    send_and_wait(&new, &graph, &account, 2).await;
    deliver_and_wait(&new, &crm, "mid.after.rotation").await;
    assert!(!new.output().contains("cannot open"), "{}", new.output());
}

#[tokio::test]
async fn a_bad_key_stops_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("ENCRYPTION_KEY", "too-short"),
        ("ENCRYPTION_KEY", &STANDARD.encode([1_u8; 16])),
        ("ENCRYPTION_KEY_PREVIOUS", "not base64!"),
    ] {
        let output = command(dir.path())
            .arg("serve")
            .env("ENCRYPTION_KEY", KEY_1)
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{stderr}");
        assert!(
            !stderr.contains(value) || value.len() < 12,
            "the value is not echoed: {stderr}"
        );
    }
    let output = command(dir.path())
        .arg("serve")
        .env("ENCRYPTION_KEY", "x")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("openssl rand -base64 32"));
}

#[tokio::test]
async fn production_refuses_to_start_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = insta_router_blackbox::fresh_database().await;
    let output = command(dir.path())
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("ENVIRONMENT", "production")
        .env("INSTAGRAM_APP_SECRET", APP_SECRET)
        .env("FACEBOOK_VERIFY_TOKEN", "verify")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("ENCRYPTION_KEY"));
}

#[tokio::test]
async fn development_without_a_key_keeps_one_in_a_private_file_beside_the_database() {
    if insta_router_blackbox::backend() != "sqlite" {
        return;
    }
    let graph = graph().await;
    let crm = crm().await;
    let mut server = builder(&graph, "").start().await;
    let account = connect(&server, &crm).await;
    let file = server.db.url.trim_start_matches("sqlite://");
    let key_file = format!("{}.key", file.split('?').next().unwrap());
    let metadata = std::fs::metadata(&key_file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    }
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(STANDARD.decode(key.trim()).unwrap().len(), 32);
    assert!(server.output().contains("ENCRYPTION_KEY is not set"));
    assert!(
        !server.output().contains(key.trim()),
        "the key is not logged"
    );
    // The same key after a restart: the account still sends.
    server.kill_and_restart().await;
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);
    send_and_wait(&server, &graph, &account, 1).await;
}
