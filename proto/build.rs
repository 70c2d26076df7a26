//! Generates the Rust bindings from our own `.proto` subset with a pure-Rust protobuf
//! compiler, so building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/pb/ops.proto",
        "proto/gateway/gateway.proto",
        "proto/google/rpc/status.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-changed=proto/gateway/caps.proto");
    println!("cargo:rerun-if-changed=proto/gateway/worker.proto");
    println!("cargo:rerun-if-changed=proto/fsutil/types/stat.proto");
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // Sorted map encoding: the bytes of the ops we build (and so their digests) are stable.
        .btree_map(".")
        .build_client(true)
        // The server side is only used by the frontend's protocol tests (a fake BuildKit).
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
