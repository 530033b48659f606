//! Zipkin v2 JSON written straight from the proxy's recorded spans, for the reporter.
//!
//! The general path (`ProxySpan` → `model::Span` → `wire::zipkin::encode_json`, which maps each
//! span onto a Zipkin span with a sorted map of copied tags) allocated about 60 times per span
//! and was most of the reporter's CPU (`perf`, see BENCHMARKS.md). The proxy's spans are simple:
//! static tag names, small values, no events or links, a client or server kind. So this writer
//! sorts borrowed `(name, value)` pairs in one list per batch and writes the JSON from them, with
//! the same members, order, escaping and tag rules as the general path: the bytes are identical
//! (`tests` compares both on every kind of span the proxy records).
//!
//! A span the general mapping would treat specially (a custom tag named like an endpoint field,
//! `zipkin.shared`, ...; another kind than client or server) is written the general way, so the
//! shortcut never changes what a collector receives.

use model::{Resource, SpanId, SpanKind, StatusCode, TraceId};

use crate::span::{ProxySpan, SpanTags, TagValue};

/// Tag names the Zipkin mapping turns into something else than a tag (`wire::zipkin::mapping`).
const SPECIAL: &[&str] = &[
    "net.host.ip",
    "net.host.port",
    "peer.service",
    "net.peer.ip",
    "net.peer.port",
    wire::zipkin::SHARED,
    wire::zipkin::START_TIME_ABSENT,
];

const SCOPE_NAME: &str = "otel.scope.name";
const LIBRARY_NAME: &str = "otel.library.name";
const SCOPE_VERSION: &str = "otel.scope.version";
const LIBRARY_VERSION: &str = "otel.library.version";
const TRACE_STATE: &str = "w3c.tracestate";
const ERROR: &str = "error";
const STATUS_CODE: &str = "otel.status_code";
const STATUS_DESCRIPTION: &str = "otel.status_description";

/// Writes batches of the proxy's spans as a Zipkin v2 JSON list.
pub struct JsonWriter {
    tags: SpanTags,
    /// The batch's resource: `service.name` becomes the local endpoint, the rest tags.
    resource: Resource,
    scope_name: &'static str,
    scope_version: &'static str,
}

/// A tag value as written (always as a JSON string).
#[derive(Clone, Copy)]
enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
}

impl<'a> From<&'a TagValue> for Value<'a> {
    fn from(v: &'a TagValue) -> Self {
        match v {
            TagValue::Static(s) => Value::Str(s),
            TagValue::Text(s) => Value::Str(s),
            TagValue::Shared(s) => Value::Str(s),
            TagValue::Int(i) => Value::Int(*i),
            TagValue::Bool(b) => Value::Bool(*b),
        }
    }
}

impl JsonWriter {
    pub fn new(
        tags: SpanTags,
        resource: Resource,
        scope_name: &'static str,
        scope_version: &'static str,
    ) -> Self {
        JsonWriter {
            tags,
            resource,
            scope_name,
            scope_version,
        }
    }

    /// The spans as one JSON list, as `wire::zipkin::encode_json` writes them.
    pub fn write(&self, spans: &[ProxySpan]) -> Vec<u8> {
        let mut out = Vec::with_capacity(spans.len() * 900 + 2);
        let mut tags: Vec<(&str, Value<'_>)> = Vec::new();
        out.push(b'[');
        for (i, span) in spans.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if self.direct(span) {
                self.write_span(span, &mut tags, &mut out);
            } else {
                self.write_general(span, &mut out);
            }
        }
        out.push(b']');
        out
    }

    /// Whether the span is one this writer handles itself (else: the general path).
    fn direct(&self, span: &ProxySpan) -> bool {
        matches!(span.kind, SpanKind::Client | SpanKind::Server)
            && !span.tags.iter().any(|(k, _)| SPECIAL.contains(&k.as_ref()))
            && !self
                .resource
                .attributes
                .iter()
                .any(|kv| SPECIAL.contains(&kv.key.as_str()) || !is_text(&kv.value))
    }

    fn write_general(&self, span: &ProxySpan, out: &mut Vec<u8>) {
        let batch = crate::report::to_batch(
            &self.resource,
            self.scope_name,
            self.scope_version,
            vec![span.clone().into_model(&self.tags)],
        );
        let list = wire::zipkin::encode_json(&batch);
        // `[{...}]`: the one span without the list's brackets.
        if let Some(inner) = list.get(1..list.len().saturating_sub(1)) {
            out.extend_from_slice(inner);
        }
    }

