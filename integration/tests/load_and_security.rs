//! Load and security. Load: eight builds through our frontend at once, all
//! correct; a build cancelled mid-way leaves the engine usable. Security: the
//! frontend image is one layer with only our binary, no shell and no
//! network; a build secret reaches no layer; a file deleted for secrecy in a
//! later step is in no layer of the squashed image (while the plain image
//! still ships it). Runs on both stores.

mod common;

use std::time::{Duration, Instant};

use common::start;
use integration::blob::sha256_hex;
use integration::check::{assert_not_tagged, assert_same};
use integration::compare::CompareOptions;
use integration::context::TestContext;
use integration::docker::{self, Buildx};
use integration::fixtures::{DaemonLog, BUSYBOX, LAYERS};
use integration::scenario::{
    frontend_image_from_env, load_built, squash_dockerfile, variants, Built, TagGuard,
};
use integration::show::{describe, human, indent};

/// A unique string for this run (never in any image before).
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

// ---------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------

#[test]
fn load_eight_builds_at_once() {
    let t = "load_eight_builds_at_once";
    start(t);
    let log = DaemonLog::mark();
    let run_id = unique("load");
    let started = Instant::now();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let run_id = run_id.clone();
            std::thread::spawn(move || {
                // Different Dockerfiles: two bases, a COPY for half of them,
                // a file added and deleted, content unique to the build.
                let base = if i % 2 == 0 { BUSYBOX } else { LAYERS };
                let content = format!("build {i} of {run_id}\n");
                let copy = if i % 4 < 2 {
                    "COPY ctx.txt /ctx.txt\n"
                } else {
                    ""
                };
                let body = format!(
                    "FROM {base}\nRUN echo '{}' > /out && head -c 1048576 /dev/urandom > /tmp/junk-{i}\n{copy}RUN rm /tmp/junk-{i} && echo {i} > /n\n",
                    content.trim_end()
                );
                let ctx = TestContext::new(&format!("{t}-{i}"), &squash_dockerfile(&body));
                ctx.write("ctx.txt", format!("context of build {i}\n"));
                let t0 = Instant::now();
                let built = load_built(&format!("b{i}"), ctx, &[], None);
                (i, body, content, built, t0.elapsed())
            })
        })
        .collect();
    let mut results: Vec<(usize, String, String, Built, Duration)> = Vec::new();
    let mut failures = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(r) => results.push(r),
            Err(_) => failures.push(i),
        }
    }
    let wall = started.elapsed();
    let tags: Vec<String> = results.iter().map(|r| r.3.tag.clone()).collect();
    let _cleanup = TagGuard(tags);
    assert!(
        failures.is_empty(),
        "[{t}] concurrent builds failed: {failures:?} (their output is printed above)"
    );
    for (i, body, content, built, took) in &results {
        describe(t, &format!("build {i} ({took:.1?})"), &built.image);
        assert_eq!(
            built.image.layers.len(),
            1,
            "[{t}] build {i}: one layer\n{body}"
        );
        let fs = &built.fs;
        let sha = |p: &str| fs.get(p).and_then(|e| e.sha256);
        assert_eq!(
            sha("/out"),
            Some(sha256_hex(content.as_bytes())),
            "[{t}] build {i}: /out"
        );
        assert_eq!(
            sha("/n"),
            Some(sha256_hex(format!("{i}\n").as_bytes())),
            "[{t}] build {i}: /n"
        );
        assert!(
            !fs.contains(format!("/tmp/junk-{i}")),
            "[{t}] build {i}: deleted file shipped"
        );
        assert_eq!(
            fs.contains("/ctx.txt"),
            i % 4 < 2,
            "[{t}] build {i}: /ctx.txt"
        );
        assert_eq!(
            fs.contains("/base/big"),
            i % 2 == 1,
            "[{t}] build {i}: the base's files"
        );
    }
    println!("[{t}] 8 concurrent builds in {wall:.1?}");
    log.assert_no_panic(t);
}

