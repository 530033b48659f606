//! Picking the upstream of a request: the listener's one address, or (outbound) the first route
//! matching the Host header or path prefix, then the cluster's next endpoint round-robin; and
//! the TLS settings its connections are made with (the cluster's own, else the listener's).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::{ListenerConfig, Upstream, UpstreamProtocol};
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
    fn of(&self, cluster: &str) -> UpstreamTls {
        match self.clusters.get(cluster) {
            Some(own) => own.clone(),
            None => self.listener.clone(),
        }
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
}

pub struct Router {
    listener_name: Arc<str>,
    single: Option<(Arc<str>, UpstreamTls)>,
    routes: Vec<Route>,
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
    next: AtomicUsize,
}

impl Router {
    pub fn new(l: &ListenerConfig, tls: &TlsByCluster) -> Self {
        match &l.upstream {
            Upstream::Single(addr) => Router {
                listener_name: l.name.as_str().into(),
                single: Some((addr.as_str().into(), tls.listener.clone())),
                routes: Vec::new(),
            },
            Upstream::Routed(r) => Router {
                listener_name: l.name.as_str().into(),
                single: None,
                routes: r
                    .routes
                    .iter()
                    .map(|route| Route {
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
                        next: AtomicUsize::new(0),
                    })
                    .collect(),
            },
        }
    }

    /// `host`: the Host header or authority, with or without a port. `None` when no route matches.
    pub fn pick(&self, host: Option<&str>, path: &str) -> Option<Target<'_>> {
        if let Some((addr, tls)) = &self.single {
            return Some(Target {
                cluster: &self.listener_name,
                address: addr,
                tls,
                protocol: None,
                rewrite: None,
                operation: None,
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
        let i = route.next.fetch_add(1, Ordering::Relaxed) % route.endpoints.len();
        Some(Target {
            cluster: &route.cluster,
            address: &route.endpoints[i],
            tls: &route.tls,
            protocol: route.protocol,
            rewrite: route
                .rewrite
                .as_ref()
                .map(|(from, to)| (from.as_str(), to.as_str())),
            operation: route.name.as_deref(),
        })
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
        let r = Router::new(&c.listeners[0], &TlsByCluster::default());
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
}
