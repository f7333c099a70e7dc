//! `loadgen`: drives a running insta-router at a fixed concurrency and prints what it saw.
//!
//! ```text
//! loadgen --addr 127.0.0.1:8000 --mode ingest|send|root --connections 64 --requests 100000 \
//!         [--secret S] [--account ID] [--key API_KEY] [--run-id R]
//! loadgen --addr 127.0.0.1:9000 --mode fake-graph [--delay-ms 0]
//! loadgen --addr 127.0.0.1:8000 --mode e2e --sink-addr 127.0.0.1:9100 [--rate R] ...
//! ```
//!
//! `ingest` posts unique single-message webhooks (mid `mid.bench.{run}.{n}`), signed like
//! Meta's; `send` posts unique send requests for account `--account` (`acc_...`) to
//! `/api/v1/messages/send`; `root` sends `GET /`, the HTTP ceiling. Requests are built and
//! signed before the clock starts. `fake-graph` serves a Graph API that takes every
//! `POST /me/messages` and counts them (`GET /count`), until killed. Each connection is a keep-alive HTTP/1.1 stream written and read by hand:
//! a full client library would compete with the server for the same two cores.
//!
//! Output: one `key=value` per line (requests, ok, non_2xx, errors, seconds, per_second,
//! p50_ms, p90_ms, p99_ms, p999_ms, max_ms), for `cargo xtask bench` to read; with
//! `--rate R`, requests go out on a fixed schedule of R per second and each latency counts
//! from its request's due time (open loop); with `--window-seconds N`, also one `window=start_s,count,p50,p90,p99,p999,max` line per N
//! seconds of the run (by when each response arrived), so a stall shows in its window.
//!
//! `e2e` sends `ingest`'s webhooks and is also the CRM (`--sink-addr`, see [`sink`]): it
//! waits until every acknowledged webhook was delivered (or none arrived for
//! `--drain-seconds`, 60 by default) and adds `delivered`, `duplicates`, `strangers`,
//! `ingest_seconds`, `delivered_during_ingest`, `last_delivery_seconds` and the
//! arrival-to-CRM latencies as `e2e_p50_ms`... and `e2e_window=` lines (by arrival at the CRM),
//! each counted from its webhook's send (or due) time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod sink;

use sink::Sink;

struct Options {
    addr: String,
    mode: String,
    connections: usize,
    requests: usize,
    secret: String,
    account: String,
    key: String,
    run_id: String,
    delay_ms: u64,
    window_seconds: u64,
    /// Requests per second on a fixed schedule (open loop); 0: each connection sends its
    /// next request as soon as the last is answered (closed loop).
    rate: u64,
    /// `e2e`: where the CRM sink listens.
    sink_addr: String,
    /// `e2e`: how long to wait for the next delivery before giving up on the rest.
    drain_seconds: u64,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        addr: "127.0.0.1:8000".into(),
        mode: "ingest".into(),
        connections: 64,
        requests: 100_000,
        secret: "bench-secret".into(),
        account: "17841400000000001".into(),
        key: "bench-key".into(),
        run_id: format!(
            "{}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ),
        delay_ms: 0,
        window_seconds: 0,
        rate: 0,
        sink_addr: "127.0.0.1:9100".into(),
        drain_seconds: 60,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args
            .get(i + 1)
            .cloned()
            .ok_or(format!("{} needs a value", args[i]))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{}: {e}", args[i]))
        };
        match args[i].as_str() {
            "--addr" => options.addr = value.clone(),
            "--mode" => options.mode = value.clone(),
            "--connections" => options.connections = number()?.max(1),
            "--requests" => options.requests = number()?,
            "--secret" => options.secret = value.clone(),
            "--account" => options.account = value.clone(),
            "--key" => options.key = value.clone(),
            "--run-id" => options.run_id = value.clone(),
            "--delay-ms" => options.delay_ms = number()? as u64,
            "--window-seconds" => options.window_seconds = number()? as u64,
            "--rate" => options.rate = number()? as u64,
            "--sink-addr" => options.sink_addr = value.clone(),
            "--drain-seconds" => options.drain_seconds = number()? as u64,
            other => return Err(format!("unknown option {other}")),
        }
        i += 2;
    }
    if !matches!(
        options.mode.as_str(),
        "ingest" | "send" | "root" | "fake-graph" | "e2e"
    ) {
        return Err("--mode must be ingest, send, root, fake-graph or e2e".into());
    }
    Ok(options)
}

