//! `insta-router api-key create | list | revoke`: API keys from the command line.

use anyhow::Context;
use clap::Subcommand;
use insta_router_app::App;
use insta_router_domain::{AccountId, ApiKey, ApiKeyId, KeyScope};
use insta_router_ports::describe;

use crate::Settings;
use crate::wiring::{api_keys, open_database};

/// What to do with API keys.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Make a key and print it, this once (only its SHA-256 is stored).
    Create {
        /// Make an account key, acting on this account (`acc_...`) only; without it, an
        /// admin key.
        #[arg(long)]
        account: Option<String>,
        /// What people call it.
        #[arg(long)]
        name: Option<String>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the keys: id, name, scope, created, last used, revoked.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key, at once on every instance.
    Revoke {
        /// The key's id (`key_...`).
        key_id: String,
    },
}

/// Runs an API key command.
///
/// # Errors
///
/// When the database cannot be opened, an id is malformed or unknown, or a name is invalid.
pub async fn run(action: KeyAction, settings: &Settings) -> anyhow::Result<()> {
    let db = open_database(settings).await?;
    crate::wiring::prepare_schema(&db, settings).await?;
    let keys = api_keys(&db);
    let result = match action {
        KeyAction::Create {
            account,
            name,
            json,
        } => {
            let scope = match account.as_deref() {
                None => KeyScope::Admin,
                Some(raw) => KeyScope::Account(
                    AccountId::parse("account", raw)
                        .map_err(|e| anyhow::anyhow!("--account {raw:?}: {e}"))?,
                ),
            };
            let made = keys
                .create(scope, name.as_deref())
                .await
                .context("cannot make the key")?;
            print_created(&made.key, made.secret.expose(), json);
            Ok(())
        }
        KeyAction::List { json } => {
            let listed = keys.list().await.context("cannot read the keys")?;
            print_list(&listed, json);
            Ok(())
        }
        KeyAction::Revoke { key_id } => {
            let id = ApiKeyId::parse("key_id", &key_id)
                .map_err(|e| anyhow::anyhow!("{key_id:?}: {e}"))?;
            let key = keys.revoke(&id).await.context("cannot revoke the key")?;
            print_revoked(&key);
            Ok(())
        }
    };
    let _ = db.close().await;
    result
}

fn scope_text(key: &ApiKey) -> String {
    match &key.scope {
        KeyScope::Admin => "admin".to_owned(),
        KeyScope::Account(account) => format!("account {account}"),
    }
}

fn json_of(key: &ApiKey) -> serde_json::Value {
    serde_json::json!({
        "key_id": key.id.as_str(),
        "name": key.name.as_ref().map(|n| n.as_str()),
        "scope": if key.scope.is_admin() { "admin" } else { "account" },
        "account_id": key.scope.account().map(AccountId::as_str),
        "created_at": key.created_at.to_rfc3339(),
        "last_used_at": key.last_used_at.map(|t| t.to_rfc3339()),
        "revoked_at": key.revoked_at.map(|t| t.to_rfc3339()),
    })
}

#[allow(clippy::print_stdout)]
fn print_created(key: &ApiKey, text: &str, json: bool) {
    if json {
        let mut value = json_of(key);
        value["api_key"] = serde_json::json!(text);
        println!("{value}");
        return;
    }
    println!("api key: {text}");
    println!("key id:  {}", key.id);
    println!("scope:   {}", scope_text(key));
    println!(
        "This key is shown once; only its SHA-256 is stored. Send it as 'Authorization: Bearer <key>'."
    );
}

#[allow(clippy::print_stdout)]
fn print_list(keys: &[ApiKey], json: bool) {
    for key in keys {
        if json {
            println!("{}", json_of(key));
            continue;
        }
        let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
        };
        println!(
            "{}  {:<40}  {:<44}  created {}  last used {}  revoked {}",
            key.id,
            key.name.as_ref().map_or("-", |n| n.as_str()),
            scope_text(key),
            key.created_at.to_rfc3339(),
            time(key.last_used_at),
            time(key.revoked_at),
        );
    }
}

#[allow(clippy::print_stdout)]
fn print_revoked(key: &ApiKey) {
    println!(
        "{} revoked ({})",
        key.id,
        key.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default()
    );
}

/// With no API key at all: in development, makes an admin key and shows it once on the
/// console (never in the log); in production, says how to make one. A database that cannot
/// say (not migrated yet) is left to the requests, which answer 503.
pub(crate) async fn announce_keys(app: &App, settings: &Settings) {
    if settings.is_production() {
        match app.keys.list().await {
            Ok(keys) if keys.is_empty() => tracing::warn!(
                "no API key exists: the REST API refuses every request until one is made with `insta-router api-key create`"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %describe(&error), "cannot read the API keys"),
        }
        return;
    }
    match app.keys.bootstrap().await {
        Ok(Some(made)) => show_bootstrap_key(made.secret.expose()),
        Ok(None) => {}
        Err(error) => tracing::warn!(error = %describe(&error), "cannot make the first API key"),
    }
}

#[allow(
    clippy::print_stderr,
    reason = "shown once to the person starting the server, never logged"
)]
fn show_bootstrap_key(key: &str) {
    eprintln!(
        "\nNo API key existed, so this development server made an admin key. It is shown this once:\n\n    admin API key: {key}\n\nSend it as 'Authorization: Bearer <key>'. Make more, and account keys, with `insta-router api-key create`.\n"
    );
}
