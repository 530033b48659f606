//! `tail_sampling`: buffers each trace for `decision_wait` after its first span, then keeps or
//! drops the whole trace by its [`policy`] votes, as the OTel Collector's tail_sampling does.
//!
//! Memory is bounded twice: at most `num_traces` traces (the oldest is dropped undecided
//! beyond it, counted), and at most `max_buffer_mib` of estimated span bytes; past the byte cap
//! the *largest* buffered trace is decided early, so one huge trace cannot push out the rest.
//! Decisions are remembered (bounded caches), so late spans of a decided trace follow the
//! decision at once. Shutdown decides every buffered trace and sends the kept ones on.

pub mod policy;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use model::{SpanRecord, TraceBatch, TraceId};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::TailSampling;
use crate::consumer::{BoxFuture, ConsumeError, Consumer};
use policy::{combine, Policy};

/// A bounded set that forgets its oldest members.
struct Remembered {
    set: HashSet<TraceId>,
    order: VecDeque<TraceId>,
    cap: usize,
}

impl Remembered {
    fn new(cap: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn insert(&mut self, id: TraceId) {
        if self.cap == 0 || !self.set.insert(id) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, id: &TraceId) -> bool {
        self.set.contains(id)
    }
}

struct Pending {
    first_seen: Instant,
    spans: Vec<SpanRecord>,
    bytes: usize,
}

struct State {
    traces: HashMap<TraceId, Pending>,
    /// Arrival order, for `decision_wait` and for `num_traces` eviction.
    order: VecDeque<(Instant, TraceId)>,
    bytes: usize,
    sampled: Remembered,
    not_sampled: Remembered,
}

struct Inner {
    name: String,
    cfg: TailSampling,
    policies: Vec<Policy>,
    state: Mutex<State>,
    next: Arc<dyn Consumer>,
}

pub struct TailSampler {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

/// A rough size of a span in memory, for the byte cap.
fn estimate(r: &SpanRecord) -> usize {
    let s = &r.span;
    200 + s.name.len()
        + s.attributes.len() * 64
        + s.events
            .iter()
            .map(|e| 64 + e.name.len() + e.attributes.len() * 64)
            .sum::<usize>()
        + s.links.len() * 96
}

impl TailSampler {
    pub fn new(name: &str, cfg: &TailSampling, next: Arc<dyn Consumer>) -> Self {
        let inner = Arc::new(Inner {
            name: name.to_owned(),
            policies: cfg.policies.iter().map(Policy::new).collect(),
            state: Mutex::new(State {
                traces: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
                sampled: Remembered::new(cfg.decision_cache.sampled_cache_size),
                not_sampled: Remembered::new(cfg.decision_cache.non_sampled_cache_size),
            }),
            cfg: cfg.clone(),
            next,
        });
        let (stop, mut stopped) = watch::channel(false);
        let tick = (cfg.decision_wait / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let worker = inner.clone();
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
                let due = worker.take_due(Instant::now());
                worker.forward(due).await;
            }
        });
        Self {
            inner,
            stop,
            ticker: Mutex::new(Some(ticker)),
        }
    }
}

impl Inner {
    /// Decides one trace now; returns its spans when kept.
    fn decide(&self, state: &mut State, id: TraceId) -> Option<Vec<SpanRecord>> {
        let pending = state.traces.remove(&id)?;
        state.bytes = state.bytes.saturating_sub(pending.bytes);
        let votes: Vec<_> = self
            .policies
            .iter()
            .map(|p| p.evaluate(id, &pending.spans))
            .collect();
        let keep = combine(&votes);
        for (p, v) in self.policies.iter().zip(&votes) {
            let sampled = matches!(v, policy::Vote::Sampled | policy::Vote::InvertSampled);
            metrics::counter!("meshtrace_processor_tail_sampling_count_traces_sampled_total",
                "processor" => self.name.clone(), "policy" => p.name.clone(),
                "sampled" => if sampled { "true" } else { "false" })
            .increment(1);
        }
        metrics::counter!("meshtrace_processor_tail_sampling_global_count_traces_sampled_total",
            "processor" => self.name.clone(), "sampled" => if keep { "true" } else { "false" })
        .increment(1);
        if keep {
            state.sampled.insert(id);
            Some(pending.spans)
        } else {
            state.not_sampled.insert(id);
            None
        }
    }

