//! OTLP over HTTP: `POST /v1/traces` with `application/x-protobuf` or `application/json`
//! bodies, optionally gzip- or deflate-encoded.
//!
//! Answers follow the OTLP/HTTP spec: success is `200` with an `ExportTraceServiceResponse`
//! in the request's own encoding (carrying partial success when some spans were refused);
//! failures carry a `google.rpc.Status` (code + message) in that encoding, with `400` for
//! bad data, `413` too large, `415` unsupported type or encoding, `429`/`503` retryable.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

use crate::body::{self, BodyError};
use crate::export::{export, export_checked, Accepted, ExportError};
use crate::metrics::{Origin, OTLP_HTTP};
use crate::{CheckedOtlp, Limits, Needs, Sink, SinkError};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// Routes `POST /v1/traces` to `sink`.
pub fn router<S: Sink>(sink: Arc<S>, limits: Limits) -> Router {
    router_at(sink, limits, "/v1/traces")
}

/// [`router`] taking traces on `path` instead (the OTel Collector's `traces_url_path`).
pub fn router_at<S: Sink>(sink: Arc<S>, limits: Limits, path: &str) -> Router {
    Router::new()
        .route(path, post(handle::<S>))
        .with_state((sink, limits))
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Protobuf,
    Json,
}

async fn handle<S: Sink>(
    State((sink, limits)): State<(Arc<S>, Limits)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let format = match body::media_type(&headers).as_deref() {
        Some(PROTOBUF) => Format::Protobuf,
        Some(JSON) => Format::Json,
        other => {
            OTLP_HTTP.of(&*sink).bad_request();
            let msg = format!(
                "unsupported Content-Type {:?}: OTLP/HTTP takes {PROTOBUF} or {JSON}",
                other.unwrap_or("(none)")
            );
            return failure(Format::Json, StatusCode::UNSUPPORTED_MEDIA_TYPE, 3, msg);
        }
    };
    let mut bytes = match body::read(&headers, body, limits.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return body_failure(format, e, &OTLP_HTTP.of(&*sink)),
    };
    if format == Format::Protobuf && sink.needs() == Needs::OtlpBytes {
        match CheckedOtlp::check(bytes) {
            Ok(checked) => return answer(format, export_checked(&*sink, OTLP_HTTP, checked).await),
            Err(unchecked) => bytes = unchecked,
        }
    }
    let decoded = match format {
        Format::Protobuf => wire::otlp::decode_protobuf(&bytes),
        Format::Json => wire::otlp::decode_json(&bytes),
    };
    let decoded = match decoded {
        Ok(d) => d,
        Err(e) => {
            OTLP_HTTP.of(&*sink).bad_request();
            return failure(format, StatusCode::BAD_REQUEST, 3, e.to_string());
        }
    };
    let otlp_protobuf = (format == Format::Protobuf).then_some(bytes);
    answer(
        format,
        export(&*sink, OTLP_HTTP, decoded, otlp_protobuf).await,
    )
}

fn answer(format: Format, exported: Result<Accepted, ExportError>) -> Response {
    match exported {
        Ok(accepted) => success(format, accepted),
        Err(ExportError::Invalid(msg)) => failure(format, StatusCode::BAD_REQUEST, 3, msg),
        Err(ExportError::Sink(SinkError::Overloaded(msg))) => {
            retry_later(failure(format, StatusCode::TOO_MANY_REQUESTS, 8, msg))
        }
        Err(ExportError::Sink(SinkError::Unavailable(msg))) => {
            retry_later(failure(format, StatusCode::SERVICE_UNAVAILABLE, 14, msg))
        }
    }
}

fn success(format: Format, accepted: Accepted) -> Response {
    let partial_success = accepted.partial_success();
    match format {
        Format::Protobuf => {
            let body = ExportTraceServiceResponse { partial_success }.encode_to_vec();
            ([(header::CONTENT_TYPE, PROTOBUF)], body).into_response()
        }
        Format::Json => {
            let body = match partial_success {
                Some(p) => serde_json::json!({"partialSuccess": {
                    "rejectedSpans": p.rejected_spans.to_string(),
                    "errorMessage": p.error_message,
                }}),
                None => serde_json::json!({}),
            };
            ([(header::CONTENT_TYPE, JSON)], body.to_string()).into_response()
        }
    }
}

fn body_failure(format: Format, e: BodyError, origin: &Origin) -> Response {
    origin.bad_request();
    let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        8
    } else {
        3
    };
    failure(format, e.status(), code, e.to_string())
}

/// `google.rpc.Status`, the error body OTLP/HTTP specifies. Only code and message are sent.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn failure(format: Format, status: StatusCode, grpc_code: i32, message: String) -> Response {
    match format {
        Format::Protobuf => {
            let body = RpcStatus {
                code: grpc_code,
                message,
            }
            .encode_to_vec();
            (status, [(header::CONTENT_TYPE, PROTOBUF)], body).into_response()
        }
        Format::Json => {
            let body = serde_json::json!({"code": grpc_code, "message": message});
            (status, [(header::CONTENT_TYPE, JSON)], body.to_string()).into_response()
        }
    }
}

fn retry_later(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
