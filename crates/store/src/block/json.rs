//! The JSON text blocks store attributes, events and links in.
//!
//! Parquet columns hold these as JSON so DuckDB, Spark or pandas users can query them directly
//! (`json_extract(attributes, '$."http.method"')`), while every [`AnyValue`] still round-trips
//! exactly:
//!
//! - attributes are a JSON object, keys in their original order (duplicates kept);
//! - strings, bools, arrays and nested maps are plain JSON; ints are JSON integers and finite
//!   doubles always carry a `.` or an exponent (`1.0`), so the two never mix up;
//! - the values plain JSON cannot hold are one-key tagged objects: `{"$bytes":"<hex>"}`,
//!   `{"$double":"NaN"|"inf"|"-inf"}`; a nested map that would look like such a tag is wrapped
//!   as `{"$kvlist":{...}}`.
//!
//! Events are `[{"time_unix_nano":..,"name":..,"attributes":{..},"dropped_attributes_count":..}]`
//! and links `[{"trace_id":"<hex>","span_id":"<hex>","trace_state":..,"attributes":{..},
//! "dropped_attributes_count":..,"flags":..}]`; zero counts and empty strings are left out.

use std::fmt;

use model::{AnyValue, Event, KeyValue, Link, SpanId, TraceId};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

const TAG_BYTES: &str = "$bytes";
const TAG_DOUBLE: &str = "$double";
const TAG_KVLIST: &str = "$kvlist";

fn is_tag(key: &str) -> bool {
    key == TAG_BYTES || key == TAG_DOUBLE || key == TAG_KVLIST
}

/// Appends `s` as a JSON string literal.
pub(crate) fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_f64(out: &mut String, d: f64) {
    if d.is_nan() {
        out.push_str("{\"$double\":\"NaN\"}");
    } else if d.is_infinite() {
        out.push_str(if d > 0.0 {
            "{\"$double\":\"inf\"}"
        } else {
            "{\"$double\":\"-inf\"}"
        });
    } else {
        // Rust's shortest round-trip formatting; make sure a `.` or exponent is present.
        let s = format!("{d:?}");
        out.push_str(&s);
        if !s.contains(['.', 'e', 'E']) {
            out.push_str(".0");
        }
    }
}

fn write_value(out: &mut String, v: &AnyValue) {
    match v {
        AnyValue::String(s) => write_str(out, s),
        AnyValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        AnyValue::Int(i) => out.push_str(&i.to_string()),
        AnyValue::Double(d) => write_f64(out, *d),
        AnyValue::Bytes(b) => {
            out.push_str("{\"$bytes\":\"");
            out.push_str(&hex::encode(b));
            out.push_str("\"}");
        }
        AnyValue::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        AnyValue::KvList(kvs) => {
            let wrap = kvs.len() == 1 && is_tag(&kvs[0].key);
            if wrap {
                out.push_str("{\"$kvlist\":");
            }
            write_kvs(out, kvs);
            if wrap {
                out.push('}');
            }
        }
    }
}

/// Appends attributes as a JSON object.
pub(crate) fn write_kvs(out: &mut String, kvs: &[KeyValue]) {
    out.push('{');
    for (i, kv) in kvs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, &kv.key);
        out.push(':');
        write_value(out, &kv.value);
    }
    out.push('}');
}

fn write_u64_field(out: &mut String, name: &str, v: u64) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
    out.push_str(&v.to_string());
}

pub(crate) fn write_events(out: &mut String, events: &[Event]) {
    out.push('[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"time_unix_nano\":");
        out.push_str(&e.time_unix_nano.to_string());
        out.push_str(",\"name\":");
        write_str(out, &e.name);
        if !e.attributes.is_empty() {
            out.push_str(",\"attributes\":");
            write_kvs(out, &e.attributes);
        }
        if e.dropped_attributes_count != 0 {
            write_u64_field(
                out,
                "dropped_attributes_count",
                e.dropped_attributes_count.into(),
            );
        }
        out.push('}');
    }
    out.push(']');
}

