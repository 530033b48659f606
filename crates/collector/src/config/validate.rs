//! Cross-checks a parsed config: pipelines name defined components, settings are coherent,
//! and features meshtrace does not have yet are refused rather than ignored.

use crate::auth::Role;

use super::{
    Action, ActionKind, ComponentId, Config, ConfigError, Exporter, Extension, PipelineId,
    Processor, Receiver, SamplerMode, TailPolicy, TailPolicyType,
};

pub(super) fn check(config: &Config, text: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut err = |line: Option<usize>, message: String| errors.push(ConfigError { line, message });

    for (id, r) in &config.receivers {
        let at = locate(text, &["receivers", &id.to_string()], None);
        match r {
            Receiver::Otlp(o) => {
                if o.protocols.grpc.is_none() && o.protocols.http.is_none() {
                    err(
                        at,
                        format!(
                            "receivers.{id}: set at least one of protocols.grpc, protocols.http"
                        ),
                    );
                }
                for (proto, s) in [("grpc", &o.protocols.grpc), ("http", &o.protocols.http)] {
                    if let Some(ep) = s.as_ref().and_then(|s| s.endpoint.as_deref()) {
                        if !is_host_port(ep) {
                            err(at, format!("receivers.{id}.protocols.{proto}.endpoint {ep:?} is not host:port"));
                        }
                    }
                    if let Some(k) = s.as_ref().and_then(|s| s.keepalive.as_ref()) {
                        let name = format!("receivers.{id}.protocols.{proto}.keepalive");
                        if proto != "grpc" {
                            err(at, format!("{name} is a gRPC setting"));
                        }
                        if k.enforcement_policy.is_some() {
                            err(at, format!("{name}.enforcement_policy is not supported: the HTTP/2 server does not police clients' pings"));
                        }
                        if k.server_parameters
                            .as_ref()
                            .is_some_and(|p| p.max_connection_idle.is_some())
                        {
                            err(at, format!("{name}.server_parameters.max_connection_idle is not supported: use max_connection_age to have clients reconnect"));
                        }
                    }
                    if let Some(path) = s.as_ref().and_then(|s| s.traces_url_path.as_deref()) {
                        let key = format!("receivers.{id}.protocols.{proto}.traces_url_path");
                        if proto != "http" {
                            err(at, format!("{key} is an HTTP setting"));
                        } else if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
                            err(at, format!("{key} {path:?} must be a path starting with /"));
                        }
                    }
                    if proto != "grpc"
                        && s.as_ref()
                            .is_some_and(|s| s.max_concurrent_streams.is_some())
                    {
                        err(at, format!("receivers.{id}.protocols.{proto}.max_concurrent_streams is a gRPC setting"));
                    }
                    if let Some(tls) = s.as_ref().and_then(|s| s.tls.as_deref()) {
                        for problem in crate::server_tls::check(tls) {
                            err(
                                at,
                                format!("receivers.{id}.protocols.{proto}.tls: {problem}"),
                            );
                        }
                    }
                    if let Some(cors) = s.as_ref().and_then(|s| s.cors.as_ref()) {
                        if proto == "grpc" {
                            err(at, format!("receivers.{id}.protocols.grpc.cors: CORS applies to the http protocol"));
                        } else if let Err(e) = cors.to_cors().layer() {
                            err(at, format!("receivers.{id}.protocols.http.cors: {e}"));
                        }
                    }
                }
            }
            Receiver::Zipkin(z) => {
                if let Some(ep) = z.endpoint.as_deref() {
                    if !is_host_port(ep) {
                        err(
                            at,
                            format!("receivers.{id}.endpoint {ep:?} is not host:port"),
                        );
                    }
                }
                for problem in z.tls.iter().flat_map(|t| crate::server_tls::check(t)) {
                    err(at, format!("receivers.{id}.tls: {problem}"));
                }
                if let Some(Err(e)) = z.cors.as_ref().map(|c| c.to_cors().layer()) {
                    err(at, format!("receivers.{id}.cors: {e}"));
                }
            }
        }
    }

    for (id, p) in &config.processors {
        let at = locate(text, &["processors", &id.to_string()], None);
        match p {
            Processor::ProbabilisticSampler(s) => {
                if !s.sampling_percentage.is_finite() || s.sampling_percentage < 0.0 {
                    err(
                        at,
                        format!(
                            "processors.{id}.sampling_percentage must be a number from 0 to 100"
                        ),
                    );
                }
                if !(1..=14).contains(&s.sampling_precision) {
                    err(
                        at,
                        format!("processors.{id}.sampling_precision must be 1 to 14 hex digits"),
                    );
                }
                if s.mode == SamplerMode::HashSeed
                    && s.sampling_percentage > 0.0
                    && (s.sampling_percentage * (16384.0f32 / 100.0)) < 1.0
                {
                    err(at, format!("processors.{id}.sampling_percentage {} is below the hash_seed mode's resolution (1/16384)", s.sampling_percentage));
                }
            }
            Processor::TailSampling(t) => {
                if t.decision_wait.is_zero() || t.num_traces == 0 {
                    err(
                        at,
                        format!("processors.{id}: decision_wait and num_traces must be positive"),
                    );
                }
                if t.policies.is_empty() {
                    err(at, format!("processors.{id}: define at least one policy"));
                }
                for p in &t.policies {
                    check_policy(&mut err, at, id, p, 0);
                }
            }
            Processor::Batch(b) => {
                if b.send_batch_max_size != 0 && b.send_batch_max_size < b.send_batch_size {
                    err(at, format!("processors.{id}.send_batch_max_size must be 0 or at least send_batch_size"));
                }
            }
            Processor::GroupByAttrs(g) => {
                if g.keys.iter().any(String::is_empty) {
                    err(at, format!("processors.{id}.keys: a key is empty"));
                }
            }
            Processor::Redaction(r) => {
                if let Err(e) = crate::processor::redaction::Redaction::new(r) {
                    err(at, format!("processors.{id}: {e}"));
                }
            }
            Processor::Span(sp) => {
                if let Err(e) = crate::processor::span::SpanEdits::new(sp) {
                    err(at, format!("processors.{id}: {e}"));
                }
            }
            Processor::Transform(t) => {
                if let Err(e) = crate::processor::transform::Transform::new(t) {
                    err(at, format!("processors.{id}.{e}"));
                }
            }
            Processor::ResourceDetection(r) => {
                use crate::processor::resourcedetection::{
                    DETECTORS, HOSTNAME_SOURCES, SYSTEM_ATTRIBUTES,
                };
                for d in r
                    .detectors
                    .iter()
                    .filter(|d| !DETECTORS.contains(&d.as_str()))
                {
                    err(at, format!("processors.{id}.detectors: {d} is not built (env and system are; the cloud and orchestrator detectors need services this collector does not ask)"));
                }
                for s in r.system.hostname_sources.iter().flatten() {
                    if !HOSTNAME_SOURCES.contains(&s.as_str()) {
                        err(at, format!("processors.{id}.system.hostname_sources: {s} is not built (dns and os are)"));
                    }
                }
                for (key, e) in &r.system.resource_attributes {
                    if e.enabled && !SYSTEM_ATTRIBUTES.iter().any(|(k, _)| k == key) {
                        err(at, format!("processors.{id}.system.resource_attributes.{key} is not built (host.name, os.type, host.arch and host.id are)"));
                    }
                }
            }
            Processor::Filter(f) => {
                if let Some(mode) = f
                    .error_mode
                    .as_deref()
                    .filter(|m| !["propagate", "ignore", "silent"].contains(m))
                {
                    err(
                        at,
                        format!(
                            "processors.{id}.error_mode {mode:?}: use propagate, ignore or silent"
                        ),
                    );
                }
                if f.spans.is_some() {
                    err(at, format!("processors.{id}.spans (include/exclude) is the older form and is not built: write OTTL conditions under traces.span, e.g. 'attributes[\"http.target\"] == \"/healthz\"'"));
                }
                if !f.traces.spanevent.is_empty() {
                    err(at, format!("processors.{id}.traces.spanevent: dropping span events is not built (traces.span is)"));
                }
                for (n, c) in f.traces.span.iter().enumerate() {
                    if let Err(e) = crate::processor::ottl::Condition::parse(c) {
                        let line = locate(text, &["processors", &id.to_string()], Some(c)).or(at);
                        err(line, format!("processors.{id}.traces.span[{n}] {c:?}: {e}"));
                    }
                }
            }
            Processor::Attributes(a) => {
                check_actions(&mut err, at, id, "actions", &a.actions);
                if let Err(e) = crate::processor::matching::SpanMatcher::new(
                    a.include.as_deref(),
                    a.exclude.as_deref(),
                ) {
                    err(at, format!("processors.{id}.{e}"));
                }
            }
            Processor::Resource(r) => check_actions(&mut err, at, id, "attributes", &r.attributes),
            Processor::MemoryLimiter(m) => {
                if m.check_interval.is_zero() {
                    err(
                        at,
                        format!("processors.{id}.check_interval must be greater than 0"),
                    );
                }
                if m.limit_mib == 0 && m.limit_percentage == 0 {
                    err(
                        at,
                        format!("processors.{id}: set limit_mib or limit_percentage"),
                    );
                }
                if m.limit_mib != 0 && m.spike_limit_mib >= m.limit_mib {
                    err(
                        at,
                        format!("processors.{id}.spike_limit_mib must be less than limit_mib"),
                    );
                }
                if m.limit_percentage > 100
                    || m.spike_limit_percentage >= m.limit_percentage.max(1)
                        && m.limit_percentage != 0
                {
                    err(at, format!("processors.{id}: limit_percentage must be 1-100 and spike_limit_percentage below it"));
                }
            }
        }
    }

    for (id, e) in &config.exporters {
        let at = locate(text, &["exporters", &id.to_string()], None);
        let (endpoint, queue) = match e {
            Exporter::Otlp(o) => {
                if let Some(ep) = o.endpoint.as_deref() {
                    let bare = ep
                        .strip_prefix("http://")
                        .or_else(|| ep.strip_prefix("https://"))
                        .unwrap_or(ep);
                    if !is_host_port(bare) {
                        err(
                            at,
                            format!("exporters.{id}.endpoint {ep:?} is not host:port"),
                        );
                    }
                }
                for problem in crate::exporter::tls::check(&o.tls) {
                    err(at, format!("exporters.{id}.tls: {problem}"));
                }
                (o.endpoint.as_deref(), Some(&o.sending_queue))
            }
            Exporter::OtlpHttp(o) => {
                for ep in [o.endpoint.as_deref(), o.traces_endpoint.as_deref()]
                    .into_iter()
                    .flatten()
                {
                    if !ep.starts_with("http://") && !ep.starts_with("https://") {
                        err(
                            at,
                            format!("exporters.{id}: endpoint {ep:?} must be an http:// or https:// URL"),
                        );
                    }
                }
                for problem in crate::exporter::tls::check(&o.tls) {
                    err(at, format!("exporters.{id}.tls: {problem}"));
                }
                if o.keepalive.is_some() {
                    err(
                        at,
                        format!("exporters.{id}.keepalive is a gRPC setting: the otlp exporter takes it, otlphttp does not"),
                    );
                }
                if let Some(enc) = o.encoding.as_deref() {
                    if enc != "proto" && enc != "json" {
                        err(
                            at,
                            format!("exporters.{id}.encoding must be proto or json, not {enc:?}"),
                        );
                    }
                }
                (
                    o.endpoint.as_deref().or(o.traces_endpoint.as_deref()),
                    Some(&o.sending_queue),
                )
            }
            Exporter::Zipkin(z) => {
                if let Some(ep) = z.endpoint.as_deref() {
                    if !ep.starts_with("http://") && !ep.starts_with("https://") {
                        err(
                            at,
                            format!("exporters.{id}: endpoint {ep:?} must be an http:// or https:// URL"),
                        );
                    }
                }
                for problem in crate::exporter::tls::check(&z.tls) {
                    err(at, format!("exporters.{id}.tls: {problem}"));
                }
                if let Some(f) = z.format.as_deref() {
                    if f != "json" && f != "proto" {
                        err(
                            at,
                            format!("exporters.{id}.format must be json or proto, not {f:?}"),
                        );
                    }
                }
                (z.endpoint.as_deref(), Some(&z.sending_queue))
            }
            Exporter::Debug(_) => (Some(""), None),
            Exporter::File(f) => {
                if f.path.is_empty() {
                    err(at, format!("exporters.{id}.path must be set"));
                }
                if let Some(x) = f
                    .format
                    .as_deref()
                    .filter(|x| !["json", "proto"].contains(x))
                {
                    err(
                        at,
                        format!("exporters.{id}.format must be json or proto, not {x:?}"),
                    );
                }
                if let Some(c) = f
                    .compression
                    .as_deref()
                    .filter(|c| !c.is_empty() && *c != "zstd")
                {
                    err(at, format!("exporters.{id}.compression {c:?}: the file exporter takes zstd or none"));
                }
                if f.append && f.compression.as_deref() == Some("zstd") {
                    err(
                        at,
                        format!("exporters.{id}: append cannot go with compression"),
                    );
                }
                if f.group_by.is_some() {
                    err(at, format!("exporters.{id}.group_by is not built (one file per resource attribute value)"));
                }
                if f.rotation.as_ref().is_some_and(|r| r.localtime) {
                    err(at, format!("exporters.{id}.rotation.localtime is not built: backups are named in UTC"));
                }
                if f.rotation.as_ref().is_some_and(|r| r.max_megabytes == 0) {
                    err(
                        at,
                        format!("exporters.{id}.rotation.max_megabytes must be positive"),
                    );
                }
                (Some(""), None)
            }
            Exporter::LoadBalancing(lb) => {
                if lb.routing_key.as_deref().is_some_and(|k| k != "traceID") {
                    err(
                        at,
                        format!("exporters.{id}.routing_key: only traceID is built yet"),
                    );
                }
                if lb.resolver.k8s.is_some() {
                    err(
                        at,
                        format!("exporters.{id}.resolver.k8s is not built: use the dns resolver with a headless service, or static"),
                    );
                }
                match (&lb.resolver.r#static, &lb.resolver.dns) {
                    (Some(_), Some(_)) => err(
                        at,
                        format!("exporters.{id}.resolver: set one of static and dns, not both"),
                    ),
                    (None, Some(dns)) => {
                        if dns.hostname.trim().is_empty() {
                            err(
                                at,
                                format!("exporters.{id}.resolver.dns.hostname must be set"),
                            );
                        }
                        if dns.interval.is_some_and(|d| d.is_zero()) {
                            err(
                                at,
                                format!("exporters.{id}.resolver.dns.interval must be above 0"),
                            );
                        }
                    }
                    _ => {}
                }
                let hosts = lb
                    .resolver
                    .r#static
                    .as_ref()
                    .map_or(&[][..], |s| &s.hostnames[..]);
                if hosts.is_empty() && lb.resolver.dns.is_none() {
                    err(at, format!("exporters.{id}.resolver.static.hostnames must list at least one backend (or use resolver.dns)"));
                }
                for h in hosts {
                    if !is_host_port(
                        h.trim_start_matches("http://")
                            .trim_start_matches("https://"),
                    ) {
                        err(
                            at,
                            format!("exporters.{id}: backend {h:?} is not host:port"),
                        );
                    }
                }
                for problem in crate::exporter::tls::check(&lb.protocol.otlp.tls) {
                    err(at, format!("exporters.{id}.protocol.otlp.tls: {problem}"));
                }
                (Some(""), Some(&lb.protocol.otlp.sending_queue))
            }
        };
        if endpoint.is_none_or(str::is_empty)
            && !matches!(
                e,
                Exporter::Debug(_) | Exporter::LoadBalancing(_) | Exporter::File(_)
            )
        {
            err(at, format!("exporters.{id}.endpoint must be set"));
        }
        if let Some(q) = queue {
            if q.enabled && (q.num_consumers == 0 || q.queue_size == 0) {
                err(at, format!("exporters.{id}.sending_queue: num_consumers and queue_size must be positive"));
            }
            if let Some(sizer) = q.sizer.as_deref().filter(|s| *s != "requests") {
                err(at, format!("exporters.{id}.sending_queue.sizer {sizer:?} is not supported: queue_size counts requests (batches)"));
            }
            if let Some(storage) = &q.storage {
                match storage.parse::<ComponentId>() {
                    Ok(sid) if matches!(config.extension(&sid), Some(Extension::FileStorage(_))) => {
                        if !config.service.extensions.contains(storage) {
                            err(at, format!("exporters.{id}.sending_queue.storage `{storage}` must also be listed in service.extensions"));
                        }
                    }
                    _ => err(at, format!("exporters.{id}.sending_queue.storage `{storage}` is not a file_storage extension defined under extensions")),
                }
            }
        }
    }

    // Authenticators: every `auth` names an enabled extension that can serve its side.
    for (id, r) in &config.receivers {
        let at = locate(text, &["receivers", &id.to_string()], None);
        let refs = match r {
            Receiver::Otlp(o) => vec![
                (
                    "protocols.grpc.",
                    o.protocols.grpc.as_ref().and_then(|g| g.auth.as_ref()),
                ),
                (
                    "protocols.http.",
                    o.protocols.http.as_ref().and_then(|h| h.auth.as_ref()),
                ),
            ],
            Receiver::Zipkin(z) => vec![("", z.auth.as_ref())],
        };
        for (path, auth) in refs {
            if let Some(m) = auth.and_then(|a| crate::auth::misuse(config, a, Role::Server)) {
                err(at, format!("receivers.{id}.{path}{m}"));
            }
        }
    }
    for (id, e) in &config.exporters {
        let at = locate(text, &["exporters", &id.to_string()], None);
        let (path, auth) = match e {
            Exporter::Otlp(o) | Exporter::OtlpHttp(o) => ("", o.auth.as_ref()),
            Exporter::Zipkin(z) => ("", z.auth.as_ref()),
            Exporter::LoadBalancing(lb) => ("protocol.otlp.", lb.protocol.otlp.auth.as_ref()),
            Exporter::Debug(_) | Exporter::File(_) => ("", None),
        };
        if let Some(m) = auth.and_then(|a| crate::auth::misuse(config, a, Role::Client)) {
            err(at, format!("exporters.{id}.{path}{m}"));
        }
    }

    for (id, e) in &config.extensions {
        let at = locate(text, &["extensions", &id.to_string()], None);
        if let Some(m) = crate::auth::invalid(e) {
            err(at, format!("extensions.{id}: {m}"));
        }
        if let Extension::FileStorage(f) = e {
            if f.directory.as_deref().is_none_or(str::is_empty) {
                err(at, format!("extensions.{id}.directory must be set"));
            }
        }
    }

    // The service section.
    for name in &config.service.extensions {
        let at = locate(text, &["service", "extensions"], Some(name));
        match name.parse::<ComponentId>() {
            Ok(id) if config.extension(&id).is_some() => {}
            Ok(_) => err(
                at,
                format!("service.extensions: `{name}` is not defined under extensions"),
            ),
            Err(e) => err(at, format!("service.extensions: {e}")),
        }
    }
    let metrics = &config.service.telemetry.metrics;
    if let Some(addr) = metrics.address.as_deref() {
        if !is_host_port(addr) {
            err(
                locate(text, &["service", "telemetry", "metrics", "address"], None),
                format!("service.telemetry.metrics.address {addr:?} is not host:port"),
            );
        }
    }
    if !metrics.readers.is_empty() {
        let at = locate(text, &["service", "telemetry", "metrics", "readers"], None);
        let key = "service.telemetry.metrics.readers";
        if metrics.address.is_some() {
            err(
                at,
                format!("set service.telemetry.metrics.address or {key}, not both"),
            );
        }
        if metrics.readers.len() > 1 {
            err(
                at,
                format!(
                    "{key}: one pull reader is supported (self-metrics are served on one endpoint)"
                ),
            );
        }
        for r in &metrics.readers {
            if r.periodic.is_some() {
                err(at, format!("{key}: periodic readers (pushing self-metrics) are not supported; use pull: {{exporter: {{prometheus: {{host, port}}}}}}"));
            } else if r
                .pull
                .as_ref()
                .is_none_or(|p| p.exporter.prometheus.is_none())
            {
                err(
                    at,
                    format!("{key}: a reader needs pull.exporter.prometheus (host, port)"),
                );
            }
        }
        let endpoint = metrics.endpoint();
        if !is_host_port(&endpoint) {
            err(at, format!("{key}: {endpoint:?} is not host:port"));
        }
    }
    if let Some(level) = config.service.telemetry.logs.level.as_deref() {
        if !["debug", "info", "warn", "error"].contains(&level.to_ascii_lowercase().as_str()) {
            err(
                locate(text, &["service", "telemetry", "logs", "level"], None),
                format!("service.telemetry.logs.level {level:?} is not debug, info, warn or error"),
            );
        }
    }
    if let Some(level) = config.service.telemetry.metrics.level.as_deref() {
        if !["none", "basic", "normal", "detailed"].contains(&level) {
            err(
                locate(text, &["service", "telemetry", "metrics", "level"], None),
                format!("service.telemetry.metrics.level {level:?} is not none, basic, normal or detailed"),
            );
        }
    }
    if config.service.pipelines.0.is_empty() {
        err(
            locate(text, &["service"], None),
            "service.pipelines: define at least one traces pipeline".into(),
        );
    }
    for (key, pipeline) in &config.service.pipelines.0 {
        let at = locate(text, &["service", "pipelines", key], None);
        if let Err(e) = key.parse::<PipelineId>() {
            err(at, e);
            continue;
        }
        if pipeline.receivers.is_empty() {
            err(at, format!("pipeline `{key}` has no receivers"));
        }
        if pipeline.exporters.is_empty() {
            err(at, format!("pipeline `{key}` has no exporters"));
        }
        let lists: [(&str, &Vec<String>); 3] = [
            ("receivers", &pipeline.receivers),
            ("processors", &pipeline.processors),
            ("exporters", &pipeline.exporters),
        ];
        for (section, names) in lists {
            for (i, name) in names.iter().enumerate() {
                let line = locate(text, &["service", "pipelines", key, section], Some(name)).or(at);
                let id = match name.parse::<ComponentId>() {
                    Ok(id) => id,
                    Err(e) => {
                        err(line, format!("pipeline `{key}`: {e}"));
                        continue;
                    }
                };
                let defined = match section {
                    "receivers" => {
                        config.receiver(&id).is_some() || config.connector(&id).is_some()
                    }
                    "processors" => config.processor(&id).is_some(),
                    _ => config.exporter(&id).is_some() || config.connector(&id).is_some(),
                };
                if !defined {
                    let also = if section == "processors" {
                        ""
                    } else {
                        " or connectors"
                    };
                    err(line, format!("pipeline `{key}` uses {} `{name}`, which is not defined under {section}{also}", &section[..section.len() - 1]));
                }
                if names[..i].contains(name) {
                    err(
                        line,
                        format!(
                            "pipeline `{key}` lists {} `{name}` twice",
                            &section[..section.len() - 1]
                        ),
                    );
                }
            }
        }
    }
    check_connectors(config, text, &mut err);
    errors
}

