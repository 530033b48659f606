//! The tracing HTTP proxy: edge, inbound and outbound sidecar that starts, propagates and reports
//! traces, as Envoy does for a mesh.
//!
//! It owns the request path (accept, route, forward with streaming bodies and pooled upstream
//! connections), the per-request span (ids, sampling, Envoy's tags) and the reporter that ships
//! spans to a collector from a bounded buffer. Header formats live in `wire::propagation`; span
//! encodings in `wire::zipkin` and `wire::otlp`.
//!
//! What it must not do: block or slow a request for the sake of tracing, buffer whole bodies, or
//! fail a request because of a malformed tracing header.

mod access_log;
pub mod admin;
pub mod balance;
mod circuit_breaker;
pub mod compress;
pub mod config;
pub mod cors;
mod deadline;
mod envoy_headers;
mod fault;
mod forward;
mod header_ops;
mod health_check;
mod listener;
mod local_reply;
pub mod memory;
pub mod mirror;
mod outlier;
mod rate_limit;
pub mod report;
mod report_conn;
mod retry;
mod route;
mod route_match;
pub mod sampling;
mod span;
pub mod stats;
mod tls;
mod tunnel;
mod upstream;
mod zipkin_json;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub use config::{Config, ConfigError};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} for listener {name:?}: {source}")]
    Bind {
        name: String,
        addr: String,
        source: std::io::Error,
    },
    #[error("listener {name:?}: {reason}")]
    Tls { name: String, reason: String },
    #[error("cannot set up the reporter: {0}")]
    Report(#[from] report::ReportError),
    #[error("listener {name:?}: cannot open the access log {path}: {source}")]
    AccessLog {
        name: String,
        path: String,
        source: std::io::Error,
    },
    #[error("listener {name:?}: access_log: {reason}")]
    AccessLogFormat { name: String, reason: String },
}

/// A started proxy: its bound addresses (port 0 resolved) and a handle to stop it.
pub struct Running {
    /// `(listener name, bound address)`, in configuration order.
    pub listeners: Vec<(String, SocketAddr)>,
    pub admin: Option<SocketAddr>,
    /// The accept loops (stopped first: the listening sockets close).
    accepting: Vec<tokio::task::JoinHandle<()>>,
    /// The admin port (stopped last: it answers through the drain).
    admin_task: Option<tokio::task::JoinHandle<()>>,
    /// The tasks reloading certificates that changed on disk.
    reloading: Vec<tokio::task::JoinHandle<()>>,
    /// The clusters' active health checks.
    checking: Vec<tokio::task::JoinHandle<()>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// The access log writers (joined after the workers, which flush into them).
    access_logs: access_log::Writers,
    stats: Arc<stats::Stats>,
    stop: tokio::sync::watch::Sender<bool>,
    reporter: report::ReporterHandle,
}

impl Running {
    /// Stops accepting (the listening sockets close), lets the requests in flight and open
    /// tunnels finish for up to `drain_timeout`, then flushes what the reporter holds (bounded by
    /// its timeout), the drained requests' spans included.
    pub async fn shutdown(self) {
        self.stats.draining.store(true, Ordering::Relaxed);
        for t in self
            .accepting
            .iter()
            .chain(&self.reloading)
            .chain(&self.checking)
        {
            t.abort();
        }
        self.stop.send_replace(true);
        let (workers, access_logs) = (self.workers, self.access_logs);
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
            access_logs.join();
        })
        .await;
        self.reporter.close().await;
        if let Some(admin) = self.admin_task {
            admin.abort();
        }
    }
}

/// A listener's TLS settings from `build`, kept in step with `files` by a task pushed on
/// `reloading`; `key` (`tls`, `upstream_tls`) names them in errors and logs.
fn watch<T: Send + Sync + 'static>(
    listener: &str,
    key: &str,
    files: Vec<String>,
    reloading: &mut Vec<tokio::task::JoinHandle<()>>,
    build: impl Fn() -> Result<T, String> + Send + 'static,
) -> Result<Arc<tls::Watched<T>>, StartError> {
    let what = format!("listener {listener:?} {key}");
    let (settings, reload) =
        tls::watched(what, files, build).map_err(|reason| StartError::Tls {
            name: listener.to_owned(),
            reason,
        })?;
    reloading.push(tokio::spawn(reload));
    Ok(settings)
}

