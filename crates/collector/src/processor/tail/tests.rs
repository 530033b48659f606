use super::*;
use crate::config::{TailPolicy, TailPolicyType};
use model::{KeyValue, ResourceSpans, ScopeSpans, Span, SpanId, StatusCode};
use std::sync::Mutex as StdMutex;

struct Collect(StdMutex<Vec<TraceId>>);

impl Consumer for Collect {
    fn consume(&self, batch: TraceBatch) -> BoxFuture<'_, Result<(), ConsumeError>> {
        let ids: Vec<TraceId> = batch.spans().map(|(_, _, s)| s.trace_id).collect();
        if let Ok(mut v) = self.0.lock() {
            v.extend(ids);
        }
        Box::pin(async { Ok(()) })
    }
}

fn span(trace: u64, n: u64, error: bool, dur_ms: u64) -> Span {
    Span {
        trace_id: TraceId::from_halves(0, trace),
        span_id: SpanId::from_u64(n),
        start_unix_nano: 1_000_000_000,
        end_unix_nano: 1_000_000_000 + dur_ms * 1_000_000,
        status: model::Status {
            code: if error {
                StatusCode::Error
            } else {
                StatusCode::Unset
            },
            message: String::new(),
        },
        attributes: vec![KeyValue::new(
            "http.status_code",
            200i64 + if error { 300 } else { 0 },
        )],
        ..Default::default()
    }
}

