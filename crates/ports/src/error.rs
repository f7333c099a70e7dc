//! Errors of the ports, in domain terms.

/// Any underlying cause, kept for logs without naming its type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A unique value is already taken; the field names which.
    #[error("{field} is already taken")]
    Conflict {
        /// The field whose value is taken, as an API client spells it.
        field: &'static str,
    },
    /// A page cursor that this store did not hand out.
    #[error("invalid page cursor")]
    InvalidCursor,
    /// A stored record could not be read back into a domain value.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The store could not be reached or failed.
    #[error("storage unavailable")]
    Unavailable(#[source] BoxError),
}

/// Why a credential could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    /// The stored value was sealed under a key this process does not have.
    #[error("unknown key id {0}")]
    UnknownKey(String),
    /// The stored value is damaged or was tampered with.
    #[error("sealed value is corrupt")]
    Corrupt,
    /// The system's random source failed: nothing could be sealed.
    #[error("no random bytes to seal with")]
    Unavailable,
}

/// `error` and its causes, as one line (each cause once): what is logged and journaled as a
/// failure's reason, where `error`'s own text (`storage unavailable`) would hide it.
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
