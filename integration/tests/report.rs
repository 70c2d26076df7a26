//! The squash report: what each squash says in the build's own output (layers, the bytes of the
//! plain layers and of the squashed one, what was reclaimed, the largest files one step added
//! and a later one removed, with both steps), held against the images themselves; the threshold
//! (`squash-min-saving`); the report as an attestation; one report per platform.

mod common;

use common::start;
use integration::check::assert_same;
use integration::compare::CompareOptions;
use integration::context::TestContext;
use integration::docker::{Buildx, Store, BUILD_TIMEOUT};
use integration::image::Image;
use integration::progress::{error_lines, show_steps, squash_reports, squash_steps, SquashReport};
use integration::scenario::{load_built, run_nonce, squash_dockerfile, variants, TagGuard};
use integration::show::describe;

/// The bytes the plain image's layers add (above its first `kept` layers) minus the squashed
/// image's new layer: what the report's `reclaimed` must come within 1 % of.
fn measured(plain: &Image, squashed: &Image, kept: usize) -> (u64, u64) {
    let plain_sum: u64 = plain.layers[kept..]
        .iter()
        .map(|l| l.uncompressed_size)
        .sum();
    let new = squashed.layers.last().expect("a layer").uncompressed_size;
    (plain_sum, new)
}

/// How far the report's reclaimed bytes (file sizes) may be from the images' difference (tar
/// sizes): 1 % of it, plus the tar framing the plain layers add over one layer: each layer's
/// tar has its own 1024-byte end marker, and 512-byte headers for the directories above the
/// files it holds (a few per layer in these tests; 4 KiB per layer bounds them).
fn tolerance(diff: u64, plain_layers: usize) -> u64 {
    diff / 100 + 4096 * plain_layers as u64
}

/// `body` with a last step that copies [`run_nonce`] (the context's `run-id`), so that the
/// squash runs in this test and prints its report (a cached step prints nothing).
fn fresh(body: &str) -> String {
    format!("{body}COPY run-id /run-id\n")
}

/// A context for `dockerfile` with the `run-id` file [`fresh`] copies.
fn context(name: &str, dockerfile: &str) -> TestContext {
    let ctx = TestContext::new(name, dockerfile);
    ctx.write("run-id", run_nonce());
    ctx
}

/// Builds `body` (with [`fresh`]'s last step) plain and squashed in every variant, and checks
/// each squash's report against the two images: the reclaimed bytes within [`tolerance`] of
/// the plain layers' sum less the squashed layer (both uncompressed tar sizes), and `check` on
/// the report.
#[track_caller]
fn reported(t: &str, body: &str, args: &[&str], check: impl Fn(&str, &SquashReport)) {
    let store = start(t);
    let body = &fresh(body);
    let plain = load_built("plain", context(&format!("{t}-plain"), body), args, None);
    let _guard = TagGuard(vec![plain.tag.clone()]);
    describe(t, "plain    ", &plain.image);
    for v in variants(store) {
        let mut argv = args.to_vec();
        argv.extend_from_slice(v.args);
        let ctx = context(
            &format!("{t}-{}", v.label.replace('/', "-")),
            &squash_dockerfile(body),
        );
        let squashed = load_built(v.label, ctx, &argv, None);
        let _g = TagGuard(vec![squashed.tag.clone()]);
        describe(t, &format!("{:<9}", v.label), &squashed.image);
        let reports = squash_reports(&squashed.build.stderr);
        assert_eq!(
            reports.len(),
            1,
            "[{t}] {}: one report in the build output:\n{}",
            v.label,
            squashed.build.stderr
        );
        let r = &reports[0];
        println!("[{t}] {}:\n  {}\n{}", v.label, r.title, r.lines.join("\n"));
        let kept = if v.method.is_some() {
            squashed.image.layers.len() - 1
        } else {
            0
        };
        let (plain_sum, new) = measured(&plain.image, &squashed.image, kept);
        let diff = plain_sum.saturating_sub(new);
        let off = r.reclaimed_bytes.abs_diff(diff);
        let allowed = tolerance(diff, plain.image.layers.len() - kept);
        println!(
            "[{t}] {}: the images: plain layers {plain_sum} B, squashed layer {new} B, difference {diff} B; the report: reclaimed {} B ({off} B off, {allowed} B allowed)",
            v.label,
            r.reclaimed_bytes,
        );
        assert!(
            off <= allowed,
            "[{t}] {}: the report's reclaimed bytes ({}) are {off} B from the images' difference ({diff}), more than {allowed} B",
            v.label,
            r.reclaimed_bytes
        );
        check(v.label, r);
        assert_same(
            &format!("{t}: {}", v.label),
            &plain,
            &squashed,
            &CompareOptions::new(),
        );
    }
}

