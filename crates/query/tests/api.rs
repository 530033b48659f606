//! End-to-end tests of the query API: a real store in a temporary folder, a realistic mesh trace
//! (an Envoy-style edge proxy reporting Zipkin spans with 64-bit ids and a shared CLIENT/SERVER
//! span id, OTel SDK spans behind it), and every route called through the router.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use model::{
    AnyValue, Event, KeyValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanId, SpanKind,
    Status, StatusCode as OtelStatus, TraceBatch, TraceId,
};
use serde_json::{json, Value};
use store::{Store, StoreConfig};
use tower::ServiceExt;

/// The mesh trace: 64-bit id, as Envoy's B3 headers carry it.
const MESH_TRACE: u64 = 0x463a_c35c_9f64_13ad;
/// A second trace with a 128-bit id.
const HEALTH_TRACE: (u64, u64) = (0x4bf9_2f35_77b3_4da6, 0xa3ce_929d_0e0e_4736);

const ROOT: u64 = 0xa1a1_0000_0000_0001;
const SHARED: u64 = 0xb2b2_0000_0000_0002;
const CHECKOUT: u64 = 0xc3c3_0000_0000_0003;
const PAY_CLIENT: u64 = 0xd4d4_0000_0000_0004;
const PAY_SERVER: u64 = 0xe5e5_0000_0000_0005;

const MS: u64 = 1_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
    store: Store,
    /// Start of the mesh trace's root span, Unix ns.
    t0: u64,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

fn resource(service: &str, extra: Vec<KeyValue>) -> Resource {
    let mut attributes = vec![KeyValue::new("service.name", service)];
    attributes.extend(extra);
    Resource {
        attributes,
        dropped_attributes_count: 0,
    }
}

fn span(trace: TraceId, id: u64, parent: Option<u64>, name: &str, kind: SpanKind) -> Span {
    Span {
        trace_id: trace,
        span_id: SpanId::from_u64(id),
        parent_span_id: parent.map(SpanId::from_u64),
        name: name.to_owned(),
        kind,
        ..Default::default()
    }
}

fn timed(mut s: Span, start: u64, dur: u64) -> Span {
    s.start_unix_nano = start;
    s.end_unix_nano = start + dur;
    s
}

fn one(resource: Resource, scope: Scope, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource,
        schema_url: String::new(),
        scope_spans: vec![ScopeSpans {
            scope,
            schema_url: String::new(),
            spans,
        }],
    }
}

/// Edge proxy (Zipkin): root SERVER span and a CLIENT span to the frontend; the frontend's
/// sidecar reports the SERVER half with the same span id (`shared`). Behind it the frontend app
/// (OTel SDK) calls payment, which fails.
fn mesh_batch(t0: u64) -> TraceBatch {
    let tid = TraceId::from_halves(0, MESH_TRACE);
    let envoy_scope = Scope::default();
    let mut root = timed(
        span(tid, ROOT, None, "ingress", SpanKind::Server),
        t0,
        50 * MS,
    );
    root.attributes = vec![
        KeyValue::new("http.method", "GET"),
        KeyValue::new("http.url", "http://shop.local/checkout"),
        KeyValue::new("http.status_code", 500i64),
        KeyValue::new("guid:x-request-id", "6b8c-11aa"),
        KeyValue::new("component", "proxy"),
    ];
    let mut client = timed(
        span(tid, SHARED, Some(ROOT), "egress frontend", SpanKind::Client),
        t0 + MS,
        45 * MS,
    );
    client.attributes = vec![KeyValue::new("upstream_cluster", "frontend")];
    let mut shared_server = timed(
        span(
            tid,
            SHARED,
            Some(ROOT),
            "ingress frontend",
            SpanKind::Server,
        ),
        t0 + 2 * MS,
        40 * MS,
    );
    shared_server.attributes = vec![KeyValue::new("zipkin.shared", true)];

    let mut checkout = timed(
        span(
            tid,
            CHECKOUT,
            Some(SHARED),
            "GET /checkout",
            SpanKind::Internal,
        ),
        t0 + 3 * MS,
        35 * MS,
    );
    checkout.status = Status {
        code: OtelStatus::Error,
        message: "payment declined".into(),
    };
    checkout.events = vec![Event {
        time_unix_nano: t0 + 30 * MS,
        name: "exception".into(),
        attributes: vec![KeyValue::new("exception.type", "PaymentError")],
        dropped_attributes_count: 0,
    }];
    let pay_client = timed(
        span(
            tid,
            PAY_CLIENT,
            Some(CHECKOUT),
            "POST /pay",
            SpanKind::Client,
        ),
        t0 + 4 * MS,
        20 * MS,
    );
    let mut pay_server = timed(
        span(
            tid,
            PAY_SERVER,
            Some(PAY_CLIENT),
            "POST /pay",
            SpanKind::Server,
        ),
        t0 + 5 * MS,
        18 * MS,
    );
    pay_server.attributes = vec![KeyValue::new("http.status_code", 402i64)];
    pay_server.status.code = OtelStatus::Error;

    let otel_scope = Scope {
        name: "opentelemetry-http".into(),
        version: "0.30.0".into(),
        ..Default::default()
    };
    TraceBatch {
        resource_spans: vec![
            one(
                resource("edge", vec![KeyValue::new("node_id", "edge-1")]),
                envoy_scope.clone(),
                vec![root, client],
            ),
            one(
                resource("frontend", vec![KeyValue::new("node_id", "sidecar-fe")]),
                envoy_scope,
                vec![shared_server],
            ),
            one(
                resource(
                    "frontend",
                    vec![
                        KeyValue::new("host.name", "fe-7d9"),
                        KeyValue::new("telemetry.sdk.language", "rust"),
                    ],
                ),
                otel_scope.clone(),
                vec![checkout, pay_client],
            ),
            one(
                resource(
                    "payment",
                    vec![KeyValue::new(
                        "k8s.labels",
                        AnyValue::KvList(vec![KeyValue::new("app", "payment")]),
                    )],
                ),
                otel_scope,
                vec![pay_server],
            ),
        ],
    }
}

