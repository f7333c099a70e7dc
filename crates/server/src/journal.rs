//! `insta-router journal list | replay`: the webhooks whose events could not be stored when
//! they arrived, seen and replayed by an operator.

use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgGroup, Subcommand};
use insta_router_app::ReplayOutcome;
use insta_router_domain::WebhookId;
use insta_router_ports::{JournalStatus, JournalSummary};

use crate::Settings;
use crate::wiring::{ingest, open_database, open_spool};

/// What to do with the journal.
#[derive(Debug, Subcommand)]
pub enum JournalAction {
    /// List journaled webhooks, newest first.
    List {
        /// Only those with this status: accepted, unusable, failed (awaiting replay) or
        /// spooled (in this instance's spool, waiting for the database).
        #[arg(long, value_parser = parse_status)]
        status: Option<JournalStatus>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Store the events of a failed or spooled webhook now, whatever its replay schedule.
    #[command(group(ArgGroup::new("which").required(true).args(["id", "all"])))]
    Replay {
        /// The webhook's id (`whk_...`), as `journal list` shows it.
        id: Option<String>,
        /// Every failed and spooled webhook, oldest first.
        #[arg(long)]
        all: bool,
    },
}

fn parse_status(raw: &str) -> Result<JournalStatus, String> {
    JournalStatus::parse(raw)
        .ok_or_else(|| "expected accepted, unusable, failed or spooled".to_owned())
}

/// Runs a journal command; a replay that fails makes the exit status 1.
///
/// # Errors
///
/// When the database or the spool cannot be opened or read.
pub async fn run(action: JournalAction, settings: &Settings) -> anyhow::Result<ExitCode> {
    let spool = open_spool(settings, false)?;
    let db = open_database(settings).await?;
    let (ingest, replayer) = ingest(&db, spool, settings, 1);
    let outcome = match action {
        JournalAction::List {
            status,
            limit,
            json,
        } => {
            let listed = replayer
                .list(status, limit)
                .await
                .context("cannot read the journal")?;
            print_list(&listed, json);
            Ok(ExitCode::SUCCESS)
        }
        JournalAction::Replay { id, all } => {
            let outcomes = if all {
                replayer.replay_all().await?
            } else {
                let raw = id.unwrap_or_default();
                let id = WebhookId::parse("id", &raw)
                    .map_err(|e| anyhow::anyhow!("{raw:?} is not a webhook id: {e}"))?;
                vec![(id.clone(), replayer.replay_now(&id).await?)]
            };
            Ok(print_outcomes(&outcomes))
        }
    };
    ingest.shutdown().await;
    let _ = db.close().await;
    outcome
}

#[allow(clippy::print_stdout)]
fn print_list(listed: &[JournalSummary], json: bool) {
    for entry in listed {
        let next = entry
            .replay
            .as_ref()
            .map(|r| r.next_at.to_rfc3339())
            .unwrap_or_default();
        let attempts = entry.replay.as_ref().map_or(0, |r| r.attempts);
        let error = entry.error.as_deref().unwrap_or_default();
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "id": entry.id.as_str(),
                    "received_at": entry.received_at.to_rfc3339(),
                    "status": entry.status.as_str(),
                    "events": entry.events,
                    "bytes": entry.bytes,
                    "replays": attempts,
                    "next_replay_at": entry.replay.as_ref().map(|r| r.next_at.to_rfc3339()),
                    "error": entry.error,
                })
            );
        } else {
            println!(
                "{}  {}  {:<8}  events={}  bytes={}  replays={attempts}  next={next}  {error}",
                entry.id,
                entry.received_at.to_rfc3339(),
                entry.status.as_str(),
                entry.events,
                entry.bytes,
            );
        }
    }
}

#[allow(clippy::print_stdout)]
fn print_outcomes(outcomes: &[(WebhookId, ReplayOutcome)]) -> ExitCode {
    let mut failed = 0;
    for (id, outcome) in outcomes {
        match outcome {
            ReplayOutcome::Stored { processed } => {
                println!("{id} stored ({processed} new events)");
            }
            ReplayOutcome::AlreadyStored => println!("{id} already stored"),
            ReplayOutcome::Failed(reason) => {
                failed += 1;
                println!("{id} failed: {reason}");
            }
        }
    }
    println!(
        "{} replayed, {failed} failed",
        outcomes.len().saturating_sub(failed)
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
