//! `cargo xtask bench analytics [--db sqlite|postgres] [--messages N] [--server PATH]`.
//!
//! Starts the release server on a fresh database, connects one account, and stores N
//! messages (default 1,000,000) over the last 30 days with what they bring in a running
//! service: 50,000 conversations, API sends, auto-replies, CRM deliveries with their attempts
//! (a few dead), rule evaluations. The rows are written by SQL (`sqlite3` or `psql`) with the
//! server stopped, as when a busy installation upgrades; the server is started again and
//! builds the analytics rollup from them (its time is reported); then every analytics
//! endpoint is asked over 30 days by day and 7 days by hour, for the account
//! and for all accounts: 5 times each after one warm-up. Reports the median and worst time
//! per query, the ratio to `GET /health` measured in the same run, and the CPU the server
//! (and, on PostgreSQL, the database server) spent per query.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench::{
    Database, admin_key, build, cpu_ticks, http_as, parse, say, start_server, temp_dir, wait_ready,
};

const ACCOUNT: &str = "17841400000000001";
const RUNS: usize = 5;
/// The goal: each query under 200 ms over a million messages.
const GOAL_MS: f64 = 200.0;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut rest = Vec::new();
    let mut messages: u64 = 1_000_000;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--messages" {
            messages = args
                .get(i + 1)
                .and_then(|v| v.parse().ok())
                .ok_or("--messages takes a number")?;
            i += 2;
        } else {
            rest.push(args[i].clone());
            i += 1;
        }
    }
    if messages < 1000 {
        return Err("--messages must be at least 1000".into());
    }
    let options = parse(&rest)?;
    if options.db == "mysql" {
        return Err("bench analytics seeds SQLite or PostgreSQL only".into());
    }
    let (server_bin, _) = build(&options)?;
    let dir = temp_dir()?;
    let database = Database::create(&options.db, &dir)?;
    let env = [("DELIVERY_WORKERS", "0"), ("AUTO_REPLY_WORKERS", "0")];
    let (mut server, addr) = start_server(&server_bin, &database, &dir, &env)?;
    let result = (|| {
        wait_ready(&addr)?;
        let key = admin_key(&server_bin, &database, &dir);
        let body = format!(
            r#"{{"instagram_account_id":"{ACCOUNT}","username":"bench","access_token":"bench-token-0123456789"}}"#
        );
        let (status, created) = http_as(&addr, &key, "POST", "/api/v1/accounts", Some(&body))?;
        if status != 201 {
            return Err(format!("creating the account: {status} {created}"));
        }
        let account = created
            .split("\"account_id\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .ok_or("no account id")?
            .to_owned();
        // The rows are stored with the server stopped and the rollup forgotten, as when a
        // busy installation upgrades: the first pass after the start builds it from them.
        let _ = server.kill();
        let _ = server.wait();
        say(&format!(
            "storing {messages} messages and what comes with them"
        ));
        let started = Instant::now();
        sql(
            &database,
            &dir,
            &seed_sql(
                database.postgres_name().is_some(),
                messages,
                &account,
                now_micros()?,
            ),
        )?;
        say(&format!(
            "stored in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        let (restarted, addr) = start_server(&server_bin, &database, &dir, &env)?;
        server = restarted;
        let started = Instant::now();
        wait_ready(&addr)?;
        while !sql_true(
            &database,
            &dir,
            "SELECT covered_from IS NOT NULL AND lease_until IS NULL FROM analytics_rollup",
        )? {
            if started.elapsed() > Duration::from_secs(600) {
                return Err("the rollup was not built within 10 minutes".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        say(&format!(
            "first rollup pass (server start included) took {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        measure(&addr, &key, &account, server.id(), &options.db, messages)
    })();
    let _ = server.kill();
    let _ = server.wait();
    database.remove();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn now_micros() -> Result<i64, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    i64::try_from(now.as_micros()).map_err(|e| e.to_string())
}

/// The seed, in SQL both backends run; `numbers` and `hex` differ.
fn seed_sql(postgres: bool, n: u64, account: &str, now_micros: i64) -> String {
    let numbers = |count: u64| {
        if postgres {
            format!(
                "(SELECT generate_series(CAST(0 AS BIGINT), {}) AS i) AS n",
                count - 1
            )
        } else {
            format!(
                "(WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {}) SELECT i FROM s) AS n",
                count - 1
            )
        }
    };
    let hex = |expr: &str| {
        if postgres {
            format!("lpad(to_hex({expr}), 32, '0')")
        } else {
            format!("printf('%032x', {expr})")
        }
    };
    let conversations = n / 20;
    let span: i64 = 30 * 86_400 * 1_000_000;
    let start = now_micros - span;
    // Message i: conversation i % C, at an even step through the 30 days; of every five
    // rounds of a conversation three are the customer's, one an API send, one an auto-reply.
    let ts = format!("({start} + i * {} )", span / i64::try_from(n).unwrap_or(1));
    let customer = format!("(1000000000000000 + i % {conversations})");
    let round = format!("((i / {conversations}) % 5)");
    let conversation = format!("'conv_' || {customer} || '_{ACCOUNT}'");
    let msg = hex("i");
    format!(
        "BEGIN;
INSERT INTO messages (id, instagram_account_id, conversation_id, mid, sender_id, recipient_id, message_text, direction, kind, timestamp, created_at)
SELECT 'msg_' || {msg}, '{ACCOUNT}', {conversation}, 'mid.bench.' || i,
  CASE WHEN {round} < 3 THEN CAST({customer} AS VARCHAR(32)) ELSE '{ACCOUNT}' END,
  CASE WHEN {round} < 3 THEN '{ACCOUNT}' ELSE CAST({customer} AS VARCHAR(32)) END,
  'message ' || i,
  CASE WHEN {round} < 3 THEN 'inbound' ELSE 'outbound' END,
  CASE WHEN i % 50 = 7 THEN 'image' WHEN i % 97 = 5 THEN 'story_reply' ELSE 'text' END,
  {ts}, {ts}
FROM {numbers};
INSERT INTO conversations (id, instagram_account_id, customer_id, started_at, last_message_at, last_inbound_at)
SELECT {conversation}, '{ACCOUNT}', CAST({customer} AS VARCHAR(32)), {ts}, {now_micros}, {now_micros} FROM {conversations_numbers};
INSERT INTO outbound_messages (id, account_id, recipient_id, message_text, idempotency_key, status, error_code, created_at, sent_at)
SELECT 'msg_' || {msg}, '{account}', CAST({customer} AS VARCHAR(32)), 'answer', 'bench-' || i,
  CASE WHEN i % 100 = 3 THEN 'failed' ELSE 'sent' END, CASE WHEN i % 100 = 3 THEN '551' END, {ts}, {ts}
FROM {numbers} WHERE {round} = 3;
INSERT INTO auto_replies (trigger_message_id, conversation_id, rule_id, reply_message_id, status, created_at)
SELECT 'msg_t' || {msg}, {conversation}, CASE WHEN i % 3 = 0 THEN 'rule_prices' ELSE 'rule_hours' END,
  'msg_' || {msg}, 'sent', {ts}
FROM {numbers} WHERE {round} = 4;
INSERT INTO jobs (id, kind, account_id, subject, payload, status, attempts, run_at, created_at, updated_at)
SELECT 'job_' || {msg}, 'crm_delivery', '{account}', 'msg_' || {msg}, '{{}}',
  CASE WHEN i % 200 = 1 THEN 'dead' ELSE 'done' END, CASE WHEN i % 10 = 1 THEN 2 ELSE 1 END, {ts}, {ts}, {ts}
FROM {numbers} WHERE {round} < 3;
INSERT INTO delivery_attempts (job_id, attempt, started_at, duration_ms, outcome, status_code)
SELECT 'job_' || {msg}, 1, {ts} + 2000, 20 + i % 80, 'delivered', 200
FROM {numbers} WHERE {round} < 3 AND i % 200 <> 1;
INSERT INTO rule_evaluations (account_id, hour, outcome, evaluations)
SELECT '{account}', {start} - {start} % 3600000000 + i * 3600000000,
  CASE WHEN i % 2 = 0 THEN 'fired' ELSE 'no_match' END, 10 + i % 7
FROM {hours};
UPDATE analytics_rollup SET covered_from = NULL, covered_to = NULL, lease_until = NULL;
DELETE FROM analytics_hourly;
COMMIT;
ANALYZE;
",
        numbers = numbers(n),
        conversations_numbers = numbers(conversations),
        hours = numbers(720),
    )
}

/// The database's command-line client, on the bench database.
fn client(database: &Database, dir: &std::path::Path) -> Command {
    match database.postgres_name() {
        Some(name) => {
            let mut c = Command::new("psql");
            c.args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                name,
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
            ]);
            c
        }
        None => {
            let mut c = Command::new("sqlite3");
            c.args(["-bail", &dir.join("bench.db").display().to_string()]);
            c
        }
    }
}

/// Runs `sql` with the database's command-line client; its output.
fn sql(database: &Database, dir: &std::path::Path, sql: &str) -> Result<String, String> {
    let mut command = client(database, dir);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot run {:?} (the bench needs it): {e}",
                command.get_program()
            )
        })?;
    std::io::Write::write_all(child.stdin.as_mut().ok_or("no stdin")?, sql.as_bytes())
        .map_err(|e| e.to_string())?;
    drop(child.stdin.take());
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("{:?} failed", command.get_program()))
    }
}

