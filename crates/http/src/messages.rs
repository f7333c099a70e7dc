//! Sending for CRMs: `POST /api/v1/messages/send`, `GET /api/v1/messages/{id}/status`, and
//! the original service's `POST /webhooks/send`, kept as a deprecated alias.

use actix_web::web::{Data, Json, Path};
use actix_web::{HttpRequest, HttpResponse, get, post};
use insta_router_app::{SendFailure, SendReceipt};
use insta_router_domain::rules::QuickReply;
use insta_router_domain::{
    FieldError, MessageId, OutboundMessage, OutboundStatus, RawSendRequest, SendRequest,
    ValidationErrors,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::accounts::rfc3339;
use crate::auth::Caller;
use crate::problem::Problem;
use crate::{ApiError, State};

pub(crate) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(send_message).service(message_status);
}

pub(crate) fn legacy_routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(legacy_send);
}

/// Marks the legacy route deprecated in the OpenAPI document (a `#[deprecated]` handler
/// would warn inside actix's generated code).
pub(crate) fn mark_legacy_deprecated(api: &mut utoipa::openapi::OpenApi) {
    if let Some(operation) = api
        .paths
        .paths
        .get_mut("/webhooks/send")
        .and_then(|item| item.post.as_mut())
    {
        operation.deprecated = Some(utoipa::openapi::Deprecated::True);
    }
}

/// Media sent by URL; Meta fetches it.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct AttachmentBody {
    /// `image` (png, jpeg, gif; 8 MB), `video` or `audio` (25 MB), or `file`.
    #[serde(rename = "type")]
    #[schema(example = "image")]
    kind: String,
    /// An http(s) URL Meta can fetch.
    #[schema(example = "https://shop.example/p/42.jpg")]
    url: String,
}

/// A quick-reply button.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct QuickReplyBody {
    /// 1 to 20 characters.
    #[schema(example = "Track my order")]
    title: String,
    /// What Meta sends back when it is tapped (1 to 1,000 bytes).
    #[schema(example = "TRACK_ORDER")]
    payload: String,
}

/// A message to send. Either `message` (a text, with optional `quick_replies`) or an
/// `attachment`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SendBody {
    /// The sending account (`acc_...`).
    #[schema(example = "acc_0193a4e1c1a07c3e8b5e2f4d6a8c0e12")]
    pub(crate) account_id: String,
    /// The customer's Instagram-scoped id, as webhooks give it.
    #[schema(example = "1234567890123456")]
    pub(crate) recipient_id: String,
    /// The text: 1 to 1,000 bytes of UTF-8 (Meta's limit).
    #[schema(example = "Your order ships today.")]
    pub(crate) message: Option<String>,
    /// Media by URL, instead of a text.
    pub(crate) attachment: Option<AttachmentBody>,
    /// Buttons under the text, at most 13.
    #[serde(default)]
    pub(crate) quick_replies: Vec<QuickReplyBody>,
    /// True when a person wrote the message: outside Meta's 24-hour window it then goes out
    /// tagged `HUMAN_AGENT`, up to 7 days after the customer's last message. Automated
    /// messages outside the window fail with `outside_window` without reaching Meta.
    #[serde(default)]
    pub(crate) human_agent: bool,
    /// One send per key and account. Also accepted as the `Idempotency-Key` header.
    #[schema(example = "order-66-shipped")]
    pub(crate) idempotency_key: Option<String>,
    /// Your own JSON object, returned with the status and in `message.sent` /
    /// `message.failed` events (at most 4 KiB).
    #[schema(value_type = Option<Object>)]
    pub(crate) metadata: Option<serde_json::Value>,
}

/// A send was accepted (or, replayed, had been).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SendResponse {
    /// Our id of the message (`msg_...`).
    #[schema(example = "msg_0193a4e1c1a07c3e8b5e2f4d6a8c0e12")]
    message_id: String,
    /// Always `pending`, as the first answer said; `GET /messages/{id}/status` tells where
    /// the send stands now.
    #[schema(example = "pending")]
    status: String,
    created_at: String,
}

