//! What travels between pipeline stages: a decoded [`TraceBatch`], or the OTLP protobuf bytes a
//! receiver got ([`OtlpBytes`]), decoded only when a stage needs the model.
//!
//! Why: for OTLP in → (`batch`) → OTLP out, decoding every request into the model and encoding
//! it again was nearly all the collector's CPU (5.4 µs/span against ~1 µs for a bare prost
//! decode). Protobuf concatenation of two serialized `ExportTraceServiceRequest`s is itself a
//! valid request holding both messages' `resource_spans` (a repeated field), so a pipeline that
//! does not read or change spans can merge and forward the bytes as they came.
//!
//! Who sees which form:
//! - A receiver's sink sends [`Payload::Otlp`] only to pipelines whose stages all say
//!   [`Consumer::accepts_otlp`](crate::consumer::Consumer::accepts_otlp) (no processor but
//!   `batch`, `memory_limiter` or `probabilistic_sampler`, and exporters that speak OTLP
//!   protobuf), and only when the bytes hold exactly the spans the receiver accepted: a request
//!   with spans refused as invalid still carries them in its bytes, so it goes on decoded and
//!   the invalid spans stay out. When every pipeline of a receiver takes bytes, the receiver
//!   does not decode at all: it checks OTLP protobuf requests with `wire::otlp::scan`
//!   ([`receiver::Needs::OtlpBytes`]).
//! - Any other stage gets a decoded batch: [`Consumer::consume_payload`]'s default decodes
//!   (`crate::consumer::Consumer::consume_payload`), as does
//!   [`Export::export_payload`](crate::exporter::Export::export_payload).
//! - `batch` merges bytes by concatenation (span counts are known, so `send_batch_size` and
//!   `send_batch_max_size` hold); a decoded batch joining raw ones is encoded (the exporter
//!   would have encoded it anyway).
//! - A persistent queue stores OTLP protobuf either way and replays the bytes.

use bytes::{Bytes, BytesMut};
use model::TraceBatch;

/// A batch of spans in whichever form the previous stage had it.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Batch(TraceBatch),
    Otlp(OtlpBytes),
}

impl Default for Payload {
    fn default() -> Self {
        Self::Batch(TraceBatch::default())
    }
}

impl From<TraceBatch> for Payload {
    fn from(b: TraceBatch) -> Self {
        Self::Batch(b)
    }
}

impl Payload {
    pub fn span_count(&self) -> usize {
        match self {
            Self::Batch(b) => b.span_count(),
            Self::Otlp(o) => o.span_count(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.span_count() == 0
    }

    /// The model form, decoding the bytes if need be.
    pub fn into_batch(self) -> Result<TraceBatch, String> {
        match self {
            Self::Batch(b) => Ok(b),
            Self::Otlp(o) => o.decode(),
        }
    }
}

/// OTLP protobuf `ExportTraceServiceRequest` bytes (already decompressed), as one or more
/// concatenated requests, each with the number of spans it holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OtlpBytes {
    chunks: Vec<(Bytes, usize)>,
    spans: usize,
}

impl OtlpBytes {
    /// Wraps a request body, counting its spans (without decoding them where the scan can). An
    /// error if the bytes are not a request.
    pub fn new(bytes: Bytes) -> Result<Self, String> {
        let spans = wire::otlp::scan::count_spans(&bytes).map_err(|e| e.to_string())?;
        Ok(Self::counted(bytes, spans))
    }

    /// Wraps a request a receiver checked (every span valid).
    pub fn checked(request: receiver::CheckedOtlp) -> Self {
        Self::counted(request.bytes, request.spans)
    }

    fn counted(bytes: Bytes, spans: usize) -> Self {
        Self {
            chunks: vec![(bytes, spans)],
            spans,
        }
    }

    /// Encodes a decoded batch.
    pub fn encode(batch: &TraceBatch) -> Self {
        let spans = batch.span_count();
        Self {
            chunks: vec![(Bytes::from(wire::otlp::encode_protobuf(batch)), spans)],
            spans,
        }
    }

    pub fn span_count(&self) -> usize {
        self.spans
    }

    /// Bytes in all.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|(b, _)| b.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The requests in order; their concatenation is one request.
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.chunks.iter().map(|(b, _)| b)
    }

