//! Extraction and injection, including every malformed case the B3 and W3C specs describe.

use super::*;

const T128: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const T64: &str = "a3ce929d0e0e4736";
const S1: &str = "00f067aa0ba902b7";
const S2: &str = "e457b5a2e4d86bd1";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn ctx(pairs: &[(&str, &str)]) -> TraceContext {
    match extract(&headers(pairs)) {
        Extracted::Context(c) => c,
        other => panic!("expected a context from {pairs:?}, got {other:?}"),
    }
}

fn none(pairs: &[(&str, &str)]) {
    assert_eq!(extract(&headers(pairs)), Extracted::None, "{pairs:?}");
}

// ---- B3 single ----

#[test]
fn b3_single_full() {
    let c = ctx(&[("b3", &format!("{T128}-{S1}-1-{S2}"))]);
    assert_eq!(c.trace_id.to_string(), T128);
    assert_eq!(c.span_id.to_string(), S1);
    assert_eq!(c.parent_span_id.map(|p| p.to_string()).as_deref(), Some(S2));
    assert_eq!(c.sampled, Some(true));
    assert!(!c.debug && !c.trace_id_64bit);
}

#[test]
fn b3_single_ids_only_defers_sampling() {
    let c = ctx(&[("b3", &format!("{T128}-{S1}"))]);
    assert_eq!(c.sampled, None);
    assert_eq!(c.parent_span_id, None);
}

#[test]
fn b3_single_debug_and_deny() {
    let c = ctx(&[("b3", &format!("{T128}-{S1}-d"))]);
    assert!(c.debug && c.is_sampled());
    let c = ctx(&[("b3", &format!("{T128}-{S1}-0"))]);
    assert_eq!(c.sampled, Some(false));
    assert!(!c.is_sampled());
}

#[test]
fn b3_single_sampling_only() {
    for (v, sampled, debug) in [("0", false, false), ("1", true, false), ("d", true, true)] {
        assert_eq!(
            extract(&headers(&[("b3", v)])),
            Extracted::SamplingOnly {
                sampled: Some(sampled),
                debug
            }
        );
    }
}

#[test]
fn b3_single_64bit_kept_as_given_and_joins_128bit() {
    let c = ctx(&[("b3", &format!("{T64}-{S1}-1"))]);
    assert!(c.trace_id_64bit);
    assert_eq!(
        c.trace_id,
        format!("0000000000000000{T64}").parse().unwrap()
    );
    let mut h = HeaderMap::new();
    inject(
        &c,
        &[Format::B3Single, Format::B3Multi, Format::TraceContext],
        &mut h,
    );
    assert_eq!(h["b3"], format!("{T64}-{S1}-1").as_str());
    assert_eq!(h["x-b3-traceid"], T64);
    assert_eq!(
        h["traceparent"],
        format!("00-0000000000000000{T64}-{S1}-01").as_str()
    );
}

#[test]
fn b3_single_malformed_cases_start_a_new_trace() {
    let zero_trace = "0".repeat(32);
    let zero_span = "0".repeat(16);
    let cases = [
        format!("{zero_trace}-{S1}-1"),                 // all-zero trace id
        format!("{T128}-{zero_span}-1"),                // all-zero span id
        format!("{}-{S1}-1", &T128[..31]),              // 31 digits
        format!("{T128}0-{S1}-1"),                      // 33 digits
        format!("{}-{S1}-1", &T128[..20]),              // 20 digits (neither 16 nor 32)
        format!("{T128}-{}-1", &S1[..15]),              // short span id
        format!("{T128}-{S1}0-1"),                      // long span id
        format!("{}-{S1}-1", T128.to_uppercase()),      // upper case trace id
        format!("{T128}-{}-1", S1.to_uppercase()),      // upper case span id
        format!("{T128}-{S1}-2"),                       // bad sampling state
        format!("{T128}-{S1}-true"),                    // bad sampling state
        format!("{T128}-{S1}-"),                        // empty sampling state
        format!("{T128}-{S1}-1-{}", &S2[..8]),          // short parent
        format!("{T128}-{S1}-1-{zero_span}"),           // zero parent
        format!("{T128}-{S1}-1-{S2}-extra"),            // too many fields
        T128.to_owned(),                                // trace id alone
        format!("{T128}-{S1}-1-{}", S2.to_uppercase()), // upper case parent
        "junk".to_owned(),
        "x-y-z".to_owned(),
        "".to_owned(),
        "-".to_owned(),
        format!("g{}-{S1}-1", &T128[1..]), // non-hex
    ];
    for case in cases {
        none(&[("b3", &case)]);
    }
}

