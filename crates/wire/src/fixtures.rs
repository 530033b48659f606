//! Test fixtures shared by the format tests: a batch that uses every field the model has.

use model::{
    AnyValue, Event, KeyValue, Link, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanId,
    SpanKind, Status, StatusCode, TraceBatch, TraceId,
};

pub(crate) fn trace_id() -> TraceId {
    "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap()
}

/// A batch exercising every field: nested values, bytes, events, links, status, dropped counts.
pub(crate) fn rich_batch() -> TraceBatch {
    let nested = AnyValue::KvList(vec![
        KeyValue::new("inner", AnyValue::Array(vec![1i64.into(), "x".into()])),
        KeyValue::new("raw", AnyValue::Bytes(vec![0, 1, 254, 255])),
        KeyValue::new("empty", AnyValue::Array(vec![])),
    ]);
    let root = Span {
        trace_id: trace_id(),
        span_id: SpanId::from_u64(0x00f0_67aa_0ba9_02b7),
        parent_span_id: None,
        trace_state: "ot=th:8;rv:0123456789abcd".into(),
        flags: 0x301,
        name: "GET /api/items".into(),
        kind: SpanKind::Server,
        start_unix_nano: 1_700_000_000_123_456_789,
        end_unix_nano: 1_700_000_000_223_456_789,
        attributes: vec![
            KeyValue::new("http.method", "GET"),
            KeyValue::new("http.status_code", 500i64),
            KeyValue::new("ratio", 0.25f64),
            KeyValue::new("cached", false),
            KeyValue::new("big", i64::MIN),
            KeyValue::new("nested", nested),
        ],
        dropped_attributes_count: 3,
        events: vec![Event {
            time_unix_nano: 1_700_000_000_200_000_000,
            name: "exception".into(),
            attributes: vec![KeyValue::new("exception.message", "boom")],
            dropped_attributes_count: 1,
        }],
        dropped_events_count: 2,
        links: vec![Link {
            trace_id: TraceId::from_halves(0, 42),
            span_id: SpanId::from_u64(7),
            trace_state: "k=v".into(),
            attributes: vec![KeyValue::new("link.kind", "follows")],
            dropped_attributes_count: 4,
            flags: 1,
        }],
        dropped_links_count: 5,
        status: Status {
            code: StatusCode::Error,
            message: "upstream failed".into(),
        },
    };
    let child = Span {
        trace_id: trace_id(),
        span_id: SpanId::from_u64(2),
        parent_span_id: Some(root.span_id),
        name: "SELECT".into(),
        kind: SpanKind::Client,
        start_unix_nano: 1_700_000_000_130_000_000,
        end_unix_nano: 1_700_000_000_140_000_000,
        status: Status {
            code: StatusCode::Ok,
            message: String::new(),
        },
        ..Default::default()
    };
    let plain = Span {
        trace_id: TraceId::from_halves(0, 0x463a_c35c_9f64_13ad),
        span_id: SpanId::from_u64(3),
        name: "internal".into(),
        kind: SpanKind::Internal,
        start_unix_nano: 5,
        end_unix_nano: 6,
        ..Default::default()
    };
    TraceBatch {
        resource_spans: vec![
            ResourceSpans {
                resource: Resource {
                    attributes: vec![
                        KeyValue::new("service.name", "frontend"),
                        KeyValue::new("host.name", "node-1"),
                    ],
                    dropped_attributes_count: 1,
                },
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                scope_spans: vec![
                    ScopeSpans {
                        scope: Scope {
                            name: "io.opentelemetry.http".into(),
                            version: "1.2.3".into(),
                            attributes: vec![KeyValue::new("scope.attr", true)],
                            dropped_attributes_count: 2,
                        },
                        schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
                        spans: vec![root, child],
                    },
                    ScopeSpans::default(),
                ],
            },
            ResourceSpans {
                resource: Resource {
                    attributes: vec![KeyValue::new("service.name", "backend")],
                    dropped_attributes_count: 0,
                },
                schema_url: String::new(),
                scope_spans: vec![ScopeSpans {
                    spans: vec![plain],
                    ..Default::default()
                }],
            },
        ],
    }
}
