//! Everything a `docker buildx build` user does keeps working through the
//! squash: multi-platform builds, every kind of build input, information
//! requests the Dockerfile frontend does not answer, the build cache (rebuild,
//! export, import), reproducible output, attestations, and the choice of the
//! upstream Dockerfile frontend.
//!
//! Runs on both stores. What the classic store cannot do with the `docker`
//! driver (multi-platform, OCI output, cache export, attestations) is asserted
//! as the engine's own refusal, the same with and without our syntax line.
//!
//! Tests that empty the build cache (`docker builder prune -af`) take
//! [`exclusive`]; every other test takes [`shared`], so that no build of this
//! file runs while the cache is pruned.

mod common;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use common::start;
use integration::archive::{Archive, ManifestRef};
use integration::blob::sha256_hex;
use integration::check::{
    assert_refused_alike, assert_same, assert_same_models, assert_squash_history,
};
use integration::compare::CompareOptions;
use integration::context::TestContext;
use integration::docker::{self, Buildx, Run, Store, BUILD_TIMEOUT};
use integration::fixtures::{BUSYBOX, LAYERS};
use integration::fs::FsModel;
use integration::image::{created_by, Image, Platform};
use integration::progress::{
    error_lines, error_message, run_copy_steps, show_steps, squash_lines, squash_steps, Step,
};
use integration::scenario::{
    frontend_image_from_env, load_built, squash_dockerfile, Built, Outcome, Scenario,
};
use integration::show::{describe, describe_outcome, indent};
use serde_json::Value;

static CACHE: RwLock<()> = RwLock::new(());

/// For a test that builds: no prune runs meanwhile.
fn shared() -> RwLockReadGuard<'static, ()> {
    CACHE.read().unwrap_or_else(|e| e.into_inner())
}

/// For a test that prunes the build cache: no other test of this file builds
/// meanwhile.
fn exclusive() -> RwLockWriteGuard<'static, ()> {
    CACHE.write().unwrap_or_else(|e| e.into_inner())
}

/// What the classic store says to a multi-platform `--load`.
const MANIFEST_LIST_REFUSAL: &str =
    "docker exporter does not currently support exporting manifest lists";
const OCI_REFUSAL: &str = "OCI exporter is not supported for the docker driver.";
const CACHE_EXPORT_REFUSAL: &str = "Cache export is not supported for the docker driver.";
const ATTESTATION_REFUSAL: &str = "Attestation is not supported for the docker driver.";

/// `docker builder prune -af`: the whole build cache, for tests that need a
/// cold one.
#[track_caller]
fn prune_build_cache() {
    let out = docker::docker(&["builder", "prune", "-af"]);
    assert!(out.success(), "docker builder prune -af failed: {out}");
    println!(
        "    docker builder prune -af: {}",
        out.stdout.lines().last().unwrap_or("")
    );
}

/// The content hash of a file in a model, panicking if it is not a file.
#[track_caller]
fn file_sha(fs: &FsModel, path: &str) -> String {
    fs.get(path)
        .unwrap_or_else(|| panic!("{path} is missing"))
        .sha256
        .unwrap_or_else(|| panic!("{path} is not a regular file"))
}

#[track_caller]
fn assert_file(fs: &FsModel, path: &str, content: &str) {
    assert_eq!(
        file_sha(fs, path),
        sha256_hex(content.as_bytes()),
        "{path} should hold {content:?}"
    );
}

/// A context for one side: the Dockerfile (with our line on the squashed
/// side) and the files.
fn side_context(t: &str, side: &str, body: &str, files: &[(&str, &str)]) -> TestContext {
    let dockerfile = if side == "plain" {
        body.to_string()
    } else {
        squash_dockerfile(body)
    };
    let ctx = TestContext::new(&format!("{t}-{side}"), &dockerfile);
    for (rel, content) in files {
        ctx.write(rel, content);
    }
    ctx
}

/// Builds `body` into an OCI layout tar (`--output type=oci,dest=...<extra>`)
/// and opens it; panics with the output if the build fails.
#[track_caller]
fn build_oci(
    t: &str,
    side: &str,
    body: &str,
    files: &[(&str, &str)],
    output_extra: &str,
    args: &[&str],
) -> (Archive, Run) {
    let ctx = side_context(t, side, body, files);
    let dest_dir = tempfile::Builder::new()
        .prefix("squash-e2e-oci-")
        .tempdir()
        .expect("a temporary directory");
    let dest = dest_dir.path().join("image.tar");
    let output = format!("type=oci,dest={}{output_extra}", dest.display());
    let mut argv = vec!["--output", output.as_str()];
    argv.extend_from_slice(args);
    let run = Buildx::new(ctx.path())
        .args(&argv)
        .timeout(BUILD_TIMEOUT)
        .run();
    if !run.out.success() {
        panic!(
            "the {side} OCI build of {t} failed.\nargs: {argv:?}\nDockerfile:\n{}\n{}",
            String::from_utf8_lossy(&ctx.read("Dockerfile")),
            run.out
        );
    }
    println!(
        "[{t}] {side} OCI build took {:.1}s",
        run.elapsed.as_secs_f64()
    );
    let archive = Archive::open(&dest).unwrap_or_else(|e| panic!("{side}: {e:#}"));
    (archive, run)
}

