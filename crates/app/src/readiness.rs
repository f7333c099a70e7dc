//! Whether this instance should get traffic: what `/ready` reports, as opposed to `/health`
//! (the process is alive).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use insta_router_ports::HealthCheck;

/// The instance's readiness: shutting down or not, its worker groups, and (asked at each
/// check) its database and schema.
#[derive(Debug, Default)]
pub struct Readiness {
    draining: AtomicBool,
    /// Once the schema was seen current it stays so for this process (migrations only move
    /// forward while it runs), so later checks skip the query.
    schema_current: AtomicBool,
    /// Worker groups that stopped or lost a worker to a panic.
    failed: Mutex<Vec<&'static str>>,
}

/// What a readiness check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyReport {
    /// The database answered within the check's time.
    pub database: bool,
    /// Every migration this build knows is applied (`None`: could not be read).
    pub schema_current: Option<bool>,
    /// Worker groups that stopped or lost a worker.
    pub failed_workers: Vec<&'static str>,
    /// The instance is shutting down.
    pub draining: bool,
}

impl ReadyReport {
    /// Whether the instance should get traffic.
    pub fn is_ready(&self) -> bool {
        self.database
            && self.schema_current == Some(true)
            && self.failed_workers.is_empty()
            && !self.draining
    }
}

/// Held by a running worker group; reports the group when it ends before shutdown.
#[derive(Debug)]
pub struct WorkerWatch {
    readiness: Arc<Readiness>,
    name: &'static str,
}

impl WorkerWatch {
    /// One of the group's workers panicked: the instance is no longer ready.
    pub fn panicked(&self) {
        tracing::error!(workers = self.name, "a worker panicked; /ready reports it");
        self.readiness.fail(self.name);
    }
}

impl Drop for WorkerWatch {
    fn drop(&mut self) {
        if !self.readiness.is_draining() {
            tracing::error!(
                workers = self.name,
                "a worker group stopped; /ready reports it"
            );
            self.readiness.fail(self.name);
        }
    }
}

impl Readiness {
    /// The instance is shutting down: not ready from now on.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether [`Readiness::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// A watch for the worker group `name`, held by the task that runs it.
    pub fn watch(self: &Arc<Self>, name: &'static str) -> WorkerWatch {
        WorkerWatch {
            readiness: self.clone(),
            name,
        }
    }

    fn fail(&self, name: &'static str) {
        if let Ok(mut failed) = self.failed.lock()
            && !failed.contains(&name)
        {
            failed.push(name);
        }
    }

    /// Checks the database (a ping and the schema), each within `timeout`.
    pub async fn check(&self, health: &dyn HealthCheck, timeout: Duration) -> ReadyReport {
        let database = matches!(
            tokio::time::timeout(timeout, health.ping()).await,
            Ok(Ok(()))
        );
        let schema_current = if self.schema_current.load(Ordering::SeqCst) {
            Some(true)
        } else if database {
            match tokio::time::timeout(timeout, health.schema_current()).await {
                Ok(Ok(current)) => {
                    if current {
                        self.schema_current.store(true, Ordering::SeqCst);
                    }
                    Some(current)
                }
                _ => None,
            }
        } else {
            None
        };
        ReadyReport {
            database,
            schema_current,
            failed_workers: self.failed.lock().map(|f| f.clone()).unwrap_or_default(),
            draining: self.is_draining(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use insta_router_ports::{MockHealthCheck, RepoError};

    fn health(ping: bool, schema: Result<bool, ()>) -> MockHealthCheck {
        let mut health = MockHealthCheck::new();
        health.expect_ping().returning(move || {
            if ping {
                Ok(())
            } else {
                Err(RepoError::Unavailable("refused".into()))
            }
        });
        health
            .expect_schema_current()
            .returning(move || schema.map_err(|()| RepoError::Unavailable("refused".into())));
        health
    }

    const T: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn ready_needs_the_database_its_schema_its_workers_and_no_shutdown() {
        let readiness = Arc::new(Readiness::default());
        let report = readiness.check(&health(true, Ok(true)), T).await;
        assert!(report.is_ready(), "{report:?}");

        let not = [
            readiness.check(&health(false, Ok(true)), T).await,
            Readiness::default()
                .check(&health(true, Ok(false)), T)
                .await,
            Readiness::default().check(&health(true, Err(())), T).await,
        ];
        for report in not {
            assert!(!report.is_ready(), "{report:?}");
        }

        let watch = readiness.watch("crm-delivery");
        watch.panicked();
        let report = readiness.check(&health(true, Ok(true)), T).await;
        assert_eq!(report.failed_workers, ["crm-delivery"]);
        assert!(!report.is_ready());
    }

    #[tokio::test]
    async fn a_group_that_ends_before_shutdown_is_reported_and_not_after() {
        let readiness = Arc::new(Readiness::default());
        drop(readiness.watch("auto-reply"));
        let report = readiness.check(&health(true, Ok(true)), T).await;
        assert_eq!(report.failed_workers, ["auto-reply"]);

        let readiness = Arc::new(Readiness::default());
        let watch = readiness.watch("auto-reply");
        readiness.drain();
        drop(watch);
        let report = readiness.check(&health(true, Ok(true)), T).await;
        assert!(report.failed_workers.is_empty());
        assert!(report.draining && !report.is_ready());
    }

    #[tokio::test]
    async fn a_schema_seen_current_is_not_read_again() {
        let readiness = Readiness::default();
        let mut once = MockHealthCheck::new();
        once.expect_ping().returning(|| Ok(()));
        once.expect_schema_current().times(1).returning(|| Ok(true));
        for _ in 0..3 {
            assert!(readiness.check(&once, T).await.is_ready());
        }
    }
}
