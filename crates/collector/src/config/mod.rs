//! The collector's configuration: the OpenTelemetry Collector YAML schema, for traces.
//!
//! Loading goes text → `${env:…}` substitution → YAML into typed settings (each component type
//! has its own struct that denies unknown keys) → cross-checks (pipelines name defined
//! components, settings are coherent). Every error carries the file line it is about, so
//! `meshtrace collector validate` can point the user at it.

pub mod components;
pub mod duration;
mod env;
pub mod explain;
mod ids;
mod validate;

use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

pub use components::*;
pub use explain::explain;
pub use ids::{ComponentId, PipelineId};

/// A configuration problem, with the line it is about when known.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct ConfigError {
    pub line: Option<usize>,
    pub message: String,
}

/// Every problem found in one config file.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}", self.render(None))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// One error per line, prefixed `FILE:LINE:` when `file` is given.
    pub fn render(&self, file: Option<&str>) -> String {
        self.0
            .iter()
            .map(|e| match (file, e.line) {
                (Some(f), Some(l)) => format!("{f}:{l}: {}", e.message),
                (Some(f), None) => format!("{f}: {}", e.message),
                (None, _) => e.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A loaded, checked configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub receivers: Vec<(ComponentId, Receiver)>,
    pub processors: Vec<(ComponentId, Processor)>,
    pub exporters: Vec<(ComponentId, Exporter)>,
    pub extensions: Vec<(ComponentId, Extension)>,
    pub connectors: Vec<(ComponentId, Connector)>,
    pub service: Service,
    /// Environment variables the file referenced that were not set (replaced by "").
    pub unset_env: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Receiver {
    Otlp(Box<OtlpReceiver>),
    Zipkin(ZipkinReceiver),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Processor {
    ProbabilisticSampler(ProbabilisticSampler),
    Batch(Batch),
    Attributes(Attributes),
    Resource(ResourceProcessor),
    MemoryLimiter(MemoryLimiter),
    TailSampling(TailSampling),
    Filter(FilterProcessor),
    ResourceDetection(ResourceDetection),
    Transform(TransformProcessor),
    Span(Box<SpanProcessor>),
    Redaction(Box<RedactionProcessor>),
    GroupByAttrs(GroupByAttrs),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Exporter {
    Otlp(OtlpExporter),
    OtlpHttp(OtlpExporter),
    Zipkin(ZipkinExporter),
    Debug(DebugExporter),
    LoadBalancing(LoadBalancingExporter),
    File(FileExporter),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Extension {
    FileStorage(FileStorage),
    HealthCheck(HealthCheck),
    /// `pprof` and `zpages`: the Go collector's own debugging pages, in the default config
    /// users start from. Accepted so that config runs; they have nothing to show here, and
    /// the collector says so when it starts.
    GoDebugPages(GoDebugPages),
    BasicAuth(BasicAuth),
    BearerTokenAuth(BearerTokenAuth),
    OAuth2Client(Box<OAuth2Client>),
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default)]
    pub extensions: Vec<String>,
    #[serde(default)]
    pub pipelines: indexmap_like::OrderedMap<Pipeline>,
    #[serde(default)]
    pub telemetry: Telemetry,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    #[serde(default)]
    pub receivers: Vec<String>,
    #[serde(default)]
    pub processors: Vec<String>,
    #[serde(default)]
    pub exporters: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    #[serde(default)]
    pub metrics: TelemetryMetrics,
    #[serde(default)]
    pub logs: TelemetryLogs,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryMetrics {
    /// host:port of the Prometheus `/metrics` endpoint (default 0.0.0.0:8888).
    pub address: Option<String>,
    /// `none` turns self-metrics off; `basic`, `normal`, `detailed` all serve them.
    pub level: Option<String>,
    /// The newer spelling of `address`: `[{pull: {exporter: {prometheus: {host, port}}}}]`
    /// (one pull reader; validation names anything else).
    #[serde(default)]
    pub readers: Vec<MetricReader>,
}

impl TelemetryMetrics {
    /// Where `/metrics` is served: `address`, else the Prometheus pull reader's host and port
    /// (`localhost` and 8888 when left out, as the OTel Collector), else the default.
    pub fn endpoint(&self) -> String {
        if let Some(addr) = &self.address {
            return addr.clone();
        }
        let prometheus = self
            .readers
            .iter()
            .find_map(|r| r.pull.as_ref()?.exporter.prometheus.as_ref());
        match prometheus {
            Some(p) => {
                let host = p.host.as_deref().unwrap_or("localhost");
                let port = p.port.unwrap_or(8888);
                if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                }
            }
            None => DEFAULT_METRICS_ADDRESS.to_owned(),
        }
    }
}

/// One of `service.telemetry.metrics.readers`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricReader {
    pub pull: Option<PullReader>,
    /// Refused by validation: self-metrics are served, not pushed.
    pub periodic: Option<serde_yaml::Value>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PullReader {
    #[serde(default)]
    pub exporter: PullExporter,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PullExporter {
    pub prometheus: Option<PrometheusReader>,
}

/// Where the Prometheus pull reader serves `/metrics`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PrometheusReader {
    pub host: Option<String>,
    pub port: Option<u16>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryLogs {
    /// `debug`, `info` (default), `warn` or `error`; `RUST_LOG`, when set, wins.
    pub level: Option<String>,
}

/// Default address of the self-metrics endpoint.
pub const DEFAULT_METRICS_ADDRESS: &str = "0.0.0.0:8888";

/// A map that keeps the file's key order (pipelines are explained in the order written).
pub mod indexmap_like {
    use serde::de::{MapAccess, Visitor};
    use serde::{Deserialize, Deserializer};
    use std::fmt;
    use std::marker::PhantomData;

    #[derive(Clone, Debug, PartialEq)]
    pub struct OrderedMap<T>(pub Vec<(String, T)>);

    impl<T> Default for OrderedMap<T> {
        fn default() -> Self {
            Self(Vec::new())
        }
    }

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for OrderedMap<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<T>(PhantomData<T>);
            impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
                type Value = OrderedMap<T>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a map")
                }
                fn visit_unit<E>(self) -> Result<Self::Value, E> {
                    Ok(OrderedMap::default())
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::new();
                    while let Some(key) = map.next_key::<String>()? {
                        out.push((key, map.next_value()?));
                    }
                    Ok(OrderedMap(out))
                }
            }
            d.deserialize_any(V(PhantomData))
        }
    }
}

/// A component section (`receivers`, …): knows its types and how to read each one's settings.
trait Kind: Sized {
    const SECTION: &'static str;
    const TYPES: &'static [&'static str];
    fn read<'de, D: Deserializer<'de>>(ty: &str, d: D) -> Result<Self, D::Error>;
}