#[test]
fn load_cancelled_build_leaves_the_engine_usable() {
    let t = "load_cancelled_build_leaves_the_engine_usable";
    start(t);
    let log = DaemonLog::mark();
    let nonce = unique("cancel");
    let body = |secs: u32| {
        format!(
            "FROM squash-test/busybox-layers:latest\nRUN echo {nonce} > /nonce\nRUN echo sleeping && sleep {secs} && echo slept > /slept\nRUN echo after > /after\n"
        )
    };
    let ctx = TestContext::new(t, &squash_dockerfile(&body(30)));
    let tag = ctx.tag("cancelled");
    // The sleep has started when the RUN prints `sleeping`; the client (this
    // process's own child, ended by its handle) is ended a few seconds into it.
    let run = Buildx::new(ctx.path())
        .args(&["--load", "-t", &tag])
        .timeout(Duration::from_secs(90))
        .cancel_after(
            |line| line.contains("sleeping") && !line.contains("RUN "),
            Duration::from_secs(3),
        )
        .run();
    let lines: Vec<&str> = run.out.stderr.lines().collect();
    println!(
        "[{t}] ended the client {:.1?} after start (in its sleep: {}, timed out: {}); {}; last lines:\n{}",
        run.elapsed,
        run.cancelled,
        run.timed_out,
        run.out.status,
        indent(&lines[lines.len().saturating_sub(6)..].join("\n"))
    );
    assert!(
        run.cancelled,
        "[{t}] the build should have been in its `sleep 30` step when cancelled:\n{}",
        run.out.stderr
    );
    assert!(!run.out.success());
    assert_not_tagged(t, &tag);

    // The engine is usable and the next build (sleep shortened) is right.
    let ctx = TestContext::new(t, &squash_dockerfile(&body(1)));
    let t0 = Instant::now();
    let built = load_built("after", ctx, &[], None);
    let _cleanup = TagGuard(vec![built.tag.clone()]);
    describe(
        t,
        &format!("next build ({:.1?})", t0.elapsed()),
        &built.image,
    );
    assert_eq!(built.image.layers.len(), 1);
    let sha = |p: &str| built.fs.get(p).and_then(|e| e.sha256);
    assert_eq!(
        sha("/nonce"),
        Some(sha256_hex(format!("{nonce}\n").as_bytes()))
    );
    assert_eq!(sha("/slept"), Some(sha256_hex(b"slept\n")));
    assert_eq!(sha("/after"), Some(sha256_hex(b"after\n")));
    assert!(built.fs.contains("/base/big"));
    log.assert_no_panic(t);
}

// ---------------------------------------------------------------------------
// Security
// ---------------------------------------------------------------------------

#[test]
fn security_frontend_image_is_one_binary_without_shell_or_network() {
    let t = "security_frontend_image_is_one_binary_without_shell_or_network";
    start(t);
    let image = frontend_image_from_env();
    for shell in ["/bin/sh", "sh", "/bin/busybox"] {
        let run = docker::run_with(&["--entrypoint", shell], &image, &["-c", "id"]);
        println!(
            "[{t}] docker run --entrypoint {shell} {image}: {}; {}",
            run.status,
            run.stderr.trim()
        );
        assert!(
            !run.success(),
            "[{t}] the frontend image runs {shell}: {}{}",
            run.stdout,
            run.stderr
        );
    }
    let inspect = docker::inspect(&image);
    let labels = &inspect["Config"]["Labels"];
    println!("[{t}] labels: {labels}");
    assert_eq!(
        labels["moby.buildkit.frontend.network.none"], "true",
        "[{t}] BuildKit must run the frontend without network"
    );
    let layers = inspect["RootFS"]["Layers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(layers.len(), 1, "[{t}] RootFS layers: {layers:?}");
    let saved = docker::save(&image);
    assert_eq!(saved.layers.len(), 1);
    let entries = saved.layers[0].entries().expect("reading a layer");
    println!(
        "[{t}] the one layer ({}): {:?}",
        human(saved.layers[0].uncompressed_size),
        entries
    );
    let files: Vec<&str> = entries
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| !p.ends_with('/'))
        .collect();
    assert_eq!(
        files,
        ["bin/squash-frontend"],
        "[{t}] the layer should hold our binary and nothing else"
    );
    let entrypoint = &inspect["Config"]["Entrypoint"];
    assert_eq!(entrypoint, &serde_json::json!(["/bin/squash-frontend"]));
}

