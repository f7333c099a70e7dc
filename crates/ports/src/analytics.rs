//! Analytics computed from the stored rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::{AccountId, Direction, InstagramAccountId, TimeRange};

use crate::RepoError;

/// Messages of one kind and direction in one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeCount {
    /// The bucket's start.
    pub bucket: DateTime<Utc>,
    /// Inbound (customers) or outbound (the business: echoes, sends, auto-replies).
    pub direction: Direction,
    /// The message kind (`text`, `image`, `story_mention`, `postback`, ...).
    pub kind: String,
    /// How many.
    pub messages: u64,
}

/// Message volumes over a range, for one account or all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageVolume {
    /// Counts per bucket, direction and kind (buckets without messages are absent).
    pub counts: Vec<VolumeCount>,
    /// Customers who wrote in the range.
    pub unique_customers: u64,
    /// Conversations that began in the range.
    pub new_conversations: u64,
    /// Comments received in the range.
    pub comments: u64,
}

/// Sends accepted in one bucket with one status (and error code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendCount {
    /// The bucket's start (by when the send was accepted).
    pub bucket: DateTime<Utc>,
    /// `pending`, `sending`, `sent`, `failed` or `unknown`, as stored.
    pub status: String,
    /// The error code of a failed or unknown send (Meta's code, or ours).
    pub code: Option<String>,
    /// How many.
    pub sends: u64,
}

/// CRM deliveries of events that arrived in a range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Deliveries by job status (`queued`, `running`, `done`, `dead`).
    pub by_status: Vec<(String, u64)>,
    /// Deliveries done at the first attempt.
    pub first_attempt: u64,
    /// From the event's arrival to the CRM's accepting answer, in milliseconds: the median
    /// and the 99th percentile of delivered ones.
    pub latency_ms: Option<(u64, u64)>,
}

/// Who answered a customer's turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Responder {
    /// A person, in Instagram (an echo of what the business wrote there).
    Human,
    /// A send through the API (or a private reply).
    Api,
    /// An auto-reply rule.
    AutoReply,
}

impl Responder {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Api => "api",
            Self::AutoReply => "auto_reply",
        }
    }
}

/// Customer turns (a customer's messages after the business's last one) of one kind: answered
/// by whom and how soon, or unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnBucket {
    /// Who answered first; `None`: nobody yet.
    pub responder: Option<Responder>,
    /// Answered within this many seconds (and after the bound below it, in
    /// [`RESPONSE_BOUNDS_SECONDS`]); `None`: later than the last bound, or unanswered.
    pub within_seconds: Option<u64>,
    /// How many.
    pub turns: u64,
}

/// The bounds of the response-time histogram, in seconds: 5 minutes, 1 hour and 24 hours are
/// among them, so the shares answered within those are exact.
pub const RESPONSE_BOUNDS_SECONDS: [u64; 16] = [
    10, 30, 60, 120, 300, 600, 900, 1_800, 3_600, 7_200, 14_400, 28_800, 43_200, 86_400, 172_800,
    604_800,
];

/// The bounds of the delivery-latency histogram (arrival to delivery), in milliseconds.
pub const LATENCY_BOUNDS_MS: [u64; 20] = [
    50,
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    900_000,
    1_800_000,
    3_600_000,
    7_200_000,
    21_600_000,
    43_200_000,
    86_400_000,
    172_800_000,
    345_600_000,
];

/// What one pass of the rollup did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupReport {
    /// Hours rebuilt.
    pub hours: u64,
    /// Rows written.
    pub rows: u64,
    /// Another instance held the rollup's lease: nothing was done.
    pub busy: bool,
}

/// Auto-replies of one rule, by status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleHits {
    /// The rule.
    pub rule_id: String,
    /// Its name, when the rule still exists.
    pub name: Option<String>,
    /// Replies by status (`sent`, `queued`: a private reply handed to the send path,
    /// `failed`, `unknown`, `pending`).
    pub by_status: Vec<(String, u64)>,
}

/// Reads analytics from the stored rows.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AnalyticsStore: Send + Sync {
    /// Message volumes in `range`, for `account` (all accounts when `None`).
    ///
    /// # Errors
    ///
    /// [`RepoError`] when the store fails.
    async fn message_volume(
        &self,
        account: Option<InstagramAccountId>,
        range: &TimeRange,
    ) -> Result<MessageVolume, RepoError>;

    /// Sends (API sends and private replies) accepted in `range`, by bucket, status and error
    /// code, for `account` (all accounts when `None`).
    ///
    /// # Errors
    ///
    /// [`RepoError`] when the store fails.
    async fn send_counts(
        &self,
        account: Option<AccountId>,
        range: &TimeRange,
    ) -> Result<Vec<SendCount>, RepoError>;

    /// CRM deliveries of the events that arrived in `range`, for `account` (all accounts when
    /// `None`).
    ///
    /// # Errors
    ///
    /// [`RepoError`] when the store fails.
    async fn delivery_stats(
        &self,
        account: Option<AccountId>,
        range: &TimeRange,
    ) -> Result<DeliveryStats, RepoError>;

    /// The customer turns that began in `range` (answers up to a day later count), for
    /// `account` (all accounts when `None`).
    ///
    /// # Errors
    ///
    /// [`RepoError`] when the store fails.
    async fn turn_buckets(
        &self,
        account: Option<InstagramAccountId>,
        range: &TimeRange,
    ) -> Result<Vec<TurnBucket>, RepoError>;

    /// Rebuilds the hourly rollup: every hour since the last pass, and the `recent_hours`
    /// before `now`'s hour (which may still change: late messages, retried deliveries,
    /// settled sends); the first pass takes every hour that has rows. Only one instance at a
    /// time does it; the others report `busy`.
    async fn refresh_rollup(
        &self,
        now: DateTime<Utc>,
        recent_hours: u32,
    ) -> Result<RollupReport, RepoError>;

    /// The auto-replies rules made in `range`, by rule and status, for `account` (all
    /// accounts when `None`).
    ///
    /// # Errors
    ///
    /// [`RepoError`] when the store fails.
    async fn rule_hits(
        &self,
        account: Option<AccountId>,
        range: &TimeRange,
    ) -> Result<Vec<RuleHits>, RepoError>;

    /// How the evaluations of rules in `range` ended (`fired`, `no_rule_matched`, or the
    /// safety limit's code), by outcome, for `account` (all accounts when `None`). Counted by
    /// the hour.
    ///
    /// # Errors
    ///
    /// [`RepoError`] when the store fails.
    async fn evaluations(
        &self,
        account: Option<AccountId>,
        range: &TimeRange,
    ) -> Result<Vec<(String, u64)>, RepoError>;
}
