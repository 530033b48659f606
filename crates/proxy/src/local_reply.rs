//! Routes that answer themselves instead of sending upstream: Envoy's `direct_response` (a fixed
//! status and body, e.g. a maintenance page or a `/robots.txt`) and `redirect` (a 3xx with a
//! `Location` built from the request: `https_redirect` at an edge, a moved host or path).
//!
//! Both are checked and made ready when the configuration loads (the body read from its file or
//! variable, the Location's fixed parts parsed), so the request path only assembles strings.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;

use crate::route_match::PathRewrite;

/// Envoy's default `max_direct_response_body_size_bytes`.
pub const MAX_BODY: usize = 4096;

/// `direct_response: { status, body }`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectResponseConfig {
    pub status: u16,
    #[serde(default)]
    pub body: Option<DataSource>,
}

/// Envoy's `DataSource`: exactly one of the four.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    #[serde(default)]
    pub inline_string: Option<String>,
    /// Base64, as Envoy's `bytes` fields are written in YAML.
    #[serde(default)]
    pub inline_bytes: Option<String>,
    /// Read once, when the configuration loads.
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub environment_variable: Option<String>,
}

impl DataSource {
    fn read(&self) -> Result<Bytes, String> {
        use base64::Engine as _;
        let given = [
            self.inline_string.is_some(),
            self.inline_bytes.is_some(),
            self.filename.is_some(),
            self.environment_variable.is_some(),
        ];
        if given.iter().filter(|&&g| g).count() != 1 {
            return Err(
                "body needs exactly one of inline_string, inline_bytes, filename and environment_variable"
                    .to_owned(),
            );
        }
        if let Some(s) = &self.inline_string {
            return Ok(Bytes::from(s.clone()));
        }
        if let Some(b) = &self.inline_bytes {
            return base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map(Bytes::from)
                .map_err(|e| format!("body.inline_bytes is not base64: {e}"));
        }
        if let Some(f) = &self.filename {
            return std::fs::read(f)
                .map(Bytes::from)
                .map_err(|e| format!("body.filename {f:?}: {e}"));
        }
        let var = self.environment_variable.as_deref().unwrap_or_default();
        std::env::var(var)
            .map(Bytes::from)
            .map_err(|_| format!("body.environment_variable {var:?} is not set"))
    }
}

/// Envoy's `RedirectAction`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// The Location's scheme is `https` (what an edge on port 80 says to plain HTTP requests).
    #[serde(default)]
    pub https_redirect: bool,
    /// Or any scheme.
    #[serde(default)]
    pub scheme_redirect: Option<String>,
    /// The host instead of the request's (its port kept unless `port_redirect`).
    #[serde(default)]
    pub host_redirect: Option<String>,
    #[serde(default)]
    pub port_redirect: Option<u16>,
    /// The whole path instead of the request's; a query in it replaces the request's.
    #[serde(default)]
    pub path_redirect: Option<String>,
    /// Or the route's matched `path_prefix` replaced with this.
    #[serde(default)]
    pub prefix_rewrite: Option<String>,
    /// Or every match of a pattern in the path replaced (RE2's `\\1` for groups).
    #[serde(default)]
    pub regex_rewrite: Option<crate::route_match::RegexRewrite>,
    #[serde(default)]
    pub response_code: RedirectCode,
    /// The request's query is left out of the Location.
    #[serde(default)]
    pub strip_query: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedirectCode {
    #[default]
    MovedPermanently,
    Found,
    SeeOther,
    TemporaryRedirect,
    PermanentRedirect,
}

impl RedirectCode {
    fn status(self) -> StatusCode {
        match self {
            RedirectCode::MovedPermanently => StatusCode::MOVED_PERMANENTLY,
            RedirectCode::Found => StatusCode::FOUND,
            RedirectCode::SeeOther => StatusCode::SEE_OTHER,
            RedirectCode::TemporaryRedirect => StatusCode::TEMPORARY_REDIRECT,
            RedirectCode::PermanentRedirect => StatusCode::PERMANENT_REDIRECT,
        }
    }
}

/// What a route answers with instead of going upstream, ready to serve.
#[derive(Debug)]
pub enum LocalReply {
    Direct { status: StatusCode, body: Bytes },
    Redirect(Redirect),
}

/// A redirect with its fixed parts checked.
#[derive(Debug)]
pub struct Redirect {
    status: StatusCode,
    scheme: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    path: PathChange,
    strip_query: bool,
}

#[derive(Debug)]
enum PathChange {
    Keep,
    /// The path, and the query that replaces the request's if it has one.
    Whole(String, Option<String>),
    /// The route's prefix replaced, or a pattern's matches.
    Rewrite(PathRewrite),
}

