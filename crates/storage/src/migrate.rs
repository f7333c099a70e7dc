//! Migrations, safe when any number of instances start at once on one database.
//!
//! Every change of the schema runs under a database-wide lock: PostgreSQL's transaction-level
//! advisory lock, MySQL's named lock (`GET_LOCK`), SQLite's write lock (`BEGIN IMMEDIATE`).
//! An instance that waits for it finds the schema current and goes on. A schema that holds
//! migrations this build does not know (a newer release migrated it) is refused before
//! anything runs.

use std::time::Duration;

use insta_router_migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbErr, IsolationLevel, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};

use crate::backend::Backend;
use crate::{Database, StorageError};

/// The advisory lock's key on PostgreSQL (the bytes of "insta-rt").
const PG_LOCK_KEY: i64 = 0x696e_7374_612d_7274;

/// The named lock on MySQL. Names are server-wide, so it names the database too (hashed: a
/// name may not exceed 64 characters).
const MYSQL_LOCK: &str = "CONCAT('insta_router_migrate:', SHA1(COALESCE(DATABASE(), '')))";

/// How long an instance waits for another one's migrations on MySQL (PostgreSQL waits for as
/// long as the other holds the lock; SQLite for its busy timeout).
const MYSQL_LOCK_WAIT: Duration = Duration::from_secs(600);

/// Where the schema stands against this build's migrations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaState {
    /// Migrations this build knows that are not applied, in order.
    pub pending: Vec<String>,
    /// Applied migrations this build does not know: a newer release migrated the database.
    pub unknown: Vec<String>,
}

impl SchemaState {
    /// Whether the schema is exactly the one this build expects.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty()
    }
}

fn failed(e: DbErr) -> StorageError {
    StorageError::Migrate(e.into())
}

impl Database {
    /// Applies every pending migration, under the migration lock.
    ///
    /// # Errors
    ///
    /// [`StorageError::SchemaNewer`] when a newer release migrated the database;
    /// [`StorageError::Migrate`].
    pub async fn migrate_up(&self) -> Result<(), StorageError> {
        let txn = self.migration_lock().await?;
        let result = async {
            let state = known_schema(&txn).await?;
            if !state.pending.is_empty() {
                tracing::info!(pending = state.pending.len(), "migrating the database");
                Migrator::up(&txn, None).await.map_err(failed)?;
            }
            Ok(())
        }
        .await;
        self.migration_unlock(txn, result).await
    }

    /// Rolls back the last `steps` applied migrations (`None`: all of them), under the
    /// migration lock.
    ///
    /// # Errors
    ///
    /// [`StorageError::SchemaNewer`] when a newer release migrated the database (its own
    /// `migrate down` must undo its migrations); [`StorageError::Migrate`].
    pub async fn migrate_down(&self, steps: Option<u32>) -> Result<(), StorageError> {
        let txn = self.migration_lock().await?;
        let result = async {
            known_schema(&txn).await?;
            Migrator::down(&txn, steps).await.map_err(failed)
        }
        .await;
        self.migration_unlock(txn, result).await
    }

    /// Every known migration's name and whether it is applied, in order.
    ///
    /// # Errors
    ///
    /// [`StorageError::Migrate`].
    pub async fn migration_status(&self) -> Result<Vec<(String, bool)>, StorageError> {
        let state = self.schema_state().await?;
        Ok(Migrator::migrations()
            .iter()
            .map(|m| {
                let name = m.name().to_owned();
                let done = !state.pending.contains(&name);
                (name, done)
            })
            .collect())
    }

    /// Where the schema stands against this build's migrations.
    ///
    /// # Errors
    ///
    /// [`StorageError::Migrate`] when the migrations table cannot be read.
    pub async fn schema_state(&self) -> Result<SchemaState, StorageError> {
        let txn = self.conn.begin().await.map_err(failed)?;
        let state = schema_state(&txn).await?;
        txn.commit().await.map_err(failed)?;
        Ok(state)
    }

