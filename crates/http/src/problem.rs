//! Errors as RFC 9457 `application/problem+json`.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use insta_router_app::AccountError;
use insta_router_domain::ValidationErrors;
use serde::Serialize;
use utoipa::ToSchema;

/// An error answered to an API client. Internal causes are logged, never returned.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No usable credentials.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The credentials are valid but do not allow this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The resource does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A unique value is taken.
    #[error("conflict on {field}")]
    Conflict {
        /// The field whose value is taken.
        field: &'static str,
        /// A sentence for humans.
        detail: String,
    },
    /// Fields failed validation.
    #[error("validation failed: {0}")]
    Invalid(ValidationErrors),
    /// The body or query could not be read as the operation expects.
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    /// An idempotency key was used before for a different request.
    #[error("idempotency key reused: {0}")]
    KeyReused(String),
    /// A request with this idempotency key is still being processed.
    #[error("idempotency key in use: {0}")]
    KeyInFlight(String),
    /// Meta refused a call made on the client's behalf.
    #[error("bad gateway: {0}")]
    BadGateway(String),
    /// The body is larger than allowed.
    #[error("payload too large")]
    PayloadTooLarge(usize),
    /// The body is not JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// A dependency (the database) is down; the client may retry.
    #[error("service unavailable")]
    Unavailable,
    /// Too many requests from this key or address; retry after this many seconds.
    #[error("too many requests")]
    TooManyRequests(u64),
}

/// The problem document (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    #[schema(example = "https://insta-router.dev/problems/validation")]
    kind: String,
    /// A short summary of the problem type.
    title: String,
    /// The HTTP status code.
    status: u16,
    /// What went wrong this time.
    detail: String,
    /// For validation problems: each field at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<ProblemField>,
}

/// One field at fault.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProblemField {
    /// The field, as the request spells it.
    field: String,
    /// What is wrong with it.
    message: String,
}

impl ApiError {
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Self::Unauthorized(_) => ("unauthorized", "Unauthorized"),
            Self::Forbidden(_) => ("forbidden", "Forbidden"),
            Self::NotFound(_) => ("not-found", "Not Found"),
            Self::Conflict { .. } => ("conflict", "Conflict"),
            Self::Invalid(_) => ("validation", "Validation Failed"),
            Self::Unprocessable(_) => ("unprocessable", "Unprocessable Request"),
            Self::KeyReused(_) => ("idempotency-key-reused", "Idempotency-Key is already used"),
            Self::KeyInFlight(_) => (
                "idempotency-key-in-use",
                "A request is outstanding for this Idempotency-Key",
            ),
            Self::BadGateway(_) => ("bad-gateway", "Bad Gateway"),
            Self::PayloadTooLarge(_) => ("payload-too-large", "Payload Too Large"),
            Self::UnsupportedMediaType => ("unsupported-media-type", "Unsupported Media Type"),
            Self::Unavailable => ("unavailable", "Service Unavailable"),
            Self::TooManyRequests(_) => ("rate-limited", "Too Many Requests"),
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Unauthorized(detail)
            | Self::Forbidden(detail)
            | Self::NotFound(detail)
            | Self::Unprocessable(detail)
            | Self::BadGateway(detail) => detail.clone(),
            Self::TooManyRequests(after) => {
                format!("too many requests; retry in {after} s")
            }
            Self::KeyReused(key) => format!(
                "idempotency key {key:?} was used for a different request of this account; use a new key for a new message"
            ),
            Self::KeyInFlight(key) => format!(
                "a request with idempotency key {key:?} is still being processed; retry in a second"
            ),
            Self::Conflict { detail, .. } => detail.clone(),
            Self::Invalid(errors) => format!("{} invalid: {errors}", fields_phrase(errors)),
            Self::PayloadTooLarge(limit) => format!("the request body exceeds {limit} bytes"),
            Self::UnsupportedMediaType => "send the body as application/json".to_owned(),
            Self::Unavailable => "the database is unavailable; retry later".to_owned(),
        }
    }
}

