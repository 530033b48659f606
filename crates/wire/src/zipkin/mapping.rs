//! Zipkin v2 spans to and from the model, following the OpenTelemetry Collector's `zipkinv2`
//! translator (opentelemetry-collector-contrib, pkg/translator/zipkin), so spans look the same
//! whichever of the two received them:
//!
//! - `localEndpoint.serviceName` → resource `service.name`; tags that are resource semantic
//!   conventions (`host.name`, `k8s.pod.name`, ...) move to the resource; spans are grouped into one
//!   `ResourceSpans` per distinct resource and one `ScopeSpans` per `otel.library.name`/`otel.scope.name`.
//! - endpoint addresses → `net.host.ip`/`net.host.port` (local) and `peer.service`/`net.peer.ip`/
//!   `net.peer.port` (remote); ports are ints, everything else stays a string, as tags are
//!   (with the receiver's `parse_string_tags`, span tags that read as integers, decimals or
//!   booleans become those, by the collector's patterns).
//! - `otel.status_code` (+ `otel.status_description`) → status, tags removed; `error: "true"` →
//!   Error, tag removed. Beyond the collector: another non-empty `error` value (Brave writes the
//!   exception message there) also means Error, with that message, and the tag is kept.
//! - `kind` absent with tag `span.kind: internal` → Internal (tag removed); absent → Unspecified.
//! - `w3c.tracestate` → trace state; `otlp.link.N` → links; annotations `name|{json}|dropped` →
//!   events with attributes (what the collector's exporter writes), other annotations → named events.
//! - a missing timestamp → start 0 and attribute `otel.zipkin.absentField.startTime: true`.
//! - `shared: true` → attribute `zipkin.shared: true` (the collector drops it; the query layer needs it
//!   to de-duplicate span ids shared by client and server). `debug` is dropped, as the collector does.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use model::{
    AnyValue, Event, KeyValue, Link, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanId,
    SpanKind, Status, StatusCode, TraceBatch, TraceId, SERVICE_NAME,
};

use super::span::{Annotation, Endpoint, Kind, ZipkinSpan};

pub(crate) const NET_HOST_IP: &str = "net.host.ip";
pub(crate) const NET_HOST_PORT: &str = "net.host.port";
pub(crate) const PEER_SERVICE: &str = "peer.service";
pub(crate) const NET_PEER_IP: &str = "net.peer.ip";
pub(crate) const NET_PEER_PORT: &str = "net.peer.port";
/// Set (true) on spans reported with Zipkin's `shared: true`.
pub const SHARED: &str = "zipkin.shared";
/// Set (true) on spans reported without a timestamp (their start is then 0).
pub const START_TIME_ABSENT: &str = "otel.zipkin.absentField.startTime";
pub(crate) const SERVICE_NAME_SOURCE: &str = "otlp.service.name.source";
pub(crate) const STATUS_CODE: &str = "otel.status_code";
pub(crate) const STATUS_DESCRIPTION: &str = "otel.status_description";
pub(crate) const ERROR: &str = "error";
pub(crate) const SPAN_KIND: &str = "span.kind";
pub(crate) const TRACE_STATE: &str = "w3c.tracestate";
pub(crate) const LIBRARY_NAME: &str = "otel.library.name";
pub(crate) const LIBRARY_VERSION: &str = "otel.library.version";
pub(crate) const SCOPE_NAME: &str = "otel.scope.name";
pub(crate) const SCOPE_VERSION: &str = "otel.scope.version";
pub(crate) const LINK_PREFIX: &str = "otlp.link.";

/// Tag keys that describe the resource rather than the span (OpenTelemetry resource semantic
/// conventions, plus the OpenCensus ones the collector also treats so).
pub(crate) fn is_resource_key(key: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "service.",
        "telemetry.",
        "host.",
        "os.",
        "process.",
        "container.",
        "k8s.",
        "cloud.",
        "deployment.",
        "device.",
        "webengine.",
        "aws.ecs.",
        "aws.eks.",
        "aws.log.",
    ];
    const KEYS: &[&str] = &[
        "faas.name",
        "faas.id",
        "faas.version",
        "faas.instance",
        "faas.max_memory",
        "opencensus.starttime",
        "opencensus.exporterversion",
        "opencensus.resourcetype",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p)) || KEYS.contains(&key)
}

