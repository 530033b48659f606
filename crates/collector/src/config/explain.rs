//! A short, plain description of what each pipeline does (and the extensions the service
//! enables), for `meshtrace collector validate`.

use std::fmt::Write;

use super::{
    ComponentId, Config, Connector, Exporter, Extension, Processor, Receiver, RetryOnFailure,
    SamplerMode, SendingQueue,
};

/// Default listen addresses, as the OpenTelemetry Collector has them.
pub const OTLP_GRPC_DEFAULT: &str = "0.0.0.0:4317";
pub const OTLP_HTTP_DEFAULT: &str = "0.0.0.0:4318";
pub const ZIPKIN_DEFAULT: &str = "0.0.0.0:9411";

/// One paragraph per pipeline: what it receives, what it does, where it sends.
pub fn explain(config: &Config) -> String {
    let mut out = String::new();
    for (id, p) in config.pipelines() {
        let _ = writeln!(out, "pipeline {id}:");
        let receives: Vec<String> = ids(&p.receivers)
            .map(
                |rid| match (config.receiver(&rid), config.connector(&rid)) {
                    (Some(r), _) => format!("{rid} ({})", describe_receiver(r)),
                    (None, Some(_)) => format!("{rid} (connector: what other pipelines send it)"),
                    (None, None) => rid.to_string(),
                },
            )
            .collect();
        let _ = writeln!(out, "  receives from: {}", receives.join("; "));
        if p.processors.is_empty() {
            let _ = writeln!(
                out,
                "  processes:     nothing (spans pass through unchanged)"
            );
        }
        for (n, pid) in ids(&p.processors).enumerate() {
            let what = config
                .processor(&pid)
                .map(describe_processor)
                .unwrap_or_default();
            let label = if n == 0 { "processes:" } else { "" };
            let _ = writeln!(out, "  {label:<14} {}. {pid}: {what}", n + 1);
        }
        for (n, eid) in ids(&p.exporters).enumerate() {
            let what = match (config.exporter(&eid), config.connector(&eid)) {
                (Some(e), _) => describe_exporter(e),
                (None, Some(c)) => describe_connector(c),
                (None, None) => String::new(),
            };
            let label = if n == 0 { "sends to:" } else { "" };
            let _ = writeln!(out, "  {label:<14} {eid}: {what}");
        }
    }
    let metrics = config.service.telemetry.metrics.endpoint();
    let _ = writeln!(out, "self-metrics: http://{metrics}/metrics");
    for eid in ids(&config.service.extensions) {
        let what = match config.extension(&eid) {
            Some(Extension::HealthCheck(h)) => format!(
                "health check on {}{}",
                h.endpoint.as_deref().unwrap_or("0.0.0.0:13133"),
                h.path.as_deref().unwrap_or("/")
            ),
            Some(Extension::FileStorage(f)) => format!(
                "persistent queues in {}",
                f.directory.as_deref().unwrap_or_default()
            ),
            Some(Extension::GoDebugPages(_)) => {
                "the Go collector's debugging pages: nothing to show here, not started".into()
            }
            Some(Extension::BasicAuth(b)) if b.client_auth.is_some() => {
                "HTTP Basic credentials, sent by the exporters that name it".into()
            }
            Some(Extension::BasicAuth(_)) => {
                "HTTP Basic credentials (htpasswd), required by the receivers that name it".into()
            }
            Some(Extension::OAuth2Client(o)) => format!(
                "OAuth 2.0 client credentials from {}, sent by the exporters that name it",
                o.token_url
            ),
            Some(Extension::BearerTokenAuth(b)) => format!(
                "a bearer token in the {} header, sent by the exporters and required by the \
                 receivers that name it",
                b.header
            ),
            None => continue,
        };
        let _ = writeln!(out, "extension {eid}: {what}");
    }
    for var in &config.unset_env {
        let _ = writeln!(
            out,
            "warning: environment variable {var} is not set (used as \"\")"
        );
    }
    out
}

fn ids(names: &[String]) -> impl Iterator<Item = ComponentId> + '_ {
    names.iter().filter_map(|n| n.parse().ok())
}

fn describe_connector(c: &Connector) -> String {
    match c {
        Connector::Forward(_) => {
            "connector: everything on to the pipelines that receive from it".into()
        }
        Connector::Routing(r) => {
            let routes: Vec<String> = r
                .table
                .iter()
                .map(|route| {
                    format!(
                        "{} → {}",
                        route.condition_text().unwrap_or("?"),
                        route.pipelines.join(", ")
                    )
                })
                .collect();
            let default = if r.default_pipelines.is_empty() {
                "dropped".to_owned()
            } else {
                r.default_pipelines.join(", ")
            };
            format!(
                "connector: routes {}; otherwise {default}",
                routes.join("; ")
            )
        }
    }
}

