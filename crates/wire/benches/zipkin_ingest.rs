//! What the collector's Zipkin receiver does per report for a sink that takes OTLP bytes: a
//! Zipkin v2 JSON body in, an OTLP `ExportTraceServiceRequest` out. `direct` is the path it
//! takes (`decode_json_to_otlp`: the mapped spans written straight as OTLP); `through_model`
//! is the path it took before (`decode_json` into the model, then `encode_protobuf`), which
//! gives the same bytes. `decode_json` alone is there for scale.
//!
//! `cargo bench -p meshtrace-wire --bench zipkin_ingest` (figures in BENCHMARKS.md).
//!
//! The body is shaped like `meshtrace loadgen --zipkin`'s: 512 spans of a mesh's traces from
//! five services, written by `wire::zipkin::encode_json` as loadgen writes them, so each span
//! has about 16 tags (the resource's and scope's among them) and a remote endpoint's IPv4.

mod shape;

use shape::SPANS;

fn main() {
    divan::main();
}

fn body() -> Vec<u8> {
    wire::zipkin::encode_json(&shape::loadgen_batch())
}

/// The collector's path: the report straight to OTLP bytes.
#[divan::bench]
fn direct(bencher: divan::Bencher) {
    let body = body();
    bencher
        .counter(divan::counter::ItemsCount::new(SPANS))
        .bench(|| wire::zipkin::decode_json_to_otlp(divan::black_box(&body)).map(|r| r.bytes));
}

/// The path before: the report into the model, the model to OTLP bytes.
#[divan::bench]
fn through_model(bencher: divan::Bencher) {
    let body = body();
    bencher
        .counter(divan::counter::ItemsCount::new(SPANS))
        .bench(|| {
            wire::zipkin::decode_json(divan::black_box(&body))
                .map(|d| wire::otlp::encode_protobuf(&d.batch))
        });
}

/// The report into the model only (what a sink that needs the model gets).
#[divan::bench]
fn decode_json(bencher: divan::Bencher) {
    let body = body();
    bencher
        .counter(divan::counter::ItemsCount::new(SPANS))
        .bench(|| wire::zipkin::decode_json(divan::black_box(&body)).map(|d| d.batch));
}
