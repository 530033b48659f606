//! `meshtrace loadgen`: synthetic traces at a chosen rate, for benchmarks.
//!
//! Requests are built and encoded before the clock starts, so the figures measure the server,
//! not the generator. Traces are derived from `--seed`, so a later `--read-traces` run knows
//! which trace ids exist and what they hold without any shared state.

mod raw_grpc;
mod read;
mod synth;
mod zipkin_http;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// OTLP gRPC address to send to (host:port).
    #[arg(long, default_value = "127.0.0.1:4317")]
    otlp_grpc: String,
    /// Send Zipkin v2 JSON (`POST /api/v2/spans`) to this address (host:port) instead of OTLP.
    #[arg(long)]
    zipkin: Option<String>,
    /// Spans to send in total.
    #[arg(long, default_value_t = 100_000)]
    spans: u64,
    /// Spans per second to aim for; 0 sends as fast as the server takes them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Spans per export request (the OpenTelemetry SDKs' batch default is 512).
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Export requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Spans in each synthetic trace.
    #[arg(long, default_value_t = 8)]
    spans_per_trace: usize,
    /// Seed the trace ids and contents derive from.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Instead of sending: fetch this many random traces (of the `--spans` sent with this seed)
    /// by id from the query API and report the latency.
    #[arg(long)]
    read_traces: Option<usize>,
    /// Query API address for `--read-traces`.
    #[arg(long, default_value = "127.0.0.1:16686")]
    query: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.spans_per_trace >= 1,
        "--spans-per-trace must be at least 1"
    );
    anyhow::ensure!(args.batch >= 1, "--batch must be at least 1");
    let shape = synth::Shape {
        seed: args.seed,
        spans_per_trace: args.spans_per_trace,
    };
    let traces = args.spans.div_ceil(args.spans_per_trace as u64);
    if let Some(reads) = args.read_traces {
        return read::run(&args.query, shape, traces, reads).await;
    }
    send(&args, shape, traces).await
}

/// The ceiling to compare against: spans/s one core achieves merely decoding the same spans as
/// OTLP request bytes with prost, measured here in the same process right after the run.
fn decode_baseline(requests: &[synth::EncodedRequest]) -> f64 {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let start = Instant::now();
    let mut spans = 0u64;
    for r in requests {
        if ExportTraceServiceRequest::decode(r.body.clone()).is_ok() {
            spans += r.spans;
        }
    }
    spans as f64 / start.elapsed().as_secs_f64()
}

/// The same ceiling at the run's pace: up to [`PACED_SAMPLES`] requests decoded one at a time,
/// each after waiting the interval the run left between requests.
/// Work that arrives every 50 ms meets cold caches (and on a VM, a vCPU the host may have
/// lent away), so a fixed-rate run is compared with a decode that pays the same.
/// Spans/s from the median request's decode time.
fn paced_decode_baseline(requests: &[synth::EncodedRequest], interval: Duration) -> f64 {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let mut per_span: Vec<f64> = requests
        .iter()
        .take(PACED_SAMPLES)
        .filter_map(|r| {
            std::thread::sleep(interval);
            let start = Instant::now();
            ExportTraceServiceRequest::decode(r.body.clone()).ok()?;
            Some(start.elapsed().as_secs_f64() / r.spans.max(1) as f64)
        })
        .collect();
    per_span.sort_by(f64::total_cmp);
    match per_span.get(per_span.len() / 2) {
        Some(median) if *median > 0.0 => 1.0 / median,
        _ => 0.0,
    }
}

/// Requests the paced baseline decodes (at 10k spans/s in batches of 512: ≈2 s).
const PACED_SAMPLES: usize = 40;

/// For Zipkin JSON: spans/s one core achieves merely parsing the same bodies as JSON (into
/// nothing), measured the same way.
fn json_parse_baseline(requests: &[synth::EncodedRequest]) -> f64 {
    let start = Instant::now();
    let mut spans = 0u64;
    for r in requests {
        if serde_json::from_slice::<serde::de::IgnoredAny>(&r.body).is_ok() {
            spans += r.spans;
        }
    }
    spans as f64 / start.elapsed().as_secs_f64()
}

