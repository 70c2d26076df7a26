//! Helpers shared by the end-to-end test files (each `tests/*.rs` is its own
//! crate and includes this module with `mod common;`).
//!
//! Everything here prints the figures a reader of `--nocapture` output wants
//! (layer counts, sizes, which squash method ran) and panics with the whole
//! context when an expectation fails.

#![allow(dead_code)]

use std::io::Read;
use std::path::Path;

use integration::compare::{self, CompareOptions};
use integration::context::TestContext;
use integration::docker::{self, Buildx, Store, BUILD_TIMEOUT};
use integration::fs::FsModel;
use integration::image::{Image, Layer};
use integration::progress::error_lines;
use integration::scenario::{squash_dockerfile, Built, Outcome};
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
    assert_same_built(test, &out.plain, &out.squashed);
}

/// [`assert_same_fs_and_config`] for two built sides (plain, squashed).
#[track_caller]
pub fn assert_same_built(test: &str, plain: &Built, squashed: &Built) {
    assert_same_models(test, &plain.fs, &plain.image, &squashed.fs, &squashed.image);
}

/// [`assert_same_fs_and_config`] for two images and their models (plain,
/// squashed), e.g. one platform of two OCI archives.
#[track_caller]
pub fn assert_same_models(
    test: &str,
    plain_fs: &FsModel,
    plain: &Image,
    squashed_fs: &FsModel,
    squashed: &Image,
) {
    let fs_report = |opts: &CompareOptions| {
        compare::compare_fs(plain_fs, squashed_fs, opts).with_names("plain", "squashed")
    };
    fs_report(&CompareOptions::new()).assert_empty();
    compare::compare_configs(&plain.config, &squashed.config)
        .with_names("plain", "squashed")
        .assert_empty();
    let with_mtimes = fs_report(&CompareOptions::new().mtimes(true));
    println!(
        "[{test}] fs and config equal ({} paths); mtime differences (not asserted): {}",
        plain_fs.len(),
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
    let p = docker::run(plain, args);
    let s = docker::run(squashed, args);
    assert!(p.success(), "docker run of the plain image failed: {p}");
    assert!(s.success(), "docker run of the squashed image failed: {s}");
    assert_eq!(
        p.stdout, s.stdout,
        "docker run stdout differs (plain, squashed)"
    );
    assert_eq!(
        p.stderr, s.stderr,
        "docker run stderr differs (plain, squashed)"
    );
    println!(
        "[{test}] docker run {args:?} printed the same on both ({} bytes):\n{}",
        s.stdout.len(),
        indent(&s.stdout)
    );
    s.stdout
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

/// Whether `haystack` holds `needle`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The layers (index, digest) whose uncompressed tar holds `needle`,
/// names and headers included.
pub fn layers_holding(img: &Image, needle: &[u8]) -> Vec<(usize, String)> {
    img.layers
        .iter()
        .filter(|l| {
            let mut data = Vec::new();
            l.open()
                .expect("opening a layer")
                .read_to_end(&mut data)
                .expect("reading a layer");
            contains_bytes(&data, needle)
        })
        .map(|l| (l.index, l.digest.clone()))
        .collect()
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

/// Whether `docker image inspect TAG` finds an image.
pub fn image_exists(tag: &str) -> bool {
    docker::docker(&["image", "inspect", "--format", "{{.Id}}", tag]).success()
}

/// Panics (after removing it) if an image is tagged `tag`.
#[track_caller]
pub fn assert_not_tagged(test: &str, tag: &str) {
    if image_exists(tag) {
        docker::rmi(&[tag]);
        panic!("[{test}] a failed build left an image tagged {tag}");
    }
}

/// The hex sha256 of some bytes (what [`FsModel`] entries hold).
pub fn sha256_hex(data: &[u8]) -> String {
    integration::blob::sha256_digest(data)
        .trim_start_matches("sha256:")
        .to_string()
}
