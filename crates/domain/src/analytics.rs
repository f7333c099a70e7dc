//! Analytics over the stored rows: a time range cut into hour or day buckets (UTC).

use chrono::{DateTime, TimeDelta, Utc};

use crate::{FieldError, ValidationErrors};

/// Most buckets one answer holds.
pub const MAX_BUCKETS: i64 = 2_000;

/// How a range is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// An hour.
    Hour,
    /// A day (UTC).
    Day,
}

impl Bucket {
    /// `hour` or `day`.
    ///
    /// # Errors
    ///
    /// A [`FieldError`] on `bucket` for anything else.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        match raw {
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            _ => Err(FieldError::new("bucket", "must be hour or day")),
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// Its length.
    pub fn length(self) -> TimeDelta {
        match self {
            Self::Hour => TimeDelta::hours(1),
            Self::Day => TimeDelta::days(1),
        }
    }

    /// Its length in microseconds, as the stored times count.
    pub fn micros(self) -> i64 {
        self.length().num_microseconds().unwrap_or(i64::MAX)
    }

    /// The start of the bucket holding `at`.
    pub fn start_of(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let micros = at.timestamp_micros();
        let start = micros - micros.rem_euclid(self.micros());
        DateTime::from_timestamp_micros(start).unwrap_or(at)
    }
}

/// A validated range `[from, to)`, its ends on bucket boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// The first instant in it.
    pub from: DateTime<Utc>,
    /// The first instant after it.
    pub to: DateTime<Utc>,
    /// How it is cut.
    pub bucket: Bucket,
}

impl TimeRange {
    /// The range from the bucket holding `from` to the end of the bucket holding the instant
    /// before `to`.
    ///
    /// # Errors
    ///
    /// When `to` is not after `from`, or the range holds more than [`MAX_BUCKETS`] buckets.
    pub fn new(
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        bucket: Bucket,
    ) -> Result<Self, ValidationErrors> {
        if to <= from {
            return Err(FieldError::new("to", "must be after from").into());
        }
        let from = bucket.start_of(from);
        let last = bucket.start_of(to - TimeDelta::microseconds(1));
        let to = last + bucket.length();
        if (to - from).num_microseconds().unwrap_or(i64::MAX) / bucket.micros() > MAX_BUCKETS {
            return Err(FieldError::new(
                "from",
                format!("the range holds more than {MAX_BUCKETS} buckets; use a wider bucket"),
            )
            .into());
        }
        Ok(Self { from, to, bucket })
    }

    /// Every bucket's start, in order.
    pub fn starts(&self) -> Vec<DateTime<Utc>> {
        let mut starts = Vec::new();
        let mut at = self.from;
        while at < self.to {
            starts.push(at);
            at += self.bucket.length();
        }
        starts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_range_is_widened_to_whole_buckets() {
        let range = TimeRange::new(
            t("2026-11-30T10:15:00Z"),
            t("2026-11-30T12:00:00Z"),
            Bucket::Hour,
        )
        .unwrap();
        assert_eq!(range.from, t("2026-11-30T10:00:00Z"));
        assert_eq!(range.to, t("2026-11-30T12:00:00Z"));
        assert_eq!(range.starts().len(), 2);
        let days = TimeRange::new(
            t("2026-11-28T23:00:00Z"),
            t("2026-11-30T00:00:01Z"),
            Bucket::Day,
        )
        .unwrap();
        assert_eq!(
            days.starts(),
            [
                t("2026-11-28T00:00:00Z"),
                t("2026-11-29T00:00:00Z"),
                t("2026-11-30T00:00:00Z")
            ]
        );
    }

    #[test]
    fn empty_or_huge_ranges_are_refused() {
        let at = t("2026-11-30T10:00:00Z");
        assert!(TimeRange::new(at, at, Bucket::Day).is_err());
        assert!(TimeRange::new(at - TimeDelta::days(100), at, Bucket::Hour).is_err());
        assert!(TimeRange::new(at - TimeDelta::days(100), at, Bucket::Day).is_ok());
        assert!(Bucket::parse("week").is_err());
    }
}
