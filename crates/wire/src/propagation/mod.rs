//! Trace-context propagation over HTTP headers: B3 single (`b3`), B3 multi (`x-b3-*`) and W3C
//! Trace Context (`traceparent` / `tracestate`).
//!
//! This module owns reading a caller's context out of request headers and writing a context into
//! headers for the next hop. It never fails: a malformed header is treated as absent, which makes
//! the caller start a new trace (W3C's rule, and what B3 implementations do).
//!
//! # Extraction precedence
//!
//! All three formats are read on every request. The first *valid* one in this order wins:
//!
//! 1. `b3` (single header), with ids;
//! 2. `x-b3-traceid` + `x-b3-spanid` (multi headers);
//! 3. `traceparent` (W3C).
//!
//! A malformed header of a higher rank does not hide a valid one of a lower rank. B3 ranks first
//! because meshes (Envoy, Istio, FSM) and Zipkin-instrumented apps write it, and it can carry a
//! 64-bit id that W3C cannot. `tracestate` is kept whenever `traceparent` is valid and names the
//! same trace as the winner. When no format carries ids but a sampling decision is present
//! (`b3: 0`, `b3: 1`, `b3: d`, or `x-b3-sampled` / `x-b3-flags` alone), [`Extracted::SamplingOnly`]
//! carries that decision so a new trace can honour it.
//!
//! # Ids
//!
//! A 64-bit B3 trace id is kept as given: the [`TraceId`] holds it with the high half zero (which
//! joins it with its 128-bit form, as Zipkin, Jaeger and the OpenTelemetry Collector do), and
//! [`TraceContext::trace_id_64bit`] remembers to write it back to B3 as 16 hex digits. W3C always
//! gets 32 digits (left-padded with zeros).

mod b3;
mod w3c;

use http::{HeaderMap, HeaderName, HeaderValue};
use model::{SpanId, TraceId};

pub use b3::{
    parse_b3_single, B3_FLAGS, B3_PARENT_SPAN_ID, B3_SAMPLED, B3_SINGLE, B3_SPAN_ID, B3_TRACE_ID,
};
pub use w3c::{parse_traceparent, parse_tracestate, TRACEPARENT, TRACESTATE};

/// The context of the caller's span, as read from (or written to) headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: TraceId,
    /// The span the next hop's span is a child of.
    pub span_id: SpanId,
    /// The parent of `span_id` (B3 carries it; W3C does not).
    pub parent_span_id: Option<SpanId>,
    /// The sampling decision: `None` when the caller deferred it.
    pub sampled: Option<bool>,
    /// Force sampling (B3 `d` / `x-b3-flags: 1`); implies sampled.
    pub debug: bool,
    /// W3C `tracestate`, validated, members joined by `,` (empty when none).
    pub trace_state: String,
    /// The trace id arrived as 16 hex digits (B3) and is written back to B3 that way.
    pub trace_id_64bit: bool,
}

impl TraceContext {
    /// True when the trace is to be recorded: debug, or an explicit "sampled".
    pub fn is_sampled(&self) -> bool {
        self.debug || self.sampled == Some(true)
    }
}

/// What a request's headers say about its trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extracted {
    /// A valid context: continue this trace.
    Context(TraceContext),
    /// No ids, but a sampling decision to honour in the new trace.
    SamplingOnly { sampled: Option<bool>, debug: bool },
    /// Nothing usable (absent or malformed): start a new trace and decide sampling locally.
    None,
}

/// A header format the proxy writes (the YAML names are `b3multi`, `b3`, `tracecontext`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled`, `x-b3-flags`.
    B3Multi,
    /// `b3: {trace}-{span}-{sampled}-{parent}`.
    B3Single,
    /// `traceparent` and `tracestate`.
    TraceContext,
}

impl Format {
    /// Parses a configuration name: `b3multi`, `b3` or `tracecontext`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "b3multi" => Some(Format::B3Multi),
            "b3" => Some(Format::B3Single),
            "tracecontext" => Some(Format::TraceContext),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::B3Multi => "b3multi",
            Format::B3Single => "b3",
            Format::TraceContext => "tracecontext",
        }
    }
}

/// Every header any format reads or writes: [`inject`] removes them all before writing.
pub const ALL_HEADERS: [&str; 8] = [
    B3_SINGLE,
    B3_TRACE_ID,
    B3_SPAN_ID,
    B3_PARENT_SPAN_ID,
    B3_SAMPLED,
    B3_FLAGS,
    TRACEPARENT,
    TRACESTATE,
];

