//! Signing in and out, the session cookie, and CSRF protection.
//!
//! - The session cookie holds the API key the person typed: HttpOnly (no script reads it),
//!   SameSite=Strict (no other site's request carries it), `Path=/console`, Secure when the
//!   console is reached over HTTPS, 12 hours. The key is never written into a page or a URL.
//! - Every request authenticates the key again with the same use case as the REST API, so a
//!   revoked key ends its sessions on every instance at once.
//! - Every form carries a token derived from the session by HMAC (synchronizer token without
//!   server state); the sign-in form, before there is a session, a double-submit token. A
//!   form posted with an `Origin` of another host is refused as well.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use actix_web::web::{Data, Form};
use actix_web::{FromRequest, HttpRequest, HttpResponse, get, post};
use insta_router_app::AuthError;
use insta_router_domain::{Account, AccountId, KeyScope};
use insta_router_ports::PageRequest;
use maud::html;
use ring::hmac;
use serde::Deserialize;

use crate::{Failure, PREFIX, State};

/// The session cookie.
const SESSION: &str = "insta_router_session";
/// The sign-in form's double-submit cookie.
const LOGIN: &str = "insta_router_login";
/// How long a session lasts, in seconds.
const SESSION_SECONDS: u32 = 12 * 3600;

pub(crate) fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(login_page).service(login).service(logout);
}

/// A signed-in person: the scope of their key, and the token their forms carry.
pub(crate) struct Session {
    pub(crate) scope: KeyScope,
    pub(crate) csrf: String,
}

impl Session {
    /// `Ok` when the form's token is this session's and it was posted from this console.
    pub(crate) fn check(&self, req: &HttpRequest, token: &str) -> Result<(), Failure> {
        same_origin(req)?;
        if same(token, &self.csrf) {
            Ok(())
        } else {
            Err(Failure::Forged)
        }
    }

    /// Admin keys only.
    pub(crate) fn admin_only(&self) -> Result<(), Failure> {
        if self.scope.is_admin() {
            Ok(())
        } else {
            Err(Failure::Forbidden(
                "your API key acts on one account only; this needs an admin key".to_owned(),
            ))
        }
    }

    /// `Ok` when the key may see `account`; a hidden account is "not found".
    pub(crate) fn require(&self, account: &AccountId) -> Result<(), Failure> {
        if self.scope.covers(account) {
            Ok(())
        } else {
            Err(Failure::NotFound(format!("no account {account}")))
        }
    }

    /// The account `raw` names, when the key sees it; otherwise (or when `raw` is no account
    /// id) "not found".
    pub(crate) fn account(&self, raw: &str) -> Result<AccountId, Failure> {
        let id = AccountId::parse("account", raw)
            .map_err(|_| Failure::NotFound(format!("no account {raw}")))?;
        self.require(&id)?;
        Ok(id)
    }

    /// The accounts this key sees, oldest first.
    pub(crate) async fn accounts(&self, state: &State) -> Result<Vec<Account>, Failure> {
        match self.scope.account() {
            Some(id) => Ok(state.app.accounts.get(id).await.map(|a| vec![a])?),
            None => Ok(state
                .app
                .accounts
                .list(PageRequest {
                    after: None,
                    limit: PageRequest::MAX_LIMIT,
                })
                .await?
                .items),
        }
    }

    /// The account a page is about: the one asked for (when the key sees it), else the key's
    /// own, else the first one.
    pub(crate) fn pick<'a>(
        &self,
        accounts: &'a [Account],
        asked: Option<&str>,
    ) -> Option<&'a Account> {
        asked
            .and_then(|id| accounts.iter().find(|a| a.id.as_str() == id))
            .or_else(|| accounts.first())
    }
}

/// The session of a request, from its cookie.
impl FromRequest for Session {
    type Error = Failure;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Failure>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let background = req
                .headers()
                .get("x-requested-with")
                .is_some_and(|v| v.as_bytes() == b"fetch");
            let sign_in = Failure::SignIn { background };
            let Some(key) = cookie(&req, SESSION) else {
                return Err(sign_in);
            };
            let Some(state) = req.app_data::<Data<State>>() else {
                return Err(sign_in);
            };
            match state.app.keys.authenticate(&key).await {
                Ok(found) => Ok(Self {
                    scope: found.scope,
                    csrf: csrf_of(&key),
                }),
                Err(AuthError::Storage(e)) => Err(e.into()),
                Err(AuthError::Unknown | AuthError::Revoked) => Err(sign_in),
            }
        })
    }
}

/// The CSRF token of the session holding `key`.
fn csrf_of(key: &str) -> String {
    let mac = hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes());
    hex::encode(hmac::sign(&mac, b"insta-router console form").as_ref())
}

