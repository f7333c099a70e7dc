//! The rules file (`RULES_FILE`): auto-reply rules to create at start-up, so a deployment can
//! ship its rules with its configuration. A rule is created when its account is connected and
//! has no rule of that name yet; rules are never overwritten or deleted from here.

use std::path::Path;

use anyhow::{Context, bail};
use insta_router_app::{App, RuleDocument};
use insta_router_domain::InstagramAccountId;

/// Creates the file's rules that do not exist yet; returns how many.
///
/// # Errors
///
/// When the file cannot be read or holds an invalid rule (named by its position and field).
pub async fn seed_rules(path: &Path, app: &App) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read RULES_FILE {}", path.display()))?;
    let file: toml::Table = toml::from_str(&text)
        .with_context(|| format!("RULES_FILE {} is not TOML", path.display()))?;
    let Some(entries) = file.get("rules") else {
        return Ok(0);
    };
    let Some(entries) = entries.as_array() else {
        bail!(
            "RULES_FILE {}: `rules` must be an array of tables ([[rules]])",
            path.display()
        );
    };
    let mut created = 0;
    for (i, entry) in entries.iter().enumerate() {
        let mut entry = entry
            .as_table()
            .cloned()
            .with_context(|| format!("RULES_FILE {}: rules[{i}] is not a table", path.display()))?;
        let instagram_id = entry
            .remove("instagram_account_id")
            .and_then(|v| v.as_str().map(str::to_owned))
            .with_context(|| {
                format!(
                    "RULES_FILE {}: rules[{i}] needs instagram_account_id",
                    path.display()
                )
            })?;
        let json = serde_json::to_value(&entry)?;
        let document: RuleDocument = serde_json::from_value(json)
            .with_context(|| format!("RULES_FILE {}: rules[{i}]", path.display()))?;
        if let Err(errors) = document.to_spec() {
            bail!("RULES_FILE {}: rules[{i}]: {errors}", path.display());
        }
        let id = InstagramAccountId::parse("instagram_account_id", &instagram_id)
            .map_err(|e| anyhow::anyhow!("RULES_FILE {}: rules[{i}]: {e}", path.display()))?;
        let Some(account) = app.accounts.find_by_instagram_id(&id).await? else {
            tracing::warn!(instagram_account_id = %id, rule = %document.name, "rules file: no such account connected; rule skipped");
            continue;
        };
        let existing = app.rules.list(&account.id).await?;
        if existing
            .iter()
            .any(|r| r.document.name == document.name.trim())
        {
            continue;
        }
        app.rules.create(&account.id, document).await?;
        created += 1;
    }
    Ok(created)
}
