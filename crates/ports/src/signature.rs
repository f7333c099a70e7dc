//! Meta's webhook signatures, checked before anything reads a body.

/// Why a webhook signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No header.
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    /// Not `sha256=` followed by 64 hex digits.
    #[error("malformed X-Hub-Signature-256 header")]
    Malformed,
    /// No configured secret produced this signature.
    #[error("X-Hub-Signature-256 does not match the body")]
    Mismatch,
}

/// Checks that a webhook body was signed by Meta with one of the app secrets.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait WebhookSignatures: Send + Sync + std::fmt::Debug {
    /// Checks `header` (`X-Hub-Signature-256`, when present) against `body`, in constant time.
    ///
    /// # Errors
    ///
    /// [`SignatureError`]; with no secret configured every body is a mismatch.
    #[allow(
        clippy::needless_lifetimes,
        reason = "mockall needs the lifetime named"
    )]
    fn verify<'h>(&self, body: &[u8], header: Option<&'h str>) -> Result<(), SignatureError>;
}
