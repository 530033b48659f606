//! Tests of Zipkin decoding and encoding against realistic reports.

use model::{AnyValue, KeyValue, SpanId, SpanKind, StatusCode, TraceBatch, TraceId};

use super::*;

/// What Envoy (sidecar mode, shared span context, 64-bit ids) reports for one inbound request
/// that it forwarded to a backend that failed.
const ENVOY_REPORT: &str = r#"[
  {
    "traceId": "4a1f3b2c5d6e7f80",
    "id": "0b5c7d9e1f2a3b4c",
    "parentId": "0a1b2c3d4e5f6071",
    "kind": "SERVER",
    "name": "frontend.default.svc.cluster.local:8080/*",
    "timestamp": 1700000000123456,
    "duration": 15234,
    "localEndpoint": {"serviceName": "frontend.default", "ipv4": "10.244.1.7", "port": 8080},
    "tags": {
      "component": "proxy",
      "node_id": "sidecar~10.244.1.7~frontend-7d9c4b-x2k8q.default~default.svc.cluster.local",
      "zone": "us-east-1a",
      "guid:x-request-id": "b1f6c1d0-8d3a-9f5e-a1b2-c3d4e5f60718",
      "http.url": "http://frontend:8080/api/items?limit=10",
      "http.method": "GET",
      "http.protocol": "HTTP/1.1",
      "http.status_code": "200",
      "upstream_cluster": "inbound|8080||",
      "upstream_address": "127.0.0.1:8080",
      "peer.address": "10.244.0.1",
      "request_size": "0",
      "response_size": "1234",
      "response_flags": "-"
    },
    "shared": true
  },
  {
    "traceId": "4a1f3b2c5d6e7f80",
    "id": "1c2d3e4f5a6b7c8d",
    "parentId": "0b5c7d9e1f2a3b4c",
    "kind": "CLIENT",
    "name": "backend.default.svc.cluster.local:9090/*",
    "timestamp": 1700000000125000,
    "duration": 9000,
    "localEndpoint": {"serviceName": "frontend.default", "ipv4": "10.244.1.7", "port": 8080},
    "remoteEndpoint": {"serviceName": "backend", "ipv6": "fd00::9", "port": 9090},
    "annotations": [{"timestamp": 1700000000125010, "value": "cs"}],
    "tags": {
      "component": "proxy",
      "http.status_code": "503",
      "upstream_cluster": "outbound|9090||backend.default.svc.cluster.local",
      "error": "true"
    }
  },
  {
    "traceId": "4a1f3b2c5d6e7f80",
    "id": "2d3e4f5a6b7c8d9e",
    "parentId": "1c2d3e4f5a6b7c8d",
    "kind": "SERVER",
    "name": "GET /items",
    "timestamp": 1700000000126000,
    "duration": 7000,
    "localEndpoint": {"serviceName": "backend", "ipv4": "10.244.2.9"},
    "debug": true
  }
]"#;

fn decode(s: &str) -> TraceBatch {
    let d = decode_json(s.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.rejected_spans, 0);
    assert_eq!(d.error_message, "");
    d.batch
}

fn err(s: &str) -> String {
    decode_json(s.as_bytes()).unwrap_err().to_string()
}

fn attr<'a>(span: &'a model::Span, key: &str) -> &'a AnyValue {
    span.attribute(key)
        .unwrap_or_else(|| panic!("attribute {key} missing from {:?}", span.attributes))
}

#[test]
fn envoy_report_maps_every_field() {
    let batch = decode(ENVOY_REPORT);
    assert_eq!(batch.span_count(), 3);
    // One resource per distinct local service, in the order first seen.
    assert_eq!(batch.resource_spans.len(), 2);
    let front = &batch.resource_spans[0];
    assert_eq!(
        front.resource.attributes,
        vec![KeyValue::new("service.name", "frontend.default")]
    );
    assert_eq!(front.scope_spans.len(), 1);
    assert_eq!(front.scope_spans[0].scope, model::Scope::default());
    let back = &batch.resource_spans[1];
    assert_eq!(back.resource.service_name(), "backend");

    let trace_id = TraceId::from_halves(0, 0x4a1f_3b2c_5d6e_7f80);
    let server = &front.scope_spans[0].spans[0];
    assert_eq!(server.trace_id, trace_id);
    assert!(server.trace_id.is_64bit());
    assert_eq!(
        server.span_id,
        "0b5c7d9e1f2a3b4c".parse::<SpanId>().unwrap()
    );
    assert_eq!(
        server.parent_span_id,
        Some("0a1b2c3d4e5f6071".parse::<SpanId>().unwrap())
    );
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(server.name, "frontend.default.svc.cluster.local:8080/*");
    assert_eq!(server.start_unix_nano, 1_700_000_000_123_456_000);
    assert_eq!(server.end_unix_nano, 1_700_000_000_138_690_000);
    assert_eq!(server.status, model::Status::default());
    assert_eq!(server.trace_state, "");
    assert!(server.events.is_empty() && server.links.is_empty());
    // Tags stay strings, as the collector keeps them.
    for (k, v) in [
        ("component", "proxy"),
        (
            "node_id",
            "sidecar~10.244.1.7~frontend-7d9c4b-x2k8q.default~default.svc.cluster.local",
        ),
        ("zone", "us-east-1a"),
        ("guid:x-request-id", "b1f6c1d0-8d3a-9f5e-a1b2-c3d4e5f60718"),
        ("http.url", "http://frontend:8080/api/items?limit=10"),
        ("http.method", "GET"),
        ("http.protocol", "HTTP/1.1"),
        ("http.status_code", "200"),
        ("upstream_cluster", "inbound|8080||"),
        ("upstream_address", "127.0.0.1:8080"),
        ("peer.address", "10.244.0.1"),
        ("request_size", "0"),
        ("response_size", "1234"),
        ("response_flags", "-"),
    ] {
        assert_eq!(attr(server, k), &AnyValue::from(v), "tag {k}");
    }
    // Endpoint fields, named as the collector names them; port is an int.
    assert_eq!(attr(server, "net.host.ip"), &AnyValue::from("10.244.1.7"));
    assert_eq!(attr(server, "net.host.port"), &AnyValue::Int(8080));
    assert_eq!(attr(server, "zipkin.shared"), &AnyValue::Bool(true));
    assert_eq!(server.attributes.len(), 14 + 3);

    let client = &front.scope_spans[0].spans[1];
    assert_eq!(client.kind, SpanKind::Client);
    assert_eq!(client.parent_span_id, Some(server.span_id));
    assert_eq!(client.status.code, StatusCode::Error);
    assert!(
        client.attribute("error").is_none(),
        "error=true is consumed"
    );
    assert!(client.is_error());
    assert_eq!(attr(client, "http.status_code"), &AnyValue::from("503"));
    assert_eq!(attr(client, "peer.service"), &AnyValue::from("backend"));
    assert_eq!(attr(client, "net.peer.ip"), &AnyValue::from("fd00::9"));
    assert_eq!(attr(client, "net.peer.port"), &AnyValue::Int(9090));
    assert!(client.attribute("zipkin.shared").is_none());
    assert_eq!(client.events.len(), 1);
    assert_eq!(client.events[0].name, "cs");
    assert_eq!(client.events[0].time_unix_nano, 1_700_000_000_125_010_000);
    assert!(client.events[0].attributes.is_empty());

    let backend = &back.scope_spans[0].spans[0];
    assert_eq!(backend.kind, SpanKind::Server);
    assert!(
        backend.attribute("net.host.port").is_none(),
        "no port given"
    );
    assert_eq!(attr(backend, "net.host.ip"), &AnyValue::from("10.244.2.9"));
    assert_eq!(
        backend.attributes.len(),
        1,
        "debug is dropped, as the collector does"
    );
}

#[test]
fn proto_report_decodes_like_json() {
    let from_json = decode(ENVOY_REPORT);
    let proto = encode_proto(&from_json);
    let from_proto = decode_proto(&proto).unwrap();
    assert_eq!(from_proto.batch, from_json);
}

