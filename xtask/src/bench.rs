//! `cargo xtask bench ingest [--db sqlite|postgres] [--connections N] [--requests N]` and
//! `cargo xtask bench send [--db ...] [--connections N] [--requests N] [--graph-delay-ms N]`.
//! `--rate R` sends the ingest run's webhooks on a fixed schedule (open loop, 60 s by default).
//! `--sustained` makes the ingest run long (1,000,000 requests by default) and reports it per
//! 10-second window (p50/p90/p99/p99.9/max), with the database's file sizes at the end.
//!
//! `send` starts a fake Graph API (`loadgen --mode fake-graph`), points the server at it,
//! measures `GET /` and then unique send requests, and reports requests accepted per second
//! (202 once durably queued), sends completed per second (from the first request until the
//! last send reached the fake Graph API, read from `/metrics`), and checks that the fake got
//! exactly one call per accepted request.
//!
//! Builds the release binaries, starts the server on a fresh database, connects one account
//! with a CRM (so every event writes five rows: journal, message, conversation, auto-reply job,
//! CRM job), measures `GET /` (the HTTP ceiling, no database work) and then signed unique
//! webhooks, both with `loadgen` at the same concurrency, and reports throughput, latency,
//! the ingest/ceiling ratio, rows stored against requests acknowledged, and peak RSS.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const SECRET: &str = "bench-app-secret";
pub(crate) const ACCOUNT: &str = "17841400000000001";

pub(crate) struct Options {
    pub(crate) db: String,
    pub(crate) connections: usize,
    pub(crate) requests: usize,
    graph_delay_ms: usize,
    /// Extra server settings (`--env KEY=VALUE`), for experiments.
    pub(crate) env: Vec<(String, String)>,
    /// A server binary to measure instead of this tree's (`--server PATH`), for A/B runs
    /// against an earlier build.
    server: Option<PathBuf>,
    /// `--sustained`: a long ingest run (1,000,000 requests unless `--requests`), reported
    /// per 10-second window, with the database's files measured at the end.
    pub(crate) sustained: bool,
    /// `--rate R`: the ingest run sends R webhooks per second on a fixed schedule (open
    /// loop; 60 seconds' worth unless `--requests`), reported per 10-second window.
    pub(crate) rate: usize,
    /// `--rule`: the bench account gets an enabled rule that never fires, so every inbound
    /// message is offered to the rules (an auto-reply job each), as for a shop with rules.
    pub(crate) rule: bool,
}

pub(crate) fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        db: "sqlite".into(),
        connections: 64,
        requests: 100_000,
        graph_delay_ms: 0,
        env: Vec::new(),
        server: None,
        sustained: false,
        rate: 0,
        rule: false,
    };
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--rule" {
            options.rule = true;
            i += 1;
            continue;
        }
        if args[i] == "--sustained" {
            options.sustained = true;
            if !args.iter().any(|a| a == "--requests") {
                options.requests = 1_000_000;
            }
            i += 1;
            continue;
        }
        let value = args
            .get(i + 1)
            .ok_or(format!("{} needs a value", args[i]))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{}: {e}", args[i]))
        };
        match args[i].as_str() {
            "--db" => options.db = value.clone(),
            "--connections" => options.connections = number()?,
            "--requests" => options.requests = number()?,
            "--graph-delay-ms" => options.graph_delay_ms = number()?,
            "--rate" => {
                options.rate = number()?;
                if !args.iter().any(|a| a == "--requests") {
                    options.requests = options.rate * 60;
                }
            }
            "--server" => options.server = Some(PathBuf::from(value)),
            "--env" => {
                let (key, value) = value.split_once('=').ok_or("--env takes KEY=VALUE")?;
                options.env.push((key.to_owned(), value.to_owned()));
            }
            other => return Err(format!("unknown option {other}")),
        }
        i += 2;
    }
    if !matches!(options.db.as_str(), "sqlite" | "postgres" | "mysql") {
        return Err("--db must be sqlite, postgres or mysql".into());
    }
    Ok(options)
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("ingest") => ingest(&parse(&args[1..])?),
        Some("send") => {
            let mut options = parse(&args[1..])?;
            if !args.iter().any(|a| a == "--requests") {
                options.requests = 20_000;
            }
            send(&options)
        }
        _ => Err("usage: cargo xtask bench ingest|send|e2e|analytics [--messages 1000000 (analytics)] [--db sqlite|postgres] [--connections 64] [--requests 100000 (ingest), 20000 (send)] [--graph-delay-ms 0 (send)] [--sustained (ingest)] [--rate R (ingest, e2e: open loop)] [--rule (the account has a rule that never fires)] [--env KEY=VALUE (a server setting)]... [--server PATH (another build's binary)]".into()),
    }
}