/// Connectors: each one both exported to and received from, routing tables naming pipelines
/// that receive from their connector, conditions that parse, and no pipeline feeding itself.
fn check_connectors(config: &Config, text: &str, err: &mut impl FnMut(Option<usize>, String)) {
    let pipelines = config.pipelines();
    let uses = |id: &ComponentId, section: &str| -> Vec<String> {
        pipelines
            .iter()
            .filter(|(_, p)| {
                let names = if section == "receivers" {
                    &p.receivers
                } else {
                    &p.exporters
                };
                names
                    .iter()
                    .any(|n| n.parse::<ComponentId>().ok().as_ref() == Some(id))
            })
            .map(|(pid, _)| pid.to_string())
            .collect()
    };
    for (id, c) in &config.connectors {
        let at = locate(text, &["connectors", &id.to_string()], None);
        let (from, to) = (uses(id, "exporters"), uses(id, "receivers"));
        match (from.is_empty(), to.is_empty()) {
            (true, true) => continue, // defined but unused, as an unused exporter
            (false, true) => err(at, format!("connectors.{id} is an exporter of pipeline {} but no pipeline lists it under receivers", from.join(", "))),
            (true, false) => err(at, format!("connectors.{id} is a receiver of pipeline {} but no pipeline lists it under exporters", to.join(", "))),
            (false, false) => {}
        }
        let super::Connector::Routing(r) = c else {
            continue;
        };
        if let Err(e) = crate::processor::ottl::ErrorMode::parse(r.error_mode.as_deref()) {
            err(at, format!("connectors.{id}: {e}"));
        }
        if r.table.is_empty() {
            err(at, format!("connectors.{id}: table lists no route"));
        }
        let named = |err: &mut dyn FnMut(Option<usize>, String), what: &str, list: &[String]| {
            for p in list {
                if !to.contains(p) {
                    err(at, format!("connectors.{id}: {what} names pipeline `{p}`, which does not list {id} under receivers"));
                }
            }
        };
        named(err, "default_pipelines", &r.default_pipelines);
        for (i, route) in r.table.iter().enumerate() {
            let what = format!("connectors.{id}.table[{i}]");
            if route.pipelines.is_empty() {
                err(at, format!("{what}: pipelines is empty"));
            }
            named(err, &format!("table[{i}]"), &route.pipelines);
            let context = match route.context.as_deref() {
                None | Some("resource") => crate::processor::ottl::Context::Resource,
                Some("span") => crate::processor::ottl::Context::Span,
                Some("request") => {
                    err(at, format!("{what}: context request (routing by the request's metadata) is not built: route by resource or span attributes"));
                    continue;
                }
                Some(other) => {
                    err(
                        at,
                        format!("{what}: context {other:?}: use resource or span"),
                    );
                    continue;
                }
            };
            match route.condition_text() {
                Err(e) => err(at, format!("{what}: {e}")),
                Ok(text) => {
                    if let Err(e) = crate::processor::ottl::Condition::parse_in(text, context) {
                        err(at, format!("{what}: {text:?}: {e}"));
                    }
                }
            }
        }
    }
    // A pipeline must not reach itself through connectors.
    let feeds = |pid: &str| -> Vec<String> {
        let Some((_, p)) = pipelines.iter().find(|(q, _)| q.to_string() == pid) else {
            return Vec::new();
        };
        p.exporters
            .iter()
            .filter_map(|n| n.parse::<ComponentId>().ok())
            .filter(|c| config.connector(c).is_some())
            .flat_map(|c| uses(&c, "receivers"))
            .collect()
    };
    for (start, _) in &pipelines {
        let start = start.to_string();
        let mut seen = vec![start.clone()];
        let mut todo = feeds(&start);
        while let Some(next) = todo.pop() {
            if next == start {
                err(
                    locate(text, &["service", "pipelines", &start], None),
                    format!("pipeline `{start}` sends into itself through connectors (a cycle)"),
                );
                break;
            }
            if !seen.contains(&next) {
                todo.extend(feeds(&next));
                seen.push(next);
            }
        }
    }
}

