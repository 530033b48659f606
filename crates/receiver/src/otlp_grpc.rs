//! OTLP over gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! The service is written against tonic's server API rather than the generated
//! `TraceServiceServer` for one reason: a request that is not valid protobuf must be answered
//! `INVALID_ARGUMENT` (the client's fault, not to be retried), where the generated server's
//! codec answers `INTERNAL`. Gzip-compressed requests are accepted. For a sink that needs only
//! OTLP bytes ([`Needs::OtlpBytes`]) the request is checked by a scan rather than decoded. An
//! uncompressed request's message is read ahead of tonic's decoder, which would copy it twice
//! (`crate::grpc_message`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tonic::codec::{
    BufferSettings, Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings,
};
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use crate::auth::Authenticator;
use crate::export::{export, export_checked, ExportError};
use crate::grpc_message::{self, ReadAhead};
use crate::metrics::{Origin, OTLP_GRPC};
use crate::{CheckedOtlp, Limits, Needs, Sink, SinkError};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// HTTP/2 flow-control window per request stream (bytes a client may send unread).
const STREAM_WINDOW: u32 = 4 << 20;
/// HTTP/2 flow-control window per connection, over all its streams.
const CONNECTION_WINDOW: u32 = 8 << 20;
/// Largest HTTP/2 frame a client may send (the default is 16 KiB).
const MAX_FRAME: u32 = 256 << 10;

/// How the server treats its connections (the OTel Collector's `max_concurrent_streams` and
/// `keepalive.server_parameters`); the default leaves each unlimited and sends no pings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Connections {
    /// Requests in flight at once on one connection.
    pub max_concurrent_streams: Option<u32>,
    /// Ping a client after this long without activity...
    pub keepalive_time: Option<Duration>,
    /// ...and close the connection when the ping is not answered within this.
    pub keepalive_timeout: Option<Duration>,
    /// Ask clients to reconnect (GOAWAY) once a connection is this old, so that load spreads
    /// again over a gateway's replicas behind a balancer...
    pub max_connection_age: Option<Duration>,
    /// ...giving calls in flight this long to finish before it closes.
    pub max_connection_age_grace: Option<Duration>,
}

/// Serves OTLP gRPC on `listener` until `shutdown` completes, then drains in-flight calls.
pub async fn serve<S: Sink>(
    listener: TcpListener,
    service: TraceService<S>,
    connections: Connections,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    server(connections)
        .add_service(service)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

/// [`serve`] over TLS (the listener's configuration must offer ALPN `h2`: [`crate::tls::Alpn::H2`]).
pub async fn serve_tls<S: Sink>(
    listener: crate::tls::TlsListener,
    service: TraceService<S>,
    connections: Connections,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    server(connections)
        .add_service(service)
        .serve_with_incoming_shutdown(listener.into_incoming(), shutdown)
        .await
}

fn server(c: Connections) -> tonic::transport::Server {
    let mut server = tonic::transport::Server::builder()
        // Requests are hundreds of KiB to MiB: with HTTP/2's default 64 KiB windows a client
        // stops several times per request to wait for window updates, and both sides wake up
        // for each. These windows let a whole request through at once.
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_concurrent_streams(c.max_concurrent_streams)
        .http2_keepalive_interval(c.keepalive_time)
        .http2_keepalive_timeout(c.keepalive_timeout);
    if let Some(age) = c.max_connection_age {
        server = server.max_connection_age(age);
    }
    if let Some(grace) = c.max_connection_age_grace {
        server = server.max_connection_age_grace(grace);
    }
    server
}

/// The OTLP trace service, as a tower service tonic can route to.
pub struct TraceService<S> {
    sink: Arc<S>,
    limits: Limits,
    auth: Option<Authenticator>,
}

impl<S> TraceService<S> {
    pub fn new(sink: Arc<S>, limits: Limits) -> Self {
        Self {
            sink,
            limits,
            auth: None,
        }
    }

    /// Calls whose metadata `auth` refuses are answered `UNAUTHENTICATED` before their message
    /// is read.
    pub fn with_auth(mut self, auth: Authenticator) -> Self {
        self.auth = Some(auth);
        self
    }
}

impl<S> Clone for TraceService<S> {
    fn clone(&self) -> Self {
        Self {
            sink: Arc::clone(&self.sink),
            limits: self.limits,
            auth: self.auth.clone(),
        }
    }
}

impl<S> NamedService for TraceService<S> {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<S, B> Service<http::Request<B>> for TraceService<S>
where
    S: Sink,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != EXPORT_PATH {
            let path = req.uri().path().to_owned();
            return Box::pin(async move {
                Ok(Status::unimplemented(format!("no such method {path}")).into_http())
            });
        }
        let origin = OTLP_GRPC.of(&*self.sink);
        if let Some(Err(why)) = self.auth.as_ref().map(|a| a.check(req.headers())) {
            origin.unauthenticated();
            return Box::pin(async move {
                Ok(Status::unauthenticated(format!("unauthenticated: {why}")).into_http())
            });
        }
        let max = self.limits.max_body_bytes;
        let needs = self.sink.needs();
        let method = ExportMethod {
            sink: Arc::clone(&self.sink),
            needs,
            origin: origin.clone(),
        };
        Box::pin(async move {
            let req = grpc_message::read_ahead(req, max).await;
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            accept.enable(CompressionEncoding::Zstd);
            let mut grpc = Grpc::new(ExportCodec { needs, origin })
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(method, req).await)
        })
    }
}