/// Groups Zipkin spans into a batch, in first-seen order of resource and scope (`parse_tags`:
/// see [`map_span`]).
pub(crate) fn to_batch(spans: Vec<ZipkinSpan<'_>>, parse_tags: bool) -> TraceBatch {
    let mut batch = TraceBatch::default();
    for zs in spans {
        let Mapped {
            resource,
            scope,
            span,
        } = map_span(zs, parse_tags);
        let span = span.into_model();
        // The resource and scope are compared as read; copied only when they are new.
        let rs = match batch
            .resource_spans
            .iter()
            .position(|rs| same_attributes(&rs.resource.attributes, &resource))
            .filter(|&i| batch.resource_spans[i].resource.dropped_attributes_count == 0)
        {
            Some(i) => &mut batch.resource_spans[i],
            None => {
                batch.resource_spans.push(ResourceSpans {
                    resource: Resource {
                        attributes: resource
                            .into_iter()
                            .map(|(k, v)| KeyValue::new(k.into_owned(), v.into_owned()))
                            .collect(),
                        dropped_attributes_count: 0,
                    },
                    ..Default::default()
                });
                let last = batch.resource_spans.len() - 1;
                &mut batch.resource_spans[last]
            }
        };
        let (name, version) = scope;
        match rs.scope_spans.iter_mut().find(|ss| {
            ss.scope.name == name
                && ss.scope.version == version
                && ss.scope.attributes.is_empty()
                && ss.scope.dropped_attributes_count == 0
        }) {
            Some(ss) => ss.spans.push(span),
            None => rs.scope_spans.push(ScopeSpans {
                scope: Scope {
                    name: name.into_owned(),
                    version: version.into_owned(),
                    ..Default::default()
                },
                schema_url: String::new(),
                spans: vec![span],
            }),
        }
    }
    batch
}

/// Whether string attributes are exactly these keys and values, in this order.
fn same_attributes(attrs: &[KeyValue], want: &[(Cow<'_, str>, Cow<'_, str>)]) -> bool {
    attrs.len() == want.len()
        && attrs.iter().zip(want).all(|(kv, (k, v))| {
            kv.key == **k && matches!(&kv.value, AnyValue::String(s) if *s == **v)
        })
}

/// A span's resource attributes and scope (name, version) as read, before they are copied.
pub(crate) type ResourceTags<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;
pub(crate) type ScopeTags<'a> = (Cow<'a, str>, Cow<'a, str>);

/// An attribute's value as the mapping makes it: tags stay text (borrowed from the report where
/// it needs no unescaping), ports are ints, flags booleans. An IPv4 address stays the address:
/// its text is written where it goes (the model's string, or straight into OTLP bytes).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value<'a> {
    Str(Cow<'a, str>),
    Ipv4(Ipv4Addr),
    Int(i64),
    Bool(bool),
    Double(f64),
}

impl<'a> Value<'a> {
    /// A tag's value as the OTel Collector's Zipkin receiver reads it with `parse_string_tags`:
    /// text matching `-?[0-9]+` is an int (out of range: the nearest int, as Go's `ParseInt`
    /// leaves it), `-?[0-9]+.[0-9]+` a double, `true`/`false` a bool; anything else stays text.
    fn parsed(text: Cow<'a, str>) -> Value<'a> {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let unsigned = text.strip_prefix('-').unwrap_or(&text);
        if digits(unsigned) {
            let saturated = if text.starts_with('-') {
                i64::MIN
            } else {
                i64::MAX
            };
            return Value::Int(text.parse().unwrap_or(saturated));
        }
        if let Some((int, frac)) = unsigned.split_once('.') {
            if digits(int) && digits(frac) {
                if let Ok(d) = text.parse() {
                    return Value::Double(d);
                }
            }
        }
        match &*text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::Str(text),
        }
    }
}