#[test]
fn report_big_file_added_then_deleted() {
    let t = "report_big_file_added_then_deleted";
    let body = "FROM squash-test/busybox:latest
RUN head -c 20000000 /dev/urandom > /big && echo kept > /kept
RUN rm /big
ENV DONE=1
";
    let check = |label: &str, r: &SquashReport| {
        assert_eq!(
            r.wasted
                .first()
                .map(|(p, a, d)| (p.as_str(), a.as_str(), d.as_str())),
            Some((
                "/big",
                "[2/4] RUN head -c 20000000 /dev/urandom > /big && echo kept > /kept",
                "[3/4] RUN rm /big"
            )),
            "[{label}] the file and the steps that added and removed it"
        );
        assert!(r.reclaimed_bytes >= 20_000_000, "{r:?}");
    };
    reported(t, body, &[], check);
    // Above squash-min-saving, every variant squashes (our sync steps then make the report
    // before they write the layer): `reported` holds each image to its report.
    reported(
        &format!("{t}-min-saving"),
        body,
        &["--build-arg", "SQUASH_MIN_SAVING=10MB"],
        check,
    );
}

/// The same Dockerfile as the full-squash toolchain test (the install step's cache serves both;
/// the source differs, by [`run_nonce`], so that the steps after it and the squash run here):
/// gcc installed from the Debian mirror, used and purged.
const TOOLCHAIN: &str = r#"FROM squash-test/debian:bookworm
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && apt-get clean
COPY hello.c /src/hello.c
RUN gcc -O2 -o /usr/local/bin/hello /src/hello.c && hello
RUN apt-get purge -y --auto-remove gcc libc6-dev && apt-get clean && rm -rf /var/lib/apt/lists/* /src
CMD ["/usr/local/bin/hello"]
"#;

#[test]
fn report_toolchain_installed_used_purged() {
    let t = "report_toolchain_installed_used_purged";
    let store = start(t);
    let hello_c = format!("#include <stdio.h>\nint main(void) {{ puts(\"hello from a squashed gcc build\"); return 0; }}\n/* {} */\n", run_nonce().trim());
    let plain_ctx = TestContext::new(&format!("{t}-plain"), TOOLCHAIN);
    plain_ctx.write("hello.c", &hello_c);
    let args = ["--network", "host"];
    let plain = load_built("plain", plain_ctx, &args, None);
    let _guard = TagGuard(vec![plain.tag.clone()]);
    for v in variants(store) {
        let ctx = TestContext::new(
            &format!("{t}-{}", v.label.replace('/', "-")),
            &squash_dockerfile(TOOLCHAIN),
        );
        ctx.write("hello.c", &hello_c);
        let mut argv = args.to_vec();
        argv.extend_from_slice(v.args);
        let squashed = load_built(v.label, ctx, &argv, None);
        let _g = TagGuard(vec![squashed.tag.clone()]);
        let reports = squash_reports(&squashed.build.stderr);
        assert_eq!(reports.len(), 1, "[{t}] {}: one report", v.label);
        let r = &reports[0];
        println!("[{t}] {}:\n  {}\n{}", v.label, r.title, r.lines.join("\n"));
        let kept = if v.method.is_some() { 1 } else { 0 };
        let (plain_sum, new) = measured(&plain.image, &squashed.image, kept);
        let diff = plain_sum.saturating_sub(new);
        let off = r.reclaimed_bytes.abs_diff(diff);
        let allowed = tolerance(diff, plain.image.layers.len() - kept);
        println!(
            "[{t}] {}: images' difference {diff} B, reported {} B ({off} B off, {allowed} B allowed)",
            v.label,
            r.reclaimed_bytes,
        );
        assert!(off <= allowed, "[{t}] {}: not within {allowed} B", v.label);
        // The largest files the purge took away, added by the install step.
        let install = "[2/5] RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && apt-get clean";
        let purge = "[5/5] RUN apt-get purge -y --auto-remove gcc libc6-dev && apt-get clean && rm -rf /var/lib/apt/lists/* /src";
        assert_eq!(r.wasted.len(), 10, "[{t}] {}: the top ten", v.label);
        for (path, added, removed) in &r.wasted {
            assert!(
                added == install && removed == purge || added.starts_with("[2/5]"),
                "[{t}] {}: {path} added by {added}, removed by {removed}",
                v.label
            );
        }
        assert!(
            r.wasted
                .iter()
                .any(|(p, _, _)| p.contains("gcc") || p.contains("cc1")),
            "[{t}] {}: the compiler itself is named: {:?}",
            v.label,
            r.wasted
        );
    }
}

