//! Active health checking of a cluster's endpoints (Envoy's cluster `health_checks`): every
//! `interval` each endpoint gets a check of its own, an HTTP GET whose status must be expected, a
//! TCP connect, or a call to the gRPC health service (`grpc.health.v1.Health/Check`) that must
//! answer `SERVING`, each within `timeout`. Outlier detection (`outlier`) learns from the requests
//! that already failed; this finds an endpoint down (or draining, or not yet ready) before a
//! request is sent to it, and brings it back when it answers again.
//!
//! An endpoint starts *pending*: its first check alone decides whether it is healthy. After that
//! `unhealthy_threshold` failures in a row make a healthy endpoint unhealthy and
//! `healthy_threshold` successes in a row the other way round. Only healthy endpoints take
//! requests; when none is (at start, before any check has answered, or when all fail), requests
//! go round-robin over all of them rather than nowhere (Envoy's panic routing), as with ejections.
//!
//! The checks run on the proxy's main runtime, one task per endpoint; the state is shared with
//! the workers through one atomic per endpoint, which the request path only loads. A check's
//! connection is kept for the next one (Envoy's `reuse_connection`), and checks carry
//! `user-agent: meshtrace/HC` and a B3 "do not sample" (`b3: 0`), so that the sidecar or app
//! behind the endpoint does not start a trace for each one.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

use crate::config::{HealthCheck, HealthCheckKind, StatusRange};
use crate::route::UpstreamTls;
use crate::upstream::Upstreams;

/// The health of one cluster's endpoints (in the cluster's endpoint order) and its checks' counts.
#[derive(Debug)]
pub struct ClusterHealth {
    endpoints: Vec<AtomicU8>,
    /// Checks that passed, and that failed (timeouts included).
    pub successes: AtomicU64,
    pub failures: AtomicU64,
}

/// Where an endpoint stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Not checked yet.
    Pending = 0,
    Healthy = 1,
    Unhealthy = 2,
}

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Pending,
        }
    }

    /// The label `/metrics` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Health::Pending => "pending",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

