//! The OpenAPI schemas the HTTP adapter declares for the rule documents against the documents
//! themselves (`insta_router_app::RuleDocument`): every field and every condition type.

use insta_router_app::{ConditionDocument, RuleDocument};
use serde_json::{Value, json};

/// One condition of every type, with every field set.
fn conditions() -> Vec<Value> {
    vec![
        json!({"type": "keywords", "any_of": ["order66"], "whole_word": true}),
        json!({"type": "exact", "text": "hi"}),
        json!({"type": "starts_with", "text": "track"}),
        json!({"type": "regex", "pattern": "^#\\d+$"}),
        json!({"type": "story_mention"}),
        json!({"type": "story_reply"}),
        json!({"type": "attachment", "attachment_type": "image"}),
        json!({"type": "postback", "payload": "GET_STARTED"}),
        json!({"type": "quick_reply", "payload": "RED"}),
        json!({"type": "referral", "ref": "ad"}),
        json!({"type": "first_message"}),
        json!({"type": "comment", "media_ids": ["17800000000000055"]}),
        json!({"type": "first_comment"}),
        json!({"type": "schedule", "time_zone": "Europe/Berlin", "days": ["mon"], "from": "18:00", "to": "09:00", "outside": true}),
    ]
}

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

fn schemas() -> Value {
    serde_json::to_value(insta_router_http::openapi()).unwrap()["components"]["schemas"].clone()
}

/// The properties of `schema`, following one `$ref` or `allOf`.
fn properties(schemas: &Value, schema: &Value) -> Vec<String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap();
        return properties(schemas, &schemas[name]);
    }
    let mut found: Vec<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        found.extend(properties(schemas, part));
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn the_rule_schemas_match_the_documents() {
    let schemas = schemas();
    let document: RuleDocument = serde_json::from_value(json!({
        "name": "all", "priority": 1, "enabled": true, "cooldown_seconds": 60,
        "conditions": conditions(),
        "reply": {"text": "Hi {name}", "quick_replies": [{"title": "Yes", "payload": "YES"}],
                  "public_reply": "Sent you a DM"},
    }))
    .unwrap();
    let document = serde_json::to_value(&document).unwrap();
    assert_eq!(
        properties(&schemas, &schemas["RuleDocument"]),
        keys(&document)
    );
    assert_eq!(
        properties(&schemas, &schemas["ReplyDocument"]),
        keys(&document["reply"])
    );
    assert_eq!(
        properties(&schemas, &schemas["QuickReplyDocument"]),
        keys(&document["reply"]["quick_replies"][0])
    );

    let variants = schemas["ConditionDocument"]["oneOf"].as_array().unwrap();
    assert_eq!(
        variants.len(),
        conditions().len(),
        "a condition type per variant"
    );
    for condition in conditions() {
        let parsed: ConditionDocument = serde_json::from_value(condition.clone()).unwrap();
        let written = serde_json::to_value(&parsed).unwrap();
        let tag = written["type"].as_str().unwrap().to_owned();
        let variant = variants
            .iter()
            .find(|v| {
                let schema_tags = properties(&schemas, v);
                schema_tags.contains(&"type".to_owned())
                    && serde_json::to_string(v)
                        .unwrap()
                        .contains(&format!("\"{tag}\""))
            })
            .unwrap_or_else(|| panic!("no schema variant for {tag}"));
        assert_eq!(properties(&schemas, variant), keys(&written), "{tag}");
    }
}
