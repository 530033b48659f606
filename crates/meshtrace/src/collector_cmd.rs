//! `meshtrace collector`: runs an OpenTelemetry-Collector-style trace pipeline from a YAML
//! config (`--config FILE`), or checks and explains one (`validate --config FILE`).

use std::future::IntoFuture;
use std::path::{Path, PathBuf};

use anyhow::Context;
use collector::config::Config;
use collector::pipeline::Collector;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// The collector configuration (OpenTelemetry Collector YAML schema, traces pipelines).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Checks a config and explains its pipelines without starting anything.
    Validate {
        /// The collector configuration to check.
        #[arg(long)]
        config: PathBuf,
    },
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match (args.command, args.config) {
        (Some(Sub::Validate { config }), _) => validate(&config),
        (None, Some(config)) => serve(&config).await,
        (None, None) => anyhow::bail!(
            "--config FILE is required (or: meshtrace collector validate --config FILE)"
        ),
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid collector config:\n{}",
            path.display(),
            e.render(Some(&path.display().to_string()))
        )
    })
}

fn validate(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    print!("{}", collector::config::explain(&config));
    println!("{}: valid", path.display());
    Ok(())
}

async fn serve(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    if let Some(level) = &config.service.telemetry.logs.level {
        crate::telemetry::set_log_level(level)
            .with_context(|| format!("service.telemetry.logs.level {level:?}"))?;
    }
    for var in &config.unset_env {
        tracing::warn!("environment variable {var} is not set: used as an empty string");
    }
    let shutdown = Shutdown::on_signals().context("cannot listen for signals")?;

    // Self-metrics first: its port conflicting should fail before receivers start.
    let metrics = &config.service.telemetry.metrics;
    let metrics_server = if metrics.level.as_deref() == Some("none") {
        None
    } else {
        let addr = metrics.endpoint();
        let listener = TcpListener::bind(&addr).await.with_context(|| {
            format!("cannot listen for self-metrics on {addr} (service.telemetry.metrics)")
        })?;
        let routes = crate::telemetry::metrics_routes(crate::telemetry::Naming::OtelCollector)
            .context("cannot start metrics")?;
        Some((listener, routes))
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal = shutdown.clone();
    tokio::spawn(async move {
        signal.wait().await;
        stop_tx.send_replace(true);
    });
    let collector = Collector::start(&config, stop_rx)
        .await
        .with_context(|| format!("cannot start the collector from {}", path.display()))?;
    for l in collector.listeners() {
        println!("meshtrace: {} listening on {} ({})", l.name, l.addr, l.what);
    }
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let metrics_task = match metrics_server {
        Some((listener, routes)) => {
            match listener.local_addr() {
                Ok(addr) => println!("meshtrace: metrics listening on {addr} (/metrics, /healthz)"),
                Err(e) => println!("meshtrace: metrics listening on an unknown address ({e})"),
            }
            let serve = axum::serve(listener, routes).with_graceful_shutdown(async move {
                // Up until the pipeline has drained, so the last counts (sent, failed,
                // dropped on shutdown) can still be scraped.
                let _ = drained_rx.await;
            });
            Some(tokio::spawn(serve.into_future()))
        }
        None => None,
    };
    for (id, _) in config.pipelines() {
        tracing::info!("pipeline {id} running");
    }

    let result = collector.run().await;
    shutdown.trigger();
    let _ = drained_tx.send(());
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    result.map_err(|e| anyhow::anyhow!(e))
}
