//! `loadbalancing`: routes every span by its trace id over a consistent-hash ring of static
//! backends, so each backend (a tail-sampling tier) sees whole traces. Each backend is an OTLP
//! gRPC exporter with its own queue and retries (the `protocol.otlp` settings), so one slow
//! backend neither blocks nor duplicates the others' data.
//!
//! The ring: 100 points per backend at FNV-1a 64 of `"{endpoint}-{i}"`; a trace goes to the
//! first point at or after FNV-1a 64 of its id. Adding a backend moves only about 1/n of traces.

use std::sync::Arc;

use model::{ResourceSpans, ScopeSpans, TraceBatch, TraceId};

use super::queue::ExporterStage;
use super::{otlp, Export};
use crate::config::LoadBalancingExporter as Config;
use crate::consumer::{BoxFuture, ConsumeError, Consumer};
use crate::processor::tail::policy::fnv1a64;

const POINTS_PER_BACKEND: usize = 100;

/// The consistent-hash ring over backend indexes.
pub struct Ring(Vec<(u64, usize)>);

impl Ring {
    pub fn new(endpoints: &[String]) -> Self {
        let mut points: Vec<(u64, usize)> = endpoints
            .iter()
            .enumerate()
            .flat_map(|(b, e)| {
                (0..POINTS_PER_BACKEND)
                    .map(move |i| (fnv1a64(format!("{e}-{i}").as_bytes(), &[]), b))
            })
            .collect();
        points.sort_unstable();
        Self(points)
    }

    /// The backend index for a trace.
    pub fn route(&self, id: &TraceId) -> usize {
        let h = fnv1a64(&[], id.as_bytes());
        let i = self.0.partition_point(|(p, _)| *p < h);
        self.0.get(i).or(self.0.first()).map_or(0, |(_, b)| *b)
    }
}

pub struct LoadBalancer {
    ring: Ring,
    backends: Vec<Arc<ExporterStage>>,
}

impl LoadBalancer {
    pub fn new(name: &str, cfg: &Config) -> Result<Self, String> {
        let hosts: Vec<String> = cfg
            .resolver
            .r#static
            .as_ref()
            .map(|s| s.hostnames.clone())
            .unwrap_or_default();
        if hosts.is_empty() {
            return Err("resolver.static.hostnames is empty".into());
        }
        let mut backends = Vec::new();
        for h in &hosts {
            let mut otlp_cfg = cfg.protocol.otlp.clone();
            otlp_cfg.endpoint = Some(h.clone());
            let export: Arc<dyn Export> = Arc::new(otlp::OtlpExporter::new(&otlp_cfg)?);
            backends.push(Arc::new(ExporterStage::new(
                format!("{name}/{h}"),
                export,
                Some(otlp_cfg.sending_queue.clone()),
                otlp_cfg.retry_on_failure.clone(),
                None,
            )));
        }
        Ok(Self {
            ring: Ring::new(&hosts),
            backends,
        })
    }
}

/// Splits a batch into one batch per backend, keeping resource and scope groups.
pub fn split(ring: &Ring, n: usize, batch: TraceBatch) -> Vec<TraceBatch> {
    let mut out: Vec<TraceBatch> = (0..n).map(|_| TraceBatch::default()).collect();
    for rs in batch.resource_spans {
        let mut per: Vec<Option<ResourceSpans>> = (0..n).map(|_| None).collect();
        for ss in rs.scope_spans {
            let mut scoped: Vec<Vec<model::Span>> = (0..n).map(|_| Vec::new()).collect();
            for span in ss.spans {
                scoped[ring.route(&span.trace_id).min(n - 1)].push(span);
            }
            for (b, spans) in scoped.into_iter().enumerate() {
                if spans.is_empty() {
                    continue;
                }
                let target = per[b].get_or_insert_with(|| ResourceSpans {
                    resource: rs.resource.clone(),
                    schema_url: rs.schema_url.clone(),
                    scope_spans: Vec::new(),
                });
                target.scope_spans.push(ScopeSpans {
                    scope: ss.scope.clone(),
                    schema_url: ss.schema_url.clone(),
                    spans,
                });
            }
        }
        for (b, r) in per.into_iter().enumerate() {
            if let Some(r) = r {
                out[b].resource_spans.push(r);
            }
        }
    }
    out
}

impl Consumer for LoadBalancer {
    fn consume(&self, batch: TraceBatch) -> BoxFuture<'_, Result<(), ConsumeError>> {
        Box::pin(async move {
            let mut first_error = None;
            for (b, part) in split(&self.ring, self.backends.len(), batch)
                .into_iter()
                .enumerate()
            {
                if part.is_empty() {
                    continue;
                }
                if let Err(e) = self.backends[b].consume(part).await {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            for b in &self.backends {
                b.shutdown().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Span;

    #[test]
    fn traces_stay_whole_and_spread_over_backends() {
        let hosts: Vec<String> = (1..=3).map(|i| format!("10.0.0.{i}:4317")).collect();
        let ring = Ring::new(&hosts);
        let spans: Vec<Span> = (1..=3000u64)
            .map(|i| Span {
                trace_id: TraceId::from_halves(i % 1000 + 1, i % 1000 + 7),
                ..Default::default()
            })
            .collect();
        let batch = TraceBatch {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let parts = split(&ring, 3, batch);
        let mut owner = std::collections::HashMap::new();
        for (b, part) in parts.iter().enumerate() {
            assert!(
                part.span_count() > 500,
                "backend {b} gets a share: {}",
                part.span_count()
            );
            for (_, _, s) in part.spans() {
                assert_eq!(*owner.entry(s.trace_id).or_insert(b), b, "a trace is split");
            }
        }
        assert_eq!(
            parts.iter().map(TraceBatch::span_count).sum::<usize>(),
            3000
        );
        // Adding a backend moves only some traces.
        let ring4 = Ring::new(&[hosts.clone(), vec!["10.0.0.4:4317".into()]].concat());
        let moved = owner
            .keys()
            .filter(|id| ring4.route(id) != ring.route(id))
            .count();
        assert!(moved < 500, "{moved} of 1000 traces moved");
    }
}
