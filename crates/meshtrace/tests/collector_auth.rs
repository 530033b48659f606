//! The `basicauth` and `bearertokenauth` extensions, against real peers: users hashed by
//! Apache's own `htpasswd` tool (bcrypt and SHA-1), the OpenTelemetry Python SDK's OTLP
//! exporters and curl as clients of a collector's receivers, and one collector's exporters
//! authenticating to another's receivers (with a bearer token file rotated while it runs).

mod collector_harness;
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use collector_harness::*;

/// `htpasswd -n` output for `user` with `password`: `-B` bcrypt or `-s` SHA-1.
fn htpasswd(form: &str, user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .args([form, "-b", "-n", user, password])
        .output()
        .expect("run htpasswd (apt-get install apache2-utils)");
    assert!(out.status.success(), "htpasswd failed: {out:?}");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

/// An htpasswd file with alice (bcrypt, password "s3cret") and bob ({SHA}, "hunter2").
fn users_file(dir: &Path) -> String {
    let path = dir.join("users.htpasswd");
    let text = format!(
        "# made by Apache's htpasswd\n{}\n{}\n",
        htpasswd("-B", "alice", "s3cret"),
        htpasswd("-s", "bob", "hunter2")
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn metric(c: &Proc, series: &str) -> u64 {
    let text = common::get(&format!("http://{}/metrics", c.addr("metrics"))).text();
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn unauthenticated(c: &Proc, receiver: &str, transport: &str) -> u64 {
    metric(
        c,
        &format!(
            "otelcol_receiver_unauthenticated_requests_total{{receiver=\"{receiver}\",transport=\"{transport}\"}}"
        ),
    )
}

/// A gateway whose OTLP receivers want basicauth users from `users` and whose Zipkin receiver
/// wants bearer token `token` (or `extra_tokens`).
fn gateway(dir: &Path, users: &str, bearer: &str) -> Proc {
    let config = format!(
        "extensions:\n  basicauth/users:\n    htpasswd:\n      file: {users}\n\
         \x20 bearertokenauth/agents:\n{bearer}\
         receivers:\n  otlp:\n    protocols:\n\
         \x20     grpc:\n        endpoint: 127.0.0.1:0\n        auth:\n          authenticator: basicauth/users\n\
         \x20     http:\n        endpoint: 127.0.0.1:0\n        auth:\n          authenticator: basicauth/users\n\
         \x20 zipkin:\n    endpoint: 127.0.0.1:0\n    auth:\n      authenticator: bearertokenauth/agents\n\
         exporters:\n  debug:\n\
         service:\n  extensions: [basicauth/users, bearertokenauth/agents]\n\
         \x20 telemetry:\n    metrics:\n      address: 127.0.0.1:0\n\
         \x20 pipelines:\n    traces:\n      receivers: [otlp, zipkin]\n      exporters: [debug]\n"
    );
    let work = dir.join("gateway");
    std::fs::create_dir_all(&work).unwrap();
    collector(
        &work,
        &config,
        &["otlp-grpc", "otlp-http", "zipkin", "metrics"],
    )
}

/// A POST of an empty OTLP/JSON (or Zipkin JSON) request with curl `args`: (status, headers).
fn post(url: &str, body: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", "--max-time", "10"])
        .args(["-H", "content-type: application/json", "--data", body])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase())
}

/// The SDK's trace through `exporter` with `--header` `header`: whether every export succeeded.
fn sdk_exports_ok(exporter: &str, endpoint: &str, header: Option<&str>) -> bool {
    let mut args = vec![exporter, endpoint, "auth-test"];
    if let Some(h) = header {
        args.extend(["--header", h]);
    }
    let out = common::python(".venv", "send_trace.py", &args);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("script output is JSON");
    v["exports_ok"] == true
}

fn basic(user: &str, password: &str) -> String {
    // base64 by a real tool, not by the code under test.
    let out = Command::new("sh")
        .args(["-c", &format!("printf %s '{user}:{password}' | base64 -w0")])
        .output()
        .expect("run base64");
    format!(
        "authorization=Basic {}",
        String::from_utf8_lossy(&out.stdout)
    )
}

#[test]
fn receivers_accept_only_the_users_and_tokens_their_authenticator_names() {
    let d = tempfile::tempdir().unwrap();
    let users = users_file(d.path());
    let c = gateway(
        d.path(),
        &users,
        "    token: t0k3n\n    tokens: [spare-token]\n",
    );
    let http = format!("http://{}/v1/traces", c.addr("otlp-http"));
    let zipkin = format!("http://{}/api/v2/spans", c.addr("zipkin"));

    // OTLP/HTTP with curl: the bcrypt and the SHA-1 user, and what is not them.
    let (status, head) = post(&http, "{}", &[]);
    assert_eq!(status, 401, "no credentials");
    assert!(head.contains("www-authenticate: basic"), "{head}");
    assert_eq!(post(&http, "{}", &["-u", "alice:s3cret"]).0, 200);
    assert_eq!(post(&http, "{}", &["-u", "bob:hunter2"]).0, 200);
    assert_eq!(
        post(&http, "{}", &["-u", "alice:s3cret"]).0,
        200,
        "again, remembered"
    );
    assert_eq!(post(&http, "{}", &["-u", "alice:wrong"]).0, 401);
    assert_eq!(post(&http, "{}", &["-u", "bob:s3cret"]).0, 401);
    assert_eq!(post(&http, "{}", &["-u", "carol:s3cret"]).0, 401);
    assert_eq!(
        post(&http, "{}", &["-H", "authorization: Bearer t0k3n"]).0,
        401,
        "a bearer token is no Basic credential"
    );

    // Zipkin with curl: the bearer tokens.
    assert_eq!(post(&zipkin, "[]", &[]).0, 401);
    assert_eq!(
        post(&zipkin, "[]", &["-H", "authorization: Bearer t0k3n"]).0,
        202
    );
    assert_eq!(
        post(&zipkin, "[]", &["-H", "authorization: Bearer spare-token"]).0,
        202
    );
    assert_eq!(
        post(&zipkin, "[]", &["-H", "authorization: Bearer t0k3n2"]).0,
        401
    );
    assert_eq!(post(&zipkin, "[]", &["-H", "authorization: t0k3n"]).0, 401);
    assert_eq!(post(&zipkin, "[]", &["-u", "alice:s3cret"]).0, 401);

    // The Python SDK's OTLP exporters, gRPC and HTTP, with and without credentials.
    let grpc = format!("http://{}", c.addr("otlp-grpc"));
    assert!(sdk_exports_ok(
        "otlp-grpc",
        &grpc,
        Some(&basic("alice", "s3cret"))
    ));
    assert!(!sdk_exports_ok("otlp-grpc", &grpc, None));
    assert!(!sdk_exports_ok(
        "otlp-grpc",
        &grpc,
        Some(&basic("alice", "nope"))
    ));
    assert!(sdk_exports_ok(
        "otlp-http",
        &http,
        Some(&basic("bob", "hunter2"))
    ));
    assert!(!sdk_exports_ok("otlp-http", &http, None));

    assert_eq!(accepted_spans(&c, "otlp", "grpc"), 4);
    assert_eq!(accepted_spans(&c, "otlp", "http"), 4);
    // Refusals are counted: at least one per refused SDK run on gRPC (two runs), curl's five
    // on HTTP and the SDK's, curl's four on Zipkin.
    assert!(unauthenticated(&c, "otlp", "grpc") >= 2);
    assert!(unauthenticated(&c, "otlp", "http") >= 6);
    assert_eq!(unauthenticated(&c, "zipkin", "http"), 4);
    assert_eq!(c.terminate(), Some(0));
}

/// An agent exporting with `exporters` (YAML under `exporters:`), `extensions` and
/// `extension_ids` to whatever its exporters name.
fn agent(dir: &Path, extensions: &str, exporters: &str, ids: &str, names: &str) -> Proc {
    let config = format!(
        "extensions:\n{extensions}\
         receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n\
         exporters:\n{exporters}\
         service:\n  extensions: [{ids}]\n\
         \x20 telemetry:\n    metrics:\n      address: 127.0.0.1:0\n\
         \x20 pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [{names}]\n"
    );
    let work = dir.join("agent");
    std::fs::create_dir_all(&work).unwrap();
    collector(&work, &config, &["otlp-grpc", "metrics"])
}

#[test]
fn exporters_send_their_authenticators_credentials_and_pick_up_a_rotated_token_file() {
    let d = tempfile::tempdir().unwrap();
    let users = users_file(d.path());
    let g = gateway(d.path(), &users, "    token: new-token\n");
    let token_file = d.path().join("token");
    std::fs::write(&token_file, "old-token\n").unwrap();
    let retry = "    retry_on_failure:\n      initial_interval: 200ms\n      max_interval: 500ms\n";
    let exporters = format!(
        "  otlp:\n    endpoint: {grpc}\n    tls:\n      insecure: true\n    auth:\n      authenticator: basicauth/alice\n{retry}\
         \x20 otlphttp:\n    endpoint: http://{http}\n    auth:\n      authenticator: basicauth/bob\n{retry}\
         \x20 zipkin:\n    endpoint: http://{zipkin}/api/v2/spans\n    auth:\n      authenticator: bearertokenauth/file\n{retry}",
        grpc = g.addr("otlp-grpc"),
        http = g.addr("otlp-http"),
        zipkin = g.addr("zipkin"),
    );
    let extensions = format!(
        "  basicauth/alice:\n    client_auth:\n      username: alice\n      password: s3cret\n\
         \x20 basicauth/bob:\n    client_auth:\n      username: bob\n      password: hunter2\n\
         \x20 bearertokenauth/file:\n    filename: {}\n",
        token_file.display()
    );
    let a = agent(
        d.path(),
        &extensions,
        &exporters,
        "basicauth/alice, basicauth/bob, bearertokenauth/file",
        "otlp, otlphttp, zipkin",
    );
    send_sdk_trace("otlp-grpc", a.addr("otlp-grpc"), "agent-auth");

    // Basic credentials through gRPC metadata and HTTP headers: delivered.
    let both = common::eventually(Duration::from_secs(30), || {
        (accepted_spans(&g, "otlp", "grpc") == 4 && accepted_spans(&g, "otlp", "http") == 4)
            .then_some(())
    });
    assert!(
        both.is_some(),
        "the gateway got the agent's spans over OTLP gRPC and HTTP"
    );
    // The token file holds a token the gateway does not accept: refused (401 is not retried,
    // as in the OTel Collector) and counted as failed...
    let refused = common::eventually(Duration::from_secs(30), || {
        (metric(
            &a,
            "otelcol_exporter_send_failed_spans_total{exporter=\"zipkin\"}",
        ) >= 4)
            .then_some(())
    });
    assert!(refused.is_some(), "the old token was refused");
    assert!(unauthenticated(&g, "zipkin", "http") >= 1);
    assert_eq!(accepted_spans(&g, "zipkin", "http"), 0);
    // ...until the file is rotated: once the file is looked at again (at most a second later),
    // the new token goes out.
    std::fs::write(&token_file, "new-token\n").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    send_sdk_trace("otlp-grpc", a.addr("otlp-grpc"), "agent-auth-rotated");
    let rotated = common::eventually(Duration::from_secs(30), || {
        (accepted_spans(&g, "zipkin", "http") == 4 && accepted_spans(&g, "otlp", "grpc") == 8)
            .then_some(())
    });
    assert!(
        rotated.is_some(),
        "the rotated token file was read and accepted"
    );
    assert_eq!(a.terminate(), Some(0));

    // An agent with the wrong password gets nothing through, and counts it.
    let d2 = tempfile::tempdir().unwrap();
    let wrong = agent(
        d2.path(),
        "  basicauth/alice:\n    client_auth:\n      username: alice\n      password: wrong\n",
        &format!(
            "  otlp:\n    endpoint: {}\n    tls:\n      insecure: true\n    auth:\n      authenticator: basicauth/alice\n    retry_on_failure:\n      enabled: false\n",
            g.addr("otlp-grpc")
        ),
        "basicauth/alice",
        "otlp",
    );
    send_sdk_trace("otlp-grpc", wrong.addr("otlp-grpc"), "agent-wrong");
    let failed = common::eventually(Duration::from_secs(30), || {
        (metric(
            &wrong,
            "otelcol_exporter_send_failed_spans_total{exporter=\"otlp\"}",
        ) >= 4)
            .then_some(())
    });
    assert!(failed.is_some(), "the refused export was counted as failed");
    assert_eq!(
        accepted_spans(&g, "otlp", "grpc"),
        8,
        "nothing more arrived"
    );
    assert_eq!(wrong.terminate(), Some(0));
    assert_eq!(g.terminate(), Some(0));
}

#[test]
fn authenticator_mistakes_are_named() {
    let d = tempfile::tempdir().unwrap();
    let base = |extensions: &str, service_ext: &str, exporter_auth: &str, receiver_auth: &str| {
        format!(
            "extensions:\n{extensions}\
             receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:0\n{receiver_auth}\
             exporters:\n  otlphttp:\n    endpoint: http://127.0.0.1:1\n{exporter_auth}\
             service:\n  extensions: [{service_ext}]\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [otlphttp]\n"
        )
    };
    let client = "    auth:\n      authenticator: basicauth/c\n";
    let server = "        auth:\n          authenticator: basicauth/s\n";
    let c_ext = "  basicauth/c:\n    client_auth:\n      username: u\n      password: p\n";
    let s_ext = "  basicauth/s:\n    htpasswd:\n      inline: \"u:p\"\n";
    let cases = [
        (
            base(c_ext, "", client, ""),
            "exporters.otlphttp.auth.authenticator `basicauth/c` must also be listed in service.extensions",
        ),
        (
            base("  health_check:\n", "health_check", client, ""),
            "`basicauth/c` is not defined under extensions",
        ),
        (
            base(s_ext, "basicauth/s", "    auth:\n      authenticator: basicauth/s\n", ""),
            "`basicauth/s` has no client_auth",
        ),
        (
            base(c_ext, "basicauth/c", "", "        auth:\n          authenticator: basicauth/c\n"),
            "receivers.otlp.protocols.http.auth.authenticator `basicauth/c` has no htpasswd",
        ),
        (
            base(
                "  basicauth/c:\n    client_auth:\n      username: u\n    htpasswd:\n      inline: \"u:p\"\n",
                "basicauth/c",
                client,
                "",
            ),
            "extensions.basicauth/c: set htpasswd (for receivers) or client_auth (for exporters), not both",
        ),
        (
            base("  bearertokenauth:\n    scheme: Bearer\n", "bearertokenauth", "", ""),
            "extensions.bearertokenauth: needs a token, a filename or tokens",
        ),
        (
            base(
                "  health_check:\n",
                "health_check",
                "    auth:\n      authenticator: health_check\n",
                "",
            ),
            "`health_check` is not an authenticator",
        ),
        (
            base(
                "  oauth2client:\n    client_id: a\n    client_secret: b\n    token_url: http://127.0.0.1:1/t\n",
                "oauth2client",
                "",
                "        auth:\n          authenticator: oauth2client\n",
            ),
            "`oauth2client` is an oauth2client, which only exporters use",
        ),
        (
            base(
                "  oauth2client:\n    client_id: a\n    client_secret: b\n",
                "oauth2client",
                "    auth:\n      authenticator: oauth2client\n",
                "",
            ),
            "extensions.oauth2client: token_url must be set",
        ),
    ];
    for (config, expected) in cases {
        let (code, _, stderr) = validate(d.path(), &config);
        assert_ne!(code, 0, "accepted:\n{config}");
        assert!(
            stderr.contains(expected),
            "{expected:?} not in:\n{stderr}\n{config}"
        );
    }
    let (code, _, stderr) = validate(d.path(), &base(c_ext, "basicauth/c", client, ""));
    assert_eq!(code, 0, "{stderr}");

    // A line the collector cannot check is named when it starts, not taken as plain text.
    let apr1 = "u:$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00";
    let config = base(
        &format!("  basicauth/s:\n    htpasswd:\n      inline: \"{apr1}\"\n"),
        "basicauth/s",
        "",
        server,
    );
    std::fs::write(d.path().join("c.yaml"), config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meshtrace"))
        .args(["collector", "--config"])
        .arg(d.path().join("c.yaml"))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("htpasswd.inline line 1 (user \"u\"): Apache MD5 hashes are not supported"),
        "{stderr}"
    );
}

/// tests/python/oauth2_token_server.py; its stdout lines arrive on the receiver.
struct TokenServer {
    child: std::process::Child,
    port: u16,
    lines: std::sync::mpsc::Receiver<String>,
}

impl TokenServer {
    fn start(id: &str, secret: &str, expires_in: u32, body_only: bool) -> TokenServer {
        use std::io::BufRead;
        let py = common::python_dir();
        let mut cmd = Command::new(py.join(".venv/bin/python"));
        cmd.arg(py.join("oauth2_token_server.py"))
            .args([id, secret, &expires_in.to_string()]);
        if body_only {
            cmd.arg("body-only");
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the token server");
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                println!("[token server] {line}");
                let _ = tx.send(line);
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("it starts");
        let port = first
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        TokenServer { child, port, lines }
    }

    /// The "issued ..." lines so far.
    fn issued(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway whose OTLP gRPC and Zipkin receivers take the token server's first tokens.
fn token_gateway(dir: &Path) -> Proc {
    let config = "extensions:\n  bearertokenauth:\n    tokens: [tok-1, tok-2, tok-3, tok-4, tok-5, tok-6]\n\
         receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n        auth:\n          authenticator: bearertokenauth\n\
         \x20 zipkin:\n    endpoint: 127.0.0.1:0\n    auth:\n      authenticator: bearertokenauth\n\
         exporters:\n  debug:\n\
         service:\n  extensions: [bearertokenauth]\n  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n\
         \x20 pipelines:\n    traces:\n      receivers: [otlp, zipkin]\n      exporters: [debug]\n";
    let work = dir.join("gateway");
    std::fs::create_dir_all(&work).unwrap();
    collector(&work, config, &["otlp-grpc", "zipkin", "metrics"])
}

fn oauth_agent(dir: &Path, g: &Proc, token_url: &str, secret: &str, retry: bool) -> Proc {
    let retry =
        format!("    retry_on_failure:\n      enabled: {retry}\n      initial_interval: 200ms\n");
    agent(
        dir,
        &format!(
            "  oauth2client:\n    client_id: agent\n    client_secret: \"{secret}\"\n\
             \x20   token_url: {token_url}\n    scopes: [traces.write]\n\
             \x20   endpoint_params:\n      audience: gateway\n    expiry_buffer: 1s\n"
        ),
        &format!(
            "  otlp:\n    endpoint: {}\n    tls:\n      insecure: true\n    auth:\n      authenticator: oauth2client\n{retry}\
             \x20 zipkin:\n    endpoint: http://{}/api/v2/spans\n    auth:\n      authenticator: oauth2client\n{retry}",
            g.addr("otlp-grpc"),
            g.addr("zipkin")
        ),
        "oauth2client",
        "otlp, zipkin",
    )
}

#[test]
fn oauth2client_fetches_and_renews_tokens_for_the_exporters() {
    let d = tempfile::tempdir().unwrap();
    let g = token_gateway(d.path());
    // A secret with characters RFC 6749 has form-encoded inside the Basic credentials.
    let server = TokenServer::start("agent", "s3:cr/t +x", 4, false);
    let url = format!("http://127.0.0.1:{}/token", server.port);
    let a = oauth_agent(d.path(), &g, &url, "s3:cr/t +x", true);
    let both = |n| {
        common::eventually(Duration::from_secs(30), || {
            (accepted_spans(&g, "otlp", "grpc") == n && accepted_spans(&g, "zipkin", "http") == n)
                .then_some(())
        })
    };
    send_sdk_trace("otlp-grpc", a.addr("otlp-grpc"), "oauth");
    assert!(both(4).is_some(), "delivered with the first token");
    let first = server.issued();
    assert_eq!(first.len(), 1, "one token for both exporters: {first:?}");
    assert_eq!(first[0], "issued tok-1 scope=traces.write audience=gateway");
    // The token lives 4 s and is renewed 1 s before: 3 s later it is fetched again.
    std::thread::sleep(Duration::from_millis(3200));
    send_sdk_trace("otlp-grpc", a.addr("otlp-grpc"), "oauth");
    assert!(both(8).is_some(), "delivered with the renewed token");
    assert_eq!(
        server.issued(),
        ["issued tok-2 scope=traces.write audience=gateway"]
    );
    assert_eq!(a.terminate(), Some(0));

    // A server that takes the credentials only in the form body: refused as Basic, then sent so.
    let d2 = tempfile::tempdir().unwrap();
    let body_only = TokenServer::start("agent", "pw", 60, true);
    let url = format!("http://127.0.0.1:{}/token", body_only.port);
    let a = oauth_agent(d2.path(), &g, &url, "pw", true);
    send_sdk_trace("otlp-grpc", a.addr("otlp-grpc"), "oauth");
    assert!(both(12).is_some(), "delivered with credentials in the body");
    assert_eq!(body_only.issued().len(), 1);
    assert_eq!(a.terminate(), Some(0));

    // A wrong secret: no token, nothing sent, the exports counted as failed.
    let d3 = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/token", server.port);
    let wrong = oauth_agent(d3.path(), &g, &url, "wrong", false);
    send_sdk_trace("otlp-grpc", wrong.addr("otlp-grpc"), "oauth");
    let failed = common::eventually(Duration::from_secs(30), || {
        (metric(
            &wrong,
            "otelcol_exporter_send_failed_spans_total{exporter=\"zipkin\"}",
        ) >= 4)
            .then_some(())
    });
    assert!(
        failed.is_some(),
        "the exports without a token were counted as failed"
    );
    assert_eq!(accepted_spans(&g, "zipkin", "http"), 12);
    assert!(server.issued().is_empty());
    assert_eq!(wrong.terminate(), Some(0));
    assert_eq!(g.terminate(), Some(0));
}
