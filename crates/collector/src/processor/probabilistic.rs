//! `probabilistic_sampler`: keeps a consistent share of traces, decision for decision the same
//! as the OpenTelemetry Collector's processor, so a mixed fleet keeps the same traces.
//!
//! - `hash_seed` mode: FNV-1a 32 over the seed (4 little-endian bytes) then the 16 trace-id
//!   bytes; the low 14 bits are a bucket, kept iff `bucket < uint32(float32(pct) * float32(163.84))`.
//!   As the OTel Collector does, the decision is expressed as a 56-bit randomness
//!   (`rv`) and rejection threshold (`th`) that are written to the kept span's tracestate.
//! - `proportional` / `equalizing` modes: W3C consistent probability sampling: randomness is the
//!   tracestate's `ot=rv` or the trace id's last 7 bytes; the span is kept iff randomness ≥
//!   threshold; the new threshold (incoming × ratio, or the larger of the two) goes to `ot=th`.
//! - A `sampling.priority` attribute overrides: 0 drops the span, a positive value keeps it.
//! - Spans whose sampling state is unusable (bad tracestate, an rv/th the mode must not
//!   overwrite, an arriving th the randomness contradicts) are dropped when `fail_closed`.
//!
//! - OTLP bytes ([`Sampler::process_otlp`]) are read without decoding the spans that are
//!   dropped: a span with no tracestate and no `sampling.priority` attribute is decided by its
//!   trace id alone (all the decision reads of such a span); the others, and the kept ones, are
//!   copied into a smaller request that is decoded and decided as a decoded batch is, so the
//!   outcome is the same span for span.
//!
//! FNV-1a 32 is written out here (five lines): the `fnv` crate only provides the 64-bit variant.

use model::{AnyValue, Span, TraceBatch, TraceId};
use wire::otlp::scan::{walk_spans, SpanRef, Subset};

use super::tracestate::{self, TraceState, MAX_RANDOMNESS, NEVER};
use crate::config::{ProbabilisticSampler, SamplerMode};
use crate::payload::OtlpBytes;

/// The span attribute that overrides the decision.
const PRIORITY: &str = "sampling.priority";

const BUCKETS: u32 = 0x4000;
const BUCKET_MASK: u32 = BUCKETS - 1;

/// FNV-1a 32 over the seed's 4 little-endian bytes, then `bytes`.
pub fn fnv1a32(seed: u32, bytes: &[u8]) -> u32 {
    let step = |h: u32, b: u8| (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    let h = seed.to_le_bytes().into_iter().fold(0x811c_9dc5, step);
    bytes.iter().fold(h, |h, &b| step(h, b))
}

/// The accept bound of hash_seed mode: buckets below it are kept. The multiplication is done
/// in float32 and truncated, exactly as the OTel Collector does (its historical behaviour).
pub fn scaled_rate(percentage: f32) -> u32 {
    let pct = percentage.min(100.0);
    (pct * (BUCKETS as f32 / 100.0)) as u32
}

/// The 56-bit randomness OTel derives from the 32-bit hash: the bucket reversed in the top 14
/// bits (so `randomness >= threshold` means `bucket < scaled`), the hash's other 18 bits mixed
/// into the middle, the bucket in the low 14.
fn randomness_from_hash(hash: u32) -> u64 {
    let bucket = u64::from(hash & BUCKET_MASK);
    let top = u64::from(BUCKETS) - 1 - bucket;
    let unused = u64::from(hash >> 14);
    let mixed = unused ^ (unused << 10);
    (top << 42) | (mixed << 14) | bucket
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    Never,
    HashSeed { seed: u32, threshold: u64 },
    Equalizing { threshold: u64 },
    Proportional { ratio: f64, precision: u8 },
}

/// What `sampling.priority` asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Priority {
    Defer,
    Keep,
    Drop,
}

/// The outcome for one span, with the policy that decided (for metrics, named as OTel's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub sampled: bool,
    pub policy: &'static str,
}

#[derive(Debug)]
pub struct Sampler {
    rule: Rule,
    fail_closed: bool,
    name: String,
}

impl Sampler {
    pub fn new(name: &str, cfg: &ProbabilisticSampler) -> Self {
        let pct = cfg.sampling_percentage.min(100.0);
        let mode = cfg.effective_mode();
        let rule = if pct <= 0.0 {
            Rule::Never
        } else {
            let ratio = (f64::from(pct) / 100.0).max(1.0 / NEVER as f64);
            match mode {
                SamplerMode::HashSeed => match scaled_rate(pct) {
                    0 => Rule::Never,
                    scaled => Rule::HashSeed {
                        seed: cfg.hash_seed,
                        threshold: u64::from(BUCKETS - scaled) << 42,
                    },
                },
                SamplerMode::Equalizing => Rule::Equalizing {
                    threshold: tracestate::probability_to_threshold(ratio, cfg.sampling_precision)
                        .unwrap_or(0),
                },
                _ => Rule::Proportional {
                    ratio,
                    precision: cfg.sampling_precision,
                },
            }
        };
        Self {
            rule,
            fail_closed: cfg.fail_closed,
            name: name.to_owned(),
        }
    }

