//! Helpers for the `meshtrace collector` tests: run the real binary (collector, and an
//! all-in-one backend on a chosen port), and a tiny HTTP server that records what exporters send.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::common::Proc;

/// Sends the Python SDK's 4-span trace (tests/python/send_trace.py) through `exporter` to
/// `endpoint`; asserts every export succeeded and returns the trace id.
pub fn send_sdk_trace(exporter: &str, endpoint: &str, service: &str) -> String {
    send_sdk_trace_with(exporter, endpoint, service, &[])
}

/// [`send_sdk_trace`] with more arguments for the script (`--ca`, `--cert`, `--key` for TLS).
pub fn send_sdk_trace_with(exporter: &str, endpoint: &str, service: &str, more: &[&str]) -> String {
    let mut args = vec![exporter, endpoint, service];
    args.extend(more);
    let out = crate::common::python(".venv", "send_trace.py", &args);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("script output is JSON");
    assert_eq!(
        v["exports_ok"], true,
        "the collector refused an export: {v}"
    );
    v["trace_id"].as_str().expect("trace id").to_owned()
}

/// Writes `config` to `dir/collector.yaml` and starts `meshtrace collector` on it.
pub fn collector(dir: &Path, config: &str, expect: &[&str]) -> Proc {
    let path = dir.join("collector.yaml");
    std::fs::write(&path, config).expect("write config");
    Proc::spawn(
        &["collector", "--config", path.to_str().expect("utf8 path")],
        expect,
    )
}

/// Runs `meshtrace collector validate --config FILE`: (exit code, stdout, stderr).
pub fn validate(dir: &Path, config: &str) -> (i32, String, String) {
    let path = dir.join("validate.yaml");
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_meshtrace"))
        .args(["collector", "validate", "--config"])
        .arg(&path)
        .output()
        .expect("run meshtrace");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `meshtrace all-in-one` with its OTLP gRPC receiver on `otlp_grpc` (a fixed port, so a
/// backend can come back where the collector expects it).
pub fn all_in_one(data_dir: &Path, otlp_grpc: &str) -> Proc {
    Proc::spawn(
        &[
            "all-in-one",
            "--data-dir",
            data_dir.to_str().expect("utf8 path"),
            "--otlp-grpc",
            otlp_grpc,
            "--otlp-http",
            "127.0.0.1:0",
            "--zipkin",
            "127.0.0.1:0",
            "--query",
            "127.0.0.1:0",
        ],
        &["otlp-grpc", "query"],
    )
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Spans a collector's receiver accepted over `transport` (`grpc`, `http`), from its metrics
/// (`metrics` must be among the addresses it was started expecting).
pub fn accepted_spans(c: &Proc, receiver: &str, transport: &str) -> u64 {
    let text = crate::common::get(&format!("http://{}/metrics", c.addr("metrics"))).text();
    let series = format!(
        "otelcol_receiver_accepted_spans_total{{receiver=\"{receiver}\",transport=\"{transport}\"}}"
    );
    text.lines()
        .find(|l| l.starts_with(&series))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Requests a [`Capture`] recorded: (path, body).
pub type Recorded = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A recording HTTP/1.1 server: stores (path, body) of every request and answers `status`.
pub struct Capture {
    pub addr: String,
    pub requests: Recorded,
    pub status: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
}

impl Capture {
    pub fn start() -> Capture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind capture");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr").to_string();
        let requests: Recorded = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, st) = (requests.clone(), status.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (r, s, st) = (r.clone(), s.clone(), st.clone());
                        std::thread::spawn(move || serve(conn, &r, &s, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Capture {
            addr,
            requests,
            status,
            stop,
        }
    }

    /// Request bodies received on `path`.
    pub fn bodies(&self, path: &str) -> Vec<Vec<u8>> {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Serves keep-alive requests on one connection (bounded by the connection and `stop`).
fn serve(
    conn: TcpStream,
    requests: &Mutex<Vec<(String, Vec<u8>)>>,
    status: &AtomicU16,
    stop: &AtomicBool,
) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while !stop.load(Ordering::Relaxed) {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_owned();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let h = header.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let code = status.load(Ordering::Relaxed);
        if code == 200 {
            requests.lock().expect("lock").push((path, body));
        }
        let reason = if code == 200 { "OK" } else { "Unavailable" };
        let answer = format!("HTTP/1.1 {code} {reason}\r\ncontent-length: 0\r\n\r\n");
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Trace ids (lowercase hex) in OTLP/JSON bodies.
pub fn otlp_json_trace_ids(bodies: &[Vec<u8>]) -> Vec<String> {
    let mut ids = Vec::new();
    for b in bodies {
        let v: serde_json::Value = serde_json::from_slice(b).expect("OTLP JSON body");
        for (_, s) in spans_of(&v) {
            ids.push(s["traceId"].as_str().expect("traceId").to_lowercase());
        }
    }
    ids
}

/// Every span in OTLP/JSON bodies, with its resource's attributes, in order (bodies that are
/// not JSON, e.g. still being written, are skipped).
pub fn otlp_json_spans(bodies: &[Vec<u8>]) -> Vec<(serde_json::Value, serde_json::Value)> {
    bodies
        .iter()
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .flat_map(|v| spans_of(&v))
        .collect()
}

/// The span named `name` in OTLP/JSON bodies, if one is there.
pub fn otlp_json_span(bodies: &[Vec<u8>], name: &str) -> Option<serde_json::Value> {
    otlp_json_spans(bodies)
        .into_iter()
        .map(|(_, s)| s)
        .find(|s| s["name"] == name)
}

/// The value of attribute `key` in an OTLP/JSON attribute list (`{"stringValue": ...}`, ...).
pub fn otlp_json_attr(attributes: &serde_json::Value, key: &str) -> Option<serde_json::Value> {
    attributes
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == key))
        .map(|kv| kv["value"].clone())
}

fn spans_of(v: &serde_json::Value) -> Vec<(serde_json::Value, serde_json::Value)> {
    let mut out = Vec::new();
    for rs in v["resourceSpans"].as_array().into_iter().flatten() {
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                out.push((rs["resource"]["attributes"].clone(), s.clone()));
            }
        }
    }
    out
}

/// An OTLP/JSON request with one span per trace id (span ids derived from `span_salt`).
pub fn otlp_json_request(trace_ids: &[String], service: &str, span_salt: u64) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let spans: Vec<serde_json::Value> = trace_ids
        .iter()
        .enumerate()
        .map(|(i, t)| {
            serde_json::json!({
                "traceId": t,
                "spanId": format!("{:016x}", (i as u64 + 1) ^ (span_salt << 32)),
                "name": "op",
                "kind": 2,
                "startTimeUnixNano": (now - 2_000_000).to_string(),
                "endTimeUnixNano": (now - 1_000_000).to_string()
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
            "scopeSpans": [{"scope": {"name": "collector-test"}, "spans": spans}]
        }]
    }))
    .expect("json")
}

/// `n` distinct pseudo-random 128-bit trace ids (xorshift, fixed seed: reproducible).
pub fn random_trace_ids(n: usize, seed: u64) -> Vec<String> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let id = format!("{:016x}{:016x}", next(), next());
        if id != "0".repeat(32) && seen.insert(id.clone()) {
            out.push(id);
        }
    }
    out
}
