use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::resource::v1 as pr;
use opentelemetry_proto::tonic::trace::v1 as pt;
use prost::Message;

use super::*;
use crate::fixtures::rich_batch;
use crate::otlp::{decode_protobuf, encode_protobuf, from_request};
use crate::ExportTraceServiceRequest;

/// A small xorshift generator: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn kv(key: &str, value: V) -> pc::KeyValue {
    pc::KeyValue {
        key: key.into(),
        value: Some(pc::AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A random value, nested up to `depth` arrays/kvlists deep.
fn value(r: &mut Rng, depth: u32) -> V {
    match r.below(if depth == 0 { 5 } else { 7 }) {
        0 => V::StringValue(format!("v{}", r.below(100))),
        1 => V::BoolValue(r.below(2) == 1),
        2 => V::IntValue(r.next() as i64),
        3 => V::DoubleValue(r.below(1000) as f64 / 7.0),
        4 => {
            let n = r.below(5) as usize;
            V::BytesValue(r.bytes(n))
        }
        5 => V::ArrayValue(pc::ArrayValue {
            values: (0..r.below(3))
                .map(|_| pc::AnyValue {
                    value: Some(value(r, depth - 1)),
                })
                .collect(),
        }),
        _ => V::KvlistValue(pc::KeyValueList {
            values: (0..r.below(3))
                .map(|i| kv(&format!("k{i}"), value(r, depth - 1)))
                .collect(),
        }),
    }
}

/// An id of the usual length, now and then of a wrong length or all zeros.
fn id(r: &mut Rng, len: usize) -> Vec<u8> {
    match r.below(20) {
        0 => vec![0; len],
        1 => {
            let n = r.below(20) as usize;
            r.bytes(n)
        }
        2 => Vec::new(),
        _ => r.bytes(len),
    }
}

fn random_span(r: &mut Rng) -> pt::Span {
    let mut attributes: Vec<_> = (0..r.below(4))
        .map(|i| kv(&format!("a{i}"), value(r, 3)))
        .collect();
    if r.below(10) == 0 {
        attributes.push(kv("sampling.priority", V::IntValue(1)));
    }
    pt::Span {
        trace_id: id(r, 16),
        span_id: id(r, 8),
        parent_span_id: if r.below(2) == 0 {
            Vec::new()
        } else {
            id(r, 8)
        },
        trace_state: if r.below(5) == 0 {
            "ot=th:8".into()
        } else {
            String::new()
        },
        name: format!("span {}", r.below(1000)),
        kind: r.below(6) as i32,
        start_time_unix_nano: r.next(),
        end_time_unix_nano: r.next(),
        attributes,
        dropped_attributes_count: r.below(3) as u32,
        events: (0..r.below(2))
            .map(|_| pt::span::Event {
                time_unix_nano: r.next(),
                name: "e".into(),
                attributes: vec![kv("x", value(r, 1))],
                dropped_attributes_count: 0,
            })
            .collect(),
        links: (0..r.below(2))
            .map(|_| pt::span::Link {
                trace_id: id(r, 16),
                span_id: id(r, 8),
                trace_state: String::new(),
                attributes: vec![kv("l", value(r, 1))],
                dropped_attributes_count: 0,
                flags: 1,
            })
            .collect(),
        status: (r.below(2) == 0).then(|| pt::Status {
            message: "m".into(),
            code: r.below(3) as i32,
        }),
        flags: r.below(0x400) as u32,
        ..Default::default()
    }
}

fn random_request(r: &mut Rng) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: (0..r.below(3))
            .map(|_| pt::ResourceSpans {
                resource: Some(pr::Resource {
                    attributes: vec![kv("service.name", V::StringValue("svc".into()))],
                    ..Default::default()
                }),
                scope_spans: (0..r.below(3))
                    .map(|_| pt::ScopeSpans {
                        scope: (r.below(2) == 0).then(|| pc::InstrumentationScope {
                            name: "lib".into(),
                            ..Default::default()
                        }),
                        spans: (0..r.below(5)).map(|_| random_span(r)).collect(),
                        schema_url: "https://example.com/s".into(),
                    })
                    .collect(),
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// Trace ids of spans, in order, each with whether `from_request` keeps its span.
type IdsAndValidity = Vec<(Vec<u8>, bool)>;

/// Every span of a decoded request, in order, with whether `from_request` keeps it.
fn spans_of(req: &ExportTraceServiceRequest) -> IdsAndValidity {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| {
            let one = ExportTraceServiceRequest {
                resource_spans: vec![pt::ResourceSpans {
                    scope_spans: vec![pt::ScopeSpans {
                        spans: vec![s.clone()],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            (s.trace_id.clone(), from_request(one).rejected_spans == 0)
        })
        .collect()
}

fn scanned(bytes: &[u8]) -> Result<(Scan, IdsAndValidity), ScanError> {
    let mut seen = Vec::new();
    let scan = scan_spans(bytes, |s| seen.push((s.trace_id.to_vec(), s.valid)))?;
    Ok((scan, seen))
}

#[test]
fn agrees_with_prost_and_from_request_on_generated_requests() {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let mut invalid_seen = 0;
    for _ in 0..3000 {
        let req = random_request(&mut r);
        let bytes = req.encode_to_vec();
        let (scan, seen) = scanned(&bytes).expect("a prost-encoded request scans");
        let want = spans_of(&req);
        assert_eq!(seen, want);
        let mut walked = Vec::new();
        walk_spans(&bytes, "sampling.priority", |s| {
            assert_eq!(s.keyed, s.has_attribute_key("sampling.priority"));
            walked.push((s.trace_id.to_vec(), s.valid));
        })
        .unwrap();
        assert_eq!(walked, want, "the walk sees what the scan sees");
        assert_eq!(scan.spans, want.len());
        let decoded = from_request(req);
        assert_eq!(scan.invalid_spans as u64, decoded.rejected_spans);
        assert_eq!(scan.spans - scan.invalid_spans, decoded.batch.span_count());
        invalid_seen += scan.invalid_spans;
    }
    assert!(
        invalid_seen > 100,
        "the generator must produce invalid spans"
    );
}

#[test]
fn accepts_only_what_prost_accepts_under_corruption() {
    // Soundness: whatever the scan accepts, prost decodes, with the same span count. Corrupt
    // valid requests by truncation, byte flips and insertions.
    let mut r = Rng(42);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..3000 {
        let mut bytes = random_request(&mut r).encode_to_vec();
        if bytes.is_empty() {
            continue;
        }
        match r.below(3) {
            0 => bytes.truncate(r.below(bytes.len() as u64) as usize),
            1 => {
                for _ in 0..=r.below(3) {
                    let i = r.below(bytes.len() as u64) as usize;
                    bytes[i] = r.next() as u8;
                }
            }
            _ => {
                let i = r.below(bytes.len() as u64) as usize;
                bytes.insert(i, r.next() as u8);
            }
        }
        match scan(&bytes) {
            Ok(s) => {
                accepted += 1;
                let d = decode_protobuf(&bytes).expect("scan accepted what prost refuses");
                assert_eq!(s.spans - s.invalid_spans, d.batch.span_count());
                assert_eq!(s.invalid_spans as u64, d.rejected_spans);
            }
            Err(_) => refused += 1,
        }
    }
    assert!(accepted > 100 && refused > 100, "{accepted} / {refused}");
}

#[test]
fn rich_fixture_and_concatenation() {
    let bytes = encode_protobuf(&rich_batch());
    let one = scan(&bytes).unwrap();
    assert_eq!(one.spans, rich_batch().span_count());
    assert_eq!(one.invalid_spans, 0);
    let twice = [bytes.clone(), bytes].concat();
    assert_eq!(scan(&twice).unwrap().spans, 2 * one.spans);
    assert_eq!(scan(&[]).unwrap(), Scan::default());
}

fn one_span(span: pt::Span) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans {
            scope_spans: vec![pt::ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn valid_span() -> pt::Span {
    pt::Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "ok".into(),
        ..Default::default()
    }
}

/// Wraps span body bytes in a request (ResourceSpans 1 → ScopeSpans 2 → Span 2).
fn wrap_span_body(body: &[u8]) -> Vec<u8> {
    let field = |n: u32, b: &[u8]| {
        let mut out = Vec::new();
        encode_key(n, WireType::LengthDelimited, &mut out);
        encode_varint(b.len() as u64, &mut out);
        out.extend_from_slice(b);
        out
    };
    field(1, &field(2, &field(2, body)))
}

fn err(bytes: &[u8]) -> String {
    let e = scan(bytes).expect_err("must be refused").to_string();
    assert!(
        e.starts_with("malformed OTLP ExportTraceServiceRequest protobuf: "),
        "{e}"
    );
    e
}

#[test]
fn truncation_anywhere_is_an_error_or_a_shorter_valid_request() {
    let bytes = encode_protobuf(&rich_batch());
    for cut in 1..bytes.len() {
        if let Ok(s) = scan(&bytes[..cut]) {
            // Cutting at a field boundary of the outermost message leaves a valid request.
            assert!(decode_protobuf(&bytes[..cut]).is_ok());
            assert!(s.spans <= rich_batch().span_count());
        }
    }
    assert!(err(&bytes[..bytes.len() - 1]).contains("past the end"));
}

#[test]
fn wrong_wire_types_are_refused() {
    // Span.trace_id (1) as a varint.
    let mut body = Vec::new();
    encode_key(1, WireType::Varint, &mut body);
    encode_varint(5, &mut body);
    let e = err(&wrap_span_body(&body));
    assert!(e.contains("Span field 1 has wire type Varint"), "{e}");
    assert!(decode_protobuf(&wrap_span_body(&body)).is_err());
    // Span.start_time_unix_nano (7, fixed64) as fixed32.
    let mut body = Vec::new();
    encode_key(7, WireType::ThirtyTwoBit, &mut body);
    body.extend_from_slice(&[0; 4]);
    assert!(err(&wrap_span_body(&body)).contains("Span field 7"));
    // A group, which OTLP never uses.
    let mut body = Vec::new();
    encode_key(99, WireType::StartGroup, &mut body);
    assert!(err(&wrap_span_body(&body)).contains("group"));
    // The request's resource_spans as a varint.
    assert!(err(&[0x08, 0x01]).contains("Request field 1"));
}

#[test]
fn bad_ids_are_counted_not_refused() {
    for (trace_id, span_id, parent, valid) in [
        (vec![1; 16], vec![2; 8], vec![], true),
        (vec![1; 16], vec![2; 8], vec![0; 8], true),
        (vec![1; 16], vec![2; 8], vec![3; 8], true),
        (vec![1; 8], vec![2; 8], vec![], false),
        (vec![0; 16], vec![2; 8], vec![], false),
        (vec![1; 16], vec![0; 8], vec![], false),
        (vec![1; 16], vec![2; 7], vec![], false),
        (vec![1; 16], vec![2; 8], vec![0; 4], false),
        (vec![], vec![], vec![], false),
    ] {
        let bytes = one_span(pt::Span {
            trace_id,
            span_id,
            parent_span_id: parent,
            ..valid_span()
        });
        let s = scan(&bytes).unwrap();
        assert_eq!(s.spans, 1);
        assert_eq!(s.invalid_spans, usize::from(!valid), "{bytes:?}");
        assert_eq!(
            decode_protobuf(&bytes).unwrap().rejected_spans,
            u64::from(!valid)
        );
    }
}

#[test]
fn nested_garbage_and_bad_strings_are_refused() {
    // An attribute whose kvlist value holds bytes that are not a KeyValue.
    let mut garbage = Vec::new();
    encode_key(6, WireType::LengthDelimited, &mut garbage); // AnyValue.kvlist_value
    encode_varint(3, &mut garbage);
    garbage.extend_from_slice(&[0x0a, 0x05, 0x01]); // KeyValueList.values, truncated
    let mut pair = Vec::new();
    encode_key(2, WireType::LengthDelimited, &mut pair); // KeyValue.value
    encode_varint(garbage.len() as u64, &mut pair);
    pair.extend_from_slice(&garbage);
    let span_body = {
        let mut b = valid_span().encode_to_vec();
        encode_key(9, WireType::LengthDelimited, &mut b);
        encode_varint(pair.len() as u64, &mut b);
        b.extend_from_slice(&pair);
        b
    };
    assert!(err(&wrap_span_body(&span_body)).contains("past the end"));
    assert!(decode_protobuf(&wrap_span_body(&span_body)).is_err());
    // A name that is not UTF-8.
    let mut span_body = valid_span().encode_to_vec();
    encode_key(5, WireType::LengthDelimited, &mut span_body);
    encode_varint(2, &mut span_body);
    span_body.extend_from_slice(&[0xc3, 0x28]);
    assert!(err(&wrap_span_body(&span_body)).contains("not UTF-8"));
    assert!(decode_protobuf(&wrap_span_body(&span_body)).is_err());
    // An attribute string value inside an array that is not UTF-8: encode a marker, then
    // overwrite it in place (same length, so the structure stays valid).
    let mut bad = one_span(pt::Span {
        attributes: vec![kv(
            "k",
            V::ArrayValue(pc::ArrayValue {
                values: vec![pc::AnyValue {
                    value: Some(V::StringValue("ZZZZ".into())),
                }],
            }),
        )],
        ..valid_span()
    });
    let at = bad.windows(4).position(|w| w == b"ZZZZ").unwrap();
    bad[at..at + 4].copy_from_slice(&[0xff; 4]);
    assert!(err(&bad).contains("AnyValue field 1"));
    assert!(decode_protobuf(&bad).is_err());
}

#[test]
fn deep_nesting_is_refused() {
    // Each array is two messages deep: deeper than the scan goes, within prost's limit.
    let mut v = V::IntValue(1);
    for _ in 0..MAX_DEPTH / 2 + 3 {
        v = V::ArrayValue(pc::ArrayValue {
            values: vec![pc::AnyValue { value: Some(v) }],
        });
    }
    let bytes = one_span(pt::Span {
        attributes: vec![kv("deep", v)],
        ..valid_span()
    });
    assert!(err(&bytes).contains("nested deeper"));
    assert!(decode_protobuf(&bytes).is_ok(), "the full decode takes it");
    assert_eq!(count_spans(&bytes), Ok(1));
}

#[test]
fn subset_decodes_to_the_chosen_spans_with_their_resource_and_scope() {
    let mut r = Rng(7);
    for _ in 0..500 {
        let req = random_request(&mut r);
        let bytes = req.encode_to_vec();
        let mut subset = Subset::default();
        let mut n = 0;
        scan_spans(&bytes, |s| {
            if n % 3 != 1 {
                subset.push(s);
            }
            n += 1;
        })
        .unwrap();
        let got = ExportTraceServiceRequest::decode(&subset.finish()[..]).unwrap();
        let mut want = req.clone();
        let mut i = 0;
        for rs in &mut want.resource_spans {
            for ss in &mut rs.scope_spans {
                ss.spans.retain(|_| {
                    i += 1;
                    (i - 1) % 3 != 1
                });
            }
            rs.scope_spans.retain(|ss| !ss.spans.is_empty());
        }
        want.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
        assert_eq!(got, want);
    }
}

#[test]
fn attribute_keys_are_found() {
    let bytes = one_span(pt::Span {
        attributes: vec![
            kv("a", V::IntValue(1)),
            kv("sampling.priority", V::IntValue(0)),
        ],
        ..valid_span()
    });
    let mut found = Vec::new();
    scan_spans(&bytes, |s| {
        found.push((
            s.has_attribute_key("sampling.priority"),
            s.has_attribute_key("b"),
        ))
    })
    .unwrap();
    assert_eq!(found, [(true, false)]);
}

/// A span whose attributes take every in-place path of the scan (short and two-byte lengths,
/// ASCII and non-ASCII strings, one- and ten-byte varints, doubles, bools) and one that does
/// not (a string of more than 16 KiB: a three-byte length).
fn fast_path_span() -> pt::Span {
    pt::Span {
        trace_state: "ot=th:8".into(),
        attributes: vec![
            kv("http.method", V::StringValue("GET".into())),
            kv("http.url", V::StringValue("x".repeat(300))),
            kv("clé", V::StringValue("naïve".into())),
            kv("n", V::IntValue(-1)),
            kv("m", V::IntValue(1 << 40)),
            kv("d", V::DoubleValue(0.5)),
            kv("b", V::BoolValue(true)),
            kv("empty", V::StringValue(String::new())),
            kv("huge", V::StringValue("y".repeat(20_000))),
            kv("sampling.priority", V::IntValue(1)),
        ],
        events: vec![pt::span::Event {
            name: "e".into(),
            attributes: vec![kv("k", V::StringValue("v".into()))],
            ..Default::default()
        }],
        status: Some(pt::Status {
            message: "m".into(),
            code: 2,
        }),
        flags: 0x301,
        ..valid_span()
    }
}

#[test]
fn in_place_paths_agree_with_prost_byte_by_byte() {
    let bytes = one_span(fast_path_span());
    let s = scan(&bytes).expect("a prost-encoded request scans");
    assert_eq!((s.spans, s.invalid_spans), (1, 0));
    let mut keyed = Vec::new();
    walk_spans(&bytes, "sampling.priority", |s| {
        keyed.push((s.keyed, s.trace_state))
    })
    .unwrap();
    assert_eq!(keyed, [(true, "ot=th:8")]);
    // Every byte of the span replaced by values that break the in-place paths (lengths, varint
    // continuation bits, UTF-8): whatever the scan accepts, prost decodes, with the same spans.
    // The 20,000-byte attribute is skipped; it is read the general way.
    let huge = bytes.windows(4).position(|w| w == b"yyyy").unwrap();
    let (mut accepted, mut refused) = (0, 0);
    for at in (0..bytes.len()).filter(|&i| i < huge || i >= huge + 20_000) {
        for v in [0x00, 0x01, 0x02, 0x7f, 0x80, 0xc3, 0xff, bytes[at] ^ 0x08] {
            let mut b = bytes.clone();
            b[at] = v;
            match scan(&b) {
                Ok(s) => {
                    accepted += 1;
                    let d = decode_protobuf(&b).expect("scan accepted what prost refuses");
                    assert_eq!(s.spans - s.invalid_spans, d.batch.span_count(), "at {at}");
                    assert_eq!(s.invalid_spans as u64, d.rejected_spans, "at {at}");
                }
                Err(_) => refused += 1,
            }
        }
    }
    assert!(accepted > 500 && refused > 500, "{accepted} / {refused}");
}

#[test]
fn in_place_paths_refuse_what_prost_refuses() {
    let patch = |from: &[u8], to: &[u8]| {
        let mut b = one_span(fast_path_span());
        let at = b.windows(from.len()).position(|w| w == from).unwrap();
        b[at..at + from.len()].copy_from_slice(to);
        b
    };
    // Not UTF-8: a value, a key, the tracestate.
    for bad in [
        patch(b"GET", &[0xff, 0xfe, 0xfd]),
        patch("clé".as_bytes(), &[b'c', b'l', 0xc3, 0x28]),
        patch(b"ot=th:8", &[b'o', b't', b'=', 0xff, b':', b'8', b'8']),
    ] {
        assert!(err(&bad).contains("not UTF-8"));
        assert!(decode_protobuf(&bad).is_err());
    }
    // A ten-byte varint whose last byte overflows 64 bits (-1 is nine 0xff then 0x01).
    let mut minus_one = vec![0xff; 9];
    minus_one.push(0x01);
    let mut overflow = minus_one.clone();
    overflow[9] = 0x02;
    let bad = patch(&minus_one, &overflow);
    scan(&bad).expect_err("an overflowing varint is refused");
    assert!(decode_protobuf(&bad).is_err());
}
