//! The operator console at `/console`: server-rendered pages over the same use cases as the
//! REST API, for people rather than programs.
//!
//! - Pages are HTML made by [`maud`] (escaped by default) and work without JavaScript
//!   wherever they only show data; forms are plain `POST`s answered by a redirect.
//! - Sign-in takes an API key and keeps it in an HttpOnly, SameSite=Strict cookie scoped to
//!   `/console`; every request checks it again against the database, so a revoked key is
//!   signed out at once. Every form carries a CSRF token derived from the session.
//! - Every asset (the stylesheet, the script, uPlot for the charts) is embedded in the binary,
//!   and the Content-Security-Policy lets a page load nothing from another host.
//! - An account key sees its own account only, exactly as in the REST API.

mod accounts;
mod assets;
mod conversations;
mod dashboard;
mod deliveries;
mod failure;
mod layout;
mod rules;
mod session;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::web::{self, ServiceConfig};
use insta_router_app::App;

pub(crate) use failure::Failure;

/// Where the console is served.
pub const PREFIX: &str = "/console";

/// What a console page may load: its own scripts, styles and images only; no frames, no
/// forms posting elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Shared state of the console's handlers.
pub(crate) struct State {
    pub(crate) app: Arc<App>,
}

/// Registers the console under [`PREFIX`].
pub fn configure(app: Arc<App>) -> impl FnOnce(&mut ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::scope(PREFIX)
                .app_data(web::Data::new(State { app }))
                .app_data(
                    web::FormConfig::default()
                        .limit(64 * 1024)
                        .error_handler(|err, _| Failure::Invalid(err.to_string()).into()),
                )
                .app_data(
                    web::QueryConfig::default()
                        .error_handler(|err, _| Failure::Invalid(err.to_string()).into()),
                )
                .wrap(from_fn(headers))
                .configure(assets::routes)
                .configure(session::routes)
                .configure(dashboard::routes)
                .configure(conversations::routes)
                .configure(deliveries::routes)
                .configure(rules::routes)
                .configure(accounts::routes)
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(Failure::NotFound("no such page".to_owned()))
                })),
        );
    }
}

/// The console's own headers: the Content-Security-Policy, and no caching of pages (they
/// show private data); assets set their own lifetime.
async fn headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}
