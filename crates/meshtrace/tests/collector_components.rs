//! More of the collector's components against real peers: the Zipkin receiver and exporter,
//! the OTLP/HTTP exporter, the debug exporter, and the memory limiter's retryable refusal.

mod collector_harness;
mod common;

use std::time::Duration;

use collector_harness::*;

fn spans_in_backend(backend: &Proc, trace_id: &str, n: usize) -> usize {
    let url = format!("http://{}/api/traces/{trace_id}", backend.addr("query"));
    common::eventually(Duration::from_secs(30), || {
        let a = common::get(&url);
        let count = if a.status == 200 {
            a.json()["data"][0]["spans"].as_array().map_or(0, Vec::len)
        } else {
            0
        };
        (count >= n).then_some(count)
    })
    .unwrap_or(0)
}

#[test]
fn collector_zipkin_and_otlphttp_exporters_deliver_to_all_in_one() {
    let dir = tempfile::tempdir().unwrap();
    let backend = all_in_one(&dir.path().join("data"), "127.0.0.1:0");
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
  zipkin:
    endpoint: 127.0.0.1:0
exporters:
  zipkin/backend:
    endpoint: http://{zipkin}/api/v2/spans
  otlphttp/backend:
    endpoint: http://{otlp_http}
  debug:
    verbosity: normal
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces/from-otlp:
      receivers: [otlp]
      exporters: [zipkin/backend, debug]
    traces/from-zipkin:
      receivers: [zipkin]
      exporters: [otlphttp/backend]
"#,
        zipkin = backend.addr("zipkin"),
        otlp_http = backend.addr("otlp-http"),
    );
    let c = collector(dir.path(), &config, &["otlp-grpc", "zipkin", "metrics"]);
    // OTLP in → Zipkin JSON out.
    let via_zipkin = send_sdk_trace(
        "otlp-grpc",
        &format!("http://{}", c.addr("otlp-grpc")),
        "to-zipkin",
    );
    // Zipkin JSON in → OTLP/HTTP (protobuf, gzip) out.
    let via_otlp = send_sdk_trace(
        "zipkin-json",
        &format!("http://{}/api/v2/spans", c.addr("zipkin")),
        "to-otlphttp",
    );
    assert_eq!(spans_in_backend(&backend, &via_zipkin, 4), 4);
    assert_eq!(spans_in_backend(&backend, &via_otlp, 4), 4);
    let metrics = common::get(&format!("http://{}/metrics", c.addr("metrics"))).text();
    for line in [
        "otelcol_exporter_sent_spans_total{exporter=\"zipkin/backend\"} 4",
        "otelcol_exporter_sent_spans_total{exporter=\"otlphttp/backend\"} 4",
        "otelcol_exporter_sent_spans_total{exporter=\"debug\"} 4",
    ] {
        assert!(metrics.contains(line), "{line} missing in:\n{metrics}");
    }
    assert_eq!(c.terminate(), Some(0));
    assert_eq!(backend.terminate(), Some(0));
}

#[test]
fn collector_memory_limiter_refuses_with_a_retryable_answer() {
    let dir = tempfile::tempdir().unwrap();
    // A 1 MiB limit: the process is always above it, so every request is refused.
    let config = r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
processors:
  memory_limiter:
    check_interval: 50ms
    limit_mib: 1
exporters:
  debug:
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter]
      exporters: [debug]
"#;
    let c = collector(dir.path(), config, &["otlp-http", "metrics"]);
    let body = otlp_json_request(&random_trace_ids(3, 9), "limited", 1);
    let url = format!("http://{}/v1/traces", c.addr("otlp-http"));
    let status = common::eventually(Duration::from_secs(10), || {
        let a = common::post(&url, &["Content-Type: application/json"], &body);
        (a.status != 200).then_some(a.status)
    });
    assert_eq!(
        status,
        Some(429),
        "memory pressure is answered 429 (retry later)"
    );
    let metrics = common::get(&format!("http://{}/metrics", c.addr("metrics"))).text();
    assert!(
        metrics.contains("otelcol_processor_refused_spans_total{processor=\"memory_limiter\"}"),
        "{metrics}"
    );
    assert_eq!(c.terminate(), Some(0));
}

#[test]
fn collector_tail_sampling_keeps_whole_error_traces_and_late_spans_follow() {
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::start();
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
processors:
  tail_sampling:
    decision_wait: 300ms
    policies:
      - name: errors
        type: status_code
        status_code: {{status_codes: [ERROR]}}
exporters:
  otlphttp:
    traces_endpoint: http://{}/kept
    encoding: json
    compression: none
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      processors: [tail_sampling]
      exporters: [otlphttp]
"#,
        capture.addr
    );
    let c = collector(dir.path(), &config, &["otlp-http"]);
    let url = format!("http://{}/v1/traces", c.addr("otlp-http"));
    let (ok_trace, error_trace) = (
        "0af7651916cd43dd8448eb211c80319c",
        "4bf92f3577b34da6a3ce929d0e0e4736",
    );
    let post = |trace: &str, span: &str, error: bool| {
        let status = if error { r#","status":{"code":2}"# } else { "" };
        let body = format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"tail"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{trace}","spanId":"{span}","name":"op","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2"{status}}}]}}]}}]}}"#
        );
        let a = common::post(&url, &["Content-Type: application/json"], body.as_bytes());
        assert_eq!(a.status, 200, "{}", a.text());
    };
    post(ok_trace, "0000000000000001", false);
    post(error_trace, "0000000000000002", false);
    post(error_trace, "0000000000000003", true);
    let first = common::eventually(Duration::from_secs(10), || {
        let ids = otlp_json_trace_ids(&capture.bodies("/kept"));
        (ids.len() >= 2).then_some(ids)
    })
    .expect("the error trace is kept after decision_wait");
    assert_eq!(
        first,
        [error_trace, error_trace],
        "the whole error trace, and only it"
    );
    // Late spans follow the decision made for their trace.
    post(error_trace, "0000000000000004", false);
    post(ok_trace, "0000000000000005", true);
    let late = common::eventually(Duration::from_secs(10), || {
        let ids = otlp_json_trace_ids(&capture.bodies("/kept"));
        (ids.len() >= 3).then_some(ids)
    })
    .expect("the late span of the kept trace follows");
    std::thread::sleep(Duration::from_millis(500));
    let all = otlp_json_trace_ids(&capture.bodies("/kept"));
    assert_eq!(late.len(), 3);
    assert_eq!(
        all,
        [error_trace, error_trace, error_trace],
        "the dropped trace stays dropped"
    );
    assert_eq!(c.terminate(), Some(0));
}

