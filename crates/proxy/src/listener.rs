//! One listener: accepts HTTP/1.1 (keep-alive) and HTTP/2 cleartext (prior knowledge, so gRPC
//! works) on the same port, or both over TLS (`tls`), and runs each request through route →
//! span (and access log entry, `access_log`) → the route's token bucket (`rate_limit`) and
//! faults (`fault`) → forward.
//!
//! [`accept`] deals accepted connections out to the per-core workers in turn; each worker's
//! [`Listener::serve`] then owns its connections, and its upstream pools, on its own thread.
//!
//! HTTP/2 requests go upstream over HTTP/2 (h2c), HTTP/1.1 over HTTP/1.1 (or all over one of
//! them: `upstream_protocol`), on the worker's own upstream connections (`upstream`); the
//! request's authority (`Host`, `:authority`) goes with it, converted between the two. Failures
//! the proxy answers itself: 404 (no route, `NR`), 502 (upstream connect or reset, `UF`/`UR`),
//! 503 (no endpoint left, `UH`), 504 (no response headers within the route's `timeout`, else
//! `timeouts.request`, `UT`); and a route's own answers (`local_reply`). Under a
//! `retry_policy`, a failure it names is retried on another endpoint of the cluster instead
//! (`retry`), and the answer is the last attempt's (each attempt a span of its own with
//! `spawn_upstream_span`). Copies of a route's requests go to its mirror clusters unwaited
//! (`mirror`). An HTTP/1.1 request to switch protocols (WebSocket) becomes a tunnel once the
//! upstream agrees (`tunnel`).

use bytes::Bytes;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::access_log::{self, AccessLog};
use crate::compress::Compressor;
use crate::config::{ListenerConfig, Mode, UpstreamProtocol};
use crate::cors::Cors;
use crate::deadline::Deadlines;
use crate::deadline::Limit;
use crate::forward::{
    local_body, strip_hop_by_hop, CountedRequest, Finish, Record, TracedResponse, UpstreamRequest,
};
use crate::local_reply::{self, LocalReply};
use crate::mirror::Mirror;
use crate::retry::{Outcome, Recording, Replay, RetryPolicy, Tape};
use crate::route::{self, Guards, Local, Pick, Router, Target};
use crate::span::{TagValue, Tracer};
use crate::stats::Stats;
use crate::tls;
use crate::tunnel;
use crate::upstream::{UpstreamBody, UpstreamError, Upstreams};

static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
/// Envoy's decorator header: the operation name a server span takes (set by the caller's
/// sidecar from its route), or a client span takes (in the upstream's answer).
static DECORATOR_OPERATION: http::HeaderName =
    http::HeaderName::from_static("x-envoy-decorator-operation");
static UPSTREAM_SERVICE_TIME: http::HeaderName =
    http::HeaderName::from_static("x-envoy-upstream-service-time");

/// Accepted connections on their way from the accept loop to one worker.
pub type Accepted = mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>;

/// Accepts on `tcp` and deals the connections out to `workers` in turn, until every worker is
/// gone. The stream is handed over as a std socket (still non-blocking) so that the worker
/// registers it with its own runtime's reactor.
pub async fn accept(
    tcp: TcpListener,
    workers: Vec<mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>>,
) {
    let mut next = 0;
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(mut stream) = stream.into_std() else {
            continue;
        };
        // A worker whose runtime failed to start is skipped; with none left, stop.
        let mut tries = 0;
        loop {
            if tries == workers.len() {
                return;
            }
            let worker = &workers[next % workers.len()];
            next = next.wrapping_add(1);
            tries += 1;
            match worker.send((stream, peer)) {
                Ok(()) => break,
                Err(mpsc::error::SendError(back)) => stream = back.0,
            }
        }
    }
}

pub struct Listener {
    mode: Mode,
    upstream_protocol: UpstreamProtocol,
    router: Router,
    tracer: Arc<Tracer>,
    stats: Arc<Stats>,
    deadlines: Arc<Deadlines>,
    upstreams: Arc<Upstreams<UpstreamRequest>>,
    /// How many upgraded connections are open (the drain waits for none).
    tunnels: Arc<watch::Sender<usize>>,
    /// HTTPS: each connection's handshake first.
    tls: Option<Arc<tls::Watched<TlsAcceptor>>>,
    /// This worker's access log, and how often its lines go to the writer.
    access_log: Option<(Arc<AccessLog>, Duration)>,
}

impl Listener {
    pub fn new(
        config: &ListenerConfig,
        tracer: Arc<Tracer>,
        stats: Arc<Stats>,
        tls: Option<Arc<tls::Watched<TlsAcceptor>>>,
        upstream_tls: &crate::route::TlsByCluster,
        shared: &crate::route::Shared,
        access_log: Option<(Arc<AccessLog>, Duration)>,
    ) -> Self {
        Listener {
            mode: config.mode,
            upstream_protocol: config.upstream_protocol,
            router: Router::new(config, upstream_tls, shared),
            tracer,
            stats,
            deadlines: Deadlines::new(config.timeouts.request),
            upstreams: Upstreams::new(config.timeouts.connect, config.timeouts.idle),
            tunnels: Arc::new(watch::channel(0).0),
            tls,
            access_log,
        }
    }

