//! Project automation: `cargo xtask <command>`.
//!
//! - `deps`: proves the dependency invariants of `docs/ARCHITECTURE.md` with `cargo tree -i`,
//!   and that the binary alone and the workspace tests build crates.io packages alike.
//! - `bench ingest [--db sqlite|postgres]`: the webhook ingest benchmark (see
//!   `docs/PERFORMANCE.md`).
//! - `bench e2e [--db sqlite|postgres] [--rate R]`: webhooks in and CRM deliveries out, with
//!   the arrival-to-CRM latency (closed loop: the delivery throughput).
//! - `bench analytics [--db sqlite|postgres] [--messages N]`: the analytics queries over a
//!   million stored messages.
//! - `browser`: the console's browser tests in headless Chromium (`tests/browser/`).
//! - `ci`: what `.ci/run` runs, for local use.
//!
//! Kept to the standard library on purpose: it builds in seconds.

use std::process::{Command, ExitCode};

mod bench;
mod bench_analytics;
mod bench_e2e;
mod browser;
mod tidy;

/// (package, crate it must not depend on) pairs: the architecture's dependency bans.
const BANS: &[(&str, &str)] = &[
    ("insta-router-domain", "tokio"),
    ("insta-router-domain", "sea-orm"),
    ("insta-router-domain", "reqwest"),
    ("insta-router-domain", "actix-web"),
    ("insta-router-domain", "serde"),
    ("insta-router-ports", "sea-orm"),
    ("insta-router-ports", "reqwest"),
    ("insta-router-ports", "actix-web"),
    ("insta-router-app", "sea-orm"),
    ("insta-router-app", "reqwest"),
    ("insta-router-app", "actix-web"),
    ("insta-router-http", "sea-orm"),
    ("insta-router-console", "sea-orm"),
    ("insta-router-console", "reqwest"),
    ("insta-router-console", "insta-router-http"),
    ("insta-router-http", "reqwest"),
    ("insta-router-storage", "actix-web"),
    ("insta-router-storage", "reqwest"),
    ("insta-router-instagram", "sea-orm"),
    ("insta-router-instagram", "actix-web"),
    ("insta-router-crm", "sea-orm"),
    ("insta-router-crm", "actix-web"),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("deps") => deps(),
        // The analytics bench uses the ingest bench's helpers, so it is dispatched here.
        Some("bench") if args.get(1).is_some_and(|a| a == "analytics") => {
            bench_analytics::run(&args[2..])
        }
        Some("bench") if args.get(1).is_some_and(|a| a == "e2e") => bench_e2e::run(&args[2..]),
        Some("bench") => bench::run(&args[1..]),
        Some("browser") => browser::run(),
        Some("ci") => ci(),
        _ => Err("usage: cargo xtask <deps|bench|browser|ci>".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("xtask: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Fails when a banned crate appears in a package's normal dependency tree.
fn deps() -> Result<(), String> {
    let mut violations = Vec::new();
    for (package, banned) in BANS {
        let output = Command::new(env!("CARGO"))
            .args([
                "tree", "--quiet", "-e", "normal", "-p", package, "-i", banned,
            ])
            .output()
            .map_err(|e| format!("cannot run cargo tree: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        // `cargo tree -i` fails with "did not match any packages" when the crate is absent.
        if output.status.success() && !stdout.trim().is_empty() {
            violations.push(format!("{package} depends on {banned}:\n{stdout}"));
        }
    }
    violations.extend(unification()?);
    if violations.is_empty() {
        #[allow(clippy::print_stdout)]
        {
            println!(
                "dependency invariants hold ({} bans checked; the binary's crates.io features \
                 match the test build's)",
                BANS.len()
            );
        }
        Ok(())
    } else {
        Err(violations.join("\n"))
    }
}

/// Each crates.io package's features, as `cargo tree` resolves them for `args`.
fn features(args: &[&str]) -> Result<std::collections::BTreeMap<String, String>, String> {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--quiet", "--prefix", "none", "-f", "{p}|{f}"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let mut found = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let line = line.trim_end_matches(" (*)");
        let Some((package, features)) = line.split_once('|') else {
            continue;
        };
        // Workspace members (a path in parentheses) may differ: they are ours to rebuild.
        if !package.contains(" (") {
            let all: &mut std::collections::BTreeSet<String> =
                found.entry(package.to_owned()).or_default();
            all.extend(
                features
                    .split(',')
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    Ok(found
        .into_iter()
        .map(|(package, all)| (package, all.into_iter().collect::<Vec<_>>().join(",")))
        .collect())
}

/// `cargo run` builds the binary's dependencies with the features the binary alone asks for;
/// `cargo test --workspace` with those every member and dev-dependency asks for. Where they
/// differ, switching between the two rebuilds sqlx, sea-orm, reqwest... (crates/server's
/// Cargo.toml turns the missing features on). One violation per package that differs.
fn unification() -> Result<Vec<String>, String> {
    let binary = features(&["-e", "normal,build", "-p", "insta-router"])?;
    let tests = features(&["-e", "normal,build,dev", "--workspace"])?;
    Ok(binary
        .iter()
        .filter_map(|(package, features)| {
            let other = tests.get(package)?;
            (other != features).then(|| {
                format!(
                    "{package}: the binary builds it with [{features}], the workspace tests \
                     with [{other}]; add the difference to crates/server/Cargo.toml's feature \
                     unification"
                )
            })
        })
        .collect())
}

fn ci() -> Result<(), String> {
    let status = Command::new("bash")
        .arg(".ci/run")
        .status()
        .map_err(|e| format!("cannot run .ci/run: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(".ci/run failed".to_owned())
    }
}