// ---- B3 multi ----

#[test]
fn b3_multi_full_and_legacy_true_false() {
    let c = ctx(&[
        ("x-b3-traceid", T128),
        ("x-b3-spanid", S1),
        ("x-b3-parentspanid", S2),
        ("x-b3-sampled", "1"),
    ]);
    assert_eq!(c.trace_id.to_string(), T128);
    assert_eq!(c.parent_span_id.map(|p| p.to_string()).as_deref(), Some(S2));
    assert_eq!(c.sampled, Some(true));
    for (v, want) in [
        ("true", Some(true)),
        ("false", Some(false)),
        ("0", Some(false)),
    ] {
        let c = ctx(&[
            ("x-b3-traceid", T64),
            ("x-b3-spanid", S1),
            ("x-b3-sampled", v),
        ]);
        assert_eq!(c.sampled, want, "{v}");
        assert!(c.trace_id_64bit);
    }
}

#[test]
fn b3_multi_flags_debug_and_bad_values() {
    let c = ctx(&[
        ("x-b3-traceid", T128),
        ("x-b3-spanid", S1),
        ("x-b3-flags", "1"),
    ]);
    assert!(c.debug && c.is_sampled());
    // Bad flags and sampled values are ignored: the ids stand, the decision is deferred.
    for (k, v) in [
        ("x-b3-flags", "2"),
        ("x-b3-flags", "yes"),
        ("x-b3-sampled", "yes"),
        ("x-b3-sampled", "2"),
    ] {
        let c = ctx(&[("x-b3-traceid", T128), ("x-b3-spanid", S1), (k, v)]);
        assert!(!c.debug, "{k}: {v}");
        assert_eq!(c.sampled, None, "{k}: {v}");
    }
}

#[test]
fn b3_multi_sampling_only() {
    assert_eq!(
        extract(&headers(&[("x-b3-sampled", "0")])),
        Extracted::SamplingOnly {
            sampled: Some(false),
            debug: false
        }
    );
    assert_eq!(
        extract(&headers(&[("x-b3-flags", "1")])),
        Extracted::SamplingOnly {
            sampled: None,
            debug: true
        }
    );
}

#[test]
fn b3_multi_malformed_cases_start_a_new_trace() {
    let zero_trace = "0".repeat(32);
    let zero_span = "0".repeat(16);
    let upper_trace = T128.to_uppercase();
    let upper_span = S1.to_uppercase();
    let long_trace = format!("{T128}0");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("x-b3-traceid", &zero_trace), ("x-b3-spanid", S1)],
        vec![("x-b3-traceid", T128), ("x-b3-spanid", &zero_span)],
        vec![("x-b3-traceid", &T128[..31]), ("x-b3-spanid", S1)],
        vec![("x-b3-traceid", &long_trace), ("x-b3-spanid", S1)],
        vec![("x-b3-traceid", T128), ("x-b3-spanid", &S1[..12])],
        vec![("x-b3-traceid", &upper_trace), ("x-b3-spanid", S1)],
        vec![("x-b3-traceid", T128), ("x-b3-spanid", &upper_span)],
        vec![("x-b3-traceid", T128)],
        vec![("x-b3-spanid", S1)],
        vec![("x-b3-traceid", "junk"), ("x-b3-spanid", "junk")],
        vec![
            ("x-b3-traceid", T128),
            ("x-b3-spanid", S1),
            ("x-b3-parentspanid", "junk"),
        ],
    ];
    for case in cases {
        none(&case);
    }
}

// ---- W3C traceparent ----

