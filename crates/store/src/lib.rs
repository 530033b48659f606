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
//! Module map: [`wal`] (segments, group commit), [`head`] (in-memory spans), [`block`] (Parquet
//! blocks: schema, index, write, read, storage), `cut` (head → block), `open` (recovery),
//! `reads` (queries), [`deps`] (dependency links), `retention`.
//!
//! What this crate must not do: speak HTTP or any wire protocol to clients; it only stores.

mod api;
mod block;
mod cut;
mod deps;
mod filter;
mod head;
mod open;
mod reads;
mod retention;
mod state;
mod wal;

pub use api::{DependencyLink, Operation, StoreConfig, StoreError, StoreStats, TraceQuery};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use model::{SpanKind, Trace, TraceBatch, TraceId};
use tokio::sync::{mpsc, oneshot};

use block::storage::BlockStorage;
use state::{Counters, Shared};
use wal::WalMsg;

/// A handle to the store. Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// The store's shared parts. Background tasks hold it weakly, so dropping the last [`Store`]
/// stops them and the WAL thread.
pub(crate) struct Inner {
    pub config: StoreConfig,
    pub shared: Arc<Shared>,
    pub wal_tx: mpsc::Sender<WalMsg>,
    pub wal_dir: PathBuf,
    pub storage: Arc<BlockStorage>,
    /// One cut at a time.
    pub cut_lock: tokio::sync::Mutex<()>,
}

pub(crate) fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Inner {
    /// Spans that ended before this are past retention.
    pub fn retention_cutoff(&self) -> u64 {
        let retention = u64::try_from(self.config.retention.as_nanos()).unwrap_or(u64::MAX);
        now_unix_nanos().saturating_sub(retention)
    }
}

impl Store {
    /// Opens (or creates) the store under `config.data_dir`, replaying the WAL.
    pub async fn open(config: StoreConfig) -> Result<Store, StoreError> {
        let inner = open::open(config).await?;
        let inner = Arc::new(inner);
        cut::spawn_cutter(Arc::downgrade(&inner));
        retention::spawn(Arc::downgrade(&inner));
        Ok(Store { inner })
    }

    /// Durably appends a batch: returns only after the WAL holding it is synced.
    pub async fn append(&self, batch: TraceBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let payload = wal::encode_batch(&batch);
        self.journal(batch, payload).await
    }

    /// Like [`Store::append`], for a batch decoded from an OTLP `ExportTraceServiceRequest`
    /// whose protobuf bytes the caller still holds (a receiver's request body): the WAL keeps
    /// those bytes instead of encoding the batch again, which is most of the cost of an append.
    /// Replay decodes them with the receivers' rules, so spans refused at receipt (invalid ids)
    /// are left out again; the bytes must otherwise hold exactly `batch`.
    pub async fn append_otlp(
        &self,
        batch: TraceBatch,
        otlp_protobuf: bytes::Bytes,
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.journal(batch, otlp_protobuf).await
    }

    async fn journal(&self, batch: TraceBatch, payload: bytes::Bytes) -> Result<(), StoreError> {
        let spans = head::prepare(batch.into_records());
        let (ack, done) = oneshot::channel();
        self.inner
            .wal_tx
            .send(WalMsg::Append {
                payload,
                spans,
                ack,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    /// All spans of one trace, from head and blocks; `None` when no span is known.
    pub async fn trace(&self, id: TraceId) -> Result<Option<Trace>, StoreError> {
        self.inner.trace(id).await
    }

    /// Traces with at least one span matching every condition of the query, newest first.
    pub async fn find_traces(&self, query: &TraceQuery) -> Result<Vec<Trace>, StoreError> {
        self.inner.find_traces(query).await
    }

    /// Every service name seen in stored data, sorted.
    pub async fn services(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.inner.services())
    }

    /// Operations (span names with kinds) of a service, sorted; only those of `kind` if given.
    pub async fn operations(
        &self,
        service: &str,
        kind: Option<SpanKind>,
    ) -> Result<Vec<Operation>, StoreError> {
        Ok(self.inner.operations(service, kind))
    }

    /// Service-to-service call counts from parent/child spans that started in the window
    /// `[end - lookback, end]`.
    pub async fn dependencies(
        &self,
        end_unix_nano: u64,
        lookback_nanos: u64,
    ) -> Result<Vec<DependencyLink>, StoreError> {
        self.inner.dependencies(end_unix_nano, lookback_nanos).await
    }

    /// Cuts the head into a block now and syncs everything (used on shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.cut().await
    }

    /// Counters for `/metrics` and logs.
    pub fn stats(&self) -> StoreStats {
        let shared = &self.inner.shared;
        let c = &shared.counters;
        let st = shared.read();
        StoreStats {
            head_spans: (st.head.len() + st.cutting.iter().map(|h| h.len()).sum::<usize>()) as u64,
            head_traces: (st.head.trace_count()
                + st.cutting.iter().map(|h| h.trace_count()).sum::<usize>())
                as u64,
            blocks: st.blocks.len() as u64,
            block_bytes: st.blocks.iter().map(|b| b.meta.total_bytes()).sum(),
            wal_bytes: Counters::get(&c.wal_bytes),
            spans_appended: Counters::get(&c.spans_appended),
            cutting_heads: st.cutting.len() as u64,
            wal_segments: Counters::get(&c.wal_segments),
            wal_fsyncs: Counters::get(&c.wal_fsyncs),
            blocks_deleted: Counters::get(&c.blocks_deleted),
        }
    }
}
