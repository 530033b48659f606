use super::*;

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

fn no_env(_: &str) -> Option<String> {
    None
}

fn errors(text: &str) -> Vec<ConfigError> {
    Config::parse(text, &no_env)
        .expect_err("config should be refused")
        .0
}

#[test]
fn the_seed_config_parses_unchanged() {
    let c = Config::parse(SEED, &no_env).unwrap();
    assert_eq!(c.receivers.len(), 2);
    let Receiver::Otlp(otlp) = &c.receivers[0].1 else {
        panic!("otlp first")
    };
    assert_eq!(otlp.protocols.grpc, Some(ServerSettings::default()));
    assert_eq!(otlp.protocols.http, Some(ServerSettings::default()));
    let jaeger: ComponentId = "otlp/jaeger".parse().unwrap();
    assert_eq!(jaeger.ty(), "otlp");
    assert_eq!(jaeger.name(), Some("jaeger"));
    let Some(Exporter::Otlp(e)) = c.exporter(&jaeger) else {
        panic!("exporter")
    };
    assert!(e.tls.insecure);
    assert_eq!(e.retry_on_failure, RetryOnFailure::default());
    assert!(e.sending_queue.enabled);
    let text = explain(&c);
    assert!(text.contains("pipeline traces:"), "{text}");
    assert!(text.contains("OTLP/gRPC on 0.0.0.0:4317"), "{text}");
    assert!(
        text.contains("Zipkin v2 JSON/proto on 0.0.0.0:9411"),
        "{text}"
    );
    assert!(
        text.contains("otlp/jaeger: OTLP/gRPC to jaeger.default:4317"),
        "{text}"
    );
}

#[test]
fn env_substitution_with_defaults() {
    let text = SEED
        .replace("\"0.0.0.0:9411\"", "${env:ZIPKIN_ADDR:-127.0.0.1:0}")
        .replace("jaeger.default:4317", "${BACKEND}");
    let env = |n: &str| (n == "BACKEND").then(|| "10.0.0.1:4317".to_owned());
    let c = Config::parse(&text, &env).unwrap();
    let Receiver::Zipkin(z) = &c.receivers[1].1 else {
        panic!()
    };
    assert_eq!(z.endpoint.as_deref(), Some("127.0.0.1:0"));
    let Exporter::Otlp(e) = &c.exporters[0].1 else {
        panic!()
    };
    assert_eq!(e.endpoint.as_deref(), Some("10.0.0.1:4317"));
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let text = SEED.replace(
        "      insecure: true",
        "      insecure: true\n      insecur: false",
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].message.contains("unknown field `insecur`"),
        "{}",
        e[0].message
    );
    assert_eq!(e[0].line, Some(13), "{e:?}");
}

#[test]
fn unknown_component_type_is_named_with_its_line() {
    let text = SEED.replace("  zipkin:\n    endpoint", "  jaeger_thrift:\n    endpoint");
    let e = errors(&text);
    assert!(
        e[0].message
            .contains("unknown receiver type `jaeger_thrift`"),
        "{}",
        e[0].message
    );
    assert_eq!(e[0].line, Some(6), "{e:?}");
}

#[test]
fn a_pipeline_naming_an_undefined_component_is_refused() {
    let text = SEED.replace(
        "exporters: [otlp/jaeger]",
        "exporters: [otlp/jaeger, otlp/tempo]",
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].message
            .contains("exporter `otlp/tempo`, which is not defined"),
        "{}",
        e[0].message
    );
    assert_eq!(e[0].line, Some(17), "{e:?}");
    let text = SEED.replace(
        "      exporters: [otlp/jaeger]",
        "      processors:\n        - batch\n      exporters: [otlp/jaeger]",
    );
    let e = errors(&text);
    assert!(e[0].message.contains("processor `batch`"), "{e:?}");
    assert_eq!(e[0].line, Some(18), "{e:?}");
}

