//! A multi-platform build whose stages run commands, through the published multi-platform
//! frontend image, resolved from a registry: every platform's RUN steps run (the foreign ones
//! under qemu-user), and every platform's image comes back squashed, in full and base mode,
//! holding what that platform's commands made.
//!
//! The image's arm64 variant is put to work too: a third build names it by its manifest
//! digest in the syntax line, so BuildKit runs the arm64 frontend (under qemu-user) for the
//! whole multi-platform build.
//!
//! Ignored by `make e2e`: it needs qemu-user registered with binfmt_misc and the frontend
//! image pushed for every platform. `make cross` (scripts/cross.sh) sets both up and runs it
//! with `SQUASH_CROSS_FRONTEND` naming that image (`<registry>/<repo>:<tag>`) and
//! `SQUASH_CROSS_FRONTEND_ARM64` its arm64 variant (`<registry>/<repo>@<digest>`). The build
//! is for linux/amd64 and linux/arm64, the platforms `scripts/engine.sh images` makes a
//! busybox base for.

mod common;

use std::time::Duration;

use common::start;
use integration::archive::Archive;
use integration::blob::sha256_hex;
use integration::context::TestContext;
use integration::docker::{self, Buildx, Store};
use integration::fixtures::BUSYBOX;
use integration::fs::FsModel;
use integration::image::{Image, Platform};
use integration::progress::squash_steps;
use integration::show::describe;

/// The platforms checked, with the architecture's `uname -m` and ELF machine (little-endian
/// hex of the header's e_machine field).
const PLATFORMS: [(&str, &str, &str, &str); 2] = [
    ("linux/amd64", "amd64", "x86_64", "3e00"),
    ("linux/arm64", "arm64", "aarch64", "b700"),
];

/// Each platform's busybox as base, and three RUN steps: one leaves scratch data that the
/// next deletes, so only a squash drops it from the image.
const BODY: &str = r#"FROM squash-test/busybox-${TARGETARCH}
RUN mkdir -p /app && uname -m > /app/uname && head -c 3000000 /dev/urandom > /app/scratch
RUN od -An -tx1 -j18 -N2 /bin/busybox | tr -d ' \n' > /app/machine && rm /app/scratch
RUN echo "$(uname -m) ok" > /app/done
CMD ["cat", "/app/done"]
"#;

/// Emulated RUN steps are slow: more than the usual build timeout.
const TIMEOUT: Duration = Duration::from_secs(900);

fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => panic!("{name} is not set: run this test with `make cross`"),
    }
}

/// The one layer of a single-layer base image, and its busybox binary's digest.
#[track_caller]
fn base_of(image: &str) -> (String, String) {
    let img = docker::save(image);
    assert_eq!(img.layers.len(), 1, "{image} has one layer");
    let fs = FsModel::from_image(&img).unwrap_or_else(|e| panic!("{image}: {e:#}"));
    (img.layers[0].diff_id.clone(), file_sha(&fs, "/bin/busybox"))
}

#[track_caller]
fn file_sha(fs: &FsModel, path: &str) -> String {
    fs.get(path)
        .unwrap_or_else(|| panic!("{path} is missing"))
        .sha256
        .unwrap_or_else(|| panic!("{path} is not a regular file"))
}

#[track_caller]
fn assert_file(what: &str, fs: &FsModel, path: &str, content: &str) {
    assert_eq!(
        file_sha(fs, path),
        sha256_hex(content.as_bytes()),
        "{what}: {path} should hold {content:?}"
    );
}

/// Builds BODY for every platform through `frontend` into an OCI archive.
fn build(t: &str, frontend: &str, platforms: &str, args: &[&str]) -> Archive {
    let ctx = TestContext::new(t, &format!("# syntax={frontend}\n{BODY}"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dest = dir.path().join("image.tar");
    let output = format!("type=oci,dest={}", dest.display());
    let mut argv = vec!["--platform", platforms, "--output", output.as_str()];
    argv.extend_from_slice(args);
    let run = Buildx::new(ctx.path()).args(&argv).timeout(TIMEOUT).run();
    if !run.out.success() {
        panic!("the build of {t} failed.\nargs: {argv:?}\n{}", run.out);
    }
    let steps: Vec<String> = squash_steps(&run.out.stderr)
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(
        steps.iter().any(|s| s.contains(" layers -> ")),
        "{t}: no squash step in the progress:\n{}",
        run.out
    );
    println!(
        "[{t}] built {platforms} through {frontend} in {:.1}s {args:?}: {}",
        run.elapsed.as_secs_f64(),
        steps.join(", ")
    );
    Archive::open(&dest).unwrap_or_else(|e| panic!("{t}: {e:#}"))
}

#[test]
#[ignore = "needs qemu-user and the multi-platform frontend image: make cross runs it"]
fn cross_platform_run_steps_squashed_in_both_modes() {
    let t = "cross_platform";
    let store = start(t);
    assert_eq!(
        store,
        Store::Containerd,
        "multi-platform builds need the containerd store"
    );
    let frontend = env("SQUASH_CROSS_FRONTEND");
    let platforms: Vec<&str> = PLATFORMS.iter().map(|(p, ..)| *p).collect();
    let platforms = platforms.join(",");
    let out = docker::docker(&["tag", BUSYBOX, "squash-test/busybox-amd64:latest"]);
    assert!(out.success(), "docker tag: {out}");
    let arm64_frontend = env("SQUASH_CROSS_FRONTEND_ARM64");
    let full = build(t, &frontend, &platforms, &[]);
    let base = build(
        t,
        &frontend,
        &platforms,
        &["--build-arg", "SQUASH_MODE=base"],
    );
    // --no-cache: the arm64 frontend's squash runs, not the first build's cached one.
    let arm64_full = build(t, &arm64_frontend, &platforms, &["--no-cache"]);
    let mut seen = Vec::new();
    for (platform, arch, uname, machine) in PLATFORMS {
        let (base_layer, busybox) = base_of(&format!("squash-test/busybox-{arch}:latest"));
        for (mode, archive, layers) in [
            ("full", &full, 1),
            ("base", &base, 2),
            ("full, by the arm64 frontend", &arm64_full, 1),
        ] {
            let what = format!("{platform} {mode}");
            let img: Image = archive
                .image_for_platform(&Platform::parse(platform).unwrap())
                .unwrap_or_else(|e| panic!("{what}: {e:#}"));
            img.verify().unwrap_or_else(|e| panic!("{what}: {e:#}"));
            describe(t, &what, &img);
            let fs = FsModel::from_image(&img).unwrap_or_else(|e| panic!("{what}: {e:#}"));
            assert_eq!(img.config["architecture"], arch, "{what}: config");
            assert_eq!(img.layers.len(), layers, "{what}: layers");
            if layers == 2 {
                assert_eq!(img.layers[0].diff_id, base_layer, "{what}: keeps its base");
            }
            assert_file(&what, &fs, "/app/uname", &format!("{uname}\n"));
            assert_file(&what, &fs, "/app/machine", machine);
            assert_file(&what, &fs, "/app/done", &format!("{uname} ok\n"));
            assert!(
                !fs.contains("/app/scratch"),
                "{what}: the deleted data ships"
            );
            assert_eq!(
                file_sha(&fs, "/bin/busybox"),
                busybox,
                "{what}: that platform's busybox"
            );
            seen.push(format!(
                "{what}: {layers} layer(s), uname -m {uname}, ELF machine {machine}"
            ));
        }
    }
    println!("[cross] {frontend}, index of {platforms}:");
    for line in seen {
        println!("[cross]   {line}");
    }
}
