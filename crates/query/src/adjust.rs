//! Trace adjusters: the fixes Jaeger's query service applies to a stored trace before answering,
//! done here on the span model so the v1 and v3 APIs show the same span ids.
//!
//! In order (Jaeger's `StandardAdjusters`, minus clock-skew correction, which is not done):
//! 1. identical spans stored twice (a retried export) are kept once (Jaeger's `DedupeBySpanHash`);
//! 2. spans are sorted by start time, then span id, so answers are stable whatever order the
//!    store returns;
//! 3. Zipkin shared span ids: when a SERVER span has the id of a CLIENT span in the same trace
//!    (Zipkin/B3 `shared: true`, as Envoy reports), the server span gets a new, unused id derived
//!    from the old one, becomes CHILD_OF the client span, and its children follow it (Jaeger's
//!    `ZipkinSpanIDUniquifier`; Jaeger picks the next free id counting up from 1, here the id is a
//!    hash of the old one so it does not depend on which other spans have arrived);
//! 4. warnings, as Jaeger's clock-skew adjuster writes them: a span whose parent is not in the
//!    trace keeps its reference (the UI shows it as an orphan) and gets
//!    `invalid parent span IDs=<id>; skipping clock skew adjustment`; spans that still share an
//!    id get `duplicate span IDs; skipping clock skew adjustment`.

use std::collections::{HashMap, HashSet};

use model::{AnyValue, SpanId, SpanKind, SpanRecord};

/// The attribute the wire crate sets on Zipkin spans reported with `shared: true`.
pub const ZIPKIN_SHARED_ATTRIBUTE: &str = wire::zipkin::SHARED;

/// A span after adjustment, with the warnings Jaeger would attach to it.
#[derive(Clone, Debug, PartialEq)]
pub struct AdjustedSpan {
    pub record: SpanRecord,
    pub warnings: Vec<String>,
}

/// Applies every adjuster (see the module doc).
pub fn adjust(spans: Vec<SpanRecord>) -> Vec<AdjustedSpan> {
    let mut spans = dedupe_identical(spans);
    spans.sort_by(|a, b| {
        (a.span.start_unix_nano, a.span.span_id).cmp(&(b.span.start_unix_nano, b.span.span_id))
    });
    uniquify_shared_server_ids(&mut spans);
    let warnings = structure_warnings(&spans);
    spans
        .into_iter()
        .zip(warnings)
        .map(|(record, warnings)| AdjustedSpan { record, warnings })
        .collect()
}

/// Leaves the spans as stored (Jaeger's `raw=true`).
pub fn raw(spans: Vec<SpanRecord>) -> Vec<AdjustedSpan> {
    spans
        .into_iter()
        .map(|record| AdjustedSpan {
            record,
            warnings: Vec::new(),
        })
        .collect()
}

/// Keeps the first of every group of equal records (span, resource and scope all equal).
fn dedupe_identical(spans: Vec<SpanRecord>) -> Vec<SpanRecord> {
    let mut kept: Vec<SpanRecord> = Vec::with_capacity(spans.len());
    let mut by_id: HashMap<SpanId, Vec<usize>> = HashMap::new();
    for rec in spans {
        let same_id = by_id.entry(rec.span.span_id).or_default();
        if same_id.iter().any(|&i| kept[i] == rec) {
            continue;
        }
        same_id.push(kept.len());
        kept.push(rec);
    }
    kept
}

fn is_server_side(rec: &SpanRecord) -> bool {
    rec.span.kind == SpanKind::Server
        || matches!(
            rec.span.attribute(ZIPKIN_SHARED_ATTRIBUTE),
            Some(AnyValue::Bool(true))
        )
}

