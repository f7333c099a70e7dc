//! Opening the database, migrating it, and handing out the stores.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use insta_router_ports::{HealthCheck, RepoError};
use sea_orm::sqlx::mysql::MySqlConnectOptions;
use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseBackend, DatabaseConnection};

use crate::backend::Backend;
use crate::checkpoint::{Checkpointer, SQLITE_BUSY_TIMEOUT, WAL_SIZE_LIMIT};
use crate::error::{is_sqlite_busy, unavailable};
use crate::inbound::{SqliteWriter, WriterOptions};
use crate::url::DatabaseUrl;
use crate::vacuum::QueueVacuum;
use crate::{
    SeaAccountRepository, SeaApiKeyStore, SeaAutoReplyStore, SeaConversationRepository,
    SeaDeliveryStore, SeaInboundStore, SeaJobQueue, SeaMessageRepository, SeaOutboundStore,
    SeaRetentionStore, SeaRuleRepository, SeaWebhookJournal, StorageError,
};

/// How to open the database.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// SQLite only: `synchronous=FULL` (survives power loss) instead of `NORMAL` (survives a
    /// killed process, the default, and faster).
    pub sqlite_synchronous_full: bool,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            connect_timeout: Duration::from_secs(5),
            sqlite_synchronous_full: false,
        }
    }
}

/// An open database and the stores on it.
#[derive(Debug, Clone)]
pub struct Database {
    pub(crate) conn: DatabaseConnection,
    /// On a SQLite file, the inbound store's own thread and connection (see
    /// `inbound_sqlite`). Elsewhere `None`, and the inbound store writes through `conn`.
    writer: Option<SqliteWriter>,
    backend: Backend,
    checkpointer: Option<Arc<Checkpointer>>,
    /// On PostgreSQL, the task vacuuming the job queue (see `vacuum`).
    vacuum: Option<Arc<QueueVacuum>>,
}

/// Page cache per SQLite connection, in KiB.
const SQLITE_CACHE_KIB: u32 = 4096;

/// Whether a SQLite connection being returned to the pool may still be inside a transaction;
/// then the pool closes it instead of keeping it, which rolls the transaction back.
///
/// sqlx 0.9.0 counts a connection's transactions itself. When a `COMMIT` fails because the
/// disk is full, SQLite has rolled the transaction back already; the `ROLLBACK` that follows
/// then fails ("no transaction is active") and sqlx's count stays at one. The next
/// transaction on that connection becomes a `SAVEPOINT`, and ending it with `ROLLBACK TO`
/// leaves SQLite's transaction open, holding the write lock: every other writer waits for
/// ever (seen: a full disk under the delivery workers stopped every write, the webhook path
/// included, until the process was restarted). A connection whose count is off (or whose
/// rollback on drop is still queued) is not reused.
fn connection_may_hold_a_transaction(conn: &sea_orm::sqlx::SqliteConnection) -> bool {
    use sea_orm::sqlx::Connection as _;
    conn.is_in_transaction()
}

