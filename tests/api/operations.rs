//! What an operator runs beside the server: `backup` (and, on database servers, what to run
//! instead).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use insta_router_blackbox::{TestServer, backend, command, text_webhook};

const ACCOUNT: &str = "17841400000000001";

/// `insta-router <args>` in the server's directory on the server's database.
fn run(server: &TestServer, args: &[&str]) -> std::process::Output {
    command(server.dir.path())
        .args(args)
        .env("DATABASE_URL", &server.db.url)
        .env("ENCRYPTION_KEY", insta_router_blackbox::TEST_ENCRYPTION_KEY)
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_backup_taken_under_webhook_load_restores_every_event_acknowledged_before_it() {
    let server = Arc::new(
        TestServer::builder()
            .env("INSTAGRAM_APP_SECRET", "backup-secret")
            .start()
            .await,
    );
    if backend() != "sqlite" {
        // A database server: the answer names its own dump tool, and no file is made.
        let target = server.dir.path().join("backup.dump");
        let output = run(&server, &["backup", target.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(1));
        let said = String::from_utf8_lossy(&output.stdout);
        let tool = if backend() == "postgres" {
            "pg_dump"
        } else {
            "mysqldump"
        };
        assert!(
            said.contains(tool) && said.contains("migrate status"),
            "{said}"
        );
        assert!(!target.exists());
        return;
    }
    // Eight clients send webhooks until told to stop; each acknowledged mid is recorded.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..8 {
        let (server, acknowledged, stop) = (server.clone(), acknowledged.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mid = format!("mid.load.{client}.{n}");
                let response = server.post_signed(&text_webhook(ACCOUNT, &mid, "hi")).await;
                assert_eq!(response.status(), 200, "{}", server.output());
                acknowledged.lock().unwrap().push(mid);
                n += 1;
            }
        }));
    }
    // Some load first, so that the backup runs beside it.
    server
        .eventually("webhooks to be acknowledged", async || {
            (acknowledged.lock().unwrap().len() >= 200).then_some(())
        })
        .await;
    let before: HashSet<String> = acknowledged.lock().unwrap().iter().cloned().collect();
    let target = server.dir.path().join("backups").join("copy.db");
    std::fs::create_dir(target.parent().unwrap()).unwrap();
    let output = {
        let (server, target) = (server.clone(), target.clone());
        tokio::task::spawn_blocking(move || run(&server, &["backup", target.to_str().unwrap()]))
            .await
            .unwrap()
    };
    let during = acknowledged.lock().unwrap().len() - before.len();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("to restore:"), "{said}");
    assert!(
        during > 0,
        "no webhook was acknowledged while the backup ran"
    );

    // The copy is a database of this release...
    let copy_url = format!("sqlite://{}", target.display());
    let status = command(server.dir.path())
        .args(["migrate", "status"])
        .env("DATABASE_URL", &copy_url)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{listed}");
    assert!(
        listed.lines().count() >= 4 && listed.lines().all(|l| l.starts_with("applied")),
        "{listed}"
    );
    // ...holding every message acknowledged before the backup began.
    let url = insta_router_storage::DatabaseUrl::parse(&copy_url).unwrap();
    let copy = insta_router_storage::Database::connect(&url, &Default::default())
        .await
        .unwrap();
    let stored: HashSet<String> =
        insta_router_storage::testing::rows(&copy, "SELECT mid FROM messages")
            .await
            .into_iter()
            .filter_map(|row| row["mid"].as_str().map(str::to_owned))
            .collect();
    let missing: Vec<&String> = before.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{} missing, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let _ = copy.close().await;

    // A second backup never overwrites the first.
    let again = run(&server, &["backup", target.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[tokio::test]
async fn doctor_names_a_refused_token_and_an_unreachable_crm() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/me"))
        .and(header("authorization", "Bearer IGQVJ-good"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(insta_router_blackbox::graph_fixture("me.json")),
        )
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/me"))
        .and(header("authorization", "Bearer IGQVJ-expired"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "error": {"message": "Error validating access token: Session has expired", "type": "OAuthException", "code": 190, "error_subcode": 463}
        })))
        .mount(&graph)
        .await;
    let crm = MockServer::start().await;
    Mock::given(method("HEAD"))
        .respond_with(ResponseTemplate::new(405))
        .mount(&crm)
        .await;
    // A port nothing listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let env = [
        ("INSTAGRAM_API_BASE_URL", graph.uri()),
        ("CRM_ALLOW_PRIVATE_NETWORKS", "true".to_owned()),
        ("FACEBOOK_VERIFY_TOKEN", "doctor-verify".to_owned()),
        ("INSTAGRAM_APP_SECRET", "doctor-secret".to_owned()),
    ];
    let mut builder = TestServer::builder()
        .secret("IGQVJ-good")
        .secret("IGQVJ-expired")
        .secret("crm-secret");
    for (key, value) in &env {
        builder = builder.env(key, value);
    }
    let server = builder.start().await;
    let mut ids = Vec::new();
    for (n, (username, token, crm_url)) in [
        ("goodshop", "IGQVJ-good", format!("{}/hooks", crm.uri())),
        (
            "oldshop",
            "IGQVJ-expired",
            format!("http://127.0.0.1:{closed}/hooks"),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let response = server
            .api(reqwest::Method::POST, "/api/v1/accounts")
            .json(&serde_json::json!({
                "instagram_account_id": format!("1784140000000000{n}"),
                "username": username,
                "access_token": token,
                "crm_webhook_url": crm_url,
                "webhook_secret": "crm-secret",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: serde_json::Value = response.json().await.unwrap();
        ids.push(body["account_id"].as_str().unwrap().to_owned());
    }

    let output = command(server.dir.path())
        .arg("doctor")
        .env("DATABASE_URL", &server.db.url)
        .env("ENCRYPTION_KEY", insta_router_blackbox::TEST_ENCRYPTION_KEY)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{said}");
    let line = |needle: &str| {
        said.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{said}"))
            .to_owned()
    };
    for check in ["configuration", "database", "schema"] {
        assert!(line(&format!("{check}:")).starts_with("ok"), "{said}");
    }
    let good_token = line(&format!("account {} (@goodshop) token", ids[0]));
    assert!(
        good_token.starts_with("ok") && good_token.contains("@goodshop"),
        "{said}"
    );
    let good_crm = line(&format!("account {} CRM", ids[0]));
    assert!(
        good_crm.starts_with("ok") && good_crm.contains("HTTP 405"),
        "{said}"
    );
    let bad_token = line(&format!("account {} (@oldshop) token", ids[1]));
    assert!(
        bad_token.starts_with("FAIL")
            && bad_token.contains("code 190")
            && bad_token.contains("PATCH"),
        "{said}"
    );
    let bad_crm = line(&format!("account {} CRM", ids[1]));
    assert!(
        bad_crm.starts_with("FAIL")
            && bad_crm.contains(&format!("127.0.0.1:{closed}"))
            && bad_crm.to_lowercase().contains("refused"),
        "{said}"
    );
    assert!(said.contains("2 of 7 checks failed"), "{said}");
    // Nothing secret on the way.
    assert_eq!(
        insta_router_blackbox::leaked_secret(&said, &server.secrets()),
        None
    );
}