/// The release binaries: the server (this tree's, or `--server`) and the load generator.
pub(crate) fn build(options: &Options) -> Result<(PathBuf, PathBuf), String> {
    say("building release binaries (insta-router, loadgen)");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "insta-router",
            "-p",
            "insta-router-bench",
        ])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("release build failed".into());
    }
    let release = target_dir().join("release");
    let server = options
        .server
        .clone()
        .unwrap_or_else(|| release.join("insta-router"));
    Ok((server, release.join("loadgen")))
}

/// Starts the server on `database` with `env`, logging to `dir/server.log`; returns it and
/// its address.
pub(crate) fn start_server(
    server_bin: &Path,
    database: &Database,
    dir: &Path,
    env: &[(&str, &str)],
) -> Result<(Child, String), String> {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let mut command = Command::new(server_bin);
    command
        .env_clear()
        .current_dir(dir)
        .env("DATABASE_URL", &database.url)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("INSTAGRAM_APP_SECRET", SECRET)
        .env("LOG_LEVEL", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    let server = command
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start the server: {e}"))?;
    Ok((server, addr))
}

/// An admin key for the bench, made with the server's own command once it has migrated the
/// database. Builds from before API keys (measured with `--server`) accept any token.
pub(crate) fn admin_key(server_bin: &Path, database: &Database, dir: &Path) -> String {
    let output = Command::new(server_bin)
        .env_clear()
        .current_dir(dir)
        .env("DATABASE_URL", &database.url)
        .env("LOG_LEVEL", "warn")
        .args(["api-key", "create", "--name", "bench", "--json"])
        .output();
    output
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let key = text
                .split("\"api_key\":\"")
                .nth(1)?
                .split('"')
                .next()?
                .to_owned();
            Some(key)
        })
        .unwrap_or_else(|| "bench-key".to_owned())
}

pub(crate) fn temp_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("insta-router-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("temp dir: {e}"))?;
    Ok(dir)
}

fn ingest(options: &Options) -> Result<(), String> {
    // The webhook path alone: workers would compete with it for the two cores (and the bench
    // account's CRM URL leads nowhere).
    on_fresh_server(
        options,
        &[("DELIVERY_WORKERS", "0"), ("AUTO_REPLY_WORKERS", "0")],
        measure,
    )
}

/// What a bench measures on a ready server: (options, its address, loadgen, the server, its
/// binary, its database, the run's directory).
pub(crate) type Measure =
    fn(&Options, &str, &Path, &mut Child, &Path, &Database, &Path) -> Result<(), String>;

