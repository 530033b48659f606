//! Peers for the `meshtrace proxy` tests: a tiny hyper app that records the headers it gets,
//! `meshtrace proxy` processes on port 0, and readers of the collector's Jaeger API.
//!
//! The app is served with hyper's server and hyper-util's `auto` builder; those features reach
//! the tests through the `proxy` crate (cargo unifies features within the workspace).
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::Value;

use crate::common::*;

// ---------------------------------------------------------------- the app

/// Headers of every request the app got, in order.
pub type Seen = Arc<Mutex<Vec<hyper::HeaderMap>>>;

pub struct App {
    pub addr: SocketAddr,
    pub seen: Seen,
    /// The status `/healthz` answers (200 to begin with).
    pub health: Arc<AtomicU16>,
    _runtime: tokio::runtime::Runtime,
}

impl App {
    /// `/echo` answers "ok"; `/version` the request's HTTP version and authority; `/slow` answers
    /// after 3 s; `/stream?n=N` streams N chunks of 64 KiB,
    /// one every 20 ms; `/count` reads the request body as it comes and answers its length;
    /// `/gate` sends one chunk, then waits for a byte-count request... see tests;
    /// `/flaky?key=K&fail=N` fails its first N requests with key K (503, or with `&hang` no
    /// answer for 3 s), then answers `attempt I body B` (B: the request body's length);
    /// `/healthz` answers with the status in [`App::health`]; `/json?n=N` N bytes of JSON.
    pub fn start() -> App {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let seen: Seen = Arc::default();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let seen2 = seen.clone();
        let health: Arc<AtomicU16> = Arc::new(AtomicU16::new(200));
        let health2 = health.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (seen, health) = (seen2.clone(), health2.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        app(req, seen.clone(), health.load(Ordering::Relaxed))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
                });
            }
        });
        App {
            addr,
            seen,
            health,
            _runtime: runtime,
        }
    }

    pub fn last(&self) -> hyper::HeaderMap {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the app saw a request")
    }
}

