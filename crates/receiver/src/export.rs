//! The shared core of every receiver: account for a request (decoded, or checked OTLP bytes)
//! and hand it to the sink.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;
use wire::Decoded;

use crate::metrics::Origin;
use crate::{CheckedOtlp, Received, Sink, SinkError};

/// What the client is told when its request was taken.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// Spans refused for being invalid while the rest were kept (OTLP partial success).
    pub rejected_spans: u64,
    pub error_message: String,
}

impl Accepted {
    /// OTLP's partial-success field: set only when some spans were refused.
    pub fn partial_success(self) -> Option<ExportTracePartialSuccess> {
        (self.rejected_spans > 0).then_some(ExportTracePartialSuccess {
            rejected_spans: i64::try_from(self.rejected_spans).unwrap_or(i64::MAX),
            error_message: self.error_message,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    /// Every span in the request was invalid.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Hands the valid part of a request to the sink. An empty request is a success; a request
/// whose every span is invalid is refused as a whole.
pub(crate) async fn export<S: Sink>(
    sink: &S,
    origin: Origin,
    decoded: Decoded,
    otlp_protobuf: Option<Bytes>,
) -> Result<Accepted, ExportError> {
    let origin = origin.of(sink);
    let Decoded {
        batch,
        rejected_spans,
        error_message,
    } = decoded;
    origin.refused(rejected_spans);
    let spans = batch.span_count() as u64;
    if spans == 0 {
        if rejected_spans > 0 {
            return Err(ExportError::Invalid(error_message));
        }
        return Ok(Accepted::default());
    }
    match sink
        .accept(Received {
            batch,
            otlp_protobuf,
        })
        .await
    {
        Ok(()) => {
            origin.accepted(spans);
            Ok(Accepted {
                rejected_spans,
                error_message,
            })
        }
        Err(e) => {
            origin.refused(spans);
            Err(e.into())
        }
    }
}

/// Hands a checked OTLP request (every span valid) to the sink. An empty one is a success.
pub(crate) async fn export_checked<S: Sink>(
    sink: &S,
    origin: Origin,
    request: CheckedOtlp,
) -> Result<Accepted, ExportError> {
    let origin = origin.of(sink);
    let spans = request.spans as u64;
    if spans == 0 {
        return Ok(Accepted::default());
    }
    match sink.accept_otlp(request).await {
        Ok(()) => {
            origin.accepted(spans);
            Ok(Accepted::default())
        }
        Err(e) => {
            origin.refused(spans);
            Err(e.into())
        }
    }
}