#[test]
fn zipkin_round_trips_through_the_model() {
    let batch = decode(ENVOY_REPORT);
    let again = decode_json(&encode_json(&batch)).unwrap().batch;
    assert_eq!(again, batch);
    let text = String::from_utf8(encode_json(&batch)).unwrap();
    assert!(
        text.contains(r#""traceId":"4a1f3b2c5d6e7f80""#),
        "64-bit ids stay short: {text}"
    );
    assert!(text.contains(r#""shared":true"#));
    assert!(
        text.contains(
            r#""localEndpoint":{"ipv4":"10.244.1.7","port":8080,"serviceName":"frontend.default"}"#
        ),
        "{text}"
    );
    assert!(
        !text.contains("zipkin.shared") && !text.contains("net.host"),
        "{text}"
    );
}

/// Sorts attributes so batches built in different orders compare equal.
fn sorted(mut batch: TraceBatch) -> TraceBatch {
    for rs in &mut batch.resource_spans {
        rs.resource.attributes.sort_by(|a, b| a.key.cmp(&b.key));
        for ss in &mut rs.scope_spans {
            for s in &mut ss.spans {
                s.attributes.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
    }
    batch
}

#[test]
fn otel_shaped_model_round_trips_through_zipkin_json() {
    use model::{Event, Link, Resource, ResourceSpans, Scope, ScopeSpans, Span, Status};
    let trace_id: TraceId = "5b8efff798038103d269b633813fc60c".parse().unwrap();
    let span = |id: u64, kind: SpanKind, status: Status| Span {
        trace_id,
        span_id: SpanId::from_u64(id),
        parent_span_id: (id > 1).then(|| SpanId::from_u64(1)),
        trace_state: if id == 1 {
            "ot=th:8".into()
        } else {
            String::new()
        },
        name: format!("op{id}"),
        kind,
        start_unix_nano: 1_600_000_000_000_000_000 + id * 1000,
        end_unix_nano: 1_600_000_000_005_000_000,
        attributes: vec![
            KeyValue::new("http.route", "/a|b"),
            KeyValue::new("net.peer.ip", "192.168.1.2"),
            KeyValue::new("net.peer.port", 5432i64),
            KeyValue::new("peer.service", "db"),
        ],
        events: vec![
            Event {
                time_unix_nano: 1_600_000_000_001_000_000,
                name: "plain".into(),
                ..Default::default()
            },
            Event {
                time_unix_nano: 1_600_000_000_002_000_000,
                name: "exception".into(),
                attributes: vec![
                    KeyValue::new("exception.message", "x|y"),
                    KeyValue::new("n", 3i64),
                    KeyValue::new("ok", true),
                    KeyValue::new("r", 0.5f64),
                ],
                dropped_attributes_count: 2,
            },
        ],
        links: vec![Link {
            trace_id: TraceId::from_halves(1, 2),
            span_id: SpanId::from_u64(3),
            trace_state: "a=b".into(),
            attributes: vec![KeyValue::new("k", "v")],
            dropped_attributes_count: 1,
            flags: 0,
        }],
        status,
        ..Default::default()
    };
    let batch = TraceBatch {
        resource_spans: vec![ResourceSpans {
            resource: Resource {
                attributes: vec![
                    KeyValue::new("service.name", "checkout"),
                    KeyValue::new("host.name", "node-3"),
                    KeyValue::new("telemetry.sdk.language", "rust"),
                ],
                dropped_attributes_count: 0,
            },
            schema_url: String::new(),
            scope_spans: vec![ScopeSpans {
                scope: Scope {
                    name: "my.lib".into(),
                    version: "0.9".into(),
                    ..Default::default()
                },
                schema_url: String::new(),
                spans: vec![
                    span(1, SpanKind::Internal, Status::default()),
                    span(
                        2,
                        SpanKind::Client,
                        Status {
                            code: StatusCode::Error,
                            message: "connection refused".into(),
                        },
                    ),
                    span(
                        3,
                        SpanKind::Producer,
                        Status {
                            code: StatusCode::Ok,
                            message: String::new(),
                        },
                    ),
                    span(4, SpanKind::Consumer, Status::default()),
                    span(5, SpanKind::Unspecified, Status::default()),
                ],
            }],
        }],
    };
    let json = encode_json(&batch);
    let text = String::from_utf8(json.clone()).unwrap();
    assert!(
        text.contains(r#""otel.status_code":"STATUS_CODE_ERROR""#),
        "{text}"
    );
    assert!(text.contains(r#""error":"true""#), "{text}");
    assert!(text.contains(r#""span.kind":"internal""#), "{text}");
    assert!(text.contains(r#""w3c.tracestate":"ot=th:8""#), "{text}");
    assert!(
        text.contains(r#""remoteEndpoint":{"ipv4":"192.168.1.2","port":5432,"serviceName":"db"}"#),
        "{text}"
    );
    let back = decode_json(&json).unwrap().batch;
    assert_eq!(sorted(back.clone()), sorted(batch.clone()));
    let via_proto = decode_proto(&encode_proto(&batch)).unwrap().batch;
    assert_eq!(via_proto, back);
}

#[test]
fn status_tags_follow_the_collector() {
    let b = decode(
        r#"[{"timestamp":1,"traceId":"a","id":"1","tags":{"otel.status_code":"STATUS_CODE_ERROR",
              "otel.status_description":"timeout","other":"x"}},
            {"timestamp":1,"traceId":"a","id":"2","tags":{"otel.status_code":"OK","otel.status_description":"ignored?"}},
            {"timestamp":1,"traceId":"a","id":"3","tags":{"error":"java.io.IOException: reset"}},
            {"timestamp":1,"traceId":"a","id":"4","tags":{"error":"false"}},
            {"timestamp":1,"traceId":"a","id":"5","tags":{"otel.status_description":"no code, kept"}},
            {"timestamp":1,"traceId":"a","id":"6","tags":{"otel.status_code":"STATUS_CODE_OK","error":"true"}}]"#,
    );
    let spans = &b.resource_spans[0].scope_spans[0].spans;
    assert_eq!(spans[0].status.code, StatusCode::Error);
    assert_eq!(spans[0].status.message, "timeout");
    assert_eq!(spans[0].attributes, vec![KeyValue::new("other", "x")]);
    assert_eq!(spans[1].status.code, StatusCode::Ok);
    assert!(spans[1].attributes.is_empty());
    // Brave puts the exception message in `error`: an error, with that message; tag kept.
    assert_eq!(spans[2].status.code, StatusCode::Error);
    assert_eq!(spans[2].status.message, "java.io.IOException: reset");
    assert_eq!(
        spans[2].attribute("error"),
        Some(&AnyValue::from("java.io.IOException: reset"))
    );
    assert_eq!(spans[3].status.code, StatusCode::Unset);
    assert_eq!(spans[3].attribute("error"), Some(&AnyValue::from("false")));
    assert_eq!(spans[4].status.code, StatusCode::Unset);
    assert!(spans[4].attribute("otel.status_description").is_some());
    assert_eq!(spans[5].status.code, StatusCode::Error);
    assert!(spans[5].attributes.is_empty());
}

#[test]
fn ids_kinds_times_and_endpoints_edge_cases() {
    let b = decode(
        r#"[{"traceId":"5b8efff798038103d269b633813fc60c","id":"00000000000000a1",
              "parentId":"00000000000000a1","name":"self-parent","duration":42},
            {"traceId":"5B8EFFF798038103D269B633813FC60C","id":"a2","parentId":"0000000000000000",
              "tags":{"span.kind":"internal","w3c.tracestate":"k=v","host.name":"h1"},
              "localEndpoint":{"serviceName":"svc","ipv4":"1.2.3.4","ipv6":"::1"},
              "remoteEndpoint":{"ipv4":"5.6.7.8"}, "kind":null, "annotations":null},
            {"traceId":"1","id":"3","kind":"PRODUCER","timestamp":0,"tags":{"span.kind":"weird"},
              "localEndpoint":{"serviceName":"svc","ipv4":"1.2.3.4","ipv6":"::1"}},
            {"traceId":"1","id":"4","kind":"consumer","timestamp":10,"duration":null,
              "localEndpoint":{"serviceName":""}}]"#,
    );
    // The spans without a service name (absent or "") share one empty resource.
    assert_eq!(b.resource_spans.len(), 3, "{b:#?}");
    let s0 = &b.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(s0.parent_span_id, None, "parent equal to own id is dropped");
    assert!(!s0.trace_id.is_64bit());
    assert_eq!((s0.start_unix_nano, s0.end_unix_nano), (0, 42_000));
    assert_eq!(s0.attribute(START_TIME_ABSENT), Some(&AnyValue::Bool(true)));
    assert_eq!(s0.kind, SpanKind::Unspecified);
    assert!(b.resource_spans[0].resource.attributes.is_empty());

    let rs1 = &b.resource_spans[1];
    assert_eq!(
        rs1.resource.attributes,
        vec![
            KeyValue::new("service.name", "svc"),
            KeyValue::new("host.name", "h1")
        ]
    );
    let s1 = &rs1.scope_spans[0].spans[0];
    assert_eq!(s1.trace_id, s0.trace_id, "hex case does not matter");
    assert_eq!(s1.parent_span_id, None, "all-zero parent is a root");
    assert_eq!(s1.kind, SpanKind::Internal);
    assert_eq!(s1.trace_state, "k=v");
    assert_eq!(
        s1.attribute("net.host.ip"),
        Some(&AnyValue::from("::1")),
        "ipv6 wins"
    );
    assert_eq!(
        s1.attribute("net.peer.ip"),
        Some(&AnyValue::from("5.6.7.8"))
    );
    assert!(s1.attribute("peer.service").is_none());
    assert!(s1.attribute("span.kind").is_none());

    // Same service, but no host.name tag: a different resource.
    let s2 = &b.resource_spans[2].scope_spans[0].spans[0];
    assert_eq!(s2.kind, SpanKind::Producer);
    assert_eq!(s2.attribute("span.kind"), Some(&AnyValue::from("weird")));
    assert_eq!(s2.start_unix_nano, 0);
    let s3 = &b.resource_spans[0].scope_spans[0].spans[1];
    assert_eq!(s3.kind, SpanKind::Consumer);
    assert_eq!(s3.trace_id, TraceId::from_halves(0, 1));
    assert_eq!((s3.start_unix_nano, s3.end_unix_nano), (10_000, 10_000));
}

#[test]
fn structured_annotations_become_events_with_attributes() {
    let b = decode(
        r#"[{"traceId":"1","id":"2","annotations":[
            {"timestamp":5,"value":"exception|{\"exception.type\":\"E\",\"n\":2,\"f\":1.5,\"b\":false}|3"},
            {"timestamp":6,"value":"a|b"},
            {"timestamp":7,"value":"x|not json|1"}]}]"#,
    );
    let events = &b.resource_spans[0].scope_spans[0].spans[0].events;
    assert_eq!(events[0].name, "exception");
    assert_eq!(events[0].time_unix_nano, 5000);
    assert_eq!(events[0].dropped_attributes_count, 3);
    assert_eq!(
        events[0].attributes,
        vec![
            KeyValue::new("b", false),
            KeyValue::new("exception.type", "E"),
            KeyValue::new("f", 1.5f64),
            KeyValue::new("n", 2i64),
        ]
    );
    assert_eq!(events[1].name, "a|b");
    assert_eq!(events[2].name, "x|not json|1");
    assert!(events[2].attributes.is_empty());
}

#[test]
fn sdk_json_annotations_become_events_with_attributes() {
    // The OpenTelemetry Python/JS Zipkin exporters write `{"<event name>": {attributes}}`.
    let b = decode(
        r#"[{"traceId":"1","id":"2","annotations":[
            {"timestamp":5,"value":"{\"cache miss\": {\"cache.key\": \"cart:42\", \"n\": 3}}"},
            {"timestamp":6,"value":"{\"a\": 1}"},
            {"timestamp":7,"value":"{\"a\": {}, \"b\": {}}"}]}]"#,
    );
    let events = &b.resource_spans[0].scope_spans[0].spans[0].events;
    assert_eq!(events[0].name, "cache miss");
    assert_eq!(
        events[0].attributes,
        vec![
            KeyValue::new("cache.key", "cart:42"),
            KeyValue::new("n", 3i64)
        ]
    );
    // Not that shape: kept verbatim as the name.
    assert_eq!(events[1].name, r#"{"a": 1}"#);
    assert_eq!(events[2].name, r#"{"a": {}, "b": {}}"#);
}

#[test]
fn errors_name_the_span_and_field() {
    let cases = [
        (
            r#"[{"id":"1"}]"#,
            "spans[0].traceId: required field is missing",
        ),
        (
            r#"[{"traceId":"1"}]"#,
            "spans[0].id: required field is missing",
        ),
        (
            r#"[{"traceId":"1","id":"1"},{"traceId":"1","id":"1"},{"traceId":"xyz","id":"1"}]"#,
            "spans[2].traceId: trace id \"xyz\" is not hexadecimal",
        ),
        (
            r#"[{"traceId":"000000000000000000000000000000001","id":"1"}]"#,
            "spans[0].traceId: trace id must be 1 to 32 hex digits, got 33",
        ),
        (
            r#"[{"traceId":"0","id":"1"}]"#,
            "spans[0].traceId: trace id is all zeros",
        ),
        (
            r#"[{"traceId":"1","id":"0"}]"#,
            "spans[0].id: span id is all zeros",
        ),
        (
            r#"[{"traceId":"1","id":"1","parentId":"zz"}]"#,
            "spans[0].parentId: span id \"zz\" is not hexadecimal",
        ),
        (
            r#"[{"traceId":1,"id":"1"}]"#,
            "spans[0].traceId: expected a string, got a number",
        ),
        (
            r#"[{"traceId":"1","id":"1","timestamp":"123"}]"#,
            "spans[0].timestamp: expected a non-negative integer, got a string",
        ),
        (
            r#"[{"traceId":"1","id":"1","duration":-5}]"#,
            "spans[0].duration: expected a non-negative integer, got a number",
        ),
        (
            r#"[{"traceId":"1","id":"1","tags":{"a":{"b":1}}}]"#,
            "spans[0].tags.a: expected a string, got an object",
        ),
        (
            r#"[{"traceId":"1","id":"1","tags":[]}]"#,
            "spans[0].tags: expected an object, got an array",
        ),
        (
            r#"[{"traceId":"1","id":"1","annotations":[{"timestamp":1,"value":2}]}]"#,
            "spans[0].annotations[0].value: expected a string, got a number",
        ),
        (
            r#"[{"traceId":"1","id":"1","localEndpoint":{"ipv4":"300.1.1.1"}}]"#,
            "spans[0].localEndpoint.ipv4: \"300.1.1.1\" is not an IPv4 address",
        ),
        (
            r#"[{"traceId":"1","id":"1","remoteEndpoint":{"port":70000}}]"#,
            "spans[0].remoteEndpoint.port: 70000 is not a port number",
        ),
        (
            r#"[{"traceId":"1","id":"1","remoteEndpoint":"x"}]"#,
            "spans[0].remoteEndpoint: expected an endpoint object, got a string",
        ),
        (
            r#"[{"traceId":"1","id":"1","shared":"yes"}]"#,
            "spans[0].shared: expected a boolean",
        ),
        (r#"[1]"#, "spans[0]: expected a span object, got a number"),
        (
            r#"{"traceId":"1"}"#,
            "(root): expected a JSON list of spans, got an object",
        ),
    ];
    for (input, want) in cases {
        let got = err(input);
        assert!(
            got.starts_with(want),
            "input {input}\n got {got}\nwant {want}"
        );
    }
    let syntax = decode_json(b"[{\"traceId\":\n\"1\",,}]").unwrap_err();
    assert!(
        matches!(syntax, WireError::Json { line: 2, .. }),
        "{syntax:?}"
    );
}

#[test]
fn truncated_or_random_input_is_an_error_not_a_panic() {
    let full = ENVOY_REPORT.as_bytes();
    for cut in 0..full.len() {
        assert!(decode_json(&full[..cut]).is_err(), "prefix {cut}");
    }
    let proto = encode_proto(&decode(ENVOY_REPORT));
    let mut failures = 0;
    for cut in 1..proto.len() {
        if let Err(e) = decode_proto(&proto[..cut]) {
            failures += 1;
            let msg = e.to_string();
            assert!(
                msg.starts_with("malformed Zipkin ListOfSpans protobuf")
                    || msg.starts_with("spans["),
                "{msg}"
            );
        }
    }
    assert!(failures > proto.len() / 2);
    let mut x: u32 = 0x1234_5678;
    for len in 0..300 {
        let body: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let _ = decode_proto(&body);
        let _ = decode_json(&body);
    }
}

#[test]
fn proto_validates_ids_and_addresses() {
    use super::generated as pb;
    use prost::Message;
    let good = || pb::Span {
        trace_id: vec![0, 0, 0, 0, 0, 0, 0, 9],
        id: vec![0, 0, 0, 0, 0, 0, 0, 1],
        kind: pb::span::Kind::Client as i32,
        name: "get".into(),
        timestamp: 1_700_000_000_000_000,
        duration: 250,
        local_endpoint: Some(pb::Endpoint {
            service_name: "web".into(),
            ipv4: vec![10, 0, 0, 1],
            ipv6: vec![],
            port: 443,
        }),
        shared: true,
        ..Default::default()
    };
    let encode = |spans: Vec<pb::Span>| pb::ListOfSpans { spans }.encode_to_vec();

    let d = decode_proto(&encode(vec![good()])).unwrap();
    let span = &d.batch.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.trace_id, TraceId::from_halves(0, 9));
    assert_eq!(span.kind, SpanKind::Client);
    assert_eq!(span.end_unix_nano - span.start_unix_nano, 250_000);
    assert_eq!(
        span.attribute("net.host.ip"),
        Some(&AnyValue::from("10.0.0.1"))
    );
    assert_eq!(span.attribute("net.host.port"), Some(&AnyValue::Int(443)));
    assert_eq!(span.attribute("zipkin.shared"), Some(&AnyValue::Bool(true)));
    assert_eq!(d.batch.resource_spans[0].resource.service_name(), "web");

    let cases: Vec<(pb::Span, &str)> = vec![
        (
            pb::Span {
                trace_id: vec![1; 5],
                ..good()
            },
            "spans[1].traceId: trace id must be 16 (or 8) bytes, got 5",
        ),
        (
            pb::Span {
                id: vec![],
                ..good()
            },
            "spans[1].id: span id must be 8 bytes, got 0",
        ),
        (
            pb::Span {
                parent_id: vec![1; 3],
                ..good()
            },
            "spans[1].parentId: span id must be 8 bytes, got 3",
        ),
        (
            pb::Span {
                remote_endpoint: Some(pb::Endpoint {
                    ipv4: vec![1, 2, 3],
                    ..Default::default()
                }),
                ..good()
            },
            "spans[1].remoteEndpoint.ipv4: IPv4 address must be 4 bytes, got 3",
        ),
        (
            pb::Span {
                local_endpoint: Some(pb::Endpoint {
                    ipv6: vec![1; 4],
                    ..Default::default()
                }),
                ..good()
            },
            "spans[1].localEndpoint.ipv6: IPv6 address must be 16 bytes, got 4",
        ),
        (
            pb::Span {
                local_endpoint: Some(pb::Endpoint {
                    port: -1,
                    ..Default::default()
                }),
                ..good()
            },
            "spans[1].localEndpoint.port: -1 is not a port number",
        ),
    ];
    for (bad, want) in cases {
        let got = decode_proto(&encode(vec![good(), bad]))
            .unwrap_err()
            .to_string();
        assert_eq!(got, want);
    }
}

#[test]
fn empty_reports_are_empty_batches() {
    assert!(decode("[]").is_empty());
    assert!(decode_proto(&[]).unwrap().batch.is_empty());
    assert_eq!(encode_json(&TraceBatch::default()), b"[]");
}

/// The Zipkin JSON writer as it was, through a `serde_json::Value` tree: the reference the direct
/// writer must match byte for byte.
mod value_writer {
    use serde_json::{json, Map, Value};

    use super::span::{Endpoint, ZipkinSpan};

    pub fn write(spans: &[ZipkinSpan]) -> Vec<u8> {
        let list: Vec<Value> = spans.iter().map(span_value).collect();
        serde_json::to_vec(&list).unwrap()
    }

    fn span_value(s: &ZipkinSpan) -> Value {
        let mut obj = Map::new();
        obj.insert("traceId".into(), s.trace_id.to_short_hex().into());
        obj.insert("id".into(), s.id.to_string().into());
        if let Some(p) = s.parent_id {
            obj.insert("parentId".into(), p.to_string().into());
        }
        if let Some(k) = s.kind {
            obj.insert("kind".into(), k.as_str().into());
        }
        if !s.name.is_empty() {
            obj.insert("name".into(), s.name.clone().into());
        }
        if let Some(t) = s.timestamp_us {
            obj.insert("timestamp".into(), t.into());
        }
        if let Some(d) = s.duration_us {
            obj.insert("duration".into(), d.into());
        }
        if let Some(ep) = &s.local_endpoint {
            obj.insert("localEndpoint".into(), endpoint_value(ep));
        }
        if let Some(ep) = &s.remote_endpoint {
            obj.insert("remoteEndpoint".into(), endpoint_value(ep));
        }
        if !s.annotations.is_empty() {
            let list: Vec<Value> = s
                .annotations
                .iter()
                .map(|a| json!({"timestamp": a.timestamp_us, "value": a.value}))
                .collect();
            obj.insert("annotations".into(), list.into());
        }
        if !s.tags.is_empty() {
            let tags: Map<String, Value> = s
                .tags
                .iter()
                .map(|(k, v)| (k.to_string(), Value::from(v.as_ref())))
                .collect();
            obj.insert("tags".into(), tags.into());
        }
        if s.debug {
            obj.insert("debug".into(), true.into());
        }
        if s.shared {
            obj.insert("shared".into(), true.into());
        }
        Value::Object(obj)
    }

    fn endpoint_value(ep: &Endpoint) -> Value {
        let mut obj = Map::new();
        if !ep.service_name.is_empty() {
            obj.insert("serviceName".into(), ep.service_name.clone().into());
        }
        if let Some(ip) = ep.ipv4 {
            obj.insert("ipv4".into(), ip.to_string().into());
        }
        if let Some(ip) = ep.ipv6 {
            obj.insert("ipv6".into(), ip.to_string().into());
        }
        if let Some(p) = ep.port {
            obj.insert("port".into(), p.into());
        }
        Value::Object(obj)
    }
}

/// The typed reader must answer exactly as the `serde_json::Value` reader it replaced: the same
/// spans, or the same error message.
///
/// The direct OTLP path is held to the model path the same way: the same bytes, or the same
/// error.
fn same_as_reference(body: &[u8]) {
    let new = json::parse(body);
    let old = reference::parse(body);
    same_otlp_as_through_the_model(body);
    match (&new, &old) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "body {:?}", String::from_utf8_lossy(body));
            assert_eq!(
                mapping::to_batch(a.clone(), false),
                reference::to_batch(b.clone()),
                "body {:?}",
                String::from_utf8_lossy(body)
            );
        }
        (Err(a), Err(b)) => assert_eq!(
            a.to_string(),
            b.to_string(),
            "body {:?}",
            String::from_utf8_lossy(body)
        ),
        _ => panic!(
            "body {:?}\n typed: {new:?}\n value: {old:?}",
            String::from_utf8_lossy(body)
        ),
    }
}

#[test]
fn direct_writer_matches_the_value_tree() {
    use super::span::{Annotation, Endpoint, Kind, ZipkinSpan};

    let mut spans = json::parse(ENVOY_REPORT.as_bytes()).unwrap();
    let full = ZipkinSpan {
        trace_id: "5b8efff798038103d269b633813fc60c".parse().unwrap(),
        id: SpanId::from_u64(u64::MAX),
        parent_id: Some(SpanId::from_u64(1)),
        kind: Some(Kind::Consumer),
        name: "quote \" backslash \\ tab \t nl \n ctl \u{1} é 😀 </script>".into(),
        timestamp_us: Some(1),
        duration_us: Some(0),
        local_endpoint: Some(Endpoint {
            service_name: "".into(),
            ipv4: None,
            ipv6: Some("2001:db8::1".parse().unwrap()),
            port: None,
        }),
        remote_endpoint: Some(Endpoint {
            service_name: "db \"main\"".into(),
            ipv4: Some("192.168.1.2".parse().unwrap()),
            ipv6: Some("::ffff:10.0.0.1".parse().unwrap()),
            port: Some(65535),
        }),
        annotations: vec![
            Annotation {
                timestamp_us: u64::MAX,
                value: "a|{\"k\":\"v\"}|1".into(),
            },
            Annotation {
                timestamp_us: 0,
                value: String::new(),
            },
        ],
        tags: vec![
            ("".into(), "".into()),
            ("http.url".into(), "http://h/p?q=1&r=\"2\"".into()),
            ("é".into(), "\u{7f}\u{0}".into()),
        ],
        debug: true,
        shared: true,
    };
    let bare = ZipkinSpan {
        trace_id: TraceId::from_halves(0, 1),
        id: SpanId::from_u64(2),
        parent_id: None,
        kind: None,
        name: "".into(),
        timestamp_us: None,
        duration_us: None,
        local_endpoint: Some(Endpoint::default()),
        remote_endpoint: None,
        annotations: Vec::new(),
        tags: Vec::new(),
        debug: false,
        shared: false,
    };
    spans.push(full);
    spans.push(bare);
    let batch = decode(ENVOY_REPORT);
    spans.extend(mapping::from_batch(&batch));
    for one in spans
        .iter()
        .map(std::slice::from_ref)
        .chain([&spans[..], &[]])
    {
        assert_eq!(
            String::from_utf8(json::write(one)).unwrap(),
            String::from_utf8(value_writer::write(one)).unwrap()
        );
    }
}

#[test]
fn typed_reader_answers_as_the_value_reader_on_edge_cases() {
    let cases = [
        ENVOY_REPORT,
        "[]",
        " [ ] ",
        "null",
        "true",
        "1",
        r#""x""#,
        "{}",
        r#"{"traceId":"1","id":"1"}"#,
        "[null]",
        "[[]]",
        "[{}]",
        r#"[{"traceId":"1","id":"1"}] x"#,
        r#"[{"traceId":"1","id":"1"}]  "#,
        // Duplicate keys: the last wins, whatever the type of the ones before.
        r#"[{"traceId":1,"traceId":"a","id":"1","id":"2"}]"#,
        r#"[{"traceId":"a","id":"1","traceId":null}]"#,
        r#"[{"traceId":"a","id":"1","tags":{"a":{}},"tags":{"b":"c"}}]"#,
        r#"[{"traceId":"a","id":"1","tags":{"a":{},"a":"ok","b":"x","b":[]}}]"#,
        r#"[{"traceId":"a","id":"1","tags":{"z":[],"a":{},"m":null}}]"#,
        r#"[{"traceId":"a","id":"1","tags":{"z":[],"z":"fine"}}]"#,
        r#"[{"traceId":"a","id":"1","tags":{"k":"1","k":2,"k":true}}]"#,
        r#"[{"traceId":"a","id":"1","localEndpoint":{"ipv4":"x"},"localEndpoint":{"ipv4":"1.2.3.4"}}]"#,
        r#"[{"traceId":"a","id":"1","annotations":[1],"annotations":[{"value":"v","value":null}]}]"#,
        // Nulls are absent, except as tag values.
        r#"[{"traceId":"a","id":"1","parentId":null,"kind":null,"name":null,"timestamp":null,
            "duration":null,"localEndpoint":null,"remoteEndpoint":null,"annotations":null,
            "tags":null,"debug":null,"shared":null}]"#,
        r#"[{"traceId":"a","id":"1","localEndpoint":{"serviceName":null,"ipv4":null,"ipv6":null,"port":null}}]"#,
        r#"[{"traceId":"a","id":"1","annotations":[{"timestamp":null,"value":null},null]}]"#,
        r#"[{"traceId":"a","id":"1","tags":{"a":null}}]"#,
        // Escapes and unicode, in values and keys.
        r#"[{"trace\u0049d":"a","\u0069d":"1","name":"caf\u00e9 \"q\" \\ \n","tags":{"k\u00e9y":"v\ud83d\ude00","\u0000":"nul"}}]"#,
        r#"[{"traceId":"a","id":"1","name":"日本語 🚀","localEndpoint":{"serviceName":"sérvice"}}]"#,
        r#"[{"traceId":"a","id":"1","name":"\ud800"}]"#,
        r#"[{"traceId":"a","id":"1","name":"\x"}]"#,
        r#"[{"traceId":"\u0030\u0030a","id":"1"}]"#,
        // Numbers: huge, negative, fractional, exponents, out of range.
        r#"[{"traceId":"a","id":"1","timestamp":18446744073709551615,"duration":18446744073709551616}]"#,
        r#"[{"traceId":"a","id":"1","timestamp":1.5e15,"duration":0.9}]"#,
        r#"[{"traceId":"a","id":"1","timestamp":-0.0,"duration":-1}]"#,
        r#"[{"traceId":"a","id":"1","timestamp":1e400}]"#,
        r#"[{"traceId":"a","id":"1","unknown":1e400}]"#,
        r#"[{"traceId":"a","id":"1","unknown":[{"x":[1e400]}]}]"#,
        r#"[{"traceId":"a","id":"1","tags":{"n":123456789012345678901234567890,"f":1.0,"g":-2.5e-7,"i":-3,"b":false}}]"#,
        r#"[{"traceId":"a","id":"1","localEndpoint":{"port":65535},"remoteEndpoint":{"port":65536}}]"#,
        r#"[{"traceId":"a","id":"1","localEndpoint":{"port":8080.7}}]"#,
        r#"[{"traceId":"a","id":"1","localEndpoint":{"port":-1}}]"#,
        // Wrong types everywhere, and which problem is named first.
        r#"[{"traceId":"a","id":"1","shared":"x","debug":1,"kind":2,"name":3}]"#,
        r#"[{"traceId":"a","id":"1","tags":{"a":[]},"annotations":[{"value":1}]}]"#,
        r#"[{"traceId":"a","id":"1","annotations":{},"tags":[]}]"#,
        r#"[{"traceId":"a","id":"1","annotations":"x"}]"#,
        r#"[{"traceId":"a","id":"1","annotations":[{"timestamp":"1"}]}]"#,
        r#"[{"traceId":"a","id":"1","annotations":[{"timestamp":1,"value":"ok"},"bad"]}]"#,
        r#"[{"traceId":"a","id":"1","localEndpoint":[],"remoteEndpoint":{"ipv6":"zz"}}]"#,
        r#"[{"traceId":"a","id":"1","remoteEndpoint":{"ipv6":"zz","ipv4":"1.1.1.1.1","port":"x","serviceName":1}}]"#,
        r#"[{"traceId":"a","id":"1","localEndpoint":{"serviceName":[],"port":true}}]"#,
        r#"[{"traceId":"a","id":"1","parentId":""},{"traceId":"a","id":"2","parentId":"000"}]"#,
        r#"[{"traceId":"a","id":"1","parentId":"0x1"}]"#,
        r#"[{"traceId":"","id":"1"}]"#,
        r#"[{"traceId":"a","id":""}]"#,
        r#"[{"traceId":"a","id":"12345678901234567"}]"#,
        r#"[{"traceId":"a","id":"1","kind":"client"},{"traceId":"a","id":"1","kind":"LOCAL"}]"#,
        // The first invalid span is named; a syntax error after it wins.
        r#"[{"traceId":"a","id":"1"},{"traceId":"a"},{"id":"1"}]"#,
        r#"[{"traceId":"a"},{"traceId":"a","id":"1",]"#,
        r#"[{"traceId":"a"},[1e999]]"#,
        r#"[{"traceId":"a"},{"traceId":"a","id":"1"}"#,
        r#"[1,{"traceId":"a"}]"#,
        r#"[{"traceId":"a","id":"1","tags":{"a":{"b":1}}}],"#,
        r#"[{"traceId":"a","id":"1"},]"#,
        r#"[{"traceId":"a","id":"1",}]"#,
        r#"{"a":[1e999]}"#,
        r#"{"a":1"#,
    ];
    for case in cases {
        same_as_reference(case.as_bytes());
    }
    // Not UTF-8, in a string and outside one.
    same_as_reference(b"[{\"traceId\":\"a\",\"id\":\"1\",\"name\":\"\xff\"}]");
    same_as_reference(b"[{\"traceId\":\"a\",\"id\":\"1\"}]\xff");
    // Nesting deeper than serde_json's limit, where a value is read and where one is skipped.
    for prefix in [
        r#"[{"traceId":"a","id":"1","tags":{"a":"#,
        r#"[{"traceId":"a","id":"1","x":"#,
        r#"[{"traceId":"a","id":"1","name":"#,
    ] {
        for depth in [100, 126, 127, 128, 200] {
            let body = format!("{prefix}{}{}}}}}]", "[".repeat(depth), "]".repeat(depth));
            same_as_reference(body.as_bytes());
        }
    }
}

