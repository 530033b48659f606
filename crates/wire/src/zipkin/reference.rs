//! What `json.rs`'s typed reader and `mapping.rs`'s one-pass tag mapping replaced, kept for
//! tests only: the `serde_json::Value` reader and the mapping over a `BTreeMap` of tags. The
//! differential tests in `tests.rs` check that old and new give the same answer (the same spans
//! or the same error message, the same batch) for the same input.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use std::net::IpAddr;

use model::{
    AnyValue, KeyValue, Link, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanId, SpanKind,
    Status, StatusCode, TraceBatch, TraceId, SERVICE_NAME,
};
use serde_json::{Map, Value};

use super::mapping::{
    self, is_resource_key, ERROR, LIBRARY_NAME, LIBRARY_VERSION, LINK_PREFIX, NET_HOST_IP,
    NET_HOST_PORT, NET_PEER_IP, NET_PEER_PORT, PEER_SERVICE, SCOPE_NAME, SCOPE_VERSION,
    SERVICE_NAME_SOURCE, SHARED, SPAN_KIND, START_TIME_ABSENT, STATUS_CODE, STATUS_DESCRIPTION,
    TRACE_STATE,
};
use super::span::{Annotation, Endpoint, Kind, ZipkinSpan};
use crate::otlp::json_type;
use crate::WireError;

const FORMAT: &str = "Zipkin";

type Obj = Map<String, Value>;

pub(crate) fn parse(body: &[u8]) -> Result<Vec<ZipkinSpan<'static>>, WireError> {
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

fn parse_span(obj: &Obj, path: &str) -> Result<ZipkinSpan<'static>, WireError> {
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
        name: Cow::Owned(string(obj, "name", path)?.unwrap_or_default().to_owned()),
        timestamp_us: unsigned(obj, "timestamp", path)?.filter(|t| *t != 0),
        duration_us: unsigned(obj, "duration", path)?,
        local_endpoint: endpoint(obj, "localEndpoint", path)?,
        remote_endpoint: endpoint(obj, "remoteEndpoint", path)?,
        annotations,
        tags: tags
            .into_iter()
            .map(|(k, v): (String, String)| (Cow::Owned(k), Cow::Owned(v)))
            .collect(),
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

fn endpoint(obj: &Obj, key: &str, path: &str) -> Result<Option<Endpoint<'static>>, WireError> {
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
        service_name: Cow::Owned(
            string(obj, "serviceName", &path)?
                .unwrap_or_default()
                .to_owned(),
        ),
        ipv4,
        ipv6,
        port,
    }))
}

// The mapping over a BTreeMap of tags.

/// Groups Zipkin spans into a batch, in first-seen order of resource and scope.
pub(crate) fn to_batch(spans: Vec<ZipkinSpan<'_>>) -> TraceBatch {
    let mut batch = TraceBatch::default();
    for zs in spans {
        let (resource, scope, span) = to_span(zs);
        let rs = match batch
            .resource_spans
            .iter()
            .position(|rs| rs.resource == resource)
        {
            Some(i) => &mut batch.resource_spans[i],
            None => {
                batch.resource_spans.push(ResourceSpans {
                    resource,
                    ..Default::default()
                });
                let last = batch.resource_spans.len() - 1;
                &mut batch.resource_spans[last]
            }
        };
        match rs.scope_spans.iter_mut().find(|ss| ss.scope == scope) {
            Some(ss) => ss.spans.push(span),
            None => rs.scope_spans.push(ScopeSpans {
                scope,
                schema_url: String::new(),
                spans: vec![span],
            }),
        }
    }
    batch
}