/// Whether a one-value query answers true (`1` or `t`).
fn sql_true(database: &Database, dir: &std::path::Path, query: &str) -> Result<bool, String> {
    let out = sql(database, dir, &format!("{query};"))?;
    Ok(matches!(out.trim(), "1" | "t"))
}

/// CPU ticks of every PostgreSQL process on this machine (its backends included).
fn postgres_ticks() -> u64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.ok()?.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "postgres").then(|| cpu_ticks(pid.parse().ok()?, false))?
        })
        .sum()
}

/// Median and worst of `RUNS` timed requests (after one warm-up), and CPU ticks spent.
fn time(
    addr: &str,
    key: &str,
    path: &str,
    pid: u32,
    postgres: bool,
) -> Result<(f64, f64, u64), String> {
    let (status, body) = http_as(addr, key, "GET", path, None)?;
    if status != 200 {
        return Err(format!("{path}: {status} {body}"));
    }
    let cpu = || cpu_ticks(pid, false).unwrap_or(0) + if postgres { postgres_ticks() } else { 0 };
    let before = cpu();
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        http_as(addr, key, "GET", path, None)?;
        times.push(started.elapsed());
    }
    let ticks = cpu().saturating_sub(before);
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok((ms(times[RUNS / 2]), ms(times[RUNS - 1]), ticks))
}