    fn write_span<'a>(
        &'a self,
        span: &'a ProxySpan,
        tags: &mut Vec<(&'a str, Value<'a>)>,
        out: &mut Vec<u8>,
    ) {
        // The tags in the order the general mapping inserts them into its map; a later one with
        // the same name replaces an earlier one.
        tags.clear();
        let mut service_name = None;
        for kv in &self.resource.attributes {
            let text = match &kv.value {
                model::AnyValue::String(s) => s.as_str(),
                _ => "",
            };
            if kv.key == model::SERVICE_NAME && service_name.is_none_or(str::is_empty) {
                service_name = Some(text);
            } else {
                tags.push((kv.key.as_str(), Value::Str(text)));
            }
        }
        if !self.scope_name.is_empty() {
            tags.push((SCOPE_NAME, Value::Str(self.scope_name)));
            tags.push((LIBRARY_NAME, Value::Str(self.scope_name)));
        }
        if !self.scope_version.is_empty() {
            tags.push((SCOPE_VERSION, Value::Str(self.scope_version)));
            tags.push((LIBRARY_VERSION, Value::Str(self.scope_version)));
        }
        self.tags.each(|k, v| tags.push((k, Value::Str(v))));
        tags.extend(span.tags.iter().map(|(k, v)| (k.as_ref(), Value::from(v))));
        if !span.trace_state.is_empty() {
            tags.push((TRACE_STATE, Value::Str(&span.trace_state)));
        }
        let failed = span.status.code == StatusCode::Error;
        if failed {
            tags.push((ERROR, Value::Str("true")));
        } else {
            tags.retain(|(k, _)| *k != ERROR);
        }
        if span.status.code != StatusCode::Unset {
            let code = if failed {
                "STATUS_CODE_ERROR"
            } else {
                "STATUS_CODE_OK"
            };
            tags.push((STATUS_CODE, Value::Str(code)));
            if !span.status.message.is_empty() {
                tags.push((STATUS_DESCRIPTION, Value::Str(&span.status.message)));
            }
        }
        // Sorted by name (stable: equal names keep their order), the last of equal names kept.
        tags.sort_by(|a, b| a.0.cmp(b.0));
        tags.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                *kept = *later;
            }
            same
        });

        // Members in key order, as the general writer has them.
        out.push(b'{');
        if span.end_unix_nano != 0 {
            let ns = span.end_unix_nano.saturating_sub(span.start_unix_nano);
            let us = if ns > 0 && ns < 1000 { 1 } else { ns / 1000 };
            out.extend_from_slice(b"\"duration\":");
            write_int(out, us);
            out.push(b',');
        }
        out.extend_from_slice(b"\"id\":\"");
        write_span_id(out, span.span_id);
        out.extend_from_slice(b"\",\"kind\":");
        out.extend_from_slice(if span.kind == SpanKind::Client {
            b"\"CLIENT\""
        } else {
            b"\"SERVER\""
        });
        if let Some(name) = service_name.filter(|s| !s.is_empty()) {
            out.extend_from_slice(b",\"localEndpoint\":{\"serviceName\":");
            write_str(out, name);
            out.push(b'}');
        }
        if !span.name.is_empty() {
            out.extend_from_slice(b",\"name\":");
            write_str(out, &span.name);
        }
        if let Some(parent) = span.parent_span_id {
            out.extend_from_slice(b",\"parentId\":\"");
            write_span_id(out, parent);
            out.push(b'"');
        }
        if !tags.is_empty() {
            out.extend_from_slice(b",\"tags\":{");
            for (i, (k, v)) in tags.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                match *v {
                    Value::Str(s) => write_str(out, s),
                    Value::Int(n) => {
                        out.push(b'"');
                        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                        out.push(b'"');
                    }
                    Value::Bool(b) => {
                        out.extend_from_slice(if b { b"\"true\"" } else { b"\"false\"" })
                    }
                }
            }
            out.push(b'}');
        }
        if span.start_unix_nano != 0 {
            out.extend_from_slice(b",\"timestamp\":");
            write_int(out, span.start_unix_nano / 1000);
        }
        out.extend_from_slice(b",\"traceId\":\"");
        write_trace_id(out, span.trace_id);
        out.extend_from_slice(b"\"}");
    }
}

/// Resource values the direct path writes as they are (the general one would format others).
fn is_text(v: &model::AnyValue) -> bool {
    matches!(v, model::AnyValue::String(_))
}

