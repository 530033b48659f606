//! `meshtrace proxy`'s `retry_policy` and clusters' `outlier_detection` and `health_checks`, end
//! to end on 127.0.0.1: the test app (whose `/flaky` fails a given number of times and whose
//! `/healthz` answers as told), a port nobody listens on as a dead endpoint, grpcio's own gRPC
//! health service (tests/python/grpc_health_server.py), a proxy process, `meshtrace all-in-one`
//! as the collector of its spans, and curl as the caller.

mod common;
mod proxy_support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use proxy_support::*;

/// An outbound listener: route `/flaky` (and `/slow`) to cluster `app` with `policy`, anything
/// else to cluster `pair` (a dead endpoint, then the app) with the listener's policy.
fn outbound(app: &App, dead: std::net::SocketAddr, collector: &str, policy: &str) -> String {
    format!(
        "node_id: caller
admin: 127.0.0.1:0
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    retry_policy: {{ retry_on: connect-failure, num_retries: 1 }}
    upstream:
      routes:
        - {{ path_prefix: /flaky, cluster: app, retry_policy: {policy} }}
        - {{ path_prefix: /, cluster: pair }}
      clusters:
        app: ['{app}']
        pair: ['{dead}', '{app}']
{tracing}",
        app = app.addr,
        tracing = tracing_block(collector, "b3multi"),
    )
}

fn metric(proxy: &Proxy, name: &str) -> u64 {
    let text = get(&format!("http://{}/metrics", proxy.addr("admin"))).text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// curl with a sampled B3 context of trace `tid`.
fn traced(tid: &str, args: &[&str]) -> Answer {
    let trace = format!("x-b3-traceid: {tid}");
    let mut all = vec![
        "-H",
        &trace,
        "-H",
        "x-b3-spanid: 2222222222222222",
        "-H",
        "x-b3-sampled: 1",
    ];
    all.extend_from_slice(args);
    curl(&all)
}

#[test]
fn proxy_retries_failed_requests_on_the_next_endpoint_with_the_body_and_says_so_in_its_spans() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let app = App::start();
    let dead = dead_port();
    let yaml = outbound(
        &app,
        dead,
        server.addr("zipkin"),
        "{ retry_on: '5xx,reset', num_retries: 2, per_try_timeout: 400ms, retry_back_off: { base_interval: 10ms } }",
    );
    let proxy = Proxy::start(&yaml, &["out", "admin"]);
    let out = proxy.addr("out");

    // Connect failures (the listener's policy): every request reaches the app, though half of
    // the picks are the dead endpoint.
    for _ in 0..6 {
        let a = get(&format!("http://{out}/echo"));
        assert_eq!((a.status, a.text().as_str()), (200, "ok"));
    }
    let retried = metric(&proxy, "meshtrace_proxy_upstream_retries_total");
    assert!((3..=6).contains(&retried), "{retried} retries");
    assert_eq!(
        metric(&proxy, "meshtrace_proxy_upstream_retries_succeeded_total"),
        retried
    );
    let tid = "5151515151515151aaaaaaaaaaaaaaaa";
    // Two requests in a row: one of them picks the dead endpoint first.
    traced(
        "5050505050505050aaaaaaaaaaaaaaaa",
        &[&format!("http://{out}/echo")],
    );
    traced(tid, &[&format!("http://{out}/echo")]);
    let first_retried = ["5050505050505050aaaaaaaaaaaaaaaa", tid]
        .iter()
        .map(|t| trace_with(&server, t, 1)["spans"][0].clone())
        .find(|s| tag(s, "upstream_retries").is_some())
        .expect("one of two requests met the dead endpoint first");
    assert_eq!(tag_str(&first_retried, "upstream_retries"), "1");
    assert_eq!(
        tag_str(&first_retried, "upstream_address"),
        app.addr.to_string(),
        "the span names the endpoint that answered"
    );
    assert_eq!(tag_str(&first_retried, "response_flags"), "-");
    assert!(tag(&first_retried, "error").is_none());

    // 503 twice, then an answer: the POST body goes again, whole, to each attempt.
    let body = vec![b'x'; 10_000];
    let tid = "5252525252525252aaaaaaaaaaaaaaaa";
    let a = post(
        &format!("http://{out}/flaky?key=twice&fail=2"),
        &[
            &format!("x-b3-traceid: {tid}"),
            "x-b3-spanid: 2222222222222222",
            "x-b3-sampled: 1",
        ],
        &body,
    );
    assert_eq!((a.status, a.text().as_str()), (200, "attempt 3 body 10000"));
    let s = &trace_with(&server, tid, 1)["spans"][0];
    assert_eq!(tag_str(s, "upstream_retries"), "2");
    assert_eq!(tag_str(s, "http.status_code"), "200");
    assert_eq!(tag_str(s, "request_size"), "10000", "counted once");

    // Retries spent: the upstream's last answer goes back, flagged URX.
    let tid = "5353535353535353aaaaaaaaaaaaaaaa";
    let a = traced(tid, &[&format!("http://{out}/flaky?key=always&fail=9")]);
    assert_eq!((a.status, a.text().as_str()), (503, "failing attempt 3"));
    assert_eq!(flaky_attempts("always"), 3);
    let s = &trace_with(&server, tid, 1)["spans"][0];
    assert_eq!(tag_str(s, "response_flags"), "URX");
    assert_eq!(tag_str(s, "error"), "true");
    assert_eq!(
        metric(
            &proxy,
            "meshtrace_proxy_upstream_retry_limit_exceeded_total"
        ),
        1
    );

    // A body over the 64 KiB kept for retries is not sent again.
    let big = vec![b'y'; 70_000];
    let a = post(&format!("http://{out}/flaky?key=big&fail=1"), &[], &big);
    assert_eq!(a.status, 503, "{}", a.text());
    assert_eq!(flaky_attempts("big"), 1);

    // An attempt without response headers within per_try_timeout is abandoned and retried
    // (under `reset`), well before the app's 3 s.
    let started = Instant::now();
    let a = get(&format!("http://{out}/flaky?key=hang&fail=1&hang"));
    assert_eq!((a.status, a.text().as_str()), (200, "attempt 2 body 0"));
    assert!(started.elapsed() < Duration::from_millis(2500));

    // An answer the policy does not retry goes back at once (the app's `ok` for another path).
    let before = metric(&proxy, "meshtrace_proxy_upstream_retries_total");
    let a = get(&format!("http://{out}/flaky/none?key=x"));
    assert_eq!((a.status, a.text().as_str()), (200, "ok"));
    assert_eq!(
        metric(&proxy, "meshtrace_proxy_upstream_retries_total"),
        before
    );
}

