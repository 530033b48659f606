//! Tail-sampling policies: each looks at a whole (buffered) trace and votes, as the OTel
//! Collector's tail_sampling processor's evaluators do; [`combine`] turns the votes into the
//! decision with the same precedence (an inverted "not sampled" wins, then any "sampled").

use std::sync::Mutex;
use std::time::Instant;

use model::{AnyValue, SpanRecord, StatusCode, TraceId};

use crate::config::{TailPolicy, TailPolicyType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vote {
    Sampled,
    NotSampled,
    InvertSampled,
    InvertNotSampled,
}

/// The final decision from every policy's vote.
pub fn combine(votes: &[Vote]) -> bool {
    if votes.contains(&Vote::InvertNotSampled) {
        return false;
    }
    if votes.contains(&Vote::Sampled) {
        return true;
    }
    votes.contains(&Vote::InvertSampled) && !votes.contains(&Vote::NotSampled)
}

pub struct Policy {
    pub name: String,
    rule: Rule,
}

enum Rule {
    Always,
    Latency {
        min_ns: u64,
        max_ns: Option<u64>,
    },
    Status(Vec<StatusCode>),
    Strings {
        key: String,
        values: Vec<String>,
        regexes: Vec<regex::Regex>,
        invert: bool,
    },
    Numbers {
        key: String,
        min: i64,
        max: i64,
        invert: bool,
    },
    Probabilistic {
        salt: Vec<u8>,
        threshold: u64,
    },
    RateLimit {
        per_second: u64,
        window: Mutex<(Instant, u64)>,
    },
    SpanCount {
        min: u64,
        max: Option<u64>,
    },
    And(Vec<Policy>),
    Composite(Composite),
    Boolean {
        key: String,
        value: bool,
        invert: bool,
    },
    TraceState {
        key: String,
        values: Vec<String>,
    },
    Ottl(Vec<crate::processor::ottl::Condition>),
    Never,
}

/// The composite policy's state: sub-policies in order, each with its spans-per-second budget
/// and what it used in the current second.
struct Composite {
    max_total: u64,
    subs: Vec<(Policy, u64)>,
    window: Mutex<(Instant, Vec<u64>)>,
}

impl Policy {
    pub fn new(cfg: &TailPolicy) -> Self {
        use TailPolicyType as T;
        let rule = match cfg.kind {
            T::AlwaysSample => Rule::Always,
            T::Latency => {
                let l = cfg.latency.clone().unwrap_or_default();
                Rule::Latency {
                    min_ns: l.threshold_ms.saturating_mul(1_000_000),
                    max_ns: (l.upper_threshold_ms > 0)
                        .then(|| l.upper_threshold_ms.saturating_mul(1_000_000)),
                }
            }
            T::StatusCode => Rule::Status(
                cfg.status_code
                    .iter()
                    .flat_map(|s| &s.status_codes)
                    .filter_map(|c| match c.as_str() {
                        "OK" => Some(StatusCode::Ok),
                        "ERROR" => Some(StatusCode::Error),
                        "UNSET" => Some(StatusCode::Unset),
                        _ => None,
                    })
                    .collect(),
            ),
            T::StringAttribute => {
                let s = cfg.string_attribute.clone().unwrap_or_default();
                Rule::Strings {
                    key: s.key,
                    // Invalid expressions are refused by validation.
                    regexes: if s.enabled_regex_matching {
                        s.values
                            .iter()
                            .filter_map(|v| regex::Regex::new(v).ok())
                            .collect()
                    } else {
                        Vec::new()
                    },
                    values: if s.enabled_regex_matching {
                        Vec::new()
                    } else {
                        s.values
                    },
                    invert: s.invert_match,
                }
            }
            T::NumericAttribute => {
                let n = cfg.numeric_attribute.clone().unwrap_or_default();
                Rule::Numbers {
                    key: n.key,
                    min: n.min_value,
                    max: n.max_value,
                    invert: n.invert_match,
                }
            }
            T::Probabilistic => {
                let p = cfg.probabilistic.clone().unwrap_or_default();
                Rule::Probabilistic {
                    salt: p.hash_salt.into_bytes(),
                    threshold: ratio_threshold(p.sampling_percentage / 100.0),
                }
            }
            T::RateLimiting => Rule::RateLimit {
                per_second: cfg.rate_limiting.as_ref().map_or(0, |r| r.spans_per_second),
                window: Mutex::new((Instant::now(), 0)),
            },
            T::SpanCount => {
                let s = cfg.span_count.clone().unwrap_or_default();
                Rule::SpanCount {
                    min: s.min_spans,
                    max: (s.max_spans > 0).then_some(s.max_spans),
                }
            }
            T::And => Rule::And(
                cfg.and
                    .iter()
                    .flat_map(|a| &a.and_sub_policy)
                    .map(Policy::new)
                    .collect(),
            ),
            T::Composite => match &cfg.composite {
                Some(c) => Rule::Composite(Composite::new(c)),
                None => Rule::Never, // refused by validation
            },
            T::BooleanAttribute => {
                let b = cfg.boolean_attribute.clone().unwrap_or_default();
                Rule::Boolean {
                    key: b.key,
                    value: b.value,
                    invert: b.invert_match,
                }
            }
            T::TraceState => {
                let t = cfg.trace_state.clone().unwrap_or_default();
                Rule::TraceState {
                    key: t.key,
                    values: t.values,
                }
            }
            // Conditions that do not parse are refused by validation.
            T::OttlCondition => Rule::Ottl(
                cfg.ottl_condition
                    .iter()
                    .flat_map(|o| &o.span)
                    .filter_map(|c| crate::processor::ottl::Condition::parse(c).ok())
                    .collect(),
            ),
        };
        Self {
            name: cfg.name.clone(),
            rule,
        }
    }

    pub fn evaluate(&self, trace_id: TraceId, spans: &[SpanRecord]) -> Vote {
        let yes = |b: bool| if b { Vote::Sampled } else { Vote::NotSampled };
        match &self.rule {
            Rule::Always => Vote::Sampled,
            Rule::Never => Vote::NotSampled,
            Rule::Latency { min_ns, max_ns } => {
                let start = spans
                    .iter()
                    .map(|r| r.span.start_unix_nano)
                    .min()
                    .unwrap_or(0);
                let end = spans
                    .iter()
                    .map(|r| r.span.end_unix_nano)
                    .max()
                    .unwrap_or(0);
                let d = end.saturating_sub(start);
                yes(d >= *min_ns && max_ns.is_none_or(|m| d <= m))
            }
            Rule::Status(codes) => yes(spans.iter().any(|r| codes.contains(&r.span.status.code))),
            Rule::Strings {
                key,
                values,
                regexes,
                invert,
            } => {
                let hit = spans.iter().any(|r| {
                    attr(r, key).and_then(AnyValue::as_str).is_some_and(|v| {
                        values.iter().any(|x| x == v) || regexes.iter().any(|re| re.is_match(v))
                    })
                });
                invertible(hit, *invert)
            }
            Rule::Numbers {
                key,
                min,
                max,
                invert,
            } => {
                let hit = spans.iter().any(|r| {
                    attr(r, key)
                        .and_then(AnyValue::as_i64)
                        .is_some_and(|v| v >= *min && v <= *max)
                });
                invertible(hit, *invert)
            }
            Rule::Probabilistic { salt, threshold } => {
                yes(fnv1a64(salt, trace_id.as_bytes()) <= *threshold)
            }
            Rule::RateLimit { per_second, window } => {
                let Ok(mut w) = window.lock() else {
                    return Vote::NotSampled;
                };
                let now = Instant::now();
                if now.duration_since(w.0).as_secs() >= 1 {
                    *w = (now, 0);
                }
                let n = spans.len() as u64;
                if w.1 + n > *per_second {
                    Vote::NotSampled
                } else {
                    w.1 += n;
                    Vote::Sampled
                }
            }
            Rule::SpanCount { min, max } => {
                let n = spans.len() as u64;
                yes(n >= *min && max.is_none_or(|m| n <= m))
            }
            Rule::Composite(c) => c.evaluate(trace_id, spans),
            Rule::Boolean { key, value, invert } => {
                let hit = spans
                    .iter()
                    .any(|r| matches!(attr(r, key), Some(AnyValue::Bool(b)) if b == value));
                invertible(hit, *invert)
            }
            Rule::TraceState { key, values } => yes(spans.iter().any(|r| {
                r.span.trace_state.split(',').any(|member| {
                    member
                        .trim()
                        .split_once('=')
                        .is_some_and(|(k, v)| k == key && values.iter().any(|x| x == v))
                })
            })),
            Rule::Ottl(conditions) => yes(spans.iter().any(|r| {
                let cx = crate::processor::ottl::SpanContext {
                    resource: &r.resource,
                    scope: &r.scope,
                    span: Some(&r.span),
                };
                // A condition that fails on a span (a converter given the wrong type) does not
                // sample it, under either error_mode.
                conditions.iter().any(|c| c.eval(&cx) == Ok(true))
            })),
            Rule::And(subs) => yes(!subs.is_empty()
                && subs
                    .iter()
                    .all(|p| p.evaluate(trace_id, spans) == Vote::Sampled)),
        }
    }
}

impl Composite {
    fn new(cfg: &crate::config::CompositePolicy) -> Self {
        let total = cfg.max_total_spans_per_second;
        let default = total
            .checked_div(cfg.composite_sub_policy.len() as u64)
            .unwrap_or(0);
        let budget = |name: &str| {
            cfg.rate_allocation
                .iter()
                .find(|r| r.policy == name)
                .map_or(0, |r| {
                    if r.percent > 0 {
                        total * r.percent / 100
                    } else {
                        default
                    }
                })
        };
        // Sub-policies in `policy_order` (those it does not name follow, in file order).
        let mut ordered: Vec<&TailPolicy> = cfg
            .policy_order
            .iter()
            .filter_map(|n| cfg.composite_sub_policy.iter().find(|p| &p.name == n))
            .collect();
        for p in &cfg.composite_sub_policy {
            if !cfg.policy_order.contains(&p.name) {
                ordered.push(p);
            }
        }
        let subs: Vec<(Policy, u64)> = ordered
            .into_iter()
            .map(|p| (Policy::new(p), budget(&p.name)))
            .collect();
        let used = vec![0; subs.len()];
        Self {
            max_total: total,
            subs,
            window: Mutex::new((Instant::now(), used)),
        }
    }

    /// The first sub-policy that wants the trace decides, within its budget for this second.
    fn evaluate(&self, trace_id: TraceId, spans: &[SpanRecord]) -> Vote {
        let Ok(mut w) = self.window.lock() else {
            return Vote::NotSampled;
        };
        let now = Instant::now();
        if now.duration_since(w.0).as_secs() >= 1 {
            w.0 = now;
            w.1.iter_mut().for_each(|u| *u = 0);
        }
        for (i, (policy, budget)) in self.subs.iter().enumerate() {
            if matches!(
                policy.evaluate(trace_id, spans),
                Vote::Sampled | Vote::InvertSampled
            ) {
                let if_sampled = w.1[i] + spans.len() as u64;
                if if_sampled <= *budget && if_sampled <= self.max_total {
                    w.1[i] = if_sampled;
                    return Vote::Sampled;
                }
                return Vote::NotSampled;
            }
        }
        Vote::NotSampled
    }
}

fn invertible(hit: bool, invert: bool) -> Vote {
    match (hit, invert) {
        (true, false) => Vote::Sampled,
        (false, false) => Vote::NotSampled,
        (true, true) => Vote::InvertNotSampled,
        (false, true) => Vote::InvertSampled,
    }
}

/// A span attribute, else its resource's (as the OTel evaluators look at both).
fn attr<'a>(r: &'a SpanRecord, key: &str) -> Option<&'a AnyValue> {
    r.span.attribute(key).or_else(|| r.resource.attribute(key))
}

