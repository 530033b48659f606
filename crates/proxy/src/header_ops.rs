//! Envoy's header changes on the way through: `request_headers_to_add` and
//! `request_headers_to_remove` on the request sent upstream, `response_headers_to_add` and
//! `response_headers_to_remove` on the upstream's answer; per route and per listener (the
//! route's first, then the listener's, so that the listener's wins a conflict, as Envoy's
//! less specific levels do by default). Values are literal: Envoy's `%...%` variables in
//! header values are refused by name rather than sent as they are.

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use serde::Deserialize;

/// One header to add (Envoy's `HeaderValueOption`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderToAdd {
    pub header: KeyValue,
    #[serde(default)]
    pub append_action: AppendAction,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// What adding does when the header is there already.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppendAction {
    /// Another value beside those there (Envoy's default).
    #[default]
    AppendIfExistsOrAdd,
    /// Only when the header is not there.
    AddIfAbsent,
    /// This value instead of those there.
    OverwriteIfExistsOrAdd,
    /// This value instead of those there; nothing when there are none.
    OverwriteIfExists,
}

/// The four lists of one level (a route or a listener), as configured.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct HeaderOpsConfig {
    #[serde(default)]
    pub request_headers_to_add: Vec<HeaderToAdd>,
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
    #[serde(default)]
    pub response_headers_to_add: Vec<HeaderToAdd>,
    #[serde(default)]
    pub response_headers_to_remove: Vec<String>,
}

/// One side's changes, ready to apply.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    remove: Vec<HeaderName>,
    add: Vec<(HeaderName, HeaderValue, AppendAction)>,
}

/// A level's changes to requests and to responses.
#[derive(Clone, Debug, Default)]
pub struct HeaderOps {
    pub request: Changes,
    pub response: Changes,
}

impl HeaderOpsConfig {
    pub fn is_empty(&self) -> bool {
        *self == HeaderOpsConfig::default()
    }

    /// The changes, their mistakes named.
    pub fn compile(&self) -> Result<HeaderOps, String> {
        Ok(HeaderOps {
            request: changes(
                "request",
                &self.request_headers_to_add,
                &self.request_headers_to_remove,
            )?,
            response: changes(
                "response",
                &self.response_headers_to_add,
                &self.response_headers_to_remove,
            )?,
        })
    }
}

fn changes(side: &str, add: &[HeaderToAdd], remove: &[String]) -> Result<Changes, String> {
    let name = |n: &str, key: &str| {
        HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("{side}_headers_{key}: {n:?} is not a header name"))
    };
    let mut c = Changes::default();
    for n in remove {
        let h = name(n, "to_remove")?;
        if matches!(
            h.as_str(),
            "host" | "connection" | "transfer-encoding" | "te" | "upgrade"
        ) {
            return Err(format!(
                "{side}_headers_to_remove: {n:?} is the proxy's to manage, not removable"
            ));
        }
        c.remove.push(h);
    }
    for a in add {
        let h = name(&a.header.key, "to_add")?;
        if a.header.value.contains('%') {
            return Err(format!(
                "{side}_headers_to_add: {:?}: values with Envoy's %...% variables are not supported; give a literal value",
                a.header.key
            ));
        }
        let v = HeaderValue::from_str(&a.header.value).map_err(|_| {
            format!(
                "{side}_headers_to_add: {:?}: {:?} is not a header value",
                a.header.key, a.header.value
            )
        })?;
        c.add.push((h, v, a.append_action));
    }
    Ok(c)
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// Removes, then adds, as Envoy does.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for h in &self.remove {
            headers.remove(h);
        }
        for (h, v, action) in &self.add {
            match action {
                AppendAction::AppendIfExistsOrAdd => {
                    headers.append(h.clone(), v.clone());
                }
                AppendAction::AddIfAbsent => {
                    if !headers.contains_key(h) {
                        headers.insert(h.clone(), v.clone());
                    }
                }
                AppendAction::OverwriteIfExistsOrAdd => {
                    headers.insert(h.clone(), v.clone());
                }
                AppendAction::OverwriteIfExists => {
                    if headers.contains_key(h) {
                        headers.insert(h.clone(), v.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_then_adds_by_each_append_action() {
        let c: HeaderOpsConfig = serde_yaml::from_str(
            r#"
request_headers_to_remove: [x-secret]
request_headers_to_add:
  - { header: { key: x-tag, value: a } }
  - { header: { key: X-Env, value: prod }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }
  - { header: { key: x-first, value: new }, append_action: ADD_IF_ABSENT }
  - { header: { key: x-only-if, value: new }, append_action: OVERWRITE_IF_EXISTS }
"#,
        )
        .unwrap();
        let ops = c.compile().unwrap();
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-secret", "s"),
            ("x-tag", "z"),
            ("x-env", "dev"),
            ("x-first", "old"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        ops.request.apply(&mut h);
        let all =
            |k: &str| -> Vec<&str> { h.get_all(k).iter().map(|v| v.to_str().unwrap()).collect() };
        assert!(all("x-secret").is_empty());
        assert_eq!(all("x-tag"), ["z", "a"]);
        assert_eq!(all("x-env"), ["prod"]);
        assert_eq!(all("x-first"), ["old"]);
        assert!(all("x-only-if").is_empty());
        assert!(ops.response.is_empty());
    }

    #[test]
    fn mistakes_are_named() {
        for (yaml, want) in [
            ("request_headers_to_add: [{ header: { key: x, value: '%DOWNSTREAM_REMOTE_ADDRESS%' } }]", "%...% variables are not supported"),
            ("response_headers_to_add: [{ header: { key: 'a b', value: x } }]", "not a header name"),
            ("request_headers_to_remove: [host]", "not removable"),
            ("request_headers_to_add: [{ header: { key: x, value: \"a\\nb\" } }]", "not a header value"),
        ] {
            let c: HeaderOpsConfig = serde_yaml::from_str(yaml).unwrap();
            let e = c.compile().unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
        let e = serde_yaml::from_str::<HeaderOpsConfig>(
            "request_headers_to_add: [{ header: { key: x, value: y }, append_action: APPEND }]",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("APPEND"), "{e}");
    }
}
