//! Zipkin spans straight to OTLP protobuf bytes (`ExportTraceServiceRequest`), for a consumer
//! that needs only those (the collector's byte pipelines): the spans go through the same
//! mapping rules as for the model ([`mapping::map_span`]), but their strings stay borrowed from
//! the report and are copied once, into the output, instead of into a `TraceBatch` that would
//! be encoded and thrown away. The JSON reader pushes each span into the [`Writer`] as soon as
//! it is read, so no list of spans is built.
//!
//! The bytes are exactly `encode_protobuf(&to_batch(spans))`'s (the differential tests hold it
//! to that): resources and scopes grouped in first-seen order, attributes in mapping order, and
//! every field sized and written by the model encoder's own helpers. One pass: each span is
//! written as soon as it is mapped (into a scratch buffer the thread keeps, its length known
//! once written), then copied into the request under its resource and scope.

use std::net::Ipv4Addr;

use model::StatusCode;

use super::mapping::{self, Attr, MappedSpan, ResourceTags, ScopeTags, Value};
use super::span::ZipkinSpan;
use crate::otlp::encode::{
    len_field, put_bytes, put_event, put_fixed64, put_key, put_key_len, put_link, put_string,
    put_uint, put_varint, string_field, uint_field, varint_len, FIXED64, VARINT,
};

thread_local! {
    /// Spans are written here first, in report order, each as soon as it is mapped; the
    /// buffer is kept by the thread for the next report (up to [`SCRATCH_KEEP`]), so its pages
    /// are not taken fresh from the system (and zeroed) request after request.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The most scratch capacity a thread keeps between reports.
const SCRATCH_KEEP: usize = 16 << 20;

/// The report as an OTLP request, and how many spans it holds.
pub(crate) fn to_otlp(spans: Vec<ZipkinSpan<'_>>, parse_tags: bool) -> (Vec<u8>, usize) {
    with_writer(parse_tags, |w| spans.into_iter().for_each(|zs| w.push(zs)))
}

/// The request `fill` makes by pushing spans into a [`Writer`] (on this thread's scratch
/// buffer), and how many spans it holds. `parse_tags`: tags that read as numbers or booleans
/// become those ([`mapping::map_span`]).
pub(crate) fn with_writer<'a>(
    parse_tags: bool,
    fill: impl FnOnce(&mut Writer<'a, '_>),
) -> (Vec<u8>, usize) {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => {
            scratch.clear();
            let mut writer = Writer::new(&mut scratch, parse_tags);
            fill(&mut writer);
            let out = writer.finish();
            if scratch.capacity() > SCRATCH_KEEP {
                *scratch = Vec::new();
            }
            out
        }
        // Not reachable (nothing here calls back into it), but a fresh buffer is as good.
        Err(_) => {
            let mut scratch = Vec::new();
            let mut writer = Writer::new(&mut scratch, parse_tags);
            fill(&mut writer);
            writer.finish()
        }
    })
}

/// Writes an OTLP request from spans pushed one by one: each is mapped and written into the
/// scratch buffer at once, noting where it went under its resource and scope (grouped in
/// first-seen order, as `to_batch` groups them); [`Writer::finish`] writes the request around
/// the spans, in the order `encode_protobuf` writes a batch.
pub(crate) struct Writer<'a, 's> {
    scratch: &'s mut Vec<u8>,
    groups: Vec<Group<'a>>,
    count: usize,
    parse_tags: bool,
}

impl<'a, 's> Writer<'a, 's> {
    fn new(scratch: &'s mut Vec<u8>, parse_tags: bool) -> Self {
        Self {
            scratch,
            groups: Vec::new(),
            count: 0,
            parse_tags,
        }
    }

    /// Maps the span and writes it.
    pub(crate) fn push(&mut self, zs: ZipkinSpan<'a>) {
        self.count += 1;
        let m = mapping::map_span(zs, self.parse_tags);
        let groups = &mut self.groups;
        let g = match groups.iter().position(|g| g.resource == m.resource) {
            Some(g) => g,
            None => {
                groups.push(Group {
                    resource: m.resource,
                    scopes: Vec::new(),
                    len: 0,
                });
                groups.len() - 1
            }
        };
        let scopes = &mut groups[g].scopes;
        let s = match scopes.iter().position(|s| s.scope == m.scope) {
            Some(s) => s,
            None => {
                scopes.push(ScopeGroup {
                    scope: m.scope,
                    spans: Vec::new(),
                    len: 0,
                });
                scopes.len() - 1
            }
        };
        let at = self.scratch.len();
        put_span(self.scratch, &m.span);
        scopes[s].spans.push((at, self.scratch.len() - at));
    }

