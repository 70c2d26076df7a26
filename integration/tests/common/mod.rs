//! Helpers shared by the end-to-end test files (each `tests/*.rs` is its own
//! crate and includes this module with `mod common;`).
//!
//! Everything here prints the figures a reader of `--nocapture` output wants
//! (layer counts, sizes, which squash method ran) and panics with the whole
//! context when an expectation fails.

#![allow(dead_code)]

use std::path::Path;

use integration::context::TestContext;
use integration::docker::{self, Buildx, Store, BUILD_TIMEOUT};
use integration::progress::error_lines;
use integration::scenario::squash_dockerfile;
use integration::show::indent;

/// One layer, busybox-static.
pub const BUSYBOX: &str = "squash-test/busybox:latest";
/// Four layers: /base/big (5 MiB), /base/dir/{one,two}, /base/suid, /base/hl-{a,b}.
pub const LAYERS: &str = "squash-test/busybox-layers:latest";
/// debootstrap minbase, one layer.
pub const DEBIAN: &str = "squash-test/debian:bookworm";

/// Checks the engine (panics without one) and returns its store, printing it.
#[track_caller]
pub fn start(test: &str) -> Store {
    let engine = docker::engine_or_panic();
    let store = docker::store();
    println!(
        "[{test}] engine {} ({store:?} store), {}",
        engine.server_version, engine.buildx_version
    );
    store
}

/// Deterministic pseudo-random bytes (xorshift64*), for context files whose
/// content must be identical in both builds and not compressible.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `docker builder prune -af`: the whole build cache, for tests that need a
/// cold one.
#[track_caller]
pub fn prune_build_cache() {
    let out = docker::docker(&["builder", "prune", "-af"]);
    assert!(out.success(), "docker builder prune -af failed: {out}");
    println!(
        "    docker builder prune -af: {}",
        out.stdout.lines().last().unwrap_or("")
    );
}

/// `docker tag SRC DST`, panicking on failure.
#[track_caller]
pub fn tag_image(src: &str, dst: &str) {
    let out = docker::docker(&["tag", src, dst]);
    assert!(out.success(), "docker tag {src} {dst} failed: {out}");
}

/// Builds one body with and without our syntax line (same files, same
/// arguments) and asserts the engine refuses both with `needle` in the same
/// `ERROR` lines: a store limit that our line neither hides nor changes.
#[track_caller]
pub fn assert_refused_alike(
    test: &str,
    body: &str,
    files: &[(&str, &str)],
    args: &[&str],
    needle: &str,
) {
    let plain = TestContext::new(test, body);
    let squashed = TestContext::new(test, &squash_dockerfile(body));
    for (rel, content) in files {
        plain.write(rel, content);
        squashed.write(rel, content);
    }
    let p = Buildx::new(plain.path())
        .args(args)
        .timeout(BUILD_TIMEOUT)
        .run()
        .out;
    let s = Buildx::new(squashed.path())
        .args(args)
        .timeout(BUILD_TIMEOUT)
        .run()
        .out;
    for (side, out) in [("plain", &p), ("squashed", &s)] {
        out.assert_failure();
        assert!(
            out.stderr.contains(needle),
            "{side} build of {test}: expected the refusal {needle:?}:\n{out}"
        );
    }
    assert_eq!(p.status.code(), s.status.code(), "same exit status");
    assert_eq!(
        error_lines(&p.stderr),
        error_lines(&s.stderr),
        "the refusal differs with our syntax line"
    );
    println!(
        "[{test}] refused alike with and without our line ({}), args {args:?}:\n{}",
        p.status,
        indent(&error_lines(&s.stderr).join("\n"))
    );
}

// ---------------------------------------------------------------------------
// The daemon's log and what a refused build leaves behind
// ---------------------------------------------------------------------------

/// The engine's daemon log, where BuildKit sends the frontends' stderr:
/// `$SQUASH_DAEMON_LOG`, else `scripts/engine.sh`'s
/// `${SQUASH_ENGINE_STATE:-/var/tmp/squash-engine}/<mode>/dockerd.log`, the
/// mode from `$SQUASH_ENGINE_MODE` or the store.
pub fn daemon_log_path() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("SQUASH_DAEMON_LOG") {
        return p.into();
    }
    let state =
        std::env::var("SQUASH_ENGINE_STATE").unwrap_or_else(|_| "/var/tmp/squash-engine".into());
    let mode = std::env::var("SQUASH_ENGINE_MODE").unwrap_or_else(|_| {
        match docker::store() {
            Store::Classic => "classic",
            Store::Containerd => "c8d",
        }
        .into()
    });
    Path::new(&state).join(mode).join("dockerd.log")
}

/// A position in the daemon log, to read what was logged after it.
pub struct DaemonLog {
    path: std::path::PathBuf,
    offset: u64,
}

impl DaemonLog {
    /// The log's current end; panics if there is no log to read (set
    /// `SQUASH_DAEMON_LOG` for an engine not started by `scripts/engine.sh`).
    #[track_caller]
    pub fn mark() -> DaemonLog {
        let path = daemon_log_path();
        let offset = std::fs::metadata(&path)
            .unwrap_or_else(|e| {
                panic!(
                    "cannot read the daemon log {} ({e}); set SQUASH_DAEMON_LOG to the engine's log",
                    path.display()
                )
            })
            .len();
        DaemonLog { path, offset }
    }

    /// Everything logged since the mark (lossily decoded).
    pub fn since(&self) -> String {
        let data = std::fs::read(&self.path).unwrap_or_default();
        let from = (self.offset as usize).min(data.len());
        String::from_utf8_lossy(&data[from..]).into_owned()
    }

    /// Lines logged since the mark that hold `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.since()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// No process logged `panicked` (a Rust panic: our frontend or its
    /// in-build sync step) since the mark.
    #[track_caller]
    pub fn assert_no_panic(&self, test: &str) {
        let since = self.since();
        let lines: Vec<&str> = since.lines().collect();
        let hits: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].contains("panicked"))
            .collect();
        if let Some(&i) = hits.first() {
            let from = i.saturating_sub(3);
            let to = (i + 6).min(lines.len());
            panic!(
                "[{test}] the daemon log {} shows a panic ({} line(s) with `panicked`):\n{}",
                self.path.display(),
                hits.len(),
                indent(&lines[from..to].join("\n"))
            );
        }
        println!(
            "[{test}] daemon log: no panic in {} new line(s); our frontend's lines: {}",
            lines.len(),
            lines
                .iter()
                .filter(|l| l.starts_with("squash-frontend"))
                .count()
        );
    }
}
