//! Why a database could not be opened, in the operator's terms: the drivers report a refused
//! connection as a pool timeout and a missing directory as "unable to open database file".

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::mysql::MySqlConnectOptions;
use sea_orm::sqlx::postgres::PgConnectOptions;

use crate::backend::Backend;
use crate::url::DatabaseUrl;

/// How long the diagnosis waits for a TCP connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The root cause of a failed connection to `url` and what to do, when it is one this
/// recognises: a missing directory or file, a permission, an unknown host, a refused or
/// unanswered port. `None` when those look fine (the driver's own error says more then:
/// a password, a missing database).
pub(crate) async fn diagnose(url: &DatabaseUrl) -> Option<String> {
    match url.backend() {
        Backend::Sqlite => url.sqlite_file().and_then(|file| sqlite_file(&file)),
        Backend::Postgres => {
            let o = PgConnectOptions::from_str(url.as_str()).ok()?;
            tcp(o.get_host(), o.get_port()).await
        }
        Backend::MySql => {
            let o = MySqlConnectOptions::from_str(url.as_str()).ok()?;
            tcp(o.get_host(), o.get_port()).await
        }
    }
}

fn sqlite_file(file: &Path) -> Option<String> {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Some(format!(
            "the directory {} does not exist; create it, or point DATABASE_URL elsewhere",
            dir.display()
        ));
    }
    if file.exists() {
        return match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(file)
        {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Some(format!(
                "{} cannot be opened for writing (permission denied); run as its owner or \
                 change its permissions",
                file.display()
            )),
            _ => None,
        };
    }
    let probe = dir.join(format!(".insta-router-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Some(format!(
            "cannot create {} (permission denied on {}); run as a user who may write there, or \
             point DATABASE_URL elsewhere",
            file.display(),
            dir.display()
        )),
        Err(_) => None,
    }
}

async fn tcp(host: &str, port: u16) -> Option<String> {
    // A Unix socket directory: nothing to probe over TCP.
    if host.starts_with('/') {
        return None;
    }
    let addresses: Vec<_> = match tokio::net::lookup_host((host, port)).await {
        Ok(found) => found.collect(),
        Err(e) => {
            return Some(format!(
                "unknown host {host} ({e}); check DATABASE_URL's host name"
            ));
        }
    };
    let mut refused = false;
    for address in &addresses {
        match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => return None,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused = true,
            Ok(Err(_)) | Err(_) => {}
        }
    }
    Some(if refused {
        format!(
            "{host}:{port} refused the connection; is the database server running there, and \
             is DATABASE_URL's port right?"
        )
    } else {
        format!(
            "no answer from {host}:{port} within {} s; check the host, the port and any \
             firewall between",
            PROBE_TIMEOUT.as_secs()
        )
    })
}