/// Every request of the run, ready to write.
fn prepare(options: &Options) -> Vec<Vec<u8>> {
    let host = &options.addr;
    (0..options.requests)
        .map(|n| {
            if options.mode == "root" {
                return format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
            }
            if options.mode == "send" {
                let customer = 1_000_000_000_000_000_u64 + (n as u64 % 5_000);
                let body = format!(
                    r#"{{"account_id":"{account}","recipient_id":"{customer}","message":"Your order {n} ships today.","idempotency_key":"bench-{run}-{n}"}}"#,
                    account = options.account,
                    run = options.run_id,
                );
                let mut request = format!(
                    "POST /api/v1/messages/send HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len(),
                    key = options.key,
                )
                .into_bytes();
                request.extend_from_slice(body.as_bytes());
                return request;
            }
            let account = &options.account;
            let customer = 1_000_000_000_000_000_u64 + (n as u64 % 5_000);
            let ts = 1_700_000_000_000_u64 + n as u64;
            let body = format!(
                r#"{{"object":"instagram","entry":[{{"id":"{account}","time":{ts},"messaging":[{{"sender":{{"id":"{customer}"}},"recipient":{{"id":"{account}"}},"timestamp":{ts},"message":{{"mid":"mid.bench.{run}.{n}","text":"Hi! is the blue one in stock? order {n}"}}}}]}}]}}"#,
                run = options.run_id,
            );
            let signature = insta_router_instagram::sign_body(&options.secret, body.as_bytes());
            let mut request = format!(
                "POST /webhooks/instagram HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nX-Hub-Signature-256: {signature}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            request.extend_from_slice(body.as_bytes());
            request
        })
        .collect()
}

struct Outcome {
    /// (milliseconds since the run began when the response arrived, latency in µs).
    latencies_us: Vec<(u32, u32)>,
    ok: usize,
    non_2xx: usize,
    errors: usize,
}

/// Reads one response; returns its status.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    let head = read_message(stream, buf).await?;
    Ok(head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

async fn connection(
    addr: String,
    requests: Arc<Vec<Vec<u8>>>,
    next: Arc<AtomicUsize>,
    origin: Instant,
    rate: u64,
    sink: Option<Arc<Sink>>,
) -> Outcome {
    let mut outcome = Outcome {
        latencies_us: Vec::new(),
        ok: 0,
        non_2xx: 0,
        errors: 0,
    };
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let Some(request) = requests.get(n) else {
            break;
        };
        // Open loop: request n is due at n / rate seconds, and its latency counts from then,
        // so a stall shows as the latency of every request that waited, not as fewer requests.
        let started = match (n as u64 * 1_000_000).checked_div(rate) {
            Some(due) => {
                let due = origin + Duration::from_micros(due);
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        if let Some(sink) = &sink {
            sink.sent(n, started);
        }
        if stream.is_none() {
            match TcpStream::connect(&addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                }
                Err(_) => {
                    outcome.errors += 1;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let result = async {
            s.write_all(request).await?;
            read_response(s, &mut buf).await
        }
        .await;
        match result {
            Ok(status) => {
                let micros = started.elapsed().as_micros();
                let at = origin.elapsed().as_millis();
                outcome.latencies_us.push((
                    u32::try_from(at).unwrap_or(u32::MAX),
                    u32::try_from(micros).unwrap_or(u32::MAX),
                ));
                if (200..300).contains(&status) {
                    outcome.ok += 1;
                } else {
                    outcome.non_2xx += 1;
                }
            }
            Err(_) => {
                outcome.errors += 1;
                stream = None;
            }
        }
    }
    outcome
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("loadgen: {e}");
            }
            return std::process::ExitCode::from(2);
        }
    };
    if options.mode == "fake-graph" {
        return fake_graph(&options.addr, Duration::from_millis(options.delay_ms)).await;
    }
    let requests = Arc::new(prepare(&options));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let sink = if options.mode == "e2e" {
        let listener = match tokio::net::TcpListener::bind(&options.sink_addr).await {
            Ok(l) => l,
            Err(e) => {
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("loadgen: cannot listen on {}: {e}", options.sink_addr);
                }
                return std::process::ExitCode::from(1);
            }
        };
        let sink = Arc::new(Sink::new(started, &options.run_id, options.requests));
        tokio::spawn(sink.clone().serve(listener));
        Some(sink)
    } else {
        None
    };
    let tasks: Vec<_> = (0..options.connections)
        .map(|_| {
            tokio::spawn(connection(
                options.addr.clone(),
                requests.clone(),
                next.clone(),
                started,
                options.rate,
                sink.clone(),
            ))
        })
        .collect();
    let mut latencies = Vec::with_capacity(options.requests);
    let (mut ok, mut non_2xx, mut errors) = (0, 0, 0);
    for task in tasks {
        if let Ok(outcome) = task.await {
            latencies.extend(outcome.latencies_us);
            ok += outcome.ok;
            non_2xx += outcome.non_2xx;
            errors += outcome.errors;
        }
    }
    let seconds = started
        .elapsed()
        .as_secs_f64()
        .max(Duration::from_micros(1).as_secs_f64());
    #[allow(clippy::print_stdout)]
    {
        println!("requests={}", options.requests);
        println!("ok={ok}");
        println!("non_2xx={non_2xx}");
        println!("errors={errors}");
        println!("seconds={seconds:.3}");
        println!("per_second={:.0}", ok as f64 / seconds);
    }
    summarize("", latencies, options.window_seconds);
    if let Some(sink) = sink {
        drain(&sink, ok, Duration::from_secs(options.drain_seconds)).await;
        let latencies = sink.latencies();
        let last_ms = latencies.iter().map(|(at, _)| *at).max().unwrap_or(0);
        let during = latencies
            .iter()
            .filter(|(at, _)| f64::from(*at) <= seconds * 1000.0)
            .count();
        #[allow(clippy::print_stdout)]
        {
            println!("delivered={}", sink.delivered.load(Ordering::Relaxed));
            println!("duplicates={}", sink.duplicates.load(Ordering::Relaxed));
            println!("strangers={}", sink.strangers.load(Ordering::Relaxed));
            println!("ingest_seconds={seconds:.3}");
            println!("delivered_during_ingest={during}");
            println!("last_delivery_seconds={:.3}", f64::from(last_ms) / 1000.0);
        }
        summarize("e2e_", latencies, options.window_seconds);
    }
    std::process::ExitCode::SUCCESS
}

/// Waits until `expected` webhooks were delivered, or none arrived for `quiet`.
async fn drain(sink: &Sink, expected: usize, quiet: Duration) {
    let mut seen = sink.delivered.load(Ordering::Relaxed);
    let mut since = Instant::now();
    while seen < expected && since.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = sink.delivered.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            since = Instant::now();
        }
    }
}

