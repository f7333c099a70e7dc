//! An account's webhook subscription at Meta: `POST /api/v1/accounts/{id}/subscribe` makes it,
//! `GET` the same path reads it.

use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, get, post};
use insta_router_app::SubscriptionError;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::accounts::{account_id, not_found};
use crate::auth::Caller;
use crate::problem::Problem;
use crate::{ApiError, State};

pub(crate) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(subscribe).service(subscription);
}

/// The webhook fields Meta sends the account's events for.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SubscriptionResponse {
    #[schema(example = json!(["messages", "messaging_postbacks", "messaging_seen", "messaging_reactions", "messaging_referral", "comments", "live_comments"]))]
    subscribed_fields: Vec<String>,
}

/// Subscribe the account to the app's webhook fields.
///
/// Until an Instagram account is subscribed to the app (`POST /me/subscribed_apps` with its
/// token), Meta sends none of its events. Subscribes it to `messages`,
/// `messaging_postbacks`, `messaging_seen`, `messaging_reactions`, `messaging_referral`,
/// `comments` and `live_comments`, then answers what Meta reports. Done automatically when an
/// account is created (`SUBSCRIBE_ON_CREATE`); safe to repeat.
#[utoipa::path(
    tag = "accounts",
    params(("account_id" = String, Path, description = "The account (`acc_...`)")),
    responses(
        (status = 200, description = "Subscribed", body = SubscriptionResponse),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Meta refused or did not answer (an expired token: code 190)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[post("/accounts/{account_id}/subscribe")]
async fn subscribe(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = account_id(&path)?;
    caller.require(&id, || not_found(&id))?;
    let subscribed_fields = state.app.subscriptions.subscribe(&id).await?;
    Ok(HttpResponse::Ok().json(SubscriptionResponse { subscribed_fields }))
}

/// Read the account's webhook subscription from Meta.
#[utoipa::path(
    tag = "accounts",
    params(("account_id" = String, Path, description = "The account (`acc_...`)")),
    responses(
        (status = 200, description = "The fields Meta sends the account's events for (empty: none)", body = SubscriptionResponse),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Meta refused or did not answer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/accounts/{account_id}/subscribe")]
async fn subscription(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = account_id(&path)?;
    caller.require(&id, || not_found(&id))?;
    let subscribed_fields = state.app.subscriptions.current(&id).await?;
    Ok(HttpResponse::Ok().json(SubscriptionResponse { subscribed_fields }))
}

impl From<SubscriptionError> for ApiError {
    fn from(err: SubscriptionError) -> Self {
        match err {
            SubscriptionError::AccountNotFound(id) => not_found(&id),
            SubscriptionError::Token(why) => Self::Unprocessable(format!(
                "the account's access token cannot be opened ({why}); set it again with PATCH"
            )),
            SubscriptionError::Graph(error) => {
                Self::BadGateway(format!("the subscription did not go through: {error}"))
            }
            SubscriptionError::Storage(source) => source.into(),
        }
    }
}
