//! Meta's webhook notifications (`object: "instagram"`), parsed into domain events.
//!
//! The parser is lenient where Meta is inconsistent and strict where it matters:
//! - every item of `messaging`, `standby` and `changes` is parsed on its own, so one odd item
//!   never costs its neighbours; what is not understood becomes
//!   [`InboundEventKind::Unrecognized`] with the item's JSON, never an error or a panic;
//! - ids may come as strings or numbers and are kept as strings;
//! - `timestamp` may be epoch milliseconds (real traffic) or seconds, as a number or a string
//!   (the dashboard's test payload); without one the entry's `time`, then the receive time, is
//!   used;
//! - free text loses NUL characters, which PostgreSQL cannot store, and unknown kind names are
//!   reduced to a short `[a-z0-9_]` form, so no signed payload can fail to store.

use chrono::{DateTime, TimeZone, Utc};
use insta_router_domain::{
    Attachment, AttachmentKind, Direction, InboundEvent, InboundEventKind, InstagramAccountId,
    InstagramMessageId, InstagramUserId, MessageContext, MessageKind, Parties, ReactionAction,
    ReceivedMessage, Referral, ReplyTo,
};
use serde::Deserialize;

use crate::raw::{Lenient, clean};
use serde_json::value::RawValue;

/// Why a signed body is not a usable notification. The body is still kept (journaled); Meta
/// retrying it would not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON, or not the shape of a notification (an object with an `entry` array).
    #[error("not a webhook notification: {0}")]
    Invalid(String),
}

/// One parsed notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Meta's `object` (`instagram`; `page` for Messenger).
    pub object: Option<String>,
    /// Its events, in order.
    pub events: Vec<InboundEvent>,
}

/// [`parse_notification`] as the ingest's [`NotificationParser`]: the events, or why the body
/// is not a usable notification.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaNotifications;

impl insta_router_ports::NotificationParser for MetaNotifications {
    fn parse(&self, body: &[u8], received_at: DateTime<Utc>) -> Result<Vec<InboundEvent>, String> {
        parse_notification(body, received_at)
            .map(|n| n.events)
            .map_err(|e| e.to_string())
    }
}

/// Longest kind or field name kept.
const MAX_NAME_LEN: usize = 32;

/// Parses a verified webhook body. `received_at` stands in for missing timestamps.
///
/// # Errors
///
/// [`PayloadError::Invalid`] when the body is not JSON or not an object with an `entry` array.
/// Odd items inside a valid notification are not errors: they become
/// [`InboundEventKind::Unrecognized`] events.
pub fn parse_notification(
    body: &[u8],
    received_at: DateTime<Utc>,
) -> Result<Notification, PayloadError> {
    let raw: RawNotification<'_> =
        serde_json::from_slice(body).map_err(|e| PayloadError::Invalid(e.to_string()))?;
    let mut events = Vec::new();
    for entry in raw.entry {
        let entry: RawEntry<'_> = match serde_json::from_str(entry.get()) {
            Ok(entry) => entry,
            Err(e) => {
                events.push(unrecognized(
                    None,
                    "entry",
                    &e.to_string(),
                    entry,
                    received_at,
                ));
                continue;
            }
        };
        let entry_id = Lenient::get(entry.id.as_ref())
            .and_then(|id| InstagramAccountId::parse("entry.id", id).ok());
        let fallback = Lenient::get(entry.time.as_ref())
            .and_then(to_time)
            .unwrap_or(received_at);
        for item in entry.messaging {
            events.push(parse_item(
                item,
                entry_id.as_ref(),
                "messaging",
                false,
                fallback,
            ));
        }
        for item in entry.standby {
            events.push(parse_item(
                item,
                entry_id.as_ref(),
                "standby",
                true,
                fallback,
            ));
        }
        for change in entry.changes {
            let parsed: Result<RawChange<'_>, _> = serde_json::from_str(change.get());
            match parsed {
                Ok(RawChange {
                    field: Some(field),
                    value: Some(value),
                }) if field == "messages" => {
                    events.push(parse_item(
                        value,
                        entry_id.as_ref(),
                        "changes.messages",
                        false,
                        fallback,
                    ));
                }
                Ok(RawChange {
                    field: Some(field),
                    value: Some(value),
                }) if field == "comments" || field == "live_comments" => {
                    let live = field == "live_comments";
                    events.push(
                        match crate::comments::comment(value, entry_id.as_ref(), live) {
                            Ok(kind) => InboundEvent {
                                occurred_at: fallback,
                                standby: false,
                                kind,
                            },
                            Err(reason) => unrecognized(
                                entry_id.clone(),
                                &format!("changes.{field}"),
                                &reason,
                                value,
                                fallback,
                            ),
                        },
                    );
                }
                Ok(RawChange { field, .. }) => {
                    let field = field.map_or_else(
                        || "changes".to_owned(),
                        |f| format!("changes.{}", short_name(&f)),
                    );
                    events.push(unrecognized(
                        entry_id.clone(),
                        &field,
                        "this version does not handle this field",
                        change,
                        fallback,
                    ));
                }
                Err(e) => events.push(unrecognized(
                    entry_id.clone(),
                    "changes",
                    &e.to_string(),
                    change,
                    fallback,
                )),
            }
        }
    }
    Ok(Notification {
        object: raw.object.map(|o| clean(&o)),
        events,
    })
}

