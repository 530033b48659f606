//! `meshtrace demo`: the whole mesh of the seed articles on one machine (see the `demo` crate),
//! and `meshtrace demo-service`, the instrumented app the demo runs three of (hidden from help).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::shutdown::Shutdown;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the web UI and the query API listen.
    #[arg(long, default_value = "127.0.0.1:16686")]
    query: String,
    /// Requests per second sent through the edge.
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Percentage of traces the collector keeps (consistent, by trace id).
    #[arg(long, default_value_t = 100.0)]
    sampling: f64,
    /// Stop after this long (e.g. 30s, 5m); without it, runs until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Keep configs, logs and data here (default: a temporary directory removed at exit).
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signals().context("cannot listen for signals")?;
    let exe = std::env::current_exe().context("cannot find the meshtrace executable")?;
    let options = demo::Options {
        query: args.query,
        rate: args.rate,
        sampling: args.sampling,
        duration: args.duration,
        dir: args.dir,
        exe,
    };
    demo::run(options, shutdown.wait()).await
}

#[derive(clap::Args, Debug)]
pub struct ServiceArgs {
    /// service.name
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The INTERNAL span for the service's own work.
    #[arg(long, default_value = "work")]
    work: String,
    /// OTLP/gRPC endpoint of the collector.
    #[arg(long)]
    otlp_endpoint: String,
    #[arg(long, default_value_t = 0.0)]
    fail_percent: f64,
    #[arg(long, default_value_t = 0.0)]
    slow_percent: f64,
    /// The outbound sidecar the next service is called through.
    #[arg(long, requires_all = ["downstream_host", "downstream_path"])]
    downstream_via: Option<std::net::SocketAddr>,
    /// The next service's name (the Host header the sidecar routes on).
    #[arg(long)]
    downstream_host: Option<String>,
    #[arg(long)]
    downstream_path: Option<String>,
}

pub async fn run_service(args: ServiceArgs) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signals().context("cannot listen for signals")?;
    let downstream = match (
        args.downstream_via,
        args.downstream_host,
        args.downstream_path,
    ) {
        (Some(via), Some(host), Some(path)) => Some(demo::service::Downstream { via, host, path }),
        _ => None,
    };
    let config = demo::service::ServiceConfig {
        name: args.name,
        listen: args.listen,
        work: args.work,
        downstream,
        otlp_endpoint: args.otlp_endpoint,
        fail_percent: args.fail_percent,
        slow_percent: args.slow_percent,
    };
    demo::service::run(config, shutdown.wait())
        .await
        .context("demo service failed")
}
