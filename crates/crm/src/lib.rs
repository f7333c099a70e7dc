//! CRM adapter of insta-router: how deliveries to a CRM are signed.
//!
//! So far: the Standard Webhooks v1 signature and the original service's
//! `X-Hub-Signature-256`. The HTTP sender and retry handling come with CRM forwarding.

mod signing;

pub use signing::{hub_signature, standard_webhooks_signature};
