//! Analytics for the API and the console: message volumes per bucket, computed from the
//! stored rows, for one account or all.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use insta_router_domain::{AccountId, Direction, OutboundStatus, TimeRange};
use insta_router_ports::{AccountRepository, AnalyticsStore, RESPONSE_BOUNDS_SECONDS, RepoError};

/// Why analytics could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// No account has that id.
    #[error("account {0} not found")]
    AccountNotFound(AccountId),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] RepoError),
}

/// One bucket of message volumes: counts by kind, inbound and outbound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeBucket {
    /// Its start.
    pub start: DateTime<Utc>,
    /// Customers' messages by kind.
    pub inbound: BTreeMap<String, u64>,
    /// The business's messages (sends, auto-replies, echoes of what it wrote) by kind.
    pub outbound: BTreeMap<String, u64>,
}

/// Message volumes over a range: every bucket (empty ones too), and totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageVolumes {
    /// The range, widened to whole buckets.
    pub range: TimeRange,
    /// Every bucket of the range, in order.
    pub buckets: Vec<VolumeBucket>,
    /// Customers' messages in all.
    pub inbound: u64,
    /// The business's messages in all.
    pub outbound: u64,
    /// Customers who wrote.
    pub unique_customers: u64,
    /// Conversations that began.
    pub new_conversations: u64,
    /// Comments received.
    pub comments: u64,
}

/// One bucket of sends, by where they stand now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendBucket {
    /// Its start (by when the sends were accepted).
    pub start: DateTime<Utc>,
    /// Sends by status (`pending`, `sent`, `failed`, `unknown`).
    pub by_status: BTreeMap<String, u64>,
}

/// Sends accepted over a range: every bucket, totals, and failures by code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendVolumes {
    /// The range, widened to whole buckets.
    pub range: TimeRange,
    /// Every bucket of the range, in order.
    pub buckets: Vec<SendBucket>,
    /// Sends accepted in all.
    pub accepted: u64,
    /// Sends by status, in all.
    pub by_status: BTreeMap<String, u64>,
    /// Failed and unknown sends by error code (Meta's, or ours: `outside_window`, ...).
    pub by_code: BTreeMap<String, u64>,
}

/// CRM deliveries of the events that arrived over a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySummary {
    /// The range, widened to whole buckets.
    pub range: TimeRange,
    /// Deliveries queued for the events.
    pub total: u64,
    /// Delivered.
    pub delivered: u64,
    /// Given up (dead letters).
    pub dead: u64,
    /// Still to deliver (queued or being retried).
    pub pending: u64,
    /// Delivered at the first attempt.
    pub first_attempt: u64,
    /// Arrival to delivery, in milliseconds: median and 99th percentile.
    pub latency_ms: Option<(u64, u64)>,
}

/// How fast turns were answered: percentiles and the shares answered within 5 minutes, an
/// hour and a day (of all turns, answered or not).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answering {
    /// Turns answered.
    pub answered: u64,
    /// Median time to answer, in seconds.
    pub p50_seconds: Option<f64>,
    /// 90th percentile, in seconds.
    pub p90_seconds: Option<f64>,
    /// Share of turns answered within 5 minutes, 1 hour, 24 hours.
    pub within: [f64; 3],
}

/// Response times over a range.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseTimes {
    /// The range, widened to whole buckets.
    pub range: TimeRange,
    /// Customer turns that began in it.
    pub turns: u64,
    /// Turns not answered (yet, or within a day after the range).
    pub unanswered: u64,
    /// Every answer.
    pub overall: Answering,
    /// By who answered: `human`, `api`, `auto_reply`.
    pub by_responder: BTreeMap<&'static str, Answering>,
}

