//! `loadbalancing`: routes every span by its trace id over a consistent-hash ring of backends,
//! so each backend (a tail-sampling tier) sees whole traces. Each backend is an OTLP gRPC
//! exporter with its own queue and retries (the `protocol.otlp` settings), so one slow backend
//! neither blocks nor duplicates the others' data.
//!
//! The ring: 100 points per backend at FNV-1a 64 of `"{endpoint}-{i}"`; a trace goes to the
//! first point at or after FNV-1a 64 of its id. Adding a backend moves only about 1/n of traces.
//!
//! Backends come from the `static` resolver (a fixed list) or the `dns` resolver: the addresses
//! a name (typically a headless service) resolves to, looked up again every `interval`. When the
//! set changes the ring is rebuilt; backends still in the set keep their exporter and queue, and
//! a removed backend's exporter is shut down in the background (its queue drains or times out).
//! A failed or empty lookup keeps the current set.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use model::{ResourceSpans, ScopeSpans, TraceBatch, TraceId};

use super::queue::ExporterStage;
use super::{otlp, Export};
use crate::auth::ClientAuth;
use crate::config::{DnsResolver, LoadBalancingExporter as Config};
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

/// One set of backends and the ring over them.
struct Backends {
    endpoints: Vec<String>,
    ring: Ring,
    stages: Vec<Arc<ExporterStage>>,
}

/// What the exporter and its DNS refresh task share.
struct Shared {
    name: String,
    cfg: Config,
    auth: Option<Arc<ClientAuth>>,
    current: RwLock<Arc<Backends>>,
}

impl Shared {
    fn current(&self) -> Arc<Backends> {
        match self.current.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// A backend's exporter stage, for `endpoint`.
    fn stage(&self, endpoint: &str) -> Result<Arc<ExporterStage>, String> {
        let mut otlp_cfg = self.cfg.protocol.otlp.clone();
        otlp_cfg.endpoint = Some(endpoint.to_owned());
        let export: Arc<dyn Export> =
            Arc::new(otlp::OtlpExporter::new(&otlp_cfg)?.with_auth(self.auth.clone()));
        Ok(Arc::new(ExporterStage::new(
            format!("{}/{endpoint}", self.name),
            export,
            Some(otlp_cfg.sending_queue.clone()),
            otlp_cfg.retry_on_failure.clone(),
            None,
        )))
    }

    /// Switches to `endpoints` (sorted, unique) if they differ from the current set; returns the
    /// stages of backends that left it.
    fn update(&self, endpoints: Vec<String>) -> Result<Vec<Arc<ExporterStage>>, String> {
        let old = self.current();
        if old.endpoints == endpoints {
            return Ok(Vec::new());
        }
        let mut stages = Vec::with_capacity(endpoints.len());
        for e in &endpoints {
            match old.endpoints.iter().position(|o| o == e) {
                Some(i) => stages.push(Arc::clone(&old.stages[i])),
                None => stages.push(self.stage(e)?),
            }
        }
        let removed = old
            .endpoints
            .iter()
            .zip(&old.stages)
            .filter(|(e, _)| !endpoints.contains(e))
            .map(|(_, s)| Arc::clone(s))
            .collect();
        tracing::info!(exporter = %self.name, backends = ?endpoints, "load-balancing backends changed");
        let next = Arc::new(Backends {
            ring: Ring::new(&endpoints),
            endpoints,
            stages,
        });
        match self.current.write() {
            Ok(mut c) => *c = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        Ok(removed)
    }
}

pub struct LoadBalancer {
    shared: Arc<Shared>,
    refresh: Option<tokio::task::JoinHandle<()>>,
}

impl LoadBalancer {
    /// `auth`: what the backends' `otlp` exporters send (`protocol.otlp.auth`).
    pub fn new(name: &str, cfg: &Config, auth: Option<Arc<ClientAuth>>) -> Result<Self, String> {
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            cfg: cfg.clone(),
            auth,
            current: RwLock::new(Arc::new(Backends {
                endpoints: Vec::new(),
                ring: Ring::new(&[]),
                stages: Vec::new(),
            })),
        });
        if let Some(dns) = &cfg.resolver.dns {
            // The first lookup runs at once in the task (never blocking start-up on DNS);
            // until it answers, spans are refused as retryable.
            let refresh = tokio::spawn(refresh(Arc::clone(&shared), dns.clone()));
            return Ok(Self {
                shared,
                refresh: Some(refresh),
            });
        }
        let mut hosts: Vec<String> = cfg
            .resolver
            .r#static
            .as_ref()
            .map(|s| s.hostnames.clone())
            .unwrap_or_default();
        if hosts.is_empty() {
            return Err("resolver.static.hostnames is empty".into());
        }
        hosts.dedup();
        // The static list keeps its order: the ring does not depend on it, the exporter names do.
        let stages = hosts
            .iter()
            .map(|h| shared.stage(h))
            .collect::<Result<Vec<_>, _>>()?;
        *shared
            .current
            .write()
            .map_err(|_| "load balancer state poisoned".to_owned())? = Arc::new(Backends {
            ring: Ring::new(&hosts),
            endpoints: hosts,
            stages,
        });
        Ok(Self {
            shared,
            refresh: None,
        })
    }

    /// The backends' endpoints now.
    pub fn endpoints(&self) -> Vec<String> {
        self.shared.current().endpoints.clone()
    }
}

