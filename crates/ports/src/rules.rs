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

/// A claim on answering one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyClaim {
    /// The message being answered.
    pub trigger: insta_router_domain::MessageId,
    /// Its conversation.
    pub conversation: insta_router_domain::ConversationId,
    /// The rule answering it.
    pub rule: RuleId,
    /// When.
    pub at: DateTime<Utc>,
}

/// The record of auto-replies: what safety limits are computed from, and what keeps a
/// message from being answered twice.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AutoReplyStore: Send + Sync {
    /// What the rules need to know about `message`'s conversation at `now`: whether it opens
    /// the conversation, when a human last wrote to the customer (an outbound message that
    /// is not one of our auto-replies), how many auto-replies it got in the past hour, and
    /// when each rule last answered it.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn facts(
        &self,
        message: &insta_router_domain::Message,
        now: DateTime<Utc>,
    ) -> Result<insta_router_domain::rules::ConversationFacts, RepoError>;

    /// Claims the right to answer `claim.trigger`; false when it is answered or being
    /// answered already (a redelivered job must never send a second reply).
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn begin(&self, claim: &ReplyClaim) -> Result<bool, RepoError>;

    /// The reply went out: stores it as an outbound message (unless its echo got there
    /// first) and notes its id and Meta's.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn sent(
        &self,
        trigger: &insta_router_domain::MessageId,
        reply: &insta_router_domain::Message,
    ) -> Result<(), RepoError>;

    /// Sending failed for good (`failed`) or its outcome is unknown (`unknown`); either way
    /// it is not sent again.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn settle(
        &self,
        trigger: &insta_router_domain::MessageId,
        status: &str,
        error: &str,
    ) -> Result<(), RepoError>;

    /// Gives a claim up after a temporary failure, so a retry may answer.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn abandon(&self, trigger: &insta_router_domain::MessageId) -> Result<(), RepoError>;

    /// Counts one evaluation of `account`'s rules that ended with `outcome` (`fired`,
    /// `no_rule_matched`, or a safety limit's code) in the hour holding `at`.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn count_evaluation(
        &self,
        account: &insta_router_domain::AccountId,
        at: DateTime<Utc>,
        outcome: &str,
    ) -> Result<(), RepoError>;
}
