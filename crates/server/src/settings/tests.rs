//! Loading settings: sources, names, types and the checks across them.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

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
        (
            s.service.environment.as_str(),
            s.http.port,
            s.http.host.as_str()
        ),
        ("development", 8000, "0.0.0.0")
    );
    assert_eq!(s.database.url.as_str(), "sqlite://insta_router.db?mode=rwc");
    assert!(s.database.auto_migrate);
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
    assert_eq!(s.http.port, 9001);
    assert_eq!(s.meta.facebook_verify_token.expose(), "12345");
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
    assert_eq!(s.crm.webhook_timeout.0, Duration::from_millis(2500));
    assert_eq!(
        s.database.url.as_str(),
        "sqlite://./instagram_automation.db?mode=rwc"
    );
    assert!(s.is_production());
    // Production wants a credential key besides Meta's secrets.
    let refused = s.check_for_serving().unwrap_err().to_string();
    assert!(refused.contains("ENCRYPTION_KEY"), "{refused}");
    let mut with_key = s.clone();
    with_key.encryption.key =
        values::FromSetting::from_setting("MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=").unwrap();
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
        (s.http.port, s.http.host.as_str(), s.service.log_format),
        (7001, "127.0.0.1", values::LogFormat::Json)
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

fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
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
        ("CRM_MAX_CONCURRENCY", "0"),
        ("DELIVERY_WORKERS", "-1"),
    ])
    .unwrap_err()
    .to_string();
    // Every value that does not parse, at once.
    for name in [
        "CRM_RETRY_SCHEDULE",
        "CRM_OVERLOAD_BACKOFF",
        "CRM_MAX_CONCURRENCY",
        "DELIVERY_WORKERS",
    ] {
        assert!(err.contains(name), "{name} in {err}");
    }
    // Then what holds across values.
    let err = load(&[("DELIVERY_LEASE", "5"), ("CRM_WEBHOOK_TIMEOUT", "10")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("DELIVERY_LEASE (5 s) must be longer than CRM_WEBHOOK_TIMEOUT (10 s)"),
        "{err}"
    );
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
