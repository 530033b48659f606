//! The head: recent spans in memory, searchable as soon as their append is acknowledged.
//!
//! Spans are kept compact ([`span::HeadSpan`]: names, resources and scopes as table indexes,
//! attributes as JSON text) in fixed-size chunks (no reallocation spike when the head grows to a
//! million spans), threaded per trace through a `next` array, so the trace map holds only a
//! first/last pair per trace and no per-trace allocation. Equal resources and scopes from
//! different batches are interned, which matters for agents that send many small batches.
//! Services and their operations are kept incrementally for `services()` and `operations()`.
//!
//! A head also remembers which WAL segments hold its spans, so a cut knows which segments the
//! resulting block makes redundant.

pub(crate) mod span;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use model::{Resource, Scope, SpanKind, SpanRecord, TraceId};

use crate::api::Operation;
use crate::block::json;
use crate::block::schema::RowRef;
use crate::filter::{kv_matches, tag_matches_span, SpanFilter};
pub(crate) use span::{prepare, HeadSpan, Prepared};

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

    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |s| s.as_str())
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

/// The head's side tables: span names, resources (with their service) and scopes.
#[derive(Debug, Default)]
struct Tables {
    names: Vec<Box<str>>,
    name_ids: HashMap<Box<str>, u32>,
    resources: Vec<(Arc<Resource>, u32)>,
    /// Resource indexes per service id, for interning.
    resources_by_service: HashMap<u32, Vec<u32>>,
    scopes: Vec<Arc<Scope>>,
}

impl Tables {
    fn name(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.name_ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.name_ids.insert(name.into(), id);
        id
    }

    fn resource(&mut self, service: u32, r: &Arc<Resource>) -> u32 {
        let list = self.resources_by_service.entry(service).or_default();
        if let Some(&found) = list.iter().find(|&&i| *self.resources[i as usize].0 == **r) {
            return found;
        }
        let id = self.resources.len() as u32;
        self.resources.push((Arc::clone(r), service));
        if list.len() < INTERN_CAP {
            list.push(id);
        }
        id
    }

    fn scope(&mut self, s: &Arc<Scope>) -> u32 {
        if let Some(found) = self.scopes.iter().take(INTERN_CAP).position(|x| **x == **s) {
            return found as u32;
        }
        self.scopes.push(Arc::clone(s));
        (self.scopes.len() - 1) as u32
    }
}

/// The in-memory part of the store.
#[derive(Debug, Default)]
pub(crate) struct Head {
    chunks: Vec<Vec<HeadSpan>>,
    next_in_trace: Vec<u32>,
    traces: HashMap<TraceId, TraceSlot>,
    services: ServiceRegistry,
    tables: Tables,
    len: usize,
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
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
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
    pub fn insert(&mut self, spans: Vec<Prepared>) {
        if spans.is_empty() {
            return;
        }
        if self.first_arrival.is_none() {
            self.first_arrival = Some(Instant::now());
        }
        let mut last_res: Option<(Arc<Resource>, u32, u32)> = None;
        let mut last_scope: Option<(Arc<Scope>, u32)> = None;
        for p in spans {
            let (resource, svc) = match &last_res {
                Some((input, id, svc)) if Arc::ptr_eq(input, &p.resource) => (*id, *svc),
                _ => {
                    let svc = self.services.intern(p.resource.service_name());
                    let id = self.tables.resource(svc, &p.resource);
                    last_res = Some((Arc::clone(&p.resource), id, svc));
                    (id, svc)
                }
            };
            let scope = match &last_scope {
                Some((input, id)) if Arc::ptr_eq(input, &p.scope) => *id,
                _ => {
                    let id = self.tables.scope(&p.scope);
                    last_scope = Some((Arc::clone(&p.scope), id));
                    id
                }
            };
            let mut span = p.span;
            span.name = self.tables.name(&p.name);
            span.resource = resource;
            span.scope = scope;
            self.services.add_operation(svc, &p.name, span.kind);
            self.push(span);
        }
    }

    /// Converts and adds model records (WAL replay and tests).
    pub fn insert_records(&mut self, records: Vec<SpanRecord>) {
        self.insert(prepare(records));
    }

