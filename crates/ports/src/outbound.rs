//! Sending for CRMs: the stored sends, and the Graph API calls they need.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::{
    Conversation, ConversationId, InstagramAccountId, InstagramMessageId, Message, MessageId,
    NewJob, OutboundMessage, OutboundStatus, SendError,
};

use crate::{Page, PageRequest, RepoError};

/// What became of a send request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored and queued.
    Created,
    /// The account already has a send with this idempotency key: here it is.
    Existing(Box<OutboundMessage>),
}

/// How a send attempt ended, to be written in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The new status.
    pub status: OutboundStatus,
    /// Meta's id of the message, when sent.
    pub instagram_message_id: Option<InstagramMessageId>,
    /// When Meta took it.
    pub sent_at: Option<DateTime<Utc>>,
    /// Why not, when it did not go out.
    pub error: Option<SendError>,
    /// The sent message, to store in its conversation (unless its echo got there first,
    /// under the same mid), and the conversation's new timestamps.
    pub copy: Option<(Message, Conversation)>,
    /// The event for the account's CRM (`message.sent`, `message.failed`).
    pub crm_event: Option<NewJob>,
}

/// The stored sends.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait OutboundStore: Send + Sync {
    /// Stores each message (pending) and queues its job, all in one transaction (a group
    /// commit of concurrent requests), except where the account already has a send with the
    /// same idempotency key, an earlier one of `sends` included: then nothing is written for
    /// it and the stored send is its answer. Concurrent requests with one key store exactly
    /// one. One answer per send, in order.
    ///
    /// A send's answer is [`RepoError::Conflict`] when its key is taken but the send cannot
    /// be read (a concurrent request has not committed yet), or `comment_id` when its comment
    /// has a private reply under another key.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] when the transaction fails: nothing was stored.
    async fn accept_many(
        &self,
        sends: &[(OutboundMessage, NewJob)],
    ) -> Result<Vec<Result<Accepted, RepoError>>, RepoError>;

    /// The send with id `id`.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn get(&self, id: &MessageId) -> Result<Option<OutboundMessage>, RepoError>;

    /// The sends among `ids` that exist, in any order: a send worker's claimed batch, read
    /// with one query.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn get_many(&self, ids: &[MessageId]) -> Result<Vec<OutboundMessage>, RepoError>;

    /// Marks each of `ids`, if still pending, as being handed to Meta and counts the
    /// attempt, all in one transaction (a group commit of concurrent workers); one answer per
    /// id, in order: false when it was not pending (another worker has it, or it is settled,
    /// or it came earlier in `ids`). Written before the Graph API call, so a crash during the
    /// call leaves `sending`, never a blind resend.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] when the transaction fails: nothing was written.
    async fn start_attempts(&self, ids: &[MessageId]) -> Result<Vec<bool>, RepoError>;

    /// Applies each settlement to its send if the send's status is still the `from` given
    /// with it, together with its copy and CRM event; all in one transaction (a group commit
    /// of concurrent workers). One answer per settlement, in order: false (and nothing
    /// written for it) when the status was no longer `from`.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] when the transaction fails: nothing was written.
    async fn settle_many(
        &self,
        settlements: &[(MessageId, OutboundStatus, Settlement)],
    ) -> Result<Vec<bool>, RepoError>;

    /// For a send whose outcome is unknown: the echo Meta sent of it, if one is stored (an
    /// outbound message of `account`'s conversation `conversation` with the send's text, sent
    /// after `since` and not claimed by another send). Returns its mid and time.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn find_echo(
        &self,
        account: &InstagramAccountId,
        conversation: &ConversationId,
        text: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<(InstagramMessageId, DateTime<Utc>)>, RepoError>;
}

/// A conversation as an inbox lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    /// The conversation.
    pub conversation: Conversation,
    /// Its newest message, either direction.
    pub last_message: Option<Message>,
    /// Inbound messages since the business last answered or marked it seen.
    pub unread: u32,
    /// When the business last marked it seen.
    pub seen_at: Option<DateTime<Utc>>,
}

/// The inbox view of conversations.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Inbox: Send + Sync {
    /// An account's conversations, most recently active first, with their last message and
    /// unread count.
    ///
    /// # Errors
    ///
    /// [`RepoError::InvalidCursor`], [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn conversations(
        &self,
        account: &InstagramAccountId,
        page: PageRequest,
    ) -> Result<Page<ConversationSummary>, RepoError>;

    /// One conversation with its last message and unread count.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`] or [`RepoError::Corrupt`].
    async fn conversation(
        &self,
        id: &ConversationId,
    ) -> Result<Option<ConversationSummary>, RepoError>;

    /// Records that the business saw the conversation at `at`; false when there is no such
    /// conversation.
    ///
    /// # Errors
    ///
    /// [`RepoError::Unavailable`].
    async fn mark_seen(&self, id: &ConversationId, at: DateTime<Utc>) -> Result<bool, RepoError>;
}
