//! `meshtrace proxy` reporting and sampling, with real peers on 127.0.0.1 port 0: every export
//! protocol into `meshtrace all-in-one`, retries against a collector that fails at first, and the
//! sampling knobs (random, client, overall, hash_seed), 64-bit trace ids and shared span context
//! as the app behind an inbound sidecar sees them.

mod collector_harness;
mod common;
mod proxy_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use proxy_support::*;

fn inbound(app: SocketAddr, tracing: &str) -> Proxy {
    Proxy::start(
        &format!(
            "node_id: side\nadmin: 127.0.0.1:0\nlisteners:\n  - {{name: in, mode: inbound, listen: '127.0.0.1:0', upstream: '{app}'}}\ntracing:\n{tracing}"
        ),
        &["in", "admin"],
    )
}

fn metric(proxy: &Proxy, name: &str) -> u64 {
    let m = get(&format!("http://{}/metrics", proxy.addr("admin"))).text();
    m.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {m}"))
}

#[test]
fn proxy_exports_in_every_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let app = App::start();
    for (i, (protocol, url)) in [
        (
            "zipkin-json",
            format!("http://{}/api/v2/spans", server.addr("zipkin")),
        ),
        (
            "zipkin-proto",
            format!("http://{}/api/v2/spans", server.addr("zipkin")),
        ),
        (
            "otlp-http",
            format!("http://{}/v1/traces", server.addr("otlp-http")),
        ),
        ("otlp-grpc", format!("http://{}", server.addr("otlp-grpc"))),
    ]
    .into_iter()
    .enumerate()
    {
        let proxy = inbound(
            app.addr,
            &format!("  collector: {url}\n  protocol: {protocol}\n  flush: {{ count: 10, interval: 100ms }}\n"),
        );
        let trace = format!("{:032x}", 0xabc0 + i);
        let tp = format!("traceparent: 00-{trace}-00f067aa0ba902b7-01");
        let a = curl(&["-H", &tp, &format!("http://{}/echo", proxy.addr("in"))]);
        assert_eq!(a.status, 200);
        let t = eventually(Duration::from_secs(20), || {
            let a = get(&server.query_url(&format!("/api/traces/{trace}")));
            (a.status == 200).then(|| a.json()["data"][0].clone())
        })
        .unwrap_or_else(|| panic!("{protocol}: trace {trace} never arrived"));
        let span = &t["spans"][0];
        assert_eq!(span["operationName"], "GET /echo", "{protocol}");
        let pid = span["processID"].as_str().unwrap();
        assert_eq!(t["processes"][pid]["serviceName"], "side", "{protocol}");
        assert_eq!(
            span["references"][0]["spanID"], "00f067aa0ba902b7",
            "{protocol}"
        );
        assert_eq!(tag(span, "component").unwrap().1, "proxy", "{protocol}");
        assert_eq!(
            metric(&proxy, "meshtrace_proxy_spans_exported_total"),
            1,
            "{protocol}"
        );
    }
}

/// A collector that answers 503 to its first `failures` reports, then 202; counts both and
/// keeps every request's headers.
struct FlakyCollector {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    accepted: Arc<std::sync::Mutex<Vec<Bytes>>>,
    headers: Arc<std::sync::Mutex<Vec<hyper::HeaderMap>>>,
    _runtime: tokio::runtime::Runtime,
}

impl FlakyCollector {
    fn start(failures: usize) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(std::sync::Mutex::new(Vec::new()));
        let headers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, acc, hs) = (calls.clone(), accepted.clone(), headers.clone());
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (c, acc, hs) = (c.clone(), acc.clone(), hs.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (c, acc, hs) = (c.clone(), acc.clone(), hs.clone());
                            async move {
                                hs.lock().unwrap().push(req.headers().clone());
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let n = c.fetch_add(1, Ordering::SeqCst);
                                let mut r =
                                    hyper::Response::new(http_body_util::Full::new(Bytes::new()));
                                if n < failures {
                                    *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                                } else {
                                    acc.lock().unwrap().push(body);
                                    *r.status_mut() = hyper::StatusCode::ACCEPTED;
                                }
                                Ok::<_, Infallible>(r)
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
                });
            }
        });
        FlakyCollector {
            addr,
            calls,
            accepted,
            headers,
            _runtime: runtime,
        }
    }
}

