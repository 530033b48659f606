//! The collector over TLS, against real TLS peers with certificates made by `openssl` for the
//! test. Exporters: `otlp` to a grpcio OTLP backend (tests/python/grpc_tls_sink.py), `otlphttp`
//! and `zipkin` to a Python `ssl` HTTPS backend (tests/python/http_tls_sink.py); a private CA
//! trusted with `ca_file`, mutual TLS with `cert_file`/`key_file`, and an untrusted server or a
//! missing client certificate fail the export (counted), never silently pass. Receivers: the
//! OpenTelemetry Python SDK's OTLP gRPC, OTLP HTTP and Zipkin exporters (and curl) over TLS,
//! with `client_ca_file` (mutual TLS) and `min_version`.

mod collector_harness;
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use collector_harness::*;
use common::certificates;

/// A TLS backend (`grpc_tls_sink.py` or `http_tls_sink.py`); its stdout lines arrive on `lines`.
struct Sink {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl Sink {
    fn start(script: &str, dir: &Path, mutual: bool) -> Sink {
        Self::start_with(script, dir, mutual, &[])
    }

    /// A sink started with `env` (`http_tls_sink.py` narrows its TLS with it).
    fn start_with(script: &str, dir: &Path, mutual: bool, env: &[(&str, &str)]) -> Sink {
        let py = common::python_dir();
        let mut cmd = Command::new(py.join(".venv/bin/python"));
        cmd.envs(env.iter().copied());
        cmd.arg(py.join(script))
            .arg(dir.join("server.pem"))
            .arg(dir.join("server.key"));
        if mutual {
            cmd.arg(dir.join("ca.pem"));
        }
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start the sink");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("[tls sink] {line}");
                let _ = tx.send(line);
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the sink starts");
        let port = first
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        Sink { child, port, lines }
    }

