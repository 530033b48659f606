//! OTTL's converters: functions that compute a value from paths and literals without changing
//! the telemetry, used as values (`set(attributes["route"], ToLowerCase(name))`) and in
//! conditions (`Len(name) > 100`, `HasPrefix(name, "GET ")`).
//!
//! Each follows the OTel Collector's `ottlfuncs`: the conversions (`Int`, `Double`, `String`)
//! give `nil` for what they cannot convert, so a `set` of it does nothing; the string functions
//! are strict and fail on anything but a string (their statement then follows `error_mode`).
//! Lengths and offsets count bytes, as Go's strings do. `Format` writes as Go's `fmt.Sprintf`
//! (`go_fmt`), `FNV` hashes as Go's `hash/fnv` (FNV-1a, 64 bits, as a signed int), and
//! `ParseJSON` gives a map (or list) whose numbers are doubles, as Go's JSON decoding does.

use model::AnyValue;
use sha1::Digest;

use super::{Operand, SpanContext, Value};

/// A converter and its arguments, checked for number when parsed.
#[derive(Debug)]
pub struct Call {
    func: Func,
    args: Vec<Operand>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Func {
    Concat,
    Len,
    ToLowerCase,
    ToUpperCase,
    Substring,
    Sha1,
    Sha256,
    Int,
    Double,
    String,
    HasPrefix,
    HasSuffix,
    Trim,
    TrimPrefix,
    TrimSuffix,
    Split,
    IsString,
    IsInt,
    IsDouble,
    IsBool,
    IsMap,
    IsList,
    IsRootSpan,
    Fnv,
    Format,
    ParseJson,
}

/// The converters built, for the message naming one that is not.
pub const BUILT: &str = "Concat, Len, ToLowerCase, ToUpperCase, Substring, SHA1, SHA256, Int, \
    Double, String, HasPrefix, HasSuffix, Trim, TrimPrefix, TrimSuffix, Split, IsString, IsInt, \
    IsDouble, IsBool, IsMap, IsList, IsRootSpan, IsMatch, FNV, Format, ParseJSON";

impl Call {
    /// The call of converter `name` with `args`; an error names an unknown converter or a wrong
    /// number of arguments. `span_context`: whether span paths (and `IsRootSpan`) exist.
    pub fn new(name: &str, args: Vec<Operand>, span_context: bool) -> Result<Call, String> {
        let (func, min, max) = match name {
            "Concat" => (Func::Concat, 2, 2),
            "Len" => (Func::Len, 1, 1),
            "ToLowerCase" => (Func::ToLowerCase, 1, 1),
            "ToUpperCase" => (Func::ToUpperCase, 1, 1),
            "Substring" => (Func::Substring, 3, 4),
            "SHA1" => (Func::Sha1, 1, 1),
            "SHA256" => (Func::Sha256, 1, 1),
            "Int" => (Func::Int, 1, 1),
            "Double" => (Func::Double, 1, 1),
            "String" => (Func::String, 1, 1),
            "HasPrefix" => (Func::HasPrefix, 2, 2),
            "HasSuffix" => (Func::HasSuffix, 2, 2),
            "Trim" => (Func::Trim, 1, 2),
            "TrimPrefix" => (Func::TrimPrefix, 2, 2),
            "TrimSuffix" => (Func::TrimSuffix, 2, 2),
            "Split" => (Func::Split, 2, 2),
            "IsString" => (Func::IsString, 1, 1),
            "IsInt" => (Func::IsInt, 1, 1),
            "IsDouble" => (Func::IsDouble, 1, 1),
            "IsBool" => (Func::IsBool, 1, 1),
            "IsMap" => (Func::IsMap, 1, 1),
            "IsList" => (Func::IsList, 1, 1),
            "FNV" => (Func::Fnv, 1, 1),
            "Format" => (Func::Format, 2, 2),
            "ParseJSON" => (Func::ParseJson, 1, 1),
            "IsRootSpan" if span_context => (Func::IsRootSpan, 0, 0),
            "IsRootSpan" => return Err("IsRootSpan exists in the span context only".into()),
            other => return Err(format!("the converter {other} is not built ({BUILT} are)")),
        };
        if args.len() < min || args.len() > max {
            let wanted = if min == max {
                format!("{min}")
            } else {
                format!("{min} or {max}")
            };
            return Err(format!(
                "{name} takes {wanted} argument{}, given {}",
                if max == 1 { "" } else { "s" },
                args.len()
            ));
        }
        if func == Func::Concat && !matches!(args[0], Operand::List(_)) {
            return Err("Concat takes a list of values first: Concat([a, b], \"-\")".into());
        }
        if func == Func::Format && !matches!(args[1], Operand::List(_)) {
            return Err("Format takes a list of values second: Format(\"%s-%d\", [a, b])".into());
        }
        Ok(Call { func, args })
    }

