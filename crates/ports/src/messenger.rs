//! Sending through Instagram: the Graph API, as the core sees it.

use async_trait::async_trait;
use insta_router_domain::{
    InstagramMessageId, InstagramUserId, MessagingType, OutboundContent, Recipient, Secret,
};

/// A customer's public profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Their Instagram username.
    pub username: Option<String>,
    /// Their display name.
    pub name: Option<String>,
}

/// Whom a token belongs to, as Meta says (`GET /me`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenOwner {
    /// The Instagram account's id.
    pub id: String,
    /// Its username, when Meta gave it.
    pub username: Option<String>,
}

/// A refreshed access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshedToken {
    /// The new token.
    pub token: Secret,
    /// How long it lasts, when Meta said (`expires_in`, seconds).
    pub expires_in: Option<std::time::Duration>,
}

/// Why Meta did not take a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// Worth trying again later: 5xx, rate limits (codes 4, 17, 32, 613), HTTP 429, code 1
    /// or 2, or the connection failed before the request was sent.
    #[error("temporary Graph API failure{}: {message}", code_suffix(*.code))]
    Transient {
        /// Meta's error code, when it sent one.
        code: Option<i64>,
        /// What Meta or the connection said.
        message: String,
    },
    /// Not worth trying again: an expired token (190), outside the messaging window
    /// (10/2534022), the person is unavailable (551), a bad parameter (100), ...
    #[error("Graph API refused{}: {message}", code_suffix(*.code))]
    Permanent {
        /// Meta's error code.
        code: Option<i64>,
        /// Meta's subcode.
        subcode: Option<i64>,
        /// What Meta said.
        message: String,
    },
    /// The request was sent but no answer came: it may or may not have been delivered, so
    /// it must not be sent blindly again.
    #[error("no answer from the Graph API after sending: {0}")]
    Unknown(String),
}

/// ` (code N)` when Meta sent a code; nothing otherwise (the connection failed, or Meta's
/// answer carried no error body).
fn code_suffix(code: Option<i64>) -> String {
    code.map(|c| format!(" (code {c})")).unwrap_or_default()
}

/// Sends messages and looks up profiles with an account's token.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Messenger: Send + Sync {
    /// The customer's profile (`GET /{igsid}?fields=name,username`).
    ///
    /// # Errors
    ///
    /// [`GraphError`] when the lookup fails (common for customers who have not consented).
    async fn profile(&self, token: &Secret, user: &InstagramUserId) -> Result<Profile, GraphError>;

    /// Sends one message (a text with optional quick replies, or media by URL) to a user with
    /// the messaging type the window allows, or to a comment's author (a private reply, for
    /// which the messaging type does not apply); returns Meta's id of the message sent.
    ///
    /// # Errors
    ///
    /// [`GraphError`], classified for retrying.
    async fn send(
        &self,
        token: &Secret,
        recipient: &Recipient,
        content: &OutboundContent,
        messaging: MessagingType,
    ) -> Result<InstagramMessageId, GraphError>;

    /// Whose token this is (`GET /me?fields=user_id,username`): whether Meta accepts it.
    ///
    /// # Errors
    ///
    /// [`GraphError`]: a refused token is [`GraphError::Permanent`] with code 190.
    async fn me(&self, token: &Secret) -> Result<TokenOwner, GraphError>;

    /// Refreshes an Instagram-login long-lived token
    /// (`GET /refresh_access_token?grant_type=ig_refresh_token`): a new token for another 60
    /// days. Meta refreshes only tokens at least 24 hours old and not expired.
    ///
    /// # Errors
    ///
    /// [`GraphError`]: a dead token is [`GraphError::Permanent`] with code 190.
    async fn refresh_token(&self, token: &Secret) -> Result<RefreshedToken, GraphError>;

    /// Answers comment `comment` publicly (`POST /{comment-id}/replies`); returns the new
    /// comment's id.
    ///
    /// # Errors
    ///
    /// [`GraphError`].
    async fn reply_to_comment(
        &self,
        token: &Secret,
        comment: &insta_router_domain::InstagramCommentId,
        text: &str,
    ) -> Result<String, GraphError>;

    /// Subscribes the token's account to the app's webhook `fields`
    /// (`POST /me/subscribed_apps?subscribed_fields=...`): until then Meta sends it nothing.
    ///
    /// # Errors
    ///
    /// [`GraphError`].
    async fn subscribe(&self, token: &Secret, fields: &[String]) -> Result<(), GraphError>;

    /// The webhook fields the token's account is subscribed to (`GET /me/subscribed_apps`);
    /// empty when none.
    ///
    /// # Errors
    ///
    /// [`GraphError`].
    async fn subscribed_fields(&self, token: &Secret) -> Result<Vec<String>, GraphError>;

    /// Tells Meta the business has seen the conversation (`sender_action: mark_seen`).
    ///
    /// # Errors
    ///
    /// [`GraphError`].
    async fn mark_seen(
        &self,
        token: &Secret,
        recipient: &InstagramUserId,
    ) -> Result<(), GraphError>;
}
