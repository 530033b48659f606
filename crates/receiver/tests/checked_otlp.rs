//! A sink that needs only OTLP bytes ([`Needs::OtlpBytes`]): OTLP protobuf requests reach it
//! checked, not decoded, and every answer (success, partial success, malformed request) is
//! byte for byte the one a sink taking decoded batches gets — over gRPC (tonic's client, a real
//! socket) and OTLP/HTTP.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use receiver::{CheckedOtlp, Limits, Needs, Received, Sink, SinkError};
use tower::ServiceExt;

/// Records what arrives in which form.
struct Recorder {
    needs: Needs,
    decoded: Mutex<Vec<Received>>,
    checked: Mutex<Vec<CheckedOtlp>>,
}

impl Recorder {
    fn new(needs: Needs) -> Arc<Self> {
        Arc::new(Self {
            needs,
            decoded: Mutex::new(Vec::new()),
            checked: Mutex::new(Vec::new()),
        })
    }

    /// Spans received in either form.
    fn spans(&self) -> usize {
        let decoded: usize = self
            .decoded
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.batch.span_count())
            .sum();
        let checked: usize = self.checked.lock().unwrap().iter().map(|c| c.spans).sum();
        decoded + checked
    }
}

impl Sink for Recorder {
    fn needs(&self) -> Needs {
        self.needs
    }

    async fn accept(&self, received: Received) -> Result<(), SinkError> {
        self.decoded.lock().unwrap().push(received);
        Ok(())
    }

    async fn accept_otlp(&self, request: CheckedOtlp) -> Result<(), SinkError> {
        self.checked.lock().unwrap().push(request);
        Ok(())
    }
}

