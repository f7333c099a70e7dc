//! CRM adapter of insta-router: how deliveries to a CRM are signed and sent.
//!
//! Each attempt carries the Standard Webhooks v1 headers (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`, signed at send time) and the original service's
//! `X-Hub-Signature-256`, over the body exactly as stored.

mod sender;
mod signing;

pub use sender::{BuildError, HttpCrmSender, SenderSettings, is_private};
pub use signing::{hub_signature, standard_webhooks_signature};
