//! Batches of spans grouped the OTLP way: resource → scope → spans.

use std::sync::Arc;

use crate::record::SpanRecord;
use crate::span::{Resource, Scope, Span};

/// Spans from one instrumentation scope.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScopeSpans {
    pub scope: Scope,
    pub schema_url: String,
    pub spans: Vec<Span>,
}

/// Spans from one resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceSpans {
    pub resource: Resource,
    pub schema_url: String,
    pub scope_spans: Vec<ScopeSpans>,
}

/// What one export request carries, and the unit receivers hand to the next stage.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceBatch {
    pub resource_spans: Vec<ResourceSpans>,
}

impl TraceBatch {
    pub fn span_count(&self) -> usize {
        self.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.span_count() == 0
    }

    /// Every span with the resource and scope it was reported under.
    pub fn spans(&self) -> impl Iterator<Item = (&Resource, &Scope, &Span)> {
        self.resource_spans.iter().flat_map(|rs| {
            rs.scope_spans
                .iter()
                .flat_map(move |ss| ss.spans.iter().map(move |s| (&rs.resource, &ss.scope, s)))
        })
    }

    /// Flattens into records that share their resource and scope through `Arc`s.
    pub fn into_records(self) -> Vec<SpanRecord> {
        let mut out = Vec::with_capacity(self.span_count());
        for rs in self.resource_spans {
            let resource = Arc::new(rs.resource);
            for ss in rs.scope_spans {
                let scope = Arc::new(ss.scope);
                out.extend(ss.spans.into_iter().map(|span| SpanRecord {
                    resource: Arc::clone(&resource),
                    scope: Arc::clone(&scope),
                    span,
                }));
            }
        }
        out
    }

    /// Regroups records by resource and scope (equal values share a group), keeping span order.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a SpanRecord>) -> Self {
        let mut batch = TraceBatch::default();
        for rec in records {
            let rs_idx = match batch
                .resource_spans
                .iter()
                .position(|rs| rs.resource == *rec.resource)
            {
                Some(i) => i,
                None => {
                    batch.resource_spans.push(ResourceSpans {
                        resource: (*rec.resource).clone(),
                        ..Default::default()
                    });
                    batch.resource_spans.len() - 1
                }
            };
            let rs = &mut batch.resource_spans[rs_idx];
            let ss_idx = match rs.scope_spans.iter().position(|ss| ss.scope == *rec.scope) {
                Some(i) => i,
                None => {
                    rs.scope_spans.push(ScopeSpans {
                        scope: (*rec.scope).clone(),
                        ..Default::default()
                    });
                    rs.scope_spans.len() - 1
                }
            };
            rs.scope_spans[ss_idx].spans.push(rec.span.clone());
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyValue, SpanId, TraceId};

    fn span(n: u64) -> Span {
        Span {
            trace_id: TraceId::from_halves(0, 1),
            span_id: SpanId::from_u64(n),
            name: format!("op{n}"),
            ..Default::default()
        }
    }

    #[test]
    fn records_round_trip_through_grouping() {
        let res = |svc: &str| Resource {
            attributes: vec![KeyValue::new("service.name", svc)],
            ..Default::default()
        };
        let batch = TraceBatch {
            resource_spans: vec![
                ResourceSpans {
                    resource: res("a"),
                    schema_url: String::new(),
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span(1), span(2)],
                        ..Default::default()
                    }],
                },
                ResourceSpans {
                    resource: res("b"),
                    schema_url: String::new(),
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span(3)],
                        ..Default::default()
                    }],
                },
            ],
        };
        assert_eq!(batch.span_count(), 3);
        let services: Vec<_> = batch.spans().map(|(r, _, _)| r.service_name()).collect();
        assert_eq!(services, ["a", "a", "b"]);
        let records = batch.clone().into_records();
        assert!(Arc::ptr_eq(&records[0].resource, &records[1].resource));
        assert_eq!(TraceBatch::from_records(&records), batch);
    }
}
