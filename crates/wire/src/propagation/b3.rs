//! B3 propagation (openzipkin/b3-propagation): the single `b3` header and the `x-b3-*` headers.
//!
//! Single: `{trace}-{span}[-{sampling}[-{parent}]]` or a bare sampling state `0`, `1`, `d`.
//! Trace id 16 or 32 lowercase hex, span and parent ids 16; sampling `1`, `0` or `d` (debug).
//! Multi: `x-b3-sampled` accepts `1`/`0` and, as the B3 spec asks of readers, the legacy
//! `true`/`false`; any other value is ignored (the decision is deferred) rather than dropping
//! valid ids. `x-b3-flags: 1` is debug; other flag values are ignored.

use http::HeaderMap;

use super::{
    b3_trace_bytes, header_str, parse_span_id, parse_trace_id, put, put_hex, TraceContext, NAMES,
};

pub const B3_SINGLE: &str = "b3";
pub const B3_TRACE_ID: &str = "x-b3-traceid";
pub const B3_SPAN_ID: &str = "x-b3-spanid";
pub const B3_PARENT_SPAN_ID: &str = "x-b3-parentspanid";
pub const B3_SAMPLED: &str = "x-b3-sampled";
pub const B3_FLAGS: &str = "x-b3-flags";

/// What a `b3` header holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum B3Single {
    Context(TraceContext),
    SamplingOnly { sampled: bool, debug: bool },
    Malformed,
}

/// What the `x-b3-*` headers hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum B3Multi {
    Context(TraceContext),
    SamplingOnly { sampled: Option<bool>, debug: bool },
    None,
}

/// `(sampled, debug)` of a single-header sampling state.
fn sampling_state(s: &str) -> Option<(bool, bool)> {
    match s {
        "1" => Some((true, false)),
        "0" => Some((false, false)),
        "d" => Some((true, true)),
        _ => None,
    }
}

/// Parses a `b3` header value.
pub fn parse_b3_single(value: &str) -> B3Single {
    let value = value.trim();
    if let Some((sampled, debug)) = sampling_state(value) {
        return B3Single::SamplingOnly { sampled, debug };
    }
    let mut fields = value.split('-');
    let (Some(trace), Some(span)) = (fields.next(), fields.next()) else {
        return B3Single::Malformed;
    };
    let state = fields.next();
    let parent = fields.next();
    if fields.next().is_some() {
        return B3Single::Malformed;
    }
    let (Some((trace_id, trace_id_64bit)), Some(span_id)) =
        (parse_trace_id(trace), parse_span_id(span))
    else {
        return B3Single::Malformed;
    };
    let (sampled, debug) = match state {
        None => (None, false),
        Some(s) => match sampling_state(s) {
            Some((sampled, debug)) => (Some(sampled), debug),
            None => return B3Single::Malformed,
        },
    };
    let parent_span_id = match parent {
        None => None,
        Some(p) => match parse_span_id(p) {
            Some(id) => Some(id),
            None => return B3Single::Malformed,
        },
    };
    B3Single::Context(TraceContext {
        trace_id,
        span_id,
        parent_span_id,
        sampled,
        debug,
        trace_state: String::new(),
        trace_id_64bit,
    })
}

pub(super) fn extract_multi(headers: &HeaderMap) -> B3Multi {
    let debug = header_str(headers, B3_FLAGS).map(str::trim) == Some("1");
    let sampled = match header_str(headers, B3_SAMPLED).map(str::trim) {
        Some("1") | Some("true") => Some(true),
        Some("0") | Some("false") => Some(false),
        _ => None,
    };
    let trace = header_str(headers, B3_TRACE_ID).map(str::trim);
    let span = header_str(headers, B3_SPAN_ID).map(str::trim);
    let (Some(trace), Some(span)) = (trace, span) else {
        if sampled.is_some() || debug {
            return B3Multi::SamplingOnly { sampled, debug };
        }
        return B3Multi::None;
    };
    let (Some((trace_id, trace_id_64bit)), Some(span_id)) =
        (parse_trace_id(trace), parse_span_id(span))
    else {
        return B3Multi::None;
    };
    let parent_span_id = match header_str(headers, B3_PARENT_SPAN_ID).map(str::trim) {
        None => None,
        Some(p) => match parse_span_id(p) {
            Some(id) => Some(id),
            None => return B3Multi::None,
        },
    };
    B3Multi::Context(TraceContext {
        trace_id,
        span_id,
        parent_span_id,
        sampled,
        debug,
        trace_state: String::new(),
        trace_id_64bit,
    })
}

/// The longest `b3` value: 32-digit trace id, span id, state, parent.
pub(super) const B3_SINGLE_MAX: usize = 32 + 1 + 16 + 2 + 1 + 16;

/// Formats a `b3` value into `buf`. The parent is written only with a sampling state (the
/// format's rule).
pub(super) fn format_b3_single<'a>(
    ctx: &TraceContext,
    buf: &'a mut [u8; B3_SINGLE_MAX],
) -> &'a [u8] {
    let total = buf.len();
    let mut rest = put_hex(b3_trace_bytes(ctx), buf);
    rest[0] = b'-';
    rest = put_hex(ctx.span_id.as_bytes(), &mut rest[1..]);
    let state = if ctx.debug {
        Some(b'd')
    } else {
        ctx.sampled.map(|s| if s { b'1' } else { b'0' })
    };
    if let Some(state) = state {
        rest[..2].copy_from_slice(&[b'-', state]);
        rest = &mut rest[2..];
        if let Some(parent) = ctx.parent_span_id {
            rest[0] = b'-';
            rest = put_hex(parent.as_bytes(), &mut rest[1..]);
        }
    }
    let len = total - rest.len();
    &buf[..len]
}

/// Writes the `x-b3-*` headers. Debug is `x-b3-flags: 1` without `x-b3-sampled` (the spec's rule).
pub(super) fn inject_multi(ctx: &TraceContext, headers: &mut HeaderMap) {
    let mut buf = [0u8; 32];
    let trace = b3_trace_bytes(ctx);
    put_hex(trace, &mut buf);
    put(headers, &NAMES[1], &buf[..trace.len() * 2]);
    put_hex(ctx.span_id.as_bytes(), &mut buf);
    put(headers, &NAMES[2], &buf[..16]);
    if let Some(parent) = ctx.parent_span_id {
        put_hex(parent.as_bytes(), &mut buf);
        put(headers, &NAMES[3], &buf[..16]);
    }
    if ctx.debug {
        put(headers, &NAMES[5], b"1");
    } else if let Some(sampled) = ctx.sampled {
        put(headers, &NAMES[4], if sampled { b"1" } else { b"0" });
    }
}
