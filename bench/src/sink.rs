//! The CRM end of `--mode e2e`: an HTTP server that takes every delivery, finds the webhook it
//! came from by its `mid` (`mid.bench.{run}.{n}`), and keeps when the first copy of each
//! arrived, so arrival-to-CRM latency is measured in one process with one clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::read_message;

/// Sent and arrival times of every request of the run, in µs since `origin` plus one (0: not
/// yet).
pub(crate) struct Sink {
    origin: Instant,
    marker: String,
    sent: Vec<AtomicU64>,
    arrived: Vec<AtomicU64>,
    /// Distinct webhooks delivered.
    pub(crate) delivered: AtomicUsize,
    /// Deliveries of a webhook that had arrived already (at-least-once allows them).
    pub(crate) duplicates: AtomicUsize,
    /// Deliveries whose body named no webhook of this run.
    pub(crate) strangers: AtomicUsize,
}

impl Sink {
    pub(crate) fn new(origin: Instant, run_id: &str, requests: usize) -> Self {
        Self {
            origin,
            marker: format!("mid.bench.{run_id}."),
            sent: (0..requests).map(|_| AtomicU64::new(0)).collect(),
            arrived: (0..requests).map(|_| AtomicU64::new(0)).collect(),
            delivered: AtomicUsize::new(0),
            duplicates: AtomicUsize::new(0),
            strangers: AtomicUsize::new(0),
        }
    }

    fn micros_since_origin(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_micros()).unwrap_or(u64::MAX)
    }

    /// Request `n` went out (or was due) at `at`.
    pub(crate) fn sent(&self, n: usize, at: Instant) {
        if let Some(slot) = self.sent.get(n) {
            slot.store(self.micros_since_origin(at) + 1, Ordering::Relaxed);
        }
    }

    fn arrived(&self, body: &[u8]) {
        let n = find(body, self.marker.as_bytes()).and_then(|at| {
            let digits: Vec<u8> = body[at + self.marker.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .copied()
                .collect();
            std::str::from_utf8(&digits).ok()?.parse::<usize>().ok()
        });
        let Some(slot) = n.and_then(|n| self.arrived.get(n)) else {
            self.strangers.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let now = self.micros_since_origin(Instant::now()) + 1;
        if slot
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (arrival in ms since the origin, arrival-to-CRM latency in µs) of every delivered
    /// webhook.
    pub(crate) fn latencies(&self) -> Vec<(u32, u32)> {
        self.sent
            .iter()
            .zip(&self.arrived)
            .filter_map(|(sent, arrived)| {
                let (sent, arrived) = (
                    sent.load(Ordering::Relaxed),
                    arrived.load(Ordering::Relaxed),
                );
                (sent > 0 && arrived > 0).then(|| {
                    (
                        u32::try_from((arrived - 1) / 1000).unwrap_or(u32::MAX),
                        u32::try_from(arrived.saturating_sub(sent)).unwrap_or(u32::MAX),
                    )
                })
            })
            .collect()
    }

    /// Takes deliveries on `listener` until the process ends, answering 200 at once.
    pub(crate) async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let sink = self.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(8192);
                while let Ok(head) = read_message(&mut stream, &mut buf).await {
                    sink.arrived(&buf[head.len()..]);
                    let response = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                    if stream.write_all(response.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