fn describe_receiver(r: &Receiver) -> String {
    match r {
        Receiver::Otlp(o) => {
            let mut parts = Vec::new();
            if let Some(g) = &o.protocols.grpc {
                let ep = g.endpoint.as_deref().unwrap_or(OTLP_GRPC_DEFAULT);
                parts.push(format!("OTLP/gRPC on {ep}{}", requires(g.auth.as_ref())));
            }
            if let Some(h) = &o.protocols.http {
                let ep = h.endpoint.as_deref().unwrap_or(OTLP_HTTP_DEFAULT);
                let path = h.traces_url_path.as_deref().unwrap_or("/v1/traces");
                parts.push(format!(
                    "OTLP/HTTP on {ep} POST {path}{}",
                    requires(h.auth.as_ref())
                ));
            }
            parts.join(", ")
        }
        Receiver::Zipkin(z) => format!(
            "Zipkin v2 JSON/proto on {} POST /api/v2/spans{}",
            z.endpoint.as_deref().unwrap_or(ZIPKIN_DEFAULT),
            requires(z.auth.as_ref())
        ),
    }
}

/// ", credentials of X required" for a receiver with `auth`.
fn requires(auth: Option<&super::AuthRef>) -> String {
    auth.map(|a| format!(", credentials of {} required", a.authenticator))
        .unwrap_or_default()
}

/// ", credentials from X" for an exporter with `auth`.
fn sends(auth: Option<&super::AuthRef>) -> String {
    auth.map(|a| format!(", credentials from {}", a.authenticator))
        .unwrap_or_default()
}