/// xorshift32: reproducible pseudo-random numbers for the generated cases.
fn next(x: &mut u32) -> u32 {
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    *x
}

#[test]
fn typed_reader_answers_as_the_value_reader_on_corrupted_reports() {
    let good = [
        ENVOY_REPORT.as_bytes().to_vec(),
        encode_json(&decode(ENVOY_REPORT)),
    ];
    let bytes: &[u8] = br#"{}[]",:0-1.e5\u"nx tf"#;
    let mut x = 0x9e37_79b9;
    for report in &good {
        for _ in 0..3000 {
            let mut body = report.clone();
            for _ in 0..(next(&mut x) % 3 + 1) {
                let at = next(&mut x) as usize % body.len();
                match next(&mut x) % 4 {
                    0 => body[at] = bytes[next(&mut x) as usize % bytes.len()],
                    1 => {
                        body.remove(at);
                    }
                    2 => body.insert(at, bytes[next(&mut x) as usize % bytes.len()]),
                    _ => {
                        // Repeat a stretch (duplicate keys, repeated members).
                        let len = (next(&mut x) as usize % 60).min(body.len() - at);
                        let stretch = body[at..at + len].to_vec();
                        body.splice(at..at, stretch);
                    }
                }
            }
            same_as_reference(&body);
        }
    }
}

