//! The users' CI recipes of `docs/ci.md` work as written: the recipes' Dockerfile and bake file
//! (`docs/examples/ci/`) build squashed images with the frontend image taken from a registry,
//! as a user's CI takes the published one.
//!
//! The frontend image under test (`SQUASH_FRONTEND_IMAGE`) is pushed to the local registry
//! (`SQUASH_REGISTRY`, from `scripts/engine.sh registry start`, which `make e2e` runs) and its
//! local name removed, so that BuildKit resolves `# syntax=$SQUASH_REGISTRY/squash-frontend:<tag>`
//! from the registry. Each build starts from the test busybox instead of the recipes' Debian
//! base (build argument `BASE`), which this machine cannot pull. Runs on both stores.
//!
//! The cache recipe (`docs/ci.md`, "Keeping the cache") runs as a new CI runner meets it: the
//! build cache is pruned between the build that exports it to the registry and the one that
//! imports it. The prune takes the whole engine, so that test runs alone ([`exclusive`]).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use common::start;
use integration::context::{unique_tag, TestContext};
use integration::docker::{self, Buildx, CmdOutput, Store, BUILD_TIMEOUT};
use integration::fixtures::BUSYBOX;
use integration::fs::FsModel;
use integration::progress::{show_steps, squash_steps};
use integration::scenario::{frontend_image_from_env, TagGuard};
use integration::show::describe;

static CACHE: RwLock<()> = RwLock::new(());

/// For a test that builds: no prune runs meanwhile.
fn shared() -> RwLockReadGuard<'static, ()> {
    CACHE.read().unwrap_or_else(|e| e.into_inner())
}

/// For a test that prunes the build cache: no other test of this file builds meanwhile.
fn exclusive() -> RwLockWriteGuard<'static, ()> {
    CACHE.write().unwrap_or_else(|e| e.into_inner())
}

/// What the classic store under the `docker` driver says to any cache export.
const CACHE_EXPORT_REFUSAL: &str = "Cache export is not supported for the docker driver.";

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

/// The recipes' bake file run with `--load` in a context of its own (`<test>-<name>`) holding
/// `dockerfile`, its variables `TAG` (the context's tag `name`) and `BASE` (the test busybox)
/// set, and `env`: the tag, the guard that removes it, and the run's output (it must succeed).
#[track_caller]
fn bake_loaded(
    test: &str,
    name: &str,
    dockerfile: &str,
    env: &[(&str, &str)],
) -> (String, TagGuard, CmdOutput) {
    let ctx = TestContext::new(&format!("{test}-{name}"), dockerfile);
    ctx.write("docker-bake.hcl", read("docker-bake.hcl"));
    let tag = ctx.tag(name);
    let guard = TagGuard(vec![tag.clone()]);
    let mut vars = vec![("TAG", tag.as_str()), ("BASE", BUSYBOX)];
    vars.extend_from_slice(env);
    let out = ok(
        &format!("docker buildx bake ({name})"),
        docker::bake(ctx.path(), &["--load"], &vars),
    );
    (tag, guard, out)
}

#[test]
fn recipes_build_squashed_with_the_frontend_from_a_registry() {
    let t = "ci_recipes";
    start(t);
    let _g = shared();
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
    let (bake_tag, _g2, out) = bake_loaded(t, "bake", &dockerfile_for(&frontend), &[]);
    assert_squashed(t, "bake", &bake_tag, &out.stderr);

    // The bake file passes no squash setting it was not given: the Dockerfile's directives
    // decide (here `# squash=base` and a split at `deps`, which a default build argument
    // would override).
    let with_directives =
        dockerfile_for(&frontend).replace("# squash=full", "# squash=base\n# squash-split=deps");
    assert!(
        with_directives.contains("# squash-split=deps"),
        "the recipes' Dockerfile has no `# squash=full` line to replace"
    );
    let (directives_tag, _g4, out) = bake_loaded(t, "directives", &with_directives, &[]);
    let img = docker::save(&directives_tag);
    describe(t, "bake over directives", &img);
    let base_layers = docker::save(BUSYBOX).layers.len();
    assert_eq!(
        img.layers.len(),
        base_layers + 2,
        "the directives' base mode and split: the base's layers and two"
    );
    assert!(
        squash_steps(&out.stderr)
            .iter()
            .any(|s| s.name.starts_with("squash: stage deps -> 1 layer")),
        "the split at deps shows:\n{}",
        out.stderr
    );

    // The Dockerfile as published (its syntax line names the public image, unreachable here),
    // the frontend taken from the mirror by the bake file's SQUASH_FRONTEND, which sets
    // BUILDKIT_SYNTAX: the air-gapped recipe.
    let (mirror_tag, _g3, out) = bake_loaded(
        t,
        "mirror",
        &read("Dockerfile"),
        &[("SQUASH_FRONTEND", &frontend)],
    );
    assert_squashed(t, "mirror (BUILDKIT_SYNTAX)", &mirror_tag, &out.stderr);
}