    /// Spans of `trace_id` received (each request holds one trace here), waiting up to
    /// `timeout` for `want` of them.
    fn spans_of(&self, trace_id: &str, want: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut got = 0;
        while got < want {
            let Ok(line) = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                break;
            };
            if line.contains(trace_id) {
                got += line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        got
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An exporter under test: its id, and its endpoint for a sink on `port` at 127.0.0.1 (the
/// certificate names it, and `localhost`, which `server_name_override` checks instead).
#[derive(Clone, Copy)]
enum Exporter {
    Otlp,
    OtlpHttp,
    Zipkin,
}

impl Exporter {
    fn id(self) -> &'static str {
        match self {
            Exporter::Otlp => "otlp/tls",
            Exporter::OtlpHttp => "otlphttp/tls",
            Exporter::Zipkin => "zipkin/tls",
        }
    }

    fn endpoint(self, port: u16) -> String {
        match self {
            Exporter::Otlp => format!("127.0.0.1:{port}"),
            Exporter::OtlpHttp => format!("https://127.0.0.1:{port}"),
            Exporter::Zipkin => format!("https://127.0.0.1:{port}/api/v2/spans"),
        }
    }
}

/// A collector: OTLP gRPC in, `exporter` configured by `tls` (YAML lines at the exporter's
/// `tls:` indentation) to the sink on `port`.
fn config(exporter: Exporter, port: u16, tls: &str, retry: bool) -> String {
    let (id, endpoint) = (exporter.id(), exporter.endpoint(port));
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n\
         exporters:\n  {id}:\n    endpoint: {endpoint}\n    tls:\n{tls}\
         \n    retry_on_failure:\n      enabled: {retry}\n      initial_interval: 100ms\n\
         service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n\
         \x20 pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [{id}]\n"
    )
}

/// The collector's exporter counters, for failure messages.
fn exporter_metrics(c: &Proc) -> String {
    let text = common::get(&format!("http://{}/metrics", c.addr("metrics"))).text();
    text.lines()
        .filter(|l| l.starts_with("otelcol_exporter") || l.starts_with("otelcol_receiver"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn failed_spans(c: &Proc, exporter: Exporter) -> u64 {
    let text = common::get(&format!("http://{}/metrics", c.addr("metrics"))).text();
    let series = format!(
        "otelcol_exporter_send_failed_spans_total{{exporter=\"{}\"}}",
        exporter.id()
    );
    text.lines()
        .find(|l| l.starts_with(&series))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A collector with `tls` (retrying) delivers the SDK's 4 spans to the sink.
fn delivered(exporter: Exporter, sink: &Sink, tls: &str) {
    let d = tempfile::tempdir().unwrap();
    let c = collector(
        d.path(),
        &config(exporter, sink.port, tls, true),
        &["otlp-grpc", "metrics"],
    );
    let id = send_sdk_trace("otlp-grpc", c.addr("otlp-grpc"), "tls-delivered");
    let got = sink.spans_of(&id, 4, Duration::from_secs(40));
    assert_eq!(
        got,
        4,
        "the sink got {got} of 4 spans ({tls}); collector: {}",
        exporter_metrics(&c)
    );
    assert_eq!(c.terminate(), Some(0));
}

/// A collector with `tls` (not retrying) fails to export: the spans are counted as failed and
/// none arrive.
fn refused(exporter: Exporter, sink: &Sink, tls: &str) {
    let d = tempfile::tempdir().unwrap();
    let c = collector(
        d.path(),
        &config(exporter, sink.port, tls, false),
        &["otlp-grpc", "metrics"],
    );
    let id = send_sdk_trace("otlp-grpc", c.addr("otlp-grpc"), "tls-refused");
    let failed = common::eventually(Duration::from_secs(30), || {
        (failed_spans(&c, exporter) >= 4).then_some(())
    });
    assert!(
        failed.is_some(),
        "the export failed and was counted ({tls}): {}",
        exporter_metrics(&c)
    );
    assert_eq!(sink.spans_of(&id, 1, Duration::from_secs(1)), 0);
    assert_eq!(c.terminate(), Some(0));
}

/// `exporter` delivers to `sink` when it trusts the private CA, and fails when it trusts another
/// CA, only the system's, or checks a name the certificate does not hold.
fn trusts_the_private_ca_only(exporter: Exporter, sink: &Sink, dir: &Path) {
    let ca = dir.join("ca.pem").display().to_string();
    delivered(exporter, sink, &format!("      ca_file: {ca}\n"));
    let other = dir.join("other-ca.pem").display().to_string();
    refused(exporter, sink, &format!("      ca_file: {other}\n"));
    refused(exporter, sink, "      insecure: false\n");
    refused(
        exporter,
        sink,
        &format!("      ca_file: {ca}\n      server_name_override: wrong.example\n"),
    );
}

/// `exporter` gets through a server that requires a client certificate only with one.
fn presents_a_client_certificate(exporter: Exporter, sink: &Sink, dir: &Path) {
    let p = |f: &str| dir.join(f).display().to_string();
    let ca = format!("      ca_file: {}\n", p("ca.pem"));
    delivered(
        exporter,
        sink,
        &format!(
            "{ca}      cert_file: {}\n      key_file: {}\n      server_name_override: localhost\n",
            p("client.pem"),
            p("client.key")
        ),
    );
    refused(exporter, sink, &ca);
}

#[test]
fn otlp_exporter_trusts_a_private_ca_and_refuses_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let sink = Sink::start("grpc_tls_sink.py", dir.path(), false);
    trusts_the_private_ca_only(Exporter::Otlp, &sink, dir.path());
}

#[test]
fn otlp_exporter_presents_a_client_certificate_for_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let sink = Sink::start("grpc_tls_sink.py", dir.path(), true);
    presents_a_client_certificate(Exporter::Otlp, &sink, dir.path());
}

#[test]
fn http_exporters_speak_https_to_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let sink = Sink::start("http_tls_sink.py", dir.path(), false);
    trusts_the_private_ca_only(Exporter::OtlpHttp, &sink, dir.path());
    trusts_the_private_ca_only(Exporter::Zipkin, &sink, dir.path());
}

#[test]
fn http_exporters_present_a_client_certificate_for_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let sink = Sink::start("http_tls_sink.py", dir.path(), true);
    presents_a_client_certificate(Exporter::OtlpHttp, &sink, dir.path());
    presents_a_client_certificate(Exporter::Zipkin, &sink, dir.path());
}

/// An exporter keeps to its `tls` block's versions, cipher suites and curves: against a server
/// that speaks TLS 1.2 only, with one suite and one key-exchange curve (P-384), the exports whose
/// settings leave nothing in common fail, the ones that allow what the server speaks get
/// through. (TLS 1.2 also checks the certificate's curve, P-256, against the client's list.)
#[test]
fn exporters_keep_to_their_versions_suites_and_curves() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let narrow = [
        ("SINK_TLS_MAX", "1.2"),
        ("SINK_TLS_CIPHERS", "ECDHE-ECDSA-AES256-GCM-SHA384"),
        ("SINK_TLS_CURVE", "secp384r1"),
    ];
    let sink = Sink::start_with("http_tls_sink.py", dir.path(), false, &narrow);
    let ca = format!("      ca_file: {}\n", dir.path().join("ca.pem").display());
    let with = |lines: &str| format!("{ca}{lines}");
    delivered(Exporter::OtlpHttp, &sink, &with(""));
    refused(
        Exporter::OtlpHttp,
        &sink,
        &with("      min_version: \"1.3\"\n"),
    );
    refused(
        Exporter::OtlpHttp,
        &sink,
        &with("      cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"),
    );
    refused(
        Exporter::OtlpHttp,
        &sink,
        &with("      curve_preferences: [X25519, P256]\n"),
    );
    delivered(
        Exporter::OtlpHttp,
        &sink,
        &with(
            "      max_version: \"1.2\"\n      \
             cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n      \
             curve_preferences: [P384, P256]\n",
        ),
    );
}

/// With `reload_interval`, an exporter whose CA file is rotated on disk uses it for its next
/// connection, without a restart: spans refused while the file held another CA are delivered
/// (retried) once it holds the one that signed the server's certificate. gRPC and HTTP.
#[test]
fn exporters_reload_rotated_certificates_with_reload_interval() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let grpc = Sink::start("grpc_tls_sink.py", dir.path(), false);
    let http = Sink::start("http_tls_sink.py", dir.path(), false);
    let trusted = dir.path().join("trusted.pem");
    for (exporter, sink) in [(Exporter::Otlp, &grpc), (Exporter::OtlpHttp, &http)] {
        std::fs::copy(dir.path().join("other-ca.pem"), &trusted).unwrap();
        let tls = format!(
            "      ca_file: {}\n      reload_interval: 200ms\n",
            trusted.display()
        );
        let d = tempfile::tempdir().unwrap();
        let c = collector(
            d.path(),
            &config(exporter, sink.port, &tls, true),
            &["otlp-grpc", "metrics"],
        );
        let id = send_sdk_trace("otlp-grpc", c.addr("otlp-grpc"), "tls-reload");
        assert_eq!(
            sink.spans_of(&id, 1, Duration::from_secs(2)),
            0,
            "delivered while trusting another CA"
        );
        // The right CA moved into place, as a secret's volume would.
        let next = dir.path().join("next-trusted.pem");
        std::fs::copy(dir.path().join("ca.pem"), &next).unwrap();
        std::fs::rename(&next, &trusted).unwrap();
        let got = sink.spans_of(&id, 4, Duration::from_secs(30));
        assert_eq!(got, 4, "after the rotation: {}", exporter_metrics(&c));
        assert_eq!(c.terminate(), Some(0));
    }
}

#[test]
fn tls_mistakes_are_named_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = validate(
        dir.path(),
        &config(
            Exporter::Otlp,
            4317,
            "      insecure_skip_verify: true\n      cert_file: /x.pem\n",
            true,
        ),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("insecure_skip_verify is not supported"),
        "{err}"
    );
    assert!(err.contains("needs both cert_file and key_file"), "{err}");
    // Suites and curves not on offer are named, and so is the first of them per block.
    for (tls, named) in [
        (
            "      cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n",
            "exporters.otlp/tls.tls: cipher_suites: \"TLS_RSA_WITH_AES_128_CBC_SHA\" is not offered",
        ),
        (
            "      curve_preferences: [P521]\n",
            "curve_preferences: \"P521\" is not offered",
        ),
        (
            "      max_version: \"1.2\"\n      cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
            "cipher_suites lists none for the TLS versions allowed",
        ),
    ] {
        let (code, _, err) = validate(dir.path(), &config(Exporter::Otlp, 4317, tls, true));
        assert_ne!(code, 0);
        assert!(err.contains(named), "{err}");
    }

