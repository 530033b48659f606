//! The router records `meshtrace_query_duration_seconds{route}` and
//! `meshtrace_query_requests_total{route,status}` under route templates, not raw paths.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use store::{Store, StoreConfig};
use tower::ServiceExt;

/// Remembers every metric registered, as `kind name{k=v,...}`.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl Capture {
    fn note(&self, kind: &str, key: &Key) {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        if let Ok(mut seen) = self.0.lock() {
            seen.push(format!("{kind} {}{{{}}}", key.name(), labels.join(",")));
        }
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.note("counter", key);
        Counter::noop()
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.note("gauge", key);
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.note("histogram", key);
        Histogram::noop()
    }
}

#[test]
fn requests_are_timed_and_counted_by_route_template() {
    let capture = Capture::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    metrics::with_local_recorder(&capture, || {
        runtime.block_on(async {
            let store = Store::open(StoreConfig::new(dir.path()))
                .await
                .expect("open store");
            let app = query::router(store);
            for uri in ["/api/traces/abc", "/api/traces/zz", "/api/v3/services"] {
                app.clone()
                    .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
                    .await
                    .expect("infallible");
            }
        })
    });
    let seen = capture.0.lock().expect("lock").clone();
    for want in [
        "histogram meshtrace_query_duration_seconds{route=/api/traces/{trace_id}}",
        "counter meshtrace_query_requests_total{route=/api/traces/{trace_id},status=404}",
        "counter meshtrace_query_requests_total{route=/api/traces/{trace_id},status=400}",
        "counter meshtrace_query_requests_total{route=/api/v3/services,status=200}",
    ] {
        assert!(seen.iter().any(|s| s == want), "{want} not in {seen:#?}");
    }
}
