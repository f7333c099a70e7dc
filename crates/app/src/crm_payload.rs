//! The bodies CRMs receive: `{"type", "timestamp", "data"}`, serialised once when the event is
//! stored, so every retry and replay sends the same bytes.
//!
//! `data` of a message keeps every field of the original service's `InboundMessageWebhook`
//! (`event`, `message_id`, `account_id`, `sender_id`, `sender_username`, `message`,
//! `message_type`, `timestamp`, `instagram_message_id`, `conversation_id`) and adds ours.
//! `message_id` stays Meta's `mid`, as the original sent it; our id is `id`.
//!
//! `account_id` is our account id: a body is rendered only once the event's route is known
//! (see [`insta_router_domain::Route`]), since only an account with a CRM gets deliveries.

use chrono::{DateTime, SecondsFormat, Utc};
use insta_router_domain::{
    AccountId, Attachment, EventId, InboundEvent, InboundEventKind, JobId, JobWork, Message,
    NewJob, OutboundMessage, ReactionAction, Referral, ReplyTo,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// The body of the delivery of a stored message.
///
/// Written through derived `Serialize` structs (one per webhook, on the hot path), with their
/// fields in alphabetical order: the same bytes a `serde_json` map gives, as the other bodies.
pub(crate) fn message_body(event_type: &str, message: &Message, account: &AccountId) -> String {
    let mid = message.mid.as_ref().map(|m| m.as_str());
    let body = Envelope {
        data: MessageData {
            account_id: account.as_str(),
            attachments: message.attachments.iter().map(attachment).collect(),
            conversation_id: message.conversation_id.as_str(),
            direction: message.direction.as_str(),
            event: event_type,
            id: message.id.as_str(),
            instagram_account_id: message.instagram_account_id.as_str(),
            instagram_message_id: mid,
            message: message.text.as_deref(),
            message_id: mid,
            message_type: message.kind.as_str(),
            payload: message.context.payload.as_deref(),
            recipient_id: message.recipient_id.as_str(),
            referral: message.context.referral.as_ref().map(referral),
            reply_to: message.reply_to.as_ref().map(reply_to),
            sender_id: message.sender_id.as_str(),
            sender_username: (),
            standby: message.context.standby,
            timestamp: rfc3339(message.sent_at),
        },
        timestamp: rfc3339(message.sent_at),
        kind: event_type,
    };
    // Serialising these types cannot fail: strings, numbers and JSON values only.
    serde_json::to_string(&body).unwrap_or_default()
}

/// The delivery of `body`, about `subject`, to the CRM of `account`.
pub(crate) fn delivery(
    account: &AccountId,
    subject: &str,
    body: String,
    now: DateTime<Utc>,
) -> NewJob {
    NewJob {
        id: JobId::from_u128(crate::new_id_bits()),
        work: JobWork::CrmDelivery { body },
        account_id: Some(account.clone()),
        subject: subject.to_owned(),
        run_at: now,
    }
}

/// `{"data", "timestamp", "type"}`.
#[derive(Serialize)]
struct Envelope<'a, D> {
    data: D,
    timestamp: String,
    #[serde(rename = "type")]
    kind: &'a str,
}

/// `data` of a message's body; fields in alphabetical order (see [`message_body`]).
#[derive(Serialize)]
struct MessageData<'a> {
    account_id: &'a str,
    attachments: Vec<Value>,
    conversation_id: &'a str,
    direction: &'a str,
    event: &'a str,
    id: &'a str,
    instagram_account_id: &'a str,
    instagram_message_id: Option<&'a str>,
    message: Option<&'a str>,
    message_id: Option<&'a str>,
    message_type: &'a str,
    payload: Option<&'a str>,
    recipient_id: &'a str,
    referral: Option<Value>,
    reply_to: Option<Value>,
    sender_id: &'a str,
    /// Always `null`, as the original service sent it.
    sender_username: (),
    standby: bool,
    timestamp: String,
}