impl ClusterHealth {
    pub fn new(endpoints: usize) -> Self {
        ClusterHealth {
            endpoints: (0..endpoints).map(|_| AtomicU8::new(0)).collect(),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Whether endpoint `i` takes requests (when some endpoint does: see the module's doc).
    pub fn healthy(&self, i: usize) -> bool {
        self.get(i) == Health::Healthy
    }

    pub fn get(&self, i: usize) -> Health {
        Health::from_u8(self.endpoints[i].load(Ordering::Relaxed))
    }

    pub(crate) fn set(&self, i: usize, h: Health) {
        self.endpoints[i].store(h as u8, Ordering::Relaxed);
    }

    /// How many endpoints are pending, healthy and unhealthy now.
    pub fn counts(&self) -> [(Health, usize); 3] {
        let mut counts = [
            (Health::Healthy, 0),
            (Health::Unhealthy, 0),
            (Health::Pending, 0),
        ];
        for i in 0..self.endpoints.len() {
            let h = self.get(i);
            if let Some(c) = counts.iter_mut().find(|(k, _)| *k == h) {
                c.1 += 1;
            }
        }
        counts
    }
}

/// Results in a row of one endpoint's checks, and what they make of its health.
#[derive(Debug, Default)]
struct Streak {
    successes: u32,
    failures: u32,
}

impl Streak {
    /// The endpoint's health after a check that `passed`, from `now`.
    fn observe(&mut self, now: Health, passed: bool, c: &HealthCheck) -> Health {
        if passed {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        }
        match (now, passed) {
            (Health::Pending, true) => Health::Healthy,
            (Health::Pending, false) => Health::Unhealthy,
            (Health::Healthy, false) if self.failures >= c.unhealthy_threshold => Health::Unhealthy,
            (Health::Unhealthy, true) if self.successes >= c.healthy_threshold => Health::Healthy,
            (h, _) => h,
        }
    }
}

/// What a cluster's checks need to know of it.
pub struct Cluster {
    /// The listener's and cluster's names, for logs.
    pub listener: String,
    pub name: String,
    pub endpoints: Vec<String>,
    pub tls: UpstreamTls,
    pub check: HealthCheck,
    pub health: Arc<ClusterHealth>,
}

/// Starts checking every endpoint of `cluster` on the current runtime, one task each.
pub fn spawn(cluster: Cluster) -> Vec<tokio::task::JoinHandle<()>> {
    let cluster = Arc::new(cluster);
    // A check's connect is bounded by the check's timeout (the whole check is, too).
    let upstreams = Upstreams::<Full<Bytes>>::new(cluster.check.timeout, Duration::MAX);
    (0..cluster.endpoints.len())
        .map(|i| {
            let (cluster, upstreams) = (cluster.clone(), upstreams.clone());
            tokio::spawn(async move { run(&cluster, i, &upstreams).await })
        })
        .collect()
}

async fn run(cluster: &Cluster, i: usize, upstreams: &Arc<Upstreams<Full<Bytes>>>) {
    let c = &cluster.check;
    let address = &cluster.endpoints[i];
    let mut streak = Streak::default();
    loop {
        let outcome = match tokio::time::timeout(c.timeout, check(cluster, i, upstreams)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {:?}", c.timeout)),
        };
        let counter = match outcome {
            Ok(()) => &cluster.health.successes,
            Err(_) => &cluster.health.failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let was = cluster.health.get(i);
        let now = streak.observe(was, outcome.is_ok(), c);
        if now != was {
            cluster.health.set(i, now);
            match &outcome {
                Ok(()) => tracing::info!(
                    "listener {:?}: endpoint {address} of cluster {:?} is healthy",
                    cluster.listener,
                    cluster.name
                ),
                Err(why) => tracing::warn!(
                    "listener {:?}: endpoint {address} of cluster {:?} is unhealthy ({} failed health check(s) in a row; the last: {why})",
                    cluster.listener,
                    cluster.name,
                    streak.failures
                ),
            }
        } else if let Err(why) = &outcome {
            tracing::debug!("health check of {address} failed: {why}");
        }
        let mut wait = match now {
            Health::Unhealthy => c.unhealthy_interval.unwrap_or(c.interval),
            _ => c.interval,
        };
        if !c.interval_jitter.is_zero() {
            wait += c.interval_jitter.mul_f64(fastrand::f64());
        }
        tokio::time::sleep(wait).await;
    }
}

/// One check of endpoint `i`: `Err` says why it failed.
async fn check(
    cluster: &Cluster,
    i: usize,
    upstreams: &Arc<Upstreams<Full<Bytes>>>,
) -> Result<(), String> {
    let address = &cluster.endpoints[i];
    let tls = &cluster.tls;
    match cluster.check.kind() {
        HealthCheckKind::Tcp => upstreams
            .probe(address, tls)
            .await
            .map_err(|e| e.to_string()),
        HealthCheckKind::Http(h) => {
            let host = h.host.as_deref().unwrap_or(&cluster.name);
            let http2 = h.codec_client_type == crate::config::CodecClientType::Http2;
            let req = request(Method::GET, host, &h.path, http2, Bytes::new())?;
            let resp = upstreams
                .send(address, tls, http2, req)
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            // Read to the end, so the connection is kept for the next check.
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                frame.map_err(|e| format!("reading the answer: {e}"))?;
            }
            if expected(status, &h.expected_statuses) {
                Ok(())
            } else {
                Err(format!("status {}", status.as_u16()))
            }
        }
        HealthCheckKind::Grpc(g) => {
            let authority = g.authority.as_deref().unwrap_or(&cluster.name);
            let message = grpc::request(&g.service_name);
            let mut req = request(
                Method::POST,
                authority,
                "/grpc.health.v1.Health/Check",
                true,
                message,
            )?;
            let headers = req.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/grpc"),
            );
            headers.insert(header::TE, header::HeaderValue::from_static("trailers"));
            let resp = upstreams
                .send(address, tls, true, req)
                .await
                .map_err(|e| e.to_string())?;
            if resp.status() != StatusCode::OK {
                return Err(format!("status {}", resp.status().as_u16()));
            }
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, grpc::ANSWER_LIMIT)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?;
            let trailers = body.trailers().cloned();
            // A trailers-only answer carries grpc-status in its headers.
            let status = trailers
                .as_ref()
                .and_then(|t| t.get("grpc-status"))
                .or_else(|| parts.headers.get("grpc-status"));
            grpc::answer(status, body.to_bytes())
        }
    }
}

/// A check's request: origin-form with a Host header for HTTP/1.1, absolute for HTTP/2.
fn request(
    method: Method,
    host: &str,
    path: &str,
    http2: bool,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let uri = if http2 {
        format!("http://{host}{path}")
    } else {
        path.to_owned()
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::USER_AGENT, "meshtrace/HC")
        .header("b3", "0");
    if !http2 {
        builder = builder.header(header::HOST, host);
    }
    builder
        .body(Full::new(body))
        .map_err(|e| format!("cannot make the check's request: {e}"))
}

/// Whether `status` is one of `ranges` (`[start, end)`; none given: 200 only).
fn expected(status: StatusCode, ranges: &[StatusRange]) -> bool {
    let s = status.as_u16();
    if ranges.is_empty() {
        return s == 200;
    }
    ranges.iter().any(|r| r.start <= s && s < r.end)
}

/// The gRPC health protocol (`grpc/health/v1/health.proto`): its two messages, framed.
mod grpc {
    use super::*;