#[test]
fn proxy_retry_policy_mistakes_are_refused_by_name() {
    let app = App::start();
    let dead = dead_port();
    let with = |policy: &str| refused(&outbound(&app, dead, "127.0.0.1:9", policy));
    let err = with("{ retry_on: '5xx,sometimes' }");
    assert!(
        err.contains("sometimes") && err.contains("gateway-error"),
        "{err}"
    );
    let err = with("{ retry_on: retriable-status-codes }");
    assert!(err.contains("retriable_status_codes lists none"), "{err}");
    let err = with("{ retry_on: 5xx, retriable_status_codes: [429] }");
    assert!(err.contains("lacks retriable-status-codes"), "{err}");
    let err =
        with("{ retry_on: 5xx, retry_back_off: { base_interval: 100ms, max_interval: 10ms } }");
    assert!(err.contains("max_interval is below base_interval"), "{err}");
    let err = with("{ retry_on: 5xx, tries: 3 }");
    assert!(err.contains("tries"), "{err}");
    let err = with("{ retry_on: 5xx, per_try_timeout: soon }");
    assert!(err.contains("soon"), "{err}");
}

#[test]
fn proxy_outlier_detection_ejects_a_failing_endpoint_for_a_while_then_tries_it_again() {
    let app = App::start();
    let dead = dead_port();
    let yaml = format!(
        "node_id: caller
admin: 127.0.0.1:0
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes:
        - {{ path_prefix: /, cluster: pair }}
      clusters:
        pair:
          endpoints: ['{dead}', '{app}']
          outlier_detection: {{ consecutive_5xx: 2, base_ejection_time: 1500ms, max_ejection_percent: 50 }}
",
        app = app.addr
    );
    let proxy = Proxy::start(&yaml, &["out", "admin"]);
    let url = format!("http://{}/echo", proxy.addr("out"));
    let statuses = |n: usize| (0..n).map(|_| get(&url).status).collect::<Vec<_>>();
    // Round-robin: the dead endpoint fails every other request until its second failure.
    let first = statuses(4);
    assert_eq!(first.iter().filter(|&&s| s == 502).count(), 2, "{first:?}");
    assert_eq!(metric(&proxy, "meshtrace_proxy_outlier_ejections_total"), 1);
    let clusters = get(&format!("http://{}/clusters", proxy.addr("admin"))).text();
    assert_eq!(
        clusters,
        format!(
            "out/pair::{dead}::health_flags::/failed_outlier_check\nout/pair::{}::health_flags::healthy\n",
            app.addr
        )
    );
    let metrics = get(&format!("http://{}/metrics", proxy.addr("admin"))).text();
    assert!(
        metrics.contains(r#"meshtrace_proxy_outlier_ejected{listener="out",cluster="pair"} 1"#),
        "{metrics}"
    );
    // Out: every request goes to the app.
    let started = Instant::now();
    let out = statuses(10);
    assert!(out.iter().all(|&s| s == 200), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "still within the ejection"
    );
    // Its time over, it is tried again: two more failures eject it again, for twice as long.
    std::thread::sleep(Duration::from_millis(1600).saturating_sub(started.elapsed()));
    let back = statuses(4);
    assert_eq!(back.iter().filter(|&&s| s == 502).count(), 2, "{back:?}");
    assert_eq!(metric(&proxy, "meshtrace_proxy_outlier_ejections_total"), 2);
    std::thread::sleep(Duration::from_millis(1600));
    let still_out = statuses(4);
    assert!(
        still_out.iter().all(|&s| s == 200),
        "the second ejection lasts 3 s: {still_out:?}"
    );
    // A mistake in the block is refused by name.
    let err = refused(&yaml.replace("max_ejection_percent: 50", "max_ejection_percent: 150"));
    assert!(
        err.contains("max_ejection_percent must be 0 to 100"),
        "{err}"
    );
    let err = refused(&yaml.replace("consecutive_5xx: 2", "consecutive_errors: 2"));
    assert!(err.contains("consecutive_errors"), "{err}");
}

/// An outbound listener routing everything to cluster `svc` of `endpoints`, health-checked by
/// `check` (a flow mapping of Envoy's `HealthCheck`).
fn checked(endpoints: &[String], check: &str) -> String {
    format!(
        "node_id: caller
admin: 127.0.0.1:0
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes:
        - {{ path_prefix: /, cluster: svc }}
      clusters:
        svc:
          endpoints: [{}]
          health_checks: [{check}]
",
        endpoints
            .iter()
            .map(|e| format!("'{e}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `svc`'s endpoints in `health` (healthy, unhealthy, pending) by the proxy's gauge.
fn endpoints(proxy: &Proxy, health: &str) -> u64 {
    metric(
        proxy,
        &format!(r#"meshtrace_proxy_endpoints{{listener="out",cluster="svc",health="{health}"}}"#),
    )
}

/// Waits (≤ 10 s) until `svc` has `healthy` healthy and `unhealthy` unhealthy endpoints.
fn wait_for(proxy: &Proxy, healthy: u64, unhealthy: u64) {
    let now = || (endpoints(proxy, "healthy"), endpoints(proxy, "unhealthy"));
    let reached = eventually(Duration::from_secs(10), || {
        (now() == (healthy, unhealthy)).then_some(())
    });
    assert!(
        reached.is_some(),
        "want {healthy} healthy and {unhealthy} unhealthy, have {:?}",
        now()
    );
}

/// Requests the app served, its health checks left out.
fn served(app: &App) -> usize {
    app.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|h| header(h, "user-agent") != Some("meshtrace/HC"))
        .count()
}

#[test]
fn proxy_http_health_checks_take_a_failing_endpoint_out_and_bring_it_back() {
    let (a, b) = (App::start(), App::start());
    let yaml = checked(
        &[a.addr.to_string(), b.addr.to_string()],
        "{ timeout: 500ms, interval: 100ms, unhealthy_threshold: 2, healthy_threshold: 2, http_health_check: { path: /healthz, expected_statuses: [{ start: 200, end: 300 }] } }",
    );
    let proxy = Proxy::start(&yaml, &["out", "admin"]);
    let url = format!("http://{}/echo", proxy.addr("out"));
    let all_ok = |n: usize| {
        let statuses: Vec<u16> = (0..n).map(|_| get(&url).status).collect();
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    };
    wait_for(&proxy, 2, 0);
    // Both healthy: round-robin over both (each worker thread has its own turn).
    all_ok(10);
    assert!(
        served(&a) >= 2 && served(&b) >= 2,
        "{} {}",
        served(&a),
        served(&b)
    );
    assert_eq!(served(&a) + served(&b), 10);
    // The checks, as the app sees them: a GET of the path, Host the cluster's name, a user
    // agent saying what they are, and a B3 "do not sample" for whatever traces behind it.
    let checks: Vec<hyper::HeaderMap> = b
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|h| header(h, "user-agent") == Some("meshtrace/HC"))
        .cloned()
        .collect();
    assert!(!checks.is_empty());
    assert_eq!(
        (header(&checks[0], "host"), header(&checks[0], "b3")),
        (Some("svc"), Some("0"))
    );

    // b's checks fail: out, and every request goes to a.
    b.health.store(503, Ordering::Relaxed);
    wait_for(&proxy, 1, 1);
    // The admin port's /clusters says which, with Envoy's health flags.
    let clusters = get(&format!("http://{}/clusters", proxy.addr("admin"))).text();
    assert!(
        clusters.contains(&format!("out/svc::{}::health_flags::healthy\n", a.addr))
            && clusters.contains(&format!(
                "out/svc::{}::health_flags::/failed_active_hc\n",
                b.addr
            )),
        "{clusters}"
    );
    let before = (served(&a), served(&b));
    all_ok(10);
    assert_eq!((served(&a), served(&b)), (before.0 + 10, before.1));
    assert!(
        metric(
            &proxy,
            r#"meshtrace_proxy_health_checks_total{listener="out",cluster="svc",result="failure"}"#
        ) >= 2
    );

    // A status within the expected range (204): back in after two checks in a row.
    b.health.store(204, Ordering::Relaxed);
    wait_for(&proxy, 2, 0);
    let before = served(&b);
    all_ok(10);
    assert!(served(&b) >= before + 2, "{before} {}", served(&b));
    assert!(
        metric(
            &proxy,
            r#"meshtrace_proxy_health_checks_total{listener="out",cluster="svc",result="success"}"#
        ) >= 4
    );

    // Both failing: requests still go to both (panic routing), not nowhere.
    a.health.store(500, Ordering::Relaxed);
    b.health.store(500, Ordering::Relaxed);
    wait_for(&proxy, 0, 2);
    let before = (served(&a), served(&b));
    all_ok(10);
    assert!(served(&a) >= before.0 + 2 && served(&b) >= before.1 + 2);
}

#[test]
fn proxy_tcp_health_checks_keep_requests_off_a_dead_endpoint() {
    let app = App::start();
    let dead = dead_port();
    let yaml = checked(
        &[dead.to_string(), app.addr.to_string()],
        "{ timeout: 500ms, interval: 200ms, unhealthy_threshold: 3, healthy_threshold: 1, tcp_health_check: {} }",
    );
    let proxy = Proxy::start(&yaml, &["out", "admin"]);
    // The first check decides alone: the dead endpoint is out at once, thresholds or not.
    wait_for(&proxy, 1, 1);
    let url = format!("http://{}/echo", proxy.addr("out"));
    // No retry policy, no outlier detection: only the health check keeps requests off it.
    let statuses: Vec<u16> = (0..10).map(|_| get(&url).status).collect();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(served(&app), 10);
}

/// grpcio's health service (tests/python/grpc_health_server.py), told what to answer on stdin.
struct HealthServer {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl HealthServer {
    fn start() -> HealthServer {
        let py = python_dir();
        let mut child = Command::new(py.join(".venv/bin/python"))
            .arg(py.join("grpc_health_server.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the gRPC health server");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the health server starts");
        let port = first
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        HealthServer { child, port, lines }
    }

    /// Sets `service`'s status ("-": the server's), once the server says it did.
    fn set(&mut self, service: &str, status: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{service} {status}").unwrap();
        stdin.flush().unwrap();
        let want = format!("set {service} {status}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if line == want {
                return;
            }
        }
        panic!("the health server did not set {service} {status}");
    }

    /// Whether a Check of `service` arrived since the last call.
    fn checked(&self, service: &str) -> bool {
        let want = format!("check {service}");
        self.lines.try_iter().any(|l| l == want)
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn proxy_grpc_health_checks_ask_the_grpc_health_service() {
    let mut server = HealthServer::start();
    server.set("-", "SERVING");
    let endpoint = format!("127.0.0.1:{}", server.port);
    let check = |service: &str| {
        format!("{{ timeout: 1s, interval: 100ms, unhealthy_threshold: 1, healthy_threshold: 1, grpc_health_check: {{ service_name: '{service}' }} }}")
    };
    let proxy = Proxy::start(
        &checked(std::slice::from_ref(&endpoint), &check("")),
        &["out", "admin"],
    );
    wait_for(&proxy, 1, 0);
    assert!(
        server.checked("-"),
        "the health service answered the checks"
    );
    server.set("-", "NOT_SERVING");
    wait_for(&proxy, 0, 1);
    server.set("-", "SERVING");
    wait_for(&proxy, 1, 0);
    // A service the server does not know: NOT_FOUND, unhealthy; known and serving: healthy.
    let named = Proxy::start(
        &checked(std::slice::from_ref(&endpoint), &check("meshtrace.Cart")),
        &["out", "admin"],
    );
    wait_for(&named, 0, 1);
    server.set("meshtrace.Cart", "SERVING");
    wait_for(&named, 1, 0);
    assert!(server.checked("meshtrace.Cart"));
    // Mistakes in the block are refused by name.
    let err = refused(&checked(
        std::slice::from_ref(&endpoint),
        "{ timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, grpc_health_check: { service: x } }",
    ));
    assert!(err.contains("unknown field `service`"), "{err}");
    let err = refused(&checked(
        std::slice::from_ref(&endpoint),
        "{ timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1 }",
    ));
    assert!(err.contains("exactly one of http_health_check"), "{err}");
}

/// An outbound listener with `listener_extra` (faults, rate limits) routing `/echo` with
/// `route_extra` and anything else without, to the app; an access log of status and flags.
fn filtered(app: &App, log: &std::path::Path, listener_extra: &str, route_extra: &str) -> String {
    format!(
        "node_id: caller
admin: 127.0.0.1:0
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
{listener_extra}
    access_log: {{ path: {log}, format: \"%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\\n\", flush_interval: 50ms }}
    upstream:
      routes:
        - {{ path_prefix: /echo, cluster: app{route_extra} }}
        - {{ path_prefix: /, cluster: app }}
      clusters:
        app: ['{app}']
",
        app = app.addr,
        log = log.display(),
    )
}

/// The access log at `path` once it holds `n` lines (waiting up to 10 s).
fn log_text(path: &std::path::Path, n: usize) -> String {
    eventually(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        (text.lines().count() == n).then_some(text)
    })
    .unwrap_or_else(|| panic!("{} has not {n} lines", path.display()))
}

/// curl with the response headers written before the body.
fn with_headers(url: &str, headers: &[&str]) -> Answer {
    let mut args = vec!["-D", "-"];
    for h in headers {
        args.push("-H");
        args.push(h);
    }
    args.push(url);
    curl(&args)
}

#[test]
fn proxy_fault_injection_delays_and_aborts_as_configured_or_asked() {
    let app = App::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let yaml = filtered(
        &app,
        &log,
        "    fault: { delay: { header_delay: {} }, abort: { header_abort: {} } }",
        ", fault: { delay: { fixed_delay: 100ms, percentage: 100 }, abort: { http_status: 503, percentage: 50 } }",
    );
    let proxy = Proxy::start(&yaml, &["out", "admin"]);
    let out = proxy.addr("out");

    // The route's faults: every request held 100 ms; about half answered 503 without reaching
    // the app.
    let started = Instant::now();
    let statuses: Vec<u16> = (0..40)
        .map(|_| get(&format!("http://{out}/echo")).status)
        .collect();
    assert!(started.elapsed() >= Duration::from_millis(40 * 100));
    let aborted = statuses.iter().filter(|&&s| s == 503).count();
    assert!(
        (8..=32).contains(&aborted),
        "{aborted} of 40 aborted at 50%"
    );
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 40 - aborted);
    assert_eq!(
        served(&app),
        40 - aborted,
        "aborted requests never reach the app"
    );
    assert_eq!(metric(&proxy, "meshtrace_proxy_faults_delayed_total"), 40);
    assert_eq!(
        metric(&proxy, "meshtrace_proxy_faults_aborted_total") as usize,
        aborted
    );

    // The listener's header-controlled faults, for the other routes: nothing unless asked.
    let url = format!("http://{out}/other");
    assert_eq!(get(&url).status, 200);
    let teapot = with_headers(&url, &["x-envoy-fault-abort-request: 418"]);
    assert_eq!(teapot.status, 418);
    assert!(
        teapot.text().ends_with("fault filter abort"),
        "{}",
        teapot.text()
    );
    let grpc = with_headers(&url, &["x-envoy-fault-abort-grpc-request: 14"]);
    assert_eq!(grpc.status, 200);
    let text = grpc.text().to_ascii_lowercase();
    assert!(
        text.contains("grpc-status: 14") && text.contains("content-type: application/grpc"),
        "{text}"
    );
    let started = Instant::now();
    assert_eq!(
        with_headers(&url, &["x-envoy-fault-delay-request: 200"]).status,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(200));

    // The access log says which fault did what (DI delayed, FI aborted).
    let lines = log_text(&log, 44);
    assert_eq!(
        lines.matches("/echo 503 DI,FI\n").count(),
        aborted,
        "{lines}"
    );
    assert_eq!(
        lines.matches("/echo 200 DI\n").count(),
        40 - aborted,
        "{lines}"
    );
    for line in [
        "/other 200 -\n",
        "/other 418 FI\n",
        "/other 200 FI\n",
        "/other 200 DI\n",
    ] {
        assert!(lines.contains(line), "{line:?} in {lines}");
    }

    let err = refused(&yaml.replace("percentage: 50", "percentage: 150"));
    assert!(
        err.contains("percentage 150 is not between 0 and 100"),
        "{err}"
    );
    let err = refused(&yaml.replace("http_status: 503", "http_status: 99"));
    assert!(
        err.contains("route to \"app\": fault: abort: http_status 99"),
        "{err}"
    );
}

#[test]
fn proxy_local_rate_limit_answers_429_once_the_shared_bucket_is_empty() {
    let app = App::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let yaml = filtered(
        &app,
        &log,
        "",
        ", local_rate_limit: { token_bucket: { max_tokens: 3, tokens_per_fill: 3, fill_interval: 2s }, enable_x_ratelimit_headers: DRAFT_VERSION_03 }",
    );
    let proxy = Proxy::start(&yaml, &["out", "admin"]);
    let url = format!("http://{}/echo", proxy.addr("out"));
    // Each curl is a connection of its own, dealt to the workers in turn: one bucket for all.
    let started = Instant::now();
    let answers: Vec<Answer> = (0..5).map(|_| with_headers(&url, &[])).collect();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "within one fill"
    );
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let header = |a: &Answer, name: &str| -> String {
        a.text()
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let remaining: Vec<String> = answers
        .iter()
        .map(|a| header(a, "x-ratelimit-remaining"))
        .collect();
    assert_eq!(remaining, ["2", "1", "0", "0", "0"]);
    assert_eq!(header(&answers[0], "x-ratelimit-limit"), "3");
    assert!(answers[3].text().ends_with("local_rate_limited"));
    assert_eq!(served(&app), 3);
    assert_eq!(metric(&proxy, "meshtrace_proxy_rate_limited_total"), 2);
    // Another route has no bucket; and after the fill, the route is served again.
    assert_eq!(
        get(&format!("http://{}/other", proxy.addr("out"))).status,
        200
    );
    std::thread::sleep(Duration::from_secs(2).saturating_sub(started.elapsed()));
    assert_eq!(get(&url).status, 200);
    let lines = log_text(&log, 7);
    assert_eq!(lines.matches("/echo 429 RL\n").count(), 2, "{lines}");

    let err = refused(&yaml.replace("fill_interval: 2s", "fill_interval: 10ms"));
    assert!(
        err.contains("local_rate_limit: token_bucket.fill_interval must be at least 50ms"),
        "{err}"
    );
}

#[test]
fn proxy_circuit_breaker_answers_503_beyond_max_requests_in_flight() {
    let app = App::start();
    let yaml = format!(
        "node_id: side
admin: 127.0.0.1:0
listeners:
  - name: in
    mode: inbound
    listen: 127.0.0.1:0
    upstream: '{}'
    circuit_breakers: {{ max_requests: 2 }}
",
        app.addr
    );
    let proxy = Proxy::start(&yaml, &["in", "admin"]);
    let url = format!("http://{}", proxy.addr("in"));
    let active = || {
        metric(
            &proxy,
            r#"meshtrace_proxy_upstream_requests_active{listener="in",cluster="in"}"#,
        )
    };
    // Two slow requests (3 s) take both places...
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let url = format!("{url}/slow");
            std::thread::spawn(move || get(&url).status)
        })
        .collect();
    assert_eq!(
        eventually(Duration::from_secs(5), || (active() == 2).then_some(())),
        Some(())
    );
    // ...so a third is answered at once, without reaching the app.
    let before = served(&app);
    let started = Instant::now();
    let over = with_headers(&format!("{url}/echo"), &[]);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(over.status, 503);
    assert!(
        over.text()
            .to_ascii_lowercase()
            .contains("x-envoy-overloaded: true"),
        "{}",
        over.text()
    );
    assert_eq!(served(&app), before);
    assert_eq!(metric(&proxy, "meshtrace_proxy_upstream_overflow_total"), 1);
    let clusters = get(&format!("http://{}/clusters", proxy.addr("admin"))).text();
    assert!(
        clusters.starts_with(
            "in/in::default_priority::max_requests::2\nin/in::default_priority::rq_active::2\n"
        ),
        "{clusters}"
    );
    for s in slow {
        assert_eq!(s.join().unwrap(), 200);
    }
    // Both answered: their places are free again.
    assert_eq!(
        eventually(Duration::from_secs(5), || (active() == 0).then_some(())),
        Some(())
    );
    assert_eq!(get(&format!("{url}/echo")).status, 200);

    let err = refused(&yaml.replace("max_requests: 2", "max_requests: 0"));
    assert!(err.contains("circuit_breakers: max_requests 0"), "{err}");
    let err = refused(&yaml.replace("max_requests: 2", "max_connections: 2"));
    assert!(err.contains("unknown field `max_connections`"), "{err}");
}

#[test]
fn proxy_honours_x_envoy_retry_and_timeout_headers_inside_the_mesh_and_strips_them_at_the_edge() {
    let app = App::start();
    let yaml = format!(
        "node_id: caller
admin: 127.0.0.1:0
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes: [{{ path_prefix: /, cluster: app }}]
      clusters:
        app: ['{app}']
  - name: edge
    mode: edge
    listen: 127.0.0.1:0
    upstream: '{app}'
    fault: {{ abort: {{ header_abort: {{}} }} }}
",
        app = app.addr
    );
    let proxy = Proxy::start(&yaml, &["out", "edge", "admin"]);
    let (out, edge) = (proxy.addr("out"), proxy.addr("edge"));
    let retry = ["x-envoy-retry-on: 5xx", "x-envoy-max-retries: 2"];

    // No retry policy configured: the caller's headers make one (two retries of 5xx).
    let a = with_headers(&format!("http://{out}/flaky?key=xh1&fail=2"), &retry);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(flaky_attempts("xh1"), 3);
    // Envoy's x-envoy-upstream-service-time: the answering attempt's milliseconds.
    assert!(a
        .text()
        .to_ascii_lowercase()
        .contains("x-envoy-upstream-service-time: "));
    // Taken off before the request went upstream.
    let last = app.last();
    assert_eq!(header(&last, "x-envoy-retry-on"), None);
    assert_eq!(header(&last, "x-envoy-max-retries"), None);
    // Without them, no retry.
    assert_eq!(
        get(&format!("http://{out}/flaky?key=xh2&fail=1")).status,
        503
    );
    assert_eq!(flaky_attempts("xh2"), 1);

    // A timeout of the request's own: 504 long before the listener's 15 s.
    let started = Instant::now();
    let slow = with_headers(
        &format!("http://{out}/slow"),
        &["x-envoy-upstream-rq-timeout-ms: 300"],
    );
    assert_eq!(slow.status, 504);
    assert!(started.elapsed() < Duration::from_secs(2));
    // A per-try timeout: the hanging first attempt is given up after 300 ms and retried.
    let started = Instant::now();
    let a = with_headers(
        &format!("http://{out}/flaky?key=xh3&fail=1&hang"),
        &[
            "x-envoy-retry-on: reset",
            "x-envoy-upstream-rq-per-try-timeout-ms: 300",
        ],
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(flaky_attempts("xh3"), 2);

    // At the edge, a request from outside the mesh: its x-envoy-* headers go, unheeded.
    let a = with_headers(&format!("http://{edge}/flaky?key=xh4&fail=1"), &retry);
    assert_eq!(a.status, 503);
    assert_eq!(flaky_attempts("xh4"), 1);
    let a = with_headers(
        &format!("http://{edge}/echo"),
        &[
            "x-envoy-fault-abort-request: 418",
            "x-envoy-decorator-operation: x",
        ],
    );
    assert_eq!(a.status, 200, "no fault from outside: {}", a.text());
    let last = app.last();
    assert!(
        last.keys().all(|k| !k.as_str().starts_with("x-envoy-")),
        "{last:?}"
    );
}

#[test]
fn a_route_timeout_replaces_the_listeners_and_a_callers_own_wins() {
    let app = App::start();
    let yaml = format!(
        "node_id: caller
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    timeouts: {{ request: 1s }}
    upstream:
      routes:
        - {{ path: /slow, headers: [{{ name: x-patient, present_match: true }}], cluster: app, timeout: 0s }}
        - {{ host: elsewhere, cluster: app }}
        - {{ path: /slow, cluster: app, timeout: 300ms }}
      clusters:
        app: ['{app}']
",
        app = app.addr
    );
    let proxy = Proxy::start(&yaml, &["out"]);
    let out = proxy.addr("out");
    // The route's 300 ms, not the listener's 1 s.
    let started = Instant::now();
    assert_eq!(get(&format!("http://{out}/slow")).status, 504);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(900),
        "{took:?}"
    );
    // `0s`: no limit at all, so the app's 3 s answer comes back although the listener's is 1 s.
    let a = with_headers(&format!("http://{out}/slow"), &["x-patient: 1"]);
    assert_eq!(a.status, 200, "{}", a.text());
    // A caller's own limit wins over the route's.
    let started = Instant::now();
    let a = with_headers(
        &format!("http://{out}/slow"),
        &["x-patient: 1", "x-envoy-upstream-rq-timeout-ms: 200"],
    );
    assert_eq!(a.status, 504);
    assert!(started.elapsed() < Duration::from_secs(2));
    // Other routes keep the listener's.
    let started = Instant::now();
    let a = with_headers(&format!("http://{out}/slow"), &["host: elsewhere"]);
    assert_eq!(a.status, 504);
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[test]
fn proxy_spawn_upstream_span_gives_each_attempt_its_own_span_and_the_app_the_last_as_parent() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let app = App::start();
    let yaml = format!(
        "node_id: caller
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    retry_policy: {{ retry_on: 5xx, num_retries: 2, retry_back_off: {{ base_interval: 1ms }} }}
    timeouts: {{ request: 1s }}
    upstream:
      routes: [{{ path_prefix: /, cluster: app }}]
      clusters:
        app: ['{app}']
{tracing}  spawn_upstream_span: true
",
        app = app.addr,
        tracing = tracing_block(server.addr("zipkin"), "b3multi"),
    );
    let proxy = Proxy::start(&yaml, &["out"]);
    let out = proxy.addr("out");
    let traced = |tid: &str, path: &str| {
        curl(&[
            "-H",
            &format!("x-b3-traceid: {tid}"),
            "-H",
            "x-b3-spanid: 2222222222222222",
            "-H",
            "x-b3-sampled: 1",
            &format!("http://{out}{path}"),
        ])
    };

    // The first attempt answers 503, the second 200.
    let tid = "5555555555555555aaaaaaaaaaaaaaa1";
    let a = traced(tid, "/flaky?key=spawn1&fail=1");
    assert_eq!(a.status, 200, "{}", a.text());
    let t = trace_with(&server, tid, 3);
    let spans = t["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 3, "{t:#}");
    let listener = spans
        .iter()
        .find(|s| parent_of(s).as_deref() == Some("2222222222222222"))
        .expect("the listener's span, child of the caller's");
    assert_eq!(
        tag_str(listener, "span.kind"),
        "server",
        "a SERVER span when spawning"
    );
    assert_eq!(tag_str(listener, "upstream_retries"), "1");
    let mut attempts: Vec<&serde_json::Value> = spans
        .iter()
        .filter(|s| parent_of(s).as_deref() == listener["spanID"].as_str())
        .collect();
    attempts.sort_by_key(|s| tag_str(s, "upstream_attempt"));
    assert_eq!(attempts.len(), 2, "{t:#}");
    for (i, s) in attempts.iter().enumerate() {
        assert_eq!(s["operationName"], "router app egress");
        assert_eq!(tag_str(s, "span.kind"), "client");
        assert_eq!(tag_str(s, "upstream_attempt"), (i + 1).to_string());
        assert_eq!(tag_str(s, "upstream_address"), app.addr.to_string());
        assert_eq!(tag_str(s, "component"), "proxy");
    }
    assert_eq!(tag_str(attempts[0], "http.status_code"), "503");
    assert_eq!(tag_str(attempts[0], "error"), "true");
    assert_eq!(tag_str(attempts[1], "http.status_code"), "200");
    assert!(tag(attempts[1], "error").is_none());
    // Each attempt within the listener's span, the second after the first.
    let start = |s: &serde_json::Value| s["startTime"].as_u64().unwrap();
    let end = |s: &serde_json::Value| start(s) + s["duration"].as_u64().unwrap();
    assert!(start(attempts[0]) >= start(listener) && end(attempts[1]) <= end(listener));
    assert!(start(attempts[1]) >= end(attempts[0]));
    // The app's parent is the answering attempt, not the listener's span.
    let h = app.last();
    assert_eq!(header(&h, "x-b3-spanid"), attempts[1]["spanID"].as_str());
    assert_eq!(header(&h, "x-b3-parentspanid"), listener["spanID"].as_str());
    assert_eq!(header(&h, "x-b3-traceid"), Some(tid));

    // An attempt that gets no answer in time: its span says so, and so does the listener's.
    let tid = "5555555555555555aaaaaaaaaaaaaaa2";
    assert_eq!(traced(tid, "/slow").status, 504);
    let t = trace_with(&server, tid, 2);
    let attempt = t["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["operationName"] == "router app egress")
        .cloned()
        .expect("the attempt's span");
    assert_eq!(tag_str(&attempt, "error"), "true");
    assert_eq!(tag_str(&attempt, "response_flags"), "UT");
    assert!(tag(&attempt, "http.status_code").is_none(), "{attempt:#}");

    // Unsampled: no spans, and the app's parent is the proxy's own id as before.
    let a = curl(&[
        "-H",
        "x-b3-traceid: 5555555555555555aaaaaaaaaaaaaaa3",
        "-H",
        "x-b3-spanid: 2222222222222222",
        "-H",
        "x-b3-sampled: 0",
        &format!("http://{out}/echo"),
    ]);
    assert_eq!(a.status, 200);
    let h = app.last();
    assert_eq!(header(&h, "x-b3-sampled"), Some("0"));
    assert_eq!(header(&h, "x-b3-parentspanid"), Some("2222222222222222"));
}

#[test]
fn proxy_forces_traces_and_names_spans_with_envoys_decorator_headers() {
    let dir = tempfile::tempdir().unwrap();
    let server = AllInOne::start(dir.path(), &[]);
    let app = App::start();
    let tracing = tracing_block(server.addr("zipkin"), "b3multi");
    // Nothing sampled by chance: only forced traces are recorded.
    let tracing = format!("{tracing}  sampling: {{ random: 0 }}\n");
    let inbound = Proxy::start(
        &format!(
            "node_id: app-in
listeners:
  - name: inbound
    mode: inbound
    listen: 127.0.0.1:0
    upstream: '{}'
    response_headers_to_add: [{{ header: {{ key: x-envoy-decorator-operation, value: orders.v2 }} }}]
{tracing}",
            app.addr
        ),
        &["inbound"],
    );
    let outbound = Proxy::start(
        &format!(
            "node_id: caller-out
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes: [{{ path_prefix: /, cluster: app, name: list-orders }}]
      clusters:
        app: ['{}']
  - name: edge
    mode: edge
    listen: 127.0.0.1:0
    upstream: '{}'
{tracing}",
            inbound.addr("inbound"),
            app.addr
        ),
        &["out", "edge"],
    );
    let call = |listener: &str, headers: &[&str]| {
        let mut args = vec!["-D", "-"];
        for h in headers {
            args.extend(["-H", h]);
        }
        let url = format!("http://{}/orders", outbound.addr(listener));
        args.push(&url);
        curl(&args)
    };

    // Forced: recorded although nothing is sampled, and the request id comes back.
    let a = call(
        "out",
        &["x-envoy-force-trace: true", "x-request-id: forced-1"],
    );
    assert_eq!(a.status, 200);
    assert!(
        a.text()
            .to_ascii_lowercase()
            .contains("x-request-id: forced-1"),
        "{}",
        a.text()
    );
    let h = app.last();
    assert_eq!(header(&h, "x-b3-sampled"), Some("1"));
    assert_eq!(
        header(&h, "x-envoy-decorator-operation"),
        Some("list-orders")
    );
    let tid = header(&h, "x-b3-traceid").unwrap().to_owned();
    let t = trace_with(&server, &tid, 2);
    let names: Vec<&str> = t["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["operationName"].as_str().unwrap())
        .collect();
    // The inbound server span took the caller's route name; the outbound client span the name
    // the upstream answered with.
    assert!(names.contains(&"list-orders"), "{names:?}");
    assert!(names.contains(&"orders.v2"), "{names:?}");

    // Not forced: not sampled, and no request id echoed.
    let a = call("out", &["x-request-id: plain-1"]);
    assert_eq!(a.status, 200);
    assert!(!a
        .text()
        .to_ascii_lowercase()
        .contains("x-request-id: plain-1"));
    assert_eq!(header(&app.last(), "x-b3-sampled"), Some("0"));
    // From outside the mesh the header is removed at the edge: nothing forced.
    assert_eq!(call("edge", &["x-envoy-force-trace: true"]).status, 200);
    let h = app.last();
    assert_eq!(header(&h, "x-b3-sampled"), Some("0"));
    assert_eq!(header(&h, "x-envoy-force-trace"), None);
}

#[test]
fn proxy_retry_budget_replaces_max_active_retries() {
    let app = App::start();
    let yaml = |budget: &str| {
        format!(
            "node_id: caller
admin: 127.0.0.1:0
listeners:
  - name: out
    mode: outbound
    listen: 127.0.0.1:0
    retry_policy: {{ retry_on: 5xx, num_retries: 2, retry_back_off: {{ base_interval: 1ms }}, max_active_retries: 10 }}
    upstream:
      routes: [{{ path_prefix: /, cluster: app }}]
      clusters:
        app:
          endpoints: ['{app}']
          circuit_breakers: {{ retry_budget: {budget} }}
",
            app = app.addr
        )
    };
    // A budget of nothing: no retry, although max_active_retries would allow ten.
    let none = Proxy::start(
        &yaml("{ budget_percent: { value: 0 }, min_retry_concurrency: 0 }"),
        &["out", "admin"],
    );
    let a = get(&format!(
        "http://{}/flaky?key=budget1&fail=1",
        none.addr("out")
    ));
    assert_eq!(a.status, 503);
    assert_eq!(flaky_attempts("budget1"), 1);
    let metrics = get(&format!("http://{}/metrics", none.addr("admin"))).text();
    assert!(
        metrics.contains("meshtrace_proxy_upstream_retry_overflow_total 1"),
        "{metrics}"
    );
    // Envoy's defaults (20%, at least 3): the retry goes.
    let some = Proxy::start(&yaml("{}"), &["out"]);
    let a = get(&format!(
        "http://{}/flaky?key=budget2&fail=1",
        some.addr("out")
    ));
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(flaky_attempts("budget2"), 2);
    let err = refused(&yaml("{ budget_percent: { value: 101 } }"));
    assert!(
        err.contains("retry_budget.budget_percent 101 is not a percentage"),
        "{err}"
    );
}
