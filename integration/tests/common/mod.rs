//! Helpers shared by the end-to-end test files (each `tests/*.rs` is its own
//! crate and includes this module with `mod common;`).
//!
//! Everything here prints the figures a reader of `--nocapture` output wants
//! (layer counts, sizes, which squash method ran) and panics with the whole
//! context when an expectation fails.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration::compare::{self, CompareOptions};
use integration::docker::{self, BuildOutput, Store, TestContext};
use integration::fs::FsModel;
use integration::image::{Image, Layer};
use integration::scenario::{frontend_image_from_env, Built, Outcome};
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

// ---------------------------------------------------------------------------
// Builds the scenario does not cover (stdin, timeouts, OCI output, refusals)
// ---------------------------------------------------------------------------

/// A body with our `# syntax=` line on top.
pub fn squash_dockerfile(body: &str) -> String {
    format!("# syntax={}\n{body}", frontend_image_from_env())
}

/// Longest a single build may take before [`buildx`] ends it; far above
/// anything the tests build (seconds), so that a hanging build fails the test
/// instead of the whole run.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(180);

/// What [`buildx`] gave.
#[derive(Debug)]
pub struct Run {
    pub out: BuildOutput,
    pub elapsed: Duration,
    /// The build was still running after its timeout and was ended.
    pub timed_out: bool,
}

