//! `cargo xtask bench e2e [--db sqlite|postgres] [--rate R] [--connections N] [--requests N]`:
//! webhooks in, CRM deliveries out, with every worker on.
//!
//! loadgen (`--mode e2e`) sends signed unique webhooks and is also the account's CRM, a local
//! sink answering 200 at once, so it sees when each webhook it sent reached the CRM. Without
//! `--rate` the webhooks go as fast as 64 connections take them (closed loop, 100,000 by
//! default): the delivery-throughput mode, which reports deliveries per second while
//! webhooks keep arriving and how long the queue took to drain after. With `--rate R` they go
//! on a fixed schedule for 60 s (open loop), and the arrival-to-CRM latency is reported per
//! 10-second window, counted from each webhook's due time.
//!
//! Zero loss is checked: every acknowledged webhook stored and delivered.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Instant;

use crate::bench::{
    ACCOUNT, Database, Options, Report, SECRET, TICKS_PER_SECOND, admin_key, cpu_ticks,
    create_account, files, free_port, json_number, on_fresh_server, parse, postgres_cpu_ticks,
    print_against_ceiling, print_windows, say, stop, stored,
};

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    if options.sustained {
        return Err("--sustained is for bench ingest".into());
    }
    // Every worker at its default; the sink is on loopback.
    on_fresh_server(&options, &[("CRM_ALLOW_PRIVATE_NETWORKS", "true")], measure)
}

#[allow(clippy::too_many_lines)]
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
    let sink = format!("127.0.0.1:{}", free_port()?);
    create_account(options, addr, &key, &format!("http://{sink}/hooks"))?;
    let loadgen_run = |mode: &str, requests: usize, extra: &[&str]| -> Result<String, String> {
        let output = Command::new(loadgen)
            .args(["--addr", addr, "--mode", mode, "--secret", SECRET])
            .args(["--account", ACCOUNT, "--key", &key])
            .args(["--connections", &options.connections.to_string()])
            .args(["--requests", &requests.to_string()])
            .args(extra)
            .output()
            .map_err(|e| format!("cannot run loadgen: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "loadgen failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    say("warming up");
    loadgen_run("root", 20_000, &[])?;
    say(&format!("GET / ceiling: {} requests", options.requests));
    let ceiling = Report::parse_prefixed(&loadgen_run("root", options.requests, &[])?, "");
    say(&format!(
        "e2e: {} webhooks{}, {} connections, {}, delivered to a local CRM sink",
        options.requests,
        if options.rate > 0 {
            format!(" at {}/s", options.rate)
        } else {
            String::new()
        },
        options.connections,
        options.db
    ));
    let database_cpu_before = (options.db == "postgres")
        .then(postgres_cpu_ticks)
        .flatten();
    let server_cpu_before = cpu_ticks(server.id(), false);
    let started = Instant::now();
    let rate = options.rate.to_string();
    let text = loadgen_run(
        "e2e",
        options.requests,
        &[
            "--sink-addr",
            &sink,
            "--rate",
            &rate,
            "--window-seconds",
            "10",
        ],
    )?;
    let elapsed = started.elapsed();
    let server_cpu = cpu_ticks(server.id(), false).zip(server_cpu_before);
    let ingest = Report::parse_prefixed(&text, "");
    let e2e = Report::parse_prefixed(&text, "e2e_");
    let value = |key: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let delivered = value("delivered") as usize;
    let ingest_seconds = value("ingest_seconds");
    let last_delivery = value("last_delivery_seconds");

    stop(server)?;
    let database_cpu = postgres_cpu_ticks().zip(database_cpu_before);
    let stats = stored(server_bin, database, dir)?;
    let messages = json_number(&stats, "messages");

    #[allow(clippy::print_stdout, clippy::cast_precision_loss)]
    {
        print_against_ceiling("webhooks", "ingest", &ceiling, &ingest);
        println!(
            "acknowledged {} of {}; stored {messages} messages; delivered to the CRM {delivered} ({} duplicates, {} unknown){}",
            ingest.ok,
            options.requests,
            value("duplicates"),
            value("strangers"),
            if messages == ingest.ok as u64 && delivered == ingest.ok {
                " (nothing lost)"
            } else {
                " (MISMATCH)"
            }
        );
        println!(
            "deliveries: {:.0}/s while webhooks arrived ({} of {} in {ingest_seconds:.1} s); {:.0}/s over the whole run; the last one {:.1} s after the last webhook was answered",
            value("delivered_during_ingest") / ingest_seconds.max(0.001),
            value("delivered_during_ingest"),
            ingest.ok,
            delivered as f64 / last_delivery.max(0.001),
            (last_delivery - ingest_seconds).max(0.0),
        );
        let per_event = |(after, before): (u64, u64)| {
            (after.saturating_sub(before)) as f64 * 1e6 / TICKS_PER_SECOND / ingest.ok.max(1) as f64
        };
        if let Some(ticks) = server_cpu {
            println!(
                "CPU per event, ingest and delivery: server {:.0} us (over {:.1} s){}",
                per_event(ticks),
                elapsed.as_secs_f64(),
                database_cpu.map_or(String::new(), |t| format!(
                    ", PostgreSQL backends {:.0} us (from the server's start to its exit)",
                    per_event(t)
                ))
            );
        }
        if options.rate > 0 {
            println!(
                "open loop: {} webhooks/s scheduled; latencies count from each webhook's due time",
                options.rate
            );
        }
        println!();
        println!("webhook answers:");
        print_windows(&ingest, 25.0);
        println!();
        println!("arrival at the CRM, from the webhook's send (or due) time:");
        print_windows(&e2e, 50.0);
        println!("{}", files(options, database, dir, messages));
    }
    if messages != ingest.ok as u64 || ingest.ok != options.requests || delivered != ingest.ok {
        return Err("webhooks acknowledged, stored and delivered differ".into());
    }
    Ok(())
}
