//! Messages a CRM asks us to send: the validated request, its idempotency key, where a send
//! stands, and Meta's messaging-window policy.

use chrono::{DateTime, TimeDelta, Utc};
use url::Url;

use crate::error::collect;
use crate::rules::{QuickReply, check_quick_replies};
use crate::{
    AccountId, FieldError, InstagramCommentId, InstagramMessageId, InstagramUserId, MessageId,
    ValidationErrors,
};

/// Longest text Meta accepts in one message, in UTF-8 bytes.
pub const MAX_TEXT_BYTES: usize = 1000;
/// Longest idempotency key, in bytes (Stripe's limit).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Longest `metadata` a send request may carry, as JSON text in bytes.
pub const MAX_METADATA_BYTES: usize = 4096;
/// Longest attachment URL.
const MAX_URL_LEN: usize = 2048;

/// A client's idempotency key: 1 to 255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses a key as sent in the body or in the `Idempotency-Key` header (a quoted
    /// structured-field string, as the IETF draft writes it, is unquoted first).
    ///
    /// # Errors
    ///
    /// A [`FieldError`] on `idempotency_key` when the key is empty, too long, or holds
    /// characters other than printable ASCII.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let raw = raw
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(raw);
        if raw.trim().is_empty() || raw.len() > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(FieldError::new(
                "idempotency_key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"),
            ));
        }
        if !raw.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(FieldError::new(
                "idempotency_key",
                "may hold only printable ASCII characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key, verbatim.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The kinds of media the Send API takes by URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// `image`: png, jpeg or gif, up to 8 MB.
    Image,
    /// `video`: up to 25 MB.
    Video,
    /// `audio`: up to 25 MB.
    Audio,
    /// `file`: a document.
    File,
}

impl MediaKind {
    /// Meta's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::File => "file",
        }
    }

    /// Parses [`MediaKind::as_str`]'s output.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "image" => Some(Self::Image),
            "video" => Some(Self::Video),
            "audio" => Some(Self::Audio),
            "file" => Some(Self::File),
            _ => None,
        }
    }
}

/// Media sent by URL: Meta fetches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// What it is.
    pub kind: MediaKind,
    /// Where Meta fetches it (http or https).
    pub url: String,
}

/// What one send carries: a text (with optional quick replies) or one attachment. Meta takes
/// them as separate messages, so a request holds one or the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundContent {
    /// A text message.
    Text {
        /// 1 to 1,000 UTF-8 bytes.
        text: String,
        /// Buttons under it, at most 13.
        quick_replies: Vec<QuickReply>,
    },
    /// An attachment by URL.
    Media(Media),
}

impl OutboundContent {
    /// The text, when it is a text message.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Text { text, .. } => Some(text),
            Self::Media(_) => None,
        }
    }
}

/// A validated request to send a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    /// The account that sends.
    pub account_id: AccountId,
    /// The customer it goes to.
    pub recipient_id: InstagramUserId,
    /// What it says.
    pub content: OutboundContent,
    /// True when a person wrote it: outside the 24-hour window it may then still go out, for
    /// 7 days, tagged `HUMAN_AGENT`.
    pub human_agent: bool,
    /// The client's key; one send per key and account.
    pub idempotency_key: IdempotencyKey,
    /// The client's own JSON, kept and returned with the status.
    pub metadata: Option<String>,
    /// A private reply: the comment it answers. Meta takes it addressed to the comment
    /// (`recipient.comment_id`), and it goes to the comment's author, `recipient_id`.
    pub reply_to_comment: Option<InstagramCommentId>,
}

impl SendRequest {
    /// Whom Meta is asked to send to: the comment of a private reply, else the user.
    pub fn recipient(&self) -> Recipient {
        match &self.reply_to_comment {
            Some(comment) => Recipient::Comment(comment.clone()),
            None => Recipient::User(self.recipient_id.clone()),
        }
    }
}

/// Whom the Send API addresses a message to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A user, by Instagram-scoped id (`recipient.id`).
    User(InstagramUserId),
    /// The author of a comment, by the comment (`recipient.comment_id`): a private reply.
    Comment(InstagramCommentId),
}

/// A send request as it arrives, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawSendRequest<'a> {
    /// `account_id`.
    pub account_id: &'a str,
    /// `recipient_id`.
    pub recipient_id: &'a str,
    /// `message`: the text.
    pub text: Option<&'a str>,
    /// `attachment.type` and `attachment.url`.
    pub attachment: Option<(&'a str, &'a str)>,
    /// `quick_replies`.
    pub quick_replies: Vec<QuickReply>,
    /// `human_agent`.
    pub human_agent: bool,
    /// The key from the body or the header.
    pub idempotency_key: Option<&'a str>,
    /// `metadata`, as JSON text.
    pub metadata: Option<String>,
}

