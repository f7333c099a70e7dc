//! The one table of settings: a setting is one entry here (variable, field, type, default,
//! description) and its use. The README's settings table and `deploy/.env.example` are
//! written from it (`cargo test -p insta-router settings` rewrites them when they differ).

use std::num::{NonZeroU32, NonZeroUsize};

use insta_router_domain::Secret;
use insta_router_storage::DatabaseUrl;

use super::values::{
    Delay, Delays, HttpUrl, LogFormat, Millis, OptionalPath, Origins, Seconds, SqliteSync,
};

super::settings! {
    /// The service as a whole.
    service: Service {
        /// `production` (or `prod`) refuses to start without the Meta secrets and
        /// `ENCRYPTION_KEY`; any other name is a development setup.
        ENVIRONMENT environment: String = "development";
        /// `trace`, `debug`, `info`, `warn` or `error`, or a full tracing filter.
        LOG_LEVEL log_level: String = "info";
        /// `text`, or `json` for JSON lines.
        LOG_FORMAT log_format: LogFormat = "text";
        /// Threads of the runtime that runs the workers and the database writers; 0: one per
        /// core.
        RUNTIME_WORKERS runtime_workers: usize = "0";
    }

    /// The HTTP listener and its limits.
    http: Http {
        /// Address to listen on.
        HOST host: String = "0.0.0.0";
        /// Port to listen on; 0 picks a free one.
        PORT port: u16 = "8000";
        /// HTTP worker threads; 0: one per core.
        HTTP_WORKERS workers: usize = "0";
        /// Seconds to finish requests in flight on SIGINT/SIGTERM.
        SHUTDOWN_TIMEOUT shutdown_timeout: Seconds = "10";
        /// Seconds between SIGTERM and closing the listener, while `/ready` answers 503 and
        /// requests are still served, so a load balancer stops sending first; a second signal
        /// skips the wait.
        SHUTDOWN_DRAIN_DELAY drain_delay: Seconds = "3";
        /// Largest REST request body, in bytes.
        MAX_JSON_BYTES max_json_bytes: usize = "65536";
        /// Largest Meta webhook body, in bytes; larger ones get 413.
        MAX_WEBHOOK_BYTES max_webhook_bytes: usize = "1048576";
        /// Origins (`https://crm.example`, comma-separated) whose browser pages may call the
        /// REST API; empty: CORS is closed.
        CORS_ALLOWED_ORIGINS cors_allowed_origins: Origins = "";
        /// REST API requests per second per API key (bursts of twice as many), per instance;
        /// above it 429 with `Retry-After`; 0: no limit.
        API_RATE_LIMIT api_rate_limit: u32 = "50";
        /// Failed authentications, and webhooks with a bad signature, per minute per client
        /// address before they are answered 429; 0: no limit.
        AUTH_FAILURE_LIMIT auth_failure_limit: u32 = "30";
        /// When set, `GET /metrics` wants `Authorization: Bearer <this token>` (401 without
        /// it); empty: open, for a scraper on a private network.
        METRICS_TOKEN metrics_token: Secret = "";
    }

    /// The database.
    database: DatabaseSection {
        /// `sqlite://`, `postgres://` or `mysql://`; the original's
        /// `sqlite+aiosqlite:///./instagram_automation.db` means the same file.
        DATABASE_URL url: DatabaseUrl = "sqlite://insta_router.db?mode=rwc";
        /// Apply pending migrations on `serve` (`--no-migrate` turns it off once).
        AUTO_MIGRATE auto_migrate: bool = "true";
        /// Pool size.
        DB_MAX_CONNECTIONS max_connections: NonZeroU32 = "8";
        /// SQLite durability: `normal` survives a killed process, `full` also a power cut.
        SQLITE_SYNCHRONOUS sqlite_synchronous: SqliteSync = "normal";
    }

    /// Meta: the webhook and the Graph API.
    meta: Meta {
        /// The token Meta sends when subscribing the webhook.
        FACEBOOK_VERIFY_TOKEN facebook_verify_token: Secret = "";
        /// The Instagram app secret (Instagram-Login apps sign with it); several,
        /// comma-separated (`new,old`), while it is rotated.
        INSTAGRAM_APP_SECRET instagram_app_secret: Secret = "";
        /// The Facebook app secret; either app secret may sign webhooks; several,
        /// comma-separated, while it is rotated.
        FACEBOOK_APP_SECRET facebook_app_secret: Secret = "";
        /// The token of the account configured by environment, as in the original: when both
        /// it and `INSTAGRAM_BUSINESS_ACCOUNT_ID` are set, start-up connects that account
        /// (username `ig_<id>`) or gives it this token.
        INSTAGRAM_PAGE_ACCESS_TOKEN instagram_page_access_token: Secret = "";
        /// The id of the account configured by environment.
        INSTAGRAM_BUSINESS_ACCOUNT_ID instagram_business_account_id: String = "";
        /// The Graph API base URL (tests point it at a fake).
        INSTAGRAM_API_BASE_URL instagram_api_base_url: HttpUrl = "https://graph.instagram.com/v21.0";
        /// Seconds a Graph API call may take; a send without an answer by then is `unknown`,
        /// never resent.
        GRAPH_API_TIMEOUT graph_api_timeout: Seconds = "10.0";
        /// Subscribe each account to the app's webhook fields (messages, postbacks, seen,
        /// reactions, referrals, comments, live comments) when it is created; Meta sends an
        /// account's events only once it is subscribed.
        SUBSCRIBE_ON_CREATE subscribe_on_create: bool = "true";
        /// Time between two passes that refresh Instagram-login long-lived tokens (`IG...`)
        /// at least a day old and within 10 days of their expiry; `0` turns refreshing off in
        /// this instance.
        TOKEN_REFRESH_INTERVAL token_refresh_interval: Delay = "1h";
    }

    /// Storing webhooks.
    ingest: Ingest {
        /// Webhook writer tasks; 0: the database's own choice (2 on SQLite and PostgreSQL, 4
        /// on MySQL).
        INGEST_WRITERS writers: usize = "0";
        /// Most webhook requests committed in one transaction.
        INGEST_MAX_BATCH max_batch: NonZeroUsize = "256";
        /// Where webhooks are kept, synced to disk, while the database refuses even the
        /// journal; moved into it when it accepts writes again. Empty: such webhooks are
        /// answered 503 and Meta retries them.
        WEBHOOK_SPOOL_DIR spool_dir: OptionalPath = "spool";
    }

    /// Stored credentials.
    encryption: Encryption {
        /// Base64 of 32 random bytes (`openssl rand -base64 32`): encrypts stored access
        /// tokens and CRM secrets (AES-256-GCM). Required in production; in development,
        /// empty keeps a key in a 0600 file beside the SQLite database.
        ENCRYPTION_KEY key: Secret = "";
        /// Earlier keys, comma-separated, still opening what they sealed; `insta-router
        /// reencrypt` moves everything to the current key.
        ENCRYPTION_KEY_PREVIOUS previous: Secret = "";
    }

    /// Forwarding to CRMs.
    crm: Crm {
        /// Seconds to wait for a CRM to answer a delivery.
        CRM_WEBHOOK_TIMEOUT webhook_timeout: Seconds = "10.0";
        /// Allow CRM URLs on private and loopback addresses.
        CRM_ALLOW_PRIVATE_NETWORKS allow_private_networks: bool = "false";
        /// The delay before each delivery attempt, comma-separated; its length is the number
        /// of attempts before a delivery is dead-lettered.
        CRM_RETRY_SCHEDULE retry_schedule: Delays = "0s, 5s, 5m, 30m, 2h, 5h, 10h, 14h, 20h, 24h";
        /// The least pause after a CRM timed out, answered 429 or refused the connection.
        CRM_OVERLOAD_BACKOFF overload_backoff: Delay = "60s";
        /// Most requests in flight to one CRM URL.
        CRM_MAX_CONCURRENCY max_concurrency: NonZeroUsize = "8";
        /// Failures in a row after which an endpoint is paused.
        CRM_PAUSE_AFTER_FAILURES pause_after_failures: u32 = "20";
        /// Seconds such a pause lasts.
        CRM_PAUSE_SECONDS pause_seconds: Seconds = "60";
        /// Seconds a replaced signing secret keeps signing next to the new one.
        CRM_SECRET_ROTATION_GRACE secret_rotation_grace: Seconds = "86400";
        /// The `User-Agent` of deliveries, for CRMs whose firewall allows listed agents only;
        /// empty: `insta-router/<version>`.
        CRM_USER_AGENT user_agent: String = "";
    }

    /// The workers.
    delivery: Delivery {
        /// CRM delivery workers; 0: this instance does not deliver (another one on the same
        /// database does).
        DELIVERY_WORKERS workers: usize = "4";
        /// Seconds a worker holds a claimed delivery, send or webhook replay; longer than
        /// `CRM_WEBHOOK_TIMEOUT` (for sends at least `GRAPH_API_TIMEOUT` + 5 s).
        DELIVERY_LEASE lease: Seconds = "60";
        /// Most deliveries one worker claims at once; they are sent concurrently (within
        /// `CRM_MAX_CONCURRENCY` per URL) and their attempts recorded in one transaction.
        DELIVERY_BATCH batch: NonZeroU32 = "32";
        /// Milliseconds between an idle worker's looks for due work.
        DELIVERY_POLL_INTERVAL_MS poll_interval: Millis = "1000";
    }

    /// Auto-replies.
    auto_reply: AutoReply {
        /// Auto-reply workers; 0: off in this instance.
        AUTO_REPLY_WORKERS workers: usize = "2";
        /// Said instead of a customer's name that cannot be looked up.
        AUTO_REPLY_FALLBACK_NAME fallback_name: String = "there";
        /// Seconds without auto-replies after a human wrote to a customer.
        AUTO_REPLY_HUMAN_PAUSE human_pause: Seconds = "1800";
        /// Most auto-replies per conversation and hour.
        AUTO_REPLY_HOURLY_CAP hourly_cap: u32 = "3";
        /// A TOML file of auto-reply rules created at start (`deploy/rules.example.toml`);
        /// empty: none.
        RULES_FILE rules_file: OptionalPath = "";
    }

    /// Sending for CRMs (`POST /api/v1/messages/send`).
    sending: Sending {
        /// Send workers; 0: this instance does not send.
        SEND_WORKERS workers: usize = "4";
        /// The pauses before retrying a temporary Graph API failure; after the last the send
        /// is `failed`, `retryable: true`.
        SEND_RETRY_SCHEDULE retry_schedule: Delays = "2s, 10s, 1m, 5m, 15m";
        /// Most sends per second per account and instance (Meta allows 300).
        SEND_RATE_PER_ACCOUNT rate_per_account: NonZeroU32 = "200";
        /// Most private replies to comments per hour per account and instance (Meta's Private
        /// Replies limit is 750 per account; with several instances, divide it).
        PRIVATE_REPLIES_PER_HOUR private_replies_per_hour: NonZeroU32 = "750";
        /// How long Meta's echo of an `unknown` send is looked for.
        SEND_RECONCILE_WINDOW reconcile_window: Delay = "10m";
        /// How often it is looked for meanwhile.
        SEND_RECONCILE_INTERVAL reconcile_interval: Delay = "30s";
    }

    /// How long rows are kept; old ones are pruned in the background in small batches
    /// (`insta-router prune --dry-run` shows what would go). A duration (`14d`, `12h`);
    /// `0` keeps for ever.
    retention: Retention {
        /// Raw webhook bodies in the journal (never those awaiting replay).
        RETENTION_JOURNAL journal: Delay = "14d";
        /// Finished auto-reply, send and replay jobs.
        RETENTION_DONE_JOBS done_jobs: Delay = "7d";
        /// Delivered CRM deliveries with their attempts.
        RETENTION_DELIVERIES deliveries: Delay = "30d";
        /// Dead letters (deliveries and sends given up), with their attempts.
        RETENTION_DEAD_LETTERS dead_letters: Delay = "0";
        /// Messages and the other stored events; keep at least `2d`, or a retry of Meta's
        /// (up to 36 hours late) is stored and forwarded again.
        RETENTION_MESSAGES messages: Delay = "0";
        /// Time between two pruning passes.
        RETENTION_INTERVAL interval: Delay = "1h";
    }

    /// Analytics read hourly counts rebuilt in the background (the hours since the last
    /// rebuild are counted from the stored rows), so a month of a busy account answers fast.
    analytics: Analytics {
        /// Time between two rebuilds of the analytics rollup (at least a second).
        ANALYTICS_ROLLUP_INTERVAL rollup_interval: Delay = "5m";
        /// Hours before the current one that every rebuild counts again, for what still
        /// changes them: Meta's late retries (up to 36 hours), the CRM retry schedule,
        /// reconciled sends.
        ANALYTICS_ROLLUP_RECENT_HOURS rollup_recent_hours: u32 = "96";
    }
}
