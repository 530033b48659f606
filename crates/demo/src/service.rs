//! One demo service (`meshtrace demo-service`): a small HTTP app instrumented the way a user's
//! Rust app would be, with the OpenTelemetry Rust SDK, B3 multi-header propagation and OTLP/gRPC
//! export. It is what the sidecars sit beside, so every trace mixes SDK spans (OTLP) with sidecar
//! spans (Zipkin v2), as in the seed articles.
//!
//! A request gets a SERVER span (parent: whatever the inbound sidecar sent), an INTERNAL span for
//! the service's own work, and, when the service has a downstream, a CLIENT span around the call
//! through its outbound sidecar with the B3 headers injected. A service can be told to fail or be
//! slow on a share of requests, so errors and latency show up in the UI. Every answer carries the
//! W3C `traceresponse` header, which is how the traffic generator learns trace ids.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_propagator_b3::{B3Encoding, Propagator};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use rand::Rng;
use tokio::net::TcpListener;

/// What one demo service does.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// `service.name`, e.g. `service-a`.
    pub name: String,
    /// Where it listens (`127.0.0.1:0` picks a free port; the bound address is printed).
    pub listen: String,
    /// Its own work, recorded as an INTERNAL span, e.g. `validate order`.
    pub work: String,
    /// The next service, called through the outbound sidecar; none for the last one.
    pub downstream: Option<Downstream>,
    /// OTLP/gRPC endpoint the SDK exports to, e.g. `http://127.0.0.1:4317`.
    pub otlp_endpoint: String,
    /// Share of requests answered 500, in percent.
    pub fail_percent: f64,
    /// Share of requests that take 150–600 ms longer, in percent.
    pub slow_percent: f64,
}

/// A call to the next service through the local outbound sidecar.
#[derive(Clone, Debug)]
pub struct Downstream {
    /// The outbound sidecar's listener.
    pub via: SocketAddr,
    /// The Host header the sidecar routes on, the next service's name.
    pub host: String,
    /// The path asked for, e.g. `/price`.
    pub path: String,
}

/// Why a demo service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot set up the OTLP exporter to {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

struct App {
    config: ServiceConfig,
    tracer: SdkTracer,
    propagator: Propagator,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// Runs the service until `stop` completes, then flushes its spans.
///
/// Prints `meshtrace: {name} listening on {addr} (demo service)` once bound.
pub async fn run(
    config: ServiceConfig,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let listener =
        TcpListener::bind(&config.listen)
            .await
            .map_err(|source| ServiceError::Bind {
                addr: config.listen.clone(),
                source,
            })?;
    let provider = tracer_provider(&config)?;
    let app = Arc::new(App {
        tracer: provider.tracer("meshtrace-demo"),
        propagator: Propagator::with_encoding(B3Encoding::MultipleHeader),
        client: Client::builder(TokioExecutor::new()).build({
            let mut c = HttpConnector::new();
            c.set_nodelay(true);
            c
        }),
        config,
    });
    match listener.local_addr() {
        Ok(addr) => println!(
            "meshtrace: {} listening on {addr} (demo service)",
            app.config.name
        ),
        Err(e) => println!(
            "meshtrace: {} listening on an unknown address ({e})",
            app.config.name
        ),
    }
    let router = axum::Router::new()
        .fallback(handle)
        .with_state(Arc::clone(&app));
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
        .map_err(ServiceError::Serve);
    // The SDK's batch processor flushes on shutdown; it blocks, so off the async workers.
    let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    if let Ok(Err(e)) = flushed {
        tracing::warn!("flushing the last spans failed: {e}");
    }
    served
}

fn tracer_provider(config: &ServiceConfig) -> Result<SdkTracerProvider, ServiceError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.otlp_endpoint.clone())
        .build()
        .map_err(|source| ServiceError::Exporter {
            endpoint: config.otlp_endpoint.clone(),
            source,
        })?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_millis(200))
                .build(),
        )
        .build();
    let resource = Resource::builder()
        .with_service_name(config.name.clone())
        .with_attributes([
            KeyValue::new("service.namespace", "meshtrace-demo"),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("deployment.environment.name", "demo"),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(resource)
        .build())
}

