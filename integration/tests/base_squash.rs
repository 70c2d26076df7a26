//! Base-preserving squash (`SQUASH_MODE=base`): the FROM image's layers stay
//! byte-identical and everything the Dockerfile did is ONE layer on top.
//! Runs on both stores; the auto method picks diff on the containerd store
//! and sync on the classic one, and `SQUASH_METHOD=sync` forces the other
//! path on containerd. Also: where the mode comes from (directive, build
//! argument, precedence) and `SQUASH_METHOD=diff` per store.

mod common;

use common::start;
use integration::check::{assert_keeps_base, assert_same, assert_same_run, assert_squash_history};
use integration::compare::CompareOptions;
use integration::context::TestContext;
use integration::docker::{self, Store};
use integration::fixtures::{BUSYBOX, LAYERS};
use integration::progress::{base_method_used, squash_lines};
use integration::scenario::{squash_dockerfile, Outcome, Scenario};
use integration::show::{describe, describe_outcome, human, indent, KIB, MIB};

const BASE_DOCKERFILE: &str = r#"FROM squash-test/busybox-layers:latest
RUN rm /base/big /base/hl-b
RUN rm -rf /base/dir && mkdir /base/dir && echo new > /base/dir/n
RUN echo modified > /base/suid && chown 65534:65534 /base/suid && chmod 0750 /base/suid
COPY added.txt /base/added.txt
RUN ln -s /base/added.txt /base/added.link && mkdir -p /srv/data && echo top > /srv/data/top
ENV SQUASH_STAGE=top
WORKDIR /base
USER 65534
CMD ["sh", "-c", "for p in /base /base/* /base/dir/* /srv/data/top; do stat -c '%n %F %a %u:%g %s' \"$p\"; done; cat /base/suid /base/dir/n /base/added.txt; test -e /base/big || echo big-is-gone; echo $SQUASH_BASE $SQUASH_STAGE"]
"#;

/// Deterministic pseudo-random bytes (xorshift64*), for context files whose
/// content must be identical in both builds and not compressible.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
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

fn base_scenario(t: &str, method: Option<&str>) {
    let store = start(t);
    let base = docker::save(LAYERS);
    base.verify().expect("the base image archive is consistent");
    let mut args = vec!["--build-arg", "SQUASH_MODE=base"];
    let method_arg;
    if let Some(m) = method {
        method_arg = format!("SQUASH_METHOD={m}");
        args.extend(["--build-arg", method_arg.as_str()]);
    }
    let out = Scenario::new(t, BASE_DOCKERFILE)
        .file("added.txt", "added from the context\n")
        .squash_args(&args)
        .run();
    describe(t, "base    ", &base);
    describe_outcome(t, &out);
    let used = base_method_used(&out.squashed.build.stderr);
    println!("[{t}] store {store:?}, asked {method:?}, method used: {used}");
    println!("{}", indent(&squash_lines(&out.squashed.build.stderr)));
    let expected = match (method, store) {
        (Some("sync"), _) | (_, Store::Classic) => "sync",
        _ => "diff",
    };
    assert_eq!(used, expected, "squash method used on the {store:?} store");
    // Our steps run in our own image, which the progress names for what it is there.
    assert!(
        out.squashed
            .build
            .stderr
            .contains("squash-frontend's own image, for its in-build steps"),
        "[{t}] the progress names our own image"
    );
    if used == "diff" {
        // Our sync step reads the engine's diff of each step: one per step that makes a layer.
        let stderr = &out.squashed.build.stderr;
        let diffs = stderr
            .lines()
            .filter(|l| l.contains("squash: the changes of ["))
            .map(|l| l.split_once("squash: the changes of ").unwrap().1)
            .collect::<std::collections::BTreeSet<_>>();
        assert_eq!(diffs.len(), 6, "[{t}] the steps' diffs: {diffs:?}");
    }

    let (plain, squashed) = (&out.plain.image, &out.squashed.image);
    assert_keeps_base(t, &base, squashed);
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());

    let fs = &out.squashed.fs;
    // Deleted base files are gone (the whiteouts are in the one new layer).
    assert!(
        !fs.contains("/base/big"),
        "deleted base file /base/big is still there"
    );
    assert!(
        !fs.contains("/base/hl-b"),
        "deleted hardlink /base/hl-b is still there"
    );
    let hl = fs.get("/base/hl-a").expect("/base/hl-a kept");
    assert!(
        hl.hardlinks.is_empty(),
        "hl-a is alone now: {:?}",
        hl.hardlinks
    );
    // The emptied and refilled dir holds only the new content.
    assert_eq!(fs.children("/base/dir"), ["n"]);
    // The modified base file: content, mode and owner.
    let suid = fs.get("/base/suid").expect("/base/suid");
    assert_eq!(suid.mode, 0o0750);
    assert_eq!((suid.uid, suid.gid), (65534, 65534));
    assert_eq!(suid.size, "modified\n".len() as u64);
    assert_eq!(
        fs.get("/base/suid").unwrap().sha256,
        out.plain.fs.get("/base/suid").unwrap().sha256
    );
    // The new layer is small: it holds what the Dockerfile did, no copy of
    // the 5 MiB base file.
    let top = squashed.layers.last().unwrap();
    let entries = top.entries().expect("reading a layer");
    println!(
        "[{t}] new layer: {} entries, {} uncompressed: {:?}",
        entries.len(),
        human(top.uncompressed_size),
        entries.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>()
    );
    assert!(
        top.uncompressed_size < 64 * KIB,
        "{}",
        human(top.uncompressed_size)
    );
    assert!(
        entries.iter().any(|(p, _)| p.ends_with("base/.wh.big")),
        "the new layer whites out /base/big"
    );
    assert_squash_history(t, plain, squashed, base.layers.len());

    let printed = assert_same_run(t, &out.plain, &out.squashed, &[]);
    assert!(printed.contains("big-is-gone"), "{printed}");
    assert!(
        printed.contains("/base/suid regular file 750 65534:65534 9"),
        "{printed}"
    );
    assert!(
        printed.contains("modified\nnew\nadded from the context\n"),
        "{printed}"
    );
    assert!(!printed.contains("/base/dir/one"), "{printed}");
}

