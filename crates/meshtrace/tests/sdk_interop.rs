//! The OpenTelemetry Python SDK's real exporters (OTLP gRPC, OTLP HTTP, Zipkin JSON and proto,
//! with and without gzip) send a trace to `meshtrace all-in-one`; the Jaeger HTTP API must then
//! answer exactly what Grafana's Jaeger data source and the Jaeger UI read.

mod common;

use common::*;
use serde_json::Value;

struct Sent {
    trace_id: String,
    spans: Value,
}

fn send(server: &AllInOne, exporter: &str, service: &str, gzip: bool) -> Sent {
    let (venv, endpoint) = match exporter {
        "otlp-grpc" => (".venv", format!("http://{}", server.addr("otlp-grpc"))),
        "otlp-http" => (
            ".venv",
            format!("http://{}/v1/traces", server.addr("otlp-http")),
        ),
        "zipkin-json" => (
            ".venv",
            format!("http://{}/api/v2/spans", server.addr("zipkin")),
        ),
        "zipkin-proto" => (
            ".venv-zipkin-proto",
            format!("http://{}/api/v2/spans", server.addr("zipkin")),
        ),
        other => panic!("unknown exporter {other}"),
    };
    let mut args = vec![exporter, endpoint.as_str(), service];
    if gzip {
        args.push("--gzip");
    }
    let out = python(venv, "send_trace.py", &args);
    let v: Value = serde_json::from_str(out.trim()).expect("script output is JSON");
    assert_eq!(v["exports_ok"], true, "an export failed: {v}");
    Sent {
        trace_id: v["trace_id"].as_str().expect("trace id").to_owned(),
        spans: v["spans"].clone(),
    }
}

fn references(span: &Value) -> Vec<(String, String)> {
    span["references"]
        .as_array()
        .expect("references")
        .iter()
        .map(|r| {
            (
                r["refType"].as_str().expect("refType").to_owned(),
                r["spanID"].as_str().expect("spanID").to_owned(),
            )
        })
        .collect()
}

