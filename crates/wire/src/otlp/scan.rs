//! A check of an OTLP protobuf `ExportTraceServiceRequest` that walks the bytes without decoding
//! them (no allocation): every field of every message down to attribute values is checked for
//! its wire type, lengths and UTF-8 as prost's decoder would, spans are counted, and each span's
//! ids are checked as [`super::from_request`] checks them.
//!
//! Why: a collector pipeline that forwards the bytes as they came (or reads only trace ids)
//! still has to answer a malformed request or an invalid span exactly as today, but decoding
//! every request into the model costs more than everything else together.
//!
//! The scan is stricter than prost, never laxer: when it accepts a request, prost decodes it and
//! `from_request` keeps every span. Where it is unsure (group wire types, nesting deeper than
//! [`MAX_DEPTH`]) it refuses, and the caller falls back to the full decode, which then gives the
//! exact answer. So a caller must treat an error, or any invalid span, as "decode it fully".
//! Links with invalid ids are not checked: decoding drops such a link, not its span.

use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, WireType};

/// Message nesting the scan follows before giving up (prost's own limit is 100).
pub const MAX_DEPTH: u32 = 64;

/// Why the scan refused a request. The full decode may still accept it (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed OTLP ExportTraceServiceRequest protobuf: {0}")]
pub struct ScanError(Box<str>);

impl ScanError {
    /// Boxed, so that a `Result<(), ScanError>` is one register wide on the hot path.
    fn new(message: String) -> Self {
        Self(message.into_boxed_str())
    }
}

/// What the scan found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Spans in the request.
    pub spans: usize,
    /// Spans [`super::from_request`] would refuse for their ids.
    pub invalid_spans: usize,
}

/// One span as the scan saw it, with the messages around it. Fields repeated in the bytes read
/// as prost reads them: the last occurrence wins.
#[derive(Clone, Copy, Debug)]
pub struct SpanRef<'a> {
    /// Index of the enclosing `ResourceSpans` in the request, and its body.
    pub resource_index: usize,
    pub resource_spans: &'a [u8],
    /// Index of the enclosing `ScopeSpans` in its `ResourceSpans`, and its body.
    pub scope_index: usize,
    pub scope_spans: &'a [u8],
    /// The span's own body.
    pub body: &'a [u8],
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub parent_span_id: &'a [u8],
    pub trace_state: &'a str,
    /// Whether [`super::from_request`] keeps the span (its ids are valid).
    pub valid: bool,
    /// Whether some attribute has the key [`walk_spans`] was asked to look for (always false
    /// from [`scan_spans`]).
    pub keyed: bool,
}

impl<'a> SpanRef<'a> {
    /// A span not read yet: where it stands (index and body of its `ResourceSpans` and
    /// `ScopeSpans`) and its body.
    fn at(resource: (usize, &'a [u8]), scope: (usize, &'a [u8]), body: &'a [u8]) -> Self {
        Self {
            resource_index: resource.0,
            resource_spans: resource.1,
            scope_index: scope.0,
            scope_spans: scope.1,
            body,
            trace_id: &[],
            span_id: &[],
            parent_span_id: &[],
            trace_state: "",
            valid: false,
            keyed: false,
        }
    }

    /// Whether some attribute of the span has this key (any occurrence of a `KeyValue.key`).
    pub fn has_attribute_key(&self, key: &str) -> bool {
        let mut found = false;
        let _ = for_each_field(self.body, |field, value| {
            if let (9, Value::Bytes(kv)) = (field, value) {
                found |= has_key(kv, key);
            }
            Ok(())
        });
        found
    }
}

/// Whether a `KeyValue` (any occurrence of its key field) has this key.
#[inline]
fn has_key(kv: &[u8], key: &str) -> bool {
    // The usual encoding, a short key then a short value and nothing else, is read in place.
    if let Some((k, rest)) = short_field(kv, 0x0A) {
        if rest.is_empty() || short_field(rest, 0x12).is_some_and(|(_, end)| end.is_empty()) {
            return k == key.as_bytes();
        }
    }
    has_key_general(kv, key)
}

#[cold]
fn has_key_general(kv: &[u8], key: &str) -> bool {
    let mut found = false;
    let _ = for_each_field(kv, |field, value| {
        if let (1, Value::Bytes(k)) = (field, value) {
            found |= k == key.as_bytes();
        }
        Ok(())
    });
    found
}

