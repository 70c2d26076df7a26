//! The users' CI recipes of `docs/ci.md` work as written: the recipes' Dockerfile and bake file
//! (`docs/examples/ci/`) build squashed images with the frontend image taken from a registry,
//! as a user's CI takes the published one.
//!
//! The frontend image under test (`SQUASH_FRONTEND_IMAGE`) is pushed to the local registry
//! (`SQUASH_REGISTRY`, from `scripts/engine.sh registry start`, which `make e2e` runs) and its
//! local name removed, so that BuildKit resolves `# syntax=$SQUASH_REGISTRY/squash-frontend:<tag>`
//! from the registry. Each build starts from the test busybox instead of the recipes' Debian
//! base (build argument `BASE`), which this machine cannot pull. Runs on both stores.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::start;
use integration::context::{unique_tag, TestContext};
use integration::docker::{self, Buildx, CmdOutput, BUILD_TIMEOUT};
use integration::fixtures::BUSYBOX;
use integration::fs::FsModel;
use integration::progress::squash_steps;
use integration::scenario::{frontend_image_from_env, TagGuard};
use integration::show::describe;

/// The recipes' files.
fn recipes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/ci")
}

fn read(name: &str) -> String {
    let path = recipes().join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The local registry, from the environment `make e2e` sets.
fn registry() -> String {
    match std::env::var("SQUASH_REGISTRY") {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => panic!(
            "SQUASH_REGISTRY is not set: run with `make e2e` (or eval \"$(scripts/engine.sh registry start)\")"
        ),
    }
}

#[track_caller]
fn ok(what: &str, out: CmdOutput) -> CmdOutput {
    assert!(out.success(), "{what} failed: {out}");
    out
}

/// Pushes the frontend image under test as `<registry>/squash-frontend:<unique tag>` and removes
/// that name locally: a build can then find it in the registry only.
fn push_frontend(test: &str) -> String {
    let local = frontend_image_from_env();
    let tag = unique_tag(test, "fe");
    let (_, tag) = tag.split_once(':').expect("a tag");
    let remote = format!("{}/squash-frontend:{tag}", registry());
    ok("docker tag", docker::docker(&["tag", &local, &remote]));
    ok("docker push", docker::docker(&["push", "-q", &remote]));
    ok("docker rmi", docker::docker(&["image", "rm", &remote]));
    println!("[{test}] {local} pushed as {remote}");
    remote
}

/// The recipes' Dockerfile with its first line, the syntax line, set to `frontend`.
fn dockerfile_for(frontend: &str) -> String {
    let original = read("Dockerfile");
    let (first, rest) = original
        .split_once('\n')
        .expect("a Dockerfile of several lines");
    assert!(
        first.starts_with("# syntax="),
        "the recipes' Dockerfile must open with its syntax line: {first:?}"
    );
    format!("# syntax={frontend}\n{rest}")
}

/// Checks the image `tag` holds what the recipes' Dockerfile makes, squashed to one layer
/// (its `# squash=full` directive), and that the build's progress shows the squash step.
#[track_caller]
fn assert_squashed(test: &str, what: &str, tag: &str, progress: &str) {
    let img = docker::save(tag);
    describe(test, what, &img);
    assert_eq!(img.layers.len(), 1, "{what}: one layer");
    let fs = FsModel::from_image(&img).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    assert!(fs.contains("/app/built"), "{what}: /app/built is missing");
    assert!(fs.contains("/bin/busybox"), "{what}: the base is missing");
    assert!(
        !fs.contains("/app/tmp/scratch") && !fs.contains("/app/tmp"),
        "{what}: the deleted scratch data ships"
    );
    let steps = squash_steps(progress);
    assert!(
        steps.iter().any(|s| s.name.contains("layers -> 1")),
        "{what}: no `squash: N layers -> 1` step in the progress:\n{progress}"
    );
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    println!("[{test}] {what}: squash steps: {}", names.join(", "));
    let run = ok("docker run", docker::run(tag, &[]));
    assert_eq!(run.stdout, "built\n", "{what}: CMD");
}

#[test]
fn recipes_build_squashed_with_the_frontend_from_a_registry() {
    let t = "ci_recipes";
    start(t);
    let frontend = push_frontend(t);
    let base = format!("BASE={BUSYBOX}");

    // The Dockerfile, its syntax line naming the image in the registry (GitLab's recipe).
    let ctx = TestContext::new(t, &dockerfile_for(&frontend));
    let tag = ctx.tag("dockerfile");
    let _g1 = TagGuard(vec![tag.clone()]);
    let run = Buildx::new(ctx.path())
        .args(&["--load", "-t", &tag, "--build-arg", &base])
        .timeout(BUILD_TIMEOUT)
        .run();
    let out = ok("the recipes' Dockerfile", run.out);
    assert_squashed(t, "Dockerfile", &tag, &out.stderr);

    // The bake file, building the same Dockerfile, its variables set as docs/ci.md shows.
    let bake_tag = ctx.tag("bake");
    let _g2 = TagGuard(vec![bake_tag.clone()]);
    ctx.write("docker-bake.hcl", read("docker-bake.hcl"));
    let out = ok(
        "docker buildx bake",
        docker::bake(
            ctx.path(),
            &["--load"],
            &[("TAG", &bake_tag), ("BASE", BUSYBOX)],
        ),
    );
    assert_squashed(t, "bake", &bake_tag, &out.stderr);

    // The Dockerfile as published (its syntax line names the public image, unreachable here),
    // the frontend taken from the mirror by the bake file's SQUASH_FRONTEND, which sets
    // BUILDKIT_SYNTAX: the air-gapped recipe.
    let mirror = TestContext::new(&format!("{t}-mirror"), &read("Dockerfile"));
    mirror.write("docker-bake.hcl", read("docker-bake.hcl"));
    let mirror_tag = mirror.tag("mirror");
    let _g3 = TagGuard(vec![mirror_tag.clone()]);
    let out = ok(
        "docker buildx bake with SQUASH_FRONTEND",
        docker::bake(
            mirror.path(),
            &["--load"],
            &[
                ("TAG", &mirror_tag),
                ("BASE", BUSYBOX),
                ("SQUASH_FRONTEND", &frontend),
            ],
        ),
    );
    assert_squashed(t, "mirror (BUILDKIT_SYNTAX)", &mirror_tag, &out.stderr);
}
