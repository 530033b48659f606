//! Picking the upstream of a request: the listener's one address, or (outbound) the first route
//! matching the Host header or path prefix, then the cluster's next endpoint round-robin
//! (passing over those its outlier detector ejected, see `outlier`, and those failing its
//! active health checks, see `health_check`); and
//! the TLS settings its connections are made with (the cluster's own, else the listener's),
//! and the retry policy (the route's own, else the listener's), whose retries go to the
//! cluster's next endpoint ([`Router::again`]); and the faults and the token bucket (the
//! route's own, else the listener's) the request meets first.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::circuit_breaker::Gate;
use crate::config::{FaultConfig, ListenerConfig, Upstream, UpstreamProtocol};
use crate::health_check::ClusterHealth;
use crate::outlier::Outliers;
use crate::rate_limit::TokenBucket;
use crate::retry::RetryPolicy;
use crate::tls::{Originate, Watched};

/// TLS settings for connections to an upstream (`None`: cleartext).
pub type UpstreamTls = Option<Arc<Watched<Originate>>>;

/// The TLS a listener's upstreams are reached with.
#[derive(Clone, Default)]
pub struct TlsByCluster {
    /// The listener's `upstream_tls`.
    pub listener: UpstreamTls,
    /// The clusters that set their own `tls` (`None` for `tls: false`).
    pub clusters: BTreeMap<String, UpstreamTls>,
}

impl TlsByCluster {
    pub fn of(&self, cluster: &str) -> UpstreamTls {
        match self.clusters.get(cluster) {
            Some(own) => own.clone(),
            None => self.listener.clone(),
        }
    }
}

/// The outlier detectors of a listener's clusters (those with `outlier_detection`).
pub type OutliersByCluster = BTreeMap<String, Arc<Outliers>>;

/// What the workers of a listener share about its clusters (by name; a single upstream under
/// the listener's name): outlier detectors, active health checks' verdicts, and the count of
/// retries in flight that `max_active_retries` caps per cluster, as Envoy's circuit breaker does.
#[derive(Clone, Default)]
pub struct Shared {
    pub outliers: OutliersByCluster,
    /// The clusters with `health_checks`.
    pub health: BTreeMap<String, Arc<ClusterHealth>>,
    /// The listener's `local_rate_limit` bucket.
    pub bucket: Option<Arc<TokenBucket>>,
    /// The routes' own buckets, in route order.
    pub route_buckets: Vec<Option<Arc<TokenBucket>>>,
    /// The circuit breakers, by cluster (the listener's name for a single upstream).
    pub gates: BTreeMap<String, Arc<Gate>>,
    pub retries_in_flight: BTreeMap<String, Arc<AtomicUsize>>,
}

impl Shared {
    fn in_flight(&self, cluster: &str) -> Arc<AtomicUsize> {
        self.retries_in_flight
            .get(cluster)
            .cloned()
            .unwrap_or_default()
    }
}

/// Where one request goes.
#[derive(Clone)]
pub struct Target<'a> {
    /// Shared, so that spans tag it without a copy.
    pub cluster: &'a Arc<str>,
    pub address: &'a Arc<str>,
    /// The TLS its connections are made with.
    pub tls: &'a UpstreamTls,
    /// The cluster's own protocol, if it sets one.
    pub protocol: Option<UpstreamProtocol>,
    /// (the route's path prefix, what replaces it), with `prefix_rewrite`.
    pub rewrite: Option<(&'a str, &'a str)>,
    /// The route's operation name, if it has one.
    pub operation: Option<&'a str>,
    /// The route's retry policy, if it has one.
    pub retry: Option<&'a RetryPolicy>,
    /// The faults to inject, if any.
    pub fault: Option<&'a FaultConfig>,
    /// The token bucket the request takes from, if any.
    pub bucket: Option<&'a TokenBucket>,
    /// The cluster's circuit breaker, if it has one.
    pub gate: Option<&'a Gate>,
    /// The cluster's retries in flight (for a policy a request asks for with its headers).
    pub retries_in_flight: &'a Arc<AtomicUsize>,
    /// The route picked (`None`: the listener's single upstream), for [`Router::again`].
    route: Option<&'a Route>,
    /// The endpoint's place in its cluster.
    endpoint: usize,
}

