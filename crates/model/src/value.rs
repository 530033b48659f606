//! Typed attribute values, as OTLP's `AnyValue`.

use std::fmt;

/// An attribute value. Integers are 64-bit signed and floats 64-bit, as in OTLP.
#[derive(Clone, Debug, PartialEq)]
pub enum AnyValue {
    String(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<AnyValue>),
    KvList(Vec<KeyValue>),
}

/// One attribute: a key and its typed value.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: AnyValue,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<AnyValue>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

impl AnyValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AnyValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AnyValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AnyValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// True when `text` (as a user types it into a tag search, e.g. `http.status_code=500`) names
    /// this value: strings compare exactly, other scalars compare by their printed form.
    pub fn matches_text(&self, text: &str) -> bool {
        match self {
            AnyValue::String(s) => s == text,
            AnyValue::Bool(b) => text.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
            AnyValue::Int(i) => text.parse::<i64>().is_ok_and(|t| t == *i),
            AnyValue::Double(d) => text.parse::<f64>().is_ok_and(|t| t == *d),
            other => other.to_string() == text,
        }
    }
}

/// The value as text: strings bare, bytes as hex, arrays and maps as JSON-like text.
impl fmt::Display for AnyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyValue::String(s) => f.write_str(s),
            AnyValue::Bool(b) => write!(f, "{b}"),
            AnyValue::Int(i) => write!(f, "{i}"),
            AnyValue::Double(d) => write!(f, "{d}"),
            AnyValue::Bytes(b) => f.write_str(&hex::encode(b)),
            AnyValue::Array(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write_nested(f, v)?;
                }
                f.write_str("]")
            }
            AnyValue::KvList(kvs) => {
                f.write_str("{")?;
                for (i, kv) in kvs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{:?}:", kv.key)?;
                    write_nested(f, &kv.value)?;
                }
                f.write_str("}")
            }
        }
    }
}

fn write_nested(f: &mut fmt::Formatter<'_>, v: &AnyValue) -> fmt::Result {
    match v {
        AnyValue::String(s) => write!(f, "{s:?}"),
        other => write!(f, "{other}"),
    }
}

impl From<&str> for AnyValue {
    fn from(s: &str) -> Self {
        AnyValue::String(s.to_owned())
    }
}
impl From<String> for AnyValue {
    fn from(s: String) -> Self {
        AnyValue::String(s)
    }
}
impl From<bool> for AnyValue {
    fn from(b: bool) -> Self {
        AnyValue::Bool(b)
    }
}
impl From<i64> for AnyValue {
    fn from(i: i64) -> Self {
        AnyValue::Int(i)
    }
}
impl From<f64> for AnyValue {
    fn from(d: f64) -> Self {
        AnyValue::Double(d)
    }
}

/// Looks up the first attribute named `key`.
pub(crate) fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_matching_follows_the_value_type() {
        assert!(AnyValue::Int(500).matches_text("500"));
        assert!(!AnyValue::Int(500).matches_text("500x"));
        assert!(AnyValue::Bool(true).matches_text("true"));
        assert!(AnyValue::Double(1.5).matches_text("1.5"));
        assert!(AnyValue::from("GET").matches_text("GET"));
        assert!(!AnyValue::from("GET").matches_text("get"));
    }

    #[test]
    fn nested_values_print_as_json_like_text() {
        let v = AnyValue::KvList(vec![
            KeyValue::new("a", 1i64),
            KeyValue::new("b", AnyValue::Array(vec!["x".into(), true.into()])),
        ]);
        assert_eq!(v.to_string(), r#"{"a":1,"b":["x",true]}"#);
    }
}
