//! Conversations as an inbox shows them: listed with their last message and unread count,
//! their history, and marking them seen (here and at Meta).

use std::sync::Arc;

use insta_router_domain::{AccountId, ConversationId, Message};
use insta_router_ports::{
    AccountRepository, Clock, ConversationRepository, ConversationSummary, CredentialCipher,
    GraphError, Inbox, MessageRepository, Messenger, Page, PageRequest, RepoError,
};

/// Why an inbox request failed.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// No account has that id.
    #[error("account {0} not found")]
    AccountNotFound(AccountId),
    /// No conversation has that id.
    #[error("conversation {0} not found")]
    NotFound(ConversationId),
    /// Marked seen here, but Meta refused the `mark_seen`.
    #[error("marked seen here, but Meta refused it: {0}")]
    Graph(GraphError),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] RepoError),
}

/// The inbox use cases.
pub struct InboxService {
    inbox: Arc<dyn Inbox>,
    conversations: Arc<dyn ConversationRepository>,
    messages: Arc<dyn MessageRepository>,
    accounts: Arc<dyn AccountRepository>,
    messenger: Arc<dyn Messenger>,
    cipher: Arc<dyn CredentialCipher>,
    clock: Arc<dyn Clock>,
}

impl InboxService {
    /// A service over these ports.
    pub fn new(
        inbox: Arc<dyn Inbox>,
        conversations: Arc<dyn ConversationRepository>,
        messages: Arc<dyn MessageRepository>,
        accounts: Arc<dyn AccountRepository>,
        messenger: Arc<dyn Messenger>,
        cipher: Arc<dyn CredentialCipher>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inbox,
            conversations,
            messages,
            accounts,
            messenger,
            cipher,
            clock,
        }
    }

    /// An account's conversations, most recently active first.
    ///
    /// # Errors
    ///
    /// [`InboxError::AccountNotFound`] or [`InboxError::Storage`].
    pub async fn conversations(
        &self,
        account: &AccountId,
        page: PageRequest,
    ) -> Result<Page<ConversationSummary>, InboxError> {
        let account = self
            .accounts
            .get(account)
            .await?
            .ok_or_else(|| InboxError::AccountNotFound(account.clone()))?;
        Ok(self
            .inbox
            .conversations(&account.instagram_account_id, page)
            .await?)
    }

    /// The account a conversation belongs to: `None` when there is no such conversation, or
    /// its Instagram account is not connected.
    ///
    /// # Errors
    ///
    /// [`InboxError::Storage`].
    pub async fn account_of(&self, id: &ConversationId) -> Result<Option<AccountId>, InboxError> {
        let Some(conversation) = self.conversations.get(id).await? else {
            return Ok(None);
        };
        Ok(self
            .accounts
            .find_by_instagram_id(&conversation.instagram_account_id)
            .await?
            .map(|a| a.id))
    }

    /// One conversation.
    ///
    /// # Errors
    ///
    /// [`InboxError::NotFound`] or [`InboxError::Storage`].
    pub async fn conversation(
        &self,
        id: &ConversationId,
    ) -> Result<insta_router_domain::Conversation, InboxError> {
        self.conversations
            .get(id)
            .await?
            .ok_or_else(|| InboxError::NotFound(id.clone()))
    }

    /// A conversation's messages, both directions, newest first.
    ///
    /// # Errors
    ///
    /// [`InboxError::NotFound`] or [`InboxError::Storage`].
    pub async fn messages(
        &self,
        id: &ConversationId,
        page: PageRequest,
    ) -> Result<Page<Message>, InboxError> {
        if self.conversations.get(id).await?.is_none() {
            return Err(InboxError::NotFound(id.clone()));
        }
        Ok(self.messages.list_by_conversation(id, page).await?)
    }

    /// Marks the conversation seen now, and tells Meta (`mark_seen`) when the account is
    /// connected, so the customer sees it was read.
    ///
    /// # Errors
    ///
    /// [`InboxError::NotFound`]; [`InboxError::Graph`] when Meta refused (the mark here
    /// stands); [`InboxError::Storage`].
    pub async fn mark_read(&self, id: &ConversationId) -> Result<ConversationSummary, InboxError> {
        let now = self.clock.now();
        let Some(conversation) = self.conversations.get(id).await? else {
            return Err(InboxError::NotFound(id.clone()));
        };
        self.inbox.mark_seen(id, now).await?;
        if let Some(account) = self
            .accounts
            .find_by_instagram_id(&conversation.instagram_account_id)
            .await?
        {
            let token = self.cipher.open(&account.access_token).map_err(|e| {
                InboxError::Graph(GraphError::Permanent {
                    code: None,
                    subcode: None,
                    message: format!("the account's access token cannot be opened: {e}"),
                })
            })?;
            self.messenger
                .mark_seen(&token, &conversation.customer_id)
                .await
                .map_err(InboxError::Graph)?;
        }
        self.inbox
            .conversation(id)
            .await?
            .ok_or_else(|| InboxError::NotFound(id.clone()))
    }
}