    let missing = dir.path().join("nowhere/ca.pem");
    let text = config(
        Exporter::OtlpHttp,
        4317,
        &format!("      ca_file: {}\n", missing.display()),
        true,
    );
    std::fs::write(dir.path().join("c.yaml"), &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meshtrace"))
        .args(["collector", "--config"])
        .arg(dir.path().join("c.yaml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("tls.ca_file") && err.contains(&missing.display().to_string()),
        "{err}"
    );
}

/// A collector whose three receivers (OTLP gRPC, OTLP HTTP, Zipkin) take TLS with the test
/// server certificate, `extra` lines added to each `tls:` block (at its indentation).
fn tls_receivers(dir: &Path, extra: &str) -> Proc {
    let p = |f: &str| dir.join(f).display().to_string();
    let tls = |indent: &str| {
        format!(
            "{indent}tls:\n{indent}  cert_file: {}\n{indent}  key_file: {}\n{}",
            p("server.pem"),
            p("server.key"),
            extra
                .lines()
                .map(|l| format!("{indent}  {l}\n"))
                .collect::<String>()
        )
    };
    let config = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n{}\
         \x20     http:\n        endpoint: 127.0.0.1:0\n{}\
         \x20 zipkin:\n    endpoint: 127.0.0.1:0\n{}\
         exporters:\n  debug:\n\
         service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n\
         \x20 pipelines:\n    traces:\n      receivers: [otlp, zipkin]\n      exporters: [debug]\n",
        tls("        "),
        tls("        "),
        tls("    "),
    );
    let work = dir.join("collector");
    std::fs::create_dir_all(&work).unwrap();
    collector(
        &work,
        &config,
        &["otlp-grpc", "otlp-http", "zipkin", "metrics"],
    )
}

/// curl's exit code for a POST of an empty OTLP/JSON request to `url` with `args`.
fn curl(url: &str, args: &[&str]) -> i32 {
    Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "10"])
        .args(["-H", "content-type: application/json", "--data", "{}"])
        .args(args)
        .arg(url)
        .status()
        .expect("run curl")
        .code()
        .unwrap_or(-1)
}

