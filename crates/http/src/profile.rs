//! An account's ice breakers and persistent menu: `GET|PUT|DELETE
//! /api/v1/accounts/{id}/ice-breakers` and `/persistent-menu`, kept at Meta.

use actix_web::web::{Data, Json, Path};
use actix_web::{HttpResponse, delete, get, put};
use insta_router_app::ProfileError;
use insta_router_domain::{IceBreaker, MenuItem};
use insta_router_ports::ProfileField;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::accounts::{account_id, not_found};
use crate::auth::Caller;
use crate::problem::Problem;
use crate::{ApiError, State};

pub(crate) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(get_ice_breakers)
        .service(put_ice_breakers)
        .service(delete_ice_breakers)
        .service(get_menu)
        .service(put_menu)
        .service(delete_menu);
}

/// A question a customer can tap to start a conversation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct IceBreakerBody {
    /// 1 to 80 characters.
    #[schema(example = "Where is my order?")]
    question: String,
    /// Comes back as a postback when tapped (1 to 1,000 bytes); a rule's `postback`
    /// condition answers it.
    #[schema(example = "ORDER_STATUS")]
    payload: String,
}

/// The account's ice breakers: at most 4.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct IceBreakers {
    ice_breakers: Vec<IceBreakerBody>,
}

/// A persistent menu item: a postback button or a link.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum MenuItemBody {
    /// A button whose payload comes back as a postback.
    Postback {
        /// 1 to 30 characters.
        title: String,
        /// 1 to 1,000 bytes.
        payload: String,
    },
    /// A link.
    WebUrl {
        /// 1 to 30 characters.
        title: String,
        /// An http(s) URL.
        url: String,
    },
}

/// The account's persistent menu: 1 to 20 items.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PersistentMenu {
    items: Vec<MenuItemBody>,
}

impl From<IceBreaker> for IceBreakerBody {
    fn from(i: IceBreaker) -> Self {
        Self {
            question: i.question,
            payload: i.payload,
        }
    }
}

impl From<MenuItem> for MenuItemBody {
    fn from(item: MenuItem) -> Self {
        match item {
            MenuItem::Postback { title, payload } => Self::Postback { title, payload },
            MenuItem::WebUrl { title, url } => Self::WebUrl { title, url },
        }
    }
}

fn breakers(items: Vec<IceBreaker>) -> IceBreakers {
    IceBreakers {
        ice_breakers: items.into_iter().map(Into::into).collect(),
    }
}

fn menu(items: Vec<MenuItem>) -> PersistentMenu {
    PersistentMenu {
        items: items.into_iter().map(Into::into).collect(),
    }
}

fn visible(caller: &Caller, raw: &str) -> Result<insta_router_domain::AccountId, ApiError> {
    let id = account_id(raw)?;
    caller.require(&id, || not_found(&id))?;
    Ok(id)
}

/// Read the account's ice breakers from Meta.
#[utoipa::path(
    tag = "accounts",
    params(("account_id" = String, Path, description = "The account (`acc_...`)")),
    responses(
        (status = 200, description = "The ice breakers (empty: none)", body = IceBreakers),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Meta refused or did not answer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/accounts/{account_id}/ice-breakers")]
async fn get_ice_breakers(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = visible(&caller, &path)?;
    let items = state.app.profiles.ice_breakers(&id).await?;
    Ok(HttpResponse::Ok().json(breakers(items)))
}

/// Replace the account's ice breakers.
///
/// Checked against Meta's limits first (at most 4, questions of 1 to 80 characters, payloads
/// of 1 to 1,000 bytes); an empty list removes them. Answers what Meta has afterwards.
#[utoipa::path(
    tag = "accounts",
    request_body = IceBreakers,
    params(("account_id" = String, Path, description = "The account (`acc_...`)")),
    responses(
        (status = 200, description = "Set", body = IceBreakers),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Beyond Meta's limits (each field named)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Meta refused or did not answer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[put("/accounts/{account_id}/ice-breakers")]
async fn put_ice_breakers(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
    body: Json<IceBreakers>,
) -> Result<HttpResponse, ApiError> {
    let id = visible(&caller, &path)?;
    let items: Vec<IceBreaker> = body
        .into_inner()
        .ice_breakers
        .into_iter()
        .map(|i| IceBreaker {
            question: i.question,
            payload: i.payload,
        })
        .collect();
    let set = state.app.profiles.set_ice_breakers(&id, &items).await?;
    Ok(HttpResponse::Ok().json(breakers(set)))
}

/// Remove the account's ice breakers.
#[utoipa::path(
    tag = "accounts",
    params(("account_id" = String, Path, description = "The account (`acc_...`)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Meta refused or did not answer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[delete("/accounts/{account_id}/ice-breakers")]
async fn delete_ice_breakers(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = visible(&caller, &path)?;
    state
        .app
        .profiles
        .delete(&id, ProfileField::IceBreakers)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Read the account's persistent menu from Meta.
#[utoipa::path(
    tag = "accounts",
    params(("account_id" = String, Path, description = "The account (`acc_...`)")),
    responses(
        (status = 200, description = "The menu (empty: none)", body = PersistentMenu),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Meta refused or did not answer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/accounts/{account_id}/persistent-menu")]
async fn get_menu(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = visible(&caller, &path)?;
    let items = state.app.profiles.persistent_menu(&id).await?;
    Ok(HttpResponse::Ok().json(menu(items)))
}

/// Replace the account's persistent menu.
///
/// Checked against Meta's limits first (1 to 20 items, titles of 1 to 30 characters,
/// payloads of 1 to 1,000 bytes, http(s) URLs). Postback items come back as postbacks, which
/// a rule's `postback` condition answers. Answers what Meta has afterwards.
#[utoipa::path(
    tag = "accounts",
    request_body = PersistentMenu,
    params(("account_id" = String, Path, description = "The account (`acc_...`)")),
    responses(
        (status = 200, description = "Set", body = PersistentMenu),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Beyond Meta's limits (each field named)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Meta refused or did not answer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[put("/accounts/{account_id}/persistent-menu")]
async fn put_menu(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
    body: Json<PersistentMenu>,
) -> Result<HttpResponse, ApiError> {
    let id = visible(&caller, &path)?;
    let items: Vec<MenuItem> = body
        .into_inner()
        .items
        .into_iter()
        .map(|item| match item {
            MenuItemBody::Postback { title, payload } => MenuItem::Postback { title, payload },
            MenuItemBody::WebUrl { title, url } => MenuItem::WebUrl { title, url },
        })
        .collect();
    let set = state.app.profiles.set_persistent_menu(&id, &items).await?;
    Ok(HttpResponse::Ok().json(menu(set)))
}

/// Remove the account's persistent menu.
#[utoipa::path(
    tag = "accounts",
    params(("account_id" = String, Path, description = "The account (`acc_...`)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Meta refused or did not answer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[delete("/accounts/{account_id}/persistent-menu")]
async fn delete_menu(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = visible(&caller, &path)?;
    state
        .app
        .profiles
        .delete(&id, ProfileField::PersistentMenu)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

impl From<ProfileError> for ApiError {
    fn from(err: ProfileError) -> Self {
        match err {
            ProfileError::AccountNotFound(id) => not_found(&id),
            ProfileError::Invalid(errors) => Self::Invalid(errors),
            ProfileError::Token(why) => Self::Unprocessable(format!(
                "the account's access token cannot be opened ({why}); set it again with PATCH"
            )),
            ProfileError::Graph(error) => {
                Self::BadGateway(format!("Meta did not take the change: {error}"))
            }
            ProfileError::Storage(source) => source.into(),
        }
    }
}
