//! The stored form of job payloads: a CRM body with the parts every body repeats (its keys,
//! and the fixed values between them) replaced by one control character each.
//!
//! A CRM body is compact JSON, signed and sent exactly as stored (see `crm_payload` in the app
//! crate), and it is the largest part of what each event stores: 700 of the 2,100 bytes of a
//! message on SQLite, of which about 400 are the same keys in every body. JSON text holds no
//! raw control characters (they are escaped inside strings, and compact JSON has no
//! whitespace between tokens), so each of those repeated parts can be written as one. Every
//! body comes back byte for byte; the values (ids, texts, times) stay legible in the column;
//! and the stored form is still text, so the column and every backend's handling of it are
//! unchanged. It costs one pass over the body each way: about 3 µs to store a message body
//! and 0.3 µs to read it back on the project's machine.
//!
//! The first character says what follows: [`ENCODED`], or [`LITERAL`] for a text that holds a
//! control character itself (stored as it is). Anything else is a payload written before this
//! form existed, read as it is.

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

/// The text after it has its repeated parts replaced.
const ENCODED: char = '\u{1e}';
/// The text after it is stored as it is.
const LITERAL: char = '\u{1d}';

/// The repeated parts of CRM bodies (`crm_payload` in the app crate: keys in alphabetical
/// order, as serialised), longest first where one begins another. Part `i` is written as the
/// character `i + 1`; there are at most 28, below [`LITERAL`].
const PARTS: &[&str] = &[
    // message.received and message.echo, field by field.
    r#"{"data":{"account_id":"acc_"#,
    r#"","attachments":[],"conversation_id":"conv_"#,
    r#"","attachments":["#,
    r#"],"conversation_id":"conv_"#,
    r#"","direction":"inbound","event":"message.received","id":"msg_"#,
    r#"","direction":"outbound","event":"message.echo","id":"msg_"#,
    r#"","instagram_account_id":""#,
    r#"","instagram_message_id":""#,
    r#"","message":""#,
    r#"","message_id":""#,
    r#"","message_type":"text","payload":null,"recipient_id":""#,
    r#"","message_type":""#,
    r#"","recipient_id":""#,
    r#"","referral":null,"reply_to":null,"sender_id":""#,
    r#"","sender_username":null,"standby":false,"timestamp":""#,
    r#"","sender_username":null,"standby":true,"timestamp":""#,
    r#"Z"},"timestamp":""#,
    r#"Z","type":"message.received"}"#,
    r#"Z","type":"message.echo"}"#,
    // The other bodies (events, send statuses, comments) share these.
    r#"","type":"message."#,
    r#"{"data":{"#,
    r#"","event":"message."#,
    r#"","sender_id":""#,
    r#"","timestamp":""#,
    r#"","conversation_id":"conv_"#,
    r#"","idempotency_key":""#,
    // Attachments.
    r#"{"title":null,"type":""#,
    r#"","url":""#,
];

static SEARCHER: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .kind(Some(AhoCorasickKind::DFA))
        // Most parts begin with `"`, which is everywhere in JSON: a prefilter finds
        // candidates at every key and only slows the search (4.5 against 2.8 µs a body).
        .prefilter(false)
        .build(PARTS)
        .unwrap_or_else(|_| unreachable!("a fixed list of short literals always builds"))
});

/// `text` as stored.
pub(crate) fn encode(text: &str) -> String {
    if text.bytes().any(|b| b < 0x20) {
        let mut stored = String::with_capacity(text.len() + 1);
        stored.push(LITERAL);
        stored.push_str(text);
        return stored;
    }
    let mut stored = String::with_capacity(text.len() / 2 + 16);
    stored.push(ENCODED);
    let mut last = 0;
    for found in SEARCHER.find_iter(text) {
        stored.push_str(&text[last..found.start()]);
        stored.push(part_char(found.pattern().as_usize()));
        last = found.end();
    }
    stored.push_str(&text[last..]);
    stored
}

