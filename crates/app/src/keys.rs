//! API keys: making them (shown once), checking them on every request, listing and revoking.
//!
//! A key is checked against the database on every request, so a revocation holds at once on
//! every instance. Only the SHA-256 of a key is stored; the lookup is by that hash, through a
//! unique index.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use insta_router_domain::{
    AccountId, ApiKey, ApiKeyId, FieldError, KeyName, KeyScope, Secret, ValidationErrors,
    looks_like_key, new_key_text,
};
use insta_router_ports::{AccountRepository, ApiKeyStore, Clock, RepoError};
use ring::rand::{SecureRandom, SystemRandom};

use crate::group::Group;
use crate::new_id_bits;

/// How often a key's `last_used_at` is written, at most, per key and process.
const TOUCH_EVERY: TimeDelta = TimeDelta::minutes(1);

/// A key just made: its record, and its text, which is shown this once.
#[derive(Debug)]
pub struct NewKey {
    /// The stored record.
    pub key: ApiKey,
    /// The key itself (`irk_...`).
    pub secret: Secret,
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No such key.
    #[error("API key {0} not found")]
    NotFound(ApiKeyId),
    /// An account key for an account that does not exist.
    #[error("account {0} not found")]
    AccountNotFound(AccountId),
    /// A bad name.
    #[error("invalid API key: {0}")]
    Invalid(ValidationErrors),
    /// The system's random source failed.
    #[error("no random bytes for a key")]
    Random,
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] RepoError),
}

/// Why a presented key was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Not a key this service made, or not a key at all.
    #[error("unknown API key")]
    Unknown,
    /// Revoked.
    #[error("revoked API key")]
    Revoked,
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] RepoError),
}

/// Manages API keys and checks them.
pub struct ApiKeyService {
    store: Arc<dyn ApiKeyStore>,
    accounts: Arc<dyn AccountRepository>,
    clock: Arc<dyn Clock>,
    random: SystemRandom,
    /// When each key's use was last written, so a busy key costs one write a minute.
    touched: Mutex<HashMap<ApiKeyId, DateTime<Utc>>>,
    /// Key lookups by hash: concurrent requests are looked up with one query.
    lookups: Arc<Group<String, Option<ApiKey>>>,
}

/// The most key lookups in one query.
const LOOKUPS: usize = 128;

