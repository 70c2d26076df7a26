//! Hostile and wrong input: every bad setting, misplaced or repeated
//! directive and broken build gives a non-zero exit and ONE clear message
//! naming the thing and the valid choices; nothing panics (the daemon log,
//! where BuildKit sends our frontend's stderr, shows no `panicked`); and no
//! image is tagged. Errors that are the Dockerfile frontend's own pass
//! through unchanged: the same `ERROR` lines as the plain build's. Runs on
//! both stores.

mod common;

use common::start;
use integration::check::{assert_not_tagged, assert_same};
use integration::compare::CompareOptions;
use integration::context::TestContext;
use integration::docker::{self, BuildOutput, Buildx, BUILD_TIMEOUT};
use integration::fixtures::{DaemonLog, BUSYBOX};
use integration::progress::{error_lines, error_messages, squash_lines};
use integration::scenario::{frontend_image_from_env, squash_dockerfile, Scenario};
use integration::show::{describe_outcome, indent};

const BODY: &str = "FROM squash-test/busybox:latest\nRUN echo one > /one\nRUN echo two > /two\n";

const MODE_CHOICES: &str = "valid values are full, base, off";
const METHOD_CHOICES: &str = "valid values are auto, diff, sync";
const UPSTREAM_CHOICES: &str = "valid values are an image reference such as docker/dockerfile:1.7";

/// Builds `dockerfile` (as given) with `--load -t <tag> ARGS...` and checks
/// the refusal: non-zero exit, `needle` on exactly one line of the output,
/// no image tagged, no panic in the daemon log. Returns the output.
#[track_caller]
fn assert_refused(
    t: &str,
    case: &str,
    dockerfile: &str,
    args: &[&str],
    needle: &str,
) -> BuildOutput {
    let log = DaemonLog::mark();
    let ctx = TestContext::new(t, dockerfile);
    let tag = ctx.tag("refused");
    let run = Buildx::new(ctx.path())
        .args(&["--load", "-t", &tag])
        .args(args)
        .timeout(BUILD_TIMEOUT)
        .run();
    let out = run.out;
    if out.success() {
        let tagged = docker::image_exists(&tag);
        let layers = if tagged {
            docker::save(&tag).layers.len()
        } else {
            0
        };
        docker::rmi(&[&tag]);
        panic!(
            "[{t}] {case}: the build succeeded (image tagged: {tagged}, {layers} layer(s)) but should have been refused with {needle:?}:\n{}",
            squash_lines(&out.stderr)
        );
    }
    assert_not_tagged(t, &tag);
    let hits: Vec<&str> = out.stderr.lines().filter(|l| l.contains(needle)).collect();
    println!(
        "[{t}] {case}: exit {} after {:.1?}; {}",
        out.status,
        run.elapsed,
        error_lines(&out.stderr).join(" | ")
    );
    assert_eq!(
        hits.len(),
        1,
        "[{t}] {case}: expected the message {needle:?} on exactly one line of the output:\n{out}"
    );
    let errors = error_lines(&out.stderr);
    assert_eq!(
        errors.len(),
        1,
        "[{t}] {case}: expected one ERROR line:\n{out}"
    );
    assert!(
        errors[0].contains(needle),
        "[{t}] {case}: the ERROR line should be the message {needle:?}: {}",
        errors[0]
    );
    log.assert_no_panic(t);
    out
}

