//! Building the application from [`Settings`] and running it until a signal stops it.

use std::net::TcpListener;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use insta_router_app::{
    AccountService, AnalyticsRollup, AnalyticsService, App, AutoReplyPorts, AutoReplyService,
    DeliveryService, InboxService, JournalReplayer, ProfileService, Readiness, RuleService,
    SendPorts, SendService, SubscriptionService, SystemClock, TokenRefresher, publish_job_counts,
};
use insta_router_domain::Secret;
use insta_router_http::{HttpSettings, Limiters, MetricsRenderer, RateLimits};
use insta_router_instagram::WebhookVerifier;
use insta_router_ports::{CredentialCipher, Messenger};
use insta_router_storage::Database;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Settings;
use crate::shutdown::{Signals, drain_on_signal};
use crate::wiring::{api_keys, ingest, open_database, open_spool};

/// A built application: the database is open and migrated, the port is bound.
pub struct Application {
    server: actix_web::dev::Server,
    port: u16,
    db: Database,
    app: Arc<App>,
    stop: watch::Sender<bool>,
    workers: JoinSet<()>,
    housekeeping: tokio::task::JoinHandle<()>,
    drain_delay: Duration,
    signals: Signals,
}

/// Runs the worker group `name` (its tasks in `group`) as one task of `workers`, watched by
/// `readiness`: a worker that panics, or the group ending before shutdown, makes the
/// instance not ready.
fn supervise(
    workers: &mut JoinSet<()>,
    readiness: &Arc<Readiness>,
    name: &'static str,
    mut group: JoinSet<()>,
) {
    let watch = readiness.watch(name);
    workers.spawn(async move {
        while let Some(ended) = group.join_next().await {
            if ended.is_err_and(|e| e.is_panic()) {
                watch.panicked();
            }
        }
        drop(watch);
    });
}

/// The process's Prometheus recorder, installed once; `None` when another recorder was
/// installed first (an embedding program's).
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                3600.0, 86_400.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("insta_router_ingest_group_requests".to_owned()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("insta_router_ingest_seconds".to_owned()),
                    &[
                        0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                        2.5, 5.0, 10.0,
                    ],
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed; /metrics is off");
                    None
                }
            }
        })
        .clone()
}

