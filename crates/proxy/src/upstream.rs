//! The upstream connections of one worker: HTTP/1.1 keep-alive connections taken and given back
//! one request at a time, and one multiplexed HTTP/2 (h2c) connection per upstream address.
//!
//! Each worker (one single-threaded runtime) owns its `Upstreams`, so a request, its upstream
//! connection and the connection's task stay on one thread. This replaces hyper-util's pooled
//! `Client`, whose general machinery cost each request a pool checkout through a hashed key, a
//! spawned task to give the connection back, and `Extensions` maps (`perf`, see BENCHMARKS.md).
//! The mutex keeps the futures `Send` (hyper's HTTP/2 server spawns streams as tasks); it is only
//! ever taken from the worker's own thread, so it is never contended.
//!
//! What it keeps from the pooled client:
//! - keep-alive reuse, most recently used connection first; an HTTP/1.1 connection goes back to
//!   the pool only once its response has been read to the end (else hyper closes it);
//! - a pooled connection that turns out closed before the request was written is replaced by a
//!   new one, transparently (the upstream closed an idle keep-alive connection);
//! - `timeouts.connect` on connecting, and `timeouts.idle` for connections left unused: a reaper
//!   task closes them between `idle` and 1.5 × `idle` (it sleeps without a timer while the pool
//!   is empty);
//! - errors that tell a failed connect (`UF`) from a failed request (`UR`);
//! - and connections made over TLS when the route's cluster or the listener says so (ALPN `h2`
//!   for an HTTP/2 connection, `http/1.1` otherwise; a failed handshake is a failed connect).
//!   Connections are pooled by address and TLS settings together, so a cluster in cleartext
//!   and one over TLS never share one.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::route::UpstreamTls;

/// Why a request could not be sent upstream or got no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("connecting to {address} timed out")]
    ConnectTimeout { address: String },
    #[error("TLS with {address} failed: {source}")]
    Tls {
        address: String,
        source: std::io::Error,
    },
    #[error("handshake with {address} failed: {source}")]
    Handshake {
        address: String,
        source: hyper::Error,
    },
    #[error("upstream request failed: {0}")]
    Request(#[source] hyper::Error),
}

impl UpstreamError {
    /// The connection could not be made (Envoy's `UF`), as against failing once made (`UR`).
    pub fn is_connect(&self) -> bool {
        !matches!(self, UpstreamError::Request(_))
    }

    /// An HTTP/2 upstream reset the stream with REFUSED_STREAM: it did not process the request.
    pub fn is_refused_stream(&self) -> bool {
        let UpstreamError::Request(e) = self else {
            return false;
        };
        let mut source: Option<&(dyn StdError + 'static)> = e.source();
        while let Some(s) = source {
            if let Some(h2) = s.downcast_ref::<h2::Error>() {
                return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
            }
            source = s.source();
        }
        false
    }
}

/// One worker's connections to every upstream address it has talked to.
pub struct Upstreams<B> {
    connect_timeout: Duration,
    idle_timeout: Duration,
    state: Mutex<State<B>>,
    /// Wakes the reaper when a connection is pooled while it sleeps.
    pooled: Notify,
}

struct State<B> {
    /// Never removed from, so an index names a host for as long as the worker runs.
    hosts: Vec<Host<B>>,
    /// Pooled connections (idle HTTP/1.1 ones and the HTTP/2 ones).
    pooled: usize,
    /// Whether the reaper is sweeping (else it waits for [`Upstreams::pooled`]).
    reaping: bool,
}

struct Host<B> {
    address: Box<str>,
    tls: UpstreamTls,
    /// Idle HTTP/1.1 connections, the most recently used last.
    idle: Vec<(http1::SendRequest<B>, Instant)>,
    /// The HTTP/2 connection and when it was last given a request.
    http2: Option<(http2::SendRequest<B>, Instant)>,
}

impl<B> State<B> {
    fn host(&mut self, address: &str, tls: &UpstreamTls) -> usize {
        let same_tls = |h: &Host<B>| match (&h.tls, tls) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        match self
            .hosts
            .iter()
            .position(|h| &*h.address == address && same_tls(h))
        {
            Some(i) => i,
            None => {
                self.hosts.push(Host {
                    address: address.into(),
                    tls: tls.clone(),
                    idle: Vec::new(),
                    http2: None,
                });
                self.hosts.len() - 1
            }
        }
    }
}

impl<B> Upstreams<B> {
    fn lock(&self) -> MutexGuard<'_, State<B>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn give_back(&self, host: usize, sender: http1::SendRequest<B>) {
        if sender.is_closed() {
            return;
        }
        let mut state = self.lock();
        state.hosts[host].idle.push((sender, Instant::now()));
        self.pooled_one(state);
    }

