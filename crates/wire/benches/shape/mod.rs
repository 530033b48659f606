//! The request the wire benches read: 512 spans shaped like `meshtrace loadgen`'s (a mesh's
//! traces from five services, each span with the eight or nine attributes a sidecar attaches,
//! one trace in fifty failing), in the model, for each bench to encode as its format.

use model::{
    KeyValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanId, SpanKind, Status,
    StatusCode, TraceBatch, TraceId,
};

pub const SPANS: usize = 512;
const SERVICES: [&str; 5] = ["frontend", "cart", "checkout", "payment", "inventory"];

/// A deterministic stand-in for random numbers.
fn mix(i: u64) -> u64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5851_F42D_4C95_7F2D;
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 32)
}

pub fn loadgen_batch() -> TraceBatch {
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
    for i in 0..SPANS as u64 {
        let trace = i / 6;
        let service = (i % 6 / 2) as usize % SERVICES.len();
        let route = ["/api/cart", "/api/checkout", "/api/items/{id}"][(mix(i) % 3) as usize];
        let error = mix(trace).is_multiple_of(50) && i % 6 == 5;
        let mut attributes = vec![
            KeyValue::new(
                "http.method",
                if mix(i).is_multiple_of(4) {
                    "POST"
                } else {
                    "GET"
                },
            ),
            KeyValue::new("http.route", route),
            KeyValue::new("http.status_code", if error { 503i64 } else { 200 }),
            KeyValue::new(
                "http.url",
                format!("http://{}:8080{route}", SERVICES[service]),
            ),
            KeyValue::new("component", "proxy"),
            KeyValue::new(
                "upstream_cluster",
                format!("outbound|8080||{}", SERVICES[service]),
            ),
            KeyValue::new(
                "net.peer.ip",
                format!("10.0.{service}.{}", mix(i) % 248 + 2),
            ),
            KeyValue::new("guid:x-request-id", format!("{:032x}", mix(trace))),
        ];
        if i % 2 == 1 {
            attributes.push(KeyValue::new("request_size", (mix(i) % 4096) as i64));
        }
        by_service[service].push(Span {
            trace_id: TraceId::from_halves(mix(trace), mix(trace + 1) | 1),
            span_id: SpanId::from_u64(mix(i + 7) | 1),
            parent_span_id: (i % 6 != 0).then(|| SpanId::from_u64(mix(i + 6) | 1)),
            name: format!("router {route}"),
            kind: if i % 2 == 1 {
                SpanKind::Client
            } else {
                SpanKind::Server
            },
            start_unix_nano: 1_700_000_000_000_000_000 + i * 1000,
            end_unix_nano: 1_700_000_000_000_000_000 + i * 1000 + 50_000,
            attributes,
            status: Status {
                code: if error {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                },
                message: String::new(),
            },
            ..Default::default()
        });
    }
    TraceBatch {
        resource_spans: by_service
            .into_iter()
            .enumerate()
            .map(|(s, spans)| ResourceSpans {
                resource: Resource {
                    attributes: vec![
                        KeyValue::new("service.name", SERVICES[s]),
                        KeyValue::new("service.namespace", "shop"),
                        KeyValue::new("host.name", format!("node-{s}")),
                        KeyValue::new("k8s.pod.name", format!("{}-7d9f8b-x2k4q", SERVICES[s])),
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
                    spans,
                }],
            })
            .collect(),
    }
}
