//! Nothing Meta was told we received is lost: every way the database can fail under the
//! webhook path, and what each answer means afterwards. After each outage, every webhook
//! answered 200 is in `messages`, reached the CRM once and was offered to the auto-reply
//! rules; the answers during the outage were 200 or 503, never a 200 whose events are lost.
//!
//! - events the database refuses (a trigger stands in for a constraint, a full disk, a
//!   dropped pool): journaled as failed, replayed with backoff, visible while they fail;
//! - a database that refuses even the journal: the local spool, moved back later;
//! - a full disk under SQLite (a small tmpfs);
//! - PostgreSQL or MariaDB restarted under load, or stopped for seconds (a private server
//!   the test starts in a temporary directory, never the machine's shared one);
//! - a connection dropped in the middle of a commit (a proxy cuts it).
//!
//! The server tests run on the backend `TEST_BLACKBOX_DB` names; `.ci/run` runs all three.

use std::collections::{HashMap, HashSet};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use insta_router_blackbox::disk::SmallDisk;
use insta_router_blackbox::private_db::PrivateServer;
use insta_router_blackbox::proxy::CuttingProxy;
use insta_router_blackbox::{ServerBuilder, TestServer, backend, fresh_database, futures_join};
use insta_router_instagram::sign_body;
use insta_router_storage::testing;
use insta_router_storage::{Backend, Database};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "instagram-app-secret";
const ACCOUNT: &str = "17841400000000001";

/// A server that delivers to loopback CRMs and polls quickly.
fn builder() -> ServerBuilder {
    TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", SECRET)
        .env("CRM_ALLOW_PRIVATE_NETWORKS", "true")
        .env("CRM_WEBHOOK_TIMEOUT", "2")
        // A delivery whose attempt could not be recorded is sent again after its lease.
        .env("DELIVERY_LEASE", "5")
        .env("DELIVERY_POLL_INTERVAL_MS", "100")
}

/// A CRM answering 200 to everything.
async fn crm() -> MockServer {
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&crm)
        .await;
    crm
}

