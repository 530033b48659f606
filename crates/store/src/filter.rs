//! What a search asks of one span, in a form both the head and the block scanner apply.
//!
//! A span matches a [`TraceQuery`] when it satisfies every condition at once (Jaeger's rule).
//! Tags match span attributes, resource attributes or the attributes of any event, through
//! [`AnyValue::matches_text`]. Two tags Jaeger users type also match the span itself:
//! `error=true` matches error spans ([`Span::is_error`]) and `span.kind=server` the kind.

use model::{Event, KeyValue, SpanKind};

use crate::api::TraceQuery;

/// The default number of traces a search returns when the query's limit is 0.
pub(crate) const DEFAULT_LIMIT: usize = 20;

#[derive(Debug, Clone)]
pub(crate) struct SpanFilter {
    pub service: Option<String>,
    pub operation: Option<String>,
    pub tags: Vec<(String, String)>,
    pub min_duration: u64,
    pub max_duration: u64,
    /// Span start bounds, inclusive.
    pub start_min: u64,
    pub start_max: u64,
    /// Spans that ended before this are past retention and invisible.
    pub end_min: u64,
    /// Per tag, substrings a stored JSON text must contain to possibly match.
    pub probes: Vec<TagProbe>,
}

/// A cheap test on attribute JSON text (see `block::json`) before parsing it: the key must
/// appear as an object key, and, where the match is textual, the value's text too.
#[derive(Debug, Clone)]
pub(crate) struct TagProbe {
    key: String,
    value: Option<String>,
}

impl TagProbe {
    pub fn new(key: &str, value: &str) -> Self {
        let mut quoted = String::new();
        crate::block::json::write_str(&mut quoted, key);
        quoted.push(':');
        // Ints print canonically and strings verbatim; bools (any case) and floats (many
        // spellings) match semantically, so they get no value probe.
        let value = if let Ok(i) = value.parse::<i64>() {
            (i.to_string() == value).then(|| value.to_owned())
        } else if value.parse::<f64>().is_ok()
            || value.eq_ignore_ascii_case("true")
            || value.eq_ignore_ascii_case("false")
        {
            None
        } else {
            let mut v = String::new();
            crate::block::json::write_str(&mut v, value);
            Some(v[1..v.len() - 1].to_owned())
        };
        Self { key: quoted, value }
    }

    pub fn may_match(&self, json_text: &str) -> bool {
        json_text.contains(&self.key)
            && self
                .value
                .as_ref()
                .is_none_or(|v| json_text.contains(v.as_str()))
    }
}

impl SpanFilter {
    pub fn new(q: &TraceQuery, retention_cutoff: u64) -> Self {
        let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Self {
            service: q.service.clone().filter(|s| !s.is_empty()),
            operation: q.operation.clone().filter(|s| !s.is_empty()),
            tags: q.tags.clone(),
            min_duration: q.min_duration.map(nanos).unwrap_or(0),
            max_duration: q.max_duration.map(nanos).unwrap_or(u64::MAX),
            start_min: q.start_unix_nano.unwrap_or(0),
            start_max: q.end_unix_nano.unwrap_or(u64::MAX),
            end_min: retention_cutoff,
            probes: q.tags.iter().map(|(k, v)| TagProbe::new(k, v)).collect(),
        }
    }

    /// The checks on plain numbers, done first because they are cheapest.
    pub fn matches_times(&self, start: u64, end: u64) -> bool {
        let duration = end.saturating_sub(start);
        start >= self.start_min
            && start <= self.start_max
            && end >= self.end_min
            && duration >= self.min_duration
            && duration <= self.max_duration
    }
}

/// The tags that name a property of the span rather than an attribute.
pub(crate) fn tag_matches_span(key: &str, value: &str, kind: SpanKind, is_error: bool) -> bool {
    match key {
        "error" => is_error && value.eq_ignore_ascii_case("true"),
        "span.kind" => kind != SpanKind::Unspecified && kind.as_jaeger_str() == value,
        _ => false,
    }
}

pub(crate) fn kv_matches(attrs: &[KeyValue], key: &str, value: &str) -> bool {
    attrs
        .iter()
        .any(|kv| kv.key == key && kv.value.matches_text(value))
}

pub(crate) fn events_match(events: &[Event], key: &str, value: &str) -> bool {
    events.iter().any(|e| kv_matches(&e.attributes, key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_never_reject_a_possible_match() {
        let text = r#"{"http.status_code":500,"msg":"a \"quoted\" word","ok":true,"r":1.5}"#;
        for (k, v, want) in [
            ("http.status_code", "500", true),
            ("http.status_code", "404", false),
            ("http.status_code", "0500", true), // not canonical: no value probe
            ("msg", "a \"quoted\" word", true),
            ("msg", "other", false),
            ("ok", "TRUE", true),
            ("r", "1.50", true),
            ("status_code", "500", false),
        ] {
            assert_eq!(TagProbe::new(k, v).may_match(text), want, "{k}={v}");
        }
    }
}
