//! What the demo mesh is made of and how it is wired: the services, the sidecars in front of and
//! behind them, and the configs handed to `meshtrace collector` and `meshtrace proxy`.
//!
//! The configs are ordinary files a user could run by hand (they are written to the demo's
//! `config/` directory), so the demo doubles as a worked example of both formats.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

/// The edge proxy's service name, the root of every trace.
pub const EDGE: &str = "edge";
/// The path the traffic generator asks the edge for.
pub const ENTRY_PATH: &str = "/checkout";
/// The `hash_seed` of the collector's probabilistic sampler.
pub const HASH_SEED: u32 = 22;
/// The value the collector's `attributes` processor puts in `datacenter` on every span.
pub const DATACENTER: &str = "local-dc1";
/// The zone the proxies report.
pub const ZONE: &str = "local-1a";

/// One app of the chain.
#[derive(Clone, Copy, Debug)]
pub struct Service {
    pub name: &'static str,
    /// The path it is called on.
    pub path: &'static str,
    /// Its own work, an INTERNAL span.
    pub work: &'static str,
    /// Share of requests it fails, in percent.
    pub fail_percent: f64,
    /// Share of requests it is slow on, in percent.
    pub slow_percent: f64,
}

/// The chain `service-a → service-b → service-c`, in call order. The last one fails and is
/// slow on a share of requests, so errors and latency travel up the chain.
pub const SERVICES: [Service; 3] = [
    Service {
        name: "service-a",
        path: ENTRY_PATH,
        work: "validate order",
        fail_percent: 0.0,
        slow_percent: 0.0,
    },
    Service {
        name: "service-b",
        path: "/price",
        work: "compute price",
        fail_percent: 0.0,
        slow_percent: 2.0,
    },
    Service {
        name: "service-c",
        path: "/stock",
        work: "load stock level",
        fail_percent: 5.0,
        slow_percent: 10.0,
    },
];

/// Spans in one whole trace: the edge's, then per service the inbound sidecar's SERVER span,
/// the app's SERVER and INTERNAL spans, and for every service but the last the app's CLIENT
/// span and the outbound sidecar's CLIENT span.
pub const SPANS_PER_TRACE: usize = 1 + 3 * SERVICES.len() + 2 * (SERVICES.len() - 1);

/// The collector: OTLP (gRPC and HTTP) and Zipkin in on free loopback ports, consistent
/// hash-seed sampling at `sampling_percent`, `datacenter` added to every span, batches to the
/// backend through a persistent queue in `queue_dir`, retried while the backend is away.
pub fn collector_yaml(
    sampling_percent: f64,
    backend_otlp_grpc: SocketAddr,
    queue_dir: &Path,
) -> String {
    format!(
        r#"# The demo's collector, as in the seed: receives 100% from apps (OTLP) and sidecars
# (Zipkin), keeps a consistent {sampling_percent}% by trace id, tags the datacenter, and
# queues on disk while the backend is away. Run it alone: meshtrace collector --config FILE
extensions:
  file_storage/queue:
    directory: {queue}
    create_directory: true
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
      http:
        endpoint: 127.0.0.1:0
  zipkin:
    endpoint: 127.0.0.1:0
processors:
  probabilistic_sampler:
    mode: hash_seed
    hash_seed: {HASH_SEED}
    sampling_percentage: {sampling_percent}
  attributes/datacenter:
    actions:
      - key: datacenter
        value: {DATACENTER}
        action: upsert
  batch:
    timeout: 200ms
exporters:
  otlp/backend:
    endpoint: {backend_otlp_grpc}
    tls:
      insecure: true
    sending_queue:
      storage: file_storage/queue
    retry_on_failure:
      initial_interval: 500ms
      max_interval: 5s
      max_elapsed_time: 0
service:
  extensions: [file_storage/queue]
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp, zipkin]
      processors: [probabilistic_sampler, attributes/datacenter, batch]
      exporters: [otlp/backend]
"#,
        queue = yaml_string(&queue_dir.display().to_string()),
    )
}

/// Where a proxy listener sends requests.
#[derive(Clone, Debug)]
pub enum Upstream {
    /// Edge and inbound: one address.
    One(SocketAddr),
    /// Outbound: requests for `Host: {host}` go to `addr`.
    Route { host: String, addr: SocketAddr },
}

/// A `meshtrace proxy` with one listener (`name` is also its listener's name and mode).
#[derive(Clone, Debug)]
pub struct Proxy {
    pub node_id: String,
    pub service_name: String,
    pub mode: &'static str,
    pub upstream: Upstream,
}