#[test]
fn proxy_retries_with_backoff_until_the_collector_accepts() {
    let collector = FlakyCollector::start(3);
    let app = App::start();
    let proxy = inbound(
        app.addr,
        &format!(
            "  collector: http://{}/api/v2/spans\n  flush: {{ count: 1, interval: 50ms }}\n",
            collector.addr
        ),
    );
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let tp = format!("traceparent: 00-{trace}-00f067aa0ba902b7-01");
    assert_eq!(
        curl(&["-H", &tp, &format!("http://{}/echo", proxy.addr("in"))]).status,
        200
    );
    let body = eventually(Duration::from_secs(15), || {
        collector.accepted.lock().unwrap().first().cloned()
    })
    .expect("the span arrives once the collector recovers");
    let spans: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(spans[0]["traceId"], trace);
    assert_eq!(
        collector.calls.load(Ordering::SeqCst),
        4,
        "3 refusals, then accepted"
    );
    assert_eq!(metric(&proxy, "meshtrace_proxy_export_retries_total"), 3);
    assert_eq!(metric(&proxy, "meshtrace_proxy_spans_exported_total"), 1);
    assert_eq!(metric(&proxy, "meshtrace_proxy_spans_dropped_total"), 0);
}

fn sampled_at_app(proxy: &Proxy, app: &App, headers: &[&str]) -> String {
    let mut args: Vec<&str> = Vec::new();
    for h in headers {
        args.extend(["-H", h]);
    }
    let url = format!("http://{}/echo", proxy.addr("in"));
    args.push(&url);
    assert_eq!(curl(&args).status, 200);
    let h = app.last();
    h.get("x-b3-sampled")
        .or_else(|| h.get("x-b3-flags"))
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[test]
fn proxy_sampling_knobs() {
    let app = App::start();
    let collector = FlakyCollector::start(0);
    let url = format!("http://{}/api/v2/spans", collector.addr);
    // random 0: no trace is started sampled, but incoming decisions and x-client-trace-id win.
    let p = inbound(
        app.addr,
        &format!("  collector: {url}\n  sampling: {{ random: 0, client: 100, overall: 100 }}\n"),
    );
    assert_eq!(sampled_at_app(&p, &app, &[]), "0");
    assert_eq!(sampled_at_app(&p, &app, &["x-client-trace-id: c-1"]), "1");
    assert_eq!(sampled_at_app(&p, &app, &["b3: 1"]), "1");
    assert_eq!(
        sampled_at_app(&p, &app, &["b3: d"]),
        "1",
        "debug is x-b3-flags: 1"
    );
    assert_eq!(
        sampled_at_app(
            &p,
            &app,
            &["traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]
        ),
        "1"
    );
    assert_eq!(metric(&p, "meshtrace_proxy_spans_started_total"), 4);

    // overall 0 caps even a client trace id; an incoming decision is still honoured.
    let p = inbound(
        app.addr,
        &format!("  collector: {url}\n  sampling: {{ random: 100, client: 100, overall: 0 }}\n"),
    );
    assert_eq!(sampled_at_app(&p, &app, &["x-client-trace-id: c-1"]), "0");
    assert_eq!(sampled_at_app(&p, &app, &["x-b3-sampled: 1"]), "1");

    // hash_seed: the collector's FNV-1a rule decides a deferred trace (bucket 141 of this id).
    let deferred = "b3: 4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
    for (pct, want) in [(1.0, "1"), (0.5, "0")] {
        let p = inbound(
            app.addr,
            &format!("  collector: {url}\n  sampling: {{ random: {pct}, hash_seed: 0 }}\n"),
        );
        assert_eq!(sampled_at_app(&p, &app, &[deferred]), want, "{pct}%");
    }
}

#[test]
fn proxy_64bit_trace_ids_and_shared_span_context() {
    let app = App::start();
    let p = inbound(
        app.addr,
        "  propagation: [b3multi, b3]\n  trace_id_128bit: false\n  shared_span_context: true\n",
    );
    let url = format!("http://{}/echo", p.addr("in"));
    // A new trace: 64-bit ids.
    assert_eq!(curl(&[&url]).status, 200);
    let h = app.last();
    let id = h["x-b3-traceid"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 16, "{id}");
    assert!(h["b3"].to_str().unwrap().starts_with(&format!("{id}-")));
    // Shared span context: the inbound span keeps the caller's span id and parent.
    let a = curl(&[
        "-H",
        "x-b3-traceid: 463ac35c9f6413ad48485a3953bb6124",
        "-H",
        "x-b3-spanid: a2fb4a1d1a96d312",
        "-H",
        "x-b3-parentspanid: 0020000000000001",
        "-H",
        "x-b3-sampled: 1",
        &url,
    ]);
    assert_eq!(a.status, 200);
    let h = app.last();
    assert_eq!(
        h["x-b3-traceid"], "463ac35c9f6413ad48485a3953bb6124",
        "a 128-bit caller stays 128-bit"
    );
    assert_eq!(h["x-b3-spanid"], "a2fb4a1d1a96d312");
    assert_eq!(h["x-b3-parentspanid"], "0020000000000001");
    assert_eq!(
        h["b3"],
        "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1-0020000000000001"
    );
}

#[test]
fn proxy_config_errors_name_the_key_and_line() {
    let err = refused(
        "node_id: n\nlisteners:\n  - name: in\n    mode: inbound\n    listen: 127.0.0.1:0\n    upstream: 127.0.0.1:1\n    timeout: 1s\n",
    );
    assert!(err.contains("unknown key `timeout` at line 7"), "{err}");
}

#[test]
fn proxy_flushes_buffered_spans_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let app = App::start();
    // A long interval and a large count: only the shutdown flush can send the span.
    let proxy = inbound(
        app.addr,
        &format!(
            "  collector: http://{}/api/v2/spans\n  flush: {{ count: 1000, interval: 1h }}\n",
            server.addr("zipkin")
        ),
    );
    let trace = "6e0c63257de34c926e0c63257de34c92";
    let tp = format!("traceparent: 00-{trace}-00f067aa0ba902b7-01");
    assert_eq!(
        curl(&["-H", &tp, &format!("http://{}/echo", proxy.addr("in"))]).status,
        200
    );
    assert_eq!(proxy.terminate(), Some(0), "clean exit on SIGTERM");
    let t = eventually(Duration::from_secs(10), || {
        let a = get(&server.query_url(&format!("/api/traces/{trace}")));
        (a.status == 200).then(|| a.json())
    });
    assert!(t.is_some(), "the buffered span was flushed on shutdown");
}

/// A proxy in front of `app` whose span buffer only a shutdown flush empties.
fn draining(app: SocketAddr, collector: &str, drain: &str) -> Proxy {
    Proxy::start(
        &format!(
            "node_id: side\nadmin: 127.0.0.1:0\ndrain_timeout: {drain}\nlisteners:\n  - {{name: in, mode: inbound, listen: '127.0.0.1:0', upstream: '{app}'}}\ntracing:\n  collector: http://{collector}/api/v2/spans\n  flush: {{ count: 1000, interval: 1h }}\n"
        ),
        &["in", "admin"],
    )
}

/// Starts `GET /slow` (answered after 3 s) through `proxy` in a thread, returns once the app
/// has it; the thread gives curl's exit code and output.
fn slow_request(
    proxy: &Proxy,
    app: &App,
    trace: &str,
) -> std::thread::JoinHandle<(Option<i32>, String)> {
    let url = format!("http://{}/slow", proxy.addr("in"));
    let tp = format!("traceparent: 00-{trace}-00f067aa0ba902b7-01");
    let before = app.seen.lock().unwrap().len();
    let request = std::thread::spawn(move || {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "30",
                "-w",
                " %{http_code}",
                "-H",
                &tp,
                &url,
            ])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    });
    let arrived = eventually(Duration::from_secs(10), || {
        (app.seen.lock().unwrap().len() > before).then_some(())
    });
    assert!(arrived.is_some(), "the app never got the request");
    request
}

