//! Picking the upstream of a request: the listener's one address, or (outbound, edge) the first
//! route matching the Host header, path and headers; a route that answers itself (`local_reply`),
//! or the cluster's endpoint its balancer picks (`balance`: round-robin by default, passing over
//! those its outlier detector ejected, see `outlier`, and those failing its active health
//! checks, see `health_check`); and
//! the TLS settings its connections are made with (the cluster's own, else the listener's),
//! and the retry policy (the route's own, else the listener's), whose retries go to the
//! cluster's next endpoint ([`Router::again`]); and the faults and the token bucket (the
//! route's own, else the listener's) the request meets first.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};

use crate::balance::{self, Balancer, HashPolicy};
use crate::circuit_breaker::Gate;
use crate::compress::Compressor;
use crate::config::{FaultConfig, ListenerConfig, Upstream, UpstreamProtocol};
use crate::cors::Cors;
use crate::header_ops::{HeaderOps, HeaderOpsConfig};
use crate::health_check::ClusterHealth;
use crate::local_reply::LocalReply;
use crate::mirror::Mirror;
use crate::outlier::Outliers;
use crate::rate_limit::TokenBucket;
use crate::retry::{RetriesInFlight, RetryPolicy};
use crate::route_match::{Header, PathRewrite};
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
    pub retries_in_flight: BTreeMap<String, Arc<RetriesInFlight>>,
    /// Requests in flight per endpoint, of the `LEAST_REQUEST` clusters.
    pub active: BTreeMap<String, Arc<[Arc<AtomicUsize>]>>,
}

impl Shared {
    fn in_flight(&self, cluster: &str) -> Arc<RetriesInFlight> {
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
    /// How the route changes the path (`prefix_rewrite`, `regex_rewrite`).
    pub rewrite: Option<&'a PathRewrite>,
    /// The route's operation name, if it has one.
    pub operation: Option<&'a str>,
    /// The route's retry policy, if it has one.
    pub retry: Option<&'a RetryPolicy>,
    /// The route's own time limit (`Some(0s)`: none), instead of the listener's.
    pub timeout: Option<std::time::Duration>,
    /// What the request meets before it goes upstream.
    pub guards: Guards<'a>,
    /// The cluster's retries in flight (for a policy a request asks for with its headers).
    pub retries_in_flight: &'a Arc<RetriesInFlight>,
    /// Header changes, the route's then the listener's.
    pub header_ops: &'a [HeaderOps],
    /// The Host the upstream is sent instead of the request's, with `host_rewrite_literal`.
    pub host_rewrite: Option<&'a HeaderValue>,
    /// The endpoint's count of requests in flight, when its balancer counts them.
    pub active: Option<&'a Arc<AtomicUsize>>,
    /// The cluster picked (`None`: the listener's single upstream), for [`Router::again`].
    to: Option<&'a Cluster>,
    /// The endpoint's place in its cluster.
    endpoint: usize,
    /// The request's hash, for a hashing balancer.
    hash: Option<u64>,
    /// The route's mirror policies.
    pub mirrors: &'a [Mirror],
    /// The route's (or listener's) CORS policy.
    pub cors: Option<&'a Cors>,
    /// The route's (or listener's) compressor.
    pub compressor: Option<&'a Compressor>,
}

/// What a request meets before it is sent upstream or answered: the faults to inject, the
/// token bucket it takes from, the cluster's circuit breaker (each if any).
#[derive(Clone, Copy, Default)]
pub struct Guards<'a> {
    pub fault: Option<&'a FaultConfig>,
    pub bucket: Option<&'a TokenBucket>,
    pub gate: Option<&'a Gate>,
}