/// Checks a request: well-formed down to attribute values, spans counted, ids checked.
pub fn scan(request: &[u8]) -> Result<Scan, ScanError> {
    scan_spans(request, |_| {})
}

/// The spans a request holds (valid or not), by the scan, or by prost's full decode where the
/// scan cannot vouch for the request; an error only when prost cannot decode it either.
pub fn count_spans(request: &[u8]) -> Result<usize, crate::WireError> {
    if let Ok(s) = scan(request) {
        return Ok(s.spans);
    }
    let req =
        <crate::ExportTraceServiceRequest as prost::Message>::decode(request).map_err(|e| {
            crate::WireError::Protobuf {
                format: "OTLP ExportTraceServiceRequest",
                message: e.to_string(),
            }
        })?;
    Ok(req
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum())
}

/// Calls `f` for each span of a request [`scan`] already accepted, reading only what a
/// [`SpanRef`] holds: the way down to the spans and each span's own fields, not the contents of
/// attributes, events or links. For a second look at checked bytes (about half the scan's
/// cost); on bytes the scan refuses it may give an error or spans that are not there.
///
/// `attribute_key`: sets [`SpanRef::keyed`] on spans with an attribute of that key.
pub fn walk_spans<'a>(
    request: &'a [u8],
    attribute_key: &str,
    mut f: impl FnMut(&SpanRef<'a>),
) -> Result<(), ScanError> {
    let mut resource_index = 0;
    for_each_field(request, |field, value| {
        let (1, Value::Bytes(rs)) = (field, value) else {
            return Ok(());
        };
        let mut scope_index = 0;
        for_each_field(rs, |field, value| {
            let (2, Value::Bytes(ss)) = (field, value) else {
                return Ok(());
            };
            for_each_field(ss, |field, value| {
                let (2, Value::Bytes(body)) = (field, value) else {
                    return Ok(());
                };
                let mut span = SpanRef::at((resource_index, rs), (scope_index, ss), body);
                walk_span_fields(&mut span, attribute_key)?;
                span.valid = ids_valid(&span);
                f(&span);
                Ok(())
            })?;
            scope_index += 1;
            Ok(())
        })?;
        resource_index += 1;
        Ok(())
    })
}

/// A checked span's ids, tracestate and whether it has an attribute with this key: the fields an
/// encoder writes are matched on their key byte, anything else is read the general way.
#[inline]
fn walk_span_fields(span: &mut SpanRef<'_>, attribute_key: &str) -> Result<(), ScanError> {
    let mut buf = span.body;
    while let Some(&tag) = buf.first() {
        match tag {
            0x0A | 0x12 | 0x1A | 0x22 | 0x2A | 0x4A | 0x5A | 0x6A | 0x7A => {
                let Some((value, rest)) = short_field(buf, tag) else {
                    break;
                };
                match tag {
                    0x0A => span.trace_id = value,
                    0x12 => span.span_id = value,
                    0x22 => span.parent_span_id = value,
                    0x1A => span.trace_state = utf8(Msg::Span, 3, value)?,
                    0x4A => span.keyed |= has_key(value, attribute_key),
                    _ => {}
                }
                buf = rest;
            }
            0x30 | 0x50 | 0x60 | 0x70 if buf.get(1).is_some_and(|&b| b < 0x80) => buf = &buf[2..],
            0x39 | 0x41 if buf.len() >= 9 => buf = &buf[9..],
            0x85 if buf.get(1) == Some(&0x01) && buf.len() >= 6 => buf = &buf[6..],
            _ => break,
        }
    }
    for_each_field(buf, |field, value| {
        match (field, value) {
            (1, Value::Bytes(b)) => span.trace_id = b,
            (2, Value::Bytes(b)) => span.span_id = b,
            (4, Value::Bytes(b)) => span.parent_span_id = b,
            (3, Value::Bytes(b)) => span.trace_state = utf8(Msg::Span, field, b)?,
            (9, Value::Bytes(kv)) => span.keyed |= has_key(kv, attribute_key),
            _ => {}
        }
        Ok(())
    })
}

