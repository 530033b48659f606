//! `meshtrace collector validate` and start-up: the seed article's config validates and starts
//! (its unreachable exporter is retried, not fatal); broken configs are refused with the file
//! line and the key at fault.

mod collector_harness;
mod common;

use std::time::Duration;

use collector_harness::*;

const SEED: &str = r#"receivers:
  otlp:
    protocols:
      grpc:
      http:
  zipkin:
    endpoint: "0.0.0.0:9411"
exporters:
  otlp/jaeger:
    endpoint: "jaeger.default:4317"
    tls:
      insecure: true
service:
  pipelines:
    traces:
      receivers: [otlp, zipkin]
      exporters: [otlp/jaeger]
"#;

#[test]
fn collector_validate_accepts_the_seed_config_and_explains_it() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = validate(dir.path(), SEED);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("pipeline traces:"), "{out}");
    assert!(
        out.contains("otlp (OTLP/gRPC on 0.0.0.0:4317, OTLP/HTTP on 0.0.0.0:4318"),
        "{out}"
    );
    assert!(out.contains("zipkin (Zipkin v2"), "{out}");
    assert!(
        out.contains("otlp/jaeger: OTLP/gRPC to jaeger.default:4317"),
        "{out}"
    );
    assert!(out.contains("valid"), "{out}");
}

#[test]
fn collector_validate_names_the_problem_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // (broken config, expected line, words the message must contain)
        (
            SEED.replace("insecure: true", "insecur: true"),
            12,
            "unknown field `insecur`",
        ),
        (
            SEED.replace("  zipkin:\n    endpoint", "  jaeger:\n    endpoint"),
            6,
            "unknown receiver type `jaeger`",
        ),
        (
            SEED.replace("[otlp/jaeger]", "[otlp/jaeger, otlp/tempo]"),
            17,
            "exporter `otlp/tempo`, which is not defined",
        ),
        (
            SEED.replace(
                "receivers: [otlp, zipkin]",
                "receivers: [otlp, zipkin, kafka]",
            ),
            16,
            "receiver `kafka`, which is not defined",
        ),
        (
            format!("{SEED}processors:\n  batch:\n    timeout: soon\n"),
            20,
            "duration \"soon\"",
        ),
        (
            format!("{SEED}processors:\n  resourcedetection:\n    detectors: [env, ec2]\n"),
            19,
            "processors.resourcedetection.detectors: ec2 is not built (env and system are",
        ),
        (
            format!(
                "{SEED}processors:\n  resourcedetection:\n    detectors: [system]\n    system:\n      hostname_sources: [cname]\n"
            ),
            19,
            "hostname_sources: cname is not built",
        ),
    ];
    for (config, line, words) in cases {
        let (code, out, err) = validate(dir.path(), &config);
        assert_eq!(code, 1, "should be refused:\n{config}\nstdout: {out}");
        assert!(
            err.contains(&format!("validate.yaml:{line}: ")),
            "line {line} expected in: {err}"
        );
        assert!(err.contains(words), "{words:?} expected in: {err}");
    }
}

#[test]
fn collector_starts_the_seed_config_and_keeps_running_with_its_backend_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    // The seed, with listen addresses from the environment (defaults: free loopback ports).
    let config = SEED
        .replace(
            "      grpc:\n      http:\n",
            "      grpc:\n        endpoint: ${env:MT_TEST_GRPC:-127.0.0.1:0}\n      http:\n        endpoint: ${env:MT_TEST_HTTP:-127.0.0.1:0}\n",
        )
        .replace("\"0.0.0.0:9411\"", "${env:MT_TEST_ZIPKIN:-127.0.0.1:0}")
        .replace(
            "receivers:\n",
            "extensions:\n  health_check:\n    endpoint: 127.0.0.1:0\nreceivers:\n",
        )
        .replace("service:\n", "service:\n  extensions: [health_check]\n")
        + "  telemetry:\n    metrics:\n      address: 127.0.0.1:0\n";
    let c = collector(
        dir.path(),
        &config,
        &[
            "otlp-grpc",
            "otlp-http",
            "zipkin",
            "metrics",
            "health_check",
        ],
    );
    let health = common::get(&format!("http://{}/", c.addr("health_check")));
    assert_eq!(health.status, 200, "{}", health.text());
    let body = otlp_json_request(&random_trace_ids(5, 3), "seed-test", 1);
    let url = format!("http://{}/v1/traces", c.addr("otlp-http"));
    let answer = common::post(&url, &["Content-Type: application/json"], &body);
    assert_eq!(answer.status, 200, "{}", answer.text());
    // The exporter cannot reach jaeger.default: the spans wait in its queue, and it retries.
    let metrics_url = format!("http://{}/metrics", c.addr("metrics"));
    let metrics = common::eventually(Duration::from_secs(20), || {
        let text = common::get(&metrics_url).text();
        (text.contains("otelcol_receiver_accepted_spans_total")
            && text.contains("otelcol_exporter_queue_capacity{exporter=\"otlp/jaeger\"} 1000"))
        .then_some(text)
    })
    .expect("self-metrics show the receiver and the exporter queue");
    assert!(metrics.contains("otelcol_exporter_queue_size"), "{metrics}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.terminate(), Some(0), "SIGTERM ends the collector cleanly");
}