pub type AppBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub async fn app(
    req: hyper::Request<hyper::body::Incoming>,
    seen: Seen,
    health: u16,
) -> Result<hyper::Response<AppBody>, Infallible> {
    seen.lock().unwrap().push(req.headers().clone());
    let full = |s: String| http_body_util::Full::new(Bytes::from(s)).boxed();
    let body = match req.uri().path() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            full("late".into())
        }
        "/stream" => {
            let n: usize = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("n="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(4);
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
            tokio::spawn(async move {
                for i in 0..n {
                    let chunk = Bytes::from(vec![b'a' + (i % 26) as u8; 64 * 1024]);
                    if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            StreamBody::new(stream).boxed()
        }
        "/count" => {
            let mut body = req.into_body();
            let mut n = 0usize;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map_or(0, |d| d.len()),
                    Err(_) => break,
                }
            }
            full(format!("{n}"))
        }
        "/flaky" => return Ok(flaky(req).await),
        "/json" => {
            // A JSON answer of about n bytes, typed.
            let n: usize = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("n="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(100);
            let body = format!("{{\"x\":\"{}\"}}", "a".repeat(n.saturating_sub(8)));
            let mut r = hyper::Response::new(full(body));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            return Ok(r);
        }
        "/healthz" => {
            let mut r = hyper::Response::new(full(format!("health {health}")));
            *r.status_mut() = hyper::StatusCode::from_u16(health).unwrap();
            return Ok(r);
        }
        "/version" => {
            // The HTTP version the request came in, and its authority as the app sees it.
            let authority = req
                .headers()
                .get(hyper::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .or_else(|| req.uri().authority().map(|a| a.to_string()))
                .unwrap_or_default();
            full(format!("{:?} {authority}", req.version()))
        }
        _ => full("ok".into()),
    };
    Ok(hyper::Response::new(body))
}

/// Requests `/flaky` got, by key.
static FLAKY: Mutex<Vec<(String, usize)>> = Mutex::new(Vec::new());

/// How many requests `/flaky` got with `key`.
pub fn flaky_attempts(key: &str) -> usize {
    FLAKY
        .lock()
        .unwrap()
        .iter()
        .find(|(k, _)| k == key)
        .map_or(0, |(_, n)| *n)
}

async fn flaky(req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<AppBody> {
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let key = param("key").unwrap_or_default();
    let fail: usize = param("fail").and_then(|n| n.parse().ok()).unwrap_or(0);
    let body = req.into_body().collect().await.map(|b| b.to_bytes().len());
    let attempt = {
        let mut seen = FLAKY.lock().unwrap();
        match seen.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                seen.push((key, 1));
                1
            }
        }
    };
    let full = |s: String| http_body_util::Full::new(Bytes::from(s)).boxed();
    if attempt <= fail {
        if param("hang").is_some() {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let mut r = hyper::Response::new(full(format!("failing attempt {attempt}")));
        *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
        return r;
    }
    let len = body.map_or_else(|e| format!("unread: {e}"), |n| n.to_string());
    hyper::Response::new(full(format!("attempt {attempt} body {len}")))
}

// ---------------------------------------------------------------- the proxy process

/// A running `meshtrace proxy` and its config file; killed when dropped.
pub struct Proxy {
    proc: Proc,
    _config: tempfile::NamedTempFile,
}

impl Proxy {
    /// Runs `meshtrace proxy` with `yaml`; waits for `listeners` (+ admin) to be announced.
    pub fn start(yaml: &str, listeners: &[&str]) -> Proxy {
        let mut config = tempfile::NamedTempFile::new().unwrap();
        config.write_all(yaml.as_bytes()).unwrap();
        let mut cmd = Proc::command(&["proxy", "--config"]);
        cmd.arg(config.path()).env("MESHTRACE_TEST_POD", "pod-7");
        Proxy {
            proc: Proc::start(cmd, listeners),
            _config: config,
        }
    }

    pub fn addr(&self, name: &str) -> &str {
        self.proc.addr(name)
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(self) -> Option<i32> {
        self.proc.terminate()
    }
}

/// Runs `meshtrace proxy` on `yaml`, which it must refuse to start with; returns its stderr.
/// Each `(from, to, want)`: `yaml` with its first `from` made `to` is refused, and the error
/// says `want`.
pub fn refuses_each(yaml: &str, cases: &[(&str, &str, &str)]) {
    for (from, to, want) in cases {
        assert!(yaml.contains(from), "{from:?} is not in the config");
        let err = refused(&yaml.replacen(from, to, 1));
        assert!(err.contains(want), "{to}: {err}");
    }
}

pub fn refused(yaml: &str) -> String {
    let mut config = tempfile::NamedTempFile::new().unwrap();
    config.write_all(yaml.as_bytes()).unwrap();
    let out = Proc::command(&["proxy", "--config"])
        .arg(config.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the proxy started with {yaml}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn tracing_block(collector: &str, propagation: &str) -> String {
    format!(
        r#"tracing:
  collector: http://{collector}/api/v2/spans
  protocol: zipkin-json
  propagation: [{propagation}]
  flush: {{ count: 100, interval: 100ms }}
  custom_tags:
    - {{ tag: pod, environment: MESHTRACE_TEST_POD }}
    - {{ tag: tenant, request_header: x-tenant }}
"#
    )
}

/// edge → outbound → inbound → app, each its own process; returns them in that order.
pub fn chain(app: SocketAddr, collector: &str, propagation: &str) -> (Proxy, Proxy, Proxy) {
    let tracing = tracing_block(collector, propagation);
    let inbound = Proxy::start(
        &format!(
            "node_id: app-sidecar-in\nzone: zone-b\nlisteners:\n  - {{name: inbound, mode: inbound, listen: '127.0.0.1:0', upstream: '{app}'}}\n{tracing}"
        ),
        &["inbound"],
    );
    let outbound = Proxy::start(
        &format!(
            r#"node_id: caller-sidecar-out
zone: zone-a
admin: 127.0.0.1:0
listeners:
  - name: outbound
    mode: outbound
    listen: 127.0.0.1:0
    upstream:
      routes:
        - {{ path_prefix: /api, cluster: app, name: api-call }}
        - {{ host: app.mesh, cluster: app }}
      clusters:
        app: ['{}']
{tracing}"#,
            inbound.addr("inbound")
        ),
        &["outbound", "admin"],
    );
    let edge = Proxy::start(
        &format!(
            "node_id: edge-1\nzone: zone-a\nlisteners:\n  - {{name: edge, mode: edge, listen: '127.0.0.1:0', upstream: '{}'}}\n{tracing}",
            outbound.addr("outbound")
        ),
        &["edge"],
    );
    (edge, outbound, inbound)
}

pub fn header<'a>(h: &'a hyper::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Polls the collector until trace `id` has `n` spans.
pub fn trace_with(server: &AllInOne, id: &str, n: usize) -> Value {
    eventually(Duration::from_secs(20), || {
        let a = get(&server.query_url(&format!("/api/traces/{id}")));
        if a.status != 200 {
            return None;
        }
        let t = a.json()["data"][0].clone();
        (t["spans"].as_array().map_or(0, Vec::len) >= n).then_some(t)
    })
    .unwrap_or_else(|| {
        panic!(
            "trace {id} did not reach {n} spans: {}",
            get(&server.query_url(&format!("/api/traces/{id}"))).text()
        )
    })
}

pub fn parent_of(span: &Value) -> Option<String> {
    span["references"]
        .as_array()?
        .iter()
        .find(|r| r["refType"] == "CHILD_OF")
        .and_then(|r| r["spanID"].as_str())
        .map(str::to_owned)
}

pub fn service_of(trace: &Value, span: &Value) -> String {
    let pid = span["processID"].as_str().unwrap();
    trace["processes"][pid]["serviceName"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn tag_str(span: &Value, key: &str) -> String {
    match tag(span, key) {
        Some((_, Value::String(s))) => s,
        Some((_, v)) => v.to_string(),
        None => panic!("span has no tag {key}: {span:#}"),
    }
}

/// The app's own span, reported as the app would (Zipkin JSON, child of the headers it got).
pub fn report_app_span(server: &AllInOne, trace_id: &str, parent: &str) -> String {
    let id = "a1a2a3a4a5a6a7a8";
    let now = now_micros();
    let body = serde_json::json!([{
        "traceId": trace_id, "id": id, "parentId": parent, "kind": "SERVER",
        "name": "app handler", "timestamp": now, "duration": 100,
        "localEndpoint": {"serviceName": "app"}
    }]);
    let url = format!("http://{}/api/v2/spans", server.addr("zipkin"));
    let a = post(
        &url,
        &["Content-Type: application/json"],
        &serde_json::to_vec(&body).unwrap(),
    );
    assert_eq!(a.status, 202, "{}", a.text());
    id.to_owned()
}

pub fn single(app: SocketAddr, collector: Option<&str>, extra: &str) -> Proxy {
    let tracing = collector.map_or_else(String::new, |c| tracing_block(c, "b3multi"));
    Proxy::start(
        &format!(
            "node_id: side\nadmin: 127.0.0.1:0\nlisteners:\n  - name: in\n    mode: inbound\n    listen: 127.0.0.1:0\n    upstream: '{app}'\n{extra}{tracing}"
        ),
        &["in", "admin"],
    )
}

/// An address on 127.0.0.1 nobody listens on (bound, then let go).
pub fn dead_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
