//! Zipkin v2: JSON and proto3 reports (what Envoy, Brave and zipkin-go send to
//! `POST /api/v2/spans`) into the model, and the model back out as Zipkin v2 JSON.
//!
//! Reading happens in two steps: the format readers (`json.rs`, `proto.rs`) validate ids and
//! addresses into a format-neutral Zipkin span, and `mapping.rs` maps that onto the model the way
//! the OpenTelemetry Collector's Zipkin receiver does (see its module doc for every decision).
//! A Zipkin report is all or nothing: any invalid span fails the whole report with its index.
//! For a consumer that needs only OTLP bytes, `otlp.rs` writes the mapped spans straight as an
//! OTLP request, without the model in between.

mod json;
mod mapping;
mod otlp;
mod proto;
#[cfg(test)]
mod reference;
mod span;

pub use mapping::{SHARED, START_TIME_ABSENT};
pub use proto::generated;

use crate::{Decoded, WireError};

/// How reports are read: the OTel Collector Zipkin receiver's options. The free functions
/// below read with the defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Span tags whose text is an integer (`-?[0-9]+`), a decimal (`-?[0-9]+.[0-9]+`) or
    /// `true`/`false` become int, double and bool attributes (`parse_string_tags`); off, every
    /// tag stays a string.
    pub parse_string_tags: bool,
}

impl ReadOptions {
    /// Decodes a Zipkin v2 JSON report (a list of spans).
    pub fn decode_json(self, body: &[u8]) -> Result<Decoded, WireError> {
        Ok(self.decoded(json::parse(body)?))
    }

    /// Decodes a Zipkin v2 proto3 report (`zipkin.proto3.ListOfSpans`).
    pub fn decode_proto(self, body: &[u8]) -> Result<Decoded, WireError> {
        Ok(self.decoded(proto::parse(body)?))
    }

    /// Decodes a Zipkin v2 JSON report straight into an OTLP request, with the same errors as
    /// [`ReadOptions::decode_json`].
    pub fn decode_json_to_otlp(self, body: &[u8]) -> Result<OtlpRequest, WireError> {
        let mut parsed = Ok(());
        let (bytes, spans) = otlp::with_writer(self.parse_string_tags, |w| {
            parsed = json::parse_each(body, |zs| w.push(zs))
        });
        parsed.map(|()| OtlpRequest { bytes, spans })
    }

    /// Decodes a Zipkin v2 proto3 report straight into an OTLP request, with the same errors as
    /// [`ReadOptions::decode_proto`].
    pub fn decode_proto_to_otlp(self, body: &[u8]) -> Result<OtlpRequest, WireError> {
        let (bytes, spans) = otlp::to_otlp(proto::parse(body)?, self.parse_string_tags);
        Ok(OtlpRequest { bytes, spans })
    }

    fn decoded(self, spans: Vec<span::ZipkinSpan>) -> Decoded {
        Decoded {
            batch: mapping::to_batch(spans, self.parse_string_tags),
            rejected_spans: 0,
            error_message: String::new(),
        }
    }
}

/// A Zipkin report as an OTLP protobuf `ExportTraceServiceRequest`: byte for byte what
/// `otlp::encode_protobuf` writes for the batch [`decode_json`] or [`decode_proto`] gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpRequest {
    pub bytes: Vec<u8>,
    /// The spans it holds (a Zipkin report is all or nothing, so every span of the report).
    pub spans: usize,
}

/// Decodes a Zipkin v2 JSON report (a list of spans).
pub fn decode_json(body: &[u8]) -> Result<Decoded, WireError> {
    ReadOptions::default().decode_json(body)
}

/// Decodes a Zipkin v2 proto3 report (`zipkin.proto3.ListOfSpans`).
pub fn decode_proto(body: &[u8]) -> Result<Decoded, WireError> {
    ReadOptions::default().decode_proto(body)
}

/// Decodes a Zipkin v2 JSON report straight into an OTLP request, with the same errors as
/// [`decode_json`].
pub fn decode_json_to_otlp(body: &[u8]) -> Result<OtlpRequest, WireError> {
    ReadOptions::default().decode_json_to_otlp(body)
}

/// Decodes a Zipkin v2 proto3 report straight into an OTLP request, with the same errors as
/// [`decode_proto`].
pub fn decode_proto_to_otlp(body: &[u8]) -> Result<OtlpRequest, WireError> {
    ReadOptions::default().decode_proto_to_otlp(body)
}

/// Encodes the batch as a Zipkin v2 JSON list of spans.
pub fn encode_json(batch: &model::TraceBatch) -> Vec<u8> {
    json::write(&mapping::from_batch(batch))
}

/// Encodes the batch as a Zipkin v2 proto3 `ListOfSpans`.
pub fn encode_proto(batch: &model::TraceBatch) -> Vec<u8> {
    proto::write(&mapping::from_batch(batch))
}

#[cfg(test)]
mod tests;