fn batch(spans: Vec<Span>) -> TraceBatch {
    TraceBatch {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn policy(yaml: &str) -> TailPolicy {
    serde_yaml::from_str(yaml).unwrap()
}

fn cfg(policies: Vec<TailPolicy>) -> TailSampling {
    TailSampling {
        decision_wait: Duration::from_millis(50),
        policies,
        ..Default::default()
    }
}

fn kept(c: &Collect) -> Vec<u64> {
    let mut v: Vec<u64> = c.0.lock().unwrap().iter().map(|t| t.low()).collect();
    v.sort_unstable();
    v
}

#[tokio::test]
async fn errors_and_slow_traces_are_kept_after_the_wait_and_late_spans_follow() {
    let sink = Arc::new(Collect(StdMutex::new(Vec::new())));
    let errors = policy("name: errors\ntype: status_code\nstatus_code: {status_codes: [ERROR]}");
    let slow = policy("name: slow\ntype: latency\nlatency: {threshold_ms: 500}");
    let t = TailSampler::new("tail", &cfg(vec![errors, slow]), sink.clone());
    t.consume(batch(vec![
        span(1, 1, false, 10),
        span(2, 2, false, 10),
        span(3, 3, false, 900),
    ]))
    .await
    .unwrap();
    t.consume(batch(vec![span(1, 4, true, 10)])).await.unwrap();
    assert!(kept(&sink).is_empty(), "nothing before decision_wait");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(kept(&sink), [1, 1, 3]);
    // Late spans: trace 1 was kept, trace 2 was dropped.
    t.consume(batch(vec![span(1, 5, false, 1), span(2, 6, true, 1)]))
        .await
        .unwrap();
    assert_eq!(kept(&sink), [1, 1, 1, 3]);
    t.shutdown().await;
}

#[tokio::test]
async fn attribute_probabilistic_and_and_policies() {
    let sink = Arc::new(Collect(StdMutex::new(Vec::new())));
    let numeric = policy("name: 5xx\ntype: numeric_attribute\nnumeric_attribute: {key: http.status_code, min_value: 500, max_value: 599}");
    let and = policy("name: both\ntype: and\nand:\n  and_sub_policy:\n    - {name: a, type: span_count, span_count: {min_spans: 2}}\n    - {name: b, type: always_sample}");
    let t = TailSampler::new("tail", &cfg(vec![numeric, and]), sink.clone());
    t.consume(batch(vec![
        span(1, 1, true, 1),
        span(2, 2, false, 1),
        span(3, 3, false, 1),
        span(3, 4, false, 1),
    ]))
    .await
    .unwrap();
    t.shutdown().await; // shutdown decides what is buffered
    assert_eq!(kept(&sink), [1, 3, 3]);

    // probabilistic: the same decision as FNV-1a 64 over salt + id against ratio × u64::MAX.
    let p = Policy::new(&policy(
        "name: p\ntype: probabilistic\nprobabilistic: {sampling_percentage: 30}",
    ));
    let threshold = policy::ratio_threshold(0.3);
    let mut n = 0;
    for i in 1..=2000u64 {
        let id = TraceId::from_halves(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), i);
        let want = policy::fnv1a64(b"default-hash-seed", id.as_bytes()) <= threshold;
        assert_eq!(p.evaluate(id, &[]) == policy::Vote::Sampled, want);
        n += usize::from(want);
    }
    assert!((450..750).contains(&n), "about 30%: {n}");
}

#[tokio::test]
async fn bounded_by_trace_count_and_bytes() {
    let sink = Arc::new(Collect(StdMutex::new(Vec::new())));
    let all = policy("name: all\ntype: always_sample");
    let mut c = cfg(vec![all]);
    c.num_traces = 2;
    c.max_buffer_mib = 1;
    let t = TailSampler::new("tail", &c, sink.clone());
    // Three traces with room for two: the oldest is dropped undecided.
    t.consume(batch(vec![
        span(1, 1, false, 1),
        span(2, 2, false, 1),
        span(3, 3, false, 1),
    ]))
    .await
    .unwrap();
    // One huge trace (≥ 1 MiB estimated) is decided early instead of evicting the others.
    let huge: Vec<Span> = (0..6000).map(|i| span(9, 100 + i, false, 1)).collect();
    t.consume(batch(huge)).await.unwrap();
    let early = kept(&sink);
    assert!(
        early.iter().all(|&t| t == 9) && !early.is_empty(),
        "the huge trace went early"
    );
    t.shutdown().await;
    let all = kept(&sink);
    assert!(all.contains(&3), "a small trace survived the huge one");
    assert!(
        !all.contains(&1),
        "the oldest beyond num_traces was dropped"
    );
}

#[test]
fn policy_types_parse_from_otel_yaml() {
    let p = policy("name: s\ntype: string_attribute\nstring_attribute: {key: route, values: [/a, /b], invert_match: true}");
    assert_eq!(p.kind, TailPolicyType::StringAttribute);
    let r = Policy::new(&p);
    assert_eq!(
        r.evaluate(TraceId::from_halves(0, 1), &[]),
        policy::Vote::InvertSampled
    );
}

#[test]
fn composite_gives_each_sub_policy_its_share_of_the_rate() {
    let p = Policy::new(&policy(
        "name: c\ntype: composite\ncomposite:\n  max_total_spans_per_second: 10\n  policy_order: [errors, rest]\n  composite_sub_policy:\n    - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n    - {name: rest, type: always_sample}\n  rate_allocation:\n    - {policy: errors, percent: 60}\n    - {policy: rest, percent: 40}\n",
    ));
    let rec = |error: bool| SpanRecord {
        resource: Default::default(),
        scope: Default::default(),
        span: span(1, 1, error, 1),
    };
    let id = TraceId::from_halves(0, 1);
    let errors: Vec<_> = (0..8).map(|_| p.evaluate(id, &[rec(true)])).collect();
    assert_eq!(
        errors
            .iter()
            .filter(|v| **v == policy::Vote::Sampled)
            .count(),
        6,
        "60% of 10/s"
    );
    let rest: Vec<_> = (0..8).map(|_| p.evaluate(id, &[rec(false)])).collect();
    assert_eq!(
        rest.iter().filter(|v| **v == policy::Vote::Sampled).count(),
        4,
        "40% of 10/s"
    );
}

#[test]
fn string_attribute_regex_matching() {
    let p = Policy::new(&policy(
        "name: r\ntype: string_attribute\nstring_attribute: {key: http.route, values: ['^/api/v[0-9]+/orders'], enabled_regex_matching: true}",
    ));
    let rec = |route: &str| {
        let mut s = span(1, 1, false, 1);
        s.attributes.push(KeyValue::new("http.route", route));
        SpanRecord {
            resource: Default::default(),
            scope: Default::default(),
            span: s,
        }
    };
    let id = TraceId::from_halves(0, 1);
    assert_eq!(
        p.evaluate(id, &[rec("/api/v2/orders/7")]),
        policy::Vote::Sampled
    );
    assert_eq!(p.evaluate(id, &[rec("/health")]), policy::Vote::NotSampled);
}

#[test]
fn boolean_attribute_trace_state_and_ottl_condition_policies() {
    let rec = |attrs: Vec<KeyValue>, trace_state: &str| {
        let mut s = span(1, 1, false, 1);
        s.attributes.extend(attrs);
        s.trace_state = trace_state.into();
        SpanRecord {
            resource: Default::default(),
            scope: Default::default(),
            span: s,
        }
    };
    let id = TraceId::from_halves(0, 1);
    let vote = |yaml: &str, r: &SpanRecord| {
        Policy::new(&policy(yaml)).evaluate(id, std::slice::from_ref(r))
    };
    let (yes, no) = (policy::Vote::Sampled, policy::Vote::NotSampled);

    let boolean =
        "name: b\ntype: boolean_attribute\nboolean_attribute: {key: app.debug, value: true}";
    assert_eq!(
        vote(boolean, &rec(vec![KeyValue::new("app.debug", true)], "")),
        yes
    );
    assert_eq!(
        vote(boolean, &rec(vec![KeyValue::new("app.debug", false)], "")),
        no
    );
    assert_eq!(
        vote(boolean, &rec(vec![KeyValue::new("app.debug", "true")], "")),
        no,
        "a string is no bool"
    );
    let inverted = "name: b\ntype: boolean_attribute\nboolean_attribute: {key: app.debug, value: true, invert_match: true}";
    assert_ne!(
        vote(inverted, &rec(vec![KeyValue::new("app.debug", true)], "")),
        yes
    );

    let state = "name: t\ntype: trace_state\ntrace_state: {key: vendor, values: [keep, always]}";
    assert_eq!(vote(state, &rec(vec![], "other=x, vendor=keep")), yes);
    assert_eq!(vote(state, &rec(vec![], "vendor=drop")), no);
    assert_eq!(vote(state, &rec(vec![], "")), no);

    let ottl = "name: o\ntype: ottl_condition\nottl_condition:\n  span:\n    - 'attributes[\"http.status_code\"] >= 500'\n    - 'IsMatch(name, \"^checkout\")'";
    assert_eq!(vote(ottl, &rec(vec![], "")), no);
    let mut r = rec(vec![], "");
    r.span.name = "checkout cart".into();
    assert_eq!(vote(ottl, &r), yes);
    let failing = SpanRecord {
        resource: Default::default(),
        scope: Default::default(),
        span: span(1, 1, true, 1),
    };
    assert_eq!(vote(ottl, &failing), yes, "http.status_code 500");
}
