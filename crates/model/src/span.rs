//! Spans and the context they are reported in (resource, instrumentation scope).

use crate::value::{find, AnyValue, KeyValue};
use crate::{SpanId, TraceId, SERVICE_NAME, UNKNOWN_SERVICE};

/// What role a span plays in a call, as OTLP's `SpanKind` (same numbering).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum SpanKind {
    #[default]
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    /// From OTLP's enum number; unknown numbers are `Unspecified`, as the OTLP spec asks.
    pub fn from_i32(v: i32) -> Self {
        match v {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// Lowercase name as Jaeger writes `span.kind` and filters `spanKind` (`""` for unspecified).
    pub fn as_jaeger_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }

    /// Parses Jaeger's lowercase names (`server`, `client`, ...); `None` for anything else.
    pub fn from_jaeger_str(s: &str) -> Option<Self> {
        Some(match s {
            "" | "unspecified" => SpanKind::Unspecified,
            "internal" => SpanKind::Internal,
            "server" => SpanKind::Server,
            "client" => SpanKind::Client,
            "producer" => SpanKind::Producer,
            "consumer" => SpanKind::Consumer,
            _ => return None,
        })
    }
}

/// Span status code, as OTLP's `Status.StatusCode` (same numbering).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StatusCode {
    #[default]
    Unset = 0,
    Ok = 1,
    Error = 2,
}

impl StatusCode {
    pub fn from_i32(v: i32) -> Self {
        match v {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Status {
    pub code: StatusCode,
    pub message: String,
}

/// A timestamped annotation on a span (Jaeger calls these logs, Zipkin annotations).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    pub time_unix_nano: u64,
    pub name: String,
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
}

/// A reference from a span to another span, possibly in another trace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Link {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_state: String,
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub flags: u32,
}

/// One timed operation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    pub trace_state: String,
    pub flags: u32,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub events: Vec<Event>,
    pub dropped_events_count: u32,
    pub links: Vec<Link>,
    pub dropped_links_count: u32,
    pub status: Status,
}

impl Span {
    /// End minus start, zero when the end is before the start (clock skew in reports).
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    pub fn attribute(&self, key: &str) -> Option<&AnyValue> {
        find(&self.attributes, key)
    }

    /// True when the status is Error, or (for spans from systems without status) an `error` tag is true.
    pub fn is_error(&self) -> bool {
        self.status.code == StatusCode::Error
            || matches!(self.attribute("error"), Some(AnyValue::Bool(true)))
    }
}

/// The entity that produced spans, described by attributes (`service.name`, `host.name`, ...).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resource {
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
}

impl Resource {
    pub fn attribute(&self, key: &str) -> Option<&AnyValue> {
        find(&self.attributes, key)
    }

    /// `service.name`, or `unknown_service` when absent or not a non-empty string.
    pub fn service_name(&self) -> &str {
        match self.attribute(SERVICE_NAME) {
            Some(AnyValue::String(s)) if !s.is_empty() => s,
            _ => UNKNOWN_SERVICE,
        }
    }
}

/// The instrumentation library that produced spans.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scope {
    pub name: String,
    pub version: String,
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
}
