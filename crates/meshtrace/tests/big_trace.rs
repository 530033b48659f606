//! A 10,000-span trace that arrives over 20 requests and straddles several Parquet blocks and
//! the head reads back whole, and search finds it.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const TRACE: &str = "b16b16b16b16b16b16b16b16b16b16b1";

#[test]
fn a_ten_thousand_span_trace_across_blocks_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &["--block-max-spans", "3000"]);
    let url = format!("http://{}/v1/traces", server.addr("otlp-http"));
    let now = now_micros() * 1000;
    for request in 0..20u64 {
        let spans: Vec<_> = (0..500u64)
            .map(|i| {
                let n = request * 500 + i + 1;
                json!({
                    "traceId": TRACE, "spanId": format!("{n:016x}"),
                    "parentSpanId": if n == 1 { String::new() } else { format!("{:016x}", n / 2) },
                    "name": format!("op-{}", n % 7), "kind": 2,
                    "startTimeUnixNano": (now + n * 1000).to_string(),
                    "endTimeUnixNano": (now + n * 1000 + 500).to_string(),
                    "attributes": [{"key": "n", "value": {"intValue": n.to_string()}}],
                })
            })
            .collect();
        let body = json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": format!("svc-{}", request % 3)}}]},
            "scopeSpans": [{"spans": spans}]
        }]});
        let a = post(
            &url,
            &["Content-Type: application/json"],
            &serde_json::to_vec(&body).unwrap(),
        );
        assert_eq!(a.status, 200, "{}", a.text());
    }
    // The head is cut every 3000 spans: wait until at least 3 blocks exist.
    let blocks = eventually(Duration::from_secs(30), || {
        let n = std::fs::read_dir(dir.path().join("blocks"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().is_dir())
                    .count()
            })
            .unwrap_or(0);
        (n >= 3).then_some(n)
    });
    assert!(blocks.is_some(), "blocks were cut");

    let v = get_json(&server.query_url(&format!("/api/traces/{TRACE}")));
    let spans = v["data"][0]["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 10_000);
    let mut ids: Vec<&str> = spans
        .iter()
        .map(|s| s["spanID"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 10_000, "no span lost or doubled");
    assert_eq!(v["data"][0]["processes"].as_object().unwrap().len(), 3);

    let end = now_micros() + 60_000_000;
    let search = get_json(&server.query_url(&format!(
        "/api/traces?service=svc-1&tag=n:9999&start={}&end={end}",
        end - 3_600_000_000
    )));
    let found = search["data"].as_array().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["spans"].as_array().unwrap().len(), 10_000);

    // And after a restart, from blocks only.
    assert_eq!(server.terminate(), Some(0));
    let server = AllInOne::start(dir.path(), &[]);
    let v = get_json(&server.query_url(&format!("/api/traces/{TRACE}")));
    assert_eq!(v["data"][0]["spans"].as_array().unwrap().len(), 10_000);
}