#[test]
fn bad_values_and_unsupported_things_are_refused() {
    let e = errors(&SEED.replace(
        "      insecure: true\n",
        "      insecure_skip_verify: true\n",
    ));
    assert!(
        e[0].message
            .contains("insecure_skip_verify is not supported"),
        "{e:?}"
    );
    assert!(e[0].message.contains("exporters.otlp/jaeger.tls"), "{e:?}");
    let e = errors(&SEED.replace("    traces:", "    metrics:"));
    assert!(e[0].message.contains("only traces pipelines"), "{e:?}");
    let e = errors(&SEED.replace(
        "service:\n",
        "service:\n  telemetry:\n    logs:\n      level: chatty\n    metrics:\n      level: all\n",
    ));
    assert!(
        e[0].message
            .contains("logs.level \"chatty\" is not debug, info, warn or error"),
        "{e:?}"
    );
    assert!(e[1].message.contains("metrics.level \"all\""), "{e:?}");
    let ok = SEED.replace(
        "service:\n",
        "service:\n  telemetry:\n    logs:\n      level: WARN\n",
    );
    assert!(
        Config::parse(&ok, &no_env).is_ok(),
        "upper case as the OTel Collector accepts"
    );
    let text = format!("{SEED}processors:\n  batch:\n    timeout: 5 parsecs\n");
    let e = errors(&text);
    assert!(e[0].message.contains("unknown unit"), "{e:?}");
    assert_eq!(e[0].line, Some(20), "{e:?}");
    let text = format!("{SEED}processors:\n  probabilistic_sampler:\n    mode: random\n");
    let e = errors(&text);
    assert!(e[0].message.contains("unknown variant `random`"), "{e:?}");
    let e = errors("receivers: [1, 2]\n");
    assert!(e[0].line.is_some(), "{e:?}");
}

#[test]
fn full_schema_parses() {
    let text = r#"
extensions:
  health_check:
  file_storage/queue:
    directory: /tmp/q
receivers:
  otlp/in:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: 512
    spike_limit_mib: 128
  probabilistic_sampler:
    sampling_percentage: 1
    hash_seed: 22
  batch:
    send_batch_size: 100
    send_batch_max_size: 200
    timeout: 1s
  attributes/dc:
    actions:
      - key: datacenter
        value: eu-1
        action: insert
      - key: user.email
        action: hash
  resource:
    attributes:
      - key: cluster
        from_attribute: k8s.cluster.name
        action: upsert
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:4318
    compression: none
    retry_on_failure:
      max_elapsed_time: 0
  zipkin:
    endpoint: http://127.0.0.1:9411/api/v2/spans
  debug:
    verbosity: detailed
service:
  extensions: [health_check]
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces/a:
      receivers: [otlp/in]
      processors: [memory_limiter, probabilistic_sampler, attributes/dc, resource, batch]
      exporters: [otlphttp, zipkin, debug]
"#;
    let c = Config::parse(text, &no_env).unwrap();
    let Some(Processor::ProbabilisticSampler(s)) =
        c.processor(&"probabilistic_sampler".parse().unwrap())
    else {
        panic!()
    };
    assert_eq!(s.effective_mode(), SamplerMode::HashSeed);
    assert!(s.fail_closed);
    let Some(Exporter::OtlpHttp(h)) = c.exporter(&"otlphttp".parse().unwrap()) else {
        panic!()
    };
    assert!(h.retry_on_failure.max_elapsed_time.is_zero());
    let text = explain(&c);
    assert!(text.contains("keeps 1% of traces"), "{text}");
    assert!(text.contains("insert datacenter = eu-1"), "{text}");
}

#[test]
fn the_go_collectors_debug_page_extensions_are_accepted_with_their_keys_only() {
    let text = format!(
        "{SEED}  extensions: [pprof, zpages/ui]\nextensions:\n  pprof:\n    endpoint: localhost:1777\n    block_profile_fraction: 3\n  zpages/ui:\n    endpoint: localhost:55679\n"
    );
    let c = Config::parse(&text, &no_env).unwrap();
    assert_eq!(
        c.extension(&"pprof".parse().unwrap()),
        Some(&Extension::GoDebugPages(GoDebugPages {
            endpoint: Some("localhost:1777".into()),
            block_profile_fraction: Some(3),
            ..GoDebugPages::default()
        }))
    );
    assert!(matches!(
        c.extension(&"zpages/ui".parse().unwrap()),
        Some(Extension::GoDebugPages(_))
    ));
    let e = errors(&format!(
        "{SEED}extensions:\n  zpages:\n    endpoint: localhost:55679\n    enpoint: x\n"
    ));
    assert!(e[0].message.contains("enpoint"), "{e:?}");
    let e = errors(&format!("{SEED}extensions:\n  memory_ballast:\n"));
    assert!(
        e[0].message.contains("memory_ballast") && e[0].message.contains("pprof, zpages"),
        "{e:?}"
    );
}

