//! `include`/`exclude` on span processors: which spans they work on, by service, span name,
//! kind, attributes, resource attributes and instrumentation library, as the OTel Collector's
//! `filterspan` matches them. Patterns are compiled when the processor is built; a bad one
//! (or a value the match type cannot compare) is an error naming it.

use model::{AnyValue, KeyValue, Resource, Scope, Span, SpanKind};
use regex::Regex;

use crate::config::{MatchAttribute, MatchProperties};

/// A processor's `include` and `exclude`.
#[derive(Default)]
pub struct SpanMatcher {
    include: Option<Box<Properties>>,
    exclude: Option<Box<Properties>>,
}

impl SpanMatcher {
    pub fn new(
        include: Option<&MatchProperties>,
        exclude: Option<&MatchProperties>,
    ) -> Result<Self, String> {
        Ok(Self {
            include: include
                .map(|p| {
                    Properties::new(p)
                        .map(Box::new)
                        .map_err(|e| format!("include: {e}"))
                })
                .transpose()?,
            exclude: exclude
                .map(|p| {
                    Properties::new(p)
                        .map(Box::new)
                        .map_err(|e| format!("exclude: {e}"))
                })
                .transpose()?,
        })
    }

    /// Whether the processor works on this span.
    pub fn applies(&self, resource: &Resource, scope: &Scope, span: &Span) -> bool {
        self.include
            .as_ref()
            .is_none_or(|p| p.matches(resource, scope, span))
            && !self
                .exclude
                .as_ref()
                .is_some_and(|p| p.matches(resource, scope, span))
    }
}

enum Pattern {
    Strict(String),
    Regexp(Regex),
}

impl Pattern {
    fn new(regexp: bool, text: &str) -> Result<Self, String> {
        if regexp {
            Regex::new(text)
                .map(Pattern::Regexp)
                .map_err(|e| format!("pattern {text:?}: {e}"))
        } else {
            Ok(Pattern::Strict(text.to_owned()))
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Strict(s) => s == text,
            Pattern::Regexp(re) => re.is_match(text),
        }
    }
}

enum ValueTest {
    Present,
    Equal(AnyValue),
    Regexp(Regex),
}

struct Properties {
    services: Vec<Pattern>,
    span_names: Vec<Pattern>,
    span_kinds: Vec<Pattern>,
    attributes: Vec<(String, ValueTest)>,
    resources: Vec<(String, ValueTest)>,
    libraries: Vec<(Pattern, Option<Pattern>)>,
}

