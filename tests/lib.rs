//! Black-box test support: builds and starts the real `insta-router` binary on a random port
//! with a fresh database, and talks to it over HTTP.
//!
//! The database is SQLite unless `TEST_BLACKBOX_DB` is `postgres` or `mysql`, in which case a
//! fresh database is created on the server named by `TEST_POSTGRES_URL` / `TEST_MYSQL_URL`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use insta_router_storage::testing::{self, TestDatabase};

pub mod disk;
pub mod private_db;
pub mod proxy;

/// The credential key test servers use unless a test sets `ENCRYPTION_KEY` itself (empty:
/// the development key file): servers sharing a database must share it.
pub const TEST_ENCRYPTION_KEY: &str = "dGVzdC1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcyEhISE=";

/// What a development server prints when it makes its first admin key.
const BOOTSTRAP_KEY: &str = "admin API key: ";

/// Settings whose values are secrets: no server may print them.
const SECRET_SETTINGS: [&str; 6] = [
    "FACEBOOK_VERIFY_TOKEN",
    "FACEBOOK_APP_SECRET",
    "INSTAGRAM_APP_SECRET",
    "INSTAGRAM_PAGE_ACCESS_TOKEN",
    "ENCRYPTION_KEY",
    "ENCRYPTION_KEY_PREVIOUS",
];

/// Secrets shorter than this are too common as text to be told from a leak.
const SHORTEST_CHECKED_SECRET: usize = 8;

/// The server binary, built once per test run so that it is never stale.
///
/// # Panics
///
/// When the build fails.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // target/<profile>/deps/api-<hash> -> target/<profile>
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target profile directory");
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args([
            "build",
            "--quiet",
            "--package",
            "insta-router",
            "--bin",
            "insta-router",
        ]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        // What `cargo test` sets for this test binary (its package's name, version and
        // directory) must not reach the nested build: build scripts (ring's) rerun when those
        // differ from the last build's, and the build from a shell (`cargo run`) has none, so
        // each would rebuild ring, rustls, reqwest and sqlx after the other.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || name.starts_with("CARGO_BIN_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                    "OUT_DIR",
                ]
                .contains(&name.as_ref())
            {
                cargo.env_remove(name.as_ref());
            }
        }
        let status = cargo.status().expect("run cargo build");
        assert!(status.success(), "building the insta-router binary failed");
        profile_dir.join("insta-router")
    })
}

/// Installs the TLS crypto provider reqwest needs (ring; see the workspace manifest).
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// Which database product the black-box suite runs on.
pub fn backend() -> String {
    std::env::var("TEST_BLACKBOX_DB").unwrap_or_else(|_| "sqlite".to_owned())
}

/// A fresh database for one server.
///
/// # Panics
///
/// When `TEST_BLACKBOX_DB` names a server whose URL variable is missing, or the server is
/// unreachable: the suite fails rather than skips.
pub async fn fresh_database() -> TestDatabase {
    match backend().as_str() {
        "sqlite" => testing::sqlite(),
        "postgres" => testing::on_server(&required_env(testing::POSTGRES_ENV)).await,
        "mysql" => testing::on_server(&required_env(testing::MYSQL_ENV)).await,
        other => panic!("TEST_BLACKBOX_DB must be sqlite, postgres or mysql, not {other:?}"),
    }
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set for this backend"))
}

/// A running server process and what it needs.
pub struct TestServer {
    // First, so that it is dropped (killed) before the database it uses.
    process: Process,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// A client for it.
    pub client: reqwest::Client,
    /// The database it uses (shared with other instances started on it).
    pub db: Arc<TestDatabase>,
    /// Its working directory.
    pub dir: tempfile::TempDir,
    /// The admin key it made at start (or that the instance it shares a database with made).
    pub api_key: String,
    builder: ServerBuilder,
}

/// Starts servers.
#[derive(Default, Clone)]
pub struct ServerBuilder {
    env: Vec<(String, String)>,
    args: Vec<String>,
    secrets: Vec<String>,
}

