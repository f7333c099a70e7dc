//! Instagram adapter of insta-router: Meta's wire format.
//!
//! So far: verification of the `X-Hub-Signature-256` header Meta puts on every webhook.
//! Payload parsing and the Graph API client come with the inbound and sending features.

mod signature;

pub use signature::{SignatureError, verify_signature};