#[test]
fn typed_reader_answers_as_the_value_reader_on_generated_reports() {
    const KEYS: &[&str] = &[
        "traceId",
        "id",
        "parentId",
        "kind",
        "name",
        "timestamp",
        "duration",
        "localEndpoint",
        "remoteEndpoint",
        "annotations",
        "tags",
        "debug",
        "shared",
        "serviceName",
        "ipv4",
        "ipv6",
        "port",
        "value",
        "error",
        "other",
    ];
    const SCALARS: &[&str] = &[
        "null",
        "true",
        "false",
        "0",
        "1",
        "-1",
        "8080",
        "70000",
        "1.5",
        "1.7e15",
        "18446744073709551616",
        "-0.0",
        r#""""#,
        r#""1""#,
        r#""0""#,
        r#""a1b2""#,
        r#""5b8efff798038103d269b633813fc60c""#,
        r#""10.0.0.1""#,
        r#""::1""#,
        r#""SERVER""#,
        r#""x\"y""#,
        r#""\u00e9""#,
    ];
    fn value(x: &mut u32, depth: u32, out: &mut String) {
        match next(x) % if depth > 3 { 1 } else { 6 } {
            0..=2 => out.push_str(SCALARS[next(x) as usize % SCALARS.len()]),
            3..=4 => {
                out.push('{');
                for i in 0..next(x) % 5 {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!("{:?}:", KEYS[next(x) as usize % KEYS.len()]));
                    value(x, depth + 1, out);
                }
                out.push('}');
            }
            _ => {
                out.push('[');
                for i in 0..next(x) % 3 {
                    if i > 0 {
                        out.push(',');
                    }
                    value(x, depth + 1, out);
                }
                out.push(']');
            }
        }
    }
    let mut x = 0x1234_5678;
    for _ in 0..5000 {
        let mut body = String::from("[");
        for i in 0..next(&mut x) % 4 {
            if i > 0 {
                body.push(',');
            }
            // Mostly spans that get past the ids, so the later checks are reached.
            body.push_str(r#"{"traceId":"a1","id":"b2""#);
            for _ in 0..next(&mut x) % 6 {
                body.push_str(&format!(",{:?}:", KEYS[next(&mut x) as usize % KEYS.len()]));
                value(&mut x, 1, &mut body);
            }
            body.push('}');
        }
        body.push(']');
        same_as_reference(body.as_bytes());
    }
}

