//! The system clock, fresh ids, and the credential cipher used until encryption is configured.

use chrono::{DateTime, Utc};
use insta_router_domain::{SealedSecret, Secret};
use insta_router_ports::{CipherError, Clock, CredentialCipher};

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// 128 fresh bits for a new id: a UUIDv7, so ids sort by creation time.
pub fn new_id_bits() -> u128 {
    uuid::Uuid::now_v7().as_u128()
}

/// Stores credentials unencrypted, marked `plain:` so that an encrypting cipher can tell
/// them apart and re-seal them. This is the placeholder behind [`CredentialCipher`] until
/// credential encryption (AES-256-GCM under `ENCRYPTION_KEY`) replaces it.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlaintextCipher;

/// The mark of a value stored in plain text (before encryption).
pub(crate) const PLAIN_PREFIX: &str = "plain:";

impl CredentialCipher for PlaintextCipher {
    fn seal(&self, secret: &Secret) -> Result<SealedSecret, CipherError> {
        Ok(SealedSecret::new(format!(
            "{PLAIN_PREFIX}{}",
            secret.expose()
        )))
    }

    fn open(&self, sealed: &SealedSecret) -> Result<Secret, CipherError> {
        match sealed.as_str().split_once(':') {
            Some(("plain", text)) => Ok(Secret::new(text.to_owned())),
            Some((key_id, _)) => Err(CipherError::UnknownKey(key_id.to_owned())),
            None => Err(CipherError::Corrupt),
        }
    }

    fn is_current(&self, sealed: &SealedSecret) -> bool {
        sealed.as_str().starts_with(PLAIN_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_cipher_round_trips_and_refuses_other_keys() {
        let cipher = PlaintextCipher;
        let sealed = cipher.seal(&Secret::new("tok:en".into())).unwrap();
        assert_eq!(sealed.as_str(), "plain:tok:en");
        assert_eq!(cipher.open(&sealed).unwrap().expose(), "tok:en");
        assert!(matches!(
            cipher.open(&SealedSecret::new("k1:abc".into())),
            Err(CipherError::UnknownKey(k)) if k == "k1"
        ));
        assert!(matches!(
            cipher.open(&SealedSecret::new("garbage".into())),
            Err(CipherError::Corrupt)
        ));
    }

    #[test]
    fn fresh_ids_increase() {
        let a = new_id_bits();
        let b = new_id_bits();
        assert!(b > a);
    }
}
