//! The proxy's YAML configuration, exactly as the issue's interface contract names it.
//!
//! Every struct refuses unknown keys, so a typo is an error naming the key and its line (serde_yaml
//! puts the position in the message). Durations are humantime strings (`250ms`, `15s`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::balance::{BalanceConfig, CommonLbConfig, LbPolicy, LeastRequestConfig, RingHashConfig};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use wire::propagation::Format;

pub use crate::circuit_breaker::CircuitBreakers;
pub use crate::fault::FaultConfig;
pub use crate::header_ops::{HeaderOpsConfig, HeaderToAdd};
pub use crate::rate_limit::LocalRateLimitConfig;
pub use crate::route_match::{HeaderMatcher, WeightedClusters};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid proxy configuration: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("invalid proxy configuration: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node_id: String,
    /// The service the proxy's spans are reported as (`service.name`, Zipkin's
    /// `localEndpoint.serviceName`), Envoy's `--service-cluster`: a sidecar reports as the
    /// service it fronts, so app and proxy spans share a node in the service graph.
    /// Defaults to `node_id`.
    #[serde(default)]
    pub service_name: Option<String>,
    #[serde(default)]
    pub zone: String,
    /// Admin address serving `/metrics` (Prometheus text) and `/healthz`.
    #[serde(default)]
    pub admin: Option<String>,
    pub listeners: Vec<ListenerConfig>,
    /// On SIGTERM, how long requests in flight (and open WebSocket tunnels) may take to finish
    /// once the listeners stopped accepting, before the proxy closes what is left (Istio's
    /// `terminationDrainDuration`). Default 5s.
    #[serde(default = "default_drain_timeout", with = "dur")]
    pub drain_timeout: Duration,
    #[serde(default)]
    pub tracing: TracingConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Edge,
    Inbound,
    Outbound,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub name: String,
    pub mode: Mode,
    pub listen: String,
    pub upstream: Upstream,
    /// The HTTP version spoken to the upstream.
    #[serde(default)]
    pub upstream_protocol: UpstreamProtocol,
    /// HTTPS on this listener (an edge terminating TLS): HTTP/1.1 and HTTP/2 by ALPN.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// TLS to this listener's upstreams, e.g. mutual TLS from an outbound sidecar to other
    /// services' inbound sidecars (Envoy: a cluster's upstream TLS context); an outbound
    /// cluster's own `tls` takes precedence.
    #[serde(default)]
    pub upstream_tls: Option<UpstreamTls>,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Retries of failed requests (Envoy's virtual host `retry_policy`), for every route of
    /// the listener that has none of its own. None by default.
    #[serde(default)]
    pub retry_policy: Option<RetryPolicyConfig>,
    /// One line per request (Envoy's access log). None by default.
    #[serde(default)]
    pub access_log: Option<AccessLogConfig>,
    /// Faults injected into requests (Envoy's `fault` filter), for every route without its own.
    #[serde(default)]
    pub fault: Option<FaultConfig>,
    /// Cross-origin requests allowed (Envoy's `cors` policy), for every route without its own.
    #[serde(default)]
    pub cors: Option<crate::cors::CorsConfig>,
    /// Gzip for the answers (Envoy's `compressor`), for every route without its own.
    #[serde(default)]
    pub compressor: Option<crate::compress::CompressorConfig>,
    /// A token bucket for the listener's requests (Envoy's `local_ratelimit`); a route with its
    /// own has a bucket of its own.
    #[serde(default)]
    pub local_rate_limit: Option<LocalRateLimitConfig>,
    /// Edge and inbound: the cap on requests in flight to the one upstream (an outbound
    /// listener's clusters each have their own).
    #[serde(default)]
    pub circuit_breakers: Option<CircuitBreakers>,
    /// Envoy's header changes: headers added to (`append_action` as Envoy's) and removed from
    /// requests sent upstream and their answers.
    #[serde(default)]
    pub request_headers_to_add: Vec<HeaderToAdd>,
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
    #[serde(default)]
    pub response_headers_to_add: Vec<HeaderToAdd>,
    #[serde(default)]
    pub response_headers_to_remove: Vec<String>,
}

/// A listener's access log: where, and in which of Envoy's formats (a format string, Envoy's
/// default one when neither is given, or a JSON dictionary).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// A file (appended to), or `/dev/stdout` (the default) or `/dev/stderr`.
    #[serde(default = "default_access_log_path")]
    pub path: String,
    /// A format string with Envoy's command operators; end it with a newline.
    #[serde(default)]
    pub format: Option<String>,
    /// A JSON line per request: keys to values with command operators.
    #[serde(default)]
    pub json_format: Option<serde_json::Map<String, serde_json::Value>>,
    /// How long lines may wait in a worker's buffer (Envoy's `file_flush_interval`). Default 1s.
    #[serde(default = "default_access_log_flush", with = "dur")]
    pub flush_interval: Duration,
    /// Which requests are written (Envoy's access log `filter`); all without one.
    #[serde(default)]
    pub filter: Option<crate::access_log::Filter>,
}

fn default_access_log_path() -> String {
    "/dev/stdout".to_owned()
}

fn default_access_log_flush() -> Duration {
    Duration::from_secs(1)
}

impl AccessLogConfig {
    /// The parsed format (its mistakes named).
    pub fn parse(&self) -> Result<crate::access_log::Format, String> {
        match (&self.format, &self.json_format) {
            (Some(_), Some(_)) => Err("give format or json_format, not both".to_owned()),
            (None, Some(dict)) => crate::access_log::Format::json(dict),
            (text, None) => crate::access_log::Format::text(text.as_deref()),
        }
    }
}

/// When and how often a failed request is tried again, on the cluster's next endpoint (Envoy's
/// route `retry_policy`, with its names and defaults).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicyConfig {
    /// The failures retried: a comma-separated string as Envoy's (`5xx,connect-failure`) or a
    /// list.
    #[serde(deserialize_with = "retry_on")]
    pub retry_on: Vec<RetryOn>,
    /// Retries after the first attempt. Default 1, as Envoy's.
    #[serde(default = "one")]
    pub num_retries: u32,
    /// Each attempt's own time limit for the response headers (the listener's
    /// `timeouts.request` covers all attempts together). An attempt over it counts as a
    /// timeout, retried under `5xx`, `gateway-error` and `reset`.
    #[serde(default, with = "dur_opt")]
    pub per_try_timeout: Option<Duration>,
    /// The statuses `retriable-status-codes` retries.
    #[serde(default)]
    pub retriable_status_codes: Vec<u16>,
    #[serde(default)]
    pub retry_back_off: RetryBackOff,
    /// Retries in flight at once to the cluster (all workers together), beyond which a failure is
    /// answered rather than retried (Envoy's circuit breaker `max_retries`, default 3): an
    /// upstream that fails every request is not sent the traffic again.
    #[serde(default = "three")]
    pub max_active_retries: usize,
}

