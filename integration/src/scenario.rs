//! One Dockerfile, built plain and squashed, ready to compare.
//!
//! This module owns the *shape of an end-to-end test*: given a Dockerfile
//! body without a `# syntax=` line and the frontend image, [`Scenario::run`]
//! writes two build contexts — one whose Dockerfile starts with
//! `# syntax=<frontend image>`, one plain — builds both with `docker buildx
//! build --load` to unique tags (plain first), `docker save`s both, checks
//! both archives are self-consistent ([`crate::image::Image::verify`]) and
//! applies their layers into filesystem models. The test then asserts on
//! layer counts, [`Outcome::fs_report`] and [`Outcome::config_report`], or
//! with the shared assertions of the `check` module.
//!
//! A failing build panics with its full output, naming which side failed;
//! tests that expect a build to fail use [`crate::context::TestContext`]
//! directly. When the [`Outcome`] is dropped, images larger than
//! [`REMOVE_AT_ONCE_ABOVE`] are removed and smaller ones are left for `scripts/e2e.sh`,
//! which removes every `squash-e2e-*` image left in an engine when it next starts a pair
//! there; [`Scenario::keep_images`] keeps both.
//!
//! Tests that build a side the scenario does not cover (standard input,
//! another Dockerfile name, one plain image against several squashed ones)
//! use [`load_built`], the scenario's own way of building one side, and
//! [`Outcome::new`] (its images go as a scenario's) or a [`TagGuard`] (removed at once).
//! Tests that squash in every way a store offers take the list from
//! [`variants`].

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use crate::compare::{compare_configs, compare_fs, CompareOptions, Report};
use crate::context::TestContext;
use crate::docker::{self, BuildOutput, Buildx, Store, BUILD_TIMEOUT};
use crate::fs::FsModel;
use crate::image::Image;

/// Environment variable [`frontend_image_from_env`] reads.
pub const FRONTEND_IMAGE_ENV: &str = "SQUASH_FRONTEND_IMAGE";

/// The frontend image named by `SQUASH_FRONTEND_IMAGE`; panics if unset.
#[track_caller]
pub fn frontend_image_from_env() -> String {
    match std::env::var(FRONTEND_IMAGE_ENV) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => panic!(
            "{FRONTEND_IMAGE_ENV} is not set: it must name the squash-frontend image to put in `# syntax=`"
        ),
    }
}

/// `body` with the `# syntax=` line of the frontend image on top.
fn with_syntax(frontend: &str, body: &str) -> String {
    format!("# syntax={frontend}\n{body}")
}

/// A value of this run of the test binary alone (its process and start time). Written into a
/// build's context and copied by a step, it keeps that step, the ones after it and our squash
/// step from being taken from the build cache of another test or of an earlier run on the
/// same engine: for tests that read what those steps print, which a cached step does not.
pub fn run_nonce() -> &'static str {
    static NONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NONCE.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}-{nanos}\n", std::process::id())
    })
}

/// `body` with the `# syntax=` line of [`frontend_image_from_env`] on top.
#[track_caller]
pub fn squash_dockerfile(body: &str) -> String {
    with_syntax(&frontend_image_from_env(), body)
}

/// The build contexts of both sides of `body`: plain, and with the `# syntax=`
/// line of [`frontend_image_from_env`] on top; the same `files` (relative
/// path, content) in each.
#[track_caller]
pub fn both_contexts(test: &str, body: &str, files: &[(&str, &str)]) -> (TestContext, TestContext) {
    contexts_with(&frontend_image_from_env(), test, body, files)
}

#[track_caller]
fn contexts_with(
    frontend: &str,
    test: &str,
    body: &str,
    files: &[(&str, &str)],
) -> (TestContext, TestContext) {
    let plain = TestContext::new(&format!("{test}-plain"), body);
    let squashed = TestContext::new(&format!("{test}-squashed"), &with_syntax(frontend, body));
    for (rel, content) in files {
        plain.write(rel, content);
        squashed.write(rel, content);
    }
    (plain, squashed)
}

/// Whether a Dockerfile already starts with a `syntax` parser directive
/// (among its leading `# key=value` lines).
pub fn has_syntax_directive(dockerfile: &str) -> bool {
    for line in dockerfile.lines() {
        let Some(rest) = line.trim_start().strip_prefix('#') else {
            return false;
        };
        let Some((key, _)) = rest.split_once('=') else {
            return false;
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return false;
        }
        if key.eq_ignore_ascii_case("syntax") {
            return true;
        }
    }
    false
}

