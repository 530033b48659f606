//! The hand-off from a receiver to whatever comes next.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use model::TraceBatch;

/// What a sink needs of each request, so a receiver does no more work than that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Needs {
    /// The decoded spans: every request comes to [`Sink::accept`].
    #[default]
    Batch,
    /// OTLP protobuf requests as their bytes, checked but not decoded, to
    /// [`Sink::accept_otlp`]. A sink that reads only trace ids gets them from the bytes
    /// (`wire::otlp::scan`). Other formats, and OTLP requests holding invalid spans or that the
    /// check cannot vouch for, still come decoded to [`Sink::accept`], so partial success and
    /// error answers stay exactly those of the full decode.
    OtlpBytes,
}

/// Takes accepted batches. Returning `Ok` means the batch is now the sink's responsibility:
/// the receiver acknowledges the client only after that.
pub trait Sink: Send + Sync + 'static {
    /// What this sink needs of each request (checked once, when a receiver starts a request).
    fn needs(&self) -> Needs {
        Needs::Batch
    }

    fn accept(&self, received: Received) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The id the receiver's self-metrics are labelled with (`receiver="otlp/2"`, as the
    /// OpenTelemetry Collector labels a component); `None` labels them with the receiver's
    /// type (`otlp`, `zipkin`).
    fn component_id(&self) -> Option<Arc<str>> {
        None
    }

    /// Takes an OTLP protobuf request checked without decoding; receivers call it only when
    /// [`Sink::needs`] says [`Needs::OtlpBytes`]. The default decodes and calls
    /// [`Sink::accept`].
    fn accept_otlp(
        &self,
        request: CheckedOtlp,
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        async move {
            let decoded = wire::otlp::decode_protobuf(&request.bytes).map_err(|e| {
                SinkError::Unavailable(format!("checked OTLP request did not decode: {e}"))
            })?;
            self.accept(Received {
                batch: decoded.batch,
                otlp_protobuf: Some(request.bytes),
            })
            .await
        }
    }
}

/// What one request delivered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Received {
    /// The valid spans of the request.
    pub batch: TraceBatch,
    /// For OTLP protobuf requests, the request body (decompressed) the batch was decoded from,
    /// so a sink that keeps OTLP bytes (the store's WAL) need not encode the batch again. It
    /// may also hold spans that were refused as invalid, which decoding leaves out again.
    pub otlp_protobuf: Option<Bytes>,
}

/// An OTLP protobuf `ExportTraceServiceRequest` body (decompressed) that
/// `wire::otlp::scan` found well-formed, every span with valid ids: decoding it is certain to
/// succeed and to keep every span.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedOtlp {
    pub bytes: Bytes,
    /// The spans it holds.
    pub spans: usize,
}

impl CheckedOtlp {
    /// Checks a request body; gives the bytes back when they must take the full decode
    /// (malformed, invalid spans, or beyond what the check vouches for).
    pub fn check(bytes: Bytes) -> Result<Self, Bytes> {
        match wire::otlp::scan::scan(&bytes) {
            Ok(s) if s.invalid_spans == 0 => Ok(Self {
                bytes,
                spans: s.spans,
            }),
            _ => Err(bytes),
        }
    }

    /// A Zipkin report written as an OTLP request, for a sink that takes OTLP bytes, so other
    /// formats need not carry the model through its pipeline. A Zipkin report is all or
    /// nothing, so every span in it has valid ids.
    pub(crate) fn from_zipkin(request: wire::zipkin::OtlpRequest) -> Self {
        Self {
            bytes: Bytes::from(request.bytes),
            spans: request.spans,
        }
    }
}

/// Why a sink did not take a batch. The receiver tells the client whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Temporarily over capacity: the client should retry later.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// Not able to take data right now (shutting down, storage failing): retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}
