//! The analytics rollup's worker: a pass when the server starts and every interval after, so
//! that analytics over weeks read the hourly rollup instead of every stored row (see the
//! storage's `rollup.rs` for what a pass does).

use std::sync::Arc;
use std::time::Duration;

use insta_router_ports::{AnalyticsStore, Clock, RepoError, RollupReport};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::workers::{self, Wakers};

/// How often the rollup is rebuilt, and how many recent hours each pass rebuilds again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupSettings {
    /// Between two passes.
    pub interval: Duration,
    /// Hours before the current one rebuilt at every pass: long enough for what still
    /// changes them (Meta's late retries, up to 36 hours; the CRM retry schedule; sends
    /// reconciled).
    pub recent_hours: u32,
}

/// Rebuilds the analytics rollup.
pub struct AnalyticsRollup {
    store: Arc<dyn AnalyticsStore>,
    clock: Arc<dyn Clock>,
    settings: RollupSettings,
}

impl AnalyticsRollup {
    /// A rollup over these ports.
    pub fn new(
        store: Arc<dyn AnalyticsStore>,
        clock: Arc<dyn Clock>,
        settings: RollupSettings,
    ) -> Self {
        Self {
            store,
            clock,
            settings,
        }
    }

    /// One pass.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn refresh(&self) -> Result<RollupReport, RepoError> {
        let report = self
            .store
            .refresh_rollup(self.clock.now(), self.settings.recent_hours)
            .await?;
        if report.hours > 0 {
            tracing::debug!(
                hours = report.hours,
                rows = report.rows,
                "analytics rollup rebuilt"
            );
        }
        Ok(report)
    }

    /// Runs a pass now and every interval until `stop`.
    pub fn start(self: &Arc<Self>, stop: watch::Receiver<bool>) -> JoinSet<()> {
        let wakers = Wakers {
            commits: None,
            wakeups: None,
            stop,
            poll: self.settings.interval,
        };
        workers::start(self, 1, &wakers, |rollup| async move {
            if let Err(error) = rollup.refresh().await {
                tracing::warn!(error = %crate::describe(&error), "rebuilding the analytics rollup failed; analytics read the stored rows until the next pass");
            }
            false
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use insta_router_ports::{MockAnalyticsStore, MockClock};

    #[tokio::test]
    async fn a_pass_asks_the_store_to_rebuild_up_to_now_with_the_recent_hours() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 30, 0).unwrap();
        let mut store = MockAnalyticsStore::new();
        store
            .expect_refresh_rollup()
            .withf(move |at, recent| *at == now && *recent == 96)
            .times(1)
            .returning(|_, _| {
                Ok(RollupReport {
                    hours: 96,
                    rows: 10,
                    busy: false,
                })
            });
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now);
        let rollup = AnalyticsRollup::new(
            Arc::new(store),
            Arc::new(clock),
            RollupSettings {
                interval: Duration::from_secs(300),
                recent_hours: 96,
            },
        );
        assert_eq!(rollup.refresh().await.unwrap().hours, 96);
    }
}
