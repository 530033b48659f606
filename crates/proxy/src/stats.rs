//! The proxy's own counters, rendered as Prometheus text on the admin port.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::circuit_breaker::Gate;
use crate::health_check::{ClusterHealth, Health};
use crate::outlier::Outliers;

#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub upstream_timeouts: AtomicU64,
    /// Requests sent upstream again under a retry policy (Envoy's `upstream_rq_retry`).
    pub retries: AtomicU64,
    /// Requests answered by a retry (`upstream_rq_retry_success`).
    pub retries_succeeded: AtomicU64,
    /// Retriable failures answered because `num_retries` were spent
    /// (`upstream_rq_retry_limit_exceeded`).
    pub retry_limit_exceeded: AtomicU64,
    /// Retriable failures answered because `max_active_retries` were in flight
    /// (`upstream_rq_retry_overflow`).
    pub retry_overflow: AtomicU64,
    pub spans_started: AtomicU64,
    /// Spans dropped because the reporter's buffer was full.
    pub spans_dropped: AtomicU64,
    pub spans_exported: AtomicU64,
    /// Spans given up on after the export retries ran out.
    pub spans_export_failed: AtomicU64,
    pub export_retries: AtomicU64,
    /// TLS handshakes that failed or timed out (untrusted or missing certificates, plain HTTP
    /// on an HTTPS port, scanners).
    pub tls_handshake_failures: AtomicU64,
    /// Upgraded connections (WebSocket) open now: a gauge.
    pub tunnels_open: AtomicU64,
    /// Endpoints the outlier detectors ejected (Envoy's `outlier_detection.ejections_enforced_total`).
    pub outlier_ejections: AtomicU64,
    /// Every listener's clusters, for their gauges and the admin port's `/clusters`.
    clusters: Mutex<Vec<ClusterView>>,
    /// Requests answered 503 by a cluster's circuit breaker (`max_requests` in flight).
    pub upstream_overflow: AtomicU64,
    /// Copies of requests sent by mirror policies and answered; failed (no answer in time, no
    /// endpoint); not sent (the body was not kept: over 64 KiB, or not read to its end).
    pub mirrored: AtomicU64,
    pub mirror_failed: AtomicU64,
    pub mirror_skipped: AtomicU64,
    /// Requests answered 503 because their cluster had no endpoint left (Envoy's `UH`).
    pub no_healthy_upstream: AtomicU64,
    /// Requests answered 429 by a `local_rate_limit` bucket.
    pub rate_limited: AtomicU64,
    /// Requests a `fault` delayed, and aborted.
    pub faults_delayed: AtomicU64,
    pub faults_aborted: AtomicU64,
    /// Access log lines written, and dropped (the writer behind, or failing).
    pub access_log_written: AtomicU64,
    pub access_log_dropped: AtomicU64,
    /// How many times `POST /reopen_logs` asked for the access log files to be opened again.
    pub reopen_logs: AtomicU64,
    /// Set on SIGTERM: `/healthz` answers 503 while requests in flight drain.
    pub draining: AtomicBool,
}

impl Stats {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Shows `cluster` on `/metrics` (what is kept about it) and `/clusters`.
    pub fn watch_cluster(&self, cluster: ClusterView) {
        self.clusters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(cluster);
    }

    /// The clusters watched, in the order they were.
    pub fn clusters(&self) -> Vec<ClusterView> {
        self.clusters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, c) in [
            (
                "meshtrace_proxy_requests_total",
                "Requests received.",
                &self.requests,
            ),
            (
                "meshtrace_proxy_upstream_errors_total",
                "Requests answered 502/503 because the upstream failed.",
                &self.upstream_errors,
            ),
            (
                "meshtrace_proxy_upstream_timeouts_total",
                "Requests answered 504.",
                &self.upstream_timeouts,
            ),
            (
                "meshtrace_proxy_upstream_retries_total",
                "Requests sent upstream again under a retry policy.",
                &self.retries,
            ),
            (
                "meshtrace_proxy_upstream_retries_succeeded_total",
                "Requests answered by a retry.",
                &self.retries_succeeded,
            ),
            (
                "meshtrace_proxy_upstream_retry_limit_exceeded_total",
                "Retriable failures answered because num_retries were spent.",
                &self.retry_limit_exceeded,
            ),
            (
                "meshtrace_proxy_upstream_retry_overflow_total",
                "Retriable failures answered because max_active_retries were in flight.",
                &self.retry_overflow,
            ),
            (
                "meshtrace_proxy_outlier_ejections_total",
                "Endpoints ejected by outlier detection.",
                &self.outlier_ejections,
            ),
            (
                "meshtrace_proxy_upstream_overflow_total",
                "Requests answered 503 by a cluster's circuit breaker (Envoy's UO).",
                &self.upstream_overflow,
            ),
            (
                "meshtrace_proxy_mirrored_total",
                "Copies of requests sent by request_mirror_policies and answered.",
                &self.mirrored,
            ),
            (
                "meshtrace_proxy_mirror_failed_total",
                "Copies of requests that got no answer in time (or had no endpoint).",
                &self.mirror_failed,
            ),
            (
                "meshtrace_proxy_mirror_skipped_total",
                "Requests not copied: the body was over 64 KiB or not read to its end.",
                &self.mirror_skipped,
            ),
            (
                "meshtrace_proxy_no_healthy_upstream_total",
                "Requests answered 503 because no endpoint of the cluster was left (Envoy's UH).",
                &self.no_healthy_upstream,
            ),
            (
                "meshtrace_proxy_rate_limited_total",
                "Requests answered 429 by a local rate limit (Envoy's RL).",
                &self.rate_limited,
            ),
            (
                "meshtrace_proxy_faults_delayed_total",
                "Requests delayed by fault injection (Envoy's DI).",
                &self.faults_delayed,
            ),
            (
                "meshtrace_proxy_faults_aborted_total",
                "Requests aborted by fault injection (Envoy's FI).",
                &self.faults_aborted,
            ),
            (
                "meshtrace_proxy_access_log_lines_total",
                "Access log lines written.",
                &self.access_log_written,
            ),
            (
                "meshtrace_proxy_access_log_dropped_total",
                "Access log lines dropped: the writer fell behind or could not write.",
                &self.access_log_dropped,
            ),
            (
                "meshtrace_proxy_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out.",
                &self.tls_handshake_failures,
            ),
            (
                "meshtrace_proxy_spans_started_total",
                "Sampled spans started.",
                &self.spans_started,
            ),
            (
                "meshtrace_proxy_spans_dropped_total",
                "Spans dropped because the report buffer was full.",
                &self.spans_dropped,
            ),
            (
                "meshtrace_proxy_spans_exported_total",
                "Spans the collector accepted.",
                &self.spans_exported,
            ),
            (
                "meshtrace_proxy_spans_export_failed_total",
                "Spans given up on after retries.",
                &self.spans_export_failed,
            ),
            (
                "meshtrace_proxy_export_retries_total",
                "Export attempts retried.",
                &self.export_retries,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP meshtrace_proxy_tunnels_open Upgraded connections (WebSocket) open.\n# TYPE meshtrace_proxy_tunnels_open gauge\nmeshtrace_proxy_tunnels_open {}",
            self.tunnels_open.load(Ordering::Relaxed)
        );
        let clusters = self.clusters();
        render_clusters(&clusters, &mut out);
        out
    }
}

