//! Helpers shared by the end-to-end test files (each `tests/*.rs` is its own
//! crate and includes this module with `mod common;`).
//!
//! Everything here prints the figures a reader of `--nocapture` output wants
//! (layer counts, sizes, which squash method ran) and panics with the whole
//! context when an expectation fails.

#![allow(dead_code)]

use std::io::Read;

use integration::compare::CompareOptions;
use integration::docker::{self, Store};
use integration::fs::FsModel;
use integration::image::{Image, Layer};
use integration::scenario::Outcome;
use serde_json::Value;

/// One layer, busybox-static.
pub const BUSYBOX: &str = "squash-test/busybox:latest";
/// Four layers: /base/big (5 MiB), /base/dir/{one,two}, /base/suid, /base/hl-{a,b}.
pub const LAYERS: &str = "squash-test/busybox-layers:latest";
/// debootstrap minbase, one layer.
pub const DEBIAN: &str = "squash-test/debian:bookworm";

pub const MIB: u64 = 1024 * 1024;
pub const KIB: u64 = 1024;

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

/// Sum of the layers' uncompressed tar sizes.
pub fn uncompressed(img: &Image) -> u64 {
    img.layers.iter().map(|l| l.uncompressed_size).sum()
}

/// Sum of the layers' blob sizes as stored in the archive.
pub fn stored(img: &Image) -> u64 {
    img.layers.iter().map(|l| l.size).sum()
}

/// `1.23 MiB (1289748 B)`.
pub fn human(bytes: u64) -> String {
    format!("{:.2} MiB ({bytes} B)", bytes as f64 / MIB as f64)
}

/// Prints an image's layer count and sizes.
pub fn describe(test: &str, side: &str, img: &Image) {
    let sizes: Vec<String> = img
        .layers
        .iter()
        .map(|l| format!("{}", l.uncompressed_size))
        .collect();
    println!(
        "[{test}] {side}: {} layer(s), {} uncompressed, {} stored; per layer (uncompressed B): [{}]",
        img.layers.len(),
        human(uncompressed(img)),
        human(stored(img)),
        sizes.join(", ")
    );
}

/// Prints both sides of an outcome.
pub fn describe_outcome(test: &str, out: &Outcome) {
    describe(test, "plain   ", &out.plain.image);
    describe(test, "squashed", &out.squashed.image);
}

/// Asserts filesystem and config of both sides are equal (mtimes not
/// compared), printing how many mtimes differ as information.
#[track_caller]
pub fn assert_same_fs_and_config(test: &str, out: &Outcome) {
    out.fs_report(&CompareOptions::new()).assert_empty();
    out.config_report().assert_empty();
    let with_mtimes = out.fs_report(&CompareOptions::new().mtimes(true));
    println!(
        "[{test}] fs and config equal ({} paths); mtime differences (not asserted): {}",
        out.plain.fs.len(),
        with_mtimes.len()
    );
    for d in with_mtimes.differences.iter().take(5) {
        println!("[{test}]   mtime: {d}");
    }
}

/// `docker run --rm IMAGE ARGS...` on both images: both must exit 0 and
/// print the same stdout and stderr. Returns stdout.
#[track_caller]
pub fn assert_same_run(test: &str, out: &Outcome, args: &[&str]) -> String {
    assert_same_run_on(test, &out.plain.tag, &out.squashed.tag, args)
}

/// [`assert_same_run`] for two tags.
#[track_caller]
pub fn assert_same_run_on(test: &str, plain: &str, squashed: &str, args: &[&str]) -> String {
    let (ps, pout, perr) = docker::run(plain, args);
    let (ss, sout, serr) = docker::run(squashed, args);
    assert!(
        ps.success(),
        "docker run of the plain image failed: {ps}\n{pout}\n{perr}"
    );
    assert!(
        ss.success(),
        "docker run of the squashed image failed: {ss}\n{sout}\n{serr}"
    );
    assert_eq!(pout, sout, "docker run stdout differs (plain, squashed)");
    assert_eq!(perr, serr, "docker run stderr differs (plain, squashed)");
    println!(
        "[{test}] docker run {args:?} printed the same on both ({} bytes):\n{}",
        sout.len(),
        indent(&sout)
    );
    sout
}