/// Why a send did not go out.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SendErrorBody {
    /// Meta's error code as text (`"190"` token, `"10"` window, `"551"` unavailable, `"100"`
    /// bad parameter, `"4"`/`"613"` rate limits) when Meta refused; ours otherwise:
    /// `outside_window`, `token_invalid`, `token_unavailable`, `account_deleted`,
    /// `outcome_unknown`, `temporary_failure`.
    #[schema(example = "10")]
    code: String,
    /// Meta's subcode (`2534022` outside the window, `463` expired token).
    subcode: Option<i64>,
    message: String,
    /// True when the same request may succeed later (send it again with a new key).
    retryable: bool,
}

/// Where a send stands.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusResponse {
    message_id: String,
    /// `pending` (queued or being sent), `sent`, `failed`, or `unknown`: it reached Meta but
    /// no answer came; it is never sent again blindly, and becomes `sent` when Meta's echo of
    /// it arrives.
    #[schema(example = "sent")]
    status: String,
    account_id: String,
    recipient_id: String,
    /// For a private reply: the comment it answers (`recipient_id` is its author).
    comment_id: Option<String>,
    /// Meta's id of the message, once sent.
    instagram_message_id: Option<String>,
    idempotency_key: String,
    /// How many times it was handed to Meta.
    attempts: u32,
    created_at: String,
    sent_at: Option<String>,
    error: Option<SendErrorBody>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
}

impl From<OutboundMessage> for StatusResponse {
    fn from(m: OutboundMessage) -> Self {
        Self {
            message_id: m.id.to_string(),
            status: m.status.public_name().to_owned(),
            account_id: m.request.account_id.to_string(),
            recipient_id: m.request.recipient_id.to_string(),
            comment_id: m.request.reply_to_comment.map(|c| c.to_string()),
            instagram_message_id: m.instagram_message_id.map(|i| i.to_string()),
            idempotency_key: m.request.idempotency_key.as_str().to_owned(),
            attempts: m.attempts,
            created_at: rfc3339(m.created_at),
            sent_at: m.sent_at.map(rfc3339),
            error: m.error.map(|e| SendErrorBody {
                code: e.code,
                subcode: e.subcode,
                message: e.message,
                retryable: e.retryable,
            }),
            metadata: m
                .request
                .metadata
                .and_then(|raw| serde_json::from_str(&raw).ok()),
        }
    }
}

/// The key from the `Idempotency-Key` header, when sent.
pub(crate) fn header_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    req.headers()
        .get("Idempotency-Key")
        .map(|v| {
            v.to_str().map(str::to_owned).map_err(|_| {
                ApiError::Invalid(
                    FieldError::new("Idempotency-Key", "must be printable ASCII").into(),
                )
            })
        })
        .transpose()
}

pub(crate) fn parse_request(
    body: SendBody,
    header: Option<String>,
) -> Result<SendRequest, ApiError> {
    let mut errors = Vec::new();
    let key = match (body.idempotency_key, header) {
        (Some(body_key), Some(header_key))
            if body_key != header_key.trim_matches('"') && body_key != header_key =>
        {
            errors.push(FieldError::new(
                "idempotency_key",
                "differs from the Idempotency-Key header",
            ));
            Some(body_key)
        }
        (Some(key), _) | (None, Some(key)) => Some(key),
        (None, None) => None,
    };
    let metadata = match body.metadata {
        None | Some(serde_json::Value::Null) => None,
        Some(value @ serde_json::Value::Object(_)) => Some(value.to_string()),
        Some(_) => {
            errors.push(FieldError::new("metadata", "must be a JSON object"));
            None
        }
    };
    let raw = RawSendRequest {
        account_id: &body.account_id,
        recipient_id: &body.recipient_id,
        text: body.message.as_deref(),
        attachment: body
            .attachment
            .as_ref()
            .map(|a| (a.kind.as_str(), a.url.as_str())),
        quick_replies: body
            .quick_replies
            .into_iter()
            .map(|q| QuickReply {
                title: q.title,
                payload: q.payload,
            })
            .collect(),
        human_agent: body.human_agent,
        idempotency_key: key.as_deref(),
        metadata,
    };
    let parsed = SendRequest::parse(raw);
    if let Err(more) = &parsed {
        errors.extend(more.errors().iter().cloned());
    }
    ValidationErrors::check(errors).map_err(ApiError::Invalid)?;
    parsed.map_err(ApiError::Invalid)
}

