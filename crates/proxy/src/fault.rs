//! Fault injection (Envoy's `fault` filter), per listener or per route: a share of requests is
//! held back for a while (`delay`) and/or answered with an error instead of being forwarded
//! (`abort`), so that a mesh's timeouts, retries and traces can be tried against a slow or
//! failing service without touching it. The faults show in the span and the access log as
//! Envoy's response flags `DI` (delayed) and `FI` (aborted).
//!
//! With `header_delay: {}` / `header_abort: {}` the request says what it wants, as Envoy's
//! headers do: `x-envoy-fault-delay-request: MS`, `x-envoy-fault-abort-request: STATUS`,
//! `x-envoy-fault-abort-grpc-request: CODE`, and `x-envoy-fault-*-request-percentage: N` (of
//! the configured denominator) for a share. Only for meshes whose clients are trusted with it.

use std::time::Duration;

use http::HeaderMap;
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A listener's or route's `fault` block.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    #[serde(default)]
    pub delay: Option<DelayConfig>,
    #[serde(default)]
    pub abort: Option<AbortConfig>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayConfig {
    #[serde(default, with = "crate::config::dur_opt")]
    pub fixed_delay: Option<Duration>,
    /// The delay in milliseconds from `x-envoy-fault-delay-request`.
    #[serde(default)]
    pub header_delay: Option<Empty>,
    /// The share of requests delayed (default all of them).
    #[serde(default)]
    pub percentage: Percentage,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortConfig {
    #[serde(default)]
    pub http_status: Option<u16>,
    /// A gRPC status, answered as gRPC does (HTTP 200, `grpc-status`).
    #[serde(default)]
    pub grpc_status: Option<u32>,
    /// The status from `x-envoy-fault-abort-request` (or `-grpc-request`).
    #[serde(default)]
    pub header_abort: Option<Empty>,
    /// The share of requests aborted (default all of them).
    #[serde(default)]
    pub percentage: Percentage,
}

/// `{}`: a block whose presence is the setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// A share of requests: a number of percent (`10`, `0.5`), or Envoy's fractional percent
/// (`{ numerator: 5, denominator: TEN_THOUSAND }`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Percentage {
    /// Out of a million.
    per_million: u32,
    /// The denominator a request's `-percentage` header counts in.
    denominator: u32,
}

impl Default for Percentage {
    fn default() -> Self {
        Percentage {
            per_million: 1_000_000,
            denominator: 100,
        }
    }
}

impl Percentage {
    /// The share out of a million.
    pub fn per_million(&self) -> u32 {
        self.per_million
    }
}

impl<'de> Deserialize<'de> for Percentage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Percent(f64),
            Fraction {
                numerator: u32,
                #[serde(default = "hundred")]
                denominator: String,
            },
        }
        fn hundred() -> String {
            "HUNDRED".to_owned()
        }
        let raw = Raw::deserialize(d).map_err(|_| {
            de::Error::custom(
                "percentage: a number of percent, or { numerator: N, denominator: HUNDRED | TEN_THOUSAND | MILLION }",
            )
        })?;
        match raw {
            Raw::Percent(p) if (0.0..=100.0).contains(&p) => Ok(Percentage {
                per_million: (p * 10_000.0).round() as u32,
                denominator: 100,
            }),
            Raw::Percent(p) => Err(de::Error::custom(format!(
                "percentage {p} is not between 0 and 100"
            ))),
            Raw::Fraction {
                numerator,
                denominator,
            } => {
                let of = match denominator.as_str() {
                    "HUNDRED" => 100,
                    "TEN_THOUSAND" => 10_000,
                    "MILLION" => 1_000_000,
                    other => {
                        return Err(de::Error::custom(format!(
                            "denominator {other:?}: HUNDRED, TEN_THOUSAND or MILLION"
                        )))
                    }
                };
                // Envoy reads a numerator above its denominator as all of them.
                Ok(Percentage {
                    per_million: (numerator.min(of) as u64 * 1_000_000 / of as u64) as u32,
                    denominator: of,
                })
            }
        }
    }
}

