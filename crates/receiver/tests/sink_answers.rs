//! How each receiver answers for what its sink says: accepted, overloaded, unavailable — over
//! real sockets, with tonic's OTLP client for gRPC and hyper-served HTTP through `tower`.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use receiver::{Limits, Received, Sink, SinkError};
use tower::ServiceExt;

#[derive(Clone, Copy)]
enum Mode {
    Accept,
    Overloaded,
    Unavailable,
}

struct TestSink {
    mode: Mode,
    got: Mutex<Vec<Received>>,
}

impl TestSink {
    fn new(mode: Mode) -> Arc<Self> {
        Arc::new(Self {
            mode,
            got: Mutex::new(Vec::new()),
        })
    }

    fn spans(&self) -> usize {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.batch.span_count())
            .sum()
    }
}

impl Sink for TestSink {
    async fn accept(&self, received: Received) -> Result<(), SinkError> {
        match self.mode {
            Mode::Accept => {
                self.got.lock().unwrap().push(received);
                Ok(())
            }
            Mode::Overloaded => Err(SinkError::Overloaded("queue full".into())),
            Mode::Unavailable => Err(SinkError::Unavailable("disk failing".into())),
        }
    }
}

fn span(trace_id: Vec<u8>, name: &str) -> Span {
    Span {
        trace_id,
        span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
        name: name.into(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_100_000_000,
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("svc".into())),
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

async fn grpc_server(sink: Arc<TestSink>) -> String {
    grpc_server_with(sink, Limits::default()).await
}

async fn grpc_server_with(sink: Arc<TestSink>, limits: Limits) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(receiver::otlp_grpc::serve(
        listener,
        receiver::otlp_grpc::TraceService::new(sink, limits),
        Default::default(),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

/// Requests of every size the receiver reads differently (one HTTP/2 frame, many frames, gzip, zstd,
/// over the limit) reach the sink whole, or are refused with nothing delivered.
#[tokio::test]
async fn grpc_requests_of_any_size_and_encoding_arrive_whole() {
    let sink = TestSink::new(Mode::Accept);
    let limit = 1 << 20;
    let url = grpc_server_with(
        Arc::clone(&sink),
        Limits {
            max_body_bytes: limit,
        },
    )
    .await;
    let mut client = TraceServiceClient::connect(url).await.unwrap();
    // Spans of ≈1 KiB: 8 fit one 256 KiB frame, 600 need several, 1,100 pass the 1 MiB limit.
    let spans = |n: usize| -> Vec<Span> {
        (0..n)
            .map(|i| {
                let mut s = span(vec![9; 16], &format!("{i:01000}"));
                s.span_id = (i as u64 + 1).to_be_bytes().to_vec();
                s
            })
            .collect()
    };
    let mut delivered = 0;
    for n in [8, 600] {
        let sent = request(spans(n));
        assert!(n < 10 || sent.encoded_len() > 256 << 10);
        client.export(sent).await.unwrap();
        delivered += n;
        assert_eq!(sink.spans(), delivered, "{n} spans");
    }
    let mut gzip = client
        .clone()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    gzip.export(request(spans(300))).await.unwrap();
    delivered += 300;
    assert_eq!(sink.spans(), delivered, "gzip");
    // zstd, as the OTel Collector's exporters send with `compression: zstd`; one that inflates
    // past the limit is refused like an uncompressed one.
    let mut zstd = client
        .clone()
        .send_compressed(tonic::codec::CompressionEncoding::Zstd);
    zstd.export(request(spans(200))).await.unwrap();
    delivered += 200;
    assert_eq!(sink.spans(), delivered, "zstd");
    // (tonic checks the limit while it inflates: RESOURCE_EXHAUSTED, with no RetryInfo, so
    // OTLP clients do not retry it.)
    let err = zstd.export(request(spans(1_100))).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("size limit"), "{err}");
    assert_eq!(
        sink.spans(),
        delivered,
        "nothing of the refused zstd request"
    );

    let too_big = request(spans(1_100));
    assert!(too_big.encoded_len() > limit);
    let err = client.export(too_big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");
    assert!(err.message().contains("too large"), "{err}");
    assert_eq!(sink.spans(), delivered, "nothing of the refused request");
    {
        let got = sink.got.lock().unwrap();
        let sizes: Vec<usize> = got
            .iter()
            .flat_map(|r| r.batch.resource_spans.iter())
            .flat_map(|rs| rs.scope_spans.iter())
            .map(|ss| ss.spans.len())
            .collect();
        assert_eq!(sizes, [8, 600, 300, 200]);
    }
}

#[tokio::test]
async fn grpc_partial_success_and_retryable_codes() {
    let sink = TestSink::new(Mode::Accept);
    let mut client = TraceServiceClient::connect(grpc_server(Arc::clone(&sink)).await)
        .await
        .unwrap();
    let reply = client
        .export(request(vec![
            span(vec![7; 16], "good"),
            span(vec![7; 5], "bad"),
        ]))
        .await
        .unwrap()
        .into_inner();
    let partial = reply.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("trace id"),
        "{}",
        partial.error_message
    );
    assert_eq!(sink.spans(), 1);
    {
        // The request bytes travel with the batch: they decode to the same good span (and the
        // refused one is refused again).
        let got = sink.got.lock().unwrap();
        let raw = got[0].otlp_protobuf.as_ref().expect("request bytes");
        let again = wire::otlp::decode_protobuf(raw).unwrap();
        assert_eq!(
            (again.batch, again.rejected_spans),
            (got[0].batch.clone(), 1)
        );
    }

    let all_bad = client
        .export(request(vec![span(vec![0; 16], "zero")]))
        .await
        .unwrap_err();
    assert_eq!(all_bad.code(), tonic::Code::InvalidArgument);
    let empty = client.export(request(vec![])).await.unwrap().into_inner();
    assert_eq!(empty.partial_success, None);

    for (mode, code) in [
        (Mode::Overloaded, tonic::Code::ResourceExhausted),
        (Mode::Unavailable, tonic::Code::Unavailable),
    ] {
        let mut client = TraceServiceClient::connect(grpc_server(TestSink::new(mode)).await)
            .await
            .unwrap();
        let err = client
            .export(request(vec![span(vec![7; 16], "x")]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code);
    }
}

async fn post(
    app: axum::Router,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Option<String>, Vec<u8>) {
    let req = Request::post(path)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, retry, bytes.to_vec())
}

#[tokio::test]
async fn http_receivers_tell_clients_when_to_retry() {
    let body = request(vec![span(vec![7; 16], "x")]).encode_to_vec();
    let zipkin = br#"[{"traceId":"0707070707070707","id":"0102030405060708","name":"x","timestamp":1700000000000000,"duration":5}]"#.to_vec();
    for (mode, status) in [
        (Mode::Accept, StatusCode::OK),
        (Mode::Overloaded, StatusCode::TOO_MANY_REQUESTS),
        (Mode::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let sink = TestSink::new(mode);
        let app = receiver::otlp_http::router(Arc::clone(&sink), Limits::default());
        let (got, retry, reply) =
            post(app, "/v1/traces", "application/x-protobuf", body.clone()).await;
        assert_eq!(got, status);
        if status == StatusCode::OK {
            assert_eq!(retry, None);
            assert_eq!(sink.spans(), 1);
            assert!(sink.got.lock().unwrap()[0].otlp_protobuf.is_some());
            assert!(reply.is_empty(), "no partial success to report: {reply:?}");
        } else {
            assert_eq!(retry.as_deref(), Some("1"));
        }

        let zipkin_status = if status == StatusCode::OK {
            StatusCode::ACCEPTED
        } else {
            status
        };
        let sink = TestSink::new(mode);
        let app = receiver::zipkin_http::router(Arc::clone(&sink), Limits::default());
        let (got, retry, _) = post(app, "/api/v2/spans", "application/json", zipkin.clone()).await;
        if let Some(received) = sink.got.lock().unwrap().first() {
            assert_eq!(received.otlp_protobuf, None, "Zipkin has no OTLP bytes");
        }
        assert_eq!(got, zipkin_status);
        assert_eq!(retry.is_some(), status != StatusCode::OK);
    }
}

#[tokio::test]
async fn otlp_http_errors_are_google_rpc_status_in_the_request_encoding() {
    let app = receiver::otlp_http::router(TestSink::new(Mode::Accept), Limits::default());
    let (status, _, body) = post(
        app,
        "/v1/traces",
        "application/x-protobuf",
        vec![0x0a, 0xff],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // google.rpc.Status: field 1 = code (3), field 2 = message.
    assert_eq!(&body[..2], &[0x08, 3]);
    assert!(String::from_utf8_lossy(&body).contains("protobuf"));
}

/// A client whose every new connection is counted in `connects`.
async fn counting_client(
    addr: std::net::SocketAddr,
    connects: Arc<std::sync::atomic::AtomicUsize>,
) -> TraceServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let connects = Arc::clone(&connects);
            async move {
                connects.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await
        .unwrap();
    TraceServiceClient::new(channel)
}

/// `max_connection_age` (with pings and a stream limit set too): once a connection is that old
/// the server asks the client to reconnect (GOAWAY) and calls go on over a new connection;
/// without it, one connection serves every call.
#[tokio::test]
async fn grpc_connections_are_aged_out_with_max_connection_age() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    for (age, want) in [(Some(Duration::from_millis(300)), 2), (None, 1)] {
        let sink = TestSink::new(Mode::Accept);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = receiver::otlp_grpc::Connections {
            max_concurrent_streams: Some(4),
            keepalive_time: Some(Duration::from_millis(200)),
            keepalive_timeout: Some(Duration::from_secs(1)),
            max_connection_age: age,
            max_connection_age_grace: Some(Duration::from_millis(100)),
        };
        tokio::spawn(receiver::otlp_grpc::serve(
            listener,
            receiver::otlp_grpc::TraceService::new(Arc::clone(&sink), Limits::default()),
            connections,
            std::future::pending(),
        ));
        let connects = Arc::new(AtomicUsize::new(0));
        let mut client = counting_client(addr, Arc::clone(&connects)).await;
        client
            .export(request(vec![span(vec![1; 16], "a")]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        client
            .export(request(vec![span(vec![2; 16], "b")]))
            .await
            .unwrap();
        assert_eq!(sink.spans(), 2);
        assert_eq!(
            connects.load(Ordering::SeqCst),
            want,
            "max_connection_age {age:?}"
        );
    }
}
