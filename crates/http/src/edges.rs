//! What every response carries, whatever route or error produced it: the security headers,
//! the request id, and (when configured) CORS.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

/// The request id header, taken from the request when it carries a usable one.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers on every response: no content sniffing, no referrer leaving the server, no
/// framing by other sites.
const SECURITY_HEADERS: [(HeaderName, &str); 3] = [
    (HeaderName::from_static("x-content-type-options"), "nosniff"),
    (HeaderName::from_static("referrer-policy"), "no-referrer"),
    (HeaderName::from_static("x-frame-options"), "DENY"),
];

/// A client's request id is kept when it is 1 to 128 letters, digits, `-`, `_`, `.` or `:`;
/// anything else is replaced, so no log line carries what a client made up.
fn usable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Runs the request in a tracing span named by its request id, so every log line of the
/// request carries it, and puts the id and the security headers on the response. Inner
/// middleware answers its refusals as responses (not errors), so they get them too.
///
/// Every request passes here, Meta's webhooks included: the id is kept as a header value
/// (no string is made of it) and the body is passed through as it is (not boxed).
pub(crate) async fn edges<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .filter(|v| v.to_str().is_ok_and(usable))
        .cloned()
        .or_else(|| {
            let mut text = [0_u8; uuid::fmt::Simple::LENGTH];
            HeaderValue::from_bytes(
                uuid::Uuid::now_v7()
                    .simple()
                    .encode_lower(&mut text)
                    .as_bytes(),
            )
            .ok()
        });
    let span = tracing::info_span!(
        "request",
        request_id = %id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    );
    let mut response = next.call(req).instrument(span).await?;
    let headers = response.headers_mut();
    if let Some(id) = id {
        headers.insert(REQUEST_ID, id);
    }
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    Ok(response)
}

/// CORS for the configured origins; `None` (closed: no browser page of another origin may
/// read an answer) when there are none.
pub(crate) fn cors(origins: &[String]) -> Option<actix_cors::Cors> {
    if origins.is_empty() {
        return None;
    }
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PATCH", "DELETE"])
        .allowed_headers([
            "authorization",
            "content-type",
            "idempotency-key",
            "x-request-id",
        ])
        .expose_headers(["x-request-id", "retry-after", "idempotent-replayed"])
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    Some(cors)
}

#[cfg(test)]
mod tests {
    use super::usable;

    #[test]
    fn only_plain_request_ids_are_kept() {
        for id in ["abc", "0190-ab_cd.ef:1", &"a".repeat(128)] {
            assert!(usable(id), "{id}");
        }
        for id in ["", "a b", "a\nb", "<script>", &"a".repeat(129), "é"] {
            assert!(!usable(id), "{id:?}");
        }
    }
}
