//! Use cases of insta-router, written against its ports.
//!
//! Each use case is a small service holding the ports it needs as trait objects, so the HTTP
//! adapter and the workers can share one [`App`] and tests can pass mockall doubles.
//! This crate never names sea-orm, reqwest or actix.

mod accounts;
mod analytics;
mod auto_reply;
mod cipher;
mod crm_payload;
mod deliveries;
mod doctor;
mod gauges;
mod group;
mod inbox;
mod ingest;
mod keys;
mod readiness;
mod replay;
mod retention;
mod rollup;
mod rules;
mod sending;
mod system;
mod workers;

use std::sync::Arc;

use insta_router_ports::{HealthCheck, RepoError};

pub use accounts::profile::{ProfileError, ProfileService};
pub use accounts::subscription::{SUBSCRIBED_FIELDS, SubscriptionError, SubscriptionService};
pub use accounts::tokens::{RefreshReport, TokenRefresher};
pub use accounts::{AccountError, AccountService, DEFAULT_SECRET_GRACE, ResealReport};
pub use analytics::{
    AnalyticsError, AnalyticsService, Answering, DeliverySummary, MessageVolumes, ResponseTimes,
    SendBucket, SendVolumes, VolumeBucket,
};
pub use auto_reply::{AutoReplyPorts, AutoReplyService, AutoReplySettings};
pub use cipher::{KEY_LEN, Keyring};
pub use deliveries::{DeliveryDetail, DeliveryError, DeliveryService, DeliverySettings};
pub use doctor::{Doctor, Finding};
pub use gauges::publish_job_counts;
pub use inbox::{InboxError, InboxService};
pub use ingest::{
    IngestError, IngestPorts, IngestReport, IngestSettings, Ingestor, Origin, ReceivedWebhook,
    Refusal, refused_webhook,
};
pub use insta_router_ports::describe;
pub use keys::{ApiKeyService, AuthError, KeyError, NewKey, key_hash};
pub use readiness::{Readiness, ReadyReport, WorkerWatch};
pub use replay::{JournalReplayer, ReplayError, ReplayOutcome, ReplayPorts, ReplaySettings};
pub use retention::{RetentionPolicy, RetentionService};
pub use rollup::{AnalyticsRollup, RollupSettings};
pub use rules::{
    ConditionDocument, MAX_RULES_PER_ACCOUNT, QuickReplyDocument, ReplyDocument, RuleDocument,
    RuleError, RuleService, RuleView, TrialMessage, TrialOutcome,
};
pub use sending::{SendFailure, SendPorts, SendReceipt, SendService, SendSettings};
pub use system::{PlaintextCipher, SystemClock, new_id_bits};

/// Every use case, wired to its ports.
pub struct App {
    /// Managing connected accounts.
    pub accounts: AccountService,
    /// Accounts' webhook subscriptions at Meta.
    pub subscriptions: SubscriptionService,
    /// Accounts' ice breakers and persistent menu at Meta.
    pub profiles: ProfileService,
    /// Analytics over the stored rows.
    pub analytics: AnalyticsService,
    /// API keys: checking them on every request, making and revoking them.
    pub keys: ApiKeyService,
    /// Storing verified webhook requests.
    pub ingest: Arc<Ingestor>,
    /// Replaying the webhook requests whose events could not be stored at once.
    pub replayer: Arc<JournalReplayer>,
    /// Delivering events to CRMs, and the deliveries API.
    pub deliveries: Arc<DeliveryService>,
    /// Auto-reply rules.
    pub rules: Arc<RuleService>,
    /// Sending for CRMs.
    pub sending: Arc<SendService>,
    /// Conversations and history.
    pub inbox: InboxService,
    /// The database's health.
    pub health: Arc<dyn HealthCheck>,
    /// Whether this instance should get traffic.
    pub readiness: Arc<Readiness>,
}

impl App {
    /// Whether the database answers.
    ///
    /// # Errors
    ///
    /// The store's error when it does not.
    pub async fn check_health(&self) -> Result<(), RepoError> {
        self.health.ping().await
    }

    /// Whether this instance should get traffic; each database check within `timeout`.
    pub async fn check_ready(&self, timeout: std::time::Duration) -> ReadyReport {
        self.readiness.check(self.health.as_ref(), timeout).await
    }
}
