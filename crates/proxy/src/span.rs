//! One span per request: ids and the sampling decision from the incoming headers, Envoy's tags,
//! and hand-off to the reporter when the response is done.
//!
//! Ids, by listener mode (the next hop always gets this span's id as its parent):
//! - edge: a SERVER span, child of the incoming context, or the root of a new trace;
//! - outbound: a CLIENT span with a new span id, parent = the incoming span;
//! - inbound: a SERVER span, child of the incoming (client) span, or with `shared_span_context`
//!   the caller's own span id (Zipkin's shared client/server span);
//! - with `spawn_upstream_span`, in every mode: a SERVER span, and a CLIENT child span per
//!   upstream attempt ([`ActiveSpan::attempt`], named `router CLUSTER egress`), which is the
//!   next hop's parent.
//!
//! The tags are Envoy's:
//! `component=proxy`, `node_id`, `zone`, `guid:x-request-id`, `http.url`, `http.method`,
//! `http.protocol`, `http.status_code`, `upstream_cluster` (and `upstream_cluster.name`),
//! `upstream_address`, `peer.address`, `request_size`, `response_size`, `response_flags` (`-`, or
//! `NR`/`UF`/`UR`/`UT` as Envoy spells them), `user_agent`, `downstream_cluster`,
//! `guid:x-client-trace-id`, `error` (5xx or no response). Names checked against Envoy's
//! `Tracing::TracingTagValues` (source/common/tracing/http_tracer_impl.h).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use model::{AnyValue, KeyValue, SpanId, SpanKind, Status, StatusCode, TraceId};
use wire::propagation::{extract, Extracted, Format, TraceContext};

use crate::config::{Config, Mode, Sampling};
use crate::report::SpanSink;
use crate::stats::Stats;

static X_CLIENT_TRACE_ID: http::HeaderName = http::HeaderName::from_static("x-client-trace-id");
/// An internal request asking to be traced (an edge removes it from outside requests).
pub static X_ENVOY_FORCE_TRACE: http::HeaderName =
    http::HeaderName::from_static("x-envoy-force-trace");

enum TagSource {
    Value(String),
    Header(http::HeaderName, Option<String>),
}

/// What every request's span is built from.
pub struct Tracer {
    pub formats: Vec<Format>,
    trace_id_128bit: bool,
    shared_span_context: bool,
    /// `spawn_upstream_span`: a span per upstream attempt.
    pub spawn_upstream: bool,
    sampling: Sampling,
    custom_tags: Vec<(String, TagSource)>,
    sink: Option<SpanSink>,
    stats: Arc<Stats>,
}

/// The outcome of [`Tracer::begin`]: what to tell the next hop, and the span (when recorded).
pub struct Begun {
    pub outgoing: TraceContext,
    pub span: Option<ActiveSpan>,
}

/// A sampled span being timed; reported on [`ActiveSpan::finish`].
pub struct ActiveSpan {
    span: ProxySpan,
    started: Instant,
    sink: SpanSink,
}

/// A finished span as the request threads hand it to the reporter: Envoy's tag names are static
/// and most values are numbers or static text, so a span costs a handful of allocations on the
/// request path instead of two per tag (`model::KeyValue` owns its key). The reporter turns it
/// into a [`model::Span`] ([`ProxySpan::into_model`]) on its own thread, where the allocations
/// are also freed (a block freed by another thread than the one that allocated it costs more).
#[derive(Clone)]
pub struct ProxySpan {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent_span_id: Option<SpanId>,
    pub(crate) trace_state: String,
    pub(crate) name: String,
    pub(crate) kind: SpanKind,
    pub(crate) start_unix_nano: u64,
    pub(crate) end_unix_nano: u64,
    /// In the order they were recorded, after the tracer's own (see [`SpanTags`]).
    pub(crate) tags: Vec<(Cow<'static, str>, TagValue)>,
    pub(crate) status: Status,
}

/// A tag's value before it becomes a [`model::AnyValue`].
#[derive(Clone)]
pub enum TagValue {
    Static(&'static str),
    Text(String),
    /// Text shared by many spans (a cluster's name, an endpoint, a connection's peer): a
    /// reference count instead of a copy per span.
    Shared(Arc<str>),
    Int(i64),
    Bool(bool),
}

impl From<std::borrow::Cow<'static, str>> for TagValue {
    fn from(s: std::borrow::Cow<'static, str>) -> Self {
        match s {
            std::borrow::Cow::Borrowed(s) => TagValue::Static(s),
            std::borrow::Cow::Owned(s) => TagValue::Text(s),
        }
    }
}

impl From<&'static str> for TagValue {
    fn from(s: &'static str) -> Self {
        TagValue::Static(s)
    }
}

