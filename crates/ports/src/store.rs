//! Stores of accounts, conversations and messages.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::{
    Account, AccountId, Conversation, ConversationId, InstagramAccountId, Message, MessageId,
    SealedSecret, TokenFailure, TokenLife,
};

use crate::{Page, PageRequest, RepoError};

/// Connected Instagram accounts.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AccountRepository: Send + Sync {
    /// Stores a new account.
    ///
    /// # Errors
    ///
    /// MUST return [`RepoError::Conflict`] naming `instagram_account_id` when another account
    /// has the same Instagram account id, and nothing is stored then.
    async fn insert(&self, account: &Account) -> Result<(), RepoError>;

    /// The account with our id `id`.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn get(&self, id: &AccountId) -> Result<Option<Account>, RepoError>;

    /// The ids among `ids` whose accounts exist, in any order, with one query: the send
    /// API's concurrent requests check their accounts together.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn existing(&self, ids: &[AccountId]) -> Result<Vec<AccountId>, RepoError>;

    /// The account Meta knows as `instagram_account_id`.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn find_by_instagram_id(
        &self,
        instagram_account_id: &InstagramAccountId,
    ) -> Result<Option<Account>, RepoError>;

    /// Accounts in creation order.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn list(&self, page: PageRequest) -> Result<Page<Account>, RepoError>;

    /// Replaces the stored account that has `account.id`; returns false when there is none.
    ///
    /// # Errors
    ///
    /// MUST return [`RepoError::Conflict`] like [`AccountRepository::insert`].
    async fn update(&self, account: &Account) -> Result<bool, RepoError>;

    /// Deletes the account; returns false when there was none. Its messages stay.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn delete(&self, id: &AccountId) -> Result<bool, RepoError>;

    /// Records that Meta refused the account's access token, unless it is recorded already;
    /// true when this call recorded it (so the CRM is told once). Cleared by setting a new one.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn mark_token_failure(
        &self,
        id: &AccountId,
        failure: &TokenFailure,
    ) -> Result<bool, RepoError>;

    /// Replaces the account's access token `old` (sealed, as stored) with `new` and its
    /// `life`; false when the stored token is no longer `old` (another instance refreshed it
    /// first, or a client set a new one) or the account is gone.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn replace_token(
        &self,
        id: &AccountId,
        old: &SealedSecret,
        new: &SealedSecret,
        life: TokenLife,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError>;
}

/// Stored messages.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MessageRepository: Send + Sync {
    /// Stores `message` unless one with the same account and `mid` exists; returns whether it
    /// was stored. Messages without a `mid` are always stored.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`]. A duplicate `mid` is not an error.
    async fn insert_if_absent(&self, message: &Message) -> Result<bool, RepoError>;

    /// The message with our id `id`.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn get(&self, id: &MessageId) -> Result<Option<Message>, RepoError>;

    /// A conversation's messages, newest first.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn list_by_conversation(
        &self,
        conversation: &ConversationId,
        page: PageRequest,
    ) -> Result<Page<Message>, RepoError>;
}

/// Conversations between customers and accounts.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ConversationRepository: Send + Sync {
    /// Creates the conversation or merges `conversation`'s timestamps into the stored one
    /// (earliest start, latest message, latest inbound), so concurrent writers never move a
    /// timestamp backwards.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn record(&self, conversation: &Conversation) -> Result<(), RepoError>;

    /// The conversation with id `id`.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn get(&self, id: &ConversationId) -> Result<Option<Conversation>, RepoError>;

    /// The conversations among `ids` that exist, in any order, with one query.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn get_many(&self, ids: &[ConversationId]) -> Result<Vec<Conversation>, RepoError>;

    /// An account's conversations, most recently active first.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn list_by_account(
        &self,
        account: &InstagramAccountId,
        page: PageRequest,
    ) -> Result<Page<Conversation>, RepoError>;
}

/// Whether the store can serve requests.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// Round-trips a trivial query.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] when the store cannot be reached.
    async fn ping(&self) -> Result<(), RepoError>;

    /// Whether every migration this build knows is applied.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] when the store cannot be reached.
    async fn schema_current(&self) -> Result<bool, RepoError>;
}