/// The layer digests of the image manifest the registry serves for `reference` (pushed without
/// attestations: an image manifest, not an index).
#[track_caller]
fn pushed_layers(reference: &str) -> Vec<String> {
    let manifest = docker::registry_manifest(reference);
    let layers = manifest["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("{reference}: no layers in the manifest: {manifest}"));
    layers
        .iter()
        .map(|l| l["digest"].as_str().expect("a layer digest").to_owned())
        .collect()
}

/// `docker builder prune -af`: no build cache, as on a new CI runner.
#[track_caller]
fn prune() {
    let out = docker::docker(&["builder", "prune", "-af"]);
    assert!(out.success(), "docker builder prune -af failed: {out}");
}

/// The cache recipe of docs/ci.md ("Keeping the cache"): the bake file with `SQUASH_SPLIT=deps`
/// in base mode and `CACHE` (a registry reference, exported with mode=max), pushed. After the
/// build cache is pruned, as on a new runner, and a change in the app's part, the stage `deps`
/// does not run again, its squashed layer comes from the imported cache with the blob it had,
/// and the image holds the change.
#[test]
fn recipes_keep_the_split_layer_through_a_registry_cache() {
    let t = "recipes_keep_the_split_layer_through_a_registry_cache";
    let store = start(t);
    let _g = exclusive();
    let frontend = push_frontend(t);
    let registry = registry();
    // The recipes' Dockerfile, its deps step saying when it runs: the shell prints RAN, which
    // the step's name (the command, in the progress) does not hold.
    const RAN: &str = "deps-step-ran-42";
    let dockerfile = read("Dockerfile").replace(
        "echo built > /app/built",
        "echo built > /app/built && echo deps-step-ran-$((6 * 7))",
    );
    assert!(
        dockerfile.contains("$((6 * 7))"),
        "the recipes' deps step moved"
    );
    let ctx = TestContext::new(t, &dockerfile);
    ctx.write("docker-bake.hcl", read("docker-bake.hcl"));
    let unique = unique_tag(t, "app");
    let (_, suffix) = unique.split_once(':').expect("a tag");
    let repo = format!("{registry}/ci-cache-{suffix}");
    let cache = format!("{repo}:buildcache");
    let bake = |tag: &str| {
        docker::bake(
            ctx.path(),
            &["--push"],
            &[
                ("TAG", tag),
                ("BASE", BUSYBOX),
                ("SQUASH_MODE", "base"),
                ("SQUASH_SPLIT", "deps"),
                ("CACHE", &cache),
                ("SQUASH_FRONTEND", &frontend),
            ],
        )
    };
    let (first_tag, second_tag) = (format!("{repo}:1"), format!("{repo}:2"));
    // A push from the containerd store keeps the image under its name there too.
    let _tags = TagGuard(vec![first_tag.clone(), second_tag.clone()]);
    // A cache of an earlier run of this test would answer the first build.
    prune();
    let first = bake(&first_tag);
    if store == Store::Classic {
        assert!(
            !first.success() && first.stderr.contains(CACHE_EXPORT_REFUSAL),
            "the classic store's docker driver refuses a cache export, as docs/ci.md says: {first}"
        );
        return;
    }
    let first = ok("the cache recipe, first run", first);
    assert!(
        first.stderr.contains(RAN),
        "the first run builds the stage deps:\n{}",
        first.stderr
    );
    let before = pushed_layers(&first_tag);

    prune();
    let app = ctx.read("Dockerfile");
    let app = String::from_utf8(app).expect("text");
    assert!(
        app.contains("ARG APP_VERSION=1"),
        "the recipes' app part moved"
    );
    ctx.write(
        "Dockerfile",
        app.replace("ARG APP_VERSION=1", "ARG APP_VERSION=2"),
    );
    let second = ok(
        "the cache recipe, after a change of the app",
        bake(&second_tag),
    );
    let steps = squash_steps(&second.stderr);
    println!("[{t}] second run's squash steps:\n{}", show_steps(&steps));
    assert!(
        !second.stderr.contains(RAN),
        "the stage deps ran again instead of coming from the imported cache:\n{}",
        second.stderr
    );
    let lower: Vec<_> = steps
        .iter()
        .filter(|s| s.name.starts_with("squash: stage deps -> 1 layer"))
        .collect();
    assert!(
        !lower.is_empty() && lower.iter().all(|s| s.cached),
        "the stage's squashed layer must come from the imported cache:\n{}",
        show_steps(&steps)
    );
    let after = pushed_layers(&second_tag);
    let base = docker::save(BUSYBOX).layers.len();
    assert_eq!(
        before.len(),
        base + 2,
        "the base's layers and two: {before:?}"
    );
    assert_eq!(after.len(), before.len(), "{before:?} then {after:?}");
    assert_eq!(
        after[..base + 1],
        before[..base + 1],
        "the base's and the stage's layers keep their blobs"
    );
    assert_ne!(after[base + 1], before[base + 1], "the app's layer changed");

    ok("docker pull", docker::pull(&second_tag));
    let run = ok(
        "docker run",
        docker::run_with(&[], &second_tag, &["cat", "/app/version", "/app/built"]),
    );
    assert_eq!(run.stdout, "2\nbuilt\n", "the image holds the change");
}