    /// The request, and how many spans it holds.
    fn finish(mut self) -> (Vec<u8>, usize) {
        // The length of every scope and resource message.
        let mut total = 0;
        for g in &mut self.groups {
            let mut rs_len = len_field(1, resource_len(&g.resource));
            for s in &mut g.scopes {
                s.len = len_field(1, scope_len(&s.scope))
                    + s.spans.iter().map(|&(_, n)| len_field(2, n)).sum::<usize>();
                rs_len += len_field(2, s.len);
            }
            g.len = rs_len;
            total += len_field(1, rs_len);
        }

        let mut out = Vec::with_capacity(total);
        for g in &self.groups {
            put_key_len(&mut out, 1, g.len);
            put_key_len(&mut out, 1, resource_len(&g.resource));
            for (k, v) in &g.resource {
                put_key_len(&mut out, 1, string_kv_len(k, v));
                put_string(&mut out, 1, k);
                put_key_len(&mut out, 2, len_field(1, v.len()));
                put_bytes(&mut out, 1, v.as_bytes());
            }
            for s in &g.scopes {
                put_key_len(&mut out, 2, s.len);
                put_key_len(&mut out, 1, scope_len(&s.scope));
                put_string(&mut out, 1, &s.scope.0);
                put_string(&mut out, 2, &s.scope.1);
                for &(at, n) in &s.spans {
                    put_bytes(&mut out, 2, &self.scratch[at..at + n]);
                }
            }
        }
        debug_assert_eq!(out.len(), total);
        (out, self.count)
    }
}

/// The spans of one resource: their scopes, and the `ResourceSpans` message's length.
struct Group<'a> {
    resource: ResourceTags<'a>,
    scopes: Vec<ScopeGroup<'a>>,
    len: usize,
}

/// The spans of one scope (where each was written in the scratch buffer, and its length), and
/// the `ScopeSpans` message's length.
struct ScopeGroup<'a> {
    scope: ScopeTags<'a>,
    spans: Vec<(usize, usize)>,
    len: usize,
}

fn string_kv_len(k: &str, v: &str) -> usize {
    string_field(1, k) + len_field(2, len_field(1, v.len()))
}

fn resource_len(tags: &ResourceTags<'_>) -> usize {
    tags.iter()
        .map(|(k, v)| len_field(1, string_kv_len(k, v)))
        .sum()
}

fn scope_len((name, version): &ScopeTags<'_>) -> usize {
    string_field(1, name) + string_field(2, version)
}

fn ipv4_text_len(ip: Ipv4Addr) -> usize {
    3 + ip
        .octets()
        .iter()
        .map(|&o| match o {
            0..=9 => 1,
            10..=99 => 2,
            _ => 3,
        })
        .sum::<usize>()
}

/// An IPv4 address's dotted-decimal text, as `Ipv4Addr`'s `Display` writes it.
fn put_ipv4_text(out: &mut Vec<u8>, ip: Ipv4Addr) {
    for (i, o) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if o >= 100 {
            out.push(b'0' + o / 100);
        }
        if o >= 10 {
            out.push(b'0' + o / 10 % 10);
        }
        out.push(b'0' + o % 10);
    }
}

/// The length of the `AnyValue` message a value becomes.
fn any_len(v: &Value<'_>) -> usize {
    match v {
        Value::Str(s) => len_field(1, s.len()),
        Value::Ipv4(ip) => len_field(1, ipv4_text_len(*ip)),
        Value::Bool(_) => 2,
        Value::Int(i) => 1 + varint_len(*i as u64),
        Value::Double(_) => 9,
    }
}

fn attr_len(a: &Attr<'_>) -> usize {
    string_field(1, &a.key) + len_field(2, any_len(&a.value))
}

fn status_len(code: StatusCode, message: &str) -> usize {
    string_field(2, message) + uint_field(3, code as u64)
}

fn put_attr(out: &mut Vec<u8>, a: &Attr<'_>) {
    put_key_len(out, 9, attr_len(a));
    put_string(out, 1, &a.key);
    put_key_len(out, 2, any_len(&a.value));
    match &a.value {
        Value::Str(s) => put_bytes(out, 1, s.as_bytes()),
        Value::Ipv4(ip) => {
            put_key_len(out, 1, ipv4_text_len(*ip));
            put_ipv4_text(out, *ip);
        }
        Value::Bool(b) => {
            put_key(out, 2, VARINT);
            out.push(u8::from(*b));
        }
        Value::Int(i) => {
            put_key(out, 3, VARINT);
            put_varint(out, *i as u64);
        }
        Value::Double(d) => {
            put_key(out, 4, FIXED64);
            out.extend_from_slice(&d.to_bits().to_le_bytes());
        }
    }
}

/// A span's fields in tag order, as `encode_protobuf` writes a model span (the fields a Zipkin
/// span cannot set, dropped counts and flags, are zero and so left out).
fn put_span(out: &mut Vec<u8>, s: &MappedSpan<'_>) {
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
    for a in &s.attributes {
        put_attr(out, a);
    }
    for e in &s.events {
        put_event(out, e);
    }
    for l in &s.links {
        put_link(out, l);
    }
    if s.status_code != StatusCode::Unset || !s.status_message.is_empty() {
        put_key_len(out, 15, status_len(s.status_code, &s.status_message));
        put_string(out, 2, &s.status_message);
        put_uint(out, 3, s.status_code as u64);
    }
}

/// The text of an IPv4 address written straight into the output must be what the model holds.
#[cfg(test)]
pub(crate) fn ipv4_text(ip: Ipv4Addr) -> String {
    let mut out = Vec::new();
    put_ipv4_text(&mut out, ip);
    assert_eq!(out.len(), ipv4_text_len(ip));
    String::from_utf8(out).unwrap_or_default()
}