fn check_policy(
    err: &mut impl FnMut(Option<usize>, String),
    at: Option<usize>,
    id: &ComponentId,
    p: &TailPolicy,
    depth: usize,
) {
    use TailPolicyType as T;
    let name = &p.name;
    let present = [
        ("latency", p.latency.is_some(), T::Latency),
        ("status_code", p.status_code.is_some(), T::StatusCode),
        (
            "string_attribute",
            p.string_attribute.is_some(),
            T::StringAttribute,
        ),
        (
            "numeric_attribute",
            p.numeric_attribute.is_some(),
            T::NumericAttribute,
        ),
        ("probabilistic", p.probabilistic.is_some(), T::Probabilistic),
        ("rate_limiting", p.rate_limiting.is_some(), T::RateLimiting),
        ("span_count", p.span_count.is_some(), T::SpanCount),
        ("and", p.and.is_some(), T::And),
        ("composite", p.composite.is_some(), T::Composite),
        (
            "boolean_attribute",
            p.boolean_attribute.is_some(),
            T::BooleanAttribute,
        ),
        ("trace_state", p.trace_state.is_some(), T::TraceState),
        (
            "ottl_condition",
            p.ottl_condition.is_some(),
            T::OttlCondition,
        ),
    ];
    for (key, set, kind) in present {
        if set && kind != p.kind {
            err(
                at,
                format!(
                    "processors.{id} policy `{name}`: `{key}` settings do not belong to type {:?}",
                    p.kind
                ),
            );
        }
        if !set && kind == p.kind {
            err(
                at,
                format!("processors.{id} policy `{name}`: type {key} needs a `{key}:` block"),
            );
        }
    }
    match p.kind {
        T::Composite => {
            if depth > 0 {
                err(
                    at,
                    format!("processors.{id} policy `{name}`: composite policies do not nest"),
                );
            }
            if let Some(c) = &p.composite {
                let subs: Vec<&str> = c
                    .composite_sub_policy
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect();
                for o in c
                    .policy_order
                    .iter()
                    .chain(c.rate_allocation.iter().map(|r| &r.policy))
                {
                    if !subs.contains(&o.as_str()) {
                        err(at, format!("processors.{id} policy `{name}`: `{o}` is not one of its composite_sub_policy names"));
                    }
                }
                if c.rate_allocation.iter().map(|r| r.percent).sum::<u64>() > 100 {
                    err(at, format!("processors.{id} policy `{name}`: rate_allocation percents add up to more than 100"));
                }
                for sub in &c.composite_sub_policy {
                    check_policy(err, at, id, sub, depth + 1);
                }
            }
        }
        T::StringAttribute => {
            if let Some(sa) = p
                .string_attribute
                .as_ref()
                .filter(|s| s.enabled_regex_matching)
            {
                for v in &sa.values {
                    if let Err(e) = regex::Regex::new(v) {
                        err(at, format!("processors.{id} policy `{name}`: {v:?} is not a valid regular expression: {e}"));
                    }
                }
            }
        }
        T::OttlCondition => {
            if let Some(o) = &p.ottl_condition {
                if !o.spanevent.is_empty() {
                    err(at, format!("processors.{id} policy `{name}`: ottl_condition.spanevent is not built (span is)"));
                }
                if o.span.is_empty() && o.spanevent.is_empty() {
                    err(
                        at,
                        format!(
                            "processors.{id} policy `{name}`: ottl_condition needs span conditions"
                        ),
                    );
                }
                for c in &o.span {
                    if let Err(e) = crate::processor::ottl::Condition::parse(c) {
                        err(at, format!("processors.{id} policy `{name}`: {c:?}: {e}"));
                    }
                }
            }
        }
        T::StatusCode => {
            for code in p.status_code.iter().flat_map(|s| &s.status_codes) {
                if !matches!(code.as_str(), "OK" | "ERROR" | "UNSET") {
                    err(at, format!("processors.{id} policy `{name}`: status code {code:?} is not OK, ERROR or UNSET"));
                }
            }
        }
        T::And => {
            if depth > 0 {
                err(
                    at,
                    format!("processors.{id} policy `{name}`: and policies do not nest"),
                );
            }
            for sub in p.and.iter().flat_map(|a| &a.and_sub_policy) {
                check_policy(err, at, id, sub, depth + 1);
            }
        }
        _ => {}
    }
}