/// The parts of a request a redirect is built from.
pub struct Asked<'a> {
    /// The request's own scheme: `https` when it came over TLS.
    pub secure: bool,
    /// Its Host header (or authority), port included.
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

impl LocalReply {
    /// Checks `direct_response` or `redirect` of a route (`prefix`: its `path_prefix`).
    pub fn direct(c: &DirectResponseConfig) -> Result<Self, String> {
        if !(200..600).contains(&c.status) {
            return Err(format!(
                "direct_response: status {} is not 200–599",
                c.status
            ));
        }
        let status = StatusCode::from_u16(c.status).map_err(|e| e.to_string())?;
        let body = match &c.body {
            None => Bytes::new(),
            Some(b) => b.read().map_err(|m| format!("direct_response: {m}"))?,
        };
        if body.len() > MAX_BODY {
            return Err(format!(
                "direct_response: the body is {} bytes; at most {MAX_BODY} (as Envoy's default)",
                body.len()
            ));
        }
        Ok(LocalReply::Direct { status, body })
    }

    pub fn redirect(c: &RedirectConfig, prefix: Option<&str>) -> Result<Self, String> {
        let at = |m: String| format!("redirect: {m}");
        let scheme = match (&c.scheme_redirect, c.https_redirect) {
            (Some(_), true) => {
                return Err(at(
                    "give one of https_redirect and scheme_redirect".to_owned()
                ))
            }
            (Some(s), false) => {
                let ok = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
                if !ok {
                    return Err(at(format!("scheme_redirect {s:?} is not a URL scheme")));
                }
                Some(s.to_ascii_lowercase())
            }
            (None, true) => Some("https".to_owned()),
            (None, false) => None,
        };
        if let Some(h) = &c.host_redirect {
            if http::uri::Authority::try_from(h.as_str()).is_err() || h.contains('@') {
                return Err(at(format!("host_redirect {h:?} is not a host")));
            }
        }
        if c.port_redirect == Some(0) {
            return Err(at("port_redirect 0 is not a port".to_owned()));
        }
        let given = [
            c.path_redirect.is_some(),
            c.prefix_rewrite.is_some(),
            c.regex_rewrite.is_some(),
        ];
        if given.iter().filter(|&&g| g).count() > 1 {
            return Err(at(
                "give one of path_redirect, prefix_rewrite and regex_rewrite".to_owned(),
            ));
        }
        let path = match (&c.path_redirect, &c.prefix_rewrite, &c.regex_rewrite) {
            (_, _, Some(r)) => PathChange::Rewrite(r.compile().map_err(at)?),
            (Some(p), _, None) => {
                if !p.starts_with('/') || http::uri::PathAndQuery::try_from(p.as_str()).is_err() {
                    return Err(at(format!(
                        "path_redirect {p:?} is not a path starting with /"
                    )));
                }
                match p.split_once('?') {
                    Some((path, query)) => {
                        PathChange::Whole(path.to_owned(), Some(query.to_owned()))
                    }
                    None => PathChange::Whole(p.clone(), None),
                }
            }
            (None, Some(to), None) => {
                let Some(prefix) = prefix else {
                    return Err(at("prefix_rewrite needs the route's path_prefix".to_owned()));
                };
                if http::uri::PathAndQuery::try_from(to.as_str()).is_err() || to.contains('?') {
                    return Err(at(format!("prefix_rewrite {to:?} is not a path")));
                }
                PathChange::Rewrite(PathRewrite::Prefix(prefix.to_owned(), to.clone()))
            }
            (None, None, None) => PathChange::Keep,
        };
        Ok(LocalReply::Redirect(Redirect {
            status: c.response_code.status(),
            scheme,
            host: c.host_redirect.clone(),
            port: c.port_redirect,
            path,
            strip_query: c.strip_query,
        }))
    }
}

