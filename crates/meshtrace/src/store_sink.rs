//! Receivers write into the store through this sink. It bounds the spans waiting for the WAL,
//! so a flood of requests is refused with a retryable answer instead of growing memory.

use std::sync::Arc;

use receiver::{Received, Sink, SinkError};
use store::{Store, StoreError};
use tokio::sync::Semaphore;

pub struct StoreSink {
    store: Store,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
}

impl StoreSink {
    pub fn new(store: Store, max_in_flight_spans: usize) -> Self {
        Self {
            store,
            in_flight: Arc::new(Semaphore::new(max_in_flight_spans)),
            max_in_flight: max_in_flight_spans,
        }
    }
}

impl Sink for StoreSink {
    async fn accept(&self, received: Received) -> Result<(), SinkError> {
        let spans = received.batch.span_count().min(self.max_in_flight) as u32;
        let _permit = self.in_flight.try_acquire_many(spans).map_err(|_| {
            SinkError::Overloaded(format!(
                "more than {} spans are waiting to be written; retry later",
                self.max_in_flight
            ))
        })?;
        let appended = match received.otlp_protobuf {
            Some(bytes) => self.store.append_otlp(received.batch, bytes).await,
            None => self.store.append(received.batch).await,
        };
        appended.map_err(|e| match e {
            StoreError::Closed => SinkError::Unavailable("the store is shutting down".into()),
            other => SinkError::Unavailable(format!("the store could not write: {other}")),
        })
    }
}