/// What the admin port shows of one cluster (an edge or inbound listener's single upstream is a
/// cluster named as the listener): its endpoints and what is kept about them.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub listener: String,
    pub cluster: String,
    pub endpoints: Vec<String>,
    pub outliers: Option<Arc<Outliers>>,
    pub health: Option<Arc<ClusterHealth>>,
    pub gate: Option<Arc<Gate>>,
    /// Requests in flight per endpoint (`LEAST_REQUEST` clusters).
    pub active: Option<Arc<[Arc<std::sync::atomic::AtomicUsize>]>>,
}

impl ClusterView {
    /// Envoy's `health_flags` of endpoint `i`: `healthy`, or the reasons it is not
    /// (`/failed_active_hc`, `/pending_active_hc`, `/failed_outlier_check`).
    pub fn health_flags(&self, i: usize) -> String {
        let mut flags = String::new();
        if let Some(h) = &self.health {
            match h.get(i) {
                Health::Unhealthy => flags.push_str("/failed_active_hc"),
                Health::Pending => flags.push_str("/pending_active_hc"),
                Health::Healthy => {}
            }
        }
        if self.outliers.as_ref().is_some_and(|o| !o.available(i)) {
            flags.push_str("/failed_outlier_check");
        }
        if flags.is_empty() {
            flags.push_str("healthy");
        }
        flags
    }
}

/// The per-cluster gauges and counters.
fn render_clusters(clusters: &[ClusterView], out: &mut String) {
    let labels = |c: &ClusterView| {
        format!(
            "listener=\"{}\",cluster=\"{}\"",
            label(&c.listener),
            label(&c.cluster)
        )
    };
    let with_outliers: Vec<_> = clusters.iter().filter(|c| c.outliers.is_some()).collect();
    if !with_outliers.is_empty() {
        out.push_str("# HELP meshtrace_proxy_outlier_ejected Endpoints out of their cluster's round-robin now.\n# TYPE meshtrace_proxy_outlier_ejected gauge\n");
    }
    for c in with_outliers {
        let ejected = c.outliers.as_ref().map_or(0, |o| o.ejected());
        let _ = writeln!(
            out,
            "meshtrace_proxy_outlier_ejected{{{}}} {ejected}",
            labels(c)
        );
    }
    let checked: Vec<_> = clusters.iter().filter(|c| c.health.is_some()).collect();
    if !checked.is_empty() {
        out.push_str("# HELP meshtrace_proxy_health_checks_total Active health checks of cluster endpoints, by result.\n# TYPE meshtrace_proxy_health_checks_total counter\n");
        for c in &checked {
            let Some(h) = &c.health else { continue };
            for (result, n) in [("success", &h.successes), ("failure", &h.failures)] {
                let _ = writeln!(
                    out,
                    "meshtrace_proxy_health_checks_total{{{},result=\"{result}\"}} {}",
                    labels(c),
                    n.load(Ordering::Relaxed)
                );
            }
        }
        out.push_str("# HELP meshtrace_proxy_endpoints Endpoints of health-checked clusters, by health (pending: not checked yet).\n# TYPE meshtrace_proxy_endpoints gauge\n");
        for c in &checked {
            let Some(h) = &c.health else { continue };
            for (state, n) in h.counts() {
                let _ = writeln!(
                    out,
                    "meshtrace_proxy_endpoints{{{},health=\"{}\"}} {n}",
                    labels(c),
                    state.name()
                );
            }
        }
    }
    let gated: Vec<_> = clusters.iter().filter(|c| c.gate.is_some()).collect();
    if !gated.is_empty() {
        out.push_str("# HELP meshtrace_proxy_upstream_requests_active Requests in flight to a cluster with circuit breakers.\n# TYPE meshtrace_proxy_upstream_requests_active gauge\n");
    }
    for c in gated {
        let n = c.gate.as_ref().map_or(0, |g| g.in_flight());
        let _ = writeln!(
            out,
            "meshtrace_proxy_upstream_requests_active{{{}}} {n}",
            labels(c)
        );
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
