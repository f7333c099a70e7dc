//! [`InboundStore`] on sea-orm: insert what is new, report what was new, queue its jobs; one
//! database transaction per batch.
//!
//! What a batch means is the same everywhere (the rows of [`rows`], the conversation merge of
//! [`crate::conversations::merge_sql`]); how it reaches the database is chosen once per store,
//! for speed:
//!
//! - a SQLite file: a thread of its own writes the batch through rusqlite ([`sqlite`]);
//! - PostgreSQL: one statement of chained CTEs whose text never changes ([`postgres`]);
//! - MySQL, in-memory SQLite, and PostgreSQL batches that mark deletions: a sequence of
//!   multi-row statements in one transaction ([`statements`]).
//!
//! Which jobs a batch carries, and for which account, is decided before it gets here
//! ([`insta_router_domain::FollowUp`], [`insta_router_domain::Route`]): the store queues the
//! jobs whose subject it stored, as they are.

use std::sync::LazyLock;

use async_trait::async_trait;
use insta_router_domain::{AccountId, InstagramAccountId, Route};
use insta_router_ports::{BatchOutcome, InboundBatch, InboundStore, RepoError};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::backend::Backend;
use crate::error::{retry_deadlocks, unavailable};

mod postgres;
pub(crate) mod rows;
mod sqlite;
mod statements;

pub(crate) use sqlite::{SqliteWriter, WriterOptions};

/// How batches reach the database.
#[derive(Debug, Clone)]
enum Path {
    /// The SQLite writer thread.
    SqliteThread(SqliteWriter),
    /// The fixed PostgreSQL statement, else statements.
    Postgres,
    /// Statements in a transaction.
    Statements,
}

/// The inbound pipeline's tables.
#[derive(Debug, Clone)]
pub struct SeaInboundStore {
    db: DatabaseConnection,
    backend: Backend,
    path: Path,
}

impl SeaInboundStore {
    /// `sqlite` is the writer thread of a SQLite file.
    pub(crate) fn new(
        db: DatabaseConnection,
        backend: Backend,
        sqlite: Option<SqliteWriter>,
    ) -> Self {
        let path = match (sqlite, backend) {
            (Some(writer), _) => Path::SqliteThread(writer),
            (None, Backend::Postgres) => Path::Postgres,
            (None, _) => Path::Statements,
        };
        Self { db, backend, path }
    }
}

#[async_trait]
impl InboundStore for SeaInboundStore {
    async fn routes(
        &self,
        accounts: &[InstagramAccountId],
    ) -> Result<Vec<(InstagramAccountId, Route)>, RepoError> {
        if let Path::SqliteThread(writer) = &self.path {
            return writer.routes(accounts.to_vec()).await;
        }
        read_routes(&self.db, accounts).await
    }

    async fn store(&self, batch: InboundBatch) -> Result<BatchOutcome, RepoError> {
        match &self.path {
            Path::SqliteThread(writer) => writer.store(batch).await,
            Path::Postgres if postgres::fits(&batch) => {
                retry_deadlocks(|| postgres::store(&self.db, &batch)).await
            }
            Path::Postgres | Path::Statements => {
                retry_deadlocks(|| statements::store(&self.db, self.backend, &batch)).await
            }
        }
    }
}

/// The routes of those of `accounts` that are configured, read through `conn`.
async fn read_routes(
    conn: &impl ConnectionTrait,
    accounts: &[InstagramAccountId],
) -> Result<Vec<(InstagramAccountId, Route)>, RepoError> {
    if accounts.is_empty() {
        return Ok(Vec::new());
    }
    let db = conn.get_database_backend();
    // One account (nearly every group): a statement whose text never changes, prepared once
    // per connection.
    let values = accounts.iter().map(|a| a.as_str().into()).collect();
    let statement = if accounts.len() == 1 {
        crate::sql::statement(db, &ONE_ROUTE_SQL, values)
    } else {
        crate::sql::statement(db, &route_sql(accounts.len()), values)
    };
    let rows = conn.query_all_raw(statement).await.map_err(unavailable)?;
    rows.iter()
        .map(|row| {
            let get = |i| {
                row.try_get_by_index::<Option<String>>(i)
                    .map_err(unavailable)
            };
            route(
                get(0)?.unwrap_or_default(),
                get(1)?.unwrap_or_default(),
                get(2)?,
                get(3)?.as_deref() == Some("y"),
            )
        })
        .collect()
}

/// Whether the routes a batch was planned for are the ones `found` in the accounts table.
fn routes_hold(
    assumed: &[(InstagramAccountId, Option<Route>)],
    found: &[(InstagramAccountId, Route)],
) -> bool {
    assumed.iter().all(|(account, route)| {
        found.iter().find(|(a, _)| a == account).map(|(_, r)| r) == route.as_ref()
    })
}

/// The outcome of a batch whose routes no longer hold: nothing written.
fn routes_changed() -> BatchOutcome {
    BatchOutcome {
        routes_changed: true,
        ..BatchOutcome::default()
    }
}

/// Whether the account `a` answers: it has an enabled rule. Read with its route, and checked
/// again inside each write (the SQLite thread, the PostgreSQL batch statement).
pub(crate) const ANSWERS_SQL: &str =
    "EXISTS (SELECT 1 FROM rules rl WHERE rl.account_id = a.id AND rl.enabled)";

/// The routes of `accounts` Instagram accounts: each one's id, CRM URL, and `y` when it
/// answers (text, which every backend returns alike).
fn route_sql(accounts: usize) -> String {
    format!(
        "SELECT a.instagram_account_id, a.id, a.crm_webhook_url, \
         CASE WHEN {ANSWERS_SQL} THEN 'y' ELSE 'n' END \
         FROM accounts a WHERE a.instagram_account_id IN ({})",
        vec!["?"; accounts].join(", ")
    )
}

/// [`route_sql`] for one account, the route of nearly every group and of every check inside
/// a SQLite write: built once.
static ONE_ROUTE_SQL: LazyLock<String> = LazyLock::new(|| route_sql(1));

/// A route from an `accounts` row: its Instagram account, its id, its CRM URL, whether it has
/// an enabled rule.
fn route(
    instagram_account_id: String,
    id: String,
    crm_webhook_url: Option<String>,
    answers: bool,
) -> Result<(InstagramAccountId, Route), RepoError> {
    let corrupt = |e: insta_router_domain::FieldError| RepoError::Corrupt(format!("route: {e}"));
    Ok((
        InstagramAccountId::parse("instagram_account_id", &instagram_account_id)
            .map_err(corrupt)?,
        Route {
            account_id: AccountId::parse("id", &id).map_err(corrupt)?,
            forwards_to_crm: crm_webhook_url.is_some_and(|u| !u.is_empty()),
            answers,
        },
    ))
}
