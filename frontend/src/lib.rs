//! squash-frontend: a BuildKit frontend that builds a Dockerfile with the engine's own
//! Dockerfile frontend and returns the result squashed, with the same image config.
//!
//! # Layout
//! - [`options`]: frontend options and the squash settings (option, build arg, directive).
//! - [`directives`]: reading `# squash=` directives from the Dockerfile's top comment block.
//! - [`llb`]: taking in received LLB graphs verbatim and appending our ops.
//! - [`base`]: finding the base image of the result in its graph.
//! - [`squash`]: planning the squash of one image (graph + config).
//! - [`config`]: rewriting the image config's history for the new layers.
//! - [`result`]: mapping the Dockerfile frontend's result (refs, metadata) to ours.
//! - [`gateway`]: the only module that knows gRPC: BuildKit's gateway API over stdio.
//! - [`run`]: the build flow: read settings, delegate, squash, return.
//!
//! Everything but `gateway` and `run` is pure: no I/O, unit-tested without an engine.

pub mod base;
pub mod config;
pub mod directives;
pub mod gateway;
pub mod llb;
pub mod options;
pub mod result;
pub mod run;
pub mod squash;
pub mod sync;