    /// Serves the connections [`accept`] hands to this worker, on the current (single-threaded)
    /// runtime, until `stop`; then drains: every connection is told to finish (HTTP/1.1 closes
    /// after the request in flight, HTTP/2 sends GOAWAY), and the worker waits for them and for
    /// open tunnels, up to `drain`.
    pub async fn serve(
        self: Arc<Self>,
        mut accepted: Accepted,
        mut stop: watch::Receiver<bool>,
        drain: Duration,
    ) {
        let sweeper = tokio::spawn(self.deadlines.clone().sweeper());
        let reaper = tokio::spawn(self.upstreams.clone().reaper());
        let flusher = self
            .access_log
            .as_ref()
            .map(|(log, every)| tokio::spawn(log.clone().flush_every(*every)));
        let connections = GracefulShutdown::new();
        loop {
            let (stream, peer) = tokio::select! {
                next = accepted.recv() => match next {
                    Some(next) => next,
                    None => break,
                },
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot take over a connection from {peer}: {e}");
                    continue;
                }
            };
            let this = self.clone();
            let watcher = connections.watcher();
            let local = match &self.access_log {
                Some((log, _)) if log.needs_local_address() => stream.local_addr().ok(),
                _ => None,
            };
            let at = (peer, local);
            tokio::spawn(async move {
                match &this.tls {
                    None => this.serve_connection(stream, at, false, watcher).await,
                    Some(watched) => {
                        let acceptor = watched.get();
                        if let Some(tls) =
                            tls::handshake(&acceptor, stream, peer, &this.stats).await
                        {
                            this.clone().serve_connection(tls, at, true, watcher).await;
                        }
                    }
                }
            });
        }
        let mut tunnels = self.tunnels.subscribe();
        let drained = async {
            connections.shutdown().await;
            let _ = tunnels.wait_for(|open| *open == 0).await;
        };
        if tokio::time::timeout(drain, drained).await.is_err() {
            tracing::info!("drain timeout ({drain:?}) reached: closing what is still open");
        }
        sweeper.abort();
        reaper.abort();
        if let (Some(flusher), Some((log, _))) = (flusher, &self.access_log) {
            flusher.abort();
            log.flush();
        }
    }

    /// Serves one connection (`secure`: over TLS) from `peer` (to `local`, when the access log
    /// wants it) until it closes or the drain tells it to.
    async fn serve_connection<I>(
        self: Arc<Self>,
        io: I,
        (peer, local): (SocketAddr, Option<SocketAddr>),
        secure: bool,
        watcher: Watcher,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        // The span tag, formatted once per connection.
        let peer_ip: Arc<str> = peer.ip().to_string().into();
        let svc = hyper::service::service_fn(move |req| {
            let (this, peer_ip) = (self.clone(), peer_ip.clone());
            async move { Ok::<_, Infallible>(this.handle(req, (peer, local), peer_ip, secure).await) }
        });
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
        let _ = watcher.watch(conn).await;
    }

    async fn handle(
        &self,
        mut req: Request<Incoming>,
        (peer, local): (SocketAddr, Option<SocketAddr>),
        peer_ip: Arc<str>,
        secure: bool,
    ) -> Response<TracedResponse> {
        Stats::inc(&self.stats.requests);
        if self.mode == Mode::Edge {
            crate::envoy_headers::strip_external(req.headers_mut());
            if !req.headers().contains_key(&X_REQUEST_ID) {
                if let Ok(v) = HeaderValue::from_str(&new_request_id()) {
                    req.headers_mut().insert(X_REQUEST_ID.clone(), v);
                }
            }
            forwarded_for(req.headers_mut(), peer, secure);
        }
        let version = req.version();
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        let path = req.uri().path();
        let picked = self.router.pick(&route::Request {
            host,
            path,
            query: req.uri().query(),
            headers: req.headers(),
            peer: peer.ip(),
        });
        let route_name = picked.as_ref().and_then(|p| p.operation());
        // The CORS policy, when the request comes from one of its origins.
        let cors = picked
            .as_ref()
            .and_then(Pick::cors)
            .and_then(|c| Some((c, c.allowed(req.headers())?)));
        // The compressor, when the request takes gzip.
        let compressor = picked.as_ref().and_then(Pick::compressor);
        let gzip = compressor.filter(|_| Compressor::accepted(req.method(), req.headers()));
        let method = req.method();
        // Envoy's headers from inside the mesh (an edge removed outside requests' already).
        let envoy = self.mode != Mode::Edge && crate::envoy_headers::present(req.headers());
        // Inbound, the caller's sidecar may name this span (Envoy's decorator, propagated).
        let decorated = match self.mode {
            Mode::Inbound if envoy => req
                .headers()
                .get(&DECORATOR_OPERATION)
                .and_then(|v| v.to_str().ok()),
            _ => None,
        };
        let operation = || match (decorated, route_name) {
            (Some(op), _) | (None, Some(op)) => op.to_owned(),
            (None, None) => format!("{method} {path}"),
        };
        // Envoy returns the request id of a forced trace, to find it by.
        let forced = envoy
            && req
                .headers()
                .contains_key(&crate::span::X_ENVOY_FORCE_TRACE);
        let forced_request_id = forced
            .then(|| req.headers().get(&X_REQUEST_ID).cloned())
            .flatten();
        let begun = self
            .tracer
            .begin(self.mode, req.headers(), forced, operation);
        let log = self.access_log.as_ref().map(|(log, _)| {
            let mut entry = log.entry(access_log::Request {
                method: req.method(),
                uri: req.uri(),
                headers: req.headers(),
                secure,
                peer,
                local,
                trace_id: begun.outgoing.trace_id,
                protocol: protocol_name(version),
            });
            entry.route = route_name.map(str::to_owned);
            entry
        });
        let mut rec = Record {
            span: begun.span,
            log,
            delayed: false,
            spawn: None,
            attempt: None,
        };
        // The tags borrow from the request as it came in, before the trace headers are rewritten.
        if let Some(s) = rec.span.as_mut() {
            if let Some(id) = req
                .headers()
                .get(&X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
            {
                s.tag("guid:x-request-id", id.to_owned());
            }
            let host = host.unwrap_or("");
            let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
            let scheme = if secure { "https://" } else { "http://" };
            let mut url = String::with_capacity(scheme.len() + host.len() + path_and_query.len());
            url.push_str(scheme);
            url.push_str(host);
            url.push_str(path_and_query);
            s.tag("http.url", url);
            s.tag("http.method", method_name(req.method()));
            s.tag("http.protocol", protocol_name(version));
            s.tag("peer.address", peer_ip);
            if let Some(user_agent) = req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
            {
                s.tag("user_agent", user_agent.to_owned());
            }
        }
        let request_bytes = Arc::new(AtomicU64::new(0));
        if let Some((c, origin)) = &cors {
            if Cors::is_preflight(req.method(), req.headers()) {
                let headers = c.preflight(origin.clone());
                let answer = (StatusCode::OK, headers);
                return self.local_with(rec, request_bytes, answer, "-", Bytes::new());
            }
        }
        let target = match picked {
            Some(Pick::Upstream(target)) => target,
            Some(Pick::Local(local)) => {
                let asked = local_reply::Asked {
                    secure,
                    host: host.unwrap_or(""),
                    path: req.uri().path(),
                    query: req.uri().query(),
                };
                let mut resp = self
                    .answer_locally(local, asked, req.headers(), rec, request_bytes)
                    .await;
                if let Some((c, origin)) = cors {
                    c.answer(origin, resp.headers_mut());
                }
                compress(gzip, &mut resp);
                return resp;
            }
            Some(Pick::Unavailable { cluster, .. }) => {
                Stats::inc(&self.stats.no_healthy_upstream);
                if let Some(s) = rec.span.as_mut() {
                    s.tag("upstream_cluster", cluster.clone());
                    s.tag("upstream_cluster.name", cluster.clone());
                }
                return self.local(
                    rec,
                    request_bytes,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UH",
                    "no healthy upstream\n",
                );
            }
            None => {
                return self.local(
                    rec,
                    request_bytes,
                    StatusCode::NOT_FOUND,
                    "NR",
                    "no route matched\n",
                )
            }
        };
        if compressor.is_some_and(|c| c.remove_accept_encoding) {
            req.headers_mut().remove(header::ACCEPT_ENCODING);
        }
        wire::propagation::inject(&begun.outgoing, &self.tracer.formats, req.headers_mut());
        if let (Mode::Outbound, Some(op)) = (self.mode, target.operation) {
            // The next hop's server span takes the route's operation name.
            if let Ok(v) = HeaderValue::from_str(op) {
                req.headers_mut().insert(&DECORATOR_OPERATION, v);
            }
        }
        if self.tracer.spawn_upstream && rec.span.is_some() {
            // Each attempt writes its own span's id over these (see `forward`).
            rec.spawn = Some(Box::new(begun.outgoing));
        }
        let upgrade = match version {
            Version::HTTP_11 => tunnel::requested(req.headers()),
            _ => None,
        };
        if let Some(s) = rec.span.as_mut() {
            s.tag("upstream_cluster", target.cluster.clone());
            s.tag("upstream_cluster.name", target.cluster.clone());
            s.tag("upstream_address", target.address.clone());
        }
        if let Some(l) = rec.log.as_mut() {
            l.upstream(target.cluster, target.address);
        }
        let (rec, passed) = match self
            .filters(target.guards, req.headers(), rec, &request_bytes)
            .await
        {
            Ok(passed) => passed,
            Err(answer) => return answer,
        };
        let mut resp = self
            .forward(req, target, rec, request_bytes, (version, envoy), upgrade)
            .await;
        if let Some((bucket, verdict)) = passed.bucket {
            bucket.tell(&verdict, resp.headers_mut());
        }
        if let Some(place) = passed.place {
            resp.body_mut().hold(place);
        }
        if let Some((c, origin)) = cors {
            c.answer(origin, resp.headers_mut());
        }
        compress(gzip, &mut resp);
        if let Some(id) = forced_request_id {
            resp.headers_mut().insert(&X_REQUEST_ID, id);
        }
        resp
    }

    /// What a routed request meets before anything goes upstream: the route's (or listener's)
    /// token bucket, its faults, its cluster's circuit breaker. `Err`: the answer instead
    /// (429, an injected fault, 503).
    async fn filters<'t>(
        &self,
        guards: Guards<'t>,
        headers: &http::HeaderMap,
        mut rec: Record,
        request_bytes: &Arc<AtomicU64>,
    ) -> Result<(Record, Passed<'t>), Response<TracedResponse>> {
        let mut passed = Passed {
            bucket: None,
            place: None,
        };
        if let Some(bucket) = guards.bucket {
            let verdict = bucket.take(std::time::Instant::now());
            if !verdict.allowed {
                Stats::inc(&self.stats.rate_limited);
                let mut r = self.local(
                    rec,
                    request_bytes.clone(),
                    StatusCode::TOO_MANY_REQUESTS,
                    "RL",
                    "local_rate_limited",
                );
                bucket.tell(&verdict, r.headers_mut());
                return Err(r);
            }
            passed.bucket = Some((bucket, verdict));
        }
        if let Some(fault) = guards.fault {
            let faults = fault.decide(headers, || fastrand::u32(..1_000_000));
            if let Some(delay) = faults.delay {
                Stats::inc(&self.stats.faults_delayed);
                rec.delayed = true;
                tokio::time::sleep(delay).await;
            }
            if let Some(abort) = faults.abort {
                Stats::inc(&self.stats.faults_aborted);
                return Err(self.aborted(rec, request_bytes.clone(), abort));
            }
        }
        if let Some(gate) = guards.gate {
            match gate.enter() {
                Some(place) => passed.place = Some(place),
                None => {
                    Stats::inc(&self.stats.upstream_overflow);
                    let mut headers = http::HeaderMap::new();
                    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                    headers.insert("x-envoy-overloaded", HeaderValue::from_static("true"));
                    return Err(self.local_with(
                        rec,
                        request_bytes.clone(),
                        (StatusCode::SERVICE_UNAVAILABLE, headers),
                        "UO",
                        Bytes::from_static(
                            b"upstream overflow: the cluster's max_requests are in flight\n",
                        ),
                    ));
                }
            }
        }
        Ok((rec, passed))
    }

    /// The answer of a route that sends nowhere (`direct_response`, `redirect`), after its
    /// token bucket and faults, with its response header changes.
    async fn answer_locally(
        &self,
        local: Local<'_>,
        asked: local_reply::Asked<'_>,
        headers: &http::HeaderMap,
        rec: Record,
        request_bytes: Arc<AtomicU64>,
    ) -> Response<TracedResponse> {
        let (rec, passed) = match self
            .filters(local.guards, headers, rec, &request_bytes)
            .await
        {
            Ok(passed) => passed,
            Err(answer) => return answer,
        };
        let mut headers = http::HeaderMap::new();
        let (status, body) = match local.reply {
            LocalReply::Direct { status, body } => {
                if !body.is_empty() {
                    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                }
                (*status, body.clone())
            }
            LocalReply::Redirect(r) => {
                if let Some(location) = r.location(&asked) {
                    headers.insert(header::LOCATION, location);
                }
                (r.status(), Bytes::new())
            }
        };
        for ops in local.header_ops {
            ops.response.apply(&mut headers);
        }
        let mut resp = self.local_with(rec, request_bytes, (status, headers), "-", body);
        if let Some((bucket, verdict)) = passed.bucket {
            bucket.tell(&verdict, resp.headers_mut());
        }
        resp
    }

    /// Sends a routed request upstream (a tunnel for an upgrade), with retries under a retry
    /// policy, and answers with the upstream's response or the proxy's own failure.
    async fn forward(
        &self,
        req: Request<Incoming>,
        target: Target<'_>,
        mut rec: Record,
        request_bytes: Arc<AtomicU64>,
        (version, envoy): (Version, bool),
        upgrade: Option<HeaderValue>,
    ) -> Response<TracedResponse> {
        let Ok(authority) = Authority::try_from(&**target.address) else {
            return self.bad_address(rec, request_bytes);
        };
        if let Some(protocol) = upgrade {
            if let Some(l) = rec.log.as_mut() {
                l.attempted();
            }
            return self
                .upgrade(
                    req,
                    protocol,
                    (target.address, target.tls),
                    authority,
                    rec,
                    request_bytes,
                )
                .await;
        }
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        // What the caller asked for with x-envoy-* headers (none are left at the edge).
        let asked = if envoy {
            crate::envoy_headers::take(&mut parts.headers)
        } else {
            crate::envoy_headers::Asked::default()
        };
        for ops in target.header_ops {
            ops.request.apply(&mut parts.headers);
        }
        if let Some(host) = target.host_rewrite {
            rewrite_host(&mut parts, host);
        }
        let custom = RetryPolicy::asked(target.retry, target.retries_in_flight, &asked);
        let bodyless = hyper::body::Body::is_end_stream(&body);
        let body = CountedRequest::new(body, request_bytes.clone());
        let policy = custom
            .as_ref()
            .or(target.retry)
            .filter(|p| p.num_retries > 0);
        let mut mirrors: Vec<&Mirror> = target.mirrors.iter().filter(|m| m.hits()).collect();
        // Kept for a retry to send again, or for the copies.
        let (mut body, tape) = if policy.is_some() || !mirrors.is_empty() {
            let (recording, tape) = Recording::new(body);
            (UpstreamRequest::Recorded(recording), Some(tape))
        } else {
            (UpstreamRequest::Streamed(body), None)
        };
        // What a retry or a copy starts again from: the request as it came, before the
        // upstream's form.
        let head = (policy.is_some() || !mirrors.is_empty()).then(|| Head::of(&parts));
        if let (Some(h), true) = (&head, bodyless) {
            // Nothing to wait for: the copies go now.
            self.send_mirrors(&target, &std::mem::take(&mut mirrors), h, None, version);
        }
        // A caller's own limit wins over the route's, as in Envoy.
        let mut expiry = Limit::of(&self.deadlines, asked.timeout.or(target.timeout));
        let (mut target, mut authority) = (target, authority);
        let mut retries = 0;
        loop {
            self.start_attempt(&mut rec, &target, retries, &mut parts.headers);
            let Some((upstream_req, http2)) =
                self.upstream_request(parts, body, &target, authority, version)
            else {
                return self.bad_address(rec, request_bytes);
            };
            if let Some(l) = rec.log.as_mut() {
                l.attempted();
            }
            let sent = std::time::Instant::now();
            // In flight to this endpoint (for LEAST_REQUEST) until the answer's body is over.
            let active = target.active.map(crate::circuit_breaker::Inside::count);
            let attempt = self
                .upstreams
                .send(target.address, target.tls, http2, upstream_req);
            let per_try = policy.and_then(|p| p.per_try_timeout);
            let answer = tokio::select! {
                biased;
                answer = async {
                    match per_try {
                        None => Some(attempt.await),
                        Some(limit) => tokio::time::timeout(limit, attempt).await.ok(),
                    }
                } => answer,
                () = &mut expiry => {
                    self.record(&target, true);
                    return self.timed_out(rec, request_bytes, "");
                }
            };
            self.record(
                &target,
                answer
                    .as_ref()
                    .is_none_or(|a| a.as_ref().map_or(true, |r| r.status().is_server_error())),
            );
            if let (Some(h), false) = (&head, mirrors.is_empty()) {
                // The real upstream answered: the body has been read, and may be copied.
                let kept = tape.as_ref().and_then(Tape::replay);
                let body = Some(kept);
                self.send_mirrors(&target, &std::mem::take(&mut mirrors), h, body, version);
            }
            // Whether this failure is retried, and if not, the flag that says why.
            let mut gave_up = "";
            if let (Some(p), Some(tape), Some(h)) = (policy, &tape, &head) {
                let outcome = match &answer {
                    Some(Ok(resp)) => Outcome::Answered(resp.status(), resp.headers()),
                    Some(Err(e)) if e.is_connect() => Outcome::ConnectFailure,
                    Some(Err(e)) if e.is_refused_stream() => Outcome::RefusedStream,
                    Some(Err(_)) => Outcome::Reset,
                    None => Outcome::PerTryTimeout,
                };
                if !p.retries(outcome) {
                    if retries > 0 {
                        Stats::inc(&self.stats.retries_succeeded);
                    }
                } else if retries == p.num_retries {
                    Stats::inc(&self.stats.retry_limit_exceeded);
                    gave_up = "URX";
                } else if let Some(replay) = tape.replay() {
                    let Some(admitted) = p.admit() else {
                        Stats::inc(&self.stats.retry_overflow);
                        gave_up = "UO";
                        let mut resp =
                            self.answer(rec, request_bytes, (&target, sent), answer, gave_up);
                        if let Some(a) = active {
                            resp.body_mut().hold(a);
                        }
                        return resp;
                    };
                    retries += 1;
                    Stats::inc(&self.stats.retries);
                    end_attempt(&mut rec, &answer);
                    drop(answer);
                    tokio::select! {
                        biased;
                        () = tokio::time::sleep(p.back_off(retries)) => {}
                        () = &mut expiry => return self.timed_out(rec, request_bytes, ""),
                    }
                    drop(admitted);
                    target = self.router.again(&target);
                    if let Some(l) = rec.log.as_mut() {
                        l.upstream(target.cluster, target.address);
                    }
                    let Ok(next) = Authority::try_from(&**target.address) else {
                        return self.bad_address(rec, request_bytes);
                    };
                    authority = next;
                    parts = h.parts();
                    body = UpstreamRequest::Replayed(replay);
                    if let Some(s) = rec.span.as_mut() {
                        s.retag("upstream_address", target.address.clone());
                        s.retag("upstream_retries", i64::from(retries));
                    }
                    continue;
                }
            }
            let mut resp = self.answer(rec, request_bytes, (&target, sent), answer, gave_up);
            if let Some(a) = active {
                resp.body_mut().hold(a);
            }
            return resp;
        }
    }

    /// Sends the copies of a request to `target` (see `mirror`) and does not wait for them.
    /// `body`: `None` for a request without one; `Some(None)` when its body was not kept
    /// (over 64 KiB, or not read to its end), so it is not copied.
    fn send_mirrors(
        &self,
        target: &Target<'_>,
        mirrors: &[&Mirror],
        head: &Head,
        body: Option<Option<Replay>>,
        version: Version,
    ) {
        // Copies are given as long as the request itself at most (the listener's limit when
        // the route has none).
        let limit = target
            .timeout
            .filter(|d| !d.is_zero())
            .unwrap_or_else(|| self.deadlines.timeout());
        for m in mirrors {
            let body = match &body {
                None => Replay::empty(),
                Some(Some(kept)) => kept.clone(),
                Some(None) => {
                    Stats::inc(&self.stats.mirror_skipped);
                    continue;
                }
            };
            let copy = self.router.mirror(target, m);
            let Some((copy, authority)) = copy.and_then(|c| {
                let a = Authority::try_from(&**c.address).ok()?;
                Some((c, a))
            }) else {
                Stats::inc(&self.stats.mirror_failed);
                continue;
            };
            let mut parts = head.parts();
            m.shadow(
                &mut parts.headers,
                Some(&mut parts.uri),
                &self.tracer.formats,
            );
            let body = UpstreamRequest::Replayed(body);
            let Some((req, http2)) = self.upstream_request(parts, body, &copy, authority, version)
            else {
                Stats::inc(&self.stats.mirror_failed);
                continue;
            };
            let (upstreams, stats) = (self.upstreams.clone(), self.stats.clone());
            let (address, tls) = (copy.address.clone(), copy.tls.clone());
            tokio::spawn(async move {
                let answered = async {
                    let resp = upstreams.send(&address, &tls, http2, req).await.ok()?;
                    // Read to its end (the connection then goes back to the pool) and dropped.
                    let mut body = resp.into_body();
                    while let Some(frame) = body.frame().await {
                        frame.ok()?;
                    }
                    Some(())
                };
                match tokio::time::timeout(limit, answered).await {
                    Ok(Some(())) => Stats::inc(&stats.mirrored),
                    _ => Stats::inc(&stats.mirror_failed),
                }
            });
        }
    }

    /// With `spawn_upstream_span`: starts the span of the attempt about to go to `target`, and
    /// names it as the parent in the trace headers sent.
    fn start_attempt(
        &self,
        rec: &mut Record,
        target: &Target<'_>,
        retries: u32,
        headers: &mut http::HeaderMap,
    ) {
        let (Some(ctx), Some(span)) = (rec.spawn.as_deref_mut(), rec.span.as_ref()) else {
            return;
        };
        let mut attempt = span.attempt(target.cluster);
        Stats::inc(&self.stats.spans_started);
        attempt.tag("upstream_cluster", target.cluster.clone());
        attempt.tag("upstream_cluster.name", target.cluster.clone());
        attempt.tag("upstream_address", target.address.clone());
        attempt.tag("upstream_attempt", i64::from(retries) + 1);
        ctx.parent_span_id = Some(span.span_id());
        ctx.span_id = attempt.span_id();
        wire::propagation::inject(ctx, &self.tracer.formats, headers);
        rec.attempt = Some(Box::new(attempt));
    }

    /// Tells the outlier detector of the target's cluster how an attempt went (`failed`: a 5xx
    /// answer or none).
    fn record(&self, target: &Target<'_>, failed: bool) {
        if let Some(time) = target.record(failed) {
            Stats::inc(&self.stats.outlier_ejections);
            tracing::info!(
                "endpoint {} of cluster {} failed its requests in a row: out for {time:?}",
                target.address,
                target.cluster,
            );
        }
    }

    /// The answer to the downstream once the attempts are over: the upstream's response (with
    /// Envoy's `x-envoy-upstream-service-time`, the milliseconds since the answering attempt
    /// was `sent`), else 502 or 504; `gave_up` is the response flag saying why a retriable
    /// failure was not retried (`URX`: retries spent, `UO`: too many in flight).
    fn answer(
        &self,
        rec: Record,
        request_bytes: Arc<AtomicU64>,
        (target, sent): (&Target<'_>, std::time::Instant),
        answer: Option<Result<Response<UpstreamBody<UpstreamRequest>>, UpstreamError>>,
        gave_up: &'static str,
    ) -> Response<TracedResponse> {
        match answer {
            Some(Ok(resp)) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                for ops in target.header_ops {
                    ops.response.apply(&mut parts.headers);
                }
                parts
                    .headers
                    .insert(&UPSTREAM_SERVICE_TIME, millis_value(sent.elapsed()));
                let mut rec = rec;
                if self.mode == Mode::Outbound {
                    // The upstream names the client span (Envoy's decorator, answered).
                    if let Some(op) = parts
                        .headers
                        .get(&DECORATOR_OPERATION)
                        .and_then(|v| v.to_str().ok())
                    {
                        match (rec.attempt.as_mut(), rec.span.as_mut()) {
                            (Some(a), _) => a.rename(op),
                            (None, Some(s)) => s.rename(op),
                            (None, None) => {}
                        }
                    }
                }
                let finish = answered(rec, &parts, request_bytes, flags("-", gave_up));
                Response::from_parts(parts, TracedResponse::new(body.boxed(), finish))
            }
            Some(Err(e)) => self.unanswered(rec, request_bytes, target.address, e, gave_up),
            None => self.timed_out(rec, request_bytes, gave_up),
        }
    }

    /// The request as `target` is sent it: the route's prefix rewritten, and in the form of the
    /// protocol spoken upstream (also returned: `true` for HTTP/2). `None` when the upstream's
    /// address makes no URI.
    fn upstream_request(
        &self,
        mut parts: http::request::Parts,
        body: UpstreamRequest,
        target: &Target<'_>,
        authority: Authority,
        version: Version,
    ) -> Option<(Request<UpstreamRequest>, bool)> {
        let http2 = match target.protocol.unwrap_or(self.upstream_protocol) {
            UpstreamProtocol::Downstream => version == Version::HTTP_2,
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::Http2 => true,
        };
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        if let (Some(rewrite), Some(pq)) = (target.rewrite, &uri.path_and_query) {
            if let Some(p) = rewrite
                .apply(pq.as_str())
                .filter(|p| p.starts_with('/'))
                .and_then(|p| PathAndQuery::try_from(p).ok())
            {
                uri.path_and_query = Some(p);
            }
        }
        if http2 {
            // :scheme http, :authority the request's own (HTTP/2's, or an HTTP/1.1 request's
            // Host), else the upstream's address.
            uri.scheme = Some(Scheme::HTTP);
            let own = uri.authority.take().or_else(|| {
                let host = parts.headers.get(header::HOST)?;
                Authority::try_from(host.as_bytes()).ok()
            });
            uri.authority = Some(own.unwrap_or(authority));
            if uri.path_and_query.is_none() {
                uri.path_and_query = Some(PathAndQuery::from_static("/"));
            }
        } else {
            // HTTP/1.1 upstream: origin-form (authority-form for CONNECT), and a Host header
            // when the request brought none: its HTTP/2 `:authority` (or absolute-form URI's),
            // else the upstream's address.
            if !parts.headers.contains_key(header::HOST) {
                let value = match &uri.authority {
                    Some(a) => HeaderValue::from_str(a.as_str()),
                    None => HeaderValue::from_str(host_header(&authority)),
                };
                if let Ok(v) = value {
                    parts.headers.insert(header::HOST, v);
                }
            }
            uri.scheme = None;
            if parts.method == http::Method::CONNECT {
                uri.authority = Some(authority);
                uri.path_and_query = None;
            } else {
                uri.authority = None;
                if uri.path_and_query.is_none() {
                    uri.path_and_query = Some(PathAndQuery::from_static("/"));
                }
            }
            parts.version = Version::HTTP_11;
        }
        parts.uri = Uri::from_parts(uri).ok()?;
        Some((Request::from_parts(parts, body), http2))
    }

    /// 503 when the upstream's address makes no URI (Envoy's `UH`: no healthy upstream).
    fn bad_address(&self, rec: Record, request_bytes: Arc<AtomicU64>) -> Response<TracedResponse> {
        self.local(
            rec,
            request_bytes,
            StatusCode::SERVICE_UNAVAILABLE,
            "UH",
            "bad upstream address\n",
        )
    }

    /// 502 when the upstream could not be reached or reset before answering.
    fn unanswered(
        &self,
        mut rec: Record,
        request_bytes: Arc<AtomicU64>,
        address: &str,
        e: UpstreamError,
        gave_up: &'static str,
    ) -> Response<TracedResponse> {
        Stats::inc(&self.stats.upstream_errors);
        let flag = if e.is_connect() { "UF" } else { "UR" };
        tracing::debug!("upstream {address} failed: {e}");
        if let Some(l) = rec.log.as_mut() {
            l.failure = Some(e.to_string());
        }
        self.local(
            rec,
            request_bytes,
            StatusCode::BAD_GATEWAY,
            flags(flag, gave_up),
            "upstream connect error or disconnect/reset before headers\n",
        )
    }

    /// 504 when the upstream's response headers did not come within `timeouts.request`.
    fn timed_out(
        &self,
        rec: Record,
        request_bytes: Arc<AtomicU64>,
        gave_up: &'static str,
    ) -> Response<TracedResponse> {
        Stats::inc(&self.stats.upstream_timeouts);
        self.local(
            rec,
            request_bytes,
            StatusCode::GATEWAY_TIMEOUT,
            flags("UT", gave_up),
            "upstream request timeout\n",
        )
    }

    /// A request to switch protocols (see `tunnel`): the handshake goes to the upstream on a
    /// connection of its own; a `101` answer is passed back and both connections become a
    /// tunnel, which finishes the span when it closes. Any other answer is an ordinary response.
    async fn upgrade(
        &self,
        mut req: Request<Incoming>,
        protocol: HeaderValue,
        (address, tls): (&str, &crate::route::UpstreamTls),
        authority: Authority,
        rec: Record,
        request_bytes: Arc<AtomicU64>,
    ) -> Response<TracedResponse> {
        let downstream = hyper::upgrade::on(&mut req);
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        tunnel::restore(&mut parts.headers, protocol);
        if !parts.headers.contains_key(header::HOST) {
            if let Ok(v) = HeaderValue::from_str(host_header(&authority)) {
                parts.headers.insert(header::HOST, v);
            }
        }
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        parts.uri = match Uri::try_from(path) {
            Ok(u) => u,
            Err(_) => Uri::from_static("/"),
        };
        let body = CountedRequest::new(body, request_bytes.clone());
        let upstream_req = Request::from_parts(parts, UpstreamRequest::Streamed(body));
        let expiry = self.deadlines.start();
        let answer = tokio::select! {
            biased;
            answer = self.upstreams.send_upgrade(address, tls, upstream_req) => answer,
            () = expiry => return self.timed_out(rec, request_bytes, ""),
        };
        let mut resp = match answer {
            Ok(resp) => resp,
            Err(e) => return self.unanswered(rec, request_bytes, address, e, ""),
        };
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let finish = answered(rec, &parts, request_bytes, "-");
            return Response::from_parts(parts, TracedResponse::new(body.boxed(), finish));
        }
        let Some(protocol) = resp.headers().get(header::UPGRADE).cloned() else {
            Stats::inc(&self.stats.upstream_errors);
            return self.local(
                rec,
                request_bytes,
                StatusCode::BAD_GATEWAY,
                "UPE",
                "upstream switched protocols without naming one\n",
            );
        };
        let upstream = hyper::upgrade::on(&mut resp);
        let (mut parts, _) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        tunnel::restore(&mut parts.headers, protocol);
        let finish = answered(rec, &parts, request_bytes, "-");
        tokio::spawn(tunnel::run(
            downstream,
            upstream,
            tunnel::Open::new(&self.tunnels, &self.stats, finish),
        ));
        Response::from_parts(parts, TracedResponse::new(local_body(String::new()), None))
    }

    /// A request a fault aborts: the status asked for, or for gRPC an HTTP 200 whose
    /// `grpc-status` is the one asked for (trailers-only, as gRPC answers a failed call).
    fn aborted(
        &self,
        rec: Record,
        request_bytes: Arc<AtomicU64>,
        abort: crate::fault::Abort,
    ) -> Response<TracedResponse> {
        const BODY: &str = "fault filter abort";
        match abort {
            crate::fault::Abort::Http(status) => self.local(
                rec,
                request_bytes,
                StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                "FI",
                BODY,
            ),
            crate::fault::Abort::Grpc(code) => {
                let mut headers = http::HeaderMap::new();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/grpc"),
                );
                headers.insert("grpc-status", HeaderValue::from(code));
                headers.insert("grpc-message", HeaderValue::from_static(BODY));
                self.local_with(
                    rec,
                    request_bytes,
                    (StatusCode::OK, headers),
                    "FI",
                    Bytes::new(),
                )
            }
        }
    }

    /// An answer of the proxy's own, with the span finished as failed for 5xx.
    fn local(
        &self,
        rec: Record,
        request_bytes: Arc<AtomicU64>,
        status: StatusCode,
        flag: &'static str,
        text: &str,
    ) -> Response<TracedResponse> {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let body = Bytes::copy_from_slice(text.as_bytes());
        self.local_with(rec, request_bytes, (status, headers), flag, body)
    }

    /// An answer of the proxy's own with `headers`.
    fn local_with(
        &self,
        mut rec: Record,
        request_bytes: Arc<AtomicU64>,
        (status, headers): (StatusCode, http::HeaderMap),
        flag: &'static str,
        body: Bytes,
    ) -> Response<TracedResponse> {
        let flags = rec.flags(flag);
        if let Some(s) = rec.span.as_mut() {
            s.tag("http.status_code", i64::from(status.as_u16()));
            s.tag("response_flags", flags.clone());
            if status.is_server_error() {
                // The body's first line says why (the status's reason when it is empty).
                let text = String::from_utf8_lossy(&body);
                let why = text.lines().next().unwrap_or_default().trim_end();
                let why = match why {
                    "" => status.canonical_reason().unwrap_or("error"),
                    why => why,
                };
                // The attempt in flight (if any) got no answer: the proxy's 5xx says why.
                if let Some(a) = rec.attempt.as_mut() {
                    a.tag("response_flags", flags.clone());
                    a.error(why);
                }
                s.error(why);
            }
        }
        if let Some(l) = rec.log.as_mut() {
            l.answered(status.as_u16(), flags, &headers);
        }
        let finish = rec.finish(request_bytes);
        let mut r = Response::new(TracedResponse::new(local_body(body), finish));
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        r
    }
}