impl Target<'_> {
    /// Tells the cluster's outlier detector (if it has one) how the attempt went: `failed` for
    /// a 5xx answer or none. Returns the ejection it caused, if any.
    pub fn record(&self, failed: bool) -> Option<std::time::Duration> {
        let outliers = self.route?.outliers.as_ref()?;
        if !failed {
            outliers.succeeded(self.endpoint);
            return None;
        }
        match outliers.failed(self.endpoint) {
            crate::outlier::Verdict::Ejected(time) => Some(time),
            crate::outlier::Verdict::Counted => None,
        }
    }
}

pub struct Router {
    listener_name: Arc<str>,
    single: Option<Single>,
    routes: Vec<Route>,
}

/// An edge or inbound listener's one upstream.
struct Single {
    address: Arc<str>,
    tls: UpstreamTls,
    retry: Option<RetryPolicy>,
    fault: Option<FaultConfig>,
    bucket: Option<Arc<TokenBucket>>,
    gate: Option<Arc<Gate>>,
    retries_in_flight: Arc<AtomicUsize>,
}

struct Route {
    host: Option<String>,
    path_prefix: Option<String>,
    cluster: Arc<str>,
    name: Option<String>,
    endpoints: Vec<Arc<str>>,
    tls: UpstreamTls,
    protocol: Option<UpstreamProtocol>,
    rewrite: Option<(String, String)>,
    retry: Option<RetryPolicy>,
    outliers: Option<Arc<Outliers>>,
    health: Option<Arc<ClusterHealth>>,
    fault: Option<FaultConfig>,
    bucket: Option<Arc<TokenBucket>>,
    gate: Option<Arc<Gate>>,
    retries_in_flight: Arc<AtomicUsize>,
    next: AtomicUsize,
}

impl Router {
    pub fn new(l: &ListenerConfig, tls: &TlsByCluster, shared: &Shared) -> Self {
        match &l.upstream {
            Upstream::Single(addr) => Router {
                listener_name: l.name.as_str().into(),
                single: Some(Single {
                    address: addr.as_str().into(),
                    tls: tls.listener.clone(),
                    retry: l
                        .retry_policy
                        .as_ref()
                        .map(|p| RetryPolicy::new(p, shared.in_flight(&l.name))),
                    fault: l.fault.clone(),
                    bucket: shared.bucket.clone(),
                    gate: shared.gates.get(&l.name).cloned(),
                    retries_in_flight: shared.in_flight(&l.name),
                }),
                routes: Vec::new(),
            },
            Upstream::Routed(r) => Router {
                listener_name: l.name.as_str().into(),
                single: None,
                routes: r
                    .routes
                    .iter()
                    .enumerate()
                    .map(|(i, route)| Route {
                        host: route.host.as_ref().map(|h| h.to_ascii_lowercase()),
                        path_prefix: route.path_prefix.clone(),
                        cluster: route.cluster.as_str().into(),
                        name: route.name.clone(),
                        endpoints: r
                            .clusters
                            .get(&route.cluster)
                            .map(|c| c.endpoints.iter().map(|a| a.as_str().into()).collect())
                            .unwrap_or_default(),
                        tls: tls.of(&route.cluster),
                        protocol: r
                            .clusters
                            .get(&route.cluster)
                            .and_then(|c| c.upstream_protocol),
                        rewrite: route.path_prefix.clone().zip(route.prefix_rewrite.clone()),
                        retry: route
                            .retry_policy
                            .as_ref()
                            .or(l.retry_policy.as_ref())
                            .map(|p| RetryPolicy::new(p, shared.in_flight(&route.cluster))),
                        outliers: shared.outliers.get(&route.cluster).cloned(),
                        health: shared.health.get(&route.cluster).cloned(),
                        fault: route.fault.clone().or_else(|| l.fault.clone()),
                        bucket: shared
                            .route_buckets
                            .get(i)
                            .cloned()
                            .flatten()
                            .or_else(|| shared.bucket.clone()),
                        gate: shared.gates.get(&route.cluster).cloned(),
                        retries_in_flight: shared.in_flight(&route.cluster),
                        next: AtomicUsize::new(0),
                    })
                    .collect(),
            },
        }
    }

