//! Conversations and history: `GET /api/v1/accounts/{id}/conversations`,
//! `GET /api/v1/conversations/{id}/messages`, `POST /api/v1/conversations/{id}/read`.

use actix_web::web::{Data, Path, Query};
use actix_web::{HttpResponse, get, post};
use chrono::Utc;
use insta_router_app::InboxError;
use insta_router_domain::{ConversationId, HUMAN_AGENT_WINDOW, Message, ReplyTo, STANDARD_WINDOW};
use insta_router_ports::{ConversationSummary, GraphError};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::accounts::{account_id, rfc3339};
use crate::auth::Caller;
use crate::pagination::{PageBody, PageQuery};
use crate::problem::Problem;
use crate::{ApiError, State};

pub(crate) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(list_conversations)
        .service(list_messages)
        .service(mark_read);
}

/// One attachment of a message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AttachmentResponse {
    /// `image`, `video`, `audio`, `file`, `share`, `story_mention`, `ig_reel`, ...
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    title: Option<String>,
}

/// One message of a conversation, either direction.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MessageResponse {
    /// Our id (`msg_...`); for a message sent through the API, the id it returned.
    message_id: String,
    /// Meta's id.
    instagram_message_id: Option<String>,
    /// `inbound` (from the customer) or `outbound` (from the business).
    #[schema(example = "inbound")]
    direction: String,
    sender_id: String,
    recipient_id: String,
    /// `text`, `image`, `story_mention`, `share`, ...
    #[schema(example = "text")]
    message_type: String,
    text: Option<String>,
    attachments: Vec<AttachmentResponse>,
    /// Meta's id of the message this one replies to, or the story it answers.
    reply_to: Option<String>,
    /// The quick-reply or postback payload.
    payload: Option<String>,
    /// When it happened (Meta's clock).
    timestamp: String,
    /// When the customer unsent it.
    deleted_at: Option<String>,
}

impl From<Message> for MessageResponse {
    fn from(m: Message) -> Self {
        Self {
            message_id: m.id.to_string(),
            instagram_message_id: m.mid.map(|i| i.to_string()),
            direction: m.direction.as_str().to_owned(),
            sender_id: m.sender_id.to_string(),
            recipient_id: m.recipient_id.to_string(),
            message_type: m.kind.as_str().to_owned(),
            text: m.text,
            attachments: m
                .attachments
                .into_iter()
                .map(|a| AttachmentResponse {
                    kind: a.kind.as_str().to_owned(),
                    url: a.url,
                    title: a.title,
                })
                .collect(),
            reply_to: m.reply_to.map(|r| match r {
                ReplyTo::Message(mid) => mid.to_string(),
                ReplyTo::Story { id, .. } => id,
            }),
            payload: m.context.payload,
            timestamp: rfc3339(m.sent_at),
            deleted_at: m.deleted_at.map(rfc3339),
        }
    }
}

/// A conversation as an inbox lists it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConversationResponse {
    /// `conv_<customer>_<account>`, as CRM events name it.
    #[schema(example = "conv_1234567890123456_17841400000000001")]
    conversation_id: String,
    instagram_account_id: String,
    /// The customer's Instagram-scoped id: the `recipient_id` to send to.
    customer_id: String,
    started_at: String,
    last_message_at: String,
    /// When the customer last wrote.
    last_inbound_at: Option<String>,
    /// True while Meta's 24-hour window is open: any message may be sent.
    window_open: bool,
    /// When it closes (or closed).
    window_closes_at: Option<String>,
    /// Until when a person's answer (`human_agent: true`) may still be sent.
    human_agent_window_closes_at: Option<String>,
    /// Inbound messages since the business last wrote or marked the conversation seen.
    unread_count: u32,
    /// When the business last marked it seen.
    seen_at: Option<String>,
    last_message: Option<MessageResponse>,
}