/// Percentiles and shares of `seconds` (sorted), over `turns` turns in all.
/// The answers of a histogram (`within` seconds, `None` past the last bound, and how many),
/// against `turns` in all. A percentile is the bound of the bucket that holds its rank (an
/// upper estimate); the shares within 5 minutes, 1 hour and 24 hours are exact.
fn answering(histogram: &BTreeMap<Option<u64>, u64>, turns: u64) -> Answering {
    let answered: u64 = histogram.values().sum();
    let last = RESPONSE_BOUNDS_SECONDS[RESPONSE_BOUNDS_SECONDS.len() - 1];
    // Past the last bound sorts last.
    let ordered: Vec<(u64, u64)> = histogram
        .iter()
        .map(|(bound, n)| (bound.unwrap_or(u64::MAX), *n))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    #[allow(
        clippy::cast_precision_loss,
        reason = "seconds and shares shown to people"
    )]
    let at = |share: u64| {
        let rank = (answered * share).div_ceil(100).max(1);
        let mut seen = 0;
        ordered
            .iter()
            .find(|(_, n)| {
                seen += n;
                seen >= rank
            })
            .map(|(bound, _)| (*bound).min(last) as f64)
    };
    #[allow(clippy::cast_precision_loss, reason = "shares shown to people")]
    let share = |limit: u64| {
        if turns == 0 {
            0.0
        } else {
            ordered
                .iter()
                .filter(|(bound, _)| *bound <= limit)
                .map(|(_, n)| n)
                .sum::<u64>() as f64
                / turns as f64
        }
    };
    Answering {
        answered,
        p50_seconds: (answered > 0).then(|| at(50)).flatten(),
        p90_seconds: (answered > 0).then(|| at(90)).flatten(),
        within: [share(300), share(3_600), share(86_400)],
    }
}

/// Computes analytics.
pub struct AnalyticsService {
    store: Arc<dyn AnalyticsStore>,
    accounts: Arc<dyn AccountRepository>,
}

impl AnalyticsService {
    /// A service over these ports.
    pub fn new(store: Arc<dyn AnalyticsStore>, accounts: Arc<dyn AccountRepository>) -> Self {
        Self { store, accounts }
    }

    async fn check(&self, account: Option<&AccountId>) -> Result<(), AnalyticsError> {
        self.instagram_of(account).await.map(drop)
    }

    /// The Instagram id of `account` (rows of messages are keyed by it); `None` for every
    /// account.
    async fn instagram_of(
        &self,
        account: Option<&AccountId>,
    ) -> Result<Option<insta_router_domain::InstagramAccountId>, AnalyticsError> {
        let Some(id) = account else {
            return Ok(None);
        };
        let account = self
            .accounts
            .get(id)
            .await?
            .ok_or_else(|| AnalyticsError::AccountNotFound(id.clone()))?;
        Ok(Some(account.instagram_account_id))
    }

    /// Sends accepted in `range`, for `account` (every account when `None`), by where they
    /// stand now.
    ///
    /// # Errors
    ///
    /// [`AnalyticsError`].
    pub async fn sends(
        &self,
        account: Option<&AccountId>,
        range: TimeRange,
    ) -> Result<SendVolumes, AnalyticsError> {
        self.check(account).await?;
        let counts = self.store.send_counts(account.cloned(), &range).await?;
        let mut buckets: Vec<SendBucket> = range
            .starts()
            .into_iter()
            .map(|start| SendBucket {
                start,
                by_status: BTreeMap::new(),
            })
            .collect();
        let mut volumes = SendVolumes {
            range,
            buckets: Vec::new(),
            accepted: 0,
            by_status: BTreeMap::new(),
            by_code: BTreeMap::new(),
        };
        for count in counts {
            // As the status API names it: a send being handed to Meta is still `pending`.
            let status = OutboundStatus::parse(&count.status)
                .map_or(count.status.as_str(), |s| s.public_name())
                .to_owned();
            if let Some(bucket) = buckets.iter_mut().find(|b| b.start == count.bucket) {
                *bucket.by_status.entry(status.clone()).or_default() += count.sends;
            }
            volumes.accepted += count.sends;
            *volumes.by_status.entry(status.clone()).or_default() += count.sends;
            // A send reconciled from `unknown` to `sent` keeps its old note; only sends that
            // stand failed or unknown count by code.
            if let Some(code) = count
                .code
                .filter(|_| matches!(status.as_str(), "failed" | "unknown"))
            {
                *volumes.by_code.entry(code).or_default() += count.sends;
            }
        }
        volumes.buckets = buckets;
        Ok(volumes)
    }

