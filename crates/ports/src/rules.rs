//! Auto-reply rules and the record of replies sent.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::{AccountId, RuleId};

use crate::RepoError;

/// A rule as stored: the definition is a JSON document the application reads and writes;
/// the store indexes only what it filters and orders by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRule {
    /// Its id.
    pub id: RuleId,
    /// The account it belongs to.
    pub account_id: AccountId,
    /// Higher first.
    pub priority: i32,
    /// Off rules never fire.
    pub enabled: bool,
    /// The rule's JSON document (conditions, reply, cooldown, name).
    pub definition: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// The rules of the accounts.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RuleRepository: Send + Sync {
    /// Stores a new rule.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn insert(&self, rule: &StoredRule) -> Result<(), RepoError>;

    /// The rule with id `id`.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn get(&self, id: &RuleId) -> Result<Option<StoredRule>, RepoError>;

    /// Every rule of `account`, oldest first.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn list_by_account(&self, account: &AccountId) -> Result<Vec<StoredRule>, RepoError>;

    /// Replaces the stored rule with `rule.id`; false when there is none.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn update(&self, rule: &StoredRule) -> Result<bool, RepoError>;

    /// Deletes the rule; false when there was none.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn delete(&self, id: &RuleId) -> Result<bool, RepoError>;
}
