//! `span`: the OTel Collector's span processor. On the spans its `include`/`exclude` choose, it
//! renames a span from attributes (`name.from_attributes`, joined by `separator`, only when
//! every one is there), extracts attributes from the name (`name.to_attributes.rules`: each
//! pattern's named groups become attributes and their part of the name becomes `{group}`;
//! rules run in order on the name as the previous ones left it, `break_after_match` stops at
//! the first that matches) and sets the status.

use model::{KeyValue, Status, StatusCode, TraceBatch};
use regex::Regex;

use super::matching::SpanMatcher;
use crate::config::SpanProcessor;

pub struct SpanEdits {
    only: SpanMatcher,
    from_attributes: Vec<String>,
    separator: String,
    rules: Vec<Regex>,
    break_after_match: bool,
    keep_original_name: bool,
    status: Option<Status>,
}

impl SpanEdits {
    pub fn new(cfg: &SpanProcessor) -> Result<Self, String> {
        let only = SpanMatcher::new(cfg.include.as_deref(), cfg.exclude.as_deref())?;
        let name = cfg.name.clone().unwrap_or_default();
        let to = name.to_attributes.unwrap_or_default();
        let rules = to
            .rules
            .iter()
            .map(|r| {
                let re =
                    Regex::new(r).map_err(|e| format!("name.to_attributes.rules {r:?}: {e}"))?;
                if re.capture_names().flatten().next().is_none() {
                    return Err(format!(
                        "name.to_attributes.rules {r:?} has no named group (?P<name>...) to extract"
                    ));
                }
                Ok(re)
            })
            .collect::<Result<Vec<_>, String>>()?;
        let status = match &cfg.status {
            None => None,
            Some(s) => {
                let code = match s.code.as_str() {
                    "Ok" => StatusCode::Ok,
                    "Error" => StatusCode::Error,
                    "Unset" => StatusCode::Unset,
                    other => return Err(format!("status.code {other:?}: use Ok, Error or Unset")),
                };
                if s.description.is_some() && code != StatusCode::Error {
                    return Err("status.description goes only with status.code Error".into());
                }
                Some(Status {
                    code,
                    message: s.description.clone().unwrap_or_default(),
                })
            }
        };
        if name.from_attributes.is_empty() && rules.is_empty() && status.is_none() {
            return Err("set name.from_attributes, name.to_attributes or status".into());
        }
        Ok(Self {
            only,
            from_attributes: name.from_attributes,
            separator: name.separator,
            rules,
            break_after_match: to.break_after_match,
            keep_original_name: to.keep_original_name,
            status,
        })
    }

