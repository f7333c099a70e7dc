//! The OpenAPI document, Swagger UI at `/docs/` and ReDoc at `/redoc`, all served by the
//! binary itself: no page loads anything from a CDN.

use actix_web::{HttpResponse, web};
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Response,
    ResponseBuilder,
};
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

/// Documents on every operation the answers that come from outside its handler, with the
/// problem schema, where the operation does not say more precisely already:
/// - operations that want an API key: 401 (no usable key), 429 (rate limit), 503 (the
///   database cannot check the key);
/// - operations with a JSON body: 413, 415, 422;
/// - operations with query parameters: 422; with path parameters: 404 (an id that cannot
///   exist is not found).
pub(crate) fn complete_responses(api: &mut OpenApi) {
    for item in api.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_body = operation.request_body.is_some();
            let (mut query, mut path) = (false, false);
            for parameter in operation.parameters.iter().flatten() {
                if let RefOr::T(parameter) = parameter {
                    match parameter.parameter_in {
                        ParameterIn::Query | ParameterIn::QueryString => query = true,
                        ParameterIn::Path => path = true,
                        ParameterIn::Header | ParameterIn::Cookie => {}
                    }
                }
            }
            let mut add = |status: &str, description: &str| {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::T(problem(description)));
            };
            if secured {
                add("401", "Missing, malformed, unknown or revoked API key");
                add("429", "Too many requests for this key; see Retry-After");
                add("503", "The database is unavailable; retry later");
            }
            if has_body {
                add("413", "Body too large");
                add("415", "The body is not application/json");
                add("422", "The body is not a valid request");
            }
            if query {
                add("422", "Invalid query parameters");
            }
            if path {
                add("404", "Not found");
            }
        }
    }
}

fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}