pub fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether a history entry is marked `empty_layer: true`.
pub fn is_empty_entry(h: &Value) -> bool {
    h.get("empty_layer").and_then(Value::as_bool) == Some(true)
}

pub fn created_by(h: &Value) -> &str {
    h.get("created_by").and_then(Value::as_str).unwrap_or("")
}

/// The squashed config history against the plain one: every plain entry is
/// kept in order with its `created_by`; the first `kept` layer entries stay
/// layer entries (the base's), every later one is marked empty; one new entry
/// at the end, not empty, whose `created_by` starts with `squash:`.
#[track_caller]
pub fn assert_squash_history(test: &str, plain: &Image, squashed: &Image, kept: usize) {
    let ph = plain.history();
    let sh = squashed.history();
    let show = |h: &[Value]| {
        h.iter()
            .map(|e| {
                format!(
                    "    {} {}",
                    if is_empty_entry(e) {
                        "(empty)"
                    } else {
                        "(layer)"
                    },
                    created_by(e)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let context = format!(
        "plain history:\n{}\nsquashed history:\n{}",
        show(&ph),
        show(&sh)
    );
    assert_eq!(
        sh.len(),
        ph.len() + 1,
        "the squashed history should be the plain one plus one entry\n{context}"
    );
    let mut layers_seen = 0;
    for (i, (p, s)) in ph.iter().zip(&sh).enumerate() {
        assert_eq!(
            created_by(p),
            created_by(s),
            "history entry {i} changed its created_by\n{context}"
        );
        if is_empty_entry(p) {
            assert!(
                is_empty_entry(s),
                "history entry {i} was empty and is not any more\n{context}"
            );
            continue;
        }
        if layers_seen < kept {
            assert!(
                !is_empty_entry(s),
                "history entry {i} belongs to a kept base layer but is marked empty\n{context}"
            );
        } else {
            assert!(
                is_empty_entry(s),
                "history entry {i} ({}) was squashed but is not marked empty_layer\n{context}",
                created_by(p)
            );
        }
        layers_seen += 1;
    }
    let last = sh.last().expect("non-empty history");
    assert!(
        !is_empty_entry(last) && created_by(last).starts_with("squash:"),
        "the last history entry should be the squashed layer's, created_by `squash: ...`\n{context}"
    );
    let non_empty = sh.iter().filter(|h| !is_empty_entry(h)).count();
    assert_eq!(non_empty, kept + 1, "{context}");
    assert_eq!(non_empty, squashed.layers.len(), "{context}");
    println!(
        "[{test}] history: {} plain entries, {} squashed entries, {} layer entries; last: {:?} ({:?})",
        ph.len(),
        sh.len(),
        non_empty,
        created_by(last),
        last.get("comment").and_then(Value::as_str).unwrap_or("")
    );
}

/// Paths and sizes of the entries of one layer tar, as stored.
pub fn layer_entries(layer: &Layer) -> Vec<(String, u64)> {
    let mut ar = tar::Archive::new(layer.open().expect("opening a layer"));
    let mut out = Vec::new();
    for e in ar.entries().expect("reading a layer tar") {
        let mut e = e.expect("reading a layer entry");
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let size = e.header().size().unwrap_or(0);
        // Drain (the archive reader needs the data consumed to go on).
        let mut sink = Vec::new();
        let _ = e.read_to_end(&mut sink);
        out.push((path, size));
    }
    out
}

/// Names of the children of a directory in a model.
pub fn children(fs: &FsModel, dir: &str) -> Vec<String> {
    let dir = integration::fs::FsPath::new(dir);
    fs.paths()
        .filter(|p| p.parent().as_ref() == Some(&dir) && !p.is_root())
        .map(|p| String::from_utf8_lossy(p.file_name()).into_owned())
        .collect()
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

/// Which squash graph a base-mode build used, from the build's progress
/// output: the diff method's vertices are named `squash: diff against the
/// base`; the sync method's step prints `squash-frontend sync:` (or is
/// cached under the summary name).
pub fn base_method_used(build_output: &str) -> &'static str {
    if build_output.contains("squash: diff against the base") {
        "diff"
    } else {
        "sync"
    }
}

/// Lines of a build's output that mention the squash.
pub fn squash_lines(build_output: &str) -> String {
    build_output
        .lines()
        .filter(|l| l.contains("squash"))
        .collect::<Vec<_>>()
        .join("\n")
}
