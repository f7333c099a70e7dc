//! The store of API keys: their SHA-256 hashes, scopes and lifecycles.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::{ApiKey, ApiKeyId};

use crate::RepoError;

/// API keys, found by the SHA-256 of the key text; the text itself is never stored.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key with `hash`, the hex SHA-256 of its text.
    ///
    /// # Errors
    ///
    /// [`RepoError::Conflict`] when the id or hash is taken (never, for fresh ones);
    /// [`RepoError::Unavailable`].
    async fn insert(&self, key: &ApiKey, hash: &str) -> Result<(), RepoError>;

    /// The keys, revoked or not, whose texts hash to any of `hashes`, each with its hash, in
    /// any order, with one query: concurrent requests authenticate together.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn find_by_hashes(&self, hashes: &[String]) -> Result<Vec<(String, ApiKey)>, RepoError>;

    /// The key `id`.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn get(&self, id: &ApiKeyId) -> Result<Option<ApiKey>, RepoError>;

    /// Every key, oldest first.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn list(&self) -> Result<Vec<ApiKey>, RepoError>;

    /// Revokes the key `id` at `at` (a revoked key keeps its first revocation time); false
    /// when there is no such key.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn revoke(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<bool, RepoError>;

    /// Revokes every key of `account` at `at` (the account is gone); how many.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn revoke_account_keys(
        &self,
        account: &insta_router_domain::AccountId,
        at: DateTime<Utc>,
    ) -> Result<u64, RepoError>;

    /// Records that the key `id` was used at `at`.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn touch(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<(), RepoError>;

    /// How many keys exist, revoked ones included.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn count(&self) -> Result<u64, RepoError>;
}
