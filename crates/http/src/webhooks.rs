//! `GET|POST /webhooks/instagram`: Meta's subscription check and event notifications.
//!
//! The signature is checked over the raw bytes before anything parses them; the request is
//! answered 200 only after its events are committed, or its body is kept where a replay is
//! guaranteed (the journal, else the local spool), and 503 when not even that is possible, so
//! Meta retries.

use actix_web::http::header::ContentType;
use actix_web::web::{Data, Payload, Query};
use actix_web::{HttpRequest, HttpResponse, get, post};
use chrono::Utc;
use insta_router_app::{IngestError, ReceivedWebhook, Refusal, describe, refused_webhook};
use insta_router_ports::SignatureError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{ApiError, State};

pub(crate) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(verify).service(receive);
}

/// The subscription check Meta sends when the webhook is configured.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct VerifyQuery {
    /// Must be `subscribe`.
    #[serde(rename = "hub.mode")]
    #[param(rename = "hub.mode", example = "subscribe")]
    mode: Option<String>,
    /// Must equal `FACEBOOK_VERIFY_TOKEN`.
    #[serde(rename = "hub.verify_token")]
    #[param(rename = "hub.verify_token")]
    verify_token: Option<String>,
    /// Echoed back on success.
    #[serde(rename = "hub.challenge")]
    #[param(rename = "hub.challenge", example = "1158201444")]
    challenge: Option<String>,
}

/// The original service's answer to a notification.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Received {
    #[schema(example = "ok")]
    status: &'static str,
    /// How many events of the request were new (duplicates of earlier ones are not counted).
    #[schema(example = 1)]
    messages_processed: u32,
}

/// Answers Meta's subscription check: echoes `hub.challenge` as plain text when the mode is
/// `subscribe` and the token matches the configured one. An empty configured token never
/// matches.
#[utoipa::path(
    tag = "webhooks",
    params(VerifyQuery),
    responses(
        (status = 200, description = "The challenge, verbatim", body = String, content_type = "text/plain"),
        (status = 403, description = "Wrong mode or token, or no token configured", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/webhooks/instagram")]
async fn verify(state: Data<State>, query: Query<VerifyQuery>) -> Result<HttpResponse, ApiError> {
    let configured = state.settings.verify_token.as_str();
    let token_ok = !configured.is_empty()
        && query
            .verify_token
            .as_deref()
            .is_some_and(|t| crate::auth::same_secret(t, configured));
    if query.mode.as_deref() != Some("subscribe") || !token_ok {
        return Err(ApiError::Forbidden(
            "verification token mismatch".to_owned(),
        ));
    }
    let challenge = query
        .challenge
        .clone()
        .ok_or_else(|| ApiError::Unprocessable("hub.challenge is required".to_owned()))?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body(challenge))
}

/// Receives a notification: verifies `X-Hub-Signature-256` over the raw body, stores every
/// event (deduplicated), queues the CRM deliveries and auto-replies, commits, then answers.
#[utoipa::path(
    tag = "webhooks",
    request_body(content = String, description = "Meta's notification, signed", content_type = "application/json"),
    params(("X-Hub-Signature-256" = String, Header, description = "`sha256=` + hex HMAC-SHA256 of the body under the app secret")),
    responses(
        (status = 200, description = "Stored (an unusable body: journaled; events the database refused: kept for replay)", body = Received),
        (status = 401, description = "Missing, malformed or wrong signature; nothing stored", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than MAX_WEBHOOK_BYTES", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests with bad signatures from this address", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database refused and the body could not be kept for replay; Meta retries", body = crate::problem::Problem, content_type = "application/problem+json"),
    )
)]
#[post("/webhooks/instagram")]
async fn receive(
    state: Data<State>,
    request: HttpRequest,
    payload: Payload,
) -> Result<HttpResponse, ApiError> {
    let limit = state.settings.max_webhook_bytes;
    let body = payload
        .to_bytes_limited(limit)
        .await
        .map_err(|_| {
            refused_webhook(Refusal::TooLarge);
            ApiError::PayloadTooLarge(limit)
        })?
        .map_err(|e| ApiError::Unprocessable(format!("cannot read the body: {e}")))?;
    let header = request
        .headers()
        .get("x-hub-signature-256")
        .map(|v| v.to_str().unwrap_or_default());
    if let Err(e) = state.verifier.verify(&body, header) {
        refused_webhook(match e {
            SignatureError::Missing => Refusal::Unsigned,
            SignatureError::Malformed | SignatureError::Mismatch => Refusal::BadSignature,
        });
        // A flood of forged requests from one address is answered 429; Meta's signed
        // requests never count.
        state
            .settings
            .limiters
            .signature_failure(request.peer_addr().map(|a| a.ip()))?;
        tracing::warn!(reason = %e, "webhook refused");
        return Err(ApiError::Unauthorized(
            match e {
                SignatureError::Missing => "missing X-Hub-Signature-256 header",
                SignatureError::Malformed => "malformed X-Hub-Signature-256 header",
                SignatureError::Mismatch => "invalid signature",
            }
            .to_owned(),
        ));
    }
    let report = state
        .app
        .ingest
        .ingest(ReceivedWebhook::from_meta(Utc::now(), body.to_vec()))
        .await
        .map_err(|e| match e {
            IngestError::Unavailable(source) => {
                tracing::error!(error = %describe(&source), "cannot store a webhook nor keep it for replay; answering 503 so Meta retries");
                ApiError::Unavailable
            }
            IngestError::ShuttingDown => ApiError::Unavailable,
        })?;
    tracing::debug!(webhook_id = %report.webhook_id, processed = report.processed, "webhook stored");
    Ok(HttpResponse::Ok().json(Received {
        status: "ok",
        messages_processed: report.processed,
    }))
}