/// A Dockerfile that deletes and replaces nothing reclaims nothing; with a minimum saving set,
/// the image is returned as built and the report says why; an invalid minimum is refused with
/// one line naming the setting, where it came from and the valid forms.
#[test]
fn report_nothing_to_reclaim_and_the_threshold() {
    let t = "report_nothing_to_reclaim_and_the_threshold";
    let body = "FROM squash-test/busybox:latest
RUN echo one > /one
RUN echo two > /two
";
    reported(t, body, &[], |label, r| {
        assert_eq!(r.reclaimed_bytes, 0, "[{label}] {r:?}");
        assert_eq!(r.plain_bytes, r.squashed_bytes, "[{label}]");
        assert!(r.wasted.is_empty(), "[{label}] {r:?}");
    });
    let body = &fresh(body);
    let plain = load_built("plain", context(&format!("{t}-plain"), body), &[], None);
    let _guard = TagGuard(vec![plain.tag.clone()]);
    for args in [
        &["--build-arg", "SQUASH_MIN_SAVING=1MB"][..],
        &[
            "--build-arg",
            "SQUASH_MIN_SAVING=1%",
            "--build-arg",
            "SQUASH_MODE=base",
        ][..],
    ] {
        let ctx = context(&format!("{t}-min"), &squash_dockerfile(body));
        let squashed = load_built("min", ctx, args, None);
        let _g = TagGuard(vec![squashed.tag.clone()]);
        assert_eq!(
            squashed.image.diff_ids(),
            plain.image.diff_ids(),
            "[{t}] {args:?}: returned as built"
        );
        assert!(
            squashed
                .build
                .stderr
                .contains(": the image is returned as built"),
            "[{t}] {args:?}: the report says why:\n{}",
            squashed.build.stderr
        );
        // So does a step of its own, also when the report's step comes from the cache (the
        // same build again) and prints nothing.
        let decided = |out: &str| {
            squash_steps(out).into_iter().any(|s| {
                s.name
                    .starts_with("squash: reclaims 0 B (0.0 %), less than squash-min-saving (")
                    && s.name.ends_with("): the image is returned as built")
            })
        };
        assert!(
            decided(&squashed.build.stderr),
            "[{t}] {args:?}: a step says it:\n{}",
            show_steps(&squash_steps(&squashed.build.stderr))
        );
        // Below the minimum our sync step (base mode's, on every store) writes no layer.
        if args.len() == 4 {
            let stderr = &squashed.build.stderr;
            assert!(
                stderr.contains("squash-frontend sync: not run: the squash reclaims less than squash-min-saving"),
                "[{t}] {args:?}: the sync says it did not run:\n{stderr}"
            );
            assert!(
                !stderr.contains(" created, "),
                "[{t}] {args:?}: no sync statistics:\n{stderr}"
            );
        }
        if args.len() == 2 {
            let ctx = context(&format!("{t}-min"), &squash_dockerfile(body));
            let again = ctx.build(args);
            again.assert_success();
            assert!(
                decided(&again.stderr),
                "[{t}] {args:?}, again: a step says it:\n{}",
                show_steps(&squash_steps(&again.stderr))
            );
        }
    }
    // An invalid minimum.
    let ctx = context(&format!("{t}-bad"), &squash_dockerfile(body));
    let out = ctx.build(&["--build-arg", "SQUASH_MIN_SAVING=lots"]);
    out.assert_failure();
    let errors = error_lines(&out.stderr);
    assert!(
        errors.iter().any(|l| l.contains(
            "squash-frontend: invalid build argument SQUASH_MIN_SAVING \"lots\": valid values are a size"
        )),
        "[{t}] {errors:?}"
    );
}

