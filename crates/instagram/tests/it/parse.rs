//! Every fixture parsed into the domain events it stands for.

use chrono::{TimeZone, Utc};
use insta_router_domain::{
    AttachmentKind, Direction, InboundEvent, InboundEventKind, MessageKind, ReactionAction,
    ReceivedMessage, ReplyTo,
};
use insta_router_instagram::{PayloadError, parse_notification};

use crate::fixture;

fn received_at() -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).unwrap()
}

fn events(name: &str) -> Vec<InboundEvent> {
    parse_notification(fixture(name).as_bytes(), received_at())
        .unwrap()
        .events
}

fn only_message(name: &str) -> ReceivedMessage {
    let events = events(name);
    assert_eq!(events.len(), 1, "{name}: {events:?}");
    match events.into_iter().next().unwrap().kind {
        InboundEventKind::Message(m) => m,
        other => panic!("{name}: expected a message, got {other:?}"),
    }
}

#[test]
fn text_message_is_routed_to_the_recipient_account() {
    let events = events("text.json");
    let event = &events[0];
    assert_eq!(event.occurred_at.timestamp_millis(), 1_700_000_000_123);
    let InboundEventKind::Message(m) = &event.kind else {
        panic!("{event:?}")
    };
    assert_eq!(m.parties.account.as_str(), "17841400000000001");
    assert_eq!(m.parties.customer.as_str(), "1234567890123456");
    assert_eq!(m.direction, Direction::Inbound);
    assert_eq!(m.kind, MessageKind::Text);
    assert_eq!(m.text.as_deref(), Some("Hi! order66 please"));
    assert_eq!(m.sender().as_str(), "1234567890123456");
}

#[test]
fn attachments_story_mentions_and_replies_keep_their_kind() {
    let image = only_message("attachment-image.json");
    assert_eq!(image.kind, MessageKind::Image);
    assert_eq!(image.attachments[0].kind, AttachmentKind::Image);
    assert!(
        image.attachments[0]
            .url
            .as_deref()
            .unwrap()
            .starts_with("https://lookaside")
    );
    assert_eq!(image.text, None);

    let mention = only_message("story-mention.json");
    assert_eq!(mention.kind, MessageKind::StoryMention);

    let reply = only_message("story-reply.json");
    assert_eq!(reply.kind, MessageKind::StoryReply);
    assert_eq!(reply.text.as_deref(), Some("Is this still available?"));
    assert!(
        matches!(&reply.reply_to, Some(ReplyTo::Story { id, .. }) if id == "17949487764033669")
    );
}

#[test]
fn quick_replies_postbacks_and_ad_referrals_keep_their_payloads() {
    let qr = only_message("quick-reply.json");
    assert_eq!(qr.kind, MessageKind::QuickReply);
    assert_eq!(qr.context.payload.as_deref(), Some("CONFIRM_YES"));

    let postback = only_message("postback.json");
    assert_eq!(postback.kind, MessageKind::Postback);
    assert_eq!(postback.mid.as_str(), "mid.postback.0001");
    assert_eq!(postback.text.as_deref(), Some("Track my order"));
    assert_eq!(postback.context.payload.as_deref(), Some("SEARCH_ORDER"));

    let ad = only_message("referral-ad.json");
    let referral = ad.context.referral.unwrap();
    assert_eq!(referral.source.as_deref(), Some("ADS"));
    assert_eq!(referral.ad_id.as_deref(), Some("120200000000000001"));
    assert_eq!(referral.ad_title.as_deref(), Some("Summer sneakers"));
}

#[test]
fn echoes_are_outbound_and_routed_to_the_sender() {
    let echo = only_message("echo.json");
    assert_eq!(echo.direction, Direction::Outbound);
    assert_eq!(echo.parties.account.as_str(), "17841400000000001");
    assert_eq!(echo.parties.customer.as_str(), "1234567890123456");
    assert_eq!(echo.sender().as_str(), "17841400000000001");
}