impl RetryPolicyConfig {
    fn check(&self) -> Result<(), String> {
        if self.retry_on.is_empty() {
            return Err("retry_on names no condition (e.g. 5xx,connect-failure)".to_owned());
        }
        let by_code = self.retry_on.contains(&RetryOn::RetriableStatusCodes);
        if by_code && self.retriable_status_codes.is_empty() {
            return Err(
                "retry_on has retriable-status-codes but retriable_status_codes lists none"
                    .to_owned(),
            );
        }
        if !by_code && !self.retriable_status_codes.is_empty() {
            return Err(
                "retriable_status_codes is set but retry_on lacks retriable-status-codes"
                    .to_owned(),
            );
        }
        if let Some(c) = self
            .retriable_status_codes
            .iter()
            .find(|c| !(100..=599).contains(*c))
        {
            return Err(format!("retriable_status_codes: {c} is no HTTP status"));
        }
        if self.per_try_timeout == Some(Duration::ZERO) {
            return Err("per_try_timeout must be more than 0".to_owned());
        }
        let b = &self.retry_back_off;
        if b.base_interval.is_zero() {
            return Err("retry_back_off.base_interval must be more than 0".to_owned());
        }
        if b.max_interval.is_some_and(|m| m < b.base_interval) {
            return Err("retry_back_off.max_interval is below base_interval".to_owned());
        }
        if self.max_active_retries == 0 {
            return Err(
                "max_active_retries 0 would allow no retry; leave retry_policy out instead"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

fn one() -> u32 {
    1
}

fn three() -> usize {
    3
}

/// The wait before retry *n*: random between 0 and `base_interval` × (2ⁿ − 1), at most
/// `max_interval` (Envoy's fully jittered exponential back-off).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBackOff {
    #[serde(with = "dur")]
    pub base_interval: Duration,
    /// Default ten times `base_interval`.
    #[serde(with = "dur_opt")]
    pub max_interval: Option<Duration>,
}

impl Default for RetryBackOff {
    fn default() -> Self {
        RetryBackOff {
            base_interval: Duration::from_millis(25),
            max_interval: None,
        }
    }
}

/// One `retry_on` condition (Envoy's `x-envoy-retry-on` and `x-envoy-retry-grpc-on` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum RetryOn {
    /// Any 5xx answer, or none at all: connect failure, reset, refused stream, per-try timeout.
    #[serde(rename = "5xx")]
    ServerError,
    /// 502, 503 and 504 answers, and the failures the proxy answers so itself (connect
    /// failure, reset, per-try timeout).
    #[serde(rename = "gateway-error")]
    GatewayError,
    /// The upstream did not answer: the connection reset or closed, or a per-try timeout.
    #[serde(rename = "reset")]
    Reset,
    /// The connection could not be made (refused, timed out, TLS handshake failed).
    #[serde(rename = "connect-failure")]
    ConnectFailure,
    /// An HTTP/2 upstream refused the stream (REFUSED_STREAM: not processed, safe to retry).
    #[serde(rename = "refused-stream")]
    RefusedStream,
    /// 409 Conflict.
    #[serde(rename = "retriable-4xx")]
    Retriable4xx,
    /// The statuses in `retriable_status_codes`.
    #[serde(rename = "retriable-status-codes")]
    RetriableStatusCodes,
    /// gRPC status CANCELLED (1) in the response headers.
    #[serde(rename = "cancelled")]
    GrpcCancelled,
    /// gRPC status DEADLINE_EXCEEDED (4).
    #[serde(rename = "deadline-exceeded")]
    GrpcDeadlineExceeded,
    /// gRPC status RESOURCE_EXHAUSTED (8).
    #[serde(rename = "resource-exhausted")]
    GrpcResourceExhausted,
    /// gRPC status INTERNAL (13).
    #[serde(rename = "internal")]
    GrpcInternal,
    /// gRPC status UNAVAILABLE (14).
    #[serde(rename = "unavailable")]
    GrpcUnavailable,
}

/// `retry_on` as Envoy writes it (`"5xx,reset"`) or as a YAML list.
fn retry_on<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RetryOn>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Text(String),
        List(Vec<String>),
    }
    let names: Vec<String> = match Form::deserialize(d)? {
        Form::Text(t) => t.split(',').map(|n| n.trim().to_owned()).collect(),
        Form::List(l) => l,
    };
    names
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| {
            RetryOn::deserialize(de::value::StrDeserializer::<D::Error>::new(n))
                .map_err(|e| de::Error::custom(format!("retry_on: {e}")))
        })
        .collect()
}

/// How a listener's upstream connections are made over TLS. The upstream's certificate is
/// always verified.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM CA certificates the upstreams' certificates must chain to; without it, the system's.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// PEM client certificate chain and key, presented for mutual TLS (both or neither).
    #[serde(default)]
    pub cert_file: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
    /// The name the upstream's certificate must hold; without it, the upstream address's host
    /// (a DNS name or an IP address).
    #[serde(default)]
    pub server_name: Option<String>,
    /// `"1.2"` or `"1.3"`; both allowed by default.
    #[serde(default)]
    pub min_version: Option<String>,
    #[serde(default)]
    pub max_version: Option<String>,
    /// Cipher suites (Go's names, as the collector's `tls` blocks) and key-exchange groups
    /// (`X25519`, `P256`, `P384`) allowed, in order of preference; all by default.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    #[serde(default)]
    pub curve_preferences: Vec<String>,
}

/// A listener's certificate, in the keys the collector's receivers use for theirs.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM certificate chain.
    pub cert_file: String,
    /// PEM private key.
    pub key_file: String,
    /// When set, clients must present a certificate signed by one of these CAs (mutual TLS).
    #[serde(default)]
    pub client_ca_file: Option<String>,
    /// `"1.2"` or `"1.3"`.
    #[serde(default)]
    pub min_version: Option<String>,
    #[serde(default)]
    pub max_version: Option<String>,
    /// Cipher suites and key-exchange groups allowed, as in `upstream_tls`.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    #[serde(default)]
    pub curve_preferences: Vec<String>,
}

/// Which HTTP version a listener speaks to its upstream (Envoy: a cluster's protocol options).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// The request's own: HTTP/2 (cleartext) for HTTP/2 requests, so gRPC passes through
    /// unconfigured, HTTP/1.1 for the rest (Envoy's `USE_DOWNSTREAM_PROTOCOL`).
    #[default]
    Downstream,
    /// HTTP/1.1 always: an app that only speaks HTTP/1.1 behind a sidecar that takes HTTP/2.
    Http1,
    /// Cleartext HTTP/2 always (prior knowledge), e.g. between sidecars: HTTP/1.1 requests
    /// share one multiplexed connection per upstream.
    Http2,
}

/// Edge and inbound: one `host:port`. Outbound: routes to named clusters.
#[derive(Clone, Debug, PartialEq)]
pub enum Upstream {
    Single(String),
    Routed(RoutedUpstream),
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutedUpstream {
    /// Tried in order; the first match wins.
    pub routes: Vec<RouteConfig>,
    /// Cluster name → its endpoints, used round-robin (and, optionally, its own TLS).
    pub clusters: BTreeMap<String, Cluster>,
}

/// An outbound cluster: a list of endpoints (`host:port`); or a map with `endpoints`,
/// `upstream_protocol` (overriding the listener's) and `tls`,
/// the cluster's own upstream TLS (a block as the listener's `upstream_tls`), or `tls: false`
/// for cleartext even when the listener has `upstream_tls` (Envoy: each cluster's transport
/// socket). One outbound listener can so reach mesh peers over mutual TLS and an external
/// service in cleartext.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cluster {
    pub endpoints: Vec<String>,
    /// Each endpoint's `load_balancing_weight` (1 unless given: an endpoint written as
    /// `{ address: host:port, load_balancing_weight: 3 }`).
    pub weights: Vec<u32>,
    pub tls: ClusterTls,
    /// The cluster's own `upstream_protocol` (the listener's when unset), as Envoy sets a
    /// cluster's protocol options: an h2c-only service beside HTTP/1.1 ones.
    pub upstream_protocol: Option<UpstreamProtocol>,
    /// Passive health checking: endpoints failing in a row are left out for a while.
    pub outlier_detection: Option<OutlierDetection>,
    /// Active health checking (a list, as Envoy's, of at most one check): endpoints failing
    /// it are left out until they pass again.
    pub health_checks: Vec<HealthCheck>,
    /// The cap on requests in flight to the cluster.
    pub circuit_breakers: Option<CircuitBreakers>,
    /// How an endpoint is picked (`lb_policy` and its settings, `common_lb_config`).
    pub balance: crate::balance::BalanceConfig,
}