#[test]
fn collector_loadbalancing_sends_each_whole_trace_to_one_backend() {
    let dir = tempfile::tempdir().unwrap();
    let b1 = all_in_one(&dir.path().join("b1"), "127.0.0.1:0");
    let b2 = all_in_one(&dir.path().join("b2"), "127.0.0.1:0");
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
exporters:
  loadbalancing:
    protocol:
      otlp:
        tls:
          insecure: true
    resolver:
      static:
        hostnames: [{}, {}]
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [loadbalancing]
"#,
        b1.addr("otlp-grpc"),
        b2.addr("otlp-grpc")
    );
    let c = collector(dir.path(), &config, &["otlp-http"]);
    let traces = random_trace_ids(40, 77);
    // Three spans per trace, interleaved in one request.
    let spans: Vec<String> = traces.iter().cycle().take(120).cloned().collect();
    let body = otlp_json_request(&spans, "lb", 1);
    let url = format!("http://{}/v1/traces", c.addr("otlp-http"));
    let a = common::post(&url, &["Content-Type: application/json"], &body);
    assert_eq!(a.status, 200, "{}", a.text());
    let count = |backend: &Proc, id: &str| {
        let a = common::get(&format!("http://{}/api/traces/{id}", backend.addr("query")));
        if a.status == 200 {
            a.json()["data"][0]["spans"].as_array().map_or(0, Vec::len)
        } else {
            0
        }
    };
    let mut per_backend = [0usize; 2];
    for id in &traces {
        let seen = common::eventually(Duration::from_secs(20), || {
            let (n1, n2) = (count(&b1, id), count(&b2, id));
            (n1 + n2 >= 3).then_some((n1, n2))
        })
        .unwrap_or_else(|| panic!("trace {id} did not arrive"));
        assert!(
            seen == (3, 0) || seen == (0, 3),
            "trace {id} is whole on one backend: {seen:?}"
        );
        per_backend[usize::from(seen.1 == 3)] += 1;
    }
    assert!(
        per_backend[0] > 0 && per_backend[1] > 0,
        "both backends get traces: {per_backend:?}"
    );
    assert_eq!(c.terminate(), Some(0));
    assert_eq!(b1.terminate(), Some(0));
    assert_eq!(b2.terminate(), Some(0));
}

#[test]
fn collector_receiver_metrics_are_labelled_by_component_id() {
    let dir = tempfile::tempdir().unwrap();
    let config = "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:0\n  otlp/2:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\nexporters:\n  debug:\nservice:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n  pipelines:\n    traces:\n      receivers: [otlp, otlp/2]\n      exporters: [debug]\n";
    let c = collector(dir.path(), config, &["otlp-http", "otlp/2-grpc", "metrics"]);
    send_sdk_trace("otlp-grpc", c.addr("otlp/2-grpc"), "second");
    let http = format!("http://{}/v1/traces", c.addr("otlp-http"));
    send_sdk_trace("otlp-http", &http, "first");
    // A malformed request is a bad request of the receiver it reached.
    let bad = common::post(
        &format!("http://{}/v1/traces", c.addr("otlp-http")),
        &["Content-Type: application/x-protobuf"],
        b"\xff\xff",
    );
    assert_eq!(bad.status, 400);
    let url = format!("http://{}/metrics", c.addr("metrics"));
    let want = [
        "otelcol_receiver_accepted_spans_total{receiver=\"otlp/2\",transport=\"grpc\"} 4",
        "otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"http\"} 4",
        "otelcol_receiver_bad_requests_total{receiver=\"otlp\",transport=\"http\"} 1",
    ];
    let seen = common::eventually(Duration::from_secs(10), || {
        let m = common::get(&url).text();
        want.iter().all(|w| m.contains(w)).then_some(())
    });
    assert!(seen.is_some(), "{}", common::get(&url).text());
    assert_eq!(c.terminate(), Some(0));
}

#[test]
fn collector_loadbalancing_dns_resolver_sends_to_what_the_name_resolves_to() {
    let dir = tempfile::tempdir().unwrap();
    let backend = all_in_one(&dir.path().join("b"), "127.0.0.1:0");
    let port = backend
        .addr("otlp-grpc")
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .expect("backend port");
    // An address literal is the one name every machine resolves the same way; the lookup,
    // the periodic refresh and the ring are the resolver's own.
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
exporters:
  loadbalancing:
    protocol:
      otlp:
        tls:
          insecure: true
    resolver:
      dns:
        hostname: 127.0.0.1
        port: {port}
        interval: 200ms
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [loadbalancing]
"#
    );
    let c = collector(dir.path(), &config, &["otlp-http"]);
    let traces = random_trace_ids(10, 78);
    let spans: Vec<String> = traces.iter().cycle().take(20).cloned().collect();
    let body = otlp_json_request(&spans, "lb-dns", 1);
    let url = format!("http://{}/v1/traces", c.addr("otlp-http"));
    // Until the first lookup answers the exporter refuses as retryable (503): retry as a client.
    let accepted = common::eventually(Duration::from_secs(10), || {
        let a = common::post(&url, &["Content-Type: application/json"], &body);
        (a.status == 200).then_some(())
    });
    assert!(
        accepted.is_some(),
        "the collector takes the spans once a backend is known"
    );
    for id in &traces {
        let n = common::eventually(Duration::from_secs(20), || {
            let a = common::get(&format!("http://{}/api/traces/{id}", backend.addr("query")));
            let n = a.json()["data"][0]["spans"].as_array().map_or(0, Vec::len);
            (a.status == 200 && n == 2).then_some(n)
        });
        assert_eq!(n, Some(2), "trace {id} arrived whole");
    }
    let (code, out, err) = validate(
        dir.path(),
        &config.replace(
            "      dns:\n",
            "      static:\n        hostnames: [a:1]\n      dns:\n",
        ),
    );
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("set one of static and dns"), "{err}");
    assert_eq!(c.terminate(), Some(0));
    assert_eq!(backend.terminate(), Some(0));
}

