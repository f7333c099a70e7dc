//! The console's files, embedded in the binary: its stylesheet and script, and uPlot 1.6.32
//! (MIT, vendored from npm with its licence beside it) for the charts.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::web::Path;
use actix_web::{HttpResponse, get};

use crate::{Failure, PREFIX};

/// Name, content type, bytes.
const FILES: [(&str, &str, &[u8]); 5] = [
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/console.js"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/uPlot.min.css"),
    ),
    (
        "uPlot.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/uPlot.LICENSE"),
    ),
];

pub(crate) fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(asset);
}

/// The address of an embedded file; the version in it changes with every release, so the
/// file can be cached for a day without serving a stale one after an upgrade.
pub(crate) fn url(name: &str) -> String {
    format!("{PREFIX}/assets/{name}?v={}", env!("CARGO_PKG_VERSION"))
}

#[get("/assets/{name}")]
async fn asset(name: Path<String>) -> Result<HttpResponse, Failure> {
    let (_, kind, bytes) = FILES
        .iter()
        .find(|(n, _, _)| *n == name.as_str())
        .ok_or_else(|| Failure::NotFound(format!("no file {name}")))?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, *kind))
        .insert_header((CACHE_CONTROL, "public, max-age=86400"))
        .body(*bytes))
}
