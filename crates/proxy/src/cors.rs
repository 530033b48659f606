//! Cross-origin requests (Envoy's `cors` policy, per listener or route): a browser page from an
//! allowed origin may call the services behind an edge. A preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) from an allowed origin is answered by the proxy itself, 200
//! with what is allowed, and never reaches the upstream; other requests from an allowed origin
//! are forwarded and their answers carry `Access-Control-Allow-Origin` (the request's origin),
//! `-Allow-Credentials` and `-Expose-Headers`. Requests from other origins pass untouched (the
//! browser then refuses the answer), as in Envoy.

use http::{header, HeaderMap, HeaderValue, Method};
use serde::Deserialize;

use crate::route_match::{StringMatch, ValueMatch};

/// Envoy's `CorsPolicy` (the fields a static configuration uses).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// The origins allowed (`Origin` header values, e.g. `{ exact: "https://shop.example" }`,
    /// `{ suffix: ".shop.example" }`).
    #[serde(default)]
    pub allow_origin_string_match: Vec<StringMatch>,
    /// `Access-Control-Allow-Methods`, e.g. `"GET, POST"`.
    #[serde(default)]
    pub allow_methods: Option<String>,
    #[serde(default)]
    pub allow_headers: Option<String>,
    #[serde(default)]
    pub expose_headers: Option<String>,
    /// Seconds a browser may keep a preflight's answer.
    #[serde(default)]
    pub max_age: Option<String>,
    #[serde(default)]
    pub allow_credentials: bool,
}

/// A CORS policy ready to use.
#[derive(Debug)]
pub struct Cors {
    origins: Vec<ValueMatch>,
    allow_methods: Option<HeaderValue>,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    credentials: bool,
}

static REQUEST_METHOD: header::HeaderName = header::ACCESS_CONTROL_REQUEST_METHOD;

impl CorsConfig {
    pub fn compile(&self) -> Result<Cors, String> {
        if self.allow_origin_string_match.is_empty() {
            return Err("allow_origin_string_match lists no origin".to_owned());
        }
        let origins = self
            .allow_origin_string_match
            .iter()
            .map(|m| {
                m.compile()
                    .map_err(|e| format!("allow_origin_string_match: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let value = |name: &str, v: &Option<String>| -> Result<Option<HeaderValue>, String> {
            v.as_deref()
                .map(|v| {
                    HeaderValue::from_str(v)
                        .map_err(|_| format!("{name} {v:?} is not a header value"))
                })
                .transpose()
        };
        if let Some(m) = &self.max_age {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("max_age {m:?} is not a number of seconds"));
            }
        }
        Ok(Cors {
            origins,
            allow_methods: value("allow_methods", &self.allow_methods)?,
            allow_headers: value("allow_headers", &self.allow_headers)?,
            expose_headers: value("expose_headers", &self.expose_headers)?,
            max_age: value("max_age", &self.max_age)?,
            credentials: self.allow_credentials,
        })
    }
}

impl Cors {
    /// The request's `Origin`, when it is one of the allowed.
    pub fn allowed(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.origins
            .iter()
            .any(|m| m.matches(text))
            .then(|| origin.clone())
    }

    /// Whether the request is a preflight (to answer, from an allowed origin).
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS && headers.contains_key(&REQUEST_METHOD)
    }

    /// The headers of the answer to a preflight from `origin`.
    pub fn preflight(&self, origin: HeaderValue) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        for (name, v) in [
            (header::ACCESS_CONTROL_ALLOW_METHODS, &self.allow_methods),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, &self.allow_headers),
            (header::ACCESS_CONTROL_MAX_AGE, &self.max_age),
        ] {
            if let Some(v) = v {
                h.insert(name, v.clone());
            }
        }
        h
    }

    /// Adds what an answer to a request from `origin` carries.
    pub fn answer(&self, origin: HeaderValue, h: &mut HeaderMap) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(v) = &self.expose_headers {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(yaml: &str) -> Cors {
        serde_yaml::from_str::<CorsConfig>(yaml)
            .unwrap()
            .compile()
            .unwrap()
    }

    fn with_origin(o: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_static(o));
        h
    }

    #[test]
    fn origins_preflights_and_answers() {
        let c = cors(
            "{ allow_origin_string_match: [{ exact: 'https://shop.example' }, { suffix: '.shop.example', ignore_case: true }], allow_methods: 'GET, POST', allow_headers: 'content-type, x-user', expose_headers: x-trace-id, max_age: '600', allow_credentials: true }",
        );
        assert!(c.allowed(&with_origin("https://shop.example")).is_some());
        assert!(c
            .allowed(&with_origin("https://admin.SHOP.example"))
            .is_some());
        assert!(c.allowed(&with_origin("https://evil.example")).is_none());
        assert!(c.allowed(&HeaderMap::new()).is_none());

        let mut pre = with_origin("https://shop.example");
        assert!(!Cors::is_preflight(&Method::OPTIONS, &pre));
        pre.insert(&REQUEST_METHOD, HeaderValue::from_static("POST"));
        assert!(Cors::is_preflight(&Method::OPTIONS, &pre));
        assert!(!Cors::is_preflight(&Method::GET, &pre));

        let h = c.preflight(HeaderValue::from_static("https://shop.example"));
        assert_eq!(h["access-control-allow-origin"], "https://shop.example");
        assert_eq!(h["access-control-allow-methods"], "GET, POST");
        assert_eq!(h["access-control-allow-headers"], "content-type, x-user");
        assert_eq!(h["access-control-max-age"], "600");
        assert_eq!(h["access-control-allow-credentials"], "true");
        let mut a = HeaderMap::new();
        c.answer(HeaderValue::from_static("https://shop.example"), &mut a);
        assert_eq!(a["access-control-expose-headers"], "x-trace-id");
        assert!(a.get("access-control-allow-methods").is_none());

        let bare = cors("{ allow_origin_string_match: [{ prefix: 'http://localhost:' }] }");
        let h = bare.preflight(HeaderValue::from_static("http://localhost:3000"));
        assert_eq!(h.len(), 1, "{h:?}");
    }

    #[test]
    fn mistakes_are_named() {
        let err = |yaml: &str| {
            serde_yaml::from_str::<CorsConfig>(yaml)
                .unwrap()
                .compile()
                .unwrap_err()
        };
        assert!(err("{}").contains("lists no origin"));
        assert!(err("{ allow_origin_string_match: [{}] }").contains("exactly one of exact"));
        assert!(
            err("{ allow_origin_string_match: [{ exact: a }], max_age: 10m }").contains("max_age")
        );
        assert!(err(
            "{ allow_origin_string_match: [{ exact: a }], allow_methods: \"GET\\nPOST\" }"
        )
        .contains("allow_methods"));
    }
}
