//! Access logs (Envoy's `access_log`): one line per request, in Envoy's format language (text
//! or JSON, see `format`), written when the request is over (its response sent, failed, or
//! abandoned by the client; a tunnel when it closes), so that bytes and durations are known.
//! `%TRACE_ID%` puts the request's trace id in the line: from a log line to its trace.
//!
//! Logging never blocks a request: each worker renders its lines into a buffer of its own,
//! handed to the path's writer thread (`writer`) when it holds 64 KiB or every
//! `flush_interval`; should the writer fall behind (a full disk, a stalled pipe), batches are
//! dropped and counted in `/metrics`, never waited for.

mod filter;
mod format;
mod writer;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use http::HeaderValue;
use model::TraceId;

pub use filter::Filter;
pub use format::Format;
pub use writer::{Handle, Writers};

use format::Source;

/// A batch is handed to the writer once it holds this much.
const BATCH_BYTES: usize = 64 * 1024;

/// One listener's access log on one worker.
pub struct AccessLog {
    format: Arc<Format>,
    /// Which requests are written (all without one).
    filter: Option<Arc<Filter>>,
    pending: Mutex<Batch>,
    out: Handle,
}

/// Lines waiting for the writer.
#[derive(Default)]
pub struct Batch {
    pub bytes: Vec<u8>,
    pub lines: u64,
}

/// What a request's line says, gathered as the request goes.
pub struct Entry {
    log: Arc<AccessLog>,
    began: Instant,
    pub(crate) start: SystemTime,
    /// One per `REQ(...)` of the format, as the request came.
    pub(crate) request_headers: Vec<Option<HeaderValue>>,
    /// One per `RESP(...)`, as the response went back.
    pub(crate) response_headers: Vec<Option<HeaderValue>>,
    pub(crate) protocol: &'static str,
    pub(crate) peer: SocketAddr,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) trace_id: TraceId,
    pub(crate) route: Option<String>,
    pub(crate) cluster: Option<Arc<str>>,
    pub(crate) upstream_host: Option<Arc<str>>,
    /// Attempts sent upstream (0: none).
    pub(crate) attempts: u32,
    /// 0 until a response began (Envoy's: the client left first).
    pub(crate) status: u16,
    pub(crate) flags: std::borrow::Cow<'static, str>,
    pub(crate) failure: Option<String>,
    pub(crate) response_duration: Option<Duration>,
    pub(crate) duration: Option<Duration>,
    pub(crate) bytes_received: u64,
    pub(crate) bytes_sent: u64,
}

/// The request as an entry begins with it.
pub struct Request<'a> {
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub headers: &'a http::HeaderMap,
    pub secure: bool,
    pub peer: SocketAddr,
    pub local: Option<SocketAddr>,
    pub trace_id: TraceId,
    pub protocol: &'static str,
}

impl AccessLog {
    pub fn new(format: Arc<Format>, filter: Option<Arc<Filter>>, out: Handle) -> Arc<Self> {
        Arc::new(AccessLog {
            format,
            filter,
            pending: Mutex::new(Batch::default()),
            out,
        })
    }

    /// Whether lines need the connection's local address (`%DOWNSTREAM_LOCAL_ADDRESS%`).
    pub fn needs_local_address(&self) -> bool {
        self.format.local_address
    }

