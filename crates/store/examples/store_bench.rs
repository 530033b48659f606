//! Rough numbers for the store: append rate (with group commit and fsync), bytes per span on
//! disk, head memory, trace-by-id and search latency.
//!
//! `cargo run --release -p meshtrace-store --example store_bench -- [spans] [dir]`

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use model::{
    KeyValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanId, SpanKind, Status,
    StatusCode, TraceBatch, TraceId,
};
use store::{Store, StoreConfig, TraceQuery};

const SPANS_PER_TRACE: u64 = 8;
const SERVICES: [&str; 4] = ["frontend", "cart", "checkout", "payments"];
const ROUTES: [&str; 6] = [
    "GET /api/cart",
    "POST /api/checkout",
    "GET /api/products/{id}",
    "POST /api/pay",
    "GET /healthz",
    "SELECT orders",
];

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn resource(service: &str, pod: u64) -> Resource {
    Resource {
        attributes: vec![
            KeyValue::new("service.name", service),
            KeyValue::new("service.version", "1.4.2"),
            KeyValue::new("k8s.namespace.name", "shop"),
            KeyValue::new("k8s.pod.name", format!("{service}-7d9f8c-{pod}")),
            KeyValue::new("host.name", format!("node-{}", pod % 3)),
            KeyValue::new("telemetry.sdk.language", "rust"),
        ],
        dropped_attributes_count: 0,
    }
}

/// One trace of `SPANS_PER_TRACE` spans spread over the services, proxy-style attributes.
fn trace_batches(rng: &mut Rng, now: u64, out: &mut Vec<(usize, Span)>) {
    let trace_id = TraceId::from_halves(rng.next(), rng.next());
    let request_id = format!("{:016x}{:016x}", rng.next(), rng.next());
    let start = now - rng.next() % 1_000_000_000;
    let mut parent = None;
    for i in 0..SPANS_PER_TRACE {
        let svc = (i as usize) % SERVICES.len();
        let span_id = SpanId::from_u64(rng.next() | 1);
        let route = ROUTES[(rng.next() % ROUTES.len() as u64) as usize];
        let status = if rng.next().is_multiple_of(50) {
            500
        } else {
            200
        };
        let s_start = start + i * 150_000 + rng.next() % 10_000;
        let span = Span {
            trace_id,
            span_id,
            parent_span_id: parent,
            name: route.to_owned(),
            kind: if i % 2 == 0 {
                SpanKind::Server
            } else {
                SpanKind::Client
            },
            start_unix_nano: s_start,
            end_unix_nano: s_start + 50_000 + rng.next() % 5_000_000,
            attributes: vec![
                KeyValue::new(
                    "http.method",
                    if route.starts_with("GET") {
                        "GET"
                    } else {
                        "POST"
                    },
                ),
                KeyValue::new(
                    "http.url",
                    format!(
                        "http://{}:8080{}",
                        SERVICES[svc],
                        &route[route.find(' ').unwrap_or(0)..]
                    ),
                ),
                KeyValue::new("http.status_code", status as i64),
                KeyValue::new("http.protocol", "HTTP/1.1"),
                KeyValue::new("component", "proxy"),
                KeyValue::new("guid:x-request-id", request_id.clone()),
                KeyValue::new(
                    "upstream_cluster",
                    format!(
                        "outbound|8080||{}.shop.svc.cluster.local",
                        SERVICES[(svc + 1) % 4]
                    ),
                ),
                KeyValue::new("response_size", (rng.next() % 20_000) as i64),
            ],
            status: Status {
                code: if status == 500 {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                },
                message: String::new(),
            },
            ..Default::default()
        };
        parent = Some(span_id);
        out.push((svc, span));
    }
}

