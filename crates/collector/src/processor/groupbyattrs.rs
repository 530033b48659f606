//! `groupbyattrs`: the span attributes named in `keys` move to the span's resource (a span with
//! none of them keeps its resource as it was), and the batch is regrouped so that spans with
//! equal resources, then equal scopes, share one `ResourceSpans` and `ScopeSpans`, as the OTel
//! Collector's processor does. With no keys it only compacts: the batches an agent merged from
//! many small requests come out with one group per resource and scope.

use model::{KeyValue, Resource, ResourceSpans, Scope, ScopeSpans, TraceBatch};

pub struct GroupByAttrs {
    keys: Vec<String>,
}

impl GroupByAttrs {
    pub fn new(keys: &[String]) -> Self {
        Self {
            keys: keys.to_vec(),
        }
    }

    pub fn apply(&self, batch: &mut TraceBatch) {
        let old = std::mem::take(&mut batch.resource_spans);
        let mut groups: Vec<ResourceSpans> = Vec::new();
        for rs in old {
            for ss in rs.scope_spans {
                for mut span in ss.spans {
                    let moved: Vec<KeyValue> = if self.keys.is_empty() {
                        Vec::new()
                    } else {
                        let (moved, kept) = std::mem::take(&mut span.attributes)
                            .into_iter()
                            .partition(|kv| self.keys.contains(&kv.key));
                        span.attributes = kept;
                        moved
                    };
                    let resource = with(&rs.resource, moved);
                    let g = match groups.iter().position(|g| same(&g.resource, &resource)) {
                        Some(g) => g,
                        None => {
                            groups.push(ResourceSpans {
                                resource,
                                schema_url: rs.schema_url.clone(),
                                scope_spans: Vec::new(),
                            });
                            groups.len() - 1
                        }
                    };
                    let scopes = &mut groups[g].scope_spans;
                    let s = match scopes.iter().position(|s| same_scope(&s.scope, &ss.scope)) {
                        Some(s) => s,
                        None => {
                            scopes.push(ScopeSpans {
                                scope: ss.scope.clone(),
                                schema_url: ss.schema_url.clone(),
                                spans: Vec::new(),
                            });
                            scopes.len() - 1
                        }
                    };
                    scopes[s].spans.push(span);
                }
            }
        }
        batch.resource_spans = groups;
    }
}

/// `resource` with `moved` set on it (the span's value wins over the resource's own).
fn with(resource: &Resource, moved: Vec<KeyValue>) -> Resource {
    let mut r = resource.clone();
    for kv in moved {
        match r.attributes.iter_mut().find(|a| a.key == kv.key) {
            Some(a) => a.value = kv.value,
            None => r.attributes.push(kv),
        }
    }
    r
}

/// Equal attributes whatever their order.
fn same_attributes(a: &[KeyValue], b: &[KeyValue]) -> bool {
    a.len() == b.len() && a.iter().all(|kv| b.iter().any(|o| o == kv))
}

fn same(a: &Resource, b: &Resource) -> bool {
    a.dropped_attributes_count == b.dropped_attributes_count
        && same_attributes(&a.attributes, &b.attributes)
}

fn same_scope(a: &Scope, b: &Scope) -> bool {
    a.name == b.name && a.version == b.version && same_attributes(&a.attributes, &b.attributes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Span;

    fn rs(service: &str, spans: Vec<Span>) -> ResourceSpans {
        ResourceSpans {
            resource: Resource {
                attributes: vec![KeyValue::new("service.name", service)],
                ..Default::default()
            },
            schema_url: String::new(),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
        }
    }

    fn span(name: &str, host: Option<&str>) -> Span {
        Span {
            name: name.into(),
            attributes: host
                .map(|h| vec![KeyValue::new("host.name", h), KeyValue::new("x", 1i64)])
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    #[test]
    fn keys_move_to_the_resource_and_spans_regroup() {
        let mut batch = TraceBatch {
            resource_spans: vec![
                rs(
                    "api",
                    vec![
                        span("a", Some("h1")),
                        span("b", Some("h2")),
                        span("c", None),
                    ],
                ),
                rs("api", vec![span("d", Some("h1"))]),
            ],
        };
        GroupByAttrs::new(&["host.name".into()]).apply(&mut batch);
        let groups: Vec<(Vec<String>, Vec<String>)> = batch
            .resource_spans
            .iter()
            .map(|g| {
                (
                    g.resource
                        .attributes
                        .iter()
                        .map(|kv| format!("{}={}", kv.key, kv.value))
                        .collect(),
                    g.scope_spans
                        .iter()
                        .flat_map(|s| s.spans.iter().map(|s| s.name.clone()))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            groups,
            vec![
                (
                    vec!["service.name=api".into(), "host.name=h1".into()],
                    vec!["a".into(), "d".into()]
                ),
                (
                    vec!["service.name=api".into(), "host.name=h2".into()],
                    vec!["b".into()]
                ),
                (vec!["service.name=api".into()], vec!["c".into()]),
            ]
        );
        let a = &batch.resource_spans[0].scope_spans[0].spans[0];
        assert!(a.attribute("host.name").is_none(), "moved off the span");
        assert!(a.attribute("x").is_some(), "other attributes stay");
    }

    #[test]
    fn without_keys_it_compacts() {
        let mut batch = TraceBatch {
            resource_spans: vec![
                rs("api", vec![span("a", None)]),
                rs("db", vec![span("b", None)]),
                rs("api", vec![span("c", None)]),
            ],
        };
        GroupByAttrs::new(&[]).apply(&mut batch);
        assert_eq!(batch.resource_spans.len(), 2);
        assert_eq!(batch.resource_spans[0].scope_spans.len(), 1);
        assert_eq!(batch.resource_spans[0].scope_spans[0].spans.len(), 2);
        assert_eq!(batch.span_count(), 3);
    }
}
