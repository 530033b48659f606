//! One span per request: ids and the sampling decision from the incoming headers, Envoy's tags,
//! and hand-off to the reporter when the response is done.
//!
//! Ids, by listener mode (the next hop always gets this span's id as its parent):
//! - edge: a SERVER span, child of the incoming context, or the root of a new trace;
//! - outbound: a CLIENT span with a new span id, parent = the incoming span;
//! - inbound: a SERVER span, child of the incoming (client) span, or with `shared_span_context`
//!   the caller's own span id (Zipkin's shared client/server span).
//!
//! The tags are Envoy's:
//! `component=proxy`, `node_id`, `zone`, `guid:x-request-id`, `http.url`, `http.method`,
//! `http.protocol`, `http.status_code`, `upstream_cluster` (and `upstream_cluster.name`),
//! `upstream_address`, `peer.address`, `request_size`, `response_size`, `response_flags` (`-`, or
//! `NR`/`UF`/`UR`/`UT` as Envoy spells them), `user_agent`, `downstream_cluster`,
//! `guid:x-client-trace-id`, `error` (5xx or no response). Names checked against Envoy's
//! `Tracing::TracingTagValues` (source/common/tracing/http_tracer_impl.h).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use model::{AnyValue, KeyValue, SpanId, SpanKind, Status, StatusCode, TraceId};
use wire::propagation::{extract, Extracted, Format, TraceContext};

use crate::config::{Config, Mode, Sampling};
use crate::report::SpanSink;
use crate::stats::Stats;

enum TagSource {
    Value(String),
    Header(http::HeaderName, Option<String>),
}

/// What every request's span is built from.
pub struct Tracer {
    node_id: String,
    zone: String,
    pub formats: Vec<Format>,
    trace_id_128bit: bool,
    shared_span_context: bool,
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
    span: model::Span,
    started: Instant,
    sink: SpanSink,
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
            node_id: config.node_id.clone(),
            zone: config.zone.clone(),
            formats: t.propagation.clone(),
            trace_id_128bit: t.trace_id_128bit,
            shared_span_context: t.shared_span_context,
            sampling: t.sampling,
            custom_tags,
            sink,
            stats,
        }
    }

    /// Reads the incoming context and starts this hop's span (`operation` is only called when
    /// the span is recorded).
    pub fn begin(
        &self,
        mode: Mode,
        headers: &HeaderMap,
        operation: impl FnOnce() -> String,
    ) -> Begun {
        let client_trace_id = headers.contains_key("x-client-trace-id");
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
                            crate::sampling::decide(&self.sampling, &c.trace_id, client_trace_id)
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
                                    crate::sampling::decide(
                                        &self.sampling,
                                        &trace_id,
                                        client_trace_id,
                                    )
                                }),
                            debug,
                        ),
                        _ => (
                            crate::sampling::decide(&self.sampling, &trace_id, client_trace_id),
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
                let mut span = model::Span {
                    trace_id,
                    span_id,
                    parent_span_id: parent,
                    trace_state: outgoing.trace_state.clone(),
                    flags: 1,
                    name: operation(),
                    kind: if mode == Mode::Outbound {
                        SpanKind::Client
                    } else {
                        SpanKind::Server
                    },
                    start_unix_nano: now_nanos(),
                    ..Default::default()
                };
                let a = &mut span.attributes;
                a.push(KeyValue::new("component", "proxy"));
                a.push(KeyValue::new("node_id", self.node_id.as_str()));
                if !self.zone.is_empty() {
                    a.push(KeyValue::new("zone", self.zone.as_str()));
                }
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
                        a.push(KeyValue::new(tag.as_str(), v));
                    }
                }
                Some(ActiveSpan {
                    span,
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
    pub fn tag(&mut self, key: &str, value: impl Into<AnyValue>) {
        self.span.attributes.push(KeyValue::new(key, value));
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
