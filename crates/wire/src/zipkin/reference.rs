//! The `serde_json::Value` reader that `json.rs`'s typed reader replaced, kept for tests only:
//! the differential tests in `tests.rs` check that both give the same answer (the same spans, or
//! the same error message) for the same body.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use model::{SpanId, TraceId};
use serde_json::{Map, Value};

use super::span::{Annotation, Endpoint, Kind, ZipkinSpan};
use crate::otlp::json_type;
use crate::WireError;

const FORMAT: &str = "Zipkin";

type Obj = Map<String, Value>;

pub(crate) fn parse(body: &[u8]) -> Result<Vec<ZipkinSpan>, WireError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| WireError::json_syntax(FORMAT, &e))?;
    let Value::Array(items) = value else {
        return Err(WireError::invalid(
            "(root)",
            format!("expected a JSON list of spans, got {}", json_type(&value)),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let path = format!("spans[{i}]");
            let obj = v
                .as_object()
                .ok_or_else(|| expected(&path, "a span object", v))?;
            parse_span(obj, &path)
        })
        .collect()
}

fn expected(path: &str, what: &str, got: &Value) -> WireError {
    WireError::invalid(path, format!("expected {what}, got {}", json_type(got)))
}

/// A member that is absent or `null` is `None`.
fn member<'a>(obj: &'a Obj, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn string<'a>(obj: &'a Obj, key: &str, path: &str) -> Result<Option<&'a str>, WireError> {
    match member(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(expected(&format!("{path}.{key}"), "a string", v)),
    }
}

fn required_string<'a>(obj: &'a Obj, key: &str, path: &str) -> Result<&'a str, WireError> {
    string(obj, key, path)?
        .ok_or_else(|| WireError::invalid(format!("{path}.{key}"), "required field is missing"))
}

/// A non-negative integer; floats are truncated (some clients write `1.5e15` timestamps).
fn unsigned(obj: &Obj, key: &str, path: &str) -> Result<Option<u64>, WireError> {
    let Some(v) = member(obj, key) else {
        return Ok(None);
    };
    let n = match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.is_finite())
                .map(|f| f as u64)
        }),
        _ => None,
    };
    n.map(Some)
        .ok_or_else(|| expected(&format!("{path}.{key}"), "a non-negative integer", v))
}

fn boolean(obj: &Obj, key: &str, path: &str) -> Result<bool, WireError> {
    match member(obj, key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(expected(&format!("{path}.{key}"), "a boolean", v)),
    }
}

fn parse_span(obj: &Obj, path: &str) -> Result<ZipkinSpan, WireError> {
    let field = |key: &str| format!("{path}.{key}");
    let trace_id: TraceId = required_string(obj, "traceId", path)?
        .parse()
        .map_err(|e: model::IdError| WireError::invalid(field("traceId"), e.to_string()))?;
    let id: SpanId = required_string(obj, "id", path)?
        .parse()
        .map_err(|e: model::IdError| WireError::invalid(field("id"), e.to_string()))?;
    let parent_id = match string(obj, "parentId", path)? {
        None => None,
        Some(s) if s.is_empty() || s.bytes().all(|b| b == b'0') => None,
        Some(s) => Some(
            s.parse::<SpanId>()
                .map_err(|e| WireError::invalid(field("parentId"), e.to_string()))?,
        ),
    };
    let annotations = match member(obj, "annotations") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, a)| parse_annotation(a, &format!("{path}.annotations[{i}]")))
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(expected(&field("annotations"), "a list", v)),
    };
    let tags = match member(obj, "tags") {
        None => BTreeMap::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| Ok((k.clone(), tag_value(v, &format!("{path}.tags.{k}"))?)))
            .collect::<Result<_, WireError>>()?,
        Some(v) => return Err(expected(&field("tags"), "an object", v)),
    };
    Ok(ZipkinSpan {
        trace_id,
        id,
        parent_id,
        kind: string(obj, "kind", path)?.and_then(Kind::parse),
        name: string(obj, "name", path)?.unwrap_or_default().to_owned(),
        timestamp_us: unsigned(obj, "timestamp", path)?.filter(|t| *t != 0),
        duration_us: unsigned(obj, "duration", path)?,
        local_endpoint: endpoint(obj, "localEndpoint", path)?,
        remote_endpoint: endpoint(obj, "remoteEndpoint", path)?,
        annotations,
        tags,
        debug: boolean(obj, "debug", path)?,
        shared: boolean(obj, "shared", path)?,
    })
}

/// Tag values are strings in Zipkin; numbers and booleans (sent by some clients) are kept as text.
fn tag_value(v: &Value, path: &str) -> Result<String, WireError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(expected(path, "a string", other)),
    }
}

fn parse_annotation(v: &Value, path: &str) -> Result<Annotation, WireError> {
    let obj = v
        .as_object()
        .ok_or_else(|| expected(path, "an annotation object", v))?;
    Ok(Annotation {
        timestamp_us: unsigned(obj, "timestamp", path)?.unwrap_or(0),
        value: string(obj, "value", path)?.unwrap_or_default().to_owned(),
    })
}

fn endpoint(obj: &Obj, key: &str, path: &str) -> Result<Option<Endpoint>, WireError> {
    let path = format!("{path}.{key}");
    let Some(v) = member(obj, key) else {
        return Ok(None);
    };
    let obj = v
        .as_object()
        .ok_or_else(|| expected(&path, "an endpoint object", v))?;
    let ipv4 = string(obj, "ipv4", &path)?
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<Ipv4Addr>().map_err(|_| {
                WireError::invalid(
                    format!("{path}.ipv4"),
                    format!("{s:?} is not an IPv4 address"),
                )
            })
        })
        .transpose()?;
    let ipv6 = string(obj, "ipv6", &path)?
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<Ipv6Addr>().map_err(|_| {
                WireError::invalid(
                    format!("{path}.ipv6"),
                    format!("{s:?} is not an IPv6 address"),
                )
            })
        })
        .transpose()?;
    let port = match unsigned(obj, "port", &path)? {
        None | Some(0) => None,
        Some(p) => Some(u16::try_from(p).map_err(|_| {
            WireError::invalid(format!("{path}.port"), format!("{p} is not a port number"))
        })?),
    };
    Ok(Some(Endpoint {
        service_name: string(obj, "serviceName", &path)?
            .unwrap_or_default()
            .to_owned(),
        ipv4,
        ipv6,
        port,
    }))
}