/// The text `stored` holds; an error names a character no part stands for (the stored form
/// was damaged).
pub(crate) fn decode(stored: &str) -> Result<Cow<'_, str>, String> {
    if let Some(literal) = stored.strip_prefix(LITERAL) {
        return Ok(Cow::Borrowed(literal));
    }
    let Some(encoded) = stored.strip_prefix(ENCODED) else {
        return Ok(Cow::Borrowed(stored));
    };
    let mut text = String::with_capacity(encoded.len() * 2 + 64);
    let mut last = 0;
    for (at, byte) in encoded.bytes().enumerate() {
        if byte < 0x20 {
            text.push_str(&encoded[last..at]);
            // Only the characters `encode` wrote are below 0x20 here.
            let part = usize::from(byte)
                .checked_sub(1)
                .and_then(|i| PARTS.get(i))
                .ok_or_else(|| {
                    format!("a stored payload holds U+{byte:04X}, which stands for nothing")
                })?;
            text.push_str(part);
            last = at + 1;
        }
    }
    text.push_str(&encoded[last..]);
    Ok(Cow::Owned(text))
}

fn part_char(index: usize) -> char {
    u8::try_from(index + 1).map_or(LITERAL, char::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECEIVED: &str = r#"{"data":{"account_id":"acc_01a23464d02b736d87b8d0dafa896505","attachments":[],"conversation_id":"conv_1000000000000000_17841400000000001","direction":"inbound","event":"message.received","id":"msg_01a23464d1707359ac6750297e345693","instagram_account_id":"17841400000000001","instagram_message_id":"mid.bench.1796175352168.0","message":"Hi! is the blue one in stock? order 0","message_id":"mid.bench.1796175352168.0","message_type":"text","payload":null,"recipient_id":"17841400000000001","referral":null,"reply_to":null,"sender_id":"1000000000000000","sender_username":null,"standby":false,"timestamp":"2023-11-14T22:13:20.000000Z"},"timestamp":"2023-11-14T22:13:20.000000Z","type":"message.received"}"#;

    #[test]
    fn a_message_body_comes_back_byte_for_byte_in_well_under_half_its_length() {
        let stored = encode(RECEIVED);
        assert!(
            stored.len() * 2 < RECEIVED.len(),
            "{} of {} bytes",
            stored.len(),
            RECEIVED.len()
        );
        assert!(stored.contains("Hi! is the blue one in stock? order 0"));
        assert_eq!(decode(&stored).unwrap(), RECEIVED);
    }

    #[test]
    fn any_text_comes_back_as_it_was() {
        let texts = [
            "",
            "{}",
            "1234",
            r#"{"type":"message.sent","data":{"status":"sent"}}"#,
            "a text with its own \u{1} and \u{1e} and \u{1d} in it",
            "\u{1e}starts like an encoded one",
            "\u{1d}starts like a literal one",
            "ünïcödé 💬 \"message_id\":\"",
            r#"","message":""#,
            "line\nbreaks\tand\rreturns",
        ];
        for text in texts {
            assert_eq!(decode(&encode(text)).unwrap(), text, "{text:?}");
        }
        // Every part, alone and next to another.
        for (i, part) in PARTS.iter().enumerate() {
            assert_eq!(decode(&encode(part)).unwrap(), *part);
            let two = format!("{part}{}", PARTS[(i + 1) % PARTS.len()]);
            assert_eq!(decode(&encode(&two)).unwrap(), two);
        }
    }

    #[test]
    fn payloads_stored_before_this_form_are_read_as_they_are() {
        assert_eq!(decode(RECEIVED).unwrap(), RECEIVED);
        assert_eq!(decode("").unwrap(), "");
        assert_eq!(decode("1234").unwrap(), "1234");
    }

    #[test]
    fn a_damaged_stored_form_is_an_error_not_a_guess() {
        assert!(decode("\u{1e}{\u{1f}}").is_err());
        assert!(decode("\u{1e}\u{0}").is_err());
    }

    #[test]
    fn the_parts_fit_below_the_markers_and_none_holds_a_control_character() {
        assert!(PARTS.len() < LITERAL as usize);
        assert!(
            PARTS
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b >= 0x20))
        );
    }
}
