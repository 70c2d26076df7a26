//! Thin wrappers over the docker CLI, for tests that need a real engine.
//!
//! This module owns *talking to the engine*. Every call is a
//! [`std::process::Command`] with an argument vector (never a shell string),
//! inheriting the process environment: the task runner that starts the
//! engine sets `DOCKER_HOST`, `DOCKER_CONFIG` and `PATH`, and nothing here
//! overrides them. Every build goes through [`Buildx`], with
//! `BUILDX_NO_DEFAULT_ATTESTATIONS=1` so that `--load`ed images carry no
//! provenance manifests.
//!
//! Failures of the *harness* (docker missing, engine unreachable, `docker
//! save` failing) panic with the command's stderr: the end-to-end tests must
//! never pass silently without an engine, which is why every test starts with
//! [`engine_or_panic`]. Failures of the *thing under test* (a build that
//! fails) are returned ([`CmdOutput`]) so tests can assert on them.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::archive::Archive;
use crate::image::Image;

/// The docker CLI, found on `PATH`.
pub const DOCKER: &str = "docker";

/// What a docker command gave.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output (lossily decoded).
    pub stdout: String,
    /// Standard error (lossily decoded; buildx writes its progress here).
    pub stderr: String,
}

/// What `docker buildx build` gave.
pub type BuildOutput = CmdOutput;

impl CmdOutput {
    /// Whether the command exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with the whole output unless the command exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        if !self.success() {
            panic!("command failed: {self}");
        }
        self
    }

    /// Panics with the whole output if the command exited 0.
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        if self.success() {
            panic!("command succeeded but should have failed: {self}");
        }
        self
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.status)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

fn run_command(mut cmd: Command) -> Result<CmdOutput> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("could not start {shown} (is docker on PATH?)"))?;
    Ok(CmdOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn command<S: AsRef<OsStr>>(program: &OsStr, args: &[S]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

/// Runs `docker ARGS...` and returns what it gave; panics only if docker
/// cannot be started.
#[track_caller]
pub fn docker<S: AsRef<OsStr>>(args: &[S]) -> CmdOutput {
    run_command(command(OsStr::new(DOCKER), args)).unwrap_or_else(|e| panic!("{e:#}"))
}

#[track_caller]
fn docker_ok<S: AsRef<OsStr>>(args: &[S]) -> CmdOutput {
    let out = docker(args);
    if !out.success() {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        panic!("`docker {}` failed: {out}", shown.join(" "));
    }
    out
}

// ---------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------

/// Versions of the reachable engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    /// `docker version`'s server version.
    pub server_version: String,
    /// `docker buildx version`'s first line.
    pub buildx_version: String,
}

impl Engine {
    /// The server's release (`26.1.5+dfsg1` is 26.1.5); `None` if it names none.
    pub fn server(&self) -> Option<Version> {
        Version::find(&self.server_version)
    }

    /// The buildx client's release, read from `docker buildx version`
    /// (`github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1-3` or
    /// `github.com/docker/buildx v0.14.1 abc`); `None` if it names none.
    pub fn buildx(&self) -> Option<Version> {
        Version::find(&self.buildx_version)
    }

    /// `Docker 26.1.5 with buildx 0.13.1`, for messages.
    pub fn label(&self) -> String {
        let shown =
            |v: Option<Version>, raw: &str| v.map_or_else(|| raw.to_owned(), |v| v.to_string());
        format!(
            "Docker {} with buildx {}",
            shown(self.server(), &self.server_version),
            shown(self.buildx(), &self.buildx_version)
        )
    }
}

/// A release number, `major.minor.patch`, ordered as releases are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// The first number.
    pub major: u32,
    /// The second number.
    pub minor: u32,
    /// The third number (0 when the version has two).
    pub patch: u32,
}

impl Version {
    /// `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// The first word of `s` that starts with a release number (an optional
    /// `v`, then `N.N` or `N.N.N`, then anything not a digit or dot, such as
    /// a Debian revision `+ds1`).
    pub fn find(s: &str) -> Option<Version> {
        s.split_whitespace().find_map(Version::parse_word)
    }