/// The response headers of a curl call made with `-i`, lowercased, one per line.
fn header_lines(a: &common::Answer) -> Vec<String> {
    a.text()
        .lines()
        .map(|l| l.trim().to_ascii_lowercase())
        .collect()
}

#[test]
fn collector_http_receivers_answer_cors_for_the_allowed_origins() {
    let dir = tempfile::tempdir().unwrap();
    let cors = "cors:\n  allowed_origins: [\"https://*.example.com\", \"http://localhost:3000\"]\n  allowed_headers: [X-Tenant]\n  max_age: 600\n";
    let indent = |n: usize| {
        cors.lines()
            .map(|l| format!("{}{l}\n", " ".repeat(n)))
            .collect::<String>()
    };
    let config = format!(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:0\n{}\
         \x20 zipkin:\n    endpoint: 127.0.0.1:0\n{}\
         exporters:\n  debug:\n\
         service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n\
         \x20 pipelines:\n    traces:\n      receivers: [otlp, zipkin]\n      exporters: [debug]\n",
        indent(8),
        indent(4)
    );
    let c = collector(dir.path(), &config, &["otlp-http", "zipkin", "metrics"]);
    let otlp = format!("http://{}/v1/traces", c.addr("otlp-http"));
    let zipkin = format!("http://{}/api/v2/spans", c.addr("zipkin"));
    let preflight = |url: &str, origin: &str| {
        header_lines(&common::curl(&[
            "-i",
            "-X",
            "OPTIONS",
            "-H",
            &format!("Origin: {origin}"),
            "-H",
            "Access-Control-Request-Method: POST",
            "-H",
            "Access-Control-Request-Headers: content-type,x-tenant",
            url,
        ]))
    };
    for url in [&otlp, &zipkin] {
        let ok = preflight(url, "https://shop.example.com");
        assert!(
            ok.contains(&"access-control-allow-origin: https://shop.example.com".to_owned()),
            "{ok:?}"
        );
        assert!(
            ok.iter()
                .any(|l| l.starts_with("access-control-allow-headers:") && l.contains("x-tenant")),
            "{ok:?}"
        );
        assert!(
            ok.contains(&"access-control-max-age: 600".to_owned()),
            "{ok:?}"
        );
        for other in [
            "https://evil.com",
            "https://example.com",
            "http://localhost:3001",
        ] {
            let no = preflight(url, other);
            assert!(
                !no.iter()
                    .any(|l| l.starts_with("access-control-allow-origin")),
                "{other}: {no:?}"
            );
        }
    }
    // The request itself, from an allowed page: accepted, and the browser may read the answer.
    let body = otlp_json_request(&random_trace_ids(1, 9), "browser", 1);
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, &body).unwrap();
    let data = format!("@{}", file.path().display());
    let a = common::curl(&[
        "-i",
        "-X",
        "POST",
        "--data-binary",
        &data,
        "-H",
        "Content-Type: application/json",
        "-H",
        "Origin: http://localhost:3000",
        &otlp,
    ]);
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        header_lines(&a).contains(&"access-control-allow-origin: http://localhost:3000".to_owned()),
        "{}",
        a.text()
    );
    let bad = config.replace("https://*.example.com", "https://*.*.example.com");
    let (code, _, err) = validate(dir.path(), &bad);
    assert_ne!(code, 0);
    assert!(err.contains("at most one *"), "{err}");
    assert_eq!(c.terminate(), Some(0));
}

