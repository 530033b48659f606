//! Sampling compatibility: what `meshtrace collector`'s probabilistic_sampler keeps, end to end
//! (OTLP/HTTP JSON and protobuf in → sampler → OTLP/HTTP JSON out to a recording server), equals what an
//! independent reference of the OpenTelemetry Collector's algorithm keeps
//! (tests/python/collector_sampling_ref.py, standard-library Python), for 10,000 random trace
//! ids at several seeds and percentages, in hash_seed and proportional (W3C threshold) modes; and two collectors with the same seed keep exactly the
//! same traces.

mod collector_harness;
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use collector_harness::*;

fn exporter(name: &str, capture: &Capture, path: &str) -> String {
    format!(
        "  otlphttp/{name}:\n    traces_endpoint: http://{}{path}\n    encoding: json\n    compression: none\n    sending_queue:\n      num_consumers: 2\n    retry_on_failure:\n      initial_interval: 100ms\n",
        capture.addr
    )
}

/// Sends `ids` (one span each) to an OTLP/HTTP receiver in requests of 2,500 spans, as JSON,
/// or with `protobuf` every other request as protobuf: the sampler reads protobuf requests
/// from their bytes and decoded ones from the model, and both must keep the same traces.
fn send(addr: &str, ids: &[String], span_salt: u64, protobuf: bool) {
    for (n, chunk) in ids.chunks(2500).enumerate() {
        let mut body = otlp_json_request(chunk, "sampling-test", span_salt + n as u64);
        let mut content_type = "Content-Type: application/json";
        if protobuf && n % 2 == 0 {
            let batch = wire::otlp::decode_json(&body).expect("test JSON").batch;
            body = wire::otlp::encode_protobuf(&batch);
            content_type = "Content-Type: application/x-protobuf";
        }
        let a = common::post(&format!("http://{addr}/v1/traces"), &[content_type], &body);
        assert_eq!(a.status, 200, "{}", a.text());
    }
}

/// Waits until `path` received `expected` spans (and a moment more, to catch extras).
fn kept(capture: &Capture, path: &str, expected: usize) -> Vec<String> {
    let got = common::eventually(Duration::from_secs(30), || {
        let ids = otlp_json_trace_ids(&capture.bodies(path));
        (ids.len() >= expected).then_some(ids)
    });
    std::thread::sleep(Duration::from_millis(300));
    let ids = otlp_json_trace_ids(&capture.bodies(path));
    assert!(
        got.is_some(),
        "{path}: got {} spans, expected {expected}",
        ids.len()
    );
    ids
}

#[test]
fn collector_sampling_matches_the_otel_reference_for_10000_traces() {
    let cases: [(u32, &str, &str); 8] = [
        (0, "1", "hash_seed"),
        (22, "10", "hash_seed"),
        (12345, "33.33", "hash_seed"),
        (u32::MAX, "50", "hash_seed"),
        (7, "0.1", "hash_seed"),
        (0, "1", "proportional"),
        (0, "10", "proportional"),
        (0, "33.33", "proportional"),
    ];
    let capture = Capture::start();
    let mut processors = String::from("processors:\n");
    let mut exporters = String::from("exporters:\n");
    let mut pipelines = String::new();
    for (i, (seed, pct, mode)) in cases.iter().enumerate() {
        processors += &format!(
            "  probabilistic_sampler/{i}:\n    mode: {mode}\n    hash_seed: {seed}\n    sampling_percentage: {pct}\n"
        );
        exporters += &exporter(&i.to_string(), &capture, &format!("/p{i}"));
        pipelines += &format!(
            "    traces/{i}:\n      receivers: [otlp]\n      processors: [probabilistic_sampler/{i}]\n      exporters: [otlphttp/{i}]\n"
        );
    }
    let config = format!(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:0\n{processors}{exporters}service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n  pipelines:\n{pipelines}"
    );
    let dir = tempfile::tempdir().unwrap();
    let c = collector(dir.path(), &config, &["otlp-http", "metrics"]);
    let ids = random_trace_ids(10_000, 0x5eed);
    send(c.addr("otlp-http"), &ids, 1, true);
    for (i, (seed, pct, mode)) in cases.iter().enumerate() {
        let want = common::sampling_reference(*seed, pct, mode, &ids);
        let got = kept(&capture, &format!("/p{i}"), want.len());
        assert_eq!(
            got.len(),
            want.len(),
            "{mode} seed {seed} at {pct}%: no span twice"
        );
        let got: BTreeSet<String> = got.into_iter().collect();
        assert_eq!(got, want, "{mode} seed {seed} at {pct}%: kept sets differ");
        println!(
            "{mode} seed {seed} at {pct}%: {} of 10000 kept, identical to the reference",
            want.len()
        );
    }
    let metrics = common::get(&format!("http://{}/metrics", c.addr("metrics"))).text();
    assert!(
        metrics.contains("otelcol_processor_probabilistic_sampler_count_traces_sampled_total{processor=\"probabilistic_sampler/0\",policy=\"trace_id_hash\",sampled=\"true\"}"),
        "{metrics}"
    );
    assert_eq!(c.terminate(), Some(0));
}

#[test]
fn collector_two_agents_with_the_same_seed_keep_the_same_traces() {
    let capture = Capture::start();
    let config = |tag: &str| {
        format!(
            "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:0\nprocessors:\n  probabilistic_sampler:\n    hash_seed: 42\n    sampling_percentage: 25\n  probabilistic_sampler/w3c:\n    mode: proportional\n    sampling_percentage: 25\nexporters:\n{}{}service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n  pipelines:\n    traces/hash:\n      receivers: [otlp]\n      processors: [probabilistic_sampler]\n      exporters: [otlphttp/hash]\n    traces/w3c:\n      receivers: [otlp]\n      processors: [probabilistic_sampler/w3c]\n      exporters: [otlphttp/w3c]\n",
            exporter("hash", &capture, &format!("/{tag}/hash")),
            exporter("w3c", &capture, &format!("/{tag}/w3c")),
        )
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = collector(da.path(), &config("a"), &["otlp-http"]);
    let b = collector(db.path(), &config("b"), &["otlp-http"]);
    // Every trace has one span through agent A and another through agent B.
    let ids = random_trace_ids(10_000, 0xa6e47);
    send(a.addr("otlp-http"), &ids, 100, false);
    send(b.addr("otlp-http"), &ids, 200, true);
    let want = common::sampling_reference(42, "25", "hash_seed", &ids);
    let want_w3c = common::sampling_reference(0, "25", "proportional", &ids);
    for mode in ["hash", "w3c"] {
        let expected = if mode == "hash" {
            want.len()
        } else {
            want_w3c.len()
        };
        let ka: BTreeSet<String> = kept(&capture, &format!("/a/{mode}"), expected)
            .into_iter()
            .collect();
        let kb: BTreeSet<String> = kept(&capture, &format!("/b/{mode}"), ka.len())
            .into_iter()
            .collect();
        assert!(
            ka.len() > 2000 && ka.len() < 3000,
            "{mode}: about 25% kept, got {}",
            ka.len()
        );
        assert_eq!(
            ka, kb,
            "{mode}: both agents keep the same traces, so kept traces are complete"
        );
        if mode == "hash" {
            assert_eq!(ka, want, "hash_seed agrees with the reference");
        } else {
            assert_eq!(ka, want_w3c, "proportional agrees with the reference");
        }
    }
    assert_eq!(a.terminate(), Some(0));
    assert_eq!(b.terminate(), Some(0));
}