/// The report goes with the build's attestations (containerd store, OCI output): an in-toto
/// statement about the image, its predicate the report. The classic store refuses attestations
/// under the `docker` driver, with or without us.
#[test]
fn report_as_an_attestation() {
    let t = "report_as_an_attestation";
    let store = start(t);
    if store == Store::Classic {
        println!("[{t}] SKIPPED on the classic store: the docker driver refuses attestations there, with or without this frontend (buildx_features::attestations_provenance_and_sbom asserts the refusal)");
        return;
    }
    // Added by one step and removed by the next (a file made and removed in one step is in no
    // layer, and so reclaims nothing).
    let body = fresh("FROM squash-test/busybox:latest\nRUN head -c 3000000 /dev/urandom > /tmp/x && echo y > /y\nRUN rm /tmp/x\n");
    let ctx = context(t, &squash_dockerfile(&body));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("image.tar");
    let output = format!(
        "type=oci,dest={},name=squash-e2e/report:att",
        dest.display()
    );
    let run = Buildx::new(ctx.path())
        .args(&["--output", &output, "--provenance=mode=min"])
        .timeout(BUILD_TIMEOUT)
        .run();
    run.out.assert_success();
    let archive = integration::archive::Archive::open(&dest)
        .unwrap_or_else(|e| panic!("[{t}] the OCI archive: {e:#}"));
    let image = archive.image_manifests()[0].clone();
    let atts = archive.attestation_manifests();
    assert_eq!(atts.len(), 1, "[{t}] one attestation manifest");
    let manifest: serde_json::Value =
        serde_json::from_slice(&archive.read_blob(&atts[0].digest).unwrap()).unwrap();
    let mut found = false;
    for layer in manifest["layers"].as_array().unwrap() {
        let st: serde_json::Value = serde_json::from_slice(
            &archive
                .read_blob(layer["digest"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        let kind = st["predicateType"].as_str().unwrap_or("");
        println!("[{t}] statement {kind}");
        if kind.ends_with("/report/v1") {
            found = true;
            let p = &st["predicate"];
            assert_eq!(p["schema"], "squash-frontend.report/v1", "{p}");
            assert_eq!(p["mode"], "full");
            assert!(p["reclaimed_bytes"].as_u64().unwrap() >= 3_000_000, "{p}");
            assert_eq!(p["wasted"][0]["path"], "/tmp/x", "{p}");
            let subject = st["subject"][0]["digest"]["sha256"].as_str().unwrap_or("");
            assert_eq!(
                format!("sha256:{subject}"),
                image.digest,
                "[{t}] the statement is about the image"
            );
        }
    }
    assert!(
        found,
        "[{t}] the report's statement is in the attestation manifest"
    );
}

/// A multi-platform build reports once per platform (containerd store; the classic store
/// refuses multi-platform builds under the `docker` driver, with or without us).
#[test]
fn report_per_platform() {
    let t = "report_per_platform";
    let store = start(t);
    if store == Store::Classic {
        println!("[{t}] SKIPPED on the classic store: the docker driver refuses multi-platform builds there, with or without this frontend (buildx_features asserts the refusal)");
        return;
    }
    // COPY only: no emulation needed for the foreign platform.
    let body = "FROM --platform=$TARGETPLATFORM scratch\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n";
    let ctx = TestContext::new(t, &squash_dockerfile(body));
    ctx.write("a.txt", run_nonce()).write("b.txt", "b\n");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("image.tar");
    let output = format!("type=oci,dest={}", dest.display());
    let run = Buildx::new(ctx.path())
        .args(&["--platform", "linux/amd64,linux/arm64", "--output", &output])
        .timeout(BUILD_TIMEOUT)
        .run();
    run.out.assert_success();
    let reports = squash_reports(&run.out.stderr);
    for r in &reports {
        println!("[{t}] {}", r.title);
    }
    assert_eq!(
        reports.len(),
        2,
        "[{t}] one report per platform:\n{}",
        run.out.stderr
    );
}

/// With buildx's default attestations (provenance `mode=min,inline-only=true`), an output that
/// holds no attestation inline gets none from us either, as BuildKit leaves its own out: a
/// local output holds the image's files alone (the image's own `/report.json` is left as it
/// is, where our report's statement once took its name), and an OCI tarball (containerd
/// store; the classic one refuses it with or without us) one image manifest and no
/// attestation manifest, as without us.
#[test]
fn default_attestations_add_no_report_to_a_local_or_oci_output() {
    let t = "default_attestations_add_no_report_to_a_local_or_oci_output";
    let store = start(t);
    let mine = "{\"mine\":true}\n";
    let body = fresh("FROM squash-test/busybox:latest\nRUN echo '{\"mine\":true}' > /report.json\nRUN echo y > /y\n");
    for (side, dockerfile) in [
        ("plain", body.clone()),
        ("squashed", squash_dockerfile(&body)),
    ] {
        let ctx = context(&format!("{t}-{side}"), &dockerfile);
        let dir = tempfile::tempdir().unwrap();
        // Built to `dest` as `kind`, with buildx's default attestations.
        let export = |kind: &str, dest: &std::path::Path| {
            Buildx::new(ctx.path())
                .args(&["--output", &format!("type={kind},dest={}", dest.display())])
                .default_attestations()
                .timeout(BUILD_TIMEOUT)
                .run()
                .out
                .assert_success();
        };
        let local = dir.path().join("local");
        export("local", &local);
        let found = std::fs::read_to_string(local.join("report.json")).unwrap_or_default();
        assert_eq!(found, mine, "[{t}] {side}: the local output's /report.json");
        assert!(local.join("y").exists(), "[{t}] {side}: the image's files");
        if store == Store::Classic {
            continue;
        }
        let dest = dir.path().join("image.tar");
        export("oci", &dest);
        let archive = integration::archive::Archive::open(&dest)
            .unwrap_or_else(|e| panic!("[{t}] {side}: the OCI archive: {e:#}"));
        assert_eq!(archive.image_manifests().len(), 1, "[{t}] {side}");
        assert!(
            archive.attestation_manifests().is_empty(),
            "[{t}] {side}: no attestation manifest in an OCI tarball with the default attestations"
        );
    }
}