#[test]
fn grpc_keepalive_and_zstd_are_read_for_the_otlp_exporter_only() {
    let text = SEED.replace(
        "    tls:\n      insecure: true\n",
        "    tls:\n      insecure: true\n    compression: zstd\n    keepalive:\n      time: 10s\n      timeout: 5s\n      permit_without_stream: true\n",
    );
    let c = Config::parse(&text, &no_env).unwrap();
    let Some(Exporter::Otlp(e)) = c.exporter(&"otlp/jaeger".parse().unwrap()) else {
        panic!("exporter")
    };
    assert_eq!(Compression::of(e.compression), Some(Compression::Zstd));
    let k = e.keepalive.as_ref().expect("keepalive");
    assert_eq!(k.time, Some(std::time::Duration::from_secs(10)));
    assert_eq!(k.timeout, Some(std::time::Duration::from_secs(5)));
    assert!(k.permit_without_stream);
    assert!(
        explain(&c).contains("jaeger.default:4317, zstd"),
        "{}",
        explain(&c)
    );

    let e = errors(
        &text
            .replace("otlp/jaeger", "otlphttp/jaeger")
            .replace("\"jaeger.default:4317\"", "http://jaeger.default:4318"),
    );
    assert!(
        e.iter()
            .any(|e| e.message.contains("keepalive is a gRPC setting")),
        "{e:?}"
    );
    let e = errors(&text.replace("permit_without_stream", "permit_without_streams"));
    assert!(e[0].message.contains("permit_without_streams"), "{e:?}");
    let e = errors(&text.replace("compression: zstd", "compression: snappy"));
    assert!(e[0].message.contains("snappy"), "{e:?}");
}

#[test]
fn grpc_receiver_connection_settings_are_read_and_unsupported_ones_named() {
    let with = |grpc: &str| {
        SEED.replace(
            "      grpc:\n      http:\n",
            &format!("      grpc:\n{grpc}      http:\n"),
        )
    };
    let c = Config::parse(
        &with("        max_concurrent_streams: 16\n        keepalive:\n          server_parameters:\n            time: 30s\n            timeout: 5s\n            max_connection_age: 60s\n            max_connection_age_grace: 5s\n"),
        &no_env,
    )
    .unwrap();
    let Receiver::Otlp(otlp) = &c.receivers[0].1 else {
        panic!("otlp first")
    };
    let got = otlp.protocols.grpc.as_ref().unwrap().connections();
    let s = std::time::Duration::from_secs;
    assert_eq!(
        got,
        receiver::otlp_grpc::Connections {
            max_concurrent_streams: Some(16),
            keepalive_time: Some(s(30)),
            keepalive_timeout: Some(s(5)),
            max_connection_age: Some(s(60)),
            max_connection_age_grace: Some(s(5)),
        }
    );
    for (grpc, named) in [
        (
            "        keepalive:\n          enforcement_policy:\n            min_time: 10s\n",
            "enforcement_policy is not supported",
        ),
        (
            "        keepalive:\n          server_parameters:\n            max_connection_idle: 1m\n",
            "max_connection_idle is not supported",
        ),
        (
            "        keepalive:\n          server_parameters:\n            tim: 1s\n",
            "tim",
        ),
    ] {
        let e = errors(&with(grpc));
        assert!(e.iter().any(|e| e.message.contains(named)), "{named}: {e:?}");
    }
    let e = errors(&SEED.replace(
        "      http:\n",
        "      http:\n        max_concurrent_streams: 4\n",
    ));
    assert!(
        e.iter().any(|e| e
            .message
            .contains("max_concurrent_streams is a gRPC setting")),
        "{e:?}"
    );
}

#[test]
fn sending_queue_takes_block_on_overflow_and_counts_requests_only() {
    let text = SEED.replace(
        "    tls:\n      insecure: true\n",
        "    tls:\n      insecure: true\n    sending_queue:\n      block_on_overflow: true\n      sizer: requests\n",
    );
    let c = Config::parse(&text, &no_env).unwrap();
    let Some(Exporter::Otlp(e)) = c.exporter(&"otlp/jaeger".parse().unwrap()) else {
        panic!("exporter")
    };
    assert!(e.sending_queue.block_on_overflow);
    let e = errors(&text.replace("sizer: requests", "sizer: items"));
    assert!(
        e.iter()
            .any(|e| e.message.contains("sizer \"items\" is not supported")),
        "{e:?}"
    );
}