fn describe_processor(p: &Processor) -> String {
    match p {
        Processor::ProbabilisticSampler(s) => {
            let mode = match s.effective_mode() {
                SamplerMode::HashSeed => format!("hash_seed mode, seed {}", s.hash_seed),
                SamplerMode::Equalizing => "equalizing mode (W3C tracestate th/rv)".into(),
                _ => "proportional mode (W3C tracestate th/rv)".into(),
            };
            format!(
                "keeps {}% of traces, the same ones on every collector ({mode}); sampling.priority overrides{}",
                s.sampling_percentage.min(100.0),
                if s.fail_closed { "; spans with bad sampling state are dropped" } else { "" }
            )
        }
        Processor::Batch(b) => format!(
            "groups spans into batches of {} (at most {}) or every {}",
            b.send_batch_size,
            if b.send_batch_max_size == 0 {
                "unbounded".to_owned()
            } else {
                b.send_batch_max_size.to_string()
            },
            humantime::format_duration(b.timeout)
        ),
        Processor::GroupByAttrs(g) if g.keys.is_empty() => {
            "merges spans of equal resources and scopes".into()
        }
        Processor::GroupByAttrs(g) => format!(
            "moves span attributes {} to the resource and regroups",
            g.keys.join(", ")
        ),
        Processor::Redaction(r) => format!(
            "{}; masks values matching {} pattern(s)",
            if r.allow_all_keys {
                "keeps every attribute key".to_owned()
            } else {
                format!(
                    "keeps only {} allowed attribute key(s)",
                    r.allowed_keys.len()
                )
            },
            r.blocked_values.len() + r.blocked_key_patterns.len()
        ),
        Processor::Span(_) => "renames spans, extracts attributes from names, sets status".into(),
        Processor::Transform(t) => format!(
            "runs {} OTTL statement group(s) on spans and resources",
            t.trace_statements.len()
        ),
        Processor::ResourceDetection(r) => format!(
            "adds the host's resource attributes ({}){}",
            r.detectors.join(", "),
            if r.overwrite {
                ""
            } else {
                " where a resource lacks them"
            }
        ),
        Processor::Filter(f) => {
            format!("drops spans matching any of: {}", f.traces.span.join(" | "))
        }
        Processor::Attributes(a) => format!("span attributes: {}", actions(&a.actions)),
        Processor::Resource(r) => format!("resource attributes: {}", actions(&r.attributes)),
        Processor::TailSampling(t) => format!(
            "waits {} per trace (at most {} traces), then keeps it if any policy says so: {}",
            humantime::format_duration(t.decision_wait),
            t.num_traces,
            t.policies
                .iter()
                .map(|p| format!("{} ({:?})", p.name, p.kind))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Processor::MemoryLimiter(m) => {
            let limit = if m.limit_mib > 0 {
                format!("{} MiB (spike {} MiB)", m.limit_mib, m.spike_limit_mib)
            } else {
                format!(
                    "{}% of memory (spike {}%)",
                    m.limit_percentage, m.spike_limit_percentage
                )
            };
            format!(
                "refuses data with a retryable error when memory nears {limit}, checked every {}",
                humantime::format_duration(m.check_interval)
            )
        }
    }
}

fn actions(list: &[super::Action]) -> String {
    if list.is_empty() {
        return "no actions".into();
    }
    list.iter()
        .map(|a| {
            let src = match (&a.value, &a.from_attribute) {
                (Some(v), _) => {
                    format!(" = {}", serde_yaml::to_string(v).unwrap_or_default().trim())
                }
                (_, Some(f)) => format!(" from {f}"),
                _ => String::new(),
            };
            format!("{:?} {}{src}", a.action, a.key).to_lowercase_first()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

trait LowerFirst {
    fn to_lowercase_first(self) -> String;
}

impl LowerFirst for String {
    fn to_lowercase_first(self) -> String {
        let mut c = self.chars();
        match c.next() {
            Some(f) => f.to_lowercase().chain(c).collect(),
            None => self,
        }
    }
}

fn delivery(q: Option<&SendingQueue>, r: &RetryOnFailure) -> String {
    let queue = match q {
        Some(q) if q.enabled => match &q.storage {
            Some(storage) => format!(
                "persistent queue in {storage} of {} batches, {} senders",
                q.queue_size, q.num_consumers
            ),
            None => format!(
                "in-memory queue of {} batches, {} senders",
                q.queue_size, q.num_consumers
            ),
        },
        _ => "no queue (the receiver waits for the export)".into(),
    };
    let retry = if r.enabled {
        let until = if r.max_elapsed_time.is_zero() {
            "forever".to_owned()
        } else {
            format!(
                "for up to {}",
                humantime::format_duration(r.max_elapsed_time)
            )
        };
        format!(
            "retries retryable failures every {}..{} {until}",
            humantime::format_duration(r.initial_interval),
            humantime::format_duration(r.max_interval)
        )
    } else {
        "no retries".into()
    };
    format!("{queue}; {retry}")
}

fn describe_exporter(e: &Exporter) -> String {
    match e {
        Exporter::Otlp(o) => format!(
            "OTLP/gRPC to {}{}{} ({})",
            o.endpoint.as_deref().unwrap_or(""),
            match super::Compression::of(o.compression) {
                Some(super::Compression::Zstd) => ", zstd",
                Some(_) => ", gzip",
                None => "",
            },
            sends(o.auth.as_ref()),
            delivery(Some(&o.sending_queue), &o.retry_on_failure)
        ),
        Exporter::OtlpHttp(o) => format!(
            "OTLP/HTTP to {}{} ({})",
            o.traces_endpoint.clone().unwrap_or_else(|| format!(
                "{}/v1/traces",
                o.endpoint.as_deref().unwrap_or("").trim_end_matches('/')
            )),
            sends(o.auth.as_ref()),
            delivery(Some(&o.sending_queue), &o.retry_on_failure)
        ),
        Exporter::Zipkin(z) => format!(
            "Zipkin v2 {} to {}{} ({})",
            z.format.as_deref().unwrap_or("json"),
            z.endpoint.as_deref().unwrap_or(""),
            sends(z.auth.as_ref()),
            delivery(Some(&z.sending_queue), &z.retry_on_failure)
        ),
        Exporter::LoadBalancing(lb) => format!(
            "routes each trace by id over a consistent-hash ring of {} (OTLP/gRPC; {})",
            lb.resolver
                .r#static
                .as_ref()
                .map(|s| s.hostnames.join(", "))
                .unwrap_or_default(),
            delivery(
                Some(&lb.protocol.otlp.sending_queue),
                &lb.protocol.otlp.retry_on_failure
            )
        ),
        Exporter::File(f) => format!(
            "writes each batch to {} ({}{}{})",
            f.path,
            if f.format.as_deref() == Some("proto") {
                "length-prefixed protobuf"
            } else {
                "OTLP/JSON lines"
            },
            if f.compression.as_deref() == Some("zstd") {
                ", zstd"
            } else {
                ""
            },
            f.rotation
                .as_ref()
                .map(|r| format!(", rotated at {} MiB", r.max_megabytes))
                .unwrap_or_default()
        ),
        Exporter::Debug(d) => {
            format!("prints spans to the log ({:?} verbosity)", d.verbosity).to_lowercase()
        }
    }
}