#[test]
fn base_keeps_base_layers_auto_method() {
    base_scenario("base_keeps_base_layers_auto_method", None);
}

/// On the containerd store this is the non-default engine path; on the
/// classic store it is the same as auto, set explicitly.
#[test]
fn base_keeps_base_layers_sync_method() {
    base_scenario("base_keeps_base_layers_sync_method", Some("sync"));
}

#[test]
fn base_new_layer_holds_no_copy_of_base_files() {
    let t = "base_new_layer_holds_no_copy_of_base_files";
    let store = start(t);
    let base = docker::save(LAYERS);
    let dockerfile = "FROM squash-test/busybox-layers:latest\nCOPY new.bin /data/new.bin\nRUN chmod 0640 /data/new.bin && ls -l /base/big /data/new.bin\n";
    let methods: &[Option<&str>] = match store {
        Store::Containerd => &[None, Some("sync")],
        Store::Classic => &[None],
    };
    for method in methods {
        let mut args = vec!["--build-arg", "SQUASH_MODE=base"];
        let m;
        if let Some(x) = method {
            m = format!("SQUASH_METHOD={x}");
            args.extend(["--build-arg", m.as_str()]);
        }
        let out = Scenario::new(t, dockerfile)
            .file("new.bin", pseudo_random(MIB as usize, 4))
            .squash_args(&args)
            .run();
        describe_outcome(t, &out);
        let used = base_method_used(&out.squashed.build.stderr);
        assert_keeps_base(t, &base, &out.squashed.image);
        let top = out.squashed.image.layers.last().unwrap();
        let entries = top.entries().expect("reading a layer");
        let limit = MIB + 64 * KIB;
        println!(
            "[{t}] method {used}: new layer {} uncompressed (limit {}), entries {:?}",
            human(top.uncompressed_size),
            human(limit),
            entries
        );
        assert!(
            top.uncompressed_size < limit,
            "the new layer ({}) should hold the 1 MiB of new data and no copy of the base's files",
            human(top.uncompressed_size)
        );
        assert!(
            !entries.iter().any(|(p, _)| p.contains("base/big")),
            "the unchanged 5 MiB base file is copied into the new layer: {entries:?}"
        );
        assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    }
}

#[test]
fn base_from_scratch_gives_one_layer() {
    let t = "base_from_scratch_gives_one_layer";
    start(t);
    let dockerfile = r#"FROM squash-test/busybox:latest AS tools
RUN mkdir -p /out && echo from-the-stage > /out/stage.txt

FROM scratch
COPY hello.txt /hello.txt
COPY --from=tools /out/stage.txt /stage.txt
COPY --from=tools /bin/busybox /bin/busybox
CMD ["/bin/busybox", "cat", "/hello.txt", "/stage.txt"]
"#;
    let out = Scenario::new(t, dockerfile)
        .file("hello.txt", "hello from the context\n")
        .squash_args(&["--build-arg", "SQUASH_MODE=base"])
        .run();
    describe_outcome(t, &out);
    assert_eq!(out.plain.image.layers.len(), 3);
    assert_eq!(
        out.squashed.image.layers.len(),
        1,
        "FROM scratch has no base layers to keep: one layer"
    );
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    assert_squash_history(t, &out.plain.image, &out.squashed.image, 0);
    let printed = assert_same_run(t, &out.plain, &out.squashed, &[]);
    assert_eq!(printed, "hello from the context\nfrom-the-stage\n");
}

