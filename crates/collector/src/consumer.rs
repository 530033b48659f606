//! The one interface between pipeline stages: something that takes a batch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use model::TraceBatch;

use crate::payload::Payload;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a stage did not take a batch. Receivers turn the retryable kinds into 429/503.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConsumeError {
    /// Over a limit (memory, queue): the sender should retry later.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// Cannot take data now (shutting down, backend down without a queue): retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The data was refused for good (the backend rejected it): do not retry.
    #[error("rejected: {0}")]
    Permanent(String),
}

/// A pipeline stage. `shutdown` flushes whatever the stage buffers downstream and returns
/// when it is done; the runtime calls it once, upstream stages first.
pub trait Consumer: Send + Sync + 'static {
    fn consume(&self, batch: TraceBatch) -> BoxFuture<'_, Result<(), ConsumeError>>;

    /// Takes a batch in either form. Stages that can pass OTLP bytes on without reading the
    /// spans override this (and [`Consumer::accepts_otlp`]); the rest get the decoded batch.
    fn consume_payload(&self, payload: Payload) -> BoxFuture<'_, Result<(), ConsumeError>> {
        match payload.into_batch() {
            Ok(batch) => self.consume(batch),
            Err(e) => Box::pin(async move {
                Err(ConsumeError::Permanent(format!(
                    "undecodable OTLP bytes: {e}"
                )))
            }),
        }
    }

    /// Whether this stage and everything after it can take [`Payload::Otlp`] without decoding
    /// all of it (see [`crate::payload`]): stages that pass the bytes on, and the sampler, which
    /// decodes only what it may keep.
    fn accepts_otlp(&self) -> bool {
        false
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Sends each batch to several consumers (pipelines sharing a receiver, exporters of a
/// pipeline). The last gets the original, the others a clone. The first failure is returned
/// after every consumer was tried, as the OTel Collector's fan-out does.
pub struct Fanout(pub Vec<Arc<dyn Consumer>>);

impl Consumer for Fanout {
    fn consume(&self, batch: TraceBatch) -> BoxFuture<'_, Result<(), ConsumeError>> {
        self.consume_payload(Payload::Batch(batch))
    }

    fn consume_payload(&self, batch: Payload) -> BoxFuture<'_, Result<(), ConsumeError>> {
        Box::pin(async move {
            let n = self.0.len();
            let mut first_error = None;
            let mut batch = Some(batch);
            for (i, next) in self.0.iter().enumerate() {
                let b = if i + 1 == n {
                    batch.take().unwrap_or_default()
                } else {
                    batch.clone().unwrap_or_default()
                };
                if let Err(e) = next.consume_payload(b).await {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }

    fn accepts_otlp(&self) -> bool {
        self.0.iter().all(|c| c.accepts_otlp())
    }
}
