//! The Jaeger UI trace JSON (`model/json` in Jaeger) built from adjusted spans.
//!
//! Field names, omissions and value forms are Jaeger's: `traceID`/`spanID` as Jaeger prints them
//! (16 hex digits for 64-bit trace ids), times in microseconds, `flags` left out when zero,
//! `warnings` `null` when there are none, processes deduplicated and named `p1..pN` in order of
//! first appearance.
//!
//! The OTLP → Jaeger mapping is the OpenTelemetry Collector's Jaeger translator's, which Jaeger
//! uses for OTLP data: `span.kind` tag (none for UNSPECIFIED), `otel.status_code` (`OK`/`ERROR`),
//! `error=true` and `otel.status_description` for errors, `otel.scope.name`/`otel.scope.version`,
//! `w3c.tracestate`; the parent as the first CHILD_OF reference and links as FOLLOWS_FROM
//! (CHILD_OF when the link says `opentracing.ref_type=child_of`); events as logs with an `event`
//! field; resource attributes other than `service.name` as process tags. Dropped counts become
//! `otel.dropped_*_count` tags as the OpenTelemetry spec for non-OTLP exporters names them.
//! Jaeger's tag adjusters follow: tags sorted by key, `event` first in log fields, integer `ip`
//! tags as dotted text, `telemetry.sdk.*`/`telemetry.distro.*` span tags moved to the process.

mod tags;

use model::{Link, SpanId, SpanKind, SpanRecord, StatusCode, TraceId, SERVICE_NAME};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

pub use tags::Tag;

use crate::adjust::AdjustedSpan;

/// One trace as the Jaeger UI reads it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trace {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    pub spans: Vec<Span>,
    pub processes: Processes,
    pub warnings: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub flags: u32,
    pub operation_name: String,
    pub references: Vec<Reference>,
    pub start_time: u64,
    pub duration: u64,
    pub tags: Vec<Tag>,
    pub logs: Vec<Log>,
    #[serde(rename = "processID")]
    pub process_id: String,
    pub warnings: Option<Vec<String>>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    pub ref_type: RefType,
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RefType {
    #[serde(rename = "CHILD_OF")]
    ChildOf,
    #[serde(rename = "FOLLOWS_FROM")]
    FollowsFrom,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Log {
    pub timestamp: u64,
    pub fields: Vec<Tag>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    pub service_name: String,
    pub tags: Vec<Tag>,
}

/// `{"p1": {...}, "p2": {...}}` in numbering order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Processes(pub Vec<(String, Process)>);

impl Serialize for Processes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (id, process) in &self.0 {
            map.serialize_entry(id, process)?;
        }
        map.end()
    }
}

impl Processes {
    /// The id of an equal process, or a new `pN` for this one.
    fn intern(&mut self, process: Process) -> String {
        if let Some((id, _)) = self.0.iter().find(|(_, p)| *p == process) {
            return id.clone();
        }
        let id = format!("p{}", self.0.len() + 1);
        self.0.push((id.clone(), process));
        id
    }
}

/// Span attributes Jaeger's `OTelTagAdjuster` moves to the process.
const PROCESS_LEVEL_KEYS: [&str; 5] = [
    "telemetry.sdk.language",
    "telemetry.sdk.name",
    "telemetry.sdk.version",
    "telemetry.distro.name",
    "telemetry.distro.version",
];

/// Builds the Jaeger JSON of one trace from its (adjusted) spans, in their order.
pub fn trace_to_jaeger(trace_id: TraceId, spans: &[AdjustedSpan]) -> Trace {
    let mut processes = Processes::default();
    let spans = spans
        .iter()
        .map(|s| {
            let (span, process) = span_to_jaeger(s);
            let process_id = processes.intern(process);
            Span { process_id, ..span }
        })
        .collect();
    Trace {
        trace_id: trace_id.to_short_hex(),
        spans,
        processes,
        warnings: None,
    }
}

