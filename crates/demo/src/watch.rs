//! Watches what the backend stored, through its public Jaeger API (`/api/traces`), the way a
//! user would: every trace rooted at the edge is fetched once, a few seconds after it started
//! (time for every hop to report), and checked to be whole: one root, no orphan, and a span from
//! the edge, every sidecar on the path and every app.
//!
//! The search windows follow each other (`[previous end, now − settle]`), so each trace is
//! found once however long the demo runs; a trace whose root starts on a window's edge is
//! de-duplicated. A trace not whole when found is looked at again by id, and called broken only
//! if it is still not whole 30 s later (or at the end).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::topology::{EDGE, SERVICES};

/// Why the backend's answer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("the query API at {url} failed: {message}")]
    Request { url: String, message: String },
    #[error("the query API at {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the query API at {url} answered JSON without a data array")]
    Shape { url: String },
}

/// What the watcher has seen so far.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Traces rooted at the edge found in the backend.
    pub stored: u64,
    /// Of those, the whole ones.
    pub complete: u64,
    /// Of those, the ones missing a hop, with an orphan span, or with more than one root, and
    /// still so 30 s after they started (or at the end).
    pub broken: u64,
    /// Traces holding at least one error span.
    pub with_errors: u64,
    /// The first trace found, whole.
    pub first_complete: Option<String>,
    /// Why the last broken trace was broken (for the user to look at).
    pub last_broken: Option<(String, String)>,
}

impl Seen {
    fn whole(&mut self, id: String) {
        self.complete += 1;
        if self.first_complete.is_none() {
            self.first_complete = Some(id);
        }
    }
}

/// Polls the backend's query API.
pub struct Watcher {
    query: SocketAddr,
    client: Client<HttpConnector, Empty<Bytes>>,
    settle: Duration,
    since_us: u64,
    last_window: HashSet<String>,
    /// Traces not whole when first seen, looked at again later: a busy machine may deliver a
    /// hop's spans late, and only a trace still not whole then is broken.
    unsettled: Vec<(String, tokio::time::Instant)>,
    pub seen: Seen,
}

/// How long after first sight a trace that was not whole is looked at again.
const RECHECK_AFTER: Duration = Duration::from_secs(5);
/// How long after first sight a trace may still become whole.
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

impl Watcher {
    /// Watches traces that start from now on, each looked at `settle` after it started.
    pub fn new(query: SocketAddr, settle: Duration) -> Self {
        Watcher {
            query,
            client: Client::builder(TokioExecutor::new()).build_http(),
            settle,
            since_us: now_us(),
            last_window: HashSet::new(),
            unsettled: Vec::new(),
            seen: Seen::default(),
        }
    }

    /// Looks at the traces that started since the last call, up to `settle` ago.
    pub async fn poll(&mut self) -> Result<(), WatchError> {
        let end = now_us().saturating_sub(duration_us(self.settle));
        if end <= self.since_us {
            return Ok(());
        }
        let traces = self.fetch(end).await?;
        self.count(&traces, end);
        Ok(())
    }

