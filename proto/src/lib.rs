//! BuildKit protobuf bindings (work in progress).
