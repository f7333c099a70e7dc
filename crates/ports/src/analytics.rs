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

/// One customer turn: when the customer first wrote after the business's last message, and
/// when and by whom it was answered (if it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// The customer's first message of the turn.
    pub asked: DateTime<Utc>,
    /// The business's first message after it, and who wrote it.
    pub answered: Option<(DateTime<Utc>, Responder)>,
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
    async fn turns(
        &self,
        account: Option<InstagramAccountId>,
        range: &TimeRange,
    ) -> Result<Vec<Turn>, RepoError>;

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
