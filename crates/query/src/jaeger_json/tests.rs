//! Unit tests of the OTLP → Jaeger JSON conversion.

use std::sync::Arc;

use model::{
    Event, KeyValue, Link, Resource, Scope, Span as ModelSpan, SpanId, SpanKind, SpanRecord,
    Status, StatusCode, TraceId,
};
use serde_json::{json, Value};

use super::*;
use crate::adjust::{adjust, AdjustedSpan};

fn resource(svc: &str, extra: &[(&str, &str)]) -> Arc<Resource> {
    let mut attributes = vec![KeyValue::new("service.name", svc)];
    attributes.extend(extra.iter().map(|(k, v)| KeyValue::new(*k, *v)));
    Arc::new(Resource {
        attributes,
        ..Default::default()
    })
}

fn record(res: &Arc<Resource>, span: ModelSpan) -> SpanRecord {
    SpanRecord {
        resource: Arc::clone(res),
        scope: Arc::new(Scope::default()),
        span,
    }
}

fn span(trace: TraceId, id: u64, parent: Option<u64>) -> ModelSpan {
    ModelSpan {
        trace_id: trace,
        span_id: SpanId::from_u64(id),
        parent_span_id: parent.map(SpanId::from_u64),
        name: format!("op{id}"),
        start_unix_nano: 1_700_000_000_123_456_789,
        end_unix_nano: 1_700_000_000_125_456_789,
        ..Default::default()
    }
}

fn plain(records: Vec<SpanRecord>) -> Vec<AdjustedSpan> {
    records
        .into_iter()
        .map(|record| AdjustedSpan {
            record,
            warnings: Vec::new(),
        })
        .collect()
}

fn to_value(trace_id: TraceId, spans: &[AdjustedSpan]) -> Value {
    serde_json::to_value(trace_to_jaeger(trace_id, spans)).unwrap()
}