fn write_int(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// What each byte becomes in a JSON string: 0 as it is, `u` as `\u00XX`, else `\` and this.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// A JSON string, escaped as `serde_json` escapes it: `"` and `\`, control characters as
/// `\n`-style escapes where JSON has one and `\u00XX` otherwise, everything else as it is.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPE[usize::from(b)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if escape == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
        } else {
            out.push(b'\\');
            out.push(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
}

fn write_span_id(out: &mut Vec<u8>, id: SpanId) {
    write_hex(out, id.as_bytes());
}

/// 16 hex digits when the high half is zero (a 64-bit trace id), else 32, as Zipkin writes it.
fn write_trace_id(out: &mut Vec<u8>, id: TraceId) {
    let bytes = id.as_bytes();
    write_hex(out, if id.is_64bit() { &bytes[8..] } else { bytes });
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use model::{KeyValue, Status};

    use super::*;

    fn writer(node_id: &str, zone: &str, service_name: &str) -> JsonWriter {
        let resource = Resource {
            attributes: [
                Some(KeyValue::new(model::SERVICE_NAME, service_name)),
                (!zone.is_empty()).then(|| KeyValue::new("zone", zone)),
            ]
            .into_iter()
            .flatten()
            .collect(),
            dropped_attributes_count: 0,
        };
        JsonWriter::new(
            SpanTags::for_test(node_id, zone),
            resource,
            "meshtrace-proxy",
            "1.2.3",
        )
    }

    /// What the general path writes for the same spans.
    fn general(w: &JsonWriter, spans: &[ProxySpan]) -> String {
        let model = spans
            .iter()
            .map(|s| s.clone().into_model(&w.tags))
            .collect();
        let batch = crate::report::to_batch(&w.resource, w.scope_name, w.scope_version, model);
        String::from_utf8(wire::zipkin::encode_json(&batch)).unwrap()
    }

    fn span(tags: Vec<(Cow<'static, str>, TagValue)>) -> ProxySpan {
        ProxySpan {
            trace_id: TraceId::from_halves(0, 0x463a_c35c_9f64_13ad),
            span_id: SpanId::from_u64(0xa2fb_4a1d_1a96_d312),
            parent_span_id: Some(SpanId::from_u64(0x0020_0000_0000_0001)),
            trace_state: String::new(),
            name: "GET /x".into(),
            kind: SpanKind::Server,
            start_unix_nano: 1_700_000_000_123_456_789,
            end_unix_nano: 1_700_000_000_124_000_000,
            tags,
            status: Status::default(),
        }
    }

    fn proxy_tags() -> Vec<(Cow<'static, str>, TagValue)> {
        vec![
            (
                "guid:x-request-id".into(),
                TagValue::Text("9b1c-…-ü".into()),
            ),
            (
                "http.url".into(),
                TagValue::Text("http://svc:80/a?b=\"c\"".into()),
            ),
            ("http.method".into(), TagValue::Static("GET")),
            ("http.protocol".into(), TagValue::Static("HTTP/1.1")),
            ("peer.address".into(), TagValue::Text("127.0.0.1".into())),
            (
                "user_agent".into(),
                TagValue::Text("curl/8 \u{1}\u{7f}\t\n\r\u{8}\u{c}\\".into()),
            ),
            ("upstream_cluster".into(), TagValue::Shared("in".into())),
            ("upstream_cluster.name".into(), TagValue::Text("in".into())),
            (
                "upstream_address".into(),
                TagValue::Text("127.0.0.1:8080".into()),
            ),
            ("http.status_code".into(), TagValue::Int(200)),
            ("response_flags".into(), TagValue::Static("-")),
            ("request_size".into(), TagValue::Int(0)),
            ("response_size".into(), TagValue::Int(-3)),
        ]
    }

    #[test]
    fn same_bytes_as_the_model_path() {
        let mut spans = vec![span(proxy_tags())];
        // A failed client span with a 128-bit trace id, a trace state and no parent.
        let mut s = span(proxy_tags());
        s.kind = SpanKind::Client;
        s.trace_id = TraceId::from_halves(0x0af7_6519_16cd_43dd, 0x8448_eb21_1c80_319c);
        s.parent_span_id = None;
        s.trace_state = "rojo=00f067aa0ba902b7".into();
        s.tags.push(("error".into(), TagValue::Bool(true)));
        s.status = Status {
            code: StatusCode::Error,
            message: "upstream answered 503 \"Service Unavailable\"".into(),
        };
        spans.push(s);
        // An `error` tag without a failed status is left out; an Ok status is written.
        let mut s = span(vec![("error".into(), TagValue::Bool(false))]);
        s.status.code = StatusCode::Ok;
        spans.push(s);
        // Custom tags: overriding the tracer's and the scope's, sorting before and after them.
        spans.push(span(vec![
            (
                Cow::Owned("component".into()),
                TagValue::Text("mine".into()),
            ),
            (
                Cow::Owned("otel.scope.name".into()),
                TagValue::Text("x".into()),
            ),
            (Cow::Owned("aaa".into()), TagValue::Text(String::new())),
            (Cow::Owned("zzz".into()), TagValue::Bool(false)),
            (Cow::Owned("http.method".into()), TagValue::Static("POST")),
            (Cow::Owned("http.method".into()), TagValue::Static("PUT")),
        ]));
        // Durations under a microsecond round up, zero stays zero; no name, no start, no end.
        let mut s = span(Vec::new());
        s.end_unix_nano = s.start_unix_nano + 999;
        spans.push(s);
        let mut s = span(Vec::new());
        s.end_unix_nano = s.start_unix_nano;
        s.name = String::new();
        spans.push(s);
        let mut s = span(Vec::new());
        s.start_unix_nano = 0;
        s.end_unix_nano = 0;
        spans.push(s);
        // Tags the mapping treats specially, and other kinds: the general path writes those.
        spans.push(span(vec![
            (
                Cow::Owned("peer.service".into()),
                TagValue::Text("b".into()),
            ),
            (Cow::Owned("net.peer.port".into()), TagValue::Int(80)),
        ]));
        spans.push(span(vec![(
            Cow::Owned(wire::zipkin::SHARED.into()),
            TagValue::Bool(true),
        )]));
        for kind in [
            SpanKind::Internal,
            SpanKind::Producer,
            SpanKind::Unspecified,
        ] {
            let mut s = span(Vec::new());
            s.kind = kind;
            spans.push(s);
        }

        let direct: Vec<bool> = spans
            .iter()
            .map(|s| writer("n", "", "n").direct(s))
            .collect();
        assert_eq!(direct.iter().filter(|d| **d).count(), 7, "{direct:?}");

        for w in [
            writer("sidecar~10.0.0.1~a.ns~ns.svc", "eu-1a", "svc-a"),
            writer("n", "", "n"),
            writer("n", "z", ""),
        ] {
            for one in &spans {
                let one = std::slice::from_ref(one);
                assert_eq!(String::from_utf8(w.write(one)).unwrap(), general(&w, one));
            }
            assert_eq!(
                String::from_utf8(w.write(&spans)).unwrap(),
                general(&w, &spans)
            );
            assert_eq!(w.write(&[]), general(&w, &[]).into_bytes());
        }
    }

    #[test]
    fn same_bytes_as_the_model_path_for_random_spans() {
        let names: [&'static str; 10] = [
            "component",
            "error",
            "http.status_code",
            "node_id",
            "zone",
            "w3c.tracestate",
            "otel.status_code",
            "a",
            "z.z",
            "guid:x-request-id",
        ];
        let texts = ["", "x", "ü\u{0}\"", "\\/", "-1", "SERVER"];
        let w = writer("node", "zone-a", "svc");
        let mut rng = fastrand::Rng::with_seed(7);
        let mut spans = Vec::new();
        for _ in 0..500 {
            let tags = (0..rng.usize(0..12))
                .map(|_| {
                    let name: Cow<'static, str> = if rng.bool() {
                        Cow::Borrowed(names[rng.usize(..names.len())])
                    } else {
                        Cow::Owned(names[rng.usize(..names.len())].to_owned())
                    };
                    let value = match rng.u8(0..4) {
                        0 => TagValue::Static(texts[rng.usize(..texts.len())]),
                        1 => TagValue::Text(texts[rng.usize(..texts.len())].to_owned()),
                        2 => TagValue::Int(rng.i64(..)),
                        _ => TagValue::Bool(rng.bool()),
                    };
                    (name, value)
                })
                .collect();
            let mut s = span(tags);
            s.trace_id =
                TraceId::from_halves(if rng.bool() { 0 } else { rng.u64(..) }, rng.u64(1..));
            s.parent_span_id = rng.bool().then(|| SpanId::from_u64(rng.u64(1..)));
            s.kind = if rng.bool() {
                SpanKind::Client
            } else {
                SpanKind::Server
            };
            s.start_unix_nano = rng.u64(..1 << 62);
            s.end_unix_nano = s.start_unix_nano + rng.u64(..5_000_000);
            s.status.code = [StatusCode::Unset, StatusCode::Ok, StatusCode::Error][rng.usize(..3)];
            s.status.message = texts[rng.usize(..texts.len())].to_owned();
            s.trace_state = texts[rng.usize(..texts.len())].to_owned();
            spans.push(s);
        }
        for one in &spans {
            let one = std::slice::from_ref(one);
            assert_eq!(String::from_utf8(w.write(one)).unwrap(), general(&w, one));
        }
    }
}