/// Prints the percentiles of `latencies` ((ms since the origin, µs)) as `{prefix}p50_ms=`...,
/// and per `window_seconds` (0: not) as `{prefix}window=` lines.
fn summarize(prefix: &str, latencies: Vec<(u32, u32)>, window_seconds: u64) {
    let mut windows: std::collections::BTreeMap<u64, Vec<u32>> = std::collections::BTreeMap::new();
    for (at, latency) in &latencies {
        if let Some(window) = (u64::from(*at) / 1000).checked_div(window_seconds) {
            windows.entry(window).or_default().push(*latency);
        }
    }
    let mut latencies: Vec<u32> = latencies.into_iter().map(|(_, l)| l).collect();
    latencies.sort_unstable();
    #[allow(clippy::print_stdout)]
    {
        println!("{prefix}p50_ms={:.2}", percentile(&latencies, 50.0));
        println!("{prefix}p90_ms={:.2}", percentile(&latencies, 90.0));
        println!("{prefix}p99_ms={:.2}", percentile(&latencies, 99.0));
        println!("{prefix}p999_ms={:.2}", percentile(&latencies, 99.9));
        println!("{prefix}max_ms={:.2}", percentile(&latencies, 100.0));
        for (window, mut values) in windows {
            values.sort_unstable();
            println!(
                "{prefix}window={},{},{:.2},{:.2},{:.2},{:.2},{:.2}",
                window * window_seconds,
                values.len(),
                percentile(&values, 50.0),
                percentile(&values, 90.0),
                percentile(&values, 99.0),
                percentile(&values, 99.9),
                percentile(&values, 100.0),
            );
        }
    }
}

/// A Graph API that accepts every send after `delay` (Meta's own latency):
/// `200 {"recipient_id", "message_id"}` with a fresh id; `GET /count` answers how many sends
/// (`POST .../messages`) it took.
async fn fake_graph(addr: &str, delay: Duration) -> std::process::ExitCode {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("loadgen: cannot listen on {addr}: {e}");
            }
            return std::process::ExitCode::from(1);
        }
    };
    let sends = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let sends = sends.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            while let Ok(head) = read_message(&mut stream, &mut buf).await {
                let request_line = head.lines().next().unwrap_or_default();
                let body = if request_line.starts_with("GET /count") {
                    format!("{{\"count\":{}}}", sends.load(Ordering::Relaxed))
                } else {
                    tokio::time::sleep(delay).await;
                    // Only sends are counted: connecting the account also subscribes it to
                    // Meta's webhooks (`POST /me/subscribed_apps`).
                    let n = if request_line.starts_with("POST ")
                        && request_line.contains("/messages")
                    {
                        sends.fetch_add(1, Ordering::Relaxed)
                    } else {
                        0
                    };
                    format!(r#"{{"recipient_id":"1","message_id":"mid.fake.{n}"}}"#)
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(response.as_bytes()).await.is_err()
                    || head.to_ascii_lowercase().contains("connection: close")
                {
                    break;
                }
            }
        });
    }
}

/// Reads one HTTP/1.1 message (head and `Content-Length` body); returns its head.
async fn read_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<String> {
    buf.clear();
    let mut chunk = [0_u8; 4096];
    let header_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let length: usize = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(head)
}
