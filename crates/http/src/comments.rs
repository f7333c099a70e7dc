//! Comments: `POST /api/v1/comments/{comment_id}/private-reply`, a DM to a comment's author.

use actix_web::web::{Data, Json, Path};
use actix_web::{HttpRequest, HttpResponse, post};
use insta_router_domain::{AccountId, FieldError, InstagramCommentId};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::Caller;
use crate::messages::{
    AttachmentBody, QuickReplyBody, SendBody, SendResponse, accepted, header_key, parse_request,
};
use crate::problem::Problem;
use crate::{ApiError, State};

pub(crate) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(private_reply);
}

/// A private reply: a text (with optional quick replies) or an attachment.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PrivateReplyBody {
    /// The account the comment was made on (`acc_...`). May be left out with an account key.
    #[schema(example = "acc_0193a4e1c1a07c3e8b5e2f4d6a8c0e12")]
    account_id: Option<String>,
    /// The text: 1 to 1,000 bytes of UTF-8 (also accepted as `message`).
    #[serde(alias = "message")]
    #[schema(example = "Hi! Here is the link to the blue one: https://shop.example/p/42")]
    text: Option<String>,
    /// Media by URL, instead of a text.
    attachment: Option<AttachmentBody>,
    /// Buttons under the text, at most 13.
    #[serde(default)]
    quick_replies: Vec<QuickReplyBody>,
    /// One send per key and account. Also accepted as the `Idempotency-Key` header.
    #[schema(example = "comment-17900000000000099")]
    idempotency_key: Option<String>,
    /// Your own JSON object, returned with the status and in `message.sent` /
    /// `message.failed` events.
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
}

/// Reply privately to a comment: a DM to its author.
///
/// Meta allows one private reply per comment, within 7 days of the comment (a comment on a
/// live broadcast: only while the broadcast lasts, at most 4 hours); both are checked here
/// before anything is sent. The reply is sent like `POST /messages/send` (stored, queued,
/// handed to Meta once, idempotent by key, `message.sent`/`message.failed` to the CRM),
/// addressed to the comment, and at most `PRIVATE_REPLIES_PER_HOUR` (750, Meta's limit) per
/// account are sent an hour. It opens a conversation with the author that then behaves like
/// any other.
#[utoipa::path(
    tag = "messages",
    request_body = PrivateReplyBody,
    params(
        ("comment_id" = String, Path, description = "Meta's id of the comment, as `comment.created` gave it"),
        ("Idempotency-Key" = Option<String>, Header, description = "The idempotency key, instead of `idempotency_key` in the body"),
    ),
    responses(
        (status = 202, description = "Queued (or, with `Idempotent-Replayed: true`, queued before)", body = SendResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replay"))),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account, or no such comment received for it", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The comment has a private reply already, or a request with this key is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, the key was used for a different request, or Meta's window for a private reply is closed (the comment is over 7 days old, its live broadcast ended, or it is the account's own)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; retry with the same key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[post("/comments/{comment_id}/private-reply")]
async fn private_reply(
    state: Data<State>,
    caller: Caller,
    req: HttpRequest,
    path: Path<String>,
    body: Json<PrivateReplyBody>,
) -> Result<HttpResponse, ApiError> {
    let comment = InstagramCommentId::parse("comment_id", &path)
        .map_err(|_| ApiError::NotFound(format!("comment {path} not found")))?;
    let body = body.into_inner();
    let account_id = match (body.account_id, caller.scope.account()) {
        (Some(account), _) => account,
        (None, Some(own)) => own.to_string(),
        (None, None) => {
            return Err(ApiError::Invalid(
                FieldError::new("account_id", "is required with an admin key").into(),
            ));
        }
    };
    let account =
        AccountId::parse("account_id", &account_id).map_err(|e| ApiError::Invalid(e.into()))?;
    caller.require(&account, || crate::accounts::not_found(&account))?;
    let header = header_key(&req)?;
    let send = SendBody {
        account_id,
        recipient_id: String::new(),
        message: body.text,
        attachment: body.attachment,
        quick_replies: body.quick_replies,
        human_agent: false,
        idempotency_key: body.idempotency_key,
        metadata: body.metadata,
    };
    let receipt = state
        .app
        .sending
        .private_reply(&account, &comment, |author| {
            parse_request(
                SendBody {
                    recipient_id: author.to_string(),
                    ..send
                },
                header,
            )
        })
        .await?;
    Ok(accepted(receipt))
}
