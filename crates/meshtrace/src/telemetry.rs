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

/// How a process names its metrics on `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// `meshtrace_*`.
    Meshtrace,
    /// `otelcol_*`, the OpenTelemetry Collector's own names (`otelcol_receiver_accepted_spans_total`,
    /// `otelcol_exporter_queue_size`, ...), so its dashboards and alerts work on `meshtrace
    /// collector` unchanged. The names are kept once, in the code, and renamed when scraped.
    OtelCollector,
}

/// Installs the process-wide metrics recorder and returns routes for `/metrics` and `/healthz`.
pub fn metrics_routes(naming: Naming) -> anyhow::Result<Router> {
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
        .route("/metrics", get(move || render(handle.clone(), naming)))
        .route("/healthz", get(|| async { "ok\n" })))
}

async fn render(handle: PrometheusHandle, naming: Naming) -> impl IntoResponse {
    let text = handle.render();
    let text = match naming {
        Naming::Meshtrace => text,
        Naming::OtelCollector => rename(&text, "meshtrace_", "otelcol_"),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Renames metrics in Prometheus text: sample lines and their `# HELP`/`# TYPE` lines.
fn rename(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let (head, rest) = match line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
        {
            Some(rest) => (&line[..7], rest),
            None => ("", line),
        };
        out.push_str(head);
        match rest.strip_prefix(from) {
            Some(name) => {
                out.push_str(to);
                out.push_str(name);
            }
            None => out.push_str(rest),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::rename;

    #[test]
    fn names_are_renamed_in_samples_and_comments_only() {
        let text = "# HELP meshtrace_exporter_sent_spans_total spans sent\n\
                    # TYPE meshtrace_exporter_sent_spans_total counter\n\
                    meshtrace_exporter_sent_spans_total{exporter=\"otlp/meshtrace_x\"} 4\n\
                    other_metric 1\n";
        assert_eq!(
            rename(text, "meshtrace_", "otelcol_"),
            "# HELP otelcol_exporter_sent_spans_total spans sent\n\
             # TYPE otelcol_exporter_sent_spans_total counter\n\
             otelcol_exporter_sent_spans_total{exporter=\"otlp/meshtrace_x\"} 4\n\
             other_metric 1\n"
        );
    }
}
