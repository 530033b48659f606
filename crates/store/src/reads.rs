//! Queries over head, cutting heads and blocks, merged.
//!
//! Each query takes what it needs from the in-memory heads under the state lock, snapshots the
//! block list, and releases the lock before any block I/O. A block deleted by retention after
//! the snapshot is skipped quietly. Spans past retention are never returned.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use model::{SpanKind, SpanRecord, Trace, TraceId};

use crate::api::{DependencyLink, Operation, StoreError, TraceQuery};
use crate::block::Block;
use crate::deps::DepCollector;
use crate::filter::{SpanFilter, DEFAULT_LIMIT};
use crate::Inner;

impl Inner {
    /// True when `block` is still registered (an error reading an unregistered block means it
    /// was deleted under us, which is not an error for the query).
    fn still_open(&self, block: &Arc<Block>) -> bool {
        self.shared
            .read()
            .blocks
            .iter()
            .any(|b| Arc::ptr_eq(b, block))
    }

    pub async fn trace(&self, id: TraceId) -> Result<Option<Trace>, StoreError> {
        let cutoff = self.retention_cutoff();
        let mut spans = Vec::new();
        let blocks: Vec<Arc<Block>> = {
            let st = self.shared.read();
            st.head.trace_spans(&id, cutoff, &mut spans);
            for h in &st.cutting {
                h.trace_spans(&id, cutoff, &mut spans);
            }
            st.blocks
                .iter()
                .filter(|b| b.meta.max_end_unix_nano >= cutoff && b.index.lookup(&id).is_some())
                .cloned()
                .collect()
        };
        for block in blocks {
            match block.read_trace(&id).await {
                Ok(found) => {
                    spans.extend(found.into_iter().filter(|r| r.span.end_unix_nano >= cutoff))
                }
                Err(_) if !self.still_open(&block) => {}
                Err(e) => return Err(e),
            }
        }
        if spans.is_empty() {
            return Ok(None);
        }
        dedup(&mut spans);
        Ok(Some(Trace {
            trace_id: id,
            spans,
        }))
    }

    pub async fn find_traces(&self, query: &TraceQuery) -> Result<Vec<Trace>, StoreError> {
        let limit = if query.limit == 0 {
            DEFAULT_LIMIT
        } else {
            query.limit
        };
        let filter = SpanFilter::new(query, self.retention_cutoff());
        let mut found: HashMap<TraceId, u64> = HashMap::new();
        let mut blocks: Vec<Arc<Block>> = {
            let st = self.shared.read();
            st.head.search(&filter, &mut found);
            for h in &st.cutting {
                h.search(&filter, &mut found);
            }
            st.blocks
                .iter()
                .filter(|b| b.meta.may_match(&filter))
                .cloned()
                .collect()
        };
        // Newest blocks first; once `limit` traces are known with a latest start newer than
        // everything a block holds, that block cannot change the answer.
        blocks.sort_by_key(|b| std::cmp::Reverse(b.meta.max_start_unix_nano));
        for block in blocks {
            if found.len() >= limit && kth_largest(&found, limit) > block.meta.max_start_unix_nano {
                continue;
            }
            match block.search(&filter, &mut found).await {
                Ok(()) => {}
                Err(_) if !self.still_open(&block) => {}
                Err(e) => return Err(e),
            }
        }
        let mut ranked: Vec<(u64, TraceId)> = found.into_iter().map(|(id, t)| (t, id)).collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        let mut out = Vec::with_capacity(limit.min(ranked.len()));
        for (_, id) in ranked {
            if out.len() >= limit {
                break;
            }
            if let Some(trace) = self.trace(id).await? {
                out.push(trace);
            }
        }
        Ok(out)
    }

    pub fn services(&self) -> Vec<String> {
        let st = self.shared.read();
        let mut names: BTreeSet<String> = BTreeSet::new();
        for h in std::iter::once(&st.head).chain(st.cutting.iter().map(|h| &**h)) {
            names.extend(h.services().names().map(str::to_owned));
        }
        for b in &st.blocks {
            names.extend(b.meta.services.iter().map(|s| s.name.clone()));
        }
        names.into_iter().collect()
    }

    pub fn operations(&self, service: &str, kind: Option<SpanKind>) -> Vec<Operation> {
        let st = self.shared.read();
        let mut ops = BTreeSet::new();
        for h in std::iter::once(&st.head).chain(st.cutting.iter().map(|h| &**h)) {
            h.services().collect_operations(service, kind, &mut ops);
        }
        for b in &st.blocks {
            if let Some(s) = b.meta.service(service) {
                ops.extend(
                    s.operations
                        .iter()
                        .map(|o| o.to_operation())
                        .filter(|o| kind.is_none_or(|k| k == o.span_kind)),
                );
            }
        }
        ops.into_iter().collect()
    }

    pub async fn dependencies(
        &self,
        end_unix_nano: u64,
        lookback_nanos: u64,
    ) -> Result<Vec<DependencyLink>, StoreError> {
        let start = end_unix_nano.saturating_sub(lookback_nanos);
        let cutoff = self.retention_cutoff();
        let mut deps = DepCollector::default();
        let blocks: Vec<Arc<Block>> = {
            let st = self.shared.read();
            for h in std::iter::once(&st.head).chain(st.cutting.iter().map(|h| &**h)) {
                for s in h.spans() {
                    if s.start >= start && s.start <= end_unix_nano && s.end >= cutoff {
                        deps.add(
                            s.trace_id,
                            s.span_id,
                            s.parent,
                            h.service_of(s),
                            s.kind,
                            s.is_error,
                        );
                    }
                }
            }
            st.blocks.clone()
        };
        for block in blocks {
            let scanned = block
                .scan_dependencies(start, end_unix_nano, cutoff, |row| {
                    deps.add(
                        row.trace_id,
                        row.span_id,
                        row.parent,
                        row.service,
                        row.kind,
                        row.is_error,
                    )
                })
                .await;
            match scanned {
                Ok(()) => {}
                Err(_) if !self.still_open(&block) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deps.links())
    }
}

/// The `k`-th largest value (1-based) of the map.
fn kth_largest(found: &HashMap<TraceId, u64>, k: usize) -> u64 {
    let mut values: Vec<u64> = found.values().copied().collect();
    if values.len() < k || k == 0 {
        return 0;
    }
    let idx = values.len() - k;
    *values.select_nth_unstable(idx).1
}

/// Sorts by start time and drops exact copies of a span (seen in both the WAL-replayed head and
/// a block, or appended twice).
fn dedup(spans: &mut Vec<SpanRecord>) {
    spans.sort_by(|a, b| {
        (a.span.start_unix_nano, a.span.span_id).cmp(&(b.span.start_unix_nano, b.span.span_id))
    });
    spans.dedup_by(|a, b| a == b);
}