impl Redirect {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `Location` for a request. A `port_redirect` that is the scheme's default is not
    /// written; when the scheme changes, neither is a port kept from the request that was the
    /// old scheme's default or is the new one's (`http://shop:80/x` → `https://shop/x`).
    pub fn location(&self, r: &Asked<'_>) -> Option<HeaderValue> {
        let from = if r.secure { "https" } else { "http" };
        let scheme = self.scheme.as_deref().unwrap_or(from);
        // A host_redirect with a port of its own brings it; else the request's port stays.
        let (host, kept) = match &self.host {
            Some(h) => {
                let (h, p) = split_port(h);
                (h, p.or(split_port(r.host).1))
            }
            None => split_port(r.host),
        };
        let port = match (self.port, kept) {
            (Some(p), _) => (default_port(scheme) != Some(p)).then_some(p),
            (None, Some(p)) if scheme != from => {
                (default_port(from) != Some(p) && default_port(scheme) != Some(p)).then_some(p)
            }
            (None, kept) => kept,
        };
        let (path, query) = match &self.path {
            PathChange::Keep => (Cow::Borrowed(r.path), self.query(r)),
            // A query in path_redirect replaces the request's, strip_query or not.
            PathChange::Whole(p, Some(q)) => (Cow::Borrowed(p.as_str()), Some(q.as_str())),
            PathChange::Whole(p, None) => (Cow::Borrowed(p.as_str()), self.query(r)),
            PathChange::Rewrite(rewrite) => match rewrite.apply(r.path) {
                Some(p) if p.starts_with('/') => (Cow::Owned(p), self.query(r)),
                _ => (Cow::Borrowed(r.path), self.query(r)),
            },
        };
        let mut s = String::with_capacity(scheme.len() + host.len() + path.len() + 16);
        s.push_str(scheme);
        s.push_str("://");
        s.push_str(host);
        if let Some(p) = port {
            s.push(':');
            s.push_str(itoa::Buffer::new().format(p));
        }
        s.push_str(&path);
        if let Some(q) = query {
            s.push('?');
            s.push_str(q);
        }
        HeaderValue::from_str(&s).ok()
    }