fn unrecognized(
    account: Option<InstagramAccountId>,
    field: &str,
    reason: &str,
    raw: &RawValue,
    at: DateTime<Utc>,
) -> InboundEvent {
    InboundEvent {
        occurred_at: at,
        standby: false,
        kind: InboundEventKind::Unrecognized {
            account,
            field: field.to_owned(),
            reason: clean(reason),
            raw: raw.get().to_owned(),
        },
    }
}

fn parse_item(
    raw: &RawValue,
    entry_id: Option<&InstagramAccountId>,
    field: &str,
    standby: bool,
    fallback: DateTime<Utc>,
) -> InboundEvent {
    let item: RawItem = match serde_json::from_str(raw.get()) {
        Ok(item) => item,
        Err(e) => return unrecognized(entry_id.cloned(), field, &e.to_string(), raw, fallback),
    };
    let occurred_at = Lenient::get(item.timestamp.as_ref())
        .and_then(to_time)
        .unwrap_or(fallback);
    match item_kind(item, standby) {
        Ok(kind) => InboundEvent {
            occurred_at,
            standby,
            kind,
        },
        Err(reason) => {
            let mut event = unrecognized(entry_id.cloned(), field, reason, raw, occurred_at);
            event.standby = standby;
            event
        }
    }
}

