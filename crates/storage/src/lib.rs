//! Storage adapter of insta-router: the store ports on sea-orm, for SQLite, PostgreSQL and
//! MySQL/MariaDB, chosen by the database URL.
//!
//! sea-orm types stay inside this crate: entities are private, errors become
//! [`RepoError`](insta_router_ports::RepoError), rows become domain values.

mod accounts;
mod analytics;
mod auto_replies;
mod backend;
mod backup;
mod checkpoint;
mod comments;
mod compact;
mod connect;
mod conversations;
mod deliveries;
mod diagnose;
mod entity;
mod error;
mod inbound;
mod jobs;
mod journal;
mod keys;
mod messages;
mod migrate;
mod nodelay;
mod outbound;
mod page;
mod retention;
mod rollup;
mod rules;
mod spool;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;
mod time;
mod url;
mod vacuum;

pub use accounts::SeaAccountRepository;
pub use analytics::SeaAnalyticsStore;
pub use auto_replies::SeaAutoReplyStore;
pub use backend::Backend;
pub use backup::{BackupError, BackupReport, backup_sqlite};
pub use comments::SeaCommentStore;
pub use connect::{Database, DbOptions};
pub use conversations::SeaConversationRepository;
pub use deliveries::{MAX_RESPONSE_BODY, SeaDeliveryStore};
pub use error::StorageError;
pub use inbound::SeaInboundStore;
pub use jobs::SeaJobQueue;
pub use journal::SeaWebhookJournal;
pub use keys::SeaApiKeyStore;
pub use messages::SeaMessageRepository;
pub use migrate::SchemaState;
pub use outbound::SeaOutboundStore;
pub use retention::SeaRetentionStore;
pub use rules::SeaRuleRepository;
pub use spool::DirSpool;
pub use url::DatabaseUrl;