impl From<String> for TagValue {
    fn from(s: String) -> Self {
        TagValue::Text(s)
    }
}

impl From<Arc<str>> for TagValue {
    fn from(s: Arc<str>) -> Self {
        TagValue::Shared(s)
    }
}

impl From<i64> for TagValue {
    fn from(i: i64) -> Self {
        TagValue::Int(i)
    }
}

impl From<bool> for TagValue {
    fn from(b: bool) -> Self {
        TagValue::Bool(b)
    }
}

impl From<TagValue> for AnyValue {
    fn from(v: TagValue) -> Self {
        match v {
            TagValue::Static(s) => AnyValue::String(s.to_owned()),
            TagValue::Text(s) => AnyValue::String(s),
            TagValue::Shared(s) => AnyValue::String(s.as_ref().to_owned()),
            TagValue::Int(i) => AnyValue::Int(i),
            TagValue::Bool(b) => AnyValue::Bool(b),
        }
    }
}

/// The tags every span of this proxy starts with (`component`, `node_id`, `zone`), added when the
/// reporter builds the model span rather than copied into each span.
#[derive(Clone)]
pub struct SpanTags {
    node_id: String,
    zone: String,
}

impl SpanTags {
    pub fn new(config: &Config) -> Self {
        SpanTags {
            node_id: config.node_id.clone(),
            zone: config.zone.clone(),
        }
    }

    #[cfg(test)]
    pub fn for_test(node_id: &str, zone: &str) -> Self {
        SpanTags {
            node_id: node_id.to_owned(),
            zone: zone.to_owned(),
        }
    }

    /// Calls `f` with each of these tags, in order.
    pub fn each<'a>(&'a self, mut f: impl FnMut(&'static str, &'a str)) {
        f("component", "proxy");
        f("node_id", &self.node_id);
        if !self.zone.is_empty() {
            f("zone", &self.zone);
        }
    }
}

impl ProxySpan {
    /// The span as the exporters take it, with `tags`' own first.
    pub fn into_model(self, tags: &SpanTags) -> model::Span {
        let mut attributes = Vec::with_capacity(self.tags.len() + 3);
        tags.each(|k, v| attributes.push(KeyValue::new(k, v)));
        attributes.extend(
            self.tags
                .into_iter()
                .map(|(k, v)| KeyValue::new(k.into_owned(), v)),
        );
        model::Span {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            trace_state: self.trace_state,
            flags: 1,
            name: self.name,
            kind: self.kind,
            start_unix_nano: self.start_unix_nano,
            end_unix_nano: self.end_unix_nano,
            attributes,
            status: self.status,
            ..Default::default()
        }
    }
}

fn new_span_id() -> SpanId {
    loop {
        let id = SpanId::from_u64(fastrand::u64(..));
        if !id.is_zero() {
            return id;
        }
    }
}

fn new_trace_id(bits128: bool) -> TraceId {
    loop {
        let high = if bits128 { fastrand::u64(..) } else { 0 };
        let id = TraceId::from_halves(high, fastrand::u64(..));
        if !id.is_zero() {
            return id;
        }
    }
}

pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Tracer {
    pub fn new(config: &Config, sink: Option<SpanSink>, stats: Arc<Stats>) -> Self {
        let t = &config.tracing;
        let custom_tags = t
            .custom_tags
            .iter()
            .filter_map(|c| {
                let source = if let Some(v) = &c.literal {
                    TagSource::Value(v.clone())
                } else if let Some(var) = &c.environment {
                    TagSource::Value(std::env::var(var).ok().or_else(|| c.default.clone())?)
                } else {
                    let name =
                        http::HeaderName::from_bytes(c.request_header.as_deref()?.as_bytes())
                            .ok()?;
                    TagSource::Header(name, c.default.clone())
                };
                Some((c.tag.clone(), source))
            })
            .collect();
        Tracer {
            formats: t.propagation.clone(),
            trace_id_128bit: t.trace_id_128bit,
            shared_span_context: t.shared_span_context,
            spawn_upstream: t.spawn_upstream_span,
            sampling: t.sampling,
            custom_tags,
            sink,
            stats,
        }
    }

    /// Reads the incoming context and starts this hop's span (`operation` is only called when
    /// the span is recorded).
    /// `forced`: the request has `x-envoy-force-trace` (looked for by the caller, which knows
    /// whether it has any `x-envoy-*` header at all).
    pub fn begin(
        &self,
        mode: Mode,
        headers: &HeaderMap,
        forced: bool,
        operation: impl FnOnce() -> String,
    ) -> Begun {
        let asked = crate::sampling::Asked {
            client_trace_id: headers.contains_key(&X_CLIENT_TRACE_ID),
            forced,
        };
        let (trace_id, trace_id_64bit, span_id, parent, sampled, debug, trace_state) =
            match extract(headers) {
                Extracted::Context(c) => {
                    let (span_id, parent) = if mode == Mode::Inbound && self.shared_span_context {
                        (c.span_id, c.parent_span_id)
                    } else {
                        (new_span_id(), Some(c.span_id))
                    };
                    let sampled = c.debug
                        || c.sampled.unwrap_or_else(|| {
                            crate::sampling::decide(&self.sampling, &c.trace_id, asked)
                        });
                    (
                        c.trace_id,
                        c.trace_id_64bit,
                        span_id,
                        parent,
                        sampled,
                        c.debug,
                        c.trace_state,
                    )
                }
                other => {
                    let trace_id = new_trace_id(self.trace_id_128bit);
                    let (sampled, debug) = match other {
                        Extracted::SamplingOnly { sampled, debug } => (
                            debug
                                || sampled.unwrap_or_else(|| {
                                    crate::sampling::decide(&self.sampling, &trace_id, asked)
                                }),
                            debug,
                        ),
                        _ => (
                            crate::sampling::decide(&self.sampling, &trace_id, asked),
                            false,
                        ),
                    };
                    (
                        trace_id,
                        !self.trace_id_128bit,
                        new_span_id(),
                        None,
                        sampled,
                        debug,
                        String::new(),
                    )
                }
            };
        let outgoing = TraceContext {
            trace_id,
            span_id,
            parent_span_id: parent,
            sampled: Some(sampled),
            debug,
            trace_state,
            trace_id_64bit,
        };
        let span = match (&self.sink, sampled) {
            (Some(sink), true) => {
                Stats::inc(&self.stats.spans_started);
                // Room for every tag a request records, so the list never grows.
                let mut tags = Vec::with_capacity(self.custom_tags.len() + 16);
                for (tag, source) in &self.custom_tags {
                    let value = match source {
                        TagSource::Value(v) => Some(v.clone()),
                        TagSource::Header(name, default) => headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                            .or_else(|| default.clone()),
                    };
                    if let Some(v) = value {
                        tags.push((Cow::Owned(tag.clone()), TagValue::Text(v)));
                    }
                }
                Some(ActiveSpan {
                    span: ProxySpan {
                        trace_id,
                        span_id,
                        parent_span_id: parent,
                        trace_state: outgoing.trace_state.clone(),
                        name: operation(),
                        kind: if mode == Mode::Outbound && !self.spawn_upstream {
                            SpanKind::Client
                        } else {
                            SpanKind::Server
                        },
                        start_unix_nano: now_nanos(),
                        end_unix_nano: 0,
                        tags,
                        status: Status::default(),
                    },
                    started: Instant::now(),
                    sink: sink.clone(),
                })
            }
            _ => None,
        };
        Begun { outgoing, span }
    }
}

impl ActiveSpan {
    pub fn span_id(&self) -> SpanId {
        self.span.span_id
    }

    /// A CLIENT span of one upstream attempt, child of this one, starting now.
    pub fn attempt(&self, cluster: &str) -> ActiveSpan {
        ActiveSpan {
            span: ProxySpan {
                trace_id: self.span.trace_id,
                span_id: new_span_id(),
                parent_span_id: Some(self.span.span_id),
                trace_state: self.span.trace_state.clone(),
                name: format!("router {cluster} egress"),
                kind: SpanKind::Client,
                start_unix_nano: now_nanos(),
                end_unix_nano: 0,
                tags: Vec::with_capacity(8),
                status: Status::default(),
            },
            started: Instant::now(),
            sink: self.sink.clone(),
        }
    }