#[test]
fn proxy_drains_requests_in_flight_on_sigterm_and_refuses_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let app = App::start();
    let proxy = draining(app.addr, server.addr("zipkin"), "10s");
    let addr = proxy.addr("in").to_owned();
    let health = format!("http://{}/healthz", proxy.addr("admin"));
    assert_eq!(get(&health).status, 200);
    let trace = "7a0c63257de34c927a0c63257de34c92";
    let request = slow_request(&proxy, &app, trace);
    let stopping = std::time::Instant::now();
    let exit = std::thread::spawn(move || proxy.terminate());
    // While it drains, the listening socket is closed: new connections are refused, and the
    // admin port says so.
    let refused = eventually(Duration::from_secs(2), || {
        std::net::TcpStream::connect(&addr).is_err().then_some(())
    });
    assert!(refused.is_some(), "still accepting after SIGTERM");
    let draining = get(&health);
    assert_eq!(
        (draining.status, draining.text()),
        (503, "draining\n".to_owned())
    );
    // The request in flight is answered in full, then the proxy exits cleanly.
    assert_eq!(request.join().unwrap(), (Some(0), "late 200".to_owned()));
    assert_eq!(exit.join().unwrap(), Some(0));
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(8), "drain took {took:?}");
    // And its span, finished during the drain, was flushed.
    let t = eventually(Duration::from_secs(10), || {
        let a = get(&server.query_url(&format!("/api/traces/{trace}")));
        (a.status == 200).then(|| a.json())
    });
    let t = t.expect("the drained request's span was flushed on shutdown");
    assert_eq!(
        tag_str(&t["data"][0]["spans"][0], "http.status_code"),
        "200"
    );
}

