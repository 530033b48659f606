//! Wire formats: OTLP (protobuf and JSON) and Zipkin v2 (JSON and proto3), to and from the span
//! model.
//!
//! This crate owns the byte-level shape of every span format meshtrace receives or emits, and the
//! mapping of each onto [`model::TraceBatch`]. It validates ids on the way in (so an invalid id
//! never reaches the model) and names what is wrong in its errors.
//!
//! What it must not do: network I/O, decompression, HTTP/gRPC status handling, or anything
//! stateful. Receivers hand it bodies; it hands back batches.

mod error;
#[cfg(test)]
mod fixtures;
pub mod otlp;
pub mod propagation;
pub mod zipkin;

pub use error::WireError;
pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// The result of decoding one report.
///
/// Decoding keeps what it can: spans that cannot be represented (invalid ids) are left out of
/// `batch`, counted in `rejected_spans`, and explained in `error_message` (empty when none were),
/// which is what OTLP's partial-success response carries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    pub batch: model::TraceBatch,
    pub rejected_spans: u64,
    pub error_message: String,
}