    /// Decides one span; a kept span's tracestate is updated as the OTel Collector does.
    pub fn decide(&self, span: &mut Span) -> Decision {
        let priority = priority(span);
        let (randomness, mut carrier, policy, problem) = self.randomness(span);
        let mut problem = problem;
        if problem.is_none() {
            problem = consistency(randomness, carrier.as_mut());
        }
        let mut threshold = match (&problem, self.fail_closed) {
            (Some(_), true) => NEVER,
            (Some(_), false) => 0,
            (None, _) => self.threshold_for(carrier.as_ref()),
        };
        let mut policy = policy;
        match priority {
            Priority::Keep => {
                threshold = 0;
                policy = "sampling_priority";
            }
            Priority::Drop => {
                threshold = NEVER;
                policy = "sampling_priority";
            }
            Priority::Defer => {}
        }
        if let Some(p) = &problem {
            tracing::debug!(processor = %self.name, trace_id = %span.trace_id, "sampling state: {p}");
        }
        let randomness = randomness.unwrap_or(MAX_RANDOMNESS);
        let sampled = threshold < NEVER && randomness >= threshold;
        if sampled {
            if let Some(ts) = carrier.as_mut() {
                // Never lower an arriving threshold: probability may only fall.
                if threshold < NEVER && ts.threshold.is_none_or(|t| t <= threshold) {
                    ts.threshold = Some(threshold);
                }
                span.trace_state = ts.serialize();
            }
        }
        Decision { sampled, policy }
    }

    /// Randomness, the parsed tracestate (if it may be updated), the policy name, and any
    /// problem that makes the decision fall back to `fail_closed`.
    fn randomness(
        &self,
        span: &Span,
    ) -> (
        Option<u64>,
        Option<TraceState>,
        &'static str,
        Option<String>,
    ) {
        if let Rule::HashSeed { seed, .. } = self.rule {
            let rnd = randomness_from_hash(fnv1a32(seed, span.trace_id.as_bytes()));
            return match TraceState::parse(&span.trace_state) {
                Err(e) => (Some(rnd), None, "trace_id_hash", Some(e.0)),
                Ok(ts) if ts.randomness.is_some() => (
                    Some(rnd),
                    Some(ts),
                    "trace_id_hash",
                    Some(
                        "span has sampling randomness (rv); use equalizing or proportional mode"
                            .into(),
                    ),
                ),
                Ok(ts) if ts.threshold.is_some() => (
                    Some(rnd),
                    Some(ts),
                    "trace_id_hash",
                    Some(
                        "span has a sampling threshold (th); use equalizing or proportional mode"
                            .into(),
                    ),
                ),
                Ok(mut ts) => {
                    ts.randomness = Some(rnd);
                    (Some(rnd), Some(ts), "trace_id_hash", None)
                }
            };
        }
        match TraceState::parse(&span.trace_state) {
            Err(e) => (None, None, "missing_randomness", Some(e.0)),
            Ok(ts) => match ts.randomness {
                Some(rv) => (Some(rv), Some(ts), "sampling_randomness", None),
                None if span.trace_id.is_zero() => (None, Some(ts), "missing_randomness", None),
                None => {
                    let b = span.trace_id.as_bytes();
                    let mut low = [0u8; 8];
                    low[1..].copy_from_slice(&b[9..]);
                    (
                        Some(u64::from_be_bytes(low)),
                        Some(ts),
                        "trace_id_w3c",
                        None,
                    )
                }
            },
        }
    }

    fn threshold_for(&self, carrier: Option<&TraceState>) -> u64 {
        match self.rule {
            Rule::Never => NEVER,
            Rule::HashSeed { threshold, .. } | Rule::Equalizing { threshold } => threshold,
            Rule::Proportional { ratio, precision } => {
                let incoming = carrier
                    .and_then(|c| c.threshold)
                    .map_or(1.0, tracestate::threshold_probability);
                tracestate::probability_to_threshold(incoming * ratio, precision).unwrap_or(NEVER)
            }
        }
    }

