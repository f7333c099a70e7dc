//! Messages in either direction.

use chrono::{DateTime, Utc};

use crate::{ConversationId, InstagramAccountId, InstagramMessageId, InstagramUserId, MessageId};

/// Which way a message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From a customer to the business.
    Inbound,
    /// From the business to a customer (a CRM send, an auto-reply, or an echo of a message
    /// typed in the Instagram app).
    Outbound,
}

impl Direction {
    /// The stored and wire name: `inbound` or `outbound`, as in the original service.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }

    /// Parses [`Direction::as_str`]'s output.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "inbound" => Some(Self::Inbound),
            "outbound" => Some(Self::Outbound),
            _ => None,
        }
    }
}

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
            /// A kind Meta sent that this version does not know; the name is kept.
            Other(String),
        }

        impl $name {
            /// The stored and wire name.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)*
                    Self::Other(name) => name,
                }
            }

            /// Parses a stored or wire name; unknown names become [`Self::Other`].
            pub fn parse(raw: &str) -> Self {
                match raw {
                    $($text => Self::$variant,)*
                    other => Self::Other(other.to_owned()),
                }
            }
        }
    };
}

string_enum!(
    /// What a message is, as the CRM's `message_type` names it.
    MessageKind {
        /// Plain text.
        Text => "text",
        /// A photo or sticker.
        Image => "image",
        /// A video.
        Video => "video",
        /// A voice message or audio file.
        Audio => "audio",
        /// A file.
        File => "file",
        /// A shared post or link.
        Share => "share",
        /// The customer mentioned the account in their story.
        StoryMention => "story_mention",
        /// The customer replied to the account's story.
        StoryReply => "story_reply",
        /// A shared reel.
        IgReel => "ig_reel",
        /// A shared post.
        IgPost => "ig_post",
        /// The heart sticker.
        LikeHeart => "like_heart",
        /// A tap on an ice breaker or template button.
        Postback => "postback",
        /// A tap on a quick reply.
        QuickReply => "quick_reply",
        /// Content Meta does not pass on through the API.
        Unsupported => "unsupported",
    }
);

string_enum!(
    /// The type of one attachment, as Meta names it.
    AttachmentKind {
        /// A photo or sticker.
        Image => "image",
        /// A video.
        Video => "video",
        /// Audio.
        Audio => "audio",
        /// A file.
        File => "file",
        /// A shared post or link.
        Share => "share",
        /// A story mention.
        StoryMention => "story_mention",
        /// A shared reel.
        IgReel => "ig_reel",
        /// A shared post.
        IgPost => "ig_post",
        /// The heart sticker (no payload).
        LikeHeart => "like_heart",
    }
);

/// One attachment of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its type.
    pub kind: AttachmentKind,
    /// Where Meta serves it; CDN URLs expire.
    pub url: Option<String>,
    /// A title, for shared posts and reels.
    pub title: Option<String>,
}

/// What a message replies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyTo {
    /// An earlier message of the conversation.
    Message(InstagramMessageId),
    /// A story of the account.
    Story {
        /// The story's media id.
        id: String,
        /// Where Meta serves the story, while it lasts.
        url: Option<String>,
    },
}

/// How a conversation was opened from outside Instagram: an ig.me link or a click-to-Direct ad.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Referral {
    /// The `ref` parameter of the link or ad.
    pub ref_param: Option<String>,
    /// Where the customer came from (`IGME_SOURCE_LINK`, `ADS`, ...).
    pub source: Option<String>,
    /// Meta's referral type (`OPEN_THREAD`).
    pub kind: Option<String>,
    /// The ad's id, for click-to-Direct ads.
    pub ad_id: Option<String>,
    /// The ad's title, for click-to-Direct ads.
    pub ad_title: Option<String>,
}

/// What came with a message besides its content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageContext {
    /// The developer-defined payload of a quick reply or postback button.
    pub payload: Option<String>,
    /// The link or ad that opened the conversation, on the first message after it.
    pub referral: Option<Referral>,
    /// True when Meta sent the message on the `standby` channel: another app controls the
    /// thread, so this one must not answer it.
    pub standby: bool,
}

impl MessageContext {
    /// True when there is nothing to keep.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Our id.
    pub id: MessageId,
    /// The business account the message belongs to.
    pub instagram_account_id: InstagramAccountId,
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Meta's id; `None` for a message we have not sent yet.
    pub mid: Option<InstagramMessageId>,
    /// Which way it travelled.
    pub direction: Direction,
    /// Who sent it.
    pub sender_id: InstagramUserId,
    /// Who received it.
    pub recipient_id: InstagramUserId,
    /// What it is.
    pub kind: MessageKind,
    /// Its text, if any.
    pub text: Option<String>,
    /// Its attachments, possibly none.
    pub attachments: Vec<Attachment>,
    /// What it replies to, if anything.
    pub reply_to: Option<ReplyTo>,
    /// Button payloads, referral, standby.
    pub context: MessageContext,
    /// When it happened, by Meta's clock.
    pub sent_at: DateTime<Utc>,
    /// When we stored it.
    pub created_at: DateTime<Utc>,
    /// When the customer unsent it, if they did.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Message {
    /// The customer's side of the conversation, whichever way the message went.
    pub fn customer_id(&self) -> &InstagramUserId {
        match self.direction {
            Direction::Inbound => &self.sender_id,
            Direction::Outbound => &self.recipient_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_keep_unknown_names() {
        for name in ["text", "story_mention", "like_heart", "unsupported"] {
            assert_eq!(MessageKind::parse(name).as_str(), name);
        }
        assert_eq!(
            MessageKind::parse("hologram"),
            MessageKind::Other("hologram".into())
        );
        assert_eq!(AttachmentKind::parse("ig_reel"), AttachmentKind::IgReel);
        assert_eq!(AttachmentKind::parse("fallback").as_str(), "fallback");
    }

    #[test]
    fn directions_round_trip() {
        for d in [Direction::Inbound, Direction::Outbound] {
            assert_eq!(Direction::parse(d.as_str()), Some(d));
        }
        assert_eq!(Direction::parse("sideways"), None);
    }
}