/// Where requests go (the HTTP client is boxed: it is twice the gRPC one's size).
#[derive(Clone)]
enum Sender {
    Grpc(raw_grpc::Client),
    Zipkin(Box<zipkin_http::Client>),
}

impl Sender {
    async fn export(&mut self, body: bytes::Bytes) -> anyhow::Result<()> {
        match self {
            Self::Grpc(c) => c.export(body).await.map_err(anyhow::Error::from),
            Self::Zipkin(c) => c.export(body).await,
        }
    }
}

async fn send(args: &Args, shape: synth::Shape, traces: u64) -> anyhow::Result<()> {
    let build_start = Instant::now();
    let format = if args.zipkin.is_some() {
        synth::Format::ZipkinJson
    } else {
        synth::Format::OtlpProtobuf
    };
    let requests = Arc::new(synth::requests(shape, traces, args.batch, format));
    let bytes: usize = requests.iter().map(|r| r.body.len()).sum();
    let spans: u64 = requests.iter().map(|r| r.spans).sum();
    eprintln!(
        "loadgen: {} requests, {spans} spans, {:.1} MB encoded in {:.1?}",
        requests.len(),
        bytes as f64 / 1e6,
        build_start.elapsed()
    );

    // Spans sent before each request, for pacing at `--rate`.
    let due_after: Arc<Vec<u64>> = Arc::new(
        requests
            .iter()
            .scan(0u64, |sum, r| {
                let before = *sum;
                *sum += r.spans;
                Some(before)
            })
            .collect(),
    );
    let client = match &args.zipkin {
        Some(addr) => Sender::Zipkin(Box::new(zipkin_http::Client::new(addr)?)),
        None => Sender::Grpc(
            raw_grpc::Client::connect(&args.otlp_grpc)
                .await
                .with_context(|| format!("cannot connect to {}", args.otlp_grpc))?,
        ),
    };
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let rate = args.rate;
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, requests, next, failed, due_after) = (
            client.clone(),
            Arc::clone(&requests),
            Arc::clone(&next),
            Arc::clone(&failed),
            Arc::clone(&due_after),
        );
        workers.push(tokio::spawn(async move {
            let mut client = client;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(req) = requests.get(i) else { break };
                if rate > 0 {
                    // Request i is due when the spans before it would have been sent at `rate`.
                    let due = start + Duration::from_secs_f64(due_after[i] as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                if let Err(e) = client.export(req.body.clone()).await {
                    if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("loadgen: export failed: {e}");
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.context("loadgen worker panicked")?;
    }
    let secs = start.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    let otlp = match format {
        synth::Format::OtlpProtobuf => Arc::clone(&requests),
        synth::Format::ZipkinJson => Arc::new(synth::requests(
            shape,
            traces,
            args.batch,
            synth::Format::OtlpProtobuf,
        )),
    };
    let baseline = decode_baseline(&otlp);
    let json_baseline = match format {
        synth::Format::OtlpProtobuf => None,
        synth::Format::ZipkinJson => Some(json_parse_baseline(&requests)),
    };
    // At a fixed rate, the ceiling again at the run's own pace (one request per interval).
    let paced_baseline = (rate > 0).then(|| {
        let interval = Duration::from_secs_f64(args.batch as f64 / rate as f64);
        paced_decode_baseline(&otlp, interval)
    });
    println!(
        "{}",
        serde_json::json!({
            "mode": "send",
            "format": if json_baseline.is_some() { "zipkin-json" } else { "otlp-grpc" },
            "baseline_json_parse_spans_per_second": json_baseline,
            "spans": spans,
            "requests": requests.len(),
            "failed_requests": failed,
            "seconds": secs,
            "spans_per_second": spans as f64 / secs,
            "request_bytes": bytes,
            "baseline_decode_spans_per_second": baseline,
            "baseline_paced_decode_spans_per_second": paced_baseline,
        })
    );
    anyhow::ensure!(failed == 0, "{failed} export requests failed");
    Ok(())
}