fn fields_phrase(errors: &ValidationErrors) -> String {
    let names: Vec<&str> = errors.errors().iter().map(|e| e.field.as_ref()).collect();
    names.join(", ")
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Invalid(_) | Self::Unprocessable(_) | Self::KeyReused(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::KeyInFlight(_) => StatusCode::CONFLICT,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (slug, title) = self.kind();
        let status = self.status_code();
        let errors = match self {
            Self::Invalid(errors) => errors
                .errors()
                .iter()
                .map(|e| ProblemField {
                    field: e.field.to_string(),
                    message: e.message.clone(),
                })
                .collect(),
            Self::Conflict { field, detail } => {
                vec![ProblemField {
                    field: (*field).to_owned(),
                    message: detail.clone(),
                }]
            }
            _ => Vec::new(),
        };
        let problem = Problem {
            kind: format!("https://insta-router.dev/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            errors,
        };
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        if let Self::Unauthorized(_) = self {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let Self::Unavailable = self {
            response.insert_header(("Retry-After", "5"));
        }
        if let Self::KeyInFlight(_) = self {
            response.insert_header(("Retry-After", "1"));
        }
        if let Self::TooManyRequests(after) = self {
            response.insert_header(("Retry-After", after.to_string()));
        }
        response.json(problem)
    }
}

impl From<JsonPayloadError> for ApiError {
    fn from(err: JsonPayloadError) -> Self {
        match err {
            JsonPayloadError::OverflowKnownLength { limit, .. }
            | JsonPayloadError::Overflow { limit } => Self::PayloadTooLarge(limit),
            JsonPayloadError::ContentType => Self::UnsupportedMediaType,
            JsonPayloadError::Deserialize(e) => {
                Self::Unprocessable(format!("invalid JSON body: {e}"))
            }
            other => Self::Unprocessable(format!("invalid JSON body: {other}")),
        }
    }
}

impl From<QueryPayloadError> for ApiError {
    fn from(err: QueryPayloadError) -> Self {
        Self::Unprocessable(format!("invalid query string: {err}"))
    }
}

impl From<PathError> for ApiError {
    fn from(err: PathError) -> Self {
        Self::Unprocessable(format!("invalid path: {err}"))
    }
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::NotFound(id) => Self::NotFound(format!("account {id} not found")),
            AccountError::Invalid(errors) => Self::Invalid(errors),
            AccountError::Conflict { field } => Self::Conflict {
                field,
                detail: format!("another account already has this {field}"),
            },
            AccountError::Sealing(error) => {
                tracing::error!(%error, "cannot seal a credential");
                Self::Unavailable
            }
            AccountError::Storage(source) => source.into(),
        }
    }
}

/// A store's failure: a cursor this API did not hand out is the client's mistake (422); any
/// other failure is logged with its cause and answered 503, without it.
impl From<insta_router_ports::RepoError> for ApiError {
    fn from(source: insta_router_ports::RepoError) -> Self {
        match source {
            insta_router_ports::RepoError::InvalidCursor => Self::Invalid(
                insta_router_domain::FieldError::new("cursor", "is not a cursor this API returned")
                    .into(),
            ),
            source => {
                tracing::error!(error = %insta_router_ports::describe(&source), "storage failed");
                Self::Unavailable
            }
        }
    }
}

impl From<insta_router_app::KeyError> for ApiError {
    fn from(err: insta_router_app::KeyError) -> Self {
        use insta_router_app::KeyError;
        match err {
            KeyError::NotFound(id) => Self::NotFound(format!("API key {id} not found")),
            KeyError::AccountNotFound(id) => Self::NotFound(format!("account {id} not found")),
            KeyError::Invalid(errors) => Self::Invalid(errors),
            KeyError::Random => {
                tracing::error!("the system's random source failed");
                Self::Unavailable
            }
            KeyError::Storage(source) => source.into(),
        }
    }
}
