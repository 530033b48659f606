//! Starts the mesh in dependency order, runs traffic and the progress line, and stops everything
//! in an order that loses nothing.

use std::ffi::OsString;
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::process::Child;
use crate::topology::{self, Proxy, SERVICES};
use crate::traffic::{self, Counters};
use crate::watch::Watcher;

/// How long a component may take to announce its listeners.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after a trace's first span the watcher looks at it.
const SETTLE: Duration = Duration::from_secs(5);
/// How long the last look waits for the newest traces to be whole.
const DRAIN_WAIT: Duration = Duration::from_secs(20);
/// How long a component may take to stop cleanly.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// `meshtrace demo`'s options.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the UI and API listen (`host:port`).
    pub query: String,
    /// Requests per second through the edge.
    pub rate: f64,
    /// Percentage of traces the collector keeps.
    pub sampling: f64,
    /// Stop after this long; `None` runs until `stop` completes.
    pub duration: Option<Duration>,
    /// Where configs, logs and data go; `None` is a temporary directory removed at exit.
    pub dir: Option<PathBuf>,
    /// The `meshtrace` executable the components are run with.
    pub exe: PathBuf,
}

impl Options {
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.rate.is_finite() && self.rate > 0.0 && self.rate <= 100_000.0,
            "--rate {} is not a request rate between 0 and 100000 per second",
            self.rate
        );
        anyhow::ensure!(
            (0.0..=100.0).contains(&self.sampling),
            "--sampling {} is not a percentage between 0 and 100",
            self.sampling
        );
        anyhow::ensure!(
            self.query
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()),
            "--query {:?} is not host:port",
            self.query
        );
        Ok(())
    }
}

/// The running mesh, in start order (the backend first).
struct Mesh {
    children: Vec<Child>,
}

impl Mesh {
    async fn start(
        &mut self,
        exe: &Path,
        logs: &Path,
        name: &str,
        args: Vec<OsString>,
        expect: &[&str],
    ) -> anyhow::Result<&Child> {
        let child = Child::start(exe, name, &args, expect, logs, START_TIMEOUT).await?;
        self.children.push(child);
        Ok(self.children.last().expect("just pushed"))
    }

    /// Stops the traffic-facing side first and the backend last, each stage once the one
    /// before it has flushed: proxies and apps, then the collector (its queue drains into the
    /// backend), then the backend (its head becomes a block).
    async fn stop(mut self) {
        let backend = (!self.children.is_empty()).then(|| self.children.remove(0));
        let collector = (!self.children.is_empty()).then(|| self.children.remove(0));
        let stops = self.children.drain(..).map(|c| c.stop(STOP_GRACE));
        futures::future::join_all(stops).await;
        if let Some(c) = collector {
            c.stop(STOP_GRACE).await;
        }
        if let Some(b) = backend {
            b.stop(STOP_GRACE).await;
        }
    }
}

/// Runs the demo until `opts.duration` has passed or `stop` completes.
pub async fn run(
    opts: Options,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    opts.check()?;
    let temp;
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("meshtrace-demo-")
                .tempdir()
                .context("cannot create a temporary directory for the demo")?;
            temp.path().to_owned()
        }
    };
    let (configs, logs) = (dir.join("config"), dir.join("logs"));
    for d in [&configs, &logs] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    println!(
        "meshtrace demo: starting the mesh (configs and logs in {})",
        dir.display()
    );

    // `stop` may come during start-up too: then what started is stopped and that is all.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        stop_tx.send_replace(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let mut mesh = Mesh {
        children: Vec::new(),
    };
    let started = tokio::select! {
        started = start_mesh(&mut mesh, &opts, &dir, &configs, &logs) => Some(started),
        () = stopped() => None,
    };
    let (query, edge) = match started {
        Some(Ok(addrs)) => addrs,
        Some(Err(e)) => {
            mesh.stop().await;
            return Err(e);
        }
        None => {
            println!("meshtrace demo: stopped while starting");
            mesh.stop().await;
            return Ok(());
        }
    };
    println!("meshtrace: query listening on {query} (web UI, Jaeger API)");
    println!("meshtrace demo: the mesh is up:");
    println!("  web UI      http://{query}/");
    println!(
        "  edge        http://{edge}{} → service-a → service-b → service-c",
        topology::ENTRY_PATH
    );
    println!(
        "  collector   keeps {}% of traces (hash_seed {}), adds datacenter={}",
        opts.sampling,
        topology::HASH_SEED,
        topology::DATACENTER
    );
    println!(
        "meshtrace demo: sending {} requests/s through the edge{}",
        opts.rate,
        match opts.duration {
            Some(d) => format!(" for {}", humantime::format_duration(d)),
            None => "; Ctrl-C to stop".into(),
        }
    );

    drive(&opts, query, edge, stopped()).await;
    println!("meshtrace demo: stopping the mesh");
    mesh.stop().await;
    if opts.dir.is_some() {
        println!(
            "meshtrace demo: data kept in {}; see it again with: meshtrace all-in-one --data-dir {}",
            dir.display(),
            dir.join("data").display()
        );
    }
    Ok(())
}