impl FaultConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.delay.is_none() && self.abort.is_none() {
            return Err("needs delay or abort".to_owned());
        }
        if let Some(d) = &self.delay {
            if d.fixed_delay.is_some() == d.header_delay.is_some() {
                return Err("delay needs exactly one of fixed_delay and header_delay".to_owned());
            }
        }
        if let Some(a) = &self.abort {
            let set = [
                a.http_status.is_some(),
                a.grpc_status.is_some(),
                a.header_abort.is_some(),
            ];
            if set.iter().filter(|&&s| s).count() != 1 {
                return Err(
                    "abort needs exactly one of http_status, grpc_status and header_abort"
                        .to_owned(),
                );
            }
            if let Some(s) = a.http_status {
                if !(200..=599).contains(&s) {
                    return Err(format!("abort: http_status {s} is not 200-599"));
                }
            }
            if let Some(s) = a.grpc_status {
                if s > 16 {
                    return Err(format!(
                        "abort: grpc_status {s} is not a gRPC status (0-16)"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What to do to one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Faults {
    pub delay: Option<Duration>,
    pub abort: Option<Abort>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Abort {
    Http(u16),
    Grpc(u32),
}

impl Faults {
    /// Envoy's response flags for these faults (`None`: no fault).
    pub fn flags(&self) -> Option<&'static str> {
        match (self.delay.is_some(), self.abort.is_some()) {
            (false, false) => None,
            (true, false) => Some("DI"),
            (false, true) => Some("FI"),
            (true, true) => Some("DI,FI"),
        }
    }
}

impl FaultConfig {
    /// The faults for a request with `headers`; `roll` draws a number below a million.
    pub fn decide(&self, headers: &HeaderMap, mut roll: impl FnMut() -> u32) -> Faults {
        let number = |name: &str| -> Option<u64> {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
        };
        // A share: the configured one, or the request's `-percentage` header (in the
        // configured denominator) when header-controlled, never above the configured one.
        let chosen = |p: Percentage, header: Option<&str>, roll: &mut dyn FnMut() -> u32| {
            let mut per_million = p.per_million;
            if let Some(n) = header.and_then(number) {
                let asked = n.min(u64::from(p.denominator)) * 1_000_000 / u64::from(p.denominator);
                per_million = per_million.min(asked as u32);
            }
            roll() < per_million
        };
        let mut faults = Faults::default();
        if let Some(d) = &self.delay {
            let (delay, header) = match (d.fixed_delay, &d.header_delay) {
                (Some(fixed), _) => (Some(fixed), None),
                (None, _) => (
                    number("x-envoy-fault-delay-request").map(Duration::from_millis),
                    Some("x-envoy-fault-delay-request-percentage"),
                ),
            };
            if let Some(delay) = delay {
                if chosen(d.percentage, header, &mut roll) {
                    faults.delay = Some(delay);
                }
            }
        }
        if let Some(a) = &self.abort {
            let (abort, header) = match (a.http_status, a.grpc_status) {
                (Some(s), _) => (Some(Abort::Http(s)), None),
                (None, Some(g)) => (Some(Abort::Grpc(g)), None),
                (None, None) => (
                    number("x-envoy-fault-abort-request")
                        .filter(|s| (200..=599).contains(s))
                        .map(|s| Abort::Http(s as u16))
                        .or_else(|| {
                            number("x-envoy-fault-abort-grpc-request")
                                .filter(|s| *s <= 16)
                                .map(|s| Abort::Grpc(s as u32))
                        }),
                    Some("x-envoy-fault-abort-request-percentage"),
                ),
            };
            if let Some(abort) = abort {
                if chosen(a.percentage, header, &mut roll) {
                    faults.abort = Some(abort);
                }
            }
        }
        faults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(yaml: &str) -> FaultConfig {
        let f: FaultConfig = serde_yaml::from_str(yaml).unwrap();
        f.check().unwrap();
        f
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    http::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn shares_are_drawn_out_of_a_million() {
        let f = fault("{ delay: { fixed_delay: 50ms, percentage: 10 }, abort: { http_status: 503, percentage: { numerator: 5, denominator: TEN_THOUSAND } } }");
        let none = HeaderMap::new();
        // 10% delayed: draws below 100,000; 0.05% aborted: below 500.
        assert_eq!(
            f.decide(&none, || 99_999).delay,
            Some(Duration::from_millis(50))
        );
        assert_eq!(f.decide(&none, || 100_000).delay, None);
        assert_eq!(f.decide(&none, || 499).abort, Some(Abort::Http(503)));
        assert_eq!(f.decide(&none, || 500).abort, None);
        assert_eq!(f.decide(&none, || 0).flags(), Some("DI,FI"));
        assert_eq!(f.decide(&none, || 999_999).flags(), None);
    }

    #[test]
    fn header_controlled_faults_take_what_the_request_asks_within_the_configured_share() {
        let f =
            fault("{ delay: { header_delay: {} }, abort: { header_abort: {}, percentage: 50 } }");
        assert_eq!(f.decide(&HeaderMap::new(), || 0), Faults::default());
        let h = headers(&[
            ("x-envoy-fault-delay-request", "250"),
            ("x-envoy-fault-abort-request", "429"),
        ]);
        let faults = f.decide(&h, || 0);
        assert_eq!(
            (faults.delay, faults.abort),
            (Some(Duration::from_millis(250)), Some(Abort::Http(429)))
        );
        assert_eq!(f.decide(&h, || 500_000).abort, None, "50% at most");
        let grpc = headers(&[("x-envoy-fault-abort-grpc-request", "14")]);
        assert_eq!(f.decide(&grpc, || 0).abort, Some(Abort::Grpc(14)));
        // A request asking for 10% (of HUNDRED) of the delays.
        let some = headers(&[
            ("x-envoy-fault-delay-request", "5"),
            ("x-envoy-fault-delay-request-percentage", "10"),
        ]);
        assert!(f.decide(&some, || 99_999).delay.is_some());
        assert!(f.decide(&some, || 100_000).delay.is_none());
        let junk = headers(&[("x-envoy-fault-abort-request", "teapot")]);
        assert_eq!(f.decide(&junk, || 0).abort, None);
    }

    #[test]
    fn mistakes_are_named() {
        for (yaml, want) in [
            ("{}", "needs delay or abort"),
            ("{ delay: { percentage: 5 } }", "exactly one of fixed_delay"),
            (
                "{ abort: { http_status: 503, grpc_status: 14 } }",
                "exactly one of http_status",
            ),
            ("{ abort: { http_status: 99 } }", "not 200-599"),
            ("{ abort: { grpc_status: 17 } }", "not a gRPC status"),
        ] {
            let f: FaultConfig = serde_yaml::from_str(yaml).unwrap();
            let e = f.check().unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
        for (yaml, want) in [
            ("{ delay: { fixed_delay: 1s, percentage: 120 } }", "not between 0 and 100"),
            ("{ delay: { fixed_delay: 1s, percentage: { numerator: 1, denominator: THOUSAND } } }", "THOUSAND"),
            ("{ abort: { http_status: 503, max_active_faults: 3 } }", "max_active_faults"),
        ] {
            let e = serde_yaml::from_str::<FaultConfig>(yaml).unwrap_err().to_string();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }
}
