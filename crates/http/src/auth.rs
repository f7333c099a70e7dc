//! Authentication and scopes of the REST API: the one place that decides who may call it.
//!
//! Every request under `/api/v1` (and the deprecated `POST /webhooks/send`) must carry
//! `Authorization: Bearer <api key>`. The key is checked against the database on every
//! request (so a revoked key is refused at once, on every instance), and its scope travels
//! with the request as a [`Caller`]: an admin key acts on everything, an account key on its
//! one account, and another account's resources answer 404, so ids do not leak.

use std::future::Future;
use std::pin::Pin;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use insta_router_app::AuthError;
use insta_router_domain::{AccountId, ApiKeyId, KeyScope};

use crate::{ApiError, State};

/// Who is calling: the key that authenticated the request, and its scope.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) key_id: ApiKeyId,
    pub(crate) scope: KeyScope,
}

impl Caller {
    /// Admin keys only: 403 for an account key.
    pub(crate) fn admin_only(&self) -> Result<(), ApiError> {
        match self.scope.account() {
            None => Ok(()),
            Some(account) => Err(ApiError::Forbidden(format!(
                "this API key acts on account {account} only; this needs an admin key"
            ))),
        }
    }

    /// Whether the caller may see and act on `account`.
    pub(crate) fn sees(&self, account: &AccountId) -> bool {
        self.scope.covers(account)
    }

    /// `Ok` when the caller may act on `account`, else `hidden` (the 404 the resource would
    /// get if it did not exist).
    pub(crate) fn require(
        &self,
        account: &AccountId,
        hidden: impl FnOnce() -> ApiError,
    ) -> Result<(), ApiError> {
        if self.sees(account) {
            Ok(())
        } else {
            Err(hidden())
        }
    }
}

/// The caller the middleware authenticated, or, on a route outside `/api/v1` (the
/// deprecated `POST /webhooks/send`), authenticated now. Declared before a handler's body,
/// it refuses a request before the body is read.
impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let known = req.extensions().get::<Self>().cloned();
        let req = req.clone();
        Box::pin(async move {
            match known {
                Some(caller) => Ok(caller),
                None => authenticate(&req).await,
            }
        })
    }
}

/// Whether a presented secret (`METRICS_TOKEN`, the webhook verify token) is the configured
/// one. Digests are compared, so the time taken says nothing about the secret.
pub(crate) fn same_secret(given: &str, configured: &str) -> bool {
    let digest = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    digest(given).as_ref() == digest(configured).as_ref()
}

/// Authenticates requests before any handler or body parsing runs; a refusal is a response
/// (401 with `WWW-Authenticate: Bearer`, or 503), so outer middleware decorates it.
pub(crate) async fn require_api_key(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    match authenticate(req.request()).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.call(req)
                .await
                .map(ServiceResponse::map_into_left_body)
        }
        Err(refusal) => Ok(req.error_response(refusal).map_into_right_body()),
    }
}

/// The caller of `req`, from its bearer key, within its rate limits: past the key's limit,
/// or past the address's limit of failed authentications, 429.
pub(crate) async fn authenticate(req: &HttpRequest) -> Result<Caller, ApiError> {
    let Some(state) = req.app_data::<Data<State>>() else {
        return Err(ApiError::Unauthorized("no key store".to_owned()));
    };
    let limiters = &state.settings.limiters;
    match check_key(req, state).await {
        Ok(caller) => {
            limiters.key(&caller.key_id)?;
            Ok(caller)
        }
        Err(refusal @ ApiError::Unauthorized(_)) => {
            limiters.auth_failure(req.peer_addr().map(|a| a.ip()))?;
            Err(refusal)
        }
        Err(other) => Err(other),
    }
}

async fn check_key(req: &HttpRequest, state: &State) -> Result<Caller, ApiError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default());
    let Some(header) = header else {
        return Err(ApiError::Unauthorized(
            "send your API key as 'Authorization: Bearer <api_key>'".to_owned(),
        ));
    };
    let token = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "malformed Authorization header: expected 'Bearer <api_key>'".to_owned(),
            )
        })?;
    match state.app.keys.authenticate(token).await {
        Ok(key) => Ok(Caller {
            key_id: key.id,
            scope: key.scope,
        }),
        Err(AuthError::Unknown) => Err(ApiError::Unauthorized("unknown API key".to_owned())),
        Err(AuthError::Revoked) => Err(ApiError::Unauthorized(
            "this API key has been revoked".to_owned(),
        )),
        Err(AuthError::Storage(source)) => Err(source.into()),
    }
}
