//! Errors of the storage adapter and their mapping to port errors.

use insta_router_ports::RepoError;
use sea_orm::{DbErr, SqlErr};

/// Why the database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL names no backend this build supports.
    #[error("unsupported database url (expected sqlite:, postgres: or mysql:): {0}")]
    UnsupportedUrl(String),
    /// Connecting failed.
    #[error("cannot connect to the database")]
    Connect(#[source] DbErr),
    /// A migration failed.
    #[error("migration failed")]
    Migrate(#[source] DbErr),
}

/// Maps a database error, turning a unique violation into a conflict on `field`.
pub(crate) fn map_err(field: &'static str) -> impl Fn(DbErr) -> RepoError {
    move |err| match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => RepoError::Conflict { field },
        _ => unavailable(err),
    }
}

pub(crate) fn unavailable(err: DbErr) -> RepoError {
    RepoError::Unavailable(Box::new(err))
}