/// [`scan`], calling `f` for each span in order.
pub fn scan_spans<'a>(
    request: &'a [u8],
    mut f: impl FnMut(&SpanRef<'a>),
) -> Result<Scan, ScanError> {
    let mut out = Scan::default();
    let mut resource_index = 0;
    for_each_field(request, |field, value| {
        if field != 1 {
            return Ok(());
        }
        let rs = expect_bytes(Msg::Request, field, value)?;
        resource_spans(rs, resource_index, &mut out, &mut f)?;
        resource_index += 1;
        Ok(())
    })?;
    Ok(out)
}

fn resource_spans<'a>(
    rs: &'a [u8],
    resource_index: usize,
    out: &mut Scan,
    f: &mut impl FnMut(&SpanRef<'a>),
) -> Result<(), ScanError> {
    let mut scope_index = 0;
    for_each_field(rs, |field, value| {
        if field != 2 {
            return check_field(Msg::ResourceSpans, field, value, 1);
        }
        let ss = expect_bytes(Msg::ResourceSpans, field, value)?;
        for_each_field(ss, |field, value| {
            if field != 2 {
                return check_field(Msg::ScopeSpans, field, value, 2);
            }
            let body = expect_bytes(Msg::ScopeSpans, field, value)?;
            let mut span = SpanRef::at((resource_index, rs), (scope_index, ss), body);
            span_fields(&mut span)?;
            span.valid = ids_valid(&span);
            out.spans += 1;
            if !span.valid {
                out.invalid_spans += 1;
            }
            f(&span);
            Ok(())
        })?;
        scope_index += 1;
        Ok(())
    })
}

/// Checks a span's fields, keeping the ids and tracestate.
///
/// The fields an encoder writes (one-byte keys, lengths below 128) are matched on their key byte;
/// anything else takes the schema-driven way, which gives the same answer more slowly.
fn span_fields(span: &mut SpanRef<'_>) -> Result<(), ScanError> {
    let mut buf = span.body;
    while let Some(&tag) = buf.first() {
        match tag {
            // trace_id, span_id, parent_span_id: bytes, kept.
            0x0A | 0x12 | 0x22 => {
                let Some((value, rest)) = short_field(buf, tag) else {
                    break;
                };
                match tag {
                    0x0A => span.trace_id = value,
                    0x12 => span.span_id = value,
                    _ => span.parent_span_id = value,
                }
                buf = rest;
            }
            // trace_state (kept), name: strings.
            0x1A | 0x2A => {
                let Some((value, rest)) = short_field(buf, tag) else {
                    break;
                };
                if tag == 0x1A {
                    span.trace_state = utf8(Msg::Span, 3, value)?;
                } else if !value.is_ascii() {
                    utf8(Msg::Span, 5, value)?;
                }
                buf = rest;
            }
            // attributes, events, links, status: messages.
            0x4A | 0x5A | 0x6A | 0x7A => {
                let Some((value, rest)) = short_field(buf, tag) else {
                    break;
                };
                match tag {
                    0x4A => check_key_value(value, 4)?,
                    0x5A => check_message(Msg::Event, value, 4)?,
                    0x6A => check_message(Msg::Link, value, 4)?,
                    _ => check_message(Msg::Status, value, 4)?,
                }
                buf = rest;
            }
            // kind, dropped counts: varints of one byte.
            0x30 | 0x50 | 0x60 | 0x70 if buf.get(1).is_some_and(|&b| b < 0x80) => buf = &buf[2..],
            // start and end times: fixed64.
            0x39 | 0x41 if buf.len() >= 9 => buf = &buf[9..],
            // flags (field 16, fixed32: a two-byte key).
            0x85 if buf.get(1) == Some(&0x01) && buf.len() >= 6 => buf = &buf[6..],
            _ => break,
        }
    }
    if buf.is_empty() {
        return Ok(());
    }
    // The rest of the span, field by field against the schema.
    for_each_field(buf, |field, value| {
        match (field, value) {
            (1, Value::Bytes(b)) => span.trace_id = b,
            (2, Value::Bytes(b)) => span.span_id = b,
            (4, Value::Bytes(b)) => span.parent_span_id = b,
            (3, Value::Bytes(b)) => span.trace_state = utf8(Msg::Span, field, b)?,
            _ => {}
        }
        check_field(Msg::Span, field, value, 3)
    })
}