/// Reads the caller's context from `headers`, with the precedence documented on this module.
pub fn extract(headers: &HeaderMap) -> Extracted {
    let single = header_str(headers, B3_SINGLE).map(b3::parse_b3_single);
    let w3c = header_str(headers, TRACEPARENT).and_then(parse_traceparent);
    let trace_state = w3c.as_ref().map(|_| {
        let values = headers
            .get_all(TRACESTATE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        parse_tracestate(values).unwrap_or_default()
    });

    let with_state = |mut ctx: TraceContext| {
        if let (Some(tp), Some(state)) = (&w3c, &trace_state) {
            if tp.trace_id == ctx.trace_id {
                ctx.trace_state = state.clone();
            }
        }
        ctx
    };

    if let Some(b3::B3Single::Context(ctx)) = single {
        return Extracted::Context(with_state(ctx));
    }
    let multi = b3::extract_multi(headers);
    if let b3::B3Multi::Context(ctx) = multi {
        return Extracted::Context(with_state(ctx));
    }
    if let Some(mut ctx) = w3c {
        ctx.trace_state = trace_state.unwrap_or_default();
        return Extracted::Context(ctx);
    }
    if let Some(b3::B3Single::SamplingOnly { sampled, debug }) = single {
        return Extracted::SamplingOnly {
            sampled: Some(sampled),
            debug,
        };
    }
    if let b3::B3Multi::SamplingOnly { sampled, debug } = multi {
        return Extracted::SamplingOnly { sampled, debug };
    }
    Extracted::None
}

/// Removes every propagation header from `headers`, then writes `ctx` in each of `formats`.
///
/// `ctx.span_id` is the span the receiver of these headers is a child of.
pub fn inject(ctx: &TraceContext, formats: &[Format], headers: &mut HeaderMap) {
    for name in &NAMES {
        headers.remove(name);
    }
    for format in formats {
        match format {
            Format::B3Multi => b3::inject_multi(ctx, headers),
            Format::B3Single => {
                let mut buf = [0u8; b3::B3_SINGLE_MAX];
                put(headers, &NAMES[0], b3::format_b3_single(ctx, &mut buf));
            }
            Format::TraceContext => {
                let mut buf = [0u8; w3c::TRACEPARENT_LEN];
                put(headers, &NAMES[6], w3c::format_traceparent(ctx, &mut buf));
                if !ctx.trace_state.is_empty() {
                    put(headers, &NAMES[7], ctx.trace_state.as_bytes());
                }
            }
        }
    }
}

/// [`ALL_HEADERS`] as header names, built once: writing and removing them then parses no name.
/// The order is that of [`ALL_HEADERS`].
const NAMES: [HeaderName; 8] = [
    HeaderName::from_static(B3_SINGLE),
    HeaderName::from_static(B3_TRACE_ID),
    HeaderName::from_static(B3_SPAN_ID),
    HeaderName::from_static(B3_PARENT_SPAN_ID),
    HeaderName::from_static(B3_SAMPLED),
    HeaderName::from_static(B3_FLAGS),
    HeaderName::from_static(TRACEPARENT),
    HeaderName::from_static(TRACESTATE),
];

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Inserts a header whose value we built ourselves (hex, digits, or a validated tracestate).
fn put(headers: &mut HeaderMap, name: &HeaderName, value: &[u8]) {
    if let Ok(value) = HeaderValue::from_bytes(value) {
        headers.insert(name.clone(), value);
    }
}

/// Writes `bytes` as lowercase hex at the start of `out`; the rest of `out` after it.
fn put_hex<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a mut [u8] {
    let (hex, rest) = out.split_at_mut(bytes.len() * 2);
    // The slice is exactly twice the input: encoding cannot fail.
    let _ = hex::encode_to_slice(bytes, hex);
    rest
}

/// Lowercase hex digits only (B3 and W3C both forbid upper case).
fn is_lower_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A trace id of exactly 16 or 32 lowercase hex digits, not all zero; `(id, was_64bit)`.
fn parse_trace_id(s: &str) -> Option<(TraceId, bool)> {
    if (s.len() != 16 && s.len() != 32) || !is_lower_hex(s) {
        return None;
    }
    let id: TraceId = s.parse().ok()?;
    Some((id, s.len() == 16))
}

/// A span id of exactly 16 lowercase hex digits, not all zero.
fn parse_span_id(s: &str) -> Option<SpanId> {
    if s.len() != 16 || !is_lower_hex(s) {
        return None;
    }
    s.parse().ok()
}

/// The trace id's bytes as B3 writes them: the low 8 when the id came as 64-bit (and fits),
/// else all 16.
fn b3_trace_bytes(ctx: &TraceContext) -> &[u8] {
    let bytes = ctx.trace_id.as_bytes();
    if ctx.trace_id_64bit && ctx.trace_id.is_64bit() {
        &bytes[8..]
    } else {
        &bytes[..]
    }
}

#[cfg(test)]
mod tests;