impl ServerBuilder {
    /// Sets an environment variable of the server.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Names a secret the test gives the server (an access token, a CRM secret): when the
    /// server is dropped, its whole output must not contain it, in the clear or in base64.
    /// The values of secret settings and every API key are checked without being named.
    pub fn secret(mut self, value: &str) -> Self {
        self.secrets.push(value.to_owned());
        self
    }

    /// Adds a command-line argument after `serve`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Starts the server on a fresh database and waits until it listens.
    ///
    /// # Panics
    ///
    /// When it does not start within 30 seconds; its output is shown.
    pub async fn start(self) -> TestServer {
        let db = fresh_database().await;
        let dir = tempfile::tempdir().expect("working directory");
        self.start_with(db, dir).await
    }

    /// Starts the server on `db` in `dir`.
    ///
    /// # Panics
    ///
    /// When it does not start within 30 seconds.
    pub async fn start_with(self, db: TestDatabase, dir: tempfile::TempDir) -> TestServer {
        self.run(Arc::new(db), dir).await
    }

    /// Starts two instances at the same moment on one fresh database, as a rolling deploy or
    /// `docker compose up --scale` does: both migrate it at once. Each keeps the admin key it
    /// made, or the other's when it found one.
    ///
    /// # Panics
    ///
    /// When either does not start within 30 seconds.
    pub async fn start_pair(self) -> (TestServer, TestServer) {
        let db = Arc::new(fresh_database().await);
        let dirs = [(); 2].map(|()| tempfile::tempdir().expect("working directory"));
        let [a, b] = dirs;
        let (mut first, mut second) =
            tokio::join!(self.clone().run(db.clone(), a), self.run(db, b));
        if first.api_key.is_empty() {
            first.api_key.clone_from(&second.api_key);
        }
        if second.api_key.is_empty() {
            second.api_key.clone_from(&first.api_key);
        }
        (first, second)
    }

    /// Starts another instance on the database of `other`, as a second process behind a load
    /// balancer would run.
    ///
    /// # Panics
    ///
    /// When it does not start within 30 seconds.
    pub async fn start_sharing(self, other: &TestServer) -> TestServer {
        let dir = tempfile::tempdir().expect("working directory");
        let mut server = self.run(other.db.clone(), dir).await;
        server.api_key.clone_from(&other.api_key);
        server
    }

    async fn run(self, db: Arc<TestDatabase>, dir: tempfile::TempDir) -> TestServer {
        let process = self.spawn(&db.url, dir.path()).await;
        // Printed on stderr before the server listens; its reader thread may lag the one
        // that saw the listening line.
        let mut api_key = process.bootstrap_key();
        for _ in 0..100 {
            if api_key.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            api_key = process.bootstrap_key();
        }
        let api_key = api_key.unwrap_or_default();
        TestServer {
            url: process.url.clone(),
            client: http_client(),
            db,
            dir,
            api_key,
            builder: self,
            process,
        }
    }

    async fn spawn(&self, db_url: &str, dir: &Path) -> Process {
        let mut command = command(dir);
        command.args(["serve"]).args(&self.args);
        command.env("DATABASE_URL", db_url);
        if !self.env.iter().any(|(k, _)| k == "ENCRYPTION_KEY") {
            command.env("ENCRYPTION_KEY", TEST_ENCRYPTION_KEY);
        }
        // Tests make requests faster, and fail authentication more often, than any client;
        // the rate-limit tests set their own limits.
        for limit in ["API_RATE_LIMIT", "AUTH_FAILURE_LIMIT"] {
            if !self.env.iter().any(|(k, _)| k == limit) {
                command.env(limit, "0");
            }
        }
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn insta-router");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(port) = listening_port(&line) {
                        let _ = tx.send(port);
                    }
                    output.lock().expect("output lock").push(line);
                }
            });
        }
        let port = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
            .await
            .expect("join");
        let Ok(port) = port else {
            let _ = child.kill();
            let lines = output.lock().expect("output lock").join("\n");
            panic!("insta-router did not start:\n{lines}");
        };
        Process {
            url: format!("http://127.0.0.1:{port}"),
            child,
            output,
        }
    }
}