impl Proxy {
    /// The edge gateway in front of `service-a`'s inbound sidecar.
    pub fn edge(upstream: SocketAddr) -> Self {
        Proxy {
            node_id: "edge-gateway".into(),
            service_name: EDGE.into(),
            mode: "edge",
            upstream: Upstream::One(upstream),
        }
    }

    /// The sidecar in front of `service`'s app.
    pub fn inbound(service: &str, app: SocketAddr) -> Self {
        Proxy {
            node_id: format!("{service}-inbound"),
            service_name: service.into(),
            mode: "inbound",
            upstream: Upstream::One(app),
        }
    }

    /// The sidecar `service`'s app calls `next` through.
    pub fn outbound(service: &str, next: &str, next_inbound: SocketAddr) -> Self {
        Proxy {
            node_id: format!("{service}-outbound"),
            service_name: service.into(),
            mode: "outbound",
            upstream: Upstream::Route {
                host: next.into(),
                addr: next_inbound,
            },
        }
    }

    /// The YAML for `meshtrace proxy --config`, reporting Zipkin v2 JSON to `zipkin`
    /// (the collector's Zipkin receiver), B3 multi-header to the next hop, as Envoy does.
    pub fn yaml(&self, zipkin: SocketAddr) -> String {
        let mut y = format!(
            "# {node}: {mode} proxy of {service}. Run it alone: meshtrace proxy --config FILE\n\
             node_id: {node}\nservice_name: {service}\nzone: {ZONE}\nlisteners:\n  - name: {mode}\n    mode: {mode}\n    listen: 127.0.0.1:0\n",
            node = self.node_id,
            service = self.service_name,
            mode = self.mode,
        );
        match &self.upstream {
            Upstream::One(addr) => {
                let _ = writeln!(y, "    upstream: {addr}");
            }
            Upstream::Route { host, addr } => {
                let _ = write!(
                    y,
                    "    upstream:\n      routes:\n        - {{ host: {host}, cluster: {host} }}\n      clusters:\n        {host}: [\"{addr}\"]\n"
                );
            }
        }
        let _ = write!(
            y,
            "    timeouts: {{ connect: 1s, request: 15s }}\n\
             tracing:\n  collector: http://{zipkin}/api/v2/spans\n  protocol: zipkin-json\n  propagation: [b3multi]\n  trace_id_128bit: true\n  flush: {{ count: 100, interval: 200ms }}\n  buffer_size: 10000\n"
        );
        y
    }
}

/// A YAML double-quoted string.
fn yaml_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn every_proxy_config_is_valid_for_meshtrace_proxy() {
        let zipkin = addr(9411);
        let proxies = [
            Proxy::edge(addr(1)),
            Proxy::inbound("service-a", addr(2)),
            Proxy::outbound("service-a", "service-b", addr(3)),
        ];
        for p in proxies {
            let c = proxy::Config::from_yaml(&p.yaml(zipkin))
                .unwrap_or_else(|e| panic!("{e}\n{}", p.yaml(zipkin)));
            assert_eq!(c.service_name(), p.service_name);
            assert_eq!(c.node_id, p.node_id);
            assert_eq!(c.listeners.len(), 1);
            assert_eq!(c.listeners[0].name, p.mode);
            assert_eq!(c.zone, ZONE);
        }
        let out = Proxy::outbound("service-a", "service-b", addr(3)).yaml(zipkin);
        match &proxy::Config::from_yaml(&out).unwrap().listeners[0].upstream {
            proxy::config::Upstream::Routed(r) => {
                assert_eq!(r.routes[0].host.as_deref(), Some("service-b"));
                assert_eq!(
                    r.clusters["service-b"].endpoints,
                    vec!["127.0.0.1:3".to_owned()]
                );
            }
            other => panic!("outbound must route by host: {other:?}"),
        }
    }

    #[test]
    fn the_collector_config_is_valid_and_samples_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("a dir with spaces: and \"quotes\"");
        let text = collector_yaml(12.5, addr(4317), &queue);
        let path = dir.path().join("collector.yaml");
        std::fs::write(&path, &text).unwrap();
        let config = collector::config::Config::load(&path).unwrap_or_else(|e| {
            panic!("{}\n{text}", e.render(None));
        });
        let explained = collector::config::explain(&config);
        for part in [
            "probabilistic_sampler",
            "attributes/datacenter",
            "otlp/backend",
            "zipkin",
        ] {
            assert!(explained.contains(part), "{part} in {explained}");
        }
        assert!(text.contains("sampling_percentage: 12.5"), "{text}");
    }

    #[test]
    fn a_whole_trace_has_fourteen_spans() {
        assert_eq!(SPANS_PER_TRACE, 14);
    }
}