/// Builds the release binaries, starts the server on a fresh database with `env` and the
/// `--env` settings, runs `measure` once it is ready, and removes the server, the database
/// and the run's directory whatever came of it.
pub(crate) fn on_fresh_server(
    options: &Options,
    env: &[(&str, &str)],
    measure: Measure,
) -> Result<(), String> {
    let (server_bin, loadgen) = build(options)?;
    let dir = temp_dir()?;
    let database = Database::create(&options.db, &dir)?;
    let mut env = env.to_vec();
    env.extend(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (mut server, addr) = start_server(&server_bin, &database, &dir, &env)?;
    let result = wait_ready(&addr).and_then(|()| {
        measure(
            options,
            &addr,
            &loadgen,
            &mut server,
            &server_bin,
            &database,
            &dir,
        )
    });
    let _ = server.kill();
    let _ = server.wait();
    database.remove();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn send(options: &Options) -> Result<(), String> {
    let (server_bin, loadgen) = build(options)?;
    let dir = temp_dir()?;
    let database = Database::create(&options.db, &dir)?;
    let graph_addr = format!("127.0.0.1:{}", free_port()?);
    let mut graph = Command::new(&loadgen)
        .args([
            "--addr",
            &graph_addr,
            "--mode",
            "fake-graph",
            "--delay-ms",
            &options.graph_delay_ms.to_string(),
        ])
        .spawn()
        .map_err(|e| format!("cannot start the fake Graph API: {e}"))?;
    let graph_url = format!("http://{graph_addr}");
    // Sending alone, unthrottled: the bench measures the pipeline, not SEND_RATE_PER_ACCOUNT
    // or API_RATE_LIMIT.
    let (mut server, addr) = start_server(
        &server_bin,
        &database,
        &dir,
        &[
            ("INSTAGRAM_API_BASE_URL", graph_url.as_str()),
            ("DELIVERY_WORKERS", "0"),
            ("AUTO_REPLY_WORKERS", "0"),
            ("SEND_RATE_PER_ACCOUNT", "1000000"),
            // One key makes every request; its rate limit would set the pace.
            ("API_RATE_LIMIT", "0"),
        ]
        .into_iter()
        .chain(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .collect::<Vec<_>>(),
    )?;
    let result = wait_ready(&addr).and_then(|()| {
        let key = admin_key(&server_bin, &database, &dir);
        measure_send(options, &addr, &key, &graph_addr, &loadgen, &server)
    });
    let _ = server.kill();
    let _ = server.wait();
    let _ = graph.kill();
    let _ = graph.wait();
    database.remove();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Runs loadgen in `mode` against `addr`; `account` is its `--account`, `key` its `--key`.
fn loadgen_run(
    loadgen: &Path,
    addr: &str,
    mode: &str,
    connections: usize,
    requests: usize,
    account: &str,
    key: &str,
) -> Result<Report, String> {
    loadgen_windows(
        loadgen,
        addr,
        mode,
        connections,
        requests,
        account,
        key,
        0,
        0,
    )
}

/// [`loadgen_run`], reporting every `window_seconds` of the run too (0: not).
#[allow(clippy::too_many_arguments)]
fn loadgen_windows(
    loadgen: &Path,
    addr: &str,
    mode: &str,
    connections: usize,
    requests: usize,
    account: &str,
    key: &str,
    window_seconds: u64,
    rate: usize,
) -> Result<Report, String> {
    let output = Command::new(loadgen)
        .args(["--window-seconds", &window_seconds.to_string()])
        .args(["--rate", &rate.to_string()])
        .args([
            "--addr",
            addr,
            "--mode",
            mode,
            "--connections",
            &connections.to_string(),
            "--requests",
            &requests.to_string(),
            "--secret",
            SECRET,
            "--account",
            account,
            "--key",
            key,
        ])
        .output()
        .map_err(|e| format!("cannot run loadgen: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "loadgen failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(Report::parse(&String::from_utf8_lossy(&output.stdout)))
}

fn measure_send(
    options: &Options,
    addr: &str,
    key: &str,
    graph_addr: &str,
    loadgen: &Path,
    server: &Child,
) -> Result<(), String> {
    let account_id = create_account(options, addr, key, "")?;
    let run = |mode: &str, requests: usize| {
        loadgen_run(
            loadgen,
            addr,
            mode,
            options.connections,
            requests,
            &account_id,
            key,
        )
    };
    say("warming up");
    run("root", 20_000)?;
    say(&format!("GET / ceiling: {} requests", options.requests));
    let ceiling = run("root", options.requests)?;
    say(&format!(
        "send: {} unique send requests, {} connections, {}, the fake Graph API answering after {} ms",
        options.requests, options.connections, options.db, options.graph_delay_ms
    ));
    let cpu_before = cpu_ticks(server.id(), false);
    let started = Instant::now();
    let accepted = run("send", options.requests)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let sent = loop {
        let sent = sends_completed(addr)?;
        if sent >= accepted.ok as u64 || Instant::now() > deadline {
            break sent;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let drain = started.elapsed().as_secs_f64();
    let cpu = cpu_ticks(server.id(), false).zip(cpu_before);
    let (_, count) = http(graph_addr, "GET", "/count", None)?;
    let graph_calls = json_number(&count, "count");
    let peak_rss_kib = peak_rss_kib(server.id());
    #[allow(clippy::print_stdout, clippy::cast_precision_loss)]
    {
        print_against_ceiling("send API (accepted)", "accepted", &ceiling, &accepted);
        println!(
            "sends completed: {sent} of {} accepted in {drain:.1} s from the first request: {:.0} sends/s (ratio to the ceiling {:.3})",
            accepted.ok,
            sent as f64 / drain,
            sent as f64 / drain / ceiling.per_second.max(1.0)
        );
        if let Some((after, before)) = cpu {
            // Steadier than the rates on a shared machine: what a send costs the server,
            // accept and completion together.
            println!(
                "CPU per send: server {:.0} us (from the first request until the last completed)",
                after.saturating_sub(before) as f64 * 1e6 / TICKS_PER_SECOND / sent.max(1) as f64
            );
        }
        println!(
            "fake Graph API calls: {graph_calls}{}",
            if graph_calls == accepted.ok as u64 {
                " (one per accepted request)"
            } else {
                " (MISMATCH)"
            }
        );
        println!(
            "peak RSS of the server: {:.1} MiB",
            peak_rss_kib as f64 / 1024.0
        );
    }
    if accepted.ok != options.requests || sent != accepted.ok as u64 || graph_calls != sent {
        return Err("sends accepted, completed and received by the fake Graph API differ".into());
    }
    Ok(())
}

/// `insta_router_sends_total{outcome="sent"}` from the server's `/metrics`.
fn sends_completed(addr: &str) -> Result<u64, String> {
    let (_, metrics) = http(addr, "GET", "/metrics", None)?;
    Ok(metrics
        .lines()
        .find_map(|l| l.strip_prefix("insta_router_sends_total{outcome=\"sent\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

fn measure(
    options: &Options,
    addr: &str,
    loadgen: &Path,
    server: &mut Child,
    server_bin: &Path,
    database: &Database,
    dir: &Path,
) -> Result<(), String> {
    let key = admin_key(server_bin, database, dir);
    create_account(options, addr, &key, "https://crm.example/hooks")?;
    let run = |mode: &str, requests: usize| {
        loadgen_run(
            loadgen,
            addr,
            mode,
            options.connections,
            requests,
            ACCOUNT,
            &key,
        )
    };
    say("warming up");
    run("root", 20_000)?;
    say(&format!(
        "GET / ceiling: {} requests, {} connections",
        options.requests, options.connections
    ));
    let ceiling = run("root", options.requests)?;
    say(&format!(
        "ingest: {} signed single-message webhooks, {} connections, {}",
        options.requests, options.connections, options.db
    ));
    let database_cpu_before = (options.db == "postgres")
        .then(postgres_cpu_ticks)
        .flatten();
    let server_cpu_before = cpu_ticks(server.id(), false);
    let log_before = log_written(options, server.id());
    let ingest = loadgen_windows(
        loadgen,
        addr,
        "ingest",
        options.connections,
        options.requests,
        ACCOUNT,
        &key,
        if options.sustained || options.rate > 0 {
            10
        } else {
            0
        },
        options.rate,
    )?;
    let server_cpu = cpu_ticks(server.id(), false).zip(server_cpu_before);
    let log = log_written(options, server.id()).zip(log_before);
    let peak_rss_kib = peak_rss_kib(server.id());

    stop(server)?;
    // The server's connections have closed, so their backends' CPU is counted now.
    let database_cpu = postgres_cpu_ticks().zip(database_cpu_before);
    let stats = stored(server_bin, database, dir)?;
    let messages = json_number(&stats, "messages");
    let journal = json_number(&stats, "webhook_journal");
    let jobs = json_number(&stats, "jobs");

    let durability = match options.db.as_str() {
        "sqlite" => {
            "SQLite WAL, synchronous=NORMAL (survives a killed process; SQLITE_SYNCHRONOUS=full also a power cut)"
        }
        "mysql" => {
            "InnoDB defaults (innodb_flush_log_at_trx_commit=1: the redo log flushed at commit)"
        }
        _ => "PostgreSQL defaults (synchronous_commit=on, fsync at commit)",
    };
    #[allow(clippy::print_stdout)]
    {
        print_against_ceiling("ingest", "ingest", &ceiling, &ingest);
        println!(
            "acknowledged {} of {} sent; stored: {} messages, {} journal entries, {} jobs{}",
            ingest.ok,
            options.requests,
            messages,
            journal,
            jobs,
            if messages == ingest.ok as u64 && journal == ingest.ok as u64 {
                " (equal: nothing lost)"
            } else {
                " (MISMATCH)"
            }
        );
        println!(
            "peak RSS of the server: {:.1} MiB",
            peak_rss_kib as f64 / 1024.0
        );
        // CPU time is steadier than throughput on a shared machine: it shows what a change
        // costs even when the rate moves with the machine's state.
        let per_event = |(after, before): (u64, u64)| {
            (after.saturating_sub(before)) as f64 * 1e6 / TICKS_PER_SECOND / ingest.ok.max(1) as f64
        };
        if let Some(ticks) = server_cpu {
            println!(
                "CPU per event: server {:.0} us (ingest phase){}",
                per_event(ticks),
                database_cpu.map_or(String::new(), |t| format!(
                    ", PostgreSQL backends {:.0} us (from the server's start to its exit)",
                    per_event(t)
                ))
            );
        }
        println!("durability: {durability}");
        if options.rate > 0 {
            println!(
                "open loop: {} webhooks/s scheduled; latencies count from each request's due time",
                options.rate
            );
        }
        if options.sustained || options.rate > 0 {
            print_windows(&ingest, 25.0);
        }
        println!("{}", files(options, database, dir, messages));
        if let Some((after, before)) = log {
            println!(
                "written during ingest: {:.0} bytes per event ({})",
                after.saturating_sub(before) as f64 / messages.max(1) as f64,
                match options.db.as_str() {
                    "sqlite" => "the server's writes to storage: WAL and checkpoints",
                    "mysql" => "InnoDB's redo log",
                    _ => "PostgreSQL's WAL",
                }
            );
        }
    }
    if messages != ingest.ok as u64 || ingest.ok != options.requests {
        return Err("rows stored differ from requests sent".into());
    }
    Ok(())
}

/// Stops the server with SIGTERM, waiting up to 30 s for it to finish what it holds.
pub(crate) fn stop(server: &mut Child) -> Result<(), String> {
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.try_wait().map_err(|e| e.to_string())?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// What the stopped server stored: `insta-router stats --json`.
pub(crate) fn stored(server_bin: &Path, database: &Database, dir: &Path) -> Result<String, String> {
    let stats = Command::new(server_bin)
        .env_clear()
        .current_dir(dir)
        .env("DATABASE_URL", &database.url)
        .env("LOG_LEVEL", "warn")
        .args(["stats", "--json"])
        .output()
        .map_err(|e| format!("cannot run insta-router stats: {e}"))?;
    Ok(String::from_utf8_lossy(&stats.stdout).to_string())
}

/// The table of `measured` beside the `GET /` ceiling of the same run, and their ratio.
#[allow(clippy::print_stdout)]
pub(crate) fn print_against_ceiling(column: &str, name: &str, ceiling: &Report, measured: &Report) {
    println!();
    println!("| measure | GET / (ceiling) | {column} |");
    println!("|---|---|---|");
    let rows = [
        ("requests/s", ceiling.per_second, measured.per_second, 0),
        ("p50 ms", ceiling.p50_ms, measured.p50_ms, 2),
        ("p99 ms", ceiling.p99_ms, measured.p99_ms, 2),
        ("max ms", ceiling.max_ms, measured.max_ms, 2),
    ];
    for (label, a, b, digits) in rows {
        println!("| {label} | {a:.digits$} | {b:.digits$} |");
    }
    println!(
        "| non-2xx / errors | {} / {} | {} / {} |",
        ceiling.non_2xx, ceiling.errors, measured.non_2xx, measured.errors
    );
    println!();
    println!(
        "{name}/ceiling ratio: {:.3}",
        measured.per_second / ceiling.per_second.max(1.0)
    );
}

/// The sustained run, window by window, and the windows whose p99 is 25 ms or more.
#[allow(clippy::print_stdout)]
pub(crate) fn print_windows(report: &Report, limit_ms: f64) {
    println!();
    println!("| from s | acknowledged | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    let mut over = Vec::new();
    for window in &report.windows {
        let cells: Vec<&str> = window.split(',').collect();
        println!("| {} |", cells.join(" | "));
        if cells
            .get(4)
            .and_then(|p| p.parse::<f64>().ok())
            .is_some_and(|p99| p99 >= limit_ms)
        {
            over.push(cells[0].to_owned());
        }
    }
    println!(
        "overall: p50 {:.2} ms, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}; windows with p99 >= {limit_ms} ms: {}",
        report.p50_ms,
        report.p90_ms,
        report.p99_ms,
        report.p999_ms,
        report.max_ms,
        if over.is_empty() {
            "none".to_owned()
        } else {
            over.join(", ")
        }
    );
}

/// The sizes of the database's files after the run, the bytes on disk per stored event
/// (`events`), and those bytes by table and by index, largest first.
pub(crate) fn files(options: &Options, database: &Database, dir: &Path, events: u64) -> String {
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let per_event = |bytes: u64| bytes as f64 / events.max(1) as f64;
    let (total, objects) = match options.db.as_str() {
        "sqlite" => {
            let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
            let (db, wal) = (size("bench.db"), size("bench.db-wal"));
            let objects = query_sizes(
                "sqlite3",
                &dir.join("bench.db").display().to_string(),
                "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC",
            );
            (
                format!(
                    "files: database {:.1} MiB, WAL {:.1} MiB; {:.0} bytes per stored event",
                    mib(db),
                    mib(wal),
                    per_event(db + wal)
                ),
                objects,
            )
        }
        "postgres" => {
            let name = database.name.clone().unwrap_or_default();
            let total = query_sizes(
                "psql",
                &name,
                "SELECT 'all', pg_database_size(current_database())",
            )
            .first()
            .map_or(0, |(_, bytes)| *bytes);
            // Heap with its TOAST, and each index, of the tables the server made.
            let objects = query_sizes(
                "psql",
                &name,
                "SELECT c.relname, pg_table_size(c.oid) FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'public' AND c.relkind = 'r' \
                 UNION ALL SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'public' AND c.relkind = 'i' ORDER BY 2 DESC",
            );
            (
                format!(
                    "files: database {:.1} MiB (pg_database_size; the WAL is the server's, shared); {:.0} bytes per stored event",
                    mib(total),
                    per_event(total)
                ),
                objects,
            )
        }
        _ => {
            let name = database.name.clone().unwrap_or_default();
            // InnoDB's figures are its own estimates until the statistics are refreshed.
            let tables: Vec<String> = query_sizes(
                "mysql",
                &name,
                &format!(
                    "SELECT table_name, 0 FROM information_schema.tables WHERE table_schema = '{name}'"
                ),
            )
            .into_iter()
            .map(|(table, _)| table)
            .collect();
            query_sizes(
                "mysql",
                &name,
                &format!("ANALYZE TABLE {}", tables.join(", ")),
            );
            let objects = query_sizes(
                "mysql",
                &name,
                &format!(
                    "SELECT table_name, data_length FROM information_schema.tables \
                     WHERE table_schema = '{name}' UNION ALL \
                     SELECT CONCAT(table_name, ' indexes'), index_length \
                     FROM information_schema.tables WHERE table_schema = '{name}' ORDER BY 2 DESC"
                ),
            );
            let total: u64 = objects.iter().map(|(_, bytes)| bytes).sum();
            (
                format!(
                    "files: database {:.1} MiB (InnoDB data and indexes; the redo log is the server's, shared); {:.0} bytes per stored event",
                    mib(total),
                    per_event(total)
                ),
                objects,
            )
        }
    };
    let by_object = objects
        .iter()
        // Not the tables and indexes of a page or two: the ones the events fill.
        .filter(|(_, bytes)| *bytes > 16 * 1024 && per_event(*bytes) >= 1.0)
        .map(|(name, bytes)| format!("{name} {:.0}", per_event(*bytes)))
        .collect::<Vec<_>>();
    if by_object.is_empty() {
        total
    } else {
        format!(
            "{total}\nbytes per stored event by table and index: {}",
            by_object.join(", ")
        )
    }
}

/// How many bytes the database has written so far: for SQLite the server process's writes to
/// storage (`write_bytes` of `/proc/<pid>/io`: the WAL, and the checkpoints into the
/// database file), for PostgreSQL its WAL position, for MySQL the bytes of its redo log.
/// The latter two are the database server's, shared with whatever else runs on it.
fn log_written(options: &Options, server: u32) -> Option<u64> {
    let (client, database, sql) = match options.db.as_str() {
        "sqlite" => {
            let io = std::fs::read_to_string(format!("/proc/{server}/io")).ok()?;
            return io
                .lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))?
                .trim()
                .parse()
                .ok();
        }
        "mysql" => (
            "mysql",
            "information_schema",
            "SELECT 'redo', VARIABLE_VALUE FROM GLOBAL_STATUS \
             WHERE VARIABLE_NAME = 'INNODB_OS_LOG_WRITTEN'",
        ),
        _ => (
            "psql",
            "test",
            "SELECT 'wal', pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
        ),
    };
    query_sizes(client, database, sql)
        .first()
        .map(|(_, bytes)| *bytes)
}

/// `(name, bytes)` rows of `sql` run on `database` (a SQLite file, or a PostgreSQL or MySQL
/// database's name) by the backend's command-line client `program`; none when the client is
/// missing or fails (the breakdown is then left out).
fn query_sizes(program: &str, database: &str, sql: &str) -> Vec<(String, u64)> {
    let Ok(output) = client(program, database)
        .arg(sql)
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (name, bytes) = line.split_once(['|', '\t'])?;
            Some((name.trim().to_owned(), bytes.trim().parse().ok()?))
        })
        .collect()
}

pub(crate) struct Report {
    pub(crate) ok: usize,
    pub(crate) non_2xx: usize,
    pub(crate) errors: usize,
    pub(crate) per_second: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
    /// `start_s,count,p50,p90,p99,p999,max` per window, when asked for.
    pub(crate) windows: Vec<String>,
}

impl Report {
    fn parse(text: &str) -> Self {
        Self::parse_prefixed(text, "")
    }

    /// The figures of loadgen's lines that start with `prefix` (`e2e_`: the CRM's side);
    /// `ok`, `non_2xx`, `errors` and `per_second` are read unprefixed.
    pub(crate) fn parse_prefixed(text: &str, prefix: &str) -> Self {
        let value = |key: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let get = |key: &str| -> f64 {
            if matches!(key, "ok" | "non_2xx" | "errors" | "per_second") {
                value(key)
            } else {
                value(&format!("{prefix}{key}"))
            }
        };
        let window_key = format!("{prefix}window=");
        Self {
            ok: get("ok") as usize,
            non_2xx: get("non_2xx") as usize,
            errors: get("errors") as usize,
            per_second: get("per_second"),
            p50_ms: get("p50_ms"),
            p90_ms: get("p90_ms"),
            p99_ms: get("p99_ms"),
            p999_ms: get("p999_ms"),
            max_ms: get("max_ms"),
            windows: text
                .lines()
                .filter_map(|l| l.strip_prefix(window_key.as_str()))
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// The number after `"key":` in a flat JSON object.
pub(crate) fn json_number(json: &str, key: &str) -> u64 {
    json.split(&format!("\"{key}\":"))
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0)
}

pub(crate) struct Database {
    pub(crate) url: String,
    /// The PostgreSQL or MySQL database made for the run (none for SQLite's file).
    pub(crate) name: Option<String>,
    /// Its server's command-line client: `psql` or `mysql` (`sqlite3` for a file).
    client: &'static str,
}

impl Database {
    pub(crate) fn create(kind: &str, dir: &Path) -> Result<Self, String> {
        let (client, url) = match kind {
            "sqlite" => {
                return Ok(Self {
                    url: format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()),
                    name: None,
                    client: "sqlite3",
                });
            }
            "mysql" => ("mysql", "mysql://root@127.0.0.1:3306"),
            _ => ("psql", "postgres://postgres@127.0.0.1:5432"),
        };
        let name = format!("irt_bench_{}", std::process::id());
        admin(client, &format!("CREATE DATABASE {name}"))?;
        Ok(Self {
            url: format!("{url}/{name}"),
            name: Some(name),
            client,
        })
    }

    /// The run's PostgreSQL database, if it runs on PostgreSQL.
    pub(crate) fn postgres_name(&self) -> Option<&String> {
        self.name.as_ref().filter(|_| self.client == "psql")
    }

    pub(crate) fn remove(&self) {
        if let Some(name) = &self.name {
            let force = if self.client == "psql" {
                " WITH (FORCE)"
            } else {
                ""
            };
            let _ = admin(
                self.client,
                &format!("DROP DATABASE IF EXISTS {name}{force}"),
            );
        }
    }
}

/// `client` (`psql`, `mysql` or `sqlite3`) on `database` (a server's database, or a SQLite
/// file), connected as the bench connects, unaligned and without headers, its next argument
/// the SQL to run.
fn client(client: &str, database: &str) -> Command {
    let mut command = Command::new(client);
    match client {
        "psql" => command.args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-q",
            "-At",
            "-F",
            "|",
            "-d",
            database,
            "-c",
        ]),
        "mysql" => command.args([
            "-h",
            "127.0.0.1",
            "-u",
            "root",
            "-N",
            "-B",
            "-D",
            database,
            "-e",
        ]),
        _ => command.args(["-readonly", "-separator", "|", database]),
    };
    command
}

/// Runs `sql` with `client` on its server's `test` database.
fn admin(program: &str, sql: &str) -> Result<(), String> {
    let status = client(program, "test")
        .arg(sql)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} failed: {sql}"))
    }
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

pub(crate) fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

pub(crate) fn wait_ready(addr: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok((200, _)) = http(addr, "GET", "/health", None) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("the server did not become ready within 60 s".into())
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Result<(u16, String), String> {
    http_as(addr, "", method, path, json)
}

/// [`http`] with `Authorization: Bearer <key>` when `key` is not empty.
/// Creates the bench account, delivering to `crm` unless it is empty, with a rule that never
/// fires when `--rule` asks for one; its id.
pub(crate) fn create_account(
    options: &Options,
    addr: &str,
    key: &str,
    crm: &str,
) -> Result<String, String> {
    let crm = if crm.is_empty() {
        String::new()
    } else {
        format!(r#","crm_webhook_url":"{crm}","webhook_secret":"bench-crm-secret""#)
    };
    let account = format!(
        r#"{{"instagram_account_id":"{ACCOUNT}","username":"bench.shop","access_token":"IGQVJ-bench"{crm}}}"#
    );
    let (status, body) = http_as(addr, key, "POST", "/api/v1/accounts", Some(&account))?;
    if status != 201 {
        return Err(format!("creating the bench account: {status} {body}"));
    }
    let id = body
        .split("\"account_id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or("no account_id in the answer")?
        .to_owned();
    if options.rule {
        let rule = r#"{"name":"never","conditions":[{"type":"keywords","any_of":["zzz-never-said"]}],"reply":{"text":"-"}}"#;
        let path = format!("/api/v1/accounts/{id}/rules");
        let (status, body) = http_as(addr, key, "POST", &path, Some(rule))?;
        if status != 201 {
            return Err(format!("creating the bench rule: {status} {body}"));
        }
    }
    Ok(id)
}

pub(crate) fn http_as(
    addr: &str,
    key: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let body = json.unwrap_or("");
    let authorization = if key.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {key}\r\n")
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The process's peak resident set (`VmHWM`), in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Linux reports CPU times in `USER_HZ` ticks, 100 per second on every architecture.
pub(crate) const TICKS_PER_SECOND: f64 = 100.0;

/// User and system CPU ticks of `pid` from `/proc/<pid>/stat`, with `children` those of its
/// exited and reaped children too.
pub(crate) fn cpu_ticks(pid: u32, children: bool) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14-17 of the line, 12-15 here.
    let take = if children { 4 } else { 2 };
    fields
        .get(11..11 + take)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum()
}

/// CPU ticks of the local PostgreSQL server's main process and its exited children (the
/// backends of closed connections), when it runs on this machine.
pub(crate) fn postgres_cpu_ticks() -> Option<u64> {
    let comm = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok();
    let postmaster = std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let name = entry.ok()?.file_name().into_string().ok()?;
        if comm(&name)?.trim() != "postgres" {
            return None;
        }
        let status = std::fs::read_to_string(format!("/proc/{name}/status")).ok()?;
        let parent = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))?
            .trim()
            .to_owned();
        (comm(&parent).as_deref().map(str::trim) != Some("postgres")).then_some(name)
    })?;
    cpu_ticks(postmaster.parse().ok()?, true)
}

#[allow(clippy::print_stderr)]
pub(crate) fn say(message: &str) {
    eprintln!("bench: {message}");
}
