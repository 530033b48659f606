//! The Parquet (Arrow) schema of a block, and conversion between rows and span records.
//!
//! One row per span. Ids are fixed-size binary; times are Unix nanoseconds in Int64 (bit-cast
//! from u64, so every value round-trips; real timestamps stay positive until 2262);
//! `duration_nano` is `end - start` as a wrapping Int64, so an end before the start survives too.
//! Attributes, events, links, resource and scope attributes are JSON text (see [`super::json`]);
//! the resource column repeats per span and dictionary encoding makes that near-free.
//! `is_error` is derived ([`model::Span::is_error`]) so dependency and error searches need not
//! parse attributes.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    BooleanBuilder, FixedSizeBinaryBuilder, Int64Builder, StringBuilder, UInt32Builder,
    UInt8Builder,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeBinaryArray, Int64Array, RecordBatch, StringArray,
    UInt32Array, UInt8Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use model::{Resource, Scope, Span, SpanId, SpanKind, SpanRecord, Status, StatusCode, TraceId};

use super::json;
use crate::head::HeadSpan;

pub(crate) const TRACE_ID: &str = "trace_id";
pub(crate) const SPAN_ID: &str = "span_id";
pub(crate) const PARENT_SPAN_ID: &str = "parent_span_id";
pub(crate) const SERVICE_NAME: &str = "service_name";
pub(crate) const NAME: &str = "name";
pub(crate) const KIND: &str = "kind";
pub(crate) const START: &str = "start_unix_nano";
pub(crate) const DURATION: &str = "duration_nano";
pub(crate) const STATUS_CODE: &str = "status_code";
pub(crate) const STATUS_MESSAGE: &str = "status_message";
pub(crate) const TRACE_STATE: &str = "trace_state";
pub(crate) const FLAGS: &str = "flags";
pub(crate) const IS_ERROR: &str = "is_error";
pub(crate) const ATTRIBUTES: &str = "attributes";
pub(crate) const DROPPED_ATTRIBUTES: &str = "dropped_attributes_count";
pub(crate) const EVENTS: &str = "events";
pub(crate) const DROPPED_EVENTS: &str = "dropped_events_count";
pub(crate) const LINKS: &str = "links";
pub(crate) const DROPPED_LINKS: &str = "dropped_links_count";
pub(crate) const RESOURCE_ATTRIBUTES: &str = "resource_attributes";
pub(crate) const RESOURCE_DROPPED: &str = "resource_dropped_attributes_count";
pub(crate) const SCOPE_NAME: &str = "scope_name";
pub(crate) const SCOPE_VERSION: &str = "scope_version";
pub(crate) const SCOPE_ATTRIBUTES: &str = "scope_attributes";
pub(crate) const SCOPE_DROPPED: &str = "scope_dropped_attributes_count";

/// Every column but the two a trace-by-id read does not need (it knows the id, and `is_error`
/// is derived).
pub(crate) const RECORD_COLUMNS: &[&str] = &[
    SPAN_ID,
    PARENT_SPAN_ID,
    SERVICE_NAME,
    NAME,
    KIND,
    START,
    DURATION,
    STATUS_CODE,
    STATUS_MESSAGE,
    TRACE_STATE,
    FLAGS,
    ATTRIBUTES,
    DROPPED_ATTRIBUTES,
    EVENTS,
    DROPPED_EVENTS,
    LINKS,
    DROPPED_LINKS,
    RESOURCE_ATTRIBUTES,
    RESOURCE_DROPPED,
    SCOPE_NAME,
    SCOPE_VERSION,
    SCOPE_ATTRIBUTES,
    SCOPE_DROPPED,
];

