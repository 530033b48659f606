//! Zipkin v2 JSON (`POST /api/v2/spans`, a JSON list of spans) read into [`ZipkinSpan`]s and
//! written from them.
//!
//! Reading is one pass of `serde_json`'s typed deserialisation over the body, borrowing strings
//! from it where they have no escapes; no `serde_json::Value` tree is built. Each span's members
//! are kept as read (the last of duplicate keys wins, `null` is absent) and checked once the
//! span's object is complete, in a fixed order, so that the first problem is reported with the
//! span's index and field (`spans[2].traceId: ...`); the path is only formatted then. After the
//! first invalid span the rest of the body is still read (a syntax error anywhere wins over an
//! invalid span), but not kept. Containers where a scalar is expected are read through and only
//! named in the error.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, Ipv6Addr};

use model::{SpanId, TraceId};
use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::Number;

use super::span::{Annotation, Endpoint, Kind, Tags, ZipkinSpan};
use crate::WireError;

const FORMAT: &str = "Zipkin";

pub(crate) fn parse(body: &[u8]) -> Result<Vec<ZipkinSpan<'_>>, WireError> {
    // Spans written by the usual encoders take 300 bytes or more of JSON each.
    let mut spans = Vec::with_capacity(body.len() / 300);
    parse_each(body, |span| spans.push(span))?;
    Ok(spans)
}

/// Reads the report, handing each span to `each` as soon as it is read and checked (so spans
/// are used while they are in cache, and no list of them is built for a consumer that does not
/// need one). On an error, the spans already handed on are the ones before it.
pub(crate) fn parse_each<'a>(
    body: &'a [u8],
    each: impl FnMut(ZipkinSpan<'a>),
) -> Result<(), WireError> {
    // A body that is UTF-8 as a whole (nearly every one) is read as text, so that serde_json
    // does not check each string again; any other takes the byte reader, which finds and names
    // where it is not. The two readers answer alike otherwise (serde_json's `StrRead` is its
    // `SliceRead` without the per-string check).
    let list = SpanList(each);
    let root = match std::str::from_utf8(body) {
        Ok(text) => read_root(serde_json::Deserializer::from_str(text), list),
        Err(_) => read_root(serde_json::Deserializer::from_slice(body), list),
    }
    .map_err(|e| WireError::json_syntax(FORMAT, &e))?;
    match root {
        Loose::Got(outcome) => outcome,
        other => Err(WireError::invalid(
            "(root)",
            format!("expected a JSON list of spans, got {}", other.type_name()),
        )),
    }
}

/// The whole body as `seed` reads it, and nothing after it but whitespace (as
/// `serde_json::from_str` reads a value).
fn read_root<'de, R: serde_json::de::Read<'de>, S: DeserializeSeed<'de>>(
    mut de: serde_json::Deserializer<R>,
    seed: S,
) -> Result<S::Value, serde_json::Error> {
    let value = seed.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Where a value sits in the report; formatted only for an error message.
#[derive(Clone, Copy)]
enum Path {
    Span(usize),
    Annotation(usize, usize),
    Endpoint(usize, &'static str),
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Span(i) => write!(f, "spans[{i}]"),
            Path::Annotation(i, j) => write!(f, "spans[{i}].annotations[{j}]"),
            Path::Endpoint(i, key) => write!(f, "spans[{i}].{key}"),
        }
    }
}

impl Path {
    fn at(self, key: &str) -> String {
        format!("{self}.{key}")
    }
}

fn expected(path: String, what: &str, got: &str) -> WireError {
    WireError::invalid(path, format!("expected {what}, got {got}"))
}

/// A JSON value where the reader wants a scalar: scalars kept (strings borrowed from the body
/// when they have no escapes), containers read through and only named.
#[derive(Debug)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl Scalar<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::Number(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Array => "an array",
            Scalar::Object => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Number(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Number(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                // As `serde_json::Value` reads it (the parser never yields a non-finite number).
                Ok(Number::from_f64(v).map_or(Scalar::Null, Scalar::Number))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq)?;
                Ok(Scalar::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map)?;
                Ok(Scalar::Object)
            }
        }
        d.deserialize_any(V)
    }
}

