//! `filter`: drops the spans that match any of its OTTL conditions (`traces.span`), as the OTel
//! Collector's filter processor does; the usual use is keeping health checks and other noise out
//! of the backend. Scopes and resources left without spans go too. A condition that fails on a
//! span (a converter given the wrong type) keeps the span under `error_mode: ignore`/`silent`,
//! and fails the batch under `propagate`, as the OTel Collector's does.

use model::TraceBatch;

use super::ottl::{any_holds, Condition, ErrorMode, SpanContext};

pub struct SpanFilter {
    conditions: Vec<Condition>,
    mode: ErrorMode,
}

impl SpanFilter {
    /// The conditions, each parsed (an error names the one that is not understood).
    pub fn new(conditions: &[String], error_mode: Option<&str>) -> Result<Self, String> {
        let conditions = conditions
            .iter()
            .enumerate()
            .map(|(n, c)| Condition::parse(c).map_err(|e| format!("traces.span[{n}] {c:?}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            conditions,
            mode: ErrorMode::parse(error_mode)?,
        })
    }

    /// Drops the matching spans; `Err` (under `propagate`) when a condition failed on one.
    pub fn apply(&self, name: &str, batch: &mut TraceBatch) -> Result<(), String> {
        if self.conditions.is_empty() {
            return Ok(());
        }
        let mut failed = None;
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
                    match any_holds(&self.conditions, &cx, self.mode, name) {
                        Ok(matched) => !matched,
                        Err(e) => {
                            failed.get_or_insert(e);
                            true
                        }
                    }
                });
            }
            rs.scope_spans.retain(|ss| !ss.spans.is_empty());
        }
        batch.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
        failed.map_or(Ok(()), Err)
    }
}
