//! `meshtrace proxy` end to end, every peer real and on 127.0.0.1 port 0: a tiny hyper app that
//! records the headers it gets, three proxy processes (edge → outbound sidecar → inbound sidecar →
//! app), `meshtrace all-in-one` as the collector (read back through its Jaeger API), and curl or a
//! tonic gRPC client as the caller.

mod common;
mod proxy_support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use proxy_support::*;
use serde_json::Value;

// ---------------------------------------------------------------- the chain

/// The ids the app received, read in the one format configured.
struct Received {
    trace_id: String,
    span_id: String,
    parent: Option<String>,
    sampled: bool,
}

fn received(h: &hyper::HeaderMap, format: &str) -> Received {
    let others: &[&str] = match format {
        "b3multi" => &["b3", "traceparent"],
        "b3" => &["x-b3-traceid", "x-b3-spanid", "traceparent"],
        _ => &["b3", "x-b3-traceid", "x-b3-spanid"],
    };
    for o in others {
        assert!(
            h.get(*o).is_none(),
            "{format}: {o} should not be sent: {h:?}"
        );
    }
    match format {
        "b3multi" => Received {
            trace_id: header(h, "x-b3-traceid").unwrap().to_owned(),
            span_id: header(h, "x-b3-spanid").unwrap().to_owned(),
            parent: header(h, "x-b3-parentspanid").map(str::to_owned),
            sampled: header(h, "x-b3-sampled") == Some("1"),
        },
        "b3" => {
            let v: Vec<&str> = header(h, "b3").unwrap().split('-').collect();
            assert_eq!(v.len(), 4, "{v:?}");
            Received {
                trace_id: v[0].to_owned(),
                span_id: v[1].to_owned(),
                parent: Some(v[3].to_owned()),
                sampled: v[2] == "1",
            }
        }
        _ => {
            let v: Vec<&str> = header(h, "traceparent").unwrap().split('-').collect();
            assert_eq!((v.len(), v[0]), (4, "00"), "{v:?}");
            Received {
                trace_id: v[1].to_owned(),
                span_id: v[2].to_owned(),
                parent: None,
                sampled: v[3] == "01",
            }
        }
    }
}

#[test]
fn proxy_chain_rewrites_headers_in_each_format_and_spans_form_one_tree() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let app = App::start();
    for format in ["b3multi", "b3", "tracecontext"] {
        let (edge, outbound, _inbound) = chain(app.addr, server.addr("zipkin"), format);
        let url = format!("http://{}/api/orders?id=7", edge.addr("edge"));
        let a = curl(&["-H", "Host: app.mesh", "-H", "x-tenant: acme", &url]);
        assert_eq!((a.status, a.text().as_str()), (200, "ok"), "{format}");
        let h = app.last();
        let got = received(&h, format);
        assert!(got.sampled, "{format}");
        assert_eq!(got.trace_id.len(), 32, "128-bit trace ids by default");
        let request_id = header(&h, "x-request-id")
            .expect("edge adds x-request-id")
            .to_owned();
        assert_eq!(request_id.len(), 36, "{request_id}");
        // The edge names the client; the sidecars pass that on untouched.
        assert_eq!(header(&h, "x-forwarded-for"), Some("127.0.0.1"), "{format}");
        assert_eq!(header(&h, "x-forwarded-proto"), Some("http"), "{format}");

        let app_span = report_app_span(&server, &got.trace_id, &got.span_id);
        let trace = trace_with(&server, &got.trace_id, 4);
        let spans = trace["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 4, "{trace:#}");
        let by_service: HashMap<String, &Value> =
            spans.iter().map(|s| (service_of(&trace, s), s)).collect();
        let edge_span = by_service["edge-1"];
        let out_span = by_service["caller-sidecar-out"];
        let in_span = by_service["app-sidecar-in"];
        let app_own = by_service["app"];
        // One tree: edge (root) ← outbound CLIENT ← inbound SERVER ← the app's own span.
        assert_eq!(parent_of(edge_span), None, "{edge_span:#}");
        assert_eq!(parent_of(out_span).as_deref(), edge_span["spanID"].as_str());
        assert_eq!(parent_of(in_span).as_deref(), out_span["spanID"].as_str());
        assert_eq!(parent_of(app_own).as_deref(), in_span["spanID"].as_str());
        assert_eq!(app_own["spanID"], app_span.as_str());
        assert_eq!(
            in_span["spanID"],
            got.span_id.as_str(),
            "the app is a child of the inbound span"
        );
        if let Some(parent) = &got.parent {
            assert_eq!(out_span["spanID"], parent.as_str());
        }
        assert_eq!(tag_str(edge_span, "span.kind"), "server");
        assert_eq!(tag_str(out_span, "span.kind"), "client");
        assert_eq!(tag_str(in_span, "span.kind"), "server");

        // Envoy's tags.
        assert_eq!(out_span["operationName"], "api-call", "route name");
        assert_eq!(
            in_span["operationName"], "api-call",
            "the route's name, passed on in x-envoy-decorator-operation"
        );
        for s in [edge_span, out_span, in_span] {
            assert_eq!(tag_str(s, "component"), "proxy");
            assert_eq!(tag_str(s, "guid:x-request-id"), request_id);
            assert_eq!(tag_str(s, "http.method"), "GET");
            assert_eq!(tag_str(s, "http.url"), "http://app.mesh/api/orders?id=7");
            assert_eq!(tag_str(s, "http.protocol"), "HTTP/1.1");
            assert_eq!(tag_str(s, "http.status_code"), "200");
            assert_eq!(tag_str(s, "peer.address"), "127.0.0.1");
            assert_eq!(tag_str(s, "response_size"), "2");
            assert_eq!(tag_str(s, "request_size"), "0");
            assert_eq!(tag_str(s, "pod"), "pod-7");
            assert_eq!(tag_str(s, "tenant"), "acme");
            assert!(tag(s, "error").is_none(), "{s:#}");
        }
        assert_eq!(tag_str(edge_span, "node_id"), "edge-1");
        assert_eq!(tag_str(edge_span, "zone"), "zone-a");
        assert_eq!(tag_str(in_span, "zone"), "zone-b");
        assert_eq!(tag_str(out_span, "upstream_cluster"), "app");
        assert_eq!(
            tag_str(out_span, "upstream_address"),
            _inbound.addr("inbound")
        );
        assert_eq!(tag_str(in_span, "upstream_address"), app.addr.to_string());

        let metrics = get(&format!("http://{}/metrics", outbound.addr("admin"))).text();
        assert!(
            metrics.contains("meshtrace_proxy_spans_dropped_total 0"),
            "{metrics}"
        );
        assert!(
            metrics.contains("meshtrace_proxy_requests_total 1"),
            "{metrics}"
        );
        if format == "b3multi" {
            let via = curl(&[
                "-H",
                "Host: app.mesh",
                "-H",
                "X-Forwarded-For: 203.0.113.7, 198.51.100.2",
                "-H",
                "X-Forwarded-Proto: https",
                &url,
            ]);
            assert_eq!(via.status, 200);
            let h = app.last();
            assert_eq!(
                header(&h, "x-forwarded-for"),
                Some("203.0.113.7, 198.51.100.2, 127.0.0.1")
            );
            assert_eq!(header(&h, "x-forwarded-proto"), Some("https"));
        }
    }
}

#[test]
fn proxy_edge_continues_valid_contexts_and_restarts_on_malformed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let app = App::start();
    let (edge, _outbound, _inbound) = chain(app.addr, server.addr("zipkin"), "b3multi");
    let url = format!("http://{}/api/x", edge.addr("edge"));

    // No route in the outbound sidecar: 404, not a proxy failure.
    let a = curl(&[&format!("http://{}/elsewhere", edge.addr("edge"))]);
    assert_eq!(a.status, 404, "{}", a.text());

    // A 64-bit B3 trace id is kept as given all the way to the app.
    let a = curl(&[
        "-H",
        "b3: 463ac35c9f6413ad-a2fb4a1d1a96d312-1",
        "-H",
        "x-request-id: rid-1",
        &url,
    ]);
    assert_eq!(a.status, 200);
    let h = app.last();
    assert_eq!(header(&h, "x-b3-traceid"), Some("463ac35c9f6413ad"));
    assert_eq!(
        header(&h, "x-request-id"),
        Some("rid-1"),
        "an incoming x-request-id is kept"
    );
    let trace = trace_with(&server, "463ac35c9f6413ad", 3);
    let edge_span = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| service_of(&trace, s) == "edge-1")
        .unwrap();
    assert_eq!(parent_of(edge_span).as_deref(), Some("a2fb4a1d1a96d312"));

    // W3C in, B3 out: same trace.
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(
        curl(&["-H", &format!("traceparent: {tp}"), &url]).status,
        200
    );
    assert_eq!(
        header(&app.last(), "x-b3-traceid"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );

    // An incoming "do not sample" is honoured and passed on.
    let tp0 = "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    assert_eq!(
        curl(&["-H", &format!("traceparent: {tp0}"), &url]).status,
        200
    );
    assert_eq!(header(&app.last(), "x-b3-sampled"), Some("0"));

    // Malformed contexts never fail the request: a new trace starts.
    for bad in [
        "traceparent: ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "b3: junk",
        "x-b3-traceid: 123",
    ] {
        let a = curl(&["-H", bad, &url]);
        assert_eq!(a.status, 200, "{bad}");
        let h = app.last();
        let id = header(&h, "x-b3-traceid").unwrap();
        assert_eq!(id.len(), 32, "{bad}");
        assert!(!bad.to_lowercase().contains(id), "{bad}: {id}");
        assert_eq!(header(&h, "x-b3-sampled"), Some("1"));
    }
}