/// One way of squashing an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// `full`, `base/auto` or `base/sync`.
    pub label: &'static str,
    /// The build arguments that choose it (none for full mode, the default).
    pub args: &'static [&'static str],
    /// The base-mode method expected to run (`None` in full mode).
    pub method: Option<&'static str>,
}

/// Every way of squashing this store offers: full mode; base mode with the
/// auto method (diff on the containerd store, sync on the classic one); and
/// on the containerd store, base mode with the sync method.
pub fn variants(store: Store) -> Vec<Variant> {
    let mut v = vec![
        Variant {
            label: "full",
            args: &[],
            method: None,
        },
        Variant {
            label: "base/auto",
            args: &["--build-arg", "SQUASH_MODE=base"],
            method: Some(match store {
                Store::Containerd => "diff",
                Store::Classic => "sync",
            }),
        },
    ];
    if store == Store::Containerd {
        v.push(Variant {
            label: "base/sync",
            args: &[
                "--build-arg",
                "SQUASH_MODE=base",
                "--build-arg",
                "SQUASH_METHOD=sync",
            ],
            method: Some("sync"),
        });
    }
    v
}

/// A Dockerfile to build both ways; see the module docs.
#[derive(Debug, Clone)]
pub struct Scenario {
    name: String,
    dockerfile: String,
    frontend: Option<String>,
    files: Vec<(PathBuf, Vec<u8>, Option<u32>)>,
    build_args: Vec<String>,
    squash_args: Vec<String>,
    keep_images: bool,
}

impl Scenario {
    /// A scenario named after the test (the name goes into image tags), with
    /// a Dockerfile body that has no `# syntax=` line.
    #[track_caller]
    pub fn new(test_name: &str, dockerfile: &str) -> Scenario {
        assert!(
            !has_syntax_directive(dockerfile),
            "the scenario adds the `# syntax=` line itself; give the Dockerfile without one"
        );
        Scenario {
            name: test_name.to_owned(),
            dockerfile: dockerfile.to_owned(),
            frontend: None,
            files: Vec::new(),
            build_args: Vec::new(),
            squash_args: Vec::new(),
            keep_images: false,
        }
    }

    /// The frontend image for the `# syntax=` line (default:
    /// [`frontend_image_from_env`]).
    pub fn frontend(mut self, image: &str) -> Self {
        self.frontend = Some(image.to_owned());
        self
    }

    /// A file in both build contexts.
    pub fn file(mut self, rel: impl Into<PathBuf>, contents: impl AsRef<[u8]>) -> Self {
        self.files
            .push((rel.into(), contents.as_ref().to_vec(), None));
        self
    }

    /// A file with these permission bits in both build contexts.
    pub fn file_mode(
        mut self,
        rel: impl Into<PathBuf>,
        contents: impl AsRef<[u8]>,
        mode: u32,
    ) -> Self {
        self.files
            .push((rel.into(), contents.as_ref().to_vec(), Some(mode)));
        self
    }

