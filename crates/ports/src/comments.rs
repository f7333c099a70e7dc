//! Stored comments, as private replies need them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::{
    EventId, InstagramAccountId, InstagramCommentId, InstagramUserId, ReceivedComment,
};

use crate::RepoError;

/// A comment as stored from Meta's webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredComment {
    /// Who wrote it: a private reply goes to them.
    pub author: InstagramUserId,
    /// When it was made (the notification's time).
    pub at: DateTime<Utc>,
    /// Made on a live broadcast.
    pub live: bool,
}

/// A comment event as stored, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentEvent {
    /// The comment.
    pub comment: ReceivedComment,
    /// When it was made (the notification's time).
    pub at: DateTime<Utc>,
}

/// Finds stored comments.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CommentStore: Send + Sync {
    /// The comment `id` made on `account`'s media, if one was received.
    ///
    /// # Errors
    ///
    /// [`RepoError`] when the store fails.
    async fn comment(
        &self,
        account: &InstagramAccountId,
        id: &InstagramCommentId,
    ) -> Result<Option<StoredComment>, RepoError>;

    /// The comment stored as event `id`, if that event is a comment.
    ///
    /// # Errors
    ///
    /// [`RepoError`] when the store fails or the stored comment cannot be read.
    async fn by_event(&self, id: &EventId) -> Result<Option<CommentEvent>, RepoError>;

    /// How many comments `author` made on `account`'s media, as stored.
    ///
    /// # Errors
    ///
    /// [`RepoError`] when the store fails.
    async fn count_by_author(
        &self,
        account: &InstagramAccountId,
        author: &InstagramUserId,
    ) -> Result<u64, RepoError>;
}
