//! W3C Trace Context: `traceparent` and `tracestate` (https://www.w3.org/TR/trace-context/).
//!
//! `traceparent` is `{version}-{trace-id}-{parent-id}-{flags}`, all lowercase hex: version 2,
//! trace id 32 (not all zero), parent id 16 (not all zero), flags 2. Version `ff` is invalid. A
//! version other than `00` is a future version: it is parsed as `00` provided it is at least 55
//! characters and anything after the flags starts with `-` (the spec's forward-compatibility
//! rule); version `00` must be exactly 55 characters. The sampled flag is bit 0; other bits are
//! ignored and not written back.
//!
//! `tracestate` is a list of at most 32 `key=value` members. Keys are `lcalpha` followed by up to
//! 255 of `a-z0-9_-*/`, or `tenant@system` (tenant up to 241 characters starting with a letter or
//! digit, system up to 14 starting with a letter); values are up to 256 printable ASCII characters
//! other than `,` and `=`, not ending in a space. Empty members are skipped. A header that breaks
//! any of these rules, repeats a key, or has more than 32 members is dropped whole (the spec
//! allows it), keeping the `traceparent`.

use super::{is_lower_hex, parse_span_id, parse_trace_id, put_hex, TraceContext};

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Most members a `tracestate` may have.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Parses a `traceparent` value; `None` when malformed.
pub fn parse_traceparent(value: &str) -> Option<TraceContext> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let bytes = value.as_bytes();
    if bytes.len() < 55 {
        return None;
    }
    let version = value.get(0..2)?;
    if !is_lower_hex(version) || version == "ff" {
        return None;
    }
    if version == "00" && bytes.len() != 55 {
        return None;
    }
    if bytes.len() > 55 && bytes[55] != b'-' {
        return None;
    }
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let trace = value.get(3..35)?;
    let span = value.get(36..52)?;
    let flags = value.get(53..55)?;
    let (trace_id, _) = parse_trace_id(trace)?;
    let span_id = parse_span_id(span)?;
    if !is_lower_hex(flags) {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(TraceContext {
        trace_id,
        span_id,
        parent_span_id: None,
        sampled: Some(flags & 1 == 1),
        debug: false,
        trace_state: String::new(),
        trace_id_64bit: false,
    })
}

/// Validates the `tracestate` header values (combined in order, as HTTP list headers are) and
/// returns them joined by `,`; `None` when any rule is broken.
pub fn parse_tracestate<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut members: Vec<&str> = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    for value in values {
        for member in value.split(',') {
            let member = member.trim_matches(|c| c == ' ' || c == '\t');
            if member.is_empty() {
                continue;
            }
            let (key, val) = member.split_once('=')?;
            if !valid_key(key) || !valid_value(val) || keys.contains(&key) {
                return None;
            }
            keys.push(key);
            members.push(member);
            if members.len() > MAX_TRACESTATE_MEMBERS {
                return None;
            }
        }
    }
    Some(members.join(","))
}

fn key_char(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/')
}

fn valid_key(key: &str) -> bool {
    match key.split_once('@') {
        None => {
            let b = key.as_bytes();
            (1..=256).contains(&b.len())
                && b[0].is_ascii_lowercase()
                && b.iter().all(|&c| key_char(c))
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            (1..=241).contains(&t.len())
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && t.iter().all(|&c| key_char(c))
                && (1..=14).contains(&s.len())
                && s[0].is_ascii_lowercase()
                && s.iter().all(|&c| key_char(c))
        }
    }
}

fn valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    (1..=256).contains(&b.len())
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && b.last() != Some(&b' ')
}

/// The length of a version-00 `traceparent`.
pub(super) const TRACEPARENT_LEN: usize = 2 + 1 + 32 + 1 + 16 + 1 + 2;

/// Formats a `traceparent` into `buf` (version 00; only the sampled flag is written).
pub(super) fn format_traceparent<'a>(
    ctx: &TraceContext,
    buf: &'a mut [u8; TRACEPARENT_LEN],
) -> &'a [u8] {
    buf[..3].copy_from_slice(b"00-");
    let rest = put_hex(ctx.trace_id.as_bytes(), &mut buf[3..]);
    rest[0] = b'-';
    let rest = put_hex(ctx.span_id.as_bytes(), &mut rest[1..]);
    rest.copy_from_slice(if ctx.is_sampled() { b"-01" } else { b"-00" });
    &buf[..]
}