    /// The last look, once traffic has stopped: every trace up to now, taken once what the
    /// backend holds for them has stopped changing (every hop has reported; the pipeline may
    /// lag behind on a busy machine), or after `max_wait`.
    pub async fn drain(&mut self, max_wait: Duration) -> Result<(), WatchError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let end = now_us();
        let mut last = None;
        loop {
            let traces = self.fetch(end).await?;
            let shape: (usize, usize) = (
                traces.len(),
                traces
                    .iter()
                    .filter_map(|t| t.get("spans").and_then(Value::as_array))
                    .map(Vec::len)
                    .sum(),
            );
            if last == Some(shape) || tokio::time::Instant::now() >= deadline {
                self.count(&traces, end);
                return Ok(());
            }
            last = Some(shape);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The traces rooted at the edge that started between the last look and `end`.
    async fn fetch(&self, end: u64) -> Result<Vec<Value>, WatchError> {
        let path = format!(
            "/api/traces?service={EDGE}&start={}&end={end}&limit=1000000",
            self.since_us
        );
        let mut answer = self.get(&path).await?;
        match answer.get_mut("data").map(Value::take) {
            Some(Value::Array(traces)) => Ok(traces),
            _ => Err(WatchError::Shape {
                url: self.url(&path),
            }),
        }
    }

    /// Counts and checks `traces` (each once), and moves the window on to `end`.
    fn count(&mut self, traces: &[Value], end: u64) {
        let mut window = HashSet::with_capacity(traces.len());
        for trace in traces {
            let id = trace
                .get("traceID")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if self.last_window.contains(&id) || !window.insert(id.clone()) {
                continue;
            }
            let check = check_trace(trace);
            let s = &mut self.seen;
            s.stored += 1;
            s.with_errors += u64::from(check.has_error);
            match check.problem {
                None => s.whole(id),
                Some(_) => self.unsettled.push((id, tokio::time::Instant::now())),
            }
        }
        self.last_window = window;
        self.since_us = end;
    }

    /// Looks again at the traces that were not whole: those now whole are counted so, those
    /// still not whole after [`GIVE_UP_AFTER`] (or now, with `last`) are broken.
    pub async fn recheck(&mut self, last: bool) {
        let now = tokio::time::Instant::now();
        let mut keep = Vec::new();
        for (id, since) in std::mem::take(&mut self.unsettled) {
            let age = now.duration_since(since);
            if age < RECHECK_AFTER && !last {
                keep.push((id, since));
                continue;
            }
            let problem = match self.get(&format!("/api/traces/{id}")).await {
                Ok(answer) => match answer.get("data").and_then(|d| d.get(0)) {
                    Some(t) => check_trace(t).problem,
                    None => Some("no longer found".to_owned()),
                },
                Err(e) => Some(e.to_string()),
            };
            match problem {
                None => self.seen.whole(id),
                Some(_) if age < GIVE_UP_AFTER && !last => keep.push((id, since)),
                Some(problem) => {
                    self.seen.broken += 1;
                    self.seen.last_broken = Some((id, problem));
                }
            }
        }
        self.unsettled = keep;
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.query)
    }

