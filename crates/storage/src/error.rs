//! Errors of the storage adapter and their mapping to port errors.

use insta_router_ports::{BoxError, RepoError};
use std::future::Future;

use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// Why the database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL names no backend this build supports.
    #[error("unsupported database url (expected sqlite:, postgres: or mysql:): {0}")]
    UnsupportedUrl(String),
    /// Connecting failed; the source says why (the driver's error, boxed: no sea-orm type
    /// leaves this crate).
    #[error("cannot connect to the database")]
    Connect(#[source] BoxError),
    /// A migration failed; the source says why.
    #[error("migration failed")]
    Migrate(#[source] BoxError),
    /// The schema holds migrations this build does not know: a newer release migrated it.
    #[error(
        "the database schema is newer than this build: it holds the migrations {}, which this \
         release does not know (a newer release migrated it); run that release, or roll its \
         migrations back with its `insta-router migrate down` first",
        .0.join(", ")
    )]
    SchemaNewer(Vec<String>),
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

/// How often a transaction the database aborted to break a deadlock is run in all.
const DEADLOCK_ATTEMPTS: u32 = 4;

/// Runs `transaction` again while the database aborts it to break a deadlock (SQLSTATE 40001
/// or 40P01; MySQL's 1213), as the databases ask of their clients: the aborted attempt was
/// rolled back whole, so a new one starts clean. Any other outcome is returned as it is.
pub(crate) async fn retry_deadlocks<T, F, Fut>(mut transaction: F) -> Result<T, RepoError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RepoError>>,
{
    let mut attempt = 1;
    loop {
        match transaction().await {
            Err(err) if attempt < DEADLOCK_ATTEMPTS && is_deadlock(&err) => {
                tracing::debug!(attempt, error = ?err, "deadlock; running the transaction again");
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

fn is_deadlock(err: &RepoError) -> bool {
    let RepoError::Unavailable(source) = err else {
        return false;
    };
    source
        .downcast_ref::<DbErr>()
        .and_then(database_code)
        .is_some_and(|code| matches!(code.as_str(), "40001" | "40P01"))
}

/// Whether SQLite refused `err`'s statement or connection because another connection held
/// the lock it needed (`SQLITE_BUSY`, "database is locked", or one of its extended codes).
pub(crate) fn is_sqlite_busy(err: &DbErr) -> bool {
    const SQLITE_BUSY: u32 = 5;
    database_code(err)
        .and_then(|code| code.parse::<u32>().ok())
        .is_some_and(|code| code & 0xff == SQLITE_BUSY)
}

/// The code the database gave with `err`: a SQLSTATE, or SQLite's result code.
fn database_code(err: &DbErr) -> Option<String> {
    let (DbErr::Conn(RuntimeErr::SqlxError(e))
    | DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Query(RuntimeErr::SqlxError(e))) = err
    else {
        return None;
    };
    match e.as_ref() {
        sea_orm::sqlx::Error::Database(db) => db.code().map(std::borrow::Cow::into_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use sea_orm::sqlx::error::{DatabaseError, ErrorKind};

    use super::*;

    /// A database error with a given SQLSTATE, as a driver reports it.
    #[derive(Debug, thiserror::Error)]
    #[error("sqlstate {0}")]
    struct Sqlstate(&'static str);

    impl DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    fn failure(sqlstate: &'static str) -> RepoError {
        let err = sea_orm::sqlx::Error::Database(Box::new(Sqlstate(sqlstate)));
        unavailable(DbErr::Exec(RuntimeErr::SqlxError(Arc::new(err))))
    }

    /// Runs `retry_deadlocks` over attempts that fail with `sqlstate` until `succeeds_on`.
    async fn attempts(sqlstate: &'static str, succeeds_on: u32) -> (u32, Result<u32, RepoError>) {
        let count = AtomicU32::new(0);
        let outcome = retry_deadlocks(|| async {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            if n >= succeeds_on {
                Ok(n)
            } else {
                Err(failure(sqlstate))
            }
        })
        .await;
        (count.load(Ordering::SeqCst), outcome)
    }

    #[tokio::test]
    async fn deadlocked_transactions_run_again_up_to_the_limit() {
        // MySQL's 1213 and PostgreSQL's serialization failure are 40001, PostgreSQL's deadlock 40P01.
        for sqlstate in ["40001", "40P01"] {
            let (count, outcome) = attempts(sqlstate, 3).await;
            assert_eq!((count, outcome.unwrap()), (3, 3), "{sqlstate}");
            let (count, outcome) = attempts(sqlstate, u32::MAX).await;
            assert_eq!(count, DEADLOCK_ATTEMPTS, "{sqlstate}");
            assert!(is_deadlock(&outcome.unwrap_err()));
        }
    }

    #[test]
    fn sqlite_busy_is_told_by_its_result_code_at_connect_and_on_statements() {
        let error = |code: &'static str, conn: bool| {
            let err = Arc::new(sea_orm::sqlx::Error::Database(Box::new(Sqlstate(code))));
            if conn {
                DbErr::Conn(RuntimeErr::SqlxError(err))
            } else {
                DbErr::Exec(RuntimeErr::SqlxError(err))
            }
        };
        // 5: SQLITE_BUSY; 517: SQLITE_BUSY_SNAPSHOT; 6: SQLITE_LOCKED (another matter).
        assert!(is_sqlite_busy(&error("5", true)));
        assert!(is_sqlite_busy(&error("517", false)));
        assert!(!is_sqlite_busy(&error("6", true)));
        assert!(!is_sqlite_busy(&error("40001", true)));
        assert!(!is_sqlite_busy(&DbErr::Custom("database is locked".into())));
    }

    #[tokio::test]
    async fn other_failures_are_returned_at_once() {
        // 23505: unique violation; 08006: connection failure.
        for sqlstate in ["23505", "08006"] {
            let (count, outcome) = attempts(sqlstate, u32::MAX).await;
            assert_eq!(count, 1, "{sqlstate}");
            assert!(matches!(outcome, Err(RepoError::Unavailable(_))));
        }
        let count = AtomicU32::new(0);
        let outcome: Result<(), _> = retry_deadlocks(|| async {
            count.fetch_add(1, Ordering::SeqCst);
            Err(RepoError::Conflict { field: "mid" })
        })
        .await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(matches!(outcome, Err(RepoError::Conflict { field: "mid" })));
    }
}