    pub fn apply(&self, batch: &mut TraceBatch) {
        for rs in &mut batch.resource_spans {
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    if !self.only.applies(&rs.resource, &ss.scope, span) {
                        continue;
                    }
                    if !self.from_attributes.is_empty() {
                        let parts: Option<Vec<String>> = self
                            .from_attributes
                            .iter()
                            .map(|k| span.attribute(k).map(|v| v.to_string()))
                            .collect();
                        if let Some(parts) = parts {
                            span.name = parts.join(&self.separator);
                        }
                    }
                    for re in &self.rules {
                        let Some(caps) = re.captures(&span.name) else {
                            continue;
                        };
                        let mut renamed = String::with_capacity(span.name.len());
                        let mut last = 0;
                        let mut found = Vec::new();
                        for (i, group) in re.capture_names().enumerate() {
                            let (Some(group), Some(m)) = (group, caps.get(i)) else {
                                continue;
                            };
                            renamed.push_str(&span.name[last..m.start()]);
                            renamed.push('{');
                            renamed.push_str(group);
                            renamed.push('}');
                            last = m.end();
                            found.push((group.to_owned(), m.as_str().to_owned()));
                        }
                        renamed.push_str(&span.name[last..]);
                        for (k, v) in found {
                            match span.attributes.iter_mut().find(|kv| kv.key == k) {
                                Some(kv) => kv.value = v.into(),
                                None => span.attributes.push(KeyValue::new(k, v)),
                            }
                        }
                        if !self.keep_original_name {
                            span.name = renamed;
                        }
                        if self.break_after_match {
                            break;
                        }
                    }
                    if let Some(status) = &self.status {
                        span.status = status.clone();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{AnyValue, ResourceSpans, ScopeSpans, Span};

    fn run(yaml: &str, span: Span) -> Span {
        let cfg: SpanProcessor = serde_yaml::from_str(yaml).unwrap();
        let edits = SpanEdits::new(&cfg).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        let mut batch = TraceBatch {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        edits.apply(&mut batch);
        batch.resource_spans[0].scope_spans[0].spans[0].clone()
    }

    fn named(name: &str, attrs: Vec<KeyValue>) -> Span {
        Span {
            name: name.into(),
            attributes: attrs,
            ..Default::default()
        }
    }

    #[test]
    fn names_from_attributes_only_when_all_are_there() {
        let yaml = "name:\n  from_attributes: [db.svc, operation, port]\n  separator: '::'";
        let s = run(
            yaml,
            named(
                "old",
                vec![
                    KeyValue::new("db.svc", "location"),
                    KeyValue::new("operation", "get"),
                    KeyValue::new("port", AnyValue::Int(5432)),
                ],
            ),
        );
        assert_eq!(s.name, "location::get::5432");
        let s = run(
            yaml,
            named("old", vec![KeyValue::new("db.svc", "location")]),
        );
        assert_eq!(s.name, "old");
    }

    #[test]
    fn to_attributes_extracts_named_groups_into_placeholders() {
        let yaml = "name:\n  to_attributes:\n    rules:\n      - '^/api/v1/document/(?P<documentId>.*)/update$'";
        let s = run(yaml, named("/api/v1/document/12345678/update", vec![]));
        assert_eq!(s.name, "/api/v1/document/{documentId}/update");
        assert_eq!(
            s.attribute("documentId"),
            Some(&AnyValue::String("12345678".into()))
        );

        // Rules in order, each on the name the previous left; break_after_match stops early.
        let rules = "name:\n  to_attributes:\n    rules:\n      - '/(?P<version>v\\d+)/'\n      - '/users/(?P<userId>\\d+)'\n";
        let s = run(rules, named("/api/v2/users/42", vec![]));
        assert_eq!(s.name, "/api/{version}/users/{userId}");
        let s = run(
            &format!("{rules}    break_after_match: true\n"),
            named("/api/v2/users/42", vec![]),
        );
        assert_eq!(s.name, "/api/{version}/users/42");
        let s = run(
            &format!("{rules}    keep_original_name: true\n"),
            named("/api/v2/users/42", vec![]),
        );
        assert_eq!(s.name, "/api/v2/users/42");
        assert_eq!(s.attribute("userId"), Some(&AnyValue::String("42".into())));
    }

    #[test]
    fn status_and_include_exclude() {
        let yaml = "include:\n  match_type: strict\n  span_names: [bad]\nstatus:\n  code: Error\n  description: failed";
        assert_eq!(
            run(yaml, named("bad", vec![])).status.code,
            StatusCode::Error
        );
        assert_eq!(run(yaml, named("bad", vec![])).status.message, "failed");
        assert_eq!(
            run(yaml, named("good", vec![])).status.code,
            StatusCode::Unset
        );
    }

    #[test]
    fn settings_that_cannot_work_are_named() {
        for (yaml, named) in [
            ("status:\n  code: Broken", "use Ok, Error or Unset"),
            (
                "status:\n  code: Ok\n  description: x",
                "only with status.code Error",
            ),
            (
                "name:\n  to_attributes:\n    rules: ['^/a/(.*)$']",
                "no named group",
            ),
            ("name:\n  to_attributes:\n    rules: ['(']", "rules \"(\""),
            ("include:\n  match_type: strict", "set name.from_attributes"),
        ] {
            let cfg: SpanProcessor = serde_yaml::from_str(yaml).unwrap();
            let e = SpanEdits::new(&cfg)
                .err()
                .unwrap_or_else(|| panic!("{yaml} accepted"));
            assert!(e.contains(named), "{yaml}: {e}");
        }
    }
}