#[test]
fn proxy_drain_timeout_bounds_how_long_a_slow_request_holds_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let app = App::start();
    let proxy = draining(app.addr, server.addr("zipkin"), "300ms");
    let request = slow_request(&proxy, &app, "8b0c63257de34c928b0c63257de34c92");
    let stopping = std::time::Instant::now();
    assert_eq!(proxy.terminate(), Some(0));
    let took = stopping.elapsed();
    assert!(took < Duration::from_millis(2500), "exit took {took:?}");
    // The request still waiting for the app is cut: curl gets no answer.
    let (code, out) = request.join().unwrap();
    assert_ne!(code, Some(0), "{out}");
}

/// Spans reported over mutual TLS: a collector whose Zipkin and OTLP gRPC receivers require a
/// client certificate from the mesh CA gets the proxy's spans from an `https://` collector URL
/// with `tracing.tls` (that CA, a client certificate), in Zipkin JSON and in OTLP gRPC; without
/// the client certificate, or trusting another CA, nothing arrives and the failures are counted.
#[test]
fn proxy_reports_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let file = |name: &str| dir.path().join(name).display().to_string();
    let tls = format!(
        "tls: {{ cert_file: '{}', key_file: '{}', client_ca_file: '{}' }}",
        file("server.pem"),
        file("server.key"),
        file("ca.pem")
    );
    let config = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n        {tls}\n\
         \x20 zipkin:\n    endpoint: 127.0.0.1:0\n    {tls}\n\
         exporters:\n  debug:\n\
         service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n\
         \x20 pipelines:\n    traces:\n      receivers: [otlp, zipkin]\n      exporters: [debug]\n"
    );
    let work = tempfile::tempdir().unwrap();
    let c = collector_harness::collector(work.path(), &config, &["otlp-grpc", "zipkin", "metrics"]);
    let port = |name: &str| c.addr(name).rsplit(':').next().unwrap().to_owned();
    let app = App::start();
    let client = format!(
        "cert_file: '{}', key_file: '{}'",
        file("client.pem"),
        file("client.key")
    );
    for (protocol, url, receiver, transport) in [
        (
            "zipkin-json",
            format!("https://localhost:{}/api/v2/spans", port("zipkin")),
            "zipkin",
            "http",
        ),
        (
            "otlp-grpc",
            format!("https://localhost:{}", port("otlp-grpc")),
            "otlp",
            "grpc",
        ),
    ] {
        let tracing = |tls: &str| {
            format!(
                "  collector: {url}\n  protocol: {protocol}\n  flush: {{ count: 1, interval: 100ms }}\n  tls: {{ {tls} }}\n"
            )
        };
        // The mesh CA and a client certificate: every span arrives.
        let proxy = inbound(
            app.addr,
            &tracing(&format!("ca_file: '{}', {client}", file("ca.pem"))),
        );
        let before = collector_harness::accepted_spans(&c, receiver, transport);
        for _ in 0..3 {
            assert_eq!(get(&format!("http://{}/", proxy.addr("in"))).status, 200);
        }
        let arrived = eventually(Duration::from_secs(10), || {
            (collector_harness::accepted_spans(&c, receiver, transport) >= before + 3).then_some(())
        });
        assert!(
            arrived.is_some(),
            "{protocol}: spans not delivered over TLS"
        );
        drop(proxy);
        // No client certificate, or another CA trusted: nothing arrives, failures counted.
        for tls in [
            format!("ca_file: '{}'", file("ca.pem")),
            format!("ca_file: '{}', {client}", file("other-ca.pem")),
        ] {
            let proxy = inbound(app.addr, &tracing(&tls));
            let before = collector_harness::accepted_spans(&c, receiver, transport);
            assert_eq!(get(&format!("http://{}/", proxy.addr("in"))).status, 200);
            let failed = eventually(Duration::from_secs(10), || {
                let failed = metric(&proxy, "meshtrace_proxy_spans_export_failed_total")
                    + metric(&proxy, "meshtrace_proxy_export_retries_total");
                (failed > 0).then_some(())
            });
            assert!(
                failed.is_some(),
                "{protocol} with {tls}: no failure counted"
            );
            assert_eq!(
                collector_harness::accepted_spans(&c, receiver, transport),
                before,
                "{tls}"
            );
        }
    }
    // tracing.tls with an http:// collector is a mistake, named at start.
    let err = refused(
        "node_id: x\nlisteners:\n  - {name: in, mode: inbound, listen: '127.0.0.1:0', upstream: '127.0.0.1:1'}\ntracing:\n  collector: http://127.0.0.1:9411/api/v2/spans\n  tls: { ca_file: /x.pem }\n",
    );
    assert!(
        err.contains("tracing.tls is set but the collector URL"),
        "{err}"
    );
    assert_eq!(c.terminate(), Some(0));
}