fn item_kind(item: RawItem, standby: bool) -> Result<InboundEventKind, &'static str> {
    let sender = item.sender.and_then(|p| p.id?.0).ok_or("no sender.id")?;
    let recipient = item
        .recipient
        .and_then(|p| p.id?.0)
        .ok_or("no recipient.id")?;
    let is_echo = item.message.as_ref().is_some_and(|m| m.is_echo);
    let (account, customer) = if is_echo {
        (&sender, &recipient)
    } else {
        (&recipient, &sender)
    };
    let parties = Parties {
        account: InstagramAccountId::parse("recipient.id", account)
            .map_err(|_| "the account id is not a valid Instagram id")?,
        customer: InstagramUserId::parse("sender.id", customer)
            .map_err(|_| "the customer id is not a valid Instagram id")?,
    };
    let mid = |raw: Option<String>| -> Result<InstagramMessageId, &'static str> {
        let raw = raw.ok_or("no mid")?;
        InstagramMessageId::parse("mid", &raw).map_err(|_| "the mid is not a valid id")
    };
    if let Some(message) = item.message {
        let id = mid(message.mid)?;
        if message.is_deleted {
            return Ok(InboundEventKind::Deleted { parties, mid: id });
        }
        let attachments: Vec<Attachment> = message
            .attachments
            .unwrap_or_default()
            .into_iter()
            .map(|a| Attachment {
                kind: AttachmentKind::parse(&kind_name(a.kind.as_deref().unwrap_or("unknown"))),
                url: a.payload.as_ref().and_then(|p| p.url.as_deref()).map(clean),
                title: a
                    .payload
                    .as_ref()
                    .and_then(|p| p.title.as_deref())
                    .map(clean),
            })
            .collect();
        let reply_to = message.reply_to.and_then(|r| {
            if let Some(story) = r.story {
                Some(ReplyTo::Story {
                    id: Lenient::get(story.id.as_ref())
                        .map(clean)
                        .unwrap_or_default(),
                    url: story.url.as_deref().map(clean),
                })
            } else {
                r.mid
                    .and_then(|m| InstagramMessageId::parse("reply_to.mid", &m).ok())
                    .map(ReplyTo::Message)
            }
        });
        let text = message.text.as_deref().map(clean);
        let quick_reply = message.quick_reply.and_then(|q| q.payload);
        let kind = if message.is_unsupported {
            MessageKind::Unsupported
        } else if quick_reply.is_some() {
            MessageKind::QuickReply
        } else if matches!(reply_to, Some(ReplyTo::Story { .. })) {
            MessageKind::StoryReply
        } else if let Some(first) = attachments.first() {
            MessageKind::parse(first.kind.as_str())
        } else if text.is_some() {
            MessageKind::Text
        } else {
            MessageKind::Unsupported
        };
        return Ok(InboundEventKind::Message(ReceivedMessage {
            parties,
            mid: id,
            direction: if is_echo {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            kind,
            text,
            attachments,
            reply_to,
            context: MessageContext {
                payload: quick_reply.as_deref().map(clean),
                referral: message.referral.map(RawReferral::into_domain),
                standby,
            },
        }));
    }
    if let Some(reaction) = item.reaction {
        let action = match reaction.action.as_deref() {
            Some("react") | None => ReactionAction::React,
            Some("unreact") => ReactionAction::Unreact,
            Some(_) => return Err("unknown reaction action"),
        };
        return Ok(InboundEventKind::Reaction {
            parties,
            mid: mid(reaction.mid)?,
            action,
            reaction: reaction.reaction.as_deref().map(clean),
            emoji: reaction.emoji.as_deref().map(clean),
        });
    }
    if let Some(read) = item.read {
        return Ok(InboundEventKind::Read {
            parties,
            mid: read
                .mid
                .and_then(|m| InstagramMessageId::parse("read.mid", &m).ok()),
        });
    }
    if let Some(postback) = item.postback {
        let title = postback.title.as_deref().map(clean);
        let payload = postback.payload.as_deref().map(clean);
        return Ok(match postback.mid {
            Some(raw) => InboundEventKind::Message(ReceivedMessage {
                parties,
                mid: mid(Some(raw))?,
                direction: Direction::Inbound,
                kind: MessageKind::Postback,
                text: title,
                attachments: Vec::new(),
                reply_to: None,
                context: MessageContext {
                    payload,
                    referral: postback.referral.map(RawReferral::into_domain),
                    standby,
                },
            }),
            None => InboundEventKind::Postback {
                parties,
                title,
                payload,
            },
        });
    }
    if let Some(referral) = item.referral {
        return Ok(InboundEventKind::Referral {
            parties,
            referral: referral.into_domain(),
        });
    }
    Err("this version does not handle this kind of item")
}

/// Epoch milliseconds or seconds, as a number or a string.
fn to_time(raw: &str) -> Option<DateTime<Utc>> {
    let n: i64 = raw.trim().parse().ok().or_else(|| {
        raw.trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && f.abs() < 1e16)
            .map(|f| f as i64)
    })?;
    // Anything below 10^11 would be a millisecond time in 1973: it is seconds.
    let millis = if n.abs() < 100_000_000_000 {
        n.checked_mul(1000)?
    } else {
        n
    };
    Utc.timestamp_millis_opt(millis).single()
}