/// zstd between collectors, as the OTel Collector's `compression: zstd` sends it: an agent's
/// `otlp` (gRPC, with keepalive pings) and `otlphttp` exporters compress with zstd and a
/// gateway's receivers take both; the `zstd` command line tool (the reference implementation) reads what the HTTP
/// exporter sent, and a body it compressed is accepted by the OTLP/HTTP receiver.
#[test]
fn collectors_speak_zstd_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["gateway", "agent"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let gateway = collector(
        &dir.path().join("gateway"),
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n      http:\n        endpoint: 127.0.0.1:0\n\
         exporters:\n  debug:\n\
         service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n",
        &["otlp-grpc", "otlp-http", "metrics"],
    );
    let capture = Capture::start();
    let agent = collector(
        &dir.path().join("agent"),
        &format!(
            "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:0\n\
             exporters:\n\
             \x20 otlp:\n    endpoint: {grpc}\n    compression: zstd\n    tls:\n      insecure: true\n\
             \x20   keepalive:\n      time: 1s\n      timeout: 1s\n      permit_without_stream: true\n\
             \x20 otlphttp/gateway:\n    endpoint: http://{http}\n    compression: zstd\n\
             \x20 otlphttp/capture:\n    traces_endpoint: http://{capture}/zstd\n    encoding: json\n    compression: zstd\n\
             service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [otlp, otlphttp/gateway, otlphttp/capture]\n",
            grpc = gateway.addr("otlp-grpc"),
            http = gateway.addr("otlp-http"),
            capture = capture.addr,
        ),
        &["otlp-http"],
    );
    let trace = "5b8efff798038103d269b633813fc60c";
    let body = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"zstd"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{trace}","spanId":"eee19b7ec3c1b174","name":"op","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2"}}]}}]}}]}}"#
    );
    let url = |c: &Proc| format!("http://{}/v1/traces", c.addr("otlp-http"));
    let a = common::post(
        &url(&agent),
        &["Content-Type: application/json"],
        body.as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let arrived = common::eventually(Duration::from_secs(10), || {
        (accepted_spans(&gateway, "otlp", "grpc") == 1
            && accepted_spans(&gateway, "otlp", "http") == 1)
            .then_some(())
    });
    assert!(
        arrived.is_some(),
        "the gateway got the span over gRPC and HTTP, zstd both"
    );
    // What the HTTP exporter sent is zstd (its magic number), and the zstd tool reads it.
    let sent = common::eventually(Duration::from_secs(10), || capture.bodies("/zstd").pop())
        .expect("the capture got a request");
    assert_eq!(&sent[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd frame");
    let json = zstd_tool(&["-d", "-c"], &sent);
    assert!(String::from_utf8_lossy(&json).contains(trace));
    // A body the zstd tool compressed is taken by the receiver.
    let packed = zstd_tool(&["-c", "-3"], body.as_bytes());
    let a = common::post(
        &url(&gateway),
        &["Content-Type: application/json", "Content-Encoding: zstd"],
        &packed,
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(accepted_spans(&gateway, "otlp", "http"), 2);
    // Keepalive pings over the idle gRPC connection (every second) leave it usable.
    std::thread::sleep(Duration::from_millis(2500));
    let a = common::post(
        &url(&agent),
        &["Content-Type: application/json"],
        body.as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let again = common::eventually(Duration::from_secs(10), || {
        (accepted_spans(&gateway, "otlp", "grpc") == 2).then_some(())
    });
    assert!(again.is_some(), "the second export after pings");
    assert_eq!(agent.terminate(), Some(0));
    assert_eq!(gateway.terminate(), Some(0));
}

/// The `zstd` command line tool run with `args` on `input`.
fn zstd_tool(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("zstd")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run zstd (apt-get install zstd)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "zstd {args:?} failed");
    out.stdout
}

/// `traces_url_path` moves the OTLP/HTTP receiver's traces endpoint (the OTel Collector's key);
/// the default path then answers 404, and a path that is no path is named by `validate`.
#[test]
fn otlp_http_receiver_takes_traces_on_traces_url_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:0\n        traces_url_path: /ingest/traces\n\
                  exporters:\n  debug:\n\
                  service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n";
    let c = collector(dir.path(), config, &["otlp-http", "metrics"]);
    let body = otlp_json_request(&random_trace_ids(2, 7), "path", 1);
    let json = ["Content-Type: application/json"];
    let at = |path: &str| format!("http://{}{path}", c.addr("otlp-http"));
    let a = common::post(&at("/ingest/traces"), &json, &body);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(common::post(&at("/v1/traces"), &json, &body).status, 404);
    assert_eq!(accepted_spans(&c, "otlp", "http"), 2);
    assert_eq!(c.terminate(), Some(0));
    let (code, _, err) = validate(dir.path(), &config.replace("/ingest/traces", "ingest"));
    assert_ne!(code, 0);
    assert!(
        err.contains("traces_url_path \"ingest\" must be a path starting with /"),
        "{err}"
    );
}

/// The OpenTelemetry Python SDK's Zipkin exporter writes every attribute as a string tag
/// (`http.status_code: "200"`, `sample.ratio: "0.25"`, `http.retry: "false"`); with
/// `parse_string_tags` the Zipkin receiver gives them back their types, as the OTel
/// Collector's does, and without it they stay strings. Checked in the OTLP/JSON the collector
/// exports.
#[test]
fn zipkin_receiver_parse_string_tags_restores_the_sdks_types() {
    for parse in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let capture = Capture::start();
        let config = format!(
            "receivers:\n  zipkin:\n    endpoint: 127.0.0.1:0\n    parse_string_tags: {parse}\n\
             exporters:\n  otlphttp:\n    traces_endpoint: http://{}/typed\n    encoding: json\n    compression: none\n\
             service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n  pipelines:\n    traces:\n      receivers: [zipkin]\n      exporters: [otlphttp]\n",
            capture.addr
        );
        let c = collector(dir.path(), &config, &["zipkin"]);
        let url = format!("http://{}/api/v2/spans", c.addr("zipkin"));
        send_sdk_trace("zipkin-json", &url, "typed");
        let root = common::eventually(Duration::from_secs(30), || {
            otlp_json_span(&capture.bodies("/typed"), "GET /checkout")
        })
        .expect("the root span was exported");
        let value = |key: &str| {
            otlp_json_attr(&root["attributes"], key)
                .unwrap_or_else(|| panic!("{key} missing from {root}"))
        };
        if parse {
            assert_eq!(
                value("http.status_code"),
                serde_json::json!({"intValue": "200"})
            );
            assert_eq!(
                value("sample.ratio"),
                serde_json::json!({"doubleValue": 0.25})
            );
            assert_eq!(value("http.retry"), serde_json::json!({"boolValue": false}));
        } else {
            assert_eq!(
                value("http.status_code"),
                serde_json::json!({"stringValue": "200"})
            );
            assert_eq!(
                value("sample.ratio"),
                serde_json::json!({"stringValue": "0.25"})
            );
            assert_eq!(
                value("http.retry"),
                serde_json::json!({"stringValue": "false"})
            );
        }
        // A list stays the SDK's JSON text either way.
        assert!(value("cart.items")["stringValue"].is_string(), "{root}");
        assert_eq!(c.terminate(), Some(0));
    }
}

/// The `filter` processor with OTTL conditions drops the Python SDK's spans that match any of
/// them (here the database's server span by its resource, and the client span by kind and an
/// attribute) and passes the rest; a condition it cannot read is named by `validate`.
#[test]
fn filter_processor_drops_spans_matching_ottl_conditions() {
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::start();
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
processors:
  filter/noise:
    error_mode: ignore
    traces:
      span:
        - 'resource.attributes["service.name"] == "filtered-db"'
        - 'kind == SPAN_KIND_CLIENT and attributes["db.system"] == "postgresql"'
        - 'IsMatch(name, "^GET /healthz")'
exporters:
  otlphttp:
    traces_endpoint: http://{}/kept
    encoding: json
    compression: none
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      processors: [filter/noise]
      exporters: [otlphttp]
"#,
        capture.addr
    );
    let c = collector(dir.path(), &config, &["otlp-grpc"]);
    let trace = send_sdk_trace("otlp-grpc", c.addr("otlp-grpc"), "filtered");
    let names = || {
        let mut names: Vec<String> = otlp_json_spans(&capture.bodies("/kept"))
            .iter()
            .map(|(_, s)| s["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        names.sort();
        names
    };
    let kept = common::eventually(Duration::from_secs(30), || {
        let n = names();
        (n.len() >= 2).then_some(n)
    });
    // The SDK exports each span on its own: give a dropped one time to (not) arrive.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        kept.map(|_| names()),
        Some(vec!["GET /checkout".to_owned(), "load cart".to_owned()]),
        "trace {trace}"
    );
    assert_eq!(c.terminate(), Some(0));

    let bad = config.replace(
        r#"'IsMatch(name, "^GET /healthz")'"#,
        r#"'Base64Decode(name) == "x"'"#,
    );
    let (code, _, stderr) = validate(dir.path(), &bad);
    assert_ne!(code, 0);
    assert!(
        stderr.contains(r#"processors.filter/noise.traces.span[2] "Base64Decode(name) == \"x\"": the converter Base64Decode is not built"#),
        "{stderr}"
    );
}

/// `resourcedetection` with the `env` and `system` detectors adds `OTEL_RESOURCE_ATTRIBUTES`
/// (percent-decoded), the host name (as the `hostname` command prints it) and the OS type to
/// the Python SDK's resources; with `override: false` the SDK's own `deployment.environment`
/// stays, with the default it is replaced.
#[test]
fn resourcedetection_adds_the_hosts_attributes() {
    let host = std::process::Command::new("hostname")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .expect("run hostname");
    for overwrite in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let capture = Capture::start();
        let config = format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n\
             processors:\n  resourcedetection:\n    detectors: [env, system]\n    override: {overwrite}\n\
             \x20   system:\n      hostname_sources: [os]\n\
             exporters:\n  otlphttp:\n    traces_endpoint: http://{}/detected\n    encoding: json\n    compression: none\n\
             service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [resourcedetection]\n      exporters: [otlphttp]\n",
            capture.addr
        );
        let path = dir.path().join("collector.yaml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = common::Proc::command(&["collector", "--config", path.to_str().unwrap()]);
        cmd.env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=staging,team=checkout%20squad",
        );
        let c = common::Proc::start(cmd, &["otlp-grpc"]);
        send_sdk_trace("otlp-grpc", c.addr("otlp-grpc"), "detected");
        let resource = common::eventually(Duration::from_secs(30), || {
            otlp_json_spans(&capture.bodies("/detected"))
                .into_iter()
                .next()
                .map(|(resource, _)| resource)
        })
        .expect("spans were exported");
        let get = |key: &str| {
            otlp_json_attr(&resource, key)
                .and_then(|v| v["stringValue"].as_str().map(str::to_owned))
        };
        assert_eq!(
            get("host.name").as_deref(),
            Some(host.as_str()),
            "{resource:?}"
        );
        assert_eq!(get("os.type").as_deref(), Some("linux"));
        assert_eq!(get("team").as_deref(), Some("checkout squad"));
        assert!(
            get("service.name").is_some_and(|s| s.starts_with("detected")),
            "{resource:?}"
        );
        let env = if overwrite { "staging" } else { "test" };
        assert_eq!(
            get("deployment.environment").as_deref(),
            Some(env),
            "override: {overwrite}"
        );
        assert_eq!(c.terminate(), Some(0));
    }
}