/// `tracing.headers` go with every report: as HTTP headers with Zipkin JSON, as gRPC metadata
/// with OTLP gRPC (the recording server's answer is no gRPC one, so those reports are retried;
/// their metadata arrived all the same); a name that cannot be a header is named at start.
#[test]
fn proxy_reports_carry_the_configured_headers() {
    let app = App::start();
    let collector = FlakyCollector::start(0);
    for (protocol, path) in [("zipkin-json", "/api/v2/spans"), ("otlp-grpc", "")] {
        let proxy = inbound(
            app.addr,
            &format!(
                "  collector: http://{}{path}\n  protocol: {protocol}\n  flush: {{ count: 1, interval: 100ms }}\n  headers: {{ x-api-key: key-{protocol}, X-Tenant: mesh }}\n",
                collector.addr
            ),
        );
        assert_eq!(get(&format!("http://{}/", proxy.addr("in"))).status, 200);
        let sent = eventually(Duration::from_secs(10), || {
            collector.headers.lock().unwrap().iter().find_map(|h| {
                let key = h.get("x-api-key")?.to_str().ok()?;
                (key == format!("key-{protocol}")).then(|| h.clone())
            })
        })
        .unwrap_or_else(|| panic!("{protocol}: no report carried x-api-key"));
        assert_eq!(sent.get("x-tenant").unwrap(), "mesh", "{protocol}");
    }
    let err = refused(
        "node_id: x\nlisteners:\n  - {name: in, mode: inbound, listen: '127.0.0.1:0', upstream: '127.0.0.1:1'}\ntracing:\n  collector: http://127.0.0.1:9411/api/v2/spans\n  headers: { 'bad header': x }\n",
    );
    assert!(err.contains("tracing.headers \"bad header\""), "{err}");
}

