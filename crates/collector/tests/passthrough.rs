//! The OTLP pass-through fast path (`collector::payload`), end to end: OTLP/HTTP protobuf in,
//! `batch`, OTLP/HTTP out to a capturing backend.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use collector::config::Config;
use collector::pipeline::Collector;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

type Bodies = Arc<Mutex<Vec<Vec<u8>>>>;

/// A backend taking `POST /v1/traces` and keeping each body.
async fn backend() -> (SocketAddr, Bodies) {
    let bodies: Bodies = Arc::default();
    let kept = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(body.to_vec());
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (addr, bodies)
}

/// Runs a collector from `processors` and `pipeline_processors`, exporting to `backend` with
/// `otlphttp` (no compression); returns its OTLP/HTTP address and the stop switch.
async fn collector(
    processors: &str,
    pipeline_processors: &str,
    backend: SocketAddr,
) -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let yaml = format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
processors:
{processors}
exporters:
  otlphttp:
    endpoint: http://{backend}
    compression: none
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: {pipeline_processors}
      exporters: [otlphttp]
"
    );
    let config = Config::parse(&yaml, &|_| None).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let (stop, stop_rx) = watch::channel(false);
    let c = Collector::start(&config, stop_rx).await.unwrap();
    let addr = c
        .listeners()
        .iter()
        .find(|l| l.name == "otlp-http")
        .unwrap()
        .addr;
    let run = tokio::spawn(async move { c.run().await.unwrap() });
    (addr, stop, run)
}

/// POSTs an OTLP protobuf body; the HTTP status.
async fn post(addr: SocketAddr, body: &[u8]) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

fn span(trace: u8, id: u8, name: &str) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        name: name.into(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_001_000_000,
        ..Default::default()
    }
}

fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(service.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

const BATCH: &str = "  batch:
    timeout: 30s
    send_batch_size: 1000";

/// The spans (name, attribute keys) a set of bodies holds.
fn spans_in(bodies: &[Vec<u8>]) -> Vec<(String, Vec<String>)> {
    bodies
        .iter()
        .flat_map(|b| {
            ExportTraceServiceRequest::decode(b.as_slice())
                .unwrap()
                .resource_spans
        })
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .map(|s| (s.name, s.attributes.into_iter().map(|kv| kv.key).collect()))
        .collect()
}

#[tokio::test]
async fn otlp_bytes_are_forwarded_unchanged_and_batched_by_concatenation() {
    let (backend, bodies) = backend().await;
    let (addr, stop, run) = collector(BATCH, "[batch]", backend).await;
    let mut a = request("a", vec![span(1, 1, "a1"), span(1, 2, "a2")]).encode_to_vec();
    // A field the model does not know: only forwarding the bytes as they came keeps it.
    a.extend_from_slice(&[0x7a, 0x03, b'x', b'y', b'z']);
    let b = request("b", vec![span(2, 3, "b1")]).encode_to_vec();
    assert_eq!(post(addr, &a).await, 200);
    assert_eq!(post(addr, &b).await, 200);
    stop.send_replace(true);
    run.await.unwrap();
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies, vec![[a, b].concat()]);
}

#[tokio::test]
async fn a_mutating_processor_still_applies() {
    let (backend, bodies) = backend().await;
    let processors = format!(
        r#"  attributes:
    actions:
      - key: added
        value: "yes"
        action: insert
{BATCH}"#
    );
    let (addr, stop, run) = collector(&processors, "[attributes, batch]", backend).await;
    let a = request("a", vec![span(1, 1, "a1"), span(1, 2, "a2")]).encode_to_vec();
    assert_eq!(post(addr, &a).await, 200);
    stop.send_replace(true);
    run.await.unwrap();
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(
        spans_in(&bodies),
        [
            ("a1".to_owned(), vec!["added".to_owned()]),
            ("a2".to_owned(), vec!["added".to_owned()])
        ]
    );
}