    /// Decides every trace whose wait is over.
    fn take_due(&self, now: Instant) -> Vec<SpanRecord> {
        let Ok(mut state) = self.state.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Some(&(seen, id)) = state.order.front() {
            if seen + self.cfg.decision_wait > now {
                break;
            }
            state.order.pop_front();
            // The order entry may be stale (trace decided early or evicted).
            if state.traces.get(&id).is_some_and(|p| p.first_seen == seen) {
                out.extend(self.decide(&mut state, id).unwrap_or_default());
            }
        }
        metrics::gauge!("meshtrace_processor_tail_sampling_traces_on_memory", "processor" => self.name.clone())
            .set(state.traces.len() as f64);
        out
    }

    fn take_all(&self) -> Vec<SpanRecord> {
        let Ok(mut state) = self.state.lock() else {
            return Vec::new();
        };
        let ids: Vec<TraceId> = state.order.drain(..).map(|(_, id)| id).collect();
        ids.into_iter()
            .flat_map(|id| self.decide(&mut state, id).unwrap_or_default())
            .collect()
    }

    async fn forward(&self, records: Vec<SpanRecord>) {
        if records.is_empty() {
            return;
        }
        let batch = TraceBatch::from_records(&records);
        if let Err(e) = self.next.consume(batch).await {
            tracing::warn!(processor = %self.name, spans = records.len(), "sampled trace could not be sent on: {e}");
        }
    }

    /// Buffers a batch; returns spans to pass on at once (late spans of kept traces, and
    /// traces decided early to respect the byte cap).
    fn buffer(&self, batch: TraceBatch) -> Vec<SpanRecord> {
        let Ok(mut state) = self.state.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        let cap =
            usize::try_from(self.cfg.max_buffer_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        for rec in batch.into_records() {
            let id = rec.span.trace_id;
            if state.sampled.contains(&id) {
                out.push(rec);
                continue;
            }
            if state.not_sampled.contains(&id) {
                continue;
            }
            let size = estimate(&rec);
            if !state.traces.contains_key(&id) {
                while state.traces.len() >= self.cfg.num_traces {
                    let Some((seen, old)) = state.order.pop_front() else {
                        break;
                    };
                    if state.traces.get(&old).is_some_and(|p| p.first_seen == seen) {
                        if let Some(p) = state.traces.remove(&old) {
                            state.bytes = state.bytes.saturating_sub(p.bytes);
                        }
                        metrics::counter!("meshtrace_processor_tail_sampling_sampling_trace_dropped_too_early_total",
                            "processor" => self.name.clone())
                        .increment(1);
                    }
                }
                state.order.push_back((now, id));
                state.traces.insert(
                    id,
                    Pending {
                        first_seen: now,
                        spans: Vec::new(),
                        bytes: 0,
                    },
                );
            }
            state.bytes += size;
            if let Some(p) = state.traces.get_mut(&id) {
                p.bytes += size;
                p.spans.push(rec);
            }
            while state.bytes > cap {
                let Some(largest) = state
                    .traces
                    .iter()
                    .max_by_key(|(_, p)| p.bytes)
                    .map(|(id, _)| *id)
                else {
                    break;
                };
                metrics::counter!("meshtrace_processor_tail_sampling_early_decisions_total", "processor" => self.name.clone())
                    .increment(1);
                out.extend(self.decide(&mut state, largest).unwrap_or_default());
            }
        }
        out
    }
}

impl Consumer for TailSampler {
    fn consume(&self, batch: TraceBatch) -> BoxFuture<'_, Result<(), ConsumeError>> {
        Box::pin(async move {
            let now = self.inner.buffer(batch);
            self.inner.forward(now).await;
            Ok(())
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stop.send_replace(true);
            let ticker = self.ticker.lock().ok().and_then(|mut t| t.take());
            if let Some(t) = ticker {
                let _ = t.await;
            }
            let rest = self.inner.take_all();
            self.inner.forward(rest).await;
        })
    }
}

#[cfg(test)]
mod tests;
