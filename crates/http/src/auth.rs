//! Authentication of the REST API: the one place that decides who may call it.
//!
//! For now any non-empty bearer token is accepted, as the original service did; real API keys
//! replace the check in [`require_api_key`] and nowhere else.

use actix_web::HttpRequest;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;

use crate::ApiError;

/// Rejects requests without `Authorization: Bearer <token>` with 401 before any handler or
/// body parsing runs; the refusal is a response, so outer middleware decorates it.
pub(crate) async fn require_api_key(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Err(refusal) = check(req.request()) {
        return Ok(req.error_response(refusal).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// The check itself, for routes outside `/api/v1` (the deprecated `POST /webhooks/send`).
pub(crate) fn check(req: &HttpRequest) -> Result<(), ApiError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = match header.and_then(|h| {
        h.strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
    }) {
        Some(token) => token.trim(),
        None => {
            return Err(ApiError::Unauthorized(
                "send your API key as 'Authorization: Bearer <api_key>'".to_owned(),
            ));
        }
    };
    if token.is_empty() {
        return Err(ApiError::Unauthorized("the API key is empty".to_owned()));
    }
    Ok(())
}
