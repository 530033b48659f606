//! The model straight to OTLP protobuf bytes (`ExportTraceServiceRequest`), without building
//! `opentelemetry-proto` messages first: no string is copied except into the output, nothing
//! is allocated but the output and one length per span. The bytes are exactly those prost
//! writes for [`super::to_request`] (tests compare them), so readers see no difference.
//!
//! Two passes: the first sizes every span once (a message's length precedes it), the second
//! writes. Fields are written in tag order and, as proto3 does, left out when they hold their
//! default value (except inside `AnyValue`'s oneof, where the chosen field is always written).

use model::{AnyValue, Event, KeyValue, Link, Span, Status, TraceBatch};

pub(crate) const VARINT: u32 = 0;
pub(crate) const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// Encodes the batch as an OTLP `ExportTraceServiceRequest`.
pub fn encode_protobuf(batch: &TraceBatch) -> Vec<u8> {
    // Pass 1: the length of every span (in order), scope and resource message.
    let mut span_lens = Vec::with_capacity(batch.span_count());
    let mut scope_lens = Vec::new();
    let mut resource_lens = Vec::with_capacity(batch.resource_spans.len());
    let mut total = 0;
    for rs in &batch.resource_spans {
        let mut rs_len = len_field(
            1,
            resource_len(
                &rs.resource.attributes,
                rs.resource.dropped_attributes_count,
            ),
        ) + string_field(3, &rs.schema_url);
        for ss in &rs.scope_spans {
            let mut ss_len = len_field(1, scope_len(&ss.scope)) + string_field(3, &ss.schema_url);
            for span in &ss.spans {
                let n = span_len(span);
                span_lens.push(n);
                ss_len += len_field(2, n);
            }
            scope_lens.push(ss_len);
            rs_len += len_field(2, ss_len);
        }
        resource_lens.push(rs_len);
        total += len_field(1, rs_len);
    }

    // Pass 2: write.
    let mut out = Vec::with_capacity(total);
    let mut span_lens = span_lens.into_iter();
    let mut scope_lens = scope_lens.into_iter();
    for (rs, rs_len) in batch.resource_spans.iter().zip(resource_lens) {
        put_key_len(&mut out, 1, rs_len);
        let r = &rs.resource;
        put_key_len(
            &mut out,
            1,
            resource_len(&r.attributes, r.dropped_attributes_count),
        );
        put_kvs(&mut out, 1, &r.attributes);
        put_uint(&mut out, 2, r.dropped_attributes_count.into());
        for ss in &rs.scope_spans {
            put_key_len(&mut out, 2, scope_lens.next().unwrap_or(0));
            let s = &ss.scope;
            put_key_len(&mut out, 1, scope_len(s));
            put_string(&mut out, 1, &s.name);
            put_string(&mut out, 2, &s.version);
            put_kvs(&mut out, 3, &s.attributes);
            put_uint(&mut out, 4, s.dropped_attributes_count.into());
            for span in &ss.spans {
                put_key_len(&mut out, 2, span_lens.next().unwrap_or(0));
                put_span(&mut out, span);
            }
            put_string(&mut out, 3, &ss.schema_url);
        }
        put_string(&mut out, 3, &rs.schema_url);
    }
    out
}

pub(crate) fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn key_len(field: u32) -> usize {
    varint_len(u64::from(field << 3))
}

pub(crate) fn len_field(field: u32, n: usize) -> usize {
    key_len(field) + varint_len(n as u64) + n
}

pub(crate) fn string_field(field: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        len_field(field, s.len())
    }
}

pub(crate) fn uint_field(field: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(field) + varint_len(v)
    }
}

fn fixed64_field(field: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(field) + 8
    }
}

fn kvs_len(field: u32, kvs: &[KeyValue]) -> usize {
    kvs.iter().map(|kv| len_field(field, kv_len(kv))).sum()
}

fn kv_len(kv: &KeyValue) -> usize {
    string_field(1, &kv.key) + len_field(2, any_len(&kv.value))
}

fn any_len(v: &AnyValue) -> usize {
    match v {
        AnyValue::String(s) => len_field(1, s.len()),
        AnyValue::Bool(_) => 2,
        AnyValue::Int(i) => 1 + varint_len(*i as u64),
        AnyValue::Double(_) => 9,
        AnyValue::Bytes(b) => len_field(7, b.len()),
        AnyValue::Array(items) => len_field(
            5,
            items.iter().map(|item| len_field(1, any_len(item))).sum(),
        ),
        AnyValue::KvList(kvs) => len_field(6, kvs_len(1, kvs)),
    }
}

