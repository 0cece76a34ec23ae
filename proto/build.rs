//! Generates the Rust code for `endure-proto` from `proto/*.proto`.
//!
//! Uses `protox` (a pure-Rust protobuf compiler, so no `protoc` binary is
//! needed) to produce a `FileDescriptorSet`, then hands it to
//! `tonic-prost-build`, which writes prost messages into `OUT_DIR`, plus the
//! tonic client and server stubs only when the `grpc` feature is on (cargo
//! sets `CARGO_FEATURE_GRPC` for build scripts):
//!
//! * `_.rs` – the package-less `taskhub.proto` (Dapr protocol)
//! * `endure.internal.rs` – `internal.proto` (package `endure.internal`), only
//!   if that file exists; the cfg `endure_internal_proto` is then set.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = manifest_dir.join("proto");

    // A directory here makes cargo rerun us when any file in it changes,
    // including when `internal.proto` is added or removed.
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(endure_internal_proto)");

    let mut files = vec![proto_dir.join("taskhub.proto")];
    let internal = proto_dir.join("internal.proto");
    if internal.exists() {
        files.push(internal);
        println!("cargo:rustc-cfg=endure_internal_proto");
    }

    let fds = protox::compile(&files, [&proto_dir])?;

    // Without stubs the generated code names only `::prost` and `::prost_types`.
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();

    // `google.protobuf.*` map to `::prost_types::*` (the default, since
    // well-known types are not compiled).
    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        .generate_default_stubs(grpc)
        .compile_fds(fds)?;

    Ok(())
}