    fn parse_word(word: &str) -> Option<Version> {
        let word = word.strip_prefix('v').unwrap_or(word);
        let end = word
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(word.len());
        let numbers: Vec<&str> = word[..end].split('.').collect();
        let number = |i: usize| -> Option<u32> { numbers.get(i)?.parse().ok() };
        match numbers.len() {
            2 => Some(Version::new(number(0)?, number(1)?, 0)),
            3 => Some(Version::new(number(0)?, number(1)?, number(2)?)),
            _ => None,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

// ---------------------------------------------------------------------------
// What the buildx client offers
// ---------------------------------------------------------------------------

/// The buildx of the project's newer engine generation (Docker 28.5,
/// `scripts/engine.sh start 28`): it has every [`BuildxFeature`], so a test
/// never skips one there.
pub const NEWER_BUILDX: Version = Version::new(0, 29, 0);

/// Something a buildx client has or lacks, by release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildxFeature {
    /// `docker buildx build --call outline|targets|check`.
    Call,
    /// `docker buildx build --check` (the same as `--call check`).
    Check,
    /// `docker buildx build --annotation`.
    Annotation,
    /// `docker buildx history ls|inspect|logs`.
    History,
}

impl BuildxFeature {
    /// What the feature is, as a user types it.
    pub fn what(self) -> &'static str {
        match self {
            BuildxFeature::Call => "docker buildx build --call",
            BuildxFeature::Check => "docker buildx build --check",
            BuildxFeature::Annotation => "docker buildx build --annotation",
            BuildxFeature::History => "docker buildx history",
        }
    }

    /// Whether buildx's own help lists it: `build_help` is `docker buildx
    /// build --help`'s output, `buildx_help` `docker buildx --help`'s. Help,
    /// not a try: an unknown `docker buildx` subcommand prints the usage and
    /// exits 0 on buildx 0.13.
    pub fn listed(self, build_help: &str, buildx_help: &str) -> bool {
        let flag = |name: &str| {
            build_help.lines().any(|l| {
                l.split([' ', ','])
                    .any(|w| w == name || w.starts_with(&format!("{name}=")))
            })
        };
        match self {
            BuildxFeature::Call => flag("--call"),
            BuildxFeature::Check => flag("--check"),
            BuildxFeature::Annotation => flag("--annotation"),
            BuildxFeature::History => buildx_help.lines().any(|l| {
                let l = l.trim_start();
                l.split_whitespace().next() == Some("history") && l.len() > "history".len()
            }),
        }
    }
}

/// Whether the engine's buildx offers `feature`, from its own help texts
/// (read once per process): `Ok(())`, or `Err` with a sentence naming the
/// engine and what it lacks, for a test to print as it skips that part.
/// **Panics** if a buildx of [`NEWER_BUILDX`] or later lacks it, so that no
/// test can skip on the engine it is written for.
#[track_caller]
pub fn buildx_offers(feature: BuildxFeature) -> std::result::Result<(), String> {
    static HELP: OnceLock<(String, String)> = OnceLock::new();
    let engine = engine_or_panic();
    let (build_help, buildx_help) = HELP.get_or_init(|| {
        let build = docker_ok(&["buildx", "build", "--help"]);
        let buildx = docker_ok(&["buildx", "--help"]);
        (
            format!("{}{}", build.stdout, build.stderr),
            format!("{}{}", buildx.stdout, buildx.stderr),
        )
    });
    offered(feature, &engine, build_help, buildx_help)
}

fn offered(
    feature: BuildxFeature,
    engine: &Engine,
    build_help: &str,
    buildx_help: &str,
) -> std::result::Result<(), String> {
    if feature.listed(build_help, buildx_help) {
        return Ok(());
    }
    if engine.buildx().is_none_or(|v| v >= NEWER_BUILDX) {
        panic!(
            "{} lacks `{}`, which every buildx from {NEWER_BUILDX} on has: the harness reads its help wrong, or this is not the engine the tests expect",
            engine.label(),
            feature.what()
        );
    }
    Err(format!(
        "{} has no `{}` (its help does not list it)",
        engine.label(),
        feature.what()
    ))
}

fn check_engine(program: &OsStr) -> std::result::Result<Engine, String> {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| "<unset>".into());
    let context = format!(
        "DOCKER_HOST={} DOCKER_CONFIG={} PATH={}",
        env("DOCKER_HOST"),
        env("DOCKER_CONFIG"),
        env("PATH")
    );
    let version = run_command(command(
        program,
        &["version", "--format", "{{.Server.Version}}"],
    ))
    .map_err(|e| format!("{e:#} ({context})"))?;
    let server_version = version.stdout.trim().to_owned();
    if !version.success() || server_version.is_empty() {
        return Err(format!(
            "`docker version` could not reach the engine ({context}): {version}"
        ));
    }
    let buildx = run_command(command(program, &["buildx", "version"]))
        .map_err(|e| format!("{e:#} ({context})"))?;
    if !buildx.success() {
        return Err(format!(
            "`docker buildx version` failed: buildx is not installed or not usable ({context}): {buildx}"
        ));
    }
    let buildx_version = buildx.stdout.lines().next().unwrap_or("").trim().to_owned();
    Ok(Engine {
        server_version,
        buildx_version,
    })
}

/// Checks that `docker version` reaches an engine and that `docker buildx`
/// works, once per process; **panics** with the reason otherwise, so that an
/// end-to-end test can never pass without an engine. Call it first in every
/// end-to-end test.
#[track_caller]
pub fn engine_or_panic() -> Engine {
    static ENGINE: OnceLock<std::result::Result<Engine, String>> = OnceLock::new();
    match ENGINE.get_or_init(|| check_engine(OsStr::new(DOCKER))) {
        Ok(engine) => engine.clone(),
        Err(why) => panic!(
            "no usable container engine, and the end-to-end tests refuse to pass without one: {why}"
        ),
    }
}

/// Which image store the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The classic graphdriver store (overlay2, ...).
    Classic,
    /// The containerd image store (snapshotters).
    Containerd,
}

/// Snapshotter names that no classic graphdriver uses.
const SNAPSHOTTER_ONLY: &[&str] = &["overlayfs", "native", "stargz", "devmapper"];

/// Decides the image store from `docker info --format '{{json .}}'`:
/// `DriverStatus` containing `["driver-type", "io.containerd.snapshotter.v1"]`
/// or a snapshotter-only driver name means containerd; any other driver
/// name, classic.
pub fn parse_store(info_json: &str) -> Result<Store> {
    let info: Value = serde_json::from_str(info_json).context("parsing `docker info` JSON")?;
    if let Some(status) = info.get("DriverStatus").and_then(Value::as_array) {
        for pair in status {
            let pair = pair.as_array().map(Vec::as_slice).unwrap_or(&[]);
            if let [k, v] = pair {
                if k.as_str() == Some("driver-type")
                    && v.as_str() == Some("io.containerd.snapshotter.v1")
                {
                    return Ok(Store::Containerd);
                }
            }
        }
    }
    match info.get("Driver").and_then(Value::as_str) {
        None | Some("") => {
            bail!("`docker info` names no storage driver (is the engine reachable?)")
        }
        Some(d) if SNAPSHOTTER_ONLY.contains(&d) => Ok(Store::Containerd),
        Some(_) => Ok(Store::Classic),
    }
}

