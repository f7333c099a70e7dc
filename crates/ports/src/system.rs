//! The clock and the credential cipher.

use chrono::{DateTime, Utc};
use insta_router_domain::{SealedSecret, Secret};

use crate::CipherError;

/// The current time; a port so that tests can fix it.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// Seals credentials before they are stored and opens them where they are used.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait CredentialCipher: Send + Sync {
    /// Seals a plain-text credential.
    ///
    /// # Errors
    ///
    /// [`CipherError::Unavailable`] when no random nonce could be drawn.
    fn seal(&self, secret: &Secret) -> Result<SealedSecret, CipherError>;

    /// Opens a sealed credential.
    ///
    /// # Errors
    ///
    /// [`CipherError`] when the value cannot be opened with the keys at hand.
    fn open(&self, sealed: &SealedSecret) -> Result<Secret, CipherError>;

    /// Whether `sealed` is sealed under the current key (else `reencrypt` moves it there).
    fn is_current(&self, sealed: &SealedSecret) -> bool;
}
