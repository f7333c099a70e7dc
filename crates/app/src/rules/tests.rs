//! Rule documents: every condition parses, errors name the rule's field.

use serde_json::json;

use super::*;

fn document(value: serde_json::Value) -> RuleDocument {
    serde_json::from_value(value).unwrap()
}

#[test]
fn every_condition_parses_from_its_document() {
    let doc = document(json!({
        "name": "everything",
        "conditions": [
            {"type": "keywords", "any_of": ["order66", "Café"], "whole_word": true},
            {"type": "exact", "text": "yes"},
            {"type": "starts_with", "text": "price"},
            {"type": "regex", "pattern": "order\\s*\\d+"},
            {"type": "story_mention"},
            {"type": "story_reply"},
            {"type": "attachment", "attachment_type": "image"},
            {"type": "postback", "payload": "GET_STARTED"},
            {"type": "quick_reply"},
            {"type": "referral", "ref": "summer"},
            {"type": "first_message"},
            {"type": "schedule", "time_zone": "Europe/Berlin", "days": ["mon", "fri"], "from": "09:00", "to": "17:30", "outside": true}
        ],
        "reply": {"text": "Hi {first_name}", "quick_replies": [{"title": "Track", "payload": "TRACK"}]}
    }));
    let spec = doc.to_spec().unwrap();
    assert_eq!(spec.conditions.len(), 12);
    assert!(spec.enabled);
    assert_eq!(spec.cooldown, Duration::from_secs(3600));
    assert_eq!(
        spec.conditions[0],
        Condition::Keywords {
            any_of: vec!["order66".into(), "cafe".into()],
            whole_word: true
        }
    );
    // The document survives the round trip through storage.
    let text = serde_json::to_string(&doc).unwrap();
    assert_eq!(serde_json::from_str::<RuleDocument>(&text).unwrap(), doc);
}

#[test]
fn errors_name_the_rule_field() {
    let doc = document(json!({
        "name": "bad",
        "conditions": [
            {"type": "keywords", "any_of": ["ok"]},
            {"type": "regex", "pattern": "(unclosed"},
            {"type": "schedule", "time_zone": "Mars/Base", "from": "9am", "to": "17:00"}
        ],
        "reply": {"text": "Hello {customer}"},
        "cooldown_seconds": 99_999_999
    }));
    let fields: Vec<String> = doc
        .to_spec()
        .unwrap_err()
        .errors()
        .iter()
        .map(|e| e.field.to_string())
        .collect();
    assert_eq!(
        fields,
        [
            "conditions[1].pattern",
            "conditions[2].time_zone",
            "cooldown_seconds",
            "reply.text"
        ]
    );
    // Unknown condition types and fields are refused when reading the JSON.
    assert!(
        serde_json::from_value::<RuleDocument>(json!({
            "name": "x", "conditions": [{"type": "telepathy"}], "reply": {"text": "hi"}
        }))
        .is_err()
    );
    assert!(
        serde_json::from_value::<RuleDocument>(json!({
            "name": "x", "conditions": [], "reply": {"text": "hi"}, "colour": "red"
        }))
        .is_err()
    );
    // Only bad conditions: not reported again as "no conditions".
    let only_bad = document(json!({
        "name": "x", "conditions": [{"type": "regex", "pattern": ""}], "reply": {"text": "hi"}
    }));
    let fields: Vec<String> = only_bad
        .to_spec()
        .unwrap_err()
        .errors()
        .iter()
        .map(|e| e.field.to_string())
        .collect();
    assert_eq!(fields, ["conditions[0].pattern"]);
}