#[test]
fn deletions_reactions_reads_and_link_referrals_are_their_own_kinds() {
    let deleted = events("deleted.json");
    assert!(
        matches!(&deleted[0].kind, InboundEventKind::Deleted { mid, .. } if mid.as_str().starts_with("aWdf"))
    );

    let react = events("reaction-react.json");
    let InboundEventKind::Reaction {
        action,
        reaction,
        emoji,
        mid,
        ..
    } = &react[0].kind
    else {
        panic!("{react:?}")
    };
    assert_eq!(*action, ReactionAction::React);
    assert_eq!(reaction.as_deref(), Some("love"));
    assert_eq!(emoji.as_deref(), Some("\u{2764}\u{fe0f}"));
    assert_eq!(mid.as_str(), "mid.outbound.0001");

    let unreact = events("reaction-unreact.json");
    assert!(matches!(
        &unreact[0].kind,
        InboundEventKind::Reaction {
            action: ReactionAction::Unreact,
            reaction: None,
            ..
        }
    ));
    assert_ne!(react[0].dedup_key(), unreact[0].dedup_key());

    let read = events("read.json");
    assert!(
        matches!(&read[0].kind, InboundEventKind::Read { mid: Some(mid), .. } if mid.as_str() == "mid.outbound.0001")
    );

    let link = events("referral-link.json");
    assert!(
        matches!(&link[0].kind, InboundEventKind::Referral { referral, .. } if referral.ref_param.as_deref() == Some("summer_sale"))
    );
}

#[test]
fn unsupported_messages_are_messages_of_kind_unsupported() {
    let m = only_message("unsupported.json");
    assert_eq!(m.kind, MessageKind::Unsupported);
}

#[test]
fn batches_keep_every_item_in_order_and_repeat_the_duplicate() {
    let events = events("batch.json");
    assert_eq!(events.len(), 4);
    let keys: Vec<String> = events.iter().map(InboundEvent::dedup_key).collect();
    assert_eq!(keys[0], keys[1], "the repeated mid has one key");
    assert_ne!(keys[0], keys[2]);
    assert_eq!(events[2].account().unwrap().as_str(), "17841400000000002");
    assert!(matches!(events[3].kind, InboundEventKind::Read { .. }));
}

#[test]
fn dashboard_test_payload_is_a_message_with_a_seconds_timestamp() {
    let m = events("dashboard-test-changes.json");
    let InboundEventKind::Message(message) = &m[0].kind else {
        panic!("{m:?}")
    };
    assert_eq!(message.mid.as_str(), "random_mid");
    assert_eq!(message.parties.account.as_str(), "23245");
    assert_eq!(m[0].occurred_at.timestamp(), 1_527_459_824);
}