pub(crate) fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let f = |name: &str, t: DataType| Field::new(name, t, false);
            Arc::new(Schema::new(vec![
                f(TRACE_ID, DataType::FixedSizeBinary(16)),
                f(SPAN_ID, DataType::FixedSizeBinary(8)),
                Field::new(PARENT_SPAN_ID, DataType::FixedSizeBinary(8), true),
                f(SERVICE_NAME, DataType::Utf8),
                f(NAME, DataType::Utf8),
                f(KIND, DataType::UInt8),
                f(START, DataType::Int64),
                f(DURATION, DataType::Int64),
                f(STATUS_CODE, DataType::UInt8),
                f(STATUS_MESSAGE, DataType::Utf8),
                f(TRACE_STATE, DataType::Utf8),
                f(FLAGS, DataType::UInt32),
                f(IS_ERROR, DataType::Boolean),
                f(ATTRIBUTES, DataType::Utf8),
                f(DROPPED_ATTRIBUTES, DataType::UInt32),
                f(EVENTS, DataType::Utf8),
                f(DROPPED_EVENTS, DataType::UInt32),
                f(LINKS, DataType::Utf8),
                f(DROPPED_LINKS, DataType::UInt32),
                f(RESOURCE_ATTRIBUTES, DataType::Utf8),
                f(RESOURCE_DROPPED, DataType::UInt32),
                f(SCOPE_NAME, DataType::Utf8),
                f(SCOPE_VERSION, DataType::Utf8),
                f(SCOPE_ATTRIBUTES, DataType::Utf8),
                f(SCOPE_DROPPED, DataType::UInt32),
            ]))
        })
        .clone()
}

/// One row to write: a head span and what its table indexes point at.
pub(crate) struct RowRef<'a> {
    pub span: &'a HeadSpan,
    pub name: &'a str,
    pub service: &'a str,
    pub resource: &'a Arc<Resource>,
    pub scope: &'a Arc<Scope>,
}

/// Accumulates rows into Arrow columns, one record batch at a time.
pub(crate) struct RowsBuilder {
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    parent: FixedSizeBinaryBuilder,
    service: StringBuilder,
    name: StringBuilder,
    kind: UInt8Builder,
    start: Int64Builder,
    duration: Int64Builder,
    status_code: UInt8Builder,
    status_message: StringBuilder,
    trace_state: StringBuilder,
    flags: UInt32Builder,
    is_error: BooleanBuilder,
    attributes: StringBuilder,
    dropped_attributes: UInt32Builder,
    events: StringBuilder,
    dropped_events: UInt32Builder,
    links: StringBuilder,
    dropped_links: UInt32Builder,
    resource: StringBuilder,
    resource_dropped: UInt32Builder,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    scope_attributes: StringBuilder,
    scope_dropped: UInt32Builder,
    /// JSON of resources and scope attributes, by `Arc` address (the head keeps them alive).
    resource_json: HashMap<usize, String>,
    scope_json: HashMap<usize, String>,
    rows: usize,
}

