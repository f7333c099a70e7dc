//! The pure core of insta-router: identifiers, accounts, conversations and messages.
//!
//! # Overview
//!
//! insta-router connects Instagram Direct Messages to a shop's CRM. This crate holds the
//! vocabulary the rest of the service speaks, with no I/O, no async runtime and no framework,
//! so another Rust service can embed it:
//!
//! - [identifiers](crate::id): our own public ids ([`AccountId`], [`MessageId`], ...) are opaque
//!   prefixed strings; Meta's ids ([`InstagramAccountId`], [`InstagramUserId`],
//!   [`InstagramMessageId`]) are kept verbatim and never parsed as numbers;
//! - [`Account`]: a connected Instagram professional account and where its CRM listens;
//! - [`Conversation`]: one customer talking to one account;
//! - [`Message`]: one message in either direction, with its kind, text and attachments.
//!
//! Every value that comes from outside is parsed once, through a constructor that returns a
//! typed error naming the offending field ([`FieldError`]); holding a value means it is valid.
//! Nothing here reads the clock or a random source: timestamps and fresh ids are passed in.
//!
//! # Example
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use insta_router_domain::{AccountDraft, AccountId, Secret};
//!
//! let draft = AccountDraft::parse(
//!     "17841400000000001",
//!     "shop.example",
//!     Secret::new("IGQVJ...token".to_owned()),
//!     Some("https://crm.example/hooks/instagram"),
//!     Some(Secret::new("whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=".to_owned())),
//! )
//! .expect("valid account");
//! assert_eq!(draft.username.as_str(), "shop.example");
//!
//! let id = AccountId::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
//! assert!(id.as_str().starts_with("acc_"));
//! # let _ = Utc.timestamp_opt(0, 0);
//! ```

#![warn(missing_docs)]

mod account;
mod analytics;
mod api_key;
mod comment_rules;
mod conversation;
mod delivery;
mod error;
mod event;
pub mod id;
mod job;
mod message;
mod outbound;
mod profile;
mod routing;
pub mod rules;
mod secret;
mod token;

pub use account::{
    Account, AccountDraft, AccountPatch, CrmDeliveryState, CrmWebhookUrl, TokenFailure, Username,
};
pub use analytics::{Bucket, MAX_BUCKETS, TimeRange};
pub use api_key::{
    ApiKey, KEY_PREFIX, KEY_RANDOM_CHARS, KeyName, KeyScope, looks_like_key, new_key_text,
};
pub use comment_rules::{
    LIVE_BROADCAST_LIMIT, PRIVATE_REPLY_WINDOW, evaluate_comment, private_reply_open,
};
pub use conversation::Conversation;
pub use delivery::{
    AttemptOutcome, MIN_BACKOFF_AFTER_OVERLOAD, NextStep, RetrySchedule, next_step,
};
pub use error::{FieldError, ValidationErrors};
pub use event::{
    InboundEvent, InboundEventKind, Parties, ReactionAction, ReceivedComment, ReceivedMessage,
};
pub use id::{
    AccountId, ApiKeyId, ConversationId, EventId, InstagramAccountId, InstagramCommentId,
    InstagramMessageId, InstagramUserId, JobId, MessageId, RuleId, WebhookId,
};
pub use job::{
    ClaimedJob, Job, JobKind, JobLease, JobStatus, JobWork, NewJob, REPLAY_DELAYS, replay_delay,
};
pub use message::{
    Attachment, AttachmentKind, Direction, Message, MessageContext, MessageKind, Referral, ReplyTo,
};
pub use outbound::{
    HUMAN_AGENT_WINDOW, IdempotencyKey, MAX_IDEMPOTENCY_KEY_LEN, MAX_METADATA_BYTES,
    MAX_TEXT_BYTES, Media, MediaKind, MessagingType, OutboundContent, OutboundMessage,
    OutboundStatus, RawSendRequest, Recipient, STANDARD_WINDOW, SendError, SendRequest,
    is_token_error, messaging_type,
};
pub use profile::{IceBreaker, MAX_ICE_BREAKERS, MenuItem};
pub use routing::{FollowUp, Route};
pub use secret::{SealedSecret, Secret};
pub use token::{LONG_LIVED_TOKEN, REFRESH_BEFORE_EXPIRY, REFRESH_MIN_AGE, TokenLife, TokenState};