/// The rules of `from_request`: a 16-byte non-zero trace id, an 8-byte non-zero span id, and a
/// parent that is empty, 8 zero bytes, or a valid span id.
fn ids_valid(s: &SpanRef<'_>) -> bool {
    let nonzero = |b: &[u8]| b.iter().any(|&x| x != 0);
    let trace = s.trace_id.len() == 16 && nonzero(s.trace_id);
    let span = s.span_id.len() == 8 && nonzero(s.span_id);
    let parent = s.parent_span_id.is_empty() || s.parent_span_id.len() == 8;
    trace && span && parent
}

/// The message types of the OTLP trace request, for the schema below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Msg {
    Request,
    ResourceSpans,
    Resource,
    EntityRef,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

/// How a known field is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Varint scalars: int32/int64/uint32/bool/enum.
    Varint,
    Fixed64,
    Fixed32,
    Bytes,
    Str,
    Message(Msg),
}

/// Message types in all (the length of [`Msg`]).
const MESSAGES: usize = Msg::KeyValueList as usize + 1;
/// Field numbers the schema table covers (every known field is below this).
const FIELDS: usize = 17;

/// [`kind`] as a table, so the hot loop looks a field up rather than branching on it.
static SCHEMA: [[Option<Kind>; FIELDS]; MESSAGES] = {
    const ALL: [Msg; MESSAGES] = [
        Msg::Request,
        Msg::ResourceSpans,
        Msg::Resource,
        Msg::EntityRef,
        Msg::ScopeSpans,
        Msg::Scope,
        Msg::Span,
        Msg::Event,
        Msg::Link,
        Msg::Status,
        Msg::KeyValue,
        Msg::AnyValue,
        Msg::ArrayValue,
        Msg::KeyValueList,
    ];
    let mut table = [[None; FIELDS]; MESSAGES];
    let mut m = 0;
    while m < MESSAGES {
        let mut f = 0;
        while f < FIELDS {
            table[ALL[m] as usize][f] = kind(ALL[m], f as u32);
            f += 1;
        }
        m += 1;
    }
    table
};

/// How field `field` of `m` is encoded; `None` for fields the schema does not know.
#[inline(always)]
fn lookup(m: Msg, field: u32) -> Option<Kind> {
    SCHEMA[m as usize].get(field as usize).copied().flatten()
}

/// The schema (opentelemetry-proto's trace, common and resource messages). Unknown fields are
/// skipped, as prost skips them.
const fn kind(m: Msg, field: u32) -> Option<Kind> {
    Some(match (m, field) {
        (Msg::Request, 1) => Kind::Message(Msg::ResourceSpans),
        (Msg::ResourceSpans, 1) => Kind::Message(Msg::Resource),
        (Msg::ResourceSpans, 2) => Kind::Message(Msg::ScopeSpans),
        (Msg::ResourceSpans, 3) => Kind::Str,
        (Msg::Resource, 1) => Kind::Message(Msg::KeyValue),
        (Msg::Resource, 2) => Kind::Varint,
        (Msg::Resource, 3) => Kind::Message(Msg::EntityRef),
        (Msg::EntityRef, 1..=4) => Kind::Str,
        (Msg::ScopeSpans, 1) => Kind::Message(Msg::Scope),
        (Msg::ScopeSpans, 2) => Kind::Message(Msg::Span),
        (Msg::ScopeSpans, 3) => Kind::Str,
        (Msg::Scope, 1 | 2) => Kind::Str,
        (Msg::Scope, 3) => Kind::Message(Msg::KeyValue),
        (Msg::Scope, 4) => Kind::Varint,
        (Msg::Span, 1 | 2 | 4) => Kind::Bytes,
        (Msg::Span, 3 | 5) => Kind::Str,
        (Msg::Span, 6 | 10 | 12 | 14) => Kind::Varint,
        (Msg::Span, 7 | 8) => Kind::Fixed64,
        (Msg::Span, 9) => Kind::Message(Msg::KeyValue),
        (Msg::Span, 11) => Kind::Message(Msg::Event),
        (Msg::Span, 13) => Kind::Message(Msg::Link),
        (Msg::Span, 15) => Kind::Message(Msg::Status),
        (Msg::Span, 16) => Kind::Fixed32,
        (Msg::Event, 1) => Kind::Fixed64,
        (Msg::Event, 2) => Kind::Str,
        (Msg::Event, 3) => Kind::Message(Msg::KeyValue),
        (Msg::Event, 4) => Kind::Varint,
        (Msg::Link, 1 | 2) => Kind::Bytes,
        (Msg::Link, 3) => Kind::Str,
        (Msg::Link, 4) => Kind::Message(Msg::KeyValue),
        (Msg::Link, 5) => Kind::Varint,
        (Msg::Link, 6) => Kind::Fixed32,
        (Msg::Status, 2) => Kind::Str,
        (Msg::Status, 3) => Kind::Varint,
        (Msg::KeyValue, 1) => Kind::Str,
        (Msg::KeyValue, 2) => Kind::Message(Msg::AnyValue),
        (Msg::KeyValue, 3) => Kind::Varint,
        (Msg::AnyValue, 1) => Kind::Str,
        (Msg::AnyValue, 2 | 3 | 8) => Kind::Varint,
        (Msg::AnyValue, 4) => Kind::Fixed64,
        (Msg::AnyValue, 5) => Kind::Message(Msg::ArrayValue),
        (Msg::AnyValue, 6) => Kind::Message(Msg::KeyValueList),
        (Msg::AnyValue, 7) => Kind::Bytes,
        (Msg::ArrayValue, 1) => Kind::Message(Msg::AnyValue),
        (Msg::KeyValueList, 1) => Kind::Message(Msg::KeyValue),
        _ => return None,
    })
}

