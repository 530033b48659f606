//! `meshtrace demo` end to end: the real binary runs the whole mesh (backend, collector, edge,
//! six sidecars, three OpenTelemetry-SDK services, traffic); the test reads what was stored
//! through the public Jaeger API only, and checks the traces on its own terms (not with the
//! demo's checker): one tree holding the edge, every sidecar and every app; the service graph
//! edge → a → b → c; at 10% sampling only whole traces, each one kept by the OTel Collector's
//! hash-seed rule (the independent Python reference decides).

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The sidecars and the edge, by the `node_id` tag of their spans.
const PROXIES: [&str; 6] = [
    "edge-gateway",
    "service-a-inbound",
    "service-a-outbound",
    "service-b-inbound",
    "service-b-outbound",
    "service-c-inbound",
];
const APPS: [&str; 3] = ["service-a", "service-b", "service-c"];

/// A running `meshtrace demo`; its stdout lines are collected.
struct Demo {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshtrace"))
            .args(["demo", "--query", "127.0.0.1:0", "--dir"])
            .arg(dir.path())
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn meshtrace demo");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("[demo] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Demo {
            child: Some(child),
            lines,
            dir,
        }
    }

    /// The first stdout line containing `marker`, waiting up to `timeout`.
    fn line(&self, marker: &str, timeout: Duration) -> String {
        common::eventually(timeout, || {
            self.lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(marker))
                .cloned()
        })
        .unwrap_or_else(|| {
            panic!(
                "the demo printed no {marker:?} in {timeout:?}; logs in {}",
                self.dir.path().display()
            )
        })
    }

    fn query(&self) -> String {
        let line = self.line("meshtrace: query listening on ", Duration::from_secs(120));
        line.split_whitespace().nth(4).expect("address").to_owned()
    }

    /// Waits for the demo to exit by itself (or after `signal`); returns its exit code.
    fn wait(&mut self, signal: Option<&str>, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        if let Some(sig) = signal {
            let ok = Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(ok.success());
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Processes still running that the demo started (they carry MESHTRACE_DEMO_DIR=<dir>).
    fn leftover_processes(&self) -> Vec<String> {
        let mark = format!("MESHTRACE_DEMO_DIR={}", self.dir.path().display());
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if environ.split(|b| *b == 0).any(|v| v == mark.as_bytes()) {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
            }
        }
        found
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

/// One span, as the test reads it from Jaeger's JSON.
struct SpanView {
    id: String,
    parent: Option<String>,
    service: String,
    kind: String,
    node_id: Option<String>,
    datacenter: Option<String>,
}

fn spans(trace: &Value) -> Vec<SpanView> {
    let processes = &trace["processes"];
    trace["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| {
            let tag = |k: &str| {
                s["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|t| t["key"] == k)
                    .and_then(|t| t["value"].as_str())
                    .map(str::to_owned)
            };
            SpanView {
                id: s["spanID"].as_str().unwrap().to_owned(),
                parent: s["references"]
                    .as_array()
                    .and_then(|r| r.first())
                    .map(|r| r["spanID"].as_str().unwrap().to_owned()),
                service: processes[s["processID"].as_str().unwrap()]["serviceName"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                kind: tag("span.kind").unwrap_or_else(|| "internal".into()),
                node_id: tag("node_id"),
                datacenter: tag("datacenter"),
            }
        })
        .collect()
}

/// Why `trace` is not one whole tree of the mesh, or `None` when it is.
fn not_whole(trace: &Value) -> Option<String> {
    let spans = spans(trace);
    let ids: HashSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    let roots = spans.iter().filter(|s| s.parent.is_none()).count();
    let orphans = spans
        .iter()
        .filter(|s| s.parent.as_deref().is_some_and(|p| !ids.contains(p)))
        .count();
    let proxies: BTreeSet<&str> = spans.iter().filter_map(|s| s.node_id.as_deref()).collect();
    let apps: BTreeSet<&str> = spans
        .iter()
        .filter(|s| s.node_id.is_none())
        .map(|s| s.service.as_str())
        .collect();
    let problems = [
        (spans.len() != 14).then(|| format!("{} spans", spans.len())),
        (roots != 1).then(|| format!("{roots} roots")),
        (orphans != 0).then(|| format!("{orphans} orphans")),
        (proxies != BTreeSet::from(PROXIES)).then(|| format!("proxies {proxies:?}")),
        (apps != BTreeSet::from(APPS)).then(|| format!("apps {apps:?}")),
    ];
    let p: Vec<String> = problems.into_iter().flatten().collect();
    (!p.is_empty()).then(|| p.join(", "))
}

#[test]
fn demo_runs_the_mesh_and_one_trace_holds_the_edge_every_sidecar_and_every_app() {
    let mut demo = Demo::start(&["--rate", "20"]);
    let query = demo.query();
    let link = demo.line("first trace stored: ", Duration::from_secs(120));
    let id = link.rsplit('/').next().unwrap().to_owned();
    assert!(
        link.contains(&format!("http://{query}/trace/{id}")),
        "{link}"
    );

    let trace = &common::get_json(&format!("http://{query}/api/traces/{id}"))["data"][0];
    assert_eq!(not_whole(trace), None, "{trace:#}");
    let spans = spans(trace);
    let by_id: HashMap<&str, &SpanView> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let parent_of = |s: &SpanView| s.parent.as_deref().map(|p| by_id[p]);
    // Who called whom: the SDK continued the inbound sidecar's B3 context, and the outbound
    // sidecar continued the SDK's CLIENT span.
    for app in APPS {
        let server = spans
            .iter()
            .find(|s| s.node_id.is_none() && s.service == app && s.kind == "server")
            .unwrap_or_else(|| panic!("no SERVER span of {app}"));
        let inbound = parent_of(server).expect("parent");
        assert_eq!(
            inbound.node_id.as_deref(),
            Some(format!("{app}-inbound").as_str())
        );
        assert_eq!(inbound.kind, "server");
    }
    for app in ["service-a", "service-b"] {
        let outbound = spans
            .iter()
            .find(|s| s.node_id.as_deref() == Some(&format!("{app}-outbound")))
            .unwrap();
        let client = parent_of(outbound).expect("parent");
        assert_eq!(
            (client.service.as_str(), client.kind.as_str()),
            (app, "client")
        );
        assert!(client.node_id.is_none(), "the SDK's CLIENT span");
    }
    let root = spans.iter().find(|s| s.parent.is_none()).unwrap();
    assert_eq!(
        (root.service.as_str(), root.node_id.as_deref()),
        ("edge", Some("edge-gateway"))
    );
    // The collector's attributes processor tagged every span.
    assert!(
        spans
            .iter()
            .all(|s| s.datacenter.as_deref() == Some("local-dc1")),
        "datacenter on every span"
    );

    // The service graph: exactly edge → a → b → c.
    let deps = common::get_json(&format!(
        "http://{query}/api/dependencies?endTs={}&lookback=3600000",
        common::now_micros() / 1000
    ));
    let edges: BTreeSet<(String, String)> = deps["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert!(d["callCount"].as_u64().unwrap() >= 1, "{d}");
            (
                d["parent"].as_str().unwrap().to_owned(),
                d["child"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("edge", "service-a"),
        ("service-a", "service-b"),
        ("service-b", "service-c"),
    ]
    .into_iter()
    .map(|(p, c)| (p.to_owned(), c.to_owned()))
    .collect();
    assert_eq!(edges, want);
    // The web UI is served where --query said.
    let ui = common::get(&format!("http://{query}/trace/{id}"));
    assert_eq!(ui.status, 200);

    // Ctrl-C: everything stops cleanly, no child left behind (all 11 are found while running).
    let running = demo.leftover_processes();
    assert_eq!(running.len(), 11, "{running:#?}");
    assert_eq!(demo.wait(Some("-INT"), Duration::from_secs(90)), Some(0));
    let left = common::eventually(Duration::from_secs(10), || {
        let l = demo.leftover_processes();
        l.is_empty().then_some(())
    });
    assert!(left.is_some(), "{:?}", demo.leftover_processes());
}

#[test]
fn demo_at_ten_percent_stores_only_whole_traces_chosen_by_trace_id() {
    let started_us = common::now_micros();
    let mut demo = Demo::start(&["--sampling", "10", "--rate", "30", "--duration", "30s"]);
    let query = demo.query();
    demo.line("sending 30 requests/s", Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(20));
    // Traces that started at least 8 s ago have had time to be reported by every hop.
    let end = common::now_micros() - 8_000_000;
    let found = common::get_json(&format!(
        "http://{query}/api/traces?service=edge&start={started_us}&end={end}&limit=100000"
    ));
    let traces = found["data"].as_array().unwrap();
    assert!(!traces.is_empty(), "some traces are kept at 10%");
    let mut ids = Vec::new();
    for t in traces {
        assert_eq!(not_whole(t), None, "a stored trace is whole: {t:#}");
        ids.push(t["traceID"].as_str().unwrap().to_owned());
    }
    // Every trace kept is one the OTel Collector's hash_seed rule keeps (seed 22, 10%).
    let kept = common::sampling_reference(22, "10", "hash_seed", &ids);
    let ids: BTreeSet<String> = ids.into_iter().collect();
    assert_eq!(kept, ids, "stored traces the reference drops");

    assert_eq!(demo.wait(None, Duration::from_secs(120)), Some(0));
    // The summary: about a tenth of the requests became stored traces, none broken.
    let summary = demo
        .lines
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|l| l.contains(" traces stored ("))
        .cloned()
        .expect("a summary line");
    let [requests, stored, complete, broken] =
        [" requests", " traces stored", " complete", " broken"]
            .map(|word| number_before(&summary, word));
    assert_eq!(broken, 0, "{summary}");
    assert_eq!(stored, complete, "{summary}");
    assert!(requests >= 300, "{summary}");
    assert!(
        stored * 100 >= requests * 3 && stored * 100 <= requests * 20,
        "≈10% of {requests} requests kept, got {stored}: {summary}"
    );
    assert!(stored as usize >= traces.len(), "{summary}");
}

/// The number just before `word` in `line` ("804 requests" → 804).
fn number_before(line: &str, word: &str) -> u64 {
    let at = line
        .find(word)
        .unwrap_or_else(|| panic!("{word:?} in {line}"));
    let digits: String = line[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}