// ---------------------------------------------------------------- transport

#[test]
fn proxy_streams_large_bodies_both_ways_without_buffering() {
    let app = App::start();
    let proxy = single(app.addr, None, "");
    // Response: 200 chunks of 64 KiB (12.5 MiB), one every 20 ms. The first bytes must arrive
    // long before the app has produced the last one (4 s), so the proxy is not buffering.
    let mut s = TcpStream::connect(proxy.addr("in")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    write!(
        s,
        "GET /stream?n=200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut first = [0u8; 4096];
    let n = s.read(&mut first).unwrap();
    let first_at = started.elapsed();
    assert!(n > 0 && first.starts_with(b"HTTP/1.1 200"));
    assert!(
        first_at < Duration::from_secs(2),
        "first bytes after {first_at:?}"
    );
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(
        rest.len() + n > 200 * 64 * 1024,
        "got {} bytes",
        rest.len() + n
    );

    // Request: a 20 MiB chunked upload passes through and is counted by the app.
    let big = vec![b'z'; 20 * 1024 * 1024];
    let url = format!("http://{}/count", proxy.addr("in"));
    let a = post(&url, &["Transfer-Encoding: chunked"], &big);
    assert_eq!((a.status, a.text()), (200, big.len().to_string()));
}

#[test]
fn proxy_keep_alive_reuses_one_connection() {
    let app = App::start();
    let proxy = single(app.addr, None, "");
    let url = format!("http://{}/echo", proxy.addr("in"));
    // curl reports how many new connections it opened for all the URLs it fetched.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{num_connects} %{http_code}\n",
        ])
        .args([&url, &url, &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // (curl writes the bodies after the first to stdout too: "ok0 200".)
    let lines: Vec<&str> = text.lines().map(|l| l.trim_start_matches("ok")).collect();
    assert_eq!(lines, ["1 200", "0 200", "0 200"], "{text}");
}

#[test]
fn proxy_h2c_and_grpc_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let app = App::start();
    let proxy = single(app.addr, Some(server.addr("zipkin")), "");
    // Plain h2c (prior knowledge) to the app.
    let url = format!("http://{}/echo", proxy.addr("in"));
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-w",
            " %{http_version}",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok 2");
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let out = Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "-H"])
        .arg(format!("traceparent: 00-{trace}-b7ad6b7169203331-01"))
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    let t = trace_with(&server, trace, 1);
    assert_eq!(tag_str(&t["spans"][0], "http.protocol"), "HTTP/2");

    // gRPC: an OTLP export through a proxy in front of the collector's OTLP gRPC port.
    let grpc_proxy = single(server.addr("otlp-grpc").parse().unwrap(), None, "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let trace_id = [7u8; 16];
    rt.block_on(async {
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let mut client = TraceServiceClient::connect(format!("http://{}", grpc_proxy.addr("in")))
            .await
            .unwrap();
        let now = now_micros() * 1000;
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![opentelemetry_proto::tonic::common::v1::KeyValue {
                        key: "service.name".into(),
                        value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                            value: Some(
                                opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                                    "grpc-client".into(),
                                ),
                            ),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: trace_id.to_vec(),
                        span_id: vec![8u8; 8],
                        name: "through-the-proxy".into(),
                        start_time_unix_nano: now,
                        end_time_unix_nano: now + 1000,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        client.export(req).await.expect("gRPC through the proxy");
    });
    trace_with(&server, &hex(&trace_id), 1);
}

#[test]
fn proxy_upstream_protocol_converts_between_http1_and_http2_keeping_the_authority() {
    let app = App::start();
    let curl_version = |proxy: &Proxy, args: &[&str], path: &str| {
        let url = format!("http://{}{path}", proxy.addr("in"));
        let out = Command::new("curl")
            .args(["-sS", "-H", "Host: shop.example:8080"])
            .args(args)
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // Default: the request's own version.
    let same = single(app.addr, None, "");
    assert_eq!(
        curl_version(&same, &[], "/version"),
        "HTTP/1.1 shop.example:8080"
    );
    assert_eq!(
        curl_version(&same, &["--http2-prior-knowledge"], "/version"),
        "HTTP/2.0 shop.example:8080"
    );
    // http1: an HTTP/2 client reaches an HTTP/1.1 upstream, `:authority` becoming Host.
    let h1 = single(app.addr, None, "    upstream_protocol: http1\n");
    assert_eq!(
        curl_version(&h1, &["--http2-prior-knowledge"], "/version"),
        "HTTP/1.1 shop.example:8080"
    );
    // http2: HTTP/1.1 requests go out as HTTP/2, Host becoming `:authority`; a chunked upload
    // streams through.
    let h2 = single(app.addr, None, "    upstream_protocol: http2\n");
    assert_eq!(
        curl_version(&h2, &[], "/version"),
        "HTTP/2.0 shop.example:8080"
    );
    let big = vec![b'q'; 3 * 1024 * 1024];
    let a = post(
        &format!("http://{}/count", h2.addr("in")),
        &["Transfer-Encoding: chunked"],
        &big,
    );
    assert_eq!((a.status, a.text()), (200, big.len().to_string()));
    // A value the listener does not know is refused by name.
    let bad = format!(
        "node_id: x\nlisteners:\n  - {{name: in, mode: inbound, listen: '127.0.0.1:0', upstream: '{}', upstream_protocol: http3}}\n",
        app.addr
    );
    let err = refused(&bad);
    assert!(err.contains("http3") && err.contains("http1"), "{err}");
}

/// A cluster's own `upstream_protocol` wins over its listener's (Envoy: protocol options are a
/// cluster's): one outbound listener speaking HTTP/1.1 upstream reaches one cluster over h2c.
#[test]
fn proxy_cluster_upstream_protocol_overrides_the_listeners() {
    let app = App::start();
    let yaml = format!(
        "node_id: caller
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream_protocol: http1
    upstream:
      routes:
        - {{ host: fast.mesh, cluster: fast }}
        - {{ host: plain.mesh, cluster: plain }}
      clusters:
        fast: {{ endpoints: ['{0}'], upstream_protocol: http2 }}
        plain: ['{0}']
",
        app.addr
    );
    let proxy = Proxy::start(&yaml, &["out"]);
    let version = |host: &str| {
        let out = Command::new("curl")
            .args(["-sS", "-H", &format!("Host: {host}")])
            .arg(format!("http://{}/version", proxy.addr("out")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(version("fast.mesh"), "HTTP/2.0 fast.mesh");
    assert_eq!(version("plain.mesh"), "HTTP/1.1 plain.mesh");
    // A value the cluster does not know is refused by name.
    let bad = yaml.replace("upstream_protocol: http2", "upstream_protocol: spdy");
    let err = refused(&bad);
    assert!(err.contains("spdy"), "{err}");
}

/// A route's `prefix_rewrite` replaces its matched prefix before the request goes upstream,
/// the query kept; without it the path goes as it came.
#[test]
fn proxy_route_prefix_rewrite() {
    let app = App::start();
    let yaml = format!(
        "node_id: edge\nlisteners:\n  - name: out\n    mode: outbound\n    listen: 127.0.0.1:0\n    upstream:\n      routes:\n        - {{ path_prefix: /shop/, prefix_rewrite: /, cluster: app }}\n        - {{ path_prefix: /svc/, regex_rewrite: {{ pattern: {{ regex: '^/svc/([^/]+)/(.*)$' }}, substitution: '/\\2' }}, cluster: app }}\n        - {{ path_prefix: /, cluster: app }}\n      clusters:\n        app: ['{}']\n",
        app.addr
    );
    let proxy = Proxy::start(&yaml, &["out"]);
    let at = |path: &str| get(&format!("http://{}{path}", proxy.addr("out")));
    let rewritten = at("/shop/version");
    assert_eq!(rewritten.status, 200);
    assert!(
        rewritten.text().starts_with("HTTP/1.1"),
        "{}",
        rewritten.text()
    );
    // A regex rewrite: /svc/NAME/REST is the app's /REST.
    let regexed = at("/svc/orders/version");
    assert!(regexed.text().starts_with("HTTP/1.1"), "{}", regexed.text());
    let streamed = at("/shop/stream?n=1");
    assert_eq!(streamed.body.len(), 64 * 1024, "the query went along");
    assert_eq!(at("/version").text().split(' ').next(), Some("HTTP/1.1"));
    assert_eq!(
        at("/other/version").text(),
        "ok",
        "no rewrite without the prefix"
    );
    // A rewrite without a path prefix, or not a path, is refused by name.
    let err = refused(&yaml.replace(
        "path_prefix: /shop/, prefix_rewrite: /",
        "host: x, prefix_rewrite: /",
    ));
    assert!(
        err.contains("prefix_rewrite needs the route's path_prefix"),
        "{err}"
    );
    let err = refused(&yaml.replace("prefix_rewrite: /", "prefix_rewrite: shop"));
    assert!(err.contains("not a path starting with /"), "{err}");
    let err = refused(&yaml.replace(
        "path_prefix: /svc/,",
        "path_prefix: /svc/, prefix_rewrite: /,",
    ));
    assert!(
        err.contains("give one of prefix_rewrite and regex_rewrite"),
        "{err}"
    );
    let err = refused(&yaml.replace("substitution: '/\\2'", "substitution: '/\\3'"));
    assert!(
        err.contains("names group \\3, and the pattern has 2"),
        "{err}"
    );
}

/// curl over HTTPS with `args`; its exit code and output (`-w` appends the status).
fn curl_tls(args: &[&str], url: &str) -> (i32, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            " %{http_code} %{http_version}",
        ])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn proxy_edge_terminates_tls_with_http1_and_http2_and_mutual_tls() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let app = App::start();
    let edge = Proxy::start(
        &format!(
            "node_id: edge-tls\nadmin: 127.0.0.1:0\nlisteners:\n  - name: edge\n    mode: edge\n    listen: 127.0.0.1:0\n    upstream: '{}'\n    tls: {{ cert_file: '{}', key_file: '{}' }}\n{}",
            app.addr,
            file("server.pem"),
            file("server.key"),
            tracing_block(server.addr("zipkin"), "b3multi"),
        ),
        &["edge", "admin"],
    );
    let port = edge.addr("edge").rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}/version");
    let ca = file("ca.pem");
    // HTTP/1.1 and HTTP/2 (by ALPN) over TLS, the private CA trusted; the app is told https.
    let (code, out) = curl_tls(&["--cacert", &ca, "--http1.1"], &url);
    assert_eq!(
        (code, out.as_str()),
        (0, format!("HTTP/1.1 localhost:{port} 200 1.1").as_str())
    );
    assert_eq!(header(&app.last(), "x-forwarded-proto"), Some("https"));
    let (code, out) = curl_tls(&["--cacert", &ca, "--http2"], &url);
    assert_eq!(
        (code, out.as_str()),
        (0, format!("HTTP/2.0 localhost:{port} 200 2").as_str())
    );
    // The span names the URL as the client asked for it.
    let trace_id = header(&app.last(), "x-b3-traceid").unwrap().to_owned();
    let trace = trace_with(&server, &trace_id, 1);
    let span = &trace["spans"][0];
    assert_eq!(
        tag_str(span, "http.url"),
        format!("https://localhost:{port}/version")
    );
    assert_eq!(tag_str(span, "http.protocol"), "HTTP/2");
    // Another CA's trust, and plain HTTP on the TLS port, get nothing.
    let (code, _) = curl_tls(&["--cacert", &file("other-ca.pem")], &url);
    assert_eq!(code, 60, "certificate not trusted");
    let (code, _) = curl_tls(&[], &format!("http://127.0.0.1:{port}/version"));
    assert_ne!(code, 0, "plain HTTP on the TLS port");
    // Both failed handshakes are counted (and nothing else was).
    let counted = eventually(Duration::from_secs(5), || {
        let m = get(&format!("http://{}/metrics", edge.addr("admin"))).text();
        m.contains("meshtrace_proxy_tls_handshake_failures_total 2\n")
            .then_some(())
    });
    assert!(counted.is_some(), "handshake failures not counted");

    // Mutual TLS: a client certificate from the CA is required.
    let mutual = Proxy::start(
        &format!(
            "node_id: in-mtls\nlisteners:\n  - name: in\n    mode: inbound\n    listen: 127.0.0.1:0\n    upstream: '{}'\n    tls: {{ cert_file: '{}', key_file: '{}', client_ca_file: '{}', min_version: '1.3' }}\n",
            app.addr,
            file("server.pem"),
            file("server.key"),
            ca,
        ),
        &["in"],
    );
    let port = mutual.addr("in").rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}/version");
    let (code, _) = curl_tls(&["--cacert", &ca], &url);
    assert_ne!(code, 0, "no client certificate");
    let (code, out) = curl_tls(
        &[
            "--cacert",
            &ca,
            "--cert",
            &file("client.pem"),
            "--key",
            &file("client.key"),
        ],
        &url,
    );
    assert_eq!(
        (code, out.as_str()),
        (0, format!("HTTP/2.0 localhost:{port} 200 2").as_str())
    );
    let (code, _) = curl_tls(
        &[
            "--cacert",
            &ca,
            "--tls-max",
            "1.2",
            "--cert",
            &file("client.pem"),
            "--key",
            &file("client.key"),
        ],
        &url,
    );
    assert_eq!(code, 35, "TLS 1.2 refused by min_version 1.3");

    // A certificate file that is not there is named before anything starts.
    let bad = format!(
        "node_id: x\nlisteners:\n  - {{name: edge, mode: edge, listen: '127.0.0.1:0', upstream: '{}', tls: {{cert_file: /nonexistent/cert.pem, key_file: '{}'}}}}\n",
        app.addr,
        file("server.key"),
    );
    let err = refused(&bad);
    assert!(
        err.contains("listener \"edge\"") && err.contains("tls.cert_file /nonexistent/cert.pem"),
        "{err}"
    );
    let bad = bad.replace(
        "cert_file: /nonexistent/cert.pem",
        &format!(
            "cert_file: '{}', cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]",
            file("server.pem")
        ),
    );
    let err = refused(&bad);
    assert!(
        err.contains("tls.cipher_suites: \"TLS_RSA_WITH_AES_128_CBC_SHA\" is not offered"),
        "{err}"
    );
}

/// An inbound sidecar in front of `app` whose listener `in` requires a client certificate from
/// the test CA (certificates in `dir`, made by `certificates`).
fn mutual_tls_inbound(app: &App, dir: &std::path::Path) -> Proxy {
    let file = |name: &str| dir.join(name).display().to_string();
    Proxy::start(
        &format!(
            "node_id: in-mtls\nlisteners:\n  - name: in\n    mode: inbound\n    listen: 127.0.0.1:0\n    upstream: '{}'\n    tls: {{ cert_file: '{}', key_file: '{}', client_ca_file: '{}' }}\n",
            app.addr,
            file("server.pem"),
            file("server.key"),
            file("ca.pem"),
        ),
        &["in"],
    )
}

/// Sidecar to sidecar over mutual TLS: the outbound sidecar's `upstream_tls` presents the client
/// certificate the inbound sidecar's listener requires, checks the inbound's certificate against
/// the mesh CA (by the address's IP, or `server_name`), and speaks HTTP/1.1 or HTTP/2 by ALPN.
#[test]
fn proxy_outbound_originates_mutual_tls_to_an_inbound_sidecar() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let app = App::start();
    let inbound = mutual_tls_inbound(&app, certs.path());
    let target = inbound.addr("in");
    // One outbound listener per case: (name, cluster endpoint, upstream_tls, upstream_protocol).
    let client = format!(
        "cert_file: '{}', key_file: '{}'",
        file("client.pem"),
        file("client.key")
    );
    let port = target.rsplit(':').next().unwrap();
    let cases = [
        (
            "h1",
            target.to_owned(),
            format!("ca_file: '{}', {client}", file("ca.pem")),
            "http1",
        ),
        (
            "h2",
            target.to_owned(),
            format!("ca_file: '{}', {client}", file("ca.pem")),
            "http2",
        ),
        (
            "named",
            format!("127.0.0.1:{port}"),
            format!(
                "ca_file: '{}', server_name: localhost, {client}",
                file("ca.pem")
            ),
            "http1",
        ),
        (
            "nocert",
            target.to_owned(),
            format!("ca_file: '{}'", file("ca.pem")),
            "http1",
        ),
        (
            "otherca",
            target.to_owned(),
            format!("ca_file: '{}', {client}", file("other-ca.pem")),
            "http1",
        ),
        (
            "wrongname",
            target.to_owned(),
            format!(
                "ca_file: '{}', server_name: reviews.mesh, {client}",
                file("ca.pem")
            ),
            "http1",
        ),
    ];
    let mut yaml = "node_id: caller-sidecar\nlisteners:\n".to_owned();
    for (name, endpoint, tls, protocol) in &cases {
        yaml += &format!(
            "  - name: {name}\n    mode: outbound\n    listen: 127.0.0.1:0\n    upstream_protocol: {protocol}\n    upstream_tls: {{ {tls} }}\n    upstream:\n      routes: [{{ path_prefix: /, cluster: reviews }}]\n      clusters:\n        reviews: ['{endpoint}']\n"
        );
    }
    let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let outbound = Proxy::start(&yaml, &names);
    // The app answers with the HTTP version it was spoken to and the Host it got.
    for (name, version) in [
        ("h1", "HTTP/1.1"),
        ("h2", "HTTP/2.0"),
        ("named", "HTTP/1.1"),
    ] {
        let r = get(&format!("http://{}/version", outbound.addr(name)));
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert!(r.text().starts_with(version), "{name}: {}", r.text());
    }
    // A refused handshake answers as an unreachable upstream does (502), whichever side refuses
    // (TLS 1.3: a missing client certificate is refused after the client's half of the
    // handshake, on the first request). Nothing reaches the app.
    let before = app.seen.lock().unwrap().len();
    for name in ["otherca", "wrongname", "nocert"] {
        let r = get(&format!("http://{}/version", outbound.addr(name)));
        assert_eq!(r.status, 502, "{name}: {}", r.text());
    }
    assert_eq!(
        app.seen.lock().unwrap().len(),
        before,
        "a refused handshake reached the app"
    );

    // A CA file that is not there is named before anything starts.
    let bad = format!(
        "node_id: x\nlisteners:\n  - {{name: out, mode: outbound, listen: '127.0.0.1:0', upstream_tls: {{ca_file: /nonexistent/ca.pem}}, upstream: {{routes: [{{path_prefix: /, cluster: c}}], clusters: {{c: ['{target}']}}}}}}\n"
    );
    let err = refused(&bad);
    assert!(
        err.contains("listener \"out\"")
            && err.contains("upstream_tls.ca_file /nonexistent/ca.pem"),
        "{err}"
    );
    let bad = bad.replace(
        "ca_file: /nonexistent/ca.pem",
        &format!("cert_file: '{}'", file("client.pem")),
    );
    let err = refused(&bad);
    assert!(err.contains("needs both"), "{err}");
    // Suites and curves are the collector's (Go's names); ones not on offer are named.
    let bad = bad.replace(
        &format!("cert_file: '{}'", file("client.pem")),
        "curve_preferences: [P521]",
    );
    let err = refused(&bad);
    assert!(
        err.contains("upstream_tls.curve_preferences: \"P521\" is not offered"),
        "{err}"
    );
}

