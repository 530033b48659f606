//! `--read-traces`: fetches random traces by id from the Jaeger API, one at a time, and
//! reports latency percentiles. Each answer is checked to hold the whole trace.

use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::synth::{self, Shape};

pub async fn run(query: &str, shape: Shape, traces: u64, reads: usize) -> anyhow::Result<()> {
    anyhow::ensure!(traces > 0, "no traces to read: --spans is 0");
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let mut pick = SmallRng::seed_from_u64(shape.seed ^ 0x5eed);
    let mut latencies = Vec::with_capacity(reads);
    for _ in 0..reads {
        let index = pick.random_range(0..traces);
        let id = synth::trace_id(shape, index);
        let uri: hyper::Uri = format!("http://{query}/api/traces/{}", id.to_short_hex())
            .parse()
            .context("query address")?;
        let started = Instant::now();
        let response = client.get(uri).await.context("query request")?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        latencies.push(started.elapsed());
        anyhow::ensure!(status.is_success(), "trace {id} answered {status}");
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let spans = v["data"][0]["spans"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(
            spans == shape.spans_per_trace,
            "trace {id} has {spans} spans, expected {}",
            shape.spans_per_trace
        );
    }
    latencies.sort();
    let pct = |p: f64| -> f64 {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        ms(latencies[i])
    };
    println!(
        "{}",
        serde_json::json!({
            "mode": "read",
            "reads": latencies.len(),
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "max_ms": latencies.last().map_or(0.0, |d| ms(*d)),
        })
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
