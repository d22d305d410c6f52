//! Compiles the public protobuf contracts with the pure-Rust `protox`
//! compiler, so building fstore (or a client) needs no system `protoc`:
//! fstore's own (`fstore.v1`) and the Feast serving API fstore also answers
//! (`feast.serving`, `feast.types`). The encoded descriptor set is kept for
//! gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The contract lives at the workspace root, beside the server that implements it.
    let protos = [
        "../../proto/fstore/v1/fstore.proto",
        "../../proto/feast/types/Value.proto",
        "../../proto/feast/serving/ServingService.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["../../proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("fstore_descriptor.bin"), prost::Message::encode_to_vec(&descriptors))?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(descriptors)?;
    Ok(())
}
