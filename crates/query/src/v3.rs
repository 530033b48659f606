//! Jaeger's api_v3 HTTP JSON gateway (`/api/v3/...`): services, operations, trace by id and
//! trace search, with traces as OTLP/JSON.
//!
//! Shapes follow Jaeger v2's `apiv3/http_gateway.go`: `{"services": [...]}`,
//! `{"operations": [{"name", "spanKind"}]}`, traces as `{"result": {"resourceSpans": [...]}}`
//! (a search returns every matching trace's spans in one `result`), errors as
//! `{"error": {"httpCode": N, "message": "..."}}`, 404 `No traces found` for an empty search.
//! Empty lists are written (`"services": []`) where Jaeger's protobuf JSON would omit the field.
//! The same adjusters as v1 run unless `raw_traces`/`query.raw_traces` is true, so span ids
//! agree between the two APIs.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use model::{SpanRecord, TraceBatch};
use serde::Serialize;
use serde_json::{json, Value};
use store::Store;

use crate::adjust;
use crate::error::{ApiError, V3Error};
use crate::params::{self, ParamError, QueryParams};
use crate::v1::OperationJson;

/// The v3 routes, to be merged into the crate's router.
pub(crate) fn routes() -> Router<Store> {
    Router::new()
        .route("/api/v3/services", get(services))
        .route("/api/v3/operations", get(operations))
        .route("/api/v3/traces", get(find_traces))
        .route("/api/v3/traces/{trace_id}", get(get_trace))
}

type V3Result<T> = Result<Json<T>, V3Error>;

#[derive(Debug, Serialize)]
pub(crate) struct ServicesResponse {
    services: Vec<String>,
}

async fn services(State(store): State<Store>) -> V3Result<ServicesResponse> {
    Ok(Json(ServicesResponse {
        services: store.services().await?,
    }))
}

#[derive(Debug, Serialize)]
pub(crate) struct OperationsResponse {
    operations: Vec<OperationJson>,
}

async fn operations(
    State(store): State<Store>,
    RawQuery(raw): RawQuery,
) -> V3Result<OperationsResponse> {
    let params = QueryParams::parse(raw.as_deref());
    let service = params.get("service").unwrap_or_default();
    let kind = params::parse_span_kind("span_kind", params.get("span_kind"))?;
    let operations = store
        .operations(service, kind)
        .await?
        .into_iter()
        .map(OperationJson::from)
        .collect();
    Ok(Json(OperationsResponse { operations }))
}

fn raw_flag(params: &QueryParams, name: &str) -> Result<bool, ParamError> {
    params::parse_bool(params.get(name)).ok_or_else(|| ParamError::Malformed {
        param: name.to_owned(),
        reason: format!("invalid boolean {:?}", params.get(name).unwrap_or_default()),
    })
}

/// The records of one trace, adjusted unless `raw`.
fn prepare(spans: Vec<SpanRecord>, raw: bool) -> Vec<SpanRecord> {
    let adjusted = if raw {
        adjust::raw(spans)
    } else {
        adjust::adjust(spans)
    };
    adjusted.into_iter().map(|s| s.record).collect()
}

/// `{"result": <OTLP/JSON TracesData>}` of the given traces, one after another.
fn result_json(traces: impl IntoIterator<Item = Vec<SpanRecord>>) -> Value {
    let mut combined = TraceBatch::default();
    for records in traces {
        combined
            .resource_spans
            .extend(TraceBatch::from_records(&records).resource_spans);
    }
    json!({ "result": wire::otlp::batch_to_json_value(&combined) })
}

async fn get_trace(
    State(store): State<Store>,
    trace_id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> V3Result<Value> {
    let Path(text) = trace_id.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let id = text
        .parse::<model::TraceId>()
        .map_err(|e| ParamError::Malformed {
            param: "trace_id".to_owned(),
            reason: e.to_string(),
        })?;
    let params = QueryParams::parse(raw.as_deref());
    params::check_v3_trace_window(&params)?;
    let raw = raw_flag(&params, "raw_traces")?;
    let trace = store
        .trace(id)
        .await?
        .ok_or_else(ApiError::trace_not_found)?;
    Ok(Json(result_json([prepare(trace.spans, raw)])))
}

async fn find_traces(State(store): State<Store>, RawQuery(raw): RawQuery) -> V3Result<Value> {
    let params = QueryParams::parse(raw.as_deref());
    let query = params::parse_v3_search(&params)?;
    let raw = raw_flag(&params, "query.raw_traces")?;
    let traces = store.find_traces(&query).await?;
    if traces.is_empty() {
        return Err(ApiError::NotFound("No traces found".to_owned()).into());
    }
    Ok(Json(result_json(
        traces.into_iter().map(|t| prepare(t.spans, raw)),
    )))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use model::{KeyValue, Resource, Scope, Span, SpanId, SpanKind, TraceId};

    use super::*;

    fn record(service: &str, trace: TraceId, id: u64) -> SpanRecord {
        SpanRecord {
            resource: Arc::new(Resource {
                attributes: vec![KeyValue::new("service.name", service)],
                ..Default::default()
            }),
            scope: Arc::new(Scope::default()),
            span: Span {
                trace_id: trace,
                span_id: SpanId::from_u64(id),
                name: "op".into(),
                kind: SpanKind::Server,
                start_unix_nano: 1_000,
                end_unix_nano: 2_000,
                ..Default::default()
            },
        }
    }

    #[test]
    fn traces_are_wrapped_in_result_as_otlp_json() {
        let t1 = TraceId::from_halves(0, 0xab);
        let t2 = TraceId::from_halves(1, 2);
        let v = result_json([
            vec![record("a", t1, 1), record("b", t1, 2)],
            vec![record("a", t2, 3)],
        ]);
        let rs = v["result"]["resourceSpans"]
            .as_array()
            .expect("resourceSpans");
        // One resource group per service and trace, traces one after another.
        assert_eq!(rs.len(), 3);
        let first = &rs[0]["scopeSpans"][0]["spans"][0];
        assert_eq!(first["traceId"], "000000000000000000000000000000ab");
        assert_eq!(first["spanId"], "0000000000000001");
        assert_eq!(first["startTimeUnixNano"], "1000");
        assert_eq!(
            rs[2]["scopeSpans"][0]["spans"][0]["traceId"],
            "00000000000000010000000000000002"
        );
        assert_eq!(
            result_json(Vec::<Vec<SpanRecord>>::new()),
            json!({"result": {"resourceSpans": []}})
        );
    }

    #[test]
    fn raw_flag_parsing() {
        let p = QueryParams::parse(Some("raw_traces=maybe"));
        assert_eq!(
            raw_flag(&p, "raw_traces").unwrap_err().to_string(),
            "malformed parameter raw_traces: invalid boolean \"maybe\""
        );
        assert_eq!(raw_flag(&QueryParams::default(), "raw_traces"), Ok(false));
    }
}
