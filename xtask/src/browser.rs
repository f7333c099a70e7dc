//! `cargo xtask browser`: the console's browser tests (`tests/browser/`), on the server
//! binary the workspace tests build, in Debian's Chromium driven by playwright-core.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bench::target_dir;

/// Where the tests write their screenshots, under the target directory.
const SCREENSHOTS: &str = "console-screenshots";

pub(crate) fn run() -> Result<(), String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    if !Path::new(&chromium).exists() {
        return Err(format!(
            "no browser at {chromium}: install Debian's chromium (`apt-get install chromium`), or name one with CHROMIUM"
        ));
    }
    status(
        Command::new("cargo").args(["build", "--locked", "-p", "insta-router"]),
        "cargo build -p insta-router",
    )?;
    let tests = root.join("tests/browser");
    if !tests.join("node_modules/playwright-core").exists() {
        status(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&tests),
            "npm ci in tests/browser",
        )?;
    }
    let target = target_dir();
    let shots = target.join(SCREENSHOTS);
    // Screenshots of an earlier run would count as this run's.
    let _ = std::fs::remove_dir_all(&shots);
    status(
        Command::new("node")
            .args(["--test", "--test-concurrency=1", "console.test.mjs"])
            .current_dir(&tests)
            .env("INSTA_ROUTER_BIN", target.join("debug/insta-router"))
            .env("CHROMIUM", &chromium)
            .env("SCREENSHOT_DIR", &shots),
        "the browser tests",
    )
}

fn status(command: &mut Command, what: &str) -> Result<(), String> {
    match command.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("{what} failed ({s})")),
        Err(e) => Err(format!("cannot run {what}: {e}")),
    }
}
