//! `meshtrace proxy --config FILE`: the tracing mesh proxy (edge, inbound and outbound listeners
//! from one YAML). Prints `meshtrace: {listener} listening on {addr} (...)` per listener (and
//! `admin`) once bound, then serves until SIGINT/SIGTERM, when it flushes its spans and exits.

use anyhow::Context;

use crate::shutdown::Shutdown;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The proxy configuration (YAML).
    #[arg(long)]
    config: std::path::PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    // Before anything else: may start this program again (see `proxy::memory`).
    if let Err(e) = proxy::memory::restart_without_huge_pages(std::env::args_os()) {
        tracing::debug!("transparent huge pages stay on: {e}");
    }
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let config =
        proxy::Config::from_yaml(&text).with_context(|| format!("in {}", args.config.display()))?;
    let shutdown = Shutdown::on_signals().context("cannot listen for signals")?;
    let modes: Vec<_> = config.listeners.iter().map(|l| l.mode).collect();
    let running = proxy::start(config)
        .await
        .context("cannot start the proxy")?;
    for ((name, addr), mode) in running.listeners.iter().zip(modes) {
        println!("meshtrace: {name} listening on {addr} (proxy, {mode:?} mode)");
    }
    if let Some(addr) = running.admin {
        println!("meshtrace: admin listening on {addr} (/metrics, /healthz, /clusters, POST /reopen_logs)");
    }
    shutdown.wait().await;
    running.shutdown().await;
    Ok(())
}
