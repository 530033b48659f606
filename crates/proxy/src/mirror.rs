//! Shadow traffic (Envoy's `request_mirror_policies`): a share of a route's requests is also sent,
//! as a copy, to another cluster (a new version under test, a replay store), whose answers are
//! read and thrown away; the caller only ever sees the real upstream's answer and never waits
//! for the shadow.
//!
//! The copy is the request as the route sends it (header changes and prefix rewrite included),
//! with `-shadow` appended to its host (`cart.mesh:8080` → `cart.mesh-shadow:8080`, Envoy's
//! convention, so the shadow's logs and metrics tell copies apart) unless
//! `disable_shadow_host_suffix_append`, and with the request's trace headers (its spans join the
//! same trace), or marked unsampled with `trace_sampled: false`. A request without a body is
//! copied at once; one with a body once the real upstream has answered (by then the body has
//! been read), if it was read to its end and is at most 64 KiB (the retry buffer's limit):
//! larger bodies are not mirrored, and counted.

use http::{HeaderMap, HeaderValue};
use serde::Deserialize;

use crate::fault::Percentage;

/// One of a route's `request_mirror_policies`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorPolicyConfig {
    pub cluster: String,
    /// The share of requests copied (all of them when unset).
    #[serde(default)]
    pub runtime_fraction: Option<RuntimeFraction>,
    /// Whether the copy's trace is sampled as the request's is (default), or not at all.
    #[serde(default = "yes")]
    pub trace_sampled: bool,
    #[serde(default)]
    pub disable_shadow_host_suffix_append: bool,
}

fn yes() -> bool {
    true
}

/// Envoy's `RuntimeFractionalPercent`: the `default_value` is the share (no runtime here, so a
/// `runtime_key` is accepted and not read).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeFraction {
    pub default_value: Percentage,
    #[serde(default)]
    pub runtime_key: Option<String>,
}

/// A mirror policy ready to use.
#[derive(Clone, Debug)]
pub struct Mirror {
    /// The cluster's place in the router.
    pub cluster: usize,
    per_million: u32,
    pub trace_sampled: bool,
    pub suffix: bool,
}

impl Mirror {
    pub fn new(c: &MirrorPolicyConfig, cluster: usize) -> Self {
        Mirror {
            cluster,
            per_million: c
                .runtime_fraction
                .as_ref()
                .map_or(1_000_000, |f| f.default_value.per_million()),
            trace_sampled: c.trace_sampled,
            suffix: !c.disable_shadow_host_suffix_append,
        }
    }

    /// Whether this request is copied.
    pub fn hits(&self) -> bool {
        self.per_million >= 1_000_000
            || (self.per_million > 0 && fastrand::u32(..1_000_000) < self.per_million)
    }

    /// Makes `headers` (and `authority`, HTTP/2's) those of the copy; `formats`: the trace
    /// headers the proxy writes.
    pub fn shadow(
        &self,
        headers: &mut HeaderMap,
        authority: Option<&mut http::Uri>,
        formats: &[wire::propagation::Format],
    ) {
        if self.suffix {
            if let Some(host) = headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(shadow_host)
                .and_then(|h| HeaderValue::from_str(&h).ok())
            {
                headers.insert(http::header::HOST, host);
            }
            if let Some(uri) = authority {
                if let Some(a) = uri.authority().map(|a| shadow_host(a.as_str())) {
                    let mut parts = std::mem::take(uri).into_parts();
                    parts.authority = http::uri::Authority::try_from(a).ok();
                    if let Ok(u) = http::Uri::from_parts(parts) {
                        *uri = u;
                    }
                }
            }
        }
        if !self.trace_sampled {
            if let wire::propagation::Extracted::Context(mut c) =
                wire::propagation::extract(headers)
            {
                c.sampled = Some(false);
                c.debug = false;
                wire::propagation::inject(&c, formats, headers);
            }
        }
    }
}

/// `host[:port]` with `-shadow` after the host.
pub fn shadow_host(host: &str) -> String {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{name}-shadow:{port}")
        }
        // No port (an IPv6 literal has no name to suffix: as it is).
        _ if host.starts_with('[') => host.to_owned(),
        _ => format!("{host}-shadow"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_hosts_keep_their_port() {
        assert_eq!(shadow_host("cart.mesh"), "cart.mesh-shadow");
        assert_eq!(shadow_host("cart.mesh:8080"), "cart.mesh-shadow:8080");
        assert_eq!(shadow_host("10.0.0.1:80"), "10.0.0.1-shadow:80");
        assert_eq!(shadow_host("[::1]:80"), "[::1]:80");
    }

    #[test]
    fn shares_and_headers() {
        let c: MirrorPolicyConfig = serde_yaml::from_str(
            "{ cluster: next, runtime_fraction: { default_value: { numerator: 25 } }, trace_sampled: false }",
        )
        .unwrap();
        let m = Mirror::new(&c, 0);
        let hits = (0..100_000).filter(|_| m.hits()).count();
        assert!((23_000..27_000).contains(&hits), "{hits}");
        let all: MirrorPolicyConfig = serde_yaml::from_str("{ cluster: next }").unwrap();
        assert!((0..1000).all(|_| Mirror::new(&all, 0).hits()));
        let none: MirrorPolicyConfig = serde_yaml::from_str(
            "{ cluster: next, runtime_fraction: { default_value: { numerator: 0 } } }",
        )
        .unwrap();
        assert!((0..1000).all(|_| !Mirror::new(&none, 0).hits()));

        let mut h = HeaderMap::new();
        h.insert("host", "cart.mesh:8080".parse().unwrap());
        h.insert(
            "x-b3-traceid",
            "0af7651916cd43dd8448eb211c80319c".parse().unwrap(),
        );
        h.insert("x-b3-spanid", "b7ad6b7169203331".parse().unwrap());
        h.insert("x-b3-sampled", "1".parse().unwrap());
        let mut uri: http::Uri = "http://cart.mesh:8080/x?y=1".parse().unwrap();
        let b3 = [wire::propagation::Format::B3Multi];
        m.shadow(&mut h, Some(&mut uri), &b3);
        assert_eq!(h["host"], "cart.mesh-shadow:8080");
        assert_eq!(uri.to_string(), "http://cart.mesh-shadow:8080/x?y=1");
        assert_eq!(h["x-b3-sampled"], "0", "trace_sampled: false");
        assert_eq!(h["x-b3-traceid"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(h["x-b3-spanid"], "b7ad6b7169203331");
        assert!(
            h.get("traceparent").is_none(),
            "only the formats it came with"
        );

        let keep: MirrorPolicyConfig =
            serde_yaml::from_str("{ cluster: next, disable_shadow_host_suffix_append: true }")
                .unwrap();
        let mut h = HeaderMap::new();
        h.insert("host", "cart.mesh".parse().unwrap());
        h.insert("x-b3-sampled", "1".parse().unwrap());
        Mirror::new(&keep, 0).shadow(&mut h, None, &b3);
        assert_eq!(h["host"], "cart.mesh");
        assert_eq!(h["x-b3-sampled"], "1");
    }
}