/// Any JSON value, read and dropped. Unlike `serde::de::IgnoredAny` (which `serde_json` only
/// scans), this parses it as `serde_json::Value` would, so the same bodies are refused (a number
/// out of range, say) as before.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Scalar::deserialize(d).map(|_| Skip)
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<Skip>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<Skip, Skip>()?.is_some() {}
    Ok(())
}

/// A JSON value where the reader wants a list or an object `T`: `T`, `null`, or the name of
/// what came instead (read through).
enum Loose<T> {
    Null,
    Got(T),
    Other(&'static str),
}

impl<T> Loose<T> {
    fn type_name(&self) -> &'static str {
        match self {
            Loose::Null => "null",
            Loose::Got(_) => "the expected type",
            Loose::Other(t) => t,
        }
    }
}

/// A list or object read in place by [`Loose`]; the other shape is read through.
trait Compound<'de>: Sized {
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Loose<Self>, A::Error> {
        drain_map(map)?;
        Ok(Loose::Other("an object"))
    }
    fn from_seq<A: SeqAccess<'de>>(seq: A) -> Result<Loose<Self>, A::Error> {
        drain_seq(seq)?;
        Ok(Loose::Other("an array"))
    }
}

/// How [`LooseVisitor`] reads a list or an object into `Out`: a [`Compound`] type, or (for the
/// report's list) each span handed on.
trait ReadCompound<'de>: Sized {
    type Out;
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Loose<Self::Out>, A::Error>;
    fn seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Loose<Self::Out>, A::Error>;
}

/// Reads a [`Compound`] type.
struct Plain<T>(PhantomData<T>);

impl<'de, T: Compound<'de>> ReadCompound<'de> for Plain<T> {
    type Out = T;
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Loose<T>, A::Error> {
        T::from_map(map)
    }
    fn seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Loose<T>, A::Error> {
        T::from_seq(seq)
    }
}

/// Any JSON value as a [`Loose`]: the list or object `R` reads, `null`, or the name of what
/// came instead.
struct LooseVisitor<R>(R);

impl<'de, R: ReadCompound<'de>> Visitor<'de> for LooseVisitor<R> {
    type Value = Loose<R::Out>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Loose::Other("a boolean"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Loose::Other("a number"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Loose::Other("a number"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(if v.is_finite() {
            Loose::Other("a number")
        } else {
            Loose::Null
        })
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Loose::Other("a string"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.map(map)
    }
}

impl<'de, T: Compound<'de>> Deserialize<'de> for Loose<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor(Plain(PhantomData)))
    }
}

impl<'de, R: ReadCompound<'de>> DeserializeSeed<'de> for LooseVisitor<R> {
    type Value = Loose<R::Out>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// The report's list: each span checked and handed to the function as soon as it is read; the
/// outcome is the first invalid span's error (the rest of the list is read through).
struct SpanList<F>(F);

impl<'de, F: FnMut(ZipkinSpan<'de>)> ReadCompound<'de> for SpanList<F> {
    type Out = Result<(), WireError>;

    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Loose<Self::Out>, A::Error> {
        drain_map(map)?;
        Ok(Loose::Other("an object"))
    }

    fn seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Loose<Self::Out>, A::Error> {
        let mut i = 0;
        while let Some(span) = seq.next_element_seed(LooseVisitor(CheckedSpan(i)))? {
            let checked = match span {
                Loose::Got(checked) => checked,
                other => Err(expected(
                    Path::Span(i).to_string(),
                    "a span object",
                    other.type_name(),
                )),
            };
            match checked {
                Ok(span) => (self.0)(span),
                Err(e) => {
                    drain_seq(seq)?;
                    return Ok(Loose::Got(Err(e)));
                }
            }
            i += 1;
        }
        Ok(Loose::Got(Ok(())))
    }
}

impl<'de, F: FnMut(ZipkinSpan<'de>)> DeserializeSeed<'de> for SpanList<F> {
    type Value = Loose<Result<(), WireError>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(LooseVisitor(self))
    }
}

/// Span `.0` of the list, read and checked where its members were read.
struct CheckedSpan(usize);

