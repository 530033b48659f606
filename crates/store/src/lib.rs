//! Durable trace storage: where an accepted span becomes a stored row.
//!
//! Write path: [`Store::append`] writes the batch to the write-ahead log and syncs it (many
//! concurrent appends share one fsync: group commit) before it returns, then indexes the spans
//! in the in-memory head, where they are searchable at once. The head is cut into immutable
//! Parquet blocks (rows sorted by trace id, with a trace-id index and time range) kept in an
//! `object_store`; a block's WAL segments are deleted once the block is durable. Retention
//! deletes whole blocks older than the retention and enforces the optional disk budget.
//!
//! Read path: trace by id merges the head and every block whose index may hold the id; search
//! prunes blocks by time range before reading rows.
//!
//! What this crate must not do: speak HTTP or any wire protocol to clients; it only stores.

mod api;

pub use api::{DependencyLink, Operation, StoreConfig, StoreError, StoreStats, TraceQuery};

use model::{SpanKind, Trace, TraceBatch, TraceId};

/// A handle to the store. Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct Store {
    _todo: (),
}

impl Store {
    /// Opens (or creates) the store under `config.data_dir`, replaying the WAL.
    pub async fn open(config: StoreConfig) -> Result<Store, StoreError> {
        let _ = config;
        todo!("store: open")
    }

    /// Durably appends a batch: returns only after the WAL holding it is synced.
    pub async fn append(&self, batch: TraceBatch) -> Result<(), StoreError> {
        let _ = batch;
        todo!("store: append")
    }

    /// All spans of one trace, from head and blocks; `None` when no span is known.
    pub async fn trace(&self, id: TraceId) -> Result<Option<Trace>, StoreError> {
        let _ = id;
        todo!("store: trace")
    }

    /// Traces with at least one span matching every condition of the query, newest first.
    pub async fn find_traces(&self, query: &TraceQuery) -> Result<Vec<Trace>, StoreError> {
        let _ = query;
        todo!("store: find_traces")
    }

    /// Every service name seen in stored data, sorted.
    pub async fn services(&self) -> Result<Vec<String>, StoreError> {
        todo!("store: services")
    }

    /// Operations (span names with kinds) of a service, sorted; only those of `kind` if given.
    pub async fn operations(
        &self,
        service: &str,
        kind: Option<SpanKind>,
    ) -> Result<Vec<Operation>, StoreError> {
        let _ = (service, kind);
        todo!("store: operations")
    }

    /// Service-to-service call counts from parent/child spans that started in the window
    /// `[end - lookback, end]`.
    pub async fn dependencies(
        &self,
        end_unix_nano: u64,
        lookback_nanos: u64,
    ) -> Result<Vec<DependencyLink>, StoreError> {
        let _ = (end_unix_nano, lookback_nanos);
        todo!("store: dependencies")
    }

    /// Cuts the head into a block now and syncs everything (used on shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        todo!("store: flush")
    }

    /// Counters for `/metrics` and logs.
    pub fn stats(&self) -> StoreStats {
        todo!("store: stats")
    }
}