#[test]
fn collector_validate_accepts_the_example_in_the_repo() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = validate(dir.path(), include_str!("../../../examples/otelcol.yaml"));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("otlp/jaeger"), "{out}");
    let (code, out, err) = validate(
        dir.path(),
        include_str!("../../../examples/otelcol-agent.yaml"),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    for component in [
        "filter/health",
        "transform/scrub",
        "resourcedetection",
        "basicauth/backend",
    ] {
        assert!(out.contains(component), "{component} missing from:\n{out}");
    }
}

#[test]
fn collector_logs_at_the_level_its_config_names_unless_rust_log_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let config = |level: &str| {
        SEED.replace("0.0.0.0:9411", "127.0.0.1:0")
            .replace("      grpc:\n      http:\n", "      grpc:\n        endpoint: 127.0.0.1:0\n")
            .replace(
                "service:\n",
                &format!("service:\n  telemetry:\n    logs:\n      level: {level}\n    metrics:\n      level: none\n"),
            )
    };
    // Started, then stopped: what it wrote to stderr at each level.
    let run = |level: &str, rust_log: Option<&str>| {
        let path = dir.path().join(format!("{level}.yaml"));
        std::fs::write(&path, config(level)).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_meshtrace"));
        cmd.args(["collector", "--config"]).arg(&path);
        cmd.env_remove("RUST_LOG");
        if let Some(v) = rust_log {
            cmd.env("RUST_LOG", v);
        }
        let stderr = dir.path().join(format!("{level}.stderr"));
        cmd.stderr(std::fs::File::create(&stderr).unwrap());
        let p = Proc::start(cmd, &["otlp-grpc", "zipkin"]);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(p.terminate(), Some(0));
        std::fs::read_to_string(&stderr).unwrap()
    };
    let warn = run("warn", None);
    assert!(!warn.contains(" INFO "), "{warn}");
    let info = run("info", None);
    assert!(
        info.contains(" INFO ") && info.contains("pipeline traces running"),
        "{info}"
    );
    let env_wins = run("error", Some("info"));
    assert!(env_wins.contains("pipeline traces running"), "{env_wins}");
}

/// The newer self-metrics spelling, `service.telemetry.metrics.readers` with a Prometheus pull
/// reader (what recent OTel Collector configs carry instead of `address`), serves `/metrics` on
/// that host and port; readers meshtrace cannot honour are named by `validate`.
#[test]
fn collector_serves_self_metrics_where_a_prometheus_pull_reader_says() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let readers = format!(
        "service:\n  telemetry:\n    metrics:\n      level: detailed\n      readers:\n        - pull:\n            exporter:\n              prometheus:\n                host: 127.0.0.1\n                port: {port}\n"
    );
    let config = SEED
        .replace(
            "      grpc:\n      http:\n",
            "      grpc:\n        endpoint: 127.0.0.1:0\n      http:\n        endpoint: 127.0.0.1:0\n",
        )
        .replace("\"0.0.0.0:9411\"", "127.0.0.1:0")
        .replace("service:\n", &readers);
    let c = collector(dir.path(), &config, &["otlp-grpc"]);
    let m = common::eventually(Duration::from_secs(10), || {
        let a = common::curl(&[&format!("http://127.0.0.1:{port}/metrics")]);
        (a.status == 200).then_some(a.text())
    })
    .expect("/metrics on the reader's port");
    assert!(m.contains("otelcol_"), "{m}");
    assert_eq!(c.terminate(), Some(0));

    for (reader, named) in [
        (
            "        - periodic:\n            exporter:\n              otlp:\n                endpoint: x:4318\n",
            "periodic readers (pushing self-metrics) are not supported",
        ),
        (
            "        - pull:\n            exporter:\n              prometheus:\n                host: 127.0.0.1\n                port: 1\n                without_units: true\n",
            "without_units",
        ),
    ] {
        let text = SEED.replace(
            "service:\n",
            &format!("service:\n  telemetry:\n    metrics:\n      readers:\n{reader}"),
        );
        let (code, _, err) = validate(dir.path(), &text);
        assert_ne!(code, 0);
        assert!(err.contains(named), "{named}: {err}");
    }
    let both = config.replace("      level: detailed\n", "      address: 127.0.0.1:0\n");
    let (code, _, err) = validate(dir.path(), &both);
    assert_ne!(code, 0);
    assert!(
        err.contains("address or service.telemetry.metrics.readers, not both"),
        "{err}"
    );
}