impl Value<'_> {
    fn into_model(self) -> AnyValue {
        match self {
            Value::Str(s) => AnyValue::String(s.into_owned()),
            Value::Ipv4(ip) => AnyValue::String(ip.to_string()),
            Value::Int(i) => AnyValue::Int(i),
            Value::Bool(b) => AnyValue::Bool(b),
            Value::Double(d) => AnyValue::Double(d),
        }
    }

    /// The text of a value taken out as a tag, as the model's `AnyValue` displays it.
    fn into_text(self) -> Cow<'static, str> {
        match self {
            Value::Str(s) => Cow::Owned(s.into_owned()),
            Value::Ipv4(ip) => Cow::Owned(ip.to_string()),
            Value::Int(i) => Cow::Owned(i.to_string()),
            Value::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
            Value::Double(d) => Cow::Owned(d.to_string()),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Attr<'a> {
    pub key: Cow<'a, str>,
    pub value: Value<'a>,
}

/// A span as the mapping rules make it, its strings still borrowed from the report: it becomes
/// the model's [`Span`] ([`to_batch`]) or is written straight as OTLP (`otlp.rs`), so the rules
/// exist once whichever way a report goes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MappedSpan<'a> {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub trace_state: Cow<'a, str>,
    pub name: Cow<'a, str>,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Vec<Attr<'a>>,
    pub events: Vec<Event>,
    pub links: Vec<Link>,
    pub status_code: StatusCode,
    pub status_message: Cow<'a, str>,
}

impl MappedSpan<'_> {
    fn into_model(self) -> Span {
        Span {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            trace_state: self.trace_state.into_owned(),
            flags: 0,
            name: self.name.into_owned(),
            kind: self.kind,
            start_unix_nano: self.start_unix_nano,
            end_unix_nano: self.end_unix_nano,
            attributes: self
                .attributes
                .into_iter()
                .map(|a| KeyValue {
                    key: a.key.into_owned(),
                    value: a.value.into_model(),
                })
                .collect(),
            dropped_attributes_count: 0,
            events: self.events,
            dropped_events_count: 0,
            links: self.links,
            dropped_links_count: 0,
            status: Status {
                code: self.status_code,
                message: self.status_message.into_owned(),
            },
        }
    }
}

/// One Zipkin span mapped: its resource attributes, its scope and the span.
pub(crate) struct Mapped<'a> {
    pub resource: ResourceTags<'a>,
    pub scope: ScopeTags<'a>,
    pub span: MappedSpan<'a>,
}