/// An outbound cluster chooses its own TLS: one listener reaches a mesh peer over mutual TLS and
/// an external service in cleartext, whether the TLS is the cluster's (`tls: {...}`) or the
/// listener's (`upstream_tls`, with `tls: false` for the external one). Connections are pooled
/// by address and TLS together: a cleartext cluster to the peer's TLS port never borrows the
/// TLS connection another cluster pooled there.
#[test]
fn proxy_outbound_clusters_choose_their_own_tls() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let app = App::start();
    let inbound = mutual_tls_inbound(&app, certs.path());
    let peer = inbound.addr("in");
    let mtls = format!(
        "{{ ca_file: '{}', cert_file: '{}', key_file: '{}' }}",
        file("ca.pem"),
        file("client.pem"),
        file("client.key")
    );
    let routes = "routes: [{ path_prefix: /mesh, cluster: mesh }, { path_prefix: /raw, cluster: raw }, { path_prefix: /, cluster: external }]";
    let yaml = format!(
        "node_id: caller-sidecar\nlisteners:\n\
         \x20 - name: own\n    mode: outbound\n    listen: 127.0.0.1:0\n    upstream:\n      {routes}\n      clusters:\n\
         \x20       mesh: {{ endpoints: ['{peer}'], tls: {mtls} }}\n\
         \x20       raw: ['{peer}']\n\
         \x20       external: ['{app}']\n\
         \x20 - name: inherited\n    mode: outbound\n    listen: 127.0.0.1:0\n    upstream_tls: {mtls}\n    upstream:\n      {routes}\n      clusters:\n\
         \x20       mesh: ['{peer}']\n\
         \x20       raw: {{ endpoints: ['{peer}'], tls: false }}\n\
         \x20       external: {{ endpoints: ['{app}'], tls: false }}\n",
        app = app.addr,
    );
    let outbound = Proxy::start(&yaml, &["own", "inherited"]);
    for listener in ["own", "inherited"] {
        let base = format!("http://{}", outbound.addr(listener));
        for round in 0..3 {
            // The peer over mutual TLS, then the app in cleartext, then the peer's TLS port in
            // cleartext: refused however many TLS connections to it are pooled by then.
            let r = get(&format!("{base}/mesh/version"));
            assert_eq!(r.status, 200, "{listener} mesh #{round}: {}", r.text());
            let r = get(&format!("{base}/version"));
            assert_eq!(r.status, 200, "{listener} external #{round}: {}", r.text());
            let r = get(&format!("{base}/raw/version"));
            assert_eq!(r.status, 502, "{listener} raw #{round}: {}", r.text());
        }
    }

    // A cluster's tls block is read as upstream_tls is, and named by its place.
    let bad = format!(
        "node_id: x\nlisteners:\n  - {{name: out, mode: outbound, listen: '127.0.0.1:0', upstream: {{routes: [{{path_prefix: /, cluster: c}}], clusters: {{c: {{endpoints: ['{peer}'], tls: {{ca_file: /nonexistent/ca.pem}}}}}}}}}}\n"
    );
    let err = refused(&bad);
    assert!(
        err.contains("listener \"out\"")
            && err.contains("clusters.c.tls.ca_file /nonexistent/ca.pem"),
        "{err}"
    );
    let err = refused(&bad.replace("{ca_file: /nonexistent/ca.pem}", "true"));
    assert!(
        err.contains("tls: true says nothing of whom to trust"),
        "{err}"
    );
    let err = refused(&bad.replace("tls:", "tsl:"));
    assert!(err.contains("unknown field `tsl`"), "{err}");
}