/// FNV-1a 64 over the salt then the 16 trace-id bytes.
pub fn fnv1a64(salt: &[u8], id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.iter().chain(id) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `ratio × u64::MAX` as the OTel Collector computes it: a 64-bit-mantissa product rounded to
/// nearest-even (Go's big.Float), then truncated to an integer.
pub fn ratio_threshold(ratio: f64) -> u64 {
    if ratio.is_nan() || ratio <= 0.0 {
        return 0;
    }
    if ratio >= 1.0 {
        return u64::MAX;
    }
    let bits = ratio.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (m, mut e) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1 << 52), exp - 1075)
    };
    let mut p = u128::from(u64::MAX) * u128::from(m);
    let width = 128 - p.leading_zeros() as i32;
    if width > 64 {
        let s = width - 64;
        let mut q = p >> s;
        let rem = p & ((1u128 << s) - 1);
        let half = 1u128 << (s - 1);
        e += s;
        if rem > half || (rem == half && q & 1 == 1) {
            q += 1;
            if q == 1u128 << 64 {
                q >>= 1;
                e += 1;
            }
        }
        p = q;
    }
    if e >= 0 {
        return u64::MAX;
    }
    let shift = (-e) as u32;
    if shift >= 128 {
        0
    } else {
        u64::try_from(p >> shift).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_combine_with_otel_precedence() {
        use Vote::*;
        assert!(combine(&[NotSampled, Sampled]));
        assert!(!combine(&[Sampled, InvertNotSampled]));
        assert!(combine(&[InvertSampled]));
        assert!(!combine(&[InvertSampled, NotSampled]));
        assert!(!combine(&[]));
    }

    #[test]
    fn thresholds_and_hash() {
        assert_eq!(ratio_threshold(0.5), (1u64 << 63) - 1);
        assert_eq!(ratio_threshold(1.0), u64::MAX);
        assert_eq!(ratio_threshold(0.0), 0);
        // 0.1: the exact product rounded to 64 significant bits, then truncated.
        let t = ratio_threshold(0.1);
        assert!((t as f64 / u64::MAX as f64 - 0.1).abs() < 1e-15, "{t}");
        // FNV-1a 64 of "a" is af63dc4c8601ec8c (the published test vector).
        assert_eq!(fnv1a64(b"a", &[]), 0xaf63_dc4c_8601_ec8c);
    }
}