#[test]
fn traceparent_valid_and_flags() {
    let c = ctx(&[("traceparent", &format!("00-{T128}-{S1}-01"))]);
    assert_eq!(c.trace_id.to_string(), T128);
    assert_eq!(c.span_id.to_string(), S1);
    assert_eq!(c.sampled, Some(true));
    let c = ctx(&[("traceparent", &format!("00-{T128}-{S1}-00"))]);
    assert_eq!(c.sampled, Some(false));
    // Unknown flag bits are ignored; only bit 0 counts.
    let c = ctx(&[("traceparent", &format!("00-{T128}-{S1}-fe"))]);
    assert_eq!(c.sampled, Some(false));
    let c = ctx(&[("traceparent", &format!("00-{T128}-{S1}-03"))]);
    assert_eq!(c.sampled, Some(true));
}

#[test]
fn traceparent_future_version_is_read_as_00() {
    let c = ctx(&[("traceparent", &format!("cc-{T128}-{S1}-01"))]);
    assert_eq!(c.trace_id.to_string(), T128);
    let c = ctx(&[(
        "traceparent",
        &format!("01-{T128}-{S1}-01-what-the-future-holds"),
    )]);
    assert_eq!(c.span_id.to_string(), S1);
}

#[test]
fn traceparent_malformed_cases_start_a_new_trace() {
    let zero_trace = "0".repeat(32);
    let zero_span = "0".repeat(16);
    let cases = [
        format!("ff-{T128}-{S1}-01"),                  // version ff is invalid
        format!("00-{zero_trace}-{S1}-01"),            // all-zero trace id
        format!("00-{T128}-{zero_span}-01"),           // all-zero parent id
        format!("00-{T128}-{S1}-01-extra"),            // version 00 with extra fields
        format!("00-{T128}-{S1}-01 "),                 // (trimmed: valid) -> see below
        format!("cc-{T128}-{S1}-01.extra"),            // future version, no dash after flags
        format!("00-{}-{S1}-01", &T128[..31]),         // short trace id
        format!("00-{T128}0-{S1}-01"),                 // long trace id
        format!("00-{T64}-{S1}-01"),                   // 64-bit trace id is not W3C
        format!("00-{T128}-{}-01", &S1[..15]),         // short parent id
        format!("00-{T128}-{S1}-1"),                   // one-digit flags
        format!("00-{T128}-{S1}-001"),                 // three-digit flags
        format!("00-{T128}-{S1}-0g"),                  // non-hex flags
        format!("00-{T128}-{S1}-0A"),                  // upper case flags
        format!("00-{}-{S1}-01", T128.to_uppercase()), // upper case trace id
        format!("00-{T128}-{}-01", S1.to_uppercase()), // upper case parent id
        format!("0A-{T128}-{S1}-01"),                  // upper case version
        format!("0-{T128}-{S1}-01"),                   // one-digit version
        format!("000-{T128}-{S1}-01"),                 // three-digit version
        format!("00_{T128}_{S1}_01"),                  // wrong separators
        format!("00-{T128}-{S1}"),                     // no flags
        format!("00-{T128}{S1}-01"),                   // missing separator
        "junk".to_owned(),
        "".to_owned(),
        format!("00-{}-{S1}-01", "x".repeat(32)), // non-hex trace id
    ];
    for case in cases {
        if case.ends_with(' ') {
            // Surrounding optional whitespace is not part of a header value: valid.
            ctx(&[("traceparent", &case)]);
            continue;
        }
        none(&[("traceparent", &case)]);
    }
}

// ---- W3C tracestate ----

#[test]
fn tracestate_kept_combined_and_validated() {
    let tp = format!("00-{T128}-{S1}-01");
    let c = ctx(&[
        ("traceparent", &tp),
        ("tracestate", "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"),
        ("tracestate", "tenant@vendor=x"),
    ]);
    assert_eq!(
        c.trace_state,
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7,tenant@vendor=x"
    );
    // Empty members are skipped.
    let c = ctx(&[("traceparent", &tp), ("tracestate", "a=1,,  ,b=2")]);
    assert_eq!(c.trace_state, "a=1,b=2");
}

