//! The browser app: its static assets (embedded at compile time from `src/http/webapp/`, so `foundry serve` is all a
//! newcomer runs) and the client-side routes that answer with the app shell.
//!
//! Named `webapp` rather than `web` because the web layer already imports `actix_web::web` under that name.
//!
//! Every asset carries a strong ETag (a hash of its bytes computed at compile time) and `Cache-Control: no-cache`:
//! the URLs are not versioned, so browsers must revalidate, and a matching `If-None-Match` costs a 304 with no body.
//! Unknown paths under `/v1` never reach these routes, so API clients keep their JSON 404.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

/// One embedded file.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: u64,
}

/// 64-bit FNV-1a, evaluated at compile time: the ETag only needs to change when the bytes do, not to resist forgery.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

const fn asset(body: &'static [u8], content_type: &'static str) -> Asset {
    Asset { body, content_type, etag: fnv1a(body) }
}

static INDEX: Asset = asset(include_bytes!("webapp/index.html"), "text/html; charset=utf-8");
static APP_JS: Asset = asset(include_bytes!("webapp/app.js"), "text/javascript; charset=utf-8");
static INSPECTOR_JS: Asset = asset(include_bytes!("webapp/inspector.js"), "text/javascript; charset=utf-8");
static APP_CSS: Asset = asset(include_bytes!("webapp/app.css"), "text/css; charset=utf-8");
static ICON: Asset = asset(include_bytes!("webapp/icon.svg"), "image/svg+xml");

fn serve(req: &HttpRequest, asset: &'static Asset) -> HttpResponse {
    let etag = format!("\"{:016x}\"", asset.etag);
    let matches =
        req.headers().get_all(header::IF_NONE_MATCH).filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
            |tag| {
                let tag = tag.trim();
                tag == "*" || tag.trim_start_matches("W/") == etag
            },
        );
    let mut res = if matches { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    res.insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        // The shell and its scripts never need to be framed by another site.
        .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")));
    if matches {
        return res.finish();
    }
    res.content_type(asset.content_type).body(asset.body)
}

async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, &INDEX)
}

async fn app_js(req: HttpRequest) -> HttpResponse {
    serve(&req, &APP_JS)
}

async fn inspector_js(req: HttpRequest) -> HttpResponse {
    serve(&req, &INSPECTOR_JS)
}

async fn app_css(req: HttpRequest) -> HttpResponse {
    serve(&req, &APP_CSS)
}

async fn icon(req: HttpRequest) -> HttpResponse {
    serve(&req, &ICON)
}

/// The app's routes: its assets, and the shell for every path the client-side router owns (so a reload or a shared
/// link lands in the right screen).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/sign-in", web::get().to(index))
        .route("/settings", web::get().to(index))
        .route("/orgs", web::get().to(index))
        .route("/orgs/{rest:.*}", web::get().to(index))
        .route("/admin", web::get().to(index))
        .route("/admin/{rest:.*}", web::get().to(index))
        .route("/app.js", web::get().to(app_js))
        .route("/inspector.js", web::get().to(inspector_js))
        .route("/app.css", web::get().to(app_css))
        .route("/icon.svg", web::get().to(icon))
        .route("/favicon.ico", web::get().to(icon));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_follow_the_bytes() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert_ne!(INDEX.etag, APP_JS.etag);
    }
}
