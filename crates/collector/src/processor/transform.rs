//! `transform`: OTTL statements run on every span (the `span` context) or resource (the
//! `resource` context) of a batch, group by group in config order, each group's statements in
//! order on each item; a group with `conditions` runs only on what matches one of them.
//! Statements are parsed when the config is read ([`super::ottl::Statement`]); one that fails
//! on an item (a type its target cannot take) follows `error_mode`.

use model::{Scope, TraceBatch};

use super::ottl::{any_holds, Condition, Context, ErrorMode, SpanContext, Statement};
use crate::config::{StatementGroup, TransformProcessor};

pub struct Transform {
    groups: Vec<Group>,
    mode: ErrorMode,
}

struct Group {
    context: Context,
    conditions: Vec<Condition>,
    statements: Vec<Statement>,
}

impl Transform {
    /// Every statement and condition parsed; an error names the first that is not understood.
    pub fn new(cfg: &TransformProcessor) -> Result<Self, String> {
        let mode = ErrorMode::parse(cfg.error_mode.as_deref())?;
        let groups = cfg
            .trace_statements
            .iter()
            .enumerate()
            .map(|(n, g)| group(g).map_err(|e| format!("trace_statements[{n}]: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self { groups, mode })
    }

    /// Runs the statements on the batch; with `error_mode: propagate`, the first failure.
    pub fn apply(&self, name: &str, batch: &mut TraceBatch) -> Result<(), String> {
        let no_scope = Scope::default();
        for g in &self.groups {
            for rs in &mut batch.resource_spans {
                match g.context {
                    Context::Resource => {
                        let cx = SpanContext {
                            resource: &rs.resource,
                            scope: &no_scope,
                            span: None,
                        };
                        if g.matches(&cx, self.mode, name)? {
                            for st in &g.statements {
                                let done = st.apply(&mut rs.resource, &no_scope, None);
                                self.mode.handle(name, done)?;
                            }
                        }
                    }
                    Context::Span => {
                        for ss in &mut rs.scope_spans {
                            for span in &mut ss.spans {
                                let cx = SpanContext {
                                    resource: &rs.resource,
                                    scope: &ss.scope,
                                    span: Some(span),
                                };
                                if !g.matches(&cx, self.mode, name)? {
                                    continue;
                                }
                                for st in &g.statements {
                                    let done =
                                        st.apply(&mut rs.resource, &ss.scope, Some(&mut *span));
                                    self.mode.handle(name, done)?;
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Group {
    /// Whether the group runs on this item: it has no conditions, or one holds.
    fn matches(&self, cx: &SpanContext<'_>, mode: ErrorMode, name: &str) -> Result<bool, String> {
        Ok(self.conditions.is_empty() || any_holds(&self.conditions, cx, mode, name)?)
    }
}

/// Parses one entry of `trace_statements`.
fn group(g: &StatementGroup) -> Result<Group, String> {
    let (context, conditions, statements) = match g {
        StatementGroup::One(s) => (Context::Span, &[][..], std::slice::from_ref(s)),
        StatementGroup::Group(g) => {
            let context = match g.context.as_deref() {
                None | Some("span") => Context::Span,
                Some("resource") => Context::Resource,
                Some(other) => {
                    return Err(format!(
                        "context {other} is not built (span and resource are)"
                    ))
                }
            };
            (context, &g.conditions[..], &g.statements[..])
        }
    };
    Ok(Group {
        context,
        conditions: conditions
            .iter()
            .map(|c| Condition::parse_in(c, context).map_err(|e| format!("condition {c:?}: {e}")))
            .collect::<Result<_, _>>()?,
        statements: statements
            .iter()
            .map(|s| Statement::parse(s, context).map_err(|e| format!("statement {s:?}: {e}")))
            .collect::<Result<_, _>>()?,
    })
}
