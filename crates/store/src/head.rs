//! The head: recent spans in memory, searchable as soon as their append is acknowledged.
//!
//! Spans live in fixed-size chunks (no reallocation spike when the head grows to a million
//! spans) and are threaded per trace through a `next` array, so the trace map holds only a
//! first/last pair per trace and no per-trace allocation. Equal resources and scopes from
//! different batches are interned to one `Arc`, which matters for agents that send many small
//! batches. Services and their operations are kept incrementally for `services()` and
//! `operations()`.
//!
//! A head also remembers which WAL segments hold its spans, so a cut knows which segments the
//! resulting block makes redundant.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use model::{Resource, Scope, SpanKind, SpanRecord, TraceId};

use crate::api::Operation;
use crate::filter::{events_match, kv_matches, tag_matches_span, SpanFilter};

const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
const NONE: u32 = u32::MAX;
/// Interning compares by value; past this many distinct values per list it stops trying.
const INTERN_CAP: usize = 64;

/// Service names and, per service, operation names with the kinds seen (a bit per kind).
#[derive(Debug, Default, Clone)]
pub(crate) struct ServiceRegistry {
    names: Vec<String>,
    ids: HashMap<String, u32>,
    ops: Vec<HashMap<String, u8>>,
}

impl ServiceRegistry {
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        self.ops.push(HashMap::new());
        id
    }

    pub fn add_operation(&mut self, service: u32, name: &str, kind: SpanKind) {
        let Some(ops) = self.ops.get_mut(service as usize) else {
            return;
        };
        let bit = 1u8 << (kind as u8);
        match ops.get_mut(name) {
            Some(mask) => *mask |= bit,
            None => {
                ops.insert(name.to_owned(), bit);
            }
        }
    }

    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|s| s.as_str())
    }

    pub fn has_operation(&self, service: &str, op: &str) -> bool {
        self.id(service)
            .and_then(|id| self.ops.get(id as usize))
            .is_some_and(|ops| ops.contains_key(op))
    }

    /// Every (service, operation, kind) triple.
    pub fn operations_of(&self, id: u32) -> impl Iterator<Item = Operation> + '_ {
        self.ops
            .get(id as usize)
            .into_iter()
            .flat_map(|ops| ops.iter())
            .flat_map(|(name, mask)| {
                (0u8..8)
                    .filter(move |k| mask & (1 << k) != 0)
                    .map(move |k| Operation {
                        name: name.clone(),
                        span_kind: SpanKind::from_i32(k.into()),
                    })
            })
    }

    pub fn collect_operations(
        &self,
        service: &str,
        kind: Option<SpanKind>,
        out: &mut BTreeSet<Operation>,
    ) {
        if let Some(id) = self.id(service) {
            out.extend(
                self.operations_of(id)
                    .filter(|op| kind.is_none_or(|k| k == op.span_kind)),
            );
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct TraceSlot {
    first: u32,
    last: u32,
}

#[derive(Debug, Default)]
struct Interner {
    resources: HashMap<u32, Vec<Arc<Resource>>>,
    scopes: Vec<Arc<Scope>>,
}

impl Interner {
    fn resource(&mut self, service: u32, r: &Arc<Resource>) -> Arc<Resource> {
        let list = self.resources.entry(service).or_default();
        if let Some(found) = list.iter().find(|x| ***x == **r) {
            return Arc::clone(found);
        }
        if list.len() < INTERN_CAP {
            list.push(Arc::clone(r));
        }
        Arc::clone(r)
    }

    fn scope(&mut self, s: &Arc<Scope>) -> Arc<Scope> {
        if let Some(found) = self.scopes.iter().find(|x| ***x == **s) {
            return Arc::clone(found);
        }
        if self.scopes.len() < INTERN_CAP {
            self.scopes.push(Arc::clone(s));
        }
        Arc::clone(s)
    }
}

/// The in-memory part of the store.
#[derive(Debug, Default)]
pub(crate) struct Head {
    chunks: Vec<Vec<SpanRecord>>,
    service_of: Vec<u32>,
    next_in_trace: Vec<u32>,
    traces: HashMap<TraceId, TraceSlot>,
    services: ServiceRegistry,
    interner: Interner,
    min_start: u64,
    max_start: u64,
    min_end: u64,
    max_end: u64,
    first_arrival: Option<Instant>,
    /// First WAL segment that may hold this head's spans.
    pub wal_first_segment: u64,
    /// Last WAL segment that holds this head's spans (set when the head is swapped out).
    pub wal_last_segment: u64,
}

impl Head {
    pub fn new(wal_first_segment: u64) -> Self {
        Self {
            wal_first_segment,
            wal_last_segment: wal_first_segment,
            min_start: u64::MAX,
            min_end: u64::MAX,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.service_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.service_of.is_empty()
    }

    pub fn trace_count(&self) -> usize {
        self.traces.len()
    }

    /// When the oldest span in the head arrived.
    pub fn first_arrival(&self) -> Option<Instant> {
        self.first_arrival
    }

    pub fn services(&self) -> &ServiceRegistry {
        &self.services
    }

    /// `(min start, max start, min end, max end)` over all spans; `None` when empty.
    pub fn time_bounds(&self) -> Option<(u64, u64, u64, u64)> {
        (!self.is_empty()).then_some((self.min_start, self.max_start, self.min_end, self.max_end))
    }

    /// Adds spans whose WAL record is already synced.
    pub fn insert(&mut self, records: Vec<SpanRecord>) {
        if records.is_empty() {
            return;
        }
        if self.first_arrival.is_none() {
            self.first_arrival = Some(Instant::now());
        }
        let mut last_res: Option<(Arc<Resource>, Arc<Resource>, u32)> = None;
        let mut last_scope: Option<(Arc<Scope>, Arc<Scope>)> = None;
        for mut rec in records {
            let svc = match &last_res {
                Some((input, interned, svc)) if Arc::ptr_eq(input, &rec.resource) => {
                    rec.resource = Arc::clone(interned);
                    *svc
                }
                _ => {
                    let svc = self.services.intern(rec.resource.service_name());
                    let interned = self.interner.resource(svc, &rec.resource);
                    let input = std::mem::replace(&mut rec.resource, Arc::clone(&interned));
                    last_res = Some((input, interned, svc));
                    svc
                }
            };
            match &last_scope {
                Some((input, interned)) if Arc::ptr_eq(input, &rec.scope) => {
                    rec.scope = Arc::clone(interned);
                }
                _ => {
                    let interned = self.interner.scope(&rec.scope);
                    let input = std::mem::replace(&mut rec.scope, Arc::clone(&interned));
                    last_scope = Some((input, interned));
                }
            }
            self.push(rec, svc);
        }
    }

    fn push(&mut self, rec: SpanRecord, svc: u32) {
        let s = &rec.span;
        self.services.add_operation(svc, &s.name, s.kind);
        self.min_start = self.min_start.min(s.start_unix_nano);
        self.max_start = self.max_start.max(s.start_unix_nano);
        self.min_end = self.min_end.min(s.end_unix_nano);
        self.max_end = self.max_end.max(s.end_unix_nano);
        let idx = self.service_of.len() as u32;
        match self.traces.get_mut(&s.trace_id) {
            Some(slot) => {
                self.next_in_trace[slot.last as usize] = idx;
                slot.last = idx;
            }
            None => {
                self.traces.insert(
                    s.trace_id,
                    TraceSlot {
                        first: idx,
                        last: idx,
                    },
                );
            }
        }
        self.service_of.push(svc);
        self.next_in_trace.push(NONE);
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(rec),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(rec);
                self.chunks.push(chunk);
            }
        }
    }

    pub fn record(&self, idx: u32) -> &SpanRecord {
        &self.chunks[(idx >> CHUNK_BITS) as usize][idx as usize & (CHUNK - 1)]
    }

    /// Every span, in arrival order.
    pub fn records(&self) -> impl Iterator<Item = &SpanRecord> {
        self.chunks.iter().flatten()
    }

    /// Indexes of a trace's spans, in arrival order.
    pub fn trace_members(&self, id: &TraceId) -> impl Iterator<Item = u32> + '_ {
        let mut cur = self.traces.get(id).map_or(NONE, |slot| slot.first);
        std::iter::from_fn(move || {
            if cur == NONE {
                return None;
            }
            let idx = cur;
            cur = self.next_in_trace[idx as usize];
            Some(idx)
        })
    }

    pub fn trace_ids(&self) -> impl Iterator<Item = &TraceId> {
        self.traces.keys()
    }

    /// Appends the spans of one trace that ended at or after `end_min`.
    pub fn trace_spans(&self, id: &TraceId, end_min: u64, out: &mut Vec<SpanRecord>) {
        for idx in self.trace_members(id) {
            let rec = self.record(idx);
            if rec.span.end_unix_nano >= end_min {
                out.push(rec.clone());
            }
        }
    }

    /// Records, per trace with a span matching `filter`, the latest matching span start.
    pub fn search(&self, filter: &SpanFilter, out: &mut HashMap<TraceId, u64>) {
        let svc = match &filter.service {
            Some(name) => match self.services.id(name) {
                Some(id) => Some(id),
                None => return,
            },
            None => None,
        };
        if let (Some(name), Some(op)) = (&filter.service, &filter.operation) {
            if !self.services.has_operation(name, op) {
                return;
            }
        }
        if let Some((min_start, max_start, _, max_end)) = self.time_bounds() {
            if max_start < filter.start_min
                || min_start > filter.start_max
                || max_end < filter.end_min
            {
                return;
            }
        }
        for (idx, rec) in self.records().enumerate() {
            if svc.is_some_and(|id| self.service_of[idx] != id) {
                continue;
            }
            let s = &rec.span;
            if !filter.matches_times(s.start_unix_nano, s.end_unix_nano)
                || !filter.matches_operation(&s.name)
            {
                continue;
            }
            let tags_ok = filter.tags.iter().all(|(k, v)| {
                tag_matches_span(k, v, s.kind, s.is_error())
                    || kv_matches(&s.attributes, k, v)
                    || kv_matches(&rec.resource.attributes, k, v)
                    || events_match(&s.events, k, v)
            });
            if tags_ok {
                let best = out.entry(s.trace_id).or_insert(0);
                *best = (*best).max(s.start_unix_nano);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{KeyValue, Span, SpanId};

    fn rec(res: &Arc<Resource>, trace: u64, span: u64, name: &str, start: u64) -> SpanRecord {
        SpanRecord {
            resource: Arc::clone(res),
            scope: Arc::new(Scope::default()),
            span: Span {
                trace_id: TraceId::from_halves(0, trace),
                span_id: SpanId::from_u64(span),
                name: name.into(),
                kind: SpanKind::Server,
                start_unix_nano: start,
                end_unix_nano: start + 10,
                ..Default::default()
            },
        }
    }

    #[test]
    fn groups_by_trace_and_interns_resources() {
        let mut head = Head::new(1);
        let mk = |svc: &str| {
            Arc::new(Resource {
                attributes: vec![KeyValue::new("service.name", svc)],
                ..Default::default()
            })
        };
        let (a1, a2, b) = (mk("a"), mk("a"), mk("b"));
        head.insert(vec![rec(&a1, 1, 1, "x", 100), rec(&b, 2, 2, "y", 200)]);
        head.insert(vec![rec(&a2, 1, 3, "z", 300)]);
        // enough spans to cross a chunk boundary
        head.insert(
            (0..CHUNK as u64 + 5)
                .map(|i| rec(&b, 3, 10 + i, "y", i))
                .collect(),
        );
        assert_eq!(head.trace_count(), 3);
        let mut out = Vec::new();
        head.trace_spans(&TraceId::from_halves(0, 1), 0, &mut out);
        assert_eq!(out.len(), 2);
        assert!(Arc::ptr_eq(&out[0].resource, &out[1].resource));
        let ids: Vec<_> = head.trace_members(&TraceId::from_halves(0, 3)).collect();
        assert_eq!(ids.len(), CHUNK + 5);
        assert_eq!(
            head.record(*ids.last().unwrap()).span.span_id,
            SpanId::from_u64(10 + CHUNK as u64 + 4)
        );
        let mut ops = BTreeSet::new();
        head.services().collect_operations("a", None, &mut ops);
        let names: Vec<_> = ops.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["x", "z"]);
        assert_eq!(
            head.time_bounds(),
            Some((0, CHUNK as u64 + 4, 10, CHUNK as u64 + 14))
        );
    }
}
