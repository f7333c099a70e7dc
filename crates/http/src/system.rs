//! `GET /`, `GET /health` (the process is alive) and `GET /ready` (it should get traffic).

use std::time::Duration;

use actix_web::web::Data;
use actix_web::{HttpResponse, ResponseError, get};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::State;
use crate::accounts::rfc3339;

pub(crate) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(root)
        .service(health)
        .service(ready)
        .service(metrics);
}

/// What is running.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServiceInfo {
    #[schema(example = "insta-router")]
    name: &'static str,
    #[schema(example = "0.1.0")]
    version: &'static str,
    /// Same as `name`; the original service's field.
    app: &'static str,
    #[schema(example = "running")]
    status: &'static str,
    #[schema(example = "development")]
    environment: String,
    /// Where Meta's webhook should point.
    #[schema(example = "/webhooks/instagram")]
    webhook_url: &'static str,
    /// The interactive API documentation.
    #[schema(example = "/docs/")]
    docs_url: &'static str,
}

/// Health, including the database.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `healthy` or `unhealthy`.
    #[schema(example = "healthy")]
    status: &'static str,
    /// `ok` or `unreachable`.
    #[schema(example = "ok")]
    database: &'static str,
    /// Now, RFC 3339.
    timestamp: String,
    environment: String,
}

/// Whether this instance should get traffic.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Ready {
    /// `ready` or `not_ready`.
    #[schema(example = "ready")]
    status: &'static str,
    /// `ok` or `unreachable` (no answer within 3 s).
    #[schema(example = "ok")]
    database: &'static str,
    /// `current`, `pending` (migrations to apply: `insta-router migrate up`) or `unknown`.
    #[schema(example = "current")]
    schema: &'static str,
    /// `running`, or `stopped` when a worker group ended or a worker panicked.
    #[schema(example = "running")]
    workers: &'static str,
    /// The worker groups that stopped (`crm-delivery`, `auto-reply`, `send`, `replay`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stopped_workers: Vec<&'static str>,
    /// The instance received SIGTERM or SIGINT and is draining.
    shutting_down: bool,
}

/// Name and version of the running service.
#[utoipa::path(tag = "system", responses((status = 200, description = "Running", body = ServiceInfo)))]
#[get("/")]
async fn root(state: Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(ServiceInfo {
        name: "insta-router",
        version: env!("CARGO_PKG_VERSION"),
        app: "insta-router",
        status: "running",
        environment: state.settings.environment.clone(),
        webhook_url: "/webhooks/instagram",
        docs_url: "/docs/",
    })
}

/// Health of the service and its database; 503 when the database does not answer.
#[utoipa::path(
    tag = "system",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "The database is unreachable", body = Health),
    )
)]
#[get("/health")]
async fn health(state: Data<State>) -> HttpResponse {
    let ping = actix_web::rt::time::timeout(Duration::from_secs(3), state.app.check_health())
        .await
        .ok();
    let healthy = matches!(ping, Some(Ok(())));
    if let Some(Err(error)) = &ping {
        tracing::warn!(error = ?error, "health check: database unreachable");
    }
    let body = Health {
        status: if healthy { "healthy" } else { "unhealthy" },
        database: if healthy { "ok" } else { "unreachable" },
        timestamp: rfc3339(Utc::now()),
        environment: state.settings.environment.clone(),
    };
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Readiness for traffic: 200 when the database answers, its schema is current, the workers
/// run and the instance is not shutting down; else 503 with what is wrong. On SIGTERM this
/// turns 503 first, while requests are still served (`SHUTDOWN_DRAIN_DELAY`), so that a load
/// balancer stops sending before the listener closes. `/health` only says the process is up.
#[utoipa::path(
    tag = "system",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready, with the reasons", body = Ready),
    )
)]
#[get("/ready")]
async fn ready(state: Data<State>) -> HttpResponse {
    let report = state.app.check_ready(Duration::from_secs(3)).await;
    let body = Ready {
        status: if report.is_ready() {
            "ready"
        } else {
            "not_ready"
        },
        database: if report.database { "ok" } else { "unreachable" },
        schema: match report.schema_current {
            Some(true) => "current",
            Some(false) => "pending",
            None => "unknown",
        },
        workers: if report.failed_workers.is_empty() {
            "running"
        } else {
            "stopped"
        },
        stopped_workers: report.failed_workers.clone(),
        shutting_down: report.draining,
    };
    if report.is_ready() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Counters, histograms and gauges in the Prometheus text format: deliveries by outcome,
/// attempt durations, latency to delivery, dead letters, deliveries by state.
#[utoipa::path(
    tag = "system",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "METRICS_TOKEN is set and the request lacks it", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Metrics are off"),
    )
)]
#[get("/metrics")]
async fn metrics(state: Data<State>, request: actix_web::HttpRequest) -> HttpResponse {
    if let Some(token) = &state.settings.metrics_token {
        let given = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| crate::auth::same_secret(g, token)) {
            return crate::ApiError::Unauthorized(
                "GET /metrics wants Authorization: Bearer <METRICS_TOKEN>".to_owned(),
            )
            .error_response();
        }
    }
    match &state.settings.metrics {
        Some(render) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body((render.0)()),
        None => crate::ApiError::NotFound("metrics are off".to_owned()).error_response(),
    }
}
