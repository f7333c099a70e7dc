//! Ports of insta-router: what the core needs from the outside world, as async traits.
//!
//! Adapters implement these traits (`insta-router-storage` for the stores); the use cases in
//! `insta-router-app` call them. Signatures mention only domain types and the errors of this
//! crate, never a sea-orm, reqwest or actix type.
//!
//! With the `mocks` feature every trait has a mockall double (`MockAccountRepository`, ...).

mod analytics;
mod comments;
mod delivery;
mod error;
mod inbound;
mod keys;
mod messenger;
mod outbound;
mod page;
mod profile;
mod retention;
mod rules;
mod signature;
mod store;
mod system;

#[cfg(any(test, feature = "mocks"))]
pub use analytics::MockAnalyticsStore;
pub use analytics::{
    AnalyticsStore, DeliveryStats, LATENCY_BOUNDS_MS, MessageVolume, RESPONSE_BOUNDS_SECONDS,
    Responder, RollupReport, RuleHits, SendCount, TurnBucket, VolumeCount,
};
#[cfg(any(test, feature = "mocks"))]
pub use comments::MockCommentStore;
pub use comments::{CommentEvent, CommentStore, StoredComment};
pub use delivery::{
    AttemptRecord, CrmRequest, CrmResponse, CrmSender, DeliveryAttempt, DeliveryFilter,
    DeliveryResolution, DeliveryStore, RetryNow,
};
#[cfg(any(test, feature = "mocks"))]
pub use delivery::{MockCrmSender, MockDeliveryStore};
pub use error::{BoxError, CipherError, RepoError, describe};
pub use inbound::{
    BatchOutcome, Deletion, EventRecord, InboundBatch, InboundStore, JobQueue, JournalEntry,
    JournalStatus, JournalSummary, NotificationParser, ReplayState, WebhookJournal, WebhookSpool,
};
#[cfg(any(test, feature = "mocks"))]
pub use inbound::{
    MockInboundStore, MockJobQueue, MockNotificationParser, MockWebhookJournal, MockWebhookSpool,
};
pub use keys::ApiKeyStore;
#[cfg(any(test, feature = "mocks"))]
pub use keys::MockApiKeyStore;
#[cfg(any(test, feature = "mocks"))]
pub use messenger::MockMessenger;
pub use messenger::{GraphError, Messenger, Profile, RefreshedToken, TokenOwner};
pub use outbound::{Accepted, ConversationSummary, Inbox, OutboundStore, Settlement};
#[cfg(any(test, feature = "mocks"))]
pub use outbound::{MockInbox, MockOutboundStore};
pub use page::{Page, PageRequest};
#[cfg(any(test, feature = "mocks"))]
pub use profile::MockMessengerProfile;
pub use profile::{MessengerProfile, ProfileField};
#[cfg(any(test, feature = "mocks"))]
pub use retention::MockRetentionStore;
pub use retention::{Prunable, RetentionStore};
pub use rules::{AutoReplyStore, ReplyClaim, RuleRepository, StoredRule};
#[cfg(any(test, feature = "mocks"))]
pub use rules::{MockAutoReplyStore, MockRuleRepository};
#[cfg(any(test, feature = "mocks"))]
pub use signature::MockWebhookSignatures;
pub use signature::{SignatureError, WebhookSignatures};
pub use store::{AccountRepository, ConversationRepository, HealthCheck, MessageRepository};
#[cfg(any(test, feature = "mocks"))]
pub use store::{
    MockAccountRepository, MockConversationRepository, MockHealthCheck, MockMessageRepository,
};
pub use system::{Clock, CredentialCipher};
#[cfg(any(test, feature = "mocks"))]
pub use system::{MockClock, MockCredentialCipher};
