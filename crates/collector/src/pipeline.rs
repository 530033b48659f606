//! Turns a checked [`Config`] into a running collector: binds every receiver's listeners,
//! builds each pipeline (processors in order, then a fan-out to its exporters), and on
//! shutdown stops receivers first, then flushes processors, then drains exporters.
//!
//! Sharing follows the OTel Collector: a receiver or exporter used by several pipelines is one
//! instance (a receiver fans out to every pipeline that lists it); processors belong to one
//! pipeline each.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::TraceBatch;
use receiver::tls::{Alpn, ListenerTls, TlsListener};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::explain::{OTLP_GRPC_DEFAULT, OTLP_HTTP_DEFAULT, ZIPKIN_DEFAULT};
use crate::config::{ComponentId, Config, Extension, Receiver};
use crate::consumer::{ConsumeError, Consumer, Fanout};
use crate::exporter;
use crate::payload::{OtlpBytes, Payload};
use crate::processor;

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: String,
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Build(String),
    /// A receiver's `tls` block cannot be used (a file missing, not PEM, a key that does not
    /// match its certificate).
    #[error("{0}")]
    Tls(String),
}

/// One open listener, for the start-up announcement (and tests using port 0).
#[derive(Clone, Debug)]
pub struct Listener {
    /// `otlp-grpc`, `otlp-http`, `zipkin`, `health_check` (a named receiver: `otlp/2-grpc`).
    pub name: String,
    pub addr: SocketAddr,
    pub what: &'static str,
}

/// A started collector: listeners are bound and serving.
pub struct Collector {
    listeners: Vec<Listener>,
    servers: JoinSet<Result<(), String>>,
    /// Processor stages, pipeline by pipeline, upstream first.
    processors: Vec<Arc<dyn Consumer>>,
    exporters: Vec<Arc<dyn Consumer>>,
    stop: watch::Sender<bool>,
}

/// A receiver's front: hands batches to the pipelines that list the receiver. Pipelines that
/// pass OTLP bytes through get the request's bytes rather than the decoded batch, when those
/// bytes hold exactly the accepted spans (see [`crate::payload`]). When all of them do, the
/// receiver is asked for checked bytes only and decodes nothing.
struct ReceiverSink {
    name: String,
    /// The receiver's component id, for its self-metrics.
    id: Arc<str>,
    /// Each pipeline head, and whether it takes [`Payload::Otlp`].
    targets: Vec<(Arc<dyn Consumer>, bool)>,
}

impl ReceiverSink {
    fn new(name: String, targets: Vec<Arc<dyn Consumer>>) -> Self {
        let targets = targets
            .into_iter()
            .map(|t| {
                let raw = t.accepts_otlp();
                (t, raw)
            })
            .collect();
        Self {
            id: Arc::from(name.as_str()),
            name,
            targets,
        }
    }

    /// The request's bytes, if some pipeline takes them and they hold no refused span.
    fn raw(&self, received: &receiver::Received) -> Option<OtlpBytes> {
        if !self.targets.iter().any(|(_, raw)| *raw) {
            return None;
        }
        let bytes = received.otlp_protobuf.clone()?;
        let raw = OtlpBytes::new(bytes).ok()?;
        (raw.span_count() == received.batch.span_count()).then_some(raw)
    }

    async fn forward(&self, received: receiver::Received) -> Result<(), ConsumeError> {
        let raw = self.raw(&received);
        self.forward_either(raw, received.batch).await
    }