    /// The most of an answer read (the message is a few bytes).
    pub const ANSWER_LIMIT: usize = 64 * 1024;

    #[derive(Clone, PartialEq, prost::Message)]
    struct HealthCheckRequest {
        #[prost(string, tag = "1")]
        service: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct HealthCheckResponse {
        /// UNKNOWN = 0, SERVING = 1, NOT_SERVING = 2, SERVICE_UNKNOWN = 3.
        #[prost(int32, tag = "1")]
        status: i32,
    }

    const SERVING: i32 = 1;

    /// The request for `service`, as one uncompressed length-prefixed message.
    pub fn request(service: &str) -> Bytes {
        let message = prost::Message::encode_to_vec(&HealthCheckRequest {
            service: service.to_owned(),
        });
        let mut framed = Vec::with_capacity(5 + message.len());
        framed.push(0);
        framed.extend_from_slice(
            &u32::try_from(message.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        framed.extend_from_slice(&message);
        framed.into()
    }

    /// Whether an answer with `grpc-status` `status` and body `body` says SERVING.
    pub fn answer(status: Option<&header::HeaderValue>, mut body: Bytes) -> Result<(), String> {
        match status.map(|s| s.as_bytes()) {
            Some(b"0") => {}
            Some(code) => {
                return Err(format!(
                    "grpc-status {}",
                    String::from_utf8_lossy(code).trim()
                ))
            }
            None => return Err("no grpc-status in the answer".to_owned()),
        }
        if body.len() < 5 {
            return Err("no message in the answer".to_owned());
        }
        if body[0] != 0 {
            return Err("a compressed answer (none was accepted)".to_owned());
        }
        body.advance(1);
        let len = body.get_u32() as usize;
        if body.len() < len {
            return Err("a truncated message in the answer".to_owned());
        }
        let message: HealthCheckResponse = prost::Message::decode(body.slice(..len))
            .map_err(|e| format!("an answer that is not a HealthCheckResponse: {e}"))?;
        match message.status {
            SERVING => Ok(()),
            2 => Err("NOT_SERVING".to_owned()),
            3 => Err("SERVICE_UNKNOWN".to_owned()),
            other => Err(format!("status {other} (not SERVING)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(unhealthy: u32, healthy: u32) -> HealthCheck {
        serde_yaml::from_str(&format!(
            "{{ timeout: 1s, interval: 1s, unhealthy_threshold: {unhealthy}, healthy_threshold: {healthy}, tcp_health_check: {{}} }}"
        ))
        .unwrap()
    }

    #[test]
    fn the_first_check_decides_then_thresholds_of_results_in_a_row_move_it() {
        let c = check(3, 2);
        let mut s = Streak::default();
        assert_eq!(s.observe(Health::Pending, false, &c), Health::Unhealthy);
        let mut s = Streak::default();
        let mut h = s.observe(Health::Pending, true, &c);
        assert_eq!(h, Health::Healthy);
        // Two failures, a success between: still healthy.
        for passed in [false, false, true, false, false] {
            h = s.observe(h, passed, &c);
            assert_eq!(h, Health::Healthy);
        }
        h = s.observe(h, false, &c);
        assert_eq!(h, Health::Unhealthy, "the third failure in a row");
        h = s.observe(h, true, &c);
        assert_eq!(h, Health::Unhealthy, "one success of two");
        h = s.observe(h, false, &c);
        h = s.observe(h, true, &c);
        assert_eq!(h, Health::Unhealthy, "the failure started the count again");
        h = s.observe(h, true, &c);
        assert_eq!(h, Health::Healthy);
    }

    #[test]
    fn counts_and_health_by_endpoint() {
        let h = ClusterHealth::new(3);
        assert!(!h.healthy(0), "pending is not healthy");
        h.set(1, Health::Healthy);
        h.set(2, Health::Unhealthy);
        assert!(h.healthy(1) && !h.healthy(2));
        assert_eq!(
            h.counts(),
            [
                (Health::Healthy, 1),
                (Health::Unhealthy, 1),
                (Health::Pending, 1)
            ]
        );
    }

    #[test]
    fn expected_statuses_are_half_open_ranges_and_200_alone_by_default() {
        let ok = |s: u16| StatusCode::from_u16(s).unwrap();
        assert!(expected(ok(200), &[]));
        assert!(!expected(ok(204), &[]));
        let r = [
            StatusRange {
                start: 200,
                end: 300,
            },
            StatusRange {
                start: 429,
                end: 430,
            },
        ];
        assert!(expected(ok(204), &r) && expected(ok(429), &r));
        assert!(!expected(ok(300), &r) && !expected(ok(503), &r));
    }

    #[test]
    fn grpc_answers_are_read_as_the_health_protocol_says() {
        let framed = |status: i32| {
            let m = prost::Message::encode_to_vec(&grpc_response(status));
            let mut b = vec![0];
            b.extend_from_slice(&(m.len() as u32).to_be_bytes());
            b.extend_from_slice(&m);
            Bytes::from(b)
        };
        let zero = header::HeaderValue::from_static("0");
        assert_eq!(grpc::answer(Some(&zero), framed(1)), Ok(()));
        assert_eq!(
            grpc::answer(Some(&zero), framed(2)),
            Err("NOT_SERVING".to_owned())
        );
        assert_eq!(
            grpc::answer(Some(&zero), framed(3)),
            Err("SERVICE_UNKNOWN".to_owned())
        );
        let unimplemented = header::HeaderValue::from_static("12");
        assert_eq!(
            grpc::answer(Some(&unimplemented), Bytes::new()),
            Err("grpc-status 12".to_owned())
        );
        assert!(grpc::answer(None, framed(1)).is_err());
        assert!(grpc::answer(Some(&zero), framed(1).slice(..4)).is_err());
        let mut compressed = framed(1).to_vec();
        compressed[0] = 1;
        assert!(grpc::answer(Some(&zero), compressed.into()).is_err());
        // The request: flag 0, length 6, then field 1 ("cart").
        assert_eq!(
            &grpc::request("cart")[..],
            &[0, 0, 0, 0, 6, 0x0a, 4, b'c', b'a', b'r', b't']
        );
    }

    fn grpc_response(status: i32) -> impl prost::Message {
        #[derive(Clone, PartialEq, prost::Message)]
        struct R {
            #[prost(int32, tag = "1")]
            status: i32,
        }
        R { status }
    }
}