fn uniquify_shared_server_ids(spans: &mut [SpanRecord]) {
    let mut kinds_by_id: HashMap<SpanId, Vec<SpanKind>> = HashMap::new();
    for rec in spans.iter() {
        kinds_by_id
            .entry(rec.span.span_id)
            .or_default()
            .push(rec.span.kind);
    }
    let mut used: HashSet<SpanId> = kinds_by_id.keys().copied().collect();
    let mut old_to_new: HashMap<SpanId, SpanId> = HashMap::new();
    for rec in spans.iter_mut() {
        let old = rec.span.span_id;
        let shares_with_client = kinds_by_id
            .get(&old)
            .is_some_and(|kinds| kinds.contains(&SpanKind::Client));
        if rec.span.kind == SpanKind::Client || !shares_with_client || !is_server_side(rec) {
            continue;
        }
        let new = derive_unused_id(old, &used);
        used.insert(new);
        old_to_new.insert(old, new);
        rec.span.span_id = new;
        // The previously shared id is the client span: the server span's new parent.
        rec.span.parent_span_id = Some(old);
    }
    if old_to_new.is_empty() {
        return;
    }
    // Children of the server side pointed at the shared id: move them under the new id.
    for rec in spans.iter_mut() {
        if let Some(&new) = rec.span.parent_span_id.and_then(|p| old_to_new.get(&p)) {
            if rec.span.span_id != new {
                rec.span.parent_span_id = Some(new);
            }
        }
    }
}