#[test]
fn receivers_take_tls_from_the_sdk_exporters() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let ca = dir.path().join("ca.pem").display().to_string();
    let c = tls_receivers(dir.path(), "min_version: \"1.3\"");
    // The OpenTelemetry Python SDK's exporters, trusting the test CA (the certificate holds
    // `localhost` and 127.0.0.1).
    let grpc = c.addr("otlp-grpc").replace("127.0.0.1", "localhost");
    send_sdk_trace_with("otlp-grpc", &grpc, "tls-grpc", &["--ca", &ca]);
    let http = format!("https://{}/v1/traces", c.addr("otlp-http"));
    send_sdk_trace_with("otlp-http", &http, "tls-http", &["--ca", &ca]);
    let zipkin = format!("https://{}/api/v2/spans", c.addr("zipkin"));
    send_sdk_trace_with("zipkin-json", &zipkin, "tls-zipkin", &["--ca", &ca]);
    assert_eq!(accepted_spans(&c, "otlp", "grpc"), 4);
    assert_eq!(accepted_spans(&c, "otlp", "http"), 4);
    assert_eq!(accepted_spans(&c, "zipkin", "http"), 4);
    // HTTP/2 over TLS (ALPN) as well as HTTP/1.1 on the HTTP receivers.
    assert_eq!(curl(&http, &["--cacert", &ca, "--http2", "--fail"]), 0);
    assert_eq!(curl(&http, &["--cacert", &ca, "--http1.1", "--fail"]), 0);
    // A client that trusts another CA, or speaks plaintext, gets nothing through; the
    // collector keeps serving.
    let other = dir.path().join("other-ca.pem").display().to_string();
    assert_eq!(
        curl(&http, &["--cacert", &other]),
        60,
        "certificate refused"
    );
    let plain = format!("http://{}/v1/traces", c.addr("otlp-http"));
    assert_ne!(curl(&plain, &["--fail"]), 0);
    // min_version 1.3: a client that goes no higher than TLS 1.2 is refused.
    assert_eq!(
        curl(&http, &["--cacert", &ca, "--tls-max", "1.2"]),
        35,
        "handshake refused"
    );
    send_sdk_trace_with("otlp-http", &http, "tls-http-again", &["--ca", &ca]);
    assert_eq!(accepted_spans(&c, "otlp", "http"), 8);
    assert_eq!(c.terminate(), Some(0));
}