#[tokio::test]
async fn a_span_refused_as_invalid_is_never_forwarded() {
    let (backend, bodies) = backend().await;
    let (addr, stop, run) = collector(BATCH, "[batch]", backend).await;
    let mixed = request(
        "a",
        vec![span(1, 1, "good"), span(0, 2, "invalid-trace-id-span")],
    )
    .encode_to_vec();
    let clean = request("b", vec![span(2, 3, "clean")]).encode_to_vec();
    assert_eq!(post(addr, &mixed).await, 200);
    assert_eq!(post(addr, &clean).await, 200);
    stop.send_replace(true);
    run.await.unwrap();
    let bodies = bodies.lock().unwrap().clone();
    let names: Vec<String> = spans_in(&bodies).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["good", "clean"]);
    let all = bodies.concat();
    assert!(
        !all.windows(b"invalid-trace-id-span".len())
            .any(|w| w == b"invalid-trace-id-span"),
        "the invalid span went out"
    );
}

/// A backend for OTLP gRPC (the `receiver` crate's server) keeping each request's bytes.
struct GrpcBackend(Bodies);

impl receiver::Sink for GrpcBackend {
    async fn accept(&self, received: receiver::Received) -> Result<(), receiver::SinkError> {
        let bytes = received
            .otlp_protobuf
            .expect("an OTLP gRPC request has its bytes");
        self.0.lock().unwrap().push(bytes.to_vec());
        Ok(())
    }
}

#[tokio::test]
async fn otlp_grpc_exporter_sends_the_received_bytes_concatenated() {
    let bodies: Bodies = Arc::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    let sink = Arc::new(GrpcBackend(bodies.clone()));
    tokio::spawn(receiver::otlp_grpc::serve(
        l,
        receiver::otlp_grpc::TraceService::new(sink, receiver::Limits::default()),
        Default::default(),
        std::future::pending(),
    ));
    let yaml = format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
processors:
{BATCH}
exporters:
  otlp:
    endpoint: {backend}
    tls:
      insecure: true
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp]
"
    );
    let config = Config::parse(&yaml, &|_| None).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let (stop, stop_rx) = watch::channel(false);
    let c = Collector::start(&config, stop_rx).await.unwrap();
    let addr = c.listeners()[0].addr;
    let run = tokio::spawn(async move { c.run().await.unwrap() });
    let mut a = request("a", vec![span(1, 1, "a1"), span(1, 2, "a2")]).encode_to_vec();
    a.extend_from_slice(&[0x7a, 0x03, b'x', b'y', b'z']);
    let b = request("b", vec![span(2, 3, "b1")]).encode_to_vec();
    assert_eq!(post(addr, &a).await, 200);
    assert_eq!(post(addr, &b).await, 200);
    stop.send_replace(true);
    run.await.unwrap();
    assert_eq!(*bodies.lock().unwrap(), vec![[a, b].concat()]);
}

#[tokio::test]
async fn a_request_prost_would_refuse_is_refused_not_forwarded() {
    // The receiver only scans requests for a byte pipeline; the scan must refuse what the full
    // decode refuses, or one bad request would poison the batch it is concatenated into.
    let (backend, bodies) = backend().await;
    let (addr, stop, run) = collector(BATCH, "[batch]", backend).await;
    let mut bad = request("a", vec![span(1, 1, "ZZZZ")]).encode_to_vec();
    let at = bad.windows(4).position(|w| w == b"ZZZZ").unwrap();
    bad[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xfd, 0xfc]); // not UTF-8
    let clean = request("b", vec![span(2, 3, "clean")]).encode_to_vec();
    assert_eq!(post(addr, &bad).await, 400);
    assert_eq!(post(addr, &bad[..bad.len() - 1]).await, 400, "truncated");
    assert_eq!(post(addr, &clean).await, 200);
    stop.send_replace(true);
    run.await.unwrap();
    let bodies = bodies.lock().unwrap().clone();
    let names: Vec<String> = spans_in(&bodies).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["clean"]);
}
