//! Logs (to stderr, filtered by `RUST_LOG`, default `info`) and self-metrics in Prometheus text.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Changes the log filter after start-up (a config file's log level), unless `RUST_LOG` set it.
static RELOAD: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr),
        )
        .init();
    if std::env::var_os("RUST_LOG").is_none() {
        let _ = RELOAD.set(handle);
    }
}

/// Sets the log level (`debug`, `info`, `warn`, `error`) unless `RUST_LOG` chose one.
pub fn set_log_level(level: &str) -> anyhow::Result<()> {
    if let Some(handle) = RELOAD.get() {
        let filter = EnvFilter::try_new(level.to_ascii_lowercase())?;
        handle.reload(filter)?;
    }
    Ok(())
}

/// Installs the process-wide metrics recorder and returns routes for `/metrics` and `/healthz`.
pub fn metrics_routes() -> anyhow::Result<Router> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ])?
        .install_recorder()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(Router::new()
        .route("/metrics", get(move || render(handle.clone())))
        .route("/healthz", get(|| async { "ok\n" })))
}

async fn render(handle: PrometheusHandle) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}