/// A field's payload as read from the wire.
#[derive(Clone, Copy, Debug)]
enum Value<'a> {
    Varint,
    Fixed64,
    Fixed32,
    Bytes(&'a [u8]),
}

impl Value<'_> {
    fn wire_type(&self) -> WireType {
        match self {
            Value::Varint => WireType::Varint,
            Value::Fixed64 => WireType::SixtyFourBit,
            Value::Fixed32 => WireType::ThirtyTwoBit,
            Value::Bytes(_) => WireType::LengthDelimited,
        }
    }
}

/// Checks field `field` of a message of type `m` against the schema; `depth` is the depth of
/// the message holding it.
fn check_field(m: Msg, field: u32, value: Value<'_>, depth: u32) -> Result<(), ScanError> {
    let Some(kind) = lookup(m, field) else {
        return Ok(());
    };
    let expected = match kind {
        Kind::Varint => WireType::Varint,
        Kind::Fixed64 => WireType::SixtyFourBit,
        Kind::Fixed32 => WireType::ThirtyTwoBit,
        Kind::Bytes | Kind::Str | Kind::Message(_) => WireType::LengthDelimited,
    };
    if value.wire_type() != expected {
        return Err(wrong_type(m, field, value.wire_type(), expected));
    }
    match (kind, value) {
        // Most strings are ASCII, which `is_ascii` tells faster than a full UTF-8 check.
        (Kind::Str, Value::Bytes(b)) if b.is_ascii() => Ok(()),
        (Kind::Str, Value::Bytes(b)) => utf8(m, field, b).map(|_| ()),
        (Kind::Message(inner), Value::Bytes(b)) => check_message(inner, b, depth + 1),
        _ => Ok(()),
    }
}

/// Checks every field of a message of type `m` at nesting `depth`.
fn check_message(m: Msg, body: &[u8], depth: u32) -> Result<(), ScanError> {
    if depth > MAX_DEPTH {
        return Err(ScanError::new(format!(
            "messages nested deeper than {MAX_DEPTH} (in {m:?})"
        )));
    }
    match m {
        Msg::KeyValue => check_key_value(body, depth),
        _ => for_each_field(body, |field, value| check_field(m, field, value, depth)),
    }
}

/// [`check_message`] for a `KeyValue`, the bulk of most requests: its usual encoding (a short
/// ASCII key, then a string or scalar value) is checked in place; anything else goes the general
/// way, which gives the same answer.
#[inline]
fn check_key_value(body: &[u8], depth: u32) -> Result<(), ScanError> {
    if let Some((key, rest)) = short_field(body, 0x0A) {
        if key.is_ascii() {
            if rest.is_empty() {
                return Ok(());
            }
            if let Some((any, end)) = short_field(rest, 0x12) {
                if end.is_empty() && plain_any_value(any) {
                    return Ok(());
                }
            }
        }
    }
    check_key_value_general(body, depth)
}

