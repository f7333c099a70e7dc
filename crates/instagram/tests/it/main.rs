//! Parsing every fixture of `tests/fixtures/webhook`, and arbitrary input without a panic.

#![allow(clippy::unwrap_used)]

mod fuzz;
mod parse;

use std::path::PathBuf;

/// The text of a fixture, wrapped into a notification when the fixture is a bare item.
pub(crate) fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/webhook")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    if text.contains("\"entry\"") {
        text
    } else {
        format!(
            r#"{{"object":"instagram","entry":[{{"id":"17841400000000001","time":1700000000000,"messaging":[{text}]}}]}}"#
        )
    }
}
