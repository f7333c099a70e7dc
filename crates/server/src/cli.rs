//! The command line: `serve` (the default), `migrate up|down|status`, `simulate`, `api-key
//! create|list|revoke`, `journal list|replay`, `prune`, `backup`, `doctor`, `stats`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::settings::values::LogFormat;
use crate::wiring::open_database;
use crate::{Application, Settings, telemetry};

/// insta-router: Instagram Direct Messages to your CRM.
///
/// Configuration comes from compiled defaults, then insta-router.toml (or --config), then
/// environment variables (a .env file in the working directory is read too).
#[derive(Debug, Parser)]
#[command(name = "insta-router", version, about)]
pub struct Cli {
    /// A TOML file with settings (default: ./insta-router.toml when it exists).
    #[arg(long, global = true, env = "INSTA_ROUTER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve {
        /// Do not apply pending migrations at start.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Manage the database schema.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Send a correctly signed Meta webhook to a running server, to see the pipeline work
    /// without Meta. Signs with INSTAGRAM_APP_SECRET (or FACEBOOK_APP_SECRET), as the server
    /// verifies.
    Simulate(crate::simulate::SimulateArgs),
    /// Seal every stored credential again under the current ENCRYPTION_KEY (after a key
    /// rotation: the old key in ENCRYPTION_KEY_PREVIOUS opens what it sealed).
    Reencrypt,
    /// Make, list and revoke API keys.
    #[command(name = "api-key")]
    ApiKey {
        #[command(subcommand)]
        action: crate::keys::KeyAction,
    },
    /// See and replay the webhooks whose events could not be stored when they arrived.
    Journal {
        #[command(subcommand)]
        action: crate::journal::JournalAction,
    },
    /// Delete the rows older than the RETENTION_* settings now (serve does it every
    /// RETENTION_INTERVAL), or with --dry-run print how many would go.
    Prune {
        /// Count, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Copy the SQLite database to FILE while the server runs, and check the copy (for
    /// PostgreSQL and MySQL, says which native tool to use).
    Backup {
        /// Where to write the copy; must not exist.
        file: PathBuf,
    },
    /// Check the configuration, the database and its schema, each account's token (Meta's
    /// `me`) and each CRM URL; one line per check, exit status 1 when any fails.
    Doctor,
    /// Print how many rows each table holds.
    Stats {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Roll back the last migration (or --steps N, or --all).
    Down {
        /// How many migrations to roll back.
        #[arg(long, default_value_t = 1, conflicts_with = "all")]
        steps: u32,
        /// Roll back every migration.
        #[arg(long)]
        all: bool,
    },
    /// List migrations and whether each is applied.
    Status,
}

/// Parses the command line and runs it.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let _ = dotenvy::dotenv();
    let file = cli
        .config
        .clone()
        .or_else(|| Some(PathBuf::from("insta-router.toml")).filter(|p| p.exists()));
    let settings = match Settings::load(file.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            report(&anyhow::Error::new(err));
            return ExitCode::from(2);
        }
    };
    // The server logs to stdout; the other commands print their results there, so their
    // log lines go to stderr.
    let serving = matches!(cli.command, None | Some(Command::Serve { .. }));
    telemetry::init(
        &settings.service.log_level,
        settings.service.log_format == LogFormat::Json,
        !serving,
    );
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if settings.service.runtime_workers > 0 {
        builder.worker_threads(settings.service.runtime_workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            report(&anyhow::Error::new(err).context("cannot start the async runtime"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(
        cli.command.unwrap_or(Command::Serve { no_migrate: false }),
        settings,
    )) {
        Ok(code) => code,
        Err(err) => {
            report(&err);
            // A configuration the settings check refused (the production check included).
            if err
                .chain()
                .any(|cause| cause.is::<crate::settings::SettingsError>())
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Prints `err` once, on stderr (not also as a log line: both end up in the same journal).
#[allow(clippy::print_stderr)]
fn report(err: &anyhow::Error) {
    eprintln!("error: {}", crate::telemetry::root_cause(err));
}

async fn execute(command: Command, mut settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { no_migrate } => {
            if no_migrate {
                settings.database.auto_migrate = false;
            }
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await?;
        }
        Command::Migrate { action } => migrate(action, &settings).await?,
        Command::Simulate(args) => crate::simulate::run(args, &settings).await?,
        Command::Journal { action } => return crate::journal::run(action, &settings).await,
        Command::ApiKey { action } => crate::keys::run(action, &settings).await?,
        Command::Reencrypt => return reencrypt(&settings).await,
        Command::Stats { json } => stats(&settings, json).await?,
        Command::Prune { dry_run } => return crate::prune::run(dry_run, &settings).await,
        Command::Backup { file } => return crate::backup::run(file, &settings).await,
        Command::Doctor => return crate::doctor::run(&settings).await,
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
async fn reencrypt(settings: &Settings) -> anyhow::Result<ExitCode> {
    let keyring = crate::encryption::keyring(settings)?;
    let db = open_database(settings).await?;
    crate::wiring::prepare_schema(&db, settings).await?;
    let accounts = insta_router_app::AccountService::new(
        std::sync::Arc::new(db.accounts()),
        keyring.clone(),
        std::sync::Arc::new(insta_router_app::SystemClock),
    );
    let report = accounts
        .reseal(true)
        .await
        .context("cannot re-encrypt the credentials")?;
    let _ = db.close().await;
    println!(
        "{} accounts, {} credentials sealed again under key {}",
        report.accounts,
        report.credentials,
        keyring.current_id()
    );
    for (account, reason) in &report.unreadable {
        println!(
            "{account}: cannot open its credentials ({reason}); add its key to ENCRYPTION_KEY_PREVIOUS"
        );
    }
    Ok(if report.unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[allow(clippy::print_stdout)]
async fn stats(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let db = open_database(settings).await?;
    let mut counts = serde_json::Map::new();
    for table in db.table_names().await? {
        if table == "seaql_migrations" {
            continue;
        }
        let rows = db.row_count(&table).await?;
        counts.insert(table, rows.into());
    }
    let _ = db.close().await;
    if json {
        println!("{}", serde_json::Value::Object(counts));
    } else {
        for (table, rows) in counts {
            println!("{table:<20} {rows}");
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn migrate(action: MigrateAction, settings: &Settings) -> anyhow::Result<()> {
    let db = open_database(settings).await?;
    match action {
        MigrateAction::Up => {
            db.migrate_up().await.context("migrate up failed")?;
            println!("all migrations applied");
        }
        MigrateAction::Down { steps, all } => {
            db.migrate_down(if all { None } else { Some(steps) })
                .await
                .context("migrate down failed")?;
            println!(
                "rolled back {}",
                if all {
                    "every migration".to_owned()
                } else {
                    format!("{steps} migration(s)")
                }
            );
        }
        MigrateAction::Status => {
            for (name, applied) in db.migration_status().await? {
                println!("{} {name}", if applied { "applied" } else { "pending" });
            }
            for name in db.schema_state().await?.unknown {
                println!("newer {name} (applied by a newer release; this one does not know it)");
            }
        }
    }
    let _ = db.close().await;
    Ok(())
}