/// `docker buildx build --progress=plain ARGS... DIR`, like
/// [`integration::docker::build`] (with `BUILDX_NO_DEFAULT_ATTESTATIONS=1`),
/// plus: `stdin` written to the client's standard input (for `-f -`), extra
/// environment variables, the wall time, and a timeout after which the
/// client (the process started here, by its id) is killed, which cancels the
/// build.
#[track_caller]
pub fn buildx(
    dir: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Run {
    let mut cmd = Command::new(docker::DOCKER);
    cmd.args(["buildx", "build", "--progress=plain"])
        .args(args)
        .arg(dir)
        .env("BUILDX_NO_DEFAULT_ATTESTATIONS", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {cmd:?}: {e}"));
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let mut out_pipe = child.stdout.take().expect("stdout is piped");
    let mut err_pipe = child.stderr.take().expect("stderr is piped");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let mut timed_out = false;
    let status = loop {
        match child.try_wait().expect("waiting for docker buildx") {
            Some(status) => break status,
            None if started.elapsed() > timeout => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("waiting for the killed docker buildx");
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let elapsed = started.elapsed();
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let mut stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    if timed_out {
        stderr.push_str(&format!(
            "\n[test harness] the build was still running after {timeout:?} and was killed\n"
        ));
    }
    Run {
        out: BuildOutput {
            status,
            stdout,
            stderr,
        },
        elapsed,
        timed_out,
    }
}

/// Builds `context` with `--load -t <unique tag> ARGS...` (and `stdin`),
/// saves, verifies and models the image, like one side of a
/// [`integration::scenario::Scenario`]; panics with the output if the build
/// fails.
#[track_caller]
pub fn load_built(side: &str, context: TestContext, args: &[&str], stdin: Option<&[u8]>) -> Built {
    load_built_timed(side, context, args, stdin).0
}

/// [`load_built`], with the build's wall time (the build alone, not the
/// saving and modelling).
#[track_caller]
pub fn load_built_timed(
    side: &str,
    context: TestContext,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> (Built, Duration) {
    let tag = context.tag(side);
    let mut argv = vec!["--load", "-t", tag.as_str()];
    argv.extend_from_slice(args);
    let run = buildx(context.path(), &argv, stdin, &[], BUILD_TIMEOUT);
    if !run.out.success() {
        docker::rmi(&[&tag]);
        panic!(
            "the {side} build of {} failed after {:.1?}.\nDockerfile:\n{}\n{}",
            context.name(),
            run.elapsed,
            String::from_utf8_lossy(&stdin.map(<[u8]>::to_vec).unwrap_or_else(|| {
                std::fs::read(context.path().join("Dockerfile")).unwrap_or_default()
            })),
            run.out
        );
    }
    match Built::load(tag, context, run.out) {
        Ok(built) => (built, run.elapsed),
        Err((tag, e)) => {
            docker::rmi(&[&tag]);
            panic!("the {side} image {tag}: {e:#}");
        }
    }
}

/// Removes its image tags when dropped.
pub struct TagGuard(pub Vec<String>);

impl Drop for TagGuard {
    fn drop(&mut self) {
        let tags: Vec<&str> = self.0.iter().map(String::as_str).collect();
        docker::rmi(&tags);
    }
}

/// Two sides built by [`load_built`]; the images are removed when dropped.
pub struct Pair {
    pub plain: Built,
    pub squashed: Built,
}

impl Drop for Pair {
    fn drop(&mut self) {
        docker::rmi(&[&self.plain.tag, &self.squashed.tag]);
    }
}

/// One step of a build's `--progress=plain` output: `#N <name>`, then
/// `#N CACHED`, `#N DONE 0.1s` or `#N ERROR: ...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: String,
    pub name: String,
    pub cached: bool,
    pub done: bool,
    pub error: bool,
    /// The time a `DONE 1.2s` line gave.
    pub seconds: Option<f64>,
}

/// The progress name of full mode's empty root (an input-less FileOp on scratch, the lower
/// side of the diff). BuildKit shows an op without inputs as run (`DONE 0.0s`) on every
/// build, as it shows sources; making an empty snapshot is no work.
pub const EMPTY_ROOT_STEP: &str = "squash: an empty root";

impl Step {
    /// Cached, or the empty root done at once: nothing of the squash was computed again.
    pub fn reused(&self) -> bool {
        self.cached
            || (self.name == EMPTY_ROOT_STEP && self.done && self.seconds.is_some_and(|s| s < 0.5))
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.cached {
            "CACHED".to_string()
        } else if self.error {
            "ERROR".to_string()
        } else if let (true, Some(s)) = (self.done, self.seconds) {
            format!("DONE {s:.1}s")
        } else if self.done {
            "DONE".to_string()
        } else {
            "(no end)".to_string()
        };
        write!(f, "#{} {} => {state}", self.id, self.name)
    }
}

/// The steps of a build's plain progress output, in order of appearance.
pub fn steps(build_output: &str) -> Vec<Step> {
    let mut order: Vec<String> = Vec::new();
    let mut by_id: HashMap<String, Step> = HashMap::new();
    for line in build_output.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((id, text)) = rest.split_once(' ') else {
            continue;
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        match by_id.get_mut(id) {
            None => {
                order.push(id.to_string());
                by_id.insert(
                    id.to_string(),
                    Step {
                        id: id.to_string(),
                        name: text.to_string(),
                        cached: false,
                        done: false,
                        error: false,
                        seconds: None,
                    },
                );
            }
            Some(step) => {
                if text == "CACHED" {
                    step.cached = true;
                } else if text == "DONE" || text.starts_with("DONE ") {
                    step.done = true;
                    step.seconds = text
                        .strip_prefix("DONE ")
                        .and_then(|t| t.trim().strip_suffix('s'))
                        .and_then(|t| t.parse().ok());
                } else if text.starts_with("ERROR") {
                    step.error = true;
                }
            }
        }
    }
    order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect()
}

/// Our squash steps (named `squash: ...`).
pub fn squash_steps(build_output: &str) -> Vec<Step> {
    steps(build_output)
        .into_iter()
        .filter(|s| s.name.starts_with("squash:"))
        .collect()
}

/// The Dockerfile's RUN and COPY steps (`[2/3] RUN ...`, `[stage 1/2] COPY ...`).
pub fn run_copy_steps(build_output: &str) -> Vec<Step> {
    steps(build_output)
        .into_iter()
        .filter(|s| {
            s.name.starts_with('[')
                && s.name
                    .split_once("] ")
                    .is_some_and(|(_, rest)| rest.starts_with("RUN ") || rest.starts_with("COPY "))
        })
        .collect()
}

/// Every step, one a line, for messages.
pub fn show_steps(list: &[Step]) -> String {
    list.iter()
        .map(|s| format!("    {s}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `ERROR...` lines of a build's output.
pub fn error_lines_of(out: &BuildOutput) -> Vec<String> {
    out.stderr
        .lines()
        .filter(|l| l.starts_with("ERROR"))
        .map(str::to_string)
        .collect()
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
    let p = buildx(plain.path(), args, None, &[], BUILD_TIMEOUT).out;
    let s = buildx(squashed.path(), args, None, &[], BUILD_TIMEOUT).out;
    for (side, out) in [("plain", &p), ("squashed", &s)] {
        out.assert_failure();
        assert!(
            out.stderr.contains(needle),
            "{side} build of {test}: expected the refusal {needle:?}:\n{out}"
        );
    }
    assert_eq!(p.status.code(), s.status.code(), "same exit status");
    assert_eq!(
        error_lines_of(&p),
        error_lines_of(&s),
        "the refusal differs with our syntax line"
    );
    println!(
        "[{test}] refused alike with and without our line ({}), args {args:?}:\n{}",
        p.status,
        indent(&error_lines_of(&s).join("\n"))
    );
}

// ---------------------------------------------------------------------------
// The daemon's log and what a refused build leaves behind
// ---------------------------------------------------------------------------

/// The engine's daemon log, where BuildKit sends the frontends' stderr:
/// `$SQUASH_DAEMON_LOG` (which `scripts/engine.sh` exports), else that
/// script's `${SQUASH_ENGINE_STATE:-/var/tmp/squash-engine}/<engine>-<mode>/dockerd.log`,
/// the engine from `$SQUASH_ENGINE` (default 26), the mode from
/// `$SQUASH_ENGINE_MODE` or the store.
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
    let engine = std::env::var("SQUASH_ENGINE").unwrap_or_else(|_| "26".into());
    Path::new(&state)
        .join(format!("{engine}-{mode}"))
        .join("dockerd.log")
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
    integration::image::sha256_digest(data)
        .trim_start_matches("sha256:")
        .to_string()
}