    /// Filters a batch in place; returns (kept, dropped) span counts. Metrics are counted
    /// per batch (one increment per policy and outcome), not per span.
    pub fn process(&self, batch: &mut TraceBatch) -> (u64, u64) {
        let (mut kept, mut dropped) = (0u64, 0u64);
        let mut tally: Vec<(&'static str, bool, u64)> = Vec::new();
        for rs in &mut batch.resource_spans {
            for ss in &mut rs.scope_spans {
                ss.spans.retain_mut(|span| {
                    let d = self.decide(span);
                    match tally
                        .iter_mut()
                        .find(|(p, s, _)| *p == d.policy && *s == d.sampled)
                    {
                        Some(t) => t.2 += 1,
                        None => tally.push((d.policy, d.sampled, 1)),
                    }
                    if d.sampled {
                        kept += 1;
                    } else {
                        dropped += 1;
                    }
                    d.sampled
                });
            }
            rs.scope_spans.retain(|ss| !ss.spans.is_empty());
        }
        batch.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
        self.count(&tally);
        (kept, dropped)
    }

    /// Filters OTLP bytes (see the module doc): returns the kept spans, decoded, and the
    /// (kept, dropped) counts. An error only if the bytes are not a request.
    pub fn process_otlp(&self, raw: &OtlpBytes) -> Result<(TraceBatch, u64, u64), String> {
        let mut out = TraceBatch::default();
        let mut dropped_by_id = 0u64;
        let mut tally: Vec<(&'static str, bool, u64)> = Vec::new();
        for chunk in raw.chunks() {
            let mut subset = Subset::default();
            let mut drops: Vec<(&'static str, u64)> = Vec::new();
            // Receivers checked these bytes (`Needs::OtlpBytes`): a walk reads what is needed.
            let walked = walk_spans(chunk, PRIORITY, |span| match self.dropped_by_id(span) {
                Some(policy) => match drops.iter_mut().find(|(p, _)| *p == policy) {
                    Some(d) => d.1 += 1,
                    None => drops.push((policy, 1)),
                },
                None => subset.push(span),
            });
            let rest = match walked {
                Ok(_) => {
                    for (policy, n) in drops {
                        dropped_by_id += n;
                        tally.push((policy, false, n));
                    }
                    if subset.span_count() == 0 {
                        continue;
                    }
                    wire::otlp::decode_protobuf(&subset.finish())
                }
                // Not a request after all: the whole chunk takes the full path (which refuses it).
                Err(_) => wire::otlp::decode_protobuf(chunk),
            };
            out.resource_spans
                .extend(rest.map_err(|e| e.to_string())?.batch.resource_spans);
        }
        self.count(&tally);
        let (kept, dropped) = self.process(&mut out);
        Ok((out, kept, dropped + dropped_by_id))
    }

    /// The policy that drops this span, when its trace id alone decides that: it has valid ids,
    /// no tracestate and no `sampling.priority` attribute, so the decision would read nothing
    /// else of it. `None` when it may be kept or must be decided in full.
    fn dropped_by_id(&self, span: &SpanRef<'_>) -> Option<&'static str> {
        if !span.valid || !span.trace_state.is_empty() || span.keyed {
            return None;
        }
        if let Rule::HashSeed { seed, threshold } = self.rule {
            // What `decide` concludes for such a span (no tracestate to parse or update, no
            // priority), without building one.
            let randomness = randomness_from_hash(fnv1a32(seed, span.trace_id));
            return (randomness < threshold).then_some("trace_id_hash");
        }
        let trace_id = TraceId::from_slice(span.trace_id).ok()?;
        let mut bare = Span {
            trace_id,
            ..Default::default()
        };
        let d = self.decide(&mut bare);
        (!d.sampled).then_some(d.policy)
    }

    /// Counts decisions per policy and outcome.
    fn count(&self, tally: &[(&'static str, bool, u64)]) {
        for &(policy, sampled, n) in tally {
            metrics::counter!(
                "meshtrace_processor_probabilistic_sampler_count_traces_sampled_total",
                "processor" => self.name.clone(),
                "policy" => policy,
                "sampled" => if sampled { "true" } else { "false" }
            )
            .increment(n);
        }
    }
}

/// An arriving threshold the randomness contradicts means the span should not have been
/// sampled upstream: it is cleared and reported.
fn consistency(randomness: Option<u64>, carrier: Option<&mut TraceState>) -> Option<String> {
    let Some(rnd) = randomness else {
        return Some("missing randomness (all-zero trace id)".into());
    };
    let ts = carrier?;
    match ts.threshold {
        Some(th) if rnd < th => {
            ts.threshold = None;
            Some("inconsistent arriving th: the span should not have been sampled".into())
        }
        _ => None,
    }
}

/// Reads `sampling.priority` as OpenTracing defines it (int, double or numeric string).
fn priority(span: &Span) -> Priority {
    let value = match span.attribute(PRIORITY) {
        Some(AnyValue::Int(i)) => *i as f64,
        Some(AnyValue::Double(d)) => *d,
        Some(AnyValue::String(s)) => match s.trim().parse::<f64>() {
            Ok(v) => v,
            Err(_) => return Priority::Defer,
        },
        _ => return Priority::Defer,
    };
    if value == 0.0 {
        Priority::Drop
    } else if value > 0.0 {
        Priority::Keep
    } else {
        Priority::Defer
    }
}

#[cfg(test)]
mod tests;
