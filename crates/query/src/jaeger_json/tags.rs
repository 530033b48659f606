//! Typed Jaeger tags (`{"key","type","value"}`) from OTLP attribute values.
//!
//! The mapping is the OpenTelemetry Collector's Jaeger translator's (which Jaeger itself uses for
//! OTLP data): string, bool, int64, float64 and binary map to the same-named Jaeger types; arrays
//! and maps become string tags holding their JSON text. Values are then written the way Jaeger's
//! `model/converter/json` writes them: int64 as a JSON number unless it is outside JavaScript's
//! safe integer range (then as a decimal string, so the UI does not round it), binary as base64
//! (Go's encoding of `[]byte`).

use base64::Engine as _;
use model::{AnyValue, KeyValue};
use serde::Serialize;
use serde_json::Value;

/// Largest integer a JavaScript number holds exactly (2^53 - 1).
const JS_MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// One Jaeger tag, log field or process tag.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tag {
    pub key: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value: Value,
}

impl Tag {
    pub fn string(key: impl Into<String>, value: impl Into<String>) -> Self {
        Tag {
            key: key.into(),
            kind: "string",
            value: Value::String(value.into()),
        }
    }

    pub fn bool(key: impl Into<String>, value: bool) -> Self {
        Tag {
            key: key.into(),
            kind: "bool",
            value: Value::Bool(value),
        }
    }

    pub fn int64(key: impl Into<String>, value: i64) -> Self {
        let value = if (-JS_MAX_SAFE_INTEGER..=JS_MAX_SAFE_INTEGER).contains(&value) {
            Value::from(value)
        } else {
            Value::String(value.to_string())
        };
        Tag {
            key: key.into(),
            kind: "int64",
            value,
        }
    }

    /// Typed tag from an attribute.
    pub fn from_attribute(kv: &KeyValue) -> Self {
        let key = kv.key.clone();
        match &kv.value {
            AnyValue::String(s) => Tag::string(key, s.clone()),
            AnyValue::Bool(b) => Tag::bool(key, *b),
            AnyValue::Int(i) => Tag::int64(key, *i),
            AnyValue::Double(d) => Tag {
                key,
                kind: "float64",
                // JSON has no NaN or infinities: those are written as text.
                value: serde_json::Number::from_f64(*d)
                    .map(Value::Number)
                    .unwrap_or_else(|| Value::String(d.to_string())),
            },
            AnyValue::Bytes(b) => Tag {
                key,
                kind: "binary",
                value: Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            },
            nested @ (AnyValue::Array(_) | AnyValue::KvList(_)) => {
                Tag::string(key, to_json(nested).to_string())
            }
        }
    }
}

/// The raw JSON form of a value, as the collector's `Value.AsString()` writes nested values:
/// scalars as themselves, bytes as base64, arrays as arrays, maps as objects.
pub fn to_json(value: &AnyValue) -> Value {
    match value {
        AnyValue::String(s) => Value::String(s.clone()),
        AnyValue::Bool(b) => Value::Bool(*b),
        AnyValue::Int(i) => Value::from(*i),
        AnyValue::Double(d) => serde_json::Number::from_f64(*d)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(d.to_string())),
        AnyValue::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        AnyValue::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        AnyValue::KvList(kvs) => Value::Object(
            kvs.iter()
                .map(|kv| (kv.key.clone(), to_json(&kv.value)))
                .collect(),
        ),
    }
}

/// Sorts tags by key (stable), as Jaeger's `SortTagsAndLogFields` adjuster.
pub fn sort_tags(tags: &mut [Tag]) {
    tags.sort_by(|a, b| a.key.cmp(&b.key));
}

/// Log fields: the string `event` field first, the rest sorted by key (Jaeger's adjuster).
pub fn sort_log_fields(fields: &mut [Tag]) {
    let offset = match fields
        .iter()
        .position(|f| f.key == "event" && f.kind == "string")
    {
        Some(i) => {
            fields.swap(0, i);
            1
        }
        None => 0,
    };
    sort_tags(&mut fields[offset..]);
}

/// Jaeger's `IPTagAdjuster`: `ip` and `peer.ipv4` tags reported as integers are shown as dotted
/// IPv4 text.
pub fn adjust_ip_tags(tags: &mut [Tag]) {
    for tag in tags.iter_mut() {
        if (tag.key == "ip" || tag.key == "peer.ipv4") && tag.kind == "int64" {
            if let Some(n) = tag.value.as_i64() {
                // Jaeger keeps the low 32 bits.
                let ip = std::net::Ipv4Addr::from(n as u32);
                *tag = Tag::string(tag.key.clone(), ip.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tag_json(kv: KeyValue) -> Value {
        serde_json::to_value(Tag::from_attribute(&kv)).unwrap()
    }

    #[test]
    fn every_scalar_type_is_typed() {
        assert_eq!(
            tag_json(KeyValue::new("s", "GET")),
            json!({"key": "s", "type": "string", "value": "GET"})
        );
        assert_eq!(
            tag_json(KeyValue::new("b", true)),
            json!({"key": "b", "type": "bool", "value": true})
        );
        assert_eq!(
            tag_json(KeyValue::new("i", 500i64)),
            json!({"key": "i", "type": "int64", "value": 500})
        );
        assert_eq!(
            tag_json(KeyValue::new("f", 1.5f64)),
            json!({"key": "f", "type": "float64", "value": 1.5})
        );
        assert_eq!(
            tag_json(KeyValue::new("x", AnyValue::Bytes(vec![0, 0, 0x30, 0x39]))),
            json!({"key": "x", "type": "binary", "value": "AAAwOQ=="})
        );
    }

    #[test]
    fn big_integers_and_non_finite_floats_stay_exact() {
        assert_eq!(
            tag_json(KeyValue::new("i", i64::MAX)),
            json!({"key": "i", "type": "int64", "value": "9223372036854775807"})
        );
        assert_eq!(
            tag_json(KeyValue::new("i", -(1i64 << 53) + 1)),
            json!({"key": "i", "type": "int64", "value": -9007199254740991i64})
        );
        assert_eq!(
            tag_json(KeyValue::new("f", f64::NAN)),
            json!({"key": "f", "type": "float64", "value": "NaN"})
        );
    }

    #[test]
    fn nested_values_become_json_text() {
        let v = AnyValue::KvList(vec![
            KeyValue::new("a", 1i64),
            KeyValue::new(
                "b",
                AnyValue::Array(vec!["x\"y".into(), true.into(), AnyValue::Bytes(vec![1])]),
            ),
        ]);
        assert_eq!(
            tag_json(KeyValue::new("n", v)),
            json!({"key": "n", "type": "string", "value": r#"{"a":1,"b":["x\"y",true,"AQ=="]}"#})
        );
        assert_eq!(
            tag_json(KeyValue::new(
                "arr",
                AnyValue::Array(vec![1i64.into(), 2.5f64.into()])
            )),
            json!({"key": "arr", "type": "string", "value": "[1,2.5]"})
        );
    }

    #[test]
    fn sorting_and_ip_adjustment() {
        let mut fields = vec![
            Tag::string("z", "1"),
            Tag::string("a", "2"),
            Tag::string("event", "boom"),
        ];
        sort_log_fields(&mut fields);
        let keys: Vec<_> = fields.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["event", "a", "z"]);

        let mut tags = vec![Tag::int64("peer.ipv4", 0x7f000001), Tag::int64("port", 80)];
        adjust_ip_tags(&mut tags);
        assert_eq!(tags[0], Tag::string("peer.ipv4", "127.0.0.1"));
        assert_eq!(tags[1], Tag::int64("port", 80));
    }
}
