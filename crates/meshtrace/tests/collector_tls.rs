//! The collector's exporters over TLS, against real TLS peers with certificates made by `openssl`
//! for the test: `otlp` to a grpcio OTLP backend (tests/python/grpc_tls_sink.py), `otlphttp` and
//! `zipkin` to a Python `ssl` HTTPS backend (tests/python/http_tls_sink.py). Checked: a private
//! CA trusted with `ca_file`; mutual TLS with `cert_file`/`key_file`; an untrusted server or a
//! missing client certificate fail the export (counted), never silently pass.

mod collector_harness;
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use collector_harness::*;

/// Runs openssl with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
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

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all signed by
/// it, plus a second CA that signed nothing here.
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for ca in ["ca", "other-ca"] {
        let mut args = vec!["req", "-x509", "-days", "2", "-subj"];
        let subject = format!("/CN=meshtrace test {ca}");
        let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
        args.push(&subject);
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &pem]);
        openssl(dir, &args);
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, cn) in [("server", "localhost"), ("client", "meshtrace collector")] {
        let subject = format!("/CN={cn}");
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let mut args = vec!["req", "-subj", &subject];
        args.extend(ec);
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
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ],
        );
    }
}

/// A TLS backend (`grpc_tls_sink.py` or `http_tls_sink.py`); its stdout lines arrive on `lines`.
struct Sink {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl Sink {
    fn start(script: &str, dir: &Path, mutual: bool) -> Sink {
        let py = common::python_dir();
        let mut cmd = Command::new(py.join(".venv/bin/python"));
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
