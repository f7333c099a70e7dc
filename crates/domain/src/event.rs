//! Inbound events: what one Meta webhook notification reports, already routed to a business
//! account and a customer.
//!
//! Routing follows Meta's semantics: the business account is the recipient of what a customer
//! sends and the sender of an echo (`is_echo`), whatever `entry[].id` says.

use chrono::{DateTime, Utc};

use crate::{
    Attachment, Direction, InstagramAccountId, InstagramCommentId, InstagramMessageId,
    InstagramUserId, MessageContext, MessageKind, ReplyTo,
};

/// One event of a notification, in the order Meta listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundEvent {
    /// When it happened, by Meta's clock.
    pub occurred_at: DateTime<Utc>,
    /// True when it came on the `standby` channel (another app controls the thread).
    pub standby: bool,
    /// What happened.
    pub kind: InboundEventKind,
}

/// The business account and the customer an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Parties {
    /// The business side.
    pub account: InstagramAccountId,
    /// The customer side.
    pub customer: InstagramUserId,
}

/// A message as Meta reported it, before we store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// Who is talking.
    pub parties: Parties,
    /// Meta's id.
    pub mid: InstagramMessageId,
    /// Inbound from the customer, or outbound: an echo of what the business sent.
    pub direction: Direction,
    /// What it is.
    pub kind: MessageKind,
    /// Its text, if any.
    pub text: Option<String>,
    /// Its attachments, possibly none.
    pub attachments: Vec<Attachment>,
    /// What it replies to.
    pub reply_to: Option<ReplyTo>,
    /// Payloads, referral, standby.
    pub context: MessageContext,
}

impl ReceivedMessage {
    /// Who sent it.
    pub fn sender(&self) -> InstagramUserId {
        match self.direction {
            Direction::Inbound => self.parties.customer.clone(),
            Direction::Outbound => self.parties.account.to_user_id(),
        }
    }

    /// Who received it.
    pub fn recipient(&self) -> InstagramUserId {
        match self.direction {
            Direction::Inbound => self.parties.account.to_user_id(),
            Direction::Outbound => self.parties.customer.clone(),
        }
    }
}

/// A comment on one of the account's posts, reels or ads, or on its live broadcast (Meta's
/// `comments` and `live_comments` webhook fields), or a reply to such a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedComment {
    /// The account commented on, and the author as the customer.
    pub parties: Parties,
    /// Meta's id of the comment.
    pub comment_id: InstagramCommentId,
    /// The author's username, when Meta gave it.
    pub username: Option<String>,
    /// The comment's text.
    pub text: Option<String>,
    /// The media commented on, when Meta named it.
    pub media_id: Option<String>,
    /// The media's product type (`FEED`, `REELS`, `AD`, `LIVE`, ...), when Meta gave it.
    pub media_product_type: Option<String>,
    /// The comment this one replies to.
    pub parent_id: Option<InstagramCommentId>,
    /// Made on a live broadcast (`live_comments`): a private reply is possible only while the
    /// broadcast lasts.
    pub live: bool,
    /// The ad, when the media is an ad: its id.
    pub ad_id: Option<String>,
    /// The ad's title.
    pub ad_title: Option<String>,
}

impl ReceivedComment {
    /// Written by the account itself (a public reply of the business), not by a customer.
    pub fn by_account(&self) -> bool {
        self.parties.customer.as_str() == self.parties.account.as_str()
    }
}

/// Whether a reaction was added or taken back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReactionAction {
    /// Added.
    React,
    /// Taken back.
    Unreact,
}

impl ReactionAction {
    /// Meta's name: `react` or `unreact`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::React => "react",
            Self::Unreact => "unreact",
        }
    }
}