/// Compresses an answer with `gzip` (the request's compressor, when it takes gzip), if the
/// answer is one to compress.
fn compress(gzip: Option<&Compressor>, resp: &mut Response<TracedResponse>) {
    if let Some(c) = gzip {
        let status = resp.status();
        if c.apply(status, resp.headers_mut()) {
            resp.body_mut().map_inner(|b| c.wrap(b));
        }
    }
}

/// Ends the span of an attempt that is retried, with how it went.
fn end_attempt<B>(rec: &mut Record, answer: &Option<Result<Response<B>, UpstreamError>>) {
    let Some(mut a) = rec.attempt.take() else {
        return;
    };
    match answer {
        Some(Ok(resp)) => {
            let status = resp.status();
            a.tag("http.status_code", i64::from(status.as_u16()));
            if status.is_server_error() {
                a.error(&format!("upstream answered {status}"));
            }
        }
        Some(Err(e)) => a.error(&e.to_string()),
        None => a.error("per-try timeout"),
    }
    a.finish();
}

/// What is left to record of a request once the upstream answered with `parts`.
fn answered(
    mut rec: Record,
    parts: &http::response::Parts,
    request_bytes: Arc<AtomicU64>,
    flags: &'static str,
) -> Option<Finish> {
    let status = parts.status;
    let flags = rec.flags(flags);
    if let Some(a) = rec.attempt.as_mut() {
        a.tag("http.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            a.error(&format!("upstream answered {status}"));
        }
    }
    if let Some(s) = rec.span.as_mut() {
        s.tag("http.status_code", i64::from(status.as_u16()));
        s.tag("response_flags", flags.clone());
        if status.is_server_error() {
            s.error(&format!("upstream answered {status}"));
        }
    }
    if let Some(l) = rec.log.as_mut() {
        l.answered(status.as_u16(), flags, &parts.headers);
    }
    rec.finish(request_bytes)
}

