//! The HTTP query API over the store: Jaeger's v1 JSON API (what the Jaeger UI and Grafana's
//! Jaeger data source call) and Jaeger's api_v3 JSON gateway (OTLP/JSON traces).
//!
//! [`router`] serves every route under `/api/`; the binary mounts it on the query port and adds
//! `/metrics`, `/healthz` and the UI itself, so this crate claims neither `/` nor a fallback.
//! Each request is timed (`meshtrace_query_duration_seconds{route}`) and counted
//! (`meshtrace_query_requests_total{route,status}`).
//!
//! Modules: [`params`] turns query strings into store queries (with [`duration`] for Go durations
//! and [`rfc3339`] for timestamps); [`adjust`] applies Jaeger's trace adjusters; [`jaeger_json`]
//! builds the Jaeger UI JSON; [`v1`] and [`v3`] are the handlers; [`error`] renders failures.
//!
//! What this crate must not do: write to the store, or know how the store lays data out.

pub mod adjust;
pub mod duration;
pub mod error;
pub mod jaeger_json;
pub mod params;
pub mod rfc3339;
mod v1;
mod v3;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use store::Store;

/// Every query route, with request metrics, over `store`.
pub fn router(store: Store) -> Router {
    Router::new()
        .merge(v1::routes())
        .merge(v3::routes())
        .route_layer(middleware::from_fn(record_metrics))
        .with_state(store)
}

/// Times and counts each request under its route template (`/api/traces/{trace_id}`), so ids in
/// paths do not explode the label set.
async fn record_metrics(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route = matched
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::histogram!("meshtrace_query_duration_seconds", "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "meshtrace_query_requests_total",
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}

/// The wall clock in Unix nanoseconds (0 if the clock is before 1970).
pub(crate) fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