    /// Arguments added to both builds (e.g. `--build-arg`, `--target`,
    /// `--platform`, `--no-cache`).
    pub fn build_args(mut self, args: &[&str]) -> Self {
        self.build_args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Arguments added to the squashed build only (e.g. frontend options).
    pub fn squash_args(mut self, args: &[&str]) -> Self {
        self.squash_args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Leave the images in the engine after the test.
    pub fn keep_images(mut self) -> Self {
        self.keep_images = true;
        self
    }

    fn frontend_image(&self) -> String {
        self.frontend
            .clone()
            .unwrap_or_else(frontend_image_from_env)
    }

    /// The two Dockerfiles: (plain, squashed).
    pub fn dockerfiles(&self, frontend: &str) -> (String, String) {
        (
            self.dockerfile.clone(),
            with_syntax(frontend, &self.dockerfile),
        )
    }

    /// The arguments of one build (before the context directory).
    pub fn args_for(&self, tag: &str, squashed: bool) -> Vec<String> {
        let mut args = vec!["--load".to_owned(), "-t".to_owned(), tag.to_owned()];
        args.extend(self.build_args.iter().cloned());
        if squashed {
            args.extend(self.squash_args.iter().cloned());
        }
        args
    }

    fn context(&self, side: &str, dockerfile: &str) -> TestContext {
        let ctx = TestContext::new(&format!("{}-{side}", self.name), dockerfile);
        for (rel, contents, mode) in &self.files {
            match mode {
                Some(m) => ctx.write_mode(rel, contents, *m),
                None => ctx.write(rel, contents),
            };
        }
        ctx
    }

    /// Builds, saves and models both images; see the module docs. Panics
    /// (with the build output) if there is no engine or a build fails.
    #[track_caller]
    pub fn run(self) -> Outcome {
        docker::engine_or_panic();
        let frontend = self.frontend_image();
        let (plain_df, squashed_df) = self.dockerfiles(&frontend);
        let plain = self.build_side("plain", &plain_df, false);
        let squashed = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.build_side("squashed", &squashed_df, true)
        })) {
            Ok(b) => b,
            Err(p) => {
                if !self.keep_images {
                    docker::rmi(&[&plain.tag]);
                }
                std::panic::resume_unwind(p);
            }
        };
        Outcome {
            plain,
            squashed,
            keep_images: self.keep_images,
        }
    }

    #[track_caller]
    fn build_side(&self, side: &str, dockerfile: &str, squashed: bool) -> Built {
        let context = self.context(side, dockerfile);
        let tag = context.tag(side);
        let args = self.args_for(&tag, squashed);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        build_and_load(side, context, tag, &argv, None, None, self.keep_images).0
    }
}

/// Builds `context` with `--load -t <unique tag> ARGS...` (and `stdin`),
/// within [`BUILD_TIMEOUT`], then [`Built::load`]s it, as one side of a
/// [`Scenario`] is built; panics with the build's output if the build or the
/// loading fails, removing the image.
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
    build_and_load(
        side,
        context,
        tag.clone(),
        &argv,
        stdin,
        Some(BUILD_TIMEOUT),
        false,
    )
}

/// Whether a failed build's `stderr` says the engine lost the image it had just written
/// (`failed to get digest sha256:...: open .../imagedb/content/sha256/...: no such file or
/// directory`).
fn image_went_away(stderr: &str) -> bool {
    stderr.lines().any(|l| {
        l.contains("failed to get digest sha256:") && l.ends_with("no such file or directory")
    })
}

/// Builds `context` with `args` (which load the image as `tag`) and loads
/// the image; panics if either fails, removing the image (unless
/// `keep_images`, when the build worked but the image is unsound).
#[track_caller]
fn build_and_load(
    side: &str,
    context: TestContext,
    tag: String,
    args: &[&str],
    stdin: Option<&[u8]>,
    timeout: Option<Duration>,
    keep_images: bool,
) -> (Built, Duration) {
    let mut build = Buildx::new(context.path()).args(args);
    if let Some(data) = stdin {
        build = build.stdin(data);
    }
    if let Some(limit) = timeout {
        build = build.timeout(limit);
    }
    let mut run = build.run();
    if !run.out.success() && image_went_away(&run.out.stderr) {
        // Another test removed an identical image (the same ID: the same Dockerfile body on
        // the same base) between this build's export and its naming of it; the engine then
        // cannot read what it just wrote. Seen once on Docker 26.1's classic store with tests
        // running side by side: built once more, the image is written again.
        eprintln!("[{}] the image went away under the export (a test alongside removed an identical one); building again", context.name());
        run = build.run();
    }
    let name = context.name().to_owned();
    if !run.out.success() {
        docker::rmi(&[&tag]);
        panic!(
            "the {side} build of {name} failed after {:.1?}.\nDockerfile:\n{}\n{}",
            run.elapsed,
            String::from_utf8_lossy(&stdin.map(<[u8]>::to_vec).unwrap_or_else(|| {
                fs::read(context.path().join("Dockerfile")).unwrap_or_default()
            })),
            run.out
        );
    }
    match Built::load(tag, context, run.out) {
        Ok(built) => (built, run.elapsed),
        Err((tag, e)) => {
            if !keep_images {
                docker::rmi(&[&tag]);
            }
            panic!("the {side} image {tag} of {name}: {e:#}");
        }
    }
}

/// One side of a scenario.
#[derive(Debug)]
pub struct Built {
    /// The tag the image was loaded as.
    pub tag: String,
    /// The build context (removed when dropped).
    pub context: TestContext,
    /// What the build printed.
    pub build: BuildOutput,
    /// The saved image.
    pub image: Image,
    /// Its filesystem model.
    pub fs: FsModel,
}

