//! Route tests: page paths get the shell, assets their content types and caching, and the UI
//! never answers for the API's paths.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// The UI merged beside stand-ins for the query API, as the binary mounts them.
fn app() -> Router {
    Router::new()
        .route("/api/services", get(|| async { "api" }))
        .route("/metrics", get(|| async { "metrics" }))
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::router())
}

async fn get_path(path: &str, if_none_match: Option<&str>) -> Response {
    let mut request = Request::get(path);
    if let Some(tag) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    let request = request.body(Body::empty()).expect("request");
    app().oneshot(request).await.expect("infallible")
}

async fn text(response: Response) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn header_of(response: &Response, name: header::HeaderName) -> &str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn page_paths_serve_the_shell() {
    for path in [
        "/",
        "/search",
        "/search?service=frontend&limit=20",
        "/trace/4bf92f3577b34da6a3ce929d0e0e4736",
        "/trace/4bf92f3577b34da6a3ce929d0e0e4736?uiFind=00f067aa0ba902b7",
        "/dependencies",
        "/compare",
    ] {
        let response = get_path(path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header_of(&response, header::CONTENT_TYPE),
            "text/html; charset=utf-8",
            "{path}"
        );
        assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
        let body = text(response).await;
        assert!(body.starts_with("<!doctype html>"), "{path}: {body}");
        let script = format!("/static/{}/app.js", crate::version());
        assert!(body.contains(&script), "{path} should load {script}");
        assert!(!body.contains("{{static}}"));
    }
}

#[tokio::test]
async fn shell_revalidates_with_its_etag() {
    let first = get_path("/", None).await;
    let etag = header_of(&first, header::ETAG).to_owned();
    assert!(etag.starts_with('"') && etag.len() > 2, "{etag}");
    let again = get_path("/search", Some(&etag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(text(again).await.is_empty());
}

#[tokio::test]
async fn assets_have_content_types_and_long_cache() {
    let version = crate::version();
    for (file, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("timeline.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let response = get_path(&format!("/static/{version}/{file}"), None).await;
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        assert_eq!(header_of(&response, header::CONTENT_TYPE), content_type);
        assert_eq!(
            header_of(&response, header::CACHE_CONTROL),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(
            header_of(&response, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff"
        );
        let etag = header_of(&response, header::ETAG).to_owned();
        assert!(!text(response).await.is_empty(), "{file} is empty");
        let again = get_path(&format!("/static/{version}/{file}"), Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{file}");
    }
    // A page from an older binary still gets today's file, but not cached for a year.
    let stale = get_path("/static/000000000000/app.js", None).await;
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(header_of(&stale, header::CACHE_CONTROL), "no-cache");
}

#[tokio::test]
async fn unknown_assets_are_404() {
    let version = crate::version();
    for path in [
        format!("/static/{version}/nope.js"),
        format!("/static/{version}/../Cargo.toml"),
        "/static/app.js".to_owned(),
    ] {
        let response = get_path(&path, None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn api_metrics_and_health_are_not_shadowed() {
    for (path, body) in [
        ("/api/services", "api"),
        ("/metrics", "metrics"),
        ("/healthz", "ok"),
    ] {
        let response = get_path(path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(text(response).await, body, "{path}");
    }
    // No fallback: an unknown API path stays a 404, not the HTML shell.
    for path in ["/api/nope", "/api/traces/abc/extra", "/whatever"] {
        let response = get_path(path, None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(!text(response).await.contains("<!doctype html>"), "{path}");
    }
}