/// The `transform` processor runs OTTL statements on the Python SDK's spans and resources: a
/// span renamed by a pattern, an attribute set where a condition holds and one deleted, a
/// resource attribute set and one deleted. A statement that fails on a span (a number for a
/// name) is skipped under `error_mode: ignore`; an editor it does not have is named by
/// `validate`.
#[test]
fn transform_processor_runs_ottl_statements() {
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::start();
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
processors:
  transform:
    error_mode: ignore
    trace_statements:
      - context: resource
        statements:
          - set(attributes["deployment.environment"], "prod")
          - delete_key(attributes, "telemetry.sdk.version")
      - context: span
        conditions:
          - resource.attributes["service.name"] == "xform"
        statements:
          - set(attributes["team"], "payments")
      - 'replace_pattern(name, "^GET ", "HTTP GET ")'
      - 'delete_key(attributes, "http.method")'
      - 'set(name, attributes["http.status_code"])'
exporters:
  otlphttp:
    traces_endpoint: http://{}/xform
    encoding: json
    compression: none
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      processors: [transform]
      exporters: [otlphttp]
"#,
        capture.addr
    );
    let c = collector(dir.path(), &config, &["otlp-grpc"]);
    send_sdk_trace("otlp-grpc", c.addr("otlp-grpc"), "xform");
    // (resource attributes, span) for every exported span.
    let all = common::eventually(Duration::from_secs(30), || {
        let s = otlp_json_spans(&capture.bodies("/xform"));
        (s.len() >= 4).then_some(s)
    })
    .expect("the four spans were exported");
    let get = otlp_json_attr;
    for (resource, span) in &all {
        let service = get(resource, "service.name").unwrap();
        assert_eq!(
            get(resource, "deployment.environment"),
            Some(serde_json::json!({"stringValue": "prod"}))
        );
        assert_eq!(get(resource, "telemetry.sdk.version"), None);
        assert_eq!(get(&span["attributes"], "http.method"), None);
        let team = get(&span["attributes"], "team");
        if service == serde_json::json!({"stringValue": "xform"}) {
            assert_eq!(
                team,
                Some(serde_json::json!({"stringValue": "payments"})),
                "{span}"
            );
        } else {
            assert_eq!(
                team, None,
                "the condition names the app's service only: {span}"
            );
        }
    }
    let names: Vec<&str> = all.iter().filter_map(|(_, s)| s["name"].as_str()).collect();
    assert!(names.contains(&"HTTP GET /checkout"), "{names:?}");
    assert_eq!(c.terminate(), Some(0));

    let bad = config.replace(
        r#"'delete_key(attributes, "http.method")'"#,
        r#"'merge_maps(attributes, cache, "upsert")'"#,
    );
    let (code, _, stderr) = validate(dir.path(), &bad);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("processors.transform.trace_statements[3]: statement \"merge_maps(attributes, cache, \\\"upsert\\\")\": the editor merge_maps is not built"),
        "{stderr}"
    );
}