pub(crate) fn accepted(receipt: SendReceipt) -> HttpResponse {
    let mut response = HttpResponse::Accepted();
    if receipt.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    let message = receipt.message;
    // A replay answers what the first request was answered; the status endpoint tells
    // where the send stands now.
    let body = SendResponse {
        message_id: message.id.to_string(),
        status: OutboundStatus::Pending.public_name().to_owned(),
        created_at: rfc3339(message.created_at),
    };
    response.json(body)
}

/// Send a message through the Instagram Graph API.
///
/// The send is stored and queued before the 202; a worker hands it to Meta once. Repeating a
/// request with the same idempotency key (within the account) answers the first request's
/// message again with `Idempotent-Replayed: true` and sends nothing; the same key with a
/// different request is refused with 422; while the first request with a key is still being
/// stored, another gets 409 (retry after a second). Keys are kept with their messages.
#[utoipa::path(
    tag = "messages",
    request_body = SendBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "The idempotency key, instead of `idempotency_key` in the body")),
    responses(
        (status = 202, description = "Queued (or, with `Idempotent-Replayed: true`, queued before)", body = SendResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replay"))),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this key is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or the key was used for a different request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; retry with the same key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[post("/messages/send")]
async fn send_message(
    state: Data<State>,
    caller: Caller,
    req: HttpRequest,
    body: Json<SendBody>,
) -> Result<HttpResponse, ApiError> {
    let request = parse_request(body.into_inner(), header_key(&req)?)?;
    caller.require(&request.account_id, || {
        crate::accounts::not_found(&request.account_id)
    })?;
    let receipt = state.app.sending.send(request).await?;
    Ok(accepted(receipt))
}

/// Read where a sent message stands.
#[utoipa::path(
    tag = "messages",
    params(("message_id" = String, Path, description = "The id `POST /messages/send` returned (`msg_...`)")),
    responses(
        (status = 200, description = "The send", body = StatusResponse),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such send", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/messages/{message_id}/status")]
async fn message_status(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::NotFound(format!("message {path} not found"));
    let id = MessageId::parse("message_id", &path).map_err(|_| not_found())?;
    let message = state.app.sending.status(&id).await?;
    caller.require(&message.request.account_id, not_found)?;
    Ok(HttpResponse::Ok().json(StatusResponse::from(message)))
}

/// The original service's send request. `account_id` defaults to the account configured by
/// `INSTAGRAM_BUSINESS_ACCOUNT_ID`; without `idempotency_key` every request is a new send.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct LegacySendBody {
    #[schema(example = "1234567890123456")]
    recipient_id: String,
    /// The text (`message` is accepted too).
    #[serde(alias = "message")]
    message_text: String,
    account_id: Option<String>,
    idempotency_key: Option<String>,
}

/// The original service's answer, with the new fields.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LegacySendResponse {
    success: bool,
    message_id: String,
    status: String,
    created_at: String,
    error: Option<String>,
}

