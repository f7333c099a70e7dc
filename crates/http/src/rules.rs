//! `/api/v1/accounts/{account_id}/rules` and `/api/v1/rules/test`: an account's auto-reply
//! rules, and a dry run of them.

use actix_web::web::{Data, Json, Path};
use actix_web::{HttpResponse, delete, get, post, put};
use chrono::{DateTime, Utc};
use insta_router_app::{RuleDocument, RuleError, RuleView, TrialMessage};
use insta_router_domain::{FieldError, RuleId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::rule_schema::RuleDocumentSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::accounts::{account_id, rfc3339};
use crate::auth::Caller;
use crate::problem::Problem;
use crate::{ApiError, State};

pub(crate) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_rule)
        .service(list_rules)
        .service(get_rule)
        .service(replace_rule)
        .service(delete_rule)
        .service(test_rules);
}

/// A stored rule.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RuleResponse {
    #[schema(example = "rule_0193a4e1c1a07c3e8b5e2f4d6a8c0e12")]
    rule_id: String,
    account_id: String,
    #[serde(flatten)]
    #[schema(value_type = RuleDocumentSchema)]
    rule: RuleDocument,
    created_at: String,
    updated_at: String,
}

impl From<RuleView> for RuleResponse {
    fn from(v: RuleView) -> Self {
        Self {
            rule_id: v.id.to_string(),
            account_id: v.account_id.to_string(),
            rule: v.document,
            created_at: rfc3339(v.created_at),
            updated_at: rfc3339(v.updated_at),
        }
    }
}

/// An account's rules.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RuleList {
    /// Oldest first; evaluation order is by priority, then age.
    data: Vec<RuleResponse>,
}

fn rule_id(raw: &str) -> Result<RuleId, ApiError> {
    RuleId::parse("rule_id", raw).map_err(|_| ApiError::NotFound(format!("rule {raw} not found")))
}

impl From<RuleError> for ApiError {
    fn from(err: RuleError) -> Self {
        match err {
            RuleError::NotFound(id) => Self::NotFound(format!("rule {id} not found")),
            RuleError::AccountNotFound(id) => Self::NotFound(format!("account {id} not found")),
            RuleError::Invalid(errors) => Self::Invalid(errors),
            RuleError::Storage(source) => source.into(),
        }
    }
}

/// Add an auto-reply rule to an account.
#[utoipa::path(
    tag = "rules",
    params(("account_id" = String, Path, description = "Our account id")),
    request_body = RuleDocumentSchema,
    responses(
        (status = 201, description = "Created", body = RuleResponse),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid rule; each field at fault is named (`conditions[1].pattern`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[post("/accounts/{account_id}/rules")]
async fn create_rule(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
    body: Json<RuleDocument>,
) -> Result<HttpResponse, ApiError> {
    let account = account_id(&path)?;
    caller.require(&account, || crate::accounts::not_found(&account))?;
    let rule = state.app.rules.create(&account, body.into_inner()).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            "Location",
            format!("/api/v1/accounts/{account}/rules/{}", rule.id),
        ))
        .json(RuleResponse::from(rule)))
}

