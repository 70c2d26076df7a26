//! Test harness for end-to-end tests on a real engine (work in progress).