    /// The request's query as the Location keeps it.
    fn query<'a>(&self, r: &Asked<'a>) -> Option<&'a str> {
        r.query.filter(|q| !self.strip_query && !q.is_empty())
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `host[:port]` (an IPv6 host in brackets) into its parts.
fn split_port(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((_, tail)) => {
                let end = host.len() - tail.len();
                (
                    &host[..end],
                    tail.strip_prefix(':').and_then(|p| p.parse().ok()),
                )
            }
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (host, None),
        },
        None => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(yaml: &str, prefix: Option<&str>) -> Redirect {
        let c: RedirectConfig = serde_yaml::from_str(yaml).unwrap();
        match LocalReply::redirect(&c, prefix).unwrap() {
            LocalReply::Redirect(r) => r,
            LocalReply::Direct { .. } => unreachable!(),
        }
    }

    fn at(r: &Redirect, secure: bool, host: &str, pq: &str) -> String {
        let (path, query) = match pq.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (pq, None),
        };
        let a = Asked {
            secure,
            host,
            path,
            query,
        };
        r.location(&a).unwrap().to_str().unwrap().to_owned()
    }

    #[test]
    fn https_redirect_keeps_path_and_query_and_drops_default_ports() {
        let r = redirect("{ https_redirect: true }", None);
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            at(&r, false, "shop.example", "/a/b?x=1"),
            "https://shop.example/a/b?x=1"
        );
        assert_eq!(
            at(&r, false, "shop.example:80", "/"),
            "https://shop.example/"
        );
        assert_eq!(
            at(&r, false, "shop.example:443", "/"),
            "https://shop.example/"
        );
        assert_eq!(
            at(&r, false, "shop.example:8080", "/"),
            "https://shop.example:8080/"
        );
        assert_eq!(at(&r, false, "[::1]:80", "/"), "https://[::1]/");
        assert_eq!(at(&r, false, "[::1]:8080", "/q"), "https://[::1]:8080/q");
        // Already https: as it was.
        assert_eq!(
            at(&r, true, "shop.example:8443", "/"),
            "https://shop.example:8443/"
        );
    }

    #[test]
    fn host_port_path_and_codes() {
        let r = redirect(
            "{ host_redirect: new.example, port_redirect: 8443, path_redirect: /moved, response_code: TEMPORARY_REDIRECT }",
            None,
        );
        assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(
            at(&r, false, "old.example:8080", "/x?k=v"),
            "http://new.example:8443/moved?k=v"
        );
        // A query in path_redirect replaces the request's, strip_query or not.
        let r = redirect(
            "{ path_redirect: '/moved?from=old', strip_query: true }",
            None,
        );
        assert_eq!(at(&r, false, "h", "/x?k=v"), "http://h/moved?from=old");
        let r = redirect(
            "{ strip_query: true, response_code: PERMANENT_REDIRECT }",
            None,
        );
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(at(&r, true, "h", "/x?k=v"), "https://h/x");
        // host_redirect with a port of its own; the request's port otherwise.
        let r = redirect("{ host_redirect: 'other:9000' }", None);
        assert_eq!(at(&r, false, "h:8080", "/"), "http://other:9000/");
        let r = redirect("{ host_redirect: other, response_code: SEE_OTHER }", None);
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(at(&r, false, "h:8080", "/"), "http://other:8080/");
        // The new scheme's default port given is not written.
        let r = redirect("{ https_redirect: true, port_redirect: 443 }", None);
        assert_eq!(at(&r, false, "h:8080", "/"), "https://h/");
        let r = redirect("{ response_code: FOUND, scheme_redirect: HTTP }", None);
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(at(&r, true, "h:443", "/"), "http://h/");
    }

    #[test]
    fn prefix_rewrite_replaces_the_routes_prefix_and_regex_rewrite_its_matches() {
        let r = redirect(
            r#"{ regex_rewrite: { pattern: { regex: '^/blog/(\d+)/(.*)$' }, substitution: '/posts/\2-\1' } }"#,
            None,
        );
        assert_eq!(
            at(&r, false, "h", "/blog/2024/hello?ref=x"),
            "http://h/posts/hello-2024?ref=x"
        );
        assert_eq!(
            at(&r, false, "h", "/other"),
            "http://h/other",
            "no match: the path as it is"
        );
        let r = redirect("{ prefix_rewrite: /v2/ }", Some("/v1/"));
        assert_eq!(
            at(&r, false, "h", "/v1/users?id=3"),
            "http://h/v2/users?id=3"
        );
        assert_eq!(at(&r, false, "h", "/v1/"), "http://h/v2/");
    }

    #[test]
    fn mistakes_are_named() {
        let bad = |yaml: &str, prefix: Option<&str>| {
            let c: RedirectConfig = serde_yaml::from_str(yaml).unwrap();
            LocalReply::redirect(&c, prefix).unwrap_err()
        };
        assert!(bad("{ https_redirect: true, scheme_redirect: http }", None).contains("one of"));
        assert!(bad("{ scheme_redirect: '1x' }", None).contains("not a URL scheme"));
        assert!(bad("{ host_redirect: 'a b' }", None).contains("not a host"));
        assert!(bad("{ port_redirect: 0 }", None).contains("not a port"));
        assert!(bad("{ path_redirect: x }", None).contains("starting with /"));
        assert!(bad("{ path_redirect: /a, prefix_rewrite: /b }", None).contains("one of"));
        assert!(bad("{ prefix_rewrite: /b }", None).contains("path_prefix"));
        assert!(serde_yaml::from_str::<RedirectConfig>("{ response_code: 301 }").is_err());
        assert!(serde_yaml::from_str::<RedirectConfig>("{ regex_rewrite: {} }").is_err());

        let direct = |yaml: &str| {
            let c: DirectResponseConfig = serde_yaml::from_str(yaml).unwrap();
            LocalReply::direct(&c)
        };
        assert!(direct("{ status: 199 }").unwrap_err().contains("200–599"));
        assert!(direct("{ status: 200, body: {} }")
            .unwrap_err()
            .contains("exactly one"));
        assert!(
            direct("{ status: 200, body: { inline_string: a, filename: b } }")
                .unwrap_err()
                .contains("exactly one")
        );
        assert!(direct("{ status: 200, body: { inline_bytes: '!!' } }")
            .unwrap_err()
            .contains("not base64"));
        assert!(direct("{ status: 200, body: { filename: /no/such/file } }")
            .unwrap_err()
            .contains("/no/such/file"));
        assert!(
            direct("{ status: 200, body: { environment_variable: MESHTRACE_NO_SUCH_VAR } }")
                .unwrap_err()
                .contains("not set")
        );
        let long = format!(
            "{{ status: 200, body: {{ inline_string: {} }} }}",
            "x".repeat(4097)
        );
        assert!(direct(&long).unwrap_err().contains("4097 bytes"));
    }

    #[test]
    fn direct_bodies_from_each_source() {
        let direct = |yaml: &str| {
            let c: DirectResponseConfig = serde_yaml::from_str(yaml).unwrap();
            match LocalReply::direct(&c).unwrap() {
                LocalReply::Direct { status, body } => (status.as_u16(), body),
                LocalReply::Redirect(_) => unreachable!(),
            }
        };
        assert_eq!(direct("{ status: 204 }"), (204, Bytes::new()));
        assert_eq!(
            direct("{ status: 503, body: { inline_string: 'down for maintenance' } }"),
            (503, Bytes::from("down for maintenance"))
        );
        assert_eq!(
            direct("{ status: 200, body: { inline_bytes: 'AAEC/w==' } }"),
            (200, Bytes::from(vec![0u8, 1, 2, 255]))
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("robots.txt");
        std::fs::write(&f, "User-agent: *\nDisallow: /\n").unwrap();
        assert_eq!(
            direct(&format!(
                "{{ status: 200, body: {{ filename: '{}' }} }}",
                f.display()
            ))
            .1,
            Bytes::from("User-agent: *\nDisallow: /\n")
        );
    }
}
