//! Configuration: compiled defaults < `insta-router.toml` < environment variables.
//!
//! Keys are the original service's environment variable names (`PORT`, `DATABASE_URL`,
//! `FACEBOOK_APP_SECRET`, ...) in lower case in the file and upper case in the environment.
//! Only this crate reads configuration; everything else takes plain values.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use insta_router_app::{AutoReplySettings, DeliverySettings, ReplaySettings, SendSettings};
use insta_router_domain::rules::Safety;
use insta_router_domain::{MIN_BACKOFF_AFTER_OVERLOAD, RetrySchedule};

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

/// The secret the original service used when none was configured; never valid in production.
const DEV_DEFAULT_SECRET: &str = "test_secret_dev";

/// Every setting, with its environment variable name (upper case of the field).
#[derive(Clone, Deserialize)]
pub struct Settings {
    /// `development` (default), `production` (or `prod`), or any other name.
    pub environment: String,
    /// Address to listen on.
    pub host: String,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// `sqlite://...`, `postgres://...` or `mysql://...`; the original's SQLAlchemy forms too.
    pub database_url: String,
    /// Apply pending migrations when serving.
    pub auto_migrate: bool,
    /// Database pool size.
    pub db_max_connections: u32,
    /// SQLite durability: `normal` survives a killed process, `full` also a power cut.
    pub sqlite_synchronous: String,
    /// `trace`, `debug`, `info`, `warn` or `error`, or a full tracing filter.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: String,
    /// The token Meta sends when subscribing the webhook.
    pub facebook_verify_token: String,
    /// The Facebook app secret; either app secret may sign webhooks.
    pub facebook_app_secret: String,
    /// The Instagram app secret (Instagram-Login apps sign with this one).
    pub instagram_app_secret: String,
    /// The token of the account configured by environment (the original's single account).
    pub instagram_page_access_token: String,
    /// The id of the account configured by environment.
    pub instagram_business_account_id: String,
    /// The Graph API base URL; tests point it at a fake.
    pub instagram_api_base_url: String,
    /// Seconds to wait for a CRM to answer a delivery.
    pub crm_webhook_timeout: f64,
    /// Allow CRM URLs on private and loopback addresses.
    pub crm_allow_private_networks: bool,
    /// Base64 of 32 bytes; encrypts stored credentials (AES-256-GCM).
    pub encryption_key: String,
    /// Earlier keys, comma-separated: they still open what they sealed (see `reencrypt`).
    pub encryption_key_previous: String,
    /// Largest JSON body the REST API accepts, in bytes.
    pub max_json_bytes: usize,
    /// Seconds to finish in-flight requests on SIGINT/SIGTERM.
    pub shutdown_timeout: u64,
    /// Largest Meta webhook body accepted, in bytes; larger ones get 413.
    pub max_webhook_bytes: usize,
    /// Writer tasks storing webhooks; 0 picks 1 on SQLite, 2 on PostgreSQL and 4 on MySQL.
    pub ingest_writers: usize,
    /// Most webhook requests committed in one transaction.
    pub ingest_max_batch: usize,
    /// CRM delivery worker tasks; 0 turns delivery off in this process (another instance on
    /// the same database delivers).
    pub delivery_workers: usize,
    /// Seconds a worker holds a claimed delivery or send before another may take it over (a
    /// send's lease is at least `GRAPH_API_TIMEOUT` plus 5 s).
    pub delivery_lease: u64,
    /// Milliseconds between an idle worker's looks for due retries.
    pub delivery_poll_interval_ms: u64,
    /// The delay before each delivery attempt, comma-separated (`0s, 5s, 5m, 2h, 1d`); its
    /// length is the number of attempts before a delivery is dead-lettered.
    pub crm_retry_schedule: String,
    /// The least pause after a CRM timed out, answered 429 or could not be reached
    /// (`60s`).
    pub crm_overload_backoff: String,
    /// Most concurrent requests to one CRM URL.
    pub crm_max_concurrency: usize,
    /// Consecutive failures after which an endpoint is paused.
    pub crm_pause_after_failures: u32,
    /// Seconds such a pause lasts.
    pub crm_pause_seconds: u64,
    /// Seconds a replaced CRM signing secret keeps signing next to the new one.
    pub crm_secret_rotation_grace: u64,
    /// What an auto-reply says in place of a customer's name it could not look up.
    pub auto_reply_fallback_name: String,
    /// Auto-reply worker tasks; 0 turns auto-replies off in this process.
    pub auto_reply_workers: usize,
    /// Seconds without auto-replies after a human wrote to a customer.
    pub auto_reply_human_pause: u64,
    /// Most auto-replies per conversation per hour.
    pub auto_reply_hourly_cap: u32,
    /// A TOML file of auto-reply rules to create at start (`deploy/rules.example.toml`);
    /// empty for none.
    pub rules_file: String,
    /// HTTP worker threads; 0 = one per core.
    pub http_workers: usize,
    /// Threads of the runtime that runs the workers and the database writers; 0 = one per
    /// core.
    pub runtime_workers: usize,
    /// Seconds a Graph API call (a send, a profile lookup, a mark-seen) may take; a send
    /// with no answer by then has an unknown outcome and is not sent again.
    pub graph_api_timeout: f64,
    /// Send worker tasks (Graph API calls for `POST /api/v1/messages/send`); 0 turns sending
    /// off in this process (another instance on the same database sends).
    pub send_workers: usize,
    /// The pauses before retrying a send after a temporary Graph API failure
    /// (`2s, 10s, 1m, 5m, 15m`); after the last the send fails, `retryable: true`.
    pub send_retry_schedule: String,
    /// Most sends per second per account (Meta allows 300).
    pub send_rate_per_account: u32,
    /// How long the echo of a send whose outcome is unknown is waited for (`10m`).
    pub send_reconcile_window: String,
    /// How often it is looked for meanwhile (`30s`).
    pub send_reconcile_interval: String,
    /// Directory where webhooks are kept while the database refuses even the journal (they
    /// are moved into it when it accepts writes again); empty: such webhooks are answered 503
    /// and Meta retries them.
    pub webhook_spool_dir: String,
    /// Origins (`https://crm.example`) whose browser pages may call the REST API, comma-
    /// separated; empty: CORS is closed.
    pub cors_allowed_origins: String,
    /// REST API requests per second per API key (bursts of twice as many); 0: no limit.
    pub api_rate_limit: u32,
    /// Failed authentications, and webhooks with a bad signature, per minute per client
    /// address before they are answered 429; 0: no limit.
    pub auth_failure_limit: u32,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &str| if s.is_empty() { "" } else { "[redacted]" };
        f.debug_struct("Settings")
            .field("environment", &self.environment)
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "database_url",
                &insta_router_storage::redact_database_url(&self.database_url),
            )
            .field("auto_migrate", &self.auto_migrate)
            .field("log_level", &self.log_level)
            .field("log_format", &self.log_format)
            .field(
                "facebook_verify_token",
                &redact(&self.facebook_verify_token),
            )
            .field("facebook_app_secret", &redact(&self.facebook_app_secret))
            .field("instagram_app_secret", &redact(&self.instagram_app_secret))
            .field(
                "instagram_page_access_token",
                &redact(&self.instagram_page_access_token),
            )
            .field(
                "instagram_business_account_id",
                &self.instagram_business_account_id,
            )
            .field("instagram_api_base_url", &self.instagram_api_base_url)
            .field("encryption_key", &redact(&self.encryption_key))
            .field(
                "encryption_key_previous",
                &redact(&self.encryption_key_previous),
            )
            .finish_non_exhaustive()
    }
}

