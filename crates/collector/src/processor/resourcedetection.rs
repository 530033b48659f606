//! `resourcedetection`: attributes of where the collector runs, found once at start and added
//! to every resource that passes, as the OTel Collector's processor does for its `env` and
//! `system` detectors. Earlier detectors win over later ones for the same key; `override`
//! (default true) decides whether a detected value replaces one the resource already has.
//!
//! A detector that finds nothing usable (an `OTEL_RESOURCE_ATTRIBUTES` it cannot read, no host
//! name anywhere) is logged and skipped, as in the OTel Collector, rather than stopping the
//! collector; detectors that would ask a cloud or an orchestrator are refused by `validate`.

use model::{AnyValue, KeyValue, TraceBatch};

use crate::config::{ResourceDetection, SystemDetector};

/// The detectors built, by name.
pub const DETECTORS: [&str; 2] = ["env", "system"];

/// The `system` detector's attributes, and whether each is on unless configured.
pub const SYSTEM_ATTRIBUTES: [(&str, bool); 4] = [
    ("host.name", true),
    ("os.type", true),
    ("host.arch", false),
    ("host.id", false),
];

/// Where `host.name` may come from.
pub const HOSTNAME_SOURCES: [&str; 2] = ["dns", "os"];

/// What the detectors found, and how it joins a resource.
pub struct Detected {
    attributes: Vec<KeyValue>,
    overwrite: bool,
}

impl Detected {
    pub fn detect(name: &str, cfg: &ResourceDetection) -> Self {
        let mut found: Vec<KeyValue> = Vec::new();
        for detector in &cfg.detectors {
            let more = match detector.as_str() {
                "env" => from_env(std::env::var("OTEL_RESOURCE_ATTRIBUTES").ok().as_deref()),
                "system" => system(&cfg.system),
                other => Err(format!("the {other} detector is not built")),
            };
            match more {
                Ok(more) => {
                    for kv in more {
                        if !found.iter().any(|f| f.key == kv.key) {
                            found.push(kv);
                        }
                    }
                }
                Err(e) => tracing::warn!("processors.{name}: {detector} detector: {e}; skipped"),
            }
        }
        if let Some(keep) = &cfg.attributes {
            found.retain(|kv| keep.contains(&kv.key));
        }
        tracing::info!(
            "processors.{name}: detected {}",
            found
                .iter()
                .map(|kv| format!("{}={}", kv.key, kv.value))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Self {
            attributes: found,
            overwrite: cfg.overwrite,
        }
    }

    pub fn apply(&self, batch: &mut TraceBatch) {
        for rs in &mut batch.resource_spans {
            let attrs = &mut rs.resource.attributes;
            for kv in &self.attributes {
                match attrs.iter_mut().find(|a| a.key == kv.key) {
                    Some(a) if self.overwrite => a.value = kv.value.clone(),
                    Some(_) => {}
                    None => attrs.push(kv.clone()),
                }
            }
        }
    }
}

/// `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs separated by commas, values percent-encoded.
fn from_env(var: Option<&str>) -> Result<Vec<KeyValue>, String> {
    let Some(text) = var.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("OTEL_RESOURCE_ATTRIBUTES: {pair:?} is not key=value"))?;
            let value = percent_encoding::percent_decode_str(value.trim())
                .decode_utf8()
                .map_err(|e| format!("OTEL_RESOURCE_ATTRIBUTES: the value of {key:?}: {e}"))?;
            Ok(KeyValue::new(key.trim(), value.into_owned()))
        })
        .collect()
}

fn system(cfg: &SystemDetector) -> Result<Vec<KeyValue>, String> {
    let on = |key: &str, default: bool| {
        cfg.resource_attributes
            .get(key)
            .map_or(default, |e| e.enabled)
    };
    let mut found = Vec::new();
    if on("host.name", true) {
        let sources = cfg
            .hostname_sources
            .clone()
            .unwrap_or_else(|| HOSTNAME_SOURCES.iter().map(|s| s.to_string()).collect());
        let name = sources
            .iter()
            .find_map(|s| match s.as_str() {
                "os" => os_hostname(),
                "dns" => os_hostname().and_then(|h| canonical_in_hosts(&h, &read("/etc/hosts")?)),
                _ => None,
            })
            .ok_or("no host name from any of hostname_sources")?;
        found.push(KeyValue::new("host.name", name));
    }
    if on("os.type", true) {
        found.push(KeyValue::new("os.type", std::env::consts::OS));
    }
    if on("host.arch", false) {
        found.push(KeyValue::new("host.arch", arch(std::env::consts::ARCH)));
    }
    if on("host.id", false) {
        if let Some(id) = read("/etc/machine-id").or_else(|| read("/var/lib/dbus/machine-id")) {
            found.push(KeyValue::new("host.id", AnyValue::String(id)));
        }
    }
    Ok(found)
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn os_hostname() -> Option<String> {
    read("/proc/sys/kernel/hostname")
}

/// The canonical (first) name of the /etc/hosts line that lists `host`.
fn canonical_in_hosts(host: &str, hosts: &str) -> Option<String> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut names = line.split_whitespace().skip(1);
        let canonical = names.next()?;
        (canonical == host || names.any(|n| n == host)).then(|| canonical.to_owned())
    })
}

/// The semantic conventions' `host.arch` values.
fn arch(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otel_resource_attributes_are_read_as_the_spec_writes_them() {
        let kvs = from_env(Some(" team = a%20b ,deployment.environment=staging")).unwrap();
        assert_eq!(
            kvs,
            vec![
                KeyValue::new("team", "a b"),
                KeyValue::new("deployment.environment", "staging")
            ]
        );
        assert!(from_env(None).unwrap().is_empty());
        assert!(from_env(Some("  ")).unwrap().is_empty());
        let e = from_env(Some("a=1,broken")).unwrap_err();
        assert!(e.contains("\"broken\" is not key=value"), "{e}");
        assert!(from_env(Some("a=%FF")).is_err());
    }

    #[test]
    fn dns_host_name_is_the_canonical_name_in_etc_hosts() {
        let hosts = "127.0.0.1 localhost\n10.0.0.5 web-1.prod.example.com web-1 # app\n";
        assert_eq!(
            canonical_in_hosts("web-1", hosts).as_deref(),
            Some("web-1.prod.example.com")
        );
        assert_eq!(canonical_in_hosts("db-1", hosts), None);
    }

    #[test]
    fn earlier_detectors_win_and_override_decides_for_the_resource() {
        let mut batch = TraceBatch::default();
        batch.resource_spans.push(model::ResourceSpans::default());
        batch.resource_spans[0]
            .resource
            .attributes
            .push(KeyValue::new("team", "own"));
        let detected = |overwrite| Detected {
            attributes: vec![
                KeyValue::new("team", "env"),
                KeyValue::new("os.type", "linux"),
            ],
            overwrite,
        };
        let mut kept = batch.clone();
        detected(false).apply(&mut kept);
        assert_eq!(
            kept.resource_spans[0].resource.attributes,
            vec![
                KeyValue::new("team", "own"),
                KeyValue::new("os.type", "linux")
            ]
        );
        detected(true).apply(&mut batch);
        assert_eq!(
            batch.resource_spans[0].resource.attributes,
            vec![
                KeyValue::new("team", "env"),
                KeyValue::new("os.type", "linux")
            ]
        );
    }
}
