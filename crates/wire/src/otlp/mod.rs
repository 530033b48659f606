//! OTLP traces: the `ExportTraceServiceRequest` message as protobuf (gRPC and HTTP) and as
//! OTLP/JSON, to and from the span model.

mod convert;
pub(crate) mod encode;
pub(crate) mod json;
pub mod scan;

use prost::Message;

pub use convert::{from_request, to_request};
#[cfg(test)]
pub(crate) use json::json_type;
pub use json::{batch_to_json_value, decode_json, encode_json};

use crate::{Decoded, ExportTraceServiceRequest, WireError};

/// Decodes an OTLP protobuf `ExportTraceServiceRequest` body (already decompressed).
/// Malformed or truncated bytes are an error; spans with invalid ids are a partial success.
pub fn decode_protobuf(body: &[u8]) -> Result<Decoded, WireError> {
    let req = ExportTraceServiceRequest::decode(body).map_err(|e| WireError::Protobuf {
        format: "OTLP ExportTraceServiceRequest",
        message: e.to_string(),
    })?;
    Ok(from_request(req))
}

pub use encode::encode_protobuf;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::rich_batch;

    #[test]
    fn protobuf_round_trips() {
        let batch = rich_batch();
        let bytes = encode_protobuf(&batch);
        let d = decode_protobuf(&bytes).unwrap();
        assert_eq!(d.batch, batch);
        assert_eq!(d.rejected_spans, 0);
    }

    #[test]
    fn empty_body_is_an_empty_batch() {
        let d = decode_protobuf(&[]).unwrap();
        assert!(d.batch.is_empty());
    }

    #[test]
    fn truncated_protobuf_is_an_error_not_a_panic() {
        let bytes = encode_protobuf(&rich_batch());
        let mut errors = 0;
        for cut in 1..bytes.len() {
            if let Err(e) = decode_protobuf(&bytes[..cut]) {
                errors += 1;
                let msg = e.to_string();
                assert!(
                    msg.starts_with("malformed OTLP ExportTraceServiceRequest protobuf: "),
                    "{msg}"
                );
            }
        }
        assert!(
            errors > bytes.len() / 2,
            "most prefixes must fail, {errors} did"
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small xorshift generator: deterministic, no dependency.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..400 {
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode_protobuf(&body);
        }
        assert!(decode_protobuf(&[0xff, 0xff, 0xff]).is_err());
    }
}