impl Built {
    /// The image a build loaded as `tag`, saved, verified and modelled. On failure, the tag
    /// comes back with the error, for the caller to remove the image or keep it.
    pub fn load(
        tag: String,
        context: TestContext,
        build: BuildOutput,
    ) -> std::result::Result<Built, (String, anyhow::Error)> {
        let checked = docker::try_save(&tag).and_then(|image| {
            image.verify()?;
            let fs = FsModel::from_image(&image)?;
            Ok((image, fs))
        });
        match checked {
            Ok((image, fs)) => Ok(Built {
                tag,
                context,
                build,
                image,
                fs,
            }),
            Err(e) => Err((tag, e)),
        }
    }
}

/// Both sides of a scenario, built.
#[derive(Debug)]
pub struct Outcome {
    /// Built without the `# syntax=` line.
    pub plain: Built,
    /// Built with `# syntax=<frontend image>`.
    pub squashed: Built,
    keep_images: bool,
}

impl Outcome {
    /// Both sides of a comparison built otherwise than by [`Scenario::run`]
    /// (e.g. with [`load_built`]); their images go as [`Scenario::run`]'s when dropped.
    pub fn new(plain: Built, squashed: Built) -> Outcome {
        Outcome {
            plain,
            squashed,
            keep_images: false,
        }
    }

    /// Filesystem differences, plain (left) vs squashed (right).
    pub fn fs_report(&self, opts: &CompareOptions) -> Report {
        compare_fs(&self.plain.fs, &self.squashed.fs, opts).with_names("plain", "squashed")
    }

    /// Config differences, plain (left) vs squashed (right).
    pub fn config_report(&self) -> Report {
        compare_configs(&self.plain.image.config, &self.squashed.image.config)
            .with_names("plain", "squashed")
    }
}

/// Unpacked bytes (the layers' tars, base included) above which a scenario's image is removed
/// when its [`Outcome`] is dropped; smaller ones are left for `scripts/e2e.sh` to remove when it
/// next starts a pair on that engine. Removing an image on the containerd store makes the engine
/// collect the whole store's garbage: measured on Docker 26.1 here, on an engine that held 170
/// images, 0.9 s (1.2 s of the engine's CPU) for one busybox image alone, 2 to 3.8 s per
/// scenario with three tests running, 41 s of one test file's 83 (`buildx_features`, 24
/// removals; 55 s with this limit). In a whole clean-clone run (a fresh store) the containerd
/// pairs were not measurably shorter (Docker 26.1: 947 s against 921 s, on a machine slower
/// that day): the collections the engine runs after each build then walk a store that grows.
/// The limit keeps the disk a run leaves bounded: the big images (the 1 GiB sparse file,
/// 50,000 files, a toolchain) still go at once.
pub const REMOVE_AT_ONCE_ABOVE: u64 = 256 << 20;

impl Drop for Outcome {
    fn drop(&mut self) {
        if self.keep_images {
            return;
        }
        let big: Vec<&str> = [&self.plain, &self.squashed]
            .into_iter()
            .filter(|b| b.image.uncompressed_size() > REMOVE_AT_ONCE_ABOVE)
            .map(|b| b.tag.as_str())
            .collect();
        docker::rmi(&big);
    }
}

/// Image tags removed when dropped.
#[derive(Debug)]
pub struct TagGuard(pub Vec<String>);

