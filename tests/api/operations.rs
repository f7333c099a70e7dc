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
