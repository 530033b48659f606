//! The admin port: `/metrics` (Prometheus text), `/healthz` (503 while draining, so a load
//! balancer or Kubernetes stops sending new requests; the port stays up through the drain), and
//! `POST /reopen_logs` (access log files opened again, after logrotate moved them; Envoy's), and
//! `/clusters`: every cluster's endpoints with Envoy's `health_flags` (failing active health
//! checks, pending their first, ejected by outlier detection), requests in flight per endpoint
//! for a `LEAST_REQUEST` cluster, and its circuit breaker, one
//! `listener/cluster::what::value` line each, as Envoy's admin writes them.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::stats::Stats;

pub async fn serve(tcp: TcpListener, stats: Arc<Stats>) {
    loop {
        let Ok((stream, _)) = tcp.accept().await else {
            continue;
        };
        let stats = stats.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let stats = stats.clone();
                async move { Ok::<_, Infallible>(answer(req.method(), req.uri().path(), &stats)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn answer(method: &hyper::Method, path: &str, stats: &Stats) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/reopen_logs" if method == hyper::Method::POST => {
            Stats::inc(&stats.reopen_logs);
            (StatusCode::OK, "reopening the access logs\n".to_owned())
        }
        "/reopen_logs" => (
            StatusCode::METHOD_NOT_ALLOWED,
            "POST /reopen_logs\n".to_owned(),
        ),
        "/metrics" => (StatusCode::OK, stats.render()),
        "/healthz" if stats.draining.load(std::sync::atomic::Ordering::Relaxed) => {
            (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_owned())
        }
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/clusters" => (StatusCode::OK, clusters(stats)),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

/// The `/clusters` page.
fn clusters(stats: &Stats) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for c in stats.clusters() {
        let name = format!("{}/{}", c.listener, c.cluster);
        if let Some(g) = &c.gate {
            let _ = writeln!(out, "{name}::default_priority::max_requests::{}", g.max());
            let _ = writeln!(
                out,
                "{name}::default_priority::rq_active::{}",
                g.in_flight()
            );
        }
        for (i, endpoint) in c.endpoints.iter().enumerate() {
            // Requests in flight per endpoint, where a LEAST_REQUEST balancer counts them.
            if let Some(n) = c.active.as_ref().and_then(|a| a.get(i)) {
                let n = n.load(std::sync::atomic::Ordering::Relaxed);
                let _ = writeln!(out, "{name}::{endpoint}::rq_active::{n}");
            }
            let _ = writeln!(
                out,
                "{name}::{endpoint}::health_flags::{}",
                c.health_flags(i)
            );
        }
    }
    out
}
