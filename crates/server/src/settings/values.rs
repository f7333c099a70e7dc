//! The types settings are read into: each parses its environment text once, at load, with the
//! forms the original service and earlier versions took.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use insta_router_domain::{RetrySchedule, Secret};
use insta_router_storage::DatabaseUrl;

/// A setting's type: parsed from the text of its variable (or the file's value, or the
/// compiled default).
pub trait FromSetting: Sized {
    /// The value of `raw`.
    ///
    /// # Errors
    ///
    /// What is wrong, without the variable's name (the caller adds it).
    fn from_setting(raw: &str) -> Result<Self, String>;
}

impl FromSetting for String {
    fn from_setting(raw: &str) -> Result<Self, String> {
        Ok(raw.to_owned())
    }
}

impl FromSetting for bool {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            other => Err(format!("{other:?} is not true or false")),
        }
    }
}

macro_rules! from_str_setting {
    ($($t:ty),*) => {$(
        impl FromSetting for $t {
            fn from_setting(raw: &str) -> Result<Self, String> {
                raw.trim()
                    .parse()
                    .map_err(|e| format!("{raw:?} is not a valid number: {e}"))
            }
        }
    )*};
}
from_str_setting!(u16, u32, u64, usize);

impl FromSetting for NonZeroU32 {
    fn from_setting(raw: &str) -> Result<Self, String> {
        Self::new(u32::from_setting(raw)?).ok_or_else(|| "must be at least 1".to_owned())
    }
}

impl FromSetting for NonZeroUsize {
    fn from_setting(raw: &str) -> Result<Self, String> {
        Self::new(usize::from_setting(raw)?).ok_or_else(|| "must be at least 1".to_owned())
    }
}

/// A duration written in seconds, whole or not (`10`, `2.5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seconds(pub Duration);

impl FromSetting for Seconds {
    fn from_setting(raw: &str) -> Result<Self, String> {
        let secs: f64 = raw
            .trim()
            .parse()
            .map_err(|_| format!("{raw:?} is not a number of seconds"))?;
        Duration::try_from_secs_f64(secs)
            .map(Self)
            .map_err(|_| format!("{raw:?} is not a number of seconds"))
    }
}

/// A duration written in milliseconds (`1000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Millis(pub Duration);

impl FromSetting for Millis {
    fn from_setting(raw: &str) -> Result<Self, String> {
        u64::from_setting(raw).map(|ms| Self(Duration::from_millis(ms)))
    }
}

/// A duration with its unit (`500ms`, `60s`, `5m`, `2h`, `1d`; a bare number is seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delay(pub Duration);

impl FromSetting for Delay {
    fn from_setting(raw: &str) -> Result<Self, String> {
        RetrySchedule::parse_delay(raw).map(Self)
    }
}

/// Delays with units, comma-separated (`0s, 5s, 5m`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delays(pub Vec<Duration>);

impl FromSetting for Delays {
    fn from_setting(raw: &str) -> Result<Self, String> {
        RetrySchedule::parse_delays(raw).map(Self)
    }
}

/// A secret ([`Secret`]'s `Debug` is redacted).
impl FromSetting for Secret {
    fn from_setting(raw: &str) -> Result<Self, String> {
        Ok(Self::new(raw.to_owned()))
    }
}

impl FromSetting for DatabaseUrl {
    fn from_setting(raw: &str) -> Result<Self, String> {
        if raw.trim().is_empty() {
            return Err("must not be empty".to_owned());
        }
        Self::parse(raw)
    }
}

/// `text` or `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// JSON lines.
    Json,
}

impl FromSetting for LogFormat {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("must be text or json, not {other:?}")),
        }
    }
}

/// SQLite's durability: `normal` survives a killed process, `full` also a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    /// `synchronous=NORMAL`.
    #[default]
    Normal,
    /// `synchronous=FULL`.
    Full,
}

impl FromSetting for SqliteSync {
    fn from_setting(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "normal" => Ok(Self::Normal),
            "full" => Ok(Self::Full),
            _ => Err(format!("must be normal or full, not {raw:?}")),
        }
    }
}

/// An `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpUrl(pub String);

impl FromSetting for HttpUrl {
    fn from_setting(raw: &str) -> Result<Self, String> {
        if raw.starts_with("http://") || raw.starts_with("https://") {
            Ok(Self(raw.to_owned()))
        } else {
            Err("must be an http(s) URL".to_owned())
        }
    }
}

/// Browser origins (`https://crm.example`), comma-separated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origins(pub Vec<String>);

impl FromSetting for Origins {
    fn from_setting(raw: &str) -> Result<Self, String> {
        let origins: Vec<String> = raw
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        for origin in &origins {
            let scheme_ok = origin.starts_with("https://") || origin.starts_with("http://");
            let bare = origin
                .split_once("://")
                .is_some_and(|(_, rest)| !rest.is_empty() && !rest.contains('/'));
            if !(scheme_ok && bare) {
                return Err(format!(
                    "{origin:?} is not an origin (scheme://host[:port])"
                ));
            }
        }
        Ok(Self(origins))
    }
}

/// A path, or nothing when empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OptionalPath(pub Option<std::path::PathBuf>);

impl FromSetting for OptionalPath {
    fn from_setting(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        Ok(Self((!raw.is_empty()).then(|| raw.into())))
    }
}
