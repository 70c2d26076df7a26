//! Test harness for the end-to-end tests of squash-frontend on a real engine.
//!
//! The end-to-end tests (in `integration/tests/*.rs`) build one Dockerfile
//! twice through `docker buildx build --load` — once plain, once with our
//! `# syntax=<frontend image>` line — and compare the two images. This crate
//! is the library they use; every module owns one concern and everything that
//! can be is unit-tested on synthetic data, so the harness itself is known to
//! work before an engine is ever reached.
//!
//! # Layout
//!
//! Each module uses only modules listed above it:
//!
//! * [`blob`]: a layer blob's bytes (compression, digests, sizes);
//! * [`progress`]: what a build prints with `--progress=plain` (its steps,
//!   buildx's `ERROR` lines, the squash method that ran);
//! * [`calls`]: what `--call outline|targets|check` prints, without the
//!   lines a Dockerfile has on top of another;
//! * `store` (private): an archive's files, unpacked once to disk;
//! * [`image`]: one saved image: config, layers with diffIDs, digests and
//!   sizes, and what is inconsistent in it;
//! * [`archive`]: where an image's pieces are in what `docker save` and
//!   `--output type=oci` write;
//! * [`fs`]: the filesystem an image's layers add up to, as a model
//!   (whiteouts, opaque directories, hardlinks, xattrs);
//! * [`compare`]: two filesystem models and two image configs diffed into a
//!   readable report;
//! * [`docker`]: the docker CLI: the engine, the one way to run a build
//!   ([`docker::Buildx`]; a bake file's, [`docker::bake`]), save, run, remove,
//!   inspect;
//! * [`context`]: build contexts in temporary directories, unique image tags;
//! * [`scenario`]: one Dockerfile, two builds, two images, two filesystem
//!   models; one side built alone; the ways of squashing a store offers;
//! * [`show`]: how the tests print what they saw;
//! * [`check`]: the assertions the tests share, one rule each;
//! * [`fixtures`]: what the engine script prepares (the base images, the
//!   daemon's log).
//!
//! ```no_run
//! use integration::{check, compare::CompareOptions, docker, scenario::Scenario};
//!
//! docker::engine_or_panic();
//! let out = Scenario::new("copy_and_run", "FROM busybox\nRUN echo hi > /x\n")
//!     .frontend("localhost/squash-frontend:test")
//!     .run();
//! assert_eq!(out.squashed.image.layers.len(), 1);
//! check::assert_same("copy_and_run", &out.plain, &out.squashed, &CompareOptions::new());
//! ```

pub mod archive;
pub mod blob;
pub mod calls;
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