fn listing(archive: &Archive) -> String {
    archive
        .manifests()
        .iter()
        .map(|m| format!("    {m}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The image of one platform of an archive, verified, with its model.
#[track_caller]
fn platform_image(archive: &Archive, platform: &str) -> (Image, FsModel) {
    let p = Platform::parse(platform).unwrap();
    let img = archive
        .image_for_platform(&p)
        .unwrap_or_else(|e| panic!("{e:#}\nmanifests:\n{}", listing(archive)));
    img.verify().unwrap_or_else(|e| panic!("{platform}: {e:#}"));
    let fs = FsModel::from_image(&img).unwrap_or_else(|e| panic!("{platform}: {e:#}"));
    (img, fs)
}

/// The one image manifest of a single-platform archive.
#[track_caller]
fn only_image_manifest(archive: &Archive) -> ManifestRef {
    let images = archive.image_manifests();
    assert_eq!(
        images.len(),
        1,
        "one image manifest expected:\n{}",
        listing(archive)
    );
    images[0].clone()
}

/// `RootFS.Layers` of a local image.
fn diff_ids_of(image: &str) -> Vec<String> {
    docker::inspect(image)["RootFS"]["Layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no RootFS.Layers for {image}"))
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

// ---------------------------------------------------------------------------
// 1. Multi-platform (containerd store; refused on classic)
// ---------------------------------------------------------------------------

const PLATFORMS: &str = "linux/amd64,linux/arm64";
const PLATFORM_LIST: [(&str, &str); 2] = [("linux/amd64", "amd64"), ("linux/arm64", "arm64")];

const SCRATCH_BODY: &str = "FROM scratch\nCOPY hello.txt /hello.txt\nCOPY data/ /data/\n";
const SCRATCH_FILES: [(&str, &str); 3] = [
    ("hello.txt", "hello from every platform\n"),
    ("data/one.txt", "one\n"),
    ("data/two.txt", "two\n"),
];

#[test]
fn multi_platform_from_scratch() {
    let t = "multi_platform_from_scratch";
    let store = start(t);
    let _g = shared();
    if store == Store::Classic {
        assert_refused_alike(
            t,
            SCRATCH_BODY,
            &SCRATCH_FILES,
            // `--load`, not an OCI output: the classic store refuses that exporter first.
            &["--platform", PLATFORMS, "--load"],
            MANIFEST_LIST_REFUSAL,
        );
        return;
    }
    let args = ["--platform", PLATFORMS];
    let (plain, _) = build_oci(t, "plain", SCRATCH_BODY, &SCRATCH_FILES, "", &args);
    let (squashed, run) = build_oci(t, "squashed", SCRATCH_BODY, &SCRATCH_FILES, "", &args);
    println!("[{t}] squashed archive:\n{}", listing(&squashed));
    println!("{}", indent(&squash_lines(&run.out.stderr)));
    assert_eq!(
        squashed.image_manifests().len(),
        2,
        "{}",
        listing(&squashed)
    );
    for (platform, arch) in PLATFORM_LIST {
        let (p_img, p_fs) = platform_image(&plain, platform);
        let (s_img, s_fs) = platform_image(&squashed, platform);
        describe(t, &format!("{platform} plain   "), &p_img);
        describe(t, &format!("{platform} squashed"), &s_img);
        assert_eq!(p_img.layers.len(), 2, "{platform}: two COPY layers built");
        assert_eq!(s_img.layers.len(), 1, "{platform}: squashed to one layer");
        assert_eq!(s_img.config["architecture"], arch, "{platform}: config");
        assert_eq!(s_img.config["os"], "linux");
        assert_same_models(t, (&p_fs, &p_img), (&s_fs, &s_img), &CompareOptions::new());
        assert_squash_history(t, &p_img, &s_img, 0);
        assert_file(&s_fs, "/data/two.txt", "two\n");
    }
}

/// No `ARG TARGETARCH` above `FROM`: with Docker 26.1's built-in Dockerfile
/// frontend (BuildKit 0.13) that global declaration without a value empties
/// the automatic platform argument, and the plain build fails with `failed
/// to parse stage name "squash-test/busybox-": invalid reference format`.
/// The automatic value is usable in `FROM` without it.
const PER_ARCH_BODY: &str = r#"FROM squash-test/busybox-${TARGETARCH}
COPY app.txt /app/app.txt
COPY conf/ /etc/app/
CMD ["cat", "/app/app.txt"]
"#;
const PER_ARCH_FILES: [(&str, &str); 2] = [
    ("app.txt", "an app on its platform's busybox\n"),
    ("conf/app.conf", "key=value\n"),
];

#[test]
fn multi_platform_per_arch_base() {
    let t = "multi_platform_per_arch_base";
    let store = start(t);
    let _g = shared();
    if store == Store::Classic {
        assert_refused_alike(
            t,
            PER_ARCH_BODY,
            &PER_ARCH_FILES,
            // `--load`, not an OCI output: the classic store refuses that exporter first.
            &["--platform", PLATFORMS, "--load"],
            MANIFEST_LIST_REFUSAL,
        );
        return;
    }
    // The per-platform bases: squash-test/busybox-amd64 is the host busybox
    // under another name; busybox-arm64 is made by `scripts/engine.sh images`.
    docker::tag(BUSYBOX, "squash-test/busybox-amd64:latest");
    let arm = docker::docker(&["image", "inspect", "squash-test/busybox-arm64:latest"]);
    assert!(
        arm.success(),
        "squash-test/busybox-arm64:latest is missing (scripts/engine.sh images makes it): {arm}"
    );
    let bases: Vec<(&str, Vec<String>)> = PLATFORM_LIST
        .iter()
        .map(|(p, arch)| {
            (
                *p,
                diff_ids_of(&format!("squash-test/busybox-{arch}:latest")),
            )
        })
        .collect();
    let args = ["--platform", PLATFORMS];
    let (plain, _) = build_oci(t, "plain", PER_ARCH_BODY, &PER_ARCH_FILES, "", &args);
    let (full, _) = build_oci(t, "squashed", PER_ARCH_BODY, &PER_ARCH_FILES, "", &args);
    let mut base_args = args.to_vec();
    base_args.extend(["--build-arg", "SQUASH_MODE=base"]);
    let (base, run) = build_oci(
        t,
        "squashed",
        PER_ARCH_BODY,
        &PER_ARCH_FILES,
        "",
        &base_args,
    );
    println!("{}", indent(&squash_lines(&run.out.stderr)));
    let mut busyboxes = Vec::new();
    for ((platform, arch), (_, base_ids)) in PLATFORM_LIST.iter().zip(&bases) {
        let (p_img, p_fs) = platform_image(&plain, platform);
        let (f_img, f_fs) = platform_image(&full, platform);
        let (b_img, b_fs) = platform_image(&base, platform);
        describe(t, &format!("{platform} plain   "), &p_img);
        describe(t, &format!("{platform} full    "), &f_img);
        describe(t, &format!("{platform} base    "), &b_img);
        assert_eq!(
            base_ids.len(),
            1,
            "{platform}: the busybox base has one layer"
        );
        assert_eq!(p_img.layers.len(), 3, "{platform}: base + 2 COPY layers");
        assert_eq!(
            p_img.config_diff_ids()[0],
            base_ids[0],
            "{platform}: plain base"
        );
        for (mode, img, fs, layers) in [("full", &f_img, &f_fs, 1), ("base", &b_img, &b_fs, 2)] {
            assert_eq!(img.layers.len(), layers, "{platform} {mode}");
            assert_eq!(
                img.config["architecture"], *arch,
                "{platform} {mode}: config"
            );
            assert_same_models(t, (&p_fs, &p_img), (fs, img), &CompareOptions::new());
        }
        assert_squash_history(t, &p_img, &f_img, 0);
        assert_squash_history(t, &p_img, &b_img, 1);
        assert_eq!(
            b_img.layers[0].diff_id, base_ids[0],
            "{platform}: base mode keeps that platform's base layer"
        );
        busyboxes.push(file_sha(&f_fs, "/bin/busybox"));
    }
    assert_ne!(
        busyboxes[0], busyboxes[1],
        "each platform has its own base's busybox binary"
    );
}

// ---------------------------------------------------------------------------
// 2. Build inputs (both stores)
// ---------------------------------------------------------------------------

const STAGES_BODY: &str = r#"FROM squash-test/busybox-layers:latest AS builder
RUN mkdir -p /out && cat /base/dir/one /base/dir/two > /out/both
LABEL org.example.stage=builder

FROM builder AS tester
RUN echo tested > /out/tested

FROM squash-test/busybox:latest
COPY --from=builder /out/both /both
RUN echo final > /final
"#;

#[test]
fn input_target_middle_stage() {
    let t = "input_target_middle_stage";
    start(t);
    let _g = shared();
    let base_ids = diff_ids_of(LAYERS);
    for (mode, layers) in [("full", 1), ("base", base_ids.len() + 1)] {
        let out = Scenario::new(t, STAGES_BODY)
            .build_args(&["--target", "tester"])
            .squash_args(&["--build-arg", &format!("SQUASH_MODE={mode}")])
            .run();
        describe_outcome(t, &out);
        assert_eq!(out.plain.image.layers.len(), base_ids.len() + 2);
        assert_eq!(out.squashed.image.layers.len(), layers, "{mode} mode");
        assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
        let fs = &out.squashed.fs;
        assert_file(fs, "/out/tested", "tested\n");
        assert!(!fs.contains("/final"), "the final stage was not built");
        assert_eq!(
            out.squashed.image.container_config()["Labels"]["org.example.stage"],
            "builder"
        );
        if mode == "base" {
            assert_eq!(
                out.squashed.image.config_diff_ids()[..base_ids.len()],
                base_ids[..],
                "the middle stage's base (through FROM builder) is kept"
            );
        }
    }
}

const ARGS_BODY: &str = r#"ARG BASE=squash-test/busybox-layers:latest
FROM ${BASE}
ARG GREETING=hello
RUN echo "$GREETING" > /greeting
ENV GREETING=${GREETING}
"#;

#[test]
fn input_build_args_before_from() {
    let t = "input_build_args_before_from";
    start(t);
    let _g = shared();
    let base_ids = diff_ids_of(BUSYBOX);
    for (mode, layers) in [("full", 1), ("base", base_ids.len() + 1)] {
        let out = Scenario::new(t, ARGS_BODY)
            .build_args(&[
                "--build-arg",
                "BASE=squash-test/busybox:latest",
                "--build-arg",
                "GREETING=bonjour",
            ])
            .squash_args(&["--build-arg", &format!("SQUASH_MODE={mode}")])
            .run();
        describe_outcome(t, &out);
        assert_eq!(
            out.plain.image.layers.len(),
            2,
            "busybox (from the build arg) + RUN"
        );
        assert_eq!(out.squashed.image.layers.len(), layers, "{mode} mode");
        assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
        let fs = &out.squashed.fs;
        assert_file(fs, "/greeting", "bonjour\n");
        assert!(!fs.contains("/base"), "the default base was not used");
        let env = out.squashed.image.container_config()["Env"].to_string();
        assert!(env.contains("GREETING=bonjour"), "{env}");
        if mode == "base" {
            assert_eq!(out.squashed.image.config_diff_ids()[0], base_ids[0]);
        }
    }
}

const FILE_BODY: &str = r#"FROM squash-test/busybox:latest
COPY . /ctx/
RUN ls /ctx > /listing
"#;

/// A decoy `Dockerfile` that fails if it is the one built.
const DECOY: &str =
    "FROM squash-test/busybox:latest\nRUN echo the-default-Dockerfile-was-built && exit 42\n";

#[test]
fn input_dockerfile_by_other_name() {
    let t = "input_dockerfile_by_other_name";
    start(t);
    let _g = shared();
    let mut sides = Vec::new();
    for side in ["plain", "squashed"] {
        let ctx = TestContext::new(&format!("{t}-{side}"), DECOY);
        let body = if side == "plain" {
            FILE_BODY.to_string()
        } else {
            squash_dockerfile(FILE_BODY)
        };
        ctx.write("build/other.Dockerfile", &body);
        // The per-Dockerfile ignore file, next to it.
        ctx.write(
            "build/other.Dockerfile.dockerignore",
            "skip.txt\n*Dockerfile*\nbuild\n",
        );
        ctx.write("keep.txt", "kept\n");
        ctx.write("skip.txt", "skipped\n");
        // -f is relative to the working directory, not to the context.
        let file = ctx.path().join("build/other.Dockerfile");
        let file = file.to_str().unwrap().to_string();
        sides.push(load_built(side, ctx, &["-f", &file], None));
    }
    let squashed = sides.pop().unwrap();
    let plain = sides.pop().unwrap();
    let pair = Outcome::new(plain, squashed);
    describe(t, "plain   ", &pair.plain.image);
    describe(t, "squashed", &pair.squashed.image);
    assert_eq!(pair.plain.image.layers.len(), 3);
    assert_eq!(pair.squashed.image.layers.len(), 1);
    assert_same(t, &pair.plain, &pair.squashed, &CompareOptions::new());
    let fs = &pair.squashed.fs;
    assert_eq!(
        fs.children("/ctx"),
        ["keep.txt"],
        "other.Dockerfile.dockerignore applied"
    );
}

#[test]
fn input_dockerfile_from_stdin() {
    let t = "input_dockerfile_from_stdin";
    start(t);
    let _g = shared();
    let body = "FROM squash-test/busybox:latest\nCOPY from-context.txt /from-context.txt\nRUN echo from-stdin > /stdin.txt\n";
    let mut sides = Vec::new();
    for side in ["plain", "squashed"] {
        let ctx = TestContext::new(&format!("{t}-{side}"), DECOY);
        ctx.write("from-context.txt", "the context is the directory\n");
        let dockerfile = if side == "plain" {
            body.to_string()
        } else {
            squash_dockerfile(body)
        };
        sides.push(load_built(
            side,
            ctx,
            &["-f", "-"],
            Some(dockerfile.as_bytes()),
        ));
    }
    let squashed = sides.pop().unwrap();
    let plain = sides.pop().unwrap();
    let pair = Outcome::new(plain, squashed);
    describe(t, "plain   ", &pair.plain.image);
    describe(t, "squashed", &pair.squashed.image);
    println!("{}", indent(&squash_lines(&pair.squashed.build.stderr)));
    assert_eq!(pair.plain.image.layers.len(), 3);
    assert_eq!(pair.squashed.image.layers.len(), 1);
    assert_same(t, &pair.plain, &pair.squashed, &CompareOptions::new());
    assert_file(&pair.squashed.fs, "/stdin.txt", "from-stdin\n");
    assert_file(
        &pair.squashed.fs,
        "/from-context.txt",
        "the context is the directory\n",
    );
}

#[test]
fn input_dockerignore() {
    let t = "input_dockerignore";
    start(t);
    let _g = shared();
    let out = Scenario::new(t, FILE_BODY)
        .file(
            ".dockerignore",
            ".dockerignore\nDockerfile\nignored.txt\nignored-dir/\n",
        )
        .file("kept.txt", "kept\n")
        .file("ignored.txt", "must not be copied\n")
        .file("ignored-dir/x", "nor this\n")
        .run();
    describe_outcome(t, &out);
    assert_eq!(out.squashed.image.layers.len(), 1);
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    let fs = &out.squashed.fs;
    assert_eq!(fs.children("/ctx"), ["kept.txt"]);
    assert!(!fs.contains("/ctx/ignored.txt"));
}

#[test]
fn input_named_build_context() {
    let t = "input_named_build_context";
    start(t);
    let _g = shared();
    let extra = tempfile::Builder::new()
        .prefix("squash-e2e-extra-")
        .tempdir()
        .unwrap();
    std::fs::write(extra.path().join("extra.txt"), "from the extra context\n").unwrap();
    std::fs::create_dir_all(extra.path().join("sub")).unwrap();
    std::fs::write(extra.path().join("sub/deep.txt"), "deep\n").unwrap();
    let extra_arg = format!("extra={}", extra.path().display());
    let body = r#"FROM squash-test/busybox:latest
COPY --from=extra extra.txt /from-extra/extra.txt
COPY --from=extra sub/ /from-extra/sub/
RUN cat /from-extra/extra.txt > /check
"#;
    let out = Scenario::new(t, body)
        .build_args(&["--build-context", &extra_arg])
        .run();
    describe_outcome(t, &out);
    assert_eq!(out.plain.image.layers.len(), 4);
    assert_eq!(out.squashed.image.layers.len(), 1);
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    let fs = &out.squashed.fs;
    assert_file(fs, "/check", "from the extra context\n");
    assert_file(fs, "/from-extra/sub/deep.txt", "deep\n");
}

/// `FROM base` where `base` is a named context naming an image
/// (`--build-context base=docker-image://...`): the README says base mode
/// keeps the base "after build arguments, --platform and --build-context have
/// been applied", so the base's layers must be kept as they are for a plain
/// `FROM <image>`.
#[test]
fn base_mode_keeps_an_image_named_context() {
    let t = "base_mode_keeps_an_image_named_context";
    start(t);
    let _g = shared();
    let body = "FROM base\nCOPY a.txt /a.txt\nRUN cat /a.txt /base/dir/one > /check\n";
    let base_ids = diff_ids_of(LAYERS);
    for (mode, layers) in [("full", 1), ("base", base_ids.len() + 1)] {
        let out = Scenario::new(t, body)
            .file("a.txt", "a\n")
            .build_args(&[
                "--build-context",
                "base=docker-image://squash-test/busybox-layers:latest",
            ])
            .squash_args(&["--build-arg", &format!("SQUASH_MODE={mode}")])
            .run();
        describe_outcome(t, &out);
        println!("{}", indent(&squash_lines(&out.squashed.build.stderr)));
        assert_eq!(out.plain.image.layers.len(), base_ids.len() + 2);
        assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
        assert_file(&out.squashed.fs, "/check", "a\none\n");
        let last = out.squashed.image.history().last().cloned().unwrap();
        assert_eq!(
            out.squashed.image.layers.len(),
            layers,
            "{mode} mode: the squash entry says {:?}",
            created_by(&last)
        );
        if mode == "base" {
            assert_eq!(
                out.squashed.image.config_diff_ids()[..base_ids.len()],
                base_ids[..],
                "the base named by --build-context is kept"
            );
        }
    }
}

/// Fixed, so that a cached RUN layer of an earlier run holds the same bytes.
const SECRET: &str = "squash-e2e-secret-7f3a9c1e5b2d";

#[test]
fn input_secret_in_no_layer() {
    let t = "input_secret_in_no_layer";
    start(t);
    let _g = shared();
    let dir = tempfile::Builder::new()
        .prefix("squash-e2e-secret-")
        .tempdir()
        .unwrap();
    let src = dir.path().join("s.txt");
    std::fs::write(&src, SECRET).unwrap();
    let secret_arg = format!("id=s,src={}", src.display());
    // The first RUN uses the secret as intended; the second is the mistake
    // squashing repairs: a copy in one layer, deleted in the next.
    let body = r#"FROM squash-test/busybox:latest
RUN --mount=type=secret,id=s cat /run/secrets/s > /dev/null && echo used-the-secret > /used
RUN --mount=type=secret,id=s cp /run/secrets/s /leaked-then-deleted
RUN rm /leaked-then-deleted
"#;
    let out = Scenario::new(t, body)
        .build_args(&["--secret", &secret_arg])
        .run();
    describe_outcome(t, &out);
    assert_eq!(out.squashed.image.layers.len(), 1);
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    let plain_hits = out
        .plain
        .image
        .layers_holding(SECRET.as_bytes())
        .expect("reading the layers");
    let squashed_hits = out
        .squashed
        .image
        .layers_holding(SECRET.as_bytes())
        .expect("reading the layers");
    println!("[{t}] layers holding the secret: plain {plain_hits:?}, squashed {squashed_hits:?}");
    assert!(
        squashed_hits.is_empty(),
        "the secret is in a layer of the squashed image: {squashed_hits:?}"
    );
    assert_eq!(
        plain_hits.len(),
        1,
        "the plain image keeps the deleted copy in its layer (what squashing removes)"
    );
    let config = serde_json::to_string(&out.squashed.image.config).unwrap();
    assert!(!config.contains(SECRET), "the secret is in the config");
    assert_file(&out.squashed.fs, "/used", "used-the-secret\n");
    assert!(!out.squashed.fs.contains("/leaked-then-deleted"));
}

#[test]
fn input_cache_mount_not_in_image() {
    let t = "input_cache_mount_not_in_image";
    start(t);
    let _g = shared();
    // The payload is computed in the build, so it is only in the cache mount.
    let body = r#"FROM squash-test/busybox:latest
RUN --mount=type=cache,target=/cache,id=squash-e2e-cache echo "cache-payload-$((6*7))" > /cache/data && cp /cache/data /cache/copy && echo built > /built
"#;
    let out = Scenario::new(t, body).run();
    describe_outcome(t, &out);
    assert_eq!(out.squashed.image.layers.len(), 1);
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    for (side, img, fs) in [
        ("plain", &out.plain.image, &out.plain.fs),
        ("squashed", &out.squashed.image, &out.squashed.fs),
    ] {
        let hits = img
            .layers_holding(b"cache-payload-42")
            .expect("reading the layers");
        assert!(hits.is_empty(), "{side}: cache content in layers {hits:?}");
        assert!(
            !fs.contains("/cache/data"),
            "{side}: /cache/data in the image"
        );
        assert_file(fs, "/built", "built\n");
    }
}

#[test]
fn input_no_cache_reruns_the_squash() {
    let t = "input_no_cache_reruns_the_squash";
    start(t);
    let _g = shared();
    let body = "FROM squash-test/busybox:latest\nCOPY a.txt /a.txt\nRUN echo no-cache > /n\n";
    // Warm the cache first, so that "not CACHED" means something.
    drop(Scenario::new(t, body).file("a.txt", "a\n").run());
    let out = Scenario::new(t, body)
        .file("a.txt", "a\n")
        .build_args(&["--no-cache"])
        .run();
    describe_outcome(t, &out);
    assert_eq!(out.squashed.image.layers.len(), 1);
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    let log = &out.squashed.build.stderr;
    let ours = squash_steps(log);
    let theirs = run_copy_steps(log);
    println!(
        "[{t}] --no-cache squashed build steps:\n{}\n{}",
        show_steps(&theirs),
        show_steps(&ours)
    );
    assert!(!ours.is_empty(), "no squash step in the output:\n{log}");
    assert!(
        ours.iter().all(|s| !s.cached && s.done),
        "with --no-cache our squash step must run again:\n{}",
        show_steps(&ours)
    );
    assert!(
        !theirs.is_empty() && theirs.iter().all(|s| !s.cached),
        "with --no-cache the Dockerfile's steps must run again:\n{}",
        show_steps(&theirs)
    );
}

#[test]
fn input_label_flag() {
    let t = "input_label_flag";
    start(t);
    let _g = shared();
    let body = "FROM squash-test/busybox:latest\nLABEL org.example.in-file=yes\nRUN echo l > /l\n";
    let out = Scenario::new(t, body)
        .build_args(&["--label", "org.example.flag=from the command line"])
        .run();
    describe_outcome(t, &out);
    assert_eq!(out.squashed.image.layers.len(), 1);
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    let labels = &out.squashed.image.container_config()["Labels"];
    println!("[{t}] squashed labels: {labels}");
    assert_eq!(labels["org.example.flag"], "from the command line");
    assert_eq!(labels["org.example.in-file"], "yes");
}

#[test]
fn input_heredoc_run_and_copy() {
    let t = "input_heredoc_run_and_copy";
    start(t);
    let _g = shared();
    let body = r#"FROM squash-test/busybox:latest
RUN <<EOF
set -e
mkdir -p /opt/h
echo "from a heredoc RUN" > /opt/h/run.txt
EOF
COPY <<EOF /opt/h/copied.txt
from a heredoc COPY
EOF
RUN <<EOF sh
echo second > /opt/h/second.txt
EOF
"#;
    let out = Scenario::new(t, body).run();
    describe_outcome(t, &out);
    assert_eq!(out.plain.image.layers.len(), 4);
    assert_eq!(out.squashed.image.layers.len(), 1);
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    let fs = &out.squashed.fs;
    assert_file(fs, "/opt/h/run.txt", "from a heredoc RUN\n");
    assert_file(fs, "/opt/h/copied.txt", "from a heredoc COPY\n");
    assert_file(fs, "/opt/h/second.txt", "second\n");
}

// ---------------------------------------------------------------------------
// 3. Requests the Dockerfile frontend does not answer
// ---------------------------------------------------------------------------

/// A request the engine's Dockerfile frontend does not answer fails the same
/// way with our line: same exit status, same stdout, the same error (`lint` is
/// one on Docker 26.1; Docker 28's frontend answers it, and then ours answers
/// alike).
///
/// On Docker 28 the error line is exactly the plain one. On Docker 26.1 the two differ, fixed
/// by BuildKit, not by us: with any `# syntax=`
/// frontend the error crosses gRPC twice (their frontend -> our frontend, our
/// `Return` -> the client) instead of once, and each crossing rebuilds the
/// typed error as `unsupported request X: <inner>`, so the message is
/// repeated once more; and the built-in frontend that followed the syntax
/// line adds that line as the error's source (`Dockerfile:1 >>> # syntax=`)
/// because the error has none. Our frontend logs and returns the status it got
/// unchanged (`squash-frontend: unsupported request frontend.lint` in the
/// daemon log). Asserted exactly, so that a change on either side shows.
#[test]
fn print_unanswered_request_fails_alike() {
    let t = "print_unanswered_request_fails_alike";
    start(t);
    let _g = shared();
    let body = "FROM squash-test/busybox:latest\nRUN echo one > /one\n";
    let plain = TestContext::new(t, body);
    let squashed = TestContext::new(t, &squash_dockerfile(body));
    let syntax_excerpt = format!(">>> # syntax={}", frontend_image_from_env());
    for what in ["lint", "squash-e2e-no-such-request"] {
        let flag = format!("--print={what}");
        let request = |ctx: &TestContext| {
            Buildx::new(ctx.path())
                .args(&[&flag])
                .env("BUILDX_EXPERIMENTAL", "1")
                .timeout(BUILD_TIMEOUT)
                .run()
                .out
        };
        let (p, s) = (request(&plain), request(&squashed));
        let (pe, se) = (error_lines(&p.stderr), error_lines(&s.stderr));
        println!(
            "[{t}] {flag}: plain {} / squashed {}\n  plain:\n{}\n  squashed:\n{}",
            p.status,
            s.status,
            indent(&pe.join("\n")),
            indent(&se.join("\n"))
        );
        if p.success() && what == "lint" {
            // Newer Dockerfile frontends answer lint requests (Docker 28's does; 26.1's does not):
            // then ours must answer alike.
            assert!(
                s.success(),
                "{flag}: answered without our line, refused with it: {s}"
            );
            assert_eq!(p.stdout, s.stdout, "{flag}: the answer differs");
            println!("[{t}] {flag}: answered alike by this engine's Dockerfile frontend");
            continue;
        }
        assert!(
            !p.success(),
            "the engine's Dockerfile frontend was expected to refuse {flag}: {p}"
        );
        assert_eq!(
            p.status.code(),
            s.status.code(),
            "{flag}: exit status differs\nplain: {p}\nsquashed: {s}"
        );
        assert_eq!(p.stdout, s.stdout, "{flag}: stdout differs");
        let msg = format!("unsupported request frontend.{what}");
        // buildx 0.13 prints `ERROR: <message>`, newer ones `ERROR: failed to build: failed to
        // solve: <message>`.
        let inner = |l: &str| error_message(l).to_string();
        assert_eq!(pe.len(), 1, "plain: {p}");
        assert_eq!(inner(&pe[0]), format!("{msg}: {msg}"), "plain: {p}");
        assert_eq!(se.len(), 1, "squashed: {s}");
        assert!(!p.stderr.contains(">>> # syntax="), "{p}");
        if docker::engine_or_panic().server() < Some(docker::Version::new(27, 0, 0)) {
            // Docker 26.1: rebuilt once more, and the syntax line given as the source.
            assert_eq!(
                inner(&se[0]),
                format!("{msg}: {msg}: {msg}"),
                "{flag}: the error with our line should be the plain one, rebuilt once more by BuildKit's forwarding\nplain: {p}\nsquashed: {s}"
            );
            assert!(
                s.stderr.contains(&syntax_excerpt),
                "{flag}: BuildKit's source excerpt of the syntax line is missing: {s}"
            );
        } else {
            // Docker 28: exactly the plain build's error, with the syntax line as its source.
            assert_eq!(
                inner(&se[0]),
                inner(&pe[0]),
                "{flag}: the same error\nplain: {p}\nsquashed: {s}"
            );
            assert!(
                s.stderr.contains(&syntax_excerpt),
                "{flag}: BuildKit's source excerpt of the syntax line is missing: {s}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 4. The build cache
// ---------------------------------------------------------------------------

const CACHE_BODY: &str = "FROM squash-test/busybox:latest\nCOPY a.txt /a.txt\nRUN echo rebuilt > /r && cat /a.txt > /r2\nCOPY b.txt /b.txt\n";
const CACHE_FILES: [(&str, &str); 2] = [("a.txt", "cache a\n"), ("b.txt", "cache b\n")];

#[test]
fn cache_rebuild_is_fully_cached() {
    let t = "cache_rebuild_is_fully_cached";
    start(t);
    let _g = shared();
    let mut timings = Vec::new();
    let mut tags = Vec::new();
    let mut last = Vec::new();
    for side in ["plain", "squashed"] {
        let ctx = side_context(t, side, CACHE_BODY, &CACHE_FILES);
        let mut ids = Vec::new();
        for round in ["first", "rebuild"] {
            let tag = ctx.tag(&format!("{side}-{round}"));
            let run = Buildx::new(ctx.path())
                .args(&["--load", "-t", &tag])
                .timeout(BUILD_TIMEOUT)
                .run();
            tags.push(tag.clone());
            run.out.assert_success();
            ids.push(
                docker::inspect(&tag)["Id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
            println!(
                "[{t}] {side} {round} build: {:.2}s",
                run.elapsed.as_secs_f64()
            );
            if round == "rebuild" {
                timings.push(run.elapsed);
                last.push(run.out);
            }
        }
        println!("[{t}] {side}: image ID first {} rebuild {}", ids[0], ids[1]);
        assert_eq!(
            ids[0], ids[1],
            "{side}: a fully cached rebuild gives the same image"
        );
    }
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    docker::rmi(&refs);
    let (plain, squashed) = (&last[0], &last[1]);
    let plain_steps = run_copy_steps(&plain.stderr);
    let their = run_copy_steps(&squashed.stderr);
    let ours = squash_steps(&squashed.stderr);
    println!(
        "[{t}] squashed rebuild steps:\n{}\n{}",
        show_steps(&their),
        show_steps(&ours)
    );
    assert!(
        plain_steps.len() == 3 && plain_steps.iter().all(|s| s.cached),
        "the plain rebuild is cached:\n{}",
        show_steps(&plain_steps)
    );
    assert!(
        !ours.is_empty(),
        "no squash step shown:\n{}",
        squashed.stderr
    );
    assert!(
        ours.iter().all(Step::reused),
        "the squash step of a rebuild with no change must be CACHED:\n{}",
        show_steps(&ours)
    );
    assert!(
        their.iter().all(|s| s.cached),
        "every Dockerfile step of the squashed rebuild must be CACHED:\n{}",
        show_steps(&their)
    );
    let (tp, ts) = (timings[0].as_secs_f64(), timings[1].as_secs_f64());
    println!(
        "[{t}] fully cached rebuild: plain {tp:.2}s, squashed {ts:.2}s (+{:.2}s)",
        ts - tp
    );
    // Printed, not asserted: every step above is CACHED, so nothing was rebuilt; how long the
    // engine took is `make bench`'s to measure (workload 4), where a test's wall time on a
    // loaded engine is not a figure (8.6 s against 0.9 s here once, all steps CACHED).
}

#[test]
fn cache_export_and_import_local() {
    let t = "cache_export_and_import_local";
    let store = start(t);
    let dir = tempfile::Builder::new()
        .prefix("squash-e2e-cache-")
        .tempdir()
        .unwrap();
    if store == Store::Classic {
        let _g = shared();
        let to = format!("type=local,dest={}", dir.path().join("c").display());
        assert_refused_alike(
            t,
            CACHE_BODY,
            &CACHE_FILES,
            &["--cache-to", &to],
            CACHE_EXPORT_REFUSAL,
        );
        return;
    }
    let _g = exclusive();
    let mut results = Vec::new();
    // Full mode (the engine's diff, after our inspect step) and base mode with our in-build sync:
    // every step of ours must come back from the imported cache.
    let base_sync: &[&str] = &[
        "--build-arg",
        "SQUASH_MODE=base",
        "--build-arg",
        "SQUASH_METHOD=sync",
    ];
    for (side, extra) in [
        ("plain", &[][..]),
        ("squashed", &[][..]),
        ("base-sync", base_sync),
    ] {
        let ctx = side_context(t, side, CACHE_BODY, &CACHE_FILES);
        let cache = dir.path().join(side);
        let to = format!("type=local,dest={}", cache.display());
        let from = format!("type=local,src={}", cache.display());
        let first = ctx.tag("export");
        let mut export_args = vec!["--load", "-t", &first, "--cache-to", &to];
        export_args.extend_from_slice(extra);
        let run = Buildx::new(ctx.path())
            .args(&export_args)
            .timeout(BUILD_TIMEOUT)
            .run();
        docker::rmi(&[&first]);
        run.out.assert_success();
        prune_build_cache();
        let second = ctx.tag("import");
        let mut import_args = vec!["--load", "-t", &second, "--cache-from", &from];
        import_args.extend_from_slice(extra);
        let run = Buildx::new(ctx.path())
            .args(&import_args)
            .timeout(BUILD_TIMEOUT)
            .run();
        run.out.assert_success();
        let img = docker::save(&second);
        docker::rmi(&[&second]);
        describe(t, &format!("{side} (from imported cache)"), &img);
        results.push((side, run.out, img));
    }
    for (side, out, _) in &results {
        println!(
            "[{t}] {side} build after prune with --cache-from:\n{}\n{}",
            show_steps(&run_copy_steps(&out.stderr)),
            show_steps(&squash_steps(&out.stderr))
        );
    }
    let (_, plain, plain_img) = &results[0];
    let plain_steps = run_copy_steps(&plain.stderr);
    assert!(
        !plain_steps.is_empty() && plain_steps.iter().all(|s| s.cached),
        "the engine reuses the imported cache for the plain build:\n{}",
        show_steps(&plain_steps)
    );
    let base_layers = docker::save(BUSYBOX).layers.len();
    for (side, squashed, img) in &results[1..] {
        let want = if *side == "base-sync" {
            base_layers + 1
        } else {
            1
        };
        assert_eq!(img.layers.len(), want, "[{t}] {side}");
        assert!(img.layers.len() < plain_img.layers.len());
        let ours = squash_steps(&squashed.stderr);
        let their = run_copy_steps(&squashed.stderr);
        assert!(
            !ours.is_empty() && ours.iter().all(Step::reused),
            "[{t}] {side}: the squash steps must come from the imported cache:\n{}\n{}",
            show_steps(&ours),
            squashed.stderr
        );
        assert!(
            their.iter().all(|s| s.cached),
            "[{t}] {side}: the Dockerfile steps of the squashed build must come from the imported cache:\n{}",
            show_steps(&their)
        );
    }
}

// ---------------------------------------------------------------------------
// 5. Reproducible output (containerd store; OCI output refused on classic)
// ---------------------------------------------------------------------------

const EPOCH_ISO: &str = "2023-11-14T22:13:20Z";

#[test]
fn reproducible_oci_output() {
    let t = "reproducible_oci_output";
    let store = start(t);
    let body = "FROM squash-test/busybox-layers:latest\nCOPY app.txt /app/app.txt\nRUN echo reproducible > /app/state && rm /base/big\n";
    let files = [("app.txt", "same bytes every time\n")];
    let rewrite = ",rewrite-timestamp=true";
    if store == Store::Classic {
        let _g = shared();
        assert_refused_alike(
            t,
            body,
            &files,
            &[
                "--build-arg",
                "SOURCE_DATE_EPOCH=1700000000",
                "--output",
                &format!("type=oci,dest=/dev/null{rewrite}"),
            ],
            OCI_REFUSAL,
        );
        return;
    }
    let _g = exclusive();
    let base_layers = diff_ids_of(LAYERS).len();
    for (mode, layers) in [("full", 1), ("base", base_layers + 1)] {
        let mode_arg = format!("SQUASH_MODE={mode}");
        let args = [
            "--build-arg",
            "SOURCE_DATE_EPOCH=1700000000",
            "--build-arg",
            mode_arg.as_str(),
        ];
        let mut digests = Vec::new();
        for round in 0..2 {
            if round == 1 {
                prune_build_cache();
            }
            let (archive, _) = build_oci(t, "squashed", body, &files, rewrite, &args);
            let m = only_image_manifest(&archive);
            let img = archive.image_for_manifest(&m).unwrap();
            img.verify().unwrap();
            describe(t, &format!("{mode} round {round}"), &img);
            assert_eq!(img.layers.len(), layers, "{mode} mode");
            assert_eq!(img.config["created"], EPOCH_ISO, "{mode}: config created");
            let last = img.history().last().cloned().unwrap();
            println!(
                "[{t}] {mode} round {round}: manifest {}, last history {last}",
                m.digest
            );
            assert!(created_by(&last).starts_with("squash:"), "{last}");
            assert_eq!(last["created"], EPOCH_ISO, "{mode}: squash history entry");
            digests.push(m.digest.clone());
        }
        assert_eq!(
            digests[0], digests[1],
            "{mode}: two builds from a cold cache give different manifests"
        );
    }
}

// ---------------------------------------------------------------------------
// 6. Attestations (containerd store; refused on classic)
// ---------------------------------------------------------------------------

const SBOM_GENERATOR: &str = "local/squash-e2e-sbom-generator:test";
const SBOM_MARKER: &str = "squash-e2e-sbom-marker-31337";

/// An SBOM generator image in the local store: an in-toto statement with an
/// SPDX document that records what it saw at `$BUILDKIT_SCAN_SOURCE`.
fn make_sbom_generator(t: &str) {
    let script = r#"#!/bin/sh
set -eu
src=${BUILDKIT_SCAN_SOURCE:?}
dst=${BUILDKIT_SCAN_DESTINATION:?}
files=$(find "$src" -type f | wc -l)
marker=$(cat "$src/sbom-marker" 2>/dev/null || echo none)
mkdir -p "$dst"
cat > "$dst/squash-e2e.spdx.json" <<EOF
{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document","subject":[],"predicate":{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT","name":"squash-e2e","documentNamespace":"https://example.invalid/squash-e2e","creationInfo":{"created":"2023-11-14T22:13:20Z","creators":["Tool: squash-e2e-sbom-generator"]},"comment":"files=$files marker=$marker","packages":[]}}
EOF
"#;
    let ctx = TestContext::new(
        t,
        "FROM squash-test/busybox:latest\nCOPY --chmod=0755 gen.sh /gen.sh\nENTRYPOINT [\"/gen.sh\"]\n",
    );
    ctx.write("gen.sh", script);
    let out = ctx.build(&[
        "--load",
        "--provenance=false",
        "--sbom=false",
        "-t",
        SBOM_GENERATOR,
    ]);
    out.assert_success();
}

/// The in-toto statements of an attestation manifest.
fn statements(archive: &Archive, att: &ManifestRef) -> Vec<Value> {
    let manifest: Value = serde_json::from_slice(&archive.read_blob(&att.digest).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let blob = archive.read_blob(l["digest"].as_str().unwrap()).unwrap();
            serde_json::from_slice(&blob).unwrap()
        })
        .collect()
}

#[test]
fn attestations_provenance_and_sbom() {
    let t = "attestations_provenance_and_sbom";
    let store = start(t);
    let _g = shared();
    let body = "FROM squash-test/busybox:latest\nCOPY sbom-marker /sbom-marker\nRUN echo attested > /attested\n";
    let files = [("sbom-marker", SBOM_MARKER)];
    let sbom = format!("--sbom=generator={SBOM_GENERATOR}");
    if store == Store::Classic {
        for args in [
            vec!["--provenance=mode=max", "--load"],
            vec![sbom.as_str(), "--load"],
        ] {
            assert_refused_alike(t, body, &files, &args, ATTESTATION_REFUSAL);
        }
        return;
    }
    make_sbom_generator(t);
    let args = ["--provenance=mode=max", sbom.as_str()];
    let mut kinds = Vec::new();
    for side in ["plain", "squashed"] {
        // The engine writes a statement's subjects from the output's image names (none: no
        // subject; the attestation manifest still names the image by annotation), so the
        // output is named.
        let name = format!(",name=squash-e2e/attested:{side}");
        let (archive, _) = build_oci(t, side, body, &files, &name, &args);
        println!("[{t}] {side} archive:\n{}", listing(&archive));
        let m = only_image_manifest(&archive);
        let img = archive.image_for_manifest(&m).unwrap();
        img.verify().unwrap();
        describe(t, side, &img);
        if side == "squashed" {
            assert_eq!(img.layers.len(), 1);
        }
        let atts = archive.attestation_manifests();
        assert_eq!(atts.len(), 1, "{side}: one attestation manifest");
        let att = atts[0];
        assert!(att.present, "{side}: attestation manifest blob present");
        assert_eq!(
            att.attests(),
            Some(m.digest.as_str()),
            "{side}: the attestation manifest names the image manifest"
        );
        // (predicate type, subjects), a subject naming this image's
        // manifest written as "<this image>".
        let mut found = Vec::new();
        for st in statements(&archive, att) {
            let kind = st["predicateType"].as_str().unwrap_or("?").to_string();
            let subjects: Vec<String> = st["subject"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s["digest"]["sha256"].as_str())
                        .map(|d| {
                            if format!("sha256:{d}") == m.digest {
                                "<this image>".to_string()
                            } else {
                                d.to_string()
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "[{t}] {side}: statement {kind}, subjects {subjects:?} (as written: {}), frontend {}",
                st["subject"],
                st["predicate"]["invocation"]["parameters"]["frontend"]
            );
            if kind == "https://spdx.dev/Document" {
                let comment = st["predicate"]["comment"].as_str().unwrap_or("");
                println!("[{t}] {side}: SBOM comment {comment:?}");
                assert!(
                    comment.contains(&format!("marker={SBOM_MARKER}")),
                    "{side}: the generator scanned the built image: {comment}"
                );
            }
            if kind.starts_with("https://slsa.dev/provenance/") {
                assert_eq!(
                    subjects,
                    ["<this image>"],
                    "{side}: the provenance is about this image's manifest"
                );
            }
            found.push((kind, subjects));
        }
        found.sort();
        if side == "squashed" {
            // Ours goes with the build's attestations: the squash report, about this image.
            let at = found.iter().position(|(k, _)| k.ends_with("/report/v1"));
            let (_, subjects) = found.remove(at.expect("the squash report's statement"));
            assert_eq!(subjects, ["<this image>"], "the report is about this image");
        }
        kinds.push(found);
    }
    let types: Vec<&str> = kinds[1].iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        types.contains(&"https://spdx.dev/Document")
            && types
                .iter()
                .any(|k| k.starts_with("https://slsa.dev/provenance/")),
        "SBOM and provenance expected: {types:?}"
    );
    assert_eq!(
        kinds[0], kinds[1],
        "the same attestations (types and subjects) as the plain build, and the report"
    );
}

// ---------------------------------------------------------------------------
// 7. The upstream Dockerfile frontend
// ---------------------------------------------------------------------------

const UPSTREAM: &str = "local/dockerfile-upstream:test";
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn upstream_frontend_image() {
    let t = "upstream_frontend_image";
    start(t);
    let _g = shared();
    // No docker/dockerfile image offline: our own image under another name
    // stands in for one (it hands the build to the built-in frontend).
    docker::tag(&frontend_image_from_env(), UPSTREAM);
    let body = "FROM squash-test/busybox:latest\nCOPY a.txt /a.txt\nRUN echo via-upstream > /u\n";
    let files = [("a.txt", "a\n")];
    let plain = load_built("plain", side_context(t, "plain", body, &files), &[], None);
    let ctx = side_context(t, "squashed", body, &files);
    let tag = ctx.tag("squashed");
    let arg = format!("SQUASH_UPSTREAM={UPSTREAM}");
    let run = Buildx::new(ctx.path())
        .args(&["--load", "-t", &tag, "--build-arg", &arg])
        .timeout(UPSTREAM_TIMEOUT)
        .run();
    let resolved: Vec<String> = run
        .out
        .stderr
        .lines()
        .filter(|l| l.contains(&format!("docker-image://docker.io/{UPSTREAM}")))
        .map(str::to_string)
        .collect();
    println!(
        "[{t}] build with {arg}: {} in {:.1}s (timed out: {}); upstream lines:\n{}",
        run.out.status,
        run.elapsed.as_secs_f64(),
        run.timed_out,
        indent(&resolved.join("\n"))
    );
    if !run.out.success() {
        docker::rmi(&[&plain.tag, &tag]);
        let head: Vec<&str> = run.out.stderr.lines().take(40).collect();
        panic!(
            "the build with {arg} failed ({}, timed out after {:?}: {}); {} progress lines \
             resolve the upstream image (once per frontend run: it ran again and again). \
             First 40 lines of the output:\n{}\n...\n{}",
            run.out.status,
            UPSTREAM_TIMEOUT,
            run.timed_out,
            resolved.len(),
            head.join("\n"),
            run.out
                .stderr
                .lines()
                .rev()
                .take(6)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let squashed = Built::load(tag, ctx, run.out)
        .unwrap_or_else(|(tag, e)| panic!("the squashed image {tag}: {e:#}"));
    let pair = Outcome::new(plain, squashed);
    describe(t, "plain   ", &pair.plain.image);
    describe(t, "squashed", &pair.squashed.image);
    assert!(
        !resolved.is_empty(),
        "the progress output does not show {UPSTREAM} resolved:\n{}",
        pair.squashed.build.stderr
    );
    assert_eq!(pair.squashed.image.layers.len(), 1);
    assert_same(t, &pair.plain, &pair.squashed, &CompareOptions::new());
    assert_squash_history(t, &pair.plain.image, &pair.squashed.image, 0);
}

#[test]
fn upstream_missing_image_is_named() {
    let t = "upstream_missing_image_is_named";
    start(t);
    let _g = shared();
    let missing = "local/squash-e2e-no-such-frontend:missing";
    let ctx = side_context(
        t,
        "squashed",
        "FROM squash-test/busybox:latest\nRUN echo x > /x\n",
        &[],
    );
    // Each build fails, within the timeout; its error lines, printed.
    let failing = |what: &str, ctx: &TestContext, args: &[&str]| {
        let run = Buildx::new(ctx.path())
            .args(args)
            .timeout(UPSTREAM_TIMEOUT)
            .run();
        let errors = error_lines(&run.out.stderr);
        println!(
            "[{t}] {what}: {} in {:.1}s:\n{}",
            run.out.status,
            run.elapsed.as_secs_f64(),
            indent(&errors.join("\n"))
        );
        assert!(!run.timed_out, "the build did not end: {}", run.out);
        run.out.assert_failure();
        (run.out, errors)
    };
    let arg = format!("SQUASH_UPSTREAM={missing}");
    let (out, errors) = failing(&arg, &ctx, &["--build-arg", &arg]);
    assert!(
        errors.iter().any(|l| l.contains(missing)),
        "the error should name {missing}:\n{out}"
    );
    assert!(
        errors
            .iter()
            .any(|l| l.contains("(set with the build argument SQUASH_UPSTREAM;")),
        "the error should say where the image was set:\n{out}"
    );
    // Set by a directive: placed at its line, as errors about our directives are, not at the
    // `# syntax=` line.
    let body =
        format!("# squash-upstream={missing}\nFROM squash-test/busybox:latest\nRUN echo x > /x\n");
    let ctx = side_context(t, "directive", &body, &[]);
    let (out, errors) = failing("# squash-upstream=", &ctx, &[]);
    assert!(
        errors.iter().any(|l| l
            .contains("(set with the directive # squash-upstream= on Dockerfile line 2;")),
        "the error should say where the image was set:\n{out}"
    );
    assert!(
        out.stderr
            .contains(&format!("   2 | >>> # squash-upstream={missing}\n")),
        "[{t}] the directive's line, marked:\n{out}"
    );
}
