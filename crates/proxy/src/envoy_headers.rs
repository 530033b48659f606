//! The `x-envoy-*` request headers Envoy's router reads, with which a caller inside the mesh
//! asks for its own retries and timeouts: `x-envoy-retry-on` and `x-envoy-retry-grpc-on`
//! (conditions added to the route's retry policy, or a policy of their own),
//! `x-envoy-max-retries` (overrides the policy's `num_retries`), `x-envoy-upstream-rq-timeout-ms`
//! (the request's timeout, 0 for none) and `x-envoy-upstream-rq-per-try-timeout-ms`. They are
//! taken off the request before it goes upstream; values that do not parse are ignored, as
//! Envoy ignores them.
//!
//! An edge listener takes requests from outside the mesh, whose `x-envoy-*` headers are not to
//! be trusted (they could ask for retries storms or faults): it removes every one of them
//! first, as Envoy does for external requests.

use std::time::Duration;

use http::{HeaderMap, HeaderName};
use serde::de::{self, Deserialize};

use crate::config::RetryOn;

static RETRY_ON: HeaderName = HeaderName::from_static("x-envoy-retry-on");
static RETRY_GRPC_ON: HeaderName = HeaderName::from_static("x-envoy-retry-grpc-on");
static MAX_RETRIES: HeaderName = HeaderName::from_static("x-envoy-max-retries");
static TIMEOUT: HeaderName = HeaderName::from_static("x-envoy-upstream-rq-timeout-ms");
static PER_TRY_TIMEOUT: HeaderName =
    HeaderName::from_static("x-envoy-upstream-rq-per-try-timeout-ms");

/// What a request asked for.
#[derive(Debug, Default, PartialEq)]
pub struct Asked {
    pub retry_on: Vec<RetryOn>,
    pub max_retries: Option<u32>,
    /// `Some(ZERO)`: no timeout.
    pub timeout: Option<Duration>,
    pub per_try_timeout: Option<Duration>,
}

/// Whether a request has any `x-envoy-*` header: one pass over its few names, nothing
/// hashed, so that the common request (none) is spared every lookup of them.
pub fn present(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|k| k.as_str().as_bytes().starts_with(b"x-envoy-"))
}

/// Reads and removes the router's headers from a request.
pub fn take(headers: &mut HeaderMap) -> Asked {
    let mut asked = Asked::default();
    if !present(headers) {
        return asked;
    }
    for name in [&RETRY_ON, &RETRY_GRPC_ON] {
        if let Some(v) = headers.remove(name) {
            let text = v.to_str().unwrap_or("");
            for condition in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                let parsed = RetryOn::deserialize(
                    de::value::StrDeserializer::<de::value::Error>::new(condition),
                );
                if let Ok(on) = parsed {
                    if !asked.retry_on.contains(&on) {
                        asked.retry_on.push(on);
                    }
                }
            }
        }
    }
    let number = |v: Option<http::HeaderValue>| -> Option<u64> {
        v.and_then(|v| v.to_str().ok()?.trim().parse().ok())
    };
    asked.max_retries =
        number(headers.remove(&MAX_RETRIES)).map(|n| n.min(u64::from(u32::MAX)) as u32);
    asked.timeout = number(headers.remove(&TIMEOUT)).map(Duration::from_millis);
    asked.per_try_timeout = number(headers.remove(&PER_TRY_TIMEOUT))
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis);
    asked
}

/// Removes every `x-envoy-*` header (a request from outside the mesh).
pub fn strip_external(headers: &mut HeaderMap) {
    if !headers.keys().any(|k| k.as_str().starts_with("x-envoy-")) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-envoy-"))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_static(k),
                    http::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn the_router_headers_are_read_and_taken_off() {
        let mut h = headers(&[
            ("x-envoy-retry-on", "5xx, connect-failure,nonsense"),
            ("x-envoy-retry-grpc-on", "unavailable"),
            ("x-envoy-max-retries", "3"),
            ("x-envoy-upstream-rq-timeout-ms", "0"),
            ("x-envoy-upstream-rq-per-try-timeout-ms", "250"),
            ("x-other", "kept"),
        ]);
        let asked = take(&mut h);
        assert_eq!(
            asked,
            Asked {
                retry_on: vec![
                    RetryOn::ServerError,
                    RetryOn::ConnectFailure,
                    RetryOn::GrpcUnavailable
                ],
                max_retries: Some(3),
                timeout: Some(Duration::ZERO),
                per_try_timeout: Some(Duration::from_millis(250)),
            }
        );
        assert_eq!(h.len(), 1, "only x-other is left: {h:?}");
        let mut junk = headers(&[
            ("x-envoy-max-retries", "many"),
            ("x-envoy-upstream-rq-timeout-ms", "-5"),
        ]);
        assert_eq!(take(&mut junk), Asked::default());
        assert!(junk.is_empty(), "taken off even when they do not parse");
    }

    #[test]
    fn an_external_request_loses_every_x_envoy_header() {
        let mut h = headers(&[
            ("x-envoy-fault-abort-request", "503"),
            ("x-envoy-retry-on", "5xx"),
            ("x-envoyish", "kept"),
            ("x-request-id", "kept"),
        ]);
        strip_external(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-envoyish", "x-request-id"]);
    }
}