/// Envoy's response flags: `flag`, and `gave_up` (why a retriable failure was not retried)
/// after it.
fn flags(flag: &'static str, gave_up: &'static str) -> &'static str {
    match (flag, gave_up) {
        (flag, "") => flag,
        ("-", gave_up) => gave_up,
        ("UF", "URX") => "UF,URX",
        ("UR", "URX") => "UR,URX",
        ("UT", "URX") => "UT,URX",
        ("UF", "UO") => "UF,UO",
        ("UR", "UO") => "UR,UO",
        ("UT", "UO") => "UT,UO",
        (flag, _) => flag,
    }
}

/// What a request passed on its way upstream, kept until its answer: the token bucket's verdict
/// (for the `x-ratelimit-*` headers) and its place in the cluster's circuit breaker.
struct Passed<'t> {
    bucket: Option<(
        &'t crate::rate_limit::TokenBucket,
        crate::rate_limit::Verdict,
    )>,
    place: Option<crate::circuit_breaker::Inside>,
}

/// The head of a request as it came (hop-by-hop headers gone), kept for a retry to start again
/// from.
struct Head {
    method: http::Method,
    uri: Uri,
    version: Version,
    headers: http::HeaderMap,
}

impl Head {
    fn of(parts: &http::request::Parts) -> Self {
        Head {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
        }
    }

