//! The parts of the application that commands other than `serve` need too: the database,
//! the spool, the ingest and the API key service, built from the settings.

use std::sync::Arc;

use anyhow::Context;
use insta_router_app::{
    ApiKeyService, IngestPorts, IngestSettings, Ingestor, JournalReplayer, ReplayPorts,
    RetentionService, SystemClock,
};
use insta_router_crm::{HttpCrmSender, SenderSettings};
use insta_router_instagram::{GraphClient, MetaNotifications};
use insta_router_ports::WebhookSpool;
use insta_router_storage::{Database, DbOptions, DirSpool};

use crate::Settings;
use crate::settings::values::SqliteSync;

/// Brings the schema to this release's: migrates it when `AUTO_MIGRATE` is on (under the
/// migration lock, so instances may start together), else checks it, warning when
/// migrations are pending (`/ready` answers 503 until they are applied).
///
/// # Errors
///
/// When a migration fails, or the schema is newer than this release.
pub async fn prepare_schema(db: &Database, settings: &Settings) -> anyhow::Result<()> {
    if settings.database.auto_migrate {
        return db.migrate_up().await.context("cannot migrate the database");
    }
    let state = db
        .schema_state()
        .await
        .context("cannot read the database's migration state")?;
    if !state.unknown.is_empty() {
        return Err(insta_router_storage::StorageError::SchemaNewer(state.unknown).into());
    }
    if let Some(first) = state.pending.first() {
        tracing::warn!(
            pending = state.pending.len(),
            "the database schema is behind this release (pending from {first}); run \
             `insta-router migrate up`, or start with AUTO_MIGRATE=true; not ready until then"
        );
    }
    Ok(())
}

/// The retention service on `db`, with the settings' policy (for `serve` and `prune`).
pub fn retention(db: &Database, settings: &Settings) -> Arc<RetentionService> {
    Arc::new(RetentionService::new(
        Arc::new(db.retention()),
        Arc::new(SystemClock),
        settings.retention(),
    ))
}

/// The webhook spool named by `WEBHOOK_SPOOL_DIR`, if any; with `create` false, only when
/// its directory exists (the journal commands do not make one where they are run).
///
/// # Errors
///
/// When the directory cannot be created or written.
pub fn open_spool(
    settings: &Settings,
    create: bool,
) -> anyhow::Result<Option<Arc<dyn WebhookSpool>>> {
    let Some(dir) = &settings.ingest.spool_dir.0 else {
        return Ok(None);
    };
    if !create && !dir.is_dir() {
        return Ok(None);
    }
    let spool = DirSpool::open(dir).with_context(|| {
        format!(
            "cannot use {} as the webhook spool (WEBHOOK_SPOOL_DIR; empty turns the spool off)",
            dir.display()
        )
    })?;
    Ok(Some(Arc::new(spool)))
}

/// The ingest and the replayer on `db` and `spool`, with `writers` webhook writer tasks.
pub fn ingest(
    db: &Database,
    spool: Option<Arc<dyn WebhookSpool>>,
    settings: &Settings,
    writers: usize,
) -> (Arc<Ingestor>, Arc<JournalReplayer>) {
    let ingest = Arc::new(Ingestor::start(
        IngestPorts {
            store: Arc::new(db.inbound()),
            journal: Arc::new(db.journal()),
            spool: spool.clone(),
            parser: Arc::new(MetaNotifications),
            clock: Arc::new(SystemClock),
        },
        IngestSettings {
            writers,
            max_batch: settings.ingest.max_batch.get(),
            ..IngestSettings::default()
        },
    ));
    let replayer = Arc::new(JournalReplayer::new(
        ReplayPorts {
            jobs: Arc::new(db.jobs()),
            journal: Arc::new(db.journal()),
            spool,
            clock: Arc::new(SystemClock),
        },
        ingest.clone(),
        settings.replay(),
    ));
    (ingest, replayer)
}

/// The CRM client of deliveries (and of `doctor`'s checks): its timeout, address rules and
/// `User-Agent` from the settings.
///
/// # Errors
///
/// When the HTTP client cannot be built or the `User-Agent` is not valid.
pub fn crm_sender(settings: &Settings) -> anyhow::Result<HttpCrmSender> {
    Ok(HttpCrmSender::new(&SenderSettings {
        timeout: settings.crm.webhook_timeout.0,
        allow_private_networks: settings.crm.allow_private_networks,
        user_agent: Some(settings.crm.user_agent.clone()).filter(|a| !a.is_empty()),
        ..SenderSettings::default()
    })?)
}

/// The Graph API client of sends and auto-replies (and of `doctor`'s token checks).
///
/// # Errors
///
/// When the HTTP client cannot be built.
pub fn graph_client(settings: &Settings) -> anyhow::Result<GraphClient> {
    Ok(GraphClient::new(
        &settings.meta.instagram_api_base_url.0,
        settings.meta.graph_api_timeout.0,
    )?)
}

/// The API key service on `db`.
pub fn api_keys(db: &Database) -> ApiKeyService {
    ApiKeyService::new(
        Arc::new(db.api_keys()),
        Arc::new(db.accounts()),
        Arc::new(SystemClock),
    )
}

/// Opens the database named by the settings.
///
/// # Errors
///
/// When the URL is unsupported or the database cannot be reached.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Database> {
    let url = &settings.database.url;
    let options = DbOptions {
        max_connections: settings.database.max_connections.get(),
        sqlite_synchronous_full: settings.database.sqlite_synchronous == SqliteSync::Full,
        ..DbOptions::default()
    };
    Database::connect(url, &options)
        .await
        .with_context(|| format!("cannot open the database (DATABASE_URL={url})"))
}