    /// Counts a newly pooled connection, waking the reaper if it sleeps.
    fn pooled_one(&self, mut state: MutexGuard<'_, State<B>>) {
        state.pooled += 1;
        if !state.reaping {
            state.reaping = true;
            drop(state);
            self.pooled.notify_one();
        }
    }
}

impl<B> Upstreams<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Upstreams {
            connect_timeout,
            idle_timeout,
            state: Mutex::new(State {
                hosts: Vec::new(),
                pooled: 0,
                reaping: false,
            }),
            pooled: Notify::new(),
        })
    }

    /// Sends `req` to `address` (over TLS with `tls`) over HTTP/2 (`http2`) or HTTP/1.1, on a
    /// pooled connection when there is one. The request must already be in the form the
    /// protocol wants (origin-form with a `Host` header for HTTP/1.1, absolute for HTTP/2).
    pub async fn send(
        self: &Arc<Self>,
        address: &str,
        tls: &UpstreamTls,
        http2: bool,
        req: Request<B>,
    ) -> Result<Response<UpstreamBody<B>>, UpstreamError> {
        if http2 {
            self.send_http2(address, tls, req).await
        } else {
            self.send_http1(address, tls, req).await
        }
    }

    async fn send_http1(
        self: &Arc<Self>,
        address: &str,
        tls: &UpstreamTls,
        mut req: Request<B>,
    ) -> Result<Response<UpstreamBody<B>>, UpstreamError> {
        let host = self.lock().host(address, tls);
        while let Some(mut sender) = self.checkout_http1(host) {
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.give_back_after(resp, host, sender)),
                Err(mut e) => match e.take_message() {
                    // Closed before the request was written: another connection takes it.
                    Some(back) => req = back,
                    None => return Err(UpstreamError::Request(e.into_error())),
                },
            }
        }
        let mut sender = self.new_http1(address, tls).await?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Request)?;
        Ok(self.give_back_after(resp, host, sender))
    }

    /// A new HTTP/1.1 connection to `address`, driven by a task of its own (able to switch
    /// protocols, for `send_upgrade`; a pooled connection never does).
    async fn new_http1(
        &self,
        address: &str,
        tls: &UpstreamTls,
    ) -> Result<http1::SendRequest<B>, UpstreamError> {
        let io = self.connect(address, tls, false).await?;
        let (sender, conn) =
            http1::handshake(io)
                .await
                .map_err(|source| UpstreamError::Handshake {
                    address: address.to_owned(),
                    source,
                })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("upstream connection ended: {e}");
            }
        });
        Ok(sender)
    }

    /// Sends a protocol-upgrade request (see `tunnel`) on a new HTTP/1.1 connection of its own,
    /// never pooled: once the upstream switches protocols, the connection belongs to the tunnel.
    pub async fn send_upgrade(
        &self,
        address: &str,
        tls: &UpstreamTls,
        req: Request<B>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.new_http1(address, tls)
            .await?
            .send_request(req)
            .await
            .map_err(UpstreamError::Request)
    }

    /// The most recently used idle connection that can take a request now. Closed ones are
    /// dropped on the way; ones not ready yet (still finishing their last exchange) are kept.
    fn checkout_http1(&self, host: usize) -> Option<http1::SendRequest<B>> {
        let mut state = self.lock();
        let mut found = None;
        let mut removed = 0;
        let idle = &mut state.hosts[host].idle;
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            if idle[i].0.is_closed() {
                idle.remove(i);
                removed += 1;
            } else if idle[i].0.is_ready() {
                found = Some(idle.remove(i).0);
                removed += 1;
                break;
            }
        }
        state.pooled -= removed;
        found
    }

    fn give_back_after(
        self: &Arc<Self>,
        resp: Response<Incoming>,
        host: usize,
        sender: http1::SendRequest<B>,
    ) -> Response<UpstreamBody<B>> {
        resp.map(|inner| UpstreamBody {
            inner,
            back: Some(GiveBack {
                upstreams: self.clone(),
                host,
                sender,
            }),
        })
    }

    async fn send_http2(
        self: &Arc<Self>,
        address: &str,
        tls: &UpstreamTls,
        mut req: Request<B>,
    ) -> Result<Response<UpstreamBody<B>>, UpstreamError> {
        let pooled = {
            let mut state = self.lock();
            let host = state.host(address, tls);
            match &mut state.hosts[host].http2 {
                Some((sender, used)) if !sender.is_closed() => {
                    *used = Instant::now();
                    Some(sender.clone())
                }
                _ => None,
            }
        };
        if let Some(mut sender) = pooled {
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(resp.map(UpstreamBody::unpooled)),
                Err(mut e) => match e.take_message() {
                    Some(back) => req = back,
                    None => return Err(UpstreamError::Request(e.into_error())),
                },
            }
        }
        let io = self.connect(address, tls, true).await?;
        let (mut sender, conn) =
            http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|source| UpstreamError::Handshake {
                    address: address.to_owned(),
                    source,
                })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("upstream HTTP/2 connection ended: {e}");
            }
        });
        {
            let mut state = self.lock();
            let host = state.host(address, tls);
            let before = state.hosts[host]
                .http2
                .replace((sender.clone(), Instant::now()));
            if before.is_none() {
                self.pooled_one(state);
            }
        }
        let resp = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Request)?;
        Ok(resp.map(UpstreamBody::unpooled))
    }

    /// A connection to `address` for HTTP/2 (`http2`) or HTTP/1.1, over TLS with `tls`; the TCP
    /// connect and the handshake share the connect timeout.
    async fn connect(
        &self,
        address: &str,
        tls: &UpstreamTls,
        http2: bool,
    ) -> Result<TokioIo<UpstreamIo>, UpstreamError> {
        let connect = async {
            let stream = tokio::net::TcpStream::connect(address)
                .await
                .map_err(|source| UpstreamError::Connect {
                    address: address.to_owned(),
                    source,
                })?;
            let _ = stream.set_nodelay(true);
            match tls {
                None => Ok(UpstreamIo::Plain(stream)),
                Some(tls) => match tls.get().connect(stream, address, http2).await {
                    Ok(stream) => Ok(UpstreamIo::Tls(Box::new(stream))),
                    Err(source) => Err(UpstreamError::Tls {
                        address: address.to_owned(),
                        source,
                    }),
                },
            }
        };
        let io = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout {
                address: address.to_owned(),
            })??;
        Ok(TokioIo::new(io))
    }

    /// Connects to `address` (and completes the TLS handshake with `tls`), then closes: a TCP
    /// health check.
    pub async fn probe(&self, address: &str, tls: &UpstreamTls) -> Result<(), UpstreamError> {
        self.connect(address, tls, false).await.map(drop)
    }

    /// Runs for as long as the worker does: while connections are pooled, closes those unused for
    /// `idle_timeout` (every half of it, at least every 50 ms); with none, waits without a timer.
    pub async fn reaper(self: Arc<Self>) {
        let every = (self.idle_timeout / 2).max(Duration::from_millis(50));
        loop {
            self.pooled.notified().await;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate
            loop {
                tick.tick().await;
                if self.reap(Instant::now()) == 0 {
                    break;
                }
            }
        }
    }

    /// Drops the connections idle since `idle_timeout` before `now`, and closed ones; returns how
    /// many are left pooled (none: the reaper goes to sleep, marked under the same lock).
    fn reap(&self, now: Instant) -> usize {
        let mut state = self.lock();
        let timeout = self.idle_timeout;
        let alive = |since: Instant| now.saturating_duration_since(since) < timeout;
        let mut left = 0;
        for host in &mut state.hosts {
            host.idle
                .retain(|(s, since)| !s.is_closed() && alive(*since));
            left += host.idle.len();
            if let Some((s, used)) = &host.http2 {
                if s.is_closed() || !alive(*used) {
                    host.http2 = None;
                } else {
                    left += 1;
                }
            }
        }
        state.pooled = left;
        if left == 0 {
            state.reaping = false;
        }
        left
    }
}