/// List an account's rules.
#[utoipa::path(
    tag = "rules",
    params(("account_id" = String, Path, description = "Our account id")),
    responses(
        (status = 200, description = "The rules", body = RuleList),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/accounts/{account_id}/rules")]
async fn list_rules(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account = account_id(&path)?;
    caller.require(&account, || crate::accounts::not_found(&account))?;
    let rules = state.app.rules.list(&account).await?;
    Ok(HttpResponse::Ok().json(RuleList {
        data: rules.into_iter().map(RuleResponse::from).collect(),
    }))
}

/// Read one rule.
#[utoipa::path(
    tag = "rules",
    params(
        ("account_id" = String, Path, description = "Our account id"),
        ("rule_id" = String, Path, description = "The rule's id"),
    ),
    responses(
        (status = 200, description = "The rule", body = RuleResponse),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such rule on this account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/accounts/{account_id}/rules/{rule_id}")]
async fn get_rule(
    state: Data<State>,
    caller: Caller,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (account, rule) = (account_id(&path.0)?, rule_id(&path.1)?);
    caller.require(&account, || crate::accounts::not_found(&account))?;
    let rule = state.app.rules.get(&account, &rule).await?;
    Ok(HttpResponse::Ok().json(RuleResponse::from(rule)))
}

/// Replace a rule with a new document.
#[utoipa::path(
    tag = "rules",
    params(
        ("account_id" = String, Path, description = "Our account id"),
        ("rule_id" = String, Path, description = "The rule's id"),
    ),
    request_body = RuleDocumentSchema,
    responses(
        (status = 200, description = "The new rule", body = RuleResponse),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such rule on this account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid rule", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[put("/accounts/{account_id}/rules/{rule_id}")]
async fn replace_rule(
    state: Data<State>,
    caller: Caller,
    path: Path<(String, String)>,
    body: Json<RuleDocument>,
) -> Result<HttpResponse, ApiError> {
    let (account, rule) = (account_id(&path.0)?, rule_id(&path.1)?);
    caller.require(&account, || crate::accounts::not_found(&account))?;
    let rule = state
        .app
        .rules
        .replace(&account, &rule, body.into_inner())
        .await?;
    Ok(HttpResponse::Ok().json(RuleResponse::from(rule)))
}

/// Delete a rule.
#[utoipa::path(
    tag = "rules",
    params(
        ("account_id" = String, Path, description = "Our account id"),
        ("rule_id" = String, Path, description = "The rule's id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such rule on this account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[delete("/accounts/{account_id}/rules/{rule_id}")]
async fn delete_rule(
    state: Data<State>,
    caller: Caller,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (account, rule) = (account_id(&path.0)?, rule_id(&path.1)?);
    caller.require(&account, || crate::accounts::not_found(&account))?;
    state.app.rules.delete(&account, &rule).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A message to try an account's rules against.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestRequest {
    /// Whose rules.
    account_id: String,
    /// The message text.
    #[schema(example = "Hi ORDER66 please")]
    text: Option<String>,
    /// `text` (default), `story_mention`, `story_reply`, `image`, `postback`, `quick_reply`,
    /// ..., or `comment` to try the comment rules.
    message_type: Option<String>,
    /// A postback or quick-reply payload.
    payload: Option<String>,
    /// The `ref` of the link or ad that opened the conversation.
    #[serde(rename = "ref")]
    referral: Option<String>,
    /// Whether the message opens the conversation (for `comment`: whether it is its
    /// author's first comment).
    #[serde(default)]
    first_message: bool,
    /// For `message_type: comment`: the media commented on.
    media_id: Option<String>,
    /// When it arrives (RFC 3339; now by default), for schedules.
    at: Option<String>,
}

/// One rule passed over, and why.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SkippedRule {
    rule_id: String,
    reason: String,
}

/// What the rules would do.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TestResponse {
    /// Whether a rule would answer.
    matched: bool,
    /// The rule that would answer.
    rule: Option<RuleResponse>,
    /// The reply it would send, with sample values for the customer's name.
    reply: Option<String>,
    /// Why nothing would answer, when a safety limit says so.
    blocked: Option<String>,
    /// The rules looked at before the one that answers (all of them when none does), in
    /// evaluation order, with the reason each was passed over.
    skipped: Vec<SkippedRule>,
}

/// Try an account's rules against a message, without sending anything.
#[utoipa::path(
    tag = "rules",
    request_body = TestRequest,
    responses(
        (status = 200, description = "The decision and why", body = TestResponse),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[post("/rules/test")]
async fn test_rules(
    state: Data<State>,
    caller: Caller,
    body: Json<TestRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let account = account_id(&body.account_id)?;
    caller.require(&account, || crate::accounts::not_found(&account))?;
    let at = body
        .at
        .as_deref()
        .map(|raw| {
            DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::Invalid(FieldError::new("at", "must be an RFC 3339 time").into())
                })
        })
        .transpose()?;
    let outcome = state
        .app
        .rules
        .try_out(
            &account,
            TrialMessage {
                text: body.text,
                message_type: body.message_type,
                payload: body.payload,
                referral: body.referral,
                first_message: body.first_message,
                media_id: body.media_id,
                at,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(TestResponse {
        matched: outcome.rule.is_some(),
        rule: outcome.rule.map(RuleResponse::from),
        reply: outcome.reply,
        blocked: outcome.blocked,
        skipped: outcome
            .skipped
            .into_iter()
            .map(|(id, reason)| SkippedRule {
                rule_id: id.to_string(),
                reason,
            })
            .collect(),
    }))
}