/// The names of every setting, as environment variables.
const KEYS: &[&str] = &[
    "ENVIRONMENT",
    "HOST",
    "PORT",
    "DATABASE_URL",
    "AUTO_MIGRATE",
    "DB_MAX_CONNECTIONS",
    "SQLITE_SYNCHRONOUS",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "FACEBOOK_VERIFY_TOKEN",
    "FACEBOOK_APP_SECRET",
    "INSTAGRAM_APP_SECRET",
    "INSTAGRAM_PAGE_ACCESS_TOKEN",
    "INSTAGRAM_BUSINESS_ACCOUNT_ID",
    "INSTAGRAM_API_BASE_URL",
    "CRM_WEBHOOK_TIMEOUT",
    "CRM_ALLOW_PRIVATE_NETWORKS",
    "ENCRYPTION_KEY",
    "ENCRYPTION_KEY_PREVIOUS",
    "MAX_JSON_BYTES",
    "SHUTDOWN_TIMEOUT",
    "MAX_WEBHOOK_BYTES",
    "INGEST_WRITERS",
    "INGEST_MAX_BATCH",
    "DELIVERY_WORKERS",
    "DELIVERY_LEASE",
    "DELIVERY_POLL_INTERVAL_MS",
    "CRM_RETRY_SCHEDULE",
    "CRM_OVERLOAD_BACKOFF",
    "CRM_MAX_CONCURRENCY",
    "CRM_PAUSE_AFTER_FAILURES",
    "CRM_PAUSE_SECONDS",
    "CRM_SECRET_ROTATION_GRACE",
    "AUTO_REPLY_FALLBACK_NAME",
    "AUTO_REPLY_WORKERS",
    "AUTO_REPLY_HUMAN_PAUSE",
    "AUTO_REPLY_HOURLY_CAP",
    "RULES_FILE",
    "HTTP_WORKERS",
    "RUNTIME_WORKERS",
    "GRAPH_API_TIMEOUT",
    "SEND_WORKERS",
    "SEND_RETRY_SCHEDULE",
    "SEND_RATE_PER_ACCOUNT",
    "SEND_RECONCILE_WINDOW",
    "SEND_RECONCILE_INTERVAL",
    "WEBHOOK_SPOOL_DIR",
    "CORS_ALLOWED_ORIGINS",
    "API_RATE_LIMIT",
    "AUTH_FAILURE_LIMIT",
];

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value could not be read.
    #[error("invalid configuration: {0}")]
    Load(String),
    /// Values are missing or wrong; each message names its setting.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl Settings {
    /// Loads from the process environment and, when present, `file`.
    ///
    /// # Errors
    ///
    /// [`SettingsError`] naming each bad setting.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_from(std::env::vars().collect(), file)
    }

    /// Loads from `env` (variable name to value) and, when present, `file`.
    ///
    /// # Errors
    ///
    /// [`SettingsError`] naming each bad setting.
    pub fn load_from(
        env: HashMap<String, String>,
        file: Option<&Path>,
    ) -> Result<Self, SettingsError> {
        let known: HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| KEYS.contains(&k.as_str()))
            .collect();
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        let config = builder
            .add_source(Environment::default().source(Some(known)).try_parsing(true))
            .build()
            .map_err(|e| SettingsError::Load(name_env(&e.to_string())))?;
        let settings: Self = config
            .try_deserialize()
            .map_err(|e| SettingsError::Load(name_env(&e.to_string())))?;
        settings.check_values()?;
        Ok(settings)
    }

    /// True in production (`ENVIRONMENT` = `production` or `prod`, any case).
    pub fn is_production(&self) -> bool {
        matches!(
            self.environment.to_ascii_lowercase().as_str(),
            "production" | "prod"
        )
    }

    /// The app secrets that may sign Meta webhooks.
    pub fn app_secrets(&self) -> Vec<&str> {
        // Each may list several, comma-separated (Meta's secrets are hex): the new one and
        // the old one while an app secret is rotated.
        [
            self.instagram_app_secret.as_str(),
            self.facebook_app_secret.as_str(),
        ]
        .into_iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
    }

    /// What is missing for receiving Meta webhooks. In production these stop start-up; in
    /// development they are warnings.
    pub fn missing_for_meta(&self) -> Vec<String> {
        let mut missing = Vec::new();
        if self.facebook_verify_token.is_empty() {
            missing.push(
                "FACEBOOK_VERIFY_TOKEN is not set: Meta cannot subscribe the webhook".to_owned(),
            );
        }
        if self.app_secrets().is_empty() {
            missing.push(
                "neither INSTAGRAM_APP_SECRET nor FACEBOOK_APP_SECRET is set: webhook signatures cannot be verified"
                    .to_owned(),
            );
        }
        if self.encryption_key.trim().is_empty() && self.is_production() {
            missing.push(format!(
                "ENCRYPTION_KEY is not set: stored credentials cannot be encrypted; {}",
                crate::encryption::HOW_TO_GENERATE
            ));
        }
        if self.app_secrets().contains(&DEV_DEFAULT_SECRET) && self.is_production() {
            missing.push(format!(
                "an app secret is the development default \"{DEV_DEFAULT_SECRET}\""
            ));
        }
        missing
    }

    /// How CRM deliveries are worked.
    pub fn delivery(&self) -> DeliverySettings {
        DeliverySettings {
            workers: self.delivery_workers,
            lease: Duration::from_secs(self.delivery_lease),
            attempt_timeout: Duration::from_secs_f64(self.crm_webhook_timeout),
            poll_interval: Duration::from_millis(self.delivery_poll_interval_ms.max(10)),
            schedule: RetrySchedule {
                // Checked when loading.
                delays: RetrySchedule::parse_delays(&self.crm_retry_schedule)
                    .unwrap_or_else(|_| RetrySchedule::default().delays),
                overload_floor: RetrySchedule::parse_delay(&self.crm_overload_backoff)
                    .unwrap_or(MIN_BACKOFF_AFTER_OVERLOAD),
                ..RetrySchedule::default()
            },
            per_endpoint_concurrency: self.crm_max_concurrency,
            pause_after_failures: self.crm_pause_after_failures,
            pause_for: Duration::from_secs(self.crm_pause_seconds),
            ..DeliverySettings::default()
        }
    }

    /// How auto-replies are worked.
    pub fn auto_reply(&self) -> AutoReplySettings {
        AutoReplySettings {
            workers: self.auto_reply_workers,
            poll_interval: Duration::from_millis(self.delivery_poll_interval_ms.max(10)),
            safety: Safety {
                human_pause: Duration::from_secs(self.auto_reply_human_pause),
                hourly_cap: self.auto_reply_hourly_cap,
                ..Safety::default()
            },
            fallback_name: self.auto_reply_fallback_name.clone(),
            ..AutoReplySettings::default()
        }
    }

    /// The origins of `CORS_ALLOWED_ORIGINS`.
    pub fn cors_origins(&self) -> Vec<String> {
        self.cors_allowed_origins
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect()
    }

    /// How webhooks whose events could not be stored are replayed.
    pub fn replay(&self) -> ReplaySettings {
        ReplaySettings {
            lease: Duration::from_secs(self.delivery_lease),
            poll: Duration::from_millis(self.delivery_poll_interval_ms.max(10)),
        }
    }

    /// How sends are worked.
    pub fn sending(&self) -> SendSettings {
        let defaults = SendSettings::default();
        SendSettings {
            workers: self.send_workers,
            // A send's lease must outlast its Graph API call, or a second worker would find it
            // `sending` and call it unknown while the first still waits for Meta.
            lease: Duration::from_secs(self.delivery_lease).max(
                Duration::try_from_secs_f64(self.graph_api_timeout)
                    .unwrap_or(Duration::from_secs(10))
                    + Duration::from_secs(5),
            ),
            poll_interval: Duration::from_millis(self.delivery_poll_interval_ms.max(10)),
            // Checked when loading.
            retry_delays: RetrySchedule::parse_delays(&self.send_retry_schedule)
                .unwrap_or(defaults.retry_delays),
            reconcile_window: RetrySchedule::parse_delay(&self.send_reconcile_window)
                .unwrap_or(defaults.reconcile_window),
            reconcile_interval: RetrySchedule::parse_delay(&self.send_reconcile_interval)
                .unwrap_or(defaults.reconcile_interval),
            per_account_rate: NonZeroU32::new(self.send_rate_per_account)
                .unwrap_or(defaults.per_account_rate),
        }
    }

    /// The account configured by environment, as the original service was set up:
    /// `INSTAGRAM_BUSINESS_ACCOUNT_ID` with `INSTAGRAM_PAGE_ACCESS_TOKEN`, when both are set.
    pub fn configured_account(&self) -> Option<(&str, &str)> {
        let id = self.instagram_business_account_id.trim();
        let token = self.instagram_page_access_token.trim();
        (!id.is_empty() && !token.is_empty()).then_some((id, token))
    }

    /// Production refuses to start without what Meta needs.
    ///
    /// # Errors
    ///
    /// [`SettingsError::Invalid`] in production when [`Settings::missing_for_meta`] is not empty.
    pub fn check_for_serving(&self) -> Result<(), SettingsError> {
        let missing = self.missing_for_meta();
        if self.is_production() && !missing.is_empty() {
            return Err(SettingsError::Invalid(missing));
        }
        Ok(())
    }

    fn check_values(&self) -> Result<(), SettingsError> {
        let mut errors = Vec::new();
        if !matches!(self.log_format.as_str(), "text" | "json") {
            errors.push(format!(
                "LOG_FORMAT must be text or json, not {:?}",
                self.log_format
            ));
        }
        if !matches!(
            self.sqlite_synchronous.to_ascii_lowercase().as_str(),
            "normal" | "full"
        ) {
            errors.push(format!(
                "SQLITE_SYNCHRONOUS must be normal or full, not {:?}",
                self.sqlite_synchronous
            ));
        }
        if self.database_url.trim().is_empty() {
            errors.push("DATABASE_URL must not be empty".to_owned());
        }
        if self.db_max_connections == 0 {
            errors.push("DB_MAX_CONNECTIONS must be at least 1".to_owned());
        }
        if !(self.crm_webhook_timeout.is_finite() && self.crm_webhook_timeout > 0.0) {
            errors.push("CRM_WEBHOOK_TIMEOUT must be a positive number of seconds".to_owned());
        }
        if !(self.instagram_api_base_url.starts_with("http://")
            || self.instagram_api_base_url.starts_with("https://"))
        {
            errors.push("INSTAGRAM_API_BASE_URL must be an http(s) URL".to_owned());
        }
        if self.max_json_bytes < 1024 {
            errors.push("MAX_JSON_BYTES must be at least 1024".to_owned());
        }
        if self.max_webhook_bytes < 1024 {
            errors.push("MAX_WEBHOOK_BYTES must be at least 1024".to_owned());
        }
        if self.ingest_max_batch == 0 {
            errors.push("INGEST_MAX_BATCH must be at least 1".to_owned());
        }
        if let Err(e) = RetrySchedule::parse_delays(&self.crm_retry_schedule) {
            errors.push(format!("CRM_RETRY_SCHEDULE: {e}"));
        }
        if let Err(e) = RetrySchedule::parse_delay(&self.crm_overload_backoff) {
            errors.push(format!("CRM_OVERLOAD_BACKOFF: {e}"));
        }
        // A lease shorter than an attempt may take lets a second worker send the same
        // delivery while the first is still waiting for the CRM.
        #[allow(clippy::cast_precision_loss, reason = "seconds, far below 2^52")]
        if (self.delivery_lease as f64) <= self.crm_webhook_timeout {
            errors.push(format!(
                "DELIVERY_LEASE ({} s) must be longer than CRM_WEBHOOK_TIMEOUT ({} s)",
                self.delivery_lease, self.crm_webhook_timeout
            ));
        }
        for (name, value) in [
            ("SEND_RECONCILE_WINDOW", &self.send_reconcile_window),
            ("SEND_RECONCILE_INTERVAL", &self.send_reconcile_interval),
        ] {
            if let Err(e) = RetrySchedule::parse_delay(value) {
                errors.push(format!("{name}: {e}"));
            }
        }
        if let Err(e) = RetrySchedule::parse_delays(&self.send_retry_schedule) {
            errors.push(format!("SEND_RETRY_SCHEDULE: {e}"));
        }
        if self.send_rate_per_account == 0 {
            errors.push("SEND_RATE_PER_ACCOUNT must be at least 1".to_owned());
        }
        if !(self.graph_api_timeout.is_finite() && self.graph_api_timeout > 0.0) {
            errors.push("GRAPH_API_TIMEOUT must be a positive number of seconds".to_owned());
        }
        if !self.encryption_key.trim().is_empty()
            && let Err(e) = crate::encryption::parse_key(&self.encryption_key)
        {
            errors.push(format!(
                "ENCRYPTION_KEY {e}: it must be 32 random bytes in base64; {}",
                crate::encryption::HOW_TO_GENERATE
            ));
        }
        if let Err(e) = crate::encryption::parse_previous(&self.encryption_key_previous) {
            errors.push(format!("ENCRYPTION_KEY_PREVIOUS: {e}"));
        }
        for origin in self.cors_origins() {
            let scheme_ok = origin.starts_with("https://") || origin.starts_with("http://");
            let bare = origin
                .split_once("://")
                .is_some_and(|(_, rest)| !rest.is_empty() && !rest.contains('/'));
            if !(scheme_ok && bare) {
                errors.push(format!(
                    "CORS_ALLOWED_ORIGINS: {origin:?} is not an origin (scheme://host[:port])"
                ));
            }
        }
        if self.crm_max_concurrency == 0 {
            errors.push("CRM_MAX_CONCURRENCY must be at least 1".to_owned());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SettingsError::Invalid(errors))
        }
    }
}

