//! Bad settings, information requests (`--print`) and failing builds: what
//! the user sees must be as clear with our `# syntax=` line as without it.
//! Runs on both stores.

mod common;

use common::start;
use integration::context::TestContext;
use integration::docker::{BuildOutput, Buildx};
use integration::progress::error_lines;
use integration::scenario::{frontend_image_from_env, squash_dockerfile};
use integration::show::indent;

/// Builds a Dockerfile (written as given) without loading the result.
fn build(t: &str, dockerfile: &str, args: &[&str]) -> BuildOutput {
    let ctx = TestContext::new(t, dockerfile);
    ctx.build(args)
}

#[track_caller]
fn assert_fails_with(t: &str, out: &BuildOutput, needle: &str) {
    out.assert_failure();
    println!(
        "[{t}] exit {}; errors:\n{}",
        out.status,
        indent(&error_lines(&out.stderr).join("\n"))
    );
    assert!(
        out.stderr.contains(needle),
        "the output should contain {needle:?}:\n{out}"
    );
}

const BODY: &str = "FROM squash-test/busybox:latest\nRUN echo one > /one\nRUN echo two > /two\n";

#[test]
fn invalid_mode_build_arg() {
    let t = "invalid_mode_build_arg";
    start(t);
    let out = build(
        t,
        &squash_dockerfile(BODY),
        &["--build-arg", "SQUASH_MODE=fast"],
    );
    assert_fails_with(
        t,
        &out,
        r#"squash-frontend: invalid build argument SQUASH_MODE "fast": valid values are full, base, off"#,
    );
}

#[test]
fn empty_mode_build_arg() {
    let t = "empty_mode_build_arg";
    start(t);
    let out = build(
        t,
        &squash_dockerfile(BODY),
        &["--build-arg", "SQUASH_MODE="],
    );
    assert_fails_with(
        t,
        &out,
        "squash-frontend: build argument SQUASH_MODE is empty: valid values are full, base, off",
    );
}

#[test]
fn invalid_method_and_upstream_build_args() {
    let t = "invalid_method_and_upstream_build_args";
    start(t);
    let out = build(
        t,
        &squash_dockerfile(BODY),
        &[
            "--build-arg",
            "SQUASH_MODE=base",
            "--build-arg",
            "SQUASH_METHOD=copy",
        ],
    );
    assert_fails_with(
        t,
        &out,
        r#"squash-frontend: invalid build argument SQUASH_METHOD "copy": valid values are auto, diff, sync"#,
    );
    let out = build(
        t,
        &squash_dockerfile(BODY),
        &["--build-arg", "SQUASH_UPSTREAM=not a ref"],
    );
    assert_fails_with(t, &out, "build argument SQUASH_UPSTREAM");
}

#[test]
fn misspelt_build_arg_is_refused_unless_the_dockerfile_uses_it() {
    let t = "misspelt_build_arg_is_refused_unless_the_dockerfile_uses_it";
    start(t);
    // A squash of the default mode would be silently wrong: the user asked for base mode.
    let out = build(
        t,
        &squash_dockerfile(BODY),
        &["--build-arg", "SQUASH_MOD=base"],
    );
    assert_fails_with(
        t,
        &out,
        "squash-frontend: build argument SQUASH_MOD is not a squash-frontend setting, and the Dockerfile does not use it; valid build arguments are SQUASH_MODE, SQUASH_METHOD, SQUASH_UPSTREAM, SQUASH_MIN_SAVING, SQUASH_SPLIT, SQUASH_REPORT",
    );
    // The Dockerfile's own argument of that shape is left to it.
    let out = build(
        t,
        &squash_dockerfile(&format!(
            "{BODY}ARG SQUASH_LEVEL=1\nRUN echo $SQUASH_LEVEL > /level\n"
        )),
        &["--build-arg", "SQUASH_LEVEL=2"],
    );
    out.assert_success();
}

#[test]
fn invalid_mode_directive_names_the_line() {
    let t = "invalid_mode_directive_names_the_line";
    start(t);
    let out = build(
        t,
        &squash_dockerfile(&format!("# squash=fast\n{BODY}")),
        &[],
    );
    assert_fails_with(
        t,
        &out,
        r#"squash-frontend: invalid directive # squash= "fast" (from Dockerfile line 2): valid values are full, base, off"#,
    );
    // buildx shows the lines around the directive, where the error is placed, not around the
    // `# syntax=` line (BuildKit's place for an error of a frontend that gives none).
    assert!(
        out.stderr.contains("   2 | >>> # squash=fast\n"),
        "[{t}] the directive's line, marked:\n{out}"
    );
    // The natural guess from the option's name, which is none of ours: refused, not a full
    // squash by default.
    let out = build(
        t,
        &squash_dockerfile(&format!("# squash-mode=base\n{BODY}")),
        &[],
    );
    assert_fails_with(
        t,
        &out,
        "squash-frontend: Dockerfile line 2: # squash-mode= is not a squash-frontend directive; valid directives are # squash=, # squash-method=, # squash-upstream=, # squash-min-saving=, # squash-split=",
    );
    assert!(
        out.stderr.contains("   2 | >>> # squash-mode=base\n"),
        "[{t}] the directive's line, marked:\n{out}"
    );
}

