//! Test harness: runs the real `meshtrace` binary on free loopback ports and talks to it with
//! real peers: `curl` for HTTP and the OpenTelemetry Python SDK for exporters.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `meshtrace` process that announced its listeners; killed when dropped.
pub struct Proc {
    child: Option<Child>,
    pub addrs: HashMap<String, String>,
}

impl Proc {
    /// `meshtrace ARGS` with `RUST_LOG=info`, ready for more `.arg`/`.env` before [`Proc::start`].
    pub fn command(args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshtrace"));
        cmd.args(args).env("RUST_LOG", "info");
        cmd
    }

    /// Spawns `meshtrace ARGS` and waits (≤ 60 s) until it announced every listener in `expect`.
    pub fn spawn(args: &[&str], expect: &[&str]) -> Proc {
        Self::start(Self::command(args), expect)
    }

    /// Spawns `cmd` and waits (≤ 60 s) until it announced every listener in `expect`
    /// (stdout lines `meshtrace: NAME listening on ADDR ...`).
    pub fn start(mut cmd: Command, expect: &[&str]) -> Proc {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn meshtrace");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("[meshtrace] {line}");
                let _ = tx.send(line);
            }
        });
        let mut addrs = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !expect.iter().all(|e| addrs.contains_key(*e)) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                panic!("meshtrace {cmd:?} did not announce {expect:?} in time (got {addrs:?})");
            };
            if let Some(rest) = line.strip_prefix("meshtrace: ") {
                let mut words = rest.split_whitespace();
                if let (Some(name), Some("listening"), Some("on"), Some(addr)) =
                    (words.next(), words.next(), words.next(), words.next())
                {
                    addrs.insert(name.to_owned(), addr.to_owned());
                }
            }
        }
        Proc {
            child: Some(child),
            addrs,
        }
    }

    pub fn addr(&self, name: &str) -> &str {
        &self.addrs[name]
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (≤ 60 s); returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = child.try_wait().expect("wait") {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("meshtrace did not exit on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running `meshtrace all-in-one` on free loopback ports; killed when dropped.
pub struct AllInOne {
    proc: Proc,
    pub data_dir: PathBuf,
}

impl AllInOne {
    /// Starts on free ports with `data_dir` and any extra flags; waits until it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let mut cmd = Proc::command(&["all-in-one"]);
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(["--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0"])
            .args(["--zipkin", "127.0.0.1:0", "--query", "127.0.0.1:0"])
            .args(extra);
        AllInOne {
            proc: Proc::start(cmd, &["otlp-grpc", "otlp-http", "zipkin", "query"]),
            data_dir: data_dir.to_owned(),
        }
    }

    pub fn addr(&self, name: &str) -> &str {
        self.proc.addr(name)
    }

    pub fn query_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr("query"), path)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(self) {
        self.proc.kill9()
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(self) -> Option<i32> {
        self.proc.terminate()
    }
}

/// An HTTP answer as curl saw it.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs curl with `args` (URL included) and returns status and body.
pub fn curl(args: &[&str]) -> Answer {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut body = out.stdout;
    let cut = body.iter().rposition(|&b| b == b'\n').expect("status line");
    let status = std::str::from_utf8(&body[cut + 1..])
        .expect("utf8")
        .trim()
        .parse()
        .expect("status code");
    body.truncate(cut);
    Answer { status, body }
}

pub fn get(url: &str) -> Answer {
    curl(&[url])
}

/// GET expecting 200 and JSON.
pub fn get_json(url: &str) -> Value {
    let a = get(url);
    assert_eq!(a.status, 200, "GET {url}: {}", a.text());
    a.json()
}

/// POSTs a body from memory (written to a temp file so binary bodies pass intact).
pub fn post(url: &str, headers: &[&str], body: &[u8]) -> Answer {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(body).expect("write body");
    let data = format!("@{}", file.path().display());
    let mut args: Vec<&str> = vec!["-X", "POST", "--data-binary", &data];
    for h in headers {
        args.push("-H");
        args.push(h);
    }
    args.push(url);
    curl(&args)
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Folder of the Python peers (set by scripts/test; defaults to the repo's tests/python).
pub fn python_dir() -> PathBuf {
    std::env::var_os("MESHTRACE_TEST_PYTHON_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python"))
}

/// Runs a script of tests/python with the venv it needs; returns its stdout.
pub fn python(venv: &str, script: &str, args: &[&str]) -> String {
    let dir = python_dir();
    let interpreter = dir.join(venv).join("bin/python");
    assert!(
        interpreter.exists(),
        "{} is missing: run scripts/test once to install the OpenTelemetry Python SDK",
        interpreter.display()
    );
    let out = Command::new(interpreter)
        .arg(dir.join(script))
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python {script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8 stdout")
}

/// The spans of a Jaeger trace answer, keyed by operation name.
pub fn spans_by_name(trace: &Value) -> HashMap<String, Value> {
    trace["spans"]
        .as_array()
        .expect("spans array")
        .iter()
        .map(|s| {
            (
                s["operationName"].as_str().expect("name").to_owned(),
                s.clone(),
            )
        })
        .collect()
}

/// Looks up a Jaeger tag by key: `(type, value)`.
pub fn tag(span: &Value, key: &str) -> Option<(String, Value)> {
    span["tags"].as_array()?.iter().find_map(|t| {
        (t["key"] == key).then(|| {
            (
                t["type"].as_str().unwrap_or("").to_owned(),
                t["value"].clone(),
            )
        })
    })
}

/// Every Jaeger tag named `key`: `(type, value)` pairs (Jaeger allows a key more than once).
pub fn tags(span: &Value, key: &str) -> Vec<(String, Value)> {
    span["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .filter(|t| t["key"] == key)
                .map(|t| {
                    (
                        t["type"].as_str().unwrap_or("").to_owned(),
                        t["value"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Current Unix time in microseconds.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

/// The trace ids (32 hex digits) that tests/python/collector_sampling_ref.py, an independent
/// reference of the OTel Collector's probabilistic sampler, keeps.
pub fn sampling_reference(
    seed: u32,
    percent: &str,
    mode: &str,
    ids: &[String],
) -> BTreeSet<String> {
    let dir = python_dir();
    let mut child = Command::new(dir.join(".venv/bin/python"))
        .arg(dir.join("collector_sampling_ref.py"))
        .args([seed.to_string().as_str(), percent, mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the Python reference");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = ids.join("\n");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("reference output");
    writer.join().expect("writer").expect("write ids");
    assert!(out.status.success(), "reference failed");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------- certificates

/// Runs openssl with `args` in `dir`.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// openssl's arguments for a new P-256 key, unencrypted.
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all signed by
/// it, plus a second CA that signed nothing here.
pub fn certificates(dir: &Path) {
    for ca in ["ca", "other-ca"] {
        let mut args = vec!["req", "-x509", "-days", "2", "-subj"];
        let subject = format!("/CN=meshtrace test {ca}");
        let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
        args.push(&subject);
        args.extend(EC_KEY);
        args.extend(["-keyout", &key, "-out", &pem]);
        openssl(dir, &args);
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    signed(dir, "server", "localhost", "server.ext", "ca");
    signed(dir, "client", "meshtrace collector", "client.ext", "ca");
}

/// `NAME.key` and `NAME.pem`: a new key and its certificate for `cn`, with the extensions of
/// `ext`, signed by the CA `ca` (`ca.pem`/`ca.key`).
fn signed(dir: &Path, name: &str, cn: &str, ext: &str, ca: &str) {
    let subject = format!("/CN={cn}");
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    let mut args = vec!["req", "-subj", &subject];
    args.extend(EC_KEY);
    args.extend(["-keyout", &key, "-out", &csr]);
    openssl(dir, &args);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-extfile",
            ext,
            "-out",
            &pem,
        ],
    );
}

/// Rotates the server certificate in `pem` and `key` (files in `dir` made by [`certificates`])
/// to a new one for the same names signed by `ca`, moved into place as a secret's volume would.
pub fn rotate_server_certificate(dir: &Path, ca: &str, pem: &str, key: &str) {
    signed(dir, "next", "localhost", "server.ext", ca);
    std::fs::rename(dir.join("next.key"), dir.join(key)).unwrap();
    std::fs::rename(dir.join("next.pem"), dir.join(pem)).unwrap();
}