fn check_actions(
    err: &mut impl FnMut(Option<usize>, String),
    at: Option<usize>,
    id: &ComponentId,
    field: &str,
    actions: &[Action],
) {
    for (i, a) in actions.iter().enumerate() {
        let needs_value = matches!(
            a.action,
            ActionKind::Insert | ActionKind::Update | ActionKind::Upsert
        );
        let sources = usize::from(a.value.is_some()) + usize::from(a.from_attribute.is_some());
        if a.key.is_empty() {
            err(
                at,
                format!("processors.{id}.{field}[{i}]: key must not be empty"),
            );
        }
        if needs_value && sources != 1 {
            err(at, format!("processors.{id}.{field}[{i}] ({:?} {}): set exactly one of value, from_attribute", a.action, a.key));
        }
        if !needs_value && sources != 0 {
            err(
                at,
                format!(
                    "processors.{id}.{field}[{i}] ({:?} {}): takes no value or from_attribute",
                    a.action, a.key
                ),
            );
        }
        if let Some(v) = &a.value {
            if !matches!(
                v,
                serde_yaml::Value::String(_)
                    | serde_yaml::Value::Number(_)
                    | serde_yaml::Value::Bool(_)
            ) {
                err(
                    at,
                    format!(
                        "processors.{id}.{field}[{i}].value must be a string, number or boolean"
                    ),
                );
            }
        }
    }
}