/// One of a cluster's `health_checks` (Envoy's `HealthCheck`, with its field names): every
/// `interval` each endpoint is checked (an HTTP GET, a TCP connect or the gRPC health service);
/// `unhealthy_threshold` failures in a row take it out of the round-robin and
/// `healthy_threshold` successes in a row bring it back (the first check decides alone).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// How long one check may take, connecting included.
    #[serde(with = "dur")]
    pub timeout: Duration,
    /// Between checks of one endpoint.
    #[serde(with = "dur")]
    pub interval: Duration,
    /// Between checks of an endpoint while it is unhealthy (default `interval`).
    #[serde(default, with = "dur_opt")]
    pub unhealthy_interval: Option<Duration>,
    /// A random wait up to this long added to each interval (default none).
    #[serde(default, with = "dur")]
    pub interval_jitter: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    #[serde(default)]
    pub http_health_check: Option<HttpHealthCheck>,
    #[serde(default)]
    pub tcp_health_check: Option<TcpHealthCheck>,
    #[serde(default)]
    pub grpc_health_check: Option<GrpcHealthCheck>,
}

/// A GET of `path`, healthy when the status is in `expected_statuses` (default: 200 only).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpHealthCheck {
    pub path: String,
    /// The Host (HTTP/2 authority) of the check (default: the cluster's name).
    #[serde(default)]
    pub host: Option<String>,
    /// Half-open ranges `[start, end)`, as Envoy's.
    #[serde(default)]
    pub expected_statuses: Vec<StatusRange>,
    /// `HTTP1` (default) or `HTTP2` (cleartext, prior knowledge; h2 over TLS).
    #[serde(default)]
    pub codec_client_type: CodecClientType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRange {
    pub start: u16,
    pub end: u16,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum CodecClientType {
    #[default]
    #[serde(rename = "HTTP1")]
    Http1,
    #[serde(rename = "HTTP2")]
    Http2,
}

/// A connect (and TLS handshake, for a cluster over TLS) that succeeds in time. Envoy's
/// `send`/`receive` payloads are not supported (refused by name).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpHealthCheck {}

/// `grpc.health.v1.Health/Check` over HTTP/2, healthy when the answer is `SERVING`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcHealthCheck {
    /// The service asked about (default "": the server as a whole).
    #[serde(default)]
    pub service_name: String,
    /// The `:authority` of the check (default: the cluster's name).
    #[serde(default)]
    pub authority: Option<String>,
}

/// What one of a cluster's health checks does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HealthCheckKind<'a> {
    Http(&'a HttpHealthCheck),
    Tcp,
    Grpc(&'a GrpcHealthCheck),
}

impl HealthCheck {
    /// The one kind of check set (checked at load).
    pub fn kind(&self) -> HealthCheckKind<'_> {
        match (&self.http_health_check, &self.grpc_health_check) {
            (Some(h), _) => HealthCheckKind::Http(h),
            (None, Some(g)) => HealthCheckKind::Grpc(g),
            (None, None) => HealthCheckKind::Tcp,
        }
    }

    fn check(&self) -> Result<(), String> {
        let kinds = [
            self.http_health_check.is_some(),
            self.tcp_health_check.is_some(),
            self.grpc_health_check.is_some(),
        ];
        if kinds.iter().filter(|&&k| k).count() != 1 {
            return Err(
                "needs exactly one of http_health_check, tcp_health_check and grpc_health_check"
                    .to_owned(),
            );
        }
        for (name, d) in [("timeout", self.timeout), ("interval", self.interval)]
            .into_iter()
            .chain(self.unhealthy_interval.map(|d| ("unhealthy_interval", d)))
        {
            if d.is_zero() {
                return Err(format!("{name} must be more than 0"));
            }
        }
        if self.unhealthy_threshold == 0 || self.healthy_threshold == 0 {
            return Err("unhealthy_threshold and healthy_threshold must be at least 1".to_owned());
        }
        if let Some(h) = &self.http_health_check {
            if !h.path.starts_with('/')
                || http::uri::PathAndQuery::try_from(h.path.as_str()).is_err()
            {
                return Err(format!(
                    "http_health_check: path {:?} is not a path starting with /",
                    h.path
                ));
            }
            if let Some(host) = &h.host {
                if http::uri::Authority::try_from(host.as_str()).is_err() {
                    return Err(format!("http_health_check: host {host:?} is not a host"));
                }
            }
            for r in &h.expected_statuses {
                if !(100..=599).contains(&r.start)
                    || !(101..=600).contains(&r.end)
                    || r.start >= r.end
                {
                    return Err(format!(
                        "http_health_check: expected_statuses {{start: {}, end: {}}} is not a range of statuses (start 100-599, end above it and at most 600; end excluded)",
                        r.start, r.end
                    ));
                }
            }
        }
        if let Some(g) = &self.grpc_health_check {
            if let Some(a) = &g.authority {
                if http::uri::Authority::try_from(a.as_str()).is_err() {
                    return Err(format!("grpc_health_check: authority {a:?} is not a host"));
                }
            }
        }
        Ok(())
    }
}

/// Envoy's cluster `outlier_detection` (consecutive 5xx; see `outlier`), with its defaults.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierDetection {
    /// Failures in a row (5xx answers, connect failures, resets, timeouts) that eject an
    /// endpoint. Default 5.
    pub consecutive_5xx: u32,
    /// How long the first ejection lasts; the n-th in a row lasts n times that. Default 30s.
    #[serde(with = "dur")]
    pub base_ejection_time: Duration,
    /// The longest an ejection lasts. Default 300s.
    #[serde(with = "dur")]
    pub max_ejection_time: Duration,
    /// The most endpoints out at once, in percent (at least one may always be). Default 10.
    pub max_ejection_percent: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

impl OutlierDetection {
    fn check(&self) -> Result<(), String> {
        if self.consecutive_5xx == 0 {
            return Err("consecutive_5xx must be at least 1".to_owned());
        }
        if self.base_ejection_time.is_zero() {
            return Err("base_ejection_time must be more than 0".to_owned());
        }
        if self.max_ejection_time < self.base_ejection_time {
            return Err("max_ejection_time is below base_ejection_time".to_owned());
        }
        if self.max_ejection_percent > 100 {
            return Err(format!(
                "max_ejection_percent must be 0 to 100, got {}",
                self.max_ejection_percent
            ));
        }
        Ok(())
    }
}

/// How a cluster's connections are made.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ClusterTls {
    /// As the listener's `upstream_tls` says (cleartext without one).
    #[default]
    Listener,
    /// Cleartext (`tls: false`).
    Off,
    /// Over TLS with these settings.
    On(UpstreamTls),
}