/// Whether an `AnyValue` body is one ASCII string, bool, int or double, or empty: always valid.
#[inline(always)]
fn plain_any_value(any: &[u8]) -> bool {
    match any {
        [] => true,
        [0x0A, ..] => short_field(any, 0x0A).is_some_and(|(s, end)| end.is_empty() && s.is_ascii()),
        // One varint (prost refuses a tenth byte above 1).
        [0x10 | 0x18, rest @ ..] => rest.split_last().is_some_and(|(&last, init)| {
            last < 0x80
                && init.iter().all(|&b| b >= 0x80)
                && (rest.len() < 10 || rest.len() == 10 && last <= 1)
        }),
        [0x21, rest @ ..] => rest.len() == 8,
        _ => false,
    }
}

#[cold]
fn check_key_value_general(body: &[u8], depth: u32) -> Result<(), ScanError> {
    for_each_field(body, |field, value| match (field, value) {
        (1, Value::Bytes(key)) if key.is_ascii() => Ok(()),
        (2, Value::Bytes(any)) if depth < MAX_DEPTH => {
            for_each_field(any, |field, value| match (field, value) {
                (1, Value::Bytes(s)) if s.is_ascii() => Ok(()),
                (2 | 3 | 8, Value::Varint) | (4, Value::Fixed64) | (7, Value::Bytes(_)) => Ok(()),
                _ => check_field(Msg::AnyValue, field, value, depth + 1),
            })
        }
        _ => check_field(Msg::KeyValue, field, value, depth),
    })
}

/// A length-delimited field at the start of `buf` whose key is the one byte `tag` and whose
/// length takes one or two bytes: its payload and what follows it. `None` for anything else
/// (the general way reads it).
#[inline(always)]
fn short_field(buf: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (len, rest) = match buf {
        [t, l, rest @ ..] if *t == tag && *l < 0x80 => (usize::from(*l), rest),
        [t, l0, l1, rest @ ..] if *t == tag && *l1 < 0x80 => {
            (usize::from(*l0 & 0x7F) | usize::from(*l1) << 7, rest)
        }
        _ => return None,
    };
    (len <= rest.len()).then(|| rest.split_at(len))
}

fn expect_bytes<'a>(m: Msg, field: u32, value: Value<'a>) -> Result<&'a [u8], ScanError> {
    match value {
        Value::Bytes(b) => Ok(b),
        other => Err(wrong_type(
            m,
            field,
            other.wire_type(),
            WireType::LengthDelimited,
        )),
    }
}

fn wrong_type(m: Msg, field: u32, got: WireType, expected: WireType) -> ScanError {
    ScanError::new(format!(
        "{m:?} field {field} has wire type {got:?}, expected {expected:?}"
    ))
}

fn utf8(m: Msg, field: u32, b: &[u8]) -> Result<&str, ScanError> {
    std::str::from_utf8(b)
        .map_err(|_| ScanError::new(format!("{m:?} field {field} is a string that is not UTF-8")))
}

/// Calls `f(field number, value)` for each field of a message body, in order.
#[inline(always)]
fn for_each_field<'a>(
    mut buf: &'a [u8],
    mut f: impl FnMut(u32, Value<'a>) -> Result<(), ScanError>,
) -> Result<(), ScanError> {
    while !buf.is_empty() {
        let (field, wire_type) = key(&mut buf)?;
        let value = match wire_type {
            WireType::Varint => {
                varint(&mut buf)?;
                Value::Varint
            }
            WireType::SixtyFourBit => {
                buf = buf
                    .get(8..)
                    .ok_or_else(|| ScanError::new(format!("field {field}: truncated fixed64")))?;
                Value::Fixed64
            }
            WireType::ThirtyTwoBit => {
                buf = buf
                    .get(4..)
                    .ok_or_else(|| ScanError::new(format!("field {field}: truncated fixed32")))?;
                Value::Fixed32
            }
            WireType::LengthDelimited => {
                let len = varint(&mut buf)?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= buf.len())
                    .ok_or_else(|| {
                        ScanError::new(format!(
                            "field {field}: length {len} runs past the end ({} bytes left)",
                            buf.len()
                        ))
                    })?;
                let (body, rest) = buf.split_at(len);
                buf = rest;
                Value::Bytes(body)
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(ScanError::new(format!(
                    "field {field}: group wire types are not used by OTLP"
                )))
            }
        };
        f(field, value)?;
    }
    Ok(())
}

