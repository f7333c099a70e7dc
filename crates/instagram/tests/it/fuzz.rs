//! Arbitrary bytes and arbitrary JSON never make the parser panic.

use chrono::Utc;
use insta_router_instagram::parse_notification;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        // Meta's own field names and values, so the search reaches the typed paths.
        prop_oneof![
            Just("mid"),
            Just("text"),
            Just("is_echo"),
            Just("17841400000000001"),
            Just("1700000000123"),
            Just("react"),
            Just("unreact"),
            Just("image"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("object".to_owned()),
                        Just("entry".to_owned()),
                        Just("id".to_owned()),
                        Just("time".to_owned()),
                        Just("messaging".to_owned()),
                        Just("standby".to_owned()),
                        Just("changes".to_owned()),
                        Just("field".to_owned()),
                        Just("value".to_owned()),
                        Just("sender".to_owned()),
                        Just("recipient".to_owned()),
                        Just("timestamp".to_owned()),
                        Just("message".to_owned()),
                        Just("mid".to_owned()),
                        Just("text".to_owned()),
                        Just("attachments".to_owned()),
                        Just("type".to_owned()),
                        Just("payload".to_owned()),
                        Just("reaction".to_owned()),
                        Just("action".to_owned()),
                        Just("read".to_owned()),
                        Just("postback".to_owned()),
                        Just("referral".to_owned()),
                        Just("reply_to".to_owned()),
                        Just("story".to_owned()),
                        Just("is_echo".to_owned()),
                        Just("is_deleted".to_owned()),
                        ".{0,8}",
                    ],
                    inner,
                ),
                0..8,
            )
            .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A notification around arbitrary items, so most cases get past the envelope.
fn arbitrary_notification() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(arbitrary_json(), 0..4),
        prop::collection::vec(arbitrary_json(), 0..3),
        arbitrary_json(),
    )
        .prop_map(|(messaging, changes, id)| {
            json!({"object": "instagram", "entry": [{"id": id, "time": 1, "messaging": messaging,
                   "changes": changes.into_iter().map(|v| json!({"field": "messages", "value": v})).collect::<Vec<_>>()}]})
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_notification(&body, Utc::now());
    }

    #[test]
    fn arbitrary_json_never_panics(value in arbitrary_json()) {
        let _ = parse_notification(value.to_string().as_bytes(), Utc::now());
    }

    #[test]
    fn every_item_of_a_notification_yields_one_event(value in arbitrary_notification()) {
        let body = value.to_string();
        let notification = parse_notification(body.as_bytes(), Utc::now()).unwrap();
        let items = value["entry"][0]["messaging"].as_array().unwrap().len()
            + value["entry"][0]["changes"].as_array().unwrap().len();
        prop_assert_eq!(notification.events.len(), items);
        for event in &notification.events {
            // Keys are computable for every event, including those not understood.
            prop_assert!(!event.dedup_key().is_empty());
        }
    }
}
