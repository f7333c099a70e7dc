//! `insta-router prune [--dry-run]`: one retention pass now, or what it would delete.

use std::process::ExitCode;

use anyhow::Context;

use crate::Settings;
use crate::wiring::{open_database, prepare_schema, retention};

/// Runs `prune`.
///
/// # Errors
///
/// When the database cannot be opened or a delete fails.
#[allow(clippy::print_stdout)]
pub async fn run(dry_run: bool, settings: &Settings) -> anyhow::Result<ExitCode> {
    let db = open_database(settings).await?;
    prepare_schema(&db, settings).await?;
    let retention = retention(&db, settings);
    if dry_run {
        let preview = retention
            .preview()
            .await
            .context("cannot count the old rows")?;
        for (what, count) in preview {
            match count {
                Some(n) => println!("{:<22} {n} would be deleted", what.as_str()),
                None => println!("{:<22} kept for ever", what.as_str()),
            }
        }
    } else {
        let pruned = retention
            .prune()
            .await
            .context("cannot delete the old rows")?;
        for (what, n) in pruned {
            println!("{:<22} {n} deleted", what.as_str());
        }
    }
    let _ = db.close().await;
    Ok(ExitCode::SUCCESS)
}