/// One running server process.
struct Process {
    url: String,
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// The admin key a development server printed when it made its first one. It is printed
    /// on stderr before the server listens, which the spawn waited for.
    fn bootstrap_key(&self) -> Option<String> {
        self.output
            .lock()
            .expect("output lock")
            .iter()
            .find_map(|l| l.split(BOOTSTRAP_KEY).nth(1))
            .map(|k| k.trim().to_owned())
    }
}

/// A command running the binary in `dir` with an empty environment, so that none of the
/// developer's own settings leak into a test.
pub fn command(dir: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .env_clear()
        .current_dir(dir)
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("LOG_FORMAT", "text")
        .env("LOG_LEVEL", "info")
        // Stop at once on SIGTERM; the drain has its own test.
        .env("SHUTDOWN_DRAIN_DELAY", "0")
        // Never the real Graph API: a closed port unless the test names its fake.
        .env("INSTAGRAM_API_BASE_URL", "http://127.0.0.1:9")
        .stdin(Stdio::null());
    command
}

fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split("listening on http://").nth(1)?;
    let addr = rest.split_whitespace().next()?;
    addr.rsplit(':').next()?.parse().ok()
}

impl TestServer {
    /// Starts a server with default settings.
    pub async fn start() -> Self {
        ServerBuilder::default().start().await
    }

    /// A builder for a server with extra settings.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// `GET path` without credentials.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET")
    }

    /// `POST /webhooks/instagram` with `body` as JSON and, when given, `X-Hub-Signature-256`.
    pub async fn post_webhook(&self, body: &str, signature: Option<&str>) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/webhooks/instagram", self.url))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.send().await.expect("POST /webhooks/instagram")
    }

    /// The app secret the server verifies webhooks with: the first of `INSTAGRAM_APP_SECRET`,
    /// else of `FACEBOOK_APP_SECRET`.
    ///
    /// # Panics
    ///
    /// When the server was started without one.
    pub fn app_secret(&self) -> String {
        ["INSTAGRAM_APP_SECRET", "FACEBOOK_APP_SECRET"]
            .iter()
            .find_map(|name| {
                self.builder
                    .env
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| v.split(',').map(str::trim).find(|s| !s.is_empty()))
            })
            .expect("the server has an app secret")
            .to_owned()
    }

    /// `POST /webhooks/instagram` with `body`, signed as Meta signs with the server's own app
    /// secret.
    pub async fn post_signed(&self, body: &str) -> reqwest::Response {
        let signature = insta_router_instagram::sign_body(&self.app_secret(), body.as_bytes());
        self.post_webhook(body, Some(&signature)).await
    }

    /// [`Self::post_signed`], asserting a 200 (the server's output is shown otherwise); the
    /// answer's JSON.
    pub async fn deliver_webhook(&self, body: &str) -> serde_json::Value {
        let response = self.post_signed(body).await;
        assert_eq!(response.status(), 200, "{}", self.output());
        response.json().await.unwrap_or(serde_json::Value::Null)
    }

    /// A request to the REST API with the server's admin key.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.api_as(&self.api_key, method, path)
    }

    /// A request to the REST API with `key`.
    pub fn api_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(key)
    }

    /// Everything the server printed so far.
    pub fn output(&self) -> String {
        self.process.output.lock().expect("output lock").join("\n")
    }

    /// Sends SIGTERM, without waiting.
    pub fn send_sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.process.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_sigterm();
        self.wait_for_exit()
    }

    /// Waits up to 10 s for the process to exit; its status.
    pub fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..200 {
            if let Some(status) = self.process.child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the server did not stop within 10 s of SIGTERM:\n{}",
            self.output()
        );
    }

    /// Kills the process with SIGKILL (no shutdown of any kind), then starts it again on
    /// the same database and directory with the same settings. The port changes.
    pub async fn kill_and_restart(&mut self) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
        let before = self.output();
        self.process = self.builder.spawn(&self.db.url, self.dir.path()).await;
        self.process
            .output
            .lock()
            .expect("output lock")
            .insert(0, format!("{before}\n--- killed and restarted ---"));
        self.url.clone_from(&self.process.url);
    }
}

