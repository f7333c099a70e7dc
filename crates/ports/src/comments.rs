//! Stored comments, as private replies need them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::{InstagramAccountId, InstagramCommentId, InstagramUserId};

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
}