#[test]
fn tracestate_malformed_is_dropped_but_traceparent_kept() {
    let tp = format!("00-{T128}-{S1}-01");
    let too_many = (0..33)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    let just_enough = (0..32)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    let long_key = format!("a{}=v", "b".repeat(256));
    let long_value = format!("k={}", "v".repeat(257));
    let bad = [
        too_many.as_str(),
        "Upper=1",             // upper case key
        "1abc=1",              // key starting with a digit (no tenant)
        "k=1,k=2",             // duplicate key
        "k",                   // no '='
        "k=",                  // empty value
        "k=a,b",               // member without '='
        "k=v=w",               // '=' in value
        "@vendor=1",           // empty tenant
        "t@=1",                // empty system
        "t@1vendor=1",         // system starting with a digit
        "t@abcdefghijklmno=1", // system of 15
        long_key.as_str(),
        long_value.as_str(),
        "k=\u{7f}",
    ];
    for state in bad {
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_str(&tp).unwrap());
        match HeaderValue::from_str(state) {
            Ok(v) => h.insert("tracestate", v),
            Err(_) => continue,
        };
        match extract(&h) {
            Extracted::Context(c) => assert_eq!(c.trace_state, "", "{state:?}"),
            other => panic!("{state:?}: {other:?}"),
        }
    }
    let c = ctx(&[("traceparent", &tp), ("tracestate", &just_enough)]);
    assert_eq!(c.trace_state, just_enough);
}

// ---- precedence ----

#[test]
fn b3_single_wins_then_multi_then_w3c() {
    let tp = format!("00-{T128}-{S2}-01");
    let c = ctx(&[
        ("b3", &format!("{T64}-{S1}-1")),
        ("x-b3-traceid", T128),
        ("x-b3-spanid", S2),
        ("traceparent", &tp),
    ]);
    assert_eq!(c.span_id.to_string(), S1);
    let c = ctx(&[
        ("x-b3-traceid", T128),
        ("x-b3-spanid", S1),
        ("traceparent", &tp),
    ]);
    assert_eq!(c.span_id.to_string(), S1);
}

#[test]
fn malformed_higher_rank_falls_through_to_a_valid_lower_one() {
    let tp = format!("00-{T128}-{S2}-01");
    let c = ctx(&[
        ("b3", "junk"),
        ("x-b3-traceid", "junk"),
        ("x-b3-spanid", S1),
        ("traceparent", &tp),
    ]);
    assert_eq!(c.span_id.to_string(), S2);
    assert_eq!(c.sampled, Some(true));
}

#[test]
fn tracestate_joins_a_b3_context_of_the_same_trace_only() {
    let tp = format!("00-{T128}-{S2}-01");
    let c = ctx(&[
        ("b3", &format!("{T128}-{S1}-1")),
        ("traceparent", &tp),
        ("tracestate", "a=1"),
    ]);
    assert_eq!(c.trace_state, "a=1");
    let other = "11111111111111111111111111111111";
    let c = ctx(&[
        ("b3", &format!("{other}-{S1}-1")),
        ("traceparent", &tp),
        ("tracestate", "a=1"),
    ]);
    assert_eq!(c.trace_state, "");
}

#[test]
fn ids_beat_a_bare_sampling_decision() {
    let tp = format!("00-{T128}-{S2}-01");
    let c = ctx(&[("b3", "0"), ("traceparent", &tp)]);
    assert_eq!(c.span_id.to_string(), S2);
}

// ---- injection ----

#[test]
fn inject_writes_only_the_configured_formats_and_clears_the_rest() {
    let c = TraceContext {
        trace_id: T128.parse().unwrap(),
        span_id: S1.parse().unwrap(),
        parent_span_id: Some(S2.parse().unwrap()),
        sampled: Some(true),
        debug: false,
        trace_state: "a=1".to_owned(),
        trace_id_64bit: false,
    };
    let mut h = headers(&[
        ("b3", "junk"),
        ("x-b3-flags", "1"),
        ("traceparent", "junk"),
        ("other", "kept"),
    ]);
    inject(&c, &[Format::B3Multi], &mut h);
    assert_eq!(h["x-b3-traceid"], T128);
    assert_eq!(h["x-b3-spanid"], S1);
    assert_eq!(h["x-b3-parentspanid"], S2);
    assert_eq!(h["x-b3-sampled"], "1");
    assert!(
        h.get("b3").is_none() && h.get("x-b3-flags").is_none() && h.get("traceparent").is_none()
    );
    assert_eq!(h["other"], "kept");

    let mut h = HeaderMap::new();
    inject(&c, &[Format::B3Single, Format::TraceContext], &mut h);
    assert_eq!(h["b3"], format!("{T128}-{S1}-1-{S2}").as_str());
    assert_eq!(h["traceparent"], format!("00-{T128}-{S1}-01").as_str());
    assert_eq!(h["tracestate"], "a=1");
    assert!(h.get("x-b3-traceid").is_none());
}