/// The lines of an access log file so far.
fn log_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits (≤ 10 s) until the file at `path` has `n` lines; returns them.
fn wait_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    eventually(Duration::from_secs(10), || {
        let lines = log_lines(path);
        (lines.len() >= n).then_some(lines)
    })
    .unwrap_or_else(|| {
        panic!(
            "{} has not {n} lines: {:?}",
            path.display(),
            log_lines(path)
        )
    })
}

#[test]
fn proxy_access_logs_say_what_each_request_did_and_lead_to_its_trace() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(&dir.path().join("data"), &[]);
    let app = App::start();
    let dead = dead_port();
    let (edge_log, out_log) = (dir.path().join("edge.log"), dir.path().join("out.log"));
    let yaml = format!(
        r#"node_id: side
admin: 127.0.0.1:0
listeners:
  - name: edge
    mode: edge
    listen: 127.0.0.1:0
    upstream: '{app}'
    timeouts: {{ request: 500ms }}
    access_log:
      path: {edge_log}
      flush_interval: 50ms
      json_format:
        status: "%RESPONSE_CODE%"
        flags: "%RESPONSE_FLAGS%"
        request: "%REQ(:METHOD)% %REQ(:PATH)%"
        request_id: "%REQ(X-REQUEST-ID)%"
        trace_id: "%TRACE_ID%"
        received: "%BYTES_RECEIVED%"
        sent: "%BYTES_SENT%"
        ms: "%DURATION%"
        agent: "%REQ(USER-AGENT):4%"
        missing: "%REQ(X-NOT-THERE)%"
        client: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    retry_policy: {{ retry_on: connect-failure, num_retries: 1 }}
    upstream:
      routes: [{{ path_prefix: /echo, cluster: pair, name: echo-route }}]
      clusters:
        pair: ['{dead}', '{app}']
    access_log: {{ path: {out_log}, flush_interval: 50ms }}
tracing:
  collector: http://{collector}/api/v2/spans
  protocol: zipkin-json
  propagation: [b3multi]
  flush: {{ count: 100, interval: 100ms }}
"#,
        app = app.addr,
        edge_log = edge_log.display(),
        out_log = out_log.display(),
        collector = server.addr("zipkin"),
    );
    let proxy = Proxy::start(&yaml, &["edge", "out", "admin"]);
    let edge = proxy.addr("edge");

    // A POST of 1,000 bytes through the edge: its JSON line, typed.
    let a = post(
        &format!("http://{edge}/count"),
        &["user-agent: meshtrace-test"],
        &[b'x'; 1000],
    );
    assert_eq!((a.status, a.text().as_str()), (200, "1000"));
    let line: serde_json::Value = serde_json::from_str(&wait_lines(&edge_log, 1)[0]).unwrap();
    assert_eq!(line["status"], 200);
    assert_eq!(line["flags"], "-");
    assert_eq!(line["request"], "POST /count");
    assert_eq!(
        (line["received"].as_u64(), line["sent"].as_u64()),
        (Some(1000), Some(4))
    );
    assert!(line["ms"].is_u64(), "{line}");
    assert_eq!(line["agent"], "mesh", "cut to 4 bytes");
    assert_eq!(line["missing"], serde_json::Value::Null);
    assert_eq!(line["client"], "127.0.0.1");
    // The edge made the request id; the app got the same one.
    let request_id = line["request_id"].as_str().unwrap();
    assert_eq!(header(&app.last(), "x-request-id"), Some(request_id));
    // The trace id leads to the trace: the collector has the proxy's span under it.
    let trace_id = line["trace_id"].as_str().unwrap();
    assert_eq!(trace_id.len(), 32);
    assert_eq!(header(&app.last(), "x-b3-traceid"), Some(trace_id));
    let trace = trace_with(&server, trace_id, 1);
    assert_eq!(trace["spans"][0]["operationName"], "POST /count");

    // A request the app does not answer in time: 504, flagged, its line still written.
    assert_eq!(get(&format!("http://{edge}/slow")).status, 504);
    let line: serde_json::Value = serde_json::from_str(&wait_lines(&edge_log, 2)[1]).unwrap();
    assert_eq!(
        (line["status"].as_u64(), line["flags"].as_str()),
        (Some(504), Some("UT"))
    );

    // Outbound, in Envoy's default format: the retry went to the app (the dead endpoint first
    // or not, the line names where the answer came from); no route is 404 NR, upstream "-".
    let out = proxy.addr("out");
    for _ in 0..2 {
        assert_eq!(get(&format!("http://{out}/echo")).status, 200);
    }
    assert_eq!(get(&format!("http://{out}/nowhere")).status, 404);
    // (Each worker thread writes its own lines: in order per connection, not across them.)
    let lines = wait_lines(&out_log, 3);
    let (echo, nowhere): (Vec<&String>, Vec<&String>) =
        lines.iter().partition(|l| l.contains("/echo"));
    assert_eq!((echo.len(), nowhere.len()), (2, 1), "{lines:?}");
    for l in echo {
        assert!(l.contains("\"GET /echo HTTP/1.1\" 200 - 0 2 "), "{l}");
        assert!(l.ends_with(&format!("\"{}\"", app.addr)), "{l}");
    }
    assert!(
        nowhere[0].contains("\"GET /nowhere HTTP/1.1\" 404 NR 0 "),
        "{}",
        nowhere[0]
    );
    assert!(nowhere[0].ends_with("\"-\""), "{}", nowhere[0]);

    // logrotate: the file moved away, POST /reopen_logs, and new lines go to a new file.
    std::fs::rename(&out_log, dir.path().join("out.log.1")).unwrap();
    let admin = proxy.addr("admin");
    assert_eq!(
        curl(&["-X", "POST", &format!("http://{admin}/reopen_logs")]).status,
        200
    );
    assert_eq!(get(&format!("http://{out}/echo")).status, 200);
    assert_eq!(wait_lines(&out_log, 1).len(), 1);
    assert_eq!(log_lines(&dir.path().join("out.log.1")).len(), 3);
    // (The writer counts a batch once it is written.)
    let written = eventually(Duration::from_secs(5), || {
        let n = metric(&proxy, "meshtrace_proxy_access_log_lines_total");
        (n == 6).then_some(n)
    });
    assert_eq!(written, Some(6));
    assert_eq!(
        metric(&proxy, "meshtrace_proxy_access_log_dropped_total"),
        0
    );

    // Mistakes are refused by name.
    let err = refused(&yaml.replace("%RESPONSE_FLAGS%", "%RESPONSE_FLAG%"));
    assert!(
        err.contains("unknown command operator %RESPONSE_FLAG%"),
        "{err}"
    );
    let err = refused(&yaml.replace(
        &format!("path: {}", edge_log.display()),
        "path: /nonexistent/dir/edge.log",
    ));
    assert!(
        err.contains("cannot open the access log /nonexistent/dir/edge.log"),
        "{err}"
    );
}

