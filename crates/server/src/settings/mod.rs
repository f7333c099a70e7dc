//! Configuration: compiled defaults < `insta-router.toml` < environment variables.
//!
//! Every setting is one line of [`table`]: its environment variable (the original service's
//! names, `PORT`, `DATABASE_URL`, ...; lower case in the file), its section and field, its type
//! and default, and its description. The typed, nested [`Settings`], the list of variables
//! read, the defaults, the README's settings table and `deploy/.env.example` all come from
//! that line, so a new setting is that line and its use. Values are parsed once, at load, into
//! their types ([`values`]); every bad value is reported with its variable's name.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use config::{Config, File, FileFormat};
use insta_router_app::{
    AutoReplySettings, DeliverySettings, ReplaySettings, RetentionPolicy, RollupSettings,
    SendSettings,
};
use insta_router_domain::RetrySchedule;
use insta_router_domain::rules::Safety;

#[cfg(test)]
mod docs;
mod table;
pub mod values;

pub use table::{
    AutoReply, Crm, DatabaseSection, Delivery, Encryption, Http, Ingest, Meta, Sending, Service,
    Settings,
};

/// The secret the original service used when none was configured; never valid in production.
const DEV_DEFAULT_SECRET: &str = "test_secret_dev";

/// One setting, as the table declares it.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Its environment variable.
    pub env: &'static str,
    /// Its section of [`Settings`].
    pub section: &'static str,
    /// Its compiled default, as text.
    pub default: &'static str,
    /// Its description, line by line.
    pub doc: &'static [&'static str],
}