impl SendRequest {
    /// Validates every field at once.
    ///
    /// # Errors
    ///
    /// Every field that is invalid: ids, a missing or oversized text, an attachment that is
    /// not an http(s) URL of a known kind, both a text and an attachment, quick replies
    /// without a text or beyond Meta's limits, a missing key, oversized metadata.
    pub fn parse(raw: RawSendRequest<'_>) -> Result<Self, ValidationErrors> {
        let mut errors = Vec::new();
        let account_id = collect(AccountId::parse("account_id", raw.account_id), &mut errors);
        let recipient_id = collect(
            InstagramUserId::parse("recipient_id", raw.recipient_id),
            &mut errors,
        );
        let key = match raw.idempotency_key {
            Some(key) => collect(IdempotencyKey::parse(key), &mut errors),
            None => {
                errors.push(FieldError::new(
                    "idempotency_key",
                    "is required, in the body or the Idempotency-Key header",
                ));
                None
            }
        };
        let content = match (raw.text, raw.attachment) {
            (Some(_), Some(_)) => {
                errors.push(FieldError::new(
                    "attachment",
                    "cannot go with a message text: Meta sends them as two messages, so send two requests",
                ));
                None
            }
            (None, None) => {
                errors.push(FieldError::new(
                    "message",
                    "is required unless an attachment is sent",
                ));
                None
            }
            (Some(text), None) => {
                if text.trim().is_empty() || text.len() > MAX_TEXT_BYTES {
                    errors.push(FieldError::new(
                        "message",
                        format!("must be 1 to {MAX_TEXT_BYTES} bytes of UTF-8 (Meta's limit)"),
                    ));
                }
                check_quick_replies("quick_replies", &raw.quick_replies, &mut errors);
                Some(OutboundContent::Text {
                    text: text.to_owned(),
                    quick_replies: raw.quick_replies.clone(),
                })
            }
            (None, Some((kind, url))) => {
                if !raw.quick_replies.is_empty() {
                    errors.push(FieldError::new(
                        "quick_replies",
                        "can go only with a message text",
                    ));
                }
                let kind = MediaKind::parse(kind).or_else(|| {
                    errors.push(FieldError::new(
                        "attachment.type",
                        "must be image, video, audio or file",
                    ));
                    None
                });
                let url = collect(check_media_url(url), &mut errors);
                kind.zip(url)
                    .map(|(kind, url)| OutboundContent::Media(Media { kind, url }))
            }
        };
        if raw
            .metadata
            .as_ref()
            .is_some_and(|m| m.len() > MAX_METADATA_BYTES)
        {
            errors.push(FieldError::new(
                "metadata",
                format!("must be at most {MAX_METADATA_BYTES} bytes of JSON"),
            ));
        }
        ValidationErrors::check(errors)?;
        match (account_id, recipient_id, content, key) {
            (Some(account_id), Some(recipient_id), Some(content), Some(idempotency_key)) => {
                Ok(Self {
                    account_id,
                    recipient_id,
                    content,
                    human_agent: raw.human_agent,
                    idempotency_key,
                    metadata: raw.metadata,
                    reply_to_comment: None,
                })
            }
            // Unreachable: every `None` above pushed an error.
            _ => Err(FieldError::new("request", "is invalid").into()),
        }
    }
}

fn check_media_url(raw: &str) -> Result<String, FieldError> {
    let field = "attachment.url";
    if raw.len() > MAX_URL_LEN {
        return Err(FieldError::new(field, "is too long"));
    }
    let url = Url::parse(raw).map_err(|e| FieldError::new(field, format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(FieldError::new(field, "must be an http or https URL"));
    }
    Ok(raw.to_owned())
}

/// Where a send stands, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundStatus {
    /// Queued; not handed to Meta yet, or handed back after a temporary failure.
    Pending,
    /// A worker is handing it to Meta right now. A send found in this state by a later
    /// worker may or may not have reached Meta, so it becomes [`OutboundStatus::Unknown`].
    Sending,
    /// Meta took it and gave its message id.
    Sent,
    /// Meta refused it, or it could not be sent; see the error.
    Failed,
    /// It was handed to Meta but no answer came: never sent again blindly; becomes `sent`
    /// when its echo arrives.
    Unknown,
}

