//! Black-box tests: the real `insta-router` binary, over HTTP. See `tests/lib.rs`.

// A test binary: helpers panic on unexpected results, like the tests they serve.
#![allow(clippy::unwrap_used)]

mod accounts;
mod analytics;
mod auto_reply;
mod comments;
mod console;
mod contract;
mod deliveries;
mod docs;
mod edges;
mod encryption;
mod hygiene;
mod keys;
mod lifecycle;
mod operations;
mod outages;
mod profile;
mod rules;
mod sending;
mod subscriptions;
mod system;
mod tokens;
mod webhooks;