/// What the request's route does with it.
pub enum Pick<'a> {
    /// Sends it upstream.
    Upstream(Target<'a>),
    /// Answers it itself: `direct_response` or `redirect`.
    Local(Local<'a>),
    /// Its cluster has no endpoint left to take it (every one out, panic routing off).
    Unavailable {
        cluster: &'a Arc<str>,
        operation: Option<&'a str>,
    },
}

/// A route that answers itself.
pub struct Local<'a> {
    pub reply: &'a LocalReply,
    /// The route's operation name, if it has one.
    pub operation: Option<&'a str>,
    /// Faults and the token bucket still apply (Envoy's filters run before its router).
    pub guards: Guards<'a>,
    /// The route's and listener's header changes (their response half applies).
    pub header_ops: &'a [HeaderOps],
    /// The route's (or listener's) CORS policy.
    pub cors: Option<&'a Cors>,
    /// The route's (or listener's) compressor.
    pub compressor: Option<&'a Compressor>,
}

impl<'a> Pick<'a> {
    /// The CORS policy that applies, if any.
    pub fn cors(&self) -> Option<&'a Cors> {
        match self {
            Pick::Upstream(t) => t.cors,
            Pick::Local(l) => l.cors,
            Pick::Unavailable { .. } => None,
        }
    }

    /// The compressor that applies, if any.
    pub fn compressor(&self) -> Option<&'a Compressor> {
        match self {
            Pick::Upstream(t) => t.compressor,
            Pick::Local(l) => l.compressor,
            Pick::Unavailable { .. } => None,
        }
    }

    /// The route's operation name, if it has one.
    pub fn operation(&self) -> Option<&str> {
        match self {
            Pick::Upstream(t) => t.operation,
            Pick::Local(l) => l.operation,
            Pick::Unavailable { operation, .. } => *operation,
        }
    }
}

impl Target<'_> {
    /// Tells the cluster's outlier detector (if it has one) how the attempt went: `failed` for
    /// a 5xx answer or none. Returns the ejection it caused, if any.
    pub fn record(&self, failed: bool) -> Option<std::time::Duration> {
        let outliers = self.to?.outliers.as_ref()?;
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
    /// The clusters the routes send to (a cluster routed to twice is here once: one
    /// round-robin).
    clusters: Vec<Cluster>,
}

/// An edge or inbound listener's one upstream.
struct Single {
    address: Arc<str>,
    tls: UpstreamTls,
    retry: Option<RetryPolicy>,
    fault: Option<FaultConfig>,
    bucket: Option<Arc<TokenBucket>>,
    gate: Option<Arc<Gate>>,
    retries_in_flight: Arc<RetriesInFlight>,
    header_ops: Vec<HeaderOps>,
    cors: Option<Cors>,
    compressor: Option<Compressor>,
}

/// A cluster as the routes reach it: its endpoints and what is kept about them.
struct Cluster {
    name: Arc<str>,
    endpoints: Vec<Arc<str>>,
    tls: UpstreamTls,
    protocol: Option<UpstreamProtocol>,
    outliers: Option<Arc<Outliers>>,
    health: Option<Arc<ClusterHealth>>,
    gate: Option<Arc<Gate>>,
    retries_in_flight: Arc<RetriesInFlight>,
    balancer: Balancer,
}

struct Route {
    host: Option<String>,
    path: PathMatch,
    headers: Vec<Header>,
    name: Option<String>,
    timeout: Option<std::time::Duration>,
    rewrite: Option<PathRewrite>,
    fault: Option<FaultConfig>,
    bucket: Option<Arc<TokenBucket>>,
    header_ops: Vec<HeaderOps>,
    host_rewrite: Option<HeaderValue>,
    /// What it answers with itself (then `to` is empty).
    reply: Option<LocalReply>,
    /// Its CORS policy (else the listener's).
    cors: Option<Cors>,
    /// Its compressor (else the listener's).
    compressor: Option<Compressor>,
    /// What a `RING_HASH` cluster hashes its requests by.
    hash: Vec<HashPolicy>,
    /// Where copies of its requests go.
    mirrors: Vec<Mirror>,
    /// Where it sends: (the running total of the weights up to this one, the cluster's place in
    /// [`Router::clusters`], the retry policy with that cluster's count of retries in flight).
    to: Vec<(u32, usize, Option<RetryPolicy>)>,
}