/// Certificates rotated on disk are picked up without a restart, on both sides: the listener
/// presents the new certificate, and `upstream_tls` trusts the new CA, for new connections.
#[test]
fn proxy_reloads_certificates_rotated_on_disk() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    certificates(dir);
    let path = |name: &str| dir.join(name).display().to_string();
    for (from, to) in [
        ("server.pem", "live.pem"),
        ("server.key", "live.key"),
        ("ca.pem", "trust.pem"),
    ] {
        std::fs::copy(dir.join(from), dir.join(to)).unwrap();
    }
    let app = App::start();
    let edge = Proxy::start(
        &format!(
            "node_id: edge-rotating\nlisteners:\n  - name: edge\n    mode: edge\n    listen: 127.0.0.1:0\n    upstream: '{}'\n    tls: {{ cert_file: '{}', key_file: '{}' }}\n",
            app.addr,
            path("live.pem"),
            path("live.key"),
        ),
        &["edge"],
    );
    // Idle upstream connections close after 100 ms, so each request below, 300 ms apart, makes
    // a new one (and a new handshake).
    let outbound = Proxy::start(
        &format!(
            "node_id: out-rotating\nlisteners:\n  - name: out\n    mode: outbound\n    listen: 127.0.0.1:0\n    upstream_tls: {{ ca_file: '{}' }}\n    timeouts: {{ idle: 100ms }}\n    upstream:\n      routes: [{{ path_prefix: /, cluster: edge }}]\n      clusters:\n        edge: ['{}']\n",
            path("trust.pem"),
            edge.addr("edge"),
        ),
        &["out"],
    );
    let port = edge.addr("edge").rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}/version");
    let through = || {
        std::thread::sleep(Duration::from_millis(300));
        get(&format!("http://{}/version", outbound.addr("out"))).status
    };
    assert_eq!(curl_tls(&["--cacert", &path("ca.pem")], &url).0, 0);
    assert_eq!(through(), 200);

    // A new server certificate from the other CA, moved into place.
    rotate_server_certificate(dir, "other-ca", "live.pem", "live.key");
    let rotated = eventually(Duration::from_secs(10), || {
        (curl_tls(&["--cacert", &path("other-ca.pem")], &url).0 == 0).then_some(())
    });
    assert!(
        rotated.is_some(),
        "the listener never presented the new certificate"
    );
    assert_eq!(
        curl_tls(&["--cacert", &path("ca.pem")], &url).0,
        60,
        "old CA still trusted"
    );
    // The outbound side still trusts only the old CA: its new connections are refused...
    assert_eq!(through(), 502);
    // ...until its CA file is rotated too.
    std::fs::copy(dir.join("other-ca.pem"), dir.join("trust.tmp")).unwrap();
    std::fs::rename(dir.join("trust.tmp"), dir.join("trust.pem")).unwrap();
    let trusted = eventually(Duration::from_secs(10), || (through() == 200).then_some(()));
    assert!(trusted.is_some(), "upstream_tls never trusted the new CA");
    // A certificate file that changes into something unusable keeps the one in use.
    std::fs::write(dir.join("live.pem"), "-----BEGIN CERTIFICATE-----\njunk\n").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(curl_tls(&["--cacert", &path("other-ca.pem")], &url).0, 0);
}