/// `host:port` texts of resolved addresses, sorted and unique (IPv6 in brackets).
fn endpoints_of(addrs: impl Iterator<Item = SocketAddr>) -> Vec<String> {
    let mut out: Vec<String> = addrs.map(|a| a.to_string()).collect();
    out.sort();
    out.dedup();
    out
}

/// Looks `dns.hostname` up every interval and applies changes; runs until aborted.
async fn refresh(shared: Arc<Shared>, dns: DnsResolver) {
    let interval = dns.interval.unwrap_or(Duration::from_secs(5));
    let timeout = dns.timeout.unwrap_or(Duration::from_secs(1));
    let port = dns.port.unwrap_or(4317);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let lookup = tokio::net::lookup_host((dns.hostname.as_str(), port));
        let endpoints = match tokio::time::timeout(timeout, lookup).await {
            Ok(Ok(addrs)) => endpoints_of(addrs),
            Ok(Err(e)) => {
                tracing::warn!(exporter = %shared.name, "cannot resolve {}: {e}; keeping the current backends", dns.hostname);
                continue;
            }
            Err(_) => {
                tracing::warn!(exporter = %shared.name, "resolving {} took over {timeout:?}; keeping the current backends", dns.hostname);
                continue;
            }
        };
        if endpoints.is_empty() {
            continue;
        }
        match shared.update(endpoints) {
            Ok(removed) => {
                for stage in removed {
                    tokio::spawn(async move { stage.shutdown().await });
                }
            }
            Err(e) => tracing::warn!(exporter = %shared.name, "cannot add a backend: {e}"),
        }
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
            let backends = self.shared.current();
            if backends.stages.is_empty() {
                return Err(ConsumeError::Unavailable(format!(
                    "{}: no backend resolved yet",
                    self.shared.name
                )));
            }
            let mut first_error = None;
            for (b, part) in split(&backends.ring, backends.stages.len(), batch)
                .into_iter()
                .enumerate()
            {
                if part.is_empty() {
                    continue;
                }
                if let Err(e) = backends.stages[b].consume(part).await {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(refresh) = &self.refresh {
                refresh.abort();
            }
            for b in &self.shared.current().stages {
                b.shutdown().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Span;

    fn dns_config(hostname: &str, port: u16) -> Config {
        let mut cfg = Config::default();
        cfg.protocol.otlp.tls.insecure = true;
        cfg.resolver.dns = Some(DnsResolver {
            hostname: hostname.into(),
            port: Some(port),
            interval: Some(Duration::from_millis(50)),
            timeout: None,
        });
        cfg
    }

    #[test]
    fn resolved_addresses_become_sorted_unique_endpoints() {
        let addrs: Vec<SocketAddr> = [
            "10.0.0.2:4317",
            "[fd00::1]:4317",
            "10.0.0.1:4317",
            "10.0.0.2:4317",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        assert_eq!(
            endpoints_of(addrs.into_iter()),
            ["10.0.0.1:4317", "10.0.0.2:4317", "[fd00::1]:4317"]
        );
    }

    #[tokio::test]
    async fn a_changed_set_keeps_the_exporters_of_backends_that_stay() {
        // The shared state alone, without a refresh task that would apply its own lookups.
        let shared = Shared {
            name: "loadbalancing".into(),
            cfg: dns_config("unused", 4317),
            auth: None,
            current: RwLock::new(Arc::new(Backends {
                endpoints: Vec::new(),
                ring: Ring::new(&[]),
                stages: Vec::new(),
            })),
        };
        let ab = vec!["10.0.0.1:4317".to_owned(), "10.0.0.2:4317".to_owned()];
        assert!(shared.update(ab.clone()).unwrap().is_empty());
        let before = shared.current();
        assert_eq!(before.endpoints, ab);
        assert!(
            shared.update(ab.clone()).unwrap().is_empty(),
            "same set: nothing changes"
        );
        assert!(Arc::ptr_eq(&before, &shared.current()));
        let bc = vec!["10.0.0.2:4317".to_owned(), "10.0.0.3:4317".to_owned()];
        let removed = shared.update(bc.clone()).unwrap();
        let after = shared.current();
        assert_eq!(after.endpoints, bc);
        assert_eq!(removed.len(), 1);
        assert!(Arc::ptr_eq(&removed[0], &before.stages[0]), "10.0.0.1 left");
        assert!(
            Arc::ptr_eq(&after.stages[0], &before.stages[1]),
            "10.0.0.2 kept its queue"
        );
        for stage in after.stages.iter().chain(&removed) {
            stage.shutdown().await;
        }
    }

    #[tokio::test]
    async fn the_dns_resolver_finds_its_backends_and_refuses_spans_until_then() {
        let lb = LoadBalancer::new("loadbalancing", &dns_config("127.0.0.1", 4317), None).unwrap();
        let found = tokio::time::timeout(Duration::from_secs(5), async {
            while lb.endpoints().is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(found.is_ok(), "the first lookup applies");
        assert_eq!(lb.endpoints(), ["127.0.0.1:4317"]);
        lb.shutdown().await;

        let nowhere =
            LoadBalancer::new("lb", &dns_config("no-such-host.invalid", 4317), None).unwrap();
        let e = nowhere.consume(TraceBatch::default()).await.unwrap_err();
        assert!(
            matches!(e, ConsumeError::Unavailable(ref m) if m.contains("no backend")),
            "{e}"
        );
        nowhere.shutdown().await;
    }

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