/// Declares the settings: the nested [`Settings`] types, [`table::TABLE`], and the parser
/// that reads every variable into its type.
macro_rules! settings {
    ($(
        $(#[doc = $section_doc:literal])+
        $section:ident: $Section:ident {
            $(
                $(#[doc = $doc:literal])+
                $env:ident $field:ident: $ty:ty = $default:literal;
            )+
        }
    )+) => {
        /// Every setting, by section.
        #[derive(Debug, Clone)]
        pub struct Settings {
            $(
                $(#[doc = $section_doc])+
                pub $section: $Section,
            )+
        }

        $(
            $(#[doc = $section_doc])+
            #[derive(Debug, Clone)]
            pub struct $Section {
                $(
                    $(#[doc = $doc])+
                    #[doc = concat!("\n\n`", stringify!($env), "`, default `", $default, "`.")]
                    pub $field: $ty,
                )+
            }
        )+

        /// Every setting, in the order of the documentation.
        pub(crate) const TABLE: &[$crate::settings::Entry] = &[$($(
            $crate::settings::Entry {
                env: stringify!($env),
                section: stringify!($section),
                default: $default,
                doc: &[$($doc),+],
            },
        )+)+];

        impl Settings {
            /// Reads every setting from `values` (variable name to text), collecting every
            /// error.
            pub(super) fn parse(values: &std::collections::HashMap<&str, String>) -> Result<Self, Vec<String>> {
                let mut errors = Vec::new();
                $(
                    let $section = {
                        let ($($field,)+) = ($(
                            $crate::settings::read::<$ty>(values, stringify!($env), &mut errors),
                        )+);
                        (|| Some($Section { $($field: $field?,)+ }))()
                    };
                )+
                match ($($section,)+) {
                    ($(Some($section),)+) if errors.is_empty() => Ok(Self { $($section,)+ }),
                    _ => Err(errors),
                }
            }
        }
    };
}
pub(crate) use settings;

/// The setting `env` from `values`, parsed; `None` with an error naming it when it does not
/// parse.
fn read<T: values::FromSetting>(
    values: &HashMap<&str, String>,
    env: &str,
    errors: &mut Vec<String>,
) -> Option<T> {
    let raw = values.get(env).map_or("", String::as_str);
    match T::from_setting(raw) {
        Ok(value) => Some(value),
        Err(e) => {
            errors.push(format!("{env}: {e}"));
            None
        }
    }
}

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
        mut env: HashMap<String, String>,
        file: Option<&Path>,
    ) -> Result<Self, SettingsError> {
        let from_file = match file {
            Some(path) => Some(
                Config::builder()
                    .add_source(File::from(path).format(FileFormat::Toml).required(true))
                    .build()
                    .map_err(|e| SettingsError::Load(e.to_string()))?,
            ),
            None => None,
        };
        let mut values: HashMap<&str, String> = HashMap::new();
        let mut errors = Vec::new();
        for entry in table::TABLE {
            let value = if let Some(value) = env.remove(entry.env) {
                value
            } else if let Some(file) = &from_file
                && let Ok(found) = file.get::<config::Value>(&entry.env.to_ascii_lowercase())
            {
                match found.into_string() {
                    Ok(text) => text,
                    Err(e) => {
                        errors.push(format!("{} (in the file): {e}", entry.env));
                        continue;
                    }
                }
            } else {
                entry.default.to_owned()
            };
            values.insert(entry.env, value);
        }
        let settings = Self::parse(&values).map_err(|mut e| {
            e.append(&mut errors);
            SettingsError::Invalid(e)
        })?;
        if !errors.is_empty() {
            return Err(SettingsError::Invalid(errors));
        }
        settings.check_values()?;
        Ok(settings)
    }

    /// True in production (`ENVIRONMENT` = `production` or `prod`, any case).
    pub fn is_production(&self) -> bool {
        matches!(
            self.service.environment.to_ascii_lowercase().as_str(),
            "production" | "prod"
        )
    }

    /// The app secrets that may sign Meta webhooks: each variable may list several,
    /// comma-separated, while a secret is rotated.
    pub fn app_secrets(&self) -> Vec<&str> {
        [
            &self.meta.instagram_app_secret,
            &self.meta.facebook_app_secret,
        ]
        .into_iter()
        .flat_map(|s| s.expose().split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
    }

    /// What is missing for receiving Meta webhooks. In production these stop start-up; in
    /// development they are warnings.
    pub fn missing_for_meta(&self) -> Vec<String> {
        let mut missing = Vec::new();
        if self.meta.facebook_verify_token.expose().is_empty() {
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
        if self.encryption.key.expose().trim().is_empty() && self.is_production() {
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

    /// How often an idle worker looks for due work.
    fn poll_interval(&self) -> Duration {
        self.delivery.poll_interval.0.max(Duration::from_millis(10))
    }

    /// How CRM deliveries are worked.
    pub fn delivery(&self) -> DeliverySettings {
        DeliverySettings {
            workers: self.delivery.workers,
            batch: self.delivery.batch.get(),
            lease: self.delivery.lease.0,
            attempt_timeout: self.crm.webhook_timeout.0,
            poll_interval: self.poll_interval(),
            schedule: RetrySchedule {
                delays: self.crm.retry_schedule.0.clone(),
                overload_floor: self.crm.overload_backoff.0,
                ..RetrySchedule::default()
            },
            per_endpoint_concurrency: self.crm.max_concurrency.get(),
            pause_after_failures: self.crm.pause_after_failures,
            pause_for: self.crm.pause_seconds.0,
        }
    }

    /// How long rows are kept, and how often they are pruned.
    pub fn retention(&self) -> RetentionPolicy {
        let keep = |d: values::Delay| Some(d.0).filter(|d| !d.is_zero());
        RetentionPolicy {
            journal: keep(self.retention.journal),
            done_jobs: keep(self.retention.done_jobs),
            deliveries: keep(self.retention.deliveries),
            dead_letters: keep(self.retention.dead_letters),
            messages: keep(self.retention.messages),
            interval: self.retention.interval.0.max(Duration::from_secs(1)),
            ..RetentionPolicy::default()
        }
    }

    /// How the analytics rollup is rebuilt.
    pub fn rollup(&self) -> RollupSettings {
        RollupSettings {
            interval: self.analytics.rollup_interval.0.max(Duration::from_secs(1)),
            recent_hours: self.analytics.rollup_recent_hours,
        }
    }

    /// How auto-replies are worked.
    pub fn auto_reply(&self) -> AutoReplySettings {
        AutoReplySettings {
            workers: self.auto_reply.workers,
            poll_interval: self.poll_interval(),
            safety: Safety {
                human_pause: self.auto_reply.human_pause.0,
                hourly_cap: self.auto_reply.hourly_cap,
                ..Safety::default()
            },
            fallback_name: self.auto_reply.fallback_name.clone(),
            ..AutoReplySettings::default()
        }
    }

    /// How webhooks whose events could not be stored are replayed.
    pub fn replay(&self) -> ReplaySettings {
        ReplaySettings {
            lease: self.delivery.lease.0,
            poll: self.poll_interval(),
        }
    }

    /// How sends are worked.
    pub fn sending(&self) -> SendSettings {
        SendSettings {
            workers: self.sending.workers,
            // A send's lease must outlast its Graph API call, or a second worker would find it
            // `sending` and call it unknown while the first still waits for Meta.
            lease: self
                .delivery
                .lease
                .0
                .max(self.meta.graph_api_timeout.0 + Duration::from_secs(5)),
            poll_interval: self.poll_interval(),
            retry_delays: self.sending.retry_schedule.0.clone(),
            reconcile_window: self.sending.reconcile_window.0,
            reconcile_interval: self.sending.reconcile_interval.0,
            per_account_rate: self.sending.rate_per_account,
            private_replies_per_hour: self.sending.private_replies_per_hour,
        }
    }

    /// The account configured by environment, as the original service was set up:
    /// `INSTAGRAM_BUSINESS_ACCOUNT_ID` with `INSTAGRAM_PAGE_ACCESS_TOKEN`, when both are set.
    pub fn configured_account(&self) -> Option<(&str, &str)> {
        let id = self.meta.instagram_business_account_id.trim();
        let token = self.meta.instagram_page_access_token.expose().trim();
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

    /// What no single value shows: limits, and settings that depend on each other.
    fn check_values(&self) -> Result<(), SettingsError> {
        let mut errors = Vec::new();
        if self.crm.webhook_timeout.0.is_zero() {
            errors.push("CRM_WEBHOOK_TIMEOUT must be a positive number of seconds".to_owned());
        }
        if self.meta.graph_api_timeout.0.is_zero() {
            errors.push("GRAPH_API_TIMEOUT must be a positive number of seconds".to_owned());
        }
        if self.http.max_json_bytes < 1024 {
            errors.push("MAX_JSON_BYTES must be at least 1024".to_owned());
        }
        if self.http.max_webhook_bytes < 1024 {
            errors.push("MAX_WEBHOOK_BYTES must be at least 1024".to_owned());
        }
        // A lease shorter than an attempt may take lets a second worker send the same
        // delivery while the first is still waiting for the CRM.
        if self.delivery.lease.0 <= self.crm.webhook_timeout.0 {
            errors.push(format!(
                "DELIVERY_LEASE ({} s) must be longer than CRM_WEBHOOK_TIMEOUT ({} s)",
                self.delivery.lease.0.as_secs_f64(),
                self.crm.webhook_timeout.0.as_secs_f64()
            ));
        }
        if !self.encryption.key.expose().trim().is_empty()
            && let Err(e) = crate::encryption::parse_key(self.encryption.key.expose())
        {
            errors.push(format!(
                "ENCRYPTION_KEY {e}: it must be 32 random bytes in base64; {}",
                crate::encryption::HOW_TO_GENERATE
            ));
        }
        if let Err(e) = crate::encryption::parse_previous(self.encryption.previous.expose()) {
            errors.push(format!("ENCRYPTION_KEY_PREVIOUS: {e}"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SettingsError::Invalid(errors))
        }
    }
}

#[cfg(test)]
mod tests;