fn span(trace_id: Vec<u8>, span_id: Vec<u8>) -> Span {
    Span {
        trace_id,
        span_id,
        name: "op".into(),
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn good() -> Span {
    span(vec![7; 16], vec![1; 8])
}

/// Request bodies: valid, partly invalid, all invalid, empty, and malformed ones.
fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let valid = request(vec![good(), good()]).encode_to_vec();
    let mut not_utf8 = request(vec![Span {
        name: "ZZ".into(),
        ..good()
    }])
    .encode_to_vec();
    let at = not_utf8.windows(2).position(|w| w == b"ZZ").unwrap();
    not_utf8[at..at + 2].copy_from_slice(&[0xc3, 0x28]);
    vec![
        ("valid", valid.clone()),
        (
            "partly invalid",
            request(vec![
                good(),
                span(vec![7; 5], vec![1; 8]),
                span(vec![7; 16], vec![0; 8]),
            ])
            .encode_to_vec(),
        ),
        (
            "all invalid",
            request(vec![span(vec![0; 16], vec![1; 8])]).encode_to_vec(),
        ),
        ("empty", Vec::new()),
        ("truncated", valid[..valid.len() - 3].to_vec()),
        ("wrong wire type", vec![0x08, 0x01]),
        ("not UTF-8", not_utf8),
    ]
}

async fn grpc_server(sink: Arc<Recorder>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(receiver::otlp_grpc::serve(
        listener,
        receiver::otlp_grpc::TraceService::new(sink, Limits::default()),
        Default::default(),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

#[tokio::test]
async fn grpc_checked_requests_reach_the_sink_as_their_bytes_and_answers_match() {
    let bytes_sink = Recorder::new(Needs::OtlpBytes);
    let batch_sink = Recorder::new(Needs::Batch);
    let mut bytes_client = TraceServiceClient::connect(grpc_server(Arc::clone(&bytes_sink)).await)
        .await
        .unwrap();
    let mut batch_client = TraceServiceClient::connect(grpc_server(Arc::clone(&batch_sink)).await)
        .await
        .unwrap();
    // tonic's client sends well-formed requests only: the valid, invalid-span and empty ones.
    for spans in [
        vec![good(), good(), good()],
        vec![good(), span(vec![7; 5], vec![1; 8])],
        vec![span(vec![0; 16], vec![1; 8])],
        vec![],
    ] {
        let req = request(spans);
        let a = bytes_client.export(req.clone()).await;
        let b = batch_client.export(req).await;
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a.into_inner(), b.into_inner()),
            (Err(a), Err(b)) => assert_eq!((a.code(), a.message()), (b.code(), b.message())),
            (a, b) => panic!("answers differ: {a:?} / {b:?}"),
        }
    }
    assert_eq!(bytes_sink.spans(), batch_sink.spans());
    let checked = bytes_sink.checked.lock().unwrap();
    assert_eq!(
        checked.len(),
        1,
        "only the all-valid request is passed as bytes"
    );
    assert_eq!(checked[0].spans, 3);
    assert_eq!(
        checked[0].bytes,
        request(vec![good(), good(), good()]).encode_to_vec()
    );
    // The partly invalid request went decoded, its bad span left out.
    assert_eq!(bytes_sink.decoded.lock().unwrap()[0].batch.span_count(), 1);
}

async fn post(app: axum::Router, body: Vec<u8>) -> (u16, Vec<u8>) {
    let req = Request::post("/v1/traces")
        .header("content-type", "application/x-protobuf")
        .body(Body::from(body))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

#[tokio::test]
async fn http_answers_are_those_of_the_full_decode() {
    let bytes_sink = Recorder::new(Needs::OtlpBytes);
    let batch_sink = Recorder::new(Needs::Batch);
    for (what, body) in bodies() {
        let a = post(
            receiver::otlp_http::router(Arc::clone(&bytes_sink), Limits::default()),
            body.clone(),
        )
        .await;
        let b = post(
            receiver::otlp_http::router(Arc::clone(&batch_sink), Limits::default()),
            body,
        )
        .await;
        assert_eq!(a, b, "{what}: answers differ");
        assert_eq!(bytes_sink.spans(), batch_sink.spans(), "{what}");
        if what != "valid" && what != "partly invalid" {
            assert!(a.0 != 200 || what == "empty", "{what}: {a:?}");
        }
    }
    assert_eq!(bytes_sink.checked.lock().unwrap().len(), 1);
    assert_eq!(bytes_sink.spans(), 3);
}

async fn post_zipkin(app: axum::Router, content_type: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let req = Request::post("/api/v2/spans")
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

/// Zipkin reports reach a bytes sink encoded as OTLP (the same spans a batch sink gets), with
/// the same answers, including for invalid and malformed reports.
#[tokio::test]
async fn zipkin_reports_reach_a_bytes_sink_as_otlp_with_the_same_answers() {
    let bytes_sink = Recorder::new(Needs::OtlpBytes);
    let batch_sink = Recorder::new(Needs::Batch);
    let valid = br#"[{"traceId":"0707070707070707","id":"0102030405060708","name":"x","kind":"SERVER",
        "timestamp":1700000000000000,"duration":5,"localEndpoint":{"serviceName":"a","ipv4":"10.0.0.1"},
        "tags":{"http.method":"GET","host.name":"h","error":"true"}},
        {"traceId":"0707070707070707","id":"0102030405060709","parentId":"0102030405060708",
        "localEndpoint":{"serviceName":"b"},"annotations":[{"timestamp":1700000000000001,"value":"cs"}]}]"#
        .to_vec();
    let proto = wire::zipkin::encode_proto(&wire::zipkin::decode_json(&valid).unwrap().batch);
    let bodies: Vec<(&str, &str, Vec<u8>)> = vec![
        ("valid", "application/json", valid.clone()),
        ("valid proto", "application/x-protobuf", proto),
        ("empty", "application/json", b"[]".to_vec()),
        (
            "invalid span",
            "application/json",
            br#"[{"traceId":"07","id":"01"},{"traceId":"zz","id":"01"}]"#.to_vec(),
        ),
        ("malformed", "application/json", b"[{".to_vec()),
    ];
    for (what, content_type, body) in bodies {
        let a = post_zipkin(
            receiver::zipkin_http::router(Arc::clone(&bytes_sink), Limits::default()),
            content_type,
            body.clone(),
        )
        .await;
        let b = post_zipkin(
            receiver::zipkin_http::router(Arc::clone(&batch_sink), Limits::default()),
            content_type,
            body,
        )
        .await;
        assert_eq!(a, b, "{what}: answers differ");
        assert_eq!(bytes_sink.spans(), batch_sink.spans(), "{what}");
    }
    assert!(bytes_sink.decoded.lock().unwrap().is_empty());
    let checked = bytes_sink.checked.lock().unwrap();
    let decoded = batch_sink.decoded.lock().unwrap();
    assert_eq!(checked.len(), 2);
    assert_eq!(decoded.len(), 2);
    for (c, d) in checked.iter().zip(decoded.iter()) {
        assert_eq!(c.spans, 2);
        assert_eq!(
            wire::otlp::decode_protobuf(&c.bytes).unwrap().batch,
            d.batch
        );
        assert_eq!(d.otlp_protobuf, None);
    }
}