/// Reads settings that may be absent (`debug:` with no value) as the defaults.
fn settings<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Kind for Receiver {
    const SECTION: &'static str = "receivers";
    const TYPES: &'static [&'static str] = &["otlp", "zipkin"];
    fn read<'de, D: Deserializer<'de>>(ty: &str, d: D) -> Result<Self, D::Error> {
        Ok(match ty {
            "otlp" => Receiver::Otlp(Box::new(settings(d)?)),
            _ => Receiver::Zipkin(settings(d)?),
        })
    }
}

impl Kind for Processor {
    const SECTION: &'static str = "processors";
    const TYPES: &'static [&'static str] = &[
        "probabilistic_sampler",
        "batch",
        "attributes",
        "resource",
        "memory_limiter",
        "tail_sampling",
        "filter",
        "resourcedetection",
        "transform",
        "span",
        "redaction",
        "groupbyattrs",
    ];
    fn read<'de, D: Deserializer<'de>>(ty: &str, d: D) -> Result<Self, D::Error> {
        Ok(match ty {
            "probabilistic_sampler" => Processor::ProbabilisticSampler(settings(d)?),
            "batch" => Processor::Batch(settings(d)?),
            "attributes" => Processor::Attributes(settings(d)?),
            "resource" => Processor::Resource(settings(d)?),
            "memory_limiter" => Processor::MemoryLimiter(settings(d)?),
            "filter" => Processor::Filter(settings(d)?),
            "resourcedetection" => Processor::ResourceDetection(settings(d)?),
            "transform" => Processor::Transform(settings(d)?),
            "span" => Processor::Span(Box::new(settings(d)?)),
            "redaction" => Processor::Redaction(Box::new(settings(d)?)),
            "groupbyattrs" => Processor::GroupByAttrs(settings(d)?),
            _ => Processor::TailSampling(settings(d)?),
        })
    }
}

impl Kind for Exporter {
    const SECTION: &'static str = "exporters";
    const TYPES: &'static [&'static str] = &[
        "otlp",
        "otlphttp",
        "zipkin",
        "debug",
        "loadbalancing",
        "file",
    ];
    fn read<'de, D: Deserializer<'de>>(ty: &str, d: D) -> Result<Self, D::Error> {
        Ok(match ty {
            "otlp" => Exporter::Otlp(settings(d)?),
            "otlphttp" => Exporter::OtlpHttp(settings(d)?),
            "zipkin" => Exporter::Zipkin(settings(d)?),
            "debug" => Exporter::Debug(settings(d)?),
            "file" => Exporter::File(settings(d)?),
            _ => Exporter::LoadBalancing(settings(d)?),
        })
    }
}

impl Kind for Extension {
    const SECTION: &'static str = "extensions";
    const TYPES: &'static [&'static str] = &[
        "file_storage",
        "health_check",
        "pprof",
        "zpages",
        "basicauth",
        "bearertokenauth",
        "oauth2client",
    ];
    fn read<'de, D: Deserializer<'de>>(ty: &str, d: D) -> Result<Self, D::Error> {
        Ok(match ty {
            "file_storage" => Extension::FileStorage(settings(d)?),
            "health_check" => Extension::HealthCheck(settings(d)?),
            "basicauth" => Extension::BasicAuth(settings(d)?),
            "bearertokenauth" => Extension::BearerTokenAuth(settings(d)?),
            "oauth2client" => Extension::OAuth2Client(Box::new(settings(d)?)),
            _ => Extension::GoDebugPages(settings(d)?),
        })
    }
}