impl OutboundStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }

    /// The name shown to API clients: a send being handed over is still `pending`.
    pub fn public_name(self) -> &'static str {
        match self {
            Self::Sending => Self::Pending.as_str(),
            other => other.as_str(),
        }
    }

    /// Parses [`OutboundStatus::as_str`]'s output.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(Self::Pending),
            "sending" => Some(Self::Sending),
            "sent" => Some(Self::Sent),
            "failed" => Some(Self::Failed),
            "unknown" => Some(Self::Unknown),
            _ => None,
        }
    }

    /// True once nothing more will happen to the send (except an `unknown` reconciled).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Sent | Self::Failed | Self::Unknown)
    }
}

/// Why a send did not go out, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// Meta's error code as text (`"190"`, `"10"`, `"551"`) when Meta refused; otherwise
    /// one of ours: `outside_window`, `token_unavailable`, `account_deleted`,
    /// `outcome_unknown`, `temporary_failure`.
    pub code: String,
    /// Meta's subcode, when it sent one (`2534022` outside the window, `463` expired token).
    pub subcode: Option<i64>,
    /// What Meta or we said.
    pub message: String,
    /// True when the same request may succeed later (a rate limit, Meta down); false when it
    /// would fail the same way (a bad token, a closed window, an unknown recipient).
    pub retryable: bool,
}

/// A message a CRM asked us to send, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// Our id (`msg_...`).
    pub id: MessageId,
    /// The request, validated.
    pub request: SendRequest,
    /// A digest of the request, to tell a retry from a different request with the same key.
    pub fingerprint: String,
    /// Where it stands.
    pub status: OutboundStatus,
    /// Meta's id, once sent.
    pub instagram_message_id: Option<InstagramMessageId>,
    /// Why it failed, or what is known of an `unknown` outcome.
    pub error: Option<SendError>,
    /// How many times it was handed to Meta.
    pub attempts: u32,
    /// When the request was accepted.
    pub created_at: DateTime<Utc>,
    /// When Meta took it.
    pub sent_at: Option<DateTime<Utc>>,
}

/// How a message is sent, by Meta's rules for the 24-hour window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessagingType {
    /// `messaging_type: RESPONSE`: inside 24 hours of the customer's last message.
    Response,
    /// `messaging_type: MESSAGE_TAG, tag: HUMAN_AGENT`: a person's answer, up to 7 days after.
    HumanAgent,
}

/// The window Meta allows after the customer's last message.
pub const STANDARD_WINDOW: TimeDelta = TimeDelta::hours(24);
/// The window for a person's answer tagged `HUMAN_AGENT`.
pub const HUMAN_AGENT_WINDOW: TimeDelta = TimeDelta::days(7);

/// Picks the messaging type for a send at `now`, given when the customer last wrote, or
/// refuses without asking Meta when the window is known to be closed.
///
/// When we have no inbound message of the conversation (it began before insta-router was
/// connected), the send goes out as a response and Meta decides.
///
/// # Errors
///
/// A [`SendError`] coded `outside_window`, not retryable.
pub fn messaging_type(
    last_inbound_at: Option<DateTime<Utc>>,
    human_agent: bool,
    now: DateTime<Utc>,
) -> Result<MessagingType, SendError> {
    let Some(last) = last_inbound_at else {
        return Ok(MessagingType::Response);
    };
    let since = now.signed_duration_since(last);
    if since < STANDARD_WINDOW {
        return Ok(MessagingType::Response);
    }
    if human_agent && since < HUMAN_AGENT_WINDOW {
        return Ok(MessagingType::HumanAgent);
    }
    let message = if human_agent {
        "the customer last wrote more than 7 days ago: not even a HUMAN_AGENT message may be sent"
    } else {
        "the customer last wrote more than 24 hours ago: only a person's answer (human_agent: true) may be sent, for up to 7 days"
    };
    Err(SendError {
        code: "outside_window".to_owned(),
        subcode: None,
        message: message.to_owned(),
        retryable: false,
    })
}

