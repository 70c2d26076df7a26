//! What every end-to-end test file shares (each `tests/*.rs` is its own
//! crate and includes this module with `mod common;`). The rest of what the
//! tests share is the harness library, where a helper one test file does not
//! use is no dead code.

use integration::docker::{self, Store};

/// Checks the engine (panics without one) and returns its store, printing it.
#[track_caller]
pub(crate) fn start(test: &str) -> Store {
    let engine = docker::engine_or_panic();
    let store = docker::store();
    println!(
        "[{test}] engine {} ({store:?} store), {}",
        engine.server_version, engine.buildx_version
    );
    store
}
