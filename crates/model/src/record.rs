//! A span together with its resource and scope: the unit the store keeps and queries return.

use std::sync::Arc;

use crate::span::{Resource, Scope, Span};
use crate::TraceId;

/// One span and the context it was reported in. Resource and scope are shared between the
/// spans of one report, so a record costs one span plus two reference counts.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanRecord {
    pub resource: Arc<Resource>,
    pub scope: Arc<Scope>,
    pub span: Span,
}

impl SpanRecord {
    pub fn service_name(&self) -> &str {
        self.resource.service_name()
    }
}

/// All spans known for one trace id, in no particular order.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub trace_id: TraceId,
    pub spans: Vec<SpanRecord>,
}

impl Trace {
    /// Earliest start and latest end over all spans, in Unix nanoseconds; `None` when empty.
    pub fn time_range(&self) -> Option<(u64, u64)> {
        let start = self.spans.iter().map(|r| r.span.start_unix_nano).min()?;
        let end = self.spans.iter().map(|r| r.span.end_unix_nano).max()?;
        Some((start, end.max(start)))
    }

    /// The span with no parent in this trace that starts first, if any.
    pub fn root(&self) -> Option<&SpanRecord> {
        self.spans
            .iter()
            .filter(|r| r.span.parent_span_id.is_none())
            .min_by_key(|r| r.span.start_unix_nano)
    }
}