/// A field key. Keys of fields 1–15 are one byte, read here; longer ones go to prost.
#[inline(always)]
fn key(buf: &mut &[u8]) -> Result<(u32, WireType), ScanError> {
    if let Some(&b) = buf.first() {
        let wire_type = match b & 7 {
            0 => WireType::Varint,
            1 => WireType::SixtyFourBit,
            2 => WireType::LengthDelimited,
            5 => WireType::ThirtyTwoBit,
            _ => return key_general(buf),
        };
        if (8..0x80).contains(&b) {
            *buf = &buf[1..];
            return Ok((u32::from(b >> 3), wire_type));
        }
    }
    key_general(buf)
}

#[cold]
fn key_general(buf: &mut &[u8]) -> Result<(u32, WireType), ScanError> {
    decode_key(buf).map_err(|e| ScanError::new(e.to_string()))
}

/// A varint. One-byte values are read here; longer ones go to prost.
#[inline(always)]
fn varint(buf: &mut &[u8]) -> Result<u64, ScanError> {
    if let Some(&b) = buf.first() {
        if b < 0x80 {
            *buf = &buf[1..];
            return Ok(u64::from(b));
        }
    }
    varint_general(buf)
}

fn varint_general(buf: &mut &[u8]) -> Result<u64, ScanError> {
    decode_varint(buf).map_err(|e| ScanError::new(e.to_string()))
}

/// Builds a request holding only chosen spans of another, each inside a copy of its
/// `ResourceSpans` and `ScopeSpans` (every field but their span lists copied verbatim, in
/// order), so decoding it gives exactly those spans with their resource and scope.
#[derive(Debug, Default)]
pub struct Subset {
    out: Vec<u8>,
    resource: Vec<u8>,
    scope: Vec<u8>,
    /// The (resource, scope) indices of the group being filled.
    at: Option<(usize, usize)>,
    spans: usize,
}

impl Subset {
    /// Adds a span (spans must come in the scan's order).
    pub fn push(&mut self, span: &SpanRef<'_>) {
        let here = (span.resource_index, span.scope_index);
        if self.at != Some(here) {
            if self.at.is_some() {
                close(&mut self.resource, 2, &mut self.scope);
            }
            if self.at.map(|(r, _)| r) != Some(span.resource_index) {
                if self.at.is_some() {
                    close(&mut self.out, 1, &mut self.resource);
                }
                copy_except(span.resource_spans, 2, &mut self.resource);
            }
            copy_except(span.scope_spans, 2, &mut self.scope);
            self.at = Some(here);
        }
        encode_key(2, WireType::LengthDelimited, &mut self.scope);
        encode_varint(span.body.len() as u64, &mut self.scope);
        self.scope.extend_from_slice(span.body);
        self.spans += 1;
    }

    /// Spans added so far.
    pub fn span_count(&self) -> usize {
        self.spans
    }

    /// The request's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        if self.at.is_some() {
            close(&mut self.resource, 2, &mut self.scope);
            close(&mut self.out, 1, &mut self.resource);
        }
        self.out
    }
}

/// Appends `body` to `out` as length-delimited field `field`, and empties it.
fn close(out: &mut Vec<u8>, field: u32, body: &mut Vec<u8>) {
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(body.len() as u64, out);
    out.append(body);
}

/// Appends every field of an (already checked) message but `skip` to `out`, bytes as they are.
fn copy_except(message: &[u8], skip: u32, out: &mut Vec<u8>) {
    let mut rest = message;
    while !rest.is_empty() {
        let start = rest;
        let Ok((field, wire_type)) = decode_key(&mut rest) else {
            return;
        };
        if skip_value(wire_type, &mut rest).is_err() {
            return;
        }
        if field != skip {
            out.extend_from_slice(&start[..start.len() - rest.len()]);
        }
    }
}

/// Moves past one field's value.
fn skip_value(wire_type: WireType, buf: &mut &[u8]) -> Result<(), ()> {
    match wire_type {
        WireType::Varint => decode_varint(buf).map(|_| ()).map_err(|_| ()),
        WireType::SixtyFourBit => buf.get(8..).map(|r| *buf = r).ok_or(()),
        WireType::ThirtyTwoBit => buf.get(4..).map(|r| *buf = r).ok_or(()),
        WireType::LengthDelimited => {
            let len = decode_varint(buf).map_err(|_| ())?;
            let len = usize::try_from(len).map_err(|_| ())?;
            buf.get(len..).map(|r| *buf = r).ok_or(())
        }
        WireType::StartGroup | WireType::EndGroup => Err(()),
    }
}

#[cfg(test)]
mod tests;
