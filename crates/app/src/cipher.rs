//! Credentials at rest: AES-256-GCM (ring) under `ENCRYPTION_KEY`, with older keys kept to
//! read what they sealed.
//!
//! A sealed value is `k<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`: the key id (the first
//! 8 hex digits of a SHA-256 of the key) says which key opens it, so keys rotate: the new key
//! seals, the old ones (`ENCRYPTION_KEY_PREVIOUS`) still open, and `insta-router reencrypt`
//! moves everything to the new one. Every value gets a fresh random 96-bit nonce; the key id
//! is bound to the ciphertext as associated data. Values marked `plain:` (written before
//! encryption) open too, so they can be sealed at start-up.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use insta_router_domain::{SealedSecret, Secret};
use insta_router_ports::{CipherError, CredentialCipher};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::system::PLAIN_PREFIX;

/// A key's length: 32 bytes.
pub const KEY_LEN: usize = 32;

struct DataKey {
    /// `k` and 8 hex digits.
    id: String,
    key: LessSafeKey,
}

impl DataKey {
    fn new(bytes: &[u8; KEY_LEN]) -> Result<Self, CipherError> {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(b"insta-router key id\0");
        context.update(bytes);
        let digest = context.finish();
        let id: String = digest.as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| CipherError::Corrupt)?;
        Ok(Self {
            id: format!("k{id}"),
            key: LessSafeKey::new(key),
        })
    }
}

/// The keys credentials are sealed with: the current one seals, every one opens.
pub struct Keyring {
    current: DataKey,
    previous: Vec<DataKey>,
    random: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    /// A keyring sealing with `current` and also opening with `previous`.
    ///
    /// # Errors
    ///
    /// [`CipherError::Corrupt`] when ring refuses a key (never, for 32 bytes).
    pub fn new(current: &[u8; KEY_LEN], previous: &[[u8; KEY_LEN]]) -> Result<Self, CipherError> {
        Ok(Self {
            current: DataKey::new(current)?,
            previous: previous
                .iter()
                .map(DataKey::new)
                .collect::<Result<_, _>>()?,
            random: SystemRandom::new(),
        })
    }

    /// The current key's id.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    fn key(&self, id: &str) -> Option<&DataKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }
}

impl CredentialCipher for Keyring {
    fn seal(&self, secret: &Secret) -> Result<SealedSecret, CipherError> {
        let mut nonce = [0_u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| CipherError::Unavailable)?;
        let mut data = secret.expose().as_bytes().to_vec();
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.current.id.as_bytes()),
                &mut data,
            )
            .map_err(|_| CipherError::Unavailable)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&data);
        Ok(SealedSecret::new(format!(
            "{}:{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(sealed)
        )))
    }

    fn open(&self, sealed: &SealedSecret) -> Result<Secret, CipherError> {
        let Some((id, body)) = sealed.as_str().split_once(':') else {
            return Err(CipherError::Corrupt);
        };
        if format!("{id}:") == PLAIN_PREFIX {
            return Ok(Secret::new(body.to_owned()));
        }
        let key = self
            .key(id)
            .ok_or_else(|| CipherError::UnknownKey(id.to_owned()))?;
        let mut data = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CipherError::Corrupt)?;
        if data.len() < NONCE_LEN {
            return Err(CipherError::Corrupt);
        }
        let nonce = Nonce::try_assume_unique_for_key(&data[..NONCE_LEN])
            .map_err(|_| CipherError::Corrupt)?;
        let mut ciphertext = data.split_off(NONCE_LEN);
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(key.id.as_bytes()), &mut ciphertext)
            .map_err(|_| CipherError::Corrupt)?;
        String::from_utf8(plain.to_vec())
            .map(Secret::new)
            .map_err(|_| CipherError::Corrupt)
    }

    fn is_current(&self, sealed: &SealedSecret) -> bool {
        sealed
            .as_str()
            .split_once(':')
            .is_some_and(|(id, _)| id == self.current.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_name_their_key_and_never_show_the_secret() {
        let ring = Keyring::new(&[7; KEY_LEN], &[]).unwrap();
        let secret = Secret::new("EAAB-token".into());
        let a = ring.seal(&secret).unwrap();
        let b = ring.seal(&secret).unwrap();
        assert_ne!(a, b, "a fresh nonce every time");
        assert!(a.as_str().starts_with(&format!("{}:", ring.current_id())));
        assert!(!a.as_str().contains("EAAB"));
        assert_eq!(ring.open(&a).unwrap().expose(), "EAAB-token");
        assert!(ring.is_current(&a));
    }

    #[test]
    fn old_keys_open_new_ones_seal_and_unknown_or_tampered_values_are_refused() {
        let old = Keyring::new(&[1; KEY_LEN], &[]).unwrap();
        let sealed_old = old.seal(&Secret::new("s3cret".into())).unwrap();
        let rotated = Keyring::new(&[2; KEY_LEN], &[[1; KEY_LEN]]).unwrap();
        assert_eq!(rotated.open(&sealed_old).unwrap().expose(), "s3cret");
        assert!(!rotated.is_current(&sealed_old));
        let resealed = rotated.seal(&Secret::new("s3cret".into())).unwrap();
        assert!(rotated.is_current(&resealed));
        // Without the old key: its values name an unknown key.
        let new_only = Keyring::new(&[2; KEY_LEN], &[]).unwrap();
        assert!(matches!(
            new_only.open(&sealed_old),
            Err(CipherError::UnknownKey(id)) if id == old.current_id()
        ));
        // One changed character: refused, not garbage.
        let mut text = resealed.as_str().to_owned();
        let last = text.pop().unwrap();
        text.push(if last == 'A' { 'B' } else { 'A' });
        assert!(matches!(
            rotated.open(&SealedSecret::new(text)),
            Err(CipherError::Corrupt)
        ));
        // A value moved under another key id: the associated data refuses it.
        let (_, body) = resealed.as_str().split_once(':').unwrap();
        let forged = SealedSecret::new(format!("{}:{body}", old.current_id()));
        assert!(rotated.open(&forged).is_err());
        // Values written before encryption open, and are not current.
        let plain = SealedSecret::new("plain:tok:en".into());
        assert_eq!(rotated.open(&plain).unwrap().expose(), "tok:en");
        assert!(!rotated.is_current(&plain));
        assert!(rotated.open(&SealedSecret::new("nocolon".into())).is_err());
    }
}
