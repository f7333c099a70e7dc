//! CRM deliveries: what one attempt's outcome means for the next.
//!
//! The policy is a pure function of the schedule, the attempt that just ended and a jitter
//! value the caller draws, so it is tested without clocks or randomness.

use std::time::Duration;

/// By default, the pause after a timeout, a 429 or a connection failure is at least this
/// long, whatever the schedule says: hammering a struggling CRM makes it worse.
pub const MIN_BACKOFF_AFTER_OVERLOAD: Duration = Duration::from_secs(60);

/// When the attempts of one delivery are made.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    /// The delay before each attempt: the first is the first attempt's (normally zero, right
    /// after the event is stored), the last the final retry's. Its length is the number of
    /// attempts.
    pub delays: Vec<Duration>,
    /// Each delay is moved by up to this fraction either way (0.2: +-20 %), so deliveries
    /// that failed together do not retry together.
    pub jitter: f64,
    /// The least pause after a timeout, a 429 or an unreachable CRM
    /// ([`MIN_BACKOFF_AFTER_OVERLOAD`] unless configured).
    pub overload_floor: Duration,
}

impl Default for RetrySchedule {
    /// Immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h, +-20 %: about
    /// three days in all, Svix's schedule.
    fn default() -> Self {
        const MIN: u64 = 60;
        const HOUR: u64 = 3600;
        Self {
            delays: [
                0,
                5,
                5 * MIN,
                30 * MIN,
                2 * HOUR,
                5 * HOUR,
                10 * HOUR,
                14 * HOUR,
                20 * HOUR,
                24 * HOUR,
            ]
            .into_iter()
            .map(Duration::from_secs)
            .collect(),
            jitter: 0.2,
            overload_floor: MIN_BACKOFF_AFTER_OVERLOAD,
        }
    }
}

impl RetrySchedule {
    /// Parses one delay with a unit (`250ms`, `5s`, `5m`, `2h`, `1d`; a bare number is
    /// seconds).
    ///
    /// # Errors
    ///
    /// A message naming the text that is not a delay.
    pub fn parse_delay(raw: &str) -> Result<Duration, String> {
        parse_delay(raw.trim()).ok_or_else(|| format!("not a delay: {raw:?}"))
    }

    /// Parses a comma-separated list of delays with units (`0s, 5s, 5m, 30m, 2h, 1d`; a bare
    /// number is seconds, `ms` milliseconds).
    ///
    /// # Errors
    ///
    /// A message naming the entry that is not a delay, or saying the list is empty.
    pub fn parse_delays(raw: &str) -> Result<Vec<Duration>, String> {
        let delays = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|entry| parse_delay(entry).ok_or_else(|| format!("not a delay: {entry:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() {
            return Err("at least one delay is needed".to_owned());
        }
        Ok(delays)
    }

    /// How many attempts a delivery gets.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX)
    }
}

fn parse_delay(entry: &str) -> Option<Duration> {
    let split = entry
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(entry.len());
    let (number, unit) = entry.split_at(split);
    let n: u64 = number.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => return Some(Duration::from_millis(n)),
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The CRM answered with this HTTP status.
    Answered {
        /// The status code.
        status: u16,
        /// Its `Retry-After`, in seconds, when it sent one.
        retry_after: Option<Duration>,
    },
    /// No answer in time.
    Timeout,
    /// The connection failed (refused, reset, DNS, TLS).
    Unreachable,
    /// The URL may not be called (a private address that is not allowed).
    Refused,
}

impl AttemptOutcome {
    /// The short name stored with the attempt and used as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Answered { status, .. } if (200..300).contains(status) => "delivered",
            Self::Answered { status: 410, .. } => "gone",
            Self::Answered { status: 429, .. } => "throttled",
            Self::Answered { .. } => "http_error",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::Refused => "refused",
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// Done: the CRM accepted it.
    Delivered,
    /// Try again after this long.
    RetryAfter(Duration),
    /// Give up on this delivery; it stays for inspection and replay.
    DeadLetter,
    /// The CRM said the endpoint is gone (410): stop sending to it, and dead-letter this one.
    DisableEndpoint,
}