    /// `host`: the Host header or authority, with or without a port. `None` when no route matches.
    pub fn pick(&self, host: Option<&str>, path: &str) -> Option<Target<'_>> {
        if let Some(single) = &self.single {
            return Some(Target {
                cluster: &self.listener_name,
                address: &single.address,
                tls: &single.tls,
                protocol: None,
                rewrite: None,
                operation: None,
                retry: single.retry.as_ref(),
                fault: single.fault.as_ref(),
                bucket: single.bucket.as_deref(),
                gate: single.gate.as_deref(),
                retries_in_flight: &single.retries_in_flight,
                route: None,
                endpoint: 0,
            });
        }
        let host = host.map(strip_port).map(str::to_ascii_lowercase);
        let route = self.routes.iter().find(|r| {
            r.host.as_deref().is_none_or(|h| Some(h) == host.as_deref())
                && r.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
        })?;
        if route.endpoints.is_empty() {
            return None;
        }
        Some(route.next_target())
    }

    /// Where a retry of a request to `target` goes: the cluster's next endpoint round-robin
    /// (the same one for a single upstream).
    pub fn again<'a>(&'a self, target: &Target<'a>) -> Target<'a> {
        match target.route {
            Some(route) => route.next_target(),
            None => target.clone(),
        }
    }
}

impl Route {
    /// Whether endpoint `j` may take requests: not ejected, and healthy if health-checked.
    fn available(&self, j: usize) -> bool {
        self.outliers.as_ref().is_none_or(|o| o.available(j))
            && self.health.as_ref().is_none_or(|h| h.healthy(j))
    }

    /// The next endpoint round-robin, passing over those the outlier detector ejected and
    /// those not healthy (all of them, when none is left: panic routing, as Envoy's).
    fn next_target(&self) -> Target<'_> {
        let route = self;
        let n = route.endpoints.len();
        let mut i = route.next.fetch_add(1, Ordering::Relaxed) % n;
        if (route.outliers.is_some() || route.health.is_some()) && !route.available(i) {
            if let Some(up) = (1..n).map(|k| (i + k) % n).find(|&j| route.available(j)) {
                // Skipped over: the counter moves on past it.
                route.next.fetch_add((up + n - i) % n, Ordering::Relaxed);
                i = up;
            }
        }
        Target {
            cluster: &route.cluster,
            address: &route.endpoints[i],
            tls: &route.tls,
            protocol: route.protocol,
            rewrite: route
                .rewrite
                .as_ref()
                .map(|(from, to)| (from.as_str(), to.as_str())),
            operation: route.name.as_deref(),
            retry: route.retry.as_ref(),
            fault: route.fault.as_ref(),
            bucket: route.bucket.as_deref(),
            gate: route.gate.as_deref(),
            retries_in_flight: &route.retries_in_flight,
            route: Some(route),
            endpoint: i,
        }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn host_then_prefix_round_robin() {
        let c = Config::from_yaml(
            r#"
node_id: n
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes:
        - { host: svc-b, cluster: b }
        - { path_prefix: /api, cluster: c, name: api }
      clusters:
        b: [b1:1, b2:2]
        c: [c1:1]
"#,
        )
        .unwrap();
        let r = Router::new(
            &c.listeners[0],
            &TlsByCluster::default(),
            &Shared::default(),
        );
        assert_eq!(&**r.pick(Some("SVC-B:8080"), "/x").unwrap().address, "b1:1");
        assert_eq!(&**r.pick(Some("svc-b"), "/x").unwrap().address, "b2:2");
        assert_eq!(&**r.pick(Some("svc-b"), "/x").unwrap().address, "b1:1");
        let t = r.pick(Some("other"), "/api/v1").unwrap();
        assert_eq!(
            (&**t.cluster, &**t.address, t.operation),
            ("c", "c1:1", Some("api"))
        );
        assert!(r.pick(Some("other"), "/nope").is_none());
        assert!(r.pick(None, "/nope").is_none());
    }

