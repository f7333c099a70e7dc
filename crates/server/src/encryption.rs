//! The keys credentials are sealed with: `ENCRYPTION_KEY` (and `ENCRYPTION_KEY_PREVIOUS`),
//! or, in development without one, a key kept in a file of its own.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use insta_router_app::{App, KEY_LEN, Keyring};
use insta_router_ports::describe;

use crate::Settings;

/// How to make a key, for messages.
pub const HOW_TO_GENERATE: &str = "generate one with `openssl rand -base64 32`";

/// A key from its base64 text (standard or URL-safe, padded or not).
///
/// # Errors
///
/// A message naming what is wrong, not the value.
pub fn parse_key(text: &str) -> Result<[u8; KEY_LEN], String> {
    let text = text.trim();
    let bytes = [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or_else(|| "is not base64".to_owned())?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice())
        .map_err(|_| format!("must be {KEY_LEN} bytes, not {}", bytes.len()))
}

/// The previous keys of `ENCRYPTION_KEY_PREVIOUS`, comma-separated.
///
/// # Errors
///
/// A message naming the bad entry by its position.
pub fn parse_previous(text: &str) -> Result<Vec<[u8; KEY_LEN]>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .enumerate()
        .map(|(i, t)| parse_key(t).map_err(|e| format!("entry {}: {e}", i + 1)))
        .collect()
}

/// Where a development server keeps its key: beside its SQLite database
/// (`insta_router.db.key`), else `insta-router.key` in the working directory.
pub fn dev_key_file(settings: &Settings) -> PathBuf {
    match settings.database.url.sqlite_file() {
        Some(db) => {
            let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
            name.push(".key");
            db.with_file_name(name)
        }
        None => PathBuf::from("insta-router.key"),
    }
}

/// The keyring of the configuration. Without `ENCRYPTION_KEY` in development: the key of
/// the development key file, made (0600) on first use; in production that is an error (the
/// settings check refuses it first).
///
/// # Errors
///
/// When a key is malformed, or the development key file cannot be read or made.
pub fn keyring(settings: &Settings) -> anyhow::Result<Arc<Keyring>> {
    let previous = parse_previous(settings.encryption.previous.expose())
        .map_err(|e| anyhow::anyhow!("ENCRYPTION_KEY_PREVIOUS: {e}"))?;
    let current = if settings.encryption.key.expose().trim().is_empty() {
        anyhow::ensure!(
            !settings.is_production(),
            "ENCRYPTION_KEY is required in production; {HOW_TO_GENERATE}"
        );
        dev_key(&dev_key_file(settings))?
    } else {
        parse_key(settings.encryption.key.expose())
            .map_err(|e| anyhow::anyhow!("ENCRYPTION_KEY: {e}"))?
    };
    let keyring = Keyring::new(&current, &previous)
        .map_err(|e| anyhow::anyhow!("cannot use the encryption key: {e}"))?;
    Ok(Arc::new(keyring))
}

/// The key of the development key file at `path`, made when missing.
fn dev_key(path: &Path) -> anyhow::Result<[u8; KEY_LEN]> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            return parse_key(&text)
                .map_err(|e| anyhow::anyhow!("the development key file {} {e}", path.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", path.display()));
        }
    }
    let mut key = [0_u8; KEY_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| anyhow::anyhow!("no random bytes for an encryption key"))?;
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.is_dir())
    {
        anyhow::bail!(
            "the directory {} does not exist (it holds the database and its development key \
             file); create it, or point DATABASE_URL elsewhere",
            dir.display()
        );
    }
    let mut file = open_private(path)
        .with_context(|| format!("cannot make the development key file {}", path.display()))?;
    writeln!(file, "{}", STANDARD.encode(key))?;
    file.sync_all()?;
    tracing::warn!(
        file = %path.display(),
        "ENCRYPTION_KEY is not set: credentials are encrypted with a development key kept in this file (mode 0600). Set ENCRYPTION_KEY in production; keep this file to read what it sealed"
    );
    Ok(key)
}

/// Creates `path` for writing, readable by its owner only; never overwrites.
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

/// Seals the credentials still stored in plain text (written before encryption).
pub(crate) async fn seal_plain_credentials(app: &App) {
    match app.accounts.reseal(false).await {
        Ok(report) => {
            if report.credentials > 0 {
                tracing::info!(
                    credentials = report.credentials,
                    "credentials stored in plain text are encrypted now"
                );
            }
            for (account, reason) in report.unreadable {
                tracing::error!(account_id = %account, %reason, "cannot open this account's credentials: is its key in ENCRYPTION_KEY or ENCRYPTION_KEY_PREVIOUS?");
            }
        }
        Err(error) => {
            tracing::warn!(error = %describe(&error), "cannot check the stored credentials")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_32_bytes_of_base64_in_any_alphabet() {
        let key = [0xfb_u8; 32];
        for text in [
            STANDARD.encode(key),
            STANDARD_NO_PAD.encode(key),
            URL_SAFE.encode(key),
            URL_SAFE_NO_PAD.encode(key),
            format!("  {}\n", STANDARD.encode(key)),
        ] {
            assert_eq!(parse_key(&text), Ok(key), "{text}");
        }
        assert_eq!(parse_key("not base64!"), Err("is not base64".to_owned()));
        assert_eq!(
            parse_key(&STANDARD.encode([1_u8; 16])),
            Err("must be 32 bytes, not 16".to_owned())
        );
        let previous = format!(
            "{}, {}",
            STANDARD.encode([1_u8; 32]),
            STANDARD.encode([2_u8; 32])
        );
        assert_eq!(parse_previous(&previous).unwrap().len(), 2);
        assert_eq!(parse_previous("").unwrap().len(), 0);
        assert!(
            parse_previous(&format!("{},x", STANDARD.encode([1_u8; 32])))
                .unwrap_err()
                .starts_with("entry 2")
        );
    }
}
