//! Immutable blocks: what a cut head becomes.
//!
//! A block is a folder `<block_id>/` in the block object store holding
//! - `data.parquet`: one row per span, sorted by trace id then start time ([`schema`]);
//! - `index.bin`: sorted trace ids with their row ranges ([`index`]);
//! - `meta.json`: time bounds, counts, services and operations, the WAL segments it covers
//!   ([`BlockMeta`]). Written last: a folder without it is an incomplete write.
//!
//! Open blocks are kept in memory with their meta, index and decoded Parquet footer, so a read
//! touches storage only for the rows it needs.

pub(crate) mod index;
pub(crate) mod json;
pub(crate) mod read;
pub(crate) mod schema;
pub(crate) mod storage;
pub(crate) mod write;

use std::sync::Arc;

use model::SpanKind;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use serde::{Deserialize, Serialize};

use crate::api::Operation;
use crate::filter::SpanFilter;
use index::TraceIndex;
use storage::BlockStorage;

pub(crate) const DATA_FILE: &str = "data.parquet";
pub(crate) const INDEX_FILE: &str = "index.bin";
pub(crate) const META_FILE: &str = "meta.json";
pub(crate) const FORMAT_VERSION: u32 = 1;

/// `meta.json`: what a block holds, read at open and used to prune reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BlockMeta {
    pub format_version: u32,
    pub block_id: String,
    pub created_unix_nano: u64,
    pub min_start_unix_nano: u64,
    pub max_start_unix_nano: u64,
    pub min_end_unix_nano: u64,
    pub max_end_unix_nano: u64,
    pub span_count: u64,
    pub trace_count: u64,
    pub row_groups: u64,
    pub data_bytes: u64,
    pub index_bytes: u64,
    /// The WAL segments whose spans this block holds; they are deleted, not replayed, at open.
    pub wal_first_segment: u64,
    pub wal_last_segment: u64,
    pub services: Vec<ServiceMeta>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ServiceMeta {
    pub name: String,
    pub operations: Vec<OperationMeta>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OperationMeta {
    pub name: String,
    /// Jaeger's lowercase kind name, `unspecified` for none.
    pub kind: String,
}

impl OperationMeta {
    pub fn from_operation(op: &Operation) -> Self {
        let kind = match op.span_kind {
            SpanKind::Unspecified => "unspecified",
            k => k.as_jaeger_str(),
        };
        Self {
            name: op.name.clone(),
            kind: kind.to_owned(),
        }
    }

    pub fn to_operation(&self) -> Operation {
        Operation {
            name: self.name.clone(),
            span_kind: SpanKind::from_jaeger_str(&self.kind).unwrap_or_default(),
        }
    }
}

impl BlockMeta {
    pub fn total_bytes(&self) -> u64 {
        self.data_bytes + self.index_bytes
    }

    pub fn service(&self, name: &str) -> Option<&ServiceMeta> {
        self.services.iter().find(|s| s.name == name)
    }

    /// False when the meta alone proves no span of this block can match.
    pub fn may_match(&self, f: &SpanFilter) -> bool {
        if self.max_start_unix_nano < f.start_min
            || self.min_start_unix_nano > f.start_max
            || self.max_end_unix_nano < f.end_min
        {
            return false;
        }
        if let Some(svc) = &f.service {
            let Some(meta) = self.service(svc) else {
                return false;
            };
            if let Some(op) = &f.operation {
                return meta.operations.iter().any(|o| &o.name == op);
            }
        } else if let Some(op) = &f.operation {
            return self
                .services
                .iter()
                .any(|s| s.operations.iter().any(|o| &o.name == op));
        }
        true
    }
}

/// An open block: its meta, trace index and Parquet footer, ready to read.
pub(crate) struct Block {
    pub meta: BlockMeta,
    pub index: TraceIndex,
    reader_meta: ArrowReaderMetadata,
    storage: Arc<BlockStorage>,
    data_path: Path,
    /// First row of each row group, then the total row count.
    row_group_starts: Vec<u64>,
}

impl Block {
    pub fn new(
        meta: BlockMeta,
        index: TraceIndex,
        reader_meta: ArrowReaderMetadata,
        storage: Arc<BlockStorage>,
    ) -> Self {
        let data_path = Path::from(format!("{}/{DATA_FILE}", meta.block_id));
        let mut row_group_starts = vec![0u64];
        for rg in reader_meta.metadata().row_groups() {
            let last = row_group_starts.last().copied().unwrap_or(0);
            row_group_starts.push(last + rg.num_rows().max(0) as u64);
        }
        Self {
            meta,
            index,
            reader_meta,
            storage,
            data_path,
            row_group_starts,
        }
    }

    pub fn id(&self) -> &str {
        &self.meta.block_id
    }
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block").field("meta", &self.meta).finish()
    }
}
