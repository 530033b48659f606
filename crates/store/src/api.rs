//! The types of the store's public interface: its configuration, queries and answers.

use std::path::PathBuf;
use std::time::Duration;

use model::SpanKind;

/// How the store is laid out and when it cuts, keeps and deletes data.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Root folder: `wal/` and `blocks/` live under it.
    pub data_dir: PathBuf,
    /// Blocks whose newest span ended longer ago than this are deleted.
    pub retention: Duration,
    /// When set, the oldest blocks are deleted while blocks + WAL exceed this many bytes.
    pub max_disk_bytes: Option<u64>,
    /// The head is cut into a block when it holds this many spans...
    pub block_max_spans: usize,
    /// ...or when its oldest span arrived this long ago.
    pub block_max_age: Duration,
    /// How often retention and the disk budget are enforced.
    pub retention_interval: Duration,
}

impl StoreConfig {
    /// Defaults for `data_dir`: 14 days' retention (336 h), no disk budget.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            retention: Duration::from_secs(336 * 3600),
            max_disk_bytes: None,
            block_max_spans: 500_000,
            block_max_age: Duration::from_secs(300),
            retention_interval: Duration::from_secs(60),
        }
    }
}

/// A trace search, in Jaeger's terms. A trace matches when one of its spans satisfies every
/// condition given: service, operation, all tags (span attributes, resource attributes or
/// event attributes), duration bounds, and a start time inside `[start, end]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceQuery {
    pub service: Option<String>,
    pub operation: Option<String>,
    /// `(key, value)` pairs; a value matches an attribute by [`model::AnyValue::matches_text`].
    pub tags: Vec<(String, String)>,
    pub min_duration: Option<Duration>,
    pub max_duration: Option<Duration>,
    pub start_unix_nano: Option<u64>,
    pub end_unix_nano: Option<u64>,
    /// At most this many traces (0 means the store's default, 20).
    pub limit: usize,
}

/// An operation a service performs: a span name and the kind it was reported with.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Operation {
    pub name: String,
    pub span_kind: SpanKind,
}

/// Calls from one service to another (a parent span in `parent` with a child in `child`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DependencyLink {
    pub parent: String,
    pub child: String,
    pub call_count: u64,
    /// Calls whose child span is an error.
    pub error_count: u64,
}

/// Numbers for self-monitoring.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub head_spans: u64,
    pub head_traces: u64,
    pub blocks: u64,
    pub block_bytes: u64,
    pub wal_bytes: u64,
    pub spans_appended: u64,
    /// Heads swapped out of the write path and not yet registered as blocks.
    pub cutting_heads: u64,
    /// WAL segment files on disk.
    pub wal_segments: u64,
    /// Group-commit syncs of the WAL since open.
    pub wal_fsyncs: u64,
    /// Blocks deleted by retention or the disk budget since open.
    pub blocks_deleted: u64,
}

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("corrupt block {block}: {reason}")]
    CorruptBlock { block: String, reason: String },
    #[error("the store is shutting down")]
    Closed,
    #[error("WAL: {0}")]
    Wal(String),
    #[error("background work failed: {0}")]
    Internal(String),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}
