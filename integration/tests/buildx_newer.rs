//! What a user of a newer buildx (0.2x, with Docker 28) does, compared
//! without and with our one added `# syntax=` line: `--call outline`,
//! `targets` and `check` (and `--check`), build-check warnings and the
//! `BUILDKIT_DOCKERFILE_CHECK` build argument, `--annotation`, the build
//! history (`docker buildx history`), the `BUILDKIT_SYNTAX` build argument,
//! `docker build` without `buildx`, and a push to a registry with our
//! frontend image itself pulled from that registry.
//!
//! Runs on both engine generations and both stores. A part the engine's
//! buildx lacks (`--call`, `--check` and `history` are not in buildx 0.13)
//! prints why it is skipped, naming the engine, and asserts the refusal is
//! the same with our line; outline and targets then go through `--call`'s
//! predecessor, `--print=`. [`docker::buildx_offers`] panics if the newer
//! engine's buildx lacks one, so nothing is skipped there. What an engine
//! lacks (build checks before Docker 27) or a store refuses (OCI output on
//! the classic store) is asserted as the same on both sides, per engine.
//!
//! What our line changes, asserted exactly: every Dockerfile location is one
//! line further down and the Dockerfile's text starts with our line (in
//! `--call` JSON, check warnings, excerpts and a failed record's source); a
//! failure without a source of its own (a lint violation) quotes our line as
//! its source, as BuildKit does for any `# syntax=` frontend; the build
//! record lists our frontend image among its materials.

mod common;

use std::collections::BTreeMap;

use common::start;
use integration::archive::Archive;
use integration::calls;
use integration::check::{assert_refused_alike, assert_same, assert_squash_history};
use integration::compare::CompareOptions;
use integration::context::TestContext;
use integration::docker::{
    self, BuildOutput, Buildx, BuildxFeature, Store, Version, BUILD_TIMEOUT, NEWER_BUILDX,
};
use integration::fixtures::{self, DaemonLog, BUSYBOX};
use integration::image::{created_by, Image, Platform};
use integration::progress::{
    error_lines, error_messages, lint_violation_rules, lint_warnings, squash_steps, LintWarning,
};
use integration::scenario::{
    both_contexts, frontend_image_from_env, load_built, Built, Outcome, Scenario, TagGuard,
};
use integration::show::{describe, describe_outcome, indent};
use serde_json::Value;

/// What the classic store says to an OCI output under the `docker` driver.
const OCI_REFUSAL: &str = "OCI exporter is not supported for the docker driver.";

/// Runs one side's build of `ctx` with `args`, within [`BUILD_TIMEOUT`].
fn run(ctx: &TestContext, args: &[&str]) -> BuildOutput {
    Buildx::new(ctx.path())
        .args(args)
        .timeout(BUILD_TIMEOUT)
        .run()
        .out
}

/// The syntax line our side has on top.
fn syntax_line() -> String {
    format!("# syntax={}", frontend_image_from_env())
}

/// Prints why a part is skipped on this engine and asserts the engine's
/// buildx refuses `args` the same way with and without our line (the client
/// refuses a flag it does not know before it reads the Dockerfile).
#[track_caller]
fn skip_part(t: &str, why: &str, body: &str, args: &[&str], needle: &str) {
    println!("[{t}] SKIPPED on this engine: {why}");
    let (plain, squashed) = both_contexts(t, body, &[]);
    let (p, s) = (run(&plain, args), run(&squashed, args));
    for (side, out) in [("plain", &p), ("squashed", &s)] {
        out.assert_failure();
        assert!(
            out.stderr.contains(needle),
            "{side}: expected {needle:?} from {args:?}:\n{out}"
        );
    }
    assert_eq!(p.status.code(), s.status.code());
    assert_eq!(p.stderr, s.stderr, "the refusal differs with our line");
    println!(
        "[{t}] {args:?} is refused alike ({}): {}",
        s.status,
        s.stderr.lines().next().unwrap_or("")
    );
}

// ---------------------------------------------------------------------------
// 1. --call outline / targets / check, --check
// ---------------------------------------------------------------------------

/// Stages, arguments and the comments `--call outline` and `targets` turn
/// into descriptions; the first comment is right below our syntax line on our
/// side.
const CALL_BODY: &str = r#"# BASE the image every stage starts from
ARG BASE=squash-test/busybox:latest
ARG VERSION=1.0

# builder writes the version
FROM ${BASE} AS builder
ARG VERSION
RUN echo $VERSION > /v

FROM squash-test/busybox-layers:latest AS tester
RUN cat /base/dir/one

# final ships the version
FROM squash-test/busybox:latest AS final
# GREETING what the image says
ARG GREETING=hi
ARG SECRET_LEVEL
COPY --from=builder /v /v
"#;

