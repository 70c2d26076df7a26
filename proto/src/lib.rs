//! Rust bindings for the subset of BuildKit's gateway and LLB APIs that squash-frontend uses,
//! generated at build time from `proto/` (our own `.proto` files, BuildKit's names and field
//! numbers). See `proto/pb/ops.proto` for why `Definition` carries opaque bytes.
//!
//! The generated code refers to other packages by relative paths, so the modules mirror the
//! protobuf package tree; the short re-exports below are what the rest of the project uses.

#![allow(clippy::all, missing_docs, non_camel_case_types)]

/// LLB: BuildKit's build graph (`pb`).
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/pb.rs"));
}

/// `google.rpc`: the error carried by a failed RPC and by `Return`.
pub mod google {
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}

/// `fsutil.types`: the file metadata of the gateway's `ReadDir`.
pub mod fsutil {
    pub mod types {
        include!(concat!(env!("OUT_DIR"), "/fsutil.types.rs"));
    }
}

/// BuildKit's `moby.buildkit.v1.*` packages.
pub mod moby {
    pub mod buildkit {
        pub mod v1 {
            pub mod apicaps {
                include!(concat!(env!("OUT_DIR"), "/moby.buildkit.v1.apicaps.rs"));
            }
            pub mod types {
                include!(concat!(env!("OUT_DIR"), "/moby.buildkit.v1.types.rs"));
            }
            pub mod frontend {
                include!(concat!(env!("OUT_DIR"), "/moby.buildkit.v1.frontend.rs"));
            }
        }
    }
}

pub use google::rpc;
pub use moby::buildkit::v1::apicaps;
pub use moby::buildkit::v1::frontend as gateway;
pub use moby::buildkit::v1::types;
pub use prost;
pub use prost::Message;
