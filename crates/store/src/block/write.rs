//! Turning a head into a block's files (CPU work, run on a blocking thread).
//!
//! Rows are sorted by trace id then start time; a row group is closed only at a trace boundary,
//! so a trace's rows never straddle two row groups, and pages are small so a trace-by-id read
//! (row selection + page index) fetches little more than the trace's own rows. Identical spans
//! appended twice (client retries) are stored once.

use bytes::Bytes;
use model::TraceId;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{PageIndexPolicy, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::index::TraceIndex;
use super::schema::{self, RowsBuilder};
use super::{BlockMeta, OperationMeta, ServiceMeta, FORMAT_VERSION};
use crate::api::StoreError;
use crate::head::Head;

/// Rows per Arrow batch handed to the Parquet writer.
const BATCH_ROWS: usize = 8192;
/// A row group is closed at the first trace boundary past this many rows.
pub(crate) const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Rows per data page: small pages keep trace-by-id reads small.
const PAGE_ROWS: usize = 2048;
/// Level 6 stores ~10% fewer bytes than 3 for the JSON columns (measured: 39.6 vs 43.9 bytes per
/// span on proxy-like spans) for ~30% more encode time, which the background cut absorbs.
const ZSTD_LEVEL: i32 = 6;

/// A block's files, built in memory and ready to upload.
pub(crate) struct BuiltBlock {
    pub meta: BlockMeta,
    pub data: Bytes,
    pub index: TraceIndex,
    pub index_bytes: Bytes,
    pub reader_meta: ArrowReaderMetadata,
}

fn writer_properties() -> Result<WriterProperties, StoreError> {
    let level = ZstdLevel::try_new(ZSTD_LEVEL)?;
    let col = |name: &str| ColumnPath::from(name);
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_dictionary_enabled(true)
        .set_dictionary_page_size_limit(256 * 1024)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_write_batch_size(1024)
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(None)
        .set_sorting_columns(Some(vec![
            SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: false,
            },
            SortingColumn {
                column_idx: 6,
                descending: false,
                nulls_first: false,
            },
        ]));
    // Random or nearly unique values: a dictionary only costs time and a big dictionary page.
    for name in [schema::SPAN_ID, schema::PARENT_SPAN_ID, schema::ATTRIBUTES] {
        b = b.set_column_dictionary_enabled(col(name), false);
    }
    for name in [schema::START, schema::DURATION] {
        b = b
            .set_column_dictionary_enabled(col(name), false)
            .set_column_encoding(col(name), Encoding::DELTA_BINARY_PACKED);
    }
    Ok(b.build())
}

/// The head's spans in block order: by trace id, then start, exact duplicates dropped.
fn sorted_traces(head: &Head) -> Vec<(TraceId, Vec<u32>)> {
    let mut ids: Vec<TraceId> = head.trace_ids().copied().collect();
    ids.sort_unstable();
    ids.into_iter()
        .map(|id| {
            let mut members: Vec<u32> = head.trace_members(&id).collect();
            members.sort_by_key(|&i| {
                let s = head.span(i);
                (s.start, s.span_id)
            });
            members.dedup_by(|a, b| head.span(*a) == head.span(*b));
            (id, members)
        })
        .collect()
}

/// Encodes a head as a block named `block_id`.
pub(crate) fn build(
    head: &Head,
    block_id: String,
    created_unix_nano: u64,
) -> Result<BuiltBlock, StoreError> {
    let traces = sorted_traces(head);
    let mut writer =
        ArrowWriter::try_new(Vec::new(), schema::schema(), Some(writer_properties()?))?;
    let mut rows = RowsBuilder::new();
    let mut index = TraceIndex::default();
    let mut row: u64 = 0;
    let mut group_rows: usize = 0;
    let (mut min_start, mut max_start, mut min_end, mut max_end) = (u64::MAX, 0u64, u64::MAX, 0u64);
    for (id, members) in &traces {
        if group_rows >= ROW_GROUP_ROWS {
            if rows.rows() > 0 {
                writer.write(&rows.finish_batch()?)?;
            }
            writer.flush()?;
            group_rows = 0;
        }
        if row + members.len() as u64 > u64::from(u32::MAX) {
            return Err(StoreError::Internal("block too big for its index".into()));
        }
        for &i in members {
            let s = head.span(i);
            let row = head.row(s).ok_or_else(|| {
                StoreError::Internal("head span without resource or scope".into())
            })?;
            min_start = min_start.min(s.start);
            max_start = max_start.max(s.start);
            min_end = min_end.min(s.end);
            max_end = max_end.max(s.end);
            rows.push(&row)?;
            if rows.rows() >= BATCH_ROWS {
                writer.write(&rows.finish_batch()?)?;
            }
        }
        index.push(*id, members.len() as u32);
        row += members.len() as u64;
        group_rows += members.len();
    }
    if rows.rows() > 0 {
        writer.write(&rows.finish_batch()?)?;
    }
    let data = Bytes::from(writer.into_inner()?);
    let reader_meta = ArrowReaderMetadata::load(
        &data,
        ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
    )?;
    let index_bytes = Bytes::from(index.encode());

    let registry = head.services();
    let mut services: Vec<ServiceMeta> = registry
        .names()
        .filter_map(|name| {
            let id = registry.id(name)?;
            let mut ops: Vec<_> = registry.operations_of(id).collect();
            ops.sort();
            Some(ServiceMeta {
                name: name.to_owned(),
                operations: ops.iter().map(OperationMeta::from_operation).collect(),
            })
        })
        .collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));

    let meta = BlockMeta {
        format_version: FORMAT_VERSION,
        block_id,
        created_unix_nano,
        min_start_unix_nano: if row == 0 { 0 } else { min_start },
        max_start_unix_nano: max_start,
        min_end_unix_nano: if row == 0 { 0 } else { min_end },
        max_end_unix_nano: max_end,
        span_count: row,
        trace_count: index.len() as u64,
        row_groups: reader_meta.metadata().num_row_groups() as u64,
        data_bytes: data.len() as u64,
        index_bytes: index_bytes.len() as u64,
        wal_first_segment: head.wal_first_segment,
        wal_last_segment: head.wal_last_segment,
        services,
    };
    Ok(BuiltBlock {
        meta,
        data,
        index,
        index_bytes,
        reader_meta,
    })
}

/// A new block id: creation time first, so ids sort by age, then a random suffix.
pub(crate) fn new_block_id(created_unix_nano: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(created_unix_nano);
    format!("{created_unix_nano:020}-{:08x}", h.finish() as u32)
}