/// An upstream response body; an HTTP/1.1 connection goes back to the pool once it has been read
/// to its end, and is closed (dropped) if it is not.
pub struct UpstreamBody<B> {
    inner: Incoming,
    back: Option<GiveBack<B>>,
}

struct GiveBack<B> {
    upstreams: Arc<Upstreams<B>>,
    host: usize,
    sender: http1::SendRequest<B>,
}

impl<B> UpstreamBody<B> {
    fn unpooled(inner: Incoming) -> Self {
        UpstreamBody { inner, back: None }
    }
}

impl<B> UpstreamBody<B> {
    fn ended(&mut self) {
        if let Some(b) = self.back.take() {
            b.upstreams.give_back(b.host, b.sender);
        }
    }
}

impl<B> Body for UpstreamBody<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.ended(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.ended(),
            // The connection is not reused.
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for UpstreamBody<B> {
    fn drop(&mut self) {
        // A body with nothing to read (a 204, a HEAD) may never be polled.
        if self.inner.is_end_stream() {
            self.ended();
        }
    }
}

/// An upstream connection: plain TCP, or TLS over it (`upstream_tls`).
pub(crate) enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Empty, Full};

    use super::*;

    /// A test upstream: counts the connections it accepted and those still open.
    struct App {
        addr: SocketAddr,
        accepted: Arc<AtomicUsize>,
        open: Arc<AtomicUsize>,
    }

    #[derive(Clone, Copy)]
    enum Serve {
        /// HTTP/1.1 keep-alive and h2c, answering "hello" after `delay`.
        Normal { delay: Duration },
        /// HTTP/1.1 closing each connection after its response.
        Close,
    }

    async fn app(serve: Serve) -> App {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (a, o) = (accepted.clone(), open.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    return;
                };
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let o = o.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| async move {
                        if let Serve::Normal { delay } = serve {
                            tokio::time::sleep(delay).await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
                    });
                    let io = TokioIo::new(stream);
                    match serve {
                        Serve::Normal { .. } => {
                            let _ =
                                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                    .serve_connection(io, svc)
                                    .await;
                        }
                        Serve::Close => {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .keep_alive(false)
                                .serve_connection(io, svc)
                                .await;
                        }
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        App {
            addr,
            accepted,
            open,
        }
    }

    type Pool = Arc<Upstreams<Empty<Bytes>>>;

    fn pool(idle: Duration) -> Pool {
        let p = Upstreams::new(Duration::from_secs(2), idle);
        tokio::spawn(p.clone().reaper());
        p
    }

    fn get(addr: SocketAddr, http2: bool) -> Request<Empty<Bytes>> {
        let uri = if http2 {
            format!("http://{addr}/")
        } else {
            "/".to_owned()
        };
        Request::get(uri)
            .header(http::header::HOST, addr.to_string())
            .body(Empty::new())
            .unwrap()
    }

    async fn read(resp: Response<UpstreamBody<Empty<Bytes>>>) -> Bytes {
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    fn pooled(p: &Pool) -> usize {
        p.lock().pooled
    }

    #[tokio::test]
    async fn http1_connections_are_reused_once_read_to_the_end() {
        let app = app(Serve::Normal {
            delay: Duration::ZERO,
        })
        .await;
        let p = pool(Duration::from_secs(60));
        let addr = app.addr.to_string();
        for _ in 0..5 {
            let resp = p
                .send(&addr, &None, false, get(app.addr, false))
                .await
                .unwrap();
            assert_eq!(read(resp).await, "hello");
        }
        assert_eq!(app.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pooled(&p), 1);

        // Two at once need two connections; both are kept.
        let (a, b) = tokio::join!(
            p.send(&addr, &None, false, get(app.addr, false)),
            p.send(&addr, &None, false, get(app.addr, false))
        );
        let (a, b) = tokio::join!(read(a.unwrap()), read(b.unwrap()));
        assert_eq!((a, b), ("hello".into(), "hello".into()));
        assert_eq!(app.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pooled(&p), 2);
    }

    #[tokio::test]
    async fn a_response_not_read_to_the_end_closes_its_connection() {
        let app = app(Serve::Normal {
            delay: Duration::ZERO,
        })
        .await;
        let p = pool(Duration::from_secs(60));
        let addr = app.addr.to_string();
        let resp = p
            .send(&addr, &None, false, get(app.addr, false))
            .await
            .unwrap();
        drop(resp);
        assert_eq!(pooled(&p), 0);
        let resp = p
            .send(&addr, &None, false, get(app.addr, false))
            .await
            .unwrap();
        assert_eq!(read(resp).await, "hello");
        assert_eq!(app.accepted.load(Ordering::SeqCst), 2);
        for _ in 0..100 {
            if app.open.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            app.open.load(Ordering::SeqCst),
            1,
            "the unread one is closed"
        );
    }

    #[tokio::test]
    async fn a_pooled_connection_the_upstream_closed_is_replaced() {
        let app = app(Serve::Close).await;
        let p = pool(Duration::from_secs(60));
        let addr = app.addr.to_string();
        for _ in 0..3 {
            let resp = p
                .send(&addr, &None, false, get(app.addr, false))
                .await
                .unwrap();
            assert_eq!(read(resp).await, "hello");
            // Let the closing reach the pooled connection, or not: either way the next works.
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let resp = p
            .send(&addr, &None, false, get(app.addr, false))
            .await
            .unwrap();
        assert_eq!(read(resp).await, "hello");
        assert_eq!(app.accepted.load(Ordering::SeqCst), 4);
    }

    /// An upstream that keeps connections alive as far as HTTP says, but closes each one 20 ms
    /// after its first response, as a server with a short keep-alive timeout does.
    async fn silently_closing_app() -> (SocketAddr, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
                    let _ = stream.write_all(answer).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn a_pooled_connection_closed_while_idle_is_replaced() {
        let (app, accepted) = silently_closing_app().await;
        let p = pool(Duration::from_secs(60));
        let addr = app.to_string();
        for i in 1..=3 {
            let resp = p.send(&addr, &None, false, get(app, false)).await.unwrap();
            assert_eq!(read(resp).await, "hello");
            assert_eq!(pooled(&p), 1, "kept: HTTP said keep-alive");
            tokio::time::sleep(Duration::from_millis(60)).await;
            assert_eq!(accepted.load(Ordering::SeqCst), i);
        }
    }

    /// An HTTP/2 upstream that refuses the stream (h2's server resetting it REFUSED_STREAM, as
    /// one at its concurrency limit or going away does) is told apart from other resets, so
    /// that `retry_on: refused-stream` can retry it.
    #[tokio::test]
    async fn a_refused_stream_is_told_apart_from_other_resets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut conn = h2::server::handshake(tcp).await.unwrap();
            let mut n = 0;
            while let Some(Ok((_, mut respond))) = conn.accept().await {
                n += 1;
                respond.send_reset(if n == 1 {
                    h2::Reason::REFUSED_STREAM
                } else {
                    h2::Reason::INTERNAL_ERROR
                });
            }
        });
        let p = pool(Duration::from_secs(60));
        let target = addr.to_string();
        let fail = |r: Result<Response<_>, UpstreamError>| match r {
            Ok(resp) => panic!("answered {}", resp.status()),
            Err(e) => e,
        };
        let refused = fail(p.send(&target, &None, true, get(addr, true)).await);
        assert!(refused.is_refused_stream(), "{refused:?}");
        assert!(!refused.is_connect());
        let reset = fail(p.send(&target, &None, true, get(addr, true)).await);
        assert!(!reset.is_refused_stream(), "{reset:?}");
    }

    #[tokio::test]
    async fn http2_requests_share_one_connection() {
        let app = app(Serve::Normal {
            delay: Duration::from_millis(100),
        })
        .await;
        let p = pool(Duration::from_secs(60));
        let addr = app.addr.to_string();
        // The first makes the connection; the next ten run on it at the same time.
        let resp = p
            .send(&addr, &None, true, get(app.addr, true))
            .await
            .unwrap();
        assert_eq!(read(resp).await, "hello");
        let started = Instant::now();
        let answers = (0..10).map(|_| {
            let (p, addr) = (p.clone(), addr.clone());
            let req = get(app.addr, true);
            tokio::spawn(async move { read(p.send(&addr, &None, true, req).await.unwrap()).await })
        });
        for a in answers.collect::<Vec<_>>() {
            assert_eq!(a.await.unwrap(), "hello");
        }
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "multiplexed"
        );
        assert_eq!(app.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let app = app(Serve::Normal {
            delay: Duration::ZERO,
        })
        .await;
        let p = pool(Duration::from_millis(200));
        let addr = app.addr.to_string();
        let resp = p
            .send(&addr, &None, false, get(app.addr, false))
            .await
            .unwrap();
        assert_eq!(read(resp).await, "hello");
        let resp = p
            .send(&addr, &None, true, get(app.addr, true))
            .await
            .unwrap();
        assert_eq!(read(resp).await, "hello");
        assert_eq!(app.open.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(app.open.load(Ordering::SeqCst), 2, "not before the timeout");
        let mut closed = false;
        for _ in 0..100 {
            if app.open.load(Ordering::SeqCst) == 0 {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(closed, "both closed after the idle timeout");
        assert_eq!(pooled(&p), 0);
        assert!(!p.lock().reaping, "the reaper sleeps with nothing pooled");

        // And the pool works again afterwards.
        let resp = p
            .send(&addr, &None, false, get(app.addr, false))
            .await
            .unwrap();
        assert_eq!(read(resp).await, "hello");
        assert_eq!(app.accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        drop(tcp);
        let p = pool(Duration::from_secs(60));
        for http2 in [false, true] {
            match p
                .send(&addr.to_string(), &None, http2, get(addr, http2))
                .await
            {
                Err(e) => assert!(e.is_connect(), "{e}"),
                Ok(_) => panic!("answered by a closed port"),
            }
        }
    }
}
