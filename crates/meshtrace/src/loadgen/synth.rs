//! Synthetic traces shaped like a mesh's: an edge SERVER span, then CLIENT/SERVER pairs across
//! services, with the attributes HTTP instrumentation and sidecars really attach. Each trace
//! derives from `(seed, index)` alone, so it can be regenerated to check what was stored.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use model::{
    KeyValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanId, SpanKind, Status,
    StatusCode, TraceBatch, TraceId,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const SERVICES: [&str; 5] = ["frontend", "cart", "checkout", "payment", "inventory"];
const ROUTES: [&str; 6] = [
    "/api/cart",
    "/api/checkout",
    "/api/items/{id}",
    "/api/pay",
    "/healthz",
    "/api/stock",
];

#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub seed: u64,
    pub spans_per_trace: usize,
}

/// One encoded request (an OTLP `ExportTraceServiceRequest`, or a Zipkin v2 JSON list) and
/// how many spans it carries.
pub struct EncodedRequest {
    pub body: Bytes,
    pub spans: u64,
}

/// The wire format requests are encoded in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OtlpProtobuf,
    ZipkinJson,
}

fn rng(shape: Shape, index: u64) -> SmallRng {
    SmallRng::seed_from_u64(shape.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index)
}

/// The id of trace number `index`.
pub fn trace_id(shape: Shape, index: u64) -> TraceId {
    let mut r = rng(shape, index);
    TraceId::from_halves(r.random(), r.random::<u64>() | 1)
}

/// Trace number `index`: `(service index, span)` pairs, parents before children.
pub fn trace(shape: Shape, index: u64, now_nanos: u64) -> Vec<(usize, Span)> {
    let mut r = rng(shape, index);
    let trace_id = TraceId::from_halves(r.random(), r.random::<u64>() | 1);
    let start = now_nanos - r.random_range(0..60_000_000_000u64);
    let total = r.random_range(2_000_000..80_000_000u64);
    let failing = r.random_ratio(1, 50);
    // Envoy's x-request-id is made once at the edge and carried by every span of the request.
    let request_id = format!("{:032x}", r.random::<u128>());
    let mut spans: Vec<(usize, Span)> = Vec::with_capacity(shape.spans_per_trace);
    for i in 0..shape.spans_per_trace {
        let span_id = SpanId::from_u64(r.random::<u64>() | 1);
        let (service, parent, kind) = if i == 0 {
            (0, None, SpanKind::Server)
        } else if i % 2 == 1 {
            // A call out of the previous span's service.
            let (svc, ref p) = spans[i - 1];
            (svc, Some(p.span_id), SpanKind::Client)
        } else {
            // The callee's side of that call.
            let (svc, ref p) = spans[i - 1];
            (
                (svc + 1) % SERVICES.len(),
                Some(p.span_id),
                SpanKind::Server,
            )
        };
        let depth = i as u64 + 1;
        let s = start + depth * 100_000;
        let e = (start + total / depth).max(s + 50_000);
        let route = ROUTES[r.random_range(0..ROUTES.len())];
        let error = failing && i + 1 == shape.spans_per_trace;
        let status_code: i64 = if error { 503 } else { 200 };
        let mut attributes = vec![
            KeyValue::new(
                "http.method",
                if r.random_ratio(1, 4) { "POST" } else { "GET" },
            ),
            KeyValue::new("http.route", route),
            KeyValue::new("http.status_code", status_code),
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
                format!("10.0.{}.{}", service, r.random_range(2..250u8)),
            ),
            KeyValue::new("guid:x-request-id", request_id.clone()),
        ];
        if kind == SpanKind::Client {
            attributes.push(KeyValue::new("request_size", r.random_range(0..4096i64)));
        }
        spans.push((
            service,
            Span {
                trace_id,
                span_id,
                parent_span_id: parent,
                name: format!("{} {route}", if i == 0 { "ingress" } else { "router" }),
                kind,
                start_unix_nano: s,
                end_unix_nano: e,
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
            },
        ));
    }
    spans
}

fn resource(service: usize) -> Resource {
    Resource {
        attributes: vec![
            KeyValue::new("service.name", SERVICES[service]),
            KeyValue::new("service.namespace", "shop"),
            KeyValue::new("host.name", format!("node-{service}")),
            KeyValue::new(
                "k8s.pod.name",
                format!("{}-7d9f8b-x2k4q", SERVICES[service]),
            ),
            KeyValue::new("telemetry.sdk.language", "rust"),
        ],
        dropped_attributes_count: 0,
    }
}

/// Encodes `traces` traces into requests of about `batch` spans, grouped by service.
pub fn requests(shape: Shape, traces: u64, batch: usize, format: Format) -> Vec<EncodedRequest> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let scope = Scope {
        name: "meshtrace-loadgen".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
    let mut pending = 0usize;
    let mut flush = |by_service: &mut Vec<Vec<Span>>, pending: &mut usize| {
        let batch = TraceBatch {
            resource_spans: by_service
                .iter_mut()
                .enumerate()
                .filter(|(_, spans)| !spans.is_empty())
                .map(|(svc, spans)| ResourceSpans {
                    resource: resource(svc),
                    schema_url: String::new(),
                    scope_spans: vec![ScopeSpans {
                        scope: scope.clone(),
                        schema_url: String::new(),
                        spans: std::mem::take(spans),
                    }],
                })
                .collect(),
        };
        let body = match format {
            Format::OtlpProtobuf => wire::otlp::encode_protobuf(&batch),
            Format::ZipkinJson => wire::zipkin::encode_json(&batch),
        };
        out.push(EncodedRequest {
            body: Bytes::from(body),
            spans: *pending as u64,
        });
        *pending = 0;
    };
    for index in 0..traces {
        for (svc, span) in trace(shape, index, now) {
            by_service[svc].push(span);
            pending += 1;
        }
        if pending >= batch {
            flush(&mut by_service, &mut pending);
        }
    }
    if pending > 0 {
        flush(&mut by_service, &mut pending);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_reproducible_and_form_one_tree() {
        let shape = Shape {
            seed: 7,
            spans_per_trace: 6,
        };
        let a = trace(shape, 42, 1_000_000_000_000_000);
        let b = trace(shape, 42, 1_000_000_000_000_000);
        assert_eq!(a, b);
        assert_eq!(a[0].1.trace_id, trace_id(shape, 42));
        assert_ne!(trace_id(shape, 42), trace_id(shape, 43));
        assert!(a[0].1.parent_span_id.is_none());
        for w in a.windows(2) {
            assert_eq!(w[1].1.parent_span_id, Some(w[0].1.span_id));
        }
    }

    #[test]
    fn requests_carry_every_span() {
        let shape = Shape {
            seed: 1,
            spans_per_trace: 5,
        };
        let reqs = requests(shape, 100, 64, Format::OtlpProtobuf);
        assert_eq!(reqs.iter().map(|r| r.spans).sum::<u64>(), 500);
        let decoded = wire::otlp::decode_protobuf(&reqs[0].body).expect("valid OTLP");
        assert_eq!(decoded.batch.span_count() as u64, reqs[0].spans);
        let zipkin = requests(shape, 100, 64, Format::ZipkinJson);
        for (z, o) in zipkin.iter().zip(&reqs) {
            let decoded = wire::zipkin::decode_json(&z.body).expect("valid Zipkin JSON");
            assert_eq!(decoded.batch.span_count() as u64, z.spans);
            assert_eq!(z.spans, o.spans);
        }
    }
}
