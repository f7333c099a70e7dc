//! What Meta's JSON carries loosely, read leniently: ids and times as strings or numbers,
//! text without the NUL characters PostgreSQL cannot store.

use serde::Deserialize;

/// An id or a time that Meta may send as a string or a number; any other JSON value is
/// accepted and treated as absent, so one odd field does not cost the whole item.
#[derive(Debug)]
pub(crate) struct Lenient(pub(crate) Option<String>);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Int(i64),
            Uint(u64),
            Float(f64),
            Other(serde::de::IgnoredAny),
        }
        Ok(Self(match Either::deserialize(d)? {
            Either::Text(s) => Some(s),
            Either::Int(n) => Some(n.to_string()),
            Either::Uint(n) => Some(n.to_string()),
            Either::Float(f) => Some(f.to_string()),
            Either::Other(_) => None,
        }))
    }
}

impl Lenient {
    pub(crate) fn get(this: Option<&Self>) -> Option<&str> {
        this.and_then(|l| l.0.as_deref())
    }
}

/// Free text without NUL characters, which PostgreSQL cannot store.
pub(crate) fn clean(text: &str) -> String {
    if text.contains('\0') {
        text.replace('\0', "")
    } else {
        text.to_owned()
    }
}