/// The mapping rules (see the module doc). The tags are sorted with unique keys, so one pass
/// over them sorts each into what it maps to; the attributes keep that order. With
/// `parse_tags` (the receiver's `parse_string_tags`), the span's own tags that read as numbers
/// or booleans become those ([`Value::parsed`]), after the status and links are taken from them
/// and before the endpoint attributes join them; resource tags stay text, as in the collector.
pub(crate) fn map_span(zs: ZipkinSpan<'_>, parse_tags: bool) -> Mapped<'_> {
    let mut source = None;
    // service.name and the few tags a resource usually has (host, pod, namespace, SDK): room
    // for them at once rather than growing twice per span.
    let mut resource_tags: ResourceTags<'_> = Vec::with_capacity(8);
    let (mut scope_name, mut library_name, mut scope_version, mut library_version) =
        (None, None, None, None);
    let mut trace_state = None;
    let mut span_kind = None;
    let mut status_code = None;
    let mut link_tags = false;
    let mut attributes: Vec<Attr<'_>> = Vec::with_capacity(zs.tags.len() + 4);
    for (key, value) in zs.tags {
        match &*key {
            SERVICE_NAME_SOURCE => source = Some(value),
            SCOPE_NAME => scope_name = Some(value),
            LIBRARY_NAME => library_name = Some(value),
            SCOPE_VERSION => scope_version = Some(value),
            LIBRARY_VERSION => library_version = Some(value),
            TRACE_STATE => trace_state = Some(value),
            // The tag is dropped whatever its value when the span has no kind.
            SPAN_KIND if zs.kind.is_none() => span_kind = Some(value),
            STATUS_CODE => status_code = Some(value),
            k if is_resource_key(k) => resource_tags.push((key, value)),
            k => {
                link_tags |= k.starts_with(LINK_PREFIX);
                attributes.push(Attr {
                    key,
                    value: Value::Str(value),
                });
            }
        }
    }

    // The local service first, under the key `otlp.service.name.source` names if any; a
    // resource tag with that key is then dropped.
    let mut local_endpoint = zs.local_endpoint;
    if let Some(name) = local_endpoint
        .as_mut()
        .map(|ep| std::mem::take(&mut ep.service_name))
        .filter(|n| !n.is_empty())
    {
        let key = source
            .filter(|s| !s.is_empty())
            .unwrap_or(Cow::Borrowed(SERVICE_NAME));
        resource_tags.retain(|(k, _)| *k != key);
        resource_tags.insert(0, (key, name));
    }
    let scope = (
        scope_name.or(library_name).unwrap_or_default(),
        scope_version.or(library_version).unwrap_or_default(),
    );

    let kind = match zs.kind {
        Some(Kind::Client) => SpanKind::Client,
        Some(Kind::Server) => SpanKind::Server,
        Some(Kind::Producer) => SpanKind::Producer,
        Some(Kind::Consumer) => SpanKind::Consumer,
        None => match span_kind.as_deref() {
            Some("internal") => SpanKind::Internal,
            _ => SpanKind::Unspecified,
        },
    };
    let (status_code, status_message) = take_status(&mut attributes, status_code.as_deref());
    let links = if link_tags {
        take_links(&mut attributes)
    } else {
        Vec::new()
    };
    if parse_tags {
        for a in &mut attributes {
            if let Value::Str(text) = &mut a.value {
                a.value = Value::parsed(std::mem::take(text));
            }
        }
    }

    if let Some(ep) = &local_endpoint {
        if let Some(ip) = endpoint_ip(ep) {
            upsert(&mut attributes, NET_HOST_IP, ip);
        }
        if let Some(port) = ep.port {
            upsert(&mut attributes, NET_HOST_PORT, Value::Int(port.into()));
        }
    }
    if let Some(mut ep) = zs.remote_endpoint {
        if !ep.service_name.is_empty() {
            let name = std::mem::take(&mut ep.service_name);
            upsert(&mut attributes, PEER_SERVICE, Value::Str(name));
        }
        if let Some(ip) = endpoint_ip(&ep) {
            upsert(&mut attributes, NET_PEER_IP, ip);
        }
        if let Some(port) = ep.port {
            upsert(&mut attributes, NET_PEER_PORT, Value::Int(port.into()));
        }
    }

    let duration_ns = zs.duration_us.unwrap_or(0).saturating_mul(1000);
    let start_unix_nano = match zs.timestamp_us {
        Some(ts) => ts.saturating_mul(1000),
        None => {
            upsert(&mut attributes, START_TIME_ABSENT, Value::Bool(true));
            0
        }
    };
    if zs.shared {
        upsert(&mut attributes, SHARED, Value::Bool(true));
    }

    let span = MappedSpan {
        trace_id: zs.trace_id,
        span_id: zs.id,
        parent_span_id: zs.parent_id.filter(|p| *p != zs.id),
        trace_state: trace_state.unwrap_or_default(),
        name: zs.name,
        kind,
        start_unix_nano,
        end_unix_nano: start_unix_nano.saturating_add(duration_ns),
        attributes,
        events: zs.annotations.into_iter().map(to_event).collect(),
        links,
        status_code,
        status_message,
    };
    Mapped {
        resource: resource_tags,
        scope,
        span,
    }
}

/// ipv6 wins when both are given, as in the collector (it writes ipv4, then overwrites with
/// ipv6). The text of an IPv6 address is made here; an IPv4 address is written where it goes.
fn endpoint_ip(ep: &Endpoint) -> Option<Value<'static>> {
    match (ep.ipv6, ep.ipv4) {
        (Some(ip), _) => Some(Value::Str(Cow::Owned(ip.to_string()))),
        (None, Some(ip)) => Some(Value::Ipv4(ip)),
        (None, None) => None,
    }
}

fn upsert<'a>(attrs: &mut Vec<Attr<'a>>, key: &'static str, value: Value<'a>) {
    match attrs.iter_mut().find(|a| a.key == key) {
        Some(a) => a.value = value,
        None => attrs.push(Attr {
            key: Cow::Borrowed(key),
            value,
        }),
    }
}