    fn parts(&self) -> http::request::Parts {
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = self.method.clone();
        parts.uri = self.uri.clone();
        parts.version = self.version;
        parts.headers = self.headers.clone();
        parts
    }
}

/// A header value of whole milliseconds; the usual few (below 20) without an allocation.
fn millis_value(d: Duration) -> HeaderValue {
    const SMALL: [&str; 20] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
        "17", "18", "19",
    ];
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match SMALL.get(ms as usize) {
        Some(s) => HeaderValue::from_static(s),
        None => HeaderValue::from(ms),
    }
}

/// `host_rewrite_literal`: the request's Host (and an HTTP/2 request's authority) made `host`.
fn rewrite_host(parts: &mut http::request::Parts, host: &HeaderValue) {
    parts.headers.insert(header::HOST, host.clone());
    if parts.uri.authority().is_some() {
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.authority = Authority::try_from(host.as_bytes()).ok();
        if let Ok(u) = Uri::from_parts(uri) {
            parts.uri = u;
        }
    }
}

/// The Host header for an upstream address: its port left out when it is HTTP's default (80), as
/// HTTP clients write it.
fn host_header(authority: &Authority) -> &str {
    match authority.port_u16() {
        Some(80) => authority.host(),
        _ => authority.as_str(),
    }
}

/// The method as a static string for the standard ones (no allocation), else a copy.
fn method_name(m: &http::Method) -> TagValue {
    let known = match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        other => return TagValue::Text(other.to_owned()),
    };
    TagValue::Static(known)
}

fn protocol_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// A random UUID (version 4), as Envoy generates for `x-request-id`.
fn new_request_id() -> String {
    let mut b: [u8; 16] = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        h(0..4),
        h(4..6),
        h(6..8),
        h(8..10),
        h(10..16)
    )
}

/// At the edge, as Envoy with `use_remote_address`: the client's address is appended to
/// `x-forwarded-for` (after any the request brought, in order) and `x-forwarded-proto` says
/// `https` on a TLS listener, else `http` unless the request said otherwise. Sidecars leave
/// both as they come.
fn forwarded_for(headers: &mut hyper::HeaderMap, peer: SocketAddr, secure: bool) {
    let ip = peer.ip().to_string();
    let before: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let value = if before.is_empty() {
        ip
    } else {
        format!("{}, {ip}", before.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert("x-forwarded-for", v);
    }
    if secure {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    } else if !headers.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
}