fn health_batch(t0: u64) -> TraceBatch {
    let tid = TraceId::from_halves(HEALTH_TRACE.0, HEALTH_TRACE.1);
    TraceBatch {
        resource_spans: vec![one(
            resource("payment", vec![]),
            Scope::default(),
            vec![timed(
                span(tid, 0x77, None, "healthcheck", SpanKind::Server),
                t0 + 100 * MS,
                MS,
            )],
        )],
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreConfig::new(dir.path()))
        .await
        .expect("open store");
    let t0 = now_nanos() - 60_000 * MS;
    store.append(mesh_batch(t0)).await.expect("append mesh");
    store.append(health_batch(t0)).await.expect("append health");
    Fixture {
        _dir: dir,
        app: query::router(store.clone()),
        store,
        t0,
    }
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

fn v1_error(code: u16, msg: &str) -> Value {
    json!({"data": null, "total": 0, "limit": 0, "offset": 0, "errors": [{"code": code, "msg": msg}]})
}

fn hex16(id: u64) -> String {
    format!("{id:016x}")
}

fn trace_ids(data: &Value) -> Vec<String> {
    data.as_array()
        .expect("data array")
        .iter()
        .map(|t| t["traceID"].as_str().expect("traceID").to_owned())
        .collect()
}

fn find_span<'a>(trace: &'a Value, name: &str, kind: &str) -> &'a Value {
    trace["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .find(|s| {
            s["operationName"] == name
                && s["tags"]
                    .as_array()
                    .expect("tags")
                    .iter()
                    .any(|t| t["key"] == "span.kind" && t["value"] == kind)
        })
        .unwrap_or_else(|| panic!("no {kind} span {name}"))
}

#[tokio::test]
async fn services_and_operations() {
    let f = fixture().await;
    let (status, body) = get(&f.app, "/api/services").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"data": ["edge", "frontend", "payment"], "total": 3, "limit": 0, "offset": 0, "errors": null})
    );

    let (status, body) = get(&f.app, "/api/services/frontend/operations").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"data": ["GET /checkout", "POST /pay", "ingress frontend"], "total": 3, "limit": 0, "offset": 0, "errors": null})
    );
    let (_, body) = get(&f.app, "/api/services/no%20such/operations").await;
    assert_eq!(body["data"], json!([]));

    let (status, body) = get(&f.app, "/api/operations?service=payment").await;
    assert_eq!(status, StatusCode::OK);
    let mut ops = body["data"].as_array().expect("data").clone();
    ops.sort_by_key(|o| o["name"].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        ops,
        [
            json!({"name": "POST /pay", "spanKind": "server"}),
            json!({"name": "healthcheck", "spanKind": "server"})
        ]
    );
    assert_eq!(body["total"], 2);

    let (_, body) = get(&f.app, "/api/operations?service=frontend&spanKind=client").await;
    assert_eq!(
        body["data"],
        json!([{"name": "POST /pay", "spanKind": "client"}])
    );

    let (status, body) = get(&f.app, "/api/operations").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, v1_error(400, "parameter 'service' is required"));

    let (status, body) = get(&f.app, "/api/operations?service=payment&spanKind=sideways").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        v1_error(400, "unsupported span kind 'sideways' in param 'spanKind'")
    );
}