    /// CRM deliveries of the events that arrived in `range`, for `account` (every account
    /// when `None`). Delivered deliveries are pruned after `RETENTION_DELIVERIES` (30 days).
    ///
    /// # Errors
    ///
    /// [`AnalyticsError`].
    pub async fn deliveries(
        &self,
        account: Option<&AccountId>,
        range: TimeRange,
    ) -> Result<DeliverySummary, AnalyticsError> {
        self.check(account).await?;
        let stats = self.store.delivery_stats(account.cloned(), &range).await?;
        let count = |wanted: &[&str]| {
            stats
                .by_status
                .iter()
                .filter(|(status, _)| wanted.contains(&status.as_str()))
                .map(|(_, n)| n)
                .sum::<u64>()
        };
        Ok(DeliverySummary {
            range,
            total: count(&["queued", "running", "done", "dead"]),
            delivered: count(&["done"]),
            dead: count(&["dead"]),
            pending: count(&["queued", "running"]),
            first_attempt: stats.first_attempt,
            latency_ms: stats.latency_ms,
        })
    }

    /// How fast customers' turns that began in `range` were answered, and by whom, for
    /// `account` (every account when `None`).
    ///
    /// # Errors
    ///
    /// [`AnalyticsError`].
    pub async fn response_times(
        &self,
        account: Option<&AccountId>,
        range: TimeRange,
    ) -> Result<ResponseTimes, AnalyticsError> {
        let instagram = self.instagram_of(account).await?;
        let buckets = self.store.turn_buckets(instagram, &range).await?;
        let total: u64 = buckets.iter().map(|b| b.turns).sum();
        let mut all: BTreeMap<Option<u64>, u64> = BTreeMap::new();
        let mut by: BTreeMap<&'static str, BTreeMap<Option<u64>, u64>> = BTreeMap::new();
        for bucket in &buckets {
            if let Some(who) = bucket.responder {
                *all.entry(bucket.within_seconds).or_default() += bucket.turns;
                *by.entry(who.as_str())
                    .or_default()
                    .entry(bucket.within_seconds)
                    .or_default() += bucket.turns;
            }
        }
        let overall = answering(&all, total);
        let by_responder = by
            .into_iter()
            .map(|(who, histogram)| (who, answering(&histogram, total)))
            .collect();
        Ok(ResponseTimes {
            range,
            turns: total,
            unanswered: total - overall.answered,
            overall,
            by_responder,
        })
    }

    /// The auto-replies each rule made in `range`, by status, for `account` (every account
    /// when `None`).
    ///
    /// # Errors
    ///
    /// [`AnalyticsError`].
    pub async fn rule_hits(
        &self,
        account: Option<&AccountId>,
        range: &TimeRange,
    ) -> Result<Vec<insta_router_ports::RuleHits>, AnalyticsError> {
        self.check(account).await?;
        Ok(self.store.rule_hits(account.cloned(), range).await?)
    }

    /// How the evaluations of rules in `range` ended, by outcome, for `account` (every
    /// account when `None`).
    ///
    /// # Errors
    ///
    /// [`AnalyticsError`].
    pub async fn evaluations(
        &self,
        account: Option<&AccountId>,
        range: &TimeRange,
    ) -> Result<BTreeMap<String, u64>, AnalyticsError> {
        self.check(account).await?;
        Ok(self
            .store
            .evaluations(account.cloned(), range)
            .await?
            .into_iter()
            .collect())
    }

    /// Message volumes in `range`, for `account` (every account when `None`).
    ///
    /// # Errors
    ///
    /// [`AnalyticsError`].
    pub async fn messages(
        &self,
        account: Option<&AccountId>,
        range: TimeRange,
    ) -> Result<MessageVolumes, AnalyticsError> {
        let instagram = self.instagram_of(account).await?;
        let volume = self.store.message_volume(instagram, &range).await?;
        let mut buckets: Vec<VolumeBucket> = range
            .starts()
            .into_iter()
            .map(|start| VolumeBucket {
                start,
                inbound: BTreeMap::new(),
                outbound: BTreeMap::new(),
            })
            .collect();
        let (mut inbound, mut outbound) = (0, 0);
        for count in volume.counts {
            let Some(bucket) = buckets.iter_mut().find(|b| b.start == count.bucket) else {
                continue;
            };
            let (side, total) = match count.direction {
                Direction::Inbound => (&mut bucket.inbound, &mut inbound),
                Direction::Outbound => (&mut bucket.outbound, &mut outbound),
            };
            *side.entry(count.kind).or_default() += count.messages;
            *total += count.messages;
        }
        Ok(MessageVolumes {
            range,
            buckets,
            inbound,
            outbound,
            unique_customers: volume.unique_customers,
            new_conversations: volume.new_conversations,
            comments: volume.comments,
        })
    }
}