/// The one-pass mapping over sorted tags must build the batch the `BTreeMap` mapping built,
/// whatever mix of tags it consumes (resource, scope, status, kind, links, endpoint names).
#[test]
fn tag_mapping_builds_what_the_map_based_mapping_built() {
    use std::borrow::Cow;

    use super::span::{Endpoint, Kind, ZipkinSpan};

    const KEYS: &[&str] = &[
        "service.name",
        "service.namespace",
        "otlp.service.name.source",
        "host.name",
        "k8s.pod.name",
        "faas.id",
        "otel.scope.name",
        "otel.library.name",
        "otel.scope.version",
        "otel.library.version",
        "w3c.tracestate",
        "span.kind",
        "otel.status_code",
        "otel.status_description",
        "error",
        "otlp.link.0",
        "otlp.link.1",
        "otlp.link.2",
        "otlp.link.10",
        "net.host.ip",
        "net.host.port",
        "net.peer.ip",
        "peer.service",
        "zipkin.shared",
        "otel.zipkin.absentField.startTime",
        "http.method",
        "a",
        "z",
    ];
    const VALUES: &[&str] = &[
        "",
        "true",
        "false",
        "internal",
        "ERROR",
        "STATUS_CODE_OK",
        "ok",
        "host.name",
        "service.name",
        "java.io.IOException",
        "1.2.3.4",
        "8080",
        "5b8efff798038103d269b633813fc60c|0000000000000001|k=v|{\"n\":1}|2",
        "1|2||{}|0",
        "x|y",
        "svc-a",
    ];
    let mut x = 0x51ed_2701;
    for _ in 0..3000 {
        let spans: Vec<ZipkinSpan<'_>> = (0..next(&mut x) % 6)
            .map(|i| {
                let mut tags: Vec<(Cow<'_, str>, Cow<'_, str>)> = (0..next(&mut x) % 8)
                    .map(|_| {
                        (
                            Cow::Borrowed(KEYS[next(&mut x) as usize % KEYS.len()]),
                            Cow::Borrowed(VALUES[next(&mut x) as usize % VALUES.len()]),
                        )
                    })
                    .collect();
                tags.sort_by(|a, b| a.0.cmp(&b.0));
                tags.dedup_by(|a, b| a.0 == b.0);
                let endpoint = |x: &mut u32| {
                    (!next(x).is_multiple_of(3)).then(|| Endpoint {
                        service_name: ["", "svc-a", "svc-b"][next(x) as usize % 3].into(),
                        ipv4: next(x).is_multiple_of(2).then(|| [10, 0, 0, 1].into()),
                        ipv6: next(x)
                            .is_multiple_of(3)
                            .then_some(std::net::Ipv6Addr::LOCALHOST),
                        port: [None, Some(80), Some(9411)][next(x) as usize % 3],
                    })
                };
                ZipkinSpan {
                    trace_id: TraceId::from_halves(0, 7),
                    id: SpanId::from_u64(u64::from(i) + 1),
                    parent_id: next(&mut x).is_multiple_of(2).then(|| SpanId::from_u64(1)),
                    kind: [None, Some(Kind::Client), Some(Kind::Server)][next(&mut x) as usize % 3],
                    name: "op".into(),
                    timestamp_us: (!next(&mut x).is_multiple_of(4))
                        .then_some(1_700_000_000_000_000),
                    duration_us: Some(5),
                    local_endpoint: endpoint(&mut x),
                    remote_endpoint: endpoint(&mut x),
                    annotations: Vec::new(),
                    tags,
                    debug: false,
                    shared: next(&mut x).is_multiple_of(2),
                }
            })
            .collect();
        assert_eq!(
            mapping::to_batch(spans.clone(), false),
            reference::to_batch(spans.clone()),
            "{spans:#?}"
        );
    }
}

