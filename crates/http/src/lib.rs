//! HTTP adapter of insta-router (actix-web): routes, authentication, problem+json errors and
//! the OpenAPI document with its Swagger UI and ReDoc pages.
//!
//! Handlers are thin: they parse the wire format into domain values, call a use case of
//! [`insta_router_app::App`], and map the result back. Every route is registered through
//! utoipa-actix-web, so the OpenAPI document cannot miss one.

mod accounts;
mod analytics;
mod auth;
mod comments;
mod deliveries;
mod docs;
mod edges;
mod inbox;
mod keys;
mod limits;
mod messages;
mod pagination;
mod problem;
mod profile;
mod rule_schema;
mod rules;
mod subscriptions;
mod system;
mod webhooks;

use std::sync::Arc;

use insta_router_ports::WebhookSignatures;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{ResponseError, web};
use insta_router_app::App;
use utoipa_actix_web::AppExt;

pub use limits::{Limiters, RateLimits};
pub use problem::ApiError;

/// What the HTTP layer needs besides the use cases.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `development`, `production`, ...: shown by `GET /` and `GET /health`.
    pub environment: String,
    /// Largest JSON request body accepted by the REST API, in bytes.
    pub max_json_bytes: usize,
    /// Largest Meta webhook body accepted, in bytes.
    pub max_webhook_bytes: usize,
    /// The token Meta must present to subscribe; empty never matches.
    pub verify_token: String,
    /// Checks the signatures of Meta's webhooks (with the app secrets).
    pub signatures: Arc<dyn WebhookSignatures>,
    /// Renders the Prometheus text served at `/metrics`; none serves 404.
    pub metrics: Option<MetricsRenderer>,
    /// The bearer token `/metrics` wants; none: open.
    pub metrics_token: Option<String>,
    /// The Instagram account id configured by environment (`INSTAGRAM_BUSINESS_ACCOUNT_ID`):
    /// the deprecated `POST /webhooks/send` sends from it when no `account_id` is given.
    pub configured_account: Option<String>,
    /// Origins whose browser pages may call the API (CORS); none: closed.
    pub cors_allowed_origins: Vec<String>,
    /// The rate limiters (per API key, and for failures per client address), made once and
    /// shared by every HTTP worker.
    pub limiters: Arc<Limiters>,
}

/// Renders the process's metrics in the Prometheus text format.
#[derive(Clone)]
pub struct MetricsRenderer(pub Arc<dyn Fn() -> String + Send + Sync>);

impl std::fmt::Debug for MetricsRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsRenderer")
    }
}

/// Shared state of every handler.
pub(crate) struct State {
    pub(crate) app: Arc<App>,
    pub(crate) verifier: Arc<dyn WebhookSignatures>,
    pub(crate) settings: HttpSettings,
}

/// The whole application: REST API, system routes and API documentation.
pub fn app(
    app: Arc<App>,
    settings: HttpSettings,
) -> actix_web::App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let json = web::JsonConfig::default()
        .limit(settings.max_json_bytes)
        .error_handler(|err, _req| ApiError::from(err).into());
    let query = web::QueryConfig::default().error_handler(|err, _req| ApiError::from(err).into());
    let path = web::PathConfig::default().error_handler(|err, _req| ApiError::from(err).into());
    let verifier = settings.signatures.clone();
    let cors = edges::cors(&settings.cors_allowed_origins);
    let state = web::Data::new(State {
        app,
        verifier,
        settings,
    });
    let (app, api) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(docs::base())
        .app_data(state)
        .app_data(json)
        .app_data(query)
        .app_data(path)
        .configure(system::routes)
        .configure(webhooks::routes)
        .configure(messages::legacy_routes)
        .service(
            utoipa_actix_web::scope("/api/v1")
                .wrap(actix_web::middleware::from_fn(auth::require_api_key))
                .configure(accounts::routes)
                .configure(messages::routes)
                .configure(comments::routes)
                .configure(subscriptions::routes)
                .configure(profile::routes)
                .configure(analytics::routes)
                .configure(inbox::routes)
                .configure(deliveries::routes)
                .configure(rules::routes)
                .configure(keys::routes),
        )
        .split_for_parts();
    let mut api = api;
    messages::mark_legacy_deprecated(&mut api);
    docs::complete_responses(&mut api);
    app.configure(|cfg| docs::routes(cfg, api))
        .default_service(web::to(|| async {
            ApiError::NotFound("no such route".to_owned()).error_response()
        }))
        .wrap(actix_web::middleware::Condition::new(
            cors.is_some(),
            cors.unwrap_or_default(),
        ))
        .wrap(actix_web::middleware::from_fn(edges::edges))
}

/// The OpenAPI document of every route, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(docs::base())
        .configure(system::routes)
        .configure(webhooks::routes)
        .configure(messages::legacy_routes)
        .service(
            utoipa_actix_web::scope("/api/v1")
                .configure(accounts::routes)
                .configure(messages::routes)
                .configure(comments::routes)
                .configure(subscriptions::routes)
                .configure(profile::routes)
                .configure(analytics::routes)
                .configure(inbox::routes)
                .configure(deliveries::routes)
                .configure(rules::routes)
                .configure(keys::routes),
        )
        .split_for_parts();
    let mut api = api;
    messages::mark_legacy_deprecated(&mut api);
    docs::complete_responses(&mut api);
    api
}