impl Drop for TagGuard {
    fn drop(&mut self) {
        let tags: Vec<&str> = self.0.iter().map(String::as_str).collect();
        docker::rmi(&tags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_directives_are_recognised() {
        assert!(has_syntax_directive(
            "# syntax=docker/dockerfile:1\nFROM x\n"
        ));
        assert!(has_syntax_directive("#syntax = a\nFROM x\n"));
        assert!(has_syntax_directive("# escape=`\n# SYNTAX=a\nFROM x\n"));
        assert!(!has_syntax_directive("FROM x\n# syntax=a\n"));
        assert!(!has_syntax_directive("# a comment\n# syntax=a\nFROM x\n"));
        assert!(!has_syntax_directive("\n# syntax=a\nFROM x\n"));
        assert!(!has_syntax_directive(
            "FROM busybox\nRUN echo '# syntax=x'\n"
        ));
    }

    #[test]
    #[should_panic(expected = "adds the `# syntax=` line itself")]
    fn a_syntax_line_in_the_body_is_refused() {
        Scenario::new("t", "# syntax=docker/dockerfile:1\nFROM busybox\n");
    }

    #[test]
    fn dockerfiles_and_arguments() {
        let s = Scenario::new("t", "# escape=`\nFROM busybox\nRUN true\n")
            .frontend("localhost:5000/squash:dev")
            .build_args(&["--build-arg", "A=1"])
            .build_args(&["--no-cache"])
            .squash_args(&["--build-arg", "ONLY_SQUASHED=1"]);
        let (plain, squashed) = s.dockerfiles("localhost:5000/squash:dev");
        assert_eq!(plain, "# escape=`\nFROM busybox\nRUN true\n");
        assert_eq!(
            squashed,
            "# syntax=localhost:5000/squash:dev\n# escape=`\nFROM busybox\nRUN true\n"
        );
        assert!(has_syntax_directive(&squashed));
        assert_eq!(s.frontend_image(), "localhost:5000/squash:dev");
        assert_eq!(
            s.args_for("tag:plain", false),
            [
                "--load",
                "-t",
                "tag:plain",
                "--build-arg",
                "A=1",
                "--no-cache"
            ]
        );
        assert_eq!(
            s.args_for("tag:sq", true),
            [
                "--load",
                "-t",
                "tag:sq",
                "--build-arg",
                "A=1",
                "--no-cache",
                "--build-arg",
                "ONLY_SQUASHED=1"
            ]
        );
    }

    #[test]
    fn both_sides_contexts() {
        let (plain, squashed) =
            contexts_with("fe:1", "both", "FROM busybox\n", &[("a/b.txt", "B")]);
        assert_eq!(plain.read("Dockerfile"), b"FROM busybox\n");
        assert_eq!(
            squashed.read("Dockerfile"),
            b"# syntax=fe:1\nFROM busybox\n"
        );
        assert_eq!(plain.read("a/b.txt"), b"B");
        assert_eq!(squashed.read("a/b.txt"), b"B");
        assert_eq!(plain.name(), "both-plain");
        assert_eq!(squashed.name(), "both-squashed");
    }

    #[test]
    fn the_variants_of_each_store() {
        let shown = |store| {
            variants(store)
                .iter()
                .map(|v| format!("{} {:?} {:?}", v.label, v.args, v.method))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shown(Store::Classic),
            [
                r#"full [] None"#,
                r#"base/auto ["--build-arg", "SQUASH_MODE=base"] Some("sync")"#,
            ]
        );
        assert_eq!(
            shown(Store::Containerd),
            [
                r#"full [] None"#,
                r#"base/auto ["--build-arg", "SQUASH_MODE=base"] Some("diff")"#,
                r#"base/sync ["--build-arg", "SQUASH_MODE=base", "--build-arg", "SQUASH_METHOD=sync"] Some("sync")"#,
            ]
        );
    }

    #[test]
    fn contexts_hold_the_dockerfile_and_the_files() {
        let s = Scenario::new("ctx", "FROM busybox\nCOPY . /src\n")
            .file("a.txt", "A")
            .file_mode("bin/tool", "#!/bin/sh\n", 0o755);
        let (_, squashed) = s.dockerfiles("img");
        let ctx = s.context("squashed", &squashed);
        assert_eq!(ctx.read("Dockerfile"), squashed.as_bytes());
        assert_eq!(ctx.read("a.txt"), b"A");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ctx.path().join("bin/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        assert!(ctx
            .tag("squashed")
            .starts_with("squash-e2e-ctx-squashed:squashed-"));
    }

    #[test]
    fn an_image_gone_under_the_export_is_told_apart() {
        let lost = "#7 naming to docker.io/library/x:plain done\n#7 ERROR: failed to get digest sha256:6de7: open /var/tmp/s/26-classic/data/image/overlay2/imagedb/content/sha256/6de7: no such file or directory\n------\nERROR: failed to solve: failed to get digest sha256:6de7: open /var/tmp/s/26-classic/data/image/overlay2/imagedb/content/sha256/6de7: no such file or directory\n";
        assert!(image_went_away(lost));
        // A step's own failure, or a missing file of the build's, is not that.
        assert!(!image_went_away(
            "ERROR: failed to solve: process \"/bin/sh -c cat /nope\" did not complete successfully: exit code: 1\n"
        ));
        assert!(!image_went_away(
            "ERROR: failed to solve: failed to compute cache key: \"/app.txt\": not found\n"
        ));
    }
}
