//! OTLP protobuf messages (from `opentelemetry-proto`) to and from the span model.
//!
//! Model → OTLP is total. OTLP → model cannot fail as a whole: OTLP asks receivers to accept what
//! they can and report the rest as a partial success, so a span whose ids are invalid is dropped,
//! counted and explained, and the other spans of the request go on.

use model::{
    AnyValue, Event, KeyValue, Link, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanId,
    SpanKind, Status, StatusCode, TraceBatch, TraceId,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_proto::tonic::resource::v1 as pr;
use opentelemetry_proto::tonic::trace::v1 as pt;

use crate::Decoded;

/// How many rejection reasons `error_message` lists before summarising the rest.
const MAX_REASONS: usize = 5;

/// Converts a request to the model, dropping (and counting) spans with invalid ids.
pub fn from_request(req: ExportTraceServiceRequest) -> Decoded {
    let mut rejects = Rejects::default();
    let mut batch = TraceBatch {
        resource_spans: Vec::with_capacity(req.resource_spans.len()),
    };
    for (ri, rs) in req.resource_spans.into_iter().enumerate() {
        let mut out = ResourceSpans {
            resource: rs.resource.map(resource_from).unwrap_or_default(),
            schema_url: rs.schema_url,
            scope_spans: Vec::with_capacity(rs.scope_spans.len()),
        };
        for (si, ss) in rs.scope_spans.into_iter().enumerate() {
            let mut spans = Vec::with_capacity(ss.spans.len());
            for (pi, span) in ss.spans.into_iter().enumerate() {
                match span_from(span) {
                    Ok(s) => spans.push(s),
                    Err((field, why)) => rejects.add(format!(
                        "resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}].{field}: {why}"
                    )),
                }
            }
            out.scope_spans.push(ScopeSpans {
                scope: ss.scope.map(scope_from).unwrap_or_default(),
                schema_url: ss.schema_url,
                spans,
            });
        }
        batch.resource_spans.push(out);
    }
    Decoded {
        batch,
        rejected_spans: rejects.count,
        error_message: rejects.message(),
    }
}

/// Converts the model to a request. Lossless: `from_request(to_request(b)).batch == b`.
pub fn to_request(batch: &TraceBatch) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: batch
            .resource_spans
            .iter()
            .map(|rs| pt::ResourceSpans {
                resource: Some(pr::Resource {
                    attributes: kvs_to(&rs.resource.attributes),
                    dropped_attributes_count: rs.resource.dropped_attributes_count,
                    entity_refs: Vec::new(),
                }),
                scope_spans: rs
                    .scope_spans
                    .iter()
                    .map(|ss| pt::ScopeSpans {
                        scope: Some(pc::InstrumentationScope {
                            name: ss.scope.name.clone(),
                            version: ss.scope.version.clone(),
                            attributes: kvs_to(&ss.scope.attributes),
                            dropped_attributes_count: ss.scope.dropped_attributes_count,
                        }),
                        spans: ss.spans.iter().map(span_to).collect(),
                        schema_url: ss.schema_url.clone(),
                    })
                    .collect(),
                schema_url: rs.schema_url.clone(),
            })
            .collect(),
    }
}

/// Collects why spans were rejected: a count, and the first few reasons.
#[derive(Default)]
struct Rejects {
    count: u64,
    reasons: Vec<String>,
}

impl Rejects {
    fn add(&mut self, reason: String) {
        self.count += 1;
        if self.reasons.len() < MAX_REASONS {
            self.reasons.push(reason);
        }
    }

    fn message(&self) -> String {
        if self.count == 0 {
            return String::new();
        }
        let mut msg = format!(
            "rejected {} span(s): {}",
            self.count,
            self.reasons.join("; ")
        );
        let more = self.count - self.reasons.len() as u64;
        if more > 0 {
            msg.push_str(&format!("; and {more} more"));
        }
        msg
    }
}

