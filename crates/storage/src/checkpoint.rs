//! SQLite's WAL, kept in check off the write path.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};

/// WAL frames (pages) past which the checkpointer restarts the WAL: 64 MiB of 4 KiB pages.
const WAL_RESTART_FRAMES: i64 = 16_384;

/// How long a SQLite connection waits for another one's write lock (the pool's and the
/// writer thread's; a RESTART checkpoint restores it after its own short wait).
pub(crate) const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a RESTART checkpoint waits for readers (and so holds writers).
const RESTART_WAIT_MS: u64 = 100;

/// `journal_size_limit`: the size SQLite cuts the WAL back to when it starts it over. Well
/// above the restart point, because under sustained writes the WAL passes that point by the
/// next checkpoint, and a WAL cut back on every restart is grown again page by page, each new
/// page a block the file system allocates; a WAL left at its size is overwritten in place.
/// Measured: +12 % events/s (median of five alternating runs) against a 64 MiB limit. The
/// WAL is removed when the database closes.
pub(crate) const WAL_SIZE_LIMIT: u64 = 256 * 1024 * 1024;

/// SQLite's WAL checkpoints, taken off the write path: with automatic checkpoints a commit
/// now and then copies the WAL into the database and fsyncs it, stalling every request
/// waiting on that commit. Instead a task checkpoints passively (without blocking writers or
/// readers) twice a second. Stopped when the last clone of the [`Database`] is dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer(tokio::task::JoinHandle<()>);

impl Checkpointer {
    pub(crate) fn start(conn: DatabaseConnection) -> Self {
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let passive = Statement::from_string(
                    DatabaseBackend::Sqlite,
                    "PRAGMA wal_checkpoint(PASSIVE)",
                );
                // One row: busy, frames in the WAL, frames checkpointed.
                let frames = match conn.query_one_raw(passive).await {
                    Ok(row) => row
                        .and_then(|r| r.try_get_by_index::<i64>(1).ok())
                        .unwrap_or(0),
                    Err(e) => {
                        if matches!(e, sea_orm::DbErr::ConnectionAcquire(_)) {
                            tracing::debug!("checkpointer stops: {e}");
                            return;
                        }
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                        continue;
                    }
                };
                // Under sustained writes a passive checkpoint never catches up completely,
                // and SQLite starts the WAL over only after one has: the file would grow
                // without bound. Past the limit, a RESTART checkpoint holds new writers for
                // the moment it takes to copy what the passive one left, and the next
                // commit starts the WAL from its beginning, overwriting the file in place
                // (cut back only past `WAL_SIZE_LIMIT`).
                //
                // A RESTART waits for readers of the old WAL, holding writers meanwhile, for
                // as long as the busy timeout: a long reader (`insta-router backup`, which
                // reads one snapshot for as long as the copy takes) would stall every write
                // for 10 s. So it waits 100 ms at most, on the same connection, and is tried
                // again half a second later.
                if frames >= WAL_RESTART_FRAMES
                    && let Err(e) = conn.execute_unprepared(&restart_sql()).await
                {
                    tracing::warn!(error = %e, "WAL restart checkpoint failed");
                }
            }
        }))
    }
}

/// A RESTART checkpoint with a short busy timeout, the usual one restored after it.
fn restart_sql() -> String {
    format!(
        "PRAGMA busy_timeout = {RESTART_WAIT_MS}; PRAGMA wal_checkpoint(RESTART); \
         PRAGMA busy_timeout = {}",
        SQLITE_BUSY_TIMEOUT.as_millis()
    )
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseBackend, Statement};

    use super::SQLITE_BUSY_TIMEOUT;
    use super::restart_sql;

    #[tokio::test]
    async fn the_restart_runs_on_one_connection_and_restores_its_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
        let mut options = ConnectOptions::new(url);
        options.max_connections(1).sqlx_logging(false);
        let conn = sea_orm::Database::connect(options).await.unwrap();
        conn.execute_unprepared("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)")
            .await
            .unwrap();
        conn.execute_unprepared(&restart_sql()).await.unwrap();
        let timeout = conn
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Sqlite,
                "PRAGMA busy_timeout",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap();
        assert_eq!(
            u128::try_from(timeout).unwrap(),
            SQLITE_BUSY_TIMEOUT.as_millis()
        );
    }
}
