//! Zipkin v2: JSON and proto3 reports (what Envoy, Brave and zipkin-go send to
//! `POST /api/v2/spans`) into the model, and the model back out as Zipkin v2 JSON.
//!
//! Reading happens in two steps: the format readers (`json.rs`, `proto.rs`) validate ids and
//! addresses into a format-neutral Zipkin span, and `mapping.rs` maps that onto the model the way
//! the OpenTelemetry Collector's Zipkin receiver does (see its module doc for every decision).
//! A Zipkin report is all or nothing: any invalid span fails the whole report with its index.

mod json;
mod mapping;
mod proto;
#[cfg(test)]
mod reference;
mod span;

pub use mapping::{SHARED, START_TIME_ABSENT};
pub use proto::generated;

use crate::{Decoded, WireError};

/// Decodes a Zipkin v2 JSON report (a list of spans).
pub fn decode_json(body: &[u8]) -> Result<Decoded, WireError> {
    Ok(decoded(json::parse(body)?))
}

/// Decodes a Zipkin v2 proto3 report (`zipkin.proto3.ListOfSpans`).
pub fn decode_proto(body: &[u8]) -> Result<Decoded, WireError> {
    Ok(decoded(proto::parse(body)?))
}

/// Encodes the batch as a Zipkin v2 JSON list of spans.
pub fn encode_json(batch: &model::TraceBatch) -> Vec<u8> {
    json::write(&mapping::from_batch(batch))
}

/// Encodes the batch as a Zipkin v2 proto3 `ListOfSpans`.
pub fn encode_proto(batch: &model::TraceBatch) -> Vec<u8> {
    proto::write(&mapping::from_batch(batch))
}

fn decoded(spans: Vec<span::ZipkinSpan>) -> Decoded {
    Decoded {
        batch: mapping::to_batch(spans),
        rejected_spans: 0,
        error_message: String::new(),
    }
}

#[cfg(test)]
mod tests;