/// Adds the environment variable name to config's "for key `port`" messages.
fn name_env(message: &str) -> String {
    match message
        .split("key `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
    {
        Some(key) => format!(
            "{message} (environment variable {})",
            key.to_ascii_uppercase()
        ),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_serve_sqlite_in_development() {
        let s = Settings::load_from(env(&[("PATH", "/bin"), ("HOME", "/root")]), None).unwrap();
        assert_eq!(
            (s.environment.as_str(), s.port, s.host.as_str()),
            ("development", 8000, "0.0.0.0")
        );
        assert_eq!(s.database_url, "sqlite://insta_router.db?mode=rwc");
        assert!(s.auto_migrate);
        assert!(!s.is_production());
        assert_eq!(s.missing_for_meta().len(), 2);
        assert!(s.check_for_serving().is_ok());
    }

    #[test]
    fn the_original_variable_names_are_read() {
        let s = Settings::load_from(
            env(&[
                ("PORT", "9001"),
                ("FACEBOOK_VERIFY_TOKEN", "12345"),
                ("FACEBOOK_APP_SECRET", "fb"),
                ("INSTAGRAM_APP_SECRET", "ig"),
                (
                    "DATABASE_URL",
                    "sqlite+aiosqlite:///./instagram_automation.db",
                ),
                ("CRM_WEBHOOK_TIMEOUT", "2.5"),
                ("LOG_LEVEL", "DEBUG"),
                ("ENVIRONMENT", "PROD"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(s.port, 9001);
        assert_eq!(s.facebook_verify_token, "12345");
        assert_eq!(s.app_secrets(), ["ig", "fb"]);
        let rotating = Settings::load_from(
            env(&[
                ("INSTAGRAM_APP_SECRET", "new, old"),
                ("FACEBOOK_APP_SECRET", "fb"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(rotating.app_secrets(), ["new", "old", "fb"]);
        assert_eq!(s.crm_webhook_timeout, 2.5);
        assert!(s.is_production());
        // Production wants a credential key besides Meta's secrets.
        let refused = s.check_for_serving().unwrap_err().to_string();
        assert!(refused.contains("ENCRYPTION_KEY"), "{refused}");
        let mut with_key = s.clone();
        with_key.encryption_key = "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=".to_owned();
        assert!(with_key.check_for_serving().is_ok());
    }

    #[test]
    fn environment_beats_the_file_which_beats_the_defaults() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "port = 7000\nhost = \"127.0.0.1\"\nlog_format = \"json\""
        )
        .unwrap();
        let s = Settings::load_from(env(&[("PORT", "7001")]), Some(file.path())).unwrap();
        assert_eq!(
            (s.port, s.host.as_str(), s.log_format.as_str()),
            (7001, "127.0.0.1", "json")
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = Settings::load_from(env(&[("PORT", "eighty")]), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("PORT"), "{err}");
        let err = Settings::load_from(
            env(&[("LOG_FORMAT", "xml"), ("DB_MAX_CONNECTIONS", "0")]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("LOG_FORMAT") && err.contains("DB_MAX_CONNECTIONS"),
            "{err}"
        );
    }

    #[test]
    fn production_refuses_to_start_without_meta_secrets_naming_them() {
        let s = Settings::load_from(env(&[("ENVIRONMENT", "production")]), None).unwrap();
        let err = s.check_for_serving().unwrap_err().to_string();
        assert!(
            err.contains("FACEBOOK_VERIFY_TOKEN") && err.contains("INSTAGRAM_APP_SECRET"),
            "{err}"
        );
        let s = Settings::load_from(
            env(&[
                ("ENVIRONMENT", "production"),
                ("FACEBOOK_VERIFY_TOKEN", "t"),
                ("INSTAGRAM_APP_SECRET", "test_secret_dev"),
            ]),
            None,
        )
        .unwrap();
        assert!(
            s.check_for_serving()
                .unwrap_err()
                .to_string()
                .contains("test_secret_dev")
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let s = Settings::load_from(
            env(&[
                ("INSTAGRAM_APP_SECRET", "hunter2"),
                ("DATABASE_URL", "postgres://u:pw@h/db"),
            ]),
            None,
        )
        .unwrap();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("pw@"),
            "{shown}"
        );
    }
}

#[cfg(test)]
mod delivery_tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::Settings;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, super::SettingsError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::load_from(env, None)
    }

    #[test]
    fn the_delivery_schedule_and_backoff_are_read_with_units() {
        let s = load(&[
            ("CRM_RETRY_SCHEDULE", "0s, 100ms, 2m"),
            ("CRM_OVERLOAD_BACKOFF", "5"),
            ("DELIVERY_WORKERS", "2"),
        ])
        .unwrap();
        let delivery = s.delivery();
        assert_eq!(
            delivery.schedule.delays,
            vec![
                Duration::ZERO,
                Duration::from_millis(100),
                Duration::from_secs(120)
            ]
        );
        assert_eq!(delivery.schedule.overload_floor, Duration::from_secs(5));
        assert_eq!(delivery.workers, 2);
        // The defaults: Svix's schedule, a minute after overload.
        let defaults = load(&[]).unwrap().delivery();
        assert_eq!(defaults.schedule.attempts(), 10);
        assert_eq!(defaults.schedule.overload_floor, Duration::from_secs(60));
    }

    #[test]
    fn bad_delivery_settings_are_named() {
        let err = load(&[
            ("CRM_RETRY_SCHEDULE", "soon"),
            ("CRM_OVERLOAD_BACKOFF", "1 fortnight"),
            ("DELIVERY_LEASE", "5"),
            ("CRM_WEBHOOK_TIMEOUT", "10"),
            ("CRM_MAX_CONCURRENCY", "0"),
        ])
        .unwrap_err()
        .to_string();
        for name in [
            "CRM_RETRY_SCHEDULE",
            "CRM_OVERLOAD_BACKOFF",
            "DELIVERY_LEASE",
            "CRM_MAX_CONCURRENCY",
        ] {
            assert!(err.contains(name), "{name} in {err}");
        }
    }

    #[test]
    fn send_settings_are_read_and_the_lease_outlasts_a_graph_call() {
        let s = load(&[
            ("SEND_RETRY_SCHEDULE", "1s, 1m"),
            ("SEND_RATE_PER_ACCOUNT", "50"),
            ("SEND_RECONCILE_WINDOW", "5m"),
            ("GRAPH_API_TIMEOUT", "30"),
            ("DELIVERY_LEASE", "20"),
            ("INSTAGRAM_BUSINESS_ACCOUNT_ID", "17841400000000001"),
            ("INSTAGRAM_PAGE_ACCESS_TOKEN", "IGQVJ-env"),
        ])
        .unwrap();
        let sending = s.sending();
        assert_eq!(
            sending.retry_delays,
            vec![Duration::from_secs(1), Duration::from_secs(60)]
        );
        assert_eq!(sending.per_account_rate.get(), 50);
        assert_eq!(sending.reconcile_window, Duration::from_secs(300));
        assert_eq!(sending.lease, Duration::from_secs(35));
        assert_eq!(
            s.configured_account(),
            Some(("17841400000000001", "IGQVJ-env"))
        );
        let partial = load(&[("INSTAGRAM_BUSINESS_ACCOUNT_ID", "1784")]).unwrap();
        assert_eq!(partial.configured_account(), None);
    }

    #[test]
    fn bad_send_settings_are_named() {
        let err = load(&[
            ("SEND_RETRY_SCHEDULE", "later"),
            ("SEND_RATE_PER_ACCOUNT", "0"),
            ("SEND_RECONCILE_INTERVAL", "often"),
            ("GRAPH_API_TIMEOUT", "-1"),
        ])
        .unwrap_err()
        .to_string();
        for name in [
            "SEND_RETRY_SCHEDULE",
            "SEND_RATE_PER_ACCOUNT",
            "SEND_RECONCILE_INTERVAL",
            "GRAPH_API_TIMEOUT",
        ] {
            assert!(err.contains(name), "{name} in {err}");
        }
    }
}