/// What follows attempt number `attempt` (1 for the first) that ended with `outcome`.
///
/// `jitter_draw` is a value in `[0, 1)` the caller draws; it moves the scheduled delay within
/// +-`schedule.jitter`. A timeout, a 429 or an unreachable CRM waits at least
/// the schedule's `overload_floor`. A `Retry-After` is honoured within `[d, 2d]` of the
/// scheduled delay `d`: a CRM may slow us down, but not stall a delivery for days, nor make us
/// retry sooner than planned.
pub fn next_step(
    schedule: &RetrySchedule,
    attempt: u32,
    outcome: &AttemptOutcome,
    jitter_draw: f64,
) -> NextStep {
    match outcome {
        AttemptOutcome::Answered { status, .. } if (200..300).contains(status) => {
            return NextStep::Delivered;
        }
        AttemptOutcome::Answered { status: 410, .. } => return NextStep::DisableEndpoint,
        _ => {}
    }
    let Some(&scheduled) = usize::try_from(attempt)
        .ok()
        .and_then(|a| schedule.delays.get(a))
    else {
        return NextStep::DeadLetter;
    };
    let draw = jitter_draw.clamp(0.0, 1.0);
    let factor = 1.0 + schedule.jitter.clamp(0.0, 1.0) * (2.0 * draw - 1.0);
    let mut delay = scheduled.mul_f64(factor);
    match outcome {
        AttemptOutcome::Timeout | AttemptOutcome::Unreachable => {
            delay = delay.max(schedule.overload_floor);
        }
        AttemptOutcome::Answered {
            status,
            retry_after,
        } => {
            if *status == 429 {
                delay = delay.max(schedule.overload_floor);
            }
            if let Some(asked) = retry_after {
                delay = (*asked).clamp(delay, delay.saturating_mul(2));
            }
        }
        AttemptOutcome::Refused => {}
    }
    NextStep::RetryAfter(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn answered(status: u16) -> AttemptOutcome {
        AttemptOutcome::Answered {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn the_default_schedule_is_svix_s() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.attempts(), 10);
        // Without jitter (draw 0.5), the delay after attempt n is the schedule's n-th entry.
        let expected = [5, 300, 1800, 7200, 18_000, 36_000, 50_400, 72_000, 86_400];
        for (attempt, want) in (1..).zip(expected) {
            assert_eq!(
                next_step(&schedule, attempt, &answered(500), 0.5),
                NextStep::RetryAfter(secs(want)),
                "after attempt {attempt}"
            );
        }
        assert_eq!(
            next_step(&schedule, 10, &answered(500), 0.5),
            NextStep::DeadLetter
        );
    }

    #[test]
    fn jitter_moves_the_delay_by_at_most_a_fifth() {
        let schedule = RetrySchedule::default();
        let at = |draw| match next_step(&schedule, 3, &answered(503), draw) {
            NextStep::RetryAfter(d) => d,
            other => panic!("{other:?}"),
        };
        assert_eq!(at(0.0), secs(1440));
        assert_eq!(at(1.0), secs(2160));
        assert!(at(0.3) > at(0.0) && at(0.3) < at(0.5));
        // Out-of-range draws are clamped, never negative.
        assert_eq!(at(-5.0), secs(1440));
    }

    #[test]
    fn success_and_gone_end_the_delivery_whatever_the_attempt() {
        let schedule = RetrySchedule::default();
        for status in [200, 201, 204, 299] {
            assert_eq!(
                next_step(&schedule, 10, &answered(status), 0.5),
                NextStep::Delivered
            );
        }
        assert_eq!(
            next_step(&schedule, 1, &answered(410), 0.5),
            NextStep::DisableEndpoint
        );
    }

    #[test]
    fn every_other_answer_retries() {
        let schedule = RetrySchedule::default();
        for status in [100, 301, 302, 400, 401, 404, 409, 422, 500, 502, 503] {
            assert_eq!(
                next_step(&schedule, 1, &answered(status), 0.5),
                NextStep::RetryAfter(secs(5)),
                "{status}"
            );
        }
    }

    #[test]
    fn overload_waits_at_least_a_minute() {
        let schedule = RetrySchedule::default();
        for outcome in [
            AttemptOutcome::Timeout,
            AttemptOutcome::Unreachable,
            answered(429),
        ] {
            assert_eq!(
                next_step(&schedule, 1, &outcome, 0.5),
                NextStep::RetryAfter(MIN_BACKOFF_AFTER_OVERLOAD),
                "{outcome:?}"
            );
            // Later delays are already longer and stay as scheduled.
            assert_eq!(
                next_step(&schedule, 2, &outcome, 0.5),
                NextStep::RetryAfter(secs(300))
            );
        }
        assert_eq!(
            next_step(&schedule, 1, &AttemptOutcome::Refused, 0.5),
            NextStep::RetryAfter(secs(5))
        );
    }

    #[test]
    fn retry_after_is_honoured_between_the_delay_and_twice_it() {
        let schedule = RetrySchedule::default();
        let with = |asked: u64| {
            next_step(
                &schedule,
                2,
                &AttemptOutcome::Answered {
                    status: 503,
                    retry_after: Some(secs(asked)),
                },
                0.5,
            )
        };
        assert_eq!(with(450), NextStep::RetryAfter(secs(450)));
        assert_eq!(with(10), NextStep::RetryAfter(secs(300)));
        assert_eq!(with(86_400), NextStep::RetryAfter(secs(600)));
    }

    #[test]
    fn outcome_kinds_name_the_class() {
        assert_eq!(answered(204).kind(), "delivered");
        assert_eq!(answered(410).kind(), "gone");
        assert_eq!(answered(429).kind(), "throttled");
        assert_eq!(answered(500).kind(), "http_error");
        assert_eq!(AttemptOutcome::Timeout.kind(), "timeout");
    }

    #[test]
    fn delays_parse_with_units() {
        assert_eq!(
            RetrySchedule::parse_delays("0, 5s, 5m,2h, 1d, 250ms, 7"),
            Ok(vec![
                secs(0),
                secs(5),
                secs(300),
                secs(7200),
                secs(86_400),
                Duration::from_millis(250),
                secs(7)
            ])
        );
        assert!(RetrySchedule::parse_delays("5s, soon").is_err());
        assert!(RetrySchedule::parse_delays(" , ").is_err());
        assert!(RetrySchedule::parse_delays("5x").is_err());
        assert!(RetrySchedule::parse_delays("99999999999999999999d").is_err());
    }
}
