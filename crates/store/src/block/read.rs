//! Reading blocks: open (meta, index, footer), trace by id, search scans, dependency scans.
//!
//! Trace by id reads only the index-given row range, through a row selection that the Parquet
//! page index turns into reads of just the pages holding those rows. Scans read only the
//! columns their filter needs, skipping row groups whose start-time statistics rule them out.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use model::{SpanId, SpanKind, SpanRecord, TraceId};
use object_store::path::Path;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowSelection, RowSelector,
};
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::statistics::Statistics;

use super::index::TraceIndex;
use super::schema::{self, fixed, RecordDecoder, ScanColumns, RECORD_COLUMNS};
use super::storage::{BlockStorage, ObjectReader};
use super::{json, Block, BlockMeta, FORMAT_VERSION, INDEX_FILE, META_FILE};
use crate::api::StoreError;
use crate::filter::{tag_matches_span, SpanFilter, TagProbe};

/// One span as a dependency scan sees it.
pub(crate) struct DepRow<'a> {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub service: &'a str,
    pub kind: SpanKind,
    pub is_error: bool,
}

impl Block {
    /// Opens a block whose `meta.json` exists: reads meta, index and Parquet footer.
    pub async fn load(storage: Arc<BlockStorage>, id: &str) -> Result<Block, StoreError> {
        let corrupt = |reason: String| StoreError::CorruptBlock {
            block: id.to_owned(),
            reason,
        };
        let meta_bytes = storage
            .get(&Path::from(format!("{id}/{META_FILE}")))
            .await?;
        let meta: BlockMeta =
            serde_json::from_slice(&meta_bytes).map_err(|e| corrupt(format!("meta.json: {e}")))?;
        if meta.format_version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {} not supported",
                meta.format_version
            )));
        }
        if meta.block_id != id {
            return Err(corrupt(format!("meta names block {}", meta.block_id)));
        }
        let index_bytes = storage
            .get(&Path::from(format!("{id}/{INDEX_FILE}")))
            .await?;
        let index = TraceIndex::decode(&index_bytes).map_err(|e| corrupt(format!("index: {e}")))?;
        let data_path = Path::from(format!("{id}/{}", super::DATA_FILE));
        let mut reader = ObjectReader::new(&storage, data_path, meta.data_bytes);
        let reader_meta = ArrowReaderMetadata::load_async(
            &mut reader,
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
        )
        .await
        .map_err(|e| corrupt(format!("parquet footer: {e}")))?;
        let rows = reader_meta.metadata().file_metadata().num_rows();
        if index.rows() != meta.span_count {
            return Err(corrupt(format!(
                "index covers {} rows, meta says {}",
                index.rows(),
                meta.span_count
            )));
        }
        if u64::try_from(rows).ok() != Some(meta.span_count) {
            return Err(corrupt(format!(
                "data holds {rows} rows, meta says {}",
                meta.span_count
            )));
        }
        Ok(Block::new(meta, index, reader_meta, storage))
    }

    fn corrupt(&self, reason: impl std::fmt::Display) -> StoreError {
        StoreError::CorruptBlock {
            block: self.meta.block_id.clone(),
            reason: reason.to_string(),
        }
    }

    fn builder(&self) -> ParquetRecordBatchStreamBuilder<ObjectReader> {
        let reader = ObjectReader::new(&self.storage, self.data_path.clone(), self.meta.data_bytes);
        ParquetRecordBatchStreamBuilder::new_with_metadata(reader, self.reader_meta.clone())
    }

    fn projection<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> ProjectionMask {
        ProjectionMask::columns(self.reader_meta.parquet_schema(), names)
    }

    /// The spans of one trace held by this block (none when the index does not list it).
    pub async fn read_trace(&self, id: &TraceId) -> Result<Vec<SpanRecord>, StoreError> {
        let Some((first, count)) = self.index.lookup(id) else {
            return Ok(Vec::new());
        };
        let (first, count) = (u64::from(first), u64::from(count));
        let end = first + count;
        let starts = &self.row_group_starts;
        let groups: Vec<usize> = (0..starts.len().saturating_sub(1))
            .filter(|&g| starts[g] < end && starts[g + 1] > first)
            .collect();
        let (Some(&g0), Some(&g1)) = (groups.first(), groups.last()) else {
            return Err(self.corrupt(format!("index rows {first}..{end} outside the data")));
        };
        let selected_rows = starts[g1 + 1] - starts[g0];
        let skip_before = first - starts[g0];
        let skip_after = selected_rows.saturating_sub(skip_before + count);
        let selection = RowSelection::from(vec![
            RowSelector::skip(skip_before as usize),
            RowSelector::select(count as usize),
            RowSelector::skip(skip_after as usize),
        ]);
        let mut stream = self
            .builder()
            .with_projection(self.projection(RECORD_COLUMNS.iter().copied()))
            .with_row_groups(groups)
            .with_row_selection(selection)
            .with_batch_size((count as usize).clamp(1, 8192))
            .build()?;
        let mut out = Vec::with_capacity(count as usize);
        let mut decoder = RecordDecoder::new();
        while let Some(batch) = stream.next().await {
            decoder
                .decode(&batch?, Some(*id), &mut out)
                .map_err(|e| self.corrupt(e))?;
        }
        Ok(out)
    }

    /// Row groups whose start-time statistics overlap `[start_min, start_max]`.
    fn row_groups_in(&self, start_min: u64, start_max: u64) -> Vec<usize> {
        let schema = self.reader_meta.parquet_schema();
        let start_col = schema
            .columns()
            .iter()
            .position(|c| c.name() == schema::START);
        self.reader_meta
            .metadata()
            .row_groups()
            .iter()
            .enumerate()
            .filter(|(_, rg)| {
                let Some(col) = start_col else { return true };
                match rg.column(col).statistics() {
                    Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                        (Some(&min), Some(&max)) if min >= 0 && max >= 0 => {
                            (max as u64) >= start_min && (min as u64) <= start_max
                        }
                        _ => true,
                    },
                    _ => true,
                }
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn scan(
        &self,
        columns: &[&str],
        start_min: u64,
        start_max: u64,
    ) -> Result<Option<ParquetRecordBatchStream<ObjectReader>>, StoreError> {
        let groups = self.row_groups_in(start_min, start_max);
        if groups.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            self.builder()
                .with_projection(self.projection(columns.iter().copied()))
                .with_row_groups(groups)
                .with_batch_size(8192)
                .build()?,
        ))
    }

    /// Adds, per trace with a span matching `filter`, the latest matching span start.
    pub async fn search(
        &self,
        filter: &SpanFilter,
        out: &mut HashMap<TraceId, u64>,
    ) -> Result<(), StoreError> {
        if !self.meta.may_match(filter) {
            return Ok(());
        }
        let mut columns = vec![schema::TRACE_ID, schema::START, schema::DURATION];
        if filter.service.is_some() {
            columns.push(schema::SERVICE_NAME);
        }
        if filter.operation.is_some() {
            columns.push(schema::NAME);
        }
        if !filter.tags.is_empty() {
            columns.extend([
                schema::KIND,
                schema::IS_ERROR,
                schema::ATTRIBUTES,
                schema::RESOURCE_ATTRIBUTES,
                schema::EVENTS,
            ]);
        }
        let Some(mut stream) = self.scan(&columns, filter.start_min, filter.start_max)? else {
            return Ok(());
        };
        let mut resource_cache = TextMatchCache::default();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let c = ScanColumns::new(&batch).map_err(|e| self.corrupt(e))?;
            let durations = c.duration.ok_or_else(|| self.corrupt("duration missing"))?;
            for row in 0..batch.num_rows() {
                let start = c.start.value(row) as u64;
                let end = start.wrapping_add(durations.value(row) as u64);
                if !filter.matches_times(start, end) {
                    continue;
                }
                if let (Some(svc), Some(col)) = (&filter.service, c.service) {
                    if col.value(row) != svc {
                        continue;
                    }
                }
                if let (Some(op), Some(col)) = (&filter.operation, c.name) {
                    if col.value(row) != op {
                        continue;
                    }
                }
                if !filter.tags.is_empty()
                    && !self.row_matches_tags(filter, &c, row, &mut resource_cache)?
                {
                    continue;
                }
                let id =
                    TraceId::from_bytes(fixed::<16>(c.trace_id, row).map_err(|e| self.corrupt(e))?);
                let best = out.entry(id).or_insert(0);
                *best = (*best).max(start);
            }
        }
        Ok(())
    }

    fn row_matches_tags(
        &self,
        filter: &SpanFilter,
        c: &ScanColumns<'_>,
        row: usize,
        resource_cache: &mut TextMatchCache,
    ) -> Result<bool, StoreError> {
        let kind = c.kind.map_or(SpanKind::Unspecified, |k| {
            SpanKind::from_i32(k.value(row).into())
        });
        let is_error = c.is_error.is_some_and(|e| e.value(row));
        let attrs = c.attributes.map_or("", |a| a.value(row));
        let resource = c.resource.map_or("", |a| a.value(row));
        let events = c.events.map_or("", |a| a.value(row));
        for (tag_idx, ((k, v), probe)) in filter.tags.iter().zip(&filter.probes).enumerate() {
            if tag_matches_span(k, v, kind, is_error) {
                continue;
            }
            if probe.may_match(attrs) {
                let kvs = json::read_kvs(attrs).map_err(|e| self.corrupt(e))?;
                if crate::filter::kv_matches(&kvs, k, v) {
                    continue;
                }
            }
            if resource_cache
                .matches(tag_idx, resource, probe, k, v)
                .map_err(|e| self.corrupt(e))?
            {
                continue;
            }
            if probe.may_match(events) {
                let evs = json::read_events(events).map_err(|e| self.corrupt(e))?;
                if crate::filter::events_match(&evs, k, v) {
                    continue;
                }
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// Calls `f` for every span starting in `[start_min, start_max]` that ended at or after
    /// `end_min`.
    pub async fn scan_dependencies(
        &self,
        start_min: u64,
        start_max: u64,
        end_min: u64,
        mut f: impl FnMut(DepRow<'_>),
    ) -> Result<(), StoreError> {
        if self.meta.max_start_unix_nano < start_min
            || self.meta.min_start_unix_nano > start_max
            || self.meta.max_end_unix_nano < end_min
        {
            return Ok(());
        }
        let columns = [
            schema::TRACE_ID,
            schema::SPAN_ID,
            schema::PARENT_SPAN_ID,
            schema::SERVICE_NAME,
            schema::KIND,
            schema::START,
            schema::DURATION,
            schema::IS_ERROR,
        ];
        let Some(mut stream) = self.scan(&columns, start_min, start_max)? else {
            return Ok(());
        };
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let c = ScanColumns::new(&batch).map_err(|e| self.corrupt(e))?;
            let (
                Some(span_ids),
                Some(parents),
                Some(services),
                Some(kinds),
                Some(durations),
                Some(errors),
            ) = (
                c.span_id, c.parent, c.service, c.kind, c.duration, c.is_error,
            )
            else {
                return Err(self.corrupt("dependency columns missing"));
            };
            for row in 0..batch.num_rows() {
                let start = c.start.value(row) as u64;
                let end = start.wrapping_add(durations.value(row) as u64);
                if start < start_min || start > start_max || end < end_min {
                    continue;
                }
                use arrow_array::Array;
                let parent = if parents.is_null(row) {
                    None
                } else {
                    Some(SpanId::from_bytes(
                        fixed::<8>(parents, row).map_err(|e| self.corrupt(e))?,
                    ))
                };
                f(DepRow {
                    trace_id: TraceId::from_bytes(
                        fixed::<16>(c.trace_id, row).map_err(|e| self.corrupt(e))?,
                    ),
                    span_id: SpanId::from_bytes(
                        fixed::<8>(span_ids, row).map_err(|e| self.corrupt(e))?,
                    ),
                    parent,
                    service: services.value(row),
                    kind: SpanKind::from_i32(kinds.value(row).into()),
                    is_error: errors.value(row),
                });
            }
        }
        Ok(())
    }
}

/// Resource attributes repeat row after row: remember the last text's answer per tag.
#[derive(Default)]
struct TextMatchCache {
    last: HashMap<usize, (String, bool)>,
}

impl TextMatchCache {
    fn matches(
        &mut self,
        tag: usize,
        text: &str,
        probe: &TagProbe,
        key: &str,
        value: &str,
    ) -> Result<bool, json::JsonError> {
        if let Some((t, answer)) = self.last.get(&tag) {
            if t == text {
                return Ok(*answer);
            }
        }
        let answer =
            probe.may_match(text) && crate::filter::kv_matches(&json::read_kvs(text)?, key, value);
        self.last.insert(tag, (text.to_owned(), answer));
        Ok(answer)
    }
}