fn to_span(zs: ZipkinSpan<'_>) -> (Resource, Scope, Span) {
    let mut tags: BTreeMap<String, String> = zs
        .tags
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();

    let resource = take_resource(&mut tags, zs.local_endpoint.as_ref());
    let scope = Scope {
        name: take_either(&mut tags, SCOPE_NAME, LIBRARY_NAME).unwrap_or_default(),
        version: take_either(&mut tags, SCOPE_VERSION, LIBRARY_VERSION).unwrap_or_default(),
        ..Default::default()
    };

    let trace_state = tags.remove(TRACE_STATE).unwrap_or_default();
    let kind = match zs.kind {
        Some(Kind::Client) => SpanKind::Client,
        Some(Kind::Server) => SpanKind::Server,
        Some(Kind::Producer) => SpanKind::Producer,
        Some(Kind::Consumer) => SpanKind::Consumer,
        None => match tags.remove(SPAN_KIND).as_deref() {
            Some("internal") => SpanKind::Internal,
            _ => SpanKind::Unspecified,
        },
    };
    let status = take_status(&mut tags);
    let links = take_links(&mut tags);

    let mut attributes: Vec<KeyValue> =
        tags.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect();
    if let Some(ep) = &zs.local_endpoint {
        if let Some(ip) = endpoint_ip(ep) {
            upsert(&mut attributes, NET_HOST_IP, ip.to_string().into());
        }
        if let Some(port) = ep.port {
            upsert(&mut attributes, NET_HOST_PORT, AnyValue::Int(port.into()));
        }
    }
    if let Some(ep) = &zs.remote_endpoint {
        if !ep.service_name.is_empty() {
            upsert(
                &mut attributes,
                PEER_SERVICE,
                ep.service_name.to_string().into(),
            );
        }
        if let Some(ip) = endpoint_ip(ep) {
            upsert(&mut attributes, NET_PEER_IP, ip.to_string().into());
        }
        if let Some(port) = ep.port {
            upsert(&mut attributes, NET_PEER_PORT, AnyValue::Int(port.into()));
        }
    }

    let duration_ns = zs.duration_us.unwrap_or(0).saturating_mul(1000);
    let start_unix_nano = match zs.timestamp_us {
        Some(ts) => ts.saturating_mul(1000),
        None => {
            upsert(&mut attributes, START_TIME_ABSENT, AnyValue::Bool(true));
            0
        }
    };
    if zs.shared {
        upsert(&mut attributes, SHARED, AnyValue::Bool(true));
    }

    let span = Span {
        trace_id: zs.trace_id,
        span_id: zs.id,
        parent_span_id: zs.parent_id.filter(|p| *p != zs.id),
        trace_state,
        flags: 0,
        name: zs.name.into_owned(),
        kind,
        start_unix_nano,
        end_unix_nano: start_unix_nano.saturating_add(duration_ns),
        attributes,
        dropped_attributes_count: 0,
        events: zs.annotations.into_iter().map(mapping::to_event).collect(),
        dropped_events_count: 0,
        links,
        dropped_links_count: 0,
        status,
    };
    (resource, scope, span)
}

/// ipv6 wins when both are given, as in the collector (it writes ipv4, then overwrites with ipv6).
fn endpoint_ip(ep: &Endpoint) -> Option<IpAddr> {
    ep.ipv6.map(IpAddr::V6).or_else(|| ep.ipv4.map(IpAddr::V4))
}

fn upsert(attrs: &mut Vec<KeyValue>, key: &str, value: AnyValue) {
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = value,
        None => attrs.push(KeyValue::new(key, value)),
    }
}

fn take_either(tags: &mut BTreeMap<String, String>, a: &str, b: &str) -> Option<String> {
    let first = tags.remove(a);
    let second = tags.remove(b);
    first.or(second)
}

fn take_resource(tags: &mut BTreeMap<String, String>, local: Option<&Endpoint>) -> Resource {
    let mut attributes = Vec::new();
    let source = tags.remove(SERVICE_NAME_SOURCE);
    if let Some(name) = local.map(|ep| &ep.service_name).filter(|n| !n.is_empty()) {
        let key = source
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| SERVICE_NAME.to_owned());
        attributes.push(KeyValue::new(key, name.to_string()));
    }
    let keys: Vec<String> = tags
        .keys()
        .filter(|k| is_resource_key(k))
        .cloned()
        .collect();
    for key in keys {
        if let Some(v) = tags.remove(&key) {
            if !attributes.iter().any(|kv| kv.key == key) {
                attributes.push(KeyValue::new(key, v));
            }
        }
    }
    Resource {
        attributes,
        dropped_attributes_count: 0,
    }
}

fn take_status(tags: &mut BTreeMap<String, String>) -> Status {
    let mut status = Status::default();
    if let Some(code) = tags.remove(STATUS_CODE) {
        status.code = mapping::parse_status_code(&code);
        if let Some(msg) = tags.remove(STATUS_DESCRIPTION) {
            status.message = msg;
        }
    }
    match tags.get(ERROR).map(String::as_str) {
        Some("true") => {
            status.code = StatusCode::Error;
            tags.remove(ERROR);
        }
        Some(v) if !v.is_empty() && v != "false" => {
            if status.message.is_empty() {
                status.message = v.to_owned();
            }
            status.code = StatusCode::Error;
        }
        _ => {}
    }
    status
}

/// `otlp.link.0`, `otlp.link.1`, ... (stopping at the first gap, as the collector does) in the
/// form `traceid|spanid|tracestate|{json attributes}|dropped`. A tag that does not parse stays a tag.
fn take_links(tags: &mut BTreeMap<String, String>) -> Vec<Link> {
    let mut links = Vec::new();
    for i in 0..128 {
        let key = format!("{LINK_PREFIX}{i}");
        let Some(value) = tags.get(&key) else { break };
        if let Some(link) = mapping::parse_link(value) {
            links.push(link);
            tags.remove(&key);
        }
    }
    links
}
