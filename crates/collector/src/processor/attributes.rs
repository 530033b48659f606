//! `attributes` (span attributes) and `resource` (resource attributes) processors: the OTel
//! Collector's insert / update / upsert / delete / hash actions, applied in order.
//!
//! `hash` replaces a value with the hex SHA-256 of its bytes (strings as UTF-8, ints and doubles
//! as 8 little-endian bytes, booleans as one byte), as the OTel Collector does.

use model::{AnyValue, KeyValue, TraceBatch};
use sha2::{Digest, Sha256};

use crate::config::{Action, ActionKind};

#[derive(Clone, Debug)]
enum Source {
    Value(AnyValue),
    Attribute(String),
    None,
}

#[derive(Clone, Debug)]
struct Step {
    key: String,
    kind: ActionKind,
    source: Source,
}

/// A list of actions ready to run against attribute lists.
#[derive(Clone, Debug)]
pub struct Actions(Vec<Step>);

impl Actions {
    pub fn new(actions: &[Action]) -> Self {
        Self(
            actions
                .iter()
                .map(|a| Step {
                    key: a.key.clone(),
                    kind: a.action,
                    source: match (&a.value, &a.from_attribute) {
                        (Some(v), _) => Source::Value(yaml_to_value(v)),
                        (_, Some(f)) => Source::Attribute(f.clone()),
                        _ => Source::None,
                    },
                })
                .collect(),
        )
    }

    /// Applies every action, in order, to one attribute list.
    pub fn apply(&self, attrs: &mut Vec<KeyValue>) {
        for step in &self.0 {
            let pos = attrs.iter().position(|kv| kv.key == step.key);
            let value = || match &step.source {
                Source::Value(v) => Some(v.clone()),
                Source::Attribute(from) => attrs
                    .iter()
                    .find(|kv| kv.key == *from)
                    .map(|kv| kv.value.clone()),
                Source::None => None,
            };
            match (step.kind, pos) {
                (ActionKind::Insert, None) | (ActionKind::Upsert, None) => {
                    if let Some(v) = value() {
                        attrs.push(KeyValue::new(step.key.clone(), v));
                    }
                }
                (ActionKind::Update, Some(i)) | (ActionKind::Upsert, Some(i)) => {
                    if let Some(v) = value() {
                        attrs[i].value = v;
                    }
                }
                (ActionKind::Delete, Some(i)) => {
                    attrs.remove(i);
                }
                (ActionKind::Hash, Some(i)) => {
                    if let Some(h) = hash(&attrs[i].value) {
                        attrs[i].value = AnyValue::String(h);
                    }
                }
                _ => {}
            }
        }
    }

    /// The `attributes` processor: every span's attributes.
    pub fn apply_to_spans(&self, batch: &mut TraceBatch, only: &super::matching::SpanMatcher) {
        for rs in &mut batch.resource_spans {
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    if only.applies(&rs.resource, &ss.scope, span) {
                        self.apply(&mut span.attributes);
                    }
                }
            }
        }
    }

    /// The `resource` processor: every resource's attributes.
    pub fn apply_to_resources(&self, batch: &mut TraceBatch) {
        for rs in &mut batch.resource_spans {
            self.apply(&mut rs.resource.attributes);
        }
    }
}

fn hash(value: &AnyValue) -> Option<String> {
    let bytes: Vec<u8> = match value {
        AnyValue::String(s) => s.as_bytes().to_vec(),
        AnyValue::Bool(b) => vec![u8::from(*b)],
        AnyValue::Int(i) => i.to_le_bytes().to_vec(),
        AnyValue::Double(d) => d.to_bits().to_le_bytes().to_vec(),
        _ => return None,
    };
    Some(hex::encode(Sha256::digest(&bytes)))
}

fn yaml_to_value(v: &serde_yaml::Value) -> AnyValue {
    match v {
        serde_yaml::Value::Bool(b) => AnyValue::Bool(*b),
        serde_yaml::Value::Number(n) => match n.as_i64() {
            Some(i) => AnyValue::Int(i),
            None => AnyValue::Double(n.as_f64().unwrap_or_default()),
        },
        serde_yaml::Value::String(s) => AnyValue::String(s.clone()),
        other => AnyValue::String(
            serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(key: &str, kind: ActionKind, value: Option<&str>, from: Option<&str>) -> Action {
        Action {
            key: key.into(),
            action: kind,
            value: value.map(|v| serde_yaml::from_str(v).unwrap()),
            from_attribute: from.map(Into::into),
        }
    }

    #[test]
    fn actions_follow_otel_semantics() {
        let actions = Actions::new(&[
            action("datacenter", ActionKind::Insert, Some("eu-1"), None),
            action("env", ActionKind::Insert, Some("ignored"), None),
            action("missing", ActionKind::Update, Some("x"), None),
            action("count", ActionKind::Upsert, Some("3"), None),
            action("copy", ActionKind::Upsert, None, Some("env")),
            action("secret", ActionKind::Delete, None, None),
            action("email", ActionKind::Hash, None, None),
        ]);
        let mut attrs = vec![
            KeyValue::new("env", "prod"),
            KeyValue::new("secret", "s3cr3t"),
            KeyValue::new("email", "a@b.c"),
        ];
        actions.apply(&mut attrs);
        let get = |k: &str| {
            attrs
                .iter()
                .find(|kv| kv.key == k)
                .map(|kv| kv.value.clone())
        };
        assert_eq!(get("datacenter"), Some(AnyValue::from("eu-1")));
        assert_eq!(get("env"), Some(AnyValue::from("prod")));
        assert_eq!(get("missing"), None);
        assert_eq!(get("count"), Some(AnyValue::Int(3)));
        assert_eq!(get("copy"), Some(AnyValue::from("prod")));
        assert_eq!(get("secret"), None);
        // sha256("a@b.c")
        assert_eq!(
            get("email"),
            Some(AnyValue::from(hex::encode(Sha256::digest(b"a@b.c"))))
        );
    }
}