    async fn get(&self, path: &str) -> Result<Value, WatchError> {
        let url = self.url(path);
        let fail = |message: String| WatchError::Request {
            url: url.clone(),
            message,
        };
        let request = hyper::Request::get(&url)
            .body(Empty::new())
            .map_err(|e| fail(e.to_string()))?;
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .map_err(|_| fail("no answer in 30 s".into()))?
            .map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(WatchError::Status {
                url,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).chars().take(300).collect(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| fail(format!("invalid JSON: {e}")))
    }
}

/// What [`check_trace`] found.
#[derive(Debug, PartialEq)]
pub struct TraceCheck {
    /// Why the trace is not whole, if it is not.
    pub problem: Option<String>,
    pub has_error: bool,
}

/// Checks one trace in Jaeger's JSON: one root (the edge's span), every parent present, and
/// exactly the hops of the demo mesh (see [`crate::topology::SPANS_PER_TRACE`]).
pub fn check_trace(trace: &Value) -> TraceCheck {
    let empty = Vec::new();
    let spans = trace
        .get("spans")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let services: HashMap<&str, &str> = trace
        .get("processes")
        .and_then(Value::as_object)
        .map(|p| {
            p.iter()
                .filter_map(|(id, p)| Some((id.as_str(), p.get("serviceName")?.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let ids: HashSet<&str> = spans
        .iter()
        .filter_map(|s| s.get("spanID")?.as_str())
        .collect();

    let mut roots = Vec::new();
    let mut orphans = 0;
    let mut has_error = false;
    let mut hops: HashMap<String, usize> = HashMap::new();
    for span in spans {
        let tag = |key: &str| {
            span.get("tags")?
                .as_array()?
                .iter()
                .find(|t| t.get("key").and_then(Value::as_str) == Some(key))?
                .get("value")
                .cloned()
        };
        let parent = span
            .get("references")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(|r| r.get("spanID"))
            .and_then(Value::as_str);
        match parent {
            None => roots.push(span),
            Some(p) if !ids.contains(p) => orphans += 1,
            Some(_) => {}
        }
        has_error |= tag("error").is_some_and(|v| v == Value::Bool(true) || v == "true");
        let service = span
            .get("processID")
            .and_then(Value::as_str)
            .and_then(|p| services.get(p))
            .copied()
            .unwrap_or("?");
        let who = if tag("component").is_some_and(|v| v == "proxy") {
            "proxy"
        } else {
            "app"
        };
        let kind = tag("span.kind")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "internal".into());
        *hops.entry(format!("{service} {who} {kind}")).or_default() += 1;
    }

    let mut expected: HashMap<String, usize> = HashMap::new();
    expected.insert(format!("{EDGE} proxy server"), 1);
    for (i, s) in SERVICES.iter().enumerate() {
        for hop in ["proxy server", "app server", "app internal"] {
            expected.insert(format!("{} {hop}", s.name), 1);
        }
        if i + 1 < SERVICES.len() {
            for hop in ["app client", "proxy client"] {
                expected.insert(format!("{} {hop}", s.name), 1);
            }
        }
    }
    let mut problems = Vec::new();
    let mut wanted: Vec<_> = expected.iter().collect();
    wanted.sort();
    for (hop, n) in wanted {
        let got = hops.get(hop).copied().unwrap_or(0);
        if got != *n {
            problems.push(format!("{got} spans for {hop} (want {n})"));
        }
    }
    let mut extra: Vec<_> = hops.keys().filter(|h| !expected.contains_key(*h)).collect();
    extra.sort();
    for hop in extra {
        problems.push(format!("unexpected span {hop}"));
    }
    if roots.len() != 1 {
        problems.push(format!("{} roots (want 1)", roots.len()));
    }
    if orphans > 0 {
        problems.push(format!("{orphans} spans whose parent is missing"));
    }
    TraceCheck {
        problem: (!problems.is_empty()).then(|| problems.join(", ")),
        has_error,
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, duration_us)
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A whole demo trace in Jaeger's JSON, built hop by hop as the mesh makes it.
    fn whole_trace() -> Value {
        let mut spans = Vec::new();
        let mut processes = serde_json::Map::new();
        let mut n = 0;
        let mut add = |service: &str, proxy: bool, kind: &str, parent: Option<String>| {
            n += 1;
            let id = format!("{n:016x}");
            processes.insert(format!("p-{service}"), json!({ "serviceName": service }));
            let mut tags = vec![json!({"key": "span.kind", "type": "string", "value": kind})];
            if proxy {
                tags.push(json!({"key": "component", "type": "string", "value": "proxy"}));
            }
            let references: Vec<Value> = parent
                .iter()
                .map(|p| json!({"refType": "CHILD_OF", "traceID": "t", "spanID": p}))
                .collect();
            spans.push(json!({"spanID": id, "processID": format!("p-{service}"),
                "tags": tags, "references": references}));
            id
        };
        let mut parent = add(EDGE, true, "server", None);
        for (i, s) in SERVICES.iter().enumerate() {
            let inbound = add(s.name, true, "server", Some(parent.clone()));
            let server = add(s.name, false, "server", Some(inbound));
            add(s.name, false, "internal", Some(server.clone()));
            if i + 1 < SERVICES.len() {
                let client = add(s.name, false, "client", Some(server));
                parent = add(s.name, true, "client", Some(client));
            }
        }
        json!({"traceID": "t", "spans": spans, "processes": processes})
    }

    #[test]
    fn a_whole_trace_passes() {
        let t = whole_trace();
        assert_eq!(
            t["spans"].as_array().unwrap().len(),
            crate::topology::SPANS_PER_TRACE
        );
        assert_eq!(
            check_trace(&t),
            TraceCheck {
                problem: None,
                has_error: false
            }
        );
    }

    #[test]
    fn a_missing_hop_an_orphan_and_an_error_are_found() {
        let mut t = whole_trace();
        // Drop service-b's outbound sidecar span: service-c's inbound span is now an orphan.
        let spans = t["spans"].as_array_mut().unwrap();
        let pos = spans
            .iter()
            .position(|s| {
                s["processID"] == "p-service-b"
                    && s["tags"].as_array().unwrap().len() == 2
                    && s["tags"][0]["value"] == "client"
            })
            .unwrap();
        spans.remove(pos);
        spans[0]["tags"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "error", "type": "bool", "value": true}));
        let c = check_trace(&t);
        let problem = c.problem.expect("broken");
        assert!(
            problem.contains("0 spans for service-b proxy client (want 1)"),
            "{problem}"
        );
        assert!(
            problem.contains("1 spans whose parent is missing"),
            "{problem}"
        );
        assert!(c.has_error);
    }

    #[test]
    fn two_roots_are_broken() {
        let mut t = whole_trace();
        t["spans"][3]["references"] = json!([]);
        let problem = check_trace(&t).problem.expect("broken");
        assert!(problem.contains("2 roots (want 1)"), "{problem}");
    }

    /// A Jaeger API that serves two traces for a window search and by id; trace "late" is
    /// missing a span until `complete` is set.
    async fn backend(complete: std::sync::Arc<std::sync::atomic::AtomicBool>) -> SocketAddr {
        use std::sync::atomic::Ordering;
        let trace = move |id: &str, complete: bool| {
            let mut t = whole_trace();
            t["traceID"] = json!(id);
            if id != "whole" && !complete {
                t["spans"].as_array_mut().unwrap().pop();
            }
            t
        };
        let (c1, c2) = (complete.clone(), complete);
        let app = axum::Router::new()
            .route(
                "/api/traces",
                axum::routing::get(move || {
                    let done = c1.load(Ordering::SeqCst);
                    async move {
                        axum::Json(json!({"data": [trace("whole", done), trace("late", done)]}))
                    }
                }),
            )
            .route(
                "/api/traces/{id}",
                axum::routing::get(
                    move |axum::extract::Path(id): axum::extract::Path<String>| {
                        let done = c2.load(Ordering::SeqCst);
                        async move { axum::Json(json!({"data": [trace(&id, done)]})) }
                    },
                ),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn a_trace_not_whole_at_first_is_broken_only_if_it_stays_so() {
        use std::sync::atomic::{AtomicBool, Ordering};
        for becomes_whole in [true, false] {
            let complete = std::sync::Arc::new(AtomicBool::new(false));
            let mut w = Watcher::new(backend(complete.clone()).await, Duration::ZERO);
            w.since_us = 1;
            w.poll().await.unwrap();
            assert_eq!((w.seen.stored, w.seen.complete, w.seen.broken), (2, 1, 0));
            assert_eq!(w.seen.first_complete.as_deref(), Some("whole"));
            // Too early to look again: nothing changes.
            w.recheck(false).await;
            assert_eq!((w.seen.complete, w.seen.broken), (1, 0));
            complete.store(becomes_whole, Ordering::SeqCst);
            // The last look settles it either way.
            w.recheck(true).await;
            let want = if becomes_whole { (2, 0) } else { (1, 1) };
            assert_eq!((w.seen.complete, w.seen.broken), want);
            if !becomes_whole {
                let (id, why) = w.seen.last_broken.clone().unwrap();
                assert_eq!(id, "late");
                assert!(why.contains("spans for service-c app internal"), "{why}");
            }
        }
    }
}
