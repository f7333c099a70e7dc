//! The webhook path's metrics: what became of each request from Meta, the events it held,
//! how long it took to commit, and how large the groups are. Labels are bounded sets.

use std::time::Instant;

use insta_router_ports::JournalStatus;

use super::{IngestError, IngestReport, Origin};

/// Why a webhook request was refused before it reached the ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Larger than `MAX_WEBHOOK_BYTES`.
    TooLarge,
    /// No `X-Hub-Signature-256` header.
    Unsigned,
    /// A malformed signature, or one that does not match the body.
    BadSignature,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Unsigned => "unsigned",
            Self::BadSignature => "bad_signature",
        }
    }
}

/// Counts a request refused before the ingest.
pub fn refused_webhook(refusal: Refusal) {
    metrics::counter!("insta_router_webhook_requests_total", "result" => refusal.as_str())
        .increment(1);
}

/// Counts the events of a request from Meta, by kind.
pub(super) fn received(origin: Origin, kinds: impl Iterator<Item = &'static str>) {
    if origin != Origin::Meta {
        return;
    }
    for kind in kinds {
        metrics::counter!("insta_router_webhook_events_total", "kind" => kind).increment(1);
    }
}

/// Counts a group of requests written together.
pub(super) fn group(requests: usize) {
    #[allow(
        clippy::cast_precision_loss,
        reason = "a group holds far fewer than 2^52"
    )]
    metrics::histogram!("insta_router_ingest_group_requests").record(requests as f64);
}

/// Counts what became of a request from Meta and how long it took from its arrival.
pub(super) fn answered(
    origin: Origin,
    events: u32,
    arrived: Instant,
    result: &Result<IngestReport, IngestError>,
) {
    if origin != Origin::Meta {
        return;
    }
    let (result, outcome) = match result {
        Ok(report) => {
            let result = match report.status {
                JournalStatus::Accepted if events > 0 && report.processed == 0 => "duplicate",
                status => status.as_str(),
            };
            (result, report.status.as_str())
        }
        Err(_) => ("refused", "refused"),
    };
    metrics::counter!("insta_router_webhook_requests_total", "result" => result).increment(1);
    metrics::counter!("insta_router_webhooks_total", "outcome" => outcome).increment(1);
    metrics::histogram!("insta_router_ingest_seconds").record(arrived.elapsed().as_secs_f64());
}