#[test]
fn receivers_require_a_client_certificate_with_client_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let p = |f: &str| dir.path().join(f).display().to_string();
    let (ca, cert, key) = (p("ca.pem"), p("client.pem"), p("client.key"));
    let c = tls_receivers(dir.path(), &format!("client_ca_file: {ca}"));
    let mutual = ["--ca", &ca, "--cert", &cert, "--key", &key];
    let grpc = c.addr("otlp-grpc").replace("127.0.0.1", "localhost");
    send_sdk_trace_with("otlp-grpc", &grpc, "mtls-grpc", &mutual);
    let http = format!("https://{}/v1/traces", c.addr("otlp-http"));
    send_sdk_trace_with("otlp-http", &http, "mtls-http", &mutual);
    let zipkin = format!("https://{}/api/v2/spans", c.addr("zipkin"));
    send_sdk_trace_with("zipkin-json", &zipkin, "mtls-zipkin", &mutual);
    assert_eq!(accepted_spans(&c, "otlp", "grpc"), 4);
    assert_eq!(accepted_spans(&c, "otlp", "http"), 4);
    assert_eq!(accepted_spans(&c, "zipkin", "http"), 4);
    // Without a client certificate the handshake fails; curl with one gets through.
    assert_ne!(curl(&http, &["--cacert", &ca]), 0);
    assert_eq!(
        curl(
            &http,
            &["--cacert", &ca, "--cert", &cert, "--key", &key, "--fail"]
        ),
        0
    );
    assert_eq!(
        accepted_spans(&c, "otlp", "http"),
        4,
        "the empty request holds no spans"
    );
    assert_eq!(c.terminate(), Some(0));
}

/// curl's exit code for a GET of `url` over HTTP/2 trusting `ca`, with `args` (0 whatever the
/// status: the handshake and the exchange went through).
fn get_tls(url: &str, ca: &str, args: &[&str]) -> i32 {
    Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "10", "--http2"])
        .args(["--cacert", ca])
        .args(args)
        .arg(url)
        .status()
        .expect("run curl")
        .code()
        .unwrap_or(-1)
}

/// With `reload_interval`, a certificate rotated on disk is presented to new clients without a
/// restart, on every receiver; a file that changes into something unusable keeps the one in use.
#[test]
fn receivers_reload_rotated_certificates_with_reload_interval() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let p = |f: &str| dir.path().join(f).display().to_string();
    let (ca, other) = (p("ca.pem"), p("other-ca.pem"));
    let c = tls_receivers(dir.path(), "reload_interval: 300ms");
    let urls = [
        format!("https://{}/v1/traces", c.addr("otlp-http")),
        format!("https://{}/api/v2/spans", c.addr("zipkin")),
        format!("https://{}/", c.addr("otlp-grpc")),
    ];
    for url in &urls {
        assert_eq!(get_tls(url, &ca, &[]), 0, "{url}");
    }
    // The next certificate, from the other CA, moved into place.
    common::rotate_server_certificate(dir.path(), "other-ca", "server.pem", "server.key");
    for url in &urls {
        let rotated = common::eventually(Duration::from_secs(10), || {
            (get_tls(url, &other, &[]) == 0).then_some(())
        });
        assert!(rotated.is_some(), "{url} kept the old certificate");
        assert_eq!(get_tls(url, &ca, &[]), 60, "{url}: old CA still trusted");
    }
    std::fs::write(
        dir.path().join("server.pem"),
        "-----BEGIN CERTIFICATE-----\njunk\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    for url in &urls {
        assert_eq!(get_tls(url, &other, &[]), 0, "{url}");
    }
    assert_eq!(c.terminate(), Some(0));
}

