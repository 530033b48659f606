//! Service dependency links from parent/child spans (Jaeger's `/api/dependencies`).
//!
//! A link `parent -> child` is counted for every span whose parent span (same trace) belongs to
//! another service. Zipkin-style shared spans — a CLIENT and a SERVER span with the same span
//! id in one trace — count as one call from the client's service to the server's.
//! Spans seen twice (head and block) are counted once.

use std::collections::HashMap;

use model::{SpanId, SpanKind, TraceId};

use crate::api::DependencyLink;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct DepSpan {
    trace: TraceId,
    id: SpanId,
    service: u32,
    kind: u8,
    parent: Option<SpanId>,
    is_error: bool,
}

#[derive(Default)]
pub(crate) struct DepCollector {
    names: Vec<String>,
    ids: HashMap<String, u32>,
    spans: Vec<DepSpan>,
}

impl DepCollector {
    pub fn add(
        &mut self,
        trace: TraceId,
        id: SpanId,
        parent: Option<SpanId>,
        service: &str,
        kind: SpanKind,
        is_error: bool,
    ) {
        let service = match self.ids.get(service) {
            Some(&s) => s,
            None => {
                let s = self.names.len() as u32;
                self.names.push(service.to_owned());
                self.ids.insert(service.to_owned(), s);
                s
            }
        };
        self.spans.push(DepSpan {
            trace,
            id,
            service,
            kind: kind as u8,
            parent,
            is_error,
        });
    }

    pub fn links(mut self) -> Vec<DependencyLink> {
        self.spans.sort_unstable();
        self.spans.dedup();
        let spans = &self.spans;
        // Sorted by (trace, id): all spans sharing an id are one contiguous run.
        let run = |trace: TraceId, id: SpanId| -> &[DepSpan] {
            let lo = spans.partition_point(|s| (s.trace, s.id) < (trace, id));
            let hi = spans.partition_point(|s| (s.trace, s.id) <= (trace, id));
            &spans[lo..hi]
        };
        let (server, client) = (SpanKind::Server as u8, SpanKind::Client as u8);
        let mut counts: HashMap<(u32, u32), (u64, u64)> = HashMap::new();
        let mut count = |from: u32, to: u32, err: bool| {
            let c = counts.entry((from, to)).or_default();
            c.0 += 1;
            c.1 += u64::from(err);
        };
        for s in spans {
            if s.kind == server {
                let shared_client = run(s.trace, s.id)
                    .iter()
                    .find(|o| o.kind == client && o.service != s.service);
                if let Some(c) = shared_client {
                    count(c.service, s.service, s.is_error);
                    continue;
                }
            }
            let Some(parent) = s.parent else { continue };
            let parents = run(s.trace, parent);
            if parents.is_empty() || parents.iter().any(|p| p.service == s.service) {
                continue;
            }
            let p = parents
                .iter()
                .find(|p| p.kind == server)
                .unwrap_or(&parents[0]);
            count(p.service, s.service, s.is_error);
        }
        let mut out: Vec<DependencyLink> = counts
            .into_iter()
            .map(|((from, to), (calls, errors))| DependencyLink {
                parent: self.names[from as usize].clone(),
                child: self.names[to as usize].clone(),
                call_count: calls,
                error_count: errors,
            })
            .collect();
        out.sort_by(|a, b| (&a.parent, &a.child).cmp(&(&b.parent, &b.child)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_child_and_shared_spans() {
        let t = TraceId::from_halves(0, 1);
        let id = SpanId::from_u64;
        let mut c = DepCollector::default();
        // frontend root -> backend child (error) ; backend internal child
        c.add(t, id(1), None, "frontend", SpanKind::Server, false);
        c.add(t, id(2), Some(id(1)), "backend", SpanKind::Server, true);
        c.add(t, id(3), Some(id(2)), "backend", SpanKind::Internal, false);
        // duplicate of span 2 (seen in head and block): counted once
        c.add(t, id(2), Some(id(1)), "backend", SpanKind::Server, true);
        // Zipkin shared span 4: client in backend, server in db, same id, parent 3
        c.add(t, id(4), Some(id(3)), "backend", SpanKind::Client, false);
        c.add(t, id(4), Some(id(3)), "db", SpanKind::Server, false);
        // a child of the shared span on the server side stays inside db
        c.add(t, id(5), Some(id(4)), "db", SpanKind::Internal, false);
        let links = c.links();
        assert_eq!(
            links,
            vec![
                DependencyLink {
                    parent: "backend".into(),
                    child: "db".into(),
                    call_count: 1,
                    error_count: 0
                },
                DependencyLink {
                    parent: "frontend".into(),
                    child: "backend".into(),
                    call_count: 1,
                    error_count: 1
                },
            ]
        );
    }
}
