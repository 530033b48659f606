//! Generates the Zipkin proto3 types from proto/zipkin.proto with prost-build, using the protoc
//! that ships inside the `protoc-bin-vendored` crate (no system protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/zipkin.proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    // Sorted tag maps, so decoding is deterministic and matches the JSON path (sorted keys).
    config.btree_map(["."]);
    config.compile_protos(&["proto/zipkin.proto"], &["proto"])?;
    Ok(())
}