#[test]
fn call_outline_and_targets_match_the_plain_frontend() {
    let t = "call_outline_and_targets_match_the_plain_frontend";
    start(t);
    // Without `--call`, the same requests through its predecessor,
    // `--print=`, behind BUILDX_EXPERIMENTAL=1 (buildx 0.13).
    let call = docker::buildx_offers(BuildxFeature::Call);
    if let Err(why) = &call {
        skip_part(
            t,
            why,
            CALL_BODY,
            &["--call", "outline"],
            "unknown flag: --call",
        );
        println!("[{t}] the same requests through --print= (experimental in this buildx) instead");
    }
    let (plain, squashed) = both_contexts(t, CALL_BODY, &[]);
    let requests: [(&str, &[&str]); 7] = [
        ("outline", &[]),
        ("outline", &["--target", "tester"]),
        (
            "outline",
            &["--build-arg", "VERSION=2.0", "--target", "builder"],
        ),
        ("targets", &[]),
        ("outline,format=json", &[]),
        ("outline,format=json", &["--build-arg", "VERSION=2.0"]),
        ("targets,format=json", &[]),
    ];
    for (method, extra) in requests {
        let mut args = match call {
            Ok(()) => vec!["--call".to_string(), method.to_string()],
            Err(_) => vec![format!("--print={method}")],
        };
        args.extend(extra.iter().map(|a| a.to_string()));
        let flag = args[..args.len() - extra.len()].join(" ");
        let request = |ctx: &TestContext| {
            Buildx::new(ctx.path())
                .args(&args)
                .env("BUILDX_EXPERIMENTAL", "1")
                .timeout(BUILD_TIMEOUT)
                .run()
                .out
        };
        let (p, s) = (request(&plain), request(&squashed));
        p.assert_success();
        s.assert_success();
        assert!(!p.stdout.trim().is_empty(), "{flag} printed nothing");
        if method.ends_with("format=json") {
            let (pv, none) = calls::without_added_lines(&calls::parse(&p.stdout).unwrap(), 0)
                .unwrap_or_else(|e| panic!("plain {flag}: {e:#}"));
            let (sv, removed) = calls::without_added_lines(&calls::parse(&s.stdout).unwrap(), 1)
                .unwrap_or_else(|e| panic!("squashed {flag}: {e:#}\n{s}"));
            assert!(none.is_empty());
            assert_eq!(removed, [syntax_line()], "the line taken off is ours");
            assert_eq!(
                pv, sv,
                "{flag} {extra:?}: the JSON differs beyond our line\nplain: {}\nsquashed: {}",
                p.stdout, s.stdout
            );
            println!(
                "[{t}] {flag} {extra:?}: the same JSON once our line (a source line, every location one line down) is taken off"
            );
        } else {
            println!("[{t}] {flag} {extra:?} (plain):\n{}", indent(&p.stdout));
            assert_eq!(
                p.stdout, s.stdout,
                "{flag} {extra:?}: stdout differs with our line"
            );
            println!("[{t}] {flag} {extra:?}: identical stdout with our line");
        }
    }
}

/// Four build-check warnings (FromAsCasing, MaintainerDeprecated,
/// SecretsUsedInArgOrEnv, JSONArgsRecommended) in a two-stage build.
const LINT_BODY: &str = r#"FROM squash-test/busybox:latest as builder
MAINTAINER someone
RUN echo built > /v
ENV secret_password=x

FROM squash-test/busybox:latest AS final
COPY --from=builder /v /v
CMD echo hi
"#;

const LINT_RULES: [&str; 4] = [
    "FromAsCasing",
    "JSONArgsRecommended",
    "MaintainerDeprecated",
    "SecretsUsedInArgOrEnv",
];

