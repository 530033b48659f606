//! End to end through real peers: the OpenTelemetry Python SDK → `meshtrace collector`
//! (attributes processor adding `datacenter`, batch) → `meshtrace all-in-one` over OTLP gRPC →
//! the Jaeger API shows every span; and with the backend down, the collector queues and retries
//! until the backend is up, then every span arrives exactly once.

mod collector_harness;
mod common;

use std::time::Duration;

use collector_harness::*;
use serde_json::Value;

fn config(backend: &str) -> String {
    format!(
        r#"receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
      http:
        endpoint: 127.0.0.1:0
processors:
  attributes/dc:
    actions:
      - key: datacenter
        value: eu-west-1
        action: insert
  resource:
    attributes:
      - key: collector.tier
        value: agent
        action: upsert
  batch:
    timeout: 100ms
exporters:
  otlp/backend:
    endpoint: {backend}
    tls:
      insecure: true
    retry_on_failure:
      initial_interval: 200ms
      max_interval: 1s
      max_elapsed_time: 0
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      processors: [attributes/dc, resource, batch]
      exporters: [otlp/backend]
"#
    )
}

/// Sends the SDK's 4-span trace through `exporter` to the collector; returns the trace id.
fn send(collector: &Proc, exporter: &str, service: &str) -> String {
    let endpoint = match exporter {
        "otlp-grpc" => format!("http://{}", collector.addr("otlp-grpc")),
        _ => format!("http://{}/v1/traces", collector.addr("otlp-http")),
    };
    send_sdk_trace(exporter, &endpoint, service)
}

/// Polls the Jaeger API until the trace has `n` spans; returns it.
fn trace(backend: &Proc, trace_id: &str, n: usize) -> Value {
    let url = format!("http://{}/api/traces/{trace_id}", backend.addr("query"));
    common::eventually(Duration::from_secs(30), || {
        let a = common::get(&url);
        if a.status != 200 {
            return None;
        }
        let t = a.json()["data"][0].clone();
        (t["spans"].as_array().map_or(0, Vec::len) >= n).then_some(t)
    })
    .unwrap_or_else(|| panic!("trace {trace_id} did not reach the backend with {n} spans"))
}

#[test]
fn collector_sdk_to_collector_to_all_in_one_adds_datacenter() {
    let dir = tempfile::tempdir().unwrap();
    let backend_addr = format!("127.0.0.1:{}", free_port());
    let backend = all_in_one(&dir.path().join("data"), &backend_addr);
    let c = collector(
        dir.path(),
        &config(&backend_addr),
        &["otlp-grpc", "otlp-http", "metrics"],
    );
    let trace_id = send(&c, "otlp-grpc", "shop");
    let t = trace(&backend, &trace_id, 4);
    let spans = common::spans_by_name(&t);
    assert_eq!(spans.len(), 4, "{t}");
    for name in ["GET /checkout", "load cart", "SELECT carts", "query carts"] {
        let span = &spans[name];
        assert_eq!(
            common::tag(span, "datacenter"),
            Some(("string".into(), Value::from("eu-west-1"))),
            "{name}: {span}"
        );
    }
    // The resource processor's attribute is on the process (resource) of every span.
    let processes = t["processes"].as_object().expect("processes");
    for p in processes.values() {
        assert!(common::tag(p, "collector.tier").is_some(), "{p}");
    }
    let metrics = common::get(&format!("http://{}/metrics", c.addr("metrics"))).text();
    assert!(
        metrics.contains("otelcol_exporter_sent_spans_total{exporter=\"otlp/backend\"} 4"),
        "{metrics}"
    );
    assert_eq!(c.terminate(), Some(0));
    assert_eq!(backend.terminate(), Some(0));
}