#[test]
fn inject_debug_and_deferred() {
    let mut c = TraceContext {
        trace_id: T128.parse().unwrap(),
        span_id: S1.parse().unwrap(),
        parent_span_id: Some(S2.parse().unwrap()),
        sampled: None,
        debug: true,
        trace_state: String::new(),
        trace_id_64bit: false,
    };
    let all = [Format::B3Single, Format::B3Multi, Format::TraceContext];
    let mut h = HeaderMap::new();
    inject(&c, &all, &mut h);
    assert_eq!(h["b3"], format!("{T128}-{S1}-d-{S2}").as_str());
    assert_eq!(h["x-b3-flags"], "1");
    assert!(h.get("x-b3-sampled").is_none());
    assert!(h["traceparent"].to_str().unwrap().ends_with("-01"));
    c.debug = false;
    let mut h = HeaderMap::new();
    inject(&c, &all, &mut h);
    // Without a sampling state the parent cannot be written in the single header.
    assert_eq!(h["b3"], format!("{T128}-{S1}").as_str());
    assert!(h.get("x-b3-sampled").is_none());
    assert!(h["traceparent"].to_str().unwrap().ends_with("-00"));
}

#[test]
fn round_trip_through_every_format() {
    for f in [Format::B3Single, Format::B3Multi, Format::TraceContext] {
        let c = TraceContext {
            trace_id: T128.parse().unwrap(),
            span_id: S1.parse().unwrap(),
            parent_span_id: None,
            sampled: Some(false),
            debug: false,
            trace_state: String::new(),
            trace_id_64bit: false,
        };
        let mut h = HeaderMap::new();
        inject(&c, &[f], &mut h);
        assert_eq!(extract(&h), Extracted::Context(c), "{f:?}");
        assert_eq!(Format::from_name(f.name()), Some(f));
    }
}

#[test]
fn injected_values_are_what_the_formats_spell_out() {
    // Ids written on the stack, checked against the formats spelled out with `format!`.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..500 {
        let short = i % 3 == 0;
        let trace_id = TraceId::from_halves(if short { 0 } else { next() }, next() | 1);
        let c = TraceContext {
            trace_id,
            span_id: SpanId::from_u64(next() | 1),
            parent_span_id: (i % 2 == 0).then(|| SpanId::from_u64(next() | 1)),
            sampled: [None, Some(true), Some(false)][i % 3],
            debug: i % 7 == 0,
            trace_state: String::new(),
            trace_id_64bit: short || i % 5 == 0,
        };
        let b3_trace = if c.trace_id_64bit && trace_id.is_64bit() {
            format!("{trace_id}")[16..].to_owned()
        } else {
            trace_id.to_string()
        };
        let state = if c.debug {
            Some("d")
        } else {
            c.sampled.map(|s| if s { "1" } else { "0" })
        };
        let mut b3 = format!("{b3_trace}-{}", c.span_id);
        if let Some(state) = state {
            b3 += &format!("-{state}");
            if let Some(p) = c.parent_span_id {
                b3 += &format!("-{p}");
            }
        }
        let flags = if c.is_sampled() { "01" } else { "00" };
        let mut h = HeaderMap::new();
        inject(
            &c,
            &[Format::B3Single, Format::B3Multi, Format::TraceContext],
            &mut h,
        );
        assert_eq!(h["b3"], b3.as_str());
        assert_eq!(h["x-b3-traceid"], b3_trace.as_str());
        assert_eq!(h["x-b3-spanid"], c.span_id.to_string().as_str());
        assert_eq!(
            h.get("x-b3-parentspanid")
                .map(|v| v.to_str().unwrap().to_owned()),
            c.parent_span_id.map(|p| p.to_string())
        );
        assert_eq!(
            h["traceparent"],
            format!("00-{trace_id}-{}-{flags}", c.span_id).as_str()
        );
    }
}