/// The engine's image store; panics if `docker info` fails.
#[track_caller]
pub fn store() -> Store {
    let out = docker_ok(&["info", "--format", "{{json .}}"]);
    parse_store(&out.stdout).unwrap_or_else(|e| panic!("{e:#}"))
}

// ---------------------------------------------------------------------------
// Builds
// ---------------------------------------------------------------------------

/// A timeout for [`Buildx::timeout`] far above anything the tests build
/// (seconds), so that a hanging build fails its test instead of the whole run.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(180);

/// How often a running build is looked at for its end, timeout or cancel.
const POLL: Duration = Duration::from_millis(50);

/// Which line of a build's output [`Buildx::cancel_after`] waits for.
pub type LineFilter = fn(&str) -> bool;

/// One `docker buildx build --progress=plain ARGS... DIR`: the one way the
/// harness and the tests run a build (or `docker build ...`, see
/// [`Buildx::docker_build`]).
///
/// It runs with `BUILDX_NO_DEFAULT_ATTESTATIONS=1` (unless
/// [`Buildx::default_attestations`]) and an empty standard input (unless
/// [`Buildx::stdin`]). A failing build is returned, not a panic. The client
/// is the process started here, and only it is ended, by its handle: at the
/// [`Buildx::timeout`], or [`Buildx::cancel_after`] a line; ending the client
/// cancels the build.
#[derive(Debug, Clone)]
pub struct Buildx {
    dir: PathBuf,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    env: Vec<(String, String)>,
    default_attestations: bool,
    timeout: Option<Duration>,
    cancel: Option<(LineFilter, Duration)>,
    docker_build: bool,
}

/// What a [`Buildx`] run gave.
#[derive(Debug)]
pub struct Run {
    /// Exit status, stdout and stderr (buildx writes its progress there).
    pub out: BuildOutput,
    /// Wall time from the start of the client to its end.
    pub elapsed: Duration,
    /// The build was still running at its timeout and was ended.
    pub timed_out: bool,
    /// The build was still running [`Buildx::cancel_after`]'s delay after
    /// the line it waited for, and was ended.
    pub cancelled: bool,
}

impl Buildx {
    /// A build of the context directory `dir`, with no arguments yet.
    pub fn new(dir: &Path) -> Buildx {
        Buildx {
            dir: dir.to_path_buf(),
            args: Vec::new(),
            stdin: None,
            env: Vec::new(),
            default_attestations: false,
            timeout: None,
            cancel: None,
            docker_build: false,
        }
    }

    /// Runs `docker build` instead of `docker buildx build`, as a user who
    /// never types `buildx` does: the docker CLI hands the build to buildx
    /// when buildx is installed (both engine generations here), so the
    /// arguments and the output are buildx's.
    pub fn docker_build(mut self) -> Self {
        self.docker_build = true;
        self
    }