#[allow(clippy::print_stdout, clippy::cast_precision_loss)]
fn measure(addr: &str, key: &str, account: &str, pid: u32, db: &str, n: u64) -> Result<(), String> {
    let postgres = db == "postgres";
    let (baseline, _, _) = time(addr, key, "/health", pid, postgres)?;
    println!(
        "\nanalytics over {n} stored messages on {db}; baseline GET /health: {baseline:.2} ms (median of {RUNS})"
    );
    println!(
        "{:<58} {:>9} {:>9} {:>9} {:>11}",
        "query", "median ms", "worst ms", "x health", "CPU ms/query"
    );
    let mut over = Vec::new();
    for endpoint in [
        "messages",
        "sends",
        "deliveries",
        "response-times",
        "auto-replies",
    ] {
        for (range, bucket) in [("30d", "day"), ("7d", "hour")] {
            let days: i64 = if range == "30d" { 30 } else { 7 };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| e.to_string())?
                .as_secs();
            let from = now.saturating_sub(u64::try_from(days * 86_400).unwrap_or(0));
            let from = rfc3339(from);
            for scope in ["account", "all"] {
                let mut path = format!("/api/v1/analytics/{endpoint}?bucket={bucket}&from={from}");
                if scope == "account" {
                    path.push_str(&format!("&account_id={account}"));
                }
                let (median, worst, ticks) = time(addr, key, &path, pid, postgres)?;
                let label = format!("{endpoint} {range}/{bucket} {scope}");
                let cpu_ms = ticks as f64 * 10.0 / RUNS as f64;
                println!(
                    "{label:<58} {median:>9.1} {worst:>9.1} {:>9.0} {cpu_ms:>11.1}",
                    median / baseline
                );
                if median > GOAL_MS {
                    over.push(label);
                }
            }
        }
    }
    if over.is_empty() {
        println!("every query's median is under {GOAL_MS} ms");
    } else {
        println!("over {GOAL_MS} ms: {}", over.join(", "));
    }
    Ok(())
}

/// `secs` since the epoch as RFC 3339 in UTC (the civil-from-days algorithm).
fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
