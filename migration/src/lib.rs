//! Schema migrations of insta-router, one file per change, each with a working `down`.
//!
//! The same migrations run on SQLite, PostgreSQL and MySQL/MariaDB. Conventions:
//! - times are `BIGINT` microseconds since the Unix epoch (UTC): exact and identical on every
//!   backend, where the databases' own date types differ in precision and range;
//! - ids are `VARCHAR`: ours are prefixed strings, Meta's are kept verbatim.

// `MigrationTrait` declares `&SchemaManager` with an elided lifetime; writing `<'_>` in the
// impls does not match it, so the 2018-idioms lint is relaxed for this crate only.
#![allow(elided_lifetimes_in_paths)]

pub use sea_orm_migration::MigratorTrait;
pub use sea_orm_migration::prelude::*;

mod m20260101_000001_create_accounts;
mod m20260101_000002_create_messages;
mod m20260101_000003_create_outbound_messages;
mod m20260101_000004_create_conversations;
mod m20260201_000005_create_inbound;
mod m20261127_000006_deliveries;
mod m20261127_000007_rules;
mod m20261128_000008_sending;
mod m20261130_000009_webhook_replay;
mod m20261130_000010_api_keys;
mod m20261201_000011_private_replies;
mod m20261201_000012_token_life;
mod m20261201_000013_rule_evaluations;
mod m20261202_000014_analytics_indexes;
mod m20261202_000015_analytics_rollup;
mod m20261202_000016_lean_indexes;

/// Every migration, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20260101_000001_create_accounts::Migration),
            Box::new(m20260101_000002_create_messages::Migration),
            Box::new(m20260101_000003_create_outbound_messages::Migration),
            Box::new(m20260101_000004_create_conversations::Migration),
            Box::new(m20260201_000005_create_inbound::Migration),
            Box::new(m20261127_000006_deliveries::Migration),
            Box::new(m20261127_000007_rules::Migration),
            Box::new(m20261128_000008_sending::Migration),
            Box::new(m20261130_000009_webhook_replay::Migration),
            Box::new(m20261130_000010_api_keys::Migration),
            Box::new(m20261201_000011_private_replies::Migration),
            Box::new(m20261201_000012_token_life::Migration),
            Box::new(m20261201_000013_rule_evaluations::Migration),
            Box::new(m20261202_000014_analytics_indexes::Migration),
            Box::new(m20261202_000015_analytics_rollup::Migration),
            Box::new(m20261202_000016_lean_indexes::Migration),
        ]
    }
}

/// Length of our own ids' columns.
pub(crate) const ID_LEN: u32 = 64;
/// Length of Meta's ids' columns.
pub(crate) const META_ID_LEN: u32 = 255;