#[test]
fn full_span_shape() {
    let tid = TraceId::from_halves(0x4bf92f3577b34da6, 0xa3ce929d0e0e4736);
    let res = resource("checkout", &[("host.name", "node-1"), ("ip", "10.0.0.1")]);
    let mut s = span(tid, 0x00f067aa0ba902b7, Some(0x1111));
    s.name = "GET /checkout".into();
    s.kind = SpanKind::Server;
    s.flags = 0x301;
    s.trace_state = "ot=th:8".into();
    s.status = Status {
        code: StatusCode::Error,
        message: "boom".into(),
    };
    s.attributes = vec![
        KeyValue::new("http.status_code", 500i64),
        KeyValue::new("telemetry.sdk.language", "rust"),
    ];
    s.dropped_attributes_count = 2;
    s.events = vec![Event {
        time_unix_nano: 1_700_000_000_124_000_000,
        name: "exception".into(),
        attributes: vec![
            KeyValue::new("exception.type", "IOError"),
            KeyValue::new("attempt", 3i64),
        ],
        dropped_attributes_count: 0,
    }];
    s.links = vec![Link {
        trace_id: TraceId::from_halves(0, 0xfeed),
        span_id: SpanId::from_u64(0xbeef),
        ..Default::default()
    }];
    let mut rec = record(&res, s);
    rec.scope = Arc::new(Scope {
        name: "io.opentelemetry.http".into(),
        version: "1.2.3".into(),
        ..Default::default()
    });
    let mut adjusted = plain(vec![rec]);
    adjusted[0].warnings = vec!["w1".into()];

    assert_eq!(
        to_value(tid, &adjusted),
        json!({
            "traceID": "4bf92f3577b34da6a3ce929d0e0e4736",
            "spans": [{
                "traceID": "4bf92f3577b34da6a3ce929d0e0e4736",
                "spanID": "00f067aa0ba902b7",
                "flags": 1,
                "operationName": "GET /checkout",
                "references": [
                    {"refType": "CHILD_OF", "traceID": "4bf92f3577b34da6a3ce929d0e0e4736", "spanID": "0000000000001111"},
                    {"refType": "FOLLOWS_FROM", "traceID": "000000000000feed", "spanID": "000000000000beef"}
                ],
                "startTime": 1_700_000_000_123_456u64,
                "duration": 2000,
                "tags": [
                    {"key": "error", "type": "bool", "value": true},
                    {"key": "http.status_code", "type": "int64", "value": 500},
                    {"key": "otel.dropped_attributes_count", "type": "int64", "value": 2},
                    {"key": "otel.scope.name", "type": "string", "value": "io.opentelemetry.http"},
                    {"key": "otel.scope.version", "type": "string", "value": "1.2.3"},
                    {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                    {"key": "otel.status_description", "type": "string", "value": "boom"},
                    {"key": "span.kind", "type": "string", "value": "server"},
                    {"key": "w3c.tracestate", "type": "string", "value": "ot=th:8"}
                ],
                "logs": [{
                    "timestamp": 1_700_000_000_124_000u64,
                    "fields": [
                        {"key": "event", "type": "string", "value": "exception"},
                        {"key": "attempt", "type": "int64", "value": 3},
                        {"key": "exception.type", "type": "string", "value": "IOError"}
                    ]
                }],
                "processID": "p1",
                "warnings": ["w1"]
            }],
            "processes": {
                "p1": {
                    "serviceName": "checkout",
                    "tags": [
                        {"key": "host.name", "type": "string", "value": "node-1"},
                        {"key": "ip", "type": "string", "value": "10.0.0.1"},
                        {"key": "telemetry.sdk.language", "type": "string", "value": "rust"}
                    ]
                }
            },
            "warnings": null
        })
    );
}

#[test]
fn minimal_span_omits_flags_and_has_null_warnings() {
    let tid = TraceId::from_halves(0, 0x463ac35c9f6413ad);
    let res = resource("svc", &[]);
    let v = to_value(tid, &plain(vec![record(&res, span(tid, 1, None))]));
    let s = &v["spans"][0];
    assert_eq!(v["traceID"], "463ac35c9f6413ad");
    assert_eq!(s["traceID"], "463ac35c9f6413ad");
    assert_eq!(s["spanID"], "0000000000000001");
    assert!(s.get("flags").is_none());
    assert_eq!(s["references"], json!([]));
    assert_eq!(s["tags"], json!([]));
    assert_eq!(s["logs"], json!([]));
    assert_eq!(s["warnings"], Value::Null);
    assert_eq!(
        v["processes"]["p1"],
        json!({"serviceName": "svc", "tags": []})
    );
}

#[test]
fn span_kinds_and_ok_status() {
    let tid = TraceId::from_halves(0, 9);
    let res = resource("svc", &[]);
    let kinds = [
        (SpanKind::Unspecified, None),
        (SpanKind::Internal, Some("internal")),
        (SpanKind::Client, Some("client")),
        (SpanKind::Producer, Some("producer")),
        (SpanKind::Consumer, Some("consumer")),
    ];
    for (kind, want) in kinds {
        let mut s = span(tid, 1, None);
        s.kind = kind;
        s.status.code = StatusCode::Ok;
        let v = to_value(tid, &plain(vec![record(&res, s)]));
        let tags = v["spans"][0]["tags"].as_array().unwrap().clone();
        let kind_tag = tags.iter().find(|t| t["key"] == "span.kind");
        assert_eq!(kind_tag.map(|t| t["value"].clone()), want.map(Value::from));
        assert!(tags.contains(&json!({"key": "otel.status_code", "type": "string", "value": "OK"})));
        assert!(!tags.iter().any(|t| t["key"] == "error"));
    }
}

#[test]
fn error_status_flags_the_span_and_keeps_a_message_error_tag() {
    let tid = TraceId::from_halves(0, 9);
    let res = resource("svc", &[]);
    let mut s = span(tid, 1, None);
    s.status.code = StatusCode::Error;
    s.attributes = vec![KeyValue::new("error", "timeout")];
    let v = to_value(tid, &plain(vec![record(&res, s)]));
    let errors: Vec<_> = v["spans"][0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["key"] == "error")
        .cloned()
        .collect();
    assert_eq!(
        errors,
        [
            json!({"key": "error", "type": "string", "value": "timeout"}),
            json!({"key": "error", "type": "bool", "value": true})
        ]
    );
}

#[test]
fn links_to_the_parent_and_child_of_links() {
    let tid = TraceId::from_halves(0, 9);
    let res = resource("svc", &[]);
    let mut s = span(tid, 3, Some(1));
    s.links = vec![
        Link {
            trace_id: tid,
            span_id: SpanId::from_u64(1),
            ..Default::default()
        },
        Link {
            trace_id: tid,
            span_id: SpanId::from_u64(2),
            attributes: vec![KeyValue::new("opentracing.ref_type", "child_of")],
            ..Default::default()
        },
        Link::default(),
    ];
    let v = to_value(tid, &plain(vec![record(&res, s)]));
    assert_eq!(
        v["spans"][0]["references"],
        // The link to the parent made it FOLLOWS_FROM; the CHILD_OF link then moves first, as
        // Jaeger's ParentReference adjuster does; the invalid (zero) link is dropped.
        json!([
            {"refType": "CHILD_OF", "traceID": "0000000000000009", "spanID": "0000000000000002"},
            {"refType": "FOLLOWS_FROM", "traceID": "0000000000000009", "spanID": "0000000000000001"}
        ])
    );
    // Without a parent, the first same-trace CHILD_OF link moves to the front.
    let mut s = span(tid, 4, None);
    s.links = vec![
        Link {
            trace_id: TraceId::from_halves(0, 0x77),
            span_id: SpanId::from_u64(5),
            ..Default::default()
        },
        Link {
            trace_id: tid,
            span_id: SpanId::from_u64(2),
            attributes: vec![KeyValue::new("opentracing.ref_type", "child_of")],
            ..Default::default()
        },
    ];
    let v = to_value(tid, &plain(vec![record(&res, s)]));
    assert_eq!(v["spans"][0]["references"][0]["spanID"], "0000000000000002");
    assert_eq!(
        v["spans"][0]["references"][1]["traceID"],
        "0000000000000077"
    );
}

#[test]
fn event_attribute_named_event_wins_and_nameless_events_have_no_event_field() {
    let tid = TraceId::from_halves(0, 9);
    let res = resource("svc", &[]);
    let mut s = span(tid, 1, None);
    s.events = vec![
        Event {
            time_unix_nano: 5_000,
            name: "ignored".into(),
            attributes: vec![
                KeyValue::new("z", 1i64),
                KeyValue::new("event", "from-attr"),
            ],
            dropped_attributes_count: 1,
        },
        Event {
            time_unix_nano: 6_000,
            name: String::new(),
            attributes: vec![KeyValue::new("message", "hi")],
            dropped_attributes_count: 0,
        },
    ];
    let v = to_value(tid, &plain(vec![record(&res, s)]));
    assert_eq!(
        v["spans"][0]["logs"],
        json!([
            {"timestamp": 5, "fields": [
                {"key": "event", "type": "string", "value": "from-attr"},
                {"key": "otel.dropped_attributes_count", "type": "int64", "value": 1},
                {"key": "z", "type": "int64", "value": 1}
            ]},
            {"timestamp": 6, "fields": [{"key": "message", "type": "string", "value": "hi"}]}
        ])
    );
}

#[test]
fn processes_are_deduplicated_in_order_of_first_appearance() {
    let tid = TraceId::from_halves(0, 9);
    let a = resource("a", &[("host.name", "h1")]);
    let a_same = resource("a", &[("host.name", "h1")]);
    let a_other_host = resource("a", &[("host.name", "h2")]);
    let b = resource("b", &[]);
    let spans = plain(vec![
        record(&b, span(tid, 1, None)),
        record(&a, span(tid, 2, Some(1))),
        record(&a_same, span(tid, 3, Some(2))),
        record(&a_other_host, span(tid, 4, Some(2))),
        record(&b, span(tid, 5, Some(4))),
    ]);
    let v = to_value(tid, &spans);
    let ids: Vec<_> = v["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["processID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["p1", "p2", "p2", "p3", "p1"]);
    let text = serde_json::to_string(&trace_to_jaeger(tid, &spans)).unwrap();
    let order: Vec<_> = ["\"p1\":", "\"p2\":", "\"p3\":"]
        .iter()
        .map(|k| text.find(k).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert_eq!(v["processes"]["p3"]["tags"][0]["value"], "h2");
    // A resource without service.name is reported as unknown_service.
    let anon = Arc::new(Resource::default());
    let v = to_value(tid, &plain(vec![record(&anon, span(tid, 1, None))]));
    assert_eq!(v["processes"]["p1"]["serviceName"], "unknown_service");
}

#[test]
fn shared_zipkin_span_ids_become_unique_in_json() {
    // Envoy-style: 64-bit ids, client and server halves share span id 0xb7.
    let tid = TraceId::from_halves(0, 0x463ac35c9f6413ad);
    let edge = resource("edge", &[]);
    let app = resource("app", &[]);
    let mut client = span(tid, 0xb7, Some(0xa1));
    client.kind = SpanKind::Client;
    let mut server = span(tid, 0xb7, Some(0xa1));
    server.kind = SpanKind::Server;
    server.attributes = vec![KeyValue::new("zipkin.shared", true)];
    server.start_unix_nano += 100;
    let root = span(tid, 0xa1, None);
    let adjusted = adjust(vec![
        record(&app, server),
        record(&edge, client),
        record(&edge, root),
    ]);
    let v = to_value(tid, &adjusted);
    let spans = v["spans"].as_array().unwrap();
    let ids: std::collections::HashSet<_> = spans.iter().map(|s| s["spanID"].clone()).collect();
    assert_eq!(ids.len(), 3);
    let server = spans
        .iter()
        .find(|s| {
            s["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["value"] == "server")
        })
        .unwrap();
    assert_ne!(server["spanID"], "00000000000000b7");
    assert_eq!(
        server["references"],
        json!([{"refType": "CHILD_OF", "traceID": "463ac35c9f6413ad", "spanID": "00000000000000b7"}])
    );
    assert_eq!(server["warnings"], Value::Null);
    assert!(server["tags"]
        .as_array()
        .unwrap()
        .contains(&json!({"key": "zipkin.shared", "type": "bool", "value": true})));
}