    #[test]
    fn ejected_endpoints_are_passed_over_until_none_is_left() {
        let c = Config::from_yaml(
            r#"
node_id: n
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes: [{ path_prefix: /, cluster: c }]
      clusters:
        c: { endpoints: [a:1, b:2, c:3], outlier_detection: { consecutive_5xx: 1, max_ejection_percent: 100 } }
"#,
        )
        .unwrap();
        let Upstream::Routed(routed) = &c.listeners[0].upstream else {
            unreachable!()
        };
        let o = routed.clusters["c"].outlier_detection.unwrap();
        let shared = Shared {
            outliers: OutliersByCluster::from([("c".to_owned(), Arc::new(Outliers::new(&o, 3)))]),
            ..Shared::default()
        };
        let outliers = &shared.outliers;
        let r = Router::new(&c.listeners[0], &TlsByCluster::default(), &shared);
        let picks = || -> Vec<String> {
            (0..4)
                .map(|_| r.pick(None, "/").unwrap().address.to_string())
                .collect()
        };
        assert_eq!(picks(), ["a:1", "b:2", "c:3", "a:1"]);
        // b fails once: out; the others share its turns evenly.
        let b = r.pick(None, "/").unwrap();
        assert_eq!(&**b.address, "b:2");
        assert!(b.record(true).is_some());
        assert_eq!(picks(), ["c:3", "a:1", "c:3", "a:1"]);
        // All out: round-robin over all of them (panic routing), not over none.
        for _ in 0..3 {
            let t = r.pick(None, "/").unwrap();
            t.record(true);
        }
        assert_eq!(outliers["c"].ejected(), 3);
        let mut all = picks();
        all.truncate(3);
        all.sort();
        assert_eq!(all, ["a:1", "b:2", "c:3"]);
    }

    #[test]
    fn only_healthy_endpoints_take_requests_while_any_is() {
        let c = Config::from_yaml(
            r#"
node_id: n
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes: [{ path_prefix: /, cluster: c }]
      clusters:
        c: [a:1, b:2, c:3]
"#,
        )
        .unwrap();
        let health = Arc::new(ClusterHealth::new(3));
        let shared = Shared {
            health: BTreeMap::from([("c".to_owned(), health.clone())]),
            ..Shared::default()
        };
        let r = Router::new(&c.listeners[0], &TlsByCluster::default(), &shared);
        let picks = |n: usize| -> Vec<String> {
            let mut p: Vec<String> = (0..n)
                .map(|_| r.pick(None, "/").unwrap().address.to_string())
                .collect();
            p.sort();
            p.dedup();
            p
        };
        // Nothing checked yet: all of them (panic routing).
        assert_eq!(picks(3), ["a:1", "b:2", "c:3"]);
        health.set(0, crate::health_check::Health::Healthy);
        health.set(1, crate::health_check::Health::Unhealthy);
        assert_eq!(
            picks(6),
            ["a:1"],
            "the pending and the unhealthy are passed over"
        );
        health.set(2, crate::health_check::Health::Healthy);
        assert_eq!(picks(6), ["a:1", "c:3"]);
        for i in 0..3 {
            health.set(i, crate::health_check::Health::Unhealthy);
        }
        assert_eq!(picks(3), ["a:1", "b:2", "c:3"], "none healthy: all of them");
    }
}