    /// Whether it yields a boolean, so that it can stand alone as a condition.
    pub fn is_predicate(&self) -> bool {
        matches!(
            self.func,
            Func::HasPrefix
                | Func::HasSuffix
                | Func::IsString
                | Func::IsInt
                | Func::IsDouble
                | Func::IsBool
                | Func::IsMap
                | Func::IsList
                | Func::IsRootSpan
        )
    }

    pub fn eval(&self, cx: &SpanContext<'_>) -> Result<Value, String> {
        let arg = |i: usize| self.args[i].value(cx);
        Ok(match self.func {
            Func::Concat => {
                let Operand::List(items) = &self.args[0] else {
                    return Err("Concat takes a list".into()); // checked when parsed
                };
                let delimiter = string(self.func, arg(1)?)?;
                let mut out = String::new();
                let mut first = true;
                for item in items {
                    let Some(text) = concat_text(item.value(cx)?) else {
                        continue; // lists and maps are left out
                    };
                    if !first {
                        out.push_str(&delimiter);
                    }
                    first = false;
                    out.push_str(&text);
                }
                Value::Str(out)
            }
            Func::Len => Value::Int(match arg(0)? {
                Value::Str(s) => s.len() as i64,
                Value::Other(AnyValue::Array(a)) => a.len() as i64,
                Value::Other(AnyValue::KvList(m)) => m.len() as i64,
                other => {
                    return Err(format!(
                        "Len takes a string, list or map, not {}",
                        kind(&other)
                    ))
                }
            }),
            Func::ToLowerCase => Value::Str(string(self.func, arg(0)?)?.to_lowercase()),
            Func::ToUpperCase => Value::Str(string(self.func, arg(0)?)?.to_uppercase()),
            Func::Substring => {
                let s = string(self.func, arg(0)?)?;
                let start = int(self.func, "start", arg(1)?)?;
                let length = int(self.func, "length", arg(2)?)?;
                let safe = match self.args.get(3) {
                    None => false,
                    Some(a) => match a.value(cx)? {
                        Value::Bool(b) => b,
                        other => {
                            return Err(format!(
                                "Substring's utf8_safe must be a bool, not {}",
                                kind(&other)
                            ))
                        }
                    },
                };
                substring(&s, start, length, safe)?
            }
            Func::Sha1 => Value::Str(digest::<sha1::Sha1>(&string(self.func, arg(0)?)?)),
            Func::Sha256 => Value::Str(digest::<sha2::Sha256>(&string(self.func, arg(0)?)?)),
            Func::Int => match arg(0)? {
                Value::Int(i) => Value::Int(i),
                // Truncated toward zero; out of range saturates (Go's conversion is undefined there).
                Value::Float(f) if f.is_finite() => Value::Int(f as i64),
                Value::Str(s) => s.trim().parse().map_or(Value::Nil, Value::Int),
                Value::Bool(b) => Value::Int(i64::from(b)),
                _ => Value::Nil,
            },
            Func::Double => match arg(0)? {
                Value::Float(f) => Value::Float(f),
                Value::Int(i) => Value::Float(i as f64),
                Value::Str(s) => s.trim().parse().map_or(Value::Nil, Value::Float),
                Value::Bool(b) => Value::Float(if b { 1.0 } else { 0.0 }),
                _ => Value::Nil,
            },
            Func::String => match arg(0)? {
                Value::Nil => Value::Nil,
                Value::Other(AnyValue::Bytes(b)) => Value::Str(hex::encode(b)),
                Value::Other(v) => Value::Str(v.to_string()),
                other => Value::Str(concat_text(other).unwrap_or_default()),
            },
            Func::HasPrefix => {
                let s = string(self.func, arg(0)?)?;
                Value::Bool(s.starts_with(&string(self.func, arg(1)?)?))
            }
            Func::HasSuffix => {
                let s = string(self.func, arg(0)?)?;
                Value::Bool(s.ends_with(&string(self.func, arg(1)?)?))
            }
            Func::Trim => {
                let s = string(self.func, arg(0)?)?;
                let cut = match self.args.get(1) {
                    None => " ".to_owned(),
                    Some(a) => string(self.func, a.value(cx)?)?,
                };
                Value::Str(s.trim_matches(|c| cut.contains(c)).to_owned())
            }
            Func::TrimPrefix => {
                let s = string(self.func, arg(0)?)?;
                let prefix = string(self.func, arg(1)?)?;
                Value::Str(s.strip_prefix(&*prefix).unwrap_or(&s).to_owned())
            }
            Func::TrimSuffix => {
                let s = string(self.func, arg(0)?)?;
                let suffix = string(self.func, arg(1)?)?;
                Value::Str(s.strip_suffix(&*suffix).unwrap_or(&s).to_owned())
            }
            Func::Split => {
                let s = string(self.func, arg(0)?)?;
                let delimiter = string(self.func, arg(1)?)?;
                let parts: Vec<AnyValue> = if delimiter.is_empty() {
                    // Go's strings.Split with "" splits after each character.
                    s.chars().map(|c| AnyValue::String(c.to_string())).collect()
                } else {
                    s.split(&*delimiter)
                        .map(|p| AnyValue::String(p.to_owned()))
                        .collect()
                };
                Value::Other(AnyValue::Array(parts))
            }
            Func::IsString => Value::Bool(matches!(arg(0)?, Value::Str(_))),
            Func::IsInt => Value::Bool(matches!(arg(0)?, Value::Int(_))),
            Func::IsDouble => Value::Bool(matches!(arg(0)?, Value::Float(_))),
            Func::IsBool => Value::Bool(matches!(arg(0)?, Value::Bool(_))),
            Func::IsMap => Value::Bool(matches!(arg(0)?, Value::Other(AnyValue::KvList(_)))),
            Func::IsList => Value::Bool(matches!(arg(0)?, Value::Other(AnyValue::Array(_)))),
            Func::IsRootSpan => Value::Bool(cx.span.is_some_and(|s| s.parent_span_id.is_none())),
            Func::Fnv => {
                let s = string(self.func, arg(0)?)?;
                if s.is_empty() {
                    // As ottlfuncs: the empty string hashes to itself.
                    return Ok(Value::Str(s));
                }
                Value::Int(fnv1a_64(s.as_bytes()) as i64)
            }
            Func::Format => {
                let format = string(self.func, arg(0)?)?;
                let Operand::List(items) = &self.args[1] else {
                    return Err("Format takes a list".into()); // checked when parsed
                };
                let values = items
                    .iter()
                    .map(|i| i.value(cx))
                    .collect::<Result<Vec<_>, _>>()?;
                Value::Str(super::go_fmt::sprintf(&format, &values))
            }
            Func::ParseJson => {
                let s = string(self.func, arg(0)?)?;
                let parsed: serde_json::Value =
                    serde_json::from_str(&s).map_err(|e| format!("ParseJSON: not JSON ({e})"))?;
                match parsed {
                    v @ (serde_json::Value::Object(_) | serde_json::Value::Array(_)) => {
                        Value::Other(from_json(v).unwrap_or(AnyValue::KvList(Vec::new())))
                    }
                    _ => return Err("ParseJSON takes a JSON object or array".into()),
                }
            }
        })
    }
}

fn name(f: Func) -> &'static str {
    match f {
        Func::Sha1 => "SHA1",
        Func::Sha256 => "SHA256",
        Func::ToLowerCase => "ToLowerCase",
        Func::ToUpperCase => "ToUpperCase",
        Func::Substring => "Substring",
        Func::HasPrefix => "HasPrefix",
        Func::HasSuffix => "HasSuffix",
        Func::Trim => "Trim",
        Func::TrimPrefix => "TrimPrefix",
        Func::TrimSuffix => "TrimSuffix",
        Func::Split => "Split",
        Func::Concat => "Concat",
        Func::Fnv => "FNV",
        Func::Format => "Format",
        Func::ParseJson => "ParseJSON",
        _ => "the converter",
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Str(_) => "a string",
        Value::Int(_) => "an int",
        Value::Float(_) => "a double",
        Value::Bool(_) => "a bool",
        Value::Other(AnyValue::Array(_)) => "a list",
        Value::Other(AnyValue::KvList(_)) => "a map",
        Value::Other(_) => "bytes",
    }
}