/// A JSON report straight to OTLP bytes must give exactly what the model path gives
/// (`encode_protobuf(&to_batch(..))`), or exactly its error.
fn same_otlp_as_through_the_model(body: &[u8]) {
    let direct = decode_json_to_otlp(body);
    let through = decode_json(body);
    match (&direct, &through) {
        (Ok(d), Ok(t)) => {
            assert_eq!(
                d.bytes,
                crate::otlp::encode_protobuf(&t.batch),
                "body {:?}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(d.spans, t.batch.span_count());
        }
        (Err(d), Err(t)) => assert_eq!(d.to_string(), t.to_string()),
        _ => panic!(
            "body {:?}\n direct: {direct:?}\n model: {through:?}",
            String::from_utf8_lossy(body)
        ),
    }
}

/// The same for a proto3 report.
fn same_otlp_from_proto_as_through_the_model(body: &[u8]) {
    let direct = decode_proto_to_otlp(body);
    let through = decode_proto(body);
    match (&direct, &through) {
        (Ok(d), Ok(t)) => {
            assert_eq!(d.bytes, crate::otlp::encode_protobuf(&t.batch));
            assert_eq!(d.spans, t.batch.span_count());
        }
        (Err(d), Err(t)) => assert_eq!(d.to_string(), t.to_string()),
        _ => panic!("direct: {direct:?}\n model: {through:?}"),
    }
}

/// Generated Zipkin spans with every kind of tag the mapping treats specially (resource keys,
/// scope and library tags, status, error, span.kind, links, tracestate, endpoint attribute
/// names), endpoints of each shape, shared, missing timestamps and annotations of each form.
fn generated_span(x: &mut u32, i: u32) -> super::span::ZipkinSpan<'static> {
    use std::borrow::Cow;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::span::{Annotation, Endpoint, Kind, ZipkinSpan};

    const KEYS: &[&str] = &[
        "service.name",
        "service.namespace",
        "service.version",
        "otlp.service.name.source",
        "host.name",
        "k8s.pod.name",
        "telemetry.sdk.language",
        "faas.id",
        "opencensus.starttime",
        "aws.ecs.task.arn",
        "otel.scope.name",
        "otel.library.name",
        "otel.scope.version",
        "otel.library.version",
        "w3c.tracestate",
        "span.kind",
        "otel.status_code",
        "otel.status_description",
        "error",
        "otlp.link.0",
        "otlp.link.1",
        "otlp.link.2",
        "otlp.link.10",
        "net.host.ip",
        "net.host.port",
        "net.peer.ip",
        "net.peer.port",
        "peer.service",
        "zipkin.shared",
        "otel.zipkin.absentField.startTime",
        "http.method",
        "http.url",
        "",
        "a",
        "z",
        "k\u{e9}y \"q\"",
    ];
    const VALUES: &[&str] = &[
        "",
        "true",
        "false",
        "internal",
        "INTERNAL",
        "ERROR",
        "STATUS_CODE_ERROR",
        "STATUS_CODE_OK",
        "ok",
        " Ok ",
        "host.name",
        "service.name",
        "java.io.IOException: reset",
        "1.2.3.4",
        "8080",
        "5b8efff798038103d269b633813fc60c|0000000000000001|k=v|{\"n\":1,\"s\":\"x|y\",\"f\":0.5,\"b\":true}|2",
        "1|2||{}|0",
        "1|2|a=b|{}",
        "zz|2||{}|0",
        "x|y",
        "svc-a",
        "caf\u{e9} \"q\" \\ \n \u{1F680}",
        "http://h:8080/api/items?limit=10",
    ];
    const ANNOTATIONS: &[&str] = &[
        "cs",
        "",
        "exception|{\"exception.type\":\"E\",\"n\":2,\"f\":1.5,\"b\":false,\"o\":{}}|3",
        "a|b",
        "x|not json|1",
        "{\"cache miss\": {\"cache.key\": \"cart:42\", \"n\": 3, \"big\": 1e300}}",
        "{\"a\": 1}",
        "{\"a\": {}, \"b\": {}}",
        "n|{}|18446744073709551615",
    ];
    let pick = |x: &mut u32, n: usize| next(x) as usize % n;
    let mut tags: Vec<(Cow<'static, str>, Cow<'static, str>)> = (0..next(x) % 12)
        .map(|_| {
            (
                Cow::Borrowed(KEYS[pick(x, KEYS.len())]),
                Cow::Borrowed(VALUES[pick(x, VALUES.len())]),
            )
        })
        .collect();
    // Most spans carry the tags a sidecar writes, so resources and scopes repeat and group.
    if !next(x).is_multiple_of(4) {
        tags.push((
            "otel.scope.name".into(),
            ["lib", "other"][pick(x, 2)].into(),
        ));
        tags.push(("host.name".into(), ["node-1", "node-2"][pick(x, 2)].into()));
    }
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    tags.dedup_by(|a, b| a.0 == b.0);
    let endpoint = |x: &mut u32| -> Option<Endpoint<'static>> {
        (!next(x).is_multiple_of(4)).then(|| Endpoint {
            service_name: ["", "svc-a", "svc-b", "s\u{e9}rvice \"q\""][pick(x, 4)].into(),
            ipv4: [
                None,
                Some(Ipv4Addr::new(10, 0, 0, 1)),
                Some(Ipv4Addr::new(0, 0, 0, 0)),
                Some(Ipv4Addr::new(255, 255, 255, 255)),
                Some(Ipv4Addr::new(192, 168, 100, 9)),
                Some(Ipv4Addr::new(1, 20, 199, 250)),
            ][pick(x, 6)],
            ipv6: [
                None,
                None,
                Some(Ipv6Addr::LOCALHOST),
                Some("2001:db8::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED)),
                Some("::ffff:10.0.0.1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED)),
            ][pick(x, 5)],
            port: [None, Some(80), Some(9411), Some(65535)][pick(x, 4)],
        })
    };
    let id = u64::from(i) + 1;
    ZipkinSpan {
        trace_id: if next(x).is_multiple_of(2) {
            TraceId::from_halves(0, u64::from(next(x)) + 1)
        } else {
            TraceId::from_halves(u64::from(next(x)) + 1, u64::from(next(x)))
        },
        id: SpanId::from_u64(id),
        parent_id: [None, Some(SpanId::from_u64(id)), Some(SpanId::from_u64(99))][pick(x, 3)],
        kind: [
            None,
            None,
            Some(Kind::Client),
            Some(Kind::Server),
            Some(Kind::Producer),
            Some(Kind::Consumer),
        ][pick(x, 6)],
        name: ["", "GET /items", "caf\u{e9} \"q\""][pick(x, 3)].into(),
        timestamp_us: [None, Some(1), Some(1_700_000_000_000_000), Some(u64::MAX)][pick(x, 4)],
        duration_us: [None, Some(0), Some(5), Some(u64::MAX)][pick(x, 4)],
        local_endpoint: endpoint(x),
        remote_endpoint: endpoint(x),
        annotations: (0..next(x) % 3)
            .map(|_| Annotation {
                timestamp_us: [0, 7, u64::MAX][pick(x, 3)],
                value: ANNOTATIONS[pick(x, ANNOTATIONS.len())].to_owned(),
            })
            .collect(),
        tags,
        debug: next(x).is_multiple_of(2),
        shared: next(x).is_multiple_of(2),
    }
}

/// Thousands of generated reports, as JSON and as proto3: the direct OTLP bytes are the model
/// path's bytes.
#[test]
fn direct_otlp_matches_the_model_path_on_generated_reports() {
    let mut x = 0x0dd_ba11;
    let mut spans_seen = 0;
    for _ in 0..4000 {
        let spans: Vec<_> = (0..next(&mut x) % 9)
            .map(|i| generated_span(&mut x, i))
            .collect();
        spans_seen += spans.len();
        // Straight from the spans, as the mapping gets them, with tags parsed or not.
        let parse = next(&mut x).is_multiple_of(2);
        let (bytes, count) = otlp::to_otlp(spans.clone(), parse);
        assert_eq!(
            bytes,
            crate::otlp::encode_protobuf(&mapping::to_batch(spans.clone(), parse)),
            "{spans:#?}"
        );
        assert_eq!(count, spans.len());
        // And through both readers.
        same_otlp_as_through_the_model(&json::write(&spans));
        same_otlp_from_proto_as_through_the_model(&proto::write(&spans));
    }
    assert!(spans_seen > 10_000);
}

/// The tags of the one-pass mapping test, unsorted and repeated in the JSON, through both paths.
#[test]
fn direct_otlp_matches_the_model_path_on_repeated_and_unsorted_tags() {
    let mut x = 0x7a65_1e55;
    for _ in 0..1000 {
        let mut body = String::from("[");
        for i in 0..next(&mut x) % 4 {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!(
                r#"{{"traceId":"a1","id":"{}","localEndpoint":{{"serviceName":"s{}","ipv4":"10.0.0.{}"}},"tags":{{"#,
                i + 1,
                next(&mut x) % 2,
                next(&mut x) % 256
            ));
            for j in 0..next(&mut x) % 8 {
                if j > 0 {
                    body.push(',');
                }
                let key = [
                    "host.name",
                    "error",
                    "otel.status_code",
                    "a",
                    "span.kind",
                    "otel.scope.name",
                    "net.peer.ip",
                ][next(&mut x) as usize % 7];
                let value = [
                    r#""x""#,
                    r#""true""#,
                    r#""ERROR""#,
                    "1",
                    "true",
                    r#""internal""#,
                    "-2.5",
                ][next(&mut x) as usize % 7];
                body.push_str(&format!("{key:?}:{value}"));
            }
            body.push_str("}}");
        }
        body.push(']');
        same_otlp_as_through_the_model(body.as_bytes());
    }
}