impl RowsBuilder {
    pub fn new() -> Self {
        Self {
            trace_id: FixedSizeBinaryBuilder::new(16),
            span_id: FixedSizeBinaryBuilder::new(8),
            parent: FixedSizeBinaryBuilder::new(8),
            service: StringBuilder::new(),
            name: StringBuilder::new(),
            kind: UInt8Builder::new(),
            start: Int64Builder::new(),
            duration: Int64Builder::new(),
            status_code: UInt8Builder::new(),
            status_message: StringBuilder::new(),
            trace_state: StringBuilder::new(),
            flags: UInt32Builder::new(),
            is_error: BooleanBuilder::new(),
            attributes: StringBuilder::new(),
            dropped_attributes: UInt32Builder::new(),
            events: StringBuilder::new(),
            dropped_events: UInt32Builder::new(),
            links: StringBuilder::new(),
            dropped_links: UInt32Builder::new(),
            resource: StringBuilder::new(),
            resource_dropped: UInt32Builder::new(),
            scope_name: StringBuilder::new(),
            scope_version: StringBuilder::new(),
            scope_attributes: StringBuilder::new(),
            scope_dropped: UInt32Builder::new(),
            resource_json: HashMap::new(),
            scope_json: HashMap::new(),
            rows: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn push(&mut self, row: &RowRef<'_>) -> Result<(), arrow_schema::ArrowError> {
        let s = row.span;
        self.trace_id.append_value(s.trace_id.as_bytes())?;
        self.span_id.append_value(s.span_id.as_bytes())?;
        match &s.parent {
            Some(p) => self.parent.append_value(p.as_bytes())?,
            None => self.parent.append_null(),
        }
        self.service.append_value(row.service);
        self.name.append_value(row.name);
        self.kind.append_value(s.kind as u8);
        self.start.append_value(s.start as i64);
        self.duration
            .append_value(s.end.wrapping_sub(s.start) as i64);
        self.status_code.append_value(s.status as u8);
        self.status_message.append_value(s.status_message());
        self.trace_state.append_value(s.trace_state());
        self.flags.append_value(s.flags);
        self.is_error.append_value(s.is_error);
        self.attributes.append_value(&s.attributes);
        self.dropped_attributes.append_value(s.dropped_attributes);
        self.events.append_value(s.events());
        self.dropped_events.append_value(s.dropped_events);
        self.links.append_value(s.links());
        self.dropped_links.append_value(s.dropped_links);
        let res = self
            .resource_json
            .entry(Arc::as_ptr(row.resource) as usize)
            .or_insert_with(|| {
                let mut out = String::new();
                json::write_kvs(&mut out, &row.resource.attributes);
                out
            });
        self.resource.append_value(res.as_str());
        self.resource_dropped
            .append_value(row.resource.dropped_attributes_count);
        self.scope_name.append_value(&row.scope.name);
        self.scope_version.append_value(&row.scope.version);
        let scope = self
            .scope_json
            .entry(Arc::as_ptr(row.scope) as usize)
            .or_insert_with(|| {
                let mut out = String::new();
                json::write_kvs(&mut out, &row.scope.attributes);
                out
            });
        self.scope_attributes.append_value(scope.as_str());
        self.scope_dropped
            .append_value(row.scope.dropped_attributes_count);
        self.rows += 1;
        Ok(())
    }

    /// Takes the rows pushed so far as one record batch.
    pub fn finish_batch(&mut self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        self.rows = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.start.finish()),
            Arc::new(self.duration.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.status_message.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.is_error.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.dropped_attributes.finish()),
            Arc::new(self.events.finish()),
            Arc::new(self.dropped_events.finish()),
            Arc::new(self.links.finish()),
            Arc::new(self.dropped_links.finish()),
            Arc::new(self.resource.finish()),
            Arc::new(self.resource_dropped.finish()),
            Arc::new(self.scope_name.finish()),
            Arc::new(self.scope_version.finish()),
            Arc::new(self.scope_attributes.finish()),
            Arc::new(self.scope_dropped.finish()),
        ];
        RecordBatch::try_new(schema(), columns)
    }
}

/// A column of a read batch that is missing or of the wrong type.
pub(crate) fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    batch
        .column_by_name(name)
        .ok_or_else(|| format!("column {name} missing"))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("column {name} has an unexpected type"))
}

pub(crate) fn fixed<const N: usize>(
    a: &FixedSizeBinaryArray,
    row: usize,
) -> Result<[u8; N], String> {
    a.value(row)
        .try_into()
        .map_err(|_| format!("id of {} bytes, expected {N}", a.value_length()))
}

/// The columns a full record needs, looked up once per batch.
pub(crate) struct RecordColumns<'a> {
    trace_id: Option<&'a FixedSizeBinaryArray>,
    span_id: &'a FixedSizeBinaryArray,
    parent: &'a FixedSizeBinaryArray,
    name: &'a StringArray,
    kind: &'a UInt8Array,
    start: &'a Int64Array,
    duration: &'a Int64Array,
    status_code: &'a UInt8Array,
    status_message: &'a StringArray,
    trace_state: &'a StringArray,
    flags: &'a UInt32Array,
    attributes: &'a StringArray,
    dropped_attributes: &'a UInt32Array,
    events: &'a StringArray,
    dropped_events: &'a UInt32Array,
    links: &'a StringArray,
    dropped_links: &'a UInt32Array,
    resource: &'a StringArray,
    resource_dropped: &'a UInt32Array,
    scope_name: &'a StringArray,
    scope_version: &'a StringArray,
    scope_attributes: &'a StringArray,
    scope_dropped: &'a UInt32Array,
}