impl<'de> ReadCompound<'de> for CheckedSpan {
    type Out = Result<ZipkinSpan<'de>, WireError>;

    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Loose<Self::Out>, A::Error> {
        Ok(match RawSpan::from_map(map)? {
            Loose::Got(raw) => Loose::Got(raw.check(self.0)),
            Loose::Null => Loose::Null,
            Loose::Other(t) => Loose::Other(t),
        })
    }

    fn seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Loose<Self::Out>, A::Error> {
        drain_seq(seq)?;
        Ok(Loose::Other("an array"))
    }
}

/// A span's members as read, before any check.
#[derive(Default)]
struct RawSpan<'a> {
    trace_id: Option<Scalar<'a>>,
    id: Option<Scalar<'a>>,
    parent_id: Option<Scalar<'a>>,
    kind: Option<Scalar<'a>>,
    name: Option<Scalar<'a>>,
    timestamp: Option<Scalar<'a>>,
    duration: Option<Scalar<'a>>,
    local_endpoint: Option<Loose<RawEndpoint<'a>>>,
    remote_endpoint: Option<Loose<RawEndpoint<'a>>>,
    annotations: Option<Loose<Vec<Loose<RawAnnotation<'a>>>>>,
    tags: Option<Loose<RawTags<'a>>>,
    debug: Option<Scalar<'a>>,
    shared: Option<Scalar<'a>>,
}

/// An object member's name, unescaped (borrowed when it has no escapes).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Compound<'de> for RawSpan<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Loose<Self>, A::Error> {
        let mut s = RawSpan::default();
        while let Some(Key(key)) = map.next_key()? {
            match &*key {
                "traceId" => s.trace_id = Some(map.next_value()?),
                "id" => s.id = Some(map.next_value()?),
                "parentId" => s.parent_id = Some(map.next_value()?),
                "kind" => s.kind = Some(map.next_value()?),
                "name" => s.name = Some(map.next_value()?),
                "timestamp" => s.timestamp = Some(map.next_value()?),
                "duration" => s.duration = Some(map.next_value()?),
                "localEndpoint" => s.local_endpoint = Some(map.next_value()?),
                "remoteEndpoint" => s.remote_endpoint = Some(map.next_value()?),
                "annotations" => s.annotations = Some(map.next_value()?),
                "tags" => s.tags = Some(map.next_value()?),
                "debug" => s.debug = Some(map.next_value()?),
                "shared" => s.shared = Some(map.next_value()?),
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(Loose::Got(s))
    }
}

#[derive(Default)]
struct RawAnnotation<'a> {
    timestamp: Option<Scalar<'a>>,
    value: Option<Scalar<'a>>,
}

impl<'de> Compound<'de> for RawAnnotation<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Loose<Self>, A::Error> {
        let mut a = RawAnnotation::default();
        while let Some(Key(key)) = map.next_key()? {
            match &*key {
                "timestamp" => a.timestamp = Some(map.next_value()?),
                "value" => a.value = Some(map.next_value()?),
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(Loose::Got(a))
    }
}

impl<'de, T: Compound<'de>> Compound<'de> for Vec<Loose<T>> {
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Loose<Self>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Loose::Got(items))
    }
}

#[derive(Default)]
struct RawEndpoint<'a> {
    service_name: Option<Scalar<'a>>,
    ipv4: Option<Scalar<'a>>,
    ipv6: Option<Scalar<'a>>,
    port: Option<Scalar<'a>>,
}

impl<'de> Compound<'de> for RawEndpoint<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Loose<Self>, A::Error> {
        let mut e = RawEndpoint::default();
        while let Some(Key(key)) = map.next_key()? {
            match &*key {
                "serviceName" => e.service_name = Some(map.next_value()?),
                "ipv4" => e.ipv4 = Some(map.next_value()?),
                "ipv6" => e.ipv6 = Some(map.next_value()?),
                "port" => e.port = Some(map.next_value()?),
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(Loose::Got(e))
    }
}

/// A span's tags as read, in order, duplicates included: sorted and de-duplicated (the last
/// wins) once the object is complete. A value that is not a string, number or boolean is
/// kept as the name of its type; the first such key in key order is the error, as
/// `serde_json::Value`'s sorted map reported it.
struct RawTags<'a>(Vec<(Cow<'a, str>, TagValue<'a>)>);

/// A tag's value: its text (borrowed from the body when it needs no unescaping), or the name of
/// the JSON type that cannot be one.
type TagValue<'a> = Result<Cow<'a, str>, &'static str>;

/// Reads a tag's value as [`TagValue`].
struct TagValueOf<'a>(TagValue<'a>);