    /// An entry for a request as it came in.
    pub fn entry(self: &Arc<Self>, r: Request<'_>) -> Box<Entry> {
        let read = |s: &Source| -> Option<HeaderValue> {
            match s {
                Source::Method => HeaderValue::from_str(r.method.as_str()).ok(),
                Source::Path => r
                    .uri
                    .path_and_query()
                    .and_then(|pq| HeaderValue::from_str(pq.as_str()).ok()),
                Source::Authority => r
                    .uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                    .or_else(|| r.headers.get(http::header::HOST).cloned()),
                Source::Scheme => Some(HeaderValue::from_static(
                    match (r.uri.scheme_str(), r.secure) {
                        (Some("https"), _) | (None, true) => "https",
                        _ => "http",
                    },
                )),
                Source::Header(h) => r.headers.get(h).cloned(),
            }
        };
        let request_headers = self
            .format
            .request_headers
            .iter()
            .map(|h| read(&h.main).or_else(|| h.alt.as_ref().and_then(read)))
            .collect();
        Box::new(Entry {
            log: self.clone(),
            began: Instant::now(),
            start: SystemTime::now(),
            request_headers,
            response_headers: Vec::new(),
            protocol: r.protocol,
            peer: r.peer,
            local: r.local,
            trace_id: r.trace_id,
            route: None,
            cluster: None,
            upstream_host: None,
            attempts: 0,
            status: 0,
            flags: std::borrow::Cow::Borrowed("-"),
            failure: None,
            response_duration: None,
            duration: None,
            bytes_received: 0,
            bytes_sent: 0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Batch> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, e: &Entry) {
        if self.filter.as_ref().is_some_and(|f| !f.admits(e)) {
            return;
        }
        let mut pending = self.lock();
        self.format.render(e, &mut pending.bytes);
        pending.lines += 1;
        if pending.bytes.len() >= BATCH_BYTES {
            let batch = std::mem::take(&mut *pending);
            drop(pending);
            self.out.send(batch);
        }
    }

    /// Hands what is pending to the writer.
    pub fn flush(&self) {
        let batch = std::mem::take(&mut *self.lock());
        if batch.lines > 0 {
            self.out.send(batch);
        }
    }

    /// Flushes every `every`, for as long as the worker runs.
    pub async fn flush_every(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            self.flush();
        }
    }
}

impl Drop for AccessLog {
    /// The lines of requests that ended after the worker's last flush (its drain over).
    fn drop(&mut self) {
        self.flush();
    }
}

impl Entry {
    /// Where the request goes (again, for a retry).
    pub fn upstream(&mut self, cluster: &Arc<str>, host: &Arc<str>) {
        self.cluster = Some(cluster.clone());
        self.upstream_host = Some(host.clone());
    }

    /// An attempt is sent upstream.
    pub fn attempted(&mut self) {
        self.attempts += 1;
    }

    /// The response began: its status, Envoy's response flags, and the headers the format reads.
    pub fn answered(
        &mut self,
        status: u16,
        flags: std::borrow::Cow<'static, str>,
        headers: &http::HeaderMap,
    ) {
        self.status = status;
        self.flags = flags;
        self.response_duration = Some(self.began.elapsed());
        self.response_headers = self
            .log
            .format
            .response_headers
            .iter()
            .map(|h| headers.get(h).cloned())
            .collect();
    }

    /// The request is over: its line goes to the log.
    pub fn finish(mut self: Box<Self>, bytes_received: u64, bytes_sent: u64) {
        self.bytes_received = bytes_received;
        self.bytes_sent = bytes_sent;
        self.duration = Some(self.began.elapsed());
        self.log.clone().write(&self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entry_of(log: &Arc<AccessLog>, req: http::Request<()>) -> Box<Entry> {
        let (parts, ()) = req.into_parts();
        log.entry(Request {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            secure: false,
            peer: "10.0.0.7:41234".parse().unwrap(),
            local: Some("127.0.0.1:15001".parse().unwrap()),
            trace_id: TraceId::from_halves(0x0af7651916cd43dd, 0x8448eb211c80319c),
            protocol: "HTTP/1.1",
        })
    }

    /// Renders one finished entry with `format` through a real writer to a file.
    fn line(format: Format, fill: impl FnOnce(&mut Entry)) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let stats = Arc::new(crate::stats::Stats::default());
        let mut writers = Writers::new(stats.clone());
        let out = writers.open(path.to_str().unwrap()).unwrap();
        let log = AccessLog::new(Arc::new(format), None, out);
        let req = http::Request::builder()
            .method("POST")
            .uri("/api/cart?id=7")
            .header("host", "cart.mesh")
            .header("user-agent", "curl/8.0")
            .header("x-request-id", "f00")
            .body(())
            .unwrap();
        let mut e = entry_of(&log, req);
        fill(&mut e);
        e.finish(12, 345);
        log.flush();
        drop(log);
        writers.join();
        let mut s = String::new();
        std::fs::File::open(&path)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn envoys_default_format_with_what_the_request_did() {
        let s = line(Format::text(None).unwrap(), |e| {
            e.upstream(&"cart".into(), &"10.0.1.7:8080".into());
            e.attempted();
            let mut h = http::HeaderMap::new();
            h.insert("content-type", HeaderValue::from_static("text/plain"));
            e.answered(201, "-".into(), &h);
        });
        // [2026-11-22T00:00:00.000Z] "POST /api/cart?id=7 HTTP/1.1" 201 - 12 345 0 - "-" "curl/8.0" "f00" "cart.mesh" "10.0.1.7:8080"
        let (time, rest) = s.split_once("] ").unwrap();
        assert!(
            time.starts_with('[') && time.ends_with('Z') && time.len() == 25,
            "{s}"
        );
        let rest = rest.strip_suffix('\n').unwrap();
        let words: Vec<&str> = rest.split(' ').collect();
        assert_eq!(
            &words[..6],
            ["\"POST", "/api/cart?id=7", "HTTP/1.1\"", "201", "-", "12"],
            "{s}"
        );
        assert_eq!(words[6], "345");
        assert!(words[7].parse::<u64>().is_ok(), "duration in ms: {s}");
        assert_eq!(
            &words[8..],
            [
                "-",
                "\"-\"",
                "\"curl/8.0\"",
                "\"f00\"",
                "\"cart.mesh\"",
                "\"10.0.1.7:8080\""
            ]
        );
    }

    #[test]
    fn json_values_keep_their_types_and_missing_ones_are_null() {
        let dict = serde_json::json!({
            "status": "%RESPONSE_CODE%",
            "trace": "%TRACE_ID%",
            "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH):9%",
            "upstream": "%UPSTREAM_HOST%",
            "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
            "where": { "from": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "to": "%DOWNSTREAM_LOCAL_ADDRESS%" },
            "said": "%RESPONSE_FLAGS% after %BYTES_SENT% bytes to %UPSTREAM_CLUSTER%",
            "team": "checkout",
            "level": 3,
        });
        let serde_json::Value::Object(dict) = dict else {
            unreachable!()
        };
        let s = line(Format::json(&dict).unwrap(), |e| {
            e.answered(404, "NR".into(), &http::HeaderMap::new());
        });
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "status": 404,
                "trace": "0af7651916cd43dd8448eb211c80319c",
                "path": "/api/cart",
                "upstream": null,
                "attempts": null,
                "where": { "from": "10.0.0.7", "to": "127.0.0.1:15001" },
                "said": "NR after 345 bytes to -",
                "team": "checkout",
                "level": 3,
            })
        );
        assert!(s.ends_with('\n'));
    }

