//! `filter`: drops the spans that match any of its OTTL conditions (`traces.span`), as the OTel
//! Collector's filter processor does; the usual use is keeping health checks and other noise out
//! of the backend. Scopes and resources left without spans go too.

use model::TraceBatch;

use super::ottl::{Condition, SpanContext};

pub struct SpanFilter {
    conditions: Vec<Condition>,
}

impl SpanFilter {
    /// The conditions, each parsed (an error names the one that is not understood).
    pub fn new(conditions: &[String]) -> Result<Self, String> {
        let conditions = conditions
            .iter()
            .enumerate()
            .map(|(n, c)| Condition::parse(c).map_err(|e| format!("traces.span[{n}] {c:?}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self { conditions })
    }

    pub fn apply(&self, batch: &mut TraceBatch) {
        if self.conditions.is_empty() {
            return;
        }
        for rs in &mut batch.resource_spans {
            let resource = &rs.resource;
            for ss in &mut rs.scope_spans {
                let scope = &ss.scope;
                ss.spans.retain(|span| {
                    let cx = SpanContext {
                        resource,
                        scope,
                        span: Some(span),
                    };
                    !self.conditions.iter().any(|c| c.eval(&cx))
                });
            }
            rs.scope_spans.retain(|ss| !ss.spans.is_empty());
        }
        batch.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
    }
}
