//! The bodies that stream through the proxy, and the header hygiene of forwarding.
//!
//! Bodies are never collected: [`CountedRequest`] counts request bytes as the upstream pulls them,
//! [`TracedResponse`] counts response bytes as the client pulls them and finishes the span when the
//! body ends, fails, or is dropped (a client that hangs up mid-stream still yields a span).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

use crate::access_log::Entry;
use crate::circuit_breaker::Inside;
use crate::retry::{Recording, Replay};
use crate::span::ActiveSpan;

pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// A request body on its way upstream: streamed as it comes; streamed and kept for a retry
/// (a route with a retry policy); or a kept one sent again.
pub enum UpstreamRequest {
    Streamed(CountedRequest<hyper::body::Incoming>),
    Recorded(Recording<CountedRequest<hyper::body::Incoming>>),
    Replayed(Replay),
}

impl Body for UpstreamRequest {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamRequest::Streamed(b) => Pin::new(b).poll_frame(cx),
            UpstreamRequest::Recorded(b) => Pin::new(b).poll_frame(cx),
            UpstreamRequest::Replayed(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamRequest::Streamed(b) => b.is_end_stream(),
            UpstreamRequest::Recorded(b) => b.is_end_stream(),
            UpstreamRequest::Replayed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamRequest::Streamed(b) => b.size_hint(),
            UpstreamRequest::Recorded(b) => b.size_hint(),
            UpstreamRequest::Replayed(b) => b.size_hint(),
        }
    }
}

/// A request body on its way upstream, counting its bytes.
pub struct CountedRequest<B> {
    inner: B,
    bytes: Arc<AtomicU64>,
}

impl<B> CountedRequest<B> {
    pub fn new(inner: B, bytes: Arc<AtomicU64>) -> Self {
        CountedRequest { inner, bytes }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for CountedRequest<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
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

/// What a request leaves behind when it is over: its span (when sampled) and its access log
/// line (when the listener logs).
#[derive(Default)]
pub struct Record {
    pub span: Option<ActiveSpan>,
    pub log: Option<Box<Entry>>,
    /// A fault delayed it (Envoy's `DI`).
    pub delayed: bool,
    /// With `spawn_upstream_span` (and a span): the context the attempts' spans continue...
    pub spawn: Option<Box<wire::propagation::TraceContext>>,
    /// ...and the span of the attempt in flight.
    pub attempt: Option<Box<ActiveSpan>>,
}

impl Record {
    /// Envoy's response flags for the answer: `flag` (`-` for none), with `DI` when a fault
    /// delayed the request (in Envoy's order: after the upstream's flags, before `FI`/`RL`).
    pub fn flags(&self, flag: &'static str) -> std::borrow::Cow<'static, str> {
        use std::borrow::Cow;
        match (self.delayed, flag) {
            (false, flag) => Cow::Borrowed(flag),
            (true, "-") => Cow::Borrowed("DI"),
            (true, "FI") => Cow::Borrowed("DI,FI"),
            (true, "RL") => Cow::Borrowed("DI,RL"),
            (true, flag) => Cow::Owned(format!("{flag},DI")),
        }
    }

    /// What is left to do once the response begins (`None`: nothing to record).
    pub fn finish(self, request_bytes: Arc<AtomicU64>) -> Option<Finish> {
        if self.span.is_none() && self.log.is_none() {
            return None;
        }
        Some(Finish {
            span: self.span,
            attempt: self.attempt,
            log: self.log,
            request_bytes,
            response_bytes: 0,
        })
    }
}

/// What is left to record when the response is over.
pub struct Finish {
    pub span: Option<ActiveSpan>,
    /// The answering upstream attempt's span, ended with the response.
    pub attempt: Option<Box<ActiveSpan>>,
    pub log: Option<Box<Entry>>,
    pub request_bytes: Arc<AtomicU64>,
    pub response_bytes: u64,
}

impl Finish {
    /// For an upgraded connection: `sent` bytes went upstream, `received` came back.
    pub fn tunnel_done(mut self, sent: u64, received: u64, failed: Option<String>) {
        self.request_bytes.fetch_add(sent, Ordering::Relaxed);
        self.response_bytes = received;
        self.done(failed);
    }

    fn done(self, failed: Option<String>) {
        let request_bytes = self.request_bytes.load(Ordering::Relaxed);
        if let Some(mut attempt) = self.attempt {
            if let Some(why) = &failed {
                attempt.error(why);
            }
            attempt.finish();
        }
        if let Some(mut span) = self.span {
            span.tag("request_size", request_bytes as i64);
            span.tag("response_size", self.response_bytes as i64);
            if let Some(why) = failed {
                span.error(&why);
            }
            span.finish();
        }
        if let Some(log) = self.log {
            log.finish(request_bytes, self.response_bytes);
        }
    }
}

/// A response body on its way to the client; finishes the span at its end.
pub struct TracedResponse {
    inner: ProxyBody,
    finish: Option<Finish>,
    /// The request's place in its cluster's circuit breaker and its endpoint's count of
    /// requests in flight, kept until the body is over.
    held: Vec<Inside>,
}

impl TracedResponse {
    pub fn new(inner: ProxyBody, finish: Option<Finish>) -> Self {
        TracedResponse {
            inner,
            finish,
            held: Vec::new(),
        }
    }

    /// Changes the body before it is sent (compression).
    pub fn map_inner(&mut self, f: impl FnOnce(ProxyBody) -> ProxyBody) {
        let inner = std::mem::replace(&mut self.inner, local_body(Bytes::new()));
        self.inner = f(inner);
    }

    /// Keeps `place` until the response is over (or the client left).
    pub fn hold(&mut self, place: Inside) {
        self.held.push(place);
    }
}

impl Body for TracedResponse {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(f)) = (frame.data_ref(), self.finish.as_mut()) {
                    f.response_bytes += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    if let Some(f) = self.finish.take() {
                        f.done(None);
                    }
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(f) = self.finish.take() {
                    f.done(Some(format!("upstream response body failed: {e}")));
                }
            }
            Poll::Ready(None) => {
                if let Some(f) = self.finish.take() {
                    f.done(None);
                }
            }
            Poll::Pending => {}
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

impl Drop for TracedResponse {
    fn drop(&mut self) {
        if let Some(f) = self.finish.take() {
            let failed = (!self.inner.is_end_stream())
                .then(|| "downstream went away before the response ended".to_owned());
            f.done(failed);
        }
    }
}

/// A small body the proxy answers itself (404, 502, 503, 504).
pub fn local_body(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those named in `Connection`.
/// `te: trailers` is kept: gRPC needs it end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // `Connection: keep-alive` and `close` (nearly every response) name nothing left to remove.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.eq_ignore_ascii_case("keep-alive") && !n.eq_ignore_ascii_case("close"))
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        KEEP_ALIVE.clone(),
        PROXY_CONNECTION.clone(),
    ] {
        headers.remove(n);
    }
    let te_trailers = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    headers.remove(header::TE);
    if te_trailers {
        headers.insert(header::TE, http::HeaderValue::from_static("trailers"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_te_trailers_stays() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-connection", "close"),
            ("te", "gzip, trailers"),
            ("x-b3-traceid", "463ac35c9f6413ad"),
        ] {
            h.append(
                HeaderName::from_static(k),
                http::HeaderValue::from_static(v),
            );
        }
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            left,
            [("x-b3-traceid", "463ac35c9f6413ad"), ("te", "trailers")]
        );
        let mut h = HeaderMap::new();
        h.insert(header::TE, http::HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty());
    }
}
