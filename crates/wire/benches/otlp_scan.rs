//! How fast an OTLP request is checked without decoding it (`wire::otlp::scan`), against prost's
//! decode of the same bytes and `from_request`'s mapping into the model: the collector's byte
//! pipelines run the check on every request, so its cost per span bounds their throughput.
//!
//! `cargo bench -p meshtrace-wire --bench otlp_scan` (figures in BENCHMARKS.md).
//!
//! The request is shaped like `meshtrace loadgen`'s (see `shape`).

mod shape;

use prost::Message;
use shape::SPANS;

fn main() {
    divan::main();
}

fn request() -> Vec<u8> {
    wire::otlp::encode_protobuf(&shape::loadgen_batch())
}

/// The check every byte pipeline runs on a received request.
#[divan::bench]
fn scan(bencher: divan::Bencher) {
    let bytes = request();
    bencher
        .counter(divan::counter::ItemsCount::new(SPANS))
        .bench(|| wire::otlp::scan::scan(divan::black_box(&bytes)));
}

/// The sampler's second look at checked bytes: each span's ids, tracestate and priority key.
#[divan::bench]
fn walk_spans(bencher: divan::Bencher) {
    let bytes = request();
    bencher
        .counter(divan::counter::ItemsCount::new(SPANS))
        .bench(|| {
            let mut n = 0usize;
            let _ =
                wire::otlp::scan::walk_spans(divan::black_box(&bytes), "sampling.priority", |s| {
                    n += usize::from(s.valid)
                });
            n
        });
}

/// The ceiling the issue asks to report: prost decoding the same bytes.
#[divan::bench]
fn prost_decode(bencher: divan::Bencher) {
    let bytes = request();
    bencher
        .counter(divan::counter::ItemsCount::new(SPANS))
        .bench(|| wire::ExportTraceServiceRequest::decode(divan::black_box(&bytes[..])));
}
