//! What a conversation starts with: ice breakers (questions a customer can tap in a new
//! conversation) and the persistent menu, validated against Meta's limits for Instagram
//! before they are sent.

use url::Url;

use crate::{FieldError, ValidationErrors};

/// Most ice breakers Meta shows.
pub const MAX_ICE_BREAKERS: usize = 4;
/// Longest ice breaker question, in characters.
pub(crate) const MAX_QUESTION_CHARS: usize = 80;
/// Longest postback payload, in bytes.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 1000;
/// Most persistent menu items.
pub(crate) const MAX_MENU_ITEMS: usize = 20;
/// Longest menu item title, in characters.
pub(crate) const MAX_MENU_TITLE_CHARS: usize = 30;
/// Longest menu URL, in bytes.
pub(crate) const MAX_MENU_URL_LEN: usize = 2048;

/// A question a customer can tap to start a conversation; its payload comes back as a
/// postback, which the rules' `postback` condition answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceBreaker {
    /// What the customer sees.
    pub question: String,
    /// What comes back when it is tapped.
    pub payload: String,
}

/// An item of the persistent menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MenuItem {
    /// A button whose payload comes back as a postback.
    Postback {
        /// What the customer sees.
        title: String,
        /// What comes back when it is tapped.
        payload: String,
    },
    /// A link.
    WebUrl {
        /// What the customer sees.
        title: String,
        /// An http(s) URL.
        url: String,
    },
}

fn check_text(field: String, text: &str, max_chars: usize, errors: &mut Vec<FieldError>) {
    let chars = text.chars().count();
    if text.trim().is_empty() || chars > max_chars {
        errors.push(FieldError::new(
            field,
            format!("must be 1 to {max_chars} characters"),
        ));
    }
}

fn check_payload(field: String, payload: &str, errors: &mut Vec<FieldError>) {
    if payload.is_empty() || payload.len() > MAX_PAYLOAD_BYTES {
        errors.push(FieldError::new(
            field,
            format!("must be 1 to {MAX_PAYLOAD_BYTES} bytes"),
        ));
    }
}

impl IceBreaker {
    /// Checks a whole set against Meta's limits: at most 4, questions of 1 to 80 characters,
    /// payloads of 1 to 1,000 bytes, no question twice.
    ///
    /// # Errors
    ///
    /// Every field that breaks a limit, named `ice_breakers[i].question` and so on.
    pub fn check_all(items: &[Self]) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        if items.len() > MAX_ICE_BREAKERS {
            errors.push(FieldError::new(
                "ice_breakers",
                format!("at most {MAX_ICE_BREAKERS} (Meta's limit)"),
            ));
        }
        for (i, item) in items.iter().enumerate() {
            check_text(
                format!("ice_breakers[{i}].question"),
                &item.question,
                MAX_QUESTION_CHARS,
                &mut errors,
            );
            check_payload(
                format!("ice_breakers[{i}].payload"),
                &item.payload,
                &mut errors,
            );
            if items[..i].iter().any(|o| o.question == item.question) {
                errors.push(FieldError::new(
                    format!("ice_breakers[{i}].question"),
                    "is a duplicate",
                ));
            }
        }
        ValidationErrors::check(errors)
    }
}

impl MenuItem {
    /// Checks a whole menu against Meta's limits: 1 to 20 items, titles of 1 to 30
    /// characters, payloads of 1 to 1,000 bytes, http(s) URLs.
    ///
    /// # Errors
    ///
    /// Every field that breaks a limit, named `items[i].title` and so on.
    pub fn check_all(items: &[Self]) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        if items.is_empty() || items.len() > MAX_MENU_ITEMS {
            errors.push(FieldError::new(
                "items",
                format!("must hold 1 to {MAX_MENU_ITEMS} items (DELETE removes the menu)"),
            ));
        }
        for (i, item) in items.iter().enumerate() {
            match item {
                Self::Postback { title, payload } => {
                    check_text(
                        format!("items[{i}].title"),
                        title,
                        MAX_MENU_TITLE_CHARS,
                        &mut errors,
                    );
                    check_payload(format!("items[{i}].payload"), payload, &mut errors);
                }
                Self::WebUrl { title, url } => {
                    check_text(
                        format!("items[{i}].title"),
                        title,
                        MAX_MENU_TITLE_CHARS,
                        &mut errors,
                    );
                    let ok = url.len() <= MAX_MENU_URL_LEN
                        && Url::parse(url).is_ok_and(|u| {
                            matches!(u.scheme(), "http" | "https") && u.host_str().is_some()
                        });
                    if !ok {
                        errors.push(FieldError::new(
                            format!("items[{i}].url"),
                            "must be an http(s) URL of at most 2048 bytes",
                        ));
                    }
                }
            }
        }
        ValidationErrors::check(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(q: &str, p: &str) -> IceBreaker {
        IceBreaker {
            question: q.into(),
            payload: p.into(),
        }
    }

    #[test]
    fn ice_breakers_are_held_to_metas_limits() {
        assert!(IceBreaker::check_all(&[breaker("Where is my order?", "ORDER")]).is_ok());
        assert!(
            IceBreaker::check_all(&[]).is_ok(),
            "none: the same as DELETE"
        );
        let five: Vec<_> = (0..5).map(|i| breaker(&format!("Q{i}"), "P")).collect();
        let err = IceBreaker::check_all(&five).unwrap_err();
        assert_eq!(err.errors()[0].field, "ice_breakers");
        let err = IceBreaker::check_all(&[
            breaker(&"é".repeat(81), "P"),
            breaker("ok", &"p".repeat(1001)),
            breaker("ok", "P"),
        ])
        .unwrap_err();
        let fields: Vec<&str> = err.errors().iter().map(|e| e.field.as_ref()).collect();
        assert_eq!(
            fields,
            [
                "ice_breakers[0].question",
                "ice_breakers[1].payload",
                "ice_breakers[2].question"
            ]
        );
        // 80 characters of two bytes each are within the limit.
        assert!(IceBreaker::check_all(&[breaker(&"é".repeat(80), "P")]).is_ok());
    }

    #[test]
    fn menu_items_are_held_to_metas_limits() {
        let ok = [
            MenuItem::Postback {
                title: "Talk to us".into(),
                payload: "HUMAN".into(),
            },
            MenuItem::WebUrl {
                title: "Shop".into(),
                url: "https://shop.example".into(),
            },
        ];
        assert!(MenuItem::check_all(&ok).is_ok());
        assert!(MenuItem::check_all(&[]).is_err());
        let err = MenuItem::check_all(&[MenuItem::WebUrl {
            title: "x".repeat(31),
            url: "javascript:alert(1)".into(),
        }])
        .unwrap_err();
        let fields: Vec<&str> = err.errors().iter().map(|e| e.field.as_ref()).collect();
        assert_eq!(fields, ["items[0].title", "items[0].url"]);
    }
}
