//! Instagram adapter of insta-router: Meta's wire format.
//!
//! - [`verify_signature`]: the `X-Hub-Signature-256` header Meta puts on every webhook,
//!   checked in constant time over the raw body before anything parses it;
//! - [`parse_notification`]: a verified body into domain events, every item on its own, never
//!   panicking and never dropping what it does not understand.
//!
//! - [`GraphClient`]: profile lookups and the Send API, Meta's errors classified for
//!   retrying.

mod comments;
#[cfg(feature = "graph")]
mod graph;
#[cfg(feature = "graph")]
mod profile;
mod raw;
mod signature;
mod webhook;

#[cfg(feature = "graph")]
pub use graph::{ClientError, GraphClient};
pub use signature::{SignatureError, WebhookVerifier, sign_body, verify_signature};
pub use webhook::{MetaNotifications, Notification, PayloadError, parse_notification};