#[test]
fn comments_are_parsed_and_unknown_items_are_kept_verbatim() {
    let comment = events("comment-changes.json");
    let InboundEventKind::Comment(c) = &comment[0].kind else {
        panic!("{comment:?}")
    };
    assert_eq!(c.parties.account.as_str(), "17841400000000001");
    assert_eq!(c.parties.customer.as_str(), "1234567890123456");
    assert_eq!(c.comment_id.as_str(), "17900000000000099");
    assert_eq!(c.username.as_deref(), Some("jane"));
    assert_eq!(c.text.as_deref(), Some("price?"));
    assert_eq!(c.media_id.as_deref(), Some("17800000000000055"));
    assert_eq!(c.media_product_type.as_deref(), Some("FEED"));
    assert!(!c.live && !c.by_account() && c.parent_id.is_none());
    // The entry's time stands in for the comment's, which Meta does not send.
    assert_eq!(comment[0].occurred_at.timestamp_millis(), 1_700_000_030_000);

    let live = events("live-comment.json");
    let InboundEventKind::Comment(c) = &live[0].kind else {
        panic!("{live:?}")
    };
    assert!(c.live);
    assert_eq!(c.media_product_type.as_deref(), Some("LIVE"));
    let reply = events("comment-reply-ad.json");
    let InboundEventKind::Comment(c) = &reply[0].kind else {
        panic!("{reply:?}")
    };
    assert_eq!(c.parent_id.as_ref().unwrap().as_str(), "17900000000000099");
    assert_eq!(c.ad_id.as_deref(), Some("120200000000000001"));
    assert_eq!(c.ad_title.as_deref(), Some("Winter sale"));
    assert!(c.by_account(), "the account answering publicly");

    // A comment without an author, and a field this version does not handle, are kept.
    let body = br#"{"object":"instagram","entry":[{"id":"17841400000000001","time":1700000000000,"changes":[
        {"field":"comments","value":{"id":"179","text":"who?"}},
        {"field":"mentions","value":{"media_id":"178","comment_id":"179"}}
    ]}]}"#;
    let kept = parse_notification(body, received_at()).unwrap().events;
    let fields: Vec<(&str, &str)> = kept
        .iter()
        .map(|e| match &e.kind {
            InboundEventKind::Unrecognized { field, reason, .. } => {
                (field.as_str(), reason.as_str())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        fields,
        [
            ("changes.comments", "no from.id"),
            (
                "changes.mentions",
                "this version does not handle this field"
            )
        ]
    );

    let odd = br#"{"object":"instagram","entry":[{"id":"1","messaging":[
        {"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1700000000000,"optin":{"ref":"x"}},
        {"recipient":{"id":"1"},"message":{"mid":"m1","text":"no sender"}},
        {"sender":{"id":"2"},"recipient":{"id":"1"},"message":{"text":"no mid"}},
        {"sender":{"id":"2"},"recipient":{"id":"1"},"message":{"mid":"m2","text":7}},
        {"sender":{"id":2},"recipient":{"id":1},"timestamp":"1700000000","message":{"mid":"m3","text":"numeric ids"}}
    ]}]}"#;
    let events = parse_notification(odd, received_at()).unwrap().events;
    assert_eq!(events.len(), 5);
    for event in &events[..4] {
        assert!(
            matches!(event.kind, InboundEventKind::Unrecognized { .. }),
            "{event:?}"
        );
    }
    let InboundEventKind::Message(m) = &events[4].kind else {
        panic!("{:?}", events[4])
    };
    assert_eq!(m.parties.customer.as_str(), "2");
    assert_eq!(events[4].occurred_at.timestamp(), 1_700_000_000);
}

#[test]
fn standby_items_are_marked_so_nothing_answers_them() {
    let body = fixture("text.json").replace("\"messaging\"", "\"standby\"");
    let events = parse_notification(body.as_bytes(), received_at())
        .unwrap()
        .events;
    assert!(events[0].standby);
    let InboundEventKind::Message(m) = &events[0].kind else {
        panic!("{events:?}")
    };
    assert!(m.context.standby);
}

#[test]
fn bodies_that_are_not_notifications_are_errors() {
    for body in [
        &b"not json"[..],
        b"[1,2]",
        b"{}",
        b"{\"entry\":5}",
        b"\"x\"",
    ] {
        assert!(
            matches!(
                parse_notification(body, received_at()),
                Err(PayloadError::Invalid(_))
            ),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let empty = parse_notification(br#"{"object":"instagram","entry":[]}"#, received_at()).unwrap();
    assert!(empty.events.is_empty());
}

#[test]
fn nul_characters_are_removed_from_text() {
    let body = br#"{"entry":[{"messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1,"message":{"mid":"m","text":"a\u0000b"}}]}]}"#;
    let events = parse_notification(body, received_at()).unwrap().events;
    let InboundEventKind::Message(m) = &events[0].kind else {
        panic!("{events:?}")
    };
    assert_eq!(m.text.as_deref(), Some("ab"));
}