#[test]
fn call_check_matches_the_plain_frontend() {
    let t = "call_check_matches_the_plain_frontend";
    start(t);
    if let Err(why) = docker::buildx_offers(BuildxFeature::Call) {
        skip_part(
            t,
            &why,
            LINT_BODY,
            &["--call", "check"],
            "unknown flag: --call",
        );
        if let Err(why) = docker::buildx_offers(BuildxFeature::Check) {
            skip_part(t, &why, LINT_BODY, &["--check"], "unknown flag: --check");
        }
        return;
    }
    docker::buildx_offers(BuildxFeature::Check).unwrap_or_else(|why| panic!("{why}"));
    let (plain, squashed) = both_contexts(t, LINT_BODY, &[]);
    // The text: the same warnings, each pointing one line further down on our
    // side; the excerpts around them show our line where it is near.
    let (p, s) = (
        run(&plain, &["--call", "check"]),
        run(&squashed, &["--call", "check"]),
    );
    println!(
        "[{t}] --call check (plain, {}):\n{}",
        p.status,
        indent(&p.stdout)
    );
    p.assert_failure();
    assert_eq!(p.status.code(), s.status.code(), "same exit status");
    assert!(
        p.stdout
            .contains("Check complete, 4 warnings have been found!"),
        "{p}"
    );
    assert_eq!(
        calls::check_text_without_excerpts(&p.stdout, 0),
        calls::check_text_without_excerpts(&s.stdout, 1),
        "--call check: the warnings differ beyond our line\nplain: {p}\nsquashed: {s}"
    );
    assert!(
        s.stdout.contains(&format!("|     {}", syntax_line())),
        "{s}"
    );
    // `--check` is `--call check`.
    for (side, ctx, call) in [("plain", &plain, &p), ("squashed", &squashed, &s)] {
        let check = run(ctx, &["--check"]);
        assert_eq!(check.status.code(), call.status.code(), "{side}: --check");
        assert_eq!(
            check.stdout, call.stdout,
            "{side}: --check prints what --call check does"
        );
    }
    // JSON: the same once our line is taken off.
    let args = ["--call", "check,format=json"];
    let (p, s) = (run(&plain, &args), run(&squashed, &args));
    assert_eq!(p.status.code(), s.status.code(), "same exit status");
    let (pv, _) = calls::without_added_lines(&calls::parse(&p.stdout).unwrap(), 0).unwrap();
    let (sv, removed) = calls::without_added_lines(&calls::parse(&s.stdout).unwrap(), 1)
        .unwrap_or_else(|e| panic!("{e:#}\n{s}"));
    assert_eq!(removed, [syntax_line()]);
    let mut rules: Vec<&str> = pv["warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(|w| w["ruleName"].as_str()).collect())
        .unwrap_or_default();
    rules.sort();
    assert_eq!(rules, LINT_RULES, "{}", p.stdout);
    assert_eq!(pv, sv, "--call check,format=json differs beyond our line");
    println!(
        "[{t}] --call check,format=json: rules {rules:?}, the same once our line is taken off"
    );
    // Checks skipped by the build argument, and a clean Dockerfile.
    let skip = [
        "--call",
        "check",
        "--build-arg",
        "BUILDKIT_DOCKERFILE_CHECK=skip=all",
    ];
    let clean = "FROM squash-test/busybox:latest AS final\nCMD [\"true\"]\n";
    let (clean_plain, clean_squashed) = both_contexts(t, clean, &[]);
    for (what, p, s) in [
        ("skip=all", run(&plain, &skip), run(&squashed, &skip)),
        (
            "a clean Dockerfile",
            run(&clean_plain, &["--call", "check"]),
            run(&clean_squashed, &["--call", "check"]),
        ),
    ] {
        p.assert_success();
        s.assert_success();
        assert_eq!(
            p.stdout.trim(),
            "Check complete, no warnings found.",
            "{what}: {p}"
        );
        assert_eq!(p.stdout, s.stdout, "{what}");
        println!("[{t}] --call check, {what}: {:?} on both", s.stdout.trim());
    }
}

// ---------------------------------------------------------------------------
// 2. Build-check warnings and BUILDKIT_DOCKERFILE_CHECK in a build
// ---------------------------------------------------------------------------

/// The engine from which the built-in Dockerfile frontend runs build checks:
/// Docker 27.0 ships BuildKit 0.14, whose Dockerfile frontend (1.8) brought
/// them. Docker 26.1 (BuildKit 0.13) ignores `BUILDKIT_DOCKERFILE_CHECK` and
/// `# check=` and prints no warning, which the test asserts there.
const BUILD_CHECKS_FROM: Version = Version::new(27, 0, 0);

/// The warnings of a squashed build, pointing where they would in the plain
/// Dockerfile (one line up).
fn moved_up(warnings: &[LintWarning]) -> Vec<LintWarning> {
    warnings
        .iter()
        .map(|w| LintWarning {
            line: w.line.map(|n| n - 1),
            ..w.clone()
        })
        .collect()
}

/// The warnings both sides printed (the same, ours moved up a line), and
/// their rules.
#[track_caller]
fn same_warnings(t: &str, what: &str, p: &BuildOutput, s: &BuildOutput) -> Vec<String> {
    let (pc, pw) = lint_warnings(&p.stderr);
    let (sc, sw) = lint_warnings(&s.stderr);
    assert_eq!(
        pc, sc,
        "{what}: the warning count differs\nplain: {p}\nsquashed: {s}"
    );
    assert_eq!(
        pw,
        moved_up(&sw),
        "{what}: the warnings differ beyond our line\nplain: {p}\nsquashed: {s}"
    );
    println!(
        "[{t}] {what}: {} warning(s) alike{}",
        pw.len(),
        if pw.is_empty() {
            String::new()
        } else {
            format!(
                ":\n{}",
                indent(
                    &pw.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            )
        }
    );
    pw.iter().map(|w| w.rule.clone()).collect()
}

/// The `ERROR` lines of a build without the rule list of a lint violation,
/// which BuildKit writes in no fixed order.
/// Without the client's prefix too ([`error_messages`]).
fn errors_without_rule_list(out: &BuildOutput) -> Vec<String> {
    error_messages(&out.stderr)
        .into_iter()
        .map(|l| match l.split_once("lint violation found for rules: ") {
            Some((head, _)) => format!("{head}lint violation found for rules: <sorted apart>"),
            None => l,
        })
        .collect()
}

#[test]
fn build_check_warnings_and_the_check_build_arg() {
    let t = "build_check_warnings_and_the_check_build_arg";
    start(t);
    let engine = docker::engine_or_panic();
    let checks = engine.server().is_some_and(|v| v >= BUILD_CHECKS_FROM);
    println!(
        "[{t}] {}: build checks {}",
        engine.label(),
        if checks {
            "expected"
        } else {
            "not expected (before Docker 27.0 the engine's Dockerfile frontend has none)"
        }
    );
    // The default: warnings, and the image squashed.
    let out = Scenario::new(t, LINT_BODY).run();
    describe_outcome(t, &out);
    assert_eq!(out.squashed.image.layers.len(), 1);
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    let rules = same_warnings(t, "default", &out.plain.build, &out.squashed.build);
    let mut sorted = rules.clone();
    sorted.sort();
    if checks {
        assert_eq!(sorted, LINT_RULES);
    } else {
        assert!(
            rules.is_empty(),
            "{}: no build checks expected",
            engine.label()
        );
    }
    drop(out);

    let (plain, squashed) = both_contexts(t, LINT_BODY, &[]);
    // Checks turned off, or some of them.
    for (value, left) in [
        ("skip=all", &[][..]),
        (
            "skip=FromAsCasing,MaintainerDeprecated",
            &["JSONArgsRecommended", "SecretsUsedInArgOrEnv"][..],
        ),
    ] {
        let arg = format!("BUILDKIT_DOCKERFILE_CHECK={value}");
        let args = ["--build-arg", arg.as_str()];
        let (p, s) = (run(&plain, &args), run(&squashed, &args));
        p.assert_success();
        s.assert_success();
        let mut rules = same_warnings(t, value, &p, &s);
        rules.sort();
        let want: &[&str] = if checks { left } else { &[] };
        assert_eq!(rules, want, "{value}");
    }

    // Checks that fail the build: by build argument, and by `# check=`
    // below our line.
    let directive_body = format!("# check=error=true\n{LINT_BODY}");
    let (dplain, dsquashed) = both_contexts(&format!("{t}-directive"), &directive_body, &[]);
    for (what, p, s) in [
        (
            "BUILDKIT_DOCKERFILE_CHECK=error=true",
            run(
                &plain,
                &["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=error=true"],
            ),
            run(
                &squashed,
                &["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=error=true"],
            ),
        ),
        (
            "# check=error=true",
            run(&dplain, &[]),
            run(&dsquashed, &[]),
        ),
    ] {
        assert_eq!(
            p.status.code(),
            s.status.code(),
            "{what}: exit status\nplain: {p}\nsquashed: {s}"
        );
        let rules = same_warnings(t, what, &p, &s);
        if !checks {
            p.assert_success();
            s.assert_success();
            assert!(rules.is_empty());
            println!(
                "[{t}] {what}: no build checks on {}: both builds pass",
                engine.label()
            );
            continue;
        }
        p.assert_failure();
        assert_eq!(lint_violation_rules(&p.stderr), LINT_RULES, "{p}");
        assert_eq!(lint_violation_rules(&s.stderr), LINT_RULES, "{s}");
        assert_eq!(errors_without_rule_list(&p), errors_without_rule_list(&s));
        // What differs is BuildKit's: the violation has no source of its own,
        // so the built-in frontend that followed a `# syntax=` line names
        // that line as the failure's source, as for any syntax frontend.
        let excerpt = format!(">>> {}", syntax_line());
        assert!(!p.stderr.contains(">>> # syntax="), "{p}");
        assert!(
            s.stderr.contains(&excerpt),
            "{what}: BuildKit's excerpt of our line is missing: {s}"
        );
        println!(
            "[{t}] {what}: both fail alike ({}), rules {:?}; ours also quotes {excerpt:?} as the source (BuildKit's doing)\n{}",
            s.status,
            lint_violation_rules(&s.stderr),
            indent(&error_lines(&s.stderr).join("\n"))
        );
    }
}

// ---------------------------------------------------------------------------
// 3. --annotation
// ---------------------------------------------------------------------------

const CREATED: &str = "org.opencontainers.image.created";

/// Every annotation of an OCI layout, by where it is: on the descriptors in
/// `index.json`, on an index it leads to, on each image manifest and on its
/// descriptor. The time BuildKit stamps (`org.opencontainers.image.created`)
/// is shown as `<set>`: it differs between any two builds.
fn annotations(archive: &Archive) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut all = BTreeMap::new();
    let mut put = |place: String, v: &Value| {
        let Some(map) = v.get("annotations").and_then(Value::as_object) else {
            return;
        };
        let map: BTreeMap<String, String> = map
            .iter()
            .map(|(k, v)| {
                let v = if k == CREATED {
                    "<set>"
                } else {
                    v.as_str().unwrap_or("?")
                };
                (k.clone(), v.to_string())
            })
            .collect();
        all.insert(place, map);
    };
    let index = archive.index_json().expect("an OCI layout has index.json");
    for d in index["manifests"].as_array().into_iter().flatten() {
        put("index.json descriptor".into(), d);
        if d["mediaType"] == "application/vnd.oci.image.index.v1+json" {
            let digest = d["digest"].as_str().unwrap();
            let nested: Value =
                serde_json::from_slice(&archive.read_blob(digest).unwrap()).unwrap();
            put("index".into(), &nested);
        }
    }
    for m in archive.image_manifests() {
        let platform = m.platform.as_ref().map_or("?".into(), ToString::to_string);
        let manifest: Value =
            serde_json::from_slice(&archive.read_blob(&m.digest).unwrap()).unwrap();
        put(format!("manifest {platform}"), &manifest);
        let descriptor = serde_json::json!({ "annotations": m.annotations });
        put(format!("manifest descriptor {platform}"), &descriptor);
    }
    all
}

/// Builds one side into an OCI layout tar and opens it.
#[track_caller]
fn build_oci(t: &str, side: &str, ctx: &TestContext, args: &[&str]) -> Archive {
    let dir = tempfile::Builder::new()
        .prefix("squash-e2e-oci-")
        .tempdir()
        .unwrap();
    let dest = dir.path().join("image.tar");
    let output = format!("type=oci,dest={}", dest.display());
    let mut argv = vec!["--output", output.as_str()];
    argv.extend_from_slice(args);
    let out = run(ctx, &argv);
    if !out.success() {
        panic!("[{t}] the {side} OCI build failed; args {argv:?}\n{out}");
    }
    Archive::open(&dest).unwrap_or_else(|e| panic!("{side}: {e:#}"))
}

fn shown(map: &BTreeMap<String, BTreeMap<String, String>>) -> String {
    map.iter()
        .map(|(place, a)| format!("{place}: {a:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

const ANNOTATED_BODY: &str =
    "FROM squash-test/busybox:latest\nRUN echo one > /one\nRUN echo two > /two && rm /one\n";
const SCRATCH_BODY: &str = "FROM scratch\nCOPY hello.txt /hello.txt\nCOPY data/ /data/\n";
const SCRATCH_FILES: [(&str, &str); 2] = [("hello.txt", "hello\n"), ("data/one.txt", "one\n")];

#[test]
fn annotations_are_on_the_squashed_image() {
    let t = "annotations_are_on_the_squashed_image";
    let store = start(t);
    docker::buildx_offers(BuildxFeature::Annotation)
        .unwrap_or_else(|why| panic!("{why}: every engine generation here has --annotation"));
    let single = [
        "--annotation",
        "manifest:org.example.manifest=on the manifest",
        "--annotation",
        "org.example.default=no prefix is the manifest",
        "--annotation",
        "manifest-descriptor:org.example.descriptor=on its descriptor",
    ];
    // Loaded into the store: the manifest's annotations and the descriptor's
    // as `docker save` gives them back.
    let out = Scenario::new(t, ANNOTATED_BODY).build_args(&single).run();
    describe_outcome(t, &out);
    assert_eq!(out.squashed.image.layers.len(), 1);
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    let manifest_annotations = |img: &Image| {
        img.manifest
            .as_ref()
            .and_then(|m| m.get("annotations"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let (pa, sa) = (
        manifest_annotations(&out.plain.image),
        manifest_annotations(&out.squashed.image),
    );
    println!("[{t}] --load, the saved manifest's annotations: plain {pa}, squashed {sa}");
    assert_eq!(pa, sa, "the loaded images' manifest annotations differ");
    match store {
        Store::Containerd => {
            assert_eq!(pa["org.example.manifest"], "on the manifest");
            assert_eq!(pa["org.example.default"], "no prefix is the manifest");
        }
        Store::Classic => println!(
            "[{t}] the classic store keeps no manifest annotations of a loaded image (plain: {pa}); the same with our line"
        ),
    }
    drop(out);

    if store == Store::Classic {
        let errors = assert_refused_alike(
            t,
            ANNOTATED_BODY,
            &[],
            &[&["--output", "type=oci,dest=/dev/null"][..], &single[..]].concat(),
            OCI_REFUSAL,
        );
        // The wording is the client's: buildx 0.29 puts `failed to build:`
        // before the reason, buildx 0.13 does not.
        let engine = docker::engine_or_panic();
        let first = errors.first().map(String::as_str).unwrap_or("");
        match engine.buildx() {
            Some(v) if v >= NEWER_BUILDX => {
                assert_eq!(first, format!("ERROR: failed to build: {OCI_REFUSAL}"))
            }
            Some(v) if v < Version::new(0, 14, 0) => {
                assert_eq!(first, format!("ERROR: {OCI_REFUSAL}"))
            }
            _ => {}
        }
        println!(
            "[{t}] {}: the classic store refuses the OCI output: {first}",
            engine.label()
        );
        return;
    }
    // An OCI layout, one platform.
    let (plain, squashed) = both_contexts(t, ANNOTATED_BODY, &[]);
    let p = build_oci(t, "plain", &plain, &single);
    let s = build_oci(t, "squashed", &squashed, &single);
    let (pa, sa) = (annotations(&p), annotations(&s));
    println!(
        "[{t}] OCI output, one platform (plain):\n{}",
        indent(&shown(&pa))
    );
    assert_eq!(pa, sa, "the annotations differ with our line");
    let host = format!("manifest {}", Platform::host());
    assert_eq!(pa[&host]["org.example.manifest"], "on the manifest");
    assert_eq!(
        pa[&format!("manifest descriptor {}", Platform::host())]["org.example.descriptor"],
        "on its descriptor"
    );
    let img = s.image().unwrap();
    describe(t, "squashed OCI", &img);
    assert_eq!(img.layers.len(), 1);

    // An OCI layout, two platforms: the index and its descriptor too.
    let multi = [
        "--platform",
        "linux/amd64,linux/arm64",
        "--annotation",
        "index:org.example.index=on the index",
        "--annotation",
        "index-descriptor:org.example.index-descriptor=on the index's descriptor",
        "--annotation",
        "manifest:org.example.manifest=on each manifest",
        "--annotation",
        "manifest[linux/arm64]:org.example.arm=on the arm64 manifest only",
    ];
    let (plain, squashed) = both_contexts(&format!("{t}-multi"), SCRATCH_BODY, &SCRATCH_FILES);
    let p = build_oci(t, "plain", &plain, &multi);
    let s = build_oci(t, "squashed", &squashed, &multi);
    let (pa, sa) = (annotations(&p), annotations(&s));
    println!(
        "[{t}] OCI output, two platforms (plain):\n{}",
        indent(&shown(&pa))
    );
    assert_eq!(pa, sa, "the annotations differ with our line");
    assert_eq!(pa["index"]["org.example.index"], "on the index");
    assert_eq!(
        pa["index.json descriptor"]["org.example.index-descriptor"],
        "on the index's descriptor"
    );
    assert_eq!(
        pa["manifest linux/arm64"]["org.example.arm"],
        "on the arm64 manifest only"
    );
    assert!(!pa["manifest linux/amd64"].contains_key("org.example.arm"));
    for platform in ["linux/amd64", "linux/arm64"] {
        let img = s
            .image_for_platform(&Platform::parse(platform).unwrap())
            .unwrap();
        img.verify().unwrap();
        assert_eq!(img.layers.len(), 1, "{platform}: squashed");
    }
}

// ---------------------------------------------------------------------------
// 4. docker buildx history
// ---------------------------------------------------------------------------

/// `docker buildx history ARGS...`, which must succeed.
#[track_caller]
fn history(args: &[&str]) -> docker::CmdOutput {
    let mut argv = vec!["buildx", "history"];
    argv.extend_from_slice(args);
    let out = docker::docker(&argv);
    assert!(
        out.success(),
        "docker buildx history {args:?} failed: {out}"
    );
    out
}

/// `docker buildx history inspect REF --format json`.
#[track_caller]
fn record(id: &str) -> Value {
    let out = history(&["inspect", id, "--format", "json"]);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The rows of `docker buildx history ls --format json --no-trunc`.
#[track_caller]
fn records() -> Vec<Value> {
    history(&["ls", "--format", "json", "--no-trunc"])
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The build record of the build that wrote this `--metadata-file`.
#[track_caller]
fn record_id(metadata: &std::path::Path) -> String {
    let text = std::fs::read_to_string(metadata)
        .unwrap_or_else(|e| panic!("reading {}: {e}", metadata.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    let reference = v["buildx.build.ref"]
        .as_str()
        .unwrap_or_else(|| panic!("no buildx.build.ref in {text}"));
    reference.rsplit('/').next().unwrap().to_string()
}

/// The fields of a record that describe the build rather than this run of it.
fn described(record: &Value) -> Value {
    let mut v = record.clone();
    if let Some(fields) = v.as_object_mut() {
        for key in [
            "Name",
            "Ref",
            "Context",
            "StartedAt",
            "CompletedAt",
            "Duration",
            "NumCompletedSteps",
            "NumTotalSteps",
            "NumCachedSteps",
            "Materials",
            "Attachments",
            "Error",
        ] {
            fields.remove(key);
        }
    }
    v
}

fn uris(record: &Value) -> Vec<String> {
    record["Materials"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["URI"].as_str().map(str::to_string))
        .collect()
}

fn attachment_kinds(record: &Value) -> Vec<String> {
    let mut kinds: Vec<String> = record["Attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!(
                "{} {}",
                a["Type"].as_str().unwrap_or("?"),
                a["Platform"].as_str().unwrap_or("")
            )
        })
        .collect();
    kinds.sort();
    kinds
}

/// The image config a record holds: attached itself (classic store), or
/// named by the attached image manifest (containerd store).
#[track_caller]
fn recorded_config(id: &str, record: &Value) -> Value {
    let attachments = record["Attachments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let digest_of = |kind: &str| {
        attachments
            .iter()
            .find(|a| a["Type"].as_str().is_some_and(|k| k.contains(kind)))
            .and_then(|a| a["Digest"].as_str())
            .map(str::to_string)
    };
    let read = |digest: &str| -> Value {
        let out = history(&["inspect", "attachment", id, digest]);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("attachment {digest} is not JSON ({e}): {out}"))
    };
    if let Some(config) = digest_of("container.image.v1+json").or(digest_of("image.config.v1+json"))
    {
        return read(&config);
    }
    let manifest = digest_of("image.manifest.v1+json")
        .or(digest_of("distribution.manifest.v2+json"))
        .unwrap_or_else(|| panic!("the record attaches neither a config nor a manifest: {record}"));
    let manifest = read(&manifest);
    read(manifest["config"]["digest"].as_str().unwrap())
}

#[test]
fn history_records_the_squash() {
    let t = "history_records_the_squash";
    start(t);
    let body =
        "FROM squash-test/busybox:latest\nCOPY a.txt /a.txt\nRUN echo recorded > /r && rm /a.txt\n";
    let files = [("a.txt", "a\n")];
    if let Err(why) = docker::buildx_offers(BuildxFeature::History) {
        println!("[{t}] SKIPPED on this engine: {why}");
        // buildx 0.13 prints its usage for an unknown subcommand and exits 0.
        let out = docker::docker(&["buildx", "history", "ls"]);
        assert!(
            !out.stdout.contains("BUILD ID") && out.stdout.contains("Usage:"),
            "buildx without `history` answered `history ls` with a listing: {out}"
        );
        println!(
            "[{t}] `docker buildx history ls` gives buildx's usage ({})",
            out.status
        );
        return;
    }
    let (plain, squashed) = both_contexts(t, body, &files);
    let meta = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    let mut tags = TagGuard(Vec::new());
    let mut outputs = Vec::new();
    for (side, ctx) in [("plain", &plain), ("squashed", &squashed)] {
        let file = meta.path().join(format!("{side}.json"));
        let tag = ctx.tag(side);
        tags.0.push(tag.clone());
        let out = run(
            ctx,
            &[
                "--load",
                "-t",
                &tag,
                "--build-arg",
                "SEEN=in the record",
                "--metadata-file",
                file.to_str().unwrap(),
            ],
        );
        out.assert_success();
        ids.push(record_id(&file));
        outputs.push(out);
    }
    let listed = records();
    let mut recs = Vec::new();
    for (side, id) in ["plain", "squashed"].iter().zip(&ids) {
        let row = listed
            .iter()
            .find(|r| {
                r["ref"]
                    .as_str()
                    .is_some_and(|r| r.ends_with(&format!("/{id}")))
            })
            .unwrap_or_else(|| panic!("{side}: `history ls` does not list {id}"));
        println!("[{t}] {side}: history ls: {row}");
        assert_eq!(row["status"], "Completed", "{side}");
        recs.push(record(id));
    }
    let (p, s) = (&recs[0], &recs[1]);
    println!(
        "[{t}] records: plain {} ({} steps), squashed {} ({} steps)",
        ids[0], p["NumTotalSteps"], ids[1], s["NumTotalSteps"]
    );
    assert_eq!(p["Status"], "completed");
    assert_eq!(
        described(p),
        described(s),
        "the records describe the builds differently"
    );
    assert_eq!(s["BuildArgs"][0]["Value"], "in the record", "{s}");
    // The materials: the plain build's, and our frontend image.
    let (pu, su) = (uris(p), uris(s));
    let ours: Vec<&String> = su
        .iter()
        .filter(|u| u.contains("squash-frontend"))
        .collect();
    let rest: Vec<String> = su
        .iter()
        .filter(|u| !u.contains("squash-frontend"))
        .cloned()
        .collect();
    println!("[{t}] materials: plain {pu:?}; squashed {su:?}");
    assert_eq!(rest, pu, "the squashed record's other materials");
    assert!(
        !ours.is_empty(),
        "our frontend image is not among the materials: {su:?}"
    );
    assert_eq!(
        attachment_kinds(p),
        attachment_kinds(s),
        "the attachments' kinds"
    );
    // The logs show our squash steps, as the build's own output did.
    let logs = history(&["logs", &ids[1]]);
    let logged = format!("{}{}", logs.stdout, logs.stderr);
    let names = |text: &str| {
        squash_steps(text)
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
    };
    let (in_logs, in_build) = (names(&logged), names(&outputs[1].stderr));
    println!("[{t}] squash steps in `history logs`: {in_logs:?}");
    assert!(
        in_logs.iter().any(|n| n.contains(" -> 1")),
        "no `squash: N layers -> 1` step in the record's logs:\n{logged}"
    );
    assert_eq!(
        in_logs, in_build,
        "the record's squash steps are the build's"
    );
    let plain_logs = history(&["logs", &ids[0]]);
    assert!(names(&format!("{}{}", plain_logs.stdout, plain_logs.stderr)).is_empty());
    // The image the record holds is the squashed one.
    let config = recorded_config(&ids[1], s);
    let last = config["history"]
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .unwrap_or(Value::Null);
    println!("[{t}] the recorded image's last history entry: {last}");
    assert!(created_by(&last).starts_with("squash:"), "{config}");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(1)
    );
    let loaded = docker::save(&tags.0[1]);
    assert_eq!(
        config, loaded.config,
        "the recorded config is the loaded image's"
    );

    // A failed build: the same error in both records.
    let failing = "FROM squash-test/busybox:latest\nRUN echo one\nRUN exit 7\n";
    let (fplain, fsquashed) = both_contexts(&format!("{t}-failing"), failing, &[]);
    let mut errors = Vec::new();
    for (side, ctx) in [("plain", &fplain), ("squashed", &fsquashed)] {
        run(ctx, &[]).assert_failure();
        // buildx names a record after the context directory (and a
        // Dockerfile of another name).
        let dir = ctx
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let row = records()
            .into_iter()
            .find(|r| {
                r["name"]
                    .as_str()
                    .is_some_and(|n| n == dir || n.starts_with(&format!("{dir}/")))
            })
            .unwrap_or_else(|| panic!("{side}: no record named after {dir}"));
        let id = row["ref"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let rec = record(&id);
        println!(
            "[{t}] failed {side}: {} {}: {}",
            row["name"], rec["Status"], rec["Error"]["Message"]
        );
        assert_eq!(rec["Status"], "failed", "{side}: {rec}");
        errors.push(rec["Error"].clone());
    }
    for key in ["Code", "Message", "Name"] {
        assert_eq!(
            errors[0][key], errors[1][key],
            "the failed records' Error.{key}"
        );
    }
    assert_eq!(
        errors[0]["Message"],
        "process \"/bin/sh -c exit 7\" did not complete successfully: exit code: 7"
    );
}

// ---------------------------------------------------------------------------
// 5. --build-arg BUILDKIT_SYNTAX=<our image>
// ---------------------------------------------------------------------------

#[test]
fn buildkit_syntax_build_arg_squashes() {
    let t = "buildkit_syntax_build_arg_squashes";
    start(t);
    let body = "FROM squash-test/busybox:latest\nCOPY a.txt /a.txt\nRUN echo by-build-arg > /b && rm /a.txt\nCMD [\"cat\", \"/b\"]\n";
    let files = [("a.txt", "a\n")];
    let syntax = format!("BUILDKIT_SYNTAX={}", frontend_image_from_env());
    let base_layers = docker::save(BUSYBOX).layers.len();
    for (mode, layers) in [("full", 1), ("base", base_layers + 1)] {
        // Neither Dockerfile has a syntax line: the build argument is the one
        // difference.
        let plain = TestContext::new(&format!("{t}-plain"), body);
        let squashed = TestContext::new(&format!("{t}-squashed"), body);
        for (rel, content) in files {
            plain.write(rel, content);
            squashed.write(rel, content);
        }
        let plain = load_built("plain", plain, &[], None);
        let mode_arg = format!("SQUASH_MODE={mode}");
        let squashed = load_built(
            "squashed",
            squashed,
            &["--build-arg", &syntax, "--build-arg", &mode_arg],
            None,
        );
        let out = Outcome::new(plain, squashed);
        describe_outcome(t, &out);
        println!(
            "[{t}] {mode}: squash steps {:?}",
            squash_steps(&out.squashed.build.stderr)
                .iter()
                .map(|s| &s.name)
                .collect::<Vec<_>>()
        );
        assert_eq!(
            out.squashed.image.layers.len(),
            layers,
            "{mode} mode through --build-arg {syntax}"
        );
        assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
        assert_squash_history(t, &out.plain.image, &out.squashed.image, layers - 1);
    }
}

// ---------------------------------------------------------------------------
// 6. docker build, no buildx
// ---------------------------------------------------------------------------

#[test]
fn docker_build_squashes() {
    let t = "docker_build_squashes";
    start(t);
    let body = "FROM squash-test/busybox:latest\nCOPY a.txt /a.txt\nRUN echo by-docker-build > /d && rm /a.txt\n";
    let (plain, squashed) = both_contexts(t, body, &[("a.txt", "a\n")]);
    let mut built = Vec::new();
    for (side, ctx) in [("plain", plain), ("squashed", squashed)] {
        let tag = ctx.tag(side);
        // `docker build` loads the image into the store by itself.
        let run = Buildx::new(ctx.path())
            .docker_build()
            .args(&["-t", &tag])
            .timeout(BUILD_TIMEOUT)
            .run();
        if !run.out.success() {
            docker::rmi(&[&tag]);
            panic!("`docker build` of the {side} side failed: {}", run.out);
        }
        let first = run.out.stderr.lines().next().unwrap_or("").to_string();
        println!(
            "[{t}] {side}: docker build took {:.1}s; first line: {first}",
            run.elapsed.as_secs_f64()
        );
        assert!(
            first.contains("building with") && first.contains("instance using docker driver"),
            "{side}: `docker build` did not go through buildx:\n{}",
            run.out
        );
        let b = Built::load(tag, ctx, run.out).unwrap_or_else(|(tag, e)| {
            docker::rmi(&[&tag]);
            panic!("{side}: {e:#}")
        });
        built.push(b);
    }
    let squashed = built.pop().unwrap();
    let out = Outcome::new(built.pop().unwrap(), squashed);
    describe_outcome(t, &out);
    assert!(!squash_steps(&out.squashed.build.stderr).is_empty());
    assert_eq!(out.plain.image.layers.len(), 3);
    assert_eq!(out.squashed.image.layers.len(), 1);
    assert_same(t, &out.plain, &out.squashed, &CompareOptions::new());
    assert_squash_history(t, &out.plain.image, &out.squashed.image, 0);
}

// ---------------------------------------------------------------------------
// 7. A push to a registry, our frontend image pulled from it
// ---------------------------------------------------------------------------

/// The image manifest a registry serves for `reference` on this host's
/// platform (through an index if it serves one).
#[track_caller]
fn served_manifest(reference: &str) -> Value {
    let top = docker::registry_manifest(reference);
    let Some(list) = top["manifests"].as_array() else {
        return top;
    };
    let host = Platform::host();
    let digest = list
        .iter()
        .find(|d| Platform::from_json(&d["platform"]).is_some_and(|p| p.matches(&host)))
        .and_then(|d| d["digest"].as_str())
        .unwrap_or_else(|| panic!("{reference}: no manifest for {host} in {top}"));
    let repo = reference.rsplit_once(':').map_or(reference, |(r, _)| r);
    docker::registry_manifest(&format!("{repo}@{digest}"))
}

#[test]
fn push_to_a_registry_with_our_frontend_from_it() {
    let t = "push_to_a_registry_with_our_frontend_from_it";
    start(t);
    let registry = fixtures::registry();
    // Our frontend image in the registry, under a name no local image has.
    let frontend_ref = format!(
        "{registry}/squash-frontend:e2e-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    docker::tag(&frontend_image_from_env(), &frontend_ref);
    docker::push(&frontend_ref);
    docker::rmi(&[&frontend_ref]);
    assert!(
        !docker::image_exists(&frontend_ref),
        "a local image still answers to {frontend_ref}"
    );
    let body =
        "FROM squash-test/busybox:latest\nCOPY a.txt /a.txt\nRUN echo pushed > /p && rm /a.txt\n";
    let plain = TestContext::new(&format!("{t}-plain"), body);
    let squashed = TestContext::new(
        &format!("{t}-squashed"),
        &format!("# syntax={frontend_ref}\n{body}"),
    );
    for ctx in [&plain, &squashed] {
        ctx.write("a.txt", "a\n");
    }
    let repository = "squash-e2e/pushed";
    // The tags of unique_tag, in the registry's repository.
    let target = |side: &str| {
        let tag = plain.tag(side).split_once(':').unwrap().1.to_string();
        (format!("{registry}/{repository}:{tag}"), tag)
    };
    let (plain_ref, _) = target("plain");
    let (pushed_ref, pushed_tag) = target("push");
    let (output_ref, _) = target("output");
    let log = DaemonLog::mark_registry();
    let _guard = TagGuard(vec![
        plain_ref.clone(),
        pushed_ref.clone(),
        output_ref.clone(),
    ]);
    let plain_out = run(&plain, &["--push", "-t", &plain_ref]);
    plain_out.assert_success();
    let pushed = run(&squashed, &["--push", "-t", &pushed_ref]);
    pushed.assert_success();
    let output = format!("type=registry,name={output_ref}");
    let other = run(&squashed, &["--output", &output]);
    other.assert_success();
    println!(
        "[{t}] the squashed build with --push:\n{}",
        indent(
            &pushed
                .stderr
                .lines()
                .filter(|l| l.contains("squash") || l.contains("push"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    );
    // BuildKit asked the registry for our frontend image by its tag.
    let (frontend_repo, frontend_tag) = frontend_ref
        .strip_prefix(&format!("{registry}/"))
        .and_then(|r| r.split_once(':'))
        .unwrap();
    let requests = log.registry_requests();
    let asked: Vec<String> = requests
        .iter()
        .filter(|r| r.is_manifest(frontend_repo, frontend_tag))
        .map(ToString::to_string)
        .collect();
    println!(
        "[{t}] the registry answered, for {frontend_ref}:\n{}",
        indent(&asked.join("\n"))
    );
    assert!(
        requests
            .iter()
            .any(|r| r.is_manifest(frontend_repo, frontend_tag)
                && r.status == 200
                && r.agent.starts_with("buildkit")),
        "BuildKit did not resolve {frontend_ref} from the registry; requests:\n{}",
        requests
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        requests
            .iter()
            .any(|r| r.method == "PUT" && r.is_manifest(repository, &pushed_tag)),
        "no manifest PUT for {pushed_ref}"
    );
    assert!(!squash_steps(&pushed.stderr).is_empty(), "{pushed}");
    // What the registry serves: one layer for ours.
    let layers = |reference: &str| {
        served_manifest(reference)["layers"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let (lp, ls, lo) = (layers(&plain_ref), layers(&pushed_ref), layers(&output_ref));
    println!(
        "[{t}] layers the registry serves: plain {lp}, --push {ls}, --output type=registry {lo}"
    );
    assert_eq!(lp, 3);
    assert_eq!((ls, lo), (1, 1));
    // Pulled back: the same image as the plain one, squashed.
    let mut sides = Vec::new();
    for (side, reference, ctx, out) in [
        ("plain", &plain_ref, plain, plain_out),
        ("squashed", &pushed_ref, squashed, pushed.clone()),
    ] {
        docker::rmi(&[reference]);
        assert!(
            !docker::image_exists(reference),
            "{reference} is still local"
        );
        let pulled = docker::pull(reference);
        assert!(pulled.success(), "pulling {reference}: {pulled}");
        let built = Built::load(reference.clone(), ctx, out)
            .unwrap_or_else(|(r, e)| panic!("{side} {r}: {e:#}"));
        sides.push(built);
    }
    let squashed = sides.pop().unwrap();
    let plain = sides.pop().unwrap();
    describe(t, "plain pulled   ", &plain.image);
    describe(t, "squashed pulled", &squashed.image);
    assert_eq!(squashed.image.layers.len(), 1);
    assert_same(t, &plain, &squashed, &CompareOptions::new());
    assert_squash_history(t, &plain.image, &squashed.image, 0);
}