enum PathMatch {
    Any,
    Prefix(String),
    Exact(String),
    Regex(regex::Regex),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

impl Router {
    /// The listener's router (its configuration already checked: a mistake left here makes a
    /// route that matches nothing).
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
                    header_ops: ops(&[l.header_ops()]),
                    cors: l.cors.as_ref().and_then(|c| c.compile().ok()),
                    compressor: l.compressor.as_ref().and_then(|c| c.compile().ok()),
                }),
                routes: Vec::new(),
                clusters: Vec::new(),
            },
            Upstream::Routed(r) => {
                let mut clusters: Vec<Cluster> = Vec::new();
                let mut place = |name: &str| -> usize {
                    if let Some(i) = clusters.iter().position(|c| &*c.name == name) {
                        return i;
                    }
                    let config = r.clusters.get(name);
                    let endpoints: Vec<Arc<str>> = config
                        .map(|c| c.endpoints.iter().map(|a| a.as_str().into()).collect())
                        .unwrap_or_default();
                    let balancer = Balancer::new(
                        &config.map(|c| c.balance).unwrap_or_default(),
                        &endpoints,
                        config.map_or(&[][..], |c| &c.weights),
                        shared.active.get(name).cloned(),
                    );
                    clusters.push(Cluster {
                        name: name.into(),
                        endpoints,
                        tls: tls.of(name),
                        protocol: config.and_then(|c| c.upstream_protocol),
                        outliers: shared.outliers.get(name).cloned(),
                        health: shared.health.get(name).cloned(),
                        gate: shared.gates.get(name).cloned(),
                        retries_in_flight: shared.in_flight(name),
                        balancer,
                    });
                    clusters.len() - 1
                };
                let routes = r
                    .routes
                    .iter()
                    .enumerate()
                    .map(|(i, route)| {
                        let policy = route.retry_policy.as_ref().or(l.retry_policy.as_ref());
                        let mut total = 0u32;
                        let to = route
                            .clusters()
                            .into_iter()
                            .filter(|(_, weight)| *weight > 0)
                            .map(|(name, weight)| {
                                total = total.saturating_add(weight);
                                let retry =
                                    policy.map(|p| RetryPolicy::new(p, shared.in_flight(name)));
                                (total, place(name), retry)
                            })
                            .collect();
                        let path = match (&route.path_prefix, &route.path, &route.path_regex) {
                            (Some(p), _, _) => PathMatch::Prefix(p.clone()),
                            (None, Some(p), _) => PathMatch::Exact(p.clone()),
                            (None, None, Some(r)) => crate::route_match::whole(r)
                                .map_or(PathMatch::Exact(String::new()), PathMatch::Regex),
                            (None, None, None) => PathMatch::Any,
                        };
                        let headers = route
                            .headers
                            .iter()
                            .filter_map(|h| h.compile().ok())
                            .collect();
                        let mirrors = route
                            .request_mirror_policies
                            .iter()
                            .map(|m| Mirror::new(m, place(&m.cluster)))
                            .collect();
                        Route {
                            host: route.host.as_ref().map(|h| h.to_ascii_lowercase()),
                            path,
                            headers,
                            name: route.name.clone(),
                            timeout: route.timeout,
                            reply: route.local_reply().ok().flatten(),
                            cors: route
                                .cors
                                .as_ref()
                                .or(l.cors.as_ref())
                                .and_then(|c| c.compile().ok()),
                            compressor: route
                                .compressor
                                .as_ref()
                                .or(l.compressor.as_ref())
                                .and_then(|c| c.compile().ok()),
                            mirrors,
                            hash: route
                                .hash_policy
                                .iter()
                                .filter_map(|h| h.compile().ok())
                                .collect(),
                            rewrite: match (
                                &route.regex_rewrite,
                                &route.path_prefix,
                                &route.prefix_rewrite,
                            ) {
                                (Some(r), _, _) => r.compile().ok(),
                                (None, Some(from), Some(to)) => {
                                    Some(PathRewrite::Prefix(from.clone(), to.clone()))
                                }
                                _ => None,
                            },
                            fault: route.fault.clone().or_else(|| l.fault.clone()),
                            header_ops: ops(&[route.header_ops(), l.header_ops()]),
                            host_rewrite: route
                                .host_rewrite_literal
                                .as_deref()
                                .and_then(|h| HeaderValue::from_str(h).ok()),
                            bucket: shared
                                .route_buckets
                                .get(i)
                                .cloned()
                                .flatten()
                                .or_else(|| shared.bucket.clone()),
                            to,
                        }
                    })
                    .collect();
                Router {
                    listener_name: l.name.as_str().into(),
                    single: None,
                    routes,
                    clusters,
                }
            }
        }
    }

    /// The first route matching the request (`host`: its Host header or authority, with or
    /// without a port), and one of its clusters' endpoints. `None` when no route matches.
    pub fn pick(&self, r: &Request<'_>) -> Option<Pick<'_>> {
        let (host, path, headers) = (r.host, r.path, r.headers);
        if let Some(single) = &self.single {
            return Some(Pick::Upstream(Target {
                cluster: &self.listener_name,
                address: &single.address,
                tls: &single.tls,
                protocol: None,
                rewrite: None,
                operation: None,
                retry: single.retry.as_ref(),
                timeout: None,
                guards: Guards {
                    fault: single.fault.as_ref(),
                    bucket: single.bucket.as_deref(),
                    gate: single.gate.as_deref(),
                },
                retries_in_flight: &single.retries_in_flight,
                header_ops: &single.header_ops,
                host_rewrite: None,
                active: None,
                to: None,
                endpoint: 0,
                hash: None,
                mirrors: &[],
                cors: single.cors.as_ref(),
                compressor: single.compressor.as_ref(),
            }));
        }
        let host = host.map(strip_port).map(str::to_ascii_lowercase);
        let route = self.routes.iter().find(|r| {
            r.host.as_deref().is_none_or(|h| Some(h) == host.as_deref())
                && r.path.matches(path)
                && r.headers.iter().all(|h| h.matches(headers))
        })?;
        if let Some(reply) = &route.reply {
            return Some(Pick::Local(Local {
                reply,
                operation: route.name.as_deref(),
                guards: Guards {
                    fault: route.fault.as_ref(),
                    bucket: route.bucket.as_deref(),
                    gate: None,
                },
                header_ops: &route.header_ops,
                cors: route.cors.as_ref(),
                compressor: route.compressor.as_ref(),
            }));
        }
        let (_, cluster, retry) = match route.to.as_slice() {
            [] => return None,
            [one] => one,
            all => {
                let total = all.last().map_or(1, |(t, _, _)| *t);
                let draw = fastrand::u32(0..total);
                all.iter().find(|(upto, _, _)| draw < *upto)?
            }
        };
        let cluster = &self.clusters[*cluster];
        let hash = if cluster.balancer.hashes() {
            let facts = balance::Hashed {
                headers,
                query: r.query,
                peer: r.peer,
            };
            balance::hash(&route.hash, &facts)
        } else {
            None
        };
        let Some(endpoint) = cluster.pick(hash, None) else {
            return Some(Pick::Unavailable {
                cluster: &cluster.name,
                operation: route.name.as_deref(),
            });
        };
        Some(Pick::Upstream(Target {
            cluster: &cluster.name,
            address: &cluster.endpoints[endpoint],
            tls: &cluster.tls,
            protocol: cluster.protocol,
            rewrite: route.rewrite.as_ref(),
            operation: route.name.as_deref(),
            retry: retry.as_ref(),
            timeout: route.timeout,
            guards: Guards {
                fault: route.fault.as_ref(),
                bucket: route.bucket.as_deref(),
                gate: cluster.gate.as_deref(),
            },
            retries_in_flight: &cluster.retries_in_flight,
            header_ops: &route.header_ops,
            host_rewrite: route.host_rewrite.as_ref(),
            active: cluster.balancer.active(endpoint),
            to: Some(cluster),
            endpoint,
            hash,
            mirrors: &route.mirrors,
            cors: route.cors.as_ref(),
            compressor: route.compressor.as_ref(),
        }))
    }

    /// Where the copy of a request to `target` goes under mirror policy `m`: an endpoint of
    /// the mirror's cluster, with the route's rewrites and header changes. `None`: none is
    /// left.
    pub fn mirror<'a>(&'a self, target: &Target<'a>, m: &Mirror) -> Option<Target<'a>> {
        let cluster = self.clusters.get(m.cluster)?;
        let endpoint = cluster.pick(None, None)?;
        let mut copy = target.clone();
        copy.cluster = &cluster.name;
        copy.address = &cluster.endpoints[endpoint];
        copy.tls = &cluster.tls;
        copy.protocol = cluster.protocol;
        copy.active = None;
        copy.to = Some(cluster);
        copy.endpoint = endpoint;
        copy.mirrors = &[];
        Some(copy)
    }

    /// [`Router::pick`] when it sends upstream.
    #[cfg(test)]
    fn pick_upstream(
        &self,
        host: Option<&str>,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<Target<'_>> {
        let r = Request {
            host,
            path,
            query: None,
            headers,
            peer: std::net::Ipv4Addr::LOCALHOST.into(),
        };
        match self.pick(&r)? {
            Pick::Upstream(t) => Some(t),
            Pick::Local(_) | Pick::Unavailable { .. } => None,
        }
    }

    /// Where a retry of a request to `target` goes: another endpoint of the same cluster as
    /// its balancer picks (round-robin's next; for a hash, the next one along the ring), the
    /// same one when there is no other (and for a single upstream).
    pub fn again<'a>(&'a self, target: &Target<'a>) -> Target<'a> {
        let mut next = target.clone();
        if let Some(cluster) = target.to {
            if let Some(endpoint) = cluster.pick(target.hash, Some(target.endpoint)) {
                next.address = &cluster.endpoints[endpoint];
                next.endpoint = endpoint;
                next.active = cluster.balancer.active(endpoint);
            }
        }
        next
    }
}