/// Whether two tokens are equal; their digests are compared, so timing tells nothing.
fn same(given: &str, expected: &str) -> bool {
    let digest = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    !expected.is_empty() && digest(given).as_ref() == digest(expected).as_ref()
}

/// Refuses a form another site posted: by `Origin` when the browser sends it, and by
/// `Sec-Fetch-Site`.
fn same_origin(req: &HttpRequest) -> Result<(), Failure> {
    let headers = req.headers();
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Err(Failure::Forged);
    }
    // With `Referrer-Policy: no-referrer` (set on every response) a browser sends `Origin:
    // null` on its own forms: only a real origin can be compared.
    if let Some(origin) = headers
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .filter(|o| *o != "null")
    {
        let host = origin.split_once("://").map_or(origin, |(_, host)| host);
        if host != req.connection_info().host() {
            return Err(Failure::Forged);
        }
    }
    Ok(())
}

/// The value of cookie `name`.
fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all("cookie")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value for the console's path; `None` removes the cookie.
fn set_cookie(req: &HttpRequest, name: &str, value: Option<&str>, seconds: u32) -> String {
    let secure = if req.connection_info().scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let (value, age) = value.map_or(("", 0), |v| (v, seconds));
    format!("{name}={value}; Path={PREFIX}; Max-Age={age}; HttpOnly; SameSite=Strict{secure}")
}

/// A value a cookie can carry as it is (API keys are made of such characters).
fn cookie_safe(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 256
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// 32 random bytes, hex.
fn random_token() -> String {
    let mut bytes = [0_u8; 32];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        // No randomness: the form cannot be posted (an empty token never matches).
        return String::new();
    }
    hex::encode(bytes)
}

fn login_form(token: &str, error: Option<&str>) -> maud::Markup {
    html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // No favicon request: the icon is empty.
                link rel="icon" href="data:,";
                title { "Sign in · insta-router" }
                link rel="stylesheet" href=(crate::assets::url("console.css"));
            }
            body {
                main id="main" class="narrow" {
                    h1 { "insta-router console" }
                    p { "Sign in with an API key. An admin key sees every account; an account key sees its own." }
                    @if let Some(error) = error {
                        p class="error" role="alert" id="login-error" { (error) }
                    }
                    form method="post" action={ (PREFIX) "/login" } {
                        input type="hidden" name="csrf" value=(token);
                        label for="key" { "API key" }
                        input id="key" name="key" type="password" autocomplete="current-password"
                            required autofocus aria-describedby="key-help";
                        p id="key-help" class="help" {
                            "A development server prints its first admin key once when it starts on an empty database; make keys with "
                            code { "insta-router api-key create" } "."
                        }
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

#[get("/login")]
async fn login_page(req: HttpRequest) -> HttpResponse {
    let token = random_token();
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((SET_COOKIE, set_cookie(&req, LOGIN, Some(&token), 3600)))
        .body(login_form(&token, None).into_string())
}

#[derive(Deserialize)]
struct LoginForm {
    key: String,
    csrf: String,
}

#[post("/login")]
async fn login(
    req: HttpRequest,
    state: Data<State>,
    form: Form<LoginForm>,
) -> Result<HttpResponse, Failure> {
    same_origin(&req)?;
    let expected = cookie(&req, LOGIN).unwrap_or_default();
    if !same(&form.csrf, &expected) {
        return Err(Failure::Forged);
    }
    let key = form.key.trim();
    let refused = |message: &str| {
        let token = random_token();
        HttpResponse::Unauthorized()
            .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
            .insert_header((SET_COOKIE, set_cookie(&req, LOGIN, Some(&token), 3600)))
            .body(login_form(&token, Some(message)).into_string())
    };
    if !cookie_safe(key) {
        return Ok(refused("That is not an API key."));
    }
    match state.app.keys.authenticate(key).await {
        Ok(found) => {
            tracing::info!(key_id = %found.id, "console: signed in");
            Ok(HttpResponse::SeeOther()
                .insert_header((LOCATION, PREFIX))
                .append_header((
                    SET_COOKIE,
                    set_cookie(&req, SESSION, Some(key), SESSION_SECONDS),
                ))
                .append_header((SET_COOKIE, set_cookie(&req, LOGIN, None, 0)))
                .finish())
        }
        Err(AuthError::Unknown) => Ok(refused("No such API key.")),
        Err(AuthError::Revoked) => Ok(refused("This API key has been revoked.")),
        Err(AuthError::Storage(e)) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    pub(crate) csrf: String,
}

#[post("/logout")]
async fn logout(
    req: HttpRequest,
    session: Session,
    form: Form<CsrfForm>,
) -> Result<HttpResponse, Failure> {
    session.check(&req, &form.csrf)?;
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, format!("{PREFIX}/login")))
        .insert_header((SET_COOKIE, set_cookie(&req, SESSION, None, 0)))
        .finish())
}
