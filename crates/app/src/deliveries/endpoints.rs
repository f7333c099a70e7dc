//! Per-endpoint state shared by the workers: concurrent slots and the pause after a failure streak.

#[allow(clippy::wildcard_imports)]
use super::*;

impl DeliveryService {
    pub(super) fn slots(&self, url: &str) -> Arc<Semaphore> {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let endpoint = endpoints.entry(url.to_owned()).or_default();
        endpoint
            .slots
            .get_or_insert_with(|| {
                Arc::new(Semaphore::new(
                    self.settings.per_endpoint_concurrency.max(1),
                ))
            })
            .clone()
    }

    /// Until when this instance holds deliveries to `url` back after a streak of failures
    /// (`CRM_PAUSE_AFTER_FAILURES`); `None` when it is not paused. Each instance keeps its own.
    pub fn endpoint_paused_until(&self, url: &str) -> Option<DateTime<Utc>> {
        self.paused_until(url, self.clock.now())
    }

    pub(super) fn paused_until(&self, url: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        endpoints
            .get(url)
            .and_then(|e| e.paused_until)
            .filter(|until| *until > now)
    }

    pub(super) fn note_outcome(&self, url: &str, outcome: &AttemptOutcome, now: DateTime<Utc>) {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let endpoint = endpoints.entry(url.to_owned()).or_default();
        if matches!(outcome, AttemptOutcome::Answered { status, .. } if (200..300).contains(status))
        {
            endpoint.failures = 0;
            endpoint.paused_until = None;
            return;
        }
        endpoint.failures = endpoint.failures.saturating_add(1);
        if endpoint.failures >= self.settings.pause_after_failures.max(1) {
            let until = TimeDelta::from_std(self.settings.pause_for)
                .ok()
                .and_then(|d| now.checked_add_signed(d));
            if endpoint.paused_until.is_none_or(|p| p <= now) {
                tracing::warn!(
                    url,
                    failures = endpoint.failures,
                    "pausing deliveries to a failing CRM endpoint"
                );
            }
            endpoint.paused_until = until;
        }
    }
}