/// Binds every listener and the admin port, starts the reporter, and serves in the background.
///
/// Requests are served thread-per-core, as nginx's workers do: one single-threaded runtime per
/// core, each with its own upstream connection pools, so a request and its upstream call stay on
/// one thread with no cross-thread wake-ups. Each listener's accept loop runs on the caller's
/// runtime and deals the accepted connections out to the workers in turn (a socket shared by
/// every worker would let whichever wakes first take them all, leaving the other cores idle);
/// that is one hand-off per connection, not per request. The accept loops, the reporter and the
/// admin port run on the caller's runtime.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let stats = Arc::new(stats::Stats::default());
    let mut reloading = Vec::new();
    let (reporter, sink) = report::start(&config, stats.clone(), &mut reloading)?;
    let tracer = Arc::new(span::Tracer::new(&config, sink, stats.clone()));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let drain = config.drain_timeout;
    let mut listeners = Vec::new();
    let mut accepting = Vec::new();
    let mut checking = Vec::new();
    let mut threads = Vec::new();
    let mut access_logs = access_log::Writers::new(stats.clone());
    for l in &config.listeners {
        let bind_error = |source| StartError::Bind {
            name: l.name.clone(),
            addr: l.listen.clone(),
            source,
        };
        let tls = match &l.tls {
            Some(cfg) => {
                let cfg = cfg.clone();
                let files = tls::listener_files(&cfg);
                Some(watch(&l.name, "tls", files, &mut reloading, move || {
                    tls::acceptor(&cfg)
                })?)
            }
            None => None,
        };
        let originate = |key: String, cfg: &config::UpstreamTls, reloading: &mut Vec<_>| {
            let cfg = cfg.clone();
            let files = tls::upstream_files(&cfg);
            let block = key.clone();
            watch(&l.name, &key, files, reloading, move || {
                tls::originate(&cfg, &block)
            })
        };
        let mut upstream_tls = route::TlsByCluster::default();
        if let Some(cfg) = &l.upstream_tls {
            upstream_tls.listener = Some(originate("upstream_tls".into(), cfg, &mut reloading)?);
        }
        if let config::Upstream::Routed(routed) = &l.upstream {
            for (name, cluster) in &routed.clusters {
                let own = match &cluster.tls {
                    config::ClusterTls::Listener => continue,
                    config::ClusterTls::Off => None,
                    config::ClusterTls::On(cfg) => Some(originate(
                        format!("clusters.{name}.tls"),
                        cfg,
                        &mut reloading,
                    )?),
                };
                upstream_tls.clusters.insert(name.clone(), own);
            }
        }
        let mut shared = route::Shared {
            bucket: l
                .local_rate_limit
                .as_ref()
                .map(|c| Arc::new(rate_limit::TokenBucket::new(c))),
            ..route::Shared::default()
        };
        if let config::Upstream::Routed(routed) = &l.upstream {
            shared.route_buckets = routed
                .routes
                .iter()
                .map(|r| {
                    r.local_rate_limit
                        .as_ref()
                        .map(|c| Arc::new(rate_limit::TokenBucket::new(c)))
                })
                .collect();
        }
        match &l.upstream {
            config::Upstream::Routed(routed) => {
                for (name, cluster) in &routed.clusters {
                    shared
                        .retries_in_flight
                        .insert(name.clone(), Arc::default());
                    if cluster.balance.lb_policy == balance::LbPolicy::LeastRequest {
                        let active = balance::counters(cluster.endpoints.len());
                        shared.active.insert(name.clone(), active);
                    }
                    if let Some(o) = &cluster.outlier_detection {
                        let detector = Arc::new(outlier::Outliers::new(o, cluster.endpoints.len()));
                        shared.outliers.insert(name.clone(), detector);
                    }
                    if let Some(c) = &cluster.circuit_breakers {
                        let gate = Arc::new(circuit_breaker::Gate::new(c));
                        if let Some(b) = &c.retry_budget {
                            shared
                                .retries_in_flight
                                .insert(name.clone(), budgeted(b, &gate));
                        }
                        shared.gates.insert(name.clone(), gate);
                    }
                    if let Some(check) = cluster.health_checks.first() {
                        let health =
                            Arc::new(health_check::ClusterHealth::new(cluster.endpoints.len()));
                        shared.health.insert(name.clone(), health.clone());
                        checking.extend(health_check::spawn(health_check::Cluster {
                            listener: l.name.clone(),
                            name: name.clone(),
                            endpoints: cluster.endpoints.clone(),
                            tls: upstream_tls.of(name),
                            check: check.clone(),
                            health,
                        }));
                    }
                }
            }
            config::Upstream::Single(_) => {
                shared
                    .retries_in_flight
                    .insert(l.name.clone(), Arc::default());
                if let Some(c) = &l.circuit_breakers {
                    let gate = Arc::new(circuit_breaker::Gate::new(c));
                    if let Some(b) = &c.retry_budget {
                        shared
                            .retries_in_flight
                            .insert(l.name.clone(), budgeted(b, &gate));
                    }
                    shared.gates.insert(l.name.clone(), gate);
                }
            }
        }
        let clusters: Vec<(String, Vec<String>)> = match &l.upstream {
            config::Upstream::Routed(routed) => routed
                .clusters
                .iter()
                .map(|(name, c)| (name.clone(), c.endpoints.clone()))
                .collect(),
            config::Upstream::Single(address) => vec![(l.name.clone(), vec![address.clone()])],
        };
        for (cluster, endpoints) in clusters {
            stats.watch_cluster(stats::ClusterView {
                listener: l.name.clone(),
                outliers: shared.outliers.get(&cluster).cloned(),
                health: shared.health.get(&cluster).cloned(),
                gate: shared.gates.get(&cluster).cloned(),
                active: shared.active.get(&cluster).cloned(),
                cluster,
                endpoints,
            });
        }
        let access_log = match &l.access_log {
            Some(a) => {
                let format = a.parse().map_err(|reason| StartError::AccessLogFormat {
                    name: l.name.clone(),
                    reason,
                })?;
                let out = access_logs
                    .open(&a.path)
                    .map_err(|source| StartError::AccessLog {
                        name: l.name.clone(),
                        path: a.path.clone(),
                        source,
                    })?;
                let filter = a.filter.clone().map(Arc::new);
                Some((Arc::new(format), filter, out, a.flush_interval))
            }
            None => None,
        };
        let tcp = tokio::net::TcpListener::bind(&l.listen)
            .await
            .map_err(bind_error)?;
        let addr = tcp.local_addr().map_err(bind_error)?;
        listeners.push((l.name.clone(), addr));
        let mut handoff = Vec::with_capacity(workers);
        for worker in 0..workers {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            handoff.push(tx);
            let (config, tracer, stats, tls, upstream_tls) = (
                l.clone(),
                tracer.clone(),
                stats.clone(),
                tls.clone(),
                upstream_tls.clone(),
            );
            let shared = shared.clone();
            let access_log = access_log.as_ref().map(|(format, filter, out, every)| {
                (
                    access_log::AccessLog::new(format.clone(), filter.clone(), out.clone()),
                    *every,
                )
            });
            let stop = stop_rx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("proxy-{worker}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(
                                "listener {:?}: cannot start a runtime: {e}",
                                config.name
                            );
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        let listener = Arc::new(listener::Listener::new(
                            &config,
                            tracer,
                            stats,
                            tls,
                            &upstream_tls,
                            &shared,
                            access_log,
                        ));
                        listener.serve(rx, stop, drain).await;
                    });
                })
                .map_err(bind_error)?;
            threads.push(thread);
        }
        accepting.push(tokio::spawn(listener::accept(tcp, handoff)));
    }
    let mut admin = None;
    let mut admin_task = None;
    if let Some(addr) = &config.admin {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                name: "admin".to_owned(),
                addr: addr.clone(),
                source,
            })?;
        admin = tcp.local_addr().ok();
        admin_task = Some(tokio::spawn(admin::serve(tcp, stats.clone())));
    }
    // Started: what only starting needed leaves the resident set (see `memory`).
    match memory::release_startup_code() {
        Ok(bytes) => tracing::debug!("released {} KiB of startup code", bytes / 1024),
        Err(e) => tracing::debug!("startup code stays resident: {e}"),
    }
    Ok(Running {
        listeners,
        admin,
        accepting,
        admin_task,
        reloading,
        checking,
        workers: threads,
        access_logs,
        stats,
        stop: stop_tx,
        reporter,
    })
}

/// A cluster's count of retries in flight under `budget`, its share of `gate`'s requests.
fn budgeted(
    budget: &circuit_breaker::RetryBudget,
    gate: &Arc<circuit_breaker::Gate>,
) -> Arc<retry::RetriesInFlight> {
    Arc::new(retry::RetriesInFlight::with_budget(retry::Budget {
        percent: budget.percent(),
        min: budget.min_retry_concurrency,
        requests: gate.clone(),
    }))
}