/// Builds `body` plain and in every squash variant; returns (label, image)
/// pairs, plain first. The caller removes nothing: images are removed here
/// after `check` ran on each.
#[track_caller]
fn build_all(t: &str, body: &str, args: &[&str], check: impl Fn(&str, &Built)) {
    let store = start(t);
    let log = DaemonLog::mark();
    let plain = load_built("plain", TestContext::new(t, body), args, None);
    let _p = TagGuard(vec![plain.tag.clone()]);
    describe(t, "plain    ", &plain.image);
    check("plain", &plain);
    for v in variants(store) {
        let label = v.label;
        let mut argv = args.to_vec();
        argv.extend_from_slice(v.args);
        let squashed = load_built(
            label,
            TestContext::new(t, &squash_dockerfile(body)),
            &argv,
            None,
        );
        let _s = TagGuard(vec![squashed.tag.clone()]);
        describe(t, &format!("{label:<9}"), &squashed.image);
        assert_same(t, &plain, &squashed, &CompareOptions::new());
        check(label, &squashed);
    }
    log.assert_no_panic(t);
}

#[test]
fn security_secret_reaches_no_layer() {
    let t = "security_secret_reaches_no_layer";
    let secret = unique("s3cr3t-token-value");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tok");
    std::fs::write(&file, &secret).unwrap();
    let secret_arg = format!("id=tok,src={}", file.display());
    // The secret is used in two steps (copied into the image's filesystem
    // and removed in the same step; read at a custom target), each failing
    // if the secret was not mounted.
    let body = "FROM squash-test/busybox-layers:latest\n\
RUN --mount=type=secret,id=tok test -s /run/secrets/tok && cp /run/secrets/tok /tmp/x && wc -c /tmp/x && rm /tmp/x\n\
RUN --mount=type=secret,id=tok,target=/etc/app-token test -s /etc/app-token && echo used > /used\n\
RUN echo after > /after\n";
    build_all(t, body, &["--secret", &secret_arg], |label, built| {
        let holding = built
            .image
            .layers_holding(secret.as_bytes())
            .expect("reading the layers");
        println!(
            "[{t}] {label}: {} layer(s) scanned for the secret: found in {holding:?}",
            built.image.layers.len()
        );
        assert!(
            holding.is_empty(),
            "[{t}] {label}: the secret is in layer(s) {holding:?}"
        );
        assert!(built.fs.contains("/used"));
    });
}

#[test]
fn security_file_deleted_for_secrecy_is_in_no_squashed_layer() {
    let t = "security_file_deleted_for_secrecy_is_in_no_squashed_layer";
    let marker = unique("private-key-material");
    // The marker is written by `printf` from pieces, so that its bytes are in
    // the file, never in the Dockerfile text as one string.
    let (a, b) = marker.split_at(marker.len() / 2);
    let body = format!(
        "FROM squash-test/busybox-layers:latest\n\
RUN mkdir -p /keys && printf '%s%s\\n' '{a}' '{b}' > /keys/id_key && head -c 65536 /dev/urandom >> /keys/id_key && cp /keys/id_key /keys/backup\n\
RUN ln /keys/id_key /keys/hardlink && echo public > /keys/id_key.pub\n\
RUN rm -rf /keys/id_key /keys/hardlink /keys/backup && ls -la /keys\n"
    );
    build_all(t, &body, &[], |label, built| {
        let holding = built
            .image
            .layers_holding(marker.as_bytes())
            .expect("reading the layers");
        println!(
            "[{t}] {label}: {} layer(s); the deleted secret's marker is in {holding:?}",
            built.image.layers.len()
        );
        if label == "plain" {
            // Proves the scan can fail: the plain image still ships it.
            assert!(
                !holding.is_empty(),
                "[{t}] the plain image should still hold the deleted file in an earlier layer"
            );
        } else {
            assert!(
                holding.is_empty(),
                "[{t}] {label}: the deleted file's content is in layer(s) {holding:?}"
            );
        }
        assert_eq!(built.fs.children("/keys"), ["id_key.pub"]);
    });
}