/// The WebSocket app of tests/python/websocket_peer.py (the `websockets` library), announced as
/// `ws`.
fn websocket_app() -> Proc {
    let dir = python_dir();
    let mut cmd = Command::new(dir.join(".venv/bin/python"));
    cmd.arg(dir.join("websocket_peer.py")).arg("server");
    Proc::start(cmd, &["ws"])
}

#[test]
fn proxy_websocket_upgrade_tunnels_through_the_chain_and_spans_cover_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let app = websocket_app();
    let (edge, outbound, _inbound) = chain(
        app.addr("ws").parse().unwrap(),
        server.addr("zipkin"),
        "b3multi",
    );
    let tunnels_open = || {
        let m = get(&format!("http://{}/metrics", outbound.addr("admin"))).text();
        m.lines()
            .find_map(|l| l.strip_prefix("meshtrace_proxy_tunnels_open "))
            .map(|n| n.to_owned())
    };
    assert_eq!(tunnels_open().as_deref(), Some("0"));
    // A real WebSocket client through edge → outbound → inbound → app: text and binary messages
    // up to 1 MiB echoed, a message the app pushes unprompted, held open 0.6 s, closed normally.
    let url = format!("ws://{}/api/chat", edge.addr("edge"));
    let dir = python_dir();
    let client = Command::new(dir.join(".venv/bin/python"))
        .arg(dir.join("websocket_peer.py"))
        .args(["client", &url, "0.6"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While the client holds the connection, each proxy counts it as an open tunnel.
    let open = eventually(Duration::from_secs(10), || {
        (tunnels_open().as_deref() == Some("1")).then_some(())
    });
    assert!(open.is_some(), "the tunnel was never counted open");
    let out = client.wait_with_output().unwrap();
    assert!(out.status.success());
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let closed = eventually(Duration::from_secs(10), || {
        (tunnels_open().as_deref() == Some("0")).then_some(())
    });
    assert!(closed.is_some(), "the closed tunnel is still counted");
    assert_eq!(summary["echoed"], 4, "{summary}");
    let payload = summary["payload_bytes"].as_u64().unwrap();
    assert!(payload > 1 << 20, "{summary}");

    // The app got the handshake with its upgrade headers and the trace headers of the last hop.
    let saw = &summary["app_saw"]["headers"];
    assert_eq!(saw["upgrade"], "websocket", "{saw}");
    assert!(
        saw["connection"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("upgrade"),
        "{saw}"
    );
    assert!(saw["sec-websocket-key"].is_string(), "{saw}");
    let trace_id = saw["x-b3-traceid"].as_str().expect("trace id at the app");
    let app_parent = saw["x-b3-spanid"].as_str().unwrap();

    // One span per hop, each covering the whole connection, with the bytes carried each way.
    let trace = trace_with(&server, trace_id, 3);
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 3, "{trace:#}");
    for s in spans {
        assert_eq!(tag_str(s, "http.status_code"), "101", "{s:#}");
        assert!(tag(s, "error").is_none(), "{s:#}");
        let duration = s["duration"].as_u64().unwrap();
        assert!(
            duration >= 600_000,
            "span ended before the connection: {s:#}"
        );
        for size in ["request_size", "response_size"] {
            let n: u64 = tag_str(s, size).parse().unwrap();
            assert!(n > payload, "{size} {n} < {payload}: {s:#}");
        }
    }
    let ids: Vec<&str> = spans
        .iter()
        .map(|s| s["spanID"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&app_parent),
        "the app's parent is a proxy span: {ids:?}"
    );
    let roots = spans.iter().filter(|s| parent_of(s).is_none()).count();
    assert_eq!(roots, 1, "{trace:#}");

    // A handshake the app refuses is an ordinary response, and so is a plain request.
    let url = format!("ws://{}/api/reject", edge.addr("edge"));
    let out = python(".venv", "websocket_peer.py", &["reject", &url]);
    assert_eq!(out.trim(), r#"{"status": 403}"#);
    let plain = get(&format!("http://{}/api/plain", edge.addr("edge")));
    assert_eq!(
        plain.status,
        426,
        "the app wants an upgrade: {}",
        plain.text()
    );
}

#[test]
fn proxy_upstream_down_is_502_and_timeout_is_504_with_error_spans() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    // A port nobody listens on.
    let dead = dead_port();
    let down = single(dead, Some(server.addr("zipkin")), "");
    let tid = "1111111111111111aaaaaaaaaaaaaaaa";
    let url = format!("http://{}/down", down.addr("in"));
    let a = curl(&[
        "-H",
        &format!("x-b3-traceid: {tid}"),
        "-H",
        "x-b3-spanid: 2222222222222222",
        "-H",
        "x-b3-sampled: 1",
        &url,
    ]);
    assert_eq!(a.status, 502, "{}", a.text());
    let t = trace_with(&server, tid, 1);
    let s = &t["spans"][0];
    assert_eq!(tag_str(s, "error"), "true");
    assert_eq!(tag_str(s, "http.status_code"), "502");
    assert_eq!(tag_str(s, "response_flags"), "UF");

    let app = App::start();
    let slow = single(
        app.addr,
        Some(server.addr("zipkin")),
        "    timeouts: { request: 500ms }\n",
    );
    let tid = "3333333333333333aaaaaaaaaaaaaaaa";
    let url = format!("http://{}/slow", slow.addr("in"));
    let started = Instant::now();
    let a = curl(&[
        "-H",
        &format!("x-b3-traceid: {tid}"),
        "-H",
        "x-b3-spanid: 2222222222222222",
        "-H",
        "x-b3-sampled: 1",
        &url,
    ]);
    assert_eq!(a.status, 504, "{}", a.text());
    assert!(started.elapsed() < Duration::from_secs(3));
    let t = trace_with(&server, tid, 1);
    let s = &t["spans"][0];
    assert_eq!(tag_str(s, "error"), "true");
    assert_eq!(tag_str(s, "http.status_code"), "504");
    assert_eq!(tag_str(s, "response_flags"), "UT");
    let metrics = get(&format!("http://{}/metrics", slow.addr("admin"))).text();
    assert!(
        metrics.contains("meshtrace_proxy_upstream_timeouts_total 1"),
        "{metrics}"
    );
}

#[test]
fn proxy_collector_away_never_slows_requests_and_drops_are_counted() {
    // The collector is a port nobody answers on: requests still succeed at once, the bounded
    // buffer fills, and drops show in /metrics.
    let app = App::start();
    let dead = dead_port();
    let proxy = Proxy::start(
        &format!(
            "node_id: side\nadmin: 127.0.0.1:0\nlisteners:\n  - {{name: in, mode: inbound, listen: '127.0.0.1:0', upstream: '{}'}}\ntracing:\n  collector: http://{dead}/api/v2/spans\n  buffer_size: 5\n  flush: {{ count: 2, interval: 50ms }}\n",
            app.addr
        ),
        &["in", "admin"],
    );
    let url = format!("http://{}/echo", proxy.addr("in"));
    let urls: Vec<&str> = std::iter::repeat_n(["-o", "/dev/null", url.as_str()], 30)
        .flatten()
        .collect();
    let started = Instant::now();
    let out = Command::new("curl")
        .args(["-sS", "-w", "%{http_code}\n"])
        .args(&urls)
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().filter(|l| *l == "200").count(), 30, "{text}");
    let admin = proxy.addr("admin").to_owned();
    let dropped = eventually(Duration::from_secs(10), || {
        let m = get(&format!("http://{admin}/metrics")).text();
        let line = m
            .lines()
            .find(|l| l.starts_with("meshtrace_proxy_spans_dropped_total "))?
            .to_owned();
        let n: u64 = line.rsplit(' ').next()?.parse().ok()?;
        (n > 0).then_some(n)
    });
    assert!(dropped.is_some());
    let m = get(&format!("http://{admin}/metrics")).text();
    assert!(
        !m.contains("meshtrace_proxy_export_retries_total 0\n"),
        "retries: {m}"
    );
}