/// The body of the delivery of a stored event that is not a message.
pub(crate) fn event_body(
    event_type: &str,
    id: &EventId,
    event: &InboundEvent,
    account: &AccountId,
) -> String {
    let mut data = Map::new();
    data.insert("account_id".into(), account.as_str().into());
    data.insert("event".into(), event_type.into());
    data.insert("id".into(), id.as_str().into());
    data.insert("kind".into(), event.kind_name().into());
    if let Some(parties) = event.parties() {
        data.insert(
            "instagram_account_id".into(),
            parties.account.as_str().into(),
        );
        data.insert("sender_id".into(), parties.customer.as_str().into());
        // A comment is not in a conversation (a private reply opens one).
        if !matches!(event.kind, InboundEventKind::Comment(_)) {
            data.insert(
                "conversation_id".into(),
                insta_router_domain::ConversationId::for_pair(&parties.account, &parties.customer)
                    .as_str()
                    .into(),
            );
        }
    }
    data.insert("timestamp".into(), rfc3339(event.occurred_at).into());
    data.insert("standby".into(), event.standby.into());
    match &event.kind {
        InboundEventKind::Deleted { mid, .. } => {
            data.insert("message_id".into(), mid.as_str().into());
        }
        InboundEventKind::Reaction {
            mid,
            action,
            reaction,
            emoji,
            ..
        } => {
            data.insert("message_id".into(), mid.as_str().into());
            let action = match action {
                ReactionAction::React => "react",
                ReactionAction::Unreact => "unreact",
            };
            data.insert("action".into(), action.into());
            data.insert("reaction".into(), reaction.clone().into());
            data.insert("emoji".into(), emoji.clone().into());
        }
        InboundEventKind::Read { mid, .. } => {
            data.insert(
                "message_id".into(),
                mid.as_ref().map(|m| m.as_str().to_owned()).into(),
            );
        }
        InboundEventKind::Postback { title, payload, .. } => {
            data.insert("title".into(), title.clone().into());
            data.insert("payload".into(), payload.clone().into());
        }
        InboundEventKind::Referral { referral: r, .. } => {
            data.insert("referral".into(), referral(r));
        }
        InboundEventKind::Comment(c) => {
            data.insert("comment_id".into(), c.comment_id.as_str().into());
            data.insert("text".into(), c.text.clone().into());
            data.insert(
                "from".into(),
                serde_json::json!({"id": c.parties.customer.as_str(), "username": c.username}),
            );
            data.insert(
                "media".into(),
                serde_json::json!({
                    "id": c.media_id,
                    "media_product_type": c.media_product_type,
                    "ad_id": c.ad_id,
                    "ad_title": c.ad_title,
                }),
            );
            data.insert(
                "parent_id".into(),
                c.parent_id.as_ref().map(|p| p.as_str().to_owned()).into(),
            );
            data.insert("live".into(), c.live.into());
            data.insert("by_account".into(), c.by_account().into());
        }
        InboundEventKind::Message(_) | InboundEventKind::Unrecognized { .. } => {}
    }
    envelope(event_type, event.occurred_at, data)
}

/// The body of `message.sent` / `message.failed` for a send a CRM asked for (the original
/// service's `DeliveryStatusWebhook`).
pub(crate) fn status_body(event_type: &str, send: &OutboundMessage, at: DateTime<Utc>) -> String {
    let error = send.error.as_ref().map_or(Value::Null, |e| {
        json!({"code": e.code, "subcode": e.subcode, "message": e.message, "retryable": e.retryable})
    });
    let metadata = send
        .request
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
        .unwrap_or(Value::Null);
    json!({
        "type": event_type,
        "timestamp": rfc3339(at),
        "data": {
            "event": event_type,
            "message_id": send.id.as_str(),
            "account_id": send.request.account_id.as_str(),
            "recipient_id": send.request.recipient_id.as_str(),
            "status": send.status.public_name(),
            "timestamp": rfc3339(at),
            "instagram_message_id": send.instagram_message_id.as_ref().map(|m| m.as_str()),
            "idempotency_key": send.request.idempotency_key.as_str(),
            "error": error,
            "metadata": metadata,
        },
    })
    .to_string()
}

/// The body of an account event (`account.token_refreshed`, `account.token_invalid`): the
/// account, and `details` added to `data`.
pub(crate) fn account_body(
    event_type: &str,
    account: &insta_router_domain::Account,
    details: Map<String, Value>,
    at: DateTime<Utc>,
) -> String {
    let mut data = Map::new();
    data.insert("event".into(), event_type.into());
    data.insert("account_id".into(), account.id.as_str().into());
    data.insert(
        "instagram_account_id".into(),
        account.instagram_account_id.as_str().into(),
    );
    data.insert("username".into(), account.username.as_str().into());
    data.extend(details);
    envelope(event_type, at, data)
}

pub(crate) fn envelope(event_type: &str, at: DateTime<Utc>, data: Map<String, Value>) -> String {
    json!({
        "type": event_type,
        "timestamp": rfc3339(at),
        "data": data,
    })
    .to_string()
}

pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn attachment(a: &Attachment) -> Value {
    json!({"type": a.kind.as_str(), "url": a.url, "title": a.title})
}

fn reply_to(r: &ReplyTo) -> Value {
    match r {
        ReplyTo::Message(mid) => json!({"type": "message", "message_id": mid.as_str()}),
        ReplyTo::Story { id, url } => json!({"type": "story", "story_id": id, "url": url}),
    }
}