impl<'a> RecordColumns<'a> {
    pub fn new(batch: &'a RecordBatch) -> Result<Self, String> {
        Ok(Self {
            trace_id: batch
                .column_by_name(TRACE_ID)
                .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>()),
            span_id: column(batch, SPAN_ID)?,
            parent: column(batch, PARENT_SPAN_ID)?,
            name: column(batch, NAME)?,
            kind: column(batch, KIND)?,
            start: column(batch, START)?,
            duration: column(batch, DURATION)?,
            status_code: column(batch, STATUS_CODE)?,
            status_message: column(batch, STATUS_MESSAGE)?,
            trace_state: column(batch, TRACE_STATE)?,
            flags: column(batch, FLAGS)?,
            attributes: column(batch, ATTRIBUTES)?,
            dropped_attributes: column(batch, DROPPED_ATTRIBUTES)?,
            events: column(batch, EVENTS)?,
            dropped_events: column(batch, DROPPED_EVENTS)?,
            links: column(batch, LINKS)?,
            dropped_links: column(batch, DROPPED_LINKS)?,
            resource: column(batch, RESOURCE_ATTRIBUTES)?,
            resource_dropped: column(batch, RESOURCE_DROPPED)?,
            scope_name: column(batch, SCOPE_NAME)?,
            scope_version: column(batch, SCOPE_VERSION)?,
            scope_attributes: column(batch, SCOPE_ATTRIBUTES)?,
            scope_dropped: column(batch, SCOPE_DROPPED)?,
        })
    }
}

/// Rebuilds records from rows; consecutive rows with equal resource or scope share one `Arc`.
pub(crate) struct RecordDecoder {
    last_resource: Option<(String, u32, Arc<Resource>)>,
    last_scope: Option<(String, String, String, u32, Arc<Scope>)>,
}

impl RecordDecoder {
    pub fn new() -> Self {
        Self {
            last_resource: None,
            last_scope: None,
        }
    }

    /// Decodes every row of `batch`; `trace_id` stands in when the batch lacks that column.
    pub fn decode(
        &mut self,
        batch: &RecordBatch,
        trace_id: Option<TraceId>,
        out: &mut Vec<SpanRecord>,
    ) -> Result<(), String> {
        let c = RecordColumns::new(batch)?;
        for row in 0..batch.num_rows() {
            out.push(self.decode_row(&c, row, trace_id)?);
        }
        Ok(())
    }