struct ExportMethod<S> {
    sink: Arc<S>,
    needs: Needs,
    origin: Origin,
}

/// A request as the codec read it.
enum RawExport {
    /// Decoded, with the protobuf bytes it was decoded from.
    Decoded {
        bytes: Bytes,
        request: ExportTraceServiceRequest,
    },
    /// Checked only, for a sink that needs no more.
    Checked(CheckedOtlp),
}

impl<S: Sink> UnaryService<RawExport> for ExportMethod<S> {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<Response<Self::Response>, Status>;

    fn call(&mut self, request: Request<RawExport>) -> Self::Future {
        let sink = Arc::clone(&self.sink);
        // A message read ahead of tonic: what tonic decoded was the placeholder.
        let read_ahead = request
            .extensions()
            .get::<ReadAhead>()
            .map(|ReadAhead(bytes)| read_export(bytes.clone(), self.needs, &self.origin));
        Box::pin(async move {
            let raw = match read_ahead {
                Some(read) => read?,
                None => request.into_inner(),
            };
            let accepted = match raw {
                RawExport::Decoded { bytes, request } => {
                    let decoded = wire::otlp::from_request(request);
                    export(&*sink, OTLP_GRPC, decoded, Some(bytes)).await
                }
                RawExport::Checked(checked) => export_checked(&*sink, OTLP_GRPC, checked).await,
            }
            .map_err(status_of)?;
            let partial_success = accepted.partial_success();
            Ok(Response::new(ExportTraceServiceResponse {
                partial_success,
            }))
        })
    }
}

fn status_of(e: ExportError) -> Status {
    match e {
        ExportError::Invalid(msg) => Status::invalid_argument(msg),
        ExportError::Sink(SinkError::Overloaded(msg)) => Status::resource_exhausted(msg),
        ExportError::Sink(SinkError::Unavailable(msg)) => Status::unavailable(msg),
    }
}

/// Prost encoding for responses; decoding that keeps the request's bytes (the store journals
/// them as they are) and reports malformed requests as `INVALID_ARGUMENT`. For a sink that
/// needs only bytes, a request the scan vouches for is not decoded at all.
struct ExportCodec {
    needs: Needs,
    origin: Origin,
}

impl Codec for ExportCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = RawExport;
    type Encoder = tonic_prost::ProstEncoder<ExportTraceServiceResponse>;
    type Decoder = ExportDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ExportDecoder {
            needs: self.needs,
            origin: self.origin.clone(),
        }
    }
}

struct ExportDecoder {
    needs: Needs,
    origin: Origin,
}

impl Decoder for ExportDecoder {
    type Item = RawExport;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        read_export(buf.copy_to_bytes(buf.remaining()), self.needs, &self.origin).map(Some)
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// A request's protobuf bytes as the service takes them: checked by the scan for a sink that
/// needs only bytes (when the scan vouches for every span), else decoded.
fn read_export(mut bytes: Bytes, needs: Needs, origin: &Origin) -> Result<RawExport, Status> {
    if needs == Needs::OtlpBytes {
        match CheckedOtlp::check(bytes) {
            Ok(checked) => return Ok(RawExport::Checked(checked)),
            Err(unchecked) => bytes = unchecked,
        }
    }
    <ExportTraceServiceRequest as prost::Message>::decode(bytes.clone())
        .map(|request| RawExport::Decoded { bytes, request })
        .map_err(|e| {
            origin.bad_request();
            Status::invalid_argument(format!(
                "request is not a valid OTLP ExportTraceServiceRequest: {e}"
            ))
        })
}
