//! `meshtrace all-in-one`: receivers, durable store and query API in one process.

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytesize::ByteSize;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;
use crate::store_sink::StoreSink;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the WAL and blocks are kept.
    #[arg(long, default_value = "./meshtrace-data")]
    data_dir: PathBuf,
    /// OTLP gRPC listen address (host:port; port 0 picks a free port).
    #[arg(long, default_value = "0.0.0.0:4317")]
    otlp_grpc: String,
    /// OTLP HTTP listen address (POST /v1/traces).
    #[arg(long, default_value = "0.0.0.0:4318")]
    otlp_http: String,
    /// Zipkin listen address (POST /api/v2/spans).
    #[arg(long, default_value = "0.0.0.0:9411")]
    zipkin: String,
    /// Query API (Jaeger HTTP API), /metrics and /healthz listen address.
    #[arg(long, default_value = "0.0.0.0:16686")]
    query: String,
    /// How long traces are kept, e.g. 336h, 14d, 90m.
    #[arg(long, default_value = "336h", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// Disk budget for stored data, e.g. 10GiB; the oldest blocks go first when it is exceeded.
    #[arg(long)]
    max_disk: Option<ByteSize>,
    /// Largest request body a receiver accepts, compressed or not.
    #[arg(long, default_value = "20MiB")]
    max_body_size: ByteSize,
    /// Spans held in memory before they are written to a Parquet block.
    #[arg(long, default_value_t = 500_000)]
    block_max_spans: usize,
    /// Oldest age of the in-memory head before it is written to a Parquet block.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    block_max_age: Duration,
    /// How often expired blocks are looked for.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    retention_interval: Duration,
    /// Spans that may wait for the WAL at once; beyond it receivers answer 429 / RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 1_000_000)]
    max_in_flight_spans: usize,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signals().context("cannot listen for signals")?;
    let metrics = crate::telemetry::metrics_routes(crate::telemetry::Naming::Meshtrace)
        .context("cannot start metrics")?;

    // Ports first: a conflict should fail before a possibly long WAL replay.
    let grpc = bind("otlp-grpc", &args.otlp_grpc).await?;
    let http = bind("otlp-http", &args.otlp_http).await?;
    let zipkin = bind("zipkin", &args.zipkin).await?;
    let query = bind("query", &args.query).await?;

    let mut config = store::StoreConfig::new(&args.data_dir);
    config.retention = args.retention;
    config.max_disk_bytes = args.max_disk.map(|b| b.as_u64());
    config.block_max_spans = args.block_max_spans;
    config.block_max_age = args.block_max_age;
    config.retention_interval = args.retention_interval;
    let store = store::Store::open(config)
        .await
        .with_context(|| format!("cannot open the store in {}", args.data_dir.display()))?;

    let limits = receiver::Limits {
        max_body_bytes: usize::try_from(args.max_body_size.as_u64()).unwrap_or(usize::MAX),
    };
    let sink = Arc::new(StoreSink::new(store.clone(), args.max_in_flight_spans));

    announce("otlp-grpc", &grpc, "OTLP/gRPC TraceService");
    announce("otlp-http", &http, "POST /v1/traces");
    announce("zipkin", &zipkin, "POST /api/v2/spans");
    announce(
        "query",
        &query,
        "web UI /, Jaeger API /api/..., /metrics, /healthz",
    );
    println!(
        "meshtrace: data in {} (retention {}{})",
        args.data_dir.display(),
        humantime::format_duration(args.retention),
        args.max_disk
            .map(|b| format!(", disk budget {b}"))
            .unwrap_or_default()
    );

    let mut servers = tokio::task::JoinSet::new();
    servers.spawn(named(
        "otlp-grpc",
        receiver::otlp_grpc::serve(
            grpc,
            receiver::otlp_grpc::TraceService::new(Arc::clone(&sink), limits),
            Default::default(),
            shutdown.clone().wait(),
        ),
    ));
    let http_servers = [
        (
            "otlp-http",
            http,
            receiver::otlp_http::router(Arc::clone(&sink), limits),
        ),
        (
            "zipkin",
            zipkin,
            receiver::zipkin_http::router(Arc::clone(&sink), limits),
        ),
        (
            "query",
            query,
            query::router(store.clone())
                .merge(metrics)
                .merge(ui::router()),
        ),
    ];
    for (name, listener, app) in http_servers {
        let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().wait());
        servers.spawn(named(name, serve.into_future()));
    }

    // Run until a signal, or until a server fails, which stops the others too.
    let mut first_error = None;
    while let Some(joined) = servers.join_next().await {
        let result = joined.context("a server task panicked").and_then(|r| r);
        if let Err(e) = result {
            tracing::error!("{e:#}");
            shutdown.trigger();
            first_error.get_or_insert(e);
        }
    }
    // Every receiver has answered its last request; make the head durable as a block.
    store.flush().await.context("final flush of the store")?;
    tracing::info!("stopped cleanly");
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Names a server's failure.
async fn named<E>(
    name: &'static str,
    serve: impl Future<Output = Result<(), E>>,
) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    serve.await.with_context(|| format!("{name} server failed"))
}

/// Binds `host:port` (a name such as `localhost` is resolved) for the flag `--{name}`.
async fn bind(name: &str, addr: &str) -> anyhow::Result<TcpListener> {
    anyhow::ensure!(
        addr.rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok()),
        "--{name} {addr:?} is not host:port"
    );
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {name} on {addr} (--{name})"))
}

fn announce(name: &str, listener: &TcpListener, what: &str) {
    match listener.local_addr() {
        Ok(addr) => println!("meshtrace: {name} listening on {addr} ({what})"),
        Err(e) => println!("meshtrace: {name} listening on an unknown address ({e})"),
    }
}