/// What an inbound event reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundEventKind {
    /// A new message, inbound or echoed.
    Message(ReceivedMessage),
    /// The customer unsent message `mid`.
    Deleted {
        /// Who.
        parties: Parties,
        /// The unsent message.
        mid: InstagramMessageId,
    },
    /// The customer reacted to message `mid`, or took a reaction back.
    Reaction {
        /// Who.
        parties: Parties,
        /// The message reacted to.
        mid: InstagramMessageId,
        /// Added or taken back.
        action: ReactionAction,
        /// Meta's reaction name (`love`, ...), when added.
        reaction: Option<String>,
        /// The emoji, when added.
        emoji: Option<String>,
    },
    /// The customer read the conversation up to message `mid`.
    Read {
        /// Who.
        parties: Parties,
        /// The last message read, when Meta names it.
        mid: Option<InstagramMessageId>,
    },
    /// The customer tapped a button, reported without a message id (older Graph versions).
    Postback {
        /// Who.
        parties: Parties,
        /// The button's title.
        title: Option<String>,
        /// The button's payload.
        payload: Option<String>,
    },
    /// Someone commented on the account's media.
    Comment(ReceivedComment),
    /// The customer opened an existing conversation through an ig.me link or an ad.
    Referral {
        /// Who.
        parties: Parties,
        /// Where from.
        referral: crate::Referral,
    },
    /// Something this version does not understand: an unknown field or item, or an item that
    /// lacks what its kind requires. Kept verbatim, never dropped silently.
    Unrecognized {
        /// The business account, when the entry named one.
        account: Option<InstagramAccountId>,
        /// Where it was: `messaging`, `standby`, or the `changes` field name.
        field: String,
        /// Why it was not understood.
        reason: String,
        /// The item's JSON, as Meta sent it.
        raw: String,
    },
}

impl InboundEvent {
    /// The business account the event belongs to, when known.
    pub fn account(&self) -> Option<&InstagramAccountId> {
        match &self.kind {
            InboundEventKind::Message(m) => Some(&m.parties.account),
            InboundEventKind::Comment(c) => Some(&c.parties.account),
            InboundEventKind::Deleted { parties, .. }
            | InboundEventKind::Reaction { parties, .. }
            | InboundEventKind::Read { parties, .. }
            | InboundEventKind::Postback { parties, .. }
            | InboundEventKind::Referral { parties, .. } => Some(&parties.account),
            InboundEventKind::Unrecognized { account, .. } => account.as_ref(),
        }
    }

    /// The parties, for every kind but [`InboundEventKind::Unrecognized`].
    pub fn parties(&self) -> Option<&Parties> {
        match &self.kind {
            InboundEventKind::Message(m) => Some(&m.parties),
            InboundEventKind::Comment(c) => Some(&c.parties),
            InboundEventKind::Deleted { parties, .. }
            | InboundEventKind::Reaction { parties, .. }
            | InboundEventKind::Read { parties, .. }
            | InboundEventKind::Postback { parties, .. }
            | InboundEventKind::Referral { parties, .. } => Some(parties),
            InboundEventKind::Unrecognized { .. } => None,
        }
    }