/// Starts every component, the backend first and the edge last, each told the addresses of the
/// ones it sends to. Returns the query and edge addresses.
async fn start_mesh(
    mesh: &mut Mesh,
    opts: &Options,
    dir: &Path,
    configs: &Path,
    logs: &Path,
) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let exe = &opts.exe;
    let backend = mesh
        .start(
            exe,
            logs,
            "all-in-one",
            os_args(&[
                "all-in-one",
                "--data-dir",
                &dir.join("data").display().to_string(),
                "--query",
                &opts.query,
                "--otlp-grpc",
                "127.0.0.1:0",
                "--otlp-http",
                "127.0.0.1:0",
                "--zipkin",
                "127.0.0.1:0",
            ]),
            &["query", "otlp-grpc"],
        )
        .await?;
    let query = backend.addr("query")?;
    let backend_grpc = backend.addr("otlp-grpc")?;

    let collector_config = configs.join("collector.yaml");
    write(
        &collector_config,
        &topology::collector_yaml(opts.sampling, backend_grpc, &dir.join("queue")),
    )?;
    let collector = mesh
        .start(
            exe,
            logs,
            "collector",
            os_args(&[
                "collector",
                "--config",
                &collector_config.display().to_string(),
            ]),
            &["otlp-grpc", "zipkin"],
        )
        .await?;
    let otlp = collector.addr("otlp-grpc")?;
    let zipkin = collector.addr("zipkin")?;

    // From the end of the chain back to its start: each hop needs the address of the next.
    let mut next: Option<(&str, SocketAddr)> = None; // (service, its inbound sidecar)
    for s in SERVICES.iter().rev() {
        let mut downstream = None;
        if let Some((next_name, next_inbound)) = next {
            let out = Proxy::outbound(s.name, next_name, next_inbound);
            let via = start_proxy(mesh, exe, configs, logs, &out, zipkin).await?;
            let next_path = SERVICES
                .iter()
                .find(|n| n.name == next_name)
                .map_or("/", |n| n.path);
            downstream = Some((via, next_name, next_path));
        }
        let mut args = vec![
            "demo-service".to_owned(),
            "--name".into(),
            s.name.into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--work".into(),
            s.work.into(),
            "--otlp-endpoint".into(),
            format!("http://{otlp}"),
            "--fail-percent".into(),
            s.fail_percent.to_string(),
            "--slow-percent".into(),
            s.slow_percent.to_string(),
        ];
        if let Some((via, host, path)) = downstream {
            args.extend([
                "--downstream-via".into(),
                via.to_string(),
                "--downstream-host".into(),
                host.into(),
                "--downstream-path".into(),
                path.into(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let app = mesh
            .start(exe, logs, s.name, os_args(&args), &[s.name])
            .await?;
        let app_addr = app.addr(s.name)?;
        let inbound = Proxy::inbound(s.name, app_addr);
        let inbound_addr = start_proxy(mesh, exe, configs, logs, &inbound, zipkin).await?;
        next = Some((s.name, inbound_addr));
    }
    let (_, first_inbound) = next.context("the demo has no services")?;
    let edge = start_proxy(
        mesh,
        exe,
        configs,
        logs,
        &Proxy::edge(first_inbound),
        zipkin,
    )
    .await?;
    Ok((query, edge))
}

/// Writes the proxy's config and starts it; returns its listener's address.
async fn start_proxy(
    mesh: &mut Mesh,
    exe: &Path,
    configs: &Path,
    logs: &Path,
    proxy: &Proxy,
    zipkin: SocketAddr,
) -> anyhow::Result<SocketAddr> {
    let path = configs.join(format!("{}.yaml", proxy.node_id));
    write(&path, &proxy.yaml(zipkin))?;
    let child = mesh
        .start(
            exe,
            logs,
            &proxy.node_id,
            os_args(&["proxy", "--config", &path.display().to_string()]),
            &[proxy.mode],
        )
        .await?;
    Ok(child.addr(proxy.mode)?)
}

/// Traffic, progress line and watcher until the duration or `stop`; then the last look.
async fn drive(
    opts: &Options,
    query: SocketAddr,
    edge: SocketAddr,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let counters = Arc::new(Counters::default());
    let (stop_traffic, traffic_stopped) = tokio::sync::oneshot::channel::<()>();
    let traffic = tokio::spawn(traffic::run(
        edge,
        opts.rate,
        Arc::clone(&counters),
        async {
            let _ = traffic_stopped.await;
        },
    ));
    let deadline = async {
        match opts.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop, deadline);

    let mut watcher = Watcher::new(query, SETTLE);
    let mut progress = Progress::new(query);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = &mut deadline => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = watcher.poll().await {
            tracing::warn!("{e}");
        }
        watcher.recheck(false).await;
        progress.show(&counters, &watcher, false);
    }
    let _ = stop_traffic.send(());
    let _ = traffic.await;
    // Every hop flushes within a second or two (proxies 200 ms, SDK 200 ms, collector batch
    // 200 ms); then the last look covers the newest traces too, once they stop changing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Err(e) = watcher.drain(DRAIN_WAIT).await {
        tracing::warn!("{e}");
    }
    watcher.recheck(true).await;
    progress.show(&counters, &watcher, true);
}

/// The progress line: one line rewritten in place on a terminal, a line every 10 s otherwise.
struct Progress {
    query: SocketAddr,
    terminal: bool,
    announced_first: bool,
    last_line: std::time::Instant,
}

impl Progress {
    fn new(query: SocketAddr) -> Self {
        Progress {
            query,
            terminal: std::io::stdout().is_terminal(),
            announced_first: false,
            last_line: std::time::Instant::now(),
        }
    }

    fn show(&mut self, c: &Counters, w: &Watcher, last: bool) {
        let s = &w.seen;
        let mut out = std::io::stdout().lock();
        if !self.announced_first {
            if let Some(id) = &s.first_complete {
                self.announced_first = true;
                if self.terminal {
                    let _ = write!(out, "\r\x1b[K");
                }
                let _ = writeln!(
                    out,
                    "meshtrace demo: first trace stored: http://{}/trace/{id}",
                    self.query
                );
            }
        }
        let line = format!(
            "meshtrace demo: {} requests ({} errors{}) · {} traces stored ({} complete, {} broken, {} with errors)",
            Counters::get(&c.sent),
            Counters::get(&c.errors),
            match Counters::get(&c.skipped) {
                0 => String::new(),
                n => format!(", {n} skipped: too many in flight"),
            },
            s.stored,
            s.complete,
            s.broken,
            s.with_errors,
        );
        if self.terminal && !last {
            let _ = write!(out, "\r\x1b[K{line}");
        } else if last || self.last_line.elapsed() >= Duration::from_secs(10) {
            if self.terminal {
                let _ = write!(out, "\r\x1b[K");
            }
            let _ = writeln!(out, "{line}");
            self.last_line = std::time::Instant::now();
        }
        if last {
            if let Some((id, why)) = &s.last_broken {
                let _ = writeln!(
                    out,
                    "meshtrace demo: a broken trace: http://{}/trace/{id}: {why}",
                    self.query
                );
            }
        }
        let _ = out.flush();
    }
}

fn os_args(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