impl<'de> Deserialize<'de> for TagValueOf<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TagValueOf<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(TagValueOf(Err("null")))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(TagValueOf(Ok(Cow::Borrowed(if v {
                    "true"
                } else {
                    "false"
                }))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(TagValueOf(Ok(Cow::Owned(Number::from(v).to_string()))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(TagValueOf(Ok(Cow::Owned(Number::from(v).to_string()))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(TagValueOf(
                    Number::from_f64(v).map_or(Err("null"), |n| Ok(Cow::Owned(n.to_string()))),
                ))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(TagValueOf(Ok(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TagValueOf(Ok(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(TagValueOf(Ok(Cow::Owned(v))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq)?;
                Ok(TagValueOf(Err("an array")))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map)?;
                Ok(TagValueOf(Err("an object")))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Compound<'de> for RawTags<'de> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Loose<Self>, A::Error> {
        let mut tags = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(Key(key)) = map.next_key()? {
            let TagValueOf(value) = map.next_value()?;
            tags.push((key, value));
        }
        Ok(Loose::Got(RawTags(tags)))
    }
}

impl<'a> RawTags<'a> {
    /// Sorted by key, the last of duplicate keys kept; or the first key (in key order) whose
    /// value cannot be a tag, with its type.
    fn check(self) -> Result<Tags<'a>, (Cow<'a, str>, &'static str)> {
        let mut tags = self.0;
        if !tags.is_sorted_by(|a, b| a.0 <= b.0) {
            tags.sort_by(|a, b| a.0.cmp(&b.0)); // stable: duplicates stay in the order read
        }
        tags.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        if let Some(i) = tags.iter().position(|(_, v)| v.is_err()) {
            let (key, value) = tags.swap_remove(i);
            return Err((key, value.err().unwrap_or_default()));
        }
        Ok(tags
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.ok()?)))
            .collect())
    }
}

/// A member that is absent or `null` is `None`.
fn member<'s, 'a>(v: &'s Option<Scalar<'a>>) -> Option<&'s Scalar<'a>> {
    v.as_ref().filter(|v| !matches!(v, Scalar::Null))
}

fn string<'s>(
    v: &'s Option<Scalar<'_>>,
    path: Path,
    key: &str,
) -> Result<Option<&'s str>, WireError> {
    match member(v) {
        None => Ok(None),
        Some(Scalar::Str(s)) => Ok(Some(s)),
        Some(v) => Err(expected(path.at(key), "a string", v.type_name())),
    }
}

/// The string as read (borrowed from the body when it needed no unescaping); `""` when absent.
fn cow_string<'a>(v: Option<Scalar<'a>>, path: Path, key: &str) -> Result<Cow<'a, str>, WireError> {
    match v {
        None | Some(Scalar::Null) => Ok(Cow::Borrowed("")),
        Some(Scalar::Str(s)) => Ok(s),
        Some(v) => Err(expected(path.at(key), "a string", v.type_name())),
    }
}

fn required_string<'s>(
    v: &'s Option<Scalar<'_>>,
    path: Path,
    key: &str,
) -> Result<&'s str, WireError> {
    string(v, path, key)?
        .ok_or_else(|| WireError::invalid(path.at(key), "required field is missing"))
}

/// A non-negative integer; floats are truncated (some clients write `1.5e15` timestamps).
fn unsigned(v: &Option<Scalar<'_>>, path: Path, key: &str) -> Result<Option<u64>, WireError> {
    let Some(v) = member(v) else {
        return Ok(None);
    };
    let n = match v {
        Scalar::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.is_finite())
                .map(|f| f as u64)
        }),
        _ => None,
    };
    n.map(Some)
        .ok_or_else(|| expected(path.at(key), "a non-negative integer", v.type_name()))
}