    fn decode_row(
        &mut self,
        c: &RecordColumns<'_>,
        row: usize,
        trace_id: Option<TraceId>,
    ) -> Result<SpanRecord, String> {
        let trace_id = match (c.trace_id, trace_id) {
            (Some(col), _) => TraceId::from_bytes(fixed::<16>(col, row)?),
            (None, Some(id)) => id,
            (None, None) => return Err("trace_id column missing".into()),
        };
        let parent_span_id = if c.parent.is_null(row) {
            None
        } else {
            Some(SpanId::from_bytes(fixed::<8>(c.parent, row)?))
        };
        let start = c.start.value(row) as u64;
        let json_err = |what: &str, e: json::JsonError| format!("{what}: {e}");
        let span = Span {
            trace_id,
            span_id: SpanId::from_bytes(fixed::<8>(c.span_id, row)?),
            parent_span_id,
            trace_state: c.trace_state.value(row).to_owned(),
            flags: c.flags.value(row),
            name: c.name.value(row).to_owned(),
            kind: SpanKind::from_i32(c.kind.value(row).into()),
            start_unix_nano: start,
            end_unix_nano: start.wrapping_add(c.duration.value(row) as u64),
            attributes: json::read_kvs(c.attributes.value(row))
                .map_err(|e| json_err("attributes", e))?,
            dropped_attributes_count: c.dropped_attributes.value(row),
            events: json::read_events(c.events.value(row)).map_err(|e| json_err("events", e))?,
            dropped_events_count: c.dropped_events.value(row),
            links: json::read_links(c.links.value(row)).map_err(|e| json_err("links", e))?,
            dropped_links_count: c.dropped_links.value(row),
            status: Status {
                code: StatusCode::from_i32(c.status_code.value(row).into()),
                message: c.status_message.value(row).to_owned(),
            },
        };
        let res_text = c.resource.value(row);
        let res_dropped = c.resource_dropped.value(row);
        let resource = match &self.last_resource {
            Some((text, dropped, arc)) if text == res_text && *dropped == res_dropped => {
                Arc::clone(arc)
            }
            _ => {
                let arc = Arc::new(Resource {
                    attributes: json::read_kvs(res_text)
                        .map_err(|e| json_err("resource attributes", e))?,
                    dropped_attributes_count: res_dropped,
                });
                self.last_resource = Some((res_text.to_owned(), res_dropped, Arc::clone(&arc)));
                arc
            }
        };
        let (sn, sv, sa, sd) = (
            c.scope_name.value(row),
            c.scope_version.value(row),
            c.scope_attributes.value(row),
            c.scope_dropped.value(row),
        );
        let scope = match &self.last_scope {
            Some((n, v, a, d, arc)) if n == sn && v == sv && a == sa && *d == sd => Arc::clone(arc),
            _ => {
                let arc = Arc::new(Scope {
                    name: sn.to_owned(),
                    version: sv.to_owned(),
                    attributes: json::read_kvs(sa).map_err(|e| json_err("scope attributes", e))?,
                    dropped_attributes_count: sd,
                });
                self.last_scope = Some((
                    sn.to_owned(),
                    sv.to_owned(),
                    sa.to_owned(),
                    sd,
                    Arc::clone(&arc),
                ));
                arc
            }
        };
        Ok(SpanRecord {
            resource,
            scope,
            span,
        })
    }
}

/// Typed access to the few columns searches and dependency scans read.
pub(crate) struct ScanColumns<'a> {
    pub trace_id: &'a FixedSizeBinaryArray,
    pub service: Option<&'a StringArray>,
    pub name: Option<&'a StringArray>,
    pub kind: Option<&'a UInt8Array>,
    pub start: &'a Int64Array,
    pub duration: Option<&'a Int64Array>,
    pub is_error: Option<&'a BooleanArray>,
    pub span_id: Option<&'a FixedSizeBinaryArray>,
    pub parent: Option<&'a FixedSizeBinaryArray>,
    pub attributes: Option<&'a StringArray>,
    pub resource: Option<&'a StringArray>,
    pub events: Option<&'a StringArray>,
}

impl<'a> ScanColumns<'a> {
    pub fn new(batch: &'a RecordBatch) -> Result<Self, String> {
        fn opt<'b, T: 'static>(batch: &'b RecordBatch, name: &str) -> Option<&'b T> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<T>())
        }
        Ok(Self {
            trace_id: column(batch, TRACE_ID)?,
            start: column(batch, START)?,
            service: opt(batch, SERVICE_NAME),
            name: opt(batch, NAME),
            kind: opt(batch, KIND),
            duration: opt(batch, DURATION),
            is_error: opt(batch, IS_ERROR),
            span_id: opt(batch, SPAN_ID),
            parent: opt(batch, PARENT_SPAN_ID),
            attributes: opt(batch, ATTRIBUTES),
            resource: opt(batch, RESOURCE_ATTRIBUTES),
            events: opt(batch, EVENTS),
        })
    }
}
