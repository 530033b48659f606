//! Jaeger's v1 HTTP JSON API (`/api/...`), what the Jaeger UI and Grafana's Jaeger data source
//! call: services, operations, trace search, trace by id and service dependencies.
//!
//! Every answer is Jaeger's `structuredResponse` envelope
//! `{"data": ..., "total": N, "limit": 0, "offset": 0, "errors": null}` with Jaeger's quirks kept
//! (`total` is only filled for services and operations; traces asked for by id that are missing
//! are listed in `errors` with their `traceID` while the others are returned with status 200).

use std::collections::BTreeMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use store::Store;

use crate::adjust;
use crate::error::{ApiError, V1Error};
use crate::jaeger_json::{self, trace_to_jaeger};
use crate::params::{self, QueryParams};

/// The v1 routes, to be merged into the crate's router.
pub(crate) fn routes() -> Router<Store> {
    Router::new()
        .route("/api/services", get(services))
        .route(
            "/api/services/{service}/operations",
            get(service_operations),
        )
        .route("/api/operations", get(operations))
        .route("/api/traces", get(search))
        .route("/api/traces/{trace_id}", get(trace_by_id))
        .route("/api/dependencies", get(dependencies))
}

/// Jaeger's `structuredResponse`.
#[derive(Debug, Serialize)]
pub(crate) struct Envelope<T> {
    data: T,
    total: usize,
    limit: usize,
    offset: usize,
    errors: Option<Vec<StructuredError>>,
}

impl<T> Envelope<T> {
    fn new(data: T, total: usize) -> Self {
        Envelope {
            data,
            total,
            limit: 0,
            offset: 0,
            errors: None,
        }
    }
}

/// Jaeger's `structuredError` (`code` and `traceID` left out when unset).
#[derive(Debug, Serialize)]
pub(crate) struct StructuredError {
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    msg: String,
    #[serde(rename = "traceID", skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
}

type V1Result<T> = Result<Json<Envelope<T>>, V1Error>;

async fn services(State(store): State<Store>) -> V1Result<Vec<String>> {
    let services = store.services().await?;
    let total = services.len();
    Ok(Json(Envelope::new(services, total)))
}

/// Legacy route the Jaeger UI and Grafana use: operation names of every kind, deduplicated.
async fn service_operations(
    State(store): State<Store>,
    service: Result<Path<String>, PathRejection>,
) -> V1Result<Vec<String>> {
    let Path(service) = service.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut names: Vec<String> = store
        .operations(&service, None)
        .await?
        .into_iter()
        .map(|op| op.name)
        .collect();
    names.sort();
    names.dedup();
    let total = names.len();
    Ok(Json(Envelope::new(names, total)))
}

/// An operation as both API versions write it: `{"name": ..., "spanKind": "server"}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OperationJson {
    name: String,
    span_kind: &'static str,
}

impl From<store::Operation> for OperationJson {
    fn from(op: store::Operation) -> Self {
        Self {
            name: op.name,
            span_kind: op.span_kind.as_jaeger_str(),
        }
    }
}

async fn operations(
    State(store): State<Store>,
    RawQuery(raw): RawQuery,
) -> V1Result<Vec<OperationJson>> {
    let params = QueryParams::parse(raw.as_deref());
    let service = params
        .get("service")
        .ok_or(params::ParamError::Required("service"))?;
    let kind = params::parse_span_kind("spanKind", params.get("spanKind"))?;
    let ops: Vec<OperationJson> = store
        .operations(service, kind)
        .await?
        .into_iter()
        .map(OperationJson::from)
        .collect();
    let total = ops.len();
    Ok(Json(Envelope::new(ops, total)))
}

/// Adjusts (unless `raw`) and converts one stored trace.
fn render(trace: model::Trace, raw: bool) -> jaeger_json::Trace {
    let spans = if raw {
        adjust::raw(trace.spans)
    } else {
        adjust::adjust(trace.spans)
    };
    trace_to_jaeger(trace.trace_id, &spans)
}

async fn search(
    State(store): State<Store>,
    RawQuery(raw): RawQuery,
) -> V1Result<Vec<jaeger_json::Trace>> {
    let params = QueryParams::parse(raw.as_deref());
    let request = params::parse_v1_search(&params, crate::now_unix_nanos())?;

    if !request.trace_ids.is_empty() {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for id in request.trace_ids {
            if !seen.insert(id) {
                continue;
            }
            match store.trace(id).await? {
                Some(trace) => found.push(render(trace, false)),
                None => missing.push(StructuredError {
                    code: None,
                    msg: "trace not found".to_owned(),
                    trace_id: Some(id.to_short_hex()),
                }),
            }
        }
        let mut envelope = Envelope::new(found, 0);
        envelope.errors = (!missing.is_empty()).then_some(missing);
        return Ok(Json(envelope));
    }

    let traces = store.find_traces(&request.query).await?;
    let data = traces.into_iter().map(|t| render(t, false)).collect();
    Ok(Json(Envelope::new(data, 0)))
}

async fn trace_by_id(
    State(store): State<Store>,
    trace_id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> V1Result<Vec<jaeger_json::Trace>> {
    let Path(text) = trace_id.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let id = text
        .parse::<model::TraceId>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let params = QueryParams::parse(raw.as_deref());
    // Jaeger reads `raw` leniently: anything but a true value means "adjust".
    let raw = params::parse_bool(params.get("raw")).unwrap_or(false);
    let trace = store
        .trace(id)
        .await?
        .ok_or_else(ApiError::trace_not_found)?;
    Ok(Json(Envelope::new(vec![render(trace, raw)], 0)))
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DependencyJson {
    parent: String,
    child: String,
    call_count: u64,
    /// Not in Jaeger's shape (its clients ignore unknown fields): calls whose child span failed,
    /// for error rates on the service graph.
    error_count: u64,
}

async fn dependencies(
    State(store): State<Store>,
    RawQuery(raw): RawQuery,
) -> V1Result<Vec<DependencyJson>> {
    let params = QueryParams::parse(raw.as_deref());
    let request = params::parse_dependencies(&params, crate::now_unix_nanos())?;
    let links = store
        .dependencies(request.end_unix_nano, request.lookback_nanos)
        .await?;
    // Jaeger filters by the optional `service` and sums duplicate parent/child pairs.
    let service = params.get("service");
    let mut summed: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for link in links {
        if service.is_some_and(|s| link.parent != s && link.child != s) {
            continue;
        }
        let sum = summed.entry((link.parent, link.child)).or_default();
        sum.0 += link.call_count;
        sum.1 += link.error_count;
    }
    let data = summed
        .into_iter()
        .map(
            |((parent, child), (call_count, error_count))| DependencyJson {
                parent,
                child,
                call_count,
                error_count,
            },
        )
        .collect();
    Ok(Json(Envelope::new(data, 0)))
}