    /// Sends `raw` to the pipelines that take bytes (when there are bytes), `batch` to the
    /// others.
    async fn forward_either(
        &self,
        mut raw: Option<OtlpBytes>,
        batch: TraceBatch,
    ) -> Result<(), ConsumeError> {
        let mut batch = Some(batch);
        let n = self.targets.len();
        let mut first_error = None;
        for (i, (next, takes_raw)) in self.targets.iter().enumerate() {
            let last = i + 1 == n;
            let payload = match (&mut raw, takes_raw) {
                (Some(r), true) => Payload::Otlp(if last { std::mem::take(r) } else { r.clone() }),
                _ => Payload::Batch(if last {
                    batch.take().unwrap_or_default()
                } else {
                    batch.clone().unwrap_or_default()
                }),
            };
            if let Err(e) = next.consume_payload(payload).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl receiver::Sink for ReceiverSink {
    fn component_id(&self) -> Option<Arc<str>> {
        Some(Arc::clone(&self.id))
    }

    fn needs(&self) -> receiver::Needs {
        if self.targets.iter().all(|(_, raw)| *raw) {
            receiver::Needs::OtlpBytes
        } else {
            receiver::Needs::Batch
        }
    }

    async fn accept(&self, received: receiver::Received) -> Result<(), receiver::SinkError> {
        sink_answer(&self.name, self.forward(received).await)
    }

    async fn accept_otlp(&self, request: receiver::CheckedOtlp) -> Result<(), receiver::SinkError> {
        // Every target takes bytes (that is when `needs` asks for them).
        let raw = Some(OtlpBytes::checked(request));
        sink_answer(
            &self.name,
            self.forward_either(raw, TraceBatch::default()).await,
        )
    }
}

/// A pipeline's answer as the receiver's.
fn sink_answer(name: &str, forwarded: Result<(), ConsumeError>) -> Result<(), receiver::SinkError> {
    match forwarded {
        Ok(()) => Ok(()),
        Err(ConsumeError::Overloaded(m)) => Err(receiver::SinkError::Overloaded(m)),
        Err(ConsumeError::Unavailable(m)) => Err(receiver::SinkError::Unavailable(m)),
        Err(ConsumeError::Permanent(m)) => {
            // The receiver API has no "rejected for good" answer; the data is dropped
            // (and counted by the exporter) rather than retried forever by the client.
            tracing::warn!(receiver = %name, "data refused downstream, dropped: {m}");
            Ok(())
        }
    }
}

/// The stage of a single consumer, or a fan-out over several.
fn fan(mut list: Vec<Arc<dyn Consumer>>) -> Arc<dyn Consumer> {
    if list.len() == 1 {
        list.remove(0)
    } else {
        Arc::new(Fanout(list))
    }
}

async fn bind(what: &str, addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            what: what.to_owned(),
            addr: addr.to_owned(),
            source,
        })
}

/// `:4317` (all interfaces, as Go writes it) becomes `0.0.0.0:4317`.
fn listen_addr(endpoint: &str) -> String {
    if endpoint.starts_with(':') {
        format!("0.0.0.0{endpoint}")
    } else {
        endpoint.to_owned()
    }
}

fn listener_name(id: &ComponentId, transport: Option<&str>) -> String {
    match transport {
        Some(t) => format!("{id}-{t}"),
        None => id.to_string(),
    }
}

impl Collector {
    /// Builds the pipelines and binds every listener. `shutdown` turning true stops it.
    pub async fn start(
        config: &Config,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Self, StartError> {
        let pipelines = config.pipelines();
        // Authenticator extensions first: exporters and receivers name them.
        let auths = crate::auth::Authenticators::build(config).map_err(StartError::Build)?;

        // Exporters: one instance per id in use.
        let mut exporters: Vec<Arc<dyn Consumer>> = Vec::new();
        let mut exporter_by_id: HashMap<ComponentId, Arc<dyn Consumer>> = HashMap::new();
        for (_, p) in &pipelines {
            for name in &p.exporters {
                let id: ComponentId = name.parse().map_err(StartError::Build)?;
                if exporter_by_id.contains_key(&id) || config.connector(&id).is_some() {
                    continue;
                }
                let cfg = config
                    .exporter(&id)
                    .ok_or_else(|| StartError::Build(format!("exporter {id} is not defined")))?;
                let storage = storage_dir(config, cfg);
                if let Some((dir, create)) = &storage {
                    if !create && !dir.is_dir() {
                        return Err(StartError::Build(format!(
                            "exporters.{id}: the file_storage directory {} does not exist (create it, or set create_directory: true)",
                            dir.display()
                        )));
                    }
                }
                let stage =
                    exporter::build(&id, cfg, storage.as_ref().map(|(d, _)| d.as_path()), &auths)
                        .map_err(StartError::Build)?;
                exporters.push(stage.clone());
                exporter_by_id.insert(id, stage);
            }
        }

        // Pipelines: processors in front of a fan-out to the exporters and connectors. A
        // pipeline sending to a connector is built after the pipelines receiving from it
        // (validation refused cycles), so the connector has their heads to feed.
        // Each pipeline's processors, in build order (downstream pipelines first).
        let mut stages_built: Vec<Vec<Arc<dyn Consumer>>> = Vec::new();
        let mut heads: Vec<(Vec<ComponentId>, Arc<dyn Consumer>)> = Vec::new();
        let mut built: Vec<(String, Arc<dyn Consumer>)> = Vec::new();
        let mut order: Vec<usize> = Vec::new();
        while order.len() < pipelines.len() {
            let before = order.len();
            for (i, (_, p)) in pipelines.iter().enumerate() {
                if order.contains(&i) {
                    continue;
                }
                // Ready when every pipeline its connectors feed is built.
                let ready = p
                    .exporters
                    .iter()
                    .filter_map(|n| n.parse::<ComponentId>().ok())
                    .filter(|id| config.connector(id).is_some())
                    .all(|c| {
                        pipelines.iter().enumerate().all(|(j, (_, q))| {
                            !q.receivers
                                .iter()
                                .any(|r| r.parse().ok().as_ref() == Some(&c))
                                || order.contains(&j)
                        })
                    });
                if ready {
                    order.push(i);
                }
            }
            if order.len() == before {
                return Err(StartError::Build(
                    "pipelines send into each other through connectors (a cycle)".into(),
                ));
            }
        }
        for &i in &order {
            let (pid, p) = &pipelines[i];
            let mut outs: Vec<Arc<dyn Consumer>> = Vec::new();
            for id in p
                .exporters
                .iter()
                .filter_map(|n| n.parse::<ComponentId>().ok())
            {
                if let Some(e) = exporter_by_id.get(&id) {
                    outs.push(e.clone());
                } else if let Some(c) = config.connector(&id) {
                    // The heads of the pipelines receiving from it, by pipeline id.
                    let targets: Vec<(String, Arc<dyn Consumer>)> = pipelines
                        .iter()
                        .filter(|(_, q)| {
                            q.receivers
                                .iter()
                                .any(|r| r.parse().ok().as_ref() == Some(&id))
                        })
                        .filter_map(|(qid, _)| {
                            built
                                .iter()
                                .find(|(b, _)| *b == qid.to_string())
                                .map(|(b, h)| (b.clone(), h.clone()))
                        })
                        .collect();
                    outs.push(
                        crate::connector::build(&id.to_string(), c, &targets)
                            .map_err(|e| StartError::Build(format!("connectors.{id}: {e}")))?,
                    );
                }
            }
            let mut next = fan(outs);
            let mut stages = Vec::new();
            for name in p.processors.iter().rev() {
                let id: ComponentId = name.parse().map_err(StartError::Build)?;
                let cfg = config.processor(&id).ok_or_else(|| {
                    StartError::Build(format!("pipeline {pid}: processor {id} is not defined"))
                })?;
                next = processor::build(&id, cfg, next).map_err(StartError::Build)?;
                stages.push(next.clone());
            }
            stages.reverse();
            stages_built.push(stages);
            let receivers = p.receivers.iter().filter_map(|n| n.parse().ok()).collect();
            built.push((pid.to_string(), next.clone()));
            heads.push((receivers, next));
        }
        // Flushed at shutdown upstream first: a pipeline feeding a connector before the
        // pipelines behind it.
        let processors: Vec<Arc<dyn Consumer>> = stages_built.into_iter().rev().flatten().collect();

        // Internal stop: the caller's shutdown, or a server that failed.
        let (stop, stop_rx) = watch::channel(false);
        let forward = stop.clone();
        tokio::spawn(async move {
            let _ = shutdown.wait_for(|s| *s).await;
            forward.send_replace(true);
        });
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };

        // Receivers: bind everything first, so a port conflict fails before anything runs.
        let mut listeners = Vec::new();
        let mut servers = JoinSet::new();
        for (id, cfg) in &config.receivers {
            let targets: Vec<Arc<dyn Consumer>> = heads
                .iter()
                .filter(|(rs, _)| rs.contains(id))
                .map(|(_, head)| head.clone())
                .collect();
            if targets.is_empty() {
                continue; // defined but unused: not started, as in the OTel Collector
            }
            let sink = Arc::new(ReceiverSink::new(id.to_string(), targets));
            match cfg {
                Receiver::Otlp(o) => {
                    if let Some(g) = &o.protocols.grpc {
                        let addr = listen_addr(g.endpoint.as_deref().unwrap_or(OTLP_GRPC_DEFAULT));
                        let name = listener_name(id, Some("grpc"));
                        let l = bind(&name, &addr).await?;
                        let mut limits = receiver::Limits::default();
                        if let Some(mib) = g.max_recv_msg_size_mib {
                            limits.max_body_bytes =
                                usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
                        }
                        listeners.push(Listener {
                            name: name.clone(),
                            addr: local(&l),
                            what: "OTLP/gRPC TraceService",
                        });
                        let mut service =
                            receiver::otlp_grpc::TraceService::new(sink.clone(), limits);
                        if let Some(auth) = server_auth(&auths, &name, g.auth.as_ref())? {
                            service = service.with_auth(auth);
                        }
                        let stop = stopped();
                        let connections = g.connections();
                        match tls_config(&name, g.tls.as_deref(), Alpn::H2)? {
                            Some(tls) => servers.spawn(async move {
                                receiver::otlp_grpc::serve_tls(
                                    TlsListener::new(l, tls),
                                    service,
                                    connections,
                                    stop,
                                )
                                .await
                                .map_err(|e| format!("{name} server failed: {e}"))
                            }),
                            None => servers.spawn(async move {
                                receiver::otlp_grpc::serve(l, service, connections, stop)
                                    .await
                                    .map_err(|e| format!("{name} server failed: {e}"))
                            }),
                        };
                    }
                    if let Some(h) = &o.protocols.http {
                        let addr = listen_addr(h.endpoint.as_deref().unwrap_or(OTLP_HTTP_DEFAULT));
                        let name = listener_name(id, Some("http"));
                        let app = receiver::otlp_http::router_at(
                            sink.clone(),
                            body_limits(h.max_request_body_size),
                            h.traces_url_path.as_deref().unwrap_or("/v1/traces"),
                        );
                        let app = with_auth(&auths, &name, id, app, h.auth.as_ref())?;
                        let app = with_cors(&name, app, h.cors.as_ref())?;
                        let l = bind(&name, &addr).await?;
                        listeners.push(Listener {
                            name: name.clone(),
                            addr: local(&l),
                            what: "POST /v1/traces",
                        });
                        let tls = tls_config(&name, h.tls.as_deref(), Alpn::H2AndHttp11)?;
                        spawn_http(&mut servers, name, l, tls, app, stopped());
                    }
                }
                Receiver::Zipkin(z) => {
                    let addr = listen_addr(z.endpoint.as_deref().unwrap_or(ZIPKIN_DEFAULT));
                    let name = listener_name(id, None);
                    let app = receiver::zipkin_http::router_reading(
                        sink.clone(),
                        body_limits(z.max_request_body_size),
                        wire::zipkin::ReadOptions {
                            parse_string_tags: z.parse_string_tags,
                        },
                    );
                    let app = with_auth(&auths, &name, id, app, z.auth.as_ref())?;
                    let app = with_cors(&name, app, z.cors.as_ref())?;
                    let l = bind(&name, &addr).await?;
                    listeners.push(Listener {
                        name: name.clone(),
                        addr: local(&l),
                        what: "POST /api/v2/spans",
                    });
                    let tls = tls_config(&name, z.tls.as_deref(), Alpn::H2AndHttp11)?;
                    spawn_http(&mut servers, name, l, tls, app, stopped());
                }
            }
        }

        // Extensions the service enables.
        for name in &config.service.extensions {
            let Ok(id) = name.parse::<ComponentId>() else {
                continue;
            };
            if let Some(Extension::GoDebugPages(_)) = config.extension(&id) {
                tracing::warn!(
                    "extension {id}: the Go collector's debugging pages have nothing to show in \
                     meshtrace (see /metrics for its telemetry); not started"
                );
            }
            if let Some(Extension::HealthCheck(h)) = config.extension(&id) {
                let addr = listen_addr(h.endpoint.as_deref().unwrap_or("0.0.0.0:13133"));
                let lname = listener_name(&id, None);
                let l = bind(&lname, &addr).await?;
                let path = h.path.clone().unwrap_or_else(|| "/".into());
                listeners.push(Listener {
                    name: lname.clone(),
                    addr: local(&l),
                    what: "health check",
                });
                let app = axum::Router::new().route(
                    &path,
                    axum::routing::get(|| async {
                        axum::Json(serde_json::json!({"status": "Server available"}))
                    }),
                );
                let serve = axum::serve(l, app)
                    .with_graceful_shutdown(stopped())
                    .into_future();
                servers.spawn(async move {
                    serve
                        .await
                        .map_err(|e| format!("{lname} server failed: {e}"))
                });
            }
        }

        Ok(Self {
            listeners,
            servers,
            processors,
            exporters,
            stop,
        })
    }

    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// Serves until shutdown (or a server failure), then stops receivers, flushes processors
    /// and drains exporters. Returns the first server failure, if any.
    pub async fn run(mut self) -> Result<(), String> {
        let mut first_error = None;
        while let Some(joined) = self.servers.join_next().await {
            let result = joined
                .map_err(|e| format!("a server task failed: {e}"))
                .and_then(|r| r);
            if let Err(e) = result {
                tracing::error!("{e}");
                self.stop.send_replace(true);
                first_error.get_or_insert(e);
            }
        }
        tracing::info!("receivers stopped: flushing processors and exporters");
        for p in &self.processors {
            p.shutdown().await;
        }
        for e in &self.exporters {
            e.shutdown().await;
        }
        tracing::info!("collector stopped");
        first_error.map_or(Ok(()), Err)
    }
}

/// The directory of the `file_storage` extension an exporter's queue names.
fn storage_dir(
    config: &Config,
    cfg: &crate::config::Exporter,
) -> Option<(std::path::PathBuf, bool)> {
    use crate::config::Exporter as E;
    let queue = match cfg {
        E::Otlp(o) | E::OtlpHttp(o) => &o.sending_queue,
        E::Zipkin(z) => &z.sending_queue,
        E::Debug(_) | E::File(_) => return None,
        E::LoadBalancing(lb) => &lb.protocol.otlp.sending_queue,
    };
    let id: ComponentId = queue.storage.as_deref()?.parse().ok()?;
    match config.extension(&id)? {
        Extension::FileStorage(f) => f
            .directory
            .as_deref()
            .map(std::path::PathBuf::from)
            .map(|d| (d, f.create_directory)),
        _ => None,
    }
}

/// The receivers' body limit, or the default when the config sets none.
fn body_limits(max_request_body_size: Option<u64>) -> receiver::Limits {
    let mut limits = receiver::Limits::default();
    if let Some(b) = max_request_body_size {
        limits.max_body_bytes = usize::try_from(b).unwrap_or(usize::MAX);
    }
    limits
}

/// Serves an HTTP receiver on `listener` until `stopped` completes.
/// Serves an HTTP receiver's `app` on `listener`, over TLS when `tls` is set.
fn spawn_http(
    servers: &mut JoinSet<Result<(), String>>,
    name: String,
    listener: TcpListener,
    tls: Option<ListenerTls>,
    app: axum::Router,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) {
    match tls {
        Some(tls) => servers.spawn(serve_http(
            name,
            TlsListener::new(listener, tls),
            app,
            stopped,
        )),
        None => servers.spawn(serve_http(name, listener, app, stopped)),
    };
}

async fn serve_http<L>(
    name: String,
    listener: L,
    app: axum::Router,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
        .map_err(|e| format!("{name} server failed: {e}"))
}

/// What receiver listener `name` requires of its clients, from its `auth` block.
fn server_auth(
    auths: &crate::auth::Authenticators,
    name: &str,
    auth: Option<&crate::config::AuthRef>,
) -> Result<Option<receiver::auth::Authenticator>, StartError> {
    auths
        .server(auth)
        .map_err(|e| StartError::Build(format!("{name}: {e}")))
}

/// `app` with its `auth` required (inside CORS, so that preflights need no credentials); its
/// refusals are counted under receiver `id`.
fn with_auth(
    auths: &crate::auth::Authenticators,
    name: &str,
    id: &ComponentId,
    app: axum::Router,
    auth: Option<&crate::config::AuthRef>,
) -> Result<axum::Router, StartError> {
    Ok(match server_auth(auths, name, auth)? {
        Some(a) => receiver::auth::require(app, a, &id.to_string()),
        None => app,
    })
}

/// `app` with the CORS layer of its receiver's `cors` block, if any.
fn with_cors(
    name: &str,
    app: axum::Router,
    cors: Option<&crate::config::CorsSettings>,
) -> Result<axum::Router, StartError> {
    let layer = cors
        .map(|c| c.to_cors().layer())
        .transpose()
        .map_err(|e| StartError::Build(format!("{name}: cors: {e}")))?
        .flatten();
    Ok(match layer {
        Some(layer) => app.layer(layer),
        None => app,
    })
}

/// How often `client_ca_file_reload` looks at the client CA file.
const CA_FILE_CHECK: Duration = Duration::from_secs(2);

/// The TLS configuration of listener `name`, when its receiver has a `tls` block, and how it is
/// looked at again: every file read anew each `reload_interval`, and with
/// `client_ca_file_reload` the settings rebuilt as soon as the client CA file changed.
fn tls_config(
    name: &str,
    tls: Option<&crate::config::ServerTls>,
    alpn: Alpn,
) -> Result<Option<ListenerTls>, StartError> {
    let Some(tls) = tls else {
        return Ok(None);
    };
    let read = {
        let (tls, name) = (tls.clone(), name.to_owned());
        move || {
            let settings = crate::server_tls::load(&tls).map_err(|e| format!("{name}: {e}"))?;
            settings
                .config(alpn)
                .map_err(|e| format!("{name}: tls: {e}"))
        }
    };
    let config = read().map_err(StartError::Tls)?;
    let every = tls.reload_interval.filter(|every| !every.is_zero());
    let ca_file: Vec<String> = match &tls.client_ca_file {
        Some(file) if tls.client_ca_file_reload => vec![file.clone()],
        _ => Vec::new(),
    };
    let tick = match (every, ca_file.is_empty()) {
        (None, true) => {
            return Ok(Some(ListenerTls {
                config,
                reload: None,
            }))
        }
        (Some(every), true) => every,
        (None, false) => CA_FILE_CHECK,
        (Some(every), false) => every.min(CA_FILE_CHECK),
    };
    let mut ca_seen = receiver::tls::modified(&ca_file);
    let mut last_read = Instant::now();
    let reload = move || {
        // Half a tick of slack: the ticks and this clock are read at slightly different times.
        let due = every.is_some_and(|every| last_read.elapsed() + tick / 2 >= every);
        let ca_now = receiver::tls::modified(&ca_file);
        if !due && ca_now == ca_seen {
            return Ok(None);
        }
        ca_seen = ca_now;
        last_read = Instant::now();
        read().map(Some)
    };
    Ok(Some(ListenerTls {
        config,
        reload: Some((tick, Box::new(reload) as receiver::tls::Reload)),
    }))
}

fn local(l: &TcpListener) -> SocketAddr {
    l.local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}
