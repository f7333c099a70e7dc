//! API keys of the REST API: who calls, and which accounts they may act on.
//!
//! A key is `irk_` followed by 43 base62 characters (256 random bits, drawn by the caller
//! from a CSPRNG and passed in: this crate has no randomness). It is shown once, when made;
//! only its SHA-256 is stored.

use chrono::{DateTime, Utc};

use crate::{AccountId, ApiKeyId, FieldError};

/// What every key starts with.
pub const KEY_PREFIX: &str = "irk_";

/// Random characters after the prefix: 43 base62 characters carry 256 bits.
pub const KEY_RANDOM_CHARS: usize = 43;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What a key may act on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyScope {
    /// Everything: every account, creating and deleting accounts, managing keys.
    Admin,
    /// One account and what belongs to it.
    Account(AccountId),
}

impl KeyScope {
    /// Whether it may act on `account`.
    pub fn covers(&self, account: &AccountId) -> bool {
        match self {
            Self::Admin => true,
            Self::Account(own) => own == account,
        }
    }

    /// Whether it is an admin key's.
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Admin)
    }

    /// The one account of an account key.
    pub fn account(&self) -> Option<&AccountId> {
        match self {
            Self::Admin => None,
            Self::Account(own) => Some(own),
        }
    }
}

/// A key's name, for the people who manage keys: 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyName(String);

impl KeyName {
    /// Parses a name, trimmed.
    ///
    /// # Errors
    ///
    /// A [`FieldError`] on `name` when it is empty, longer than 100 characters, or holds a
    /// control character.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(FieldError::new("name", "must be 1 to 100 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(FieldError::new("name", "must not hold control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An API key as stored: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Its id (`key_...`), which is not secret.
    pub id: ApiKeyId,
    /// What people call it.
    pub name: Option<KeyName>,
    /// What it may act on.
    pub scope: KeyScope,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was last used (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; a revoked key is refused.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether it has been revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// A fresh key's text from `random` bytes, drawn by the caller from a CSPRNG: `irk_` and
/// [`KEY_RANDOM_CHARS`] base62 characters, each taken from one byte below 248 (so that all 62
/// are equally likely). `None` when `random` runs out first: 64 bytes almost never do.
pub fn new_key_text(random: &[u8]) -> Option<String> {
    let mut key = String::with_capacity(KEY_PREFIX.len() + KEY_RANDOM_CHARS);
    key.push_str(KEY_PREFIX);
    let chars = random
        .iter()
        .filter(|b| **b < 248)
        .map(|b| char::from(BASE62[usize::from(*b % 62)]))
        .take(KEY_RANDOM_CHARS);
    key.extend(chars);
    (key.len() == KEY_PREFIX.len() + KEY_RANDOM_CHARS).then_some(key)
}

/// Whether `text` has the shape of a key (`irk_` and 32 to 128 base62 characters), so that
/// nothing else is looked up.
pub fn looks_like_key(text: &str) -> bool {
    text.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        (32..=128).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_prefix_and_43_base62_characters() {
        let random: Vec<u8> = (0..64).map(|i| (i * 37 % 256) as u8).collect();
        let key = new_key_text(&random).unwrap();
        assert_eq!(key.len(), 4 + 43);
        assert!(looks_like_key(&key), "{key}");
        // Bytes of 248 and above are passed over, not folded onto the first characters.
        let biased = [250_u8; 64];
        assert_eq!(new_key_text(&biased), None);
        let mut mostly_high = vec![255_u8; 20];
        mostly_high.extend(std::iter::repeat_n(61_u8, 43));
        let key = new_key_text(&mostly_high).unwrap();
        assert_eq!(&key[4..], "z".repeat(43));
        assert_eq!(new_key_text(&[1; 42]), None);
    }

    #[test]
    fn only_key_shaped_text_is_looked_up() {
        assert!(looks_like_key(&format!("irk_{}", "a".repeat(32))));
        for text in [
            "",
            "irk_",
            "irk_short",
            "Bearer irk_abc",
            &format!("irk_{}", "a".repeat(129)),
            &format!("irk_{}-", "a".repeat(40)),
            &format!("key_{}", "a".repeat(40)),
        ] {
            assert!(!looks_like_key(text), "{text}");
        }
    }

    #[test]
    fn scopes_cover_their_accounts() {
        let a = AccountId::from_u128(1);
        let b = AccountId::from_u128(2);
        assert!(KeyScope::Admin.covers(&a));
        assert!(KeyScope::Account(a.clone()).covers(&a));
        assert!(!KeyScope::Account(a.clone()).covers(&b));
        assert_eq!(KeyScope::Account(a.clone()).account(), Some(&a));
        assert!(KeyScope::Admin.is_admin());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(KeyName::parse("  crm prod ").unwrap().as_str(), "crm prod");
        assert!(KeyName::parse(" ").is_err());
        assert!(KeyName::parse(&"x".repeat(101)).is_err());
        assert!(KeyName::parse("a\nb").is_err());
    }
}