/// Receivers keep to their versions, cipher suites and curves: a client that offers only what
/// the block leaves out is refused in the handshake, on every receiver.
#[test]
fn receivers_keep_to_their_versions_suites_and_curves() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let ca = dir.path().join("ca.pem").display().to_string();
    let c = tls_receivers(
        dir.path(),
        "max_version: \"1.2\"\ncipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n\
         curve_preferences: [P384]",
    );
    for url in [
        format!("https://{}/v1/traces", c.addr("otlp-http")),
        format!("https://{}/api/v2/spans", c.addr("zipkin")),
        format!("https://{}/", c.addr("otlp-grpc")),
    ] {
        assert_eq!(get_tls(&url, &ca, &[]), 0, "{url}");
        let refused = [
            ["--tlsv1.3"].as_slice(),
            &["--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256"],
            &["--curves", "X25519:P-256"],
        ];
        for args in refused {
            assert_eq!(get_tls(&url, &ca, args), 35, "{url}: {args:?}");
        }
        let allowed = [
            "--ciphers",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "--curves",
            "P-384:P-256",
        ];
        assert_eq!(get_tls(&url, &ca, &allowed), 0, "{url}");
    }
    assert_eq!(c.terminate(), Some(0));
}

/// With `client_ca_file_reload`, the client CA file is read again when it changes: a client
/// certificate refused while the file held another CA is accepted once it holds the right one.
#[test]
fn receivers_reload_the_client_ca_with_client_ca_file_reload() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let p = |f: &str| dir.path().join(f).display().to_string();
    let (ca, cert, key, clients) = (
        p("ca.pem"),
        p("client.pem"),
        p("client.key"),
        p("clients.pem"),
    );
    std::fs::copy(p("other-ca.pem"), &clients).unwrap();
    let c = tls_receivers(
        dir.path(),
        &format!("client_ca_file: {clients}\nclient_ca_file_reload: true"),
    );
    let http = format!("https://{}/v1/traces", c.addr("otlp-http"));
    let mutual = ["--cacert", &ca, "--cert", &cert, "--key", &key, "--fail"];
    assert_ne!(
        curl(&http, &mutual),
        0,
        "a client certificate of another CA"
    );
    std::fs::copy(&ca, p("next-clients.pem")).unwrap();
    std::fs::rename(p("next-clients.pem"), &clients).unwrap();
    let reloaded = common::eventually(Duration::from_secs(10), || {
        (curl(&http, &mutual) == 0).then_some(())
    });
    assert!(reloaded.is_some(), "the new client CA was not taken up");
    assert_eq!(c.terminate(), Some(0));
}

#[test]
fn receiver_tls_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        tls:\n          \
               cert_file: /x.pem\n          min_version: \"1.1\"\n          reload_interval: 1h\n\
               exporters:\n  debug:\n\
               service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n";
    // reload_interval is taken (see the reload test); a value that is no duration is named.
    let (code, _, err) = validate(dir.path(), bad);
    assert_ne!(code, 0);
    assert!(!err.contains("reload_interval"), "{err}");
    assert!(err.contains("key_file (or key_pem) is required"), "{err}");
    assert!(err.contains("TLS 1.1 is not supported"), "{err}");
    let (code, _, err) = validate(
        dir.path(),
        &bad.replace("reload_interval: 1h", "reload_interval: soon"),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("tls.reload_interval: duration \"soon\""),
        "{err}"
    );
    // Files that cannot be read stop the start, named.
    let missing = dir.path().join("nowhere/server.pem").display().to_string();
    let text = format!(
        "receivers:\n  zipkin:\n    endpoint: 127.0.0.1:0\n    tls:\n      cert_file: {missing}\n      key_file: {missing}\n\
         exporters:\n  debug:\n\
         service:\n  pipelines:\n    traces:\n      receivers: [zipkin]\n      exporters: [debug]\n"
    );
    std::fs::write(dir.path().join("c.yaml"), &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meshtrace"))
        .args(["collector", "--config"])
        .arg(dir.path().join("c.yaml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("tls.cert_file") && err.contains(&missing),
        "{err}"
    );
}