/// A new span id that is a pure function of `old` and the ids in use: FNV-1a 64 over the old id
/// and a fixed salt, re-hashed until it is non-zero and unused.
fn derive_unused_id(old: SpanId, used: &HashSet<SpanId>) -> SpanId {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut input = old.to_bytes().to_vec();
    input.extend_from_slice(b"meshtrace-zipkin-server");
    loop {
        let mut h = OFFSET;
        for b in &input {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
        let id = SpanId::from_u64(h);
        if !id.is_zero() && !used.contains(&id) {
            return id;
        }
        input = h.to_be_bytes().to_vec();
    }
}

fn structure_warnings(spans: &[SpanRecord]) -> Vec<Vec<String>> {
    let mut count: HashMap<SpanId, usize> = HashMap::new();
    for rec in spans {
        *count.entry(rec.span.span_id).or_default() += 1;
    }
    spans
        .iter()
        .map(|rec| {
            let mut warnings = Vec::new();
            if count.get(&rec.span.span_id).copied().unwrap_or(0) > 1 {
                warnings.push("duplicate span IDs; skipping clock skew adjustment".to_owned());
            }
            if let Some(parent) = rec.span.parent_span_id {
                if !count.contains_key(&parent) {
                    warnings.push(format!(
                        "invalid parent span IDs={parent}; skipping clock skew adjustment"
                    ));
                }
            }
            warnings
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use model::{KeyValue, Resource, Scope, Span, TraceId};

    use super::*;

    fn rec(id: u64, parent: Option<u64>, kind: SpanKind, start: u64, svc: &str) -> SpanRecord {
        SpanRecord {
            resource: Arc::new(Resource {
                attributes: vec![KeyValue::new("service.name", svc)],
                ..Default::default()
            }),
            scope: Arc::new(Scope::default()),
            span: Span {
                trace_id: TraceId::from_halves(0, 0xabc),
                span_id: SpanId::from_u64(id),
                parent_span_id: parent.map(SpanId::from_u64),
                name: format!("op{id}"),
                kind,
                start_unix_nano: start,
                end_unix_nano: start + 10,
                ..Default::default()
            },
        }
    }

    #[test]
    fn identical_spans_are_kept_once_and_sorted_by_start() {
        let a = rec(1, None, SpanKind::Server, 100, "a");
        let b = rec(2, Some(1), SpanKind::Client, 50, "a");
        let mut b_changed = b.clone();
        b_changed.span.name = "other".into();
        let out = adjust(vec![a.clone(), b.clone(), a.clone(), b_changed]);
        let names: Vec<_> = out.iter().map(|s| s.record.span.name.as_str()).collect();
        assert_eq!(names, ["op2", "other", "op1"]);
        assert!(out[0].warnings[0].starts_with("duplicate span IDs"));
        assert!(out[2].warnings.is_empty());
    }

    #[test]
    fn zipkin_shared_server_span_gets_a_new_id_under_the_client() {
        // root (1) -> client (2) ; server shares id 2 with parent 1 (Zipkin style);
        // the server's own child 3 points at the shared id 2.
        let root = rec(1, None, SpanKind::Server, 0, "edge");
        let client = rec(2, Some(1), SpanKind::Client, 10, "edge");
        let mut server = rec(2, Some(1), SpanKind::Server, 12, "backend");
        server
            .span
            .attributes
            .push(KeyValue::new(ZIPKIN_SHARED_ATTRIBUTE, true));
        let child = rec(3, Some(2), SpanKind::Internal, 14, "backend");
        let out = adjust(vec![child, server, client, root]);
        let server = &out[2].record.span;
        assert_eq!(out[2].record.resource.service_name(), "backend");
        assert_ne!(server.span_id, SpanId::from_u64(2));
        assert_eq!(server.parent_span_id, Some(SpanId::from_u64(2)));
        assert_eq!(out[3].record.span.name, "op3");
        assert_eq!(out[3].record.span.parent_span_id, Some(server.span_id));
        // The client keeps its id and parent.
        assert_eq!(out[1].record.span.span_id, SpanId::from_u64(2));
        assert_eq!(out[1].record.span.parent_span_id, Some(SpanId::from_u64(1)));
        assert!(out.iter().all(|s| s.warnings.is_empty()), "{out:?}");
        // Deterministic: the new id depends only on the old one, not on the other spans.
        let root = rec(1, None, SpanKind::Server, 0, "edge");
        let client = rec(2, Some(1), SpanKind::Client, 10, "edge");
        let server2 = rec(2, Some(1), SpanKind::Server, 12, "backend");
        let out2 = adjust(vec![server2, root, client]);
        assert_eq!(out2[2].record.span.span_id, server.span_id);
    }

    #[test]
    fn shared_id_without_kinds_is_detected_by_the_zipkin_flag() {
        let client = rec(7, None, SpanKind::Client, 0, "a");
        let mut server = rec(7, None, SpanKind::Unspecified, 1, "b");
        server
            .span
            .attributes
            .push(KeyValue::new(ZIPKIN_SHARED_ATTRIBUTE, true));
        let out = adjust(vec![client, server]);
        assert_eq!(out[1].record.span.parent_span_id, Some(SpanId::from_u64(7)));
        assert_ne!(out[1].record.span.span_id, SpanId::from_u64(7));
        // Two non-RPC spans sharing an id are left alone, with a warning.
        let out = adjust(vec![
            rec(9, None, SpanKind::Internal, 0, "a"),
            rec(9, None, SpanKind::Server, 1, "a"),
        ]);
        assert!(out
            .iter()
            .all(|s| s.record.span.span_id == SpanId::from_u64(9)));
        assert!(out.iter().all(|s| s.warnings.len() == 1));
    }

    #[test]
    fn missing_parent_keeps_reference_and_warns() {
        let orphan = rec(5, Some(0xeee19b7ec3c1b173), SpanKind::Server, 0, "a");
        let out = adjust(vec![orphan]);
        assert_eq!(
            out[0].record.span.parent_span_id,
            Some(SpanId::from_u64(0xeee19b7ec3c1b173))
        );
        assert_eq!(
            out[0].warnings,
            ["invalid parent span IDs=eee19b7ec3c1b173; skipping clock skew adjustment"]
        );
    }

    #[test]
    fn derived_ids_avoid_used_ones() {
        let old = SpanId::from_u64(42);
        let first = derive_unused_id(old, &HashSet::new());
        let used: HashSet<_> = [first].into_iter().collect();
        let second = derive_unused_id(old, &used);
        assert_ne!(first, second);
        assert!(!second.is_zero());
    }

    #[test]
    fn raw_changes_nothing() {
        let a = rec(1, Some(99), SpanKind::Server, 100, "a");
        let out = raw(vec![a.clone(), a.clone()]);
        assert_eq!(out.len(), 2);
        assert!(out[0].warnings.is_empty());
        assert_eq!(out[0].record, a);
    }
}