/// A report shaped like `meshtrace loadgen`'s (what the issue's benchmark sends).
#[test]
fn direct_otlp_matches_the_model_path_on_a_loadgen_shaped_report() {
    use model::{Resource, ResourceSpans, Scope, ScopeSpans, Span, Status};
    let services = ["frontend", "cart", "checkout"];
    let batch = TraceBatch {
        resource_spans: services
            .iter()
            .enumerate()
            .map(|(s, svc)| ResourceSpans {
                resource: Resource {
                    attributes: vec![
                        KeyValue::new("service.name", *svc),
                        KeyValue::new("service.namespace", "shop"),
                        KeyValue::new("host.name", format!("node-{s}")),
                        KeyValue::new("k8s.pod.name", format!("{svc}-7d9f8b-x2k4q")),
                        KeyValue::new("telemetry.sdk.language", "rust"),
                    ],
                    dropped_attributes_count: 0,
                },
                schema_url: String::new(),
                scope_spans: vec![ScopeSpans {
                    scope: Scope {
                        name: "meshtrace-loadgen".into(),
                        version: "0.1.0".into(),
                        ..Default::default()
                    },
                    schema_url: String::new(),
                    spans: (0..40u64)
                        .map(|i| Span {
                            trace_id: TraceId::from_halves(i + 1, i * 7 + 1),
                            span_id: SpanId::from_u64(i + 1),
                            parent_span_id: (i % 3 != 0).then(|| SpanId::from_u64(i)),
                            name: "router /api/cart".into(),
                            kind: if i % 2 == 0 {
                                SpanKind::Server
                            } else {
                                SpanKind::Client
                            },
                            start_unix_nano: 1_700_000_000_000_000_000 + i * 1000,
                            end_unix_nano: 1_700_000_000_000_050_000 + i * 1000,
                            attributes: vec![
                                KeyValue::new("http.method", "GET"),
                                KeyValue::new("http.route", "/api/cart"),
                                KeyValue::new("http.status_code", 200i64),
                                KeyValue::new("http.url", format!("http://{svc}:8080/api/cart")),
                                KeyValue::new("component", "proxy"),
                                KeyValue::new("upstream_cluster", "outbound|8080||cart"),
                                KeyValue::new("net.peer.ip", format!("10.0.{s}.{}", i * 6)),
                                KeyValue::new("guid:x-request-id", format!("{i:032x}")),
                            ],
                            status: Status {
                                code: if i % 9 == 8 {
                                    StatusCode::Error
                                } else {
                                    StatusCode::Unset
                                },
                                message: String::new(),
                            },
                            ..Default::default()
                        })
                        .collect(),
                }],
            })
            .collect(),
    };
    let body = encode_json(&batch);
    same_otlp_as_through_the_model(&body);
    assert_eq!(decode_json_to_otlp(&body).unwrap().spans, 120);
}