    #[test]
    fn start_time_takes_a_strftime_format() {
        let s = line(
            Format::text(Some("%START_TIME(%s)% %START_TIME(%Y)%\n")).unwrap(),
            |_| {},
        );
        let (secs, year) = s.trim_end().split_once(' ').unwrap();
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(secs.parse().unwrap()) < 60, "{s}");
        assert!(year.len() == 4 && year.starts_with("20"), "{s}");
    }

    #[test]
    fn filters_choose_the_lines_as_envoys_do() {
        let dir = tempfile::tempdir().unwrap();
        let mut writers = Writers::new(Arc::new(crate::stats::Stats::default()));
        let out = writers
            .open(dir.path().join("f.log").to_str().unwrap())
            .unwrap();
        let log = AccessLog::new(Arc::new(Format::text(None).unwrap()), None, out);
        let entry = |status: u16, ms: u64, flags: &'static str| {
            let mut e = entry_of(&log, http::Request::new(()));
            e.status = status;
            e.duration = Some(Duration::from_millis(ms));
            e.flags = flags.into();
            e
        };
        let filter = |yaml: &str| {
            let f: Filter = serde_yaml::from_str(yaml).unwrap();
            f.check().unwrap();
            f
        };
        let errors_or_slow = filter(
            "{ or_filter: { filters: [ { status_code_filter: { comparison: { op: GE, value: { default_value: 500, runtime_key: x } } } }, { duration_filter: { comparison: { op: GE, value: { default_value: 1000 } } } } ] } }",
        );
        assert!(errors_or_slow.admits(&entry(503, 5, "-")));
        assert!(errors_or_slow.admits(&entry(200, 1500, "-")));
        assert!(!errors_or_slow.admits(&entry(404, 5, "-")));
        let flagged = filter("{ response_flag_filter: {} }");
        assert!(flagged.admits(&entry(200, 5, "DI")) && !flagged.admits(&entry(200, 5, "-")));
        let upstream = filter("{ response_flag_filter: { flags: [UF, URX] } }");
        assert!(
            upstream.admits(&entry(502, 5, "UF,URX")) && !upstream.admits(&entry(503, 5, "UO"))
        );
        let both = filter(
            "{ and_filter: { filters: [ { status_code_filter: { comparison: { op: NE, value: { default_value: 200 } } } }, { duration_filter: { comparison: { op: LE, value: { default_value: 10 } } } } ] } }",
        );
        assert!(both.admits(&entry(201, 10, "-")) && !both.admits(&entry(200, 1, "-")));
        for (yaml, want) in [
            ("{}", "exactly one of"),
            (
                "{ response_flag_filter: { flags: [XX] } }",
                "\"XX\" is not a flag",
            ),
            (
                "{ and_filter: { filters: [ { response_flag_filter: {} } ] } }",
                "two filters or more",
            ),
        ] {
            let f: Filter = serde_yaml::from_str(yaml).unwrap();
            assert!(f.check().unwrap_err().contains(want), "{yaml}");
        }
    }
}
