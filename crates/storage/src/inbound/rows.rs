//! The rows an inbound batch writes, the same on every backend: the journal's and the
//! events' columns and values.

use insta_router_domain::{InboundEvent, InboundEventKind, InstagramAccountId, Parties};
use insta_router_ports::{EventRecord, JournalEntry};
use sea_orm::Value;
use sea_orm::sea_query::{Alias, OnConflict};
use serde_json::json;

use crate::time::to_micros;

pub(crate) const JOURNAL_COLUMNS: [&str; 6] =
    ["id", "received_at", "body", "status", "error", "events"];

/// What writing a journal entry whose id is journaled already does (a replay of a failed
/// entry): the entry takes the new status, error and event count; its body stays.
pub(crate) const JOURNAL_UPSERT: &str = " ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
     error = excluded.error, events = excluded.events";

/// [`JOURNAL_UPSERT`] for sea-query (MySQL's `ON DUPLICATE KEY UPDATE`).
pub(crate) fn journal_on_conflict() -> OnConflict {
    OnConflict::column(Alias::new("id"))
        .update_columns([
            Alias::new("status"),
            Alias::new("error"),
            Alias::new("events"),
        ])
        .to_owned()
}

pub(crate) fn journal_row(e: &JournalEntry) -> Vec<Value> {
    vec![
        e.id.as_str().into(),
        to_micros(e.received_at).into(),
        e.body.clone().into(),
        e.status.as_str().into(),
        e.error.clone().into(),
        i64::from(e.events).into(),
    ]
}

pub(crate) const EVENT_COLUMNS: [&str; 10] = [
    "id",
    "instagram_account_id",
    "kind",
    "customer_id",
    "mid",
    "dedup_key",
    "detail",
    "occurred_at",
    "received_at",
    "webhook_id",
];

pub(crate) fn event_row(r: &EventRecord) -> Vec<Value> {
    let parties = r.event.parties();
    vec![
        r.id.as_str().into(),
        r.event
            .account()
            .map_or("", InstagramAccountId::as_str)
            .into(),
        r.event.kind_name().into(),
        parties.map(|p| p.customer.as_str().to_owned()).into(),
        target_mid(&r.event).into(),
        dedup_hash(&r.event.dedup_key()).into(),
        event_detail(&r.event).into(),
        to_micros(r.event.occurred_at).into(),
        to_micros(r.received_at).into(),
        r.webhook_id.as_str().into(),
    ]
}

/// The dedup key as stored: its SHA-256, so keys of any length fit one short indexed column.
pub(crate) fn dedup_hash(key: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, key.as_bytes()))
}

fn target_mid(event: &InboundEvent) -> Option<String> {
    match &event.kind {
        InboundEventKind::Deleted { mid, .. } | InboundEventKind::Reaction { mid, .. } => {
            Some(mid.as_str().to_owned())
        }
        InboundEventKind::Read { mid, .. } => mid.as_ref().map(|m| m.as_str().to_owned()),
        InboundEventKind::Message(m) => Some(m.mid.as_str().to_owned()),
        InboundEventKind::Postback { .. }
        | InboundEventKind::Referral { .. }
        | InboundEventKind::Comment(_)
        | InboundEventKind::Unrecognized { .. } => None,
    }
}

/// The kind-specific part of an event, as JSON.
fn event_detail(event: &InboundEvent) -> String {
    let parties =
        |p: &Parties| json!({"account": p.account.as_str(), "customer": p.customer.as_str()});
    let detail = match &event.kind {
        InboundEventKind::Message(m) => {
            json!({"parties": parties(&m.parties), "mid": m.mid.as_str()})
        }
        InboundEventKind::Deleted { parties: p, mid } => {
            json!({"parties": parties(p), "mid": mid.as_str()})
        }
        InboundEventKind::Reaction {
            parties: p,
            mid,
            action,
            reaction,
            emoji,
        } => json!({
            "parties": parties(p), "mid": mid.as_str(), "action": action.as_str(),
            "reaction": reaction, "emoji": emoji,
        }),
        InboundEventKind::Read { parties: p, mid } => {
            json!({"parties": parties(p), "mid": mid.as_ref().map(|m| m.as_str())})
        }
        InboundEventKind::Postback {
            parties: p,
            title,
            payload,
        } => json!({"parties": parties(p), "title": title, "payload": payload}),
        InboundEventKind::Referral {
            parties: p,
            referral,
        } => json!({
            "parties": parties(p),
            "referral": crate::messages::referral_json(referral),
        }),
        InboundEventKind::Comment(c) => json!({
            "parties": parties(&c.parties),
            "comment_id": c.comment_id.as_str(),
            "username": c.username,
            "text": c.text,
            "media_id": c.media_id,
            "media_product_type": c.media_product_type,
            "parent_id": c.parent_id.as_ref().map(|p| p.as_str()),
            "live": c.live,
            "ad_id": c.ad_id,
            "ad_title": c.ad_title,
        }),
        InboundEventKind::Unrecognized {
            field, reason, raw, ..
        } => json!({"field": field, "reason": reason, "raw": raw}),
    };
    let mut detail = detail;
    if event.standby {
        detail["standby"] = json!(true);
    }
    detail.to_string()
}