    /// Arguments after `--progress=plain`, before the context directory
    /// (`--load -t TAG`, `--output ...`, `--build-arg ...`); added in order.
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.args.extend(args.iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Written to the client's standard input (for `-f -`).
    pub fn stdin(mut self, data: &[u8]) -> Self {
        self.stdin = Some(data.to_vec());
        self
    }

    /// An environment variable for the client, on top of the process's own.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Leaves buildx's default attestations as they are (no
    /// `BUILDX_NO_DEFAULT_ATTESTATIONS`), as a user's own command would.
    pub fn default_attestations(mut self) -> Self {
        self.default_attestations = true;
        self
    }

    /// Ends the client if the build runs longer than `limit`.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Ends the client `delay` after the first line of its stderr that
    /// `line` accepts, if it is still running then. Once that line has come,
    /// the [`Buildx::timeout`] no longer applies.
    pub fn cancel_after(mut self, line: LineFilter, delay: Duration) -> Self {
        self.cancel = Some((line, delay));
        self
    }

    fn command(&self, program: &OsStr) -> Command {
        let mut cmd = Command::new(program);
        if !self.docker_build {
            cmd.arg("buildx");
        }
        cmd.args(["build", "--progress=plain"])
            .args(&self.args)
            .arg(&self.dir);
        if !self.default_attestations {
            cmd.env("BUILDX_NO_DEFAULT_ATTESTATIONS", "1");
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs the build to its end (or timeout, or cancel); panics only if
    /// docker cannot be started.
    #[track_caller]
    pub fn run(&self) -> Run {
        self.run_program(OsStr::new(DOCKER))
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Runs the build; once more if it failed on [`lost_parent_snapshot`],
    /// an engine race outside what the tests look at. The second run's
    /// stderr starts with a harness line that says so and with the first
    /// run's error line.
    fn run_program(&self, program: &OsStr) -> Result<Run> {
        let first = self.run_once(program)?;
        let lost = (!first.timed_out && !first.cancelled)
            .then(|| lost_parent_snapshot(&first.out))
            .flatten();
        let Some(line) = lost else {
            return Ok(first);
        };
        let note = format!(
            "[test harness] the engine lost a parent snapshot while unpacking the result into \
             its image store, so the build ran once more; the first run's error:\n{line}\n"
        );
        println!("{}", note.trim_end());
        let mut again = self.run_once(program)?;
        again.out.stderr.insert_str(0, &note);
        Ok(again)
    }

    fn run_once(&self, program: &OsStr) -> Result<Run> {
        let mut cmd = self.command(program);
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start {cmd:?} (is docker on PATH?)"))?;
        let writer = match (&self.stdin, child.stdin.take()) {
            (Some(data), Some(mut pipe)) => {
                let data = data.clone();
                Some(thread::spawn(move || {
                    let _ = pipe.write_all(&data);
                }))
            }
            _ => None,
        };
        let (seen_tx, seen_rx) = mpsc::channel();
        let stdout = read_pipe(child.stdout.take(), None);
        let watch = self.cancel.map(|(line, _)| (line, seen_tx));
        let stderr = read_pipe(child.stderr.take(), watch);
        let mut seen: Option<Instant> = None;
        let (mut timed_out, mut cancelled) = (false, false);
        let status = loop {
            if let Some(status) = child.try_wait().context("waiting for docker buildx")? {
                break status;
            }
            if seen.is_none() {
                seen = seen_rx.try_recv().ok();
            }
            let (deadline, cancelling) = match (seen, self.cancel) {
                (Some(at), Some((_, delay))) => (Some(at + delay), true),
                _ => (self.timeout.map(|limit| started + limit), false),
            };
            if deadline.is_some_and(|d| Instant::now() > d) {
                timed_out = !cancelling;
                cancelled = cancelling;
                let _ = child.kill();
                break child
                    .wait()
                    .context("waiting for the ended docker buildx")?;
            }
            thread::sleep(POLL);
        };
        let elapsed = started.elapsed();
        if let Some(w) = writer {
            let _ = w.join();
        }
        let stdout = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
        let mut stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
        if timed_out {
            let limit = self.timeout.unwrap_or_default();
            stderr.push_str(&format!(
                "\n[test harness] the build was still running after {limit:?} and was killed\n"
            ));
        }
        Ok(Run {
            out: CmdOutput {
                status,
                stdout,
                stderr,
            },
            elapsed,
            timed_out,
            cancelled,
        })
    }
}

/// The error line of a failed build that the engine's containerd image store
/// failed on while unpacking the result: `failed to prepare extraction
/// snapshot ...: parent snapshot ... does not exist`. Docker 26.1 with the
/// containerd store gave it once in about 400 builds, on a plain build (no
/// frontend of ours) while other tests removed images that shared layers with
/// it: containerd removed a snapshot that an unpack was about to use (a race
/// known upstream, e.g. containerd issue 3787). `None` for anything else,
/// (the caller leaves out builds that timed out or were cancelled).
fn lost_parent_snapshot(out: &CmdOutput) -> Option<&str> {
    if out.success() {
        return None;
    }
    out.stderr.lines().find(|l| {
        l.contains("failed to prepare extraction snapshot")
            && l.contains("parent snapshot")
            && l.contains("does not exist")
    })
}

/// Reads a pipe to its end in a thread. With `watch`, sends the time the
/// first line that `watch` accepts was read.
fn read_pipe(
    pipe: Option<impl Read + Send + 'static>,
    watch: Option<(LineFilter, mpsc::Sender<Instant>)>,
) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut all = Vec::new();
        let Some(pipe) = pipe else {
            return all;
        };
        let mut reader = io::BufReader::new(pipe);
        let mut watch = watch;
        loop {
            let from = all.len();
            match reader.read_until(b'\n', &mut all) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if let Some((accepts, seen)) = &watch {
                let line = String::from_utf8_lossy(&all[from..]);
                if accepts(line.trim_end_matches(['\n', '\r'])) {
                    let _ = seen.send(Instant::now());
                    watch = None;
                }
            }
        }
        all
    })
}

/// `docker buildx bake --progress=plain ARGS...` run in `dir` (where a bake file's relative
/// contexts start) with `env` added, and, as for [`Buildx`], no default attestations.
#[track_caller]
pub fn bake(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> CmdOutput {
    let once = || {
        let mut cmd = command(OsStr::new(DOCKER), &["buildx", "bake", "--progress=plain"]);
        cmd.args(args)
            .current_dir(dir)
            .env("BUILDX_NO_DEFAULT_ATTESTATIONS", "1")
            .envs(env.iter().copied());
        run_command(cmd).unwrap_or_else(|e| panic!("{e:#}"))
    };
    // Once more after the engine race of [`lost_parent_snapshot`], as [`Buildx`] does: once.
    let out = once();
    match lost_parent_snapshot(&out) {
        None => out,
        Some(line) => {
            println!("[test harness] bake ran once more, after: {line}");
            once()
        }
    }
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

/// `docker save IMAGE` into a temporary file, read with [`Archive::image`].
pub fn try_save(image: &str) -> Result<Image> {
    let dir = tempfile::Builder::new()
        .prefix("squash-e2e-save-")
        .tempdir()?;
    let file = dir.path().join("image.tar");
    let out = run_command(command(
        OsStr::new(DOCKER),
        &[
            OsStr::new("save"),
            OsStr::new("-o"),
            file.as_os_str(),
            OsStr::new(image),
        ],
    ))?;
    if !out.success() {
        bail!("`docker save {image}` failed: {out}");
    }
    Archive::open(&file)
        .and_then(|archive| archive.image())
        .with_context(|| format!("reading `docker save {image}`"))
}

/// [`try_save`], panicking on failure.
#[track_caller]
pub fn save(image: &str) -> Image {
    try_save(image).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Runs IMAGE with ARGS to its end; see [`run_with`].
#[track_caller]
pub fn run(image: &str, args: &[&str]) -> CmdOutput {
    run_with(&[], image, args)
}

/// Runs IMAGE with `docker run` OPTIONS and ARGS to its end: the
/// container's exit status, stdout and stderr. If the container cannot be
/// created or started, the status and output are `docker run`'s own.
///
/// Why not an attached `docker run --rm`: on the containerd store under
/// load it once returned exit 0 with an empty stdout for a container that
/// printed two lines and exited at once (the attach raced the exit). A
/// detached run, `docker wait` and `docker logs` read what the container
/// wrote from its log, which the daemon has finished writing when `wait`
/// returns.
#[track_caller]
pub fn run_with(options: &[&str], image: &str, args: &[&str]) -> CmdOutput {
    // Twice at the most: an empty output is believed only when a second run gives it too.
    // (Seen under heavy disk load on both stores of Docker 26.1: a container that prints at
    // once and exits 0 gave an empty log after `wait` and a second of reads, while the same
    // image and command printed in the test's other runs.)
    let first = run_once(options, image, args);
    if first.success() && first.stdout.is_empty() && first.stderr.is_empty() {
        return run_once(options, image, args);
    }
    first
}

/// One detached run of [`run_with`]'s.
#[track_caller]
fn run_once(options: &[&str], image: &str, args: &[&str]) -> CmdOutput {
    use std::os::unix::process::ExitStatusExt;
    let mut argv: Vec<&str> = vec!["run", "--detach"];
    argv.extend_from_slice(options);
    argv.push(image);
    argv.extend_from_slice(args);
    let started = docker(&argv);
    let id = started.stdout.trim().to_string();
    if !started.success() {
        if !id.is_empty() {
            rm_container(&id);
        }
        return started;
    }
    let waited = docker(&["wait", &id]);
    let mut logs = docker(&["logs", &id]);
    // The daemon may still be copying the container's output into its log when `wait`
    // returns (seen on the classic store under load): an empty log is read again for up to
    // three seconds before it is believed.
    for _ in 0..15 {
        if !logs.success() || !logs.stdout.is_empty() || !logs.stderr.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        logs = docker(&["logs", &id]);
    }
    rm_container(&id);
    let waited_ok = waited.success();
    let code: Option<i32> = waited.stdout.trim().parse().ok();
    match (waited_ok, code, logs.success()) {
        (true, Some(code), true) => CmdOutput {
            // A wait status: the exit code in the second byte.
            status: ExitStatus::from_raw((code & 0xff) << 8),
            stdout: logs.stdout,
            stderr: logs.stderr,
        },
        _ => panic!("running {image}: `docker wait {id}`: {waited}; `docker logs {id}`: {logs}"),
    }
}

/// [`run_with`] of a container that must exit 0 (panics with its output
/// otherwise); its stdout.
#[track_caller]
pub fn run_ok(options: &[&str], image: &str, args: &[&str]) -> String {
    let out = run_with(options, image, args);
    if !out.success() {
        panic!(
            "`docker run {} {image} {}` failed: {out}",
            options.join(" "),
            args.join(" ")
        );
    }
    out.stdout
}

/// `docker rm -f ID`, best effort (for cleanup).
fn rm_container(id: &str) {
    let _ = run_command(command(OsStr::new(DOCKER), &["rm", "-f", id]));
}

/// `docker rmi -f IMAGES...`, best effort (for cleanup); whether it worked.
pub fn rmi(images: &[&str]) -> bool {
    if images.is_empty() {
        return true;
    }
    let mut argv = vec!["rmi", "-f"];
    argv.extend_from_slice(images);
    run_command(command(OsStr::new(DOCKER), &argv))
        .map(|o| o.success())
        .unwrap_or(false)
}

/// `docker tag SRC DST`; panics on failure.
#[track_caller]
pub fn tag(src: &str, dst: &str) {
    docker_ok(&["tag", src, dst]);
}

/// `docker push -q IMAGE`; panics on failure.
#[track_caller]
pub fn push(image: &str) {
    docker_ok(&["push", "-q", image]);
}

/// `docker pull -q IMAGE`, returned (a pull that fails is the caller's to judge).
pub fn pull(image: &str) -> CmdOutput {
    docker(&["pull", "-q", image])
}

/// `docker buildx imagetools inspect --raw REFERENCE`: the manifest or index
/// a registry serves for it, as JSON; panics if buildx cannot read it.
#[track_caller]
pub fn registry_manifest(reference: &str) -> Value {
    let out = docker_ok(&["buildx", "imagetools", "inspect", "--raw", reference]);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!("`docker buildx imagetools inspect --raw {reference}` is not JSON ({e}): {out}")
    })
}

/// Whether `docker image inspect IMAGE` finds an image.
pub fn image_exists(image: &str) -> bool {
    docker(&["image", "inspect", "--format", "{{.Id}}", image]).success()
}

/// `docker history --no-trunc` as one JSON object per row, newest first
/// (fields `CreatedBy`, `Size`, `Comment`, `ID`, `CreatedAt`, ...).
#[track_caller]
pub fn history(image: &str) -> Vec<Value> {
    let out = docker_ok(&["history", "--no-trunc", "--format", "{{json .}}", image]);
    parse_json_lines(&out.stdout).unwrap_or_else(|e| panic!("`docker history {image}`: {e:#}"))
}

/// `docker image inspect IMAGE` (the one object).
#[track_caller]
pub fn inspect(image: &str) -> Value {
    let out = docker_ok(&["image", "inspect", image]);
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("`docker image inspect {image}` is not JSON: {e}"));
    v.get(0)
        .cloned()
        .unwrap_or_else(|| panic!("`docker image inspect {image}` returned no object"))
}

fn parse_json_lines(s: &str) -> Result<Vec<Value>> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_from_docker_info() {
        let containerd = r#"{"Driver":"overlayfs","DriverStatus":[["driver-type","io.containerd.snapshotter.v1"]]}"#;
        assert_eq!(parse_store(containerd).unwrap(), Store::Containerd);
        let containerd_btrfs =
            r#"{"Driver":"btrfs","DriverStatus":[["driver-type","io.containerd.snapshotter.v1"]]}"#;
        assert_eq!(parse_store(containerd_btrfs).unwrap(), Store::Containerd);
        let classic = r#"{"Driver":"overlay2","DriverStatus":[["Backing Filesystem","extfs"],["Supports d_type","true"],["Using metacopy","false"],["Native Overlay Diff","true"],["userxattr","false"]]}"#;
        assert_eq!(parse_store(classic).unwrap(), Store::Classic);
        assert_eq!(
            parse_store(r#"{"Driver":"vfs","DriverStatus":null}"#).unwrap(),
            Store::Classic
        );
        assert_eq!(
            parse_store(r#"{"Driver":"overlayfs","DriverStatus":null}"#).unwrap(),
            Store::Containerd
        );
        let err = parse_store(r#"{"Driver":"","DriverStatus":null}"#).unwrap_err();
        assert!(err.to_string().contains("no storage driver"), "{err}");
        assert!(parse_store("not json").is_err());
    }

    #[test]
    fn buildx_command_shape() {
        let build = Buildx::new(Path::new("/tmp/ctx"))
            .args(&["--load", "-t"])
            .args(&["squash-e2e-x:plain"])
            .env("BUILDX_EXPERIMENTAL", "1");
        let cmd = build.command(OsStr::new("docker"));
        let args: Vec<&OsStr> = cmd.get_args().collect();
        assert_eq!(
            args,
            [
                "buildx",
                "build",
                "--progress=plain",
                "--load",
                "-t",
                "squash-e2e-x:plain",
                "/tmp/ctx"
            ]
            .map(OsStr::new)
        );
        let envs: Vec<(&OsStr, Option<&OsStr>)> = cmd.get_envs().collect();
        let env = |k: &'static str, v: &'static str| (OsStr::new(k), Some(OsStr::new(v)));
        assert_eq!(
            envs,
            vec![
                env("BUILDX_EXPERIMENTAL", "1"),
                env("BUILDX_NO_DEFAULT_ATTESTATIONS", "1")
            ]
        );
        let cmd = build
            .clone()
            .default_attestations()
            .command(OsStr::new("docker"));
        let envs: Vec<(&OsStr, Option<&OsStr>)> = cmd.get_envs().collect();
        assert_eq!(envs, vec![env("BUILDX_EXPERIMENTAL", "1")]);
        let cmd = build.docker_build().command(OsStr::new("docker"));
        let args: Vec<&OsStr> = cmd.get_args().collect();
        assert_eq!(
            args,
            [
                "build",
                "--progress=plain",
                "--load",
                "-t",
                "squash-e2e-x:plain",
                "/tmp/ctx"
            ]
            .map(OsStr::new)
        );
    }

    #[test]
    fn versions_are_read_from_what_docker_prints() {
        let v = Version::new;
        assert_eq!(
            Version::find("github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1-3"),
            Some(v(0, 13, 1))
        );
        assert_eq!(
            Version::find("github.com/docker/buildx v0.29.1 abc123"),
            Some(v(0, 29, 1))
        );
        assert_eq!(Version::find("26.1.5+dfsg1"), Some(v(26, 1, 5)));
        assert_eq!(Version::find("28.5"), Some(v(28, 5, 0)));
        assert_eq!(Version::find("github.com/docker/buildx dev"), None);
        assert_eq!(Version::find("1.2.3.4 x"), None);
        assert!(v(0, 13, 1) < v(0, 29, 0) && v(0, 29, 0) < v(0, 29, 1));
        assert!(v(0, 9, 9) < v(0, 10, 0) && v(1, 0, 0) > v(0, 99, 99));
        assert_eq!(v(0, 29, 1).to_string(), "0.29.1");
        let engine = Engine {
            server_version: "26.1.5+dfsg1".into(),
            buildx_version: "github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1-3".into(),
        };
        assert_eq!(engine.server(), Some(v(26, 1, 5)));
        assert_eq!(engine.buildx(), Some(v(0, 13, 1)));
        assert_eq!(engine.label(), "Docker 26.1.5 with buildx 0.13.1");
        let odd = Engine {
            server_version: "dev".into(),
            buildx_version: "buildx dev".into(),
        };
        assert_eq!(odd.label(), "Docker dev with buildx buildx dev");
    }

    /// Excerpts of `docker buildx build --help` and `docker buildx --help`
    /// of buildx 0.13.1 and 0.29.1.
    const BUILD_HELP_013: &str = "      --annotation stringArray        Add annotation to the image
      --metadata-file string          Write build result metadata to the file
  -q, --quiet                         Suppress the build output and print image ID on success
";
    const BUILDX_HELP_013: &str = "Management Commands:
  imagetools  Commands to work on images in registry

Commands:
  bake        Build from a file
";
    const BUILD_HELP_029: &str = "      --annotation stringArray        Add annotation to the image
      --call string                   Set method for evaluating build (\"check\", \"outline\", \"targets\") (default \"build\")
      --check                         Shorthand for \"--call=check\" (default )
";
    const BUILDX_HELP_029: &str = "Management Commands:
  history     Commands to work on build records
  imagetools  Commands to work on images in registry
";

    #[test]
    fn features_are_read_from_the_help() {
        use BuildxFeature::*;
        let listed = |build: &str, buildx: &str| {
            [Call, Check, Annotation, History]
                .into_iter()
                .filter(|f| f.listed(build, buildx))
                .collect::<Vec<_>>()
        };
        assert_eq!(listed(BUILD_HELP_013, BUILDX_HELP_013), [Annotation]);
        assert_eq!(
            listed(BUILD_HELP_029, BUILDX_HELP_029),
            [Call, Check, Annotation, History]
        );
        // A word in a description is no flag, a word in a sentence no command.
        assert_eq!(
            listed(
                "      --quiet    like --call-me\n",
                "Run 'docker buildx history' for more\n  history\n"
            ),
            Vec::<BuildxFeature>::new()
        );
    }

    #[test]
    fn a_missing_feature_is_a_reason_below_the_newer_buildx_and_a_panic_from_it() {
        let engine = |buildx: &str| Engine {
            server_version: "26.1.5+dfsg1".into(),
            buildx_version: format!("github.com/docker/buildx {buildx}"),
        };
        let older = engine("0.13.1+ds1 0.13.1+ds1-3");
        assert_eq!(
            offered(BuildxFeature::Call, &older, BUILD_HELP_013, BUILDX_HELP_013),
            Err(
                "Docker 26.1.5 with buildx 0.13.1 has no `docker buildx build --call` (its help does not list it)"
                    .into()
            )
        );
        assert_eq!(
            offered(
                BuildxFeature::Annotation,
                &older,
                BUILD_HELP_013,
                BUILDX_HELP_013
            ),
            Ok(())
        );
        for newer in ["0.29.1+ds1", "v0.30.0", "dev"] {
            let r = std::panic::catch_unwind(|| {
                offered(
                    BuildxFeature::History,
                    &engine(newer),
                    BUILD_HELP_029,
                    BUILDX_HELP_013,
                )
            });
            let why = r.unwrap_err();
            let why = why.downcast_ref::<String>().unwrap();
            assert!(why.contains("lacks `docker buildx history`"), "{why}");
        }
    }

    /// An executable `docker` shell script in `dir`. A child process writes
    /// it, so that this process never holds it open for writing: another
    /// test's fork could inherit that descriptor, and running the script
    /// would then fail (text file busy).
    fn fake_docker(dir: &Path, script: &str) -> PathBuf {
        let p = dir.join("docker");
        let written = Command::new("sh")
            .args(["-c", r#"printf '%s\n' "$1" > "$2" && chmod 755 "$2""#, "sh"])
            .arg(format!("#!/bin/sh\n{script}"))
            .arg(&p)
            .status()
            .unwrap();
        assert!(written.success());
        p
    }

    #[test]
    fn engine_check_reports_why() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-docker");
        let err = check_engine(missing.as_os_str()).unwrap_err();
        assert!(err.contains("could not start"), "{err}");

        let down = fake_docker(
            dir.path(),
            r#"echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock" >&2; exit 1"#,
        );
        let err = check_engine(down.as_os_str()).unwrap_err();
        assert!(
            err.contains("could not reach the engine") && err.contains("Cannot connect"),
            "{err}"
        );

        let dir2 = tempfile::tempdir().unwrap();
        let no_buildx = fake_docker(
            dir2.path(),
            r#"case "$1" in version) echo 26.1.4;; *) echo "docker: unknown command: docker buildx" >&2; exit 1;; esac"#,
        );
        let err = check_engine(no_buildx.as_os_str()).unwrap_err();
        assert!(
            err.contains("buildx is not installed") && err.contains("unknown command"),
            "{err}"
        );

        let dir3 = tempfile::tempdir().unwrap();
        let ok = fake_docker(
            dir3.path(),
            r#"case "$1" in version) echo 26.1.4;; buildx) echo "github.com/docker/buildx v0.14.1 abc";; esac"#,
        );
        assert_eq!(
            check_engine(ok.as_os_str()).unwrap(),
            Engine {
                server_version: "26.1.4".into(),
                buildx_version: "github.com/docker/buildx v0.14.1 abc".into()
            }
        );
    }

    #[test]
    fn command_output_assertions() {
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_docker(dir.path(), r#"echo out; echo "err $*" >&2; exit 3"#);
        let out = run_command(command(fake.as_os_str(), &["build", "x"])).unwrap();
        assert!(!out.success());
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err build x\n");
        out.assert_failure();
        let shown = out.to_string();
        assert!(
            shown.contains("exit status: 3") && shown.contains("err build x"),
            "{shown}"
        );
        let r = std::panic::catch_unwind(|| {
            out.assert_success();
        });
        assert!(r.is_err());
    }

    #[test]
    fn buildx_gives_stdin_env_and_the_exit() {
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_docker(
            dir.path(),
            r#"cat; echo "args $* attestations=$BUILDX_NO_DEFAULT_ATTESTATIONS x=$X" >&2; exit 3"#,
        );
        let run = Buildx::new(Path::new("/ctx"))
            .args(&["-f", "-"])
            .stdin(b"FROM scratch\n")
            .env("X", "y")
            .timeout(Duration::from_secs(60))
            .run_program(fake.as_os_str())
            .unwrap();
        assert_eq!(run.out.status.code(), Some(3));
        assert_eq!(run.out.stdout, "FROM scratch\n");
        assert_eq!(
            run.out.stderr,
            "args buildx build --progress=plain -f - /ctx attestations=1 x=y\n"
        );
        assert!(!run.timed_out && !run.cancelled);
        // Without stdin, the client reads an empty one.
        let run = Buildx::new(Path::new("/ctx"))
            .run_program(fake.as_os_str())
            .unwrap();
        assert_eq!(run.out.stdout, "");
        let err = Buildx::new(Path::new("/ctx"))
            .run_program(dir.path().join("no-such-docker").as_os_str())
            .unwrap_err();
        assert!(format!("{err:#}").contains("could not start"), "{err:#}");
    }

    #[test]
    fn buildx_runs_once_more_after_a_lost_parent_snapshot_only() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("runs");
        let lost = "ERROR: failed to solve: failed to prepare extraction snapshot extract-1: parent snapshot sha256:bb does not exist: not found";
        // A fake docker that counts its runs, then runs `script`: the build's result and how
        // many times the client ran.
        let runs = |script: &str| -> (Run, usize) {
            let _ = std::fs::remove_file(&count);
            let fake = fake_docker(
                dir.path(),
                &format!("echo x >> {}; {script}", count.display()),
            );
            let run = Buildx::new(Path::new("/ctx"))
                .run_program(fake.as_os_str())
                .unwrap();
            let n = std::fs::read_to_string(&count).unwrap().lines().count();
            (run, n)
        };
        // The engine race on the first run only: a second run, which the output says.
        let (run, n) = runs(&format!(
            r#"if [ $(wc -l < {}) = 1 ]; then echo "{lost}" >&2; exit 1; fi; echo built >&2"#,
            count.display()
        ));
        assert!(run.out.success() && n == 2, "{run:?}");
        assert!(
            run.out
                .stderr
                .starts_with("[test harness] the engine lost a parent snapshot")
                && run
                    .out
                    .stderr
                    .contains("parent snapshot sha256:bb does not exist")
                && run.out.stderr.ends_with("built\n"),
            "{}",
            run.out.stderr
        );
        // The same race on every run fails the build, after two runs.
        let (run, n) = runs(&format!(r#"echo "{lost}" >&2; exit 1"#));
        assert!(!run.out.success() && n == 2, "{run:?}");
        // Any other failure is the build's result, after one run.
        let (run, n) = runs(r#"echo "ERROR: parent snapshot of nothing" >&2; exit 1"#);
        assert!(!run.out.success() && n == 1, "{run:?}");
    }

    #[test]
    fn buildx_ends_a_build_at_its_timeout() {
        let run = run_fake(
            "echo started >&2; exec sleep 30",
            Buildx::new(Path::new("/ctx")).timeout(Duration::from_millis(300)),
        );
        assert!(run.timed_out && !run.cancelled);
        assert!(!run.out.success());
        assert!(run.elapsed < Duration::from_secs(20), "{:?}", run.elapsed);
        assert!(
            run.out.stderr.starts_with("started\n")
                && run
                    .out
                    .stderr
                    .contains("still running after 300ms and was killed"),
            "{}",
            run.out.stderr
        );
    }

    /// `build` run with a fake docker that runs `script`.
    fn run_fake(script: &str, build: Buildx) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let fake = fake_docker(dir.path(), script);
        build.run_program(fake.as_os_str()).unwrap()
    }

    #[test]
    fn buildx_cancels_a_delay_after_a_line() {
        let sleeping = |l: &str| l.contains("sleeping") && !l.contains("RUN ");
        let header = "echo '#5 [2/2] RUN echo sleeping' >&2";
        let build = Buildx::new(Path::new("/ctx"));
        // The timeout no longer applies once the line has come.
        let run = run_fake(
            &format!("{header}; echo '#5 0.2 sleeping' >&2; exec sleep 30"),
            build
                .clone()
                .timeout(Duration::from_millis(100))
                .cancel_after(sleeping, Duration::from_millis(500)),
        );
        assert!(run.cancelled && !run.timed_out, "{run:?}");
        assert!(!run.out.success());
        let elapsed = run.elapsed;
        assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
        assert!(run.out.stderr.ends_with("#5 0.2 sleeping\n"), "{run:?}");
        // A client that ends by itself within the delay is not cancelled.
        let run = run_fake(
            "echo '#5 0.2 sleeping' >&2; exit 0",
            build
                .clone()
                .cancel_after(sleeping, Duration::from_secs(20)),
        );
        assert!(run.out.success() && !run.cancelled && !run.timed_out);
        // Without the line, the timeout ends it.
        let run = run_fake(
            &format!("{header}; exec sleep 30"),
            build
                .timeout(Duration::from_millis(300))
                .cancel_after(sleeping, Duration::from_millis(100)),
        );
        assert!(run.timed_out && !run.cancelled, "{run:?}");
    }

    #[test]
    fn json_lines() {
        let v = parse_json_lines("{\"ID\":\"a\"}\n\n{\"ID\":\"b\"}\n").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1]["ID"], "b");
        assert!(parse_json_lines("{\"ID\":\n").is_err());
    }
}