/// Routes by exact path, path regex and request header, and a weighted split between two
/// versions of a service (a canary), through an outbound listener to two apps.
#[test]
fn proxy_routes_by_path_and_header_and_splits_traffic_by_weight() {
    let (stable, canary) = (App::start(), App::start());
    let yaml = format!(
        r#"node_id: caller
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes:
        - {{ path: /echo, cluster: stable }}
        - {{ path_regex: '/v[0-9]+/echo', cluster: canary }}
        - {{ path_prefix: /, headers: [{{ name: x-version, string_match: {{ exact: canary }} }}], cluster: canary }}
        - path_prefix: /
          weighted_clusters: {{ clusters: [{{ name: stable, weight: 80 }}, {{ name: canary, weight: 20 }}] }}
      clusters:
        stable: ['{}']
        canary: ['{}']
"#,
        stable.addr, canary.addr
    );
    let proxy = Proxy::start(&yaml, &["out"]);
    let out = proxy.addr("out");
    let seen = |app: &App| app.seen.lock().unwrap().len();
    let get_ok = |path: &str, headers: &[&str]| {
        let mut args: Vec<String> = headers
            .iter()
            .flat_map(|h| ["-H".to_owned(), (*h).to_owned()])
            .collect();
        args.push(format!("http://{out}{path}"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(curl(&args).status, 200, "{path}");
    };
    get_ok("/echo", &[]);
    assert_eq!((seen(&stable), seen(&canary)), (1, 0), "exact path");
    get_ok("/v2/echo", &[]);
    assert_eq!((seen(&stable), seen(&canary)), (1, 1), "path regex");
    for _ in 0..5 {
        get_ok("/echo/more", &["x-version: canary"]);
    }
    assert_eq!((seen(&stable), seen(&canary)), (1, 6), "the header's route");
    // The split: 200 requests, about 20% to the canary (bounds far outside a fair draw's
    // spread: σ ≈ 5.7).
    for _ in 0..200 {
        get_ok("/echo/more", &[]);
    }
    let to_canary = seen(&canary) - 6;
    assert_eq!(seen(&stable) - 1 + to_canary, 200);
    assert!(
        (15..=70).contains(&to_canary),
        "{to_canary} of 200 to the canary"
    );

    refuses_each(
        &yaml,
        &[
        (
            "cluster: stable }\n        - { path_regex",
            "cluster: stable, weighted_clusters: { clusters: [{ name: canary, weight: 1 }] } }\n        - { path_regex",
            "needs exactly one of cluster, weighted_clusters, direct_response and redirect",
        ),
        ("'/v[0-9]+/echo'", "'/v[0-9+/echo'", "path_regex: regex"),
        ("weight: 80 }, { name: canary, weight: 20", "weight: 0 }, { name: canary, weight: 0", "the weights add up to 0"),
        ("name: canary, weight: 20", "name: nope, weight: 20", "route to unknown cluster \"nope\""),
        ("string_match: { exact: canary }", "string_match: { exact: canary, prefix: c }", "exactly one of exact"),
        ],
    );
}

/// Envoy's header changes per route and per listener, and `host_rewrite_literal`, as the app
/// and the caller see them.
#[test]
fn proxy_adds_and_removes_headers_and_rewrites_the_host() {
    let app = App::start();
    let yaml = format!(
        r#"node_id: caller
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    request_headers_to_add:
      - {{ header: {{ key: x-mesh, value: shop }}, append_action: OVERWRITE_IF_EXISTS_OR_ADD }}
    response_headers_to_remove: [x-internal]
    upstream:
      routes:
        - path_prefix: /version
          cluster: app
          host_rewrite_literal: api.example.com
          request_headers_to_remove: [x-secret]
          request_headers_to_add:
            - {{ header: {{ key: x-tag, value: route }} }}
            - {{ header: {{ key: x-mesh, value: route }} }}
          response_headers_to_add:
            - {{ header: {{ key: x-served-by, value: meshtrace }}, append_action: ADD_IF_ABSENT }}
      clusters:
        app: ['{}']
"#,
        app.addr
    );
    let proxy = Proxy::start(&yaml, &["out"]);
    let a = curl(&[
        "-D",
        "-",
        "-H",
        "x-secret: s3cret",
        "-H",
        "x-tag: caller",
        "-H",
        "x-mesh: caller",
        &format!("http://{}/version", proxy.addr("out")),
    ]);
    assert_eq!(a.status, 200);
    // The app answers its HTTP version and the authority it was sent.
    assert!(
        a.text().ends_with("HTTP/1.1 api.example.com"),
        "{}",
        a.text()
    );
    let seen = app.last();
    assert_eq!(header(&seen, "x-secret"), None);
    let tags: Vec<&str> = seen
        .get_all("x-tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(tags, ["caller", "route"], "appended");
    // The route appended its x-mesh, then the listener's overwrote them all.
    let mesh: Vec<&str> = seen
        .get_all("x-mesh")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(mesh, ["shop"]);
    assert!(
        a.text()
            .to_ascii_lowercase()
            .contains("x-served-by: meshtrace"),
        "{}",
        a.text()
    );

    let err = refused(&yaml.replace("value: shop", "value: '%HOSTNAME%'"));
    assert!(err.contains("%...% variables are not supported"), "{err}");
    let err = refused(&yaml.replace("api.example.com", "'not a host'"));
    assert!(err.contains("host_rewrite_literal \"not a host\""), "{err}");
}

#[test]
fn proxy_edge_routes_answer_with_direct_responses_and_redirects() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let app = App::start();
    let yaml = format!(
        r#"node_id: edge-1
listeners:
  - name: edge
    mode: edge
    listen: 127.0.0.1:0
    upstream:
      routes:
        - path: /robots.txt
          direct_response: {{ status: 200, body: {{ inline_string: "User-agent: *\nDisallow: /\n" }} }}
          response_headers_to_add: [{{ header: {{ key: cache-control, value: max-age=60 }} }}]
        - {{ path: /down, name: maintenance, direct_response: {{ status: 503, body: {{ inline_string: "down for maintenance\n" }} }} }}
        - {{ path: /gone, direct_response: {{ status: 410 }} }}
        - {{ host: plain.example, redirect: {{ https_redirect: true }} }}
        - {{ path_prefix: /old/, redirect: {{ prefix_rewrite: /new/, response_code: PERMANENT_REDIRECT }} }}
        - {{ path_prefix: /new/, prefix_rewrite: /, cluster: app }}
        - {{ path: /moved, redirect: {{ host_redirect: 'elsewhere.example:8443', path_redirect: /here, strip_query: true, response_code: FOUND }} }}
        - {{ path_prefix: /, cluster: app }}
      clusters:
        app: ['{app}']
{tracing}"#,
        app = app.addr,
        tracing = tracing_block(server.addr("zipkin"), "b3multi"),
    );
    let proxy = Proxy::start(&yaml, &["edge"]);
    let edge = proxy.addr("edge");
    let traced = |tid: &str, path: &str, extra: &[&str]| {
        let mut args = vec![
            "-D".to_owned(),
            "-".to_owned(),
            "-H".to_owned(),
            format!("x-b3-traceid: {tid}"),
            "-H".to_owned(),
            "x-b3-spanid: 2222222222222222".to_owned(),
            "-H".to_owned(),
            "x-b3-sampled: 1".to_owned(),
        ];
        for e in extra {
            args.push("-H".to_owned());
            args.push((*e).to_owned());
        }
        args.push(format!("http://{edge}{path}"));
        curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let head = |a: &Answer, name: &str| -> Option<String> {
        let text = a.text();
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };

    // A direct response: its body and the route's response header, the app never asked.
    let a = traced("1111111111111111aaaaaaaaaaaaaaa1", "/robots.txt", &[]);
    assert_eq!(a.status, 200);
    assert!(
        a.text().ends_with("User-agent: *\nDisallow: /\n"),
        "{}",
        a.text()
    );
    assert_eq!(head(&a, "content-type").as_deref(), Some("text/plain"));
    assert_eq!(head(&a, "cache-control").as_deref(), Some("max-age=60"));
    let a = traced("1111111111111111aaaaaaaaaaaaaaa2", "/down", &[]);
    assert_eq!(a.status, 503);
    assert!(a.text().ends_with("down for maintenance\n"));
    let a = traced("1111111111111111aaaaaaaaaaaaaaa3", "/gone", &[]);
    assert_eq!(a.status, 410);
    assert_eq!(head(&a, "content-type"), None, "no body, no type");
    assert_eq!(head(&a, "content-length").as_deref(), Some("0"));

    // Redirects: Location built from the request.
    for (tid, path, host, status, location) in [
        (
            "1111111111111111aaaaaaaaaaaaaaa4",
            "/cart?item=3",
            "host: plain.example:80",
            301,
            "https://plain.example/cart?item=3",
        ),
        (
            "1111111111111111aaaaaaaaaaaaaaa5",
            "/old/docs/a?v=2",
            "host: shop",
            308,
            "http://shop/new/docs/a?v=2",
        ),
        (
            "1111111111111111aaaaaaaaaaaaaaa6",
            "/moved?secret=1",
            "host: shop",
            302,
            "http://elsewhere.example:8443/here",
        ),
    ] {
        let a = traced(tid, path, &[host]);
        assert_eq!(a.status, status, "{path}");
        assert_eq!(head(&a, "location").as_deref(), Some(location), "{path}");
    }
    // curl follows it as a browser would (back to the edge, whose /new/ route takes off the
    // prefix on the way to the app's /version).
    let followed = curl(&["-L", &format!("http://{edge}/old/version")]);
    assert_eq!(followed.status, 200, "{}", followed.text());
    assert_eq!(followed.text(), format!("HTTP/1.1 {edge}"));

    // The edge still routes everything else to the app.
    let a = traced("1111111111111111aaaaaaaaaaaaaaa7", "/echo", &["host: shop"]);
    assert_eq!(a.status, 200, "{}", a.text());

    // Spans: the proxy's own answers are reported as Envoy's are, with no upstream.
    let s = trace_with(&server, "1111111111111111aaaaaaaaaaaaaaa2", 1)["spans"][0].clone();
    assert_eq!(s["operationName"], "maintenance");
    assert_eq!(tag_str(&s, "http.status_code"), "503");
    assert_eq!(tag_str(&s, "error"), "true");
    assert_eq!(tag_str(&s, "response_flags"), "-");
    assert!(tag(&s, "upstream_cluster").is_none(), "{s:#}");
    let s = trace_with(&server, "1111111111111111aaaaaaaaaaaaaaa4", 1)["spans"][0].clone();
    assert_eq!(tag_str(&s, "http.status_code"), "301");
    assert!(tag(&s, "error").is_none(), "{s:#}");
    assert_eq!(
        tag_str(&s, "http.url"),
        "http://plain.example:80/cart?item=3"
    );
    let s = trace_with(&server, "1111111111111111aaaaaaaaaaaaaaa7", 1)["spans"][0].clone();
    assert_eq!(tag_str(&s, "upstream_cluster"), "app");

    // Mistakes are named.
    refuses_each(
        &yaml,
        &[
            ("status: 410", "status: 99", "status 99 is not 200–599"),
            (
                "https_redirect: true",
                "https_redirect: true, scheme_redirect: ftp",
                "give one of https_redirect and scheme_redirect",
            ),
            (
                "prefix_rewrite: /new/",
                "prefix_rewrite: /new/, path_redirect: /x",
                "give one of path_redirect, prefix_rewrite and regex_rewrite",
            ),
            (
                "path: /gone, direct_response",
                "path: /gone, cluster: app, direct_response",
                "needs exactly one of cluster",
            ),
            (
                "inline_string: \"down",
                "filename: /no/such/file, inline_string: \"down",
                "exactly one of inline_string",
            ),
            (
                "response_code: FOUND",
                "response_code: 302",
                "unknown variant",
            ),
            (
                "path: /gone, direct_response",
                "path: /gone, cors: { allow_origin_string_match: [] }, direct_response",
                "cors: allow_origin_string_match lists no origin",
            ),
        ],
    );
    let err = refused(&yaml.replace("mode: edge", "mode: inbound"));
    assert!(
        err.contains("an inbound listener takes one upstream"),
        "{err}"
    );
}

/// Which of `apps` served `call` (each app counts the requests it saw).
fn served_by(apps: &[App], call: impl FnOnce()) -> usize {
    let before: Vec<usize> = apps.iter().map(|a| a.seen.lock().unwrap().len()).collect();
    call();
    let grew: Vec<usize> = apps
        .iter()
        .enumerate()
        .filter(|(i, a)| a.seen.lock().unwrap().len() > before[*i])
        .map(|(i, _)| i)
        .collect();
    assert_eq!(grew.len(), 1, "one app serves a request: {grew:?}");
    grew[0]
}

#[test]
fn proxy_ring_hash_keeps_a_user_on_one_endpoint_across_proxies() {
    consistent_hashing("RING_HASH\n          ring_hash_lb_config: { minimum_ring_size: 2048 }");
}

#[test]
fn proxy_maglev_keeps_a_user_on_one_endpoint_across_proxies() {
    consistent_hashing("MAGLEV\n          maglev_lb_config: { table_size: 65537 }");
}

/// Users (by header or cookie) each reach one endpoint of three, from two proxies alike,
/// under the hashing `policy` (with its settings).
fn consistent_hashing(policy: &str) {
    let apps = [App::start(), App::start(), App::start()];
    let yaml = format!(
        r#"node_id: caller
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes:
        - path_prefix: /
          cluster: shop
          hash_policy:
            - {{ header: {{ header_name: x-user }}, terminal: true }}
            - {{ cookie: {{ name: session }} }}
      clusters:
        shop:
          endpoints: ['{}', '{}', '{}']
          lb_policy: {policy}
"#,
        apps[0].addr, apps[1].addr, apps[2].addr
    );
    // Two proxies of the same configuration: two sidecars of one caller's replicas.
    let (p1, p2) = (Proxy::start(&yaml, &["out"]), Proxy::start(&yaml, &["out"]));
    let call = |proxy: &Proxy, header: &str| {
        let a = curl(&["-H", header, &format!("http://{}/echo", proxy.addr("out"))]);
        assert_eq!(a.status, 200, "{}", a.text());
    };
    let mut users_per_app = [0; 3];
    for user in 0..30 {
        let header = if user < 20 {
            format!("x-user: user-{user}")
        } else {
            format!("cookie: theme=dark; session=s{user}")
        };
        let first = served_by(&apps, || call(&p1, &header));
        users_per_app[first] += 1;
        for proxy in [&p2, &p1, &p2] {
            assert_eq!(
                served_by(&apps, || call(proxy, &header)),
                first,
                "{header}: the same endpoint from either proxy"
            );
        }
    }
    // 30 users over 3 endpoints: each endpoint has some (all on two: p ≈ 1.5e-5).
    assert!(users_per_app.iter().all(|&n| n > 0), "{users_per_app:?}");
    // Without a hash (no header, no cookie), requests spread at random.
    let mut spread = [0; 3];
    for _ in 0..30 {
        spread[served_by(&apps, || call(&p1, "x-other: 1"))] += 1;
    }
    assert!(spread.iter().all(|&n| n > 0), "{spread:?}");

    if policy.starts_with("MAGLEV") {
        let err = refused(&yaml.replace("table_size: 65537", "table_size: 65536"));
        assert!(err.contains("table_size 65536 is not a prime"), "{err}");
        return;
    }
    refuses_each(
        &yaml,
        &[
            (
                "lb_policy: RING_HASH",
                "lb_policy: FASTEST",
                "unknown variant `FASTEST`",
            ),
            (
                "{ cookie: { name: session } }",
                "{ cookie: { name: session, ttl: 1h } }",
                "ttl",
            ),
            (
                "{ cookie: { name: session } }",
                "{}",
                "exactly one of header",
            ),
            (
                "minimum_ring_size: 2048",
                "minimum_ring_size: 0",
                "minimum_ring_size 0",
            ),
        ],
    );
}

#[test]
fn proxy_least_request_sends_to_the_idle_endpoint_and_counts_requests_in_flight() {
    let apps = [App::start(), App::start()];
    let yaml = format!(
        r#"node_id: caller
admin: 127.0.0.1:0
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes: [{{ path_prefix: /, cluster: pool }}]
      clusters:
        pool:
          endpoints: ['{}', '{}']
          lb_policy: LEAST_REQUEST
          least_request_lb_config: {{ choice_count: 20 }}
"#,
        apps[0].addr, apps[1].addr
    );
    let proxy = Proxy::start(&yaml, &["out", "admin"]);
    let (out, admin) = (proxy.addr("out").to_owned(), proxy.addr("admin").to_owned());
    let in_flight = || -> Vec<u64> {
        get(&format!("http://{admin}/clusters"))
            .text()
            .lines()
            .filter_map(|l| {
                l.split_once("::rq_active::")
                    .map(|(_, n)| n.parse().unwrap())
            })
            .collect()
    };
    assert_eq!(in_flight(), [0, 0]);
    // A slow request (3 s) holds one endpoint.
    let slow = {
        let out = out.clone();
        std::thread::spawn(move || get(&format!("http://{out}/slow")).status)
    };
    let busy = eventually(Duration::from_secs(5), || {
        apps.iter().position(|a| !a.seen.lock().unwrap().is_empty())
    })
    .expect("the slow request reached an app");
    assert_eq!(in_flight().iter().sum::<u64>(), 1);
    // Twenty draws of two endpoints per request: the idle one is nearly always among them
    // (all on the busy one: 2^-20 per request).
    for _ in 0..20 {
        let to = served_by(&apps, || {
            assert_eq!(get(&format!("http://{out}/echo")).status, 200);
        });
        assert_ne!(
            to, busy,
            "a request went to the endpoint with one in flight"
        );
    }
    assert_eq!(slow.join().unwrap(), 200);
    assert_eq!(
        eventually(Duration::from_secs(5), || (in_flight() == [0, 0])
            .then_some(())),
        Some(())
    );
}

#[test]
fn proxy_without_panic_routing_answers_503_uh_when_no_endpoint_is_healthy() {
    let app = App::start();
    let yaml = format!(
        r#"node_id: caller
admin: 127.0.0.1:0
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes: [{{ path_prefix: /, cluster: app }}]
      clusters:
        app:
          endpoints: ['{}']
          common_lb_config: {{ healthy_panic_threshold: {{ value: 0 }} }}
          health_checks:
            - {{ timeout: 1s, interval: 100ms, unhealthy_threshold: 1, healthy_threshold: 1, http_health_check: {{ path: /healthz }} }}
"#,
        app.addr
    );
    let proxy = Proxy::start(&yaml, &["out", "admin"]);
    let (out, admin) = (proxy.addr("out"), proxy.addr("admin"));
    assert_eq!(
        eventually(Duration::from_secs(5), || {
            (get(&format!("http://{out}/echo")).status == 200).then_some(())
        }),
        Some(()),
        "healthy: served"
    );
    app.health.store(503, std::sync::atomic::Ordering::Relaxed);
    let a = eventually(Duration::from_secs(5), || {
        let a = get(&format!("http://{out}/echo"));
        (a.status == 503).then_some(a)
    })
    .expect("no healthy endpoint: 503");
    assert_eq!(a.text(), "no healthy upstream\n");
    let metrics = get(&format!("http://{admin}/metrics")).text();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("meshtrace_proxy_no_healthy_upstream_total ") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    // Healthy again: served again.
    app.health.store(200, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        eventually(Duration::from_secs(5), || {
            (get(&format!("http://{out}/echo")).status == 200).then_some(())
        }),
        Some(())
    );
}

#[test]
fn proxy_mirrors_requests_to_a_shadow_cluster_without_waiting_for_it() {
    let (live, next) = (App::start(), App::start());
    // A shadow that takes connections and never answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let yaml = format!(
        r#"node_id: caller
admin: 127.0.0.1:0
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes:
        - path: /stuck
          cluster: live
          timeout: 500ms
          request_mirror_policies: [{{ cluster: hole }}]
        - path_prefix: /
          cluster: live
          request_mirror_policies: [{{ cluster: next, runtime_fraction: {{ default_value: {{ numerator: 100 }} }} }}]
      clusters:
        live: ['{}']
        next: ['{}']
        hole: ['{}']
tracing: {{ propagation: [b3multi] }}
"#,
        live.addr,
        next.addr,
        hole.local_addr().unwrap()
    );
    let proxy = Proxy::start(&yaml, &["out", "admin"]);
    let (out, admin) = (proxy.addr("out"), proxy.addr("admin"));
    let counter = |name: &str| -> u64 {
        get(&format!("http://{admin}/metrics"))
            .text()
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{name} "))
                    .map(|v| v.parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let seen = |app: &App| app.seen.lock().unwrap().len();

    // A GET: the live app answers, the shadow gets a copy with its host suffixed and the same
    // trace headers.
    let a = curl(&[
        "-H",
        "host: cart.mesh:8080",
        "-H",
        "x-b3-traceid: 7777777777777777aaaaaaaaaaaaaaa1",
        "-H",
        "x-b3-spanid: 2222222222222222",
        "-H",
        "x-b3-sampled: 1",
        &format!("http://{out}/echo?x=1"),
    ]);
    assert_eq!(a.status, 200);
    assert_eq!(
        eventually(Duration::from_secs(5), || (counter(
            "meshtrace_proxy_mirrored_total"
        ) == 1)
            .then_some(())),
        Some(())
    );
    let (real, copy) = (live.last(), next.last());
    assert_eq!(header(&real, "host"), Some("cart.mesh:8080"));
    assert_eq!(header(&copy, "host"), Some("cart.mesh-shadow:8080"));
    for h in [
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
    ] {
        assert_eq!(header(&copy, h), header(&real, h), "{h}");
    }

    // A POST with a body: copied whole once the live app has read it (the shadow's /count
    // answers only when the 10,000 bytes have come, and only then is the copy counted).
    let body = "b".repeat(10_000);
    let a = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &body,
        &format!("http://{out}/count"),
    ]);
    assert_eq!(a.text(), "10000");
    assert_eq!(
        eventually(Duration::from_secs(5), || (counter(
            "meshtrace_proxy_mirrored_total"
        ) == 2)
            .then_some(())),
        Some(())
    );
    assert_eq!(header(&next.last(), "content-length"), Some("10000"));
    // Over 64 KiB: not kept, so not copied, and counted.
    let before = seen(&next);
    let big = "b".repeat(70_000);
    let a = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &big,
        &format!("http://{out}/count"),
    ]);
    assert_eq!(a.text(), "70000");
    assert_eq!(counter("meshtrace_proxy_mirror_skipped_total"), 1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(seen(&next), before);

    // A shadow that never answers does not hold the caller; it is given up after the route's
    // timeout and counted.
    let started = Instant::now();
    assert_eq!(get(&format!("http://{out}/stuck")).status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        eventually(Duration::from_secs(5), || (counter(
            "meshtrace_proxy_mirror_failed_total"
        ) == 1)
            .then_some(())),
        Some(())
    );

    refuses_each(
        &yaml,
        &[
            (
                "{ cluster: hole }",
                "{ cluster: nowhere }",
                "route to unknown cluster \"nowhere\"",
            ),
            (
                "{ cluster: hole }",
                "{ cluster: hole, percent: 5 }",
                "unknown field `percent`",
            ),
        ],
    );
}

#[test]
fn proxy_compresses_answers_with_gzip_for_clients_that_take_it() {
    let app = App::start();
    let yaml = format!(
        "node_id: edge
listeners:
  - name: in
    mode: inbound
    listen: 127.0.0.1:0
    upstream: '{}'
    compressor: {{ min_content_length: 100, remove_accept_encoding_header: true }}
",
        app.addr
    );
    let proxy = Proxy::start(&yaml, &["in"]);
    let url = |path: &str| format!("http://{}{path}", proxy.addr("in"));
    let json = format!("{{\"x\":\"{}\"}}", "a".repeat(4992));
    // The answer as sent: its head, and its body as bytes.
    let raw = |path: &str, headers: &[&str]| -> (String, Vec<u8>) {
        let mut args = vec!["-D", "-"];
        for h in headers {
            args.extend(["-H", h]);
        }
        let u = url(path);
        args.push(&u);
        let a = curl(&args);
        let cut = a
            .body
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head")
            + 4;
        let head = String::from_utf8_lossy(&a.body[..cut]).to_ascii_lowercase();
        (head, a.body[cut..].to_vec())
    };

    // Taken: gzip, smaller, and what curl unpacks is the app's JSON.
    let (head, body) = raw("/json?n=5000", &["accept-encoding: br, gzip;q=0.8"]);
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("vary: accept-encoding"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip's magic");
    assert!(body.len() < 500, "{} bytes", body.len());
    let unpacked = curl(&["--compressed", &url("/json?n=5000")]);
    assert_eq!(unpacked.text(), json);
    // The upstream was not asked for an encoding of its own.
    assert_eq!(header(&app.last(), "accept-encoding"), None);

    // Not taken, refused by q=0, too small, or of a type not worth it: as the app sent it.
    for (path, headers) in [
        ("/json?n=5000", vec![]),
        ("/json?n=5000", vec!["accept-encoding: gzip;q=0, br"]),
        ("/json?n=50", vec!["accept-encoding: gzip"]),
        ("/echo", vec!["accept-encoding: gzip"]),
    ] {
        let (head, body) = raw(path, &headers);
        assert!(
            !head.contains("content-encoding"),
            "{path} {headers:?}: {head}"
        );
        assert!(
            head.contains("content-length"),
            "{path} {headers:?}: {head}"
        );
        assert_ne!(body.get(..2), Some(&[0x1f, 0x8b][..]), "{path} {headers:?}");
    }
    // An answer of no type (a 256 KiB stream) goes as it came, to a client that takes gzip.
    let streamed = curl(&["--compressed", &url("/stream?n=4")]);
    assert_eq!(streamed.body.len(), 4 * 64 * 1024);

    refuses_each(
        &yaml,
        &[
            (
                "min_content_length: 100",
                "compression_level: 10",
                "compressor: compression_level 10 is not 1–9",
            ),
            (
                "min_content_length: 100",
                "window_bits: 10",
                "unknown field `window_bits`",
            ),
        ],
    );
}

#[test]
fn proxy_endpoint_weights_share_requests_in_proportion() {
    let apps = [App::start(), App::start()];
    let yaml = format!(
        r#"node_id: caller
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes: [{{ path_prefix: /, cluster: pool }}]
      clusters:
        pool:
          - {{ address: '{}', load_balancing_weight: 3 }}
          - '{}'
"#,
        apps[0].addr, apps[1].addr
    );
    let proxy = Proxy::start(&yaml, &["out"]);
    let mut per = [0; 2];
    for _ in 0..40 {
        per[served_by(&apps, || {
            assert_eq!(
                get(&format!("http://{}/echo", proxy.addr("out"))).status,
                200
            );
        })] += 1;
    }
    // Smooth weighted round-robin on each worker (connections dealt to the workers in turn):
    // 3 in 4, give or take each worker's unfinished round of four.
    assert_eq!(per[0] + per[1], 40);
    assert!((27..=33).contains(&per[0]), "{per:?}");
    let err = refused(&yaml.replace("load_balancing_weight: 3", "load_balancing_weight: 0"));
    assert!(
        err.contains("load_balancing_weight 0; weights start at 1"),
        "{err}"
    );
    let err = refused(&yaml.replace("load_balancing_weight: 3", "weight: 3"));
    assert!(err.contains("unknown field `weight`"), "{err}");
}
