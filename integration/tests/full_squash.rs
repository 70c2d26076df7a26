//! Full squash (the default mode): the image comes back as ONE layer with the
//! same filesystem, the same config and the same behaviour as the plain
//! build, and a history that says what happened. Runs on both stores.

mod common;

use common::start;
use integration::check::{assert_same, assert_same_run, assert_squash_history};
use integration::compare::CompareOptions;
use integration::fs::Kind;
use integration::image::created_by;
use integration::scenario::{frontend_image_from_env, Scenario};
use integration::show::{describe_outcome, human, MIB};
use serde_json::{json, Value};

/// Every runtime config instruction, so that the config comparison covers
/// them all (Env incl. the base's PATH, User, WorkingDir, Cmd, Entrypoint,
/// Labels, ExposedPorts, Volumes, Healthcheck, StopSignal, Shell, OnBuild).
const BIG_FILE_DOCKERFILE: &str = r#"FROM squash-test/busybox:latest
SHELL ["/bin/sh", "-e", "-c"]
ENV GREETING="hello squash" APP_HOME=/app
WORKDIR /app
RUN head -c 20971520 /dev/urandom > /app/big.bin && ls -l /app/big.bin
COPY msg.txt /app/msg
COPY --chmod=0755 tool.sh /usr/local/bin/tool
RUN rm /app/big.bin \
 && echo done > /app/state \
 && ln -s /app/msg /app/msg.link \
 && ln /app/state /app/state.hl \
 && mkdir -p /app/owned && echo mine > /app/owned/f && chown -R 65534:65534 /app/owned \
 && echo setuid > /app/suid && chmod 4750 /app/suid \
 && mkfifo /app/fifo
LABEL org.example.test="full-big-file" org.example.other="x y"
EXPOSE 8080/tcp 53/udp
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=5s --retries=2 CMD ["true"]
STOPSIGNAL SIGQUIT
ONBUILD RUN echo built-on-top
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/tool"]
CMD ["cat", "/app/msg"]
"#;

const TOOL_SH: &str = "#!/bin/sh\necho \"user=$(id -u):$(id -g) pwd=$(pwd) greeting=$GREETING\"\nls /app\nexec \"$@\"\n";

#[test]
fn full_big_file_added_then_deleted() {
    let t = "full_big_file_added_then_deleted";
    start(t);
    let out = Scenario::new(t, BIG_FILE_DOCKERFILE)
        .file("msg.txt", "a message from the context\n")
        .file_mode("tool.sh", TOOL_SH, 0o755)
        .run();
    describe_outcome(t, &out);
    let (plain, squashed) = (&out.plain.image, &out.squashed.image);
    assert_eq!(squashed.layers.len(), 1, "full squash gives one layer");
    assert!(plain.layers.len() >= 4, "the plain build has its layers");
    // The 20 MiB file is in the plain image's layers but not in the squashed one.
    assert!(
        plain.uncompressed_size() > squashed.uncompressed_size() + 20 * MIB,
        "the squashed image should be smaller by the deleted 20 MiB file: plain {}, squashed {}",
        human(plain.uncompressed_size()),
        human(squashed.uncompressed_size())
    );
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());

    let fs = &out.squashed.fs;
    assert!(!fs.contains("/app/big.bin"), "deleted file is gone");
    let hl = fs.get("/app/state").expect("/app/state");
    assert_eq!(
        hl.hardlinks
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["/app/state", "/app/state.hl"],
        "hardlink group kept"
    );
    let suid = fs.get("/app/suid").unwrap();
    assert_eq!(suid.mode, 0o4750, "setuid bit kept");
    let owned = fs.get("/app/owned/f").unwrap();
    assert_eq!((owned.uid, owned.gid), (65534, 65534));
    assert_eq!(fs.get("/app/fifo").unwrap().kind, Kind::Fifo);
    assert_eq!(
        fs.get("/app/msg.link").unwrap().symlink_target.as_deref(),
        Some(&b"/app/msg"[..])
    );

    // The config says what the Dockerfile says (not merely the same on both
    // sides).
    let c = squashed.container_config();
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.iter()
            .any(|e| e.starts_with("PATH=") && e.contains("/usr/bin")),
        "the base's PATH is kept: {env:?}"
    );
    assert!(env.contains(&"GREETING=hello squash"), "{env:?}");
    assert_eq!(c["User"], "65534:65534");
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["Entrypoint"], json!(["/usr/local/bin/tool"]));
    assert_eq!(c["Cmd"], json!(["cat", "/app/msg"]));
    assert_eq!(c["Labels"]["org.example.test"], "full-big-file");
    assert!(
        c["ExposedPorts"].get("8080/tcp").is_some() && c["ExposedPorts"].get("53/udp").is_some()
    );
    assert!(c["Volumes"].get("/data").is_some());
    assert_eq!(c["Healthcheck"]["Test"], json!(["CMD", "true"]));
    assert_eq!(c["StopSignal"], "SIGQUIT");
    assert_eq!(c["Shell"], json!(["/bin/sh", "-e", "-c"]));
    assert_eq!(c["OnBuild"], json!(["RUN echo built-on-top"]));

    assert_squash_history(t, plain, squashed, 0);
    let printed = assert_same_run(t, &out.plain, &out.squashed, &[]);
    assert!(printed.contains("a message from the context"), "{printed}");
    assert!(
        printed.contains("user=65534:65534 pwd=/app greeting=hello squash"),
        "{printed}"
    );
}

