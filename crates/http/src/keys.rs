//! `/api/v1/api-keys`: admin keys make, list and revoke API keys.

use actix_web::web::{Data, Json, Path};
use actix_web::{HttpResponse, delete, get, post};
use insta_router_domain::{AccountId, ApiKey, ApiKeyId, FieldError, KeyScope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::accounts::rfc3339;
use crate::auth::Caller;
use crate::problem::Problem;
use crate::{ApiError, State};

pub(crate) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(create_key)
        .service(list_keys)
        .service(revoke_key);
}

/// A key to make.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKeyRequest {
    /// What people call it (1 to 100 characters).
    #[schema(example = "CRM production")]
    name: Option<String>,
    /// Make an account key, acting on this account only; without it, an admin key.
    #[schema(example = "acc_0190a1b2c3d4e5f67890abcdef012345")]
    account_id: Option<String>,
}

/// An API key, without the key itself.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KeyResponse {
    #[schema(example = "key_0190a1b2c3d4e5f67890abcdef012345")]
    key_id: String,
    name: Option<String>,
    /// `admin` or `account`.
    #[schema(example = "account")]
    scope: &'static str,
    /// For an account key, its account.
    account_id: Option<String>,
    created_at: String,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
}

impl From<ApiKey> for KeyResponse {
    fn from(key: ApiKey) -> Self {
        Self {
            key_id: key.id.to_string(),
            name: key.name.map(|n| n.as_str().to_owned()),
            scope: if key.scope.is_admin() {
                "admin"
            } else {
                "account"
            },
            account_id: key.scope.account().map(ToString::to_string),
            created_at: rfc3339(key.created_at),
            last_used_at: key.last_used_at.map(rfc3339),
            revoked_at: key.revoked_at.map(rfc3339),
        }
    }
}

/// A key just made: the key itself is in this answer and nowhere else, ever.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedKeyResponse {
    #[serde(flatten)]
    key: KeyResponse,
    /// The key (`irk_...`), shown this once; send it as `Authorization: Bearer <key>`.
    #[schema(example = "irk_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG")]
    api_key: String,
}

/// The keys of `/api-keys` answer as not found unless they exist.
fn key_id(raw: &str) -> Result<ApiKeyId, ApiError> {
    ApiKeyId::parse("key_id", raw)
        .map_err(|_| ApiError::NotFound(format!("API key {raw} not found")))
}

/// Make an API key (admin keys only). Its text is in this answer only.
#[utoipa::path(
    tag = "api-keys",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Made", body = CreatedKeyResponse),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[post("/api-keys")]
async fn create_key(
    state: Data<State>,
    caller: Caller,
    body: Json<CreateKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    caller.admin_only()?;
    let body = body.into_inner();
    let scope = match body.account_id.as_deref() {
        None => KeyScope::Admin,
        Some(raw) => KeyScope::Account(
            AccountId::parse("account_id", raw)
                .map_err(|e: FieldError| ApiError::Invalid(e.into()))?,
        ),
    };
    let made = state.app.keys.create(scope, body.name.as_deref()).await?;
    let response = CreatedKeyResponse {
        api_key: made.secret.expose().to_owned(),
        key: made.key.into(),
    };
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(response))
}

/// List every API key, without the keys themselves (admin keys only).
#[utoipa::path(
    tag = "api-keys",
    responses(
        (status = 200, description = "Every key, oldest first", body = Vec<KeyResponse>),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/api-keys")]
async fn list_keys(state: Data<State>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.admin_only()?;
    let keys: Vec<KeyResponse> = state
        .app
        .keys
        .list()
        .await?
        .into_iter()
        .map(KeyResponse::from)
        .collect();
    Ok(HttpResponse::Ok().json(keys))
}

/// Revoke an API key, at once on every instance (admin keys only).
#[utoipa::path(
    tag = "api-keys",
    params(("key_id" = String, Path, description = "The key's id (`key_...`)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[delete("/api-keys/{key_id}")]
async fn revoke_key(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.admin_only()?;
    let id = key_id(&path)?;
    state.app.keys.revoke(&id).await?;
    tracing::info!(key_id = %id, by = %caller.key_id, "API key revoked over the API");
    Ok(HttpResponse::NoContent().finish())
}