/// Every 5 s: publishes the delivery queue's depth and the webhooks awaiting replay, and lets
/// the recorder compact its histograms.
async fn housekeeping(
    db: Database,
    deliveries: Arc<DeliveryService>,
    replayer: Arc<JournalReplayer>,
    metrics: Option<PrometheusHandle>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(error) = deliveries.publish_queue_depth().await {
            tracing::debug!(%error, "cannot count deliveries");
        }
        if let Err(error) = replayer.publish_backlog().await {
            tracing::debug!(%error, "cannot count the webhooks awaiting replay");
        }
        if let Err(error) = publish_job_counts(&db.jobs()).await {
            tracing::debug!(%error, "cannot count the jobs");
        }
        let (open, idle) = db.pool_connections();
        metrics::gauge!("insta_router_db_connections", "state" => "idle")
            .set(f64::from(u32::try_from(idle).unwrap_or(u32::MAX)));
        metrics::gauge!("insta_router_db_connections", "state" => "in_use").set(f64::from(
            open.saturating_sub(u32::try_from(idle).unwrap_or(u32::MAX)),
        ));
        if let Some(handle) = &metrics {
            handle.run_upkeep();
        }
    }
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
        let cipher: Arc<dyn CredentialCipher> = crate::encryption::keyring(&settings)?;
        let db = open_database(&settings).await?;
        crate::wiring::prepare_schema(&db, &settings).await?;
        let writers = match settings.ingest.writers {
            0 => db.backend().ingest_writers(),
            n => n,
        };
        let spool = open_spool(&settings, true)?;
        let (ingest, replayer) = ingest(&db, spool, &settings, writers);
        let sender = crate::wiring::crm_sender(&settings)?;
        let deliveries = Arc::new(DeliveryService::new(
            Arc::new(db.jobs()),
            Arc::new(db.deliveries()),
            Arc::new(db.accounts()),
            cipher.clone(),
            Arc::new(sender),
            Arc::new(SystemClock),
            settings.delivery(),
        ));
        let (stop, stopped) = watch::channel(false);
        let readiness = Arc::new(Readiness::default());
        let mut workers = JoinSet::new();
        if settings.delivery.workers > 0 {
            let group = deliveries.start(ingest.commits(), stopped.clone());
            supervise(&mut workers, &readiness, "crm-delivery", group);
        } else {
            tracing::info!("DELIVERY_WORKERS=0: this process does not deliver to CRMs");
        }
        let rules = Arc::new(RuleService::new(
            Arc::new(db.rules()),
            Arc::new(db.accounts()),
            Arc::new(SystemClock),
            settings.auto_reply.fallback_name.clone(),
        ));
        let graph_client = Arc::new(crate::wiring::graph_client(&settings)?);
        let graph: Arc<dyn Messenger> = graph_client.clone();
        let auto_replies = Arc::new(AutoReplyService::new(
            AutoReplyPorts {
                jobs: Arc::new(db.jobs()),
                messages: Arc::new(db.messages()),
                accounts: Arc::new(db.accounts()),
                replies: Arc::new(db.auto_replies()),
                messenger: graph.clone(),
                cipher: cipher.clone(),
                clock: Arc::new(SystemClock),
                comments: Arc::new(db.comments()),
            },
            rules.clone(),
            settings.auto_reply(),
        ));
        supervise(
            &mut workers,
            &readiness,
            "replay",
            replayer.start(stopped.clone()),
        );
        if settings.auto_reply.workers > 0 {
            let group = auto_replies.start(ingest.commits(), stopped.clone());
            supervise(&mut workers, &readiness, "auto-reply", group);
        }
        supervise(
            &mut workers,
            &readiness,
            "retention",
            crate::wiring::retention(&db, &settings).start(stopped.clone()),
        );
        supervise(
            &mut workers,
            &readiness,
            "analytics-rollup",
            Arc::new(AnalyticsRollup::new(
                Arc::new(db.analytics()),
                Arc::new(SystemClock),
                settings.rollup(),
            ))
            .start(stopped.clone()),
        );
        let crm_wake = {
            let deliveries = deliveries.clone();
            Arc::new(move || deliveries.wake()) as Arc<dyn Fn() + Send + Sync>
        };
        let sending = Arc::new(SendService::new(
            SendPorts {
                outbound: Arc::new(db.outbound()),
                accounts: Arc::new(db.accounts()),
                conversations: Arc::new(db.conversations()),
                jobs: Arc::new(db.jobs()),
                messenger: graph.clone(),
                cipher: cipher.clone(),
                clock: Arc::new(SystemClock),
                comments: Arc::new(db.comments()),
            },
            settings.sending(),
            crm_wake,
        ));
        auto_replies.answer_comments_with(sending.clone());
        if settings.sending.workers > 0 {
            let group = sending.start(stopped.clone());
            supervise(&mut workers, &readiness, "send", group);
        } else {
            tracing::info!("SEND_WORKERS=0: this process does not send through the Graph API");
        }
        let interval = settings.meta.token_refresh_interval.0;
        if !interval.is_zero() {
            let refresher = Arc::new(TokenRefresher::new(
                Arc::new(db.accounts()),
                cipher.clone(),
                graph.clone(),
                Arc::new(db.jobs()),
                Arc::new(SystemClock),
                interval,
            ));
            supervise(
                &mut workers,
                &readiness,
                "token-refresh",
                refresher.start(stopped.clone()),
            );
        }
        let inbox = InboxService::new(
            Arc::new(db.conversations()),
            Arc::new(db.conversations()),
            Arc::new(db.messages()),
            Arc::new(db.accounts()),
            graph.clone(),
            cipher.clone(),
            Arc::new(SystemClock),
        );
        let metrics = metrics_handle();
        let housekeeping = tokio::spawn(housekeeping(
            db.clone(),
            deliveries.clone(),
            replayer.clone(),
            metrics.clone(),
            stopped,
        ));
        let app = Arc::new(App {
            accounts: AccountService::new(
                Arc::new(db.accounts()),
                cipher.clone(),
                Arc::new(SystemClock),
            )
            .with_secret_grace(settings.crm.secret_rotation_grace.0),
            subscriptions: SubscriptionService::new(
                Arc::new(db.accounts()),
                cipher.clone(),
                graph,
                settings.meta.subscribe_on_create,
            ),
            profiles: ProfileService::new(Arc::new(db.accounts()), cipher.clone(), graph_client),
            analytics: AnalyticsService::new(Arc::new(db.analytics()), Arc::new(db.accounts())),
            keys: api_keys(&db),
            ingest,
            replayer,
            deliveries,
            rules,
            sending,
            inbox,
            health: Arc::new(db.clone()),
            readiness,
        });
        crate::keys::announce_keys(&app, &settings).await;
        crate::encryption::seal_plain_credentials(&app).await;
        if let Some((id, token)) = settings.configured_account() {
            let account = app
                .accounts
                .ensure_configured(id, Secret::new(token.to_owned()))
                .await
                .context("INSTAGRAM_BUSINESS_ACCOUNT_ID / INSTAGRAM_PAGE_ACCESS_TOKEN")?;
            tracing::info!(account_id = %account.id, instagram_account_id = id, "the account configured by environment is connected");
        }
        if let Some(path) = &settings.auto_reply.rules_file.0 {
            let created = crate::seed::seed_rules(path, &app).await?;
            tracing::info!(created, file = %path.display(), "rules file read");
        }
        let http = HttpSettings {
            environment: settings.service.environment.clone(),
            max_json_bytes: settings.http.max_json_bytes,
            max_webhook_bytes: settings.http.max_webhook_bytes,
            verify_token: settings.meta.facebook_verify_token.expose().to_owned(),
            signatures: Arc::new(WebhookVerifier::new(&settings.app_secrets())),
            metrics: metrics.map(|handle| MetricsRenderer(Arc::new(move || handle.render()))),
            metrics_token: Some(settings.http.metrics_token.expose().to_owned())
                .filter(|t| !t.is_empty()),
            configured_account: settings.configured_account().map(|(id, _)| id.to_owned()),
            cors_allowed_origins: settings.http.cors_allowed_origins.0.clone(),
            limiters: Arc::new(Limiters::new(RateLimits {
                per_key_per_second: settings.http.api_rate_limit,
                failures_per_minute: settings.http.auth_failure_limit,
            })),
        };
        let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port))
            .with_context(|| {
                format!(
                    "cannot listen on {}:{} (HOST, PORT)",
                    settings.http.host, settings.http.port
                )
            })?;
        let port = listener.local_addr()?.port();
        let signals = Signals::new().context("cannot listen for SIGTERM and SIGINT")?;
        let shared = app.clone();
        let server = actix_web::HttpServer::new(move || {
            insta_router_http::app(shared.clone(), http.clone())
                .configure(insta_router_console::configure(shared.clone()))
        })
        .workers(match settings.http.workers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            n => n,
        })
        .listen(listener)?
        .shutdown_timeout(settings.http.shutdown_timeout.0.as_secs())
        // Signals are ours: `/ready` turns 503 before the listener closes.
        .disable_signals()
        .run();
        tracing::info!(
            environment = %settings.service.environment,
            backend = ?db.backend(),
            "insta-router {} listening on http://{}:{port}",
            env!("CARGO_PKG_VERSION"),
            settings.http.host,
        );
        Ok(Self {
            server,
            port,
            db,
            app,
            stop,
            workers,
            housekeeping,
            drain_delay: settings.http.drain_delay.0,
            signals,
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
        let Self {
            server,
            db,
            app,
            stop,
            mut workers,
            housekeeping,
            drain_delay,
            signals,
            ..
        } = self;
        let handle = server.handle();
        let signals = tokio::spawn(drain_on_signal(signals, app.clone(), handle, drain_delay));
        server.await?;
        signals.abort();
        tracing::info!("stopped accepting requests; finishing queued webhook writes");
        app.ingest.shutdown().await;
        tracing::info!("finishing the CRM deliveries in flight");
        let _ = stop.send(true);
        let finish = async { while workers.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(15), finish)
            .await
            .is_err()
        {
            // Their leases run out and another start delivers them: at least once.
            tracing::warn!("CRM deliveries still in flight at shutdown are left to their leases");
            workers.abort_all();
        }
        housekeeping.abort();
        tracing::info!("closing the database");
        let _ = tokio::time::timeout(Duration::from_secs(5), db.close()).await;
        tracing::info!("shut down");
        Ok(())
    }
}
