//! `/api/v1/accounts`: connect, list, read, change and disconnect Instagram accounts.
//!
//! Access tokens and webhook secrets are write-only: accepted on create and patch, never
//! returned.

use actix_web::web::{Data, Json, Path, Query};
use actix_web::{HttpResponse, delete, get, patch, post};
use chrono::{DateTime, SecondsFormat, Utc};
use insta_router_domain::{Account, AccountDraft, AccountId, AccountPatch, Secret};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use insta_router_ports::Page;

use crate::auth::Caller;
use crate::pagination::{PageBody, PageQuery};
use crate::problem::Problem;
use crate::{ApiError, State};

pub(crate) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_account)
        .service(list_accounts)
        .service(get_account)
        .service(update_account)
        .service(delete_account);
}

/// A request to connect an Instagram account (the original service's fields).
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CreateAccountRequest {
    /// The id Meta puts in webhooks for this account (`entry[].id`, the recipient of inbound
    /// messages); not necessarily the id of the OAuth `/me` call.
    #[schema(example = "17841400000000001")]
    instagram_account_id: String,
    /// The account's Instagram username.
    #[schema(example = "shop.example")]
    username: String,
    /// The Graph API access token used to send from this account. Write-only.
    access_token: String,
    /// Where this account's events are forwarded.
    #[schema(example = "https://crm.example/hooks/instagram")]
    crm_webhook_url: Option<String>,
    /// The secret that signs CRM deliveries; required with `crm_webhook_url`. Write-only.
    /// `whsec_` + base64 secrets are used as Standard Webhooks keys.
    webhook_secret: Option<String>,
}

/// A partial update: only the fields sent change. `crm_webhook_url: null` removes the URL.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct UpdateAccountRequest {
    instagram_account_id: Option<String>,
    username: Option<String>,
    /// Write-only.
    access_token: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    crm_webhook_url: Option<Option<String>>,
    /// Write-only.
    webhook_secret: Option<String>,
}

/// Distinguishes an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A connected account. Credentials are never included.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AccountResponse {
    /// Our id.
    #[schema(example = "acc_0193a4e1c1a07c3e8b5e2f4d6a8c0e12")]
    account_id: String,
    instagram_account_id: String,
    username: String,
    crm_webhook_url: Option<String>,
    /// Whether a CRM signing secret is set.
    has_webhook_secret: bool,
    /// Set when the CRM answered 410 Gone: nothing is delivered until `crm_webhook_url` or
    /// `webhook_secret` is set again (deliveries meanwhile are dead-lettered, to be replayed).
    crm_disabled_at: Option<String>,
    /// While a replaced signing secret still signs next to the current one: until when.
    previous_secret_until: Option<String>,
    /// Set when Meta refused the access token (code 190): sends fail with `token_invalid`
    /// until a new `access_token` is set.
    token_invalid_at: Option<String>,
    /// What Meta said then.
    token_error: Option<String>,
    /// When the access token expires, when known (from Meta's answer to a refresh:
    /// Instagram-login long-lived tokens are refreshed within 10 days of their expiry).
    token_expires_at: Option<String>,
    /// `valid`, `expiring` (within 10 days), `expired`, `invalid` (Meta refused it) or
    /// `unknown` (no expiry known yet).
    #[schema(example = "valid")]
    token_state: String,
    created_at: String,
    updated_at: String,
}

impl From<Account> for AccountResponse {
    fn from(a: Account) -> Self {
        Self {
            account_id: a.id.to_string(),
            instagram_account_id: a.instagram_account_id.to_string(),
            username: a.username.as_str().to_owned(),
            crm_webhook_url: a.crm_webhook_url.map(|u| u.as_str().to_owned()),
            has_webhook_secret: a.webhook_secret.is_some(),
            crm_disabled_at: a.delivery.disabled_at.map(rfc3339),
            previous_secret_until: a
                .delivery
                .previous_secret_at(Utc::now())
                .and(a.delivery.previous_secret_until)
                .map(rfc3339),
            token_invalid_at: a.token_failure.as_ref().map(|f| rfc3339(f.at)),
            token_expires_at: a.token_life.expires_at.map(rfc3339),
            token_state: a
                .token_life
                .state(a.token_failure.as_ref(), Utc::now())
                .as_str()
                .to_owned(),
            token_error: a.token_failure.map(|f| f.message),
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
        }
    }
}

pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn account_id(raw: &str) -> Result<AccountId, ApiError> {
    // An id that cannot exist is simply not found.
    AccountId::parse("account_id", raw)
        .map_err(|_| ApiError::NotFound(format!("account {raw} not found")))
}

/// Connect an Instagram account.
#[utoipa::path(
    tag = "accounts",
    request_body = CreateAccountRequest,
    responses(
        (status = 201, description = "Created", body = AccountResponse),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The instagram_account_id is already connected", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, named in `errors`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[post("/accounts")]
async fn create_account(
    state: Data<State>,
    caller: Caller,
    body: Json<CreateAccountRequest>,
) -> Result<HttpResponse, ApiError> {
    caller.admin_only()?;
    let body = body.into_inner();
    let draft = AccountDraft::parse(
        &body.instagram_account_id,
        &body.username,
        Secret::new(body.access_token),
        body.crm_webhook_url.as_deref(),
        body.webhook_secret.map(Secret::new),
    )
    .map_err(ApiError::Invalid)?;
    let account = state.app.accounts.create(draft).await?;
    state.app.subscriptions.account_created(&account).await;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/accounts/{}", account.id)))
        .json(AccountResponse::from(account)))
}

/// List connected accounts, oldest first (for an account key: its own account).
#[utoipa::path(
    tag = "accounts",
    params(PageQuery),
    responses(
        (status = 200, description = "One page", body = PageBody<AccountResponse>),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/accounts")]
async fn list_accounts(
    state: Data<State>,
    caller: Caller,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let request = query.to_request()?;
    let page = match caller.scope.account() {
        None => state.app.accounts.list(request).await?,
        Some(own) => {
            // One account at most, on the first page.
            let account = state.app.accounts.get(own).await.ok();
            Page {
                items: account
                    .filter(|_| request.after.is_none())
                    .into_iter()
                    .collect(),
                next: None,
            }
        }
    };
    Ok(HttpResponse::Ok().json(PageBody::from_page(page, AccountResponse::from)))
}

/// Read one account.
#[utoipa::path(
    tag = "accounts",
    params(("account_id" = String, Path, description = "Our account id")),
    responses(
        (status = 200, description = "The account", body = AccountResponse),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/accounts/{account_id}")]
async fn get_account(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = account_id(&path)?;
    caller.require(&id, || not_found(&id))?;
    let account = state.app.accounts.get(&id).await?;
    Ok(HttpResponse::Ok().json(AccountResponse::from(account)))
}

/// Change some fields of an account.
#[utoipa::path(
    tag = "accounts",
    params(("account_id" = String, Path, description = "Our account id")),
    request_body = UpdateAccountRequest,
    responses(
        (status = 200, description = "The changed account", body = AccountResponse),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The instagram_account_id belongs to another account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, named in `errors`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[patch("/accounts/{account_id}")]
async fn update_account(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
    body: Json<UpdateAccountRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = account_id(&path)?;
    caller.require(&id, || not_found(&id))?;
    let body = body.into_inner();
    let patch = AccountPatch::parse(
        body.instagram_account_id.as_deref(),
        body.username.as_deref(),
        body.access_token.map(Secret::new),
        body.crm_webhook_url.as_ref().map(Option::as_deref),
        body.webhook_secret.map(Secret::new),
    )
    .map_err(ApiError::Invalid)?;
    let account = state.app.accounts.update(&id, patch).await?;
    Ok(HttpResponse::Ok().json(AccountResponse::from(account)))
}

/// Disconnect an account. Its stored messages stay; its API keys are revoked.
#[utoipa::path(
    tag = "accounts",
    params(("account_id" = String, Path, description = "Our account id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[delete("/accounts/{account_id}")]
async fn delete_account(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = account_id(&path)?;
    caller.admin_only()?;
    state.app.accounts.delete(&id).await?;
    state
        .app
        .keys
        .revoke_account_keys(&id)
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::NoContent().finish())
}

/// The 404 of an account the caller may not see, the same as of one that does not exist.
pub(crate) fn not_found(id: &AccountId) -> ApiError {
    ApiError::NotFound(format!("account {id} not found"))
}