async fn handle(State(app): State<Arc<App>>, request: Request) -> Response {
    let parent = app.propagator.extract(&HeaderExtractor(request.headers()));
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let span = app
        .tracer
        .span_builder(format!("{method} {path}"))
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.path", path),
            KeyValue::new("http.route", "/*"),
            KeyValue::new("network.protocol.version", "1.1"),
        ])
        .start_with_context(&app.tracer, &parent);
    let cx = parent.with_span(span);

    let (status, body) = serve(&app, &cx).await;
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status.as_u16()),
    ));
    if status.is_server_error() {
        span.set_status(Status::error(body.clone()));
    }
    let mut response = (status, body).into_response();
    let sc = span.span_context();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    )) {
        response.headers_mut().insert("traceresponse", v);
    }
    span.end();
    response
}

/// The service's own work and its downstream call; returns the answer.
async fn serve(app: &App, cx: &Context) -> (StatusCode, String) {
    let c = &app.config;
    let (fail, slow, work_ms) = {
        let mut rng = rand::rng();
        (
            rng.random_bool((c.fail_percent / 100.0).clamp(0.0, 1.0)),
            rng.random_bool((c.slow_percent / 100.0).clamp(0.0, 1.0))
                .then(|| rng.random_range(150..600u64)),
            rng.random_range(1..8u64),
        )
    };

    let work = app
        .tracer
        .span_builder(c.work.clone())
        .with_kind(SpanKind::Internal)
        .start_with_context(&app.tracer, cx);
    let work_cx = cx.with_span(work);
    tokio::time::sleep(Duration::from_millis(work_ms + slow.unwrap_or(0))).await;
    if let Some(ms) = slow {
        work_cx.span().add_event(
            "slow path",
            vec![KeyValue::new("delay_ms", i64::try_from(ms).unwrap_or(0))],
        );
    }
    if fail {
        let message = format!(
            "{}: {} failed: resource temporarily unavailable",
            c.name, c.work
        );
        work_cx.span().add_event(
            "exception",
            vec![
                KeyValue::new("exception.type", "DemoFailure"),
                KeyValue::new("exception.message", message.clone()),
            ],
        );
        work_cx.span().set_status(Status::error(message.clone()));
        work_cx.span().end();
        return (StatusCode::INTERNAL_SERVER_ERROR, message);
    }
    work_cx.span().end();

    match &c.downstream {
        None => (StatusCode::OK, format!("{} ok\n", c.name)),
        Some(d) => call(app, cx, d).await,
    }
}

/// Calls the next service through the outbound sidecar under a CLIENT span.
async fn call(app: &App, cx: &Context, d: &Downstream) -> (StatusCode, String) {
    let span = app
        .tracer
        .span_builder(format!("GET {}", d.path))
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("server.address", d.host.clone()),
            KeyValue::new("url.full", format!("http://{}{}", d.host, d.path)),
            KeyValue::new("peer.service", d.host.clone()),
        ])
        .start_with_context(&app.tracer, cx);
    let call_cx = cx.with_span(span);
    let mut headers = HeaderMap::new();
    app.propagator
        .inject_context(&call_cx, &mut HeaderInjector(&mut headers));
    let (status, body) = match send(app, d, headers).await {
        Ok((status, text)) => (status, text),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("calling {}: {e}", d.host)),
    };
    let span = call_cx.span();
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status.as_u16()),
    ));
    if !status.is_success() {
        span.set_status(Status::error(format!("{} answered {status}", d.host)));
    }
    span.end();
    let name = &app.config.name;
    if status.is_success() {
        (StatusCode::OK, format!("{name} ok\n{body}"))
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{name}: {} answered {status}: {}", d.host, body.trim_end()),
        )
    }
}

async fn send(
    app: &App,
    d: &Downstream,
    headers: HeaderMap,
) -> Result<(StatusCode, String), String> {
    let mut request = hyper::Request::builder()
        .uri(format!("http://{}{}", d.via, d.path))
        .header(hyper::header::HOST, &d.host)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    request.headers_mut().extend(headers);
    let response = tokio::time::timeout(Duration::from_secs(10), app.client.request(request))
        .await
        .map_err(|_| "no answer in 10 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
