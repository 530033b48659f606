//! The hand-off from a receiver to whatever comes next.

use std::future::Future;

use bytes::Bytes;
use model::TraceBatch;

/// Takes accepted batches. Returning `Ok` means the batch is now the sink's responsibility:
/// the receiver acknowledges the client only after that.
pub trait Sink: Send + Sync + 'static {
    fn accept(&self, received: Received) -> impl Future<Output = Result<(), SinkError>> + Send;
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