#[tokio::test]
async fn trace_by_id_is_adjusted_and_converted() {
    let f = fixture().await;
    let (status, body) = get(&f.app, &format!("/api/traces/{}", hex16(MESH_TRACE))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 0);
    assert_eq!(body["errors"], Value::Null);
    let trace = &body["data"][0];
    assert_eq!(trace["traceID"], hex16(MESH_TRACE));
    assert_eq!(trace["warnings"], Value::Null);
    let spans = trace["spans"].as_array().expect("spans");
    assert_eq!(spans.len(), 6);
    let ids: HashSet<_> = spans.iter().map(|s| s["spanID"].clone()).collect();
    assert_eq!(ids.len(), 6, "span ids must be unique after adjustment");
    // Sorted by start time.
    let starts: Vec<u64> = spans
        .iter()
        .map(|s| s["startTime"].as_u64().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(starts[0], f.t0 / 1_000);

    // The shared SERVER half got its own id and hangs under the CLIENT half...
    let server = find_span(trace, "ingress frontend", "server");
    let new_id = server["spanID"].as_str().unwrap().to_owned();
    assert_ne!(new_id, hex16(SHARED));
    assert_eq!(
        server["references"],
        json!([{"refType": "CHILD_OF", "traceID": hex16(MESH_TRACE), "spanID": hex16(SHARED)}])
    );
    assert_eq!(server["warnings"], Value::Null);
    // ...and the app span that pointed at the shared id now points at the server half.
    let checkout = find_span(trace, "GET /checkout", "internal");
    assert_eq!(checkout["references"][0]["spanID"], new_id);
    let client = find_span(trace, "egress frontend", "client");
    assert_eq!(client["spanID"], hex16(SHARED));
    assert_eq!(client["references"][0]["spanID"], hex16(ROOT));

    // Status, scope, events and typed tags.
    let tags = checkout["tags"].as_array().unwrap();
    for want in [
        json!({"key": "error", "type": "bool", "value": true}),
        json!({"key": "otel.status_code", "type": "string", "value": "ERROR"}),
        json!({"key": "otel.status_description", "type": "string", "value": "payment declined"}),
        json!({"key": "otel.scope.name", "type": "string", "value": "opentelemetry-http"}),
        json!({"key": "otel.scope.version", "type": "string", "value": "0.30.0"}),
    ] {
        assert!(tags.contains(&want), "{want} missing from {tags:?}");
    }
    assert_eq!(
        checkout["logs"],
        json!([{"timestamp": (f.t0 + 30 * MS) / 1_000, "fields": [
            {"key": "event", "type": "string", "value": "exception"},
            {"key": "exception.type", "type": "string", "value": "PaymentError"}
        ]}])
    );
    let root = find_span(trace, "ingress", "server");
    assert!(root["tags"]
        .as_array()
        .unwrap()
        .contains(&json!({"key": "http.status_code", "type": "int64", "value": 500})));
    assert_eq!(root["references"], json!([]));
    assert_eq!(root["duration"], 50_000);

    // Processes: edge, frontend sidecar, frontend app, payment, numbered by first appearance.
    let processes = trace["processes"].as_object().expect("processes");
    assert_eq!(processes.len(), 4);
    let pid = |s: &Value| s["processID"].as_str().unwrap().to_owned();
    assert_eq!(pid(root), "p1");
    assert_eq!(pid(client), "p1");
    assert_eq!(
        processes["p1"],
        json!({"serviceName": "edge", "tags": [
            {"key": "node_id", "type": "string", "value": "edge-1"}
        ]})
    );
    assert_eq!(
        processes[&pid(checkout)],
        json!({"serviceName": "frontend", "tags": [
            {"key": "host.name", "type": "string", "value": "fe-7d9"},
            {"key": "telemetry.sdk.language", "type": "string", "value": "rust"}
        ]})
    );
    let payment = find_span(trace, "POST /pay", "server");
    assert_eq!(
        processes[&pid(payment)]["tags"],
        json!([{"key": "k8s.labels", "type": "string", "value": "{\"app\":\"payment\"}"}])
    );

    // raw=true leaves the shared id alone.
    let (_, raw) = get(
        &f.app,
        &format!("/api/traces/{}?raw=true", hex16(MESH_TRACE)),
    )
    .await;
    let raw_server = find_span(&raw["data"][0], "ingress frontend", "server");
    assert_eq!(raw_server["spanID"], hex16(SHARED));

    // 128-bit ids print in full; upper case and leading zeros are accepted.
    let long = format!("{:016x}{:016x}", HEALTH_TRACE.0, HEALTH_TRACE.1);
    let (status, body) = get(&f.app, &format!("/api/traces/{}", long.to_uppercase())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"][0]["traceID"], long);
    let (status, _) = get(
        &f.app,
        &format!("/api/traces/0000000000000000{}", hex16(MESH_TRACE)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn trace_by_id_errors() {
    let f = fixture().await;
    let (status, body) = get(&f.app, "/api/traces/00000000000000000000000000abcdef").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, v1_error(404, "trace not found"));

    let (status, body) = get(&f.app, "/api/traces/not-hex").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["errors"][0]["code"], 400);
    assert!(body["errors"][0]["msg"]
        .as_str()
        .unwrap()
        .contains("not-hex"));

    let (status, _) = get(&f.app, &format!("/api/traces/{}", "f".repeat(33))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn search() {
    let f = fixture().await;
    let mesh = hex16(MESH_TRACE);
    let health = format!("{:016x}{:016x}", HEALTH_TRACE.0, HEALTH_TRACE.1);

    let (status, body) = get(&f.app, "/api/traces?service=edge").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(trace_ids(&body["data"]), [mesh.as_str()]);
    assert_eq!(
        (
            &body["total"],
            &body["limit"],
            &body["offset"],
            &body["errors"]
        ),
        (&json!(0), &json!(0), &json!(0), &Value::Null)
    );
    assert_eq!(body["data"][0]["spans"].as_array().unwrap().len(), 6);

    // Service + operation + typed tag (JSON and tag= forms) + duration bounds.
    let uri = "/api/traces?service=payment&operation=POST%20%2Fpay\
               &tags=%7B%22http.status_code%22%3A%22402%22%7D&minDuration=10ms&maxDuration=1s";
    let (_, body) = get(&f.app, uri).await;
    assert_eq!(trace_ids(&body["data"]), [mesh.as_str()]);
    let (_, body) = get(
        &f.app,
        "/api/traces?service=payment&tag=http.status_code:402",
    )
    .await;
    assert_eq!(trace_ids(&body["data"]), [mesh.as_str()]);
    let (_, body) = get(&f.app, "/api/traces?service=payment&maxDuration=1.5ms").await;
    assert_eq!(trace_ids(&body["data"]), [health.as_str()]);
    let (_, body) = get(
        &f.app,
        "/api/traces?service=payment&tag=http.status_code:404",
    )
    .await;
    assert_eq!(body["data"], json!([]));

    // Time window in µs (the UI's start/end) and limit.
    let start = (f.t0 + 90 * MS) / 1_000;
    let end = (f.t0 + 200 * MS) / 1_000;
    let (_, body) = get(
        &f.app,
        &format!("/api/traces?service=payment&start={start}&end={end}"),
    )
    .await;
    assert_eq!(trace_ids(&body["data"]), [health.as_str()]);
    let (_, body) = get(&f.app, "/api/traces?lookback=1h").await;
    let mut all = trace_ids(&body["data"]);
    all.sort();
    let mut want = vec![mesh.clone(), health.clone()];
    want.sort();
    assert_eq!(all, want, "a search without service covers every service");
    let (_, body) = get(&f.app, "/api/traces?limit=1").await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);

    // By trace id: found ones returned, missing ones listed in errors, status 200.
    let (status, body) = get(
        &f.app,
        &format!("/api/traces?traceID={mesh}&traceID=abcdef&service=ignored"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(trace_ids(&body["data"]), [mesh.as_str()]);
    assert_eq!(
        body["errors"],
        json!([{"msg": "trace not found", "traceID": "0000000000abcdef"}])
    );
}

#[tokio::test]
async fn search_parameter_errors() {
    let f = fixture().await;
    for (uri, msg_start) in [
        (
            "/api/traces?service=a&minDuration=fast",
            "unable to parse param 'minDuration': ",
        ),
        (
            "/api/traces?service=a&maxDuration=10",
            "unable to parse param 'maxDuration': ",
        ),
        (
            "/api/traces?service=a&start=yesterday",
            "unable to parse param 'start': ",
        ),
        (
            "/api/traces?service=a&end=1e9",
            "unable to parse param 'end': ",
        ),
        (
            "/api/traces?service=a&limit=ten",
            "unable to parse param 'limit': ",
        ),
        (
            "/api/traces?service=a&minDuration=2s&maxDuration=1s",
            "'maxDuration' should be greater than 'minDuration'",
        ),
        (
            "/api/traces?service=a&tag=nocolon",
            "malformed 'tag' parameter, expecting key:value",
        ),
        (
            "/api/traces?service=a&tags=%7Bnope",
            "malformed 'tags' parameter",
        ),
        ("/api/traces?traceID=xyz", "cannot parse traceID param: "),
    ] {
        let (status, body) = get(&f.app, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(body["data"], Value::Null, "{uri}");
        assert_eq!(body["total"], 0);
        assert_eq!(body["errors"][0]["code"], 400, "{uri}");
        let msg = body["errors"][0]["msg"].as_str().unwrap();
        assert!(msg.starts_with(msg_start), "{uri}: {msg}");
    }
}

#[tokio::test]
async fn dependencies() {
    let f = fixture().await;
    let (status, body) = get(&f.app, "/api/dependencies").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 0);
    assert_eq!(body["errors"], Value::Null);
    let links = body["data"].as_array().expect("data").clone();
    let pairs: HashSet<(String, String)> = links
        .iter()
        .map(|l| {
            assert!(l["callCount"].as_u64().unwrap() >= 1, "{l}");
            assert!(l["errorCount"].as_u64().unwrap() <= l["callCount"].as_u64().unwrap());
            (
                l["parent"].as_str().unwrap().to_owned(),
                l["child"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        pairs.contains(&("edge".into(), "frontend".into())),
        "{links:?}"
    );
    assert!(
        pairs.contains(&("frontend".into(), "payment".into())),
        "{links:?}"
    );
    // The failed payment call shows as an error on its edge (a meshtrace field beside Jaeger's).
    let payment = links.iter().find(|l| l["child"] == "payment").unwrap();
    assert_eq!(
        (&payment["callCount"], &payment["errorCount"]),
        (&1.into(), &1.into())
    );
    let frontend = links.iter().find(|l| l["child"] == "frontend").unwrap();
    assert_eq!(frontend["errorCount"], 0);
    assert_eq!(
        pairs.len(),
        links.len(),
        "pairs are summed into one link each"
    );

    let end_ms = now_nanos() / MS;
    let (_, body) = get(
        &f.app,
        &format!("/api/dependencies?endTs={end_ms}&lookback=3600000&service=payment"),
    )
    .await;
    let only_payment = body["data"].as_array().unwrap();
    assert!(!only_payment.is_empty());
    assert!(only_payment
        .iter()
        .all(|l| l["parent"] == "payment" || l["child"] == "payment"));

    // A window before the data holds nothing.
    let (_, body) = get(&f.app, "/api/dependencies?endTs=1000&lookback=1000").await;
    assert_eq!(body["data"], json!([]));

    let (status, body) = get(&f.app, "/api/dependencies?endTs=now").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["errors"][0]["msg"]
        .as_str()
        .unwrap()
        .starts_with("unable to parse param 'endTs': "));
}

#[tokio::test]
async fn api_v3() {
    let f = fixture().await;
    let (status, body) = get(&f.app, "/api/v3/services").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"services": ["edge", "frontend", "payment"]}));

    let (_, body) = get(
        &f.app,
        "/api/v3/operations?service=frontend&span_kind=server",
    )
    .await;
    assert_eq!(
        body,
        json!({"operations": [{"name": "ingress frontend", "spanKind": "server"}]})
    );
    let (status, body) = get(&f.app, "/api/v3/operations?service=frontend&span_kind=up").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["httpCode"], 400);

    // Trace by id: OTLP/JSON, hex ids, adjusted like v1.
    let (status, body) = get(&f.app, &format!("/api/v3/traces/{}", hex16(MESH_TRACE))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let resource_spans = body["result"]["resourceSpans"]
        .as_array()
        .expect("resourceSpans");
    let spans: Vec<&Value> = resource_spans
        .iter()
        .flat_map(|rs| rs["scopeSpans"].as_array().unwrap())
        .flat_map(|ss| ss["spans"].as_array().unwrap())
        .collect();
    assert_eq!(spans.len(), 6);
    let full_id = format!("{:032x}", MESH_TRACE);
    assert!(spans.iter().all(|s| s["traceId"] == full_id));
    let shared_server = spans
        .iter()
        .find(|s| s["name"] == "ingress frontend")
        .expect("server half");
    assert_ne!(shared_server["spanId"], hex16(SHARED));
    assert_eq!(shared_server["parentSpanId"], hex16(SHARED));
    let (_, raw) = get(
        &f.app,
        &format!("/api/v3/traces/{}?raw_traces=true", hex16(MESH_TRACE)),
    )
    .await;
    let raw_text = raw.to_string();
    assert_eq!(
        raw_text
            .matches(&format!("\"spanId\":\"{}\"", hex16(SHARED)))
            .count(),
        2
    );

    let (status, body) = get(&f.app, "/api/v3/traces/00000000000000000000000000abcdef").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": {"httpCode": 404, "message": "trace not found"}})
    );
    let (status, body) = get(&f.app, "/api/v3/traces/xyz").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("malformed parameter trace_id: "));

    // Search.
    let secs = f.t0 / 1_000_000_000;
    let min = format_rfc3339(secs - 60);
    let max = format_rfc3339(secs + 60);
    let (status, body) = get(
        &f.app,
        &format!(
            "/api/v3/traces?query.service_name=payment&query.start_time_min={min}&query.start_time_max={max}&query.duration_max=2ms"
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = body.to_string();
    assert!(
        text.contains("healthcheck") && !text.contains("ingress"),
        "{text}"
    );
    let (status, body) = get(
        &f.app,
        &format!(
            "/api/v3/traces?query.service_name=payment&query.start_time_min={min}&query.start_time_max={max}\
             &query.attributes%5Bhttp.status_code%5D=402"
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.to_string().contains("ingress frontend"));

    let (status, body) = get(
        &f.app,
        &format!("/api/v3/traces?query.service_name=nobody&query.start_time_min={min}&query.start_time_max={max}"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": {"httpCode": 404, "message": "No traces found"}})
    );

    let (status, body) = get(&f.app, "/api/v3/traces?query.service_name=payment").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": {"httpCode": 400, "message": "query.start_time_min and query.start_time_max are required"}})
    );
    let (status, body) = get(
        &f.app,
        &format!("/api/v3/traces?query.start_time_min={min}&query.start_time_max={max}&query.duration_min=soon"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("malformed parameter query.duration_min: "));
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds (civil-from-days, Howard Hinnant's algorithm).
fn format_rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn rfc3339_helper_matches_the_parser() {
    let secs = 1_714_564_800;
    assert_eq!(format_rfc3339(secs), "2024-05-01T12:00:00Z");
    assert_eq!(
        query::rfc3339::parse_rfc3339_nanos(&format_rfc3339(secs)),
        Ok(secs * 1_000_000_000)
    );
}

#[tokio::test]
async fn unknown_routes_are_left_to_the_binary() {
    let f = fixture().await;
    let response = f
        .app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn answers_are_the_same_from_a_block_as_from_the_head() {
    let f = fixture().await;
    let uris = [
        format!("/api/traces/{}", hex16(MESH_TRACE)),
        "/api/traces?service=frontend".to_owned(),
        "/api/services".to_owned(),
        "/api/operations?service=frontend".to_owned(),
    ];
    let mut before = Vec::new();
    for uri in &uris {
        before.push(get(&f.app, uri).await);
    }
    f.store.flush().await.expect("flush");
    for (uri, want) in uris.iter().zip(before) {
        assert_eq!(get(&f.app, uri).await, want, "{uri}");
    }
}
