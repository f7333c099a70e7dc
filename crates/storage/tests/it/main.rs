//! Storage contract tests: every test runs against SQLite, and against PostgreSQL and MySQL
//! when `TEST_POSTGRES_URL` / `TEST_MYSQL_URL` are set, each in a fresh database.

// A test binary: helpers panic on unexpected results, like the tests they serve.
#![allow(clippy::unwrap_used)]

mod accounts;
mod analytics;
mod auto_replies;
mod backup;
mod conversations;
mod deliveries;
mod inbound;
mod jobs;
mod journal;
mod keys;
mod messages;
mod migrations;
mod outbound;
mod retention;
mod rules;

use chrono::{DateTime, TimeDelta, Utc};
use insta_router_storage::Database;
use insta_router_storage::testing::{self, TestDatabase};

/// Fresh, migrated databases on every configured backend, with their guards.
async fn migrated() -> Vec<(TestDatabase, Database)> {
    let mut out = Vec::new();
    for test_db in testing::all().await {
        let db = test_db.connect().await;
        db.migrate_up().await.expect("migrate up");
        out.push((test_db, db));
    }
    out
}

/// A fixed instant plus `secs` seconds (with microseconds, to prove they survive).
fn at(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
        + TimeDelta::seconds(1_700_000_000 + secs)
        + TimeDelta::microseconds(123_456)
}