fn boolean(v: &Option<Scalar<'_>>, path: Path, key: &str) -> Result<bool, WireError> {
    match member(v) {
        None => Ok(false),
        Some(Scalar::Bool(b)) => Ok(*b),
        Some(v) => Err(expected(path.at(key), "a boolean", v.type_name())),
    }
}

impl<'a> RawSpan<'a> {
    /// The checks, in the order the `Value` reader made them (so the same problem is named first).
    fn check(self, i: usize) -> Result<ZipkinSpan<'a>, WireError> {
        let path = Path::Span(i);
        let trace_id: TraceId = required_string(&self.trace_id, path, "traceId")?
            .parse()
            .map_err(|e: model::IdError| WireError::invalid(path.at("traceId"), e.to_string()))?;
        let id: SpanId = required_string(&self.id, path, "id")?
            .parse()
            .map_err(|e: model::IdError| WireError::invalid(path.at("id"), e.to_string()))?;
        let parent_id = match string(&self.parent_id, path, "parentId")? {
            None => None,
            Some(s) if s.is_empty() || s.bytes().all(|b| b == b'0') => None,
            Some(s) => Some(
                s.parse::<SpanId>()
                    .map_err(|e| WireError::invalid(path.at("parentId"), e.to_string()))?,
            ),
        };
        let annotations = match self.annotations {
            None | Some(Loose::Null) => Vec::new(),
            Some(Loose::Got(items)) => items
                .into_iter()
                .enumerate()
                .map(|(j, a)| annotation(a, Path::Annotation(i, j)))
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(expected(
                    path.at("annotations"),
                    "a list",
                    other.type_name(),
                ))
            }
        };
        let tags = match self.tags {
            None | Some(Loose::Null) => Vec::new(),
            Some(Loose::Got(tags)) => tags
                .check()
                .map_err(|(key, t)| expected(path.at(&format!("tags.{key}")), "a string", t))?,
            Some(other) => return Err(expected(path.at("tags"), "an object", other.type_name())),
        };
        let kind = string(&self.kind, path, "kind")?.and_then(Kind::parse);
        let name = cow_string(self.name, path, "name")?;
        let timestamp_us = unsigned(&self.timestamp, path, "timestamp")?.filter(|t| *t != 0);
        let duration_us = unsigned(&self.duration, path, "duration")?;
        let local_endpoint = endpoint(self.local_endpoint, Path::Endpoint(i, "localEndpoint"))?;
        let remote_endpoint = endpoint(self.remote_endpoint, Path::Endpoint(i, "remoteEndpoint"))?;
        Ok(ZipkinSpan {
            trace_id,
            id,
            parent_id,
            kind,
            name,
            timestamp_us,
            duration_us,
            local_endpoint,
            remote_endpoint,
            annotations,
            tags,
            debug: boolean(&self.debug, path, "debug")?,
            shared: boolean(&self.shared, path, "shared")?,
        })
    }
}

fn annotation(a: Loose<RawAnnotation<'_>>, path: Path) -> Result<Annotation, WireError> {
    let a = match a {
        Loose::Got(a) => a,
        other => {
            return Err(expected(
                path.to_string(),
                "an annotation object",
                other.type_name(),
            ))
        }
    };
    Ok(Annotation {
        timestamp_us: unsigned(&a.timestamp, path, "timestamp")?.unwrap_or(0),
        value: cow_string(a.value, path, "value")?.into_owned(),
    })
}

fn endpoint(
    v: Option<Loose<RawEndpoint<'_>>>,
    path: Path,
) -> Result<Option<Endpoint<'_>>, WireError> {
    let e = match v {
        None | Some(Loose::Null) => return Ok(None),
        Some(Loose::Got(e)) => e,
        Some(other) => {
            return Err(expected(
                path.to_string(),
                "an endpoint object",
                other.type_name(),
            ))
        }
    };
    let ipv4 = string(&e.ipv4, path, "ipv4")?
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<Ipv4Addr>().map_err(|_| {
                WireError::invalid(path.at("ipv4"), format!("{s:?} is not an IPv4 address"))
            })
        })
        .transpose()?;
    let ipv6 = string(&e.ipv6, path, "ipv6")?
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<Ipv6Addr>().map_err(|_| {
                WireError::invalid(path.at("ipv6"), format!("{s:?} is not an IPv6 address"))
            })
        })
        .transpose()?;
    let port = match unsigned(&e.port, path, "port")? {
        None | Some(0) => None,
        Some(p) => Some(u16::try_from(p).map_err(|_| {
            WireError::invalid(path.at("port"), format!("{p} is not a port number"))
        })?),
    };
    Ok(Some(Endpoint {
        service_name: cow_string(e.service_name, path, "serviceName")?,
        ipv4,
        ipv6,
        port,
    }))
}