fn resource_len(attributes: &[KeyValue], dropped: u32) -> usize {
    kvs_len(1, attributes) + uint_field(2, dropped.into())
}

fn scope_len(s: &model::Scope) -> usize {
    string_field(1, &s.name)
        + string_field(2, &s.version)
        + kvs_len(3, &s.attributes)
        + uint_field(4, s.dropped_attributes_count.into())
}

fn status_len(s: &Status) -> usize {
    string_field(2, &s.message) + uint_field(3, s.code as u64)
}

fn event_len(e: &Event) -> usize {
    fixed64_field(1, e.time_unix_nano)
        + string_field(2, &e.name)
        + kvs_len(3, &e.attributes)
        + uint_field(4, e.dropped_attributes_count.into())
}

fn link_len(l: &Link) -> usize {
    len_field(1, 16)
        + len_field(2, 8)
        + string_field(3, &l.trace_state)
        + kvs_len(4, &l.attributes)
        + uint_field(5, l.dropped_attributes_count.into())
        + if l.flags == 0 { 0 } else { key_len(6) + 4 }
}

fn span_len(s: &Span) -> usize {
    len_field(1, 16)
        + len_field(2, 8)
        + string_field(3, &s.trace_state)
        + if s.parent_span_id.is_some() {
            len_field(4, 8)
        } else {
            0
        }
        + string_field(5, &s.name)
        + uint_field(6, s.kind as u64)
        + fixed64_field(7, s.start_unix_nano)
        + fixed64_field(8, s.end_unix_nano)
        + kvs_len(9, &s.attributes)
        + uint_field(10, s.dropped_attributes_count.into())
        + s.events
            .iter()
            .map(|e| len_field(11, event_len(e)))
            .sum::<usize>()
        + uint_field(12, s.dropped_events_count.into())
        + s.links
            .iter()
            .map(|l| len_field(13, link_len(l)))
            .sum::<usize>()
        + uint_field(14, s.dropped_links_count.into())
        + if s.status == Status::default() {
            0
        } else {
            len_field(15, status_len(&s.status))
        }
        + if s.flags == 0 { 0 } else { key_len(16) + 4 }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    put_varint(out, u64::from(field << 3 | wire_type));
}

pub(crate) fn put_key_len(out: &mut Vec<u8>, field: u32, n: usize) {
    put_key(out, field, LEN);
    put_varint(out, n as u64);
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_key_len(out, field, b.len());
    out.extend_from_slice(b);
}

pub(crate) fn put_string(out: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        put_bytes(out, field, s.as_bytes());
    }
}

pub(crate) fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_key(out, field, VARINT);
        put_varint(out, v);
    }
}

