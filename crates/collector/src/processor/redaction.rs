//! `redaction`: keeps only allowed attribute keys and masks values that match blocked patterns,
//! on every resource, scope, span and span event, as the OTel Collector's redaction processor
//! does (its `url_sanitization`, `db_sanitizer` and hashing are not built and are refused by
//! name). Per attribute, in this order: an ignored key is left alone; a key not allowed is
//! removed; a value matching `allowed_values` is kept; a key matching `blocked_key_patterns`
//! has its whole value masked; otherwise each `blocked_values` match is masked. `summary`
//! (`info`: counts; `debug`: counts and the keys) records what was done in `redaction.*`
//! attributes, merged with what an earlier redaction processor recorded.

use std::collections::HashSet;

use model::{AnyValue, KeyValue, TraceBatch};
use regex::Regex;

use crate::config::RedactionProcessor;

/// What replaces a masked value or match.
const MASK: &str = "****";

/// The attributes a summary writes; always allowed, so a second redaction keeps them.
const SUMMARY_KEYS: [&str; 7] = [
    "redaction.redacted.keys",
    "redaction.redacted.count",
    "redaction.masked.keys",
    "redaction.masked.count",
    "redaction.allowed.keys",
    "redaction.allowed.count",
    "redaction.ignored.count",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Summary {
    Silent,
    Info,
    Debug,
}

pub struct Redaction {
    allow_all: bool,
    allowed: HashSet<String>,
    ignored: HashSet<String>,
    ignored_patterns: Vec<Regex>,
    blocked_values: Vec<Regex>,
    blocked_keys: Vec<Regex>,
    allowed_values: Vec<Regex>,
    summary: Summary,
    all_types: bool,
}

impl Redaction {
    pub fn new(cfg: &RedactionProcessor) -> Result<Self, String> {
        if cfg.hash_function.as_deref().is_some_and(|h| !h.is_empty()) || cfg.hmac_key.is_some() {
            return Err("hash_function is not built: matches are masked as ****".into());
        }
        if cfg.url_sanitization.is_some() || cfg.db_sanitizer.is_some() {
            return Err("url_sanitization and db_sanitizer are not built".into());
        }
        let summary = match cfg.summary.as_deref() {
            None | Some("silent") | Some("") => Summary::Silent,
            Some("info") => Summary::Info,
            Some("debug") => Summary::Debug,
            Some(other) => return Err(format!("summary {other:?}: use debug, info or silent")),
        };
        let patterns = |field: &str, list: &[String]| {
            list.iter()
                .map(|p| Regex::new(p).map_err(|e| format!("{field} {p:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()
        };
        let mut allowed: HashSet<String> = cfg.allowed_keys.iter().cloned().collect();
        allowed.extend(SUMMARY_KEYS.iter().map(|k| k.to_string()));
        Ok(Self {
            allow_all: cfg.allow_all_keys,
            allowed,
            ignored: cfg.ignored_keys.iter().cloned().collect(),
            ignored_patterns: patterns("ignored_key_patterns", &cfg.ignored_key_patterns)?,
            blocked_values: patterns("blocked_values", &cfg.blocked_values)?,
            blocked_keys: patterns("blocked_key_patterns", &cfg.blocked_key_patterns)?,
            allowed_values: patterns("allowed_values", &cfg.allowed_values)?,
            summary,
            all_types: cfg.redact_all_types,
        })
    }

    pub fn apply(&self, batch: &mut TraceBatch) {
        for rs in &mut batch.resource_spans {
            self.attributes(&mut rs.resource.attributes);
            for ss in &mut rs.scope_spans {
                self.attributes(&mut ss.scope.attributes);
                for span in &mut ss.spans {
                    self.attributes(&mut span.attributes);
                    for event in &mut span.events {
                        self.attributes(&mut event.attributes);
                    }
                }
            }
        }
    }

    fn attributes(&self, attrs: &mut Vec<KeyValue>) {
        let (mut redacted, mut masked, mut allowed, mut ignored) =
            (Vec::new(), Vec::new(), Vec::new(), 0i64);
        for kv in attrs.iter_mut() {
            let key = kv.key.as_str();
            if self.ignored.contains(key) || self.ignored_patterns.iter().any(|p| p.is_match(key)) {
                ignored += 1;
                continue;
            }
            if !self.allow_all && !self.allowed.contains(key) {
                redacted.push(key.to_owned());
                continue;
            }
            let text = match &kv.value {
                AnyValue::String(s) => s.clone(),
                other if self.all_types => other.to_string(),
                _ => String::new(),
            };
            if self.allowed_values.iter().any(|p| p.is_match(&text)) {
                allowed.push(key.to_owned());
                continue;
            }
            if self.blocked_keys.iter().any(|p| p.is_match(key)) {
                masked.push(key.to_owned());
                kv.value = AnyValue::String(MASK.into());
                continue;
            }
            let mut out = text.clone();
            for p in &self.blocked_values {
                if p.is_match(&out) {
                    out = p.replace_all(&out, MASK).into_owned();
                }
            }
            if out != text {
                masked.push(key.to_owned());
                kv.value = AnyValue::String(out);
            }
        }
        attrs.retain(|kv| !redacted.contains(&kv.key));
        self.note(
            attrs,
            redacted,
            "redaction.redacted.keys",
            "redaction.redacted.count",
        );
        self.note(
            attrs,
            masked,
            "redaction.masked.keys",
            "redaction.masked.count",
        );
        self.note(
            attrs,
            allowed,
            "redaction.allowed.keys",
            "redaction.allowed.count",
        );
        if ignored > 0 && self.summary != Summary::Silent {
            add_count(attrs, "redaction.ignored.count", ignored);
        }
    }

    /// The summary of one kind of change, merged with an earlier one.
    fn note(
        &self,
        attrs: &mut Vec<KeyValue>,
        mut keys: Vec<String>,
        keys_key: &str,
        count_key: &str,
    ) {
        if keys.is_empty() || self.summary == Summary::Silent {
            return;
        }
        let count = keys.len() as i64;
        if self.summary == Summary::Debug {
            if let Some(AnyValue::String(earlier)) = attrs
                .iter()
                .find(|kv| kv.key == keys_key)
                .map(|kv| &kv.value)
            {
                keys.extend(
                    earlier
                        .split(',')
                        .filter(|k| !k.is_empty())
                        .map(str::to_owned),
                );
            }
            keys.sort();
            put(attrs, keys_key, AnyValue::String(keys.join(",")));
        }
        add_count(attrs, count_key, count);
    }
}

fn add_count(attrs: &mut Vec<KeyValue>, key: &str, n: i64) {
    let earlier = match attrs.iter().find(|kv| kv.key == key).map(|kv| &kv.value) {
        Some(AnyValue::Int(i)) => *i,
        _ => 0,
    };
    put(attrs, key, AnyValue::Int(earlier + n));
}

fn put(attrs: &mut Vec<KeyValue>, key: &str, value: AnyValue) {
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = value,
        None => attrs.push(KeyValue::new(key, value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(yaml: &str, attrs: Vec<KeyValue>) -> Vec<KeyValue> {
        let cfg: RedactionProcessor = serde_yaml::from_str(yaml).unwrap();
        let r = Redaction::new(&cfg).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        let mut attrs = attrs;
        r.attributes(&mut attrs);
        attrs
    }

    fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
        attrs.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
    }

    fn sample() -> Vec<KeyValue> {
        vec![
            KeyValue::new("id", AnyValue::Int(5)),
            KeyValue::new("name", "card 4111111111111111 on file"),
            KeyValue::new("credit_card", "4111111111111111"),
            KeyValue::new("safe_attribute", "4111111111111112"),
            KeyValue::new("api.token", "abc"),
            KeyValue::new("note", "public"),
        ]
    }

    #[test]
    fn keys_not_allowed_go_blocked_values_are_masked_with_a_summary() {
        let out = redact(
            "allowed_keys: [id, name, api.token, note]\nignored_keys: [safe_attribute]\n\
             blocked_values: ['4[0-9]{12}(?:[0-9]{3})?']\nblocked_key_patterns: ['.*token.*']\n\
             allowed_values: ['^public$']\nsummary: debug",
            sample(),
        );
        assert_eq!(get(&out, "credit_card"), None, "not allowed: removed");
        assert_eq!(
            get(&out, "safe_attribute"),
            Some(&AnyValue::String("4111111111111112".into()))
        );
        assert_eq!(
            get(&out, "name"),
            Some(&AnyValue::String("card **** on file".into()))
        );
        assert_eq!(
            get(&out, "api.token"),
            Some(&AnyValue::String("****".into()))
        );
        assert_eq!(get(&out, "note"), Some(&AnyValue::String("public".into())));
        assert_eq!(
            get(&out, "id"),
            Some(&AnyValue::Int(5)),
            "numbers are not looked at"
        );
        assert_eq!(
            get(&out, "redaction.redacted.keys"),
            Some(&AnyValue::String("credit_card".into()))
        );
        assert_eq!(
            get(&out, "redaction.redacted.count"),
            Some(&AnyValue::Int(1))
        );
        assert_eq!(
            get(&out, "redaction.masked.keys"),
            Some(&AnyValue::String("api.token,name".into()))
        );
        assert_eq!(get(&out, "redaction.masked.count"), Some(&AnyValue::Int(2)));
        assert_eq!(
            get(&out, "redaction.allowed.keys"),
            Some(&AnyValue::String("note".into()))
        );
        assert_eq!(
            get(&out, "redaction.ignored.count"),
            Some(&AnyValue::Int(1))
        );

        // A second pass keeps the first one's summary and adds to it.
        let again = redact("allowed_keys: [id]\nsummary: debug", out.clone());
        assert_eq!(
            get(&again, "redaction.redacted.keys"),
            Some(&AnyValue::String(
                "api.token,credit_card,name,note,safe_attribute".into()
            ))
        );
        assert_eq!(
            get(&again, "redaction.redacted.count"),
            Some(&AnyValue::Int(5))
        );
    }

    #[test]
    fn allow_all_keys_info_summary_and_all_types() {
        let out = redact(
            "allow_all_keys: true\nblocked_values: ['^5$']\nsummary: info\nredact_all_types: true",
            sample(),
        );
        assert_eq!(out.len(), 7, "all kept, one count added: {out:?}");
        assert_eq!(get(&out, "id"), Some(&AnyValue::String("****".into())));
        assert_eq!(get(&out, "redaction.masked.count"), Some(&AnyValue::Int(1)));
        assert_eq!(
            get(&out, "redaction.masked.keys"),
            None,
            "info: counts only"
        );
        // Silent (the default) adds nothing; an empty allow list fails closed.
        let out = redact("{}", sample());
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn what_is_not_built_is_named() {
        for (yaml, named) in [
            ("hash_function: sha1", "hash_function is not built"),
            ("url_sanitization: {enabled: true}", "url_sanitization"),
            ("summary: loud", "use debug, info or silent"),
            ("blocked_values: ['(']", "blocked_values \"(\""),
        ] {
            let cfg: RedactionProcessor = serde_yaml::from_str(yaml).unwrap();
            let e = Redaction::new(&cfg)
                .err()
                .unwrap_or_else(|| panic!("{yaml} accepted"));
            assert!(e.contains(named), "{yaml}: {e}");
        }
    }
}