#[test]
fn base_multi_stage_keeps_the_final_stage_base() {
    let t = "base_multi_stage_keeps_the_final_stage_base";
    start(t);
    let base = docker::save(BUSYBOX);
    let dockerfile = r#"FROM squash-test/busybox-layers:latest AS builder
RUN mkdir -p /out && cat /base/dir/one /base/dir/two > /out/both

FROM squash-test/busybox:latest
COPY --from=builder /out/both /opt/both
RUN echo extra > /opt/extra
COPY --from=builder /base/suid /opt/suid
CMD ["sh", "-c", "cat /opt/both /opt/extra; stat -c '%a' /opt/suid"]
"#;
    let out = Scenario::new(t, dockerfile)
        .squash_args(&["--build-arg", "SQUASH_MODE=base"])
        .run();
    describe_outcome(t, &out);
    assert_eq!(out.plain.image.layers.len(), 4);
    assert_keeps_base(t, &base, &out.squashed.image);
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    assert!(!out.squashed.fs.contains("/base"));
    assert_squash_history(t, &out.plain.image, &out.squashed.image, 1);
    let printed = assert_same_run(t, &out.plain, &out.squashed, &[]);
    assert_eq!(printed, "one\ntwo\nextra\n4755\n");
}

/// The base is found through an ARG-expanded `FROM --platform=...` and two `FROM <stage>`
/// links: the root of the target stage's chain, not the stage it names.
#[test]
fn base_found_through_args_platform_and_stage_links() {
    let t = "base_found_through_args_platform_and_stage_links";
    start(t);
    let base = docker::save(LAYERS);
    let dockerfile = r#"ARG BASE_IMAGE=squash-test/busybox:latest
FROM --platform=linux/amd64 ${BASE_IMAGE} AS root
RUN echo root > /root-stage

FROM root AS middle
RUN echo middle > /middle-stage && rm /base/hl-a

FROM squash-test/busybox:latest AS unrelated
RUN echo unrelated > /unrelated

FROM middle
COPY --from=unrelated /unrelated /copied
RUN echo top > /top-stage
CMD ["cat", "/root-stage", "/middle-stage", "/copied", "/top-stage"]
"#;
    let out = Scenario::new(t, dockerfile)
        .build_args(&["--build-arg", &format!("BASE_IMAGE={LAYERS}")])
        .squash_args(&["--build-arg", "SQUASH_MODE=base"])
        .run();
    describe_outcome(t, &out);
    assert_eq!(out.plain.image.layers.len(), base.layers.len() + 4);
    assert_keeps_base(t, &base, &out.squashed.image);
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    assert!(!out.squashed.fs.contains("/base/hl-a"));
    let printed = assert_same_run(t, &out.plain, &out.squashed, &[]);
    assert_eq!(printed, "root\nmiddle\nunrelated\ntop\n");
}

// ---------------------------------------------------------------------------
// Where the mode comes from
// ---------------------------------------------------------------------------

const MODE_BODY: &str =
    "FROM squash-test/busybox-layers:latest\nRUN echo one > /one\nRUN echo two > /two\nCMD [\"cat\", \"/one\", \"/two\"]\n";

fn layer_counts(t: &str, out: &Outcome) -> (usize, usize) {
    describe_outcome(t, out);
    (
        out.plain.image.layers.len(),
        out.squashed.image.layers.len(),
    )
}

#[test]
fn mode_from_directive() {
    let t = "mode_from_directive";
    start(t);
    // The scenario puts `# syntax=` on line 1; the body's first line becomes
    // line 2, right below it: where the directive belongs.
    let out = Scenario::new(t, &format!("# squash=base\n{MODE_BODY}")).run();
    assert_eq!(
        layer_counts(t, &out),
        (6, 5),
        "# squash=base keeps the 4 base layers + 1"
    );
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    assert_same_run(t, &out.plain, &out.squashed, &[]);
}

