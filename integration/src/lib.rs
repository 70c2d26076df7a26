//! Test harness for the end-to-end tests of squash-frontend on a real engine.
//!
//! The end-to-end tests (in `integration/tests/*.rs`) build one Dockerfile
//! twice through `docker buildx build --load` — once plain, once with our
//! `# syntax=<frontend image>` line — and compare the two images. This crate
//! is the library they use; every module owns one concern and is unit-tested
//! on synthetic data, so the harness itself is known to work before an engine
//! is ever reached:
//!
//! * [`blob`] reads a layer blob's bytes (compression, digests, sizes);
//! * [`image`] is one saved image: config, layers with diffIDs, digests and
//!   sizes, and what is inconsistent in it;
//! * [`archive`] finds an image's pieces in what `docker save` and
//!   `--output type=oci` write;
//! * [`fs`] applies layers into an in-memory model of the resulting root
//!   filesystem (whiteouts, opaque directories, hardlinks, xattrs);
//! * [`compare`] diffs two filesystem models and two image configs into a
//!   readable report;
//! * [`docker`] wraps the docker CLI (engine check, build, save, run, ...);
//! * [`scenario`] ties them together: one Dockerfile, two builds, two
//!   images, two filesystem models.
//!
//! ```no_run
//! use integration::{compare::CompareOptions, docker, scenario::Scenario};
//!
//! docker::engine_or_panic();
//! let out = Scenario::new("copy_and_run", "FROM busybox\nRUN echo hi > /x\n")
//!     .frontend("localhost/squash-frontend:test")
//!     .run();
//! assert_eq!(out.squashed.image.layers.len(), 1);
//! out.fs_report(&CompareOptions::new()).assert_empty();
//! out.config_report().assert_empty();
//! ```

pub mod archive;
pub mod blob;
pub mod check;
pub mod compare;
pub mod context;
pub mod docker;
pub mod fixtures;
pub mod fs;
pub mod image;
pub mod progress;
pub mod scenario;
pub mod show;
mod store;

#[cfg(test)]
pub(crate) mod testutil;