#[test]
fn collector_backend_down_then_up_retried_spans_arrive_once() {
    let dir = tempfile::tempdir().unwrap();
    let backend_addr = format!("127.0.0.1:{}", free_port());
    let c = collector(
        dir.path(),
        &config(&backend_addr),
        &["otlp-grpc", "otlp-http", "metrics"],
    );
    // Backend down: the collector accepts (queues) and retries.
    let first = send(&c, "otlp-http", "outage-a");
    let second = send(&c, "otlp-grpc", "outage-b");
    let metrics_url = format!("http://{}/metrics", c.addr("metrics"));
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = common::get(&metrics_url).text();
    assert!(
        !metrics.contains("otelcol_exporter_sent_spans_total{exporter=\"otlp/backend\"}"),
        "nothing can have been sent yet: {metrics}"
    );
    // Backend up on the address the collector retries.
    let backend = all_in_one(&dir.path().join("data"), &backend_addr);
    for id in [&first, &second] {
        let t = trace(&backend, id, 4);
        std::thread::sleep(Duration::from_millis(300));
        let t2 = trace(&backend, id, 4);
        assert_eq!(
            t2["spans"].as_array().map(Vec::len),
            Some(4),
            "exactly once: {t}"
        );
    }
    let sent = common::eventually(Duration::from_secs(10), || {
        let m = common::get(&metrics_url).text();
        m.contains("otelcol_exporter_sent_spans_total{exporter=\"otlp/backend\"} 8")
            .then_some(())
    });
    assert!(sent.is_some(), "{}", common::get(&metrics_url).text());
    assert_eq!(c.terminate(), Some(0));
    assert_eq!(backend.terminate(), Some(0));
}

#[test]
fn collector_persistent_queue_survives_a_restart_during_the_outage() {
    let dir = tempfile::tempdir().unwrap();
    let queue_dir = dir.path().join("queue");
    let backend_addr = format!("127.0.0.1:{}", free_port());
    let config = config(&backend_addr)
        .replace(
            "receivers:\n",
            &format!(
                "extensions:\n  file_storage/queue:\n    directory: {}\n    create_directory: true\nreceivers:\n",
                queue_dir.display()
            ),
        )
        .replace(
            "    retry_on_failure:\n",
            "    sending_queue:\n      storage: file_storage/queue\n    retry_on_failure:\n",
        )
        .replace("service:\n", "service:\n  extensions: [file_storage/queue]\n");
    // Backend down; two traces go into the persistent queue; the collector is restarted.
    let first_run = collector(dir.path(), &config, &["otlp-grpc", "otlp-http", "metrics"]);
    let a = send(&first_run, "otlp-grpc", "restart-a");
    let b = send(&first_run, "otlp-http", "restart-b");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(first_run.terminate(), Some(0));
    let stored = std::fs::read_dir(queue_dir.join("exporter_otlp_backend_traces"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(stored >= 1, "the queued batches are on disk after shutdown");
    let second_run = collector(dir.path(), &config, &["otlp-grpc", "otlp-http", "metrics"]);
    let c = send(&second_run, "otlp-grpc", "restart-c");
    // Backend up: every span of every trace arrives (at least once; count them).
    let backend = all_in_one(&dir.path().join("data"), &backend_addr);
    for id in [&a, &b, &c] {
        trace(&backend, id, 4);
        std::thread::sleep(Duration::from_millis(300));
        let t = trace(&backend, id, 4);
        let n = t["spans"].as_array().map_or(0, Vec::len);
        assert_eq!(n, 4, "trace {id}: 4 spans, each once: {t}");
    }
    let left = common::eventually(Duration::from_secs(10), || {
        let n = std::fs::read_dir(queue_dir.join("exporter_otlp_backend_traces"))
            .map(|d| d.count())
            .unwrap_or(0);
        (n == 0).then_some(())
    });
    assert!(left.is_some(), "sent batches leave the disk queue");
    assert_eq!(second_run.terminate(), Some(0));
    assert_eq!(backend.terminate(), Some(0));
}
