#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use model::{
    AnyValue, Event, KeyValue, Link, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanId,
    SpanKind, SpanRecord, Status, StatusCode, TraceBatch, TraceId,
};
use store::StoreConfig;

pub fn config(dir: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.block_max_age = Duration::from_secs(3600);
    c.retention_interval = Duration::from_secs(3600);
    c
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

pub fn tid(n: u64) -> TraceId {
    TraceId::from_halves(0xabc, n)
}

pub fn span(trace: u64, id: u64, parent: Option<u64>, name: &str, start: u64, dur: u64) -> Span {
    Span {
        trace_id: tid(trace),
        span_id: SpanId::from_u64(id),
        parent_span_id: parent.map(SpanId::from_u64),
        name: name.into(),
        kind: SpanKind::Server,
        start_unix_nano: start,
        end_unix_nano: start + dur,
        ..Default::default()
    }
}

pub fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![
            KeyValue::new("service.name", service),
            KeyValue::new("host.name", "node-1"),
        ],
        dropped_attributes_count: 0,
    }
}

pub fn batch(service: &str, spans: Vec<Span>) -> TraceBatch {
    TraceBatch {
        resource_spans: vec![ResourceSpans {
            resource: resource(service),
            schema_url: String::new(),
            scope_spans: vec![ScopeSpans {
                scope: Scope {
                    name: "test-lib".into(),
                    version: "1.0".into(),
                    ..Default::default()
                },
                schema_url: String::new(),
                spans,
            }],
        }],
    }
}

/// A span using every field of the model, with nested and typed values.
pub fn rich_span(trace: u64, id: u64, start: u64) -> Span {
    Span {
        trace_id: tid(trace),
        span_id: SpanId::from_u64(id),
        parent_span_id: Some(SpanId::from_u64(id + 1000)),
        trace_state: "vendor=a,other=b".into(),
        flags: 0x101,
        name: "GET /api/items/{id}".into(),
        kind: SpanKind::Client,
        start_unix_nano: start,
        end_unix_nano: start + 1_234_567,
        attributes: vec![
            KeyValue::new("http.method", "GET"),
            KeyValue::new("http.status_code", 503i64),
            KeyValue::new("ratio", 1.0f64),
            KeyValue::new("tiny", 5e-324f64),
            KeyValue::new("flag", false),
            KeyValue::new("raw", AnyValue::Bytes(vec![0, 1, 2, 255])),
            KeyValue::new(
                "list",
                AnyValue::Array(vec![1i64.into(), 2.5f64.into(), "three".into()]),
            ),
            KeyValue::new(
                "map",
                AnyValue::KvList(vec![
                    KeyValue::new("inner", AnyValue::KvList(vec![KeyValue::new("deep", 7i64)])),
                    KeyValue::new("quote\"d", "line\nbreak"),
                ]),
            ),
            KeyValue::new("error", true),
        ],
        dropped_attributes_count: 2,
        events: vec![
            Event {
                time_unix_nano: start + 10,
                name: "exception".into(),
                attributes: vec![
                    KeyValue::new("exception.type", "Timeout"),
                    KeyValue::new("attempt", 3i64),
                ],
                dropped_attributes_count: 1,
            },
            Event {
                time_unix_nano: start + 20,
                name: "retry".into(),
                ..Default::default()
            },
        ],
        dropped_events_count: 4,
        links: vec![Link {
            trace_id: tid(999),
            span_id: SpanId::from_u64(77),
            trace_state: "k=v".into(),
            attributes: vec![KeyValue::new("link.kind", "follows")],
            dropped_attributes_count: 5,
            flags: 1,
        }],
        dropped_links_count: 6,
        status: Status {
            code: StatusCode::Error,
            message: "upstream timed out".into(),
        },
    }
}

pub fn rich_batch(trace: u64, start: u64) -> TraceBatch {
    TraceBatch {
        resource_spans: vec![ResourceSpans {
            resource: Resource {
                attributes: vec![
                    KeyValue::new("service.name", "checkout"),
                    KeyValue::new("k8s.pod.uid", AnyValue::Bytes(vec![9, 8, 7])),
                    KeyValue::new("replicas", 3i64),
                ],
                dropped_attributes_count: 3,
            },
            schema_url: String::new(),
            scope_spans: vec![ScopeSpans {
                scope: Scope {
                    name: "io.opentelemetry.http".into(),
                    version: "2.1.0".into(),
                    attributes: vec![KeyValue::new("scope.attr", 1.5f64)],
                    dropped_attributes_count: 7,
                },
                schema_url: String::new(),
                spans: vec![rich_span(trace, 1, start), rich_span(trace, 2, start + 5)],
            }],
        }],
    }
}

/// Records sorted the way the store returns a trace.
pub fn sorted(mut recs: Vec<SpanRecord>) -> Vec<SpanRecord> {
    recs.sort_by_key(|r| (r.span.start_unix_nano, r.span.span_id));
    recs
}

/// Waits until `f` holds, for at most `secs` seconds.
pub async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

pub fn wal_segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

pub fn block_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("blocks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}