/// The tag's text, taken out of the (tag) attributes.
fn take_tag<'a>(attrs: &mut Vec<Attr<'a>>, key: &str) -> Option<Cow<'a, str>> {
    let i = attrs.iter().position(|a| a.key == key)?;
    match attrs.remove(i).value {
        Value::Str(s) => Some(s),
        other => Some(other.into_text()),
    }
}

fn tag<'s, 'a>(attrs: &'s [Attr<'a>], key: &str) -> Option<&'s Cow<'a, str>> {
    match &attrs.iter().find(|a| a.key == key)?.value {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

/// `otel.status_code` (given as `code`, its tag already taken) with `otel.status_description`,
/// then the `error` tag.
fn take_status<'a>(attrs: &mut Vec<Attr<'a>>, code: Option<&str>) -> (StatusCode, Cow<'a, str>) {
    let mut status = (StatusCode::Unset, Cow::Borrowed(""));
    if let Some(code) = code {
        status.0 = parse_status_code(code);
        if let Some(msg) = take_tag(attrs, STATUS_DESCRIPTION) {
            status.1 = msg;
        }
    }
    match tag(attrs, ERROR) {
        Some(v) if v == "true" => {
            status.0 = StatusCode::Error;
            take_tag(attrs, ERROR);
        }
        Some(v) if !v.is_empty() && v != "false" => {
            if status.1.is_empty() {
                status.1 = v.clone();
            }
            status.0 = StatusCode::Error;
        }
        _ => {}
    }
    status
}

/// `STATUS_CODE_ERROR` (the collector's form) or `ERROR` (the OpenTelemetry Zipkin exporter spec's),
/// any case; anything else is Unset, as in the collector.
pub(crate) fn parse_status_code(s: &str) -> StatusCode {
    let s = s.trim();
    let name = s
        .get(..12)
        .filter(|p| p.eq_ignore_ascii_case("STATUS_CODE_"))
        .map_or(s, |_| &s[12..]);
    if name.eq_ignore_ascii_case("ERROR") {
        StatusCode::Error
    } else if name.eq_ignore_ascii_case("OK") {
        StatusCode::Ok
    } else {
        StatusCode::Unset
    }
}

fn status_code_name(code: StatusCode) -> &'static str {
    match code {
        StatusCode::Unset => "STATUS_CODE_UNSET",
        StatusCode::Ok => "STATUS_CODE_OK",
        StatusCode::Error => "STATUS_CODE_ERROR",
    }
}

/// `otlp.link.0`, `otlp.link.1`, ... (stopping at the first gap, as the collector does) in the
/// form `traceid|spanid|tracestate|{json attributes}|dropped`. A tag that does not parse stays a tag.
fn take_links(attrs: &mut Vec<Attr<'_>>) -> Vec<Link> {
    let mut links = Vec::new();
    for i in 0..128 {
        let key = format!("{LINK_PREFIX}{i}");
        let Some(pos) = attrs.iter().position(|a| a.key == key) else {
            break;
        };
        let link = match &attrs[pos].value {
            Value::Str(value) => parse_link(value),
            _ => None,
        };
        if let Some(link) = link {
            links.push(link);
            attrs.remove(pos);
        }
    }
    links
}

pub(crate) fn parse_link(value: &str) -> Option<Link> {
    let parts: Vec<&str> = value.split('|').collect();
    if parts.len() < 5 {
        return None;
    }
    let trace_id: TraceId = parts[0].parse().ok()?;
    let span_id: SpanId = parts[1].parse().ok()?;
    let json = parts[3..parts.len() - 1].join("|");
    let dropped: u32 = parts[parts.len() - 1].parse().ok()?;
    Some(Link {
        trace_id,
        span_id,
        trace_state: parts[2].to_owned(),
        attributes: json_attributes(&json)?,
        dropped_attributes_count: dropped,
        flags: 0,
    })
}