fn referral(r: &Referral) -> Value {
    json!({
        "ref": r.ref_param,
        "source": r.source,
        "type": r.kind,
        "ad_id": r.ad_id,
        "ad_title": r.ad_title,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use insta_router_domain::{
        AttachmentKind, ConversationId, Direction, InstagramAccountId, InstagramMessageId,
        InstagramUserId, MessageContext, MessageId, MessageKind, Parties,
    };

    use super::*;

    fn sample() -> Message {
        let account = InstagramAccountId::parse("a", "17841400000000777").unwrap();
        let customer = InstagramUserId::parse("c", "555").unwrap();
        Message {
            id: MessageId::from_u128(7),
            conversation_id: ConversationId::for_pair(&account, &customer),
            instagram_account_id: account.clone(),
            mid: Some(InstagramMessageId::parse("m", "aWdf\"mid").unwrap()),
            direction: Direction::Inbound,
            sender_id: customer,
            recipient_id: account.to_user_id(),
            kind: MessageKind::Image,
            text: Some(r#"Hi "account_id":null ORDER66 ☕"#.to_owned()),
            attachments: vec![Attachment {
                kind: AttachmentKind::Image,
                url: Some("https://cdn.example/1.jpg".to_owned()),
                title: None,
            }],
            reply_to: Some(ReplyTo::Story {
                id: "story1".to_owned(),
                url: None,
            }),
            context: MessageContext::default(),
            sent_at: Utc.timestamp_opt(1_700_000_000, 123_000_000).unwrap(),
            created_at: Utc.timestamp_opt(1_700_000_001, 0).unwrap(),
            deleted_at: None,
        }
    }

    #[test]
    fn a_message_body_keeps_the_original_fields_and_adds_ours() {
        let body = message_body("message.received", &sample(), &AccountId::from_u128(3));
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["type"], "message.received");
        assert_eq!(json["timestamp"], "2023-11-14T22:13:20.123000Z");
        let data = &json["data"];
        for (field, want) in [
            ("event", json!("message.received")),
            ("message_id", json!("aWdf\"mid")),
            ("instagram_message_id", json!("aWdf\"mid")),
            ("id", json!(MessageId::from_u128(7).as_str())),
            ("account_id", json!(AccountId::from_u128(3).as_str())),
            ("sender_id", json!("555")),
            ("sender_username", Value::Null),
            ("message", json!(r#"Hi "account_id":null ORDER66 ☕"#)),
            ("message_type", json!("image")),
            ("timestamp", json!("2023-11-14T22:13:20.123000Z")),
            ("conversation_id", json!("conv_555_17841400000000777")),
            ("direction", json!("inbound")),
        ] {
            assert_eq!(data[field], want, "{field}");
        }
        assert_eq!(data["attachments"][0]["type"], "image");
        assert_eq!(data["reply_to"]["story_id"], "story1");
    }

    #[test]
    fn a_message_body_has_its_members_in_the_order_a_json_map_gives() {
        // The same bytes as a body built as a `serde_json` map (sorted keys), whatever is set.
        let mut message = sample();
        message.context = MessageContext {
            payload: Some("BUTTON_1".to_owned()),
            referral: Some(Referral {
                ref_param: Some("ad".to_owned()),
                source: Some("ADS".to_owned()),
                kind: Some("OPEN_THREAD".to_owned()),
                ad_id: Some("1".to_owned()),
                ad_title: None,
            }),
            standby: true,
        };
        for message in [sample(), message] {
            let body = message_body("message.received", &message, &AccountId::from_u128(3));
            let canonical = serde_json::from_str::<Value>(&body).unwrap().to_string();
            assert_eq!(body, canonical);
        }
    }

    #[test]
    fn an_event_body_names_the_message_it_is_about() {
        let event = InboundEvent {
            occurred_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            standby: false,
            kind: InboundEventKind::Reaction {
                parties: Parties {
                    account: InstagramAccountId::parse("a", "17841400000000777").unwrap(),
                    customer: InstagramUserId::parse("c", "555").unwrap(),
                },
                mid: InstagramMessageId::parse("m", "mid.1").unwrap(),
                action: ReactionAction::React,
                reaction: Some("love".to_owned()),
                emoji: Some("❤".to_owned()),
            },
        };
        let account = AccountId::from_u128(3);
        let body = event_body("message.reaction", &EventId::from_u128(9), &event, &account);
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["type"], "message.reaction");
        let data = &json["data"];
        assert_eq!(data["message_id"], "mid.1");
        assert_eq!(data["action"], "react");
        assert_eq!(data["emoji"], "❤");
        assert_eq!(data["sender_id"], "555");
        assert_eq!(data["conversation_id"], "conv_555_17841400000000777");
        assert_eq!(data["kind"], event.kind_name());
        assert_eq!(data["account_id"], account.as_str());
    }
}
