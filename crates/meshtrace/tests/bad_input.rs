//! Malformed, oversized and half-valid input gets a clear 4xx (gRPC INVALID_ARGUMENT) naming the
//! problem; nothing accepted before is lost and the process keeps serving.

mod common;

use common::*;
use serde_json::{json, Value};

const GOOD_TRACE: &str = "5b8efff798038103d269b633813fc60c";

fn span(trace_id: &str, span_id: &str, name: &str, kind: Value) -> Value {
    let now = now_micros() * 1000;
    json!({
        "traceId": trace_id, "spanId": span_id, "name": name, "kind": kind,
        "startTimeUnixNano": (now - 5_000_000).to_string(), "endTimeUnixNano": now.to_string(),
        "attributes": [{"key": "n", "value": {"intValue": "7"}}],
        "status": {"code": "STATUS_CODE_OK"}
    })
}

fn otlp_json(spans: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeSpans": [{"scope": {"name": "handmade"}, "spans": spans}]
    }]}))
    .unwrap()
}

#[test]
fn bad_requests_are_refused_clearly_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &["--max-body-size", "64KiB"]);
    let traces = format!("http://{}/v1/traces", server.addr("otlp-http"));
    let zipkin = format!("http://{}/api/v2/spans", server.addr("zipkin"));
    let json_ct = "Content-Type: application/json";

    // Accepted first: OTLP/JSON with enum names and string int64s.
    let ok = post(
        &traces,
        &[json_ct],
        &otlp_json(vec![span(
            GOOD_TRACE,
            "eee19b7ec3c1b174",
            "ok-span",
            json!("SPAN_KIND_SERVER"),
        )]),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json(), json!({}));

    // Partial success: one bad trace id among good spans.
    let mixed = otlp_json(vec![
        span(
            "0af7651916cd43dd8448eb211c80319c",
            "b7ad6b7169203331",
            "second-ok",
            json!(2),
        ),
        span("5b8efff798", "b7ad6b7169203332", "bad-id", json!(2)),
    ]);
    let partial = post(&traces, &[json_ct], &mixed);
    assert_eq!(partial.status, 200, "{}", partial.text());
    let p = partial.json();
    assert_eq!(p["partialSuccess"]["rejectedSpans"], "1", "{p}");
    let msg = p["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(msg.contains("trace"), "message names the trace id: {msg}");
    assert_eq!(
        get(&server.query_url("/api/traces/0af7651916cd43dd8448eb211c80319c")).status,
        200
    );

    // Every span invalid: 400 naming the field.
    let all_bad = post(
        &traces,
        &[json_ct],
        &otlp_json(vec![span("zz", "b7ad6b7169203333", "x", json!(1))]),
    );
    assert_eq!(all_bad.status, 400, "{}", all_bad.text());
    assert!(
        all_bad.json()["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("trace"),
        "{}",
        all_bad.text()
    );

    // Not JSON at all.
    let garbled = post(&traces, &[json_ct], b"{\"resourceSpans\": [");
    assert_eq!(garbled.status, 400);
    assert_eq!(
        garbled.json()["code"],
        3,
        "google.rpc.Status INVALID_ARGUMENT"
    );

    // Truncated protobuf.
    let truncated = post(
        &traces,
        &["Content-Type: application/x-protobuf"],
        &[0x0a, 0x10, 0x0a, 0x05],
    );
    assert_eq!(truncated.status, 400, "{}", truncated.text());

    // Wrong content type, unknown encoding, too large.
    let xml = post(&traces, &["Content-Type: text/xml"], b"<spans/>");
    assert_eq!(xml.status, 415);
    assert!(xml.text().contains("text/xml"), "{}", xml.text());
    let br = post(&traces, &[json_ct, "Content-Encoding: br"], b"x");
    assert_eq!(br.status, 415, "{}", br.text());
    let big = post(&traces, &[json_ct], &vec![b' '; 100 * 1024]);
    assert_eq!(big.status, 413, "{}", big.text());

    // Zipkin: bad JSON, bad ids.
    let z = post(&zipkin, &[json_ct], b"[{\"traceId\": ");
    assert_eq!(z.status, 400);
    assert!(!z.text().is_empty());
    let z = post(
        &zipkin,
        &[json_ct],
        br#"[{"traceId":"xyz","id":"352bff9a74ca9ad2","name":"a"}]"#,
    );
    assert_eq!(z.status, 400);
    assert!(z.text().contains("traceId"), "{}", z.text());
    let z = post(
        &zipkin,
        &["Content-Type: application/x-protobuf"],
        &[0xff, 0xff, 0xff],
    );
    assert_eq!(z.status, 400, "{}", z.text());

    // gRPC with bytes that are not protobuf, through the real grpcio client.
    let grpc = python(
        ".venv",
        "grpc_raw.py",
        &[server.addr("otlp-grpc"), "0a05ffffffffff"],
    );
    assert!(grpc.starts_with("INVALID_ARGUMENT"), "{grpc}");

    // The query API names bad parameters.
    let q = get(&server.query_url("/api/traces/not-hex"));
    assert_eq!(q.status, 400, "{}", q.text());
    let q = get(&server.query_url("/api/traces?service=json-svc&minDuration=fast"));
    assert_eq!(q.status, 400, "{}", q.text());
    assert!(q.text().contains("minDuration"), "{}", q.text());
    let missing = get(&server.query_url("/api/traces/00000000000000000000000000000abc"));
    assert_eq!(missing.status, 404);

    // Still alive, and what was accepted is all there.
    assert_eq!(get(&server.query_url("/healthz")).status, 200);
    let v = get_json(&server.query_url(&format!("/api/traces/{GOOD_TRACE}")));
    assert_eq!(v["data"][0]["spans"][0]["operationName"], "ok-span");
    let metrics = get(&server.query_url("/metrics")).text();
    assert!(
        metrics.contains("meshtrace_receiver_refused_spans_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meshtrace_receiver_accepted_spans_total"),
        "{metrics}"
    );
}

/// Startup errors name the flag and exit non-zero instead of half-starting.
#[test]
fn bad_addresses_fail_fast_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshtrace"))
            .arg("all-in-one")
            .args(["--data-dir".as_ref(), dir.path().as_os_str()])
            .args([
                "--otlp-http",
                "127.0.0.1:0",
                "--zipkin",
                "127.0.0.1:0",
                "--query",
                "127.0.0.1:0",
            ])
            .args(args)
            .output()
            .expect("run meshtrace");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--otlp-grpc", "nonsense"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--otlp-grpc") && err.contains("host:port"),
        "{err}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run(&["--otlp-grpc", &addr]);
    assert_eq!(code, Some(1));
    assert!(err.contains(&addr) && err.contains("--otlp-grpc"), "{err}");

    let (code, err) = run(&["--otlp-grpc", "localhost:0", "--retention", "forever"]);
    assert_eq!(code, Some(2), "clap rejects a bad duration: {err}");
    assert!(err.contains("--retention"), "{err}");
}