/// `# squash-method=sync` below `# squash=base`: on the containerd store
/// this switches the engine path from diff to sync.
#[test]
fn method_from_directive() {
    let t = "method_from_directive";
    let store = start(t);
    let out = Scenario::new(
        t,
        &format!("# squash=base\n# squash-method=sync\n{MODE_BODY}"),
    )
    .run();
    assert_eq!(layer_counts(t, &out), (6, 5));
    let used = base_method_used(&out.squashed.build.stderr);
    println!("[{t}] # squash-method=sync on {store:?}: method used {used}");
    assert_eq!(used, "sync");
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    assert_same_run(t, &out.plain, &out.squashed, &[]);
}

#[test]
fn mode_from_build_arg() {
    let t = "mode_from_build_arg";
    start(t);
    let out = Scenario::new(t, MODE_BODY)
        .squash_args(&["--build-arg", "SQUASH_MODE=base"])
        .run();
    assert_eq!(layer_counts(t, &out), (6, 5));
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    drop(out);
    // Values are case-insensitive.
    let out = Scenario::new(t, MODE_BODY)
        .squash_args(&["--build-arg", "SQUASH_MODE=BASE"])
        .run();
    assert_eq!(layer_counts(t, &out), (6, 5));
    drop(out);
    let out = Scenario::new(t, MODE_BODY)
        .squash_args(&["--build-arg", "SQUASH_MODE=off"])
        .run();
    assert_eq!(layer_counts(t, &out), (6, 6));
    drop(out);
    let out = Scenario::new(t, MODE_BODY).run();
    assert_eq!(layer_counts(t, &out), (6, 1), "default is full");
}

#[test]
fn mode_precedence_build_arg_beats_directive() {
    let t = "mode_precedence_build_arg_beats_directive";
    start(t);
    let out = Scenario::new(t, &format!("# squash=base\n{MODE_BODY}"))
        .squash_args(&["--build-arg", "SQUASH_MODE=full"])
        .run();
    assert_eq!(
        layer_counts(t, &out),
        (6, 1),
        "the build argument SQUASH_MODE=full beats # squash=base"
    );
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    drop(out);

    let out = Scenario::new(t, &format!("# squash=full\n{MODE_BODY}"))
        .squash_args(&["--build-arg", "SQUASH_MODE=base"])
        .run();
    assert_eq!(
        layer_counts(t, &out),
        (6, 5),
        "SQUASH_MODE=base beats # squash=full"
    );
}

#[test]
fn mode_off_directive_gives_the_plain_image() {
    let t = "mode_off_directive_gives_the_plain_image";
    start(t);
    let out = Scenario::new(t, &format!("# squash=off\n{MODE_BODY}")).run();
    assert_eq!(
        layer_counts(t, &out),
        (6, 6),
        "# squash=off: the plain layer count"
    );
    assert_eq!(out.plain.image.diff_ids(), out.squashed.image.diff_ids());
    assert_eq!(
        out.plain.image.history(),
        out.squashed.image.history(),
        "off mode leaves the history alone"
    );
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
}

// ---------------------------------------------------------------------------
// SQUASH_METHOD=diff per store
// ---------------------------------------------------------------------------

#[test]
fn method_diff_per_store() {
    let t = "method_diff_per_store";
    let store = start(t);
    let args = [
        "--build-arg",
        "SQUASH_MODE=base",
        "--build-arg",
        "SQUASH_METHOD=diff",
    ];
    match store {
        Store::Classic => {
            let ctx = TestContext::new(t, &squash_dockerfile(MODE_BODY));
            let tag = ctx.tag("diff");
            let mut argv = vec!["--load", "-t", tag.as_str()];
            argv.extend(args);
            let build = ctx.build(&argv);
            docker::rmi(&[&tag]);
            build.assert_failure();
            let err = &build.stderr;
            let line = err
                .lines()
                .find(|l| l.contains("squash method diff"))
                .unwrap_or_else(|| panic!("no squash-method error in the output:\n{build}"));
            println!("[{t}] classic store error: {line}");
            assert!(
                line.contains("containerd image store"),
                "the error should name the engine limit (containerd image store): {line}"
            );
            assert!(line.contains("auto, diff, sync"), "valid choices: {line}");
            assert!(line.contains("squash-frontend:"), "{line}");
        }
        Store::Containerd => {
            let out = Scenario::new(t, MODE_BODY).squash_args(&args).run();
            assert_eq!(layer_counts(t, &out), (6, 5));
            assert_eq!(base_method_used(&out.squashed.build.stderr), "diff");
            assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
            assert_same_run(t, &out.plain, &out.squashed, &[]);
        }
    }
}
