//! Test support: a fresh, empty database per test on SQLite, PostgreSQL or MySQL.
//!
//! PostgreSQL and MySQL tests run when `TEST_POSTGRES_URL` / `TEST_MYSQL_URL` name a server
//! (any database on it); each test gets its own database, dropped when the guard is dropped.

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait};

use crate::backend::Backend;
use crate::{Database, DbOptions};

/// The environment variable naming the PostgreSQL server for tests.
pub const POSTGRES_ENV: &str = "TEST_POSTGRES_URL";
/// The environment variable naming the MySQL/MariaDB server for tests.
pub const MYSQL_ENV: &str = "TEST_MYSQL_URL";

/// How long dropping a test database may take before it is left behind.
const DROP_TIMEOUT: Duration = Duration::from_secs(20);

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL to connect to it.
    pub url: String,
    backend: Backend,
    admin_url: Option<String>,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// Which product it is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Connects to it with default options.
    ///
    /// # Panics
    ///
    /// When the database cannot be opened: a test should fail, not skip, then.
    pub async fn connect(&self) -> Database {
        let url = crate::DatabaseUrl::parse(&self.url)
            .unwrap_or_else(|e| panic!("test database {}: {e}", self.name));
        Database::connect(&url, &DbOptions::default())
            .await
            .unwrap_or_else(|e| panic!("cannot open test database {}: {e:?}", self.name))
    }
}

impl Drop for TestDatabase {
    #[allow(
        clippy::print_stderr,
        reason = "test support: a database left behind is said in the test's output"
    )]
    fn drop(&mut self) {
        let Some(admin_url) = self.admin_url.take() else {
            return;
        };
        // The test's own pool may still be open: PostgreSQL needs FORCE to drop past it.
        let sql = match self.backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        // Drop runs inside the test's runtime; a fresh one on another thread does the I/O.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            // Bounded: a connection of the test still inside a transaction (a test that
            // panicked mid-way) holds locks that DROP would wait for forever, and that
            // connection cannot finish while this thread blocks the test's runtime. The
            // database is then left for the next run's clean-up (`.ci/run` drops `irt_*`).
            let drop_it = async {
                if let Ok(conn) = sea_orm::Database::connect(admin_options(&admin_url)).await {
                    let _ = conn.execute_unprepared(&sql).await;
                    let _ = conn.close().await;
                }
            };
            if rt
                .block_on(async { tokio::time::timeout(DROP_TIMEOUT, drop_it).await })
                .is_err()
            {
                eprintln!("test database {name} not dropped within {DROP_TIMEOUT:?}");
            }
        })
        .join();
    }
}

fn admin_options(url: &str) -> ConnectOptions {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    opts
}

/// A fresh SQLite file in a temporary directory.
///
/// # Panics
///
/// When the directory cannot be made.
pub fn sqlite() -> TestDatabase {
    let dir = tempfile::Builder::new()
        .prefix("insta-router-test-")
        .tempdir()
        .expect("create temporary directory");
    TestDatabase {
        url: format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display()),
        backend: Backend::Sqlite,
        admin_url: None,
        name: "sqlite".to_owned(),
        _dir: Some(dir),
    }
}

/// A fresh database on the server named by `server_url`.
///
/// # Panics
///
/// When the server cannot be reached or the database cannot be created.
pub async fn on_server(server_url: &str) -> TestDatabase {
    let server_url = crate::url::normalize(server_url);
    let backend = if server_url.starts_with("postgres://") {
        Backend::Postgres
    } else {
        Backend::MySql
    };
    let name = format!("irt_{}", uuid::Uuid::now_v7().simple());
    let conn = sea_orm::Database::connect(admin_options(&server_url))
        .await
        .unwrap_or_else(|e| panic!("test database server {server_url} is unreachable: {e}"));
    conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("cannot create test database on {server_url}: {e}"));
    let _ = conn.close().await;
    TestDatabase {
        url: with_database(&server_url, &name),
        backend,
        admin_url: Some(server_url),
        name,
        _dir: None,
    }
}

/// A database that exists already (a test's private server), used as it is and left to its
/// owner.
pub fn existing(url: &str) -> TestDatabase {
    let url = crate::url::normalize(url);
    let backend = if url.starts_with("postgres://") {
        Backend::Postgres
    } else if url.starts_with("mysql://") {
        Backend::MySql
    } else {
        Backend::Sqlite
    };
    TestDatabase {
        url,
        backend,
        admin_url: None,
        name: "existing".to_owned(),
        _dir: None,
    }
}

/// Every backend configured for this test run: SQLite always, then PostgreSQL and MySQL when
/// their environment variables are set.
pub async fn all() -> Vec<TestDatabase> {
    let mut databases = vec![sqlite()];
    for env in [POSTGRES_ENV, MYSQL_ENV] {
        if let Some(url) = std::env::var(env).ok().filter(|u| !u.is_empty()) {
            databases.push(on_server(&url).await);
        }
    }
    databases
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// The rows `sql` returns, as JSON objects keyed by column name, for tests that check what
/// was stored without a repository method for it. Select no binary columns.
///
/// # Panics
///
/// When the query fails.
pub async fn rows(db: &Database, sql: &str) -> Vec<serde_json::Value> {
    use sea_orm::FromQueryResult;
    sea_orm::JsonValue::find_by_statement(db.statement(sql))
        .all(&db.conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The text a job's stored `payload` column holds (CRM bodies are stored compactly; see
/// `compact`), for tests that read the column with SQL.
///
/// # Panics
///
/// When the stored form is damaged.
pub fn job_payload(stored: &str) -> String {
    crate::compact::decode(stored)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_owned()
}

/// Runs one statement (DDL or DML) for a test's own setup.
///
/// # Panics
///
/// When it fails.
pub async fn execute(db: &Database, sql: &str) {
    use sea_orm::ConnectionTrait;
    db.conn
        .execute_raw(db.statement(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            with_database("postgres://u@h:5432/test", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("mysql://root@h:3306", "x"),
            "mysql://root@h:3306/x"
        );
        assert_eq!(
            with_database("postgres://h/test?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
    }
}
