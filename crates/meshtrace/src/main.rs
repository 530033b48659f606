//! `meshtrace`: distributed tracing for service meshes, in one binary.
//!
//! This crate is only the command line and the wiring: each subcommand assembles the library
//! crates (`receiver` → `store` → `query`) into a running process.

mod all_in_one;
mod collector_cmd;
mod demo_cmd;
mod loadgen;
mod proxy_cmd;
mod shutdown;
mod store_sink;
mod telemetry;

use std::process::ExitCode;

/// glibc's allocator spent a third of ingest CPU in malloc/free (measured with perf, see
/// BENCHMARKS.md); mimalloc removes most of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "meshtrace",
    version,
    about = "Distributed tracing for service meshes, in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receivers (OTLP, Zipkin), durable store and query API in one process, like `jaeger all-in-one`.
    AllInOne(all_in_one::Args),
    /// Agent/gateway pipeline from an OpenTelemetry-Collector-style YAML config.
    Collector(collector_cmd::Args),
    /// Tracing HTTP proxy: edge, inbound or outbound sidecar.
    Proxy(proxy_cmd::Args),
    /// A whole traced service mesh on one machine: edge, sidecars, three OpenTelemetry-instrumented
    /// services, collector and backend with its UI, with traffic.
    Demo(demo_cmd::Args),
    /// One instrumented service of the demo mesh (run by `meshtrace demo`).
    #[command(hide = true)]
    DemoService(demo_cmd::ServiceArgs),
    /// Synthetic traces at a chosen rate over OTLP gRPC (or Zipkin JSON), and trace-by-id read latency, for benchmarks.
    Loadgen(loadgen::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging();
    // The proxy serves requests on worker threads of its own (one single-threaded runtime per
    // core); this runtime only runs its admin port, span reporter and certificate watchers, for
    // which the main thread is enough: two threads fewer (their stacks, allocator heaps and
    // wake-ups) in a process that must stay small beside every pod.
    let mut builder = match cli.command {
        Command::Proxy(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshtrace: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::AllInOne(args) => all_in_one::run(args).await,
            Command::Loadgen(args) => loadgen::run(args).await,
            Command::Collector(args) => collector_cmd::run(args).await,
            Command::Proxy(args) => proxy_cmd::run(args).await,
            Command::Demo(args) => demo_cmd::run(args).await,
            Command::DemoService(args) => demo_cmd::run_service(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshtrace: error: {}", explain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, leaving out a cause whose text the message before
/// it already ends with (many error types print their source in their own message too).
fn explain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::explain;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = || std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        #[derive(Debug, thiserror::Error)]
        #[error("cannot listen on 127.0.0.1:1: {source}")]
        struct Bind {
            source: std::io::Error,
        }
        let e = anyhow::Error::new(Bind { source: io() }).context("cannot start");
        assert_eq!(
            explain(&e),
            "cannot start: cannot listen on 127.0.0.1:1: Address already in use"
        );
        // Causes not in the message are all there, in order.
        let e = anyhow::Error::new(io())
            .context("cannot bind")
            .context("cannot start");
        assert_eq!(
            explain(&e),
            "cannot start: cannot bind: Address already in use"
        );
    }
}