/// A kind name as Meta spells it, with `reel` folded into `ig_reel`; unknown names are cut to
/// a short lower-case identifier so they fit the kind columns.
fn kind_name(raw: &str) -> String {
    match raw {
        "reel" => "ig_reel".to_owned(),
        other => short_name(other),
    }
}

fn short_name(raw: &str) -> String {
    let name: String = raw
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(MAX_NAME_LEN)
        .collect();
    if name.is_empty() {
        "unknown".to_owned()
    } else {
        name
    }
}

#[derive(Deserialize)]
struct RawNotification<'a> {
    #[serde(default)]
    object: Option<String>,
    #[serde(borrow)]
    entry: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(default)]
    id: Option<Lenient>,
    #[serde(default)]
    time: Option<Lenient>,
    #[serde(default, borrow)]
    messaging: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    standby: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    changes: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawChange<'a> {
    #[serde(default)]
    field: Option<String>,
    #[serde(default, borrow)]
    value: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawItem {
    #[serde(default)]
    sender: Option<RawParty>,
    #[serde(default)]
    recipient: Option<RawParty>,
    #[serde(default)]
    timestamp: Option<Lenient>,
    #[serde(default)]
    message: Option<RawMessage>,
    #[serde(default)]
    reaction: Option<RawReaction>,
    #[serde(default)]
    read: Option<RawRead>,
    #[serde(default)]
    postback: Option<RawPostback>,
    #[serde(default)]
    referral: Option<RawReferral>,
}

#[derive(Deserialize)]
struct RawParty {
    #[serde(default)]
    id: Option<Lenient>,
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(default)]
    mid: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    attachments: Option<Vec<RawAttachment>>,
    #[serde(default)]
    is_echo: bool,
    #[serde(default)]
    is_deleted: bool,
    #[serde(default)]
    is_unsupported: bool,
    #[serde(default)]
    quick_reply: Option<RawQuickReply>,
    #[serde(default)]
    referral: Option<RawReferral>,
    #[serde(default)]
    reply_to: Option<RawReplyTo>,
}

#[derive(Deserialize)]
struct RawAttachment {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    payload: Option<RawAttachmentPayload>,
}

#[derive(Deserialize)]
struct RawAttachmentPayload {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Deserialize)]
struct RawQuickReply {
    #[serde(default)]
    payload: Option<String>,
}

#[derive(Deserialize)]
struct RawReplyTo {
    #[serde(default)]
    mid: Option<String>,
    #[serde(default)]
    story: Option<RawStory>,
}

#[derive(Deserialize)]
struct RawStory {
    #[serde(default)]
    id: Option<Lenient>,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
struct RawReaction {
    #[serde(default)]
    mid: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    reaction: Option<String>,
    #[serde(default)]
    emoji: Option<String>,
}

#[derive(Deserialize)]
struct RawRead {
    #[serde(default)]
    mid: Option<String>,
}

#[derive(Deserialize)]
struct RawPostback {
    #[serde(default)]
    mid: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    referral: Option<RawReferral>,
}

#[derive(Deserialize)]
struct RawReferral {
    #[serde(default, rename = "ref")]
    ref_param: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    ad_id: Option<Lenient>,
    #[serde(default)]
    ads_context_data: Option<RawAdContext>,
}

#[derive(Deserialize)]
struct RawAdContext {
    #[serde(default)]
    ad_title: Option<String>,
}

impl RawReferral {
    fn into_domain(self) -> Referral {
        Referral {
            ref_param: self.ref_param.as_deref().map(clean),
            source: self.source.as_deref().map(clean),
            kind: self.kind.as_deref().map(clean),
            ad_id: Lenient::get(self.ad_id.as_ref()).map(clean),
            ad_title: self
                .ads_context_data
                .and_then(|c| c.ad_title)
                .as_deref()
                .map(clean),
        }
    }
}
