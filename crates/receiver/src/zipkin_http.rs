//! Zipkin v2: `POST /api/v2/spans` with a JSON list of spans (the default, as Envoy, FSM/Pipy and
//! zipkin-js send) or a proto3 `ListOfSpans` (`application/x-protobuf`), optionally gzip- or
//! deflate-encoded. Success is `202 Accepted` with an empty body, as Zipkin's own server answers;
//! errors are plain text naming the problem. A sink that needs only OTLP bytes gets the report
//! written straight as an OTLP request (`wire::zipkin::decode_json_to_otlp`), without the model.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use wire::zipkin::ReadOptions;

use crate::body;
use crate::export::{export, export_checked, ExportError};
use crate::metrics::ZIPKIN_HTTP;
use crate::{CheckedOtlp, Limits, Needs, Sink, SinkError};

/// Routes `POST /api/v2/spans` to `sink`.
pub fn router<S: Sink>(sink: Arc<S>, limits: Limits) -> Router {
    router_reading(sink, limits, ReadOptions::default())
}

/// [`router`], reading reports with `options` (the OTel Collector's `parse_string_tags`).
pub fn router_reading<S: Sink>(sink: Arc<S>, limits: Limits, options: ReadOptions) -> Router {
    Router::new()
        .route("/api/v2/spans", post(handle::<S>))
        .with_state((sink, limits, options))
}

async fn handle<S: Sink>(
    State((sink, limits, options)): State<(Arc<S>, Limits, ReadOptions)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let proto = match body::media_type(&headers).as_deref() {
        None | Some("application/json") | Some("text/plain") => false,
        Some("application/x-protobuf") | Some("application/protobuf") => true,
        Some(other) => {
            ZIPKIN_HTTP.of(&*sink).bad_request();
            let msg = format!(
                "unsupported Content-Type {other:?}: Zipkin v2 takes application/json or application/x-protobuf"
            );
            return (StatusCode::UNSUPPORTED_MEDIA_TYPE, msg).into_response();
        }
    };
    let bytes = match body::read(&headers, body, limits.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            ZIPKIN_HTTP.of(&*sink).bad_request();
            return (e.status(), e.to_string()).into_response();
        }
    };
    // A sink that takes OTLP bytes gets the report written straight as an OTLP request, here
    // (no model in between); a Zipkin report is all or nothing, so each of its spans is valid.
    let exported = if sink.needs() == Needs::OtlpBytes {
        let request = if proto {
            options.decode_proto_to_otlp(&bytes)
        } else {
            options.decode_json_to_otlp(&bytes)
        };
        drop(bytes);
        match request {
            Ok(r) => export_checked(&*sink, ZIPKIN_HTTP, CheckedOtlp::from_zipkin(r)).await,
            Err(e) => return bad_request(&*sink, e),
        }
    } else {
        let decoded = if proto {
            options.decode_proto(&bytes)
        } else {
            options.decode_json(&bytes)
        };
        drop(bytes);
        match decoded {
            Ok(d) => export(&*sink, ZIPKIN_HTTP, d, None).await,
            Err(e) => return bad_request(&*sink, e),
        }
    };
    match exported {
        Ok(accepted) => {
            if accepted.rejected_spans > 0 {
                tracing::warn!(
                    rejected = accepted.rejected_spans,
                    reason = %accepted.error_message,
                    "zipkin: some spans refused"
                );
            }
            StatusCode::ACCEPTED.into_response()
        }
        Err(ExportError::Invalid(msg)) => (StatusCode::BAD_REQUEST, msg).into_response(),
        Err(ExportError::Sink(SinkError::Overloaded(msg))) => {
            retry_later(StatusCode::TOO_MANY_REQUESTS, msg)
        }
        Err(ExportError::Sink(SinkError::Unavailable(msg))) => {
            retry_later(StatusCode::SERVICE_UNAVAILABLE, msg)
        }
    }
}

fn bad_request<S: Sink>(sink: &S, e: wire::WireError) -> Response {
    ZIPKIN_HTTP.of(sink).bad_request();
    (StatusCode::BAD_REQUEST, e.to_string()).into_response()
}

fn retry_later(status: StatusCode, msg: String) -> Response {
    let mut r = (status, msg).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}