/// A string argument; anything else fails the call.
fn string(f: Func, v: Value) -> Result<String, String> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(format!("{} takes a string, not {}", name(f), kind(&other))),
    }
}

fn int(f: Func, what: &str, v: Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(i),
        other => Err(format!(
            "{}'s {what} must be an int, not {}",
            name(f),
            kind(&other)
        )),
    }
}

/// A value as Concat writes it: `None` for lists and maps (left out).
/// FNV-1a, 64 bits (Go's `hash/fnv.New64a`, which `FNV` uses).
fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A parsed JSON value as telemetry holds it (ParseJSON's mapping: numbers are doubles, as
/// Go's decoder gives them; `null` has no attribute value and is left out).
fn from_json(v: serde_json::Value) -> Option<AnyValue> {
    Some(match v {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => AnyValue::Bool(b),
        serde_json::Value::Number(n) => AnyValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => AnyValue::String(s),
        serde_json::Value::Array(items) => {
            AnyValue::Array(items.into_iter().filter_map(from_json).collect())
        }
        serde_json::Value::Object(fields) => AnyValue::KvList(
            fields
                .into_iter()
                .filter_map(|(k, v)| Some(model::KeyValue::new(k, from_json(v)?)))
                .collect(),
        ),
    })
}

fn concat_text(v: Value) -> Option<String> {
    Some(match v {
        Value::Nil => "<nil>".to_owned(),
        Value::Str(s) => s,
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Other(AnyValue::Bytes(b)) => hex::encode(b),
        Value::Other(_) => return None,
    })
}

/// `length` bytes of `s` from byte `start`; out of range is an error. With `utf8_safe` the
/// ends move inward to character boundaries; without, a cut character becomes U+FFFD.
fn substring(s: &str, start: i64, length: i64, utf8_safe: bool) -> Result<Value, String> {
    let (Ok(from), Ok(n)) = (usize::try_from(start), usize::try_from(length)) else {
        return Err(format!(
            "Substring: start {start} and length {length} must not be negative"
        ));
    };
    if n == 0 {
        return Err("Substring: length must be more than 0".into());
    }
    let to = from
        .checked_add(n)
        .filter(|&to| to <= s.len())
        .ok_or_else(|| {
            format!(
                "Substring: {length} bytes from {start} run past the end ({} bytes)",
                s.len()
            )
        })?;
    if utf8_safe {
        let mut a = from;
        while !s.is_char_boundary(a) {
            a += 1;
        }
        let mut b = to;
        while !s.is_char_boundary(b) {
            b -= 1;
        }
        return Ok(Value::Str(s.get(a..b.max(a)).unwrap_or("").to_owned()));
    }
    Ok(Value::Str(
        String::from_utf8_lossy(&s.as_bytes()[from..to]).into_owned(),
    ))
}

/// The lower-case hex digest of `s`; the empty string stays empty, as OTTL's.
fn digest<D: Digest>(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    hex::encode(D::digest(s.as_bytes()))
}