/// Connects the account, delivering to `crm`, with a rule.
async fn connect(server: &TestServer, crm: &MockServer) {
    let response = server
        .api(Method::POST, "/api/v1/accounts")
        .json(&json!({
            "instagram_account_id": ACCOUNT,
            "username": "shop",
            "access_token": "IGQVJ-token",
            "crm_webhook_url": format!("{}/crm", crm.uri()),
            "webhook_secret": "crm-secret",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    // A rule that never fires, so that every message is offered to the rules.
    let account: Value = response.json().await.unwrap();
    let id = account["account_id"].as_str().unwrap();
    insta_router_blackbox::add_quiet_rule(server, id).await;
}

fn text_webhook(mid: &str) -> String {
    insta_router_blackbox::text_webhook(ACCOUNT, mid, &format!("is {mid} in stock?"))
}

/// Posts a signed webhook for `mid`; its status and JSON body.
async fn post(server: &TestServer, mid: &str) -> (StatusCode, Value) {
    post_body(server, text_webhook(mid)).await
}

/// Posts `body`, signed; its status and JSON body.
async fn post_body(server: &TestServer, body: String) -> (StatusCode, Value) {
    let response = server.post_signed(&body).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn rows(db: &Database, sql: &str) -> Vec<Value> {
    testing::rows(db, sql).await
}

async fn column(db: &Database, sql: &str) -> Vec<String> {
    rows(db, sql)
        .await
        .into_iter()
        .filter_map(|r| {
            r.as_object()
                .and_then(|o| o.values().next())
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

async fn stored_mids(db: &Database) -> HashSet<String> {
    column(db, "SELECT mid FROM messages")
        .await
        .into_iter()
        .collect()
}

/// The mids whose auto-reply job ran: offered to the rules.
async fn offered_to_rules(db: &Database) -> HashSet<String> {
    column(
        db,
        "SELECT m.mid FROM jobs j JOIN messages m ON m.id = j.subject \
         WHERE j.kind = 'auto_reply' AND j.status = 'done'",
    )
    .await
    .into_iter()
    .collect()
}

/// The `webhook-id`s under which the CRM received each mid. Delivery is at least once: a
/// delivery whose attempt could not be recorded (a full disk) is sent again, under the same
/// id, which is what the CRM deduplicates on.
async fn crm_mids(crm: &MockServer) -> HashMap<String, HashSet<String>> {
    let mut seen: HashMap<String, HashSet<String>> = HashMap::new();
    for request in crm.received_requests().await.unwrap_or_default() {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let id = request
            .headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if let Some(mid) = body["data"]["instagram_message_id"].as_str() {
            seen.entry(mid.to_owned()).or_default().insert(id);
        }
    }
    seen
}

/// Waits until `check` holds, for at most `secs` seconds, showing `what` and the server's
/// output when it does not.
async fn wait_for<F, Fut>(server: &TestServer, secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    server
        .eventually_within(Duration::from_secs(secs), what, async || {
            check().await.then_some(())
        })
        .await;
}

/// Waits until every mid of `answered` is stored, reached the CRM as one event (one delivery
/// job, one `webhook-id`) and was offered to the rules.
async fn all_delivered(
    server: &TestServer,
    db: &Database,
    crm: &MockServer,
    answered: &HashSet<String>,
    secs: u64,
) {
    wait_for(
        server,
        secs,
        "every webhook answered 200 is stored",
        || async { answered.is_subset(&stored_mids(db).await) },
    )
    .await;
    wait_for(
        server,
        secs,
        "every stored webhook reached the CRM",
        || async {
            let seen = crm_mids(crm).await;
            answered.iter().all(|m| seen.contains_key(m))
        },
    )
    .await;
    wait_for(
        server,
        secs,
        "every stored message was offered to the rules",
        || async { answered.is_subset(&offered_to_rules(db).await) },
    )
    .await;
    // Each once: one delivery job per message, all done.
    let jobs = column(
        db,
        "SELECT m.mid FROM jobs j JOIN messages m ON m.id = j.subject WHERE j.kind = 'crm_delivery'",
    )
    .await;
    let mut per_mid: HashMap<String, usize> = HashMap::new();
    for mid in jobs {
        *per_mid.entry(mid).or_default() += 1;
    }
    for mid in answered {
        assert_eq!(per_mid.get(mid), Some(&1), "one delivery of {mid}");
    }
    let seen = crm_mids(crm).await;
    for mid in answered {
        assert_eq!(
            seen.get(mid).map(HashSet::len),
            Some(1),
            "the CRM got {mid} as one event (one webhook-id)"
        );
    }
}

/// Runs `insta-router journal ...` on the server's database, in its working directory.
fn journal(server: &TestServer, args: &[&str]) -> Output {
    insta_router_blackbox::command(server.dir.path())
        .env("DATABASE_URL", &server.db.url)
        .arg("journal")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// SQL that makes the database refuse `table` rows (every row, or those whose `mid` is
/// `mid`), and the SQL that lifts it.
fn refusal(backend: Backend, table: &str, mid: Option<&str>) -> (Vec<String>, String) {
    let name = format!("refuse_{table}");
    let reason = format!("{table} refused by the test");
    match backend {
        Backend::Sqlite => {
            let when = mid.map_or(String::new(), |m| format!(" WHEN NEW.mid = '{m}'"));
            (
                vec![format!(
                    "CREATE TRIGGER {name} BEFORE INSERT ON {table}{when} BEGIN SELECT RAISE(ABORT, '{reason}'); END"
                )],
                format!("DROP TRIGGER {name}"),
            )
        }
        Backend::Postgres => {
            let when = mid.map_or(String::new(), |m| format!(" WHEN (NEW.mid = '{m}')"));
            (
                vec![
                    format!(
                        "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{reason}'; END $$"
                    ),
                    format!(
                        "CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW{when} EXECUTE FUNCTION {name}()"
                    ),
                ],
                format!("DROP TRIGGER {name} ON {table}"),
            )
        }
        Backend::MySql => {
            let condition = mid.map_or("TRUE".to_owned(), |m| format!("NEW.mid = '{m}'"));
            (
                vec![format!(
                    "CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW BEGIN IF {condition} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{reason}'; END IF; END"
                )],
                format!("DROP TRIGGER {name}"),
            )
        }
    }
}

async fn refuse(db: &Database, table: &str, mid: Option<&str>) -> String {
    let (create, lift) = refusal(db.backend(), table, mid);
    for sql in create {
        testing::execute(db, &sql).await;
    }
    lift
}

#[tokio::test]
async fn events_the_database_refuses_are_journaled_then_replayed_and_forwarded_once() {
    let server = builder().start().await;
    let crm = crm().await;
    connect(&server, &crm).await;
    let db = server.db.connect().await;
    let lift = refuse(&db, "messages", Some("mid.refused")).await;

    let (status, body) = post(&server, "mid.refused").await;
    assert_eq!(status, 200, "{}", server.output());
    assert_eq!(body, json!({"status": "ok", "messages_processed": 0}));
    // Its neighbours go on.
    let (status, body) = post(&server, "mid.fine").await;
    assert_eq!(
        (status.as_u16(), body["messages_processed"].as_u64()),
        (200, Some(1))
    );

    let journal = rows(
        &db,
        "SELECT id, status, error FROM webhook_journal WHERE status = 'failed'",
    )
    .await;
    assert_eq!(journal.len(), 1, "{journal:?}");
    let error = journal[0]["error"].as_str().unwrap();
    assert!(
        error.contains("messages refused by the test"),
        "the real cause: {error}"
    );
    testing::execute(&db, &lift).await;

    let answered: HashSet<String> = ["mid.refused", "mid.fine"].map(str::to_owned).into();
    all_delivered(&server, &db, &crm, &answered, 30).await;
    let id = journal[0]["id"].as_str().unwrap();
    let entry = rows(
        &db,
        &format!("SELECT status, error FROM webhook_journal WHERE id = '{id}'"),
    )
    .await;
    assert_eq!(entry[0]["status"], "accepted");
    assert_eq!(entry[0]["error"], Value::Null);
    let output = server.output();
    assert!(
        output.contains("journaled as failed for replay"),
        "{output}"
    );
    assert!(output.contains("journaled webhook replayed"), "{output}");
}

#[tokio::test]
async fn a_webhook_that_keeps_failing_stays_visible_and_never_holds_the_others_back() {
    let server = builder().start().await;
    let crm = crm().await;
    connect(&server, &crm).await;
    let db = server.db.connect().await;
    let lift = refuse(&db, "messages", Some("mid.poison")).await;
    assert_eq!(post(&server, "mid.poison").await.0, 200);

    // Its first replay (after a second) fails too, and is rescheduled with the reason.
    wait_for(&server, 20, "a failed replay", || async {
        !rows(
            &db,
            "SELECT attempts FROM jobs WHERE kind = 'webhook_replay' AND attempts >= 1 AND status = 'queued'",
        )
        .await
        .is_empty()
    })
    .await;
    let job = rows(
        &db,
        "SELECT last_error, subject FROM jobs WHERE kind = 'webhook_replay'",
    )
    .await;
    assert!(
        job[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("messages refused by the test")
    );
    let id = job[0]["subject"].as_str().unwrap().to_owned();
    assert!(
        server.output().contains("not replayed yet"),
        "{}",
        server.output()
    );

    // Others are stored meanwhile.
    let others: HashSet<String> = (0..5).map(|n| format!("mid.other.{n}")).collect();
    for mid in &others {
        assert_eq!(post(&server, mid).await.0, 200);
    }
    all_delivered(&server, &db, &crm, &others, 30).await;

    // An operator sees it: the journal command, the metrics.
    let listed = journal(&server, &["list", "--status", "failed"]);
    assert!(listed.status.success(), "{listed:?}");
    let text = stdout(&listed);
    assert!(
        text.contains(&id)
            && text.contains("failed")
            && text.contains("messages refused by the test"),
        "{text}"
    );
    let listed = stdout(&journal(&server, &["list", "--status", "failed", "--json"]));
    let entries: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 1, "{listed}");
    assert_eq!(entries[0]["id"], id.as_str());
    assert!(entries[0]["replays"].as_u64().unwrap() >= 1);
    assert!(entries[0]["next_replay_at"].is_string());
    wait_for(&server, 15, "the backlog in /metrics", || async {
        let metrics = server.get("/metrics").await.text().await.unwrap();
        metrics.contains(r#"insta_router_webhooks_awaiting_replay{in="journal"} 1"#)
            && metrics.contains(r#"insta_router_webhooks_total{outcome="failed"} 1"#)
            && metrics.contains(r#"insta_router_webhook_replays_total{outcome="failed"}"#)
    })
    .await;

    // A replay by hand fails while the cause remains, and says why.
    let replayed = journal(&server, &["replay", &id]);
    assert_eq!(replayed.status.code(), Some(1), "{replayed:?}");
    assert!(
        stdout(&replayed).contains("failed: "),
        "{}",
        stdout(&replayed)
    );
    assert!(stdout(&replayed).contains("messages refused by the test"));

    // Fixed, a replay of everything stores it without waiting for its schedule.
    testing::execute(&db, &lift).await;
    let replayed = journal(&server, &["replay", "--all"]);
    assert!(replayed.status.success(), "{replayed:?}");
    assert!(
        stdout(&replayed).contains(&format!("{id} stored (1 new events)")),
        "{}",
        stdout(&replayed)
    );
    let poison: HashSet<String> = ["mid.poison".to_owned()].into();
    all_delivered(&server, &db, &crm, &poison, 30).await;
    let listed = stdout(&journal(&server, &["list", "--status", "failed"]));
    assert_eq!(listed, "", "nothing awaits replay");
    wait_for(&server, 15, "an empty backlog in /metrics", || async {
        let metrics = server.get("/metrics").await.text().await.unwrap();
        metrics.contains(r#"insta_router_webhooks_awaiting_replay{in="journal"} 0"#)
    })
    .await;
    // Unknown ids are named.
    let unknown = journal(&server, &["replay", "whk_0123"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no webhook whk_0123"));
}

#[tokio::test]
async fn bodies_the_database_refuses_entirely_are_spooled_and_moved_in_when_it_is_back() {
    let server = builder().start().await;
    let crm = crm().await;
    connect(&server, &crm).await;
    let db = server.db.connect().await;
    let lift = refuse(&db, "webhook_journal", None).await;

    let mids: HashSet<String> = (0..3).map(|n| format!("mid.spooled.{n}")).collect();
    for mid in &mids {
        let (status, body) = post(&server, mid).await;
        assert_eq!(status, 200, "{}", server.output());
        assert_eq!(body["messages_processed"], 0);
    }
    let spool = server.dir.path().join("spool");
    let files = std::fs::read_dir(&spool).unwrap().count();
    assert_eq!(files, 3, "one synced file each");
    let listed = stdout(&journal(&server, &["list", "--status", "spooled"]));
    assert_eq!(
        listed.lines().filter(|l| l.contains("spooled")).count(),
        3,
        "{listed}"
    );
    wait_for(&server, 15, "the spool in /metrics", || async {
        let metrics = server.get("/metrics").await.text().await.unwrap();
        metrics.contains(r#"insta_router_webhooks_awaiting_replay{in="spool"} 3"#)
            && metrics.contains(r#"insta_router_webhooks_total{outcome="spooled"} 3"#)
    })
    .await;
    assert!(stored_mids(&db).await.is_empty());

    testing::execute(&db, &lift).await;
    all_delivered(&server, &db, &crm, &mids, 30).await;
    assert_eq!(
        std::fs::read_dir(&spool).unwrap().count(),
        0,
        "the spool is emptied"
    );
    assert_eq!(db.row_count("webhook_journal").await.unwrap(), 3);
}

#[tokio::test]
async fn without_a_spool_a_database_that_refuses_writes_gets_503_and_meta_retries() {
    let server = builder().env("WEBHOOK_SPOOL_DIR", "").start().await;
    let db = server.db.connect().await;
    let lift = refuse(&db, "webhook_journal", None).await;
    let body = text_webhook("mid.retried");
    let response = server.post_signed(&body).await;
    assert_eq!(response.status(), 503, "{}", server.output());
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(response.headers().contains_key("retry-after"));
    for table in ["webhook_journal", "messages", "conversations", "jobs"] {
        assert_eq!(
            db.row_count(table).await.unwrap(),
            0,
            "{table}: nothing half-stored"
        );
    }
    // Meta retries once the database is back: the event is stored then.
    testing::execute(&db, &lift).await;
    let (status, body) = post(&server, "mid.retried").await;
    assert_eq!(
        (status.as_u16(), body["messages_processed"].as_u64()),
        (200, Some(1))
    );
}

/// A full disk under SQLite: with the spool on another disk, webhooks are answered 200 and
/// kept there; with the spool on the same full disk, 503 (Meta retries). Either way nothing
/// answered 200 is lost once space is freed.
#[tokio::test]
async fn a_full_disk_under_sqlite_loses_nothing() {
    if backend() != "sqlite" {
        return;
    }
    for spool_on_the_full_disk in [false, true] {
        let Some(disk) = SmallDisk::mount("24m") else {
            // Not root: the disk fills through an injected write error instead.
            injected_full_disk().await;
            return;
        };
        let db_url = format!(
            "sqlite://{}?mode=rwc",
            disk.path().join("insta.db").display()
        );
        let mut server = builder();
        if spool_on_the_full_disk {
            server = server.env(
                "WEBHOOK_SPOOL_DIR",
                &disk.path().join("spool").display().to_string(),
            );
        }
        let server = server
            .start_with(testing::existing(&db_url), tempfile::tempdir().unwrap())
            .await;
        let crm = crm().await;
        connect(&server, &crm).await;
        let db = server.db.connect().await;

        let mut answered = HashSet::new();
        let mut refused = Vec::new();
        for n in 0..10 {
            let mid = format!("mid.before.{n}");
            assert_eq!(post(&server, &mid).await.0, 200);
            answered.insert(mid);
        }
        disk.fill();
        // Large bodies, so the writes need more disk than the WAL already holds.
        let padded = |mid: &str| {
            let mut body: Value = serde_json::from_str(&text_webhook(mid)).unwrap();
            body["padding"] = json!("x".repeat(300_000));
            body.to_string()
        };
        for n in 0..10 {
            let mid = format!("mid.full.{n}");
            let Ok((status, _)) =
                tokio::time::timeout(Duration::from_secs(20), post_body(&server, padded(&mid)))
                    .await
            else {
                panic!("no answer during the full disk:\n{}", server.output());
            };
            match status.as_u16() {
                200 => {
                    answered.insert(mid);
                }
                503 => refused.push(mid),
                other => panic!("{other} during the full disk:\n{}", server.output()),
            }
        }
        if spool_on_the_full_disk {
            assert!(!refused.is_empty(), "nowhere to keep them: 503");
        } else {
            assert!(refused.is_empty(), "kept in the spool: {refused:?}");
        }
        disk.free();
        // Meta retries what was refused.
        for mid in refused {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if post_body(&server, padded(&mid)).await.0 == 200 {
                    answered.insert(mid);
                    break;
                }
                assert!(Instant::now() < deadline, "{}", server.output());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        all_delivered(&server, &db, &crm, &answered, 60).await;
        assert_eq!(answered.len(), 20);
        drop(db);
        drop(server);
    }
}

/// The full-disk test for a machine where mounting is not allowed: every write refused.
async fn injected_full_disk() {
    let server = builder().start().await;
    let crm = crm().await;
    connect(&server, &crm).await;
    let db = server.db.connect().await;
    let lifts = [
        refuse(&db, "webhook_journal", None).await,
        refuse(&db, "messages", None).await,
    ];
    let (status, _) = post(&server, "mid.full").await;
    assert_eq!(status, 200, "spooled");
    for lift in lifts {
        testing::execute(&db, &lift).await;
    }
    let answered: HashSet<String> = ["mid.full".to_owned()].into();
    all_delivered(&server, &db, &crm, &answered, 30).await;
}

/// A private server of the product `TEST_BLACKBOX_DB` names (`None` on SQLite), the server
/// under test on it, and its CRM, the account connected.
async fn on_private_server() -> Option<(PrivateServer, TestServer, MockServer)> {
    let database = match backend().as_str() {
        "postgres" => PrivateServer::postgres(),
        "mysql" => PrivateServer::mariadb(),
        _ => return None,
    };
    let server = builder()
        .start_with(
            testing::existing(&database.url()),
            tempfile::tempdir().unwrap(),
        )
        .await;
    let crm = crm().await;
    connect(&server, &crm).await;
    Some((database, server, crm))
}

/// What the load generator saw.
#[derive(Default)]
struct Answers {
    ok: HashSet<String>,
    unavailable: Vec<String>,
    other: Vec<(u16, String)>,
}

/// Posts unique webhooks from `connections` concurrent clients until `stop` is set.
async fn load(
    server: &TestServer,
    connections: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Answers {
    let answers = Arc::new(Mutex::new(Answers::default()));
    let mut tasks = Vec::new();
    for c in 0..connections {
        let client = server.client.clone();
        let url = format!("{}/webhooks/instagram", server.url);
        let answers = answers.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mid = format!("mid.load.{c}.{n}");
                n += 1;
                let body = text_webhook(&mid);
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", sign_body(SECRET, body.as_bytes()))
                    .body(body)
                    .send()
                    .await;
                let mut answers = answers.lock().unwrap();
                match sent.map(|r| r.status().as_u16()) {
                    Ok(200) => {
                        answers.ok.insert(mid);
                    }
                    Ok(503) => answers.unavailable.push(mid),
                    Ok(other) => answers.other.push((other, mid)),
                    // No answer: Meta retries, like a 5xx.
                    Err(_) => answers.unavailable.push(mid),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(answers)
        .ok()
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_database_under_load_loses_no_webhook_answered_200() {
    let Some((database, server, crm)) = on_private_server().await else {
        return;
    };

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let generator = load(&server, 4, stop.clone());
    let restart = async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let database = tokio::task::spawn_blocking(move || {
            let mut database = database;
            database.restart();
            database
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        database
    };
    let (answers, database) = tokio::join!(generator, restart);
    // The test's own connections died with the restart too.
    let db = server.db.connect().await;
    assert!(
        answers.other.is_empty(),
        "only 200 or 503: {:?}",
        answers.other
    );
    all_delivered(&server, &db, &crm, &answers.ok, 120).await;
    let stored = stored_mids(&db).await;
    let lost = answers.ok.difference(&stored).count();
    let metrics = server.get("/metrics").await.text().await.unwrap();
    let outcome = |name: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "insta_router_webhooks_total{{outcome=\"{name}\"}} "
                ))
            })
            .unwrap_or("0")
            .to_owned()
    };
    println!(
        "restart under load ({}): answered 200 {} (journaled for replay {}, spooled {}), 503 or no answer {}, stored {}, lost {lost}",
        backend(),
        answers.ok.len(),
        outcome("failed"),
        outcome("spooled"),
        answers.unavailable.len(),
        stored.len()
    );
    assert_eq!(lost, 0);
    assert!(answers.ok.len() > 100, "the load ran");
    drop(db);
    drop(server);
    drop(database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_unreachable_for_seconds_loses_no_webhook_answered_200() {
    let Some((mut database, server, crm)) = on_private_server().await else {
        return;
    };
    assert_eq!(post(&server, "mid.before").await.0, 200);

    database = tokio::task::spawn_blocking(move || {
        database.stop();
        database
    })
    .await
    .unwrap();
    let mids: Vec<String> = (0..4).map(|n| format!("mid.down.{n}")).collect();
    let posts = mids.iter().map(|mid| post(&server, mid));
    let answers = futures_join(posts).await;
    let mut answered: HashSet<String> = ["mid.before".to_owned()].into();
    for (mid, (status, _)) in mids.iter().zip(&answers) {
        assert_eq!(*status, 200, "kept in the spool while the database is down");
        answered.insert(mid.clone());
    }
    assert_eq!(
        std::fs::read_dir(server.dir.path().join("spool"))
            .unwrap()
            .count(),
        4
    );
    database = tokio::task::spawn_blocking(move || {
        database.start();
        database
    })
    .await
    .unwrap();
    let db = server.db.connect().await;
    all_delivered(&server, &db, &crm, &answered, 90).await;
    assert_eq!(
        std::fs::read_dir(server.dir.path().join("spool"))
            .unwrap()
            .count(),
        0
    );
    drop(db);
    drop(server);
    drop(database);
}

#[tokio::test]
async fn a_connection_dropped_mid_commit_stores_and_forwards_once() {
    let product = backend();
    if product == "sqlite" {
        return;
    }
    let target = fresh_database().await;
    let upstream_url = target.url.clone();
    let rest = upstream_url.split_once("://").unwrap().1;
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host_port = host_port.split('/').next().unwrap();
    let upstream: std::net::SocketAddr = tokio::net::lookup_host(host_port)
        .await
        .unwrap()
        .find(std::net::SocketAddr::is_ipv4)
        .unwrap();
    let proxy = CuttingProxy::start(upstream).await;
    // In the clear, so that the proxy sees the statements (TLS is preferred otherwise).
    let plain = if product == "postgres" {
        "sslmode=disable"
    } else {
        "ssl-mode=disabled"
    };
    let separator = if upstream_url.contains('?') { '&' } else { '?' };
    let proxied = format!(
        "{}{separator}{plain}",
        upstream_url.replacen(host_port, &proxy.addr.to_string(), 1)
    );
    let server = builder()
        .env("DATABASE_URL", &proxied)
        .start_with(target, tempfile::tempdir().unwrap())
        .await;
    let crm = crm().await;
    connect(&server, &crm).await;
    let db = server.db.connect().await;

    // PostgreSQL writes a batch as one statement, committed on its own; MariaDB as a
    // transaction ending in COMMIT. Either way the connection dies once the commit is sent.
    let mid = "mid.cut.mid.commit";
    if product == "postgres" {
        proxy.cut_after(&[mid.as_bytes()]);
    } else {
        proxy.cut_after(&[mid.as_bytes(), b"COMMIT"]);
    }
    let (status, _) = post(&server, mid).await;
    assert_eq!(status, 200, "{}", server.output());
    assert_eq!(proxy.cuts(), 1, "the connection was cut");
    let answered: HashSet<String> = [mid.to_owned()].into();
    all_delivered(&server, &db, &crm, &answered, 30).await;
    let copies = column(&db, &format!("SELECT id FROM messages WHERE mid = '{mid}'")).await;
    assert_eq!(copies.len(), 1, "stored once");
    let replies = column(&db, "SELECT id FROM jobs WHERE kind = 'auto_reply'").await;
    assert_eq!(replies.len(), 1, "offered to the rules once");
    // The server goes on over fresh connections.
    let (status, body) = post(&server, "mid.after.cut").await;
    assert_eq!(
        (status.as_u16(), body["messages_processed"].as_u64()),
        (200, Some(1))
    );
}
