//! Building the application from [`Settings`] and running it until a signal stops it.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use insta_router_app::{AccountService, App, PlaintextCipher, SystemClock};
use insta_router_http::HttpSettings;
use insta_router_storage::{Database, DbOptions, normalize_database_url, redact_database_url};

use crate::Settings;

/// A built application: the database is open and migrated, the port is bound.
pub struct Application {
    server: actix_web::dev::Server,
    port: u16,
    db: Database,
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
        let app = Arc::new(App::new(
            AccountService::new(
                Arc::new(db.accounts()),
                Arc::new(PlaintextCipher),
                Arc::new(SystemClock),
            ),
            Arc::new(db.clone()),
        ));
        let http = HttpSettings {
            environment: settings.environment.clone(),
            max_json_bytes: settings.max_json_bytes,
        };
        let listener =
            TcpListener::bind((settings.host.as_str(), settings.port)).with_context(|| {
                format!(
                    "cannot listen on {}:{} (HOST, PORT)",
                    settings.host, settings.port
                )
            })?;
        let port = listener.local_addr()?.port();
        let server =
            actix_web::HttpServer::new(move || insta_router_http::app(app.clone(), http.clone()))
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
        Ok(Self { server, port, db })
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
        tracing::info!("stopped accepting requests; closing the database");
        let _ = tokio::time::timeout(Duration::from_secs(5), self.db.close()).await;
        tracing::info!("shut down");
        Ok(())
    }
}