    /// All the bytes as one request.
    pub fn to_bytes(&self) -> Bytes {
        if let [(b, _)] = self.chunks.as_slice() {
            return b.clone();
        }
        let mut out = BytesMut::with_capacity(self.len());
        for b in self.chunks() {
            out.extend_from_slice(b);
        }
        out.freeze()
    }

    /// Appends `other`'s requests after this one's.
    pub fn append(&mut self, other: OtlpBytes) {
        self.spans += other.spans;
        self.chunks.extend(other.chunks);
    }

    /// Decodes into the model (spans with invalid ids are left out, as the receivers do).
    pub fn decode(&self) -> Result<TraceBatch, String> {
        wire::otlp::decode_protobuf(&self.to_bytes())
            .map(|d| d.batch)
            .map_err(|e| e.to_string())
    }

    /// Takes whole requests from the front while they hold at most `n` spans in all. When the
    /// first alone holds more, it is decoded and split, and the rest of it is put back encoded.
    pub fn take(&mut self, n: usize) -> Payload {
        if self.spans <= n {
            return Payload::Otlp(std::mem::take(self));
        }
        let mut taken = 0;
        let mut k = 0;
        while k < self.chunks.len() && taken + self.chunks[k].1 <= n {
            taken += self.chunks[k].1;
            k += 1;
        }
        if k > 0 {
            let rest = self.chunks.split_off(k);
            let head = std::mem::replace(&mut self.chunks, rest);
            self.spans -= taken;
            return Payload::Otlp(OtlpBytes {
                chunks: head,
                spans: taken,
            });
        }
        let (first, first_spans) = self.chunks.remove(0);
        self.spans -= first_spans;
        let mut batch = match wire::otlp::decode_protobuf(&first) {
            Ok(d) => d.batch,
            Err(e) => {
                tracing::error!("undecodable OTLP bytes in a batch, dropped: {e}");
                return Payload::default();
            }
        };
        let out = crate::processor::batch::take_spans(&mut batch, n);
        if !batch.is_empty() {
            let rest = OtlpBytes::encode(&batch);
            self.spans += rest.spans;
            self.chunks
                .insert(0, rest.chunks.into_iter().next().unwrap_or_default());
        }
        Payload::Batch(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{ResourceSpans, ScopeSpans, Span, SpanId, TraceId};

    fn batch(first: u64, n: u64) -> TraceBatch {
        TraceBatch {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: (first..first + n)
                        .map(|i| Span {
                            trace_id: TraceId::from_halves(1, i),
                            span_id: SpanId::from_u64(i),
                            name: format!("s{i}"),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn counts_spans_without_decoding_and_concatenation_is_a_request() {
        let a = OtlpBytes::encode(&batch(1, 3));
        let b = OtlpBytes::encode(&batch(4, 2));
        assert_eq!(OtlpBytes::new(a.to_bytes()).unwrap().span_count(), 3);
        let mut both = a.clone();
        both.append(b);
        assert_eq!(both.span_count(), 5);
        assert_eq!(OtlpBytes::new(both.to_bytes()).unwrap().span_count(), 5);
        let mut want = batch(1, 3);
        want.resource_spans.extend(batch(4, 2).resource_spans);
        assert_eq!(both.decode().unwrap(), want);
        assert!(OtlpBytes::new(Bytes::from_static(&[0x0a, 0x05, 0x01])).is_err());
    }

    #[test]
    fn take_respects_the_limit_at_request_boundaries_and_splits_a_large_one() {
        let mut p = OtlpBytes::encode(&batch(1, 2));
        p.append(OtlpBytes::encode(&batch(3, 2)));
        p.append(OtlpBytes::encode(&batch(5, 5)));
        let first = p.take(3);
        assert!(matches!(first, Payload::Otlp(_)));
        assert_eq!(first.span_count(), 2);
        assert_eq!(p.take(3).span_count(), 2);
        let split = p.take(3);
        assert_eq!(split.clone().into_batch().unwrap(), batch(5, 3));
        assert_eq!(p.span_count(), 2);
        assert_eq!(p.decode().unwrap(), batch(8, 2));
    }
}
