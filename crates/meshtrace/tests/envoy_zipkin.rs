//! Zipkin v2 JSON shaped exactly like Envoy's reports: 64-bit ids, a CLIENT span from the
//! caller's sidecar and a `shared: true` SERVER span from the callee's sidecar with the same
//! span id, string tags named as Envoy names them.

mod common;

use common::*;
use serde_json::{json, Value};

const TRACE: &str = "5af7183fb1d4cf5f";
const EDGE: &str = "6b221d5bc9e6496c";
const HOP: &str = "352bff9a74ca9ad2";

fn envoy_report(now_us: u64) -> Value {
    let tags = |node: &str, cluster: &str| {
        json!({
            "component": "proxy", "node_id": node, "zone": "eu-west-1a",
            "guid:x-request-id": "0b3f2c5e-8d1a-4c3e-9f0a-1e2d3c4b5a69",
            "http.url": "http://cart:8080/cart?id=7", "http.method": "GET",
            "http.protocol": "HTTP/1.1", "http.status_code": "200",
            "upstream_cluster": cluster, "upstream_address": "10.0.0.7:8080",
            "peer.address": "10.0.0.5", "request_size": "0", "response_size": "128",
            "response_flags": "-"
        })
    };
    json!([
        {
            "traceId": TRACE, "id": EDGE, "kind": "SERVER", "name": "ingress",
            "timestamp": now_us, "duration": 5000,
            "localEndpoint": {"serviceName": "edge", "ipv4": "10.0.0.2", "port": 80},
            "tags": tags("edge-1", "frontend")
        },
        {
            "traceId": TRACE, "id": HOP, "parentId": EDGE, "kind": "CLIENT",
            "name": "router cart egress", "timestamp": now_us + 500, "duration": 3000,
            "localEndpoint": {"serviceName": "frontend-sidecar", "ipv4": "10.0.0.5"},
            "remoteEndpoint": {"ipv4": "10.0.0.7", "port": 8080},
            "tags": tags("frontend-7d9f", "outbound|8080||cart")
        },
        {
            "traceId": TRACE, "id": HOP, "parentId": EDGE, "kind": "SERVER", "shared": true,
            "name": "router inbound|8080 ingress", "timestamp": now_us + 800, "duration": 2500,
            "localEndpoint": {"serviceName": "cart-sidecar", "ipv4": "10.0.0.7", "port": 8080},
            "tags": tags("cart-5c4b", "inbound|8080||")
        }
    ])
}

#[test]
fn envoy_reports_form_one_tree_with_shared_span_ids_split() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let now = now_micros();
    let body = serde_json::to_vec(&envoy_report(now)).unwrap();
    let url = format!("http://{}/api/v2/spans", server.addr("zipkin"));
    let answer = post(&url, &["Content-Type: application/json"], &body);
    assert_eq!(answer.status, 202, "{}", answer.text());

    // The 64-bit id reads back as Jaeger prints it, and its 128-bit spelling finds it too.
    for id in [TRACE.to_owned(), format!("0000000000000000{TRACE}")] {
        let v = get_json(&server.query_url(&format!("/api/traces/{id}")));
        assert_eq!(v["data"][0]["traceID"], TRACE);
    }
    let v = get_json(&server.query_url(&format!("/api/traces/{TRACE}")));
    let trace = &v["data"][0];
    let spans = spans_by_name(trace);
    assert_eq!(spans.len(), 3);
    let client = &spans["router cart egress"];
    let shared = &spans["router inbound|8080 ingress"];
    assert_eq!(client["spanID"], HOP);
    // Jaeger's de-duplication: the shared server span gets its own id, child of the client.
    assert_ne!(
        shared["spanID"], HOP,
        "shared span id must be split: {shared:#}"
    );
    let shared_refs = shared["references"].as_array().unwrap();
    assert_eq!(shared_refs[0]["refType"], "CHILD_OF");
    assert_eq!(shared_refs[0]["spanID"], HOP);
    assert_eq!(client["references"][0]["spanID"], EDGE);

    // Envoy's tags arrive as Zipkin strings.
    assert_eq!(
        tag(client, "upstream_cluster"),
        Some(("string".into(), "outbound|8080||cart".into()))
    );
    assert_eq!(
        tag(client, "guid:x-request-id").map(|t| t.0),
        Some("string".into())
    );
    assert_eq!(
        tag(client, "span.kind"),
        Some(("string".into(), "client".into()))
    );
    assert_eq!(
        tag(shared, "span.kind"),
        Some(("string".into(), "server".into()))
    );
    let process = &trace["processes"][shared["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], "cart-sidecar");

    // The service graph: edge -> frontend-sidecar -> cart-sidecar.
    let end_ms = now / 1000 + 60_000;
    let deps = get_json(&server.query_url(&format!(
        "/api/dependencies?endTs={end_ms}&lookback=3600000"
    )));
    let mut links: Vec<(String, String, u64)> = deps["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["parent"].as_str().unwrap().into(),
                d["child"].as_str().unwrap().into(),
                d["callCount"].as_u64().unwrap(),
            )
        })
        .collect();
    links.sort();
    assert_eq!(
        links,
        [
            ("edge".into(), "frontend-sidecar".into(), 1),
            ("frontend-sidecar".into(), "cart-sidecar".into(), 1)
        ]
    );
}

#[test]
fn gzip_zipkin_reports_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let body = serde_json::to_vec(&envoy_report(now_micros())).unwrap();
    let mut gz = flate2_gzip(&body);
    let url = format!("http://{}/api/v2/spans", server.addr("zipkin"));
    let answer = post(
        &url,
        &["Content-Type: application/json", "Content-Encoding: gzip"],
        &gz,
    );
    assert_eq!(answer.status, 202, "{}", answer.text());
    assert_eq!(
        get(&server.query_url(&format!("/api/traces/{TRACE}"))).status,
        200
    );
    gz.truncate(gz.len() / 2);
    let answer = post(
        &url,
        &["Content-Type: application/json", "Content-Encoding: gzip"],
        &gz,
    );
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(answer.text().contains("gzip"), "{}", answer.text());
}

/// gzip via the system's gzip tool, so the test does not share code with the server.
fn flate2_gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    child.stdin.take().unwrap().write_all(data).unwrap();
    child.wait_with_output().unwrap().stdout
}