/// OTTL converters in `filter` conditions and `transform` values, on the Python SDK's spans:
/// `HasPrefix` drops the database's span; a `Len` of an int fails on a span and, under
/// `error_mode: ignore`, drops nothing and sets nothing, while the other statements run.
#[test]
fn filter_and_transform_processors_compute_with_converters() {
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::start();
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
processors:
  filter:
    error_mode: ignore
    traces:
      span:
        - 'HasPrefix(name, "query ")'
        - 'Len(attributes["http.status_code"]) > 0'
  transform:
    error_mode: ignore
    trace_statements:
      - 'set(attributes["op"], ToUpperCase(name))'
      - 'set(attributes["who"], Concat([resource.attributes["service.name"], attributes["http.status_code"], attributes["sample.ratio"], attributes["http.retry"], attributes["cart.items"], attributes["nope"]], "|")) where IsRootSpan()'
      - 'set(attributes["items"], Len(attributes["cart.items"])) where IsRootSpan()'
      - 'set(attributes["broken"], Len(attributes["http.status_code"]))'
      - 'set(attributes["name.sha256"], SHA256(name))'
      - 'set(attributes["first"], Substring(name, 0, 3))'
      - 'set(attributes["code"], Int(Concat(["4", "04"], "")))'
      - 'set(attributes["route.key"], Format("%s|%05d|%.2f|%v|%d", [name, attributes["http.status_code"], attributes["sample.ratio"], attributes["http.retry"], name])) where IsRootSpan()'
      - 'set(attributes["name.fnv"], FNV(name))'
      - 'set(attributes["parsed"], ParseJSON("{{\"tier\": \"gold\", \"n\": 2, \"gone\": null}}")) where IsRootSpan()'
exporters:
  otlphttp:
    traces_endpoint: http://{}/conv
    encoding: json
    compression: none
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      processors: [filter, transform]
      exporters: [otlphttp]
"#,
        capture.addr
    );
    let c = collector(dir.path(), &config, &["otlp-grpc"]);
    send_sdk_trace("otlp-grpc", c.addr("otlp-grpc"), "conv");
    common::eventually(Duration::from_secs(30), || {
        (otlp_json_spans(&capture.bodies("/conv")).len() >= 3).then_some(())
    })
    .expect("three spans were exported");
    std::thread::sleep(Duration::from_millis(500));
    let all = otlp_json_spans(&capture.bodies("/conv"));
    let names: Vec<&str> = all.iter().filter_map(|(_, s)| s["name"].as_str()).collect();
    assert_eq!(all.len(), 3, "the database's span is dropped: {names:?}");
    assert!(!names.contains(&"query carts"), "{names:?}");
    let text = |v: &str| Some(serde_json::json!({ "stringValue": v }));
    let int = |v: &str| Some(serde_json::json!({ "intValue": v }));
    for (_, span) in &all {
        let a = &span["attributes"];
        let name = span["name"].as_str().unwrap();
        assert_eq!(otlp_json_attr(a, "op"), text(&name.to_uppercase()));
        assert_eq!(otlp_json_attr(a, "first"), text(&name[..3]));
        assert_eq!(otlp_json_attr(a, "code"), int("404"));
        assert_eq!(otlp_json_attr(a, "broken"), None, "{span}");
        let sha = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut p| {
                use std::io::Write;
                p.stdin.take().unwrap().write_all(name.as_bytes())?;
                p.wait_with_output()
            })
            .unwrap();
        let sha = String::from_utf8(sha.stdout).unwrap();
        assert_eq!(
            otlp_json_attr(a, "name.sha256"),
            text(sha.split_whitespace().next().unwrap())
        );
        // FNV-1a 64 as Go's hash/fnv computes it, as a signed int64.
        let fnv = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        }) as i64;
        assert_eq!(otlp_json_attr(a, "name.fnv"), int(&fnv.to_string()));
        if name == "GET /checkout" {
            assert_eq!(otlp_json_attr(a, "who"), text("conv|200|0.25|false|<nil>"));
            assert_eq!(otlp_json_attr(a, "items"), int("2"));
            // Go's fmt, including how it says a verb does not fit its argument.
            assert_eq!(
                otlp_json_attr(a, "route.key"),
                text("GET /checkout|00200|0.25|false|%!d(string=GET /checkout)")
            );
            // A map attribute; JSON numbers are doubles, nulls are left out.
            let parsed = otlp_json_attr(a, "parsed").expect("parsed");
            let fields = parsed["kvlistValue"]["values"].as_array().unwrap();
            let field = |k: &str| {
                fields
                    .iter()
                    .find(|f| f["key"] == k)
                    .map(|f| f["value"].clone())
            };
            assert_eq!(fields.len(), 2, "{parsed}");
            assert_eq!(field("tier"), text("gold"));
            assert_eq!(
                field("n").and_then(|v| v["doubleValue"].as_f64()),
                Some(2.0)
            );
        } else {
            assert_eq!(otlp_json_attr(a, "who"), None, "not a root: {span}");
        }
    }
    assert_eq!(c.terminate(), Some(0));

    let bad = config.replace("ToUpperCase(name)", "Base64Decode(name)");
    let (code, _, stderr) = validate(dir.path(), &bad);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("the converter Base64Decode is not built"),
        "{stderr}"
    );
}

/// The attributes processor's `include`/`exclude`: only the app's own spans (by service) that
/// are not client spans (by kind) get the attribute; the database's spans and the client span
/// are left alone.
#[test]
fn attributes_processor_include_and_exclude_choose_the_spans() {
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::start();
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
processors:
  attributes/tag:
    include:
      match_type: strict
      services: [chosen]
    exclude:
      match_type: regexp
      span_kinds: [CLIENT$]
    actions:
      - key: tagged
        value: "yes"
        action: upsert
exporters:
  otlphttp:
    traces_endpoint: http://{}/tagged
    encoding: json
    compression: none
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      processors: [attributes/tag]
      exporters: [otlphttp]
"#,
        capture.addr
    );
    let c = collector(dir.path(), &config, &["otlp-grpc"]);
    send_sdk_trace("otlp-grpc", c.addr("otlp-grpc"), "chosen");
    let spans = || {
        let mut out: Vec<(String, bool)> = otlp_json_spans(&capture.bodies("/tagged"))
            .iter()
            .map(|(_, s)| {
                let tagged = otlp_json_attr(&s["attributes"], "tagged").is_some();
                (s["name"].as_str().unwrap_or_default().to_owned(), tagged)
            })
            .collect();
        out.sort();
        out
    };
    let all = common::eventually(Duration::from_secs(30), || {
        let s = spans();
        (s.len() >= 4).then_some(s)
    })
    .expect("the four spans were exported");
    let expected: Vec<(String, bool)> = [
        ("GET /checkout", true),
        ("SELECT carts", false),
        ("load cart", true),
        ("query carts", false),
    ]
    .iter()
    .map(|(n, t)| (n.to_string(), *t))
    .collect();
    assert_eq!(all, expected);
    assert_eq!(c.terminate(), Some(0));
}