    pub fn tag(&mut self, key: &'static str, value: impl Into<TagValue>) {
        self.span.tags.push((Cow::Borrowed(key), value.into()));
    }

    /// Names the span anew (an upstream's `x-envoy-decorator-operation`).
    pub fn rename(&mut self, name: &str) {
        name.clone_into(&mut self.span.name);
    }

    /// Sets `key` to `value`, replacing the value it had (a retry's new upstream address).
    pub fn retag(&mut self, key: &'static str, value: impl Into<TagValue>) {
        let value = value.into();
        match self.span.tags.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.tag(key, value),
        }
    }

    /// Marks the span failed: Envoy's `error=true` tag and an Error status.
    pub fn error(&mut self, message: &str) {
        if self.span.status.code != StatusCode::Error {
            self.tag("error", true);
        }
        self.span.status = Status {
            code: StatusCode::Error,
            message: message.to_owned(),
        };
    }

    /// Ends the span now and offers it to the reporter (never waits).
    pub fn finish(mut self) {
        let elapsed = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.span.end_unix_nano = self.span.start_unix_nano.saturating_add(elapsed);
        self.sink.offer(self.span);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_span_has_the_proxy_tags_first_then_the_recorded_ones_in_order() {
        let span = ProxySpan {
            trace_id: TraceId::from_halves(1, 2),
            span_id: SpanId::from_u64(3),
            parent_span_id: Some(SpanId::from_u64(4)),
            trace_state: "a=b".into(),
            name: "GET /x".into(),
            kind: SpanKind::Server,
            start_unix_nano: 10,
            end_unix_nano: 25,
            tags: vec![
                (Cow::Owned("team".into()), TagValue::Text("payments".into())),
                (Cow::Borrowed("http.method"), TagValue::Static("GET")),
                (Cow::Borrowed("http.status_code"), TagValue::Int(503)),
                (Cow::Borrowed("error"), TagValue::Bool(true)),
            ],
            status: Status {
                code: StatusCode::Error,
                message: "upstream answered 503".into(),
            },
        };
        let tags = SpanTags {
            node_id: "sidecar~1".into(),
            zone: "z1".into(),
        };
        let m = span.into_model(&tags);
        let attrs: Vec<(&str, &AnyValue)> = m
            .attributes
            .iter()
            .map(|kv| (kv.key.as_str(), &kv.value))
            .collect();
        assert_eq!(
            attrs,
            [
                ("component", &AnyValue::from("proxy")),
                ("node_id", &AnyValue::from("sidecar~1")),
                ("zone", &AnyValue::from("z1")),
                ("team", &AnyValue::from("payments")),
                ("http.method", &AnyValue::from("GET")),
                ("http.status_code", &AnyValue::Int(503)),
                ("error", &AnyValue::Bool(true)),
            ]
        );
        assert_eq!(
            (m.trace_id, m.span_id, m.parent_span_id),
            (
                TraceId::from_halves(1, 2),
                SpanId::from_u64(3),
                Some(SpanId::from_u64(4))
            )
        );
        assert_eq!(
            (m.flags, m.name.as_str(), m.kind),
            (1, "GET /x", SpanKind::Server)
        );
        assert_eq!((m.start_unix_nano, m.end_unix_nano), (10, 25));
        assert_eq!(m.trace_state, "a=b");
        assert_eq!(m.status.message, "upstream answered 503");

        let no_zone = SpanTags {
            node_id: "n".into(),
            zone: String::new(),
        };
        let m = ProxySpan {
            tags: Vec::new(),
            ..span_like()
        }
        .into_model(&no_zone);
        let keys: Vec<&str> = m.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["component", "node_id"]);
    }

    fn span_like() -> ProxySpan {
        ProxySpan {
            trace_id: TraceId::from_halves(0, 1),
            span_id: SpanId::from_u64(1),
            parent_span_id: None,
            trace_state: String::new(),
            name: String::new(),
            kind: SpanKind::Client,
            start_unix_nano: 0,
            end_unix_nano: 0,
            tags: Vec::new(),
            status: Status::default(),
        }
    }
}
