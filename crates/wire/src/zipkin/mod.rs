//! Zipkin v2 (placeholder).
use crate::{Decoded, WireError};
pub fn decode_json(_body: &[u8]) -> Result<Decoded, WireError> { todo!() }
pub fn decode_proto(_body: &[u8]) -> Result<Decoded, WireError> { todo!() }
pub fn encode_json(_batch: &model::TraceBatch) -> Vec<u8> { todo!() }