/// Writes spans as a Zipkin v2 JSON list; empty and absent fields are left out.
///
/// Serialized straight from borrowed views of the spans (no `serde_json::Value` tree: that cost
/// an allocation per key and value, and was most of the proxy reporter's CPU). Members are
/// written in the order a `serde_json::Map` (sorted by key) used to give them, so the bytes are
/// the same as before; `tests::direct_writer_matches_the_value_tree` holds it to that.
pub(crate) fn write(spans: &[ZipkinSpan]) -> Vec<u8> {
    let list: Vec<SpanOut<'_>> = spans.iter().map(SpanOut::new).collect();
    let mut out = Vec::with_capacity(spans.len() * 768 + 2);
    // Serializing plain strings, integers and maps into a Vec cannot fail.
    serde_json::to_writer(&mut out, &list).unwrap_or_default();
    out
}

/// Displays a value as a JSON string through `collect_str` (ids: no intermediate `String`).
struct Text<T>(T);

impl<T: std::fmt::Display> Serialize for Text<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A trace id as Zipkin writes it: 16 hex digits when the high half is zero, else 32.
struct ShortTraceId(TraceId);

impl std::fmt::Display for ShortTraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = self.0.to_string();
        if self.0.is_64bit() {
            f.write_str(&hex[16..])
        } else {
            f.write_str(&hex)
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One span as written; members in key order (see [`write`]).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpanOut<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    annotations: Vec<AnnotationOut<'a>>,
    #[serde(skip_serializing_if = "is_false")]
    debug: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<u64>,
    id: Text<SpanId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_endpoint: Option<EndpointOut<'a>>,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<Text<SpanId>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_endpoint: Option<EndpointOut<'a>>,
    #[serde(skip_serializing_if = "is_false")]
    shared: bool,
    #[serde(skip_serializing_if = "TagsOut::is_empty")]
    tags: TagsOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<u64>,
    trace_id: Text<ShortTraceId>,
}

/// An annotation as written: `{"timestamp":…,"value":…}`.
#[derive(Serialize)]
struct AnnotationOut<'a> {
    timestamp: u64,
    value: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EndpointOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv4: Option<Text<Ipv4Addr>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv6: Option<Text<Ipv6Addr>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "str::is_empty")]
    service_name: &'a str,
}

/// Tags as a JSON object; they are kept sorted by key, each once, as Zipkin writes them.
struct TagsOut<'a>(&'a [(Cow<'a, str>, Cow<'a, str>)]);

impl TagsOut<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for TagsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
    }
}

impl<'a> SpanOut<'a> {
    fn new(s: &'a ZipkinSpan<'a>) -> Self {
        SpanOut {
            annotations: s
                .annotations
                .iter()
                .map(|a| AnnotationOut {
                    timestamp: a.timestamp_us,
                    value: &a.value,
                })
                .collect(),
            debug: s.debug,
            duration: s.duration_us,
            id: Text(s.id),
            kind: s.kind.map(Kind::as_str),
            local_endpoint: s.local_endpoint.as_ref().map(EndpointOut::new),
            name: &s.name,
            parent_id: s.parent_id.map(Text),
            remote_endpoint: s.remote_endpoint.as_ref().map(EndpointOut::new),
            shared: s.shared,
            tags: TagsOut(&s.tags),
            timestamp: s.timestamp_us,
            trace_id: Text(ShortTraceId(s.trace_id)),
        }
    }
}

impl<'a> EndpointOut<'a> {
    fn new(ep: &'a Endpoint<'a>) -> Self {
        EndpointOut {
            ipv4: ep.ipv4.map(Text),
            ipv6: ep.ipv6.map(Text),
            port: ep.port,
            service_name: &ep.service_name,
        }
    }
}