/// Structured annotations become events with attributes: `name|{json attributes}|dropped` (what
/// the collector's Zipkin exporter writes) and `{"name": {json attributes}}` (what the
/// OpenTelemetry Python and JavaScript SDKs' Zipkin exporters write). Anything else is the name.
pub(crate) fn to_event(a: Annotation) -> Event {
    let time_unix_nano = a.timestamp_us.saturating_mul(1000);
    let structured = || -> Option<Event> {
        let (name, rest) = a.value.split_once('|')?;
        let (json, dropped) = rest.rsplit_once('|')?;
        Some(Event {
            time_unix_nano,
            name: name.to_owned(),
            attributes: json_attributes(json)?,
            dropped_attributes_count: dropped.parse().ok()?,
        })
    };
    let sdk_json = || -> Option<Event> {
        if !a.value.starts_with('{') {
            return None;
        }
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&a.value).ok()?;
        let mut entries = map.into_iter();
        let (name, attrs) = entries.next()?;
        if entries.next().is_some() || !attrs.is_object() {
            return None;
        }
        Some(Event {
            time_unix_nano,
            name,
            attributes: json_attributes(&attrs.to_string())?,
            dropped_attributes_count: 0,
        })
    };
    structured().or_else(sdk_json).unwrap_or_else(|| Event {
        time_unix_nano,
        name: a.value.clone(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    })
}

/// A flat JSON object to attributes: strings, bools, integral numbers as ints, others as doubles.
fn json_attributes(json: &str) -> Option<Vec<KeyValue>> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).ok()?;
    Some(
        map.into_iter()
            .filter_map(|(k, v)| {
                let value = match v {
                    serde_json::Value::String(s) => AnyValue::String(s),
                    serde_json::Value::Bool(b) => AnyValue::Bool(b),
                    serde_json::Value::Number(n) => match n.as_i64() {
                        Some(i) => AnyValue::Int(i),
                        None => AnyValue::Double(n.as_f64()?),
                    },
                    _ => return None,
                };
                Some(KeyValue::new(k, value))
            })
            .collect(),
    )
}