impl TestServer {
    /// The first secret found in the server's output, described: the secrets the test named,
    /// the values of secret settings, and any API key outside the one line that shows a
    /// development server's first key.
    pub fn leaked_secret(&self) -> Option<String> {
        leaked_secret(&self.output(), &self.secrets())
    }

    /// Every secret this server was given (see [`ServerBuilder::secret`]).
    pub fn secrets(&self) -> Vec<String> {
        let from_env = self
            .builder
            .env
            .iter()
            .filter(|(k, _)| SECRET_SETTINGS.contains(&k.as_str()))
            .flat_map(|(_, v)| v.split(',').map(str::trim).map(str::to_owned));
        let mut secrets: Vec<String> = from_env.chain(self.builder.secrets.clone()).collect();
        if !self.builder.env.iter().any(|(k, _)| k == "ENCRYPTION_KEY") {
            secrets.push(TEST_ENCRYPTION_KEY.to_owned());
        }
        secrets.retain(|s| s.len() >= SHORTEST_CHECKED_SECRET);
        secrets
    }
}

/// The first of `secrets` (or any API key) in `text`, described; the line that shows a
/// development server's first admin key may show that key.
pub fn leaked_secret(text: &str, secrets: &[String]) -> Option<String> {
    use base64::Engine as _;
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let forms: Vec<(&String, String)> = secrets
        .iter()
        .flat_map(|secret| {
            std::iter::once(secret.clone())
                .chain(engines.iter().map(move |e| e.encode(secret)))
                .chain(std::iter::once(percent_encoded(secret)))
                .map(move |form| (secret, form))
        })
        .collect();
    for (number, line) in text.lines().enumerate() {
        if line.contains(BOOTSTRAP_KEY) {
            continue;
        }
        for (secret, form) in &forms {
            if line.contains(form.as_str()) {
                return Some(format!(
                    "line {}: {secret:?} as {form:?}: {line}",
                    number + 1
                ));
            }
        }
        if contains_api_key(line) {
            return Some(format!("line {}: an API key: {line}", number + 1));
        }
    }
    None
}