    fn push(&mut self, s: HeadSpan) {
        self.min_start = self.min_start.min(s.start);
        self.max_start = self.max_start.max(s.start);
        self.min_end = self.min_end.min(s.end);
        self.max_end = self.max_end.max(s.end);
        let idx = self.len as u32;
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
        self.next_in_trace.push(NONE);
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(s),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(s);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    pub fn span(&self, idx: u32) -> &HeadSpan {
        &self.chunks[(idx >> CHUNK_BITS) as usize][idx as usize & (CHUNK - 1)]
    }

    /// Every span, in arrival order.
    pub fn spans(&self) -> impl Iterator<Item = &HeadSpan> {
        self.chunks.iter().flatten()
    }

    pub fn name_of(&self, s: &HeadSpan) -> &str {
        self.tables.names.get(s.name as usize).map_or("", |n| n)
    }

    pub fn service_of(&self, s: &HeadSpan) -> &str {
        self.tables
            .resources
            .get(s.resource as usize)
            .map_or("", |(_, svc)| self.services.name(*svc))
    }

    fn resource_of(&self, s: &HeadSpan) -> Option<&Arc<Resource>> {
        self.tables
            .resources
            .get(s.resource as usize)
            .map(|(r, _)| r)
    }

    fn scope_of(&self, s: &HeadSpan) -> Option<&Arc<Scope>> {
        self.tables.scopes.get(s.scope as usize)
    }

    /// The span as a block row.
    pub fn row<'a>(&'a self, s: &'a HeadSpan) -> Option<RowRef<'a>> {
        Some(RowRef {
            span: s,
            name: self.name_of(s),
            service: self.service_of(s),
            resource: self.resource_of(s)?,
            scope: self.scope_of(s)?,
        })
    }

    /// The span as a model record.
    pub fn record(&self, s: &HeadSpan) -> Option<SpanRecord> {
        let (resource, scope) = (self.resource_of(s)?, self.scope_of(s)?);
        match s.to_record(self.name_of(s), resource, scope) {
            Ok(rec) => Some(rec),
            Err(e) => {
                tracing::error!(error = %e, "head span cannot be rebuilt");
                None
            }
        }
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
            let s = self.span(idx);
            if s.end >= end_min {
                out.extend(self.record(s));
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
        let op = match &filter.operation {
            Some(name) => match self.tables.name_ids.get(name.as_str()) {
                Some(&id) => Some(id),
                None => return,
            },
            None => None,
        };
        if let (Some(svc), Some(op)) = (&filter.service, &filter.operation) {
            if !self.services.has_operation(svc, op) {
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
        for s in self.spans() {
            if op.is_some_and(|id| s.name != id) || !filter.matches_times(s.start, s.end) {
                continue;
            }
            let Some((resource, span_svc)) = self.tables.resources.get(s.resource as usize) else {
                continue;
            };
            if svc.is_some_and(|id| *span_svc != id) {
                continue;
            }
            let tags_ok = filter
                .tags
                .iter()
                .zip(&filter.probes)
                .all(|((k, v), probe)| {
                    tag_matches_span(k, v, s.kind, s.is_error)
                        || (probe.may_match(&s.attributes)
                            && json::read_kvs(&s.attributes)
                                .is_ok_and(|kvs| kv_matches(&kvs, k, v)))
                        || kv_matches(&resource.attributes, k, v)
                        || (probe.may_match(s.events())
                            && json::read_events(s.events())
                                .is_ok_and(|evs| crate::filter::events_match(&evs, k, v)))
                });
            if tags_ok {
                let best = out.entry(s.trace_id).or_insert(0);
                *best = (*best).max(s.start);
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
                attributes: vec![KeyValue::new("n", span as i64)],
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
        let first = vec![rec(&a1, 1, 1, "x", 100), rec(&b, 2, 2, "y", 200)];
        head.insert_records(first.clone());
        head.insert_records(vec![rec(&a2, 1, 3, "z", 300)]);
        // enough spans to cross a chunk boundary
        head.insert_records(
            (0..CHUNK as u64 + 5)
                .map(|i| rec(&b, 3, 10 + i, "y", i))
                .collect(),
        );
        assert_eq!(head.trace_count(), 3);
        let mut out = Vec::new();
        head.trace_spans(&TraceId::from_halves(0, 1), 0, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], first[0]);
        assert!(Arc::ptr_eq(&out[0].resource, &out[1].resource));
        let ids: Vec<_> = head.trace_members(&TraceId::from_halves(0, 3)).collect();
        assert_eq!(ids.len(), CHUNK + 5);
        let last = head.span(*ids.last().unwrap());
        assert_eq!(last.span_id, SpanId::from_u64(10 + CHUNK as u64 + 4));
        assert_eq!(head.service_of(last), "b");
        assert_eq!(head.name_of(last), "y");
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
