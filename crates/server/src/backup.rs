//! `insta-router backup FILE`: an online copy of a SQLite database while `serve` runs, checked
//! by opening it; for PostgreSQL and MySQL, the native tools that do it and how.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use insta_router_storage::{Backend, DatabaseUrl, backup_sqlite};

use crate::Settings;

/// Runs `backup`.
///
/// # Errors
///
/// When the copy cannot be made or does not check out; nothing is left at `target` then.
#[allow(clippy::print_stdout)]
pub async fn run(target: PathBuf, settings: &Settings) -> anyhow::Result<ExitCode> {
    let url = &settings.database.url;
    if url.backend() != Backend::Sqlite {
        println!("{}", native_tools(url, &target));
        return Ok(ExitCode::FAILURE);
    }
    let Some(source) = url.sqlite_file() else {
        anyhow::bail!("DATABASE_URL names an in-memory database: there is nothing to back up");
    };
    let (from, to) = (source.clone(), target.clone());
    let report = tokio::task::spawn_blocking(move || backup_sqlite(&from, &to))
        .await
        .context("the backup thread stopped")?
        .with_context(|| format!("cannot back up {}", source.display()))?;
    println!(
        "backed up {} to {} ({} bytes, checked in {:.1} s)",
        source.display(),
        report.path.display(),
        report.bytes,
        report.took.as_secs_f64()
    );
    println!(
        "schema: {} migrations applied{}",
        report.migrations.len(),
        report
            .migrations
            .last()
            .map(|m| format!(", the latest {m}"))
            .unwrap_or_default()
    );
    for (table, rows) in &report.rows {
        println!("{table:<22} {rows} rows");
    }
    println!("{}", restore_hint(&source, &target));
    Ok(ExitCode::SUCCESS)
}

fn restore_hint(source: &Path, target: &Path) -> String {
    let db = source.display();
    format!(
        "to restore: stop insta-router, remove {db}-wal and {db}-shm if they exist, copy {} to \
         {db}, then start it (check with `insta-router migrate status`)",
        target.display()
    )
}

/// What to run instead on a database server: its own dump tool takes a consistent copy while
/// insta-router keeps writing.
fn native_tools(url: &DatabaseUrl, target: &Path) -> String {
    let file = target.display();
    let shown = url.redacted();
    match url.backend() {
        Backend::Postgres => format!(
            "insta-router backup copies SQLite databases; DATABASE_URL names a PostgreSQL \
             database ({shown}).\nPostgreSQL's own tool takes a consistent copy while \
             insta-router runs:\n  pg_dump --format=custom --file={file} \"$DATABASE_URL\"\n\
             Restore into a new, empty database, then check it:\n  createdb NEWDB && \
             pg_restore --no-owner --dbname=NEWDB {file}\n  DATABASE_URL=postgres://.../NEWDB \
             insta-router migrate status"
        ),
        Backend::MySql => format!(
            "insta-router backup copies SQLite databases; DATABASE_URL names a MySQL/MariaDB \
             database ({shown}).\nIts own tool takes a consistent copy while insta-router \
             runs (InnoDB, one transaction):\n  mysqldump --single-transaction --quick \
             --host=HOST --port=PORT --user=USER -p DATABASE > {file}\nRestore into a new, \
             empty database, then check it:\n  mysql --host=HOST --user=USER -p NEWDB < \
             {file}\n  DATABASE_URL=mysql://.../NEWDB insta-router migrate status"
        ),
        Backend::Sqlite => String::new(),
    }
}