    /// The name of the kind, as stored and as the CRM's event types end: `message`,
    /// `deleted`, `reaction`, `read`, `postback`, `referral`, `comment`, `unrecognized`.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            InboundEventKind::Message(_) => "message",
            InboundEventKind::Comment(_) => "comment",
            InboundEventKind::Deleted { .. } => "deleted",
            InboundEventKind::Reaction { .. } => "reaction",
            InboundEventKind::Read { .. } => "read",
            InboundEventKind::Postback { .. } => "postback",
            InboundEventKind::Referral { .. } => "referral",
            InboundEventKind::Unrecognized { .. } => "unrecognized",
        }
    }

    /// The [`Self::dedup_key`] of the comment `id`, to find it again.
    pub fn comment_key(id: &InstagramCommentId) -> String {
        format!("comment\u{1f}{id}")
    }

    /// A key that is the same for the same event delivered twice (Meta retries a notification
    /// until it is acknowledged, and may repeat an item inside one), and differs between
    /// events. Messages are keyed by their `mid`, comments by their id; the other kinds, which have no id of their
    /// own, by who did what to which message when.
    pub fn dedup_key(&self) -> String {
        const SEP: char = '\u{1f}';
        let at = self.occurred_at.timestamp_millis();
        match &self.kind {
            InboundEventKind::Message(m) => format!("message{SEP}{}", m.mid),
            // A comment has an id of its own; `comments` and `live_comments` never share one.
            InboundEventKind::Comment(c) => Self::comment_key(&c.comment_id),
            InboundEventKind::Deleted { mid, .. } => format!("deleted{SEP}{mid}"),
            InboundEventKind::Reaction {
                parties,
                mid,
                action,
                reaction,
                ..
            } => format!(
                "reaction{SEP}{}{SEP}{mid}{SEP}{}{SEP}{}{SEP}{at}",
                parties.customer,
                action.as_str(),
                reaction.as_deref().unwrap_or_default()
            ),
            InboundEventKind::Read { parties, mid } => format!(
                "read{SEP}{}{SEP}{}{SEP}{at}",
                parties.customer,
                mid.as_ref()
                    .map(InstagramMessageId::as_str)
                    .unwrap_or_default()
            ),
            InboundEventKind::Postback {
                parties, payload, ..
            } => format!(
                "postback{SEP}{}{SEP}{}{SEP}{at}",
                parties.customer,
                payload.as_deref().unwrap_or_default()
            ),
            InboundEventKind::Referral { parties, referral } => format!(
                "referral{SEP}{}{SEP}{}{SEP}{at}",
                parties.customer,
                referral.ref_param.as_deref().unwrap_or_default()
            ),
            InboundEventKind::Unrecognized { field, raw, .. } => {
                format!("unrecognized{SEP}{field}{SEP}{raw}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn parties() -> Parties {
        Parties {
            account: InstagramAccountId::parse("a", "17841400000000001").unwrap(),
            customer: InstagramUserId::parse("c", "1234567890123456").unwrap(),
        }
    }

    fn reaction(action: ReactionAction, ms: i64) -> InboundEvent {
        InboundEvent {
            occurred_at: Utc.timestamp_millis_opt(ms).unwrap(),
            standby: false,
            kind: InboundEventKind::Reaction {
                parties: parties(),
                mid: InstagramMessageId::parse("m", "mid.1").unwrap(),
                action,
                reaction: None,
                emoji: None,
            },
        }
    }

    #[test]
    fn dedup_keys_tell_events_apart_and_repeat_for_the_same_event() {
        let a = reaction(ReactionAction::React, 1);
        assert_eq!(
            a.dedup_key(),
            reaction(ReactionAction::React, 1).dedup_key()
        );
        assert_ne!(
            a.dedup_key(),
            reaction(ReactionAction::Unreact, 1).dedup_key()
        );
        assert_ne!(
            a.dedup_key(),
            reaction(ReactionAction::React, 2).dedup_key()
        );
    }

    fn comment(id: &str, author: &str, ms: i64) -> InboundEvent {
        InboundEvent {
            occurred_at: Utc.timestamp_millis_opt(ms).unwrap(),
            standby: false,
            kind: InboundEventKind::Comment(ReceivedComment {
                parties: Parties {
                    account: InstagramAccountId::parse("a", "17841400000000001").unwrap(),
                    customer: InstagramUserId::parse("c", author).unwrap(),
                },
                comment_id: InstagramCommentId::parse("id", id).unwrap(),
                username: None,
                text: Some("price?".into()),
                media_id: None,
                media_product_type: None,
                parent_id: None,
                live: false,
                ad_id: None,
                ad_title: None,
            }),
        }
    }

    #[test]
    fn a_comment_is_keyed_by_its_id_whenever_it_arrives() {
        let first = comment("179001", "42", 1);
        assert_eq!(first.dedup_key(), comment("179001", "42", 2).dedup_key());
        assert_ne!(first.dedup_key(), comment("179002", "42", 1).dedup_key());
        assert_eq!(first.kind_name(), "comment");
        let InboundEventKind::Comment(c) = &comment("179003", "17841400000000001", 1).kind else {
            unreachable!()
        };
        assert!(c.by_account());
    }

    #[test]
    fn echoes_are_sent_by_the_account() {
        let message = ReceivedMessage {
            parties: parties(),
            mid: InstagramMessageId::parse("m", "mid.1").unwrap(),
            direction: Direction::Outbound,
            kind: MessageKind::Text,
            text: Some("hi".into()),
            attachments: Vec::new(),
            reply_to: None,
            context: MessageContext::default(),
        };
        assert_eq!(message.sender().as_str(), "17841400000000001");
        assert_eq!(message.recipient().as_str(), "1234567890123456");
    }
}
