//! An access token's life: when it was set and when it expires, when to refresh it, and the
//! state the API reports.
//!
//! Instagram-login long-lived tokens last 60 days; Meta refreshes one that is at least 24 hours
//! old (`GET /refresh_access_token?grant_type=ig_refresh_token`) for another 60 days.

use chrono::{DateTime, TimeDelta, Utc};

use crate::TokenFailure;

/// How long a long-lived token lasts when Meta did not say.
pub const LONG_LIVED_TOKEN: TimeDelta = TimeDelta::days(60);
/// How old a token must be before Meta refreshes it.
pub const REFRESH_MIN_AGE: TimeDelta = TimeDelta::hours(24);
/// How close to its expiry a token is refreshed.
pub const REFRESH_BEFORE_EXPIRY: TimeDelta = TimeDelta::days(10);

/// What is known of an access token's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenLife {
    /// When the token was set (created, patched or refreshed); `None` for accounts connected
    /// before this was recorded (their creation stands in).
    pub set_at: Option<DateTime<Utc>>,
    /// When it expires, as Meta said (a refresh's `expires_in`) or the client gave it.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The token's state, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// Meta refused it (code 190): sends fail until a new token is set.
    Invalid,
    /// Past its expiry.
    Expired,
    /// Within [`REFRESH_BEFORE_EXPIRY`] of its expiry.
    Expiring,
    /// Its expiry is known and not near.
    Valid,
    /// Its expiry is not known.
    Unknown,
}

impl TokenState {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::Expiring => "expiring",
            Self::Valid => "valid",
            Self::Unknown => "unknown",
        }
    }
}

impl TokenLife {
    /// A token set at `now`, expiring at `expires_at` when known.
    pub fn set(now: DateTime<Utc>, expires_at: Option<DateTime<Utc>>) -> Self {
        Self {
            set_at: Some(now),
            expires_at,
        }
    }

    /// The state at `now`, given Meta's refusal if any.
    pub fn state(&self, failure: Option<&TokenFailure>, now: DateTime<Utc>) -> TokenState {
        if failure.is_some() {
            return TokenState::Invalid;
        }
        match self.expires_at {
            None => TokenState::Unknown,
            Some(at) if at <= now => TokenState::Expired,
            Some(at) if at - now <= REFRESH_BEFORE_EXPIRY => TokenState::Expiring,
            Some(_) => TokenState::Valid,
        }
    }

    /// Whether a long-lived token should be refreshed at `now`: at least a day old and within
    /// ten days of its expiry (when Meta did not say, 60 days after it was set, or after
    /// `connected_at` for tokens older than the record).
    pub fn refresh_due(&self, connected_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let set_at = self.set_at.unwrap_or(connected_at);
        let expires_at = self.expires_at.unwrap_or(set_at + LONG_LIVED_TOKEN);
        now - set_at >= REFRESH_MIN_AGE && expires_at - now <= REFRESH_BEFORE_EXPIRY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(days: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000 + days)
    }

    #[test]
    fn a_token_is_refreshed_within_ten_days_of_expiry_once_a_day_old() {
        let known = TokenLife {
            set_at: Some(t(0)),
            expires_at: Some(t(60)),
        };
        assert!(!known.refresh_due(t(0), t(49)));
        assert!(known.refresh_due(t(0), t(50)));
        assert!(
            known.refresh_due(t(0), t(61)),
            "past expiry it is still tried"
        );
        // A token that expires soon but was set an hour ago cannot be refreshed yet.
        let fresh = TokenLife {
            set_at: Some(t(0)),
            expires_at: Some(t(5)),
        };
        assert!(!fresh.refresh_due(t(0), t(0) + TimeDelta::hours(1)));
        assert!(fresh.refresh_due(t(0), t(1)));
        // Unknown expiry: 60 days after it was set, or after the account was connected.
        let unknown = TokenLife::default();
        assert!(!unknown.refresh_due(t(0), t(49)));
        assert!(unknown.refresh_due(t(0), t(50)));
    }

    #[test]
    fn the_state_says_invalid_expired_expiring_valid_or_unknown() {
        let life = TokenLife::set(t(0), Some(t(60)));
        let refused = TokenFailure {
            at: t(1),
            message: "expired".into(),
        };
        assert_eq!(life.state(Some(&refused), t(1)), TokenState::Invalid);
        assert_eq!(life.state(None, t(61)), TokenState::Expired);
        assert_eq!(life.state(None, t(55)), TokenState::Expiring);
        assert_eq!(life.state(None, t(10)), TokenState::Valid);
        assert_eq!(TokenLife::default().state(None, t(10)), TokenState::Unknown);
    }
}