/// IPv4 addresses written straight into OTLP bytes read as `Ipv4Addr`'s own text.
#[test]
fn ipv4_text_is_what_display_writes() {
    let mut x = 0x1b4_f00d;
    let edge = [0u8, 1, 9, 10, 42, 99, 100, 199, 200, 255];
    for a in edge {
        for b in 0..=255u8 {
            let ip = std::net::Ipv4Addr::new(a, b, edge[b as usize % edge.len()], 255 - b);
            assert_eq!(otlp::ipv4_text(ip), ip.to_string());
        }
    }
    for _ in 0..10_000 {
        let ip = std::net::Ipv4Addr::from(next(&mut x));
        assert_eq!(otlp::ipv4_text(ip), ip.to_string());
    }
}

/// `parse_string_tags`, with the OTel Collector's rules: what reads as an integer, a decimal or
/// a boolean becomes one; everything else (and every resource tag) stays text; the status and
/// link tags are read as text first. The same bytes whichever path a report takes.
#[test]
fn parse_string_tags_types_span_tags_as_the_collector_does() {
    let body = br#"[{"traceId":"0af7651916cd43dd8448eb211c80319c","id":"b7ad6b7169203331",
      "name":"GET","timestamp":1700000000000000,"duration":5,
      "localEndpoint":{"serviceName":"api","port":8080},
      "tags":{"http.status_code":"200","neg":"-42","big":"99999999999999999999",
        "small":"-99999999999999999999","ratio":"0.25","negd":"-1.50","flag":"true",
        "off":"false","True":"True","plus":"+1","exp":"1e3","dot":"1.","lead":".5",
        "hex":"0x10","space":" 1","empty":"","inf":"inf","json":"{\"a\":1}",
        "error":"true","otel.status_description":"boom","otel.status_code":"ERROR",
        "host.id":"123"}}]"#;
    let options = ReadOptions {
        parse_string_tags: true,
    };
    let batch = options.decode_json(body).unwrap().batch;
    let span = &batch.resource_spans[0].scope_spans[0].spans[0];
    for (key, want) in [
        ("http.status_code", AnyValue::Int(200)),
        ("neg", AnyValue::Int(-42)),
        ("big", AnyValue::Int(i64::MAX)),
        ("small", AnyValue::Int(i64::MIN)),
        ("ratio", AnyValue::Double(0.25)),
        ("negd", AnyValue::Double(-1.5)),
        ("flag", AnyValue::Bool(true)),
        ("off", AnyValue::Bool(false)),
        ("net.host.port", AnyValue::Int(8080)),
    ] {
        assert_eq!(attr(span, key), &want, "{key}");
    }
    for key in [
        "True", "plus", "exp", "dot", "lead", "hex", "space", "empty", "inf", "json",
    ] {
        assert!(matches!(attr(span, key), AnyValue::String(_)), "{key}");
    }
    // The status came from the text tags; resource tags stay text.
    assert_eq!(span.status.code, StatusCode::Error);
    assert_eq!(span.status.message, "boom");
    assert!(span.attribute("error").is_none());
    let host = batch.resource_spans[0]
        .resource
        .attributes
        .iter()
        .find(|kv| kv.key == "host.id");
    assert_eq!(
        host.map(|kv| &kv.value),
        Some(&AnyValue::String("123".into()))
    );

    // Off (the default), every tag is a string.
    let plain = decode(std::str::from_utf8(body).unwrap());
    let span = &plain.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(
        attr(span, "http.status_code"),
        &AnyValue::String("200".into())
    );

    // The direct OTLP bytes are the model path's, from JSON and from proto3.
    let direct = options.decode_json_to_otlp(body).unwrap();
    assert_eq!(direct.bytes, crate::otlp::encode_protobuf(&batch));
    let proto = encode_proto(&plain);
    let from_proto = options.decode_proto(&proto).unwrap().batch;
    assert_eq!(
        options.decode_proto_to_otlp(&proto).unwrap().bytes,
        crate::otlp::encode_protobuf(&from_proto)
    );
    let span = &from_proto.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(attr(span, "ratio"), &AnyValue::Double(0.25));
}
