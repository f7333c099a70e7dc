//! The OpenAPI document, Swagger UI at `/docs/` and ReDoc at `/redoc`, all served by the
//! binary itself: no page loads anything from a CDN.

use actix_web::{HttpResponse, web};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa_swagger_ui::SwaggerUi;

const REDOC_JS: &str = include_str!("../assets/redoc/redoc.standalone.js");
const REDOC_LOGO: &str = include_str!("../assets/redoc/logo-mini.svg");
const REDOC_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>insta-router API</title>
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="/redoc/redoc.standalone.js"></script>
</body>
</html>
"#;

/// The document's fixed parts: info, tags, the bearer scheme.
pub(crate) fn base() -> OpenApi {
    let components = ComponentsBuilder::new()
        .security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key, sent as `Authorization: Bearer <key>`."))
                    .build(),
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("insta-router")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Instagram Direct Messages to your CRM. Errors are RFC 9457 \
                     `application/problem+json` documents.",
                ))
                .build(),
        )
        .components(Some(components))
        .tags(Some([
            TagBuilder::new()
                .name("accounts")
                .description(Some("Connected Instagram accounts"))
                .build(),
            TagBuilder::new()
                .name("messages")
                .description(Some(
                    "Sending through the Instagram Graph API, idempotently: each idempotency key \
                     sends at most one message",
                ))
                .build(),
            TagBuilder::new()
                .name("conversations")
                .description(Some(
                    "Conversations with their last message and unread count, their history in \
                     both directions, and marking them seen",
                ))
                .build(),
            TagBuilder::new()
                .name("deliveries")
                .description(Some(
                    "Events forwarded to CRMs: attempts, retries and replays. Each delivery is \
                     signed with Standard Webhooks headers (webhook-id, webhook-timestamp, \
                     webhook-signature) and X-Hub-Signature-256.",
                ))
                .build(),
            TagBuilder::new()
                .name("rules")
                .description(Some(
                    "Auto-reply rules per account, and a dry run that says which rule would \
                     answer a message and why the others would not",
                ))
                .build(),
            TagBuilder::new()
                .name("api-keys")
                .description(Some(
                    "API keys: admin keys act on everything, account keys on one account. A \
                     key is shown once, when made; only its SHA-256 is stored.",
                ))
                .build(),
            TagBuilder::new()
                .name("system")
                .description(Some("Service status"))
                .build(),
        ]))
        .build()
}

pub(crate) fn routes(cfg: &mut web::ServiceConfig, api: OpenApi) {
    // Swagger UI would send the spec's URL to validator.swagger.io from any host but
    // localhost: nothing a docs page loads may leave the server.
    cfg.service(
        SwaggerUi::new("/docs/{_:.*}")
            .url("/openapi.json", api)
            .config(utoipa_swagger_ui::Config::default().validator_url("none")),
    )
    .route(
        "/docs",
        web::get().to(|| async {
            HttpResponse::PermanentRedirect()
                .insert_header(("Location", "/docs/"))
                .finish()
        }),
    )
    .route(
        "/redoc",
        web::get().to(|| async {
            HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .body(REDOC_PAGE)
        }),
    )
    .route(
        "/redoc/redoc.standalone.js",
        web::get().to(|| async {
            HttpResponse::Ok()
                .content_type("text/javascript; charset=utf-8")
                .insert_header(("Cache-Control", "public, max-age=86400"))
                .body(REDOC_JS)
        }),
    )
    .route(
        "/redoc/logo-mini.svg",
        web::get().to(|| async {
            HttpResponse::Ok()
                .content_type("image/svg+xml")
                .body(REDOC_LOGO)
        }),
    );
}