/// One of a cluster's endpoints as written: `host:port`, or with a weight.
enum Endpoint {
    Address(String),
    Weighted(WeightedEndpoint),
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Endpoint;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("host:port, or { address: host:port, load_balancing_weight: N }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Endpoint, E> {
                Ok(Endpoint::Address(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Endpoint, A::Error> {
                WeightedEndpoint::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Endpoint::Weighted)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightedEndpoint {
    address: String,
    #[serde(default = "one")]
    load_balancing_weight: u32,
}

impl Endpoint {
    /// The addresses and their weights; a weight of 0 is refused (Envoy's minimum is 1).
    fn split(list: Vec<Endpoint>) -> Result<(Vec<String>, Vec<u32>), String> {
        let mut out = (Vec::new(), Vec::new());
        for e in list {
            let (a, w) = match e {
                Endpoint::Address(a) => (a, 1),
                Endpoint::Weighted(w) => (w.address, w.load_balancing_weight),
            };
            if w == 0 {
                return Err(format!(
                    "endpoint {a:?}: load_balancing_weight 0; weights start at 1"
                ));
            }
            out.0.push(a);
            out.1.push(w);
        }
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for Cluster {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            endpoints: Vec<Endpoint>,
            #[serde(default)]
            tls: ClusterTls,
            #[serde(default)]
            upstream_protocol: Option<UpstreamProtocol>,
            #[serde(default)]
            outlier_detection: Option<OutlierDetection>,
            #[serde(default)]
            health_checks: Vec<HealthCheck>,
            #[serde(default)]
            circuit_breakers: Option<CircuitBreakers>,
            #[serde(default)]
            lb_policy: LbPolicy,
            #[serde(default)]
            least_request_lb_config: LeastRequestConfig,
            #[serde(default)]
            ring_hash_lb_config: RingHashConfig,
            #[serde(default)]
            maglev_lb_config: crate::balance::MaglevConfig,
            #[serde(default)]
            common_lb_config: CommonLbConfig,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cluster;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a list of host:port endpoints, or a map with endpoints, tls, upstream_protocol, outlier_detection, health_checks, circuit_breakers, lb_policy (with least_request_lb_config, ring_hash_lb_config, maglev_lb_config) and common_lb_config",
                )
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Cluster, A::Error> {
                let list: Vec<Endpoint> =
                    Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                let (endpoints, weights) = Endpoint::split(list).map_err(de::Error::custom)?;
                Ok(Cluster {
                    endpoints,
                    weights,
                    tls: ClusterTls::Listener,
                    upstream_protocol: None,
                    outlier_detection: None,
                    health_checks: Vec::new(),
                    circuit_breakers: None,
                    balance: BalanceConfig::default(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Cluster, A::Error> {
                let Full {
                    endpoints,
                    tls,
                    upstream_protocol,
                    outlier_detection,
                    health_checks,
                    circuit_breakers,
                    lb_policy,
                    least_request_lb_config,
                    ring_hash_lb_config,
                    maglev_lb_config,
                    common_lb_config,
                } = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let (endpoints, weights) = Endpoint::split(endpoints).map_err(de::Error::custom)?;
                Ok(Cluster {
                    endpoints,
                    weights,
                    tls,
                    upstream_protocol,
                    outlier_detection,
                    health_checks,
                    circuit_breakers,
                    balance: BalanceConfig {
                        lb_policy,
                        least_request: least_request_lb_config,
                        ring_hash: ring_hash_lb_config,
                        maglev: maglev_lb_config,
                        common: common_lb_config,
                    },
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for ClusterTls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ClusterTls;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a TLS block (ca_file, cert_file, key_file, ...) or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ClusterTls, E> {
                if v {
                    Err(E::custom(
                        "tls: true says nothing of whom to trust; give a block (ca_file, cert_file, key_file, server_name), or {} for the system's CAs",
                    ))
                } else {
                    Ok(ClusterTls::Off)
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ClusterTls, A::Error> {
                UpstreamTls::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ClusterTls::On)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Matches the request's Host (or HTTP/2 authority), port ignored.
    #[serde(default)]
    pub host: Option<String>,
    /// Matches the start of the path.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Matches the whole path (query left out).
    #[serde(default)]
    pub path: Option<String>,
    /// A regular expression (RE2) the whole path must match.
    #[serde(default)]
    pub path_regex: Option<String>,
    /// Request headers that must match too (Envoy's `HeaderMatcher`s).
    #[serde(default)]
    pub headers: Vec<HeaderMatcher>,
    /// The cluster the route sends to; or `weighted_clusters`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Several clusters, each taking a share of the requests in proportion to its weight.
    #[serde(default)]
    pub weighted_clusters: Option<WeightedClusters>,
    /// Or no upstream: the route answers with this status and body itself.
    #[serde(default)]
    pub direct_response: Option<crate::local_reply::DirectResponseConfig>,
    /// Or no upstream: the route answers with a redirect.
    #[serde(default)]
    pub redirect: Option<crate::local_reply::RedirectConfig>,
    /// Copies of (a share of) the requests to other clusters, their answers thrown away
    /// (Envoy's shadow traffic; see `mirror`).
    #[serde(default)]
    pub request_mirror_policies: Vec<crate::mirror::MirrorPolicyConfig>,
    /// Operation name of the spans of this route (default `METHOD path`).
    #[serde(default)]
    pub name: Option<String>,
    /// This route's retries (else the listener's `retry_policy`).
    #[serde(default)]
    pub retry_policy: Option<RetryPolicyConfig>,
    /// What a `RING_HASH` cluster hashes the request by (Envoy's `hash_policy`): headers,
    /// cookies, query parameters, the caller's IP, in order (combined; `terminal` stops).
    #[serde(default)]
    pub hash_policy: Vec<crate::balance::HashPolicyConfig>,
    /// This route's time limit for the upstream's response headers, all attempts together
    /// (Envoy's route `timeout`; else the listener's `timeouts.request`; `0s`: none). A caller's
    /// `x-envoy-upstream-rq-timeout-ms` still wins inside the mesh, as in Envoy.
    #[serde(default, with = "dur_opt")]
    pub timeout: Option<Duration>,
    /// Replaces the matched `path_prefix` before the request goes upstream (Envoy's
    /// `prefix_rewrite`): `/api/cart` with `/` makes `/api/cart/items?x=1` `/items?x=1`.
    #[serde(default)]
    pub prefix_rewrite: Option<String>,
    /// Or every match of `pattern` in the path replaced with `substitution` (RE2's `\1` for
    /// groups), e.g. `/service/([^/]+)(/.*)` → `\2/instance/\1`; the query stays.
    #[serde(default)]
    pub regex_rewrite: Option<crate::route_match::RegexRewrite>,
    /// This route's faults (else the listener's `fault`).
    #[serde(default)]
    pub fault: Option<FaultConfig>,
    /// This route's CORS policy (else the listener's `cors`).
    #[serde(default)]
    pub cors: Option<crate::cors::CorsConfig>,
    /// This route's compressor (else the listener's).
    #[serde(default)]
    pub compressor: Option<crate::compress::CompressorConfig>,
    /// This route's own token bucket (else the listener's `local_rate_limit`).
    #[serde(default)]
    pub local_rate_limit: Option<LocalRateLimitConfig>,
    /// The Host (HTTP/2 `:authority`) the upstream is sent instead of the request's own
    /// (Envoy's `host_rewrite_literal`), e.g. an external service's name.
    #[serde(default)]
    pub host_rewrite_literal: Option<String>,
    /// Envoy's header changes: headers added to (`append_action` as Envoy's) and removed from
    /// requests sent upstream and their answers.
    #[serde(default)]
    pub request_headers_to_add: Vec<HeaderToAdd>,
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
    #[serde(default)]
    pub response_headers_to_add: Vec<HeaderToAdd>,
    #[serde(default)]
    pub response_headers_to_remove: Vec<String>,
}

/// The four header-change lists of a listener or route, together (flat keys in the YAML, as
/// Envoy writes them: serde cannot flatten a struct into one that refuses unknown keys).
fn header_ops(
    request_add: &[HeaderToAdd],
    request_remove: &[String],
    response_add: &[HeaderToAdd],
    response_remove: &[String],
) -> HeaderOpsConfig {
    HeaderOpsConfig {
        request_headers_to_add: request_add.to_vec(),
        request_headers_to_remove: request_remove.to_vec(),
        response_headers_to_add: response_add.to_vec(),
        response_headers_to_remove: response_remove.to_vec(),
    }
}

impl ListenerConfig {
    /// The listener's header changes.
    pub fn header_ops(&self) -> HeaderOpsConfig {
        header_ops(
            &self.request_headers_to_add,
            &self.request_headers_to_remove,
            &self.response_headers_to_add,
            &self.response_headers_to_remove,
        )
    }
}

impl RouteConfig {
    /// The route's header changes.
    pub fn header_ops(&self) -> HeaderOpsConfig {
        header_ops(
            &self.request_headers_to_add,
            &self.request_headers_to_remove,
            &self.response_headers_to_add,
            &self.response_headers_to_remove,
        )
    }

    /// The clusters the route sends to, with their weights (one at weight 1 for `cluster`).
    pub fn clusters(&self) -> Vec<(&str, u32)> {
        match (&self.cluster, &self.weighted_clusters) {
            (Some(c), _) => vec![(c.as_str(), 1)],
            (None, Some(w)) => w
                .clusters
                .iter()
                .map(|c| (c.name.as_str(), c.weight))
                .collect(),
            (None, None) => Vec::new(),
        }
    }

    /// The route's name in messages: its cluster, or its weighted clusters.
    pub fn label(&self) -> String {
        match (&self.cluster, &self.weighted_clusters) {
            (Some(c), _) => c.clone(),
            (None, Some(w)) => w
                .clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join("+"),
            (None, None) if self.direct_response.is_some() => "direct_response".to_owned(),
            (None, None) if self.redirect.is_some() => "redirect".to_owned(),
            (None, None) => "nothing".to_owned(),
        }
    }

    /// What the route answers with itself, if it sends nowhere.
    pub fn local_reply(&self) -> Result<Option<crate::local_reply::LocalReply>, String> {
        use crate::local_reply::LocalReply;
        match (&self.direct_response, &self.redirect) {
            (Some(d), _) => LocalReply::direct(d).map(Some),
            (None, Some(r)) => LocalReply::redirect(r, self.path_prefix.as_deref()).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// The route's match and destination, checked.
    fn check_match(&self) -> Result<(), String> {
        let actions = [
            self.cluster.is_some(),
            self.weighted_clusters.is_some(),
            self.direct_response.is_some(),
            self.redirect.is_some(),
        ];
        if actions.iter().filter(|&&a| a).count() != 1 {
            return Err(
                "needs exactly one of cluster, weighted_clusters, direct_response and redirect"
                    .to_owned(),
            );
        }
        self.local_reply()?;
        for h in &self.hash_policy {
            h.compile()?;
        }
        if let Some(w) = &self.weighted_clusters {
            if w.clusters.is_empty() {
                return Err("weighted_clusters lists no cluster".to_owned());
            }
            let total: u64 = w.clusters.iter().map(|c| u64::from(c.weight)).sum();
            if total == 0 || total > u64::from(u32::MAX) {
                return Err(format!(
                    "weighted_clusters: the weights add up to {total}; more than 0 is needed"
                ));
            }
        }
        let paths = [
            self.path_prefix.is_some(),
            self.path.is_some(),
            self.path_regex.is_some(),
        ];
        if paths.iter().filter(|&&p| p).count() > 1 {
            return Err("give one of path_prefix, path and path_regex".to_owned());
        }
        if let Some(p) = &self.path {
            if !p.starts_with('/') {
                return Err(format!("path {p:?} does not start with /"));
            }
        }
        if let Some(r) = &self.path_regex {
            crate::route_match::whole(r).map_err(|e| format!("path_regex: {e}"))?;
        }
        for h in &self.headers {
            h.compile()?;
        }
        if let Some(r) = &self.regex_rewrite {
            if self.prefix_rewrite.is_some() {
                return Err("give one of prefix_rewrite and regex_rewrite".to_owned());
            }
            r.compile()?;
        }
        self.header_ops().compile()?;
        if let Some(h) = &self.host_rewrite_literal {
            if http::uri::Authority::try_from(h.as_str()).is_err() {
                return Err(format!("host_rewrite_literal {h:?} is not a host"));
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Upstream;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("host:port, or a map with routes and clusters")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Upstream, E> {
                Ok(Upstream::Single(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Upstream, A::Error> {
                RoutedUpstream::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Upstream::Routed)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Connecting to an upstream endpoint (502 when exceeded).
    #[serde(with = "dur")]
    pub connect: Duration,
    /// From sending the request to the upstream's response headers (504 when exceeded; checked
    /// every tenth of it, at most every 100 ms, so the 504 comes up to that much later).
    #[serde(with = "dur")]
    pub request: Duration,
    /// Idle pooled upstream connections are closed after this.
    #[serde(with = "dur")]
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(15),
            idle: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Protocol {
    #[serde(rename = "zipkin-json")]
    ZipkinJson,
    #[serde(rename = "zipkin-proto")]
    ZipkinProto,
    #[serde(rename = "otlp-http")]
    OtlpHttp,
    #[serde(rename = "otlp-grpc")]
    OtlpGrpc,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Where spans go, e.g. `http://127.0.0.1:9411/api/v2/spans`; no collector = spans are not
    /// reported. An `https://` URL reports over TLS.
    pub collector: Option<String>,
    pub protocol: Protocol,
    /// TLS to an `https://` collector (a block as `upstream_tls`: `ca_file`, else the system's
    /// CAs; `cert_file`/`key_file` for mutual TLS; `server_name`; versions, suites, curves).
    pub tls: Option<UpstreamTls>,
    /// Headers sent with every report (HTTP headers, or gRPC metadata for `otlp-grpc`), e.g. a
    /// hosted backend's API key.
    pub headers: BTreeMap<String, String>,
    /// Header formats written to the next hop (all three are always read).
    #[serde(deserialize_with = "formats")]
    pub propagation: Vec<Format>,
    pub trace_id_128bit: bool,
    /// Inbound SERVER spans reuse the caller's span id (Zipkin's shared span) instead of a child id.
    pub shared_span_context: bool,
    /// Each upstream attempt (a retry too) gets a CLIENT span of its own, child of the
    /// listener's span, which is then a SERVER span in every mode; the next hop is the
    /// attempt's child (Envoy's `spawn_upstream_span`): retries show in the trace.
    pub spawn_upstream_span: bool,
    pub sampling: Sampling,
    pub custom_tags: Vec<CustomTag>,
    pub flush: Flush,
    /// Spans held for export; beyond it new spans are dropped (and counted).
    pub buffer_size: usize,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            collector: None,
            protocol: Protocol::ZipkinJson,
            tls: None,
            headers: BTreeMap::new(),
            propagation: vec![Format::B3Multi],
            trace_id_128bit: true,
            shared_span_context: false,
            spawn_upstream_span: false,
            sampling: Sampling::default(),
            custom_tags: Vec::new(),
            flush: Flush::default(),
            buffer_size: 2048,
        }
    }
}

/// Envoy's three sampling knobs, in percent.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sampling {
    /// Requests without a decision that start a sampled trace.
    pub random: f64,
    /// Requests carrying `x-client-trace-id` that are force-sampled.
    pub client: f64,
    /// Cap applied after the other two.
    pub overall: f64,
    /// When set, the random decision is the collector's consistent hash of the trace id.
    pub hash_seed: Option<u32>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            random: 100.0,
            client: 100.0,
            overall: 100.0,
            hash_seed: None,
        }
    }
}

/// A tag added to every span: `tag` plus exactly one source.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomTag {
    pub tag: String,
    #[serde(default)]
    pub literal: Option<String>,
    /// An environment variable's name; read once at start.
    #[serde(default)]
    pub environment: Option<String>,
    /// A request header's name.
    #[serde(default)]
    pub request_header: Option<String>,
    /// Used when the variable or header is absent (no tag when unset).
    #[serde(default)]
    pub default: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Flush {
    /// Spans per export request.
    pub count: usize,
    /// Longest a span waits before export.
    #[serde(with = "dur")]
    pub interval: Duration,
}

impl Default for Flush {
    fn default() -> Self {
        Flush {
            count: 256,
            interval: Duration::from_secs(1),
        }
    }
}

fn default_drain_timeout() -> Duration {
    Duration::from_secs(5)
}

pub(crate) mod dur {
    use super::*;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| de::Error::custom(format!("{s:?}: {e}")))
    }
}

pub(crate) mod dur_opt {
    use super::*;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::dur::deserialize(d).map(Some)
    }
}

fn formats<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Format>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .map(|n| {
            Format::from_name(n).ok_or_else(|| {
                de::Error::custom(format!(
                    "unknown propagation {n:?}, expected b3multi, b3 or tracecontext"
                ))
            })
        })
        .collect()
}

impl Config {
    /// Parses and checks a configuration.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = serde_yaml::from_str(text).map_err(|e| locate_unknown_key(e, text))?;
        config.check()?;
        Ok(config)
    }

    /// The `service.name` the proxy's spans carry: `service_name`, else `node_id`.
    pub fn service_name(&self) -> &str {
        self.service_name.as_deref().unwrap_or(&self.node_id)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.listeners.is_empty() {
            return bad("no listeners".to_owned());
        }
        for l in &self.listeners {
            if let Some(a) = &l.access_log {
                a.parse()
                    .and_then(|_| a.filter.as_ref().map_or(Ok(()), |f| f.check()))
                    .map_err(|m| {
                        ConfigError::Invalid(format!("listener {:?}: access_log: {m}", l.name))
                    })?;
                if a.flush_interval.is_zero() {
                    return bad(format!(
                        "listener {:?}: access_log: flush_interval must be more than 0",
                        l.name
                    ));
                }
            }
            if let Some(p) = &l.retry_policy {
                p.check().map_err(|m| {
                    ConfigError::Invalid(format!("listener {:?}: retry_policy: {m}", l.name))
                })?;
            }
            let filters =
                |at: String, f: Option<&FaultConfig>, r: Option<&LocalRateLimitConfig>| {
                    if let Some(f) = f {
                        f.check()
                            .map_err(|m| ConfigError::Invalid(format!("{at}: fault: {m}")))?;
                    }
                    if let Some(r) = r {
                        r.check().map_err(|m| {
                            ConfigError::Invalid(format!("{at}: local_rate_limit: {m}"))
                        })?;
                    }
                    Ok::<(), ConfigError>(())
                };
            filters(
                format!("listener {:?}", l.name),
                l.fault.as_ref(),
                l.local_rate_limit.as_ref(),
            )?;
            let cors = |at: String, c: Option<&crate::cors::CorsConfig>| {
                c.map_or(Ok(()), |c| c.compile().map(|_| ()))
                    .map_err(|m| ConfigError::Invalid(format!("{at}: cors: {m}")))
            };
            cors(format!("listener {:?}", l.name), l.cors.as_ref())?;
            let compressor = |at: String, c: Option<&crate::compress::CompressorConfig>| {
                c.map_or(Ok(()), |c| c.compile().map(|_| ()))
                    .map_err(|m| ConfigError::Invalid(format!("{at}: compressor: {m}")))
            };
            compressor(format!("listener {:?}", l.name), l.compressor.as_ref())?;
            l.header_ops()
                .compile()
                .map_err(|m| ConfigError::Invalid(format!("listener {:?}: {m}", l.name)))?;
            if let Some(c) = &l.circuit_breakers {
                if matches!(l.upstream, Upstream::Routed(_)) {
                    return bad(format!(
                        "listener {:?}: circuit_breakers belong to its clusters (clusters: {{name: {{endpoints: [...], circuit_breakers: ...}}}})",
                        l.name
                    ));
                }
                c.check().map_err(|m| {
                    ConfigError::Invalid(format!("listener {:?}: circuit_breakers: {m}", l.name))
                })?;
            }
            if let Upstream::Routed(r) = &l.upstream {
                for route in &r.routes {
                    filters(
                        format!("listener {:?}: route to {:?}", l.name, route.label()),
                        route.fault.as_ref(),
                        route.local_rate_limit.as_ref(),
                    )?;
                    cors(
                        format!("listener {:?}: route to {:?}", l.name, route.label()),
                        route.cors.as_ref(),
                    )?;
                    compressor(
                        format!("listener {:?}: route to {:?}", l.name, route.label()),
                        route.compressor.as_ref(),
                    )?;
                }
            }
            if let Upstream::Routed(r) = &l.upstream {
                for (name, cluster) in &r.clusters {
                    if let Some(o) = &cluster.outlier_detection {
                        o.check().map_err(|m| {
                            ConfigError::Invalid(format!(
                                "listener {:?}: cluster {name:?}: outlier_detection: {m}",
                                l.name
                            ))
                        })?;
                    }
                    if let Some(c) = &cluster.circuit_breakers {
                        c.check().map_err(|m| {
                            ConfigError::Invalid(format!(
                                "listener {:?}: cluster {name:?}: circuit_breakers: {m}",
                                l.name
                            ))
                        })?;
                    }
                    cluster.balance.check().map_err(|m| {
                        ConfigError::Invalid(format!(
                            "listener {:?}: cluster {name:?}: {m}",
                            l.name
                        ))
                    })?;
                    if cluster.health_checks.len() > 1 {
                        return bad(format!(
                            "listener {:?}: cluster {name:?}: health_checks has {} checks; one is supported (as in Envoy)",
                            l.name,
                            cluster.health_checks.len()
                        ));
                    }
                    if let Some(h) = cluster.health_checks.first() {
                        h.check().map_err(|m| {
                            ConfigError::Invalid(format!(
                                "listener {:?}: cluster {name:?}: health_checks: {m}",
                                l.name
                            ))
                        })?;
                    }
                }
                for route in &r.routes {
                    if let Some(p) = &route.retry_policy {
                        p.check().map_err(|m| {
                            ConfigError::Invalid(format!(
                                "listener {:?}: route to {:?}: retry_policy: {m}",
                                l.name,
                                route.label()
                            ))
                        })?;
                    }
                }
            }
            match (&l.mode, &l.upstream) {
                (Mode::Outbound | Mode::Edge, Upstream::Routed(r)) => {
                    for route in &r.routes {
                        if route.host.is_none()
                            && route.path_prefix.is_none()
                            && route.path.is_none()
                            && route.path_regex.is_none()
                            && route.headers.is_empty()
                        {
                            return bad(format!(
                                "listener {:?}: a route needs host, path_prefix, path, path_regex or headers",
                                l.name
                            ));
                        }
                        route.check_match().map_err(|m| {
                            ConfigError::Invalid(format!(
                                "listener {:?}: route to {:?}: {m}",
                                l.name,
                                route.label()
                            ))
                        })?;
                        if let Some(to) = &route.prefix_rewrite {
                            if route.path_prefix.is_none() {
                                return bad(format!(
                                    "listener {:?}: prefix_rewrite needs the route's path_prefix",
                                    l.name
                                ));
                            }
                            if !to.starts_with('/')
                                || http::uri::PathAndQuery::try_from(to.as_str()).is_err()
                            {
                                return bad(format!(
                                    "listener {:?}: prefix_rewrite {to:?} is not a path starting with /",
                                    l.name
                                ));
                            }
                        }
                        if !route.request_mirror_policies.is_empty()
                            && route.cluster.is_none()
                            && route.weighted_clusters.is_none()
                        {
                            return bad(format!(
                                "listener {:?}: route to {:?}: request_mirror_policies need a cluster to send the request itself to",
                                l.name,
                                route.label()
                            ));
                        }
                        let mirrored = route
                            .request_mirror_policies
                            .iter()
                            .map(|m| (m.cluster.as_str(), 0));
                        for (cluster, _) in route.clusters().into_iter().chain(mirrored) {
                            match r.clusters.get(cluster) {
                                None => {
                                    return bad(format!(
                                        "listener {:?}: route to unknown cluster {cluster:?}",
                                        l.name
                                    ))
                                }
                                Some(c) if c.endpoints.is_empty() => {
                                    return bad(format!(
                                        "listener {:?}: cluster {cluster:?} has no endpoints",
                                        l.name
                                    ))
                                }
                                Some(_) => {}
                            }
                        }
                    }
                }
                (Mode::Inbound, Upstream::Routed(_)) => {
                    return bad(format!(
                        "listener {:?}: an inbound listener takes one upstream host:port (its app)",
                        l.name
                    ))
                }
                _ => {}
            }
        }
        let s = &self.tracing.sampling;
        for (name, v) in [
            ("random", s.random),
            ("client", s.client),
            ("overall", s.overall),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return bad(format!("sampling.{name} must be 0 to 100, got {v}"));
            }
        }
        for t in &self.tracing.custom_tags {
            let sources = [&t.literal, &t.environment, &t.request_header]
                .iter()
                .filter(|s| s.is_some())
                .count();
            if sources != 1 {
                return bad(format!(
                    "custom tag {:?} needs exactly one of literal, environment, request_header",
                    t.tag
                ));
            }
        }
        if self.tracing.flush.count == 0 || self.tracing.buffer_size == 0 {
            return bad("flush.count and buffer_size must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// serde_yaml places an unknown-field error at the start of the enclosing map; this finds the
/// line of the key itself (from there on) and names it, so the message points at the typo.
fn locate_unknown_key(e: serde_yaml::Error, text: &str) -> ConfigError {
    let message = e.to_string();
    let key = message
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(key, _)| key);
    let (Some(key), Some(from)) = (key, e.location().map(|l| l.line())) else {
        return ConfigError::Yaml(e);
    };
    let found = text
        .lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, line)| {
            line.match_indices(key).any(|(i, _)| {
                let before = line[..i].trim_end();
                let after = &line[i + key.len()..];
                after.trim_start().starts_with(':')
                    && (before.is_empty() || before.ends_with(['{', ',', '-']))
            })
        });
    match found {
        Some((i, _)) => {
            ConfigError::Invalid(format!("unknown key `{key}` at line {}: {message}", i + 1))
        }
        None => ConfigError::Yaml(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let c = Config::from_yaml(include_str!("../../../examples/proxy.yaml")).unwrap();
        assert_eq!(c.listeners.len(), 2);
        let log = c.listeners[1].access_log.as_ref().unwrap();
        assert_eq!(log.path, "/dev/stdout");
        assert!(log.parse().is_ok());
        assert_eq!(c.tracing.protocol, Protocol::ZipkinJson);
        assert_eq!(c.tracing.custom_tags.len(), 3);
        let Upstream::Routed(r) = &c.listeners[0].upstream else {
            panic!("outbound routes")
        };
        let p = r.routes[0].retry_policy.as_ref().unwrap();
        assert_eq!(p.retry_on, [RetryOn::ServerError, RetryOn::ConnectFailure]);
        assert_eq!(
            (p.num_retries, p.per_try_timeout, p.max_active_retries),
            (2, Some(Duration::from_secs(2)), 3)
        );
        assert_eq!(
            p.retry_back_off.max_interval,
            Some(Duration::from_millis(250))
        );
        let cart = &r.clusters["cart"];
        assert_eq!(cart.endpoints.len(), 2);
        let o = cart.outlier_detection.unwrap();
        assert_eq!(
            (
                o.consecutive_5xx,
                o.base_ejection_time,
                o.max_ejection_percent
            ),
            (5, Duration::from_secs(30), 10)
        );
        assert_eq!(
            o.max_ejection_time,
            Duration::from_secs(300),
            "Envoy's default"
        );
        assert_eq!(cart.circuit_breakers.unwrap().max_requests, 1024);
        let h = &cart.health_checks[0];
        assert_eq!(
            (h.interval, h.unhealthy_threshold, h.healthy_threshold),
            (Duration::from_secs(5), 3, 2)
        );
        assert!(matches!(h.kind(), HealthCheckKind::Http(http) if http.path == "/healthz"));
        let l = c.listeners[0].retry_policy.as_ref().unwrap();
        assert_eq!(l.retry_on, [RetryOn::ConnectFailure]);
        assert_eq!(
            (l.num_retries, l.per_try_timeout),
            (1, None),
            "Envoy's defaults"
        );
        // A list works as the comma-separated string does.
        let listed: RetryPolicyConfig =
            serde_yaml::from_str("retry_on: [reset, unavailable]").unwrap();
        assert_eq!(listed.retry_on, [RetryOn::Reset, RetryOn::GrpcUnavailable]);
    }

    const FULL: &str = r#"
node_id: sidecar-a
service_name: cart
zone: zone-1
admin: 127.0.0.1:0
listeners:
  - name: ingress
    mode: edge
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:9000
    timeouts: { connect: 250ms, request: 2s }
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes:
        - { host: svc-b, cluster: b }
        - { path_prefix: /api, cluster: b, name: api }
      clusters:
        b: [127.0.0.1:9001, 127.0.0.1:9002]
        c: { endpoints: [reviews:9080], tls: { ca_file: /etc/mesh/ca.pem, server_name: reviews } }
        d: { endpoints: [api.example.com:80], tls: false }
tracing:
  collector: http://127.0.0.1:9411/api/v2/spans
  protocol: zipkin-proto
  propagation: [b3multi, b3, tracecontext]
  trace_id_128bit: false
  shared_span_context: true
  sampling: { random: 10, client: 100, overall: 50, hash_seed: 22 }
  custom_tags:
    - { tag: env, literal: prod }
    - { tag: host, environment: HOSTNAME, default: none }
    - { tag: ua, request_header: user-agent }
  flush: { count: 50, interval: 200ms }
  buffer_size: 1000
"#;

    #[test]
    fn full_config_parses() {
        let c = Config::from_yaml(FULL).unwrap();
        assert_eq!(c.node_id, "sidecar-a");
        assert_eq!(c.service_name(), "cart");
        assert_eq!(c.listeners[0].mode, Mode::Edge);
        assert_eq!(c.listeners[0].timeouts.connect, Duration::from_millis(250));
        assert_eq!(c.listeners[0].timeouts.idle, Duration::from_secs(60));
        let Upstream::Routed(r) = &c.listeners[1].upstream else {
            panic!("routed")
        };
        assert_eq!(r.clusters["b"].endpoints.len(), 2);
        assert_eq!(r.clusters["b"].tls, ClusterTls::Listener);
        let ClusterTls::On(tls) = &r.clusters["c"].tls else {
            panic!("cluster c has its own tls")
        };
        assert_eq!(tls.server_name.as_deref(), Some("reviews"));
        assert_eq!(r.clusters["d"].tls, ClusterTls::Off);
        assert_eq!(r.routes[1].name.as_deref(), Some("api"));
        let t = &c.tracing;
        assert_eq!(t.protocol, Protocol::ZipkinProto);
        assert_eq!(
            t.propagation,
            vec![Format::B3Multi, Format::B3Single, Format::TraceContext]
        );
        assert!(!t.trace_id_128bit && t.shared_span_context);
        assert_eq!(t.sampling.hash_seed, Some(22));
        assert_eq!(t.custom_tags.len(), 3);
        assert_eq!(t.flush.interval, Duration::from_millis(200));
    }

    #[test]
    fn defaults() {
        let c = Config::from_yaml(
            "node_id: n\nlisteners:\n  - {name: a, mode: inbound, listen: '127.0.0.1:0', upstream: '127.0.0.1:1'}\n",
        )
        .unwrap();
        assert!(c.tracing.trace_id_128bit);
        assert!(!c.tracing.shared_span_context);
        assert_eq!(c.tracing.sampling.random, 100.0);
        assert_eq!(c.tracing.propagation, vec![Format::B3Multi]);
        assert_eq!(c.service_name(), "n", "service_name defaults to node_id");
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let line_of =
            |text: &str, key: &str| 1 + text.lines().position(|l| l.contains(key)).unwrap();
        for (from, to, key) in [
            (
                "  buffer_size: 1000",
                "  buffer_size: 1000\n  bufer: 3",
                "bufer",
            ),
            (
                "{ host: svc-b, cluster: b }",
                "{ hots: svc-b, cluster: b }",
                "hots",
            ),
            (
                "    timeouts: {",
                "    timeout: 1s\n    timeouts: {",
                "timeout",
            ),
            (
                "node_id: sidecar-a",
                "node_id: sidecar-a\nnodeid: x",
                "nodeid",
            ),
        ] {
            let text = FULL.replacen(from, to, 1);
            let e = Config::from_yaml(&text).unwrap_err().to_string();
            let want = format!(
                "unknown key `{key}` at line {}",
                line_of(&text, &format!("{key}:"))
            );
            assert!(e.contains(&want), "{e}");
        }
    }

    #[test]
    fn health_checks_parse_with_envoys_names_and_mistakes_are_refused_by_name() {
        let yaml = |check: &str| {
            format!(
                "node_id: n
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes: [{{ path_prefix: /, cluster: c }}]
      clusters:
        c:
          endpoints: [a:1, b:2]
          health_checks: [{check}]
"
            )
        };
        let c = Config::from_yaml(&yaml(
            "{ timeout: 1s, interval: 5s, unhealthy_interval: 10s, interval_jitter: 1s, unhealthy_threshold: 3, healthy_threshold: 2, http_health_check: { path: /healthz, host: cart.local, expected_statuses: [{ start: 200, end: 300 }], codec_client_type: HTTP2 } }",
        ))
        .unwrap();
        let Upstream::Routed(r) = &c.listeners[0].upstream else {
            panic!("routed")
        };
        let h = &r.clusters["c"].health_checks[0];
        assert_eq!(
            (
                h.timeout,
                h.interval,
                h.unhealthy_interval,
                h.interval_jitter
            ),
            (
                Duration::from_secs(1),
                Duration::from_secs(5),
                Some(Duration::from_secs(10)),
                Duration::from_secs(1)
            )
        );
        let HealthCheckKind::Http(http) = h.kind() else {
            panic!("an HTTP check")
        };
        assert_eq!(
            (
                http.path.as_str(),
                http.host.as_deref(),
                http.codec_client_type
            ),
            ("/healthz", Some("cart.local"), CodecClientType::Http2)
        );
        let base = "timeout: 1s, interval: 5s, unhealthy_threshold: 3, healthy_threshold: 2";
        let tcp =
            Config::from_yaml(&yaml(&format!("{{ {base}, tcp_health_check: {{}} }}"))).unwrap();
        let Upstream::Routed(r) = &tcp.listeners[0].upstream else {
            panic!("routed")
        };
        assert_eq!(
            r.clusters["c"].health_checks[0].kind(),
            HealthCheckKind::Tcp
        );
        for (check, want) in [
            (format!("{{ {base} }}"), "exactly one of http_health_check"),
            (
                format!("{{ {base}, tcp_health_check: {{}}, grpc_health_check: {{}} }}"),
                "exactly one of",
            ),
            (
                "{ timeout: 1s, unhealthy_threshold: 3, healthy_threshold: 2, tcp_health_check: {} }".to_owned(),
                "missing field `interval`",
            ),
            (
                format!("{{ {base}, tcp_health_check: {{ send: {{ text: '01' }} }} }}"),
                "unknown field `send`",
            ),
            (
                format!("{{ {base}, http_health_check: {{ path: healthz }} }}"),
                "path \"healthz\" is not a path",
            ),
            (
                format!("{{ {base}, http_health_check: {{ path: /h, expected_statuses: [{{ start: 300, end: 200 }}] }} }}"),
                "expected_statuses {start: 300, end: 200}",
            ),
            (
                format!("{{ {base}, http_health_check: {{ path: /h, codec_client_type: HTTP3 }} }}"),
                "HTTP3",
            ),
            (
                format!("{{ {base}, grpc_health_check: {{ authority: 'a b' }} }}"),
                "authority \"a b\" is not a host",
            ),
            (
                "{ timeout: 0s, interval: 5s, unhealthy_threshold: 3, healthy_threshold: 2, tcp_health_check: {} }".to_owned(),
                "timeout must be more than 0",
            ),
            (
                "{ timeout: 1s, interval: 5s, unhealthy_threshold: 0, healthy_threshold: 2, tcp_health_check: {} }".to_owned(),
                "must be at least 1",
            ),
            (
                format!("{{ {base}, tcp_health_check: {{}} }}, {{ {base}, tcp_health_check: {{}} }}"),
                "health_checks has 2 checks; one is supported",
            ),
        ] {
            let e = Config::from_yaml(&yaml(&check)).unwrap_err().to_string();
            assert!(e.contains(want), "{check}: {e}");
        }
    }

    #[test]
    fn bad_values_are_explained() {
        for (from, to, want) in [
            ("protocol: zipkin-proto", "protocol: thrift", "thrift"),
            ("[b3multi, b3, tracecontext]", "[b3multi, jaeger]", "jaeger"),
            ("random: 10", "random: 120", "sampling.random"),
            ("cluster: b }", "cluster: nope }", "unknown cluster"),
            ("tls: false", "tls: true", "says nothing of whom to trust"),
            (
                "tls: false",
                "tls: false, weight: 2",
                "unknown field `weight`",
            ),
            ("250ms", "soon", "soon"),
            ("{ tag: env, literal: prod }", "{ tag: env }", "exactly one"),
        ] {
            let e = Config::from_yaml(&FULL.replacen(from, to, 1))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{to}: {e}");
        }
    }
}