pub(crate) fn write_links(out: &mut String, links: &[Link]) {
    out.push('[');
    for (i, l) in links.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"trace_id\":\"");
        out.push_str(&hex::encode(l.trace_id.as_bytes()));
        out.push_str("\",\"span_id\":\"");
        out.push_str(&hex::encode(l.span_id.as_bytes()));
        out.push('"');
        if !l.trace_state.is_empty() {
            out.push_str(",\"trace_state\":");
            write_str(out, &l.trace_state);
        }
        if !l.attributes.is_empty() {
            out.push_str(",\"attributes\":");
            write_kvs(out, &l.attributes);
        }
        if l.dropped_attributes_count != 0 {
            write_u64_field(
                out,
                "dropped_attributes_count",
                l.dropped_attributes_count.into(),
            );
        }
        if l.flags != 0 {
            write_u64_field(out, "flags", l.flags.into());
        }
        out.push('}');
    }
    out.push(']');
}

/// A parsed JSON tree that keeps object key order and duplicates, and ints apart from floats.
#[derive(Debug)]
enum J {
    Null,
    Str(String),
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

struct JVisitor;

impl<'de> Visitor<'de> for JVisitor {
    type Value = J;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<J, E> {
        Ok(J::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<J, E> {
        Ok(J::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<J, E> {
        Ok(J::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<J, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => J::Int(i),
            Err(_) => J::UInt(v),
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<J, E> {
        Ok(J::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<J, E> {
        Ok(J::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<J, E> {
        Ok(J::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<J>()? {
            items.push(item);
        }
        Ok(J::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<J>()?;
            entries.push((key, value));
        }
        Ok(J::Obj(entries))
    }
}

impl<'de> serde::Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        d.deserialize_any(JVisitor)
    }
}

/// Why a stored JSON column could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct JsonError(String);

fn bad(what: impl Into<String>) -> JsonError {
    JsonError(what.into())
}

fn parse(text: &str) -> Result<J, JsonError> {
    serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))
}

fn to_value(j: J) -> Result<AnyValue, JsonError> {
    Ok(match j {
        J::Str(s) => AnyValue::String(s),
        J::Bool(b) => AnyValue::Bool(b),
        J::Int(i) => AnyValue::Int(i),
        J::Float(f) => AnyValue::Double(f),
        J::UInt(u) => return Err(bad(format!("integer {u} out of range"))),
        J::Null => return Err(bad("null is not an attribute value")),
        J::Arr(items) => {
            AnyValue::Array(items.into_iter().map(to_value).collect::<Result<_, _>>()?)
        }
        J::Obj(mut entries) => {
            if entries.len() == 1 && is_tag(&entries[0].0) {
                let (tag, inner) = entries.pop().ok_or_else(|| bad("empty tag"))?;
                return tagged(&tag, inner);
            }
            AnyValue::KvList(to_kvs_entries(entries)?)
        }
    })
}

fn tagged(tag: &str, inner: J) -> Result<AnyValue, JsonError> {
    match (tag, inner) {
        (TAG_BYTES, J::Str(h)) => hex::decode(&h)
            .map(AnyValue::Bytes)
            .map_err(|_| bad(format!("bad hex in $bytes: {h:?}"))),
        (TAG_DOUBLE, J::Str(s)) => match s.as_str() {
            "NaN" => Ok(AnyValue::Double(f64::NAN)),
            "inf" => Ok(AnyValue::Double(f64::INFINITY)),
            "-inf" => Ok(AnyValue::Double(f64::NEG_INFINITY)),
            other => Err(bad(format!("bad $double {other:?}"))),
        },
        (TAG_KVLIST, J::Obj(entries)) => Ok(AnyValue::KvList(to_kvs_entries(entries)?)),
        (tag, other) => Err(bad(format!("bad tagged value {tag}: {other:?}"))),
    }
}

fn to_kvs_entries(entries: Vec<(String, J)>) -> Result<Vec<KeyValue>, JsonError> {
    entries
        .into_iter()
        .map(|(key, v)| {
            Ok(KeyValue {
                key,
                value: to_value(v)?,
            })
        })
        .collect()
}

fn to_kvs(j: J) -> Result<Vec<KeyValue>, JsonError> {
    match j {
        J::Obj(entries) => to_kvs_entries(entries),
        J::Null => Ok(Vec::new()),
        other => Err(bad(format!("attributes must be an object, got {other:?}"))),
    }
}

/// Reads attributes written by [`write_kvs`]; empty text means none.
pub(crate) fn read_kvs(text: &str) -> Result<Vec<KeyValue>, JsonError> {
    if text.is_empty() || text == "{}" {
        return Ok(Vec::new());
    }
    to_kvs(parse(text)?)
}

fn u64_of(j: J, what: &str) -> Result<u64, JsonError> {
    match j {
        J::Int(i) if i >= 0 => Ok(i as u64),
        J::UInt(u) => Ok(u),
        other => Err(bad(format!(
            "{what} must be a non-negative integer, got {other:?}"
        ))),
    }
}

fn u32_of(j: J, what: &str) -> Result<u32, JsonError> {
    u32::try_from(u64_of(j, what)?).map_err(|_| bad(format!("{what} out of range")))
}

fn string_of(j: J, what: &str) -> Result<String, JsonError> {
    match j {
        J::Str(s) => Ok(s),
        other => Err(bad(format!("{what} must be a string, got {other:?}"))),
    }
}

fn objects(text: &str, what: &str) -> Result<Vec<Vec<(String, J)>>, JsonError> {
    if text.is_empty() || text == "[]" {
        return Ok(Vec::new());
    }
    match parse(text)? {
        J::Arr(items) => items
            .into_iter()
            .map(|item| match item {
                J::Obj(fields) => Ok(fields),
                other => Err(bad(format!(
                    "{what} entry must be an object, got {other:?}"
                ))),
            })
            .collect(),
        other => Err(bad(format!("{what} must be an array, got {other:?}"))),
    }
}

pub(crate) fn read_events(text: &str) -> Result<Vec<Event>, JsonError> {
    objects(text, "events")?
        .into_iter()
        .map(|fields| {
            let mut e = Event::default();
            for (k, v) in fields {
                match k.as_str() {
                    "time_unix_nano" => e.time_unix_nano = u64_of(v, "event time")?,
                    "name" => e.name = string_of(v, "event name")?,
                    "attributes" => e.attributes = to_kvs(v)?,
                    "dropped_attributes_count" => {
                        e.dropped_attributes_count = u32_of(v, "dropped count")?
                    }
                    _ => {}
                }
            }
            Ok(e)
        })
        .collect()
}

pub(crate) fn read_links(text: &str) -> Result<Vec<Link>, JsonError> {
    objects(text, "links")?
        .into_iter()
        .map(|fields| {
            let mut l = Link::default();
            for (k, v) in fields {
                match k.as_str() {
                    "trace_id" => {
                        let h = string_of(v, "link trace id")?;
                        let mut b = [0u8; 16];
                        hex::decode_to_slice(&h, &mut b)
                            .map_err(|_| bad(format!("bad link trace id {h:?}")))?;
                        l.trace_id = TraceId::from_bytes(b);
                    }
                    "span_id" => {
                        let h = string_of(v, "link span id")?;
                        let mut b = [0u8; 8];
                        hex::decode_to_slice(&h, &mut b)
                            .map_err(|_| bad(format!("bad link span id {h:?}")))?;
                        l.span_id = SpanId::from_bytes(b);
                    }
                    "trace_state" => l.trace_state = string_of(v, "link trace state")?,
                    "attributes" => l.attributes = to_kvs(v)?,
                    "dropped_attributes_count" => {
                        l.dropped_attributes_count = u32_of(v, "dropped count")?
                    }
                    "flags" => l.flags = u32_of(v, "link flags")?,
                    _ => {}
                }
            }
            Ok(l)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kvs_round_trip(kvs: Vec<KeyValue>) {
        let mut s = String::new();
        write_kvs(&mut s, &kvs);
        let back = read_kvs(&s).unwrap();
        // NaN != NaN, so compare the printed forms as well as equality where possible.
        assert_eq!(format!("{back:?}"), format!("{kvs:?}"), "{s}");
    }

    #[test]
    fn every_value_kind_round_trips() {
        kvs_round_trip(vec![
            KeyValue::new("s", "text \"quoted\" \n\u{1} é"),
            KeyValue::new("b", true),
            KeyValue::new("i", -42i64),
            KeyValue::new("imax", i64::MAX),
            KeyValue::new("imin", i64::MIN),
            KeyValue::new("d", 1.0f64),
            KeyValue::new("d2", 0.1f64 + 0.2),
            KeyValue::new("d3", 1e300f64),
            KeyValue::new("d4", -0.0f64),
            KeyValue::new("d5", 5e-324f64),
            KeyValue::new("nan", f64::NAN),
            KeyValue::new("inf", f64::INFINITY),
            KeyValue::new("ninf", f64::NEG_INFINITY),
            KeyValue::new("bytes", AnyValue::Bytes(vec![0, 1, 254, 255])),
            KeyValue::new("empty_bytes", AnyValue::Bytes(vec![])),
            KeyValue::new(
                "arr",
                AnyValue::Array(vec![1i64.into(), 1.0f64.into(), "x".into()]),
            ),
            KeyValue::new("empty_arr", AnyValue::Array(vec![])),
            KeyValue::new("empty_map", AnyValue::KvList(vec![])),
            KeyValue::new(
                "map",
                AnyValue::KvList(vec![
                    KeyValue::new("a", AnyValue::Array(vec![AnyValue::KvList(vec![])])),
                    KeyValue::new("a", 2i64),
                ]),
            ),
            KeyValue::new(
                "looks_tagged",
                AnyValue::KvList(vec![KeyValue::new("$bytes", "00")]),
            ),
            KeyValue::new(
                "nested_tag",
                AnyValue::KvList(vec![KeyValue::new(
                    "$kvlist",
                    AnyValue::KvList(vec![KeyValue::new("$double", "NaN")]),
                )]),
            ),
            KeyValue::new("dup", 1i64),
            KeyValue::new("dup", 2i64),
            KeyValue::new("$bytes", "top-level keys are never tags"),
        ]);
        kvs_round_trip(vec![]);
        kvs_round_trip(vec![KeyValue::new("$double", "x")]);
    }

    #[test]
    fn events_and_links_round_trip() {
        let events = vec![
            Event {
                time_unix_nano: u64::MAX,
                name: "exception".into(),
                attributes: vec![KeyValue::new("exception.type", "E")],
                dropped_attributes_count: 3,
            },
            Event::default(),
        ];
        let mut s = String::new();
        write_events(&mut s, &events);
        assert_eq!(read_events(&s).unwrap(), events);
        let links = vec![
            Link {
                trace_id: TraceId::from_halves(1, 2),
                span_id: SpanId::from_u64(3),
                trace_state: "a=b".into(),
                attributes: vec![KeyValue::new("k", AnyValue::Bytes(vec![9]))],
                dropped_attributes_count: 1,
                flags: 0x301,
            },
            Link::default(),
        ];
        let mut s = String::new();
        write_links(&mut s, &links);
        assert_eq!(read_links(&s).unwrap(), links);
    }

    #[test]
    fn corrupt_text_is_an_error_not_a_panic() {
        for bad in [
            "{",
            "[1]",
            "{\"a\":null}",
            "{\"a\":{\"$bytes\":\"zz\"}}",
            "{\"a\":18446744073709551615}",
        ] {
            assert!(read_kvs(bad).is_err(), "{bad}");
        }
        assert!(read_events("[1]").is_err());
        assert!(read_links("[{\"trace_id\":\"00\"}]").is_err());
    }
}
