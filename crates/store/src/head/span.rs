//! The compact form a span takes in the head.
//!
//! A model [`Span`] with eight attributes costs about a kilobyte of heap (a `String` and an
//! `AnyValue` per attribute, each its own allocation). The head instead keeps fixed-size fields,
//! the span name, resource and scope as indexes into per-head tables, and attributes (and the
//! rarely used events, links, trace state and status message) as the same JSON text blocks
//! store — about a third of the memory, and a cut copies that text into Parquet as is.
//! Converting back to a [`SpanRecord`] parses the JSON, which only reads of a few spans do.

use std::sync::Arc;

use model::{Resource, Scope, Span, SpanId, SpanKind, SpanRecord, Status, StatusCode, TraceId};

use crate::block::json::{self, JsonError};

/// Fields most spans leave empty, kept out of line.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Extra {
    pub trace_state: String,
    pub status_message: String,
    /// JSON array, `[]` when none.
    pub events: String,
    /// JSON array, `[]` when none.
    pub links: String,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HeadSpan {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub start: u64,
    pub end: u64,
    /// Index into the head's name table.
    pub name: u32,
    /// Index into the head's resource table.
    pub resource: u32,
    /// Index into the head's scope table.
    pub scope: u32,
    pub flags: u32,
    pub dropped_attributes: u32,
    pub dropped_events: u32,
    pub dropped_links: u32,
    pub kind: SpanKind,
    pub status: StatusCode,
    pub is_error: bool,
    /// JSON object.
    pub attributes: Box<str>,
    pub extra: Option<Box<Extra>>,
}

impl HeadSpan {
    pub fn trace_state(&self) -> &str {
        self.extra.as_ref().map_or("", |e| &e.trace_state)
    }

    pub fn status_message(&self) -> &str {
        self.extra.as_ref().map_or("", |e| &e.status_message)
    }

    pub fn events(&self) -> &str {
        self.extra.as_ref().map_or("[]", |e| &e.events)
    }

    pub fn links(&self) -> &str {
        self.extra.as_ref().map_or("[]", |e| &e.links)
    }

    /// Rebuilds the model span, given the name, resource and scope the indexes point at.
    pub fn to_record(
        &self,
        name: &str,
        resource: &Arc<Resource>,
        scope: &Arc<Scope>,
    ) -> Result<SpanRecord, JsonError> {
        Ok(SpanRecord {
            resource: Arc::clone(resource),
            scope: Arc::clone(scope),
            span: Span {
                trace_id: self.trace_id,
                span_id: self.span_id,
                parent_span_id: self.parent,
                trace_state: self.trace_state().to_owned(),
                flags: self.flags,
                name: name.to_owned(),
                kind: self.kind,
                start_unix_nano: self.start,
                end_unix_nano: self.end,
                attributes: json::read_kvs(&self.attributes)?,
                dropped_attributes_count: self.dropped_attributes,
                events: json::read_events(self.events())?,
                dropped_events_count: self.dropped_events,
                links: json::read_links(self.links())?,
                dropped_links_count: self.dropped_links,
                status: Status {
                    code: self.status,
                    message: self.status_message().to_owned(),
                },
            },
        })
    }
}

/// A span converted for the head but not yet resolved against its tables: this part of the work
/// is done by the appending task, so the WAL thread only interns and links.
pub(crate) struct Prepared {
    pub span: HeadSpan,
    pub name: String,
    pub resource: Arc<Resource>,
    pub scope: Arc<Scope>,
}

pub(crate) fn prepare(records: Vec<SpanRecord>) -> Vec<Prepared> {
    let mut text = String::new();
    records
        .into_iter()
        .map(|rec| {
            let s = rec.span;
            let is_error = s.is_error();
            text.clear();
            json::write_kvs(&mut text, &s.attributes);
            let attributes: Box<str> = text.as_str().into();
            let extra = if s.trace_state.is_empty()
                && s.status.message.is_empty()
                && s.events.is_empty()
                && s.links.is_empty()
            {
                None
            } else {
                let mut events = String::new();
                json::write_events(&mut events, &s.events);
                let mut links = String::new();
                json::write_links(&mut links, &s.links);
                Some(Box::new(Extra {
                    trace_state: s.trace_state,
                    status_message: s.status.message,
                    events,
                    links,
                }))
            };
            Prepared {
                span: HeadSpan {
                    trace_id: s.trace_id,
                    span_id: s.span_id,
                    parent: s.parent_span_id,
                    start: s.start_unix_nano,
                    end: s.end_unix_nano,
                    name: 0,
                    resource: 0,
                    scope: 0,
                    flags: s.flags,
                    dropped_attributes: s.dropped_attributes_count,
                    dropped_events: s.dropped_events_count,
                    dropped_links: s.dropped_links_count,
                    kind: s.kind,
                    status: s.status.code,
                    is_error,
                    attributes,
                    extra,
                },
                name: s.name,
                resource: rec.resource,
                scope: rec.scope,
            }
        })
        .collect()
}
