//! Connectors (the OTel Collector's `connectors` section): the exporter end of one pipeline and
//! the receiver end of others. `forward` hands on whatever it is given (pipelines chained: one
//! shared front half, several back halves); `routing` splits a batch by OTTL conditions, each
//! resource's spans (`context: resource`, the default) or each span (`context: span`) going to
//! the pipelines of the first route that holds (every route that holds with `match_once:
//! false`), the rest to `default_pipelines`, as the routing connector does for multi-tenant
//! and per-environment pipelines.

use std::sync::Arc;

use model::{ResourceSpans, ScopeSpans, Span, TraceBatch};

use crate::config::{Connector as Config, RoutingConnector};
use crate::consumer::{BoxFuture, ConsumeError, Consumer, Fanout};
use crate::processor::ottl::{Condition, Context, ErrorMode, SpanContext};

/// The connector `name` configured as `config`, in front of `outputs` (the heads of the
/// pipelines that receive from it, by pipeline id).
pub fn build(
    name: &str,
    config: &Config,
    outputs: &[(String, Arc<dyn Consumer>)],
) -> Result<Arc<dyn Consumer>, String> {
    let fan = |pipelines: &[String]| -> Arc<dyn Consumer> {
        Arc::new(Fanout(
            outputs
                .iter()
                .filter(|(p, _)| pipelines.contains(p))
                .map(|(_, c)| c.clone())
                .collect(),
        ))
    };
    match config {
        Config::Forward(_) => Ok(Arc::new(Fanout(
            outputs.iter().map(|(_, c)| c.clone()).collect(),
        ))),
        Config::Routing(r) => Ok(Arc::new(Routing::new(name, r, fan)?)),
    }
}

struct Routing {
    name: String,
    routes: Vec<Route>,
    default: Option<Arc<dyn Consumer>>,
    mode: ErrorMode,
    match_once: bool,
}

struct Route {
    context: Context,
    condition: Condition,
    to: Arc<dyn Consumer>,
}

