//! The hand-off from a receiver to whatever comes next.

use std::future::Future;

use model::TraceBatch;

/// Takes accepted batches. Returning `Ok` means the batch is now the sink's responsibility:
/// the receiver acknowledges the client only after that.
pub trait Sink: Send + Sync + 'static {
    fn accept(&self, batch: TraceBatch) -> impl Future<Output = Result<(), SinkError>> + Send;
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