/// One span and the process it belongs to (`process_id` is left empty for the caller).
fn span_to_jaeger(adjusted: &AdjustedSpan) -> (Span, Process) {
    let rec: &SpanRecord = &adjusted.record;
    let span = &rec.span;

    let mut process_tags: Vec<Tag> = rec
        .resource
        .attributes
        .iter()
        .filter(|kv| kv.key != SERVICE_NAME)
        .map(Tag::from_attribute)
        .collect();

    let mut tags = Vec::with_capacity(span.attributes.len() + 6);
    if !rec.scope.name.is_empty() {
        tags.push(Tag::string("otel.scope.name", rec.scope.name.clone()));
    }
    if !rec.scope.version.is_empty() {
        tags.push(Tag::string("otel.scope.version", rec.scope.version.clone()));
    }
    for kv in &span.attributes {
        let tag = Tag::from_attribute(kv);
        if PROCESS_LEVEL_KEYS.contains(&kv.key.as_str()) {
            process_tags.push(tag);
        } else {
            tags.push(tag);
        }
    }
    let kind = span.kind.as_jaeger_str();
    if span.kind != SpanKind::Unspecified {
        tags.push(Tag::string("span.kind", kind));
    }
    match span.status.code {
        StatusCode::Ok => tags.push(Tag::string("otel.status_code", "OK")),
        StatusCode::Error => {
            tags.push(Tag::string("otel.status_code", "ERROR"));
            // The Jaeger UI marks a span failed only for `error` = true or "true"; a Brave-style
            // `error` tag holding a message is kept beside it, not instead of it.
            let flagged = span
                .attribute("error")
                .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"));
            if !flagged {
                tags.push(Tag::bool("error", true));
            }
        }
        StatusCode::Unset => {}
    }
    if !span.status.message.is_empty() {
        tags.push(Tag::string(
            "otel.status_description",
            span.status.message.clone(),
        ));
    }
    if !span.trace_state.is_empty() {
        tags.push(Tag::string("w3c.tracestate", span.trace_state.clone()));
    }
    for (key, count) in [
        (
            "otel.dropped_attributes_count",
            span.dropped_attributes_count,
        ),
        ("otel.dropped_events_count", span.dropped_events_count),
        ("otel.dropped_links_count", span.dropped_links_count),
    ] {
        if count > 0 {
            tags.push(Tag::int64(key, i64::from(count)));
        }
    }
    tags::adjust_ip_tags(&mut tags);
    tags::sort_tags(&mut tags);
    tags::adjust_ip_tags(&mut process_tags);
    tags::sort_tags(&mut process_tags);

    let logs = span
        .events
        .iter()
        .map(|event| {
            let mut fields = Vec::with_capacity(event.attributes.len() + 2);
            let has_event_attr = event.attributes.iter().any(|kv| kv.key == "event");
            if !event.name.is_empty() && !has_event_attr {
                fields.push(Tag::string("event", event.name.clone()));
            }
            fields.extend(event.attributes.iter().map(Tag::from_attribute));
            if event.dropped_attributes_count > 0 {
                fields.push(Tag::int64(
                    "otel.dropped_attributes_count",
                    i64::from(event.dropped_attributes_count),
                ));
            }
            tags::sort_log_fields(&mut fields);
            Log {
                timestamp: event.time_unix_nano / 1_000,
                fields,
            }
        })
        .collect();

    let out = Span {
        trace_id: span.trace_id.to_short_hex(),
        span_id: span_id_hex(span.span_id),
        flags: span.flags & 0xff,
        operation_name: span.name.clone(),
        references: references(span.trace_id, span.parent_span_id, &span.links),
        start_time: span.start_unix_nano / 1_000,
        duration: span.duration_nanos() / 1_000,
        tags,
        logs,
        process_id: String::new(),
        warnings: (!adjusted.warnings.is_empty()).then(|| adjusted.warnings.clone()),
    };
    let process = Process {
        service_name: rec.resource.service_name().to_owned(),
        tags: process_tags,
    };
    (out, process)
}

fn span_id_hex(id: SpanId) -> String {
    id.to_string()
}

/// The parent first as CHILD_OF, then links (invalid ones dropped, as Jaeger's `SpanLinks`
/// adjuster); a link to the parent only changes the parent reference's type. Finally the first
/// same-trace CHILD_OF reference is moved to the front (Jaeger's `ParentReference` adjuster).
fn references(trace_id: TraceId, parent: Option<SpanId>, links: &[Link]) -> Vec<Reference> {
    let mut refs: Vec<(RefType, TraceId, SpanId)> = Vec::with_capacity(links.len() + 1);
    if let Some(parent) = parent {
        refs.push((RefType::ChildOf, trace_id, parent));
    }
    for link in links {
        if link.trace_id.is_zero() || link.span_id.is_zero() {
            continue;
        }
        let ref_type = match link
            .attributes
            .iter()
            .find(|kv| kv.key == "opentracing.ref_type")
        {
            Some(kv) if kv.value.as_str() == Some("child_of") => RefType::ChildOf,
            _ => RefType::FollowsFrom,
        };
        if parent.is_some_and(|p| p == link.span_id) && link.trace_id == trace_id {
            refs[0].0 = ref_type;
            continue;
        }
        refs.push((ref_type, link.trace_id, link.span_id));
    }
    let first_same_trace = |want: Option<RefType>| {
        refs.iter()
            .position(|(t, tid, _)| *tid == trace_id && want.is_none_or(|w| w == *t))
    };
    if let Some(i) = first_same_trace(Some(RefType::ChildOf)).or_else(|| first_same_trace(None)) {
        refs.swap(0, i);
    }
    refs.into_iter()
        .map(|(ref_type, tid, sid)| Reference {
            ref_type,
            trace_id: tid.to_short_hex(),
            span_id: span_id_hex(sid),
        })
        .collect()
}

#[cfg(test)]
mod tests;