    /// A transaction holding the database-wide migration lock.
    async fn migration_lock(&self) -> Result<DatabaseTransaction, StorageError> {
        let sqlite = self.backend() == Backend::Sqlite;
        let txn = self
            .conn
            .begin_with_options(TransactionOptions {
                // A waiter must see the schema the lock's holder committed.
                isolation_level: (!sqlite).then_some(IsolationLevel::ReadCommitted),
                access_mode: None,
                sqlite_transaction_mode: sqlite.then_some(SqliteTransactionMode::Immediate),
            })
            .await
            .map_err(failed)?;
        match self.backend() {
            Backend::Sqlite => {}
            Backend::Postgres => {
                let key = PG_LOCK_KEY.to_string();
                if !flag(&txn, &format!("SELECT pg_try_advisory_xact_lock({key})")).await? {
                    tracing::info!("another instance is migrating the database; waiting for it");
                    flag(
                        &txn,
                        &format!("SELECT pg_advisory_xact_lock({key}) IS NULL"),
                    )
                    .await?;
                }
            }
            Backend::MySql => {
                if !flag(&txn, &format!("SELECT GET_LOCK({MYSQL_LOCK}, 0) = 1")).await? {
                    tracing::info!("another instance is migrating the database; waiting for it");
                    let wait = MYSQL_LOCK_WAIT.as_secs();
                    if !flag(&txn, &format!("SELECT GET_LOCK({MYSQL_LOCK}, {wait}) = 1")).await? {
                        return Err(StorageError::Migrate(
                            format!(
                                "another instance has held the migration lock for {wait} s; \
                                 is a migration stuck?"
                            )
                            .into(),
                        ));
                    }
                }
            }
        }
        Ok(txn)
    }

    /// Ends the migration transaction, committing it when `result` is a success and rolling
    /// it back otherwise, and releases the lock: MySQL's named lock belongs to the connection,
    /// not the transaction, so it is released first, whatever the result (a connection back
    /// in the pool must not keep it).
    async fn migration_unlock(
        &self,
        txn: DatabaseTransaction,
        result: Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        if self.backend() == Backend::MySql {
            let released = flag(&txn, &format!("SELECT RELEASE_LOCK({MYSQL_LOCK}) = 1")).await;
            if let Err(error) = released {
                tracing::warn!(error = %insta_router_ports::describe(&error), "cannot release the migration lock");
            }
        }
        match result {
            Ok(()) => txn.commit().await.map_err(failed),
            Err(error) => {
                let _ = txn.rollback().await;
                Err(error)
            }
        }
    }
}

/// A statement answering one boolean (`NULL` reads as false).
async fn flag(txn: &DatabaseTransaction, sql: &str) -> Result<bool, StorageError> {
    let row = txn
        .query_one_raw(sea_orm::Statement::from_string(
            txn.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .map_err(failed)?;
    let value = match row {
        Some(row) => row
            .try_get_by_index::<Option<bool>>(0)
            .or_else(|_| {
                row.try_get_by_index::<Option<i64>>(0)
                    .map(|n| n.map(|n| n == 1))
            })
            .map_err(failed)?,
        None => None,
    };
    Ok(value.unwrap_or(false))
}

/// The schema's state, refused when a newer release migrated it.
async fn known_schema(txn: &DatabaseTransaction) -> Result<SchemaState, StorageError> {
    let state = schema_state(txn).await?;
    if state.unknown.is_empty() {
        Ok(state)
    } else {
        Err(StorageError::SchemaNewer(state.unknown))
    }
}

/// The schema's state, read through `txn` (the migrations table is created when missing).
async fn schema_state(txn: &DatabaseTransaction) -> Result<SchemaState, StorageError> {
    let applied: Vec<String> = Migrator::get_migration_models(txn)
        .await
        .map_err(failed)?
        .into_iter()
        .map(|m| m.version)
        .collect();
    let known: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    Ok(SchemaState {
        pending: known
            .iter()
            .filter(|k| !applied.contains(k))
            .cloned()
            .collect(),
        unknown: applied.into_iter().filter(|a| !known.contains(a)).collect(),
    })
}