#[test]
fn hostile_unknown_mode() {
    let t = "hostile_unknown_mode";
    start(t);
    for (value, shown) in [
        ("fast", r#""fast""#),
        ("full;rm -rf /", r#""full;rm -rf /""#),
        ("bäse", r#""bäse""#),
        ("base\nfull", r#""base\nfull""#),
    ] {
        let arg = format!("SQUASH_MODE={value}");
        let needle =
            format!("squash-frontend: invalid build argument SQUASH_MODE {shown}: {MODE_CHOICES}");
        assert_refused(
            t,
            &arg,
            &squash_dockerfile(BODY),
            &["--build-arg", &arg],
            &needle,
        );
    }
    let needle = format!(
        r#"squash-frontend: invalid directive # squash= "fast" (from Dockerfile line 2): {MODE_CHOICES}"#
    );
    assert_refused(
        t,
        "# squash=fast",
        &squash_dockerfile(&format!("# squash=fast\n{BODY}")),
        &[],
        &needle,
    );
}

#[test]
fn hostile_empty_values() {
    let t = "hostile_empty_values";
    start(t);
    for (arg, needle) in [
        (
            "SQUASH_MODE=",
            format!("squash-frontend: build argument SQUASH_MODE is empty: {MODE_CHOICES}"),
        ),
        (
            "SQUASH_MODE=   ",
            format!("squash-frontend: build argument SQUASH_MODE is empty: {MODE_CHOICES}"),
        ),
        (
            "SQUASH_METHOD=",
            format!("squash-frontend: build argument SQUASH_METHOD is empty: {METHOD_CHOICES}"),
        ),
        (
            "SQUASH_UPSTREAM=",
            format!("squash-frontend: build argument SQUASH_UPSTREAM is empty: {UPSTREAM_CHOICES}"),
        ),
    ] {
        assert_refused(
            t,
            arg,
            &squash_dockerfile(BODY),
            &["--build-arg", arg],
            &needle,
        );
    }
}

/// `# squash=` with nothing after `=`: the author meant to choose a mode.
/// Ignoring the line would squash in the default mode without a word (and
/// end the directive block there, so a `# squash-method=` below it would be
/// reported as misplaced instead).
#[test]
fn hostile_empty_directive() {
    let t = "hostile_empty_directive";
    start(t);
    let needle = format!(
        "squash-frontend: directive # squash= (from Dockerfile line 2) is empty: {MODE_CHOICES}"
    );
    assert_refused(
        t,
        "# squash=",
        &squash_dockerfile(&format!("# squash=\n{BODY}")),
        &[],
        &needle,
    );
}

#[test]
fn hostile_unknown_method() {
    let t = "hostile_unknown_method";
    start(t);
    let needle = format!(
        r#"squash-frontend: invalid build argument SQUASH_METHOD "copy": {METHOD_CHOICES}"#
    );
    // Checked in every mode, also where the method would not be used.
    for mode in ["base", "full"] {
        let mode_arg = format!("SQUASH_MODE={mode}");
        assert_refused(
            t,
            &format!("{mode_arg} SQUASH_METHOD=copy"),
            &squash_dockerfile(BODY),
            &[
                "--build-arg",
                &mode_arg,
                "--build-arg",
                "SQUASH_METHOD=copy",
            ],
            &needle,
        );
    }
    let needle = format!(
        r#"squash-frontend: invalid directive # squash-method= "fastest" (from Dockerfile line 3): {METHOD_CHOICES}"#
    );
    assert_refused(
        t,
        "# squash-method=fastest",
        &squash_dockerfile(&format!("# squash=base\n# squash-method=fastest\n{BODY}")),
        &[],
        &needle,
    );
}

/// Settings that do not fit together but are each valid: `off` wins and the
/// method is not used, so the plain image comes back, on the classic store
/// too, where `diff` itself is unavailable. Full mode honours the method: `diff`
/// gives one layer where the engine has DiffOp, and stops the build with the
/// reason where it has not (the classic store).
#[test]
fn conflicting_off_with_a_method_builds_unsquashed() {
    let t = "conflicting_off_with_a_method_builds_unsquashed";
    let store = start(t);
    let log = DaemonLog::mark();
    let out = Scenario::new(t, BODY)
        .squash_args(&[
            "--build-arg",
            "SQUASH_MODE=off",
            "--build-arg",
            "SQUASH_METHOD=diff",
        ])
        .run();
    describe_outcome(t, &out);
    assert_eq!(
        out.squashed.image.diff_ids(),
        out.plain.image.diff_ids(),
        "SQUASH_MODE=off with SQUASH_METHOD=diff: the plain layers"
    );
    assert_eq!(out.plain.image.history(), out.squashed.image.history());
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    drop(out);

    let args = [
        "--build-arg",
        "SQUASH_MODE=full",
        "--build-arg",
        "SQUASH_METHOD=diff",
    ];
    if store == docker::Store::Classic {
        assert_refused(
            t,
            "SQUASH_MODE=full with SQUASH_METHOD=diff on the classic store",
            &squash_dockerfile(BODY),
            &args,
            "squash-frontend: squash method diff needs the engine's DiffOp (and MergeOp in base mode), which this engine does not offer (diffop: only enabled with containerd image store backend); set the squash method to sync or auto (valid values: auto, diff, sync)",
        );
    } else {
        let out = Scenario::new(t, BODY).squash_args(&args).run();
        describe_outcome(t, &out);
        assert_eq!(
            out.squashed.image.layers.len(),
            1,
            "SQUASH_MODE=full with SQUASH_METHOD=diff: one layer"
        );
        assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    }
    log.assert_no_panic(t);
}

#[test]
fn hostile_directive_in_the_wrong_place() {
    let t = "hostile_directive_in_the_wrong_place";
    start(t);
    // Line 1 syntax, 2 FROM, 3 the directive.
    let df =
        squash_dockerfile("FROM squash-test/busybox:latest\n# squash=base\nRUN echo one > /one\n");
    assert_refused(
        t,
        "below FROM",
        &df,
        &[],
        "squash-frontend: Dockerfile line 3: the # squash= directive is outside the comment block at the top of the Dockerfile, where directives are read; move it right below the # syntax= line",
    );
    // After a blank line the block has ended too.
    let df = squash_dockerfile(
        "\n# squash-method=sync\nFROM squash-test/busybox:latest\nRUN echo one > /one\n",
    );
    assert_refused(
        t,
        "after a blank line",
        &df,
        &[],
        "squash-frontend: Dockerfile line 3: the # squash-method= directive is outside the comment block",
    );
}

/// `# squash=` above `# syntax=` hides the syntax line from BuildKit; with
/// the frontend chosen by `--build-arg BUILDKIT_SYNTAX=` instead, our
/// frontend runs and must say that the order is wrong.
#[test]
fn hostile_directive_above_syntax_with_buildkit_syntax_arg() {
    let t = "hostile_directive_above_syntax_with_buildkit_syntax_arg";
    start(t);
    let frontend = frontend_image_from_env();
    let df = format!("# squash=base\n# syntax={frontend}\n{BODY}");
    let arg = format!("BUILDKIT_SYNTAX={frontend}");
    assert_refused(
        t,
        "BUILDKIT_SYNTAX",
        &df,
        &["--build-arg", &arg],
        "squash-frontend: Dockerfile line 1: the # squash= directive comes before # syntax= (line 2); BuildKit stops reading directives at the first one it does not know, so put # squash= below # syntax=",
    );
}

#[test]
fn hostile_duplicated_directive() {
    let t = "hostile_duplicated_directive";
    start(t);
    assert_refused(
        t,
        "# squash= twice",
        &squash_dockerfile(&format!("# squash=base\n# squash=full\n{BODY}")),
        &[],
        "squash-frontend: Dockerfile line 3: the # squash= directive is given twice (first on line 2)",
    );
    // Directive names are case-insensitive, as BuildKit's are.
    assert_refused(
        t,
        "# squash= and # SQUASH=",
        &squash_dockerfile(&format!("# squash=base\n# SQUASH=base\n{BODY}")),
        &[],
        "squash-frontend: Dockerfile line 3: the # squash= directive is given twice (first on line 2)",
    );
}

/// Builds the same body plain and with our line, the plain one with a
/// comment where ours has the syntax line so that line numbers agree, and
/// checks both fail with the same `ERROR` lines; no image, no panic.
#[track_caller]
fn assert_fails_as_plain(t: &str, case: &str, body: &str, args: &[&str], needle: &str) {
    let log = DaemonLog::mark();
    let plain_ctx = TestContext::new(t, &format!("# the plain build\n{body}"));
    let squashed_ctx = TestContext::new(t, &squash_dockerfile(body));
    let mut outs = Vec::new();
    for (side, ctx) in [("plain", &plain_ctx), ("squashed", &squashed_ctx)] {
        let tag = ctx.tag(side);
        let run = Buildx::new(ctx.path())
            .args(&["--load", "-t", &tag])
            .args(args)
            .timeout(BUILD_TIMEOUT)
            .run();
        assert_not_tagged(t, &tag);
        assert!(
            !run.out.success(),
            "[{t}] {case}: the {side} build succeeded:\n{}",
            run.out
        );
        println!(
            "[{t}] {case}: {side} exit {} after {:.1?}:\n{}",
            run.out.status,
            run.elapsed,
            indent(&error_lines(&run.out.stderr).join("\n"))
        );
        assert!(
            run.out.stderr.contains(needle),
            "[{t}] {case}: the {side} build should fail with {needle:?}:\n{}",
            run.out
        );
        outs.push(run.out);
    }
    assert_eq!(
        error_messages(&outs[0].stderr),
        error_messages(&outs[1].stderr),
        "[{t}] {case}: the Dockerfile frontend's error should pass through unchanged"
    );
    assert_eq!(
        outs[0].status.code(),
        outs[1].status.code(),
        "same exit status"
    );
    assert!(
        !error_lines(&outs[1].stderr)
            .iter()
            .any(|l| l.contains("squash-frontend: ")),
        "[{t}] {case}: not our error, so not under our name:\n{}",
        outs[1]
    );
    log.assert_no_panic(t);
}

#[test]
fn hostile_dockerfile_that_does_not_parse() {
    let t = "hostile_dockerfile_that_does_not_parse";
    start(t);
    assert_fails_as_plain(
        t,
        "unknown instruction",
        "FROM squash-test/busybox:latest\nRUNX echo hi\n",
        &[],
        "unknown instruction: RUNX",
    );
    assert_fails_as_plain(
        t,
        "FROM without an image",
        "FROM\nRUN echo hi\n",
        &[],
        "FROM requires either one or three arguments",
    );
    assert_fails_as_plain(
        t,
        "unterminated heredoc",
        "FROM squash-test/busybox:latest\nRUN <<EOF\necho never ends\n",
        &[],
        "ERROR",
    );
}

#[test]
fn hostile_missing_target() {
    let t = "hostile_missing_target";
    start(t);
    assert_fails_as_plain(
        t,
        "--target nope",
        "FROM squash-test/busybox:latest AS one\nRUN echo one > /one\n",
        &["--target", "nope"],
        "target stage \"nope\" could not be found",
    );
}

#[test]
fn hostile_base_that_cannot_be_resolved() {
    let t = "hostile_base_that_cannot_be_resolved";
    start(t);
    for mode in ["full", "base"] {
        let arg = format!("SQUASH_MODE={mode}");
        assert_fails_as_plain(
            t,
            &arg,
            "FROM squash-test/does-not-exist\nRUN echo one > /one\n",
            &["--build-arg", &arg],
            "squash-test/does-not-exist",
        );
    }
}

/// `SQUASH_UPSTREAM` naming an image that is not a frontend (busybox, whose
/// `sh` reads BuildKit's gRPC bytes as a script): the build must stop with a
/// clear error that names the image, not hang.
#[test]
fn hostile_upstream_that_is_not_a_frontend() {
    let t = "hostile_upstream_that_is_not_a_frontend";
    start(t);
    let log = DaemonLog::mark();
    // What BuildKit itself says for `# syntax=<busybox>`, for comparison.
    let direct = TestContext::new(t, &format!("# syntax={BUSYBOX}\n{BODY}"));
    let d = Buildx::new(direct.path())
        .timeout(std::time::Duration::from_secs(60))
        .run();
    println!(
        "[{t}] BuildKit with `# syntax={BUSYBOX}`: {} after {:.1?} (timed out: {}): {}",
        d.out.status,
        d.elapsed,
        d.timed_out,
        error_lines(&d.out.stderr).join(" | ")
    );
    let ctx = TestContext::new(t, &squash_dockerfile(BODY));
    let tag = ctx.tag("upstream");
    let arg = format!("SQUASH_UPSTREAM={BUSYBOX}");
    let run = Buildx::new(ctx.path())
        .args(&["--load", "-t", &tag, "--build-arg", &arg])
        .timeout(std::time::Duration::from_secs(60))
        .run();
    assert_not_tagged(t, &tag);
    println!(
        "[{t}] exit {} after {:.1?} (timed out: {}):\n{}",
        run.out.status,
        run.elapsed,
        run.timed_out,
        indent(&error_lines(&run.out.stderr).join("\n"))
    );
    assert!(
        !run.timed_out,
        "[{t}] the build hung with an upstream that is not a frontend:\n{}",
        run.out
    );
    assert!(!run.out.success(), "{}", run.out);
    let errors = error_lines(&run.out.stderr).join("\n");
    assert!(
        errors.contains(BUSYBOX) && errors.contains("SQUASH_UPSTREAM"),
        "[{t}] the error should name the upstream image and the setting:\n{}",
        run.out
    );
    log.assert_no_panic(t);
}

#[test]
fn hostile_huge_option_value() {
    let t = "hostile_huge_option_value";
    start(t);
    let value = "b".repeat(100 * 1024);
    let arg = format!("SQUASH_MODE={value}");
    let out = assert_refused(
        t,
        "SQUASH_MODE of 100 KiB",
        &squash_dockerfile(BODY),
        &["--build-arg", &arg],
        "squash-frontend: build argument SQUASH_MODE is 102400 bytes long; at most 4096 are accepted",
    );
    let longest = out.stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest < 2000,
        "[{t}] the message should not echo the 100 KiB value (longest output line: {longest} bytes)"
    );
    let arg = format!("SQUASH_UPSTREAM=docker/{}", "d".repeat(100 * 1024));
    assert_refused(
        t,
        "SQUASH_UPSTREAM of 100 KiB",
        &squash_dockerfile(BODY),
        &["--build-arg", &arg],
        "squash-frontend: build argument SQUASH_UPSTREAM is 102407 bytes long; at most 4096 are accepted",
    );
}

#[test]
fn hostile_upstream_with_invalid_characters() {
    let t = "hostile_upstream_with_invalid_characters";
    start(t);
    for (value, shown) in [
        ("not a ref", r#""not a ref""#),
        ("docker/dockerfile:1;id", r#""docker/dockerfile:1;id""#),
        ("$(id)/x", r#""$(id)/x""#),
        ("-oops", r#""-oops""#),
        ("docker/dockerfile\n:1", r#""docker/dockerfile\n:1""#),
    ] {
        let arg = format!("SQUASH_UPSTREAM={value}");
        let needle = format!(
            "squash-frontend: invalid build argument SQUASH_UPSTREAM {shown}: {UPSTREAM_CHOICES}"
        );
        assert_refused(
            t,
            &arg,
            &squash_dockerfile(BODY),
            &["--build-arg", &arg],
            &needle,
        );
    }
}