impl From<ConversationSummary> for ConversationResponse {
    fn from(s: ConversationSummary) -> Self {
        let c = s.conversation;
        let now = Utc::now();
        Self {
            window_open: c.window_open(now),
            window_closes_at: c.last_inbound_at.map(|t| rfc3339(t + STANDARD_WINDOW)),
            human_agent_window_closes_at: c
                .last_inbound_at
                .map(|t| rfc3339(t + HUMAN_AGENT_WINDOW)),
            conversation_id: c.id.to_string(),
            instagram_account_id: c.instagram_account_id.to_string(),
            customer_id: c.customer_id.to_string(),
            started_at: rfc3339(c.started_at),
            last_message_at: rfc3339(c.last_message_at),
            last_inbound_at: c.last_inbound_at.map(rfc3339),
            unread_count: s.unread,
            seen_at: s.seen_at.map(rfc3339),
            last_message: s.last_message.map(MessageResponse::from),
        }
    }
}

fn conversation_id(raw: &str) -> Result<ConversationId, ApiError> {
    ConversationId::parse("conversation_id", raw)
        .map_err(|_| ApiError::NotFound(format!("conversation {raw} not found")))
}

/// The conversation `raw`, when the caller may see it (an account key: only its account's
/// conversations; others are not found).
async fn visible_conversation(
    state: &State,
    caller: &Caller,
    raw: &str,
) -> Result<ConversationId, ApiError> {
    let id = conversation_id(raw)?;
    if caller.scope.is_admin() {
        return Ok(id);
    }
    let owner = state.app.inbox.account_of(&id).await?;
    match owner {
        Some(owner) if caller.sees(&owner) => Ok(id),
        _ => Err(ApiError::NotFound(format!("conversation {raw} not found"))),
    }
}

/// List an account's conversations, most recently active first.
#[utoipa::path(
    tag = "conversations",
    params(("account_id" = String, Path, description = "The account's id (`acc_...`)"), PageQuery),
    responses(
        (status = 200, description = "One page", body = PageBody<ConversationResponse>),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/accounts/{account_id}/conversations")]
async fn list_conversations(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
    page: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let account = account_id(&path)?;
    caller.require(&account, || crate::accounts::not_found(&account))?;
    let page = state
        .app
        .inbox
        .conversations(&account, page.to_request()?)
        .await?;
    Ok(HttpResponse::Ok().json(PageBody::from_page(page, ConversationResponse::from)))
}

/// List a conversation's messages, both directions, newest first.
#[utoipa::path(
    tag = "conversations",
    params(("conversation_id" = String, Path, description = "The conversation's id (`conv_...`)"), PageQuery),
    responses(
        (status = 200, description = "One page", body = PageBody<MessageResponse>),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such conversation", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/conversations/{conversation_id}/messages")]
async fn list_messages(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
    page: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let request = page.to_request()?;
    let id = visible_conversation(&state, &caller, &path).await?;
    let page = state.app.inbox.messages(&id, request).await?;
    Ok(HttpResponse::Ok().json(PageBody::from_page(page, MessageResponse::from)))
}

/// Mark a conversation seen: its unread count drops to 0, and Meta shows the customer their
/// messages were read (`mark_seen`).
#[utoipa::path(
    tag = "conversations",
    params(("conversation_id" = String, Path, description = "The conversation's id (`conv_...`)")),
    responses(
        (status = 200, description = "Marked seen", body = ConversationResponse),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such conversation", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Marked seen here, but Meta refused the mark_seen", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[post("/conversations/{conversation_id}/read")]
async fn mark_read(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = visible_conversation(&state, &caller, &path).await?;
    let summary = state.app.inbox.mark_read(&id).await?;
    Ok(HttpResponse::Ok().json(ConversationResponse::from(summary)))
}

impl From<InboxError> for ApiError {
    fn from(err: InboxError) -> Self {
        match err {
            InboxError::AccountNotFound(id) => Self::NotFound(format!("account {id} not found")),
            InboxError::NotFound(id) => Self::NotFound(format!("conversation {id} not found")),
            InboxError::Graph(error @ GraphError::Permanent { .. }) => Self::BadGateway(format!(
                "the conversation is marked seen here, but Meta refused the mark_seen: {error}"
            )),
            // A connection that failed, a timeout, a 5xx: Meta may never have seen it.
            InboxError::Graph(error) => Self::BadGateway(format!(
                "the conversation is marked seen here, but the mark_seen did not go through: \
                 {error}"
            )),
            InboxError::Storage(source) => source.into(),
        }
    }
}