impl Database {
    /// Opens the database at `url` (already normalised, see [`normalize_database_url`]).
    ///
    /// SQLite is opened in WAL mode with a busy timeout, so readers never block the writer.
    ///
    /// # Errors
    ///
    /// [`StorageError::UnsupportedUrl`] or [`StorageError::Connect`].
    pub async fn connect(url: &DatabaseUrl, options: &DbOptions) -> Result<Self, StorageError> {
        let backend = url.backend();
        let in_memory = url.in_memory();
        let parsed = url;
        let url = url.as_str();
        let opts = Self::options(url, backend, options);
        let started = std::time::Instant::now();
        let conn = loop {
            match sea_orm::Database::connect(opts.clone()).await {
                Ok(conn) => break conn,
                // Two processes opening a new SQLite file at once (instances started
                // together): switching it to WAL takes an exclusive lock, which SQLite refuses
                // at once instead of waiting in the busy handler, so one of them is told
                // "database is locked". It tries again, for as long as the busy timeout.
                Err(e)
                    if backend == Backend::Sqlite
                        && is_sqlite_busy(&e)
                        && started.elapsed() < SQLITE_BUSY_TIMEOUT =>
                {
                    tracing::debug!(error = %e, "the SQLite file is locked; opening it again");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                // The driver says "pool timed out" for a refused connection and "unable to
                // open database file" for a missing directory: say the root cause when it
                // is known.
                Err(e) => {
                    return Err(StorageError::Connect(
                        match crate::diagnose::diagnose(parsed).await {
                            Some(cause) => cause.into(),
                            None => e.into(),
                        },
                    ));
                }
            }
        };
        let writer = if backend == Backend::Sqlite && !in_memory {
            let path = SqliteConnectOptions::from_str(url)
                .map_err(|e| StorageError::Connect(e.into()))?
                .get_filename()
                .to_owned();
            Some(
                SqliteWriter::start(WriterOptions {
                    path,
                    synchronous_full: options.sqlite_synchronous_full,
                    cache_kib: SQLITE_CACHE_KIB,
                    wal_size_limit: WAL_SIZE_LIMIT,
                })
                .map_err(|e| {
                    StorageError::Connect(format!("cannot start the SQLite writer: {e}").into())
                })?,
            )
        } else {
            None
        };
        let checkpointer =
            (backend == Backend::Sqlite).then(|| Arc::new(Checkpointer::start(conn.clone())));
        let vacuum =
            (backend == Backend::Postgres).then(|| Arc::new(QueueVacuum::start(conn.clone())));
        Ok(Self {
            conn,
            writer,
            backend,
            checkpointer,
            vacuum,
        })
    }

    fn options(url: &str, backend: Backend, options: &DbOptions) -> ConnectOptions {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.max_connections(options.max_connections)
            .min_connections(1)
            .connect_timeout(options.connect_timeout)
            .acquire_timeout(options.connect_timeout)
            // A ping on every checkout costs a round trip per transaction on the hot path;
            // connections idle for a while are still checked before use.
            .test_before_acquire(false)
            .test_before_acquire_if_idle_for(Duration::from_secs(30))
            .sqlx_logging(false);
        // sqlx 0.9.0 leaves Nagle's algorithm on (see `nodelay`).
        match backend {
            Backend::Postgres => {
                let port = PgConnectOptions::from_str(url).map_or(5432, |o| o.get_port());
                opts.map_sqlx_postgres_pool_opts(move |pool| {
                    crate::nodelay::on_connect(pool, port)
                });
            }
            Backend::MySql => {
                let port = MySqlConnectOptions::from_str(url).map_or(3306, |o| o.get_port());
                opts.map_sqlx_mysql_pool_opts(move |pool| crate::nodelay::on_connect(pool, port));
            }
            Backend::Sqlite => {
                opts.map_sqlx_sqlite_pool_opts(|pool| {
                    pool.after_release(|conn, _| {
                        Box::pin(async move { Ok(!connection_may_hold_a_transaction(conn)) })
                    })
                });
            }
        }
        if backend == Backend::Sqlite {
            let synchronous = if options.sqlite_synchronous_full {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            };
            opts.map_sqlx_sqlite_opts(move |o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(synchronous)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .foreign_keys(true)
                    // Multi-row inserts come in many sizes; keep their prepared forms.
                    .statement_cache_capacity(512)
                    // 4 MiB of page cache per connection, instead of 2 MiB. 16 MiB was no
                    // faster under the ingest benchmark (9,300-9,800 events/s either way)
                    // but, once CRM bodies were stored with each event, took peak RSS from
                    // 60 to 127 MiB: the allocator keeps the cache's pages scattered.
                    .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"))
                    // Sorts and temporary tables in memory, not in files opened per statement.
                    .pragma("temp_store", "memory")
                    // Checkpoints run in the background (see `Checkpointer`), never inside a
                    // commit of the webhook path.
                    .pragma("wal_autocheckpoint", "0")
                    // A WAL that starts over is cut back to `WAL_SIZE_LIMIT`.
                    .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string())
            });
        }
        opts
    }

    /// The pool's connections: how many are open, and how many of those are idle.
    pub fn pool_connections(&self) -> (u32, usize) {
        match self.backend {
            Backend::Sqlite => {
                let pool = self.conn.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            Backend::Postgres => {
                let pool = self.conn.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            Backend::MySql => {
                let pool = self.conn.get_mysql_connection_pool();
                (pool.size(), pool.num_idle())
            }
        }
    }

    /// Which product this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Names of the tables in the database, for diagnostics and tests.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    pub async fn table_names(&self) -> Result<Vec<String>, RepoError> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            }
            Backend::Postgres => {
                "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name"
            }
            Backend::MySql => {
                "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY table_name"
            }
        };
        let rows = self
            .conn
            .query_all_raw(self.statement(sql))
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| row.try_get::<String>("", "name").map_err(unavailable))
            .collect()
    }

    /// How many rows `table` holds; `table` must be one of [`Database::table_names`].
    ///
    /// # Errors
    ///
    /// [`RepoError::Corrupt`] for an unknown table, [`RepoError::Unavailable`].
    pub async fn row_count(&self, table: &str) -> Result<u64, RepoError> {
        if !self.table_names().await?.iter().any(|t| t == table) {
            return Err(RepoError::Corrupt(format!("no table {table}")));
        }
        let quoted = match self.backend {
            Backend::MySql => format!("`{table}`"),
            Backend::Sqlite | Backend::Postgres => format!("\"{table}\""),
        };
        let row = self
            .conn
            .query_one_raw(self.statement(&format!("SELECT COUNT(*) AS n FROM {quoted}")))
            .await
            .map_err(unavailable)?
            .ok_or_else(|| RepoError::Corrupt("COUNT(*) returned no row".to_owned()))?;
        let n: i64 = row.try_get_by_index(0).map_err(unavailable)?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// The account store.
    pub fn accounts(&self) -> SeaAccountRepository {
        SeaAccountRepository::new(self.conn.clone())
    }

    /// The message store.
    pub fn messages(&self) -> SeaMessageRepository {
        SeaMessageRepository::new(self.conn.clone())
    }

    /// The conversation store.
    pub fn conversations(&self) -> SeaConversationRepository {
        SeaConversationRepository::new(self.conn.clone(), self.backend)
    }

    /// Analytics over the stored rows.
    pub fn analytics(&self) -> crate::SeaAnalyticsStore {
        crate::SeaAnalyticsStore::new(self.conn.clone())
    }

    /// Stored comments, for private replies.
    pub fn comments(&self) -> crate::SeaCommentStore {
        crate::SeaCommentStore::new(self.conn.clone())
    }

    /// The inbound pipeline's store.
    pub fn inbound(&self) -> SeaInboundStore {
        SeaInboundStore::new(self.conn.clone(), self.backend, self.writer.clone())
    }

    /// The REST API's keys.
    pub fn api_keys(&self) -> SeaApiKeyStore {
        SeaApiKeyStore::new(self.conn.clone())
    }

    /// The journal of webhook requests.
    pub fn journal(&self) -> SeaWebhookJournal {
        SeaWebhookJournal::new(self.conn.clone(), self.backend)
    }

    /// The sends CRMs asked for.
    pub fn outbound(&self) -> SeaOutboundStore {
        SeaOutboundStore::new(self.conn.clone(), self.backend)
    }

    /// The job queue.
    pub fn jobs(&self) -> SeaJobQueue {
        SeaJobQueue::new(self.conn.clone(), self.backend)
    }

    /// Retention: old rows deleted in small batches.
    pub fn retention(&self) -> SeaRetentionStore {
        SeaRetentionStore::new(self.conn.clone())
    }

    /// The record of auto-replies.
    pub fn auto_replies(&self) -> SeaAutoReplyStore {
        SeaAutoReplyStore::new(self.conn.clone())
    }

    /// Auto-reply rules.
    pub fn rules(&self) -> SeaRuleRepository {
        SeaRuleRepository::new(self.conn.clone())
    }

    /// CRM deliveries and their attempts.
    pub fn deliveries(&self) -> SeaDeliveryStore {
        SeaDeliveryStore::new(self.conn.clone())
    }

    /// Closes the pool, waiting for connections in use.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    pub async fn close(self) -> Result<(), RepoError> {
        let Self {
            conn,
            writer,
            backend,
            checkpointer,
            vacuum,
        } = self;
        drop(checkpointer);
        drop(vacuum);
        if let Some(writer) = writer {
            writer.close().await;
        }
        if backend == Backend::Sqlite {
            // Fold the WAL into the database, so a stopped service leaves one file behind.
            let _ = conn
                .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await;
        }
        conn.close().await.map_err(unavailable)
    }

    pub(crate) fn statement(&self, sql: &str) -> sea_orm::Statement {
        sea_orm::Statement::from_string(self.db_backend(), sql.to_owned())
    }

    fn db_backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }
}

#[async_trait]
impl HealthCheck for Database {
    async fn ping(&self) -> Result<(), RepoError> {
        self.conn.ping().await.map_err(unavailable)
    }

    async fn schema_current(&self) -> Result<bool, RepoError> {
        let state = self
            .schema_state()
            .await
            .map_err(|e| RepoError::Unavailable(Box::new(e)))?;
        Ok(state.pending.is_empty())
    }
}
