//! Start-up, configuration, migrations from the command line, and graceful shutdown.

use std::process::Stdio;

use insta_router_blackbox::{TestServer, command, fresh_database};

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let mut server = TestServer::start().await;
    assert_eq!(server.get("/health").await.status(), 200);
    let status = server.terminate();
    assert!(status.success(), "{status:?}\n{}", server.output());
    assert!(server.output().contains("shut down"), "{}", server.output());
}

#[tokio::test]
async fn the_original_sqlalchemy_database_url_means_the_same_file() {
    let server = TestServer::builder()
        .env(
            "DATABASE_URL",
            "sqlite+aiosqlite:///./instagram_automation.db",
        )
        .start_with(
            insta_router_storage::testing::sqlite(),
            tempfile::tempdir().unwrap(),
        )
        .await;
    assert_eq!(server.get("/health").await.status(), 200);
    assert!(server.dir.path().join("instagram_automation.db").exists());
}

#[tokio::test]
async fn production_without_meta_secrets_refuses_to_start_and_names_them() {
    let db = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path())
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("ENVIRONMENT", "production")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    // A configuration error, as OPERATIONS.md says: status 2.
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("FACEBOOK_VERIFY_TOKEN") && stderr.contains("INSTAGRAM_APP_SECRET"),
        "{stderr}"
    );
}

/// `insta-router <args>` in a fresh directory with `DATABASE_URL`; its exit status and
/// standard error.
fn failing(url: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path())
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_database_that_cannot_be_opened_is_explained_once_by_its_root_cause() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let missing = tempfile::tempdir().unwrap();
    let cases = [
        (
            format!("postgres://postgres@127.0.0.1:{closed}/test"),
            format!("127.0.0.1:{closed} refused the connection"),
        ),
        (
            "mysql://root@no-such-host.invalid:3306/test".to_owned(),
            "unknown host no-such-host.invalid".to_owned(),
        ),
        (
            format!("sqlite://{}/absent/x.db", missing.path().display()),
            format!(
                "the directory {}/absent does not exist",
                missing.path().display()
            ),
        ),
    ];
    for (url, cause) in cases {
        for args in [&["serve"][..], &["migrate", "status"]] {
            let (code, stderr) = failing(&url, args);
            assert_eq!(code, Some(1), "{args:?} {url}: {stderr}");
            assert!(stderr.contains(&cause), "{args:?} {url}: {stderr}");
            // Said once: one error line, no cause repeated, no pool-timeout noise.
            assert_eq!(
                stderr.matches("error").count(),
                1,
                "{args:?} {url}: {stderr}"
            );
            assert_eq!(stderr.matches(&cause).count(), 1, "{stderr}");
            assert!(!stderr.contains("timed out"), "{stderr}");
        }
    }
}

#[tokio::test]
async fn a_bad_setting_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path())
        .arg("serve")
        .env("PORT", "eighty")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PORT"), "{stderr}");
}

#[tokio::test]
async fn a_dotenv_file_is_read_and_the_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "FACEBOOK_VERIFY_TOKEN=from-dotenv\nENVIRONMENT=staging\n",
    )
    .unwrap();
    let server = TestServer::builder()
        .env("ENVIRONMENT", "from-env")
        .start_with(fresh_database().await, dir)
        .await;
    let root: serde_json::Value = server.get("/").await.json().await.unwrap();
    assert_eq!(root["environment"], "from-env");
    // The verify token came from .env, so only the app-secret warning remains.
    let output = server.output();
    assert!(
        !output.contains("FACEBOOK_VERIFY_TOKEN is not set"),
        "{output}"
    );
    assert!(output.contains("INSTAGRAM_APP_SECRET"), "{output}");
}

fn migrate(dir: &std::path::Path, url: &str, args: &[&str]) -> String {
    let output = command(dir)
        .arg("migrate")
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "migrate {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn migrate_up_down_and_status_from_the_command_line() {
    let db = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let status = migrate(dir.path(), &db.url, &["status"]);
    assert!(
        status.lines().count() >= 4 && status.lines().all(|l| l.starts_with("pending")),
        "{status}"
    );
    migrate(dir.path(), &db.url, &["up"]);
    let status = migrate(dir.path(), &db.url, &["status"]);
    assert!(status.lines().all(|l| l.starts_with("applied")), "{status}");
    migrate(dir.path(), &db.url, &["down"]);
    let status = migrate(dir.path(), &db.url, &["status"]);
    assert_eq!(
        status.lines().filter(|l| l.starts_with("pending")).count(),
        1,
        "{status}"
    );
    migrate(dir.path(), &db.url, &["down", "--all"]);
    let status = migrate(dir.path(), &db.url, &["status"]);
    assert!(status.lines().all(|l| l.starts_with("pending")), "{status}");

    // A server started with --no-migrate on the empty schema is up but cannot check a key:
    // 503, not 401.
    let server = TestServer::builder()
        .arg("--no-migrate")
        .start_with(db, tempfile::tempdir().unwrap())
        .await;
    assert!(server.api_key.is_empty(), "no key could be made");
    // Alive, but not ready until the schema is migrated.
    assert_eq!(server.get("/health").await.status(), 200);
    let ready = server.get("/ready").await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["schema"], "pending", "{body}");
    assert!(server.output().contains("not ready until then"));
    let key = format!("irk_{}", "k".repeat(43));
    let response = server
        .api_as(&key, reqwest::Method::GET, "/api/v1/accounts")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
}

/// `insta-router <args>` on the server's database; its standard output.
fn cli(server: &TestServer, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = command(server.dir.path())
        .args(args)
        .env("DATABASE_URL", &server.db.url)
        .env("ENCRYPTION_KEY", insta_router_blackbox::TEST_ENCRYPTION_KEY)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn old_webhook_bodies_are_pruned_in_the_background_and_prune_dry_run_only_counts() {
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", "retention-secret")
        .env("RETENTION_JOURNAL", "1s")
        .env("RETENTION_INTERVAL", "1s")
        .start()
        .await;
    for mid in ["mid.r1", "mid.r2"] {
        let body = insta_router_blackbox::text_webhook("17841400000000001", mid, "hi");
        server.deliver_webhook(&body).await;
    }
    let stats = server
        .eventually("the journal to be pruned", async || {
            let stats: serde_json::Value =
                serde_json::from_str(&cli(&server, &["stats", "--json"], &[])).ok()?;
            (stats["webhook_journal"] == 0).then_some(stats)
        })
        .await;
    // Messages are kept unless configured.
    assert_eq!(stats["messages"], 2, "{stats}");
    assert!(server.output().contains("old rows pruned"));

    let preview = cli(
        &server,
        &["prune", "--dry-run"],
        &[("RETENTION_MESSAGES", "1ms")],
    );
    assert!(
        preview
            .lines()
            .any(|l| l.starts_with("messages") && l.contains("2 would be deleted")),
        "{preview}"
    );
    assert!(
        preview
            .lines()
            .any(|l| l.starts_with("dead_letters") && l.contains("kept for ever")),
        "{preview}"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&cli(&server, &["stats", "--json"], &[])).unwrap();
    assert_eq!(stats["messages"], 2, "--dry-run deleted nothing: {stats}");
}