/// The span processor on the Python SDK's spans: a name turned into a pattern with its
/// variable part as an attribute, a span renamed from its attributes, and a status set on the
/// span `include` names.
#[test]
fn span_processor_renames_and_sets_status() {
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::start();
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
processors:
  span/pages:
    name:
      to_attributes:
        rules: ['^GET /(?P<page>\w+)$']
  span/db:
    include:
      match_type: strict
      span_kinds: [SPAN_KIND_CLIENT]
    name:
      from_attributes: [db.system, db.missing]
      separator: " "
  span/db2:
    include:
      match_type: strict
      span_kinds: [SPAN_KIND_CLIENT]
    name:
      from_attributes: [db.system]
  span/status:
    include:
      match_type: regexp
      span_names: ['^load']
    status:
      code: Error
      description: cart unavailable
exporters:
  otlphttp:
    traces_endpoint: http://{}/spans
    encoding: json
    compression: none
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      processors: [span/pages, span/db, span/db2, span/status]
      exporters: [otlphttp]
"#,
        capture.addr
    );
    let c = collector(dir.path(), &config, &["otlp-grpc"]);
    send_sdk_trace("otlp-grpc", c.addr("otlp-grpc"), "renamed");
    let all: Vec<serde_json::Value> = common::eventually(Duration::from_secs(30), || {
        let s = otlp_json_spans(&capture.bodies("/spans"));
        (s.len() >= 4).then(|| s.into_iter().map(|(_, s)| s).collect())
    })
    .expect("the four spans were exported");
    let by_name = |n: &str| {
        all.iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("no span {n}: {all:?}"))
    };
    let page = by_name("GET /{page}");
    assert_eq!(
        otlp_json_attr(&page["attributes"], "page"),
        Some(serde_json::json!({"stringValue": "checkout"})),
        "{page}"
    );
    // span/db needs an attribute the client span lacks (no rename); span/db2 renames it.
    by_name("postgresql");
    let load = by_name("load cart");
    assert_eq!(load["status"]["code"], 2, "{load}");
    assert_eq!(load["status"]["message"], "cart unavailable");
    assert_eq!(c.terminate(), Some(0));
}

/// The redaction processor on the Python SDK's spans: a key's whole value masked by pattern,
/// a blocked value masked inside a string, and the summary the OTel Collector writes.
#[test]
fn redaction_processor_masks_and_summarizes() {
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::start();
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
processors:
  redaction:
    allow_all_keys: true
    blocked_key_patterns: ['^http\.method$']
    blocked_values: ['postgres']
    summary: debug
exporters:
  otlphttp:
    traces_endpoint: http://{}/redacted
    encoding: json
    compression: none
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      processors: [redaction]
      exporters: [otlphttp]
"#,
        capture.addr
    );
    let c = collector(dir.path(), &config, &["otlp-grpc"]);
    send_sdk_trace("otlp-grpc", c.addr("otlp-grpc"), "redacted");
    let span = |name: &str| {
        common::eventually(Duration::from_secs(30), || {
            otlp_json_span(&capture.bodies("/redacted"), name)
        })
        .unwrap_or_else(|| panic!("{name} was not exported"))
    };
    let attr = |s: &serde_json::Value, key: &str| {
        otlp_json_attr(&s["attributes"], key).unwrap_or_else(|| panic!("{key} missing from {s}"))
    };
    let root = span("GET /checkout");
    assert_eq!(
        attr(&root, "http.method"),
        serde_json::json!({"stringValue": "****"})
    );
    assert_eq!(
        attr(&root, "http.status_code"),
        serde_json::json!({"intValue": "200"})
    );
    assert_eq!(
        attr(&root, "redaction.masked.keys"),
        serde_json::json!({"stringValue": "http.method"})
    );
    assert_eq!(
        attr(&root, "redaction.masked.count"),
        serde_json::json!({"intValue": "1"})
    );
    let client = span("SELECT carts");
    assert_eq!(
        attr(&client, "db.system"),
        serde_json::json!({"stringValue": "****ql"})
    );
    assert_eq!(c.terminate(), Some(0));
}

/// `groupbyattrs` moves a span attribute of the Python SDK's client span to a resource of its
/// own: the exported batch has that resource, holding that span, without the attribute on it.
#[test]
fn groupbyattrs_moves_span_attributes_to_the_resource() {
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::start();
    let config = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n\
         processors:\n  groupbyattrs:\n    keys: [db.system]\n\
         exporters:\n  otlphttp:\n    traces_endpoint: http://{}/grouped\n    encoding: json\n    compression: none\n\
         service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n\
         \x20 pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [groupbyattrs]\n      exporters: [otlphttp]\n",
        capture.addr
    );
    let c = collector(dir.path(), &config, &["otlp-grpc"]);
    send_sdk_trace("otlp-grpc", c.addr("otlp-grpc"), "grouped");
    let postgres = Some(serde_json::json!({"stringValue": "postgresql"}));
    let found = common::eventually(Duration::from_secs(30), || {
        otlp_json_spans(&capture.bodies("/grouped"))
            .into_iter()
            .find(|(resource, _)| otlp_json_attr(resource, "db.system") == postgres)
    })
    .expect("a resource with db.system was exported");
    assert_eq!(found.1["name"], "SELECT carts");
    assert_eq!(
        otlp_json_attr(&found.1["attributes"], "db.system"),
        None,
        "{found:?}"
    );
    assert_eq!(c.terminate(), Some(0));
}