#[test]
fn misplaced_directive_names_the_line() {
    let t = "misplaced_directive_names_the_line";
    start(t);
    // Line 1 syntax, 2 FROM, 3 the directive: below FROM it is a plain
    // comment to BuildKit, so silently ignoring it would squash in full mode.
    let df =
        squash_dockerfile("FROM squash-test/busybox:latest\n# squash=base\nRUN echo one > /one\n");
    let out = build(t, &df, &[]);
    assert_fails_with(
        t,
        &out,
        "Dockerfile line 3: the # squash= directive is outside the comment block at the top of the Dockerfile",
    );

    // Above the syntax line, it would hide `# syntax=` from BuildKit: the
    // engine's Dockerfile frontend then builds it (no squash) — what BuildKit
    // does, documented here so a change is noticed.
    let df = format!(
        "# squash=base\n# syntax={}\n{BODY}",
        frontend_image_from_env()
    );
    let ctx = TestContext::new(t, &df);
    let tag = ctx.tag("above");
    let out = ctx.build(&["--load", "-t", &tag]);
    let loaded = out.success();
    let layers = if loaded {
        integration::docker::save(&tag).layers.len()
    } else {
        0
    };
    integration::docker::rmi(&[&tag]);
    println!(
        "[{t}] # squash= above # syntax=: exit {}, layers {layers}; our frontend ran: {}",
        out.status,
        out.stderr.contains("squash-frontend")
    );
    out.assert_success();
    assert_eq!(
        layers, 3,
        "BuildKit ignores a # syntax= below another directive: the plain build"
    );
}

// ---------------------------------------------------------------------------
// --print=targets / --print=outline
// ---------------------------------------------------------------------------

const PRINT_BODY: &str = r#"ARG BASE=squash-test/busybox:latest
ARG VERSION=1.0

FROM ${BASE} AS builder
ARG VERSION
RUN echo $VERSION > /v

FROM squash-test/busybox-layers:latest AS tester
RUN cat /base/dir/one

# The final image
FROM squash-test/busybox:latest AS final
ARG GREETING=hi
ARG SECRET_LEVEL
COPY --from=builder /v /v
"#;

/// `--print=WHAT EXTRA...`, sent as a user's own command would send it (buildx's
/// default attestations left as they are).
fn print_request(ctx: &TestContext, what: &str, extra: &[&str]) -> BuildOutput {
    Buildx::new(ctx.path())
        .args(&[&format!("--print={what}")])
        .args(extra)
        .env("BUILDX_EXPERIMENTAL", "1")
        .default_attestations()
        .run()
        .out
}

#[test]
fn print_targets_and_outline_match_the_plain_frontend() {
    let t = "print_targets_and_outline_match_the_plain_frontend";
    start(t);
    let plain = TestContext::new(t, PRINT_BODY);
    let squashed = TestContext::new(t, &squash_dockerfile(PRINT_BODY));
    let requests: [(&str, &[&str]); 4] = [
        ("targets", &[]),
        ("outline", &[]),
        ("outline", &["--target", "tester"]),
        (
            "outline",
            &["--build-arg", "VERSION=2.0", "--target", "builder"],
        ),
    ];
    for (what, extra) in requests {
        let p = print_request(&plain, what, extra);
        let s = print_request(&squashed, what, extra);
        p.assert_success();
        s.assert_success();
        println!(
            "[{t}] --print={what} {extra:?} (plain):\n{}",
            indent(&p.stdout)
        );
        assert!(
            !p.stdout.trim().is_empty(),
            "--print={what} printed nothing"
        );
        assert_eq!(
            p.stdout, s.stdout,
            "--print={what} {extra:?}: stdout differs between the plain frontend and ours"
        );
        println!("[{t}] --print={what} {extra:?}: identical stdout with our syntax line");
    }
}

// ---------------------------------------------------------------------------
// A failing RUN
// ---------------------------------------------------------------------------

#[test]
fn failing_run_shows_the_dockerfile_line() {
    let t = "failing_run_shows_the_dockerfile_line";
    start(t);
    let body = "FROM squash-test/busybox:latest\nRUN echo step-one\nRUN echo about-to-fail && exit 7\nRUN echo never\n";
    let plain = build(t, body, &[]);
    let squashed = build(t, &squash_dockerfile(body), &[]);
    // Without the report, base mode on the containerd store reads the build's changes in the
    // frontend: the failing step fails that read, and is passed on as the build's own.
    let unreported = build(
        t,
        &squash_dockerfile(body),
        &[
            "--build-arg",
            "SQUASH_MODE=base",
            "--build-arg",
            "SQUASH_REPORT=off",
        ],
    );
    for (side, out) in [
        ("plain", &plain),
        ("squashed", &squashed),
        ("squashed without the report", &unreported),
    ] {
        out.assert_failure();
        let excerpt: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains(">>>") || l.starts_with("ERROR") || l.starts_with("Dockerfile"))
            .collect();
        println!(
            "[{t}] {side}: exit {}\n{}",
            out.status,
            indent(&excerpt.join("\n"))
        );
        assert!(
            out.stderr
                .contains("did not complete successfully: exit code: 7"),
            "{side}: {out}"
        );
        assert!(
            out.stderr
                .lines()
                .any(|l| l.contains(">>> RUN echo about-to-fail && exit 7")),
            "{side}: the >>> excerpt of the failing RUN line is missing:\n{out}"
        );
    }
    // The location points at the same instruction: line 3 of the plain
    // Dockerfile, line 4 of ours (the syntax line comes first).
    assert!(plain.stderr.contains("Dockerfile:3\n"), "{plain}");
    assert!(squashed.stderr.contains("Dockerfile:4\n"), "{squashed}");
    assert!(unreported.stderr.contains("Dockerfile:4\n"), "{unreported}");
    assert_eq!(
        plain.status.code(),
        squashed.status.code(),
        "same exit status"
    );
    assert_eq!(plain.status.code(), unreported.status.code());
}