/// `text` with every byte but unreserved characters percent-encoded, as in a query string.
pub fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Whether `text` holds something shaped like an API key (`irk_` and 32 or more base62).
pub fn contains_api_key(text: &str) -> bool {
    text.match_indices("irk_").any(|(at, _)| {
        text[at + 4..]
            .bytes()
            .take_while(u8::is_ascii_alphanumeric)
            .count()
            >= 32
    })
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A failing test has said what failed; a second panic would abort the run.
        if std::thread::panicking() {
            return;
        }
        if let Some(leak) = self.leaked_secret() {
            panic!("the server's output shows a secret: {leak}");
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Send API requests a fake Graph API received so far, in order: each body, with the
/// request's `authorization` header added as a member.
pub async fn graph_sends(graph: &wiremock::MockServer) -> Vec<serde_json::Value> {
    graph
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/me/messages")
        .map(|r| {
            let mut body: serde_json::Value =
                serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
            body["authorization"] = serde_json::json!(
                r.headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
            );
            body
        })
        .collect()
}

impl TestServer {
    /// `method path` on the REST API, its body read as JSON (`null` when it is not JSON).
    pub async fn api_json(&self, method: reqwest::Method, path: &str) -> serde_json::Value {
        self.api(method, path)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .unwrap_or(serde_json::Value::Null)
    }
}

/// Runs futures concurrently on the current task and returns their outputs in order.
pub async fn futures_join<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, future) in outputs.iter_mut().zip(set.iter_mut()) {
            if slot.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

/// The Graph API answer `tests/fixtures/graph/{name}`, as Meta documents it.
///
/// # Panics
///
/// When the file is missing or not JSON.
pub fn graph_fixture(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/graph")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Gives account `account_id` an enabled rule that never fires, so that each of its inbound
/// messages is offered to the rules (an account without rules gets no auto-reply job).
///
/// # Panics
///
/// When the server does not answer 201.
pub async fn add_quiet_rule(server: &TestServer, account_id: &str) {
    let response = server
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/accounts/{account_id}/rules"),
        )
        .json(&serde_json::json!({
            "name": "never",
            "conditions": [{"type": "keywords", "any_of": ["zzz-never-said"]}],
            "reply": {"text": "-"},
        }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating the rule: {e}"));
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 201, "{body}");
}

/// A signed-to-be notification of one inbound text message `mid` to `account`, from the
/// customer `555`.
pub fn text_webhook(account: &str, mid: &str, text: &str) -> String {
    serde_json::json!({
        "object": "instagram",
        "entry": [{
            "id": account,
            "time": 1_700_000_000_000_u64,
            "messaging": [{
                "sender": {"id": "555"},
                "recipient": {"id": account},
                "timestamp": 1_700_000_000_123_u64,
                "message": {"mid": mid, "text": text},
            }],
        }],
    })
    .to_string()
}

/// Waiting for what the server does in the background: one helper per kind of wait, each with
/// a deadline, failing with the server's output.
impl TestServer {
    /// Polls `check` every 20 ms until it gives a value (for up to 20 s), and returns it.
    ///
    /// # Panics
    ///
    /// At the deadline, naming `what`, with the server's output.
    pub async fn eventually<T>(&self, what: &str, check: impl AsyncFnMut() -> Option<T>) -> T {
        self.eventually_within(Duration::from_secs(20), what, check)
            .await
    }

    /// [`TestServer::eventually`], for up to `limit` (outages and restarts take longer).
    ///
    /// # Panics
    ///
    /// At the deadline, naming `what`, with the server's output.
    pub async fn eventually_within<T>(
        &self,
        limit: Duration,
        what: &str,
        mut check: impl AsyncFnMut() -> Option<T>,
    ) -> T {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until a line of the server's output contains every one of `parts` (its output is
    /// read by another thread, so a line may come a moment after the answer that caused it);
    /// returns that line.
    ///
    /// # Panics
    ///
    /// When no such line comes within the deadline.
    pub async fn wait_for_log(&self, parts: &[&str]) -> String {
        self.eventually(&format!("a log line with {parts:?}"), async || {
            self.output()
                .lines()
                .find(|line| parts.iter().all(|p| line.contains(p)))
                .map(str::to_owned)
        })
        .await
    }

    /// Waits until the server has nothing left to do now: no job running and none due (a
    /// retry scheduled for later may wait). What has not happened by then does not happen
    /// without a new request: the check for "nothing more happened".
    ///
    /// # Panics
    ///
    /// When work is still due at the deadline.
    pub async fn settled(&self) {
        let db = self.db.connect().await;
        self.eventually("every due job to be done", async || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros());
            let busy = testing::rows(
                &db,
                &format!(
                    "SELECT kind, status, run_at FROM jobs \
                     WHERE status = 'running' OR (status = 'queued' AND run_at <= {now})"
                ),
            )
            .await;
            busy.is_empty().then_some(())
        })
        .await;
        let _ = db.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_found_in_the_clear_in_base64_and_percent_encoded() {
        let secrets = vec!["s3cr3t/value=".to_owned()];
        for line in [
            "error=s3cr3t/value=",
            "header=czNjcjN0L3ZhbHVlPQ==",
            "url=czNjcjN0L3ZhbHVlPQ",
            "url=?t=s3cr3t%2Fvalue%3D",
        ] {
            assert!(leaked_secret(line, &secrets).is_some(), "{line}");
        }
        assert_eq!(leaked_secret("nothing here\nat all", &secrets), None);
    }

    #[test]
    fn any_api_key_is_a_leak_except_on_the_line_that_shows_the_first_one() {
        let key = format!("irk_{}", "aZ09".repeat(11));
        assert!(leaked_secret(&format!("auth failed key={key}"), &[]).is_some());
        assert_eq!(
            leaked_secret(&format!("    {BOOTSTRAP_KEY}{key}"), &[]),
            None
        );
        assert_eq!(leaked_secret("key irk_short and irk_", &[]), None);
    }
}