type FieldError = (&'static str, String);

fn trace_id_from(field: &'static str, b: &[u8]) -> Result<TraceId, FieldError> {
    // The model also takes 8-byte ids (for Zipkin); OTLP requires exactly 16.
    if b.len() != 16 {
        return Err((field, format!("trace id must be 16 bytes, got {}", b.len())));
    }
    TraceId::from_slice(b).map_err(|e| (field, e.to_string()))
}

fn span_id_from(field: &'static str, b: &[u8]) -> Result<SpanId, FieldError> {
    SpanId::from_slice(b).map_err(|e| (field, e.to_string()))
}

/// Empty or all-zero parent ids mean "root span" (some SDKs send 8 zero bytes).
fn parent_from(b: &[u8]) -> Result<Option<SpanId>, FieldError> {
    if b.iter().all(|&x| x == 0) && (b.is_empty() || b.len() == 8) {
        return Ok(None);
    }
    span_id_from("parentSpanId", b).map(Some)
}

fn span_from(s: pt::Span) -> Result<Span, FieldError> {
    let trace_id = trace_id_from("traceId", &s.trace_id)?;
    let span_id = span_id_from("spanId", &s.span_id)?;
    let parent_span_id = parent_from(&s.parent_span_id)?;
    let mut dropped_links_count = s.dropped_links_count;
    let mut links = Vec::with_capacity(s.links.len());
    for l in s.links {
        // A link to nowhere is not worth rejecting its span for: drop it and count it as dropped.
        match (
            trace_id_from("traceId", &l.trace_id),
            span_id_from("spanId", &l.span_id),
        ) {
            (Ok(trace_id), Ok(span_id)) => links.push(Link {
                trace_id,
                span_id,
                trace_state: l.trace_state,
                attributes: kvs_from(l.attributes),
                dropped_attributes_count: l.dropped_attributes_count,
                flags: l.flags,
            }),
            _ => dropped_links_count = dropped_links_count.saturating_add(1),
        }
    }
    let status = s
        .status
        .map(|st| Status {
            code: StatusCode::from_i32(st.code),
            message: st.message,
        })
        .unwrap_or_default();
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id,
        trace_state: s.trace_state,
        flags: s.flags,
        name: s.name,
        kind: SpanKind::from_i32(s.kind),
        start_unix_nano: s.start_time_unix_nano,
        end_unix_nano: s.end_time_unix_nano,
        attributes: kvs_from(s.attributes),
        dropped_attributes_count: s.dropped_attributes_count,
        events: s
            .events
            .into_iter()
            .map(|e| Event {
                time_unix_nano: e.time_unix_nano,
                name: e.name,
                attributes: kvs_from(e.attributes),
                dropped_attributes_count: e.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: s.dropped_events_count,
        links,
        dropped_links_count,
        status,
    })
}

fn span_to(s: &Span) -> pt::Span {
    let status = (s.status != Status::default()).then(|| pt::Status {
        message: s.status.message.clone(),
        code: s.status.code as i32,
    });
    pt::Span {
        trace_id: s.trace_id.as_bytes().to_vec(),
        span_id: s.span_id.as_bytes().to_vec(),
        trace_state: s.trace_state.clone(),
        parent_span_id: s
            .parent_span_id
            .map(|p| p.as_bytes().to_vec())
            .unwrap_or_default(),
        flags: s.flags,
        name: s.name.clone(),
        kind: s.kind as i32,
        start_time_unix_nano: s.start_unix_nano,
        end_time_unix_nano: s.end_unix_nano,
        attributes: kvs_to(&s.attributes),
        dropped_attributes_count: s.dropped_attributes_count,
        events: s
            .events
            .iter()
            .map(|e| pt::span::Event {
                time_unix_nano: e.time_unix_nano,
                name: e.name.clone(),
                attributes: kvs_to(&e.attributes),
                dropped_attributes_count: e.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: s.dropped_events_count,
        links: s
            .links
            .iter()
            .map(|l| pt::span::Link {
                trace_id: l.trace_id.as_bytes().to_vec(),
                span_id: l.span_id.as_bytes().to_vec(),
                trace_state: l.trace_state.clone(),
                attributes: kvs_to(&l.attributes),
                dropped_attributes_count: l.dropped_attributes_count,
                flags: l.flags,
            })
            .collect(),
        dropped_links_count: s.dropped_links_count,
        status,
    }
}

fn resource_from(r: pr::Resource) -> Resource {
    Resource {
        attributes: kvs_from(r.attributes),
        dropped_attributes_count: r.dropped_attributes_count,
    }
}

fn scope_from(s: pc::InstrumentationScope) -> Scope {
    Scope {
        name: s.name,
        version: s.version,
        attributes: kvs_from(s.attributes),
        dropped_attributes_count: s.dropped_attributes_count,
    }
}

pub(crate) fn kvs_from(kvs: Vec<pc::KeyValue>) -> Vec<KeyValue> {
    kvs.into_iter()
        .map(|kv| KeyValue {
            key: kv.key,
            value: value_from(kv.value),
        })
        .collect()
}

pub(crate) fn kvs_to(kvs: &[KeyValue]) -> Vec<pc::KeyValue> {
    kvs.iter()
        .map(|kv| pc::KeyValue {
            key: kv.key.clone(),
            value: Some(value_to(&kv.value)),
            key_strindex: 0,
        })
        .collect()
}

/// An AnyValue with nothing set (or a profiles-only string-table index) reads as an empty string.
fn value_from(v: Option<pc::AnyValue>) -> AnyValue {
    use pc::any_value::Value as V;
    match v.and_then(|v| v.value) {
        Some(V::StringValue(s)) => AnyValue::String(s),
        Some(V::BoolValue(b)) => AnyValue::Bool(b),
        Some(V::IntValue(i)) => AnyValue::Int(i),
        Some(V::DoubleValue(d)) => AnyValue::Double(d),
        Some(V::BytesValue(b)) => AnyValue::Bytes(b),
        Some(V::ArrayValue(a)) => {
            AnyValue::Array(a.values.into_iter().map(|v| value_from(Some(v))).collect())
        }
        Some(V::KvlistValue(l)) => AnyValue::KvList(kvs_from(l.values)),
        Some(V::StringValueStrindex(_)) | None => AnyValue::String(String::new()),
    }
}

fn value_to(v: &AnyValue) -> pc::AnyValue {
    use pc::any_value::Value as V;
    let value = match v {
        AnyValue::String(s) => V::StringValue(s.clone()),
        AnyValue::Bool(b) => V::BoolValue(*b),
        AnyValue::Int(i) => V::IntValue(*i),
        AnyValue::Double(d) => V::DoubleValue(*d),
        AnyValue::Bytes(b) => V::BytesValue(b.clone()),
        AnyValue::Array(items) => V::ArrayValue(pc::ArrayValue {
            values: items.iter().map(value_to).collect(),
        }),
        AnyValue::KvList(kvs) => V::KvlistValue(pc::KeyValueList {
            values: kvs_to(kvs),
        }),
    };
    pc::AnyValue { value: Some(value) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::rich_batch;

    fn one_span_request(span: pt::Span) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![pt::ResourceSpans {
                scope_spans: vec![pt::ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn valid_span() -> pt::Span {
        pt::Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "ok".into(),
            ..Default::default()
        }
    }

    #[test]
    fn model_round_trips_through_request() {
        let batch = rich_batch();
        let decoded = from_request(to_request(&batch));
        assert_eq!(decoded.rejected_spans, 0);
        assert_eq!(decoded.error_message, "");
        assert_eq!(decoded.batch, batch);
    }

    #[test]
    fn request_fields_land_where_expected() {
        let req = to_request(&rich_batch());
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            hex::encode(&span.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(
            span.parent_span_id.is_empty(),
            "root has empty parent bytes"
        );
        assert_eq!(span.kind, 2);
        assert_eq!(span.status.as_ref().map(|s| s.code), Some(2));
        let child = &req.resource_spans[0].scope_spans[0].spans[1];
        assert_eq!(child.parent_span_id, span.span_id);
        let plain = &req.resource_spans[1].scope_spans[0].spans[0];
        assert_eq!(plain.status, None, "default status is left unset");
        assert_eq!(
            plain.trace_id.len(),
            16,
            "64-bit ids are written as 16 bytes"
        );
    }

    #[test]
    fn zero_parent_means_root_and_unknown_kind_is_unspecified() {
        let mut s = valid_span();
        s.parent_span_id = vec![0; 8];
        s.kind = 42;
        let d = from_request(one_span_request(s));
        assert_eq!(d.rejected_spans, 0);
        let span = &d.batch.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.parent_span_id, None);
        assert_eq!(span.kind, SpanKind::Unspecified);
    }

    #[test]
    fn empty_any_value_reads_as_empty_string() {
        let mut s = valid_span();
        s.attributes = vec![
            pc::KeyValue {
                key: "none".into(),
                value: None,
                key_strindex: 0,
            },
            pc::KeyValue {
                key: "unset".into(),
                value: Some(pc::AnyValue { value: None }),
                key_strindex: 0,
            },
        ];
        let d = from_request(one_span_request(s));
        let span = &d.batch.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            span.attribute("none"),
            Some(&AnyValue::String(String::new()))
        );
        assert_eq!(
            span.attribute("unset"),
            Some(&AnyValue::String(String::new()))
        );
    }

    #[test]
    fn invalid_ids_are_rejected_with_their_path() {
        let mut short = valid_span();
        short.trace_id = vec![1; 5];
        let mut eight = valid_span();
        eight.trace_id = vec![1; 8];
        let mut zero = valid_span();
        zero.span_id = vec![0; 8];
        let mut bad_parent = valid_span();
        bad_parent.parent_span_id = vec![3; 4];
        let req = ExportTraceServiceRequest {
            resource_spans: vec![pt::ResourceSpans {
                scope_spans: vec![
                    pt::ScopeSpans {
                        spans: vec![valid_span()],
                        ..Default::default()
                    },
                    pt::ScopeSpans {
                        spans: vec![valid_span(), short, eight, zero, bad_parent, valid_span()],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
        };
        let d = from_request(req);
        assert_eq!(d.rejected_spans, 4);
        assert_eq!(d.batch.span_count(), 3);
        let msg = &d.error_message;
        assert!(
            msg.contains(
                "resourceSpans[0].scopeSpans[1].spans[1].traceId: trace id must be 16 bytes, got 5"
            ),
            "{msg}"
        );
        assert!(
            msg.contains("spans[2].traceId: trace id must be 16 bytes, got 8"),
            "{msg}"
        );
        assert!(
            msg.contains("spans[3].spanId: span id is all zeros"),
            "{msg}"
        );
        assert!(
            msg.contains("spans[4].parentSpanId: span id must be 8"),
            "{msg}"
        );
    }

    #[test]
    fn many_rejections_are_summarised() {
        let spans = (0..9)
            .map(|_| pt::Span {
                trace_id: vec![],
                ..valid_span()
            })
            .collect();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![pt::ResourceSpans {
                scope_spans: vec![pt::ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let d = from_request(req);
        assert_eq!(d.rejected_spans, 9);
        assert!(d.error_message.starts_with("rejected 9 span(s): "));
        assert!(
            d.error_message.ends_with("; and 4 more"),
            "{}",
            d.error_message
        );
    }

    #[test]
    fn links_with_invalid_ids_are_dropped_and_counted() {
        let mut s = valid_span();
        s.dropped_links_count = 1;
        s.links = vec![
            pt::span::Link {
                trace_id: vec![9; 16],
                span_id: vec![8; 8],
                ..Default::default()
            },
            pt::span::Link {
                trace_id: vec![9; 3],
                span_id: vec![8; 8],
                ..Default::default()
            },
        ];
        let d = from_request(one_span_request(s));
        let span = &d.batch.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.links.len(), 1);
        assert_eq!(span.dropped_links_count, 2);
        assert_eq!(d.rejected_spans, 0);
    }
}