/// Deprecated: use `POST /api/v1/messages/send`.
///
/// Kept so integrations written for the original service keep working, now authenticated
/// like the REST API. Answers carry `Deprecation: true` and a `Link` to the successor.
#[utoipa::path(
    tag = "messages",
    request_body = LegacySendBody,
    responses(
        (status = 202, description = "Queued", body = LegacySendResponse),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[post("/webhooks/send")]
async fn legacy_send(
    state: Data<State>,
    req: HttpRequest,
    payload: actix_web::web::Payload,
) -> Result<HttpResponse, ApiError> {
    // Outside /api/v1, so authenticated here, before the body is read.
    let caller = crate::auth::authenticate(&req).await?;
    let body: LegacySendBody = json_body(&req, payload, state.settings.max_json_bytes).await?;
    let account_id = match body.account_id {
        Some(id) => id,
        None => match state.settings.configured_account.as_deref() {
            Some(instagram_id) => state
                .app
                .accounts
                .find_by_instagram_id(
                    &insta_router_domain::InstagramAccountId::parse("account_id", instagram_id)
                        .map_err(|e| ApiError::Invalid(e.into()))?,
                )
                .await?
                .map(|a| a.id.to_string())
                .ok_or_else(|| {
                    ApiError::NotFound(
                        "the account configured by INSTAGRAM_BUSINESS_ACCOUNT_ID is not connected"
                            .to_owned(),
                    )
                })?,
            None => {
                return Err(ApiError::Invalid(
                    FieldError::new(
                        "account_id",
                        "is required when INSTAGRAM_BUSINESS_ACCOUNT_ID is not configured",
                    )
                    .into(),
                ));
            }
        },
    };
    let key = body
        .idempotency_key
        .unwrap_or_else(|| format!("legacy-{}", insta_router_app::new_id_bits()));
    let request = parse_request(
        SendBody {
            account_id,
            recipient_id: body.recipient_id,
            message: Some(body.message_text),
            attachment: None,
            quick_replies: Vec::new(),
            human_agent: false,
            idempotency_key: Some(key),
            metadata: None,
        },
        header_key(&req)?,
    )?;
    caller.require(&request.account_id, || {
        crate::accounts::not_found(&request.account_id)
    })?;
    let receipt = state.app.sending.send(request).await?;
    let message = &receipt.message;
    let body = LegacySendResponse {
        success: true,
        message_id: message.id.to_string(),
        status: message.status.public_name().to_owned(),
        created_at: rfc3339(message.created_at),
        error: None,
    };
    let mut response = HttpResponse::Accepted();
    response
        .insert_header(("Deprecation", "true"))
        .insert_header(("Link", "</api/v1/messages/send>; rel=\"successor-version\""));
    if receipt.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(response.json(body))
}

/// A JSON body read by hand, with the same answers as the `Json` extractor: 415 for another
/// content type, 413 above `limit`, 422 for what does not deserialize.
async fn json_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: actix_web::web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    use actix_web::error::JsonPayloadError;
    let json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<actix_web::mime::Mime>().ok())
        .is_some_and(|m| {
            m.subtype() == actix_web::mime::JSON || m.suffix() == Some(actix_web::mime::JSON)
        });
    if !json {
        return Err(JsonPayloadError::ContentType.into());
    }
    let bytes = payload
        .to_bytes_limited(limit)
        .await
        .map_err(|_| ApiError::from(JsonPayloadError::Overflow { limit }))?
        .map_err(|e| ApiError::Unprocessable(format!("cannot read the body: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| JsonPayloadError::Deserialize(e).into())
}

impl From<SendFailure> for ApiError {
    fn from(err: SendFailure) -> Self {
        match err {
            SendFailure::AccountNotFound(id) => Self::NotFound(format!("account {id} not found")),
            SendFailure::NotFound(id) => Self::NotFound(format!("message {id} not found")),
            SendFailure::KeyReused(key) => Self::KeyReused(key),
            SendFailure::KeyInFlight(key) => Self::KeyInFlight(key),
            SendFailure::CommentNotFound(id) => Self::NotFound(format!(
                "comment {id} not found (no such comment was received)"
            )),
            SendFailure::CommentAnswered(id) => Self::Conflict {
                field: "comment_id",
                detail: format!(
                    "comment {id} has a private reply already; Meta allows one per comment"
                ),
            },
            SendFailure::PrivateReplyClosed(reason) => Self::Unprocessable(reason),
            SendFailure::Storage(source) => source.into(),
        }
    }
}