/// The hex SHA-256 of a key's text: what is stored and looked up.
pub fn key_hash(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl ApiKeyService {
    /// The service on its ports.
    pub fn new(
        store: Arc<dyn ApiKeyStore>,
        accounts: Arc<dyn AccountRepository>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let lookups = Group::new(LOOKUPS, {
            let store = store.clone();
            move |hashes: Vec<String>| {
                let store = store.clone();
                Box::pin(async move {
                    let found = store.find_by_hashes(&hashes).await?;
                    Ok(hashes
                        .iter()
                        .map(|hash| {
                            found
                                .iter()
                                .find(|(h, _)| h == hash)
                                .map(|(_, key)| key.clone())
                        })
                        .collect())
                })
            }
        });
        Self {
            store,
            accounts,
            clock,
            random: SystemRandom::new(),
            touched: Mutex::new(HashMap::new()),
            lookups,
        }
    }

    /// Makes a key with `scope` and, when given, `name`.
    ///
    /// # Errors
    ///
    /// [`KeyError::AccountNotFound`] for an account key of an unknown account,
    /// [`KeyError::Invalid`] for a bad name, [`KeyError::Storage`].
    pub async fn create(&self, scope: KeyScope, name: Option<&str>) -> Result<NewKey, KeyError> {
        let name = name
            .map(KeyName::parse)
            .transpose()
            .map_err(|e| KeyError::Invalid(e.into()))?;
        if let KeyScope::Account(account) = &scope
            && self.accounts.get(account).await?.is_none()
        {
            return Err(KeyError::AccountNotFound(account.clone()));
        }
        let mut random = [0_u8; 64];
        let text = loop {
            self.random
                .fill(&mut random)
                .map_err(|_| KeyError::Random)?;
            if let Some(text) = new_key_text(&random) {
                break text;
            }
        };
        let key = ApiKey {
            id: ApiKeyId::from_u128(new_id_bits()),
            name,
            scope,
            created_at: self.clock.now(),
            last_used_at: None,
            revoked_at: None,
        };
        self.store.insert(&key, &key_hash(&text)).await?;
        tracing::info!(key_id = %key.id, admin = key.scope.is_admin(), "API key created");
        Ok(NewKey {
            key,
            secret: Secret::new(text),
        })
    }

    /// The key whose text was presented, when it is known and not revoked.
    ///
    /// # Errors
    ///
    /// [`AuthError::Unknown`], [`AuthError::Revoked`] or [`AuthError::Storage`].
    pub async fn authenticate(&self, presented: &str) -> Result<ApiKey, AuthError> {
        if !looks_like_key(presented) {
            return Err(AuthError::Unknown);
        }
        let key = self
            .lookups
            .submit(key_hash(presented))
            .await?
            .ok_or(AuthError::Unknown)?;
        if key.is_revoked() {
            return Err(AuthError::Revoked);
        }
        self.touch(&key.id).await;
        Ok(key)
    }

    /// Writes the key's last use, at most once a minute per key.
    async fn touch(&self, id: &ApiKeyId) {
        let now = self.clock.now();
        let due = self.touched.lock().is_ok_and(|mut touched| {
            let due = touched.get(id).is_none_or(|at| now - *at >= TOUCH_EVERY);
            if due {
                touched.insert(id.clone(), now);
            }
            due
        });
        if due && let Err(error) = self.store.touch(id, now).await {
            tracing::debug!(%error, key_id = %id, "cannot record an API key's use");
        }
    }

    /// Every key, oldest first.
    ///
    /// # Errors
    ///
    /// [`KeyError::Storage`].
    pub async fn list(&self) -> Result<Vec<ApiKey>, KeyError> {
        Ok(self.store.list().await?)
    }

    /// Revokes the key `id`, on every instance at once (keys are checked against the
    /// database on every request); revoking a revoked key changes nothing.
    ///
    /// # Errors
    ///
    /// [`KeyError::NotFound`] or [`KeyError::Storage`].
    pub async fn revoke(&self, id: &ApiKeyId) -> Result<ApiKey, KeyError> {
        if !self.store.revoke(id, self.clock.now()).await? {
            return Err(KeyError::NotFound(id.clone()));
        }
        tracing::info!(key_id = %id, "API key revoked");
        self.store
            .get(id)
            .await?
            .ok_or_else(|| KeyError::NotFound(id.clone()))
    }

    /// Revokes the keys of a deleted account.
    ///
    /// # Errors
    ///
    /// [`KeyError::Storage`].
    pub async fn revoke_account_keys(&self, account: &AccountId) -> Result<u64, KeyError> {
        Ok(self
            .store
            .revoke_account_keys(account, self.clock.now())
            .await?)
    }

    /// In development, when no key exists at all: makes an admin key, so the API can be tried
    /// at once. `None` when a key exists.
    ///
    /// # Errors
    ///
    /// [`KeyError::Storage`].
    pub async fn bootstrap(&self) -> Result<Option<NewKey>, KeyError> {
        if self.store.count().await? > 0 {
            return Ok(None);
        }
        self.create(KeyScope::Admin, Some("bootstrap (development)"))
            .await
            .map(Some)
    }
}

impl From<FieldError> for KeyError {
    fn from(error: FieldError) -> Self {
        Self::Invalid(error.into())
    }
}

#[cfg(test)]
mod tests {
    use insta_router_ports::{MockAccountRepository, MockApiKeyStore, MockClock};

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000)
    }

    fn stored(scope: KeyScope, revoked: bool) -> ApiKey {
        ApiKey {
            id: ApiKeyId::from_u128(7),
            name: None,
            scope,
            created_at: now(),
            last_used_at: None,
            revoked_at: revoked.then(now),
        }
    }

    fn service(store: MockApiKeyStore) -> ApiKeyService {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        ApiKeyService::new(
            Arc::new(store),
            Arc::new(MockAccountRepository::new()),
            Arc::new(clock),
        )
    }

    #[tokio::test]
    async fn a_new_key_is_stored_only_as_its_hash() {
        let mut store = MockApiKeyStore::new();
        let seen = Arc::new(Mutex::new(String::new()));
        let hash = seen.clone();
        store.expect_insert().returning(move |_, h| {
            *hash.lock().unwrap() = h.to_owned();
            Ok(())
        });
        let made = service(store)
            .create(KeyScope::Admin, Some("ci"))
            .await
            .unwrap();
        let text = made.secret.expose();
        assert!(looks_like_key(text), "{text}");
        let stored_hash = seen.lock().unwrap().clone();
        assert_eq!(stored_hash, key_hash(text));
        assert_eq!(stored_hash.len(), 64);
        assert!(!stored_hash.contains(&text[4..]));
        assert_eq!(made.key.name.unwrap().as_str(), "ci");
    }

    #[tokio::test]
    async fn only_known_unrevoked_keys_pass_and_shapeless_text_is_never_looked_up() {
        let mut store = MockApiKeyStore::new();
        store.expect_find_by_hashes().returning(|hashes| {
            let good = key_hash(&format!("irk_{}", "a".repeat(43)));
            let revoked = key_hash(&format!("irk_{}", "r".repeat(43)));
            Ok(hashes
                .iter()
                .filter_map(|h| {
                    let key = if *h == good {
                        stored(KeyScope::Admin, false)
                    } else if *h == revoked {
                        stored(KeyScope::Admin, true)
                    } else {
                        return None;
                    };
                    Some((h.clone(), key))
                })
                .collect())
        });
        // Used twice within a minute: one write.
        store.expect_touch().times(1).returning(|_, _| Ok(()));
        let keys = service(store);
        let good = format!("irk_{}", "a".repeat(43));
        assert!(keys.authenticate(&good).await.is_ok());
        assert!(keys.authenticate(&good).await.is_ok());
        assert!(matches!(
            keys.authenticate(&format!("irk_{}", "r".repeat(43))).await,
            Err(AuthError::Revoked)
        ));
        assert!(matches!(
            keys.authenticate(&format!("irk_{}", "b".repeat(43))).await,
            Err(AuthError::Unknown)
        ));
        for shapeless in ["anything", "", "irk_x"] {
            assert!(matches!(
                keys.authenticate(shapeless).await,
                Err(AuthError::Unknown)
            ));
        }
    }
}
