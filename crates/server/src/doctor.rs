//! `insta-router doctor`: checks the configuration, the database and its schema, each
//! account's token and each CRM URL, one line per check with what to fix; exit status 0 when
//! every check passes, 1 otherwise.

use std::process::ExitCode;
use std::sync::Arc;

use insta_router_app::{Doctor, Finding};
use insta_router_storage::Database;

use crate::Settings;
use crate::wiring::open_database;

/// Runs `doctor`: prints every finding, then a summary.
///
/// # Errors
///
/// Never for a failed check (that is a finding); only when the output cannot be written.
#[allow(clippy::print_stdout)]
pub async fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    let findings = examine(settings).await;
    let failed = findings.iter().filter(|f| !f.ok).count();
    for finding in &findings {
        println!(
            "{} {}: {}",
            if finding.ok { "ok  " } else { "FAIL" },
            finding.check,
            finding.detail
        );
    }
    if failed == 0 {
        println!("all {} checks passed", findings.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{failed} of {} checks failed", findings.len());
        Ok(ExitCode::FAILURE)
    }
}

async fn examine(settings: &Settings) -> Vec<Finding> {
    let mut findings = configuration(settings);
    let db = match open_database(settings).await {
        Ok(db) => db,
        Err(err) => {
            findings.push(Finding::fail(
                "database",
                crate::telemetry::root_cause(&err),
            ));
            return findings;
        }
    };
    findings.push(Finding::pass(
        "database",
        format!("{} answers", settings.database.url.redacted()),
    ));
    let (schema, current) = schema(&db, settings).await;
    let schema_ok = schema.ok;
    findings.push(schema);
    if current {
        findings.extend(accounts(&db, settings).await);
    } else {
        // Their table may not exist yet; a fresh database has none anyway.
        findings.push(Finding {
            check: "accounts".to_owned(),
            ok: schema_ok,
            detail: "not checked until the schema is migrated".to_owned(),
        });
    }
    let _ = db.close().await;
    findings
}

fn configuration(settings: &Settings) -> Vec<Finding> {
    let missing = settings.missing_for_meta();
    if missing.is_empty() {
        return vec![Finding::pass(
            "configuration",
            format!(
                "settings valid ({} environment); Meta's verify token and app secret set",
                settings.service.environment
            ),
        )];
    }
    missing
        .into_iter()
        .map(|problem| Finding::fail("configuration", problem))
        .collect()
}

/// The schema's finding, and whether it is this release's (so the accounts can be read).
async fn schema(db: &Database, settings: &Settings) -> (Finding, bool) {
    let state = match db.schema_state().await {
        Ok(state) => state,
        Err(err) => {
            let detail = format!("cannot read the migration state: {err}");
            return (Finding::fail("schema", detail), false);
        }
    };
    if !state.unknown.is_empty() {
        let detail = insta_router_storage::StorageError::SchemaNewer(state.unknown).to_string();
        return (Finding::fail("schema", detail), false);
    }
    let finding = match (state.pending.len(), settings.database.auto_migrate) {
        (0, _) => Finding::pass("schema", "every migration applied"),
        (n, true) => Finding::pass(
            "schema",
            format!("{n} migrations pending; serve applies them at start (AUTO_MIGRATE)"),
        ),
        (n, false) => Finding::fail(
            "schema",
            format!(
                "{n} migrations pending and AUTO_MIGRATE is off; run `insta-router migrate up`"
            ),
        ),
    };
    (finding, state.pending.is_empty())
}

/// Each account's token and CRM URL, with the server's own clients (the same timeouts,
/// address rules and TLS as its sends and deliveries).
async fn accounts(db: &Database, settings: &Settings) -> Vec<Finding> {
    let keyring = match crate::encryption::keyring(settings) {
        Ok(keyring) => keyring,
        Err(err) => return vec![Finding::fail("encryption key", format!("{err:#}"))],
    };
    let clients = crate::wiring::graph_client(settings)
        .and_then(|graph| Ok((graph, crate::wiring::crm_sender(settings)?)));
    let (graph, crm) = match clients {
        Ok(clients) => clients,
        Err(err) => return vec![Finding::fail("HTTP clients", format!("{err:#}"))],
    };
    let doctor = Doctor::new(
        Arc::new(db.accounts()),
        keyring,
        Arc::new(graph),
        Arc::new(crm),
    );
    doctor.check_accounts().await.unwrap_or_else(|err| {
        vec![Finding::fail(
            "accounts",
            format!("cannot read them: {err}"),
        )]
    })
}
