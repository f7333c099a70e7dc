//! insta-router, the binary: configuration, wiring, command line and graceful shutdown.
//!
//! `main.rs` only calls [`cli::run`]. This is the one crate that reads configuration and
//! environment variables and knows every other crate.

pub mod backup;
pub mod cli;
pub mod doctor;
pub mod encryption;
pub mod journal;
pub mod keys;
pub mod prune;
pub mod seed;
pub mod settings;
mod shutdown;
pub mod simulate;
pub mod startup;
pub mod telemetry;
pub mod wiring;

pub use settings::Settings;
pub use startup::Application;
