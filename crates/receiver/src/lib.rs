//! Network front doors: the servers that accept spans and hand them on.
//!
//! - [`otlp_grpc`]: OTLP over gRPC (`TraceService/Export`), gzip accepted.
//! - [`otlp_http`]: OTLP over HTTP (`POST /v1/traces`), protobuf or JSON, gzip/deflate or plain.
//! - [`zipkin_http`]: Zipkin v2 (`POST /api/v2/spans`), JSON or proto3, gzip/deflate or plain.
//! - [`tls`]: TLS (and mutual TLS) on any of their listeners; [`cors`]: CORS on the HTTP ones;
//!   [`auth`]: a credentials check on any of them.
//!
//! Each receiver decodes with the `wire` crate and passes a [`model::TraceBatch`] to a [`Sink`]
//! (the store in `all-in-one`, a pipeline in `collector`); a sink that needs only OTLP bytes
//! ([`Needs::OtlpBytes`]) gets OTLP protobuf requests checked by a scan instead of decoded.
//! A request is answered with success only after the sink accepted it, so "acknowledged" means
//! whatever the sink promises (durable, for the store). Malformed input is answered with a 4xx
//! (gRPC `INVALID_ARGUMENT`) whose message names the problem; a sink that is overloaded or
//! unavailable yields a retryable answer (429/503, `RESOURCE_EXHAUSTED`/`UNAVAILABLE`).
//!
//! What this crate must not do: store, sample or transform spans.

pub mod auth;
mod body;
pub mod cors;
mod export;
mod grpc_message;
mod metrics;
pub mod otlp_grpc;
pub mod otlp_http;
mod sink;
pub mod tls;
pub mod zipkin_http;

pub use sink::{CheckedOtlp, Needs, Received, Sink, SinkError};

/// Limits every receiver applies to what a client may send.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body accepted, both as sent and after decompression.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    /// 20 MiB, as the OpenTelemetry Collector's HTTP receivers default to.
    fn default() -> Self {
        Self {
            max_body_bytes: 20 * 1024 * 1024,
        }
    }
}
