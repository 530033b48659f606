use super::*;
use crate::payload::OtlpBytes;
use model::{KeyValue, TraceId};

fn cfg(pct: f32, seed: u32, mode: SamplerMode) -> ProbabilisticSampler {
    ProbabilisticSampler {
        sampling_percentage: pct,
        hash_seed: seed,
        mode,
        ..Default::default()
    }
}

fn span(id: &str) -> Span {
    Span {
        trace_id: id.parse().unwrap(),
        ..Default::default()
    }
}

#[test]
fn design_vectors() {
    assert_eq!(fnv1a32(0, &[0u8; 16]) & 0x3FFF, 0x2455);
    assert_eq!(fnv1a32(0, &[]) & 0x3FFF, 0x3515);
    let id: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
    assert_eq!(fnv1a32(0, id.as_bytes()), 0x3420408d);
    assert_eq!(fnv1a32(0, id.as_bytes()) & 0x3FFF, 141);
    assert_eq!(scaled_rate(1.0), 163);
    let s = Sampler::new("p", &cfg(1.0, 0, SamplerMode::HashSeed));
    let mut sp = span("4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(s.decide(&mut sp).sampled);
    // 141 is not below uint32(0.8 * 163.84) = 131.
    let s = Sampler::new("p", &cfg(0.8, 0, SamplerMode::HashSeed));
    assert!(
        !s.decide(&mut span("4bf92f3577b34da6a3ce929d0e0e4736"))
            .sampled
    );
}

#[test]
fn float32_scaling_is_kept() {
    // float32(33.33) * float32(163.84) truncates to 5460; float64 would give 5460.79 → 5460 too,
    // but 0.1% shows the float32 path: 0.1f32 * 163.84f32 = 16.384 → 16.
    assert_eq!(scaled_rate(0.1), 16);
    assert_eq!(scaled_rate(100.0), 16384);
    assert_eq!(scaled_rate(250.0), 16384);
    assert_eq!(scaled_rate(50.0), 8192);
}

#[test]
fn hash_seed_mode_writes_rv_and_th_like_otel() {
    let s = Sampler::new("p", &cfg(50.0, 0, SamplerMode::HashSeed));
    let mut sp = span("4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(s.decide(&mut sp).sampled);
    // bucket 141 → top 14 bits 16383-141; th for 50% is (16384-8192)<<42 = 0x8 000...
    assert!(sp.trace_state.starts_with("ot=rv:"), "{}", sp.trace_state);
    assert!(sp.trace_state.ends_with(";th:8"), "{}", sp.trace_state);
    // A span that already carries rv is refused in hash_seed mode (fail_closed)...
    let mut again = sp.clone();
    assert!(!s.decide(&mut again).sampled);
    // ...and passed through when not fail_closed.
    let open = Sampler::new(
        "p",
        &ProbabilisticSampler {
            fail_closed: false,
            ..cfg(50.0, 0, SamplerMode::HashSeed)
        },
    );
    assert!(open.decide(&mut sp.clone()).sampled);
}

#[test]
fn sampling_priority_overrides() {
    let s = Sampler::new("p", &cfg(0.0001, 0, SamplerMode::HashSeed));
    let mut sp = span("4bf92f3577b34da6a3ce929d0e0e4736");
    sp.attributes.push(KeyValue::new("sampling.priority", 1i64));
    assert_eq!(
        s.decide(&mut sp),
        Decision {
            sampled: true,
            policy: "sampling_priority"
        }
    );
    let all = Sampler::new("p", &cfg(100.0, 0, SamplerMode::HashSeed));
    let mut sp = span("4bf92f3577b34da6a3ce929d0e0e4736");
    sp.attributes.push(KeyValue::new("sampling.priority", "0"));
    assert!(!all.decide(&mut sp).sampled);
}

#[test]
fn proportional_and_equalizing_follow_w3c() {
    // Randomness = last 7 bytes of the trace id: 0xce929d0e0e4736 ≥ th of 10% (0xe666…) is false.
    let id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let p = Sampler::new("p", &cfg(10.0, 0, SamplerMode::Proportional));
    assert!(!p.decide(&mut span(id)).sampled);
    let p = Sampler::new("p", &cfg(20.0, 0, SamplerMode::Proportional));
    let mut sp = span(id);
    assert!(p.decide(&mut sp).sampled, "0xce92… ≥ 0xcccd…");
    assert_eq!(sp.trace_state, "ot=th:cccd");
    // Proportional again at 50%: 20% × 50% = 10% → th e666, which rejects this span.
    let half = Sampler::new("p", &cfg(50.0, 0, SamplerMode::Proportional));
    assert!(!half.decide(&mut sp.clone()).sampled);
    // Equalizing at 50%: the arriving 20% threshold is stricter, so it stays and the span passes.
    let eq = Sampler::new("p", &cfg(50.0, 0, SamplerMode::Equalizing));
    let mut e = sp.clone();
    assert!(eq.decide(&mut e).sampled);
    assert_eq!(e.trace_state, "ot=th:cccd");
    // An explicit rv wins over the trace id.
    let mut r = span(id);
    r.trace_state = "ot=rv:ffffffffffffff,v=1".into();
    assert!(p.decide(&mut r).sampled);
    assert_eq!(r.trace_state, "ot=rv:ffffffffffffff;th:cccd,v=1");
    // An arriving th the randomness contradicts is an error: dropped when fail_closed.
    let mut bad = span(id);
    bad.trace_state = "ot=th:f".into();
    assert!(!eq.decide(&mut bad).sampled);
    // Unset mode without a seed is proportional, with one it is hash_seed.
    assert_eq!(
        cfg(1.0, 0, SamplerMode::Unset).effective_mode(),
        SamplerMode::Proportional
    );
    assert_eq!(
        cfg(1.0, 7, SamplerMode::Unset).effective_mode(),
        SamplerMode::HashSeed
    );
}

#[test]
fn process_drops_empty_groups_and_counts() {
    let mut batch = TraceBatch {
        resource_spans: vec![model::ResourceSpans {
            scope_spans: vec![model::ScopeSpans {
                spans: vec![
                    span("00000000000000000000000000000001"),
                    span("4bf92f3577b34da6a3ce929d0e0e4736"),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let never = Sampler::new("p", &cfg(0.0, 0, SamplerMode::HashSeed));
    assert_eq!(never.process(&mut batch), (0, 2));
    assert!(batch.resource_spans.is_empty());
}

/// Throughput of the 1% hash_seed path (run in release:
/// `cargo test --release -p meshtrace-collector -- --ignored sampler_throughput --nocapture`).
#[test]
#[ignore]
fn sampler_throughput() {
    let mut x = 0x9e3779b97f4a7c15u64;
    let spans: Vec<Span> = (0..200_000)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Span {
                trace_id: TraceId::from_halves(x, x.rotate_left(17) | 1),
                span_id: model::SpanId::from_u64(i + 1),
                ..Default::default()
            }
        })
        .collect();
    let batch = TraceBatch {
        resource_spans: vec![model::ResourceSpans {
            scope_spans: vec![model::ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    for (label, mode) in [
        ("hash_seed", SamplerMode::HashSeed),
        ("proportional", SamplerMode::Proportional),
    ] {
        let s = Sampler::new("bench", &cfg(1.0, 22, mode));
        let mut best = f64::MAX;
        for _ in 0..5 {
            let mut b = batch.clone();
            let t = std::time::Instant::now();
            let (kept, _) = s.process(&mut b);
            let per_span = t.elapsed().as_secs_f64() / 200_000.0;
            best = best.min(per_span);
            assert!(kept > 1000 && kept < 3000);
        }
        println!(
            "{label} 1%: {:.1} ns/span, {:.2} M spans/s on one core",
            best * 1e9,
            1e-6 / best
        );
    }
}

/// Spans with random trace ids; some carry a tracestate (valid or not), a `sampling.priority`
/// attribute, or invalid ids, spread over several resources and scopes.
fn mixed_batch(n: u64, seed: u64) -> TraceBatch {
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut resource_spans = Vec::new();
    for r in 0..4 {
        let mut scope_spans = Vec::new();
        for s in 0..3 {
            let spans = (0..n)
                .map(|i| {
                    let v = next();
                    let mut span = Span {
                        trace_id: TraceId::from_halves(v, v.rotate_left(17) | 1),
                        span_id: model::SpanId::from_u64(i + 1),
                        name: format!("op{i}"),
                        ..Default::default()
                    };
                    match v % 23 {
                        0 => span.trace_state = "ot=th:fd70a3d70a3d7".into(),
                        1 => span.trace_state = "ot=rv:ffffffffffffff".into(),
                        2 => span.trace_state = "vendor=x".into(),
                        3 => span.trace_state = "garbage without equals".into(),
                        4 => span.attributes.push(KeyValue::new(PRIORITY, 1i64)),
                        5 => span.attributes.push(KeyValue::new(PRIORITY, 0i64)),
                        6 => span.attributes.push(KeyValue::new(PRIORITY, "2")),
                        _ => span.attributes.push(KeyValue::new("k", "v")),
                    }
                    span
                })
                .collect();
            scope_spans.push(model::ScopeSpans {
                scope: model::Scope {
                    name: format!("scope{s}"),
                    ..Default::default()
                },
                spans,
                schema_url: format!("https://s/{s}"),
            });
        }
        resource_spans.push(model::ResourceSpans {
            resource: model::Resource {
                attributes: vec![KeyValue::new("service.name", format!("svc{r}"))],
                ..Default::default()
            },
            scope_spans,
            schema_url: String::new(),
        });
    }
    TraceBatch { resource_spans }
}

/// Appends a span whose ids are invalid (decoding drops it) to the encoded request.
fn with_invalid_span(bytes: &[u8]) -> bytes::Bytes {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1 as pt;
    use prost::Message;
    let bad = ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans {
            scope_spans: vec![pt::ScopeSpans {
                spans: vec![pt::Span {
                    trace_id: vec![0; 16],
                    span_id: vec![1; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    [bytes, &bad.encode_to_vec()[..]].concat().into()
}

#[test]
fn otlp_bytes_are_sampled_exactly_as_the_decoded_batch() {
    for (pct, mode, fail_closed) in [
        (1.0, SamplerMode::HashSeed, true),
        (30.0, SamplerMode::HashSeed, false),
        (1.0, SamplerMode::Proportional, true),
        (25.0, SamplerMode::Equalizing, false),
        (0.0, SamplerMode::HashSeed, true),
        (100.0, SamplerMode::Proportional, true),
    ] {
        let s = Sampler::new(
            "p",
            &ProbabilisticSampler {
                fail_closed,
                ..cfg(pct, 22, mode)
            },
        );
        let mut raw = OtlpBytes::encode(&mixed_batch(300, 7));
        raw.append(
            OtlpBytes::new(with_invalid_span(
                &OtlpBytes::encode(&mixed_batch(50, 9)).to_bytes(),
            ))
            .unwrap(),
        );
        let mut want = raw.decode().unwrap();
        let (want_kept, want_dropped) = s.process(&mut want);
        let (got, kept, dropped) = s.process_otlp(&raw).unwrap();
        assert_eq!(
            (kept, dropped),
            (want_kept, want_dropped),
            "{pct}% {mode:?}"
        );
        assert_eq!(got, want, "{pct}% {mode:?}");
        if pct > 0.0 && pct < 100.0 {
            assert!(kept > 0 && dropped > 0, "{pct}% {mode:?}: {kept} kept");
        }
    }
}

#[test]
fn otlp_bytes_that_do_not_scan_take_the_full_path() {
    // Nesting deeper than the scan follows (each array is two messages deep) but within
    // prost's limit: the scan refuses, the chunk is decoded in full.
    let mut v = model::AnyValue::Int(1);
    for _ in 0..wire::otlp::scan::MAX_DEPTH / 2 + 3 {
        v = model::AnyValue::Array(vec![v]);
    }
    let mut batch = mixed_batch(20, 3);
    batch.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(KeyValue::new("deep", v));
    let raw = OtlpBytes::encode(&batch);
    assert!(wire::otlp::scan::scan(&raw.to_bytes()).is_err());
    let s = Sampler::new("p", &cfg(50.0, 1, SamplerMode::HashSeed));
    let mut want = batch.clone();
    let counts = s.process(&mut want);
    let (got, kept, dropped) = s.process_otlp(&raw).unwrap();
    assert_eq!((kept, dropped), counts);
    assert_eq!(got, want);
}

#[test]
fn a_decision_by_trace_id_alone_is_the_full_decision() {
    let batch = TraceBatch {
        resource_spans: vec![model::ResourceSpans {
            scope_spans: vec![model::ScopeSpans {
                spans: (0..4000u64)
                    .map(|i| {
                        let v = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xDEAD_BEEF;
                        Span {
                            trace_id: TraceId::from_halves(v, v.rotate_left(29) | 1),
                            span_id: model::SpanId::from_u64(i + 1),
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let bytes = OtlpBytes::encode(&batch).to_bytes();
    for (pct, seed, mode) in [
        (1.0, 22, SamplerMode::HashSeed),
        (30.0, 0, SamplerMode::HashSeed),
        (99.99, 7, SamplerMode::HashSeed),
        (100.0, 7, SamplerMode::HashSeed),
        (0.0, 7, SamplerMode::HashSeed),
        (1.0, 22, SamplerMode::Proportional),
        (25.0, 22, SamplerMode::Equalizing),
    ] {
        let s = Sampler::new("p", &cfg(pct, seed, mode));
        let (mut fast, mut full) = (Vec::new(), Vec::new());
        walk_spans(&bytes, PRIORITY, |span| fast.push(s.dropped_by_id(span))).unwrap();
        for rs in &batch.resource_spans {
            for span in &rs.scope_spans[0].spans {
                let d = s.decide(&mut span.clone());
                full.push((!d.sampled).then_some(d.policy));
            }
        }
        assert_eq!(fast, full, "{pct}% seed {seed} {mode:?}");
    }
}