/// Meta's error codes that mean the account's access token no longer works.
pub fn is_token_error(code: Option<i64>) -> bool {
    code == Some(190)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawSendRequest<'static> {
        RawSendRequest {
            account_id: "acc_0123456789ab",
            recipient_id: "1234567890123456",
            text: Some("Your order ships today"),
            idempotency_key: Some("order-66-shipped"),
            ..RawSendRequest::default()
        }
    }

    fn fields(result: Result<SendRequest, ValidationErrors>) -> Vec<String> {
        result
            .unwrap_err()
            .errors()
            .iter()
            .map(|e| e.field.to_string())
            .collect()
    }

    #[test]
    fn a_text_request_parses() {
        let request = SendRequest::parse(raw()).unwrap();
        assert_eq!(request.content.text(), Some("Your order ships today"));
        assert_eq!(request.idempotency_key.as_str(), "order-66-shipped");
        assert!(!request.human_agent);
    }

    #[test]
    fn text_is_limited_in_bytes_not_characters() {
        // 500 two-byte characters are 1,000 bytes: accepted; one more is not.
        let ok = "ä".repeat(500);
        assert!(
            SendRequest::parse(RawSendRequest {
                text: Some(&ok),
                ..raw()
            })
            .is_ok()
        );
        let long = "ä".repeat(501);
        assert_eq!(
            fields(SendRequest::parse(RawSendRequest {
                text: Some(&long),
                ..raw()
            })),
            ["message"]
        );
        assert_eq!(
            fields(SendRequest::parse(RawSendRequest {
                text: Some("  "),
                ..raw()
            })),
            ["message"]
        );
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        let errors = fields(SendRequest::parse(RawSendRequest {
            account_id: "nope",
            recipient_id: "",
            text: None,
            idempotency_key: None,
            ..raw()
        }));
        assert_eq!(
            errors,
            ["account_id", "recipient_id", "idempotency_key", "message"]
        );
    }

    #[test]
    fn attachments_are_http_urls_of_a_known_kind_and_never_with_text() {
        let media = SendRequest::parse(RawSendRequest {
            text: None,
            attachment: Some(("image", "https://shop.example/p/42.jpg")),
            ..raw()
        })
        .unwrap();
        assert_eq!(
            media.content,
            OutboundContent::Media(Media {
                kind: MediaKind::Image,
                url: "https://shop.example/p/42.jpg".into()
            })
        );
        assert_eq!(
            fields(SendRequest::parse(RawSendRequest {
                text: None,
                attachment: Some(("sticker", "ftp://x")),
                ..raw()
            })),
            ["attachment.type", "attachment.url"]
        );
        assert_eq!(
            fields(SendRequest::parse(RawSendRequest {
                attachment: Some(("image", "https://shop.example/a.png")),
                ..raw()
            })),
            ["attachment"]
        );
    }

    #[test]
    fn quick_replies_follow_metas_limits() {
        let many = vec![
            QuickReply {
                title: "Yes".into(),
                payload: "YES".into()
            };
            14
        ];
        assert_eq!(
            fields(SendRequest::parse(RawSendRequest {
                quick_replies: many,
                ..raw()
            })),
            ["quick_replies"]
        );
        let long_title = vec![QuickReply {
            title: "x".repeat(21),
            payload: "X".into(),
        }];
        assert_eq!(
            fields(SendRequest::parse(RawSendRequest {
                quick_replies: long_title,
                ..raw()
            })),
            ["quick_replies[0].title"]
        );
    }

    #[test]
    fn idempotency_keys_are_printable_and_bounded_and_may_be_quoted() {
        assert_eq!(
            IdempotencyKey::parse("\"8e03978e-40d5\"").unwrap().as_str(),
            "8e03978e-40d5"
        );
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("tab\there").is_err());
        assert!(IdempotencyKey::parse("ключ").is_err());
    }

    #[test]
    fn metadata_is_bounded() {
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_METADATA_BYTES));
        assert_eq!(
            fields(SendRequest::parse(RawSendRequest {
                metadata: Some(big),
                ..raw()
            })),
            ["metadata"]
        );
    }

    #[test]
    fn the_window_decides_the_messaging_type() {
        let now = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(100);
        let ago = |h: i64| Some(now - TimeDelta::hours(h));
        assert_eq!(
            messaging_type(None, false, now),
            Ok(MessagingType::Response)
        );
        assert_eq!(
            messaging_type(ago(23), false, now),
            Ok(MessagingType::Response)
        );
        assert_eq!(
            messaging_type(ago(23), true, now),
            Ok(MessagingType::Response)
        );
        let closed = messaging_type(ago(25), false, now).unwrap_err();
        assert_eq!(closed.code, "outside_window");
        assert!(!closed.retryable);
        assert_eq!(
            messaging_type(ago(25), true, now),
            Ok(MessagingType::HumanAgent)
        );
        assert_eq!(
            messaging_type(ago(24 * 7 - 1), true, now),
            Ok(MessagingType::HumanAgent)
        );
        assert!(messaging_type(ago(24 * 7), true, now).is_err());
    }

    #[test]
    fn statuses_round_trip_and_sending_shows_as_pending() {
        for s in [
            OutboundStatus::Pending,
            OutboundStatus::Sending,
            OutboundStatus::Sent,
            OutboundStatus::Failed,
            OutboundStatus::Unknown,
        ] {
            assert_eq!(OutboundStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(OutboundStatus::Sending.public_name(), "pending");
        assert_eq!(OutboundStatus::parse("queued"), None);
    }
}
