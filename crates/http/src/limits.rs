//! Rate limits (governor's GCRA, in memory, per instance): per API key on `/api/v1`, and per
//! client address for failures only (bad API keys, webhooks whose signature fails), so key
//! guessing and forged floods are answered 429 while valid keys under their limit and Meta's
//! signed traffic never are.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use insta_router_domain::ApiKeyId;

use crate::ApiError;

/// How the limits are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per second per API key (bursts of twice as many); 0: no limit.
    pub per_key_per_second: u32,
    /// Failed authentications (or webhook signatures) per minute per client address; 0: no
    /// limit.
    pub failures_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            per_key_per_second: 50,
            failures_per_minute: 30,
        }
    }
}

/// The limiters of one server, shared by its HTTP workers.
pub struct Limiters {
    keys: Option<DefaultKeyedRateLimiter<ApiKeyId>>,
    auth_failures: Option<DefaultKeyedRateLimiter<IpAddr>>,
    signature_failures: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Checks since the limiters last forgot idle keys.
    checks: AtomicU64,
}

/// Every this many checks, a limiter forgets the keys idle long enough to be back at a full
/// burst, so addresses seen once do not pile up.
const FORGET_EVERY: u64 = 4096;

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limiters")
    }
}

impl Limiters {
    /// Limiters for `limits`.
    pub fn new(limits: RateLimits) -> Self {
        let per_key = NonZeroU32::new(limits.per_key_per_second).map(|rate| {
            let burst = NonZeroU32::new(rate.get().saturating_mul(2)).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let failures = || {
            NonZeroU32::new(limits.failures_per_minute)
                .map(|rate| RateLimiter::keyed(Quota::per_minute(rate)))
        };
        Self {
            keys: per_key,
            auth_failures: failures(),
            signature_failures: failures(),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts a request of `key`: 429 past its limit.
    pub(crate) fn key(&self, key: &ApiKeyId) -> Result<(), ApiError> {
        check(self.keys.as_ref(), key, &self.checks)
    }

    /// Counts a failed authentication from `address`: 429 (instead of 401) past the limit.
    pub(crate) fn auth_failure(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        match address {
            Some(address) => check(self.auth_failures.as_ref(), &address, &self.checks),
            None => Ok(()),
        }
    }

    /// Counts a webhook whose signature failed, from `address`: 429 (instead of 401) past
    /// the limit.
    pub(crate) fn signature_failure(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        match address {
            Some(address) => check(self.signature_failures.as_ref(), &address, &self.checks),
            None => Ok(()),
        }
    }
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
    checks: &AtomicU64,
) -> Result<(), ApiError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    if checks.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
        limiter.retain_recent();
    }
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        ApiError::TooManyRequests(retry_after(wait))
    })
}

/// Whole seconds to wait, rounded up, at least one.
fn retry_after(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_429_with_a_retry_after() {
        let limiters = Limiters::new(RateLimits {
            per_key_per_second: 2,
            failures_per_minute: 3,
        });
        let key = ApiKeyId::from_u128(1);
        for _ in 0..4 {
            assert!(limiters.key(&key).is_ok());
        }
        assert!(matches!(
            limiters.key(&key),
            Err(ApiError::TooManyRequests(1))
        ));
        // Another key is not affected.
        assert!(limiters.key(&ApiKeyId::from_u128(2)).is_ok());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limiters.auth_failure(Some(ip)).is_ok());
        }
        assert!(matches!(
            limiters.auth_failure(Some(ip)),
            Err(ApiError::TooManyRequests(n)) if (1..=20).contains(&n)
        ));
        assert!(
            limiters.signature_failure(Some(ip)).is_ok(),
            "separate budgets"
        );
        assert!(limiters.auth_failure(None).is_ok());
        let off = Limiters::new(RateLimits {
            per_key_per_second: 0,
            failures_per_minute: 0,
        });
        for _ in 0..1000 {
            assert!(off.key(&key).is_ok() && off.auth_failure(Some(ip)).is_ok());
        }
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(retry_after(Duration::ZERO), 1);
        assert_eq!(retry_after(Duration::from_millis(10)), 1);
        assert_eq!(retry_after(Duration::from_secs(2)), 2);
        assert_eq!(retry_after(Duration::from_millis(2001)), 3);
    }
}