/// Everything a Jaeger user reads off the trace the script sent.
fn check_trace(server: &AllInOne, sent: &Sent, service: &str, typed_tags: bool) {
    let answer = get_json(&server.query_url(&format!("/api/traces/{}", sent.trace_id)));
    assert_eq!(answer["errors"], Value::Null);
    let traces = answer["data"].as_array().expect("data");
    assert_eq!(traces.len(), 1);
    let trace = &traces[0];
    assert_eq!(trace["traceID"], sent.trace_id.as_str());
    let spans = spans_by_name(trace);
    assert_eq!(spans.len(), 4, "{trace:#}");
    let root = &spans["GET /checkout"];
    let load = &spans["load cart"];
    let call = &spans["SELECT carts"];
    let db = &spans["query carts"];

    // Ids and parent references as the SDK generated them.
    assert_eq!(root["spanID"], sent.spans["root"]);
    assert_eq!(load["spanID"], sent.spans["load"]);
    assert!(references(root).is_empty(), "root has no parent: {root:#}");
    assert_eq!(
        references(load),
        [(
            "CHILD_OF".into(),
            sent.spans["root"].as_str().unwrap().into()
        )]
    );
    assert_eq!(
        references(call),
        [(
            "CHILD_OF".into(),
            sent.spans["load"].as_str().unwrap().into()
        )]
    );
    assert_eq!(
        references(db),
        [(
            "CHILD_OF".into(),
            sent.spans["call"].as_str().unwrap().into()
        )]
    );

    // Processes: one per service, referenced by the spans.
    let process_of = |s: &Value| {
        let id = s["processID"].as_str().expect("processID");
        trace["processes"][id]["serviceName"]
            .as_str()
            .expect("serviceName")
            .to_owned()
    };
    assert_eq!(process_of(root), service);
    assert_eq!(process_of(load), service);
    assert_eq!(process_of(db), format!("{service}-db"));

    // Tags: typed for OTLP; Zipkin carries every tag as a string.
    assert_eq!(
        tag(root, "http.method"),
        Some(("string".into(), "GET".into()))
    );
    if typed_tags {
        assert_eq!(
            tag(root, "http.status_code"),
            Some(("int64".into(), 200.into()))
        );
        assert_eq!(tag(root, "http.retry"), Some(("bool".into(), false.into())));
        assert_eq!(
            tag(root, "sample.ratio"),
            Some(("float64".into(), 0.25.into()))
        );
    } else {
        assert_eq!(
            tag(root, "http.status_code"),
            Some(("string".into(), "200".into()))
        );
    }
    assert_eq!(
        tag(root, "span.kind"),
        Some(("string".into(), "server".into()))
    );
    assert_eq!(
        tag(call, "span.kind"),
        Some(("string".into(), "client".into()))
    );
    // Marked failed the way the Jaeger UI checks (`error` = true), whatever else `error` holds.
    assert!(
        tags(call, "error").contains(&("bool".into(), true.into())),
        "{call:#}"
    );
    assert_eq!(
        tag(call, "otel.status_code"),
        Some(("string".into(), "ERROR".into()))
    );
    assert_eq!(
        tag(call, "db.system"),
        Some(("string".into(), "postgresql".into()))
    );

    // The event became a Jaeger log with its name and attributes.
    let logs = load["logs"].as_array().expect("logs");
    assert_eq!(logs.len(), 1, "{load:#}");
    let fields = logs[0]["fields"].as_array().expect("fields");
    let field = |k: &str| {
        fields
            .iter()
            .find(|f| f["key"] == k)
            .map(|f| f["value"].clone())
    };
    // Zipkin exporters carry the event as `{"name": {attributes}}` text; it reads back the same.
    assert_eq!(field("event"), Some("cache miss".into()));
    assert_eq!(field("cache.key"), Some("cart:42".into()));
    assert!(logs[0]["timestamp"].as_u64().expect("µs") >= load["startTime"].as_u64().unwrap());

    // Times in microseconds; "load cart" slept 20 ms.
    assert!(
        load["duration"].as_u64().expect("duration") >= 20_000,
        "{load:#}"
    );
    let start = root["startTime"].as_u64().expect("startTime");
    let now = now_micros();
    assert!(
        start <= now && start > now - 600_000_000,
        "startTime {start} is µs near now"
    );

    // Services and operations, as the Jaeger UI's drop-downs load them.
    let services = get_json(&server.query_url("/api/services"));
    let names: Vec<&str> = services["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        names.contains(&service) && names.contains(&format!("{service}-db").as_str()),
        "{services}"
    );
    let ops = get_json(&server.query_url(&format!("/api/services/{service}/operations")));
    let ops: Vec<&str> = ops["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for op in ["GET /checkout", "load cart", "SELECT carts"] {
        assert!(ops.contains(&op), "{op} missing from {ops:?}");
    }
    let server_ops = get_json(&server.query_url(&format!(
        "/api/operations?service={service}&spanKind=server"
    )));
    assert_eq!(
        server_ops["data"],
        serde_json::json!([{"name": "GET /checkout", "spanKind": "server"}])
    );

    // Search, as Grafana builds it: tags JSON, tag=k:v, durations, time window, limit.
    let found = |query: &str| -> Vec<String> {
        let v = get_json(&server.query_url(&format!("/api/traces?{query}")));
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|t| t["traceID"].as_str().unwrap().to_owned())
            .collect()
    };
    let end = now_micros() + 60_000_000;
    let begin = end - 3_600_000_000;
    let window = format!("start={begin}&end={end}&limit=20");
    let me = vec![sent.trace_id.clone()];
    assert_eq!(found(&format!("service={service}&{window}")), me);
    assert_eq!(
        found(&format!(
            "service={service}&tags=%7B%22http.method%22%3A%22GET%22%7D&{window}"
        )),
        me
    );
    assert_eq!(
        found(&format!(
            "service={service}&tag=db.system:postgresql&{window}"
        )),
        me
    );
    assert_eq!(
        found(&format!("service={service}&tag=db.system:mysql&{window}")),
        Vec::<String>::new()
    );
    assert_eq!(
        found(&format!(
            "service={service}&operation=load%20cart&minDuration=15ms&{window}"
        )),
        me
    );
    assert_eq!(
        found(&format!(
            "service={service}&operation=load%20cart&maxDuration=1ms&{window}"
        )),
        Vec::<String>::new()
    );
    assert_eq!(
        found(&format!("service={service}&minDuration=1h&{window}")),
        Vec::<String>::new()
    );
    assert_eq!(found(&format!("service={service}-db&{window}")), me);
    // Search without a service.
    assert_eq!(found(&format!("tag=cache.key:cart%3A42&{window}")), me);
    // A window that ended before the trace started finds nothing.
    assert_eq!(
        found(&format!(
            "service={service}&start={}&end={}",
            begin - 7_200_000_000,
            begin
        )),
        Vec::<String>::new()
    );
}

#[test]
fn otlp_grpc_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let sent = send(&server, "otlp-grpc", "shop-grpc", false);
    check_trace(&server, &sent, "shop-grpc", true);
}

#[test]
fn otlp_grpc_exporter_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let sent = send(&server, "otlp-grpc", "shop-grpc-gz", true);
    check_trace(&server, &sent, "shop-grpc-gz", true);
}

#[test]
fn otlp_http_protobuf_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let sent = send(&server, "otlp-http", "shop-http", false);
    check_trace(&server, &sent, "shop-http", true);
}

#[test]
fn otlp_http_protobuf_exporter_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let sent = send(&server, "otlp-http", "shop-http-gz", true);
    check_trace(&server, &sent, "shop-http-gz", true);
}

#[test]
fn zipkin_json_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let sent = send(&server, "zipkin-json", "shop-zipkin", false);
    check_trace(&server, &sent, "shop-zipkin", false);
}

#[test]
fn zipkin_proto_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let sent = send(&server, "zipkin-proto", "shop-zipkin-proto", false);
    check_trace(&server, &sent, "shop-zipkin-proto", false);
}
