//! The web UI: static HTML, CSS and JavaScript modules embedded into the binary (no build step)
//! and served on the query port beside the API.
//!
//! [`router`] answers the Jaeger UI's page paths (`/`, `/search`, `/trace/{id}`, `/dependencies`)
//! and `/compare` with the one app shell, so links built for Jaeger (from Grafana, say) open here,
//! and serves the assets under `/static/{version}/{file}`, where `version` is a hash of every
//! asset: a changed binary gets new URLs, so assets are cached for a year as immutable and the
//! shell is revalidated with its ETag.
//!
//! What this crate must not do: claim `/api/...`, `/metrics`, `/healthz`, or install a fallback
//! (the query port's unknown paths must stay plain 404s). The pages read only the public query API.

mod assets;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub use assets::{asset, version, Asset};

/// Routes of the web UI. The query port merges these beside the API (`/api/...`).
pub fn router() -> Router {
    Router::new()
        .route("/", get(shell))
        .route("/search", get(shell))
        .route("/trace/{trace_id}", get(shell))
        .route("/dependencies", get(shell))
        .route("/compare", get(shell))
        .route("/favicon.ico", get(favicon))
        .route("/static/{version}/{*file}", get(static_file))
}

/// The app shell: every page path gets it; the scripts pick the page from the URL.
async fn shell(headers: HeaderMap) -> Response {
    let shell = assets::shell();
    let etag = format!("\"{}\"", shell.hash);
    cached(
        &headers,
        &etag,
        "text/html; charset=utf-8",
        "no-cache",
        shell.body.clone(),
    )
}

async fn favicon() -> Response {
    match asset("favicon.svg") {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            a.body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn static_file(Path((wanted, file)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let Some(a) = asset(&file) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no UI asset named {file:?}\n"),
        )
            .into_response();
    };
    // An old page may still ask for another version: answer with today's file, uncached.
    let cache = if wanted == version() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let etag = format!("\"{}\"", a.hash);
    cached(&headers, &etag, a.content_type, cache, a.body.to_vec())
}

/// A 200 with the body, or a 304 when the client already holds `etag`.
fn cached(
    headers: &HeaderMap,
    etag: &str,
    content_type: &'static str,
    cache_control: &'static str,
    body: Vec<u8>,
) -> Response {
    let etag_value = HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"0\""));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let common = [
        (header::ETAG, etag_value),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'",
                ),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests;
