//! squash-frontend: a BuildKit frontend that builds a Dockerfile with the engine's own
//! Dockerfile frontend and returns the result squashed, with the same image config.
//!
//! # Layout
//! - [`request`]: the frontend options, read once; the squash settings (option, build
//!   argument, directive).
//! - [`directives`]: reading `# squash=` directives from the Dockerfile's top comment block.
//! - [`llb`]: taking in received LLB graphs verbatim and building our own ops.
//! - [`base`]: finding the base image of the result in its graph.
//! - [`plan`]: planning the squash of one image (graph + config).
//! - [`scan`]: walking a mounted tree inside the build (what our in-build steps check).
//! - [`steps`]: our binary's in-build steps (`sync`, `inspect`, `account`): their command
//!   lines, the report and the sync over the mounted trees.
//! - [`upper`]: a layer the engine makes alone (FileOps), once the frontend has read through
//!   the gateway what the build changed.
//! - [`version`]: which squash-frontend this is.
//! - [`config`]: rewriting the image config's history for the new layers.
//! - [`report`]: what a squash reclaims, from the filesystem after each step.
//! - [`result`]: mapping the Dockerfile frontend's result (refs, metadata) to ours.
//! - [`gateway`]: the only module that knows gRPC: BuildKit's gateway API over stdio.
//! - [`flow`]: the build flow over the gateway: read, delegate, squash, return.
//! - `testkit` (feature `testkit`): sample graphs, configs and engine capabilities shared by
//!   the unit tests, the fake-BuildKit tests and the fuzz targets.
//!
//! Everything but `gateway`, `flow`, `scan` and `steps` is pure: no I/O, unit-tested without an
//! engine.

pub mod base;
pub mod config;
pub mod directives;
pub mod flow;
pub mod gateway;
pub mod llb;
pub mod plan;
pub mod report;
pub mod request;
pub mod result;
pub mod scan;
pub mod steps;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod upper;
pub mod version;
