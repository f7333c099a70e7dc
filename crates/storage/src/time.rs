//! Times are stored as microseconds since the Unix epoch.

use chrono::{DateTime, Utc};
use insta_router_ports::RepoError;

pub(crate) fn to_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn from_micros(micros: i64) -> Result<DateTime<Utc>, RepoError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| RepoError::Corrupt(format!("timestamp {micros} out of range")))
}
