//! CORS on the HTTP receivers, so browser instrumentation (the OpenTelemetry JS web SDK) can
//! send OTLP/HTTP or Zipkin from pages served elsewhere: the OTel Collector's `cors` block.
//!
//! Origins are exact (`https://app.example.com`), `*` for any, or one wildcard inside
//! (`https://*.example.com`), as the OTel Collector matches them. Allowed request headers are
//! the CORS-safelisted ones plus `allowed_headers`; the only method is `POST`.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Which pages may send spans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cors {
    pub allowed_origins: Vec<String>,
    /// Request headers allowed besides the safelisted ones (`*` for any).
    pub allowed_headers: Vec<String>,
    /// How long a browser may cache a preflight answer.
    pub max_age: Option<Duration>,
}

/// Why a `cors` block cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CorsError(String);

impl Cors {
    /// The layer for the receiver's router; `None` when no origin is allowed (CORS off).
    pub fn layer(&self) -> Result<Option<CorsLayer>, CorsError> {
        if self.allowed_origins.is_empty() {
            return Ok(None);
        }
        for o in &self.allowed_origins {
            if o.matches('*').count() > 1 {
                return Err(CorsError(format!(
                    "allowed_origins {o:?}: at most one * per origin"
                )));
            }
        }
        let origin = if self.allowed_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            let patterns = self.allowed_origins.clone();
            AllowOrigin::predicate(move |origin: &HeaderValue, _| {
                origin
                    .to_str()
                    .is_ok_and(|o| patterns.iter().any(|p| origin_matches(p, o)))
            })
        };
        let mut layer = CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([Method::POST]);
        let mut headers = vec![
            HeaderName::from_static("content-type"),
            HeaderName::from_static("content-encoding"),
            HeaderName::from_static("accept"),
            HeaderName::from_static("x-requested-with"),
        ];
        if self.allowed_headers.iter().any(|h| h == "*") {
            layer = layer.allow_headers(tower_http::cors::AllowHeaders::mirror_request());
        } else {
            for h in &self.allowed_headers {
                headers.push(HeaderName::try_from(h.as_str()).map_err(|e| {
                    CorsError(format!("allowed_headers {h:?}: not a header name ({e})"))
                })?);
            }
            layer = layer.allow_headers(headers);
        }
        if let Some(age) = self.max_age {
            layer = layer.max_age(age);
        }
        Ok(Some(layer))
    }
}

/// Whether `origin` matches `pattern` (exact, ASCII case-insensitive, or with one `*`
/// standing for any text).
fn origin_matches(pattern: &str, origin: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(origin),
        Some((prefix, suffix)) => {
            origin.len() >= prefix.len() + suffix.len()
                && origin
                    .get(..prefix.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
                && origin
                    .get(origin.len() - suffix.len()..)
                    .is_some_and(|s| s.eq_ignore_ascii_case(suffix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_as_the_otel_collector_matches_them() {
        assert!(origin_matches(
            "https://app.example.com",
            "https://app.example.com"
        ));
        assert!(origin_matches(
            "https://app.example.com",
            "HTTPS://APP.example.com"
        ));
        assert!(!origin_matches(
            "https://app.example.com",
            "https://app.example.com.evil"
        ));
        assert!(origin_matches(
            "https://*.example.com",
            "https://a.b.example.com"
        ));
        assert!(!origin_matches(
            "https://*.example.com",
            "https://example.com"
        ));
        assert!(!origin_matches(
            "https://*.example.com",
            "http://a.example.com"
        ));
        assert!(!origin_matches(
            "https://*.example.com",
            "https://a.example.com.evil"
        ));
    }

    #[test]
    fn bad_blocks_are_named() {
        let c = Cors {
            allowed_origins: vec!["https://*.*.example.com".into()],
            ..Cors::default()
        };
        assert!(c.layer().unwrap_err().to_string().contains("at most one *"));
        let c = Cors {
            allowed_origins: vec!["https://a".into()],
            allowed_headers: vec!["bad header".into()],
            ..Cors::default()
        };
        assert!(c
            .layer()
            .unwrap_err()
            .to_string()
            .contains("not a header name"));
        assert!(Cors::default().layer().unwrap().is_none());
    }
}