/// What of a request its route and endpoint are picked by.
pub struct Request<'a> {
    /// Its Host header or authority, with or without a port.
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The caller's address (a `hash_policy` may hash it).
    pub peer: std::net::IpAddr,
}

impl Cluster {
    /// Whether endpoint `j` may take requests: not ejected, and healthy if health-checked.
    fn available(&self, j: usize) -> bool {
        self.outliers.as_ref().is_none_or(|o| o.available(j))
            && self.health.as_ref().is_none_or(|h| h.healthy(j))
    }

    /// The endpoint for a request (`hash`: its hash, for a hashing balancer; `not`: the one a
    /// retry leaves), passing over those the outlier detector ejected and those not healthy
    /// unless too few are left (see `balance`). `None`: none is left.
    fn pick(&self, hash: Option<u64>, not: Option<usize>) -> Option<usize> {
        let checked = self.outliers.is_some() || self.health.is_some();
        let available = |j: usize| self.available(j);
        let available: Option<&dyn Fn(usize) -> bool> = checked.then_some(&available);
        self.balancer
            .pick(self.endpoints.len(), hash, available, not)
    }
}

/// The levels of header changes that change something (checked at load: a mistake left here
/// changes nothing).
fn ops(levels: &[HeaderOpsConfig]) -> Vec<HeaderOps> {
    levels
        .iter()
        .filter(|c| !c.is_empty())
        .filter_map(|c| c.compile().ok())
        .collect()
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
        assert_eq!(
            &**r.pick_upstream(Some("SVC-B:8080"), "/x", &HeaderMap::new())
                .unwrap()
                .address,
            "b1:1"
        );
        assert_eq!(
            &**r.pick_upstream(Some("svc-b"), "/x", &HeaderMap::new())
                .unwrap()
                .address,
            "b2:2"
        );
        assert_eq!(
            &**r.pick_upstream(Some("svc-b"), "/x", &HeaderMap::new())
                .unwrap()
                .address,
            "b1:1"
        );
        let t = r
            .pick_upstream(Some("other"), "/api/v1", &HeaderMap::new())
            .unwrap();
        assert_eq!(
            (&**t.cluster, &**t.address, t.operation),
            ("c", "c1:1", Some("api"))
        );
        assert!(r
            .pick_upstream(Some("other"), "/nope", &HeaderMap::new())
            .is_none());
        assert!(r.pick_upstream(None, "/nope", &HeaderMap::new()).is_none());
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
                .map(|_| {
                    r.pick_upstream(None, "/", &HeaderMap::new())
                        .unwrap()
                        .address
                        .to_string()
                })
                .collect()
        };
        assert_eq!(picks(), ["a:1", "b:2", "c:3", "a:1"]);
        // b fails once: out; the others share its turns evenly.
        let b = r.pick_upstream(None, "/", &HeaderMap::new()).unwrap();
        assert_eq!(&**b.address, "b:2");
        assert!(b.record(true).is_some());
        assert_eq!(picks(), ["c:3", "a:1", "c:3", "a:1"]);
        // All out: round-robin over all of them (panic routing), not over none.
        for _ in 0..3 {
            let t = r.pick_upstream(None, "/", &HeaderMap::new()).unwrap();
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
                .map(|_| {
                    r.pick_upstream(None, "/", &HeaderMap::new())
                        .unwrap()
                        .address
                        .to_string()
                })
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
            picks(9),
            ["a:1", "b:2", "c:3"],
            "one of three left is under Envoy's 50% panic threshold: all of them"
        );
        health.set(2, crate::health_check::Health::Healthy);
        assert_eq!(picks(6), ["a:1", "c:3"], "the unhealthy one is passed over");
        for i in 0..3 {
            health.set(i, crate::health_check::Health::Unhealthy);
        }
        assert_eq!(picks(3), ["a:1", "b:2", "c:3"], "none healthy: all of them");
    }

    #[test]
    fn exact_and_regex_paths_headers_and_weighted_clusters_choose_where_requests_go() {
        let c = Config::from_yaml(
            r#"
node_id: n
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes:
        - { path: /exact, cluster: a }
        - { path_regex: '/v[0-9]+/items', cluster: b }
        - { path_prefix: /, headers: [{ name: x-canary, exact_match: 'true' }], cluster: b }
        - path_prefix: /
          weighted_clusters: { clusters: [{ name: a, weight: 90 }, { name: b, weight: 10 }] }
      clusters:
        a: [a:1]
        b: [b:1]
"#,
        )
        .unwrap();
        let r = Router::new(
            &c.listeners[0],
            &TlsByCluster::default(),
            &Shared::default(),
        );
        let none = HeaderMap::new();
        let to =
            |path: &str, h: &HeaderMap| r.pick_upstream(None, path, h).unwrap().cluster.to_string();
        assert_eq!(to("/exact", &none), "a");
        assert_eq!(to("/v2/items", &none), "b");
        let mut canary = HeaderMap::new();
        canary.insert("x-canary", http::HeaderValue::from_static("true"));
        for _ in 0..20 {
            assert_eq!(to("/anything", &canary), "b");
        }
        // The split: about 10% to b (bounds far outside a fair draw's spread).
        fastrand::seed(7);
        let to_b = (0..10_000)
            .filter(|_| to("/exact/more", &none) == "b")
            .count();
        assert!((700..=1300).contains(&to_b), "{to_b} of 10,000 to b");
        // A regex matches the whole path, not a part of it.
        let only = Config::from_yaml(
            r#"
node_id: n
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes: [{ path_regex: '/v[0-9]+/items', cluster: b }]
      clusters: { b: [b:1] }
"#,
        )
        .unwrap();
        let r = Router::new(
            &only.listeners[0],
            &TlsByCluster::default(),
            &Shared::default(),
        );
        assert!(r.pick_upstream(None, "/v2/items", &none).is_some());
        assert!(r.pick_upstream(None, "/v2/items/x", &none).is_none());
        assert!(r.pick_upstream(None, "/api/v2/items", &none).is_none());
    }
}
