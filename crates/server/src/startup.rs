//! Building the application from [`Settings`] and running it until a signal stops it.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use insta_router_app::{
    AccountService, App, IngestSettings, Ingestor, PlaintextCipher, SystemClock,
};
use insta_router_http::HttpSettings;
use insta_router_storage::{
    Backend, Database, DbOptions, normalize_database_url, redact_database_url,
};

use crate::Settings;

/// A built application: the database is open and migrated, the port is bound.
pub struct Application {
    server: actix_web::dev::Server,
    port: u16,
    db: Database,
    app: Arc<App>,
}

/// Opens the database named by the settings.
///
/// # Errors
///
/// When the URL is unsupported or the database cannot be reached.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Database> {
    let url = normalize_database_url(&settings.database_url);
    let options = DbOptions {
        max_connections: settings.db_max_connections,
        sqlite_synchronous_full: settings.sqlite_synchronous.eq_ignore_ascii_case("full"),
        ..DbOptions::default()
    };
    Database::connect(&url, &options).await.with_context(|| {
        format!(
            "cannot open the database (DATABASE_URL={})",
            redact_database_url(&url)
        )
    })
}

impl Application {
    /// Opens and migrates the database, wires the use cases and binds the listener.
    ///
    /// # Errors
    ///
    /// When the configuration is unusable, the database cannot be opened or migrated, or the
    /// address cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.check_for_serving()?;
        for missing in settings.missing_for_meta() {
            tracing::warn!("{missing}");
        }
        let db = open_database(&settings).await?;
        if settings.auto_migrate {
            db.migrate_up()
                .await
                .context("cannot migrate the database")?;
        }
        let writers = match (settings.ingest_writers, db.backend()) {
            (0, Backend::Sqlite) => 1,
            (0, Backend::Postgres | Backend::MySql) => 4,
            (n, _) => n,
        };
        let ingest = Ingestor::start(
            Arc::new(db.inbound()),
            IngestSettings {
                writers,
                max_batch: settings.ingest_max_batch,
                ..IngestSettings::default()
            },
        );
        let app = Arc::new(App::new(
            AccountService::new(
                Arc::new(db.accounts()),
                Arc::new(PlaintextCipher),
                Arc::new(SystemClock),
            ),
            ingest,
            Arc::new(db.clone()),
        ));
        let http = HttpSettings {
            environment: settings.environment.clone(),
            max_json_bytes: settings.max_json_bytes,
            max_webhook_bytes: settings.max_webhook_bytes,
            verify_token: settings.facebook_verify_token.clone(),
            app_secrets: settings
                .app_secrets()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        };
        let listener =
            TcpListener::bind((settings.host.as_str(), settings.port)).with_context(|| {
                format!(
                    "cannot listen on {}:{} (HOST, PORT)",
                    settings.host, settings.port
                )
            })?;
        let port = listener.local_addr()?.port();
        let shared = app.clone();
        let server = actix_web::HttpServer::new(move || {
            insta_router_http::app(shared.clone(), http.clone())
        })
        .listen(listener)?
        .shutdown_timeout(settings.shutdown_timeout)
        .run();
        tracing::info!(
            environment = %settings.environment,
            backend = ?db.backend(),
            "insta-router {} listening on http://{}:{port}",
            env!("CARGO_PKG_VERSION"),
            settings.host,
        );
        Ok(Self {
            server,
            port,
            db,
            app,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT or SIGTERM, then finishes in-flight requests and closes the pool.
    ///
    /// # Errors
    ///
    /// When the server fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await?;
        tracing::info!("stopped accepting requests; finishing queued webhook writes");
        self.app.ingest.shutdown().await;
        tracing::info!("closing the database");
        let _ = tokio::time::timeout(Duration::from_secs(5), self.db.close()).await;
        tracing::info!("shut down");
        Ok(())
    }
}
