//! Attempts that made no request, and the jitter of retry delays.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The marker of an attempt that made no request.
pub(super) const SKIP_PREFIX: &str = "skipped: ";

/// Why [`DeliveryService::account_of`] found no account because the store failed.
pub(super) const ACCOUNT_UNAVAILABLE: &str = "account_unavailable";

/// A non-attempt: why nothing was sent.
pub(super) fn skipped(reason: &str) -> CrmResponse {
    CrmResponse {
        outcome: AttemptOutcome::Refused,
        duration: Duration::ZERO,
        body: None,
        error: Some(format!("{SKIP_PREFIX}{reason}")),
    }
}

/// A value in `[0, 1)` from the id generator's random bits.
pub(super) fn jitter_draw() -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "53 bits fit an f64 exactly")]
    let bits = (new_id_bits() & ((1 << 53) - 1)) as f64;
    bits / (1_u64 << 53) as f64
}