#[test]
fn full_toolchain_installed_used_removed() {
    let t = "full_toolchain_installed_used_removed";
    start(t);
    // A real toolchain round trip: install gcc from the Debian mirror, build
    // a program with it, purge the toolchain and the apt lists.
    let dockerfile = r#"FROM squash-test/debian:bookworm
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && apt-get clean
COPY hello.c /src/hello.c
RUN gcc -O2 -o /usr/local/bin/hello /src/hello.c && hello
RUN apt-get purge -y --auto-remove gcc libc6-dev && apt-get clean && rm -rf /var/lib/apt/lists/* /src
CMD ["/usr/local/bin/hello"]
"#;
    let hello_c = "#include <stdio.h>\nint main(void) { puts(\"hello from a squashed gcc build\"); return 0; }\n";
    let out = Scenario::new(t, dockerfile)
        .file("hello.c", hello_c)
        .build_args(&["--network", "host"])
        .run();
    describe_outcome(t, &out);
    let (plain, squashed) = (&out.plain.image, &out.squashed.image);
    assert_eq!(squashed.layers.len(), 1, "full squash gives one layer");
    assert!(
        squashed.uncompressed_size() < plain.uncompressed_size(),
        "squashed {} should be smaller than plain {}",
        human(squashed.uncompressed_size()),
        human(plain.uncompressed_size())
    );
    println!(
        "[{t}] saved by squashing: {}; the squashed layer holds {} more than the debian base layer",
        human(plain.uncompressed_size() - squashed.uncompressed_size()),
        human(
            squashed
                .uncompressed_size()
                .saturating_sub(plain.layers[0].uncompressed_size)
        )
    );
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    let fs = &out.squashed.fs;
    assert!(fs.contains("/usr/local/bin/hello"));
    assert!(!fs.contains("/usr/bin/gcc-12"), "gcc was purged");
    assert!(
        fs.children("/var/lib/apt/lists").is_empty(),
        "apt lists removed"
    );
    assert_squash_history(t, plain, squashed, 0);
    let printed = assert_same_run(t, &out.plain, &out.squashed, &[]);
    assert_eq!(printed, "hello from a squashed gcc build\n");
    assert_same_run(
        t,
        &out.plain,
        &out.squashed,
        &[
            "sh",
            "-c",
            "command -v gcc || echo no-gcc; dpkg -l | grep -c '^ii'",
        ],
    );
}

#[test]
fn full_multi_stage() {
    let t = "full_multi_stage";
    start(t);
    let dockerfile = r#"FROM squash-test/busybox-layers:latest AS builder
RUN mkdir -p /out \
 && cat /base/dir/one /base/dir/two > /out/combined \
 && sha256sum /base/big | cut -c1-64 > /out/big.sha \
 && echo "$SQUASH_BASE" > /out/from-env

FROM squash-test/busybox:latest
COPY --from=builder /out/combined /opt/result/combined
COPY --from=builder /out/big.sha /out/from-env /opt/result/
RUN head -c 3145728 /dev/urandom > /opt/scratch.bin
RUN rm /opt/scratch.bin && ls /opt/result
CMD ["sh", "-c", "cat /opt/result/*"]
"#;
    let out = Scenario::new(t, dockerfile).run();
    describe_outcome(t, &out);
    let (plain, squashed) = (&out.plain.image, &out.squashed.image);
    assert_eq!(squashed.layers.len(), 1, "full squash gives one layer");
    assert!(
        squashed.uncompressed_size() < plain.uncompressed_size(),
        "squashed {} should be smaller than plain {}",
        human(squashed.uncompressed_size()),
        human(plain.uncompressed_size())
    );
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    let fs = &out.squashed.fs;
    assert_eq!(
        fs.children("/opt/result"),
        ["big.sha", "combined", "from-env"]
    );
    assert!(
        !fs.contains("/base"),
        "nothing of the builder's base leaks in"
    );
    assert!(!fs.contains("/opt/scratch.bin"));
    // Nothing of the builder stage's config leaks into the final image.
    let env = squashed.container_config()["Env"].to_string();
    assert!(!env.contains("SQUASH_BASE"), "{env}");
    assert_squash_history(t, plain, squashed, 0);
    let printed = assert_same_run(t, &out.plain, &out.squashed, &[]);
    // `cat /opt/result/*`: big.sha (64 hex digits), combined, from-env.
    assert!(
        printed.contains("\none\ntwo\nbusybox-layers\n"),
        "{printed}"
    );
}

#[test]
fn full_history_marks_old_entries_empty() {
    let t = "full_history_marks_old_entries_empty";
    start(t);
    let dockerfile =
        "FROM squash-test/busybox-layers:latest\nRUN echo a > /a\nENV X=1\nRUN echo b > /b\n";
    let out = Scenario::new(t, dockerfile).run();
    describe_outcome(t, &out);
    let (plain, squashed) = (&out.plain.image, &out.squashed.image);
    assert_eq!(squashed.layers.len(), 1);
    assert_eq!(plain.layers.len(), 6);
    assert_squash_history(t, plain, squashed, 0);
    let last = squashed.history().last().cloned().unwrap();
    // The image says which frontend squashed it: the frontend image's own `--version`, in the
    // history entry's comment, its created_by and the build's progress line.
    let frontend = frontend_image_from_env();
    let version = integration::docker::run_ok(&["--network", "none"], &frontend, &["--version"]);
    let version = version.trim();
    println!("[{t}] {frontend} --version: {version}");
    assert!(version.starts_with("squash-frontend "), "{version}");
    let revision = integration::docker::inspect(&frontend)["Config"]["Labels"]
        ["org.opencontainers.image.revision"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if revision.len() >= 12 {
        assert!(
            version.ends_with(&format!("({})", &revision[..12])),
            "{version} names the image's revision {revision}"
        );
    }
    assert_eq!(
        created_by(&last),
        format!("squash: 6 layers -> 1 (by {version})"),
        "{last}"
    );
    assert_eq!(last["comment"], version);
    assert!(
        out.squashed
            .build
            .stderr
            .lines()
            .any(|l| l.ends_with(&format!("squash: 6 layers -> 1 (by {version})"))),
        "the progress line names the frontend:\n{}",
        out.squashed.build.stderr
    );

    // What `docker history` shows: newest first; the squash row carries the
    // layer's size, every older row is an empty layer.
    let rows = integration::docker::history(&out.squashed.tag);
    for r in &rows {
        println!(
            "[{t}] docker history: {:>10} | {} | {}",
            r["Size"].as_str().unwrap_or("?"),
            r["CreatedBy"].as_str().unwrap_or("?"),
            r["Comment"].as_str().unwrap_or("")
        );
    }
    assert_eq!(rows.len(), squashed.history().len());
    let top = &rows[0];
    assert!(
        top["CreatedBy"].as_str().unwrap().starts_with("squash:"),
        "{top}"
    );
    assert_eq!(top["Comment"], version);
    assert_ne!(top["Size"], "0B", "the squash row holds the layer: {top}");
    for r in &rows[1..] {
        assert_eq!(r["Size"], "0B", "older rows are empty layers: {r}");
    }
}