/// The file exporter writes the Python SDK's spans as OTLP/JSON lines, and as length-prefixed
/// protobuf records that the OpenTelemetry protobuf classes (Python) read back.
#[test]
fn file_exporter_writes_json_lines_and_protobuf_records() {
    let dir = tempfile::tempdir().unwrap();
    let (json, proto) = (
        dir.path().join("out/traces.json"),
        dir.path().join("out/traces.pb"),
    );
    let config = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n\
         exporters:\n  file/json:\n    path: {}\n  file/proto:\n    path: {}\n    format: proto\n\
         service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n\
         \x20 pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [file/json, file/proto]\n",
        json.display(),
        proto.display()
    );
    let c = collector(dir.path(), &config, &["otlp-grpc"]);
    let trace = send_sdk_trace("otlp-grpc", c.addr("otlp-grpc"), "files");
    let expected = vec!["GET /checkout", "SELECT carts", "load cart", "query carts"];
    let from_json = common::eventually(Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&json).ok()?;
        let lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
        let mut names: Vec<String> = Vec::new();
        for (_, s) in otlp_json_spans(&lines) {
            assert_eq!(s["traceId"], trace.as_str());
            names.push(s["name"].as_str()?.to_owned());
        }
        names.sort();
        (names.len() == 4).then_some(names)
    });
    assert_eq!(
        from_json,
        Some(expected.iter().map(|s| s.to_string()).collect())
    );
    // The two exporters run side by side: the protobuf file may still be filling.
    let v = common::eventually(Duration::from_secs(30), || {
        let out = common::python(".venv", "read_otlp_file.py", &[proto.to_str().unwrap()]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        (v["records"] == 4 && v["partial"] == false).then_some(v)
    })
    .expect("four protobuf records");
    assert_eq!(v["spans"], serde_json::json!(expected), "{v}");
    assert_eq!(v["records"], 4, "one record per export: {v}");
    assert_eq!(c.terminate(), Some(0));
}

/// Connectors: a routing connector splits the Python SDK's traces by service into two
/// pipelines, and a forward connector chains one of them into a pipeline of its own processor.
#[test]
fn routing_and_forward_connectors_split_and_chain_pipelines() {
    let dir = tempfile::tempdir().unwrap();
    let capture = Capture::start();
    let config = format!(
        r#"receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
processors:
  attributes/mark:
    actions: [{{ key: routed.by, value: meshtrace, action: insert }}]
connectors:
  routing:
    default_pipelines: [traces/rest]
    table:
      - condition: 'IsMatch(attributes["service.name"], "^shop")'
        pipelines: [traces/shop]
  forward:
exporters:
  otlphttp/shop:
    traces_endpoint: http://{addr}/shop
    encoding: json
    compression: none
  otlphttp/rest:
    traces_endpoint: http://{addr}/rest
    encoding: json
    compression: none
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces/in:
      receivers: [otlp]
      exporters: [routing]
    traces/shop:
      receivers: [routing]
      exporters: [forward]
    traces/rest:
      receivers: [routing]
      exporters: [otlphttp/rest]
    traces/marked:
      receivers: [forward]
      processors: [attributes/mark]
      exporters: [otlphttp/shop]
"#,
        addr = capture.addr
    );
    let (code, stdout, stderr) = validate(dir.path(), &config);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(r#"connector: routes IsMatch(attributes["service.name"], "^shop") → traces/shop; otherwise traces/rest"#),
        "{stdout}"
    );
    let c = collector(dir.path(), &config, &["otlp-grpc"]);
    let shop = send_sdk_trace("otlp-grpc", c.addr("otlp-grpc"), "shop");
    let billing = send_sdk_trace("otlp-grpc", c.addr("otlp-grpc"), "billing");
    let spans = |path: &str| otlp_json_spans(&capture.bodies(path));
    let service =
        |r: &serde_json::Value| otlp_json_attr(r, "service.name").unwrap()["stringValue"].clone();
    let got = common::eventually(Duration::from_secs(30), || {
        (spans("/shop").len() >= 4 && spans("/rest").len() >= 4).then_some(())
    });
    assert_eq!(got, Some(()), "shop {shop}, billing {billing}");
    std::thread::sleep(Duration::from_millis(300));
    let (to_shop, to_rest) = (spans("/shop"), spans("/rest"));
    assert_eq!((to_shop.len(), to_rest.len()), (4, 4));
    // The SDK's trace: three spans of the service, one of SERVICE-db.
    for (resource, span) in &to_shop {
        assert!(service(resource).as_str().unwrap().starts_with("shop"));
        assert_eq!(span["traceId"].as_str().unwrap().to_lowercase(), shop);
        // Through the forward connector into traces/marked's processor.
        assert_eq!(
            otlp_json_attr(&span["attributes"], "routed.by").unwrap()["stringValue"],
            "meshtrace"
        );
    }
    for (resource, span) in &to_rest {
        assert!(service(resource).as_str().unwrap().starts_with("billing"));
        assert_eq!(span["traceId"].as_str().unwrap().to_lowercase(), billing);
        assert!(otlp_json_attr(&span["attributes"], "routed.by").is_none());
    }
    assert_eq!(c.terminate(), Some(0));

    for (from, to, want) in [
        (
            "    traces/marked:\n      receivers: [forward]\n      processors: [attributes/mark]\n      exporters: [otlphttp/shop]",
            "    traces/marked:\n      receivers: [forward]\n      processors: [attributes/mark]\n      exporters: [routing]",
            "sends into itself through connectors",
        ),
        ("      receivers: [forward]\n", "      receivers: [otlp]\n", "connectors.forward is an exporter of pipeline traces/shop but no pipeline lists it under receivers"),
        ("pipelines: [traces/shop]", "pipelines: [traces/nowhere]", "table[0] names pipeline `traces/nowhere`, which does not list routing under receivers"),
        ("- condition: 'IsMatch", "- context: request\n        condition: 'IsMatch", "context request (routing by the request's metadata) is not built"),
        ("condition: 'IsMatch(attributes[\"service.name\"], \"^shop\")'", "statement: 'route() when true'", "write route() where CONDITION"),
    ] {
        assert!(config.contains(from), "{from}");
        let (code, _, stderr) = validate(dir.path(), &config.replacen(from, to, 1));
        assert_ne!(code, 0, "{to}");
        assert!(stderr.contains(want), "{to}: {stderr}");
    }
}