impl Kind for Connector {
    const SECTION: &'static str = "connectors";
    const TYPES: &'static [&'static str] = &["forward", "routing"];
    fn read<'de, D: Deserializer<'de>>(ty: &str, d: D) -> Result<Self, D::Error> {
        Ok(match ty {
            "forward" => Connector::Forward(settings(d)?),
            _ => Connector::Routing(settings(d)?),
        })
    }
}

/// One section's components, in file order.
struct Section<T>(Vec<(ComponentId, T)>);

impl<T> Default for Section<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

struct TypeSeed<'a, T>(&'a str, std::marker::PhantomData<T>);

impl<'de, T: Kind> DeserializeSeed<'de> for TypeSeed<'_, T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        T::read(self.0, d)
    }
}

impl<'de, T: Kind> Deserialize<'de> for Section<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Kind> Visitor<'de> for V<T> {
            type Value = Section<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a map of {} by id", T::SECTION)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Section::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(ComponentId, T)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let id: ComponentId = key.parse().map_err(de::Error::custom)?;
                    if !T::TYPES.contains(&id.ty()) {
                        return Err(de::Error::custom(format!(
                            "{}: `{}`: unknown {} type `{}` (supported: {})",
                            T::SECTION,
                            key,
                            &T::SECTION[..T::SECTION.len() - 1],
                            id.ty(),
                            T::TYPES.join(", ")
                        )));
                    }
                    if out.iter().any(|(other, _)| *other == id) {
                        return Err(de::Error::custom(format!(
                            "{}: `{key}` is defined twice",
                            T::SECTION
                        )));
                    }
                    let value = map.next_value_seed(TypeSeed::<T>(id.ty(), Default::default()))?;
                    out.push((id, value));
                }
                Ok(Section(out))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    receivers: Section<Receiver>,
    #[serde(default)]
    processors: Section<Processor>,
    #[serde(default)]
    exporters: Section<Exporter>,
    #[serde(default)]
    extensions: Section<Extension>,
    #[serde(default)]
    connectors: Section<Connector>,
    #[serde(default)]
    service: Service,
}

impl Config {
    /// Reads and checks the file at `path`, substituting from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                line: None,
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        Self::parse(&text, &|name| std::env::var(name).ok())
    }

    /// Parses and checks config text; `env` looks up `${env:…}` variables.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let substituted = env::substitute(text, env).map_err(|(line, message)| {
            ConfigErrors(vec![ConfigError {
                line: Some(line),
                message,
            }])
        })?;
        let text = substituted.text;
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml::from_str(&text).map_err(|e| ConfigErrors(vec![yaml_error(&text, &e)]))?
        };
        let config = Config {
            receivers: file.receivers.0,
            processors: file.processors.0,
            exporters: file.exporters.0,
            extensions: file.extensions.0,
            connectors: file.connectors.0,
            service: file.service,
            unset_env: substituted.unset,
        };
        let errors = validate::check(&config, &text);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    pub fn receiver(&self, id: &ComponentId) -> Option<&Receiver> {
        self.receivers.iter().find(|(i, _)| i == id).map(|(_, r)| r)
    }

    pub fn processor(&self, id: &ComponentId) -> Option<&Processor> {
        self.processors
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, p)| p)
    }

    pub fn exporter(&self, id: &ComponentId) -> Option<&Exporter> {
        self.exporters.iter().find(|(i, _)| i == id).map(|(_, e)| e)
    }

    pub fn connector(&self, id: &ComponentId) -> Option<&Connector> {
        self.connectors
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, c)| c)
    }

    pub fn extension(&self, id: &ComponentId) -> Option<&Extension> {
        self.extensions
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, e)| e)
    }

    /// The pipelines with their ids parsed (validation guarantees they parse).
    pub fn pipelines(&self) -> Vec<(PipelineId, &Pipeline)> {
        self.service
            .pipelines
            .0
            .iter()
            .filter_map(|(k, p)| k.parse().ok().map(|id| (id, p)))
            .collect()
    }
}

/// Turns a serde_yaml error into a message with the line of the offending key.
fn yaml_error(text: &str, e: &serde_yaml::Error) -> ConfigError {
    let reported = e.location().map(|l| l.line());
    let full = e.to_string();
    // serde_yaml appends " at line L column C"; the line goes in front instead.
    let message = match full.rfind(" at line ") {
        Some(cut) => full[..cut].to_owned(),
        None => full,
    };
    // The location of a struct-level error is the start of the mapping; point at the key.
    let key = message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("unknown field") || message.contains("unknown "));
    let line = match (reported, key) {
        (Some(start), Some(key)) => validate::find_key_line(text, start, key).or(Some(start)),
        (r, _) => r,
    };
    ConfigError { line, message }
}

#[cfg(test)]
mod tests;