impl Properties {
    fn new(p: &MatchProperties) -> Result<Self, String> {
        let regexp = match p.match_type.as_deref() {
            Some("strict") => false,
            Some("regexp") => true,
            Some(other) => return Err(format!("match_type {other:?}: use strict or regexp")),
            None => return Err("match_type must be set (strict or regexp)".into()),
        };
        let patterns = |list: &[String]| {
            list.iter()
                .map(|t| Pattern::new(regexp, t))
                .collect::<Result<Vec<_>, _>>()
        };
        let tests = |list: &[MatchAttribute]| {
            list.iter()
                .map(|a| Ok((a.key.clone(), value_test(regexp, a)?)))
                .collect::<Result<Vec<_>, String>>()
        };
        Ok(Self {
            services: patterns(&p.services)?,
            span_names: patterns(&p.span_names)?,
            span_kinds: patterns(&p.span_kinds)?,
            attributes: tests(&p.attributes)?,
            resources: tests(&p.resources)?,
            libraries: p
                .libraries
                .iter()
                .map(|l| {
                    Ok((
                        Pattern::new(regexp, &l.name)?,
                        l.version
                            .as_deref()
                            .map(|v| Pattern::new(regexp, v))
                            .transpose()?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        })
    }

    fn matches(&self, resource: &Resource, scope: &Scope, span: &Span) -> bool {
        let any = |patterns: &[Pattern], text: &str| {
            patterns.is_empty() || patterns.iter().any(|p| p.matches(text))
        };
        let service = match resource
            .attributes
            .iter()
            .find(|kv| kv.key == "service.name")
        {
            Some(KeyValue {
                value: AnyValue::String(s),
                ..
            }) => s.as_str(),
            _ => "",
        };
        any(&self.services, service)
            && any(&self.span_names, &span.name)
            && any(&self.span_kinds, kind_name(span.kind))
            && self
                .attributes
                .iter()
                .all(|(k, t)| test(&span.attributes, k, t))
            && self
                .resources
                .iter()
                .all(|(k, t)| test(&resource.attributes, k, t))
            && (self.libraries.is_empty()
                || self.libraries.iter().any(|(name, version)| {
                    name.matches(&scope.name)
                        && version.as_ref().is_none_or(|v| v.matches(&scope.version))
                }))
    }
}

fn value_test(regexp: bool, a: &MatchAttribute) -> Result<ValueTest, String> {
    use serde_yaml::Value as Y;
    let Some(v) = &a.value else {
        return Ok(ValueTest::Present);
    };
    Ok(match (regexp, v) {
        (true, Y::String(s)) => ValueTest::Regexp(
            Regex::new(s).map_err(|e| format!("attribute {}: pattern {s:?}: {e}", a.key))?,
        ),
        (true, _) => {
            return Err(format!(
                "attribute {}: a regexp match takes a string value",
                a.key
            ))
        }
        (false, Y::String(s)) => ValueTest::Equal(AnyValue::String(s.clone())),
        (false, Y::Bool(b)) => ValueTest::Equal(AnyValue::Bool(*b)),
        (false, Y::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => ValueTest::Equal(AnyValue::Int(i)),
            (None, Some(f)) => ValueTest::Equal(AnyValue::Double(f)),
            _ => return Err(format!("attribute {}: {n} is not a number", a.key)),
        },
        (false, other) => {
            return Err(format!(
                "attribute {}: {other:?} is not a string, number or boolean",
                a.key
            ))
        }
    })
}

fn test(attrs: &[KeyValue], key: &str, t: &ValueTest) -> bool {
    let Some(v) = attrs.iter().find(|kv| kv.key == key).map(|kv| &kv.value) else {
        return false;
    };
    match t {
        ValueTest::Present => true,
        ValueTest::Equal(want) => v == want,
        ValueTest::Regexp(re) => re.is_match(&v.to_string()),
    }
}

/// How the OTel Collector names kinds when it matches them.
fn kind_name(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
        SpanKind::Internal => "SPAN_KIND_INTERNAL",
        SpanKind::Server => "SPAN_KIND_SERVER",
        SpanKind::Client => "SPAN_KIND_CLIENT",
        SpanKind::Producer => "SPAN_KIND_PRODUCER",
        SpanKind::Consumer => "SPAN_KIND_CONSUMER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(yaml: &str) -> MatchProperties {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn sample() -> (Resource, Scope, Span) {
        let resource = Resource {
            attributes: vec![
                KeyValue::new("service.name", "checkout"),
                KeyValue::new("k8s.namespace.name", "prod"),
            ],
            ..Default::default()
        };
        let scope = Scope {
            name: "io.opentelemetry.http".into(),
            version: "1.2.3".into(),
            ..Default::default()
        };
        let span = Span {
            name: "GET /api/v1/users".into(),
            kind: SpanKind::Server,
            attributes: vec![
                KeyValue::new("http.status_code", AnyValue::Int(200)),
                KeyValue::new("http.route", "/api/v1/users"),
            ],
            ..Default::default()
        };
        (resource, scope, span)
    }

    fn matches(yaml: &str) -> bool {
        let (r, sc, sp) = sample();
        let m =
            SpanMatcher::new(Some(&props(yaml)), None).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        m.applies(&r, &sc, &sp)
    }

    #[test]
    fn properties_match_as_filterspan_does() {
        for (yaml, want) in [
            ("match_type: strict\nservices: [checkout]", true),
            ("match_type: strict\nservices: [check]", false),
            ("match_type: regexp\nservices: [check]", true),
            ("match_type: regexp\nservices: ['^check$']", false),
            (
                "match_type: strict\nspan_names: [other, 'GET /api/v1/users']",
                true,
            ),
            ("match_type: strict\nspan_kinds: [SPAN_KIND_SERVER]", true),
            ("match_type: strict\nspan_kinds: [SPAN_KIND_CLIENT]", false),
            (
                "match_type: strict\nattributes: [{key: http.status_code, value: 200}]",
                true,
            ),
            (
                "match_type: strict\nattributes: [{key: http.status_code, value: '200'}]",
                false,
            ),
            (
                "match_type: strict\nattributes: [{key: http.status_code}]",
                true,
            ),
            ("match_type: strict\nattributes: [{key: missing}]", false),
            (
                "match_type: regexp\nattributes: [{key: http.route, value: '^/api/'}]",
                true,
            ),
            (
                "match_type: regexp\nattributes: [{key: http.status_code, value: '^2'}]",
                true,
            ),
            (
                "match_type: strict\nresources: [{key: k8s.namespace.name, value: prod}]",
                true,
            ),
            (
                "match_type: strict\nlibraries: [{name: io.opentelemetry.http, version: 1.2.3}]",
                true,
            ),
            (
                "match_type: strict\nlibraries: [{name: io.opentelemetry.http, version: '2'}]",
                false,
            ),
            (
                "match_type: strict\nservices: [checkout]\nspan_kinds: [SPAN_KIND_CLIENT]",
                false,
            ),
        ] {
            assert_eq!(matches(yaml), want, "{yaml}");
        }
        let (r, sc, sp) = sample();
        let both = SpanMatcher::new(
            Some(&props("match_type: strict\nservices: [checkout]")),
            Some(&props("match_type: regexp\nspan_names: ['^GET']")),
        )
        .unwrap();
        assert!(!both.applies(&r, &sc, &sp), "exclude wins");
        assert!(SpanMatcher::default().applies(&r, &sc, &sp));
    }

    #[test]
    fn what_cannot_be_compared_is_named() {
        for (yaml, named) in [
            ("services: [a]", "match_type must be set"),
            ("match_type: glob", "use strict or regexp"),
            ("match_type: regexp\nspan_names: ['(']", "pattern \"(\""),
            (
                "match_type: regexp\nattributes: [{key: a, value: 3}]",
                "takes a string value",
            ),
            (
                "match_type: strict\nattributes: [{key: a, value: [1]}]",
                "not a string, number or boolean",
            ),
        ] {
            let e = SpanMatcher::new(Some(&props(yaml)), None).err().unwrap();
            assert!(e.contains(named), "{yaml}: {e}");
        }
    }
}