/// `host:port` with a numeric port (the host may be empty, as `:4317`, meaning all interfaces).
pub(super) fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_key_line(line: &str, key: &str) -> bool {
    let t = line.trim_start().trim_start_matches("- ");
    [key.to_owned(), format!("\"{key}\""), format!("'{key}'")]
        .iter()
        .any(|k| {
            t.strip_prefix(k.as_str())
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
}

/// The 1-based line of the first `key:` at or after line `from` (1-based).
pub(super) fn find_key_line(text: &str, from: usize, key: &str) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| is_key_line(l, key))
        .map(|(i, _)| i + 1)
}

/// Best-effort line of a nested key path (and of `needle` inside its value), for errors that
/// arise after parsing. Returns `None` when the text does not show it plainly.
pub(super) fn locate(text: &str, path: &[&str], needle: Option<&str>) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let blank = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    let mut start = 0;
    let mut parent_indent: Option<usize> = None;
    let mut at = None;
    for key in path {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(start) {
            if blank(line) {
                continue;
            }
            if parent_indent.is_some_and(|p| indent(line) <= p) {
                break;
            }
            if is_key_line(line, key) {
                hit = Some(i);
                break;
            }
        }
        let i = hit?;
        at = Some(i);
        parent_indent = Some(indent(lines[i]));
        start = i + 1;
    }
    let at = at?;
    let Some(needle) = needle else {
        return Some(at + 1);
    };
    let has_word = |l: &str| {
        l.split(|c: char| matches!(c, '[' | ']' | ',' | '"' | '\'' | '-') || c.is_whitespace())
            .any(|w| w == needle)
    };
    if has_word(lines[at].split_once(':').map_or("", |(_, v)| v)) {
        return Some(at + 1);
    }
    let key_indent = indent(lines[at]);
    for (i, line) in lines.iter().enumerate().skip(at + 1) {
        if blank(line) {
            continue;
        }
        if indent(line) <= key_indent && !line.trim_start().starts_with('-') {
            break;
        }
        if has_word(line) {
            return Some(i + 1);
        }
    }
    Some(at + 1)
}