fn make_batch(resources: &[Resource], spans: Vec<(usize, Span)>) -> TraceBatch {
    let mut by_svc: Vec<Vec<Span>> = vec![Vec::new(); resources.len()];
    for (svc, s) in spans {
        by_svc[svc].push(s);
    }
    TraceBatch {
        resource_spans: by_svc
            .into_iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .map(|(i, spans)| ResourceSpans {
                resource: resources[i].clone(),
                schema_url: String::new(),
                scope_spans: vec![ScopeSpans {
                    scope: Scope {
                        name: "meshtrace-proxy".into(),
                        version: "0.1.0".into(),
                        ..Default::default()
                    },
                    schema_url: String::new(),
                    spans,
                }],
            })
            .collect(),
    }
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let tmp;
    let dir = match args.get(2) {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir().expect("tempdir");
            tmp.path().to_path_buf()
        }
    };
    let mut cfg = StoreConfig::new(&dir);
    cfg.block_max_spans = 2_000_000; // cut only on flush, to measure the head
    cfg.block_max_age = Duration::from_secs(3600);
    let store = Store::open(cfg).await.expect("open");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;

    let rss_empty = rss_mb();
    let resources: Vec<Resource> = SERVICES
        .iter()
        .enumerate()
        .map(|(i, s)| resource(s, i as u64))
        .collect();
    {
        // OTLP encoding cost alone, on a sample
        let mut rng = Rng(7);
        let t = Instant::now();
        let sample: Vec<TraceBatch> = (0..1000)
            .map(|_| {
                let mut spans = Vec::new();
                while spans.len() < 100 {
                    trace_batches(&mut rng, now, &mut spans);
                }
                make_batch(&resources, spans)
            })
            .collect();
        let n: usize = sample.iter().map(|b| b.span_count()).sum();
        println!(
            "generating test spans alone: {:.0} spans/s (one core)",
            n as f64 / t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        let bytes: usize = sample
            .iter()
            .map(|b| wire::otlp::encode_protobuf(b).len())
            .sum();
        println!(
            "OTLP encode alone: {:.0} spans/s ({:.0} B/span)",
            n as f64 / t.elapsed().as_secs_f64(),
            bytes as f64 / n as f64
        );
    }

    // 16 writers, each generating batches of ~100 spans (12-13 traces) as a collector sends
    // them; generation is cheap next to appending and keeps the input out of the RSS figure.
    let writers = 16u64;
    let started = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let resources = resources.clone();
            tokio::spawn(async move {
                let mut rng = Rng(0x9e3779b97f4a7c15 ^ (w + 1));
                let mut ids = Vec::new();
                let mut made = 0;
                while made < total / writers {
                    let mut spans = Vec::new();
                    while spans.len() < 100 {
                        trace_batches(&mut rng, now, &mut spans);
                        ids.push(spans.last().map(|(_, s)| s.trace_id).unwrap_or_default());
                    }
                    made += spans.len() as u64;
                    store
                        .append(make_batch(&resources, spans))
                        .await
                        .expect("append");
                }
                ids
            })
        })
        .collect();
    let mut trace_ids = Vec::new();
    for h in handles {
        trace_ids.extend(h.await.expect("writer"));
    }
    let secs = started.elapsed().as_secs_f64();
    let st = store.stats();
    println!(
        "append: {} spans in {:.2}s = {:.0} spans/s, {} fsyncs, WAL {:.1} MB ({:.0} B/span)",
        st.spans_appended,
        secs,
        st.spans_appended as f64 / secs,
        st.wal_fsyncs,
        st.wal_bytes as f64 / 1e6,
        st.wal_bytes as f64 / st.spans_appended as f64
    );
    // Growth over the empty store: the head plus allocator slack from transient buffers.
    println!(
        "head: RSS {:.0} MB above the empty store for {} spans",
        rss_mb() - rss_empty,
        st.head_spans
    );

    let mut lat = Vec::new();
    for id in trace_ids.iter().step_by((trace_ids.len() / 2000).max(1)) {
        let t = Instant::now();
        let tr = store.trace(*id).await.expect("trace");
        lat.push(t.elapsed());
        assert!(tr.is_some());
    }
    lat.sort();
    println!(
        "trace by id (head): p50 {:?} p99 {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );

    let t = Instant::now();
    store.flush().await.expect("flush");
    let st = store.stats();
    println!(
        "flush: {:.2}s, {} blocks, {:.1} MB = {:.1} bytes/span on disk",
        t.elapsed().as_secs_f64(),
        st.blocks,
        st.block_bytes as f64 / 1e6,
        st.block_bytes as f64 / st.spans_appended as f64
    );

    column_sizes(&dir);
    let mut lat = Vec::new();
    for id in trace_ids.iter().step_by((trace_ids.len() / 2000).max(1)) {
        let t = Instant::now();
        let tr = store.trace(*id).await.expect("trace");
        lat.push(t.elapsed());
        assert_eq!(tr.map(|t| t.spans.len()), Some(SPANS_PER_TRACE as usize));
    }
    lat.sort();
    println!(
        "trace by id (block): p50 {:?} p99 {:?} max {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );

    for (what, q) in [
        (
            "service",
            TraceQuery {
                service: Some("checkout".into()),
                ..Default::default()
            },
        ),
        (
            "service+op",
            TraceQuery {
                service: Some("payments".into()),
                operation: Some("POST /api/pay".into()),
                ..Default::default()
            },
        ),
        (
            "tag",
            TraceQuery {
                tags: vec![("http.status_code".into(), "500".into())],
                ..Default::default()
            },
        ),
        (
            "min duration",
            TraceQuery {
                min_duration: Some(Duration::from_millis(5)),
                ..Default::default()
            },
        ),
    ] {
        let t = Instant::now();
        let found = store.find_traces(&q).await.expect("search");
        println!("search {what}: {} traces in {:?}", found.len(), t.elapsed());
    }
    let t = Instant::now();
    let deps = store
        .dependencies(now + 1_000_000_000, 3_600_000_000_000)
        .await
        .expect("deps");
    println!("dependencies: {} links in {:?}", deps.len(), t.elapsed());

    drop(store);
    let t = Instant::now();
    let store = Store::open({
        let mut c = StoreConfig::new(&dir);
        c.block_max_age = Duration::from_secs(3600);
        c
    })
    .await
    .expect("reopen");
    println!(
        "reopen with {} blocks: {:?}",
        store.stats().blocks,
        t.elapsed()
    );
}

/// Compressed bytes per column of every block under `dir`, for tuning the schema.
#[allow(dead_code)]
pub fn column_sizes(dir: &std::path::Path) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let Ok(entries) = std::fs::read_dir(dir.join("blocks")) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(file) = std::fs::File::open(e.path().join("data.parquet")) else {
            continue;
        };
        let Ok(reader) = SerializedFileReader::new(file) else {
            continue;
        };
        let md = reader.metadata();
        let rows = md.file_metadata().num_rows().max(1) as f64;
        let mut sizes: Vec<(String, i64)> = Vec::new();
        for rg in md.row_groups() {
            for (i, c) in rg.columns().iter().enumerate() {
                if sizes.len() <= i {
                    sizes.push((c.column_path().string(), 0));
                }
                sizes[i].1 += c.compressed_size();
            }
        }
        for (name, size) in sizes {
            println!("  {name:<36} {:>7.2} B/span", size as f64 / rows);
        }
    }
}