fn attributes_json(attrs: &[KeyValue]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = attrs
        .iter()
        .map(|kv| {
            let v = match &kv.value {
                AnyValue::String(s) => serde_json::Value::from(s.as_str()),
                AnyValue::Bool(b) => serde_json::Value::from(*b),
                AnyValue::Int(i) => serde_json::Value::from(*i),
                AnyValue::Double(d) => serde_json::Value::from(*d),
                other => serde_json::Value::from(other.to_string()),
            };
            (kv.key.clone(), v)
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// The model as Zipkin spans: the inverse of [`to_batch`] as far as Zipkin can carry it (dropped
/// counts and flags have no place in Zipkin; non-string attributes become their text).
pub(crate) fn from_batch(batch: &TraceBatch) -> Vec<ZipkinSpan<'static>> {
    batch
        .spans()
        .map(|(resource, scope, span)| from_span(resource, scope, span))
        .collect()
}

fn from_span(resource: &Resource, scope: &Scope, span: &Span) -> ZipkinSpan<'static> {
    let mut tags = BTreeMap::new();
    let mut local_service = String::new();
    for kv in &resource.attributes {
        if kv.key == SERVICE_NAME && local_service.is_empty() {
            local_service = kv.value.to_string();
        } else {
            tags.insert(kv.key.clone(), kv.value.to_string());
        }
    }
    if !scope.name.is_empty() {
        tags.insert(SCOPE_NAME.to_owned(), scope.name.clone());
        tags.insert(LIBRARY_NAME.to_owned(), scope.name.clone());
    }
    if !scope.version.is_empty() {
        tags.insert(SCOPE_VERSION.to_owned(), scope.version.clone());
        tags.insert(LIBRARY_VERSION.to_owned(), scope.version.clone());
    }

    let mut local = Endpoint {
        service_name: Cow::Owned(local_service),
        ..Default::default()
    };
    let mut remote = Endpoint::default();
    let mut shared = false;
    let mut start_absent = false;
    for kv in &span.attributes {
        let text = || kv.value.to_string();
        let handled = match kv.key.as_str() {
            NET_HOST_IP => set_ip(&mut local, &text()),
            NET_HOST_PORT => set_port(&mut local, &kv.value),
            PEER_SERVICE => {
                remote.service_name = Cow::Owned(text());
                true
            }
            NET_PEER_IP => set_ip(&mut remote, &text()),
            NET_PEER_PORT => set_port(&mut remote, &kv.value),
            SHARED => {
                shared = kv.value == AnyValue::Bool(true);
                true
            }
            START_TIME_ABSENT => {
                start_absent = kv.value == AnyValue::Bool(true);
                true
            }
            _ => false,
        };
        if !handled {
            tags.insert(kv.key.clone(), text());
        }
    }

    if !span.trace_state.is_empty() {
        tags.insert(TRACE_STATE.to_owned(), span.trace_state.clone());
    }
    let kind = match span.kind {
        SpanKind::Client => Some(Kind::Client),
        SpanKind::Server => Some(Kind::Server),
        SpanKind::Producer => Some(Kind::Producer),
        SpanKind::Consumer => Some(Kind::Consumer),
        SpanKind::Internal => {
            tags.insert(SPAN_KIND.to_owned(), "internal".to_owned());
            None
        }
        SpanKind::Unspecified => None,
    };
    // The error tag is set exactly when the status is Error (Zipkin marks any span with it failed).
    if span.status.code == StatusCode::Error {
        tags.insert(ERROR.to_owned(), "true".to_owned());
    } else {
        tags.remove(ERROR);
    }
    if span.status.code != StatusCode::Unset {
        tags.insert(
            STATUS_CODE.to_owned(),
            status_code_name(span.status.code).to_owned(),
        );
        if !span.status.message.is_empty() {
            tags.insert(STATUS_DESCRIPTION.to_owned(), span.status.message.clone());
        }
    }
    for (i, link) in span.links.iter().enumerate() {
        tags.insert(
            format!("{LINK_PREFIX}{i}"),
            format!(
                "{}|{}|{}|{}|{}",
                link.trace_id,
                link.span_id,
                link.trace_state,
                attributes_json(&link.attributes),
                link.dropped_attributes_count
            ),
        );
    }

    let annotations = span
        .events
        .iter()
        .map(|e| Annotation {
            timestamp_us: e.time_unix_nano / 1000,
            value: if e.attributes.is_empty() && e.dropped_attributes_count == 0 {
                e.name.clone()
            } else {
                format!(
                    "{}|{}|{}",
                    e.name,
                    attributes_json(&e.attributes),
                    e.dropped_attributes_count
                )
            },
        })
        .collect();

    let timestamp_us =
        (!start_absent && span.start_unix_nano != 0).then_some(span.start_unix_nano / 1000);
    let duration_us = (span.end_unix_nano != 0).then(|| {
        let ns = span.duration_nanos();
        // Zipkin rounds sub-microsecond durations up to 1.
        if ns > 0 && ns < 1000 {
            1
        } else {
            ns / 1000
        }
    });

    ZipkinSpan {
        trace_id: span.trace_id,
        id: span.span_id,
        parent_id: span.parent_span_id,
        kind,
        name: Cow::Owned(span.name.clone()),
        timestamp_us,
        duration_us,
        local_endpoint: (local != Endpoint::default()).then_some(local),
        remote_endpoint: (remote != Endpoint::default()).then_some(remote),
        annotations,
        tags: tags
            .into_iter()
            .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v)))
            .collect(),
        debug: false,
        shared,
    }
}

/// Puts a textual IP into the endpoint; a value that is not an IP stays a tag (returns false).
fn set_ip(ep: &mut Endpoint<'_>, text: &str) -> bool {
    match text.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ep.ipv4 = Some(ip),
        Ok(IpAddr::V6(ip)) => ep.ipv6 = Some(ip),
        Err(_) => return false,
    }
    true
}

fn set_port(ep: &mut Endpoint<'_>, value: &AnyValue) -> bool {
    let port = match value {
        AnyValue::Int(i) => u16::try_from(*i).ok(),
        AnyValue::String(s) => s.parse::<u16>().ok(),
        _ => None,
    };
    match port.filter(|p| *p != 0) {
        Some(p) => {
            ep.port = Some(p);
            true
        }
        None => false,
    }
}