pub(crate) fn put_fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_key(out, field, FIXED64);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    if v != 0 {
        put_key(out, field, FIXED32);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_kvs(out: &mut Vec<u8>, field: u32, kvs: &[KeyValue]) {
    for kv in kvs {
        put_key_len(out, field, kv_len(kv));
        put_kv(out, kv);
    }
}

fn put_kv(out: &mut Vec<u8>, kv: &KeyValue) {
    put_string(out, 1, &kv.key);
    put_key_len(out, 2, any_len(&kv.value));
    put_any(out, &kv.value);
}

fn put_any(out: &mut Vec<u8>, v: &AnyValue) {
    match v {
        AnyValue::String(s) => put_bytes(out, 1, s.as_bytes()),
        AnyValue::Bool(b) => {
            put_key(out, 2, VARINT);
            out.push(u8::from(*b));
        }
        AnyValue::Int(i) => {
            put_key(out, 3, VARINT);
            put_varint(out, *i as u64);
        }
        AnyValue::Double(d) => {
            put_key(out, 4, FIXED64);
            out.extend_from_slice(&d.to_bits().to_le_bytes());
        }
        AnyValue::Bytes(b) => put_bytes(out, 7, b),
        AnyValue::Array(items) => {
            put_key_len(
                out,
                5,
                items.iter().map(|item| len_field(1, any_len(item))).sum(),
            );
            for item in items {
                put_key_len(out, 1, any_len(item));
                put_any(out, item);
            }
        }
        AnyValue::KvList(kvs) => {
            put_key_len(out, 6, kvs_len(1, kvs));
            put_kvs(out, 1, kvs);
        }
    }
}

fn put_span(out: &mut Vec<u8>, s: &Span) {
    put_bytes(out, 1, s.trace_id.as_bytes());
    put_bytes(out, 2, s.span_id.as_bytes());
    put_string(out, 3, &s.trace_state);
    if let Some(p) = &s.parent_span_id {
        put_bytes(out, 4, p.as_bytes());
    }
    put_string(out, 5, &s.name);
    put_uint(out, 6, s.kind as u64);
    put_fixed64(out, 7, s.start_unix_nano);
    put_fixed64(out, 8, s.end_unix_nano);
    put_kvs(out, 9, &s.attributes);
    put_uint(out, 10, s.dropped_attributes_count.into());
    for e in &s.events {
        put_key_len(out, 11, event_len(e));
        put_fixed64(out, 1, e.time_unix_nano);
        put_string(out, 2, &e.name);
        put_kvs(out, 3, &e.attributes);
        put_uint(out, 4, e.dropped_attributes_count.into());
    }
    put_uint(out, 12, s.dropped_events_count.into());
    for l in &s.links {
        put_key_len(out, 13, link_len(l));
        put_bytes(out, 1, l.trace_id.as_bytes());
        put_bytes(out, 2, l.span_id.as_bytes());
        put_string(out, 3, &l.trace_state);
        put_kvs(out, 4, &l.attributes);
        put_uint(out, 5, l.dropped_attributes_count.into());
        put_fixed32(out, 6, l.flags);
    }
    put_uint(out, 14, s.dropped_links_count.into());
    if s.status != Status::default() {
        put_key_len(out, 15, status_len(&s.status));
        put_string(out, 2, &s.status.message);
        put_uint(out, 3, s.status.code as u64);
    }
    put_fixed32(out, 16, s.flags);
}

/// Writes an event as span field 11 (what [`put_span`] writes for each of a span's events), for
/// encoders of other span sources (`zipkin::otlp`).
pub(crate) fn put_event(out: &mut Vec<u8>, e: &Event) {
    put_key_len(out, 11, event_len(e));
    put_fixed64(out, 1, e.time_unix_nano);
    put_string(out, 2, &e.name);
    put_kvs(out, 3, &e.attributes);
    put_uint(out, 4, e.dropped_attributes_count.into());
}

/// Writes a link as span field 13 (what [`put_span`] writes for each of a span's links).
pub(crate) fn put_link(out: &mut Vec<u8>, l: &Link) {
    put_key_len(out, 13, link_len(l));
    put_bytes(out, 1, l.trace_id.as_bytes());
    put_bytes(out, 2, l.span_id.as_bytes());
    put_string(out, 3, &l.trace_state);
    put_kvs(out, 4, &l.attributes);
    put_uint(out, 5, l.dropped_attributes_count.into());
    put_fixed32(out, 6, l.flags);
}

#[cfg(test)]
mod tests {
    use model::{
        Resource, ResourceSpans, Scope, ScopeSpans, SpanId, SpanKind, StatusCode, TraceId,
    };
    use prost::Message;

    use super::*;
    use crate::fixtures::rich_batch;

    fn same_as_prost(batch: &TraceBatch) {
        let want = super::super::to_request(batch).encode_to_vec();
        let got = encode_protobuf(batch);
        assert_eq!(got, want, "{batch:#?}");
    }

    #[test]
    fn writes_what_prost_writes() {
        same_as_prost(&TraceBatch::default());
        same_as_prost(&rich_batch());
        // Empty resource and scope messages are still written (they are `Some` in the request).
        same_as_prost(&TraceBatch {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans::default()],
                ..Default::default()
            }],
        });
    }

    /// xorshift32, for reproducible generated batches.
    fn next(x: &mut u32) -> u32 {
        *x ^= *x << 13;
        *x ^= *x >> 17;
        *x ^= *x << 5;
        *x
    }

    fn text(x: &mut u32) -> String {
        let n = next(x) % 4;
        ["", "a", "héllo", &"x".repeat(200)][n as usize].to_owned()
    }

    fn value(x: &mut u32, depth: u32) -> AnyValue {
        match next(x) % if depth > 2 { 5 } else { 7 } {
            0 => AnyValue::String(text(x)),
            1 => AnyValue::Bool(next(x).is_multiple_of(2)),
            2 => AnyValue::Int([0, 1, -1, i64::MAX, i64::MIN, 300][next(x) as usize % 6]),
            3 => AnyValue::Double([0.0, -0.0, 1.5, f64::MAX][next(x) as usize % 4]),
            4 => AnyValue::Bytes(text(x).into_bytes()),
            5 => AnyValue::Array((0..next(x) % 3).map(|_| value(x, depth + 1)).collect()),
            _ => AnyValue::KvList(attributes(x, depth + 1)),
        }
    }

    fn attributes(x: &mut u32, depth: u32) -> Vec<KeyValue> {
        (0..next(x) % 4)
            .map(|_| KeyValue::new(text(x), value(x, depth)))
            .collect()
    }

    fn count(x: &mut u32) -> u32 {
        [0, 1, 127, 128, u32::MAX][next(x) as usize % 5]
    }

    fn time(x: &mut u32) -> u64 {
        [0, 1, 1_700_000_000_000_000_000, u64::MAX][next(x) as usize % 4]
    }

    fn span(x: &mut u32) -> Span {
        let kinds = [
            SpanKind::Unspecified,
            SpanKind::Internal,
            SpanKind::Server,
            SpanKind::Client,
            SpanKind::Producer,
            SpanKind::Consumer,
        ];
        let codes = [StatusCode::Unset, StatusCode::Ok, StatusCode::Error];
        Span {
            trace_id: TraceId::from_halves(u64::from(next(x)), 1),
            span_id: SpanId::from_u64(u64::from(next(x)) + 1),
            parent_span_id: (next(x).is_multiple_of(2)).then(|| SpanId::from_u64(7)),
            trace_state: text(x),
            flags: count(x),
            name: text(x),
            kind: kinds[next(x) as usize % kinds.len()],
            start_unix_nano: time(x),
            end_unix_nano: time(x),
            attributes: attributes(x, 0),
            dropped_attributes_count: count(x),
            events: (0..next(x) % 3)
                .map(|_| Event {
                    time_unix_nano: time(x),
                    name: text(x),
                    attributes: attributes(x, 0),
                    dropped_attributes_count: count(x),
                })
                .collect(),
            dropped_events_count: count(x),
            links: (0..next(x) % 3)
                .map(|_| Link {
                    trace_id: TraceId::from_halves(3, u64::from(next(x))),
                    span_id: SpanId::from_u64(9),
                    trace_state: text(x),
                    attributes: attributes(x, 0),
                    dropped_attributes_count: count(x),
                    flags: count(x),
                })
                .collect(),
            dropped_links_count: count(x),
            status: Status {
                code: codes[next(x) as usize % codes.len()],
                message: text(x),
            },
        }
    }

    #[test]
    fn writes_what_prost_writes_for_generated_batches() {
        let mut x = 0x2545_f491;
        for _ in 0..500 {
            let batch = TraceBatch {
                resource_spans: (0..next(&mut x) % 3)
                    .map(|_| ResourceSpans {
                        resource: Resource {
                            attributes: attributes(&mut x, 0),
                            dropped_attributes_count: count(&mut x),
                        },
                        schema_url: text(&mut x),
                        scope_spans: (0..next(&mut x) % 3)
                            .map(|_| ScopeSpans {
                                scope: Scope {
                                    name: text(&mut x),
                                    version: text(&mut x),
                                    attributes: attributes(&mut x, 0),
                                    dropped_attributes_count: count(&mut x),
                                },
                                schema_url: text(&mut x),
                                spans: (0..next(&mut x) % 4).map(|_| span(&mut x)).collect(),
                            })
                            .collect(),
                    })
                    .collect(),
            };
            same_as_prost(&batch);
        }
    }

    #[test]
    fn varint_lengths() {
        for (v, n) in [
            (0, 1),
            (1, 1),
            (127, 1),
            (128, 2),
            (16383, 2),
            (16384, 3),
            (u64::MAX, 10),
        ] {
            assert_eq!(varint_len(v), n, "{v}");
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), n, "{v}");
        }
    }
}