#[test]
fn proxy_access_log_filter_writes_only_what_it_admits() {
    let app = App::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("errors.log");
    let yaml = format!(
        r#"node_id: side
admin: 127.0.0.1:0
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes: [{{ path_prefix: /echo, cluster: app }}]
      clusters:
        app: ['{}']
    access_log:
      path: {}
      format: "%RESPONSE_CODE% %REQ(:PATH)%\n"
      flush_interval: 50ms
      filter:
        status_code_filter: {{ comparison: {{ op: GE, value: {{ default_value: 400, runtime_key: access_log.min_status }} }} }}
"#,
        app.addr,
        log.display()
    );
    let proxy = Proxy::start(&yaml, &["out", "admin"]);
    let out = proxy.addr("out");
    for path in ["/echo", "/nowhere", "/echo", "/also-nowhere"] {
        get(&format!("http://{out}{path}"));
    }
    // (Each worker writes its own lines: sorted, not in arrival order.)
    let mut lines = wait_lines(&log, 2);
    lines.sort();
    assert_eq!(lines, ["404 /also-nowhere", "404 /nowhere"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(log_lines(&log).len(), 2, "the 200s are not written");
    let err = refused(&yaml.replace("op: GE", "op: GT"));
    assert!(err.contains("GT"), "{err}");
}