impl Routing {
    fn new(
        name: &str,
        r: &RoutingConnector,
        fan: impl Fn(&[String]) -> Arc<dyn Consumer>,
    ) -> Result<Self, String> {
        let routes = r
            .table
            .iter()
            .map(|route| {
                let context = match route.context.as_deref() {
                    Some("span") => Context::Span,
                    _ => Context::Resource,
                };
                let text = route.condition_text()?;
                Ok(Route {
                    context,
                    condition: Condition::parse_in(text, context)?,
                    to: fan(&route.pipelines),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Routing {
            name: name.to_owned(),
            routes,
            default: (!r.default_pipelines.is_empty()).then(|| fan(&r.default_pipelines)),
            mode: ErrorMode::parse(r.error_mode.as_deref())?,
            match_once: r.match_once.unwrap_or(true),
        })
    }

    /// Splits `batch`: one batch per route, then the default's (spans no route took).
    fn split(&self, batch: TraceBatch) -> Result<Vec<TraceBatch>, String> {
        let n = self.routes.len();
        let mut out: Vec<TraceBatch> = (0..=n).map(|_| TraceBatch::default()).collect();
        let name = format!("connectors.{}", self.name);
        for rs in batch.resource_spans {
            // Resource conditions once per resource.
            let scope = model::Scope::default();
            let on_resource = SpanContext {
                resource: &rs.resource,
                scope: &scope,
                span: None,
            };
            let resource_holds: Vec<Option<bool>> = self
                .routes
                .iter()
                .map(|r| match r.context {
                    Context::Resource => self
                        .mode
                        .handle(&name, r.condition.eval(&on_resource))
                        .map(|h| Some(h.unwrap_or(false))),
                    Context::Span => Ok(None),
                })
                .collect::<Result<_, _>>()?;
            // Each span's destinations, grouped back under its resource and scope.
            let mut parts: Vec<ResourceSpans> = (0..=n)
                .map(|_| ResourceSpans {
                    resource: rs.resource.clone(),
                    schema_url: rs.schema_url.clone(),
                    scope_spans: Vec::new(),
                })
                .collect();
            for ss in rs.scope_spans {
                let mut scoped: Vec<Vec<Span>> = (0..=n).map(|_| Vec::new()).collect();
                for span in ss.spans {
                    let mut to = Vec::new();
                    for (i, r) in self.routes.iter().enumerate() {
                        let holds = match resource_holds[i] {
                            Some(h) => h,
                            None => {
                                let cx = SpanContext {
                                    resource: &rs.resource,
                                    scope: &ss.scope,
                                    span: Some(&span),
                                };
                                self.mode
                                    .handle(&name, r.condition.eval(&cx))?
                                    .unwrap_or(false)
                            }
                        };
                        if holds {
                            to.push(i);
                            if self.match_once {
                                break;
                            }
                        }
                    }
                    if to.is_empty() {
                        to.push(n);
                    }
                    let last = to.len() - 1;
                    let mut span = Some(span);
                    for (k, &i) in to.iter().enumerate() {
                        let s = if k == last { span.take() } else { span.clone() };
                        scoped[i].extend(s);
                    }
                }
                for (i, spans) in scoped.into_iter().enumerate() {
                    if !spans.is_empty() {
                        parts[i].scope_spans.push(ScopeSpans {
                            scope: ss.scope.clone(),
                            schema_url: ss.schema_url.clone(),
                            spans,
                        });
                    }
                }
            }
            for (i, part) in parts.into_iter().enumerate() {
                if !part.scope_spans.is_empty() {
                    out[i].resource_spans.push(part);
                }
            }
        }
        Ok(out)
    }
}

impl Consumer for Routing {
    fn consume(&self, batch: TraceBatch) -> BoxFuture<'_, Result<(), ConsumeError>> {
        Box::pin(async move {
            let parts = self
                .split(batch)
                .map_err(|e| ConsumeError::Permanent(format!("connectors.{}: {e}", self.name)))?;
            let mut first_error = None;
            for (i, part) in parts.into_iter().enumerate() {
                if part.resource_spans.is_empty() {
                    continue;
                }
                let to = match self.routes.get(i) {
                    Some(r) => Some(&r.to),
                    // Spans no route took, with no default: dropped, as the collector does.
                    None => self.default.as_ref(),
                };
                if let Some(to) = to {
                    if let Err(e) = to.consume(part).await {
                        first_error.get_or_insert(e);
                    }
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{AnyValue, KeyValue, Resource};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Keep(Mutex<Vec<TraceBatch>>);

    impl Consumer for Keep {
        fn consume(&self, batch: TraceBatch) -> BoxFuture<'_, Result<(), ConsumeError>> {
            self.0.lock().unwrap().push(batch);
            Box::pin(async { Ok(()) })
        }
    }

    impl Keep {
        fn spans(&self) -> Vec<String> {
            let mut names: Vec<String> = self
                .0
                .lock()
                .unwrap()
                .iter()
                .flat_map(|b| &b.resource_spans)
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|s| s.name.clone())
                .collect();
            names.sort();
            names
        }
    }

    fn batch() -> TraceBatch {
        let resource = |tenant: &str| Resource {
            attributes: vec![KeyValue::new("tenant", AnyValue::from(tenant))],
            ..Default::default()
        };
        let span = |name: &str, env: &str| Span {
            name: name.into(),
            attributes: vec![KeyValue::new("env", AnyValue::from(env))],
            ..Default::default()
        };
        let rs = |tenant: &str, spans: Vec<Span>| ResourceSpans {
            resource: resource(tenant),
            schema_url: String::new(),
            scope_spans: vec![ScopeSpans {
                scope: Default::default(),
                schema_url: String::new(),
                spans,
            }],
        };
        TraceBatch {
            resource_spans: vec![
                rs("acme", vec![span("a1", "prod"), span("a2", "dev")]),
                rs("globex", vec![span("g1", "prod"), span("g2", "dev")]),
            ],
        }
    }

    fn routing(yaml: &str) -> (Routing, Arc<Keep>, Arc<Keep>, Arc<Keep>) {
        let r: RoutingConnector = serde_yaml::from_str(yaml).unwrap();
        let (a, b, d) = (
            Arc::new(Keep::default()),
            Arc::new(Keep::default()),
            Arc::new(Keep::default()),
        );
        let outputs: Vec<(String, Arc<dyn Consumer>)> = vec![
            ("traces/a".into(), a.clone()),
            ("traces/b".into(), b.clone()),
            ("traces/default".into(), d.clone()),
        ];
        let fan = |ps: &[String]| -> Arc<dyn Consumer> {
            Arc::new(Fanout(
                outputs
                    .iter()
                    .filter(|(p, _)| ps.contains(p))
                    .map(|(_, c)| c.clone())
                    .collect(),
            ))
        };
        (Routing::new("routing", &r, fan).unwrap(), a, b, d)
    }

    #[tokio::test]
    async fn resources_and_spans_go_to_the_first_route_that_holds_else_the_default() {
        let (r, a, b, d) = routing(
            r#"
default_pipelines: [traces/default]
table:
  - { condition: 'attributes["tenant"] == "acme"', pipelines: [traces/a] }
  - { context: span, statement: 'route() where attributes["env"] == "prod"', pipelines: [traces/b] }
"#,
        );
        r.consume(batch()).await.unwrap();
        assert_eq!(a.spans(), ["a1", "a2"], "the acme resource, whole");
        assert_eq!(b.spans(), ["g1"], "globex's prod span");
        assert_eq!(d.spans(), ["g2"], "what no route took");
        // Resource kept with its spans.
        let kept = b.0.lock().unwrap();
        assert_eq!(
            kept[0].resource_spans[0].resource.attributes[0].value,
            AnyValue::from("globex")
        );
    }

    #[tokio::test]
    async fn match_once_false_sends_to_every_route_and_no_default_drops() {
        let (r, a, b, d) = routing(
            r#"
match_once: false
table:
  - { condition: 'attributes["tenant"] == "acme"', pipelines: [traces/a] }
  - { context: span, condition: 'attributes["env"] == "prod"', pipelines: [traces/b, traces/a] }
"#,
        );
        r.consume(batch()).await.unwrap();
        assert_eq!(a.spans(), ["a1", "a1", "a2", "g1"]);
        assert_eq!(b.spans(), ["a1", "g1"]);
        assert!(d.spans().is_empty());
    }

    #[tokio::test]
    async fn a_failing_condition_follows_error_mode() {
        let table = r#"
  - { context: span, condition: 'Substring(attributes["env"], 0, 10) == "x"', pipelines: [traces/a] }
"#;
        let (r, ..) = routing(&format!("table:{table}"));
        let e = r.consume(batch()).await.unwrap_err();
        assert!(matches!(e, ConsumeError::Permanent(_)), "{e:?}");
        let (r, a, _, d) = routing(&format!(
            "error_mode: ignore\ndefault_pipelines: [traces/default]\ntable:{table}"
        ));
        r.consume(batch()).await.unwrap();
        assert!(a.spans().is_empty());
        assert_eq!(d.spans().len(), 4);
    }
}
