//! Gauges refreshed by the server's housekeeping: the job queue by kind and status.

use insta_router_domain::{JobKind, JobStatus};
use insta_router_ports::{JobQueue, RepoError};

/// Publishes how many jobs are queued, running or dead, by kind, as the gauge
/// `insta_router_jobs{kind,status}` (zero for a pair that has none, so a series drops back).
///
/// # Errors
///
/// The store's, when the counts cannot be read.
pub async fn publish_job_counts(jobs: &dyn JobQueue) -> Result<(), RepoError> {
    let counts = jobs.counts().await?;
    for kind in JobKind::ALL {
        for status in [JobStatus::Queued, JobStatus::Running, JobStatus::Dead] {
            let n = counts
                .iter()
                .find(|(k, s, _)| *k == kind && *s == status)
                .map_or(0, |(_, _, n)| *n);
            #[allow(clippy::cast_precision_loss, reason = "a gauge; counts far below 2^52")]
            metrics::gauge!("insta_router_jobs", "kind" => kind.as_str(), "status" => status.as_str())
                .set(n as f64);
        }
    }
    Ok(())
}
