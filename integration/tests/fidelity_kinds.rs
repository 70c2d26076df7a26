//! Fidelity, kinds of input that once gave another image than the plain build: the times an
//! image says it was made, bases whose history does not describe their layers, BuildKit's
//! directives below ours, names image layers reserve for whiteouts, and hardlinks made to a
//! file of the base in base mode. Each kind is built plain and squashed in every way the store
//! offers ([`variants`]) and compared with the plain image.

mod common;

use common::start;
use integration::check::{assert_keeps_base, assert_same};
use integration::compare::{compare_fs, CompareOptions};
use integration::context::TestContext;
use integration::docker;
use integration::fixtures::{load_edited, BUSYBOX, LAYERS};
use integration::fs::{FsModel, Kind};
use integration::image::{created_by, is_empty_layer, rfc3339_seconds, Image};
use integration::progress::{error_lines, error_messages, squash_lines};
use integration::scenario::{
    frontend_image_from_env, load_built, run_nonce, squash_dockerfile, variants, Built, TagGuard,
};
use integration::show::describe;
use serde_json::Value;

/// Builds `body` plain (as it is) and squashed (with our syntax line on top, or `squashed_body`
/// where given) in every variant the store offers, and hands each pair to `check`.
#[track_caller]
fn each_variant(
    t: &str,
    body: &str,
    squashed_body: Option<&str>,
    args: &[&str],
    check: impl Fn(&str, &Built, &Built),
) {
    let store = start(t);
    let plain = load_built(
        "plain",
        TestContext::new(&format!("{t}-plain"), body),
        args,
        None,
    );
    let _guard = TagGuard(vec![plain.tag.clone()]);
    describe(t, "plain    ", &plain.image);
    let squashed_body = squashed_body.map_or_else(|| squash_dockerfile(body), str::to_string);
    let mut failed = Vec::new();
    for v in variants(store) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut argv = args.to_vec();
            argv.extend_from_slice(v.args);
            let context = TestContext::new(
                &format!("{t}-{}", v.label.replace('/', "-")),
                &squashed_body,
            );
            let squashed = load_built(v.label, context, &argv, None);
            let _g = TagGuard(vec![squashed.tag.clone()]);
            describe(t, &format!("{:<9}", v.label), &squashed.image);
            println!(
                "[{t}] {}: {}",
                v.label,
                squash_lines(&squashed.build.stderr)
            );
            check(v.label, &plain, &squashed);
        }));
        if result.is_err() {
            failed.push(v.label);
        }
    }
    assert!(
        failed.is_empty(),
        "[{t}] variants that failed: {failed:?} (reports above)"
    );
}

/// Seconds since the epoch, now.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs() as i64
}

/// The image's `created`, and the `created` of each history entry from `from` on, in seconds.
#[track_caller]
fn times(image: &Image, from: usize) -> (i64, Vec<i64>) {
    let secs = |v: Option<&Value>, what: &str| {
        let s = v
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{what} has no created"));
        rfc3339_seconds(s).unwrap_or_else(|| panic!("{what}: created {s:?} is not RFC 3339"))
    };
    let history = image.history();
    let entries = history[from..]
        .iter()
        .enumerate()
        .map(|(i, h)| secs(h.get("created"), &format!("history entry {}", from + i)))
        .collect();
    (secs(image.config.get("created"), "the image"), entries)
}

// ---------------------------------------------------------------------------
// Times
// ---------------------------------------------------------------------------

/// A Dockerfile of its own for the test `t` in this run: its steps are built now, not taken from
/// the build cache of another test or run (whose times are those runs').
fn times_dockerfile(t: &str) -> String {
    let fresh = format!("{t} {} {}", std::process::id(), now());
    format!(
        "FROM squash-test/busybox:latest
RUN echo '{fresh}' > /hi && mkdir -p /srv/data /tmp/junk && echo one > /srv/data/one && echo x > /tmp/junk/f
ENV STAGE=two
RUN echo two > /srv/data/two && touch -d @1600000000 /srv/data/one && rm -r /tmp/junk
"
    )
}

/// Without an epoch, the squashed image and every history entry after the base's say the build
/// made them (as the plain build's do), not the base: the image's `created` is the time of its
/// last layer, the same in every variant as in the plain build within the build's own span.
/// Every file's mtime is the plain image's, exactly.
#[test]
fn times_are_the_builds_own() {
    let t = "times_are_the_builds_own";
    let base = docker::save(BUSYBOX);
    let base_fs = FsModel::from_image(&base).expect("the base's files");
    let (base_created, _) = times(&base, base.history().len());
    let started = now();
    each_variant(
        t,
        &times_dockerfile(t),
        None,
        &[],
        |label, plain, squashed| {
            let ended = now();
            let from = base.history().len();
            let (p_created, p_entries) = times(&plain.image, from);
            let (s_created, s_entries) = times(&squashed.image, from);
            println!("[{t}] {label}: created plain {p_created}, squashed {s_created} (base {base_created}, build {started}..{ended}); entries plain {p_entries:?}, squashed {s_entries:?}");
            for (what, at) in std::iter::once(("the image", s_created))
                .chain(s_entries.iter().map(|s| ("an entry", *s)))
            {
                assert!(
                (started - 2..=ended + 2).contains(&at),
                "[{t}] {label}: {what} says {at}, outside the build ({started}..{ended}); the base says {base_created}"
            );
            }
            assert_eq!(
                s_created,
                *s_entries.last().unwrap(),
                "[{t}] {label}: created is the last entry's"
            );
            assert!(p_created >= started - 2, "[{t}] the plain image's own time");
            // Files: mtimes exactly as in the plain image (the touched one included).
            let one = squashed.fs.get("/srv/data/one").expect("/srv/data/one");
            assert_eq!(
                one.mtime.secs, 1_600_000_000,
                "[{t}] {label}: a file's set mtime"
            );
            assert_same_mtimes(t, label, &base_fs, plain, squashed);
        },
    );
}

/// With `SOURCE_DATE_EPOCH`, the image and every entry after the base's are the epoch, in every
/// variant as in the plain build.
#[test]
fn times_with_source_date_epoch() {
    let t = "times_with_source_date_epoch";
    let base = docker::save(BUSYBOX);
    let base_fs = FsModel::from_image(&base).expect("the base's files");
    let epoch = 1_700_000_000;
    let arg = format!("SOURCE_DATE_EPOCH={epoch}");
    each_variant(
        t,
        &times_dockerfile(t),
        None,
        &["--build-arg", &arg],
        |label, plain, squashed| {
            let from = base.history().len();
            let (p_created, p_entries) = times(&plain.image, from);
            let (s_created, s_entries) = times(&squashed.image, from);
            println!("[{t}] {label}: created plain {p_created}, squashed {s_created}; entries plain {p_entries:?}, squashed {s_entries:?}");
            assert_eq!(p_created, epoch, "[{t}] the plain build's");
            assert_eq!(s_created, epoch, "[{t}] {label}: the image");
            assert!(
                s_entries.iter().all(|s| *s == epoch),
                "[{t}] {label}: entries {s_entries:?}"
            );
            assert_same_mtimes(t, label, &base_fs, plain, squashed);
        },
    );
}

/// Times of files and directories, as the README states them: every file's mtime is the plain
/// image's, in every variant. Base mode writes only what changed, and the engine's layer differ
/// leaves out a directory whose only change is its time, as it does for the plain image: every
/// directory's time is the plain image's too, but one. On the containerd store (whose differ
/// does not compare directory times), a directory of the base whose only change is its time
/// keeps the base's time in base mode, where the plain image has the new time because one of
/// its layers holds a whiteout there (`/tmp`, where the build adds `/tmp/junk` and a later step
/// removes it). Full mode writes every directory, with the time the build left it: a directory
/// whose time a step moved without changing what it holds (on the containerd store, `/etc` by
/// BuildKit's mount stubs on a base without `/etc/hosts`) has that later time, at most now; the
/// root has no time at all (BuildKit's layer writer leaves the root out, as in every image it
/// builds from scratch).
#[track_caller]
fn assert_same_mtimes(t: &str, label: &str, base: &FsModel, plain: &Built, squashed: &Built) {
    assert_same(
        &format!("{t}: {label}"),
        plain,
        squashed,
        &CompareOptions::new(),
    );
    let report = compare_fs(&plain.fs, &squashed.fs, &CompareOptions::new().mtimes(true));
    let now = now();
    for d in &report.differences {
        println!(
            "[{t}] {label}: {} {}: plain {}, squashed {}",
            d.path, d.field, d.left, d.right
        );
        let p = plain.fs.get(d.path.as_bytes());
        let s = squashed.fs.get(d.path.as_bytes());
        assert_eq!(
            p.as_ref().map(|e| e.kind),
            Some(Kind::Dir),
            "[{t}] {label}: {} has another mtime than in the plain image: {d}",
            d.path
        );
        let (p, s) = (p.unwrap().mtime.secs, s.expect("in both").mtime.secs);
        if label != "full" {
            let kept = base.get(d.path.as_bytes()).map(|b| b.mtime.secs);
            assert!(
                docker::store() == docker::Store::Containerd
                    && kept == Some(s)
                    && p > s
                    && whiteout_in(&plain.image, &d.path),
                "[{t}] {label}: a directory's time differs, and not as the base's time of a \
                 directory the plain image has a whiteout in (base {kept:?}): {d}"
            );
            continue;
        }
        if d.path == "/" {
            assert_eq!(
                s, 0,
                "[{t}] {label}: the root has no time in a full-mode layer"
            );
        } else {
            assert!(
                p < s && s <= now,
                "[{t}] {label}: {} is later than the plain image's and not in the future: {d}",
                d.path
            );
        }
    }
}

/// Whether a layer of `image` holds a whiteout directly in the directory `dir` (`/tmp`).
fn whiteout_in(image: &Image, dir: &str) -> bool {
    let prefix = format!("{}/.wh.", dir.trim_start_matches('/'));
    image.layers.iter().any(|l| {
        l.entries()
            .expect("a layer's entries")
            .iter()
            .any(|(name, _)| name.trim_start_matches("./").starts_with(&prefix))
    })
}

// ---------------------------------------------------------------------------
// Bases whose history does not describe their layers
// ---------------------------------------------------------------------------

/// Two RUN steps (two layers) on a base of four layers.
/// (The first step writes [`run_nonce`], so that each run of the tests builds and squashes
/// anew rather than finding the whole result in an earlier run's build cache.)
fn on_base(base: &str) -> String {
    format!(
        "FROM {base}\nRUN echo a > /a && echo {} > /run-id\nRUN echo b > /b && rm /base/dir/one\n",
        run_nonce().trim()
    )
}

/// How many history entries of `image` describe a layer.
fn layer_entries(image: &Image) -> usize {
    image
        .history()
        .iter()
        .filter(|h| !is_empty_layer(h))
        .count()
}

/// A base of [`LAYERS`]' four layers whose history `edit` rewrites; the squashed image counts
/// the base's layers from its diff IDs, says so in its progress line, keeps them in base mode,
/// and has one history entry per layer.
#[track_caller]
fn odd_history(t: &str, edit: impl FnOnce(&mut Vec<Value>)) {
    let source = docker::save(LAYERS);
    let tag = format!("squash-test/{}:edited", t.replace('_', "-"));
    let loaded = load_edited(&tag, &source, |config| {
        let mut history: Vec<Value> = config["history"].as_array().cloned().unwrap_or_default();
        edit(&mut history);
        if history.is_empty() {
            config.as_object_mut().unwrap().remove("history");
        } else {
            config["history"] = Value::Array(history);
        }
    });
    if let Err(refused) = loaded {
        // Only the classic store's `docker load` is known to refuse such a config; the
        // containerd store must take it.
        assert_eq!(
            docker::store(),
            docker::Store::Classic,
            "[{t}] the containerd store refused the base: {refused}"
        );
        assert!(
            refused
                .stderr
                .contains("too many non-empty layers in History section"),
            "[{t}] {refused}"
        );
        println!(
            "[{t}] SKIPPED on this engine's classic store: its `docker load` refuses the base itself ({}), so no build here can start from it",
            refused.stderr.trim()
        );
        return;
    }
    let _base_tag = TagGuard(vec![tag.clone()]);
    let base = docker::save(&tag);
    println!(
        "[{t}] base: {} layers, {} history entries describing a layer",
        base.layers.len(),
        layer_entries(&base)
    );
    each_variant(t, &on_base(&tag), None, &[], |label, plain, squashed| {
        // The layer count as the squash said it, in the history entry of its layer (the
        // progress shows it too, but Docker 26.1's containerd store once printed no step of a
        // build at all).
        let said = |summary: &str| {
            squashed
                .image
                .history()
                .iter()
                .any(|h| created_by(h).starts_with(&format!("squash: {summary} (by ")))
        };
        let lines = squash_lines(&squashed.build.stderr);
        if label == "full" {
            assert_eq!(squashed.image.layers.len(), 1, "[{t}] {label}");
            assert!(
                said("6 layers -> 1"),
                "[{t}] {label}: {:?}\n{lines}",
                squashed.image.history()
            );
        } else {
            assert_keeps_base(t, &base, &squashed.image);
            assert_eq!(
                squashed.image.layers.len(),
                5,
                "[{t}] {label}: 4 base layers + 1"
            );
            assert!(
                said("6 layers -> 4 base + 1"),
                "[{t}] {label}: {:?}\n{lines}",
                squashed.image.history()
            );
        }
        assert_eq!(
            layer_entries(&squashed.image),
            squashed.image.layers.len(),
            "[{t}] {label}: one history entry per layer: {:?}",
            squashed.image.history()
        );
        assert_same(
            &format!("{t}: {label}"),
            plain,
            squashed,
            &CompareOptions::new(),
        );
    });
}

#[test]
fn base_without_history() {
    odd_history("base_without_history", Vec::clear);
}

#[test]
fn base_with_fewer_history_entries_than_layers() {
    odd_history("base_with_fewer_history_entries_than_layers", |h| {
        // Keep the first layer's entry and every empty one.
        let mut seen = 0;
        h.retain(|e| {
            is_empty_layer(e) || {
                seen += 1;
                seen == 1
            }
        });
    });
}

#[test]
fn base_with_more_history_entries_than_layers() {
    odd_history("base_with_more_history_entries_than_layers", |h| {
        for e in h.iter_mut() {
            e.as_object_mut().unwrap().remove("empty_layer");
        }
        h.push(serde_json::json!({"created_by": "an entry with no layer, wrongly flagged"}));
    });
}

// ---------------------------------------------------------------------------
// Directive order
// ---------------------------------------------------------------------------

/// `# escape=` below our directive: the plain build is the Dockerfile with BuildKit's directive
/// alone; ours must give the same config and files, and still apply our setting.
#[test]
fn escape_below_our_directive() {
    let t = "escape_below_our_directive";
    let rest = "FROM squash-test/busybox:latest\nENV WINPATH=C:\\tools\\bin\nRUN echo one `\n    two > /joined\n";
    let plain = format!("# escape=`\n{rest}");
    let frontend = frontend_image_from_env();
    for ours in [
        format!("# syntax={frontend}\n# squash=base\n# escape=`\n{rest}"),
        format!("# syntax={frontend}\n# squash=base\n# squash-method=auto\n# escape=`\n{rest}"),
        format!("# syntax={frontend}\n# escape=`\n# squash=base\n{rest}"),
    ] {
        let store = start(t);
        let p = load_built(
            "plain",
            TestContext::new(&format!("{t}-plain"), &plain),
            &[],
            None,
        );
        let s = load_built(
            "squashed",
            TestContext::new(&format!("{t}-squashed"), &ours),
            &[],
            None,
        );
        let _g = TagGuard(vec![p.tag.clone(), s.tag.clone()]);
        println!("[{t}] {store:?}: Dockerfile:\n{ours}");
        let env = |b: &Built| b.image.config["config"]["Env"].clone();
        assert!(
            env(&p).to_string().contains("WINPATH=C:\\\\tools\\\\bin"),
            "{}",
            env(&p)
        );
        assert_same(t, &p, &s, &CompareOptions::new());
        let base = docker::save(BUSYBOX);
        assert_keeps_base(t, &base, &s.image);
        assert_eq!(
            s.image.layers.len(),
            base.layers.len() + 1,
            "[{t}] base mode applied"
        );
    }
}

/// `# check=error=true` below our directive, on a Dockerfile a lint check flags: the squashed
/// build does what the plain one does (fails with the same error where the engine's Dockerfile
/// frontend has checks, builds where it has none).
#[test]
fn check_below_our_directive() {
    let t = "check_below_our_directive";
    let rest = "FROM squash-test/busybox:latest as base\nRUN echo hi > /hi\n";
    let frontend = frontend_image_from_env();
    let plain = format!("# check=error=true\n{rest}");
    let ours = format!("# syntax={frontend}\n# squash=base\n# check=error=true\n{rest}");
    let _ = start(t);
    let build = |side: &str, df: &str| {
        let ctx = TestContext::new(&format!("{t}-{side}"), df);
        let tag = ctx.tag(side);
        let out = ctx.build(&["--load", "-t", &tag]);
        docker::rmi(&[&tag]);
        out
    };
    let (p, s) = (build("plain", &plain), build("squashed", &ours));
    println!("[{t}] plain: {}, squashed: {}", p.status, s.status);
    assert_eq!(
        p.success(),
        s.success(),
        "[{t}] plain:\n{p}\nsquashed:\n{s}"
    );
    if !p.success() {
        assert_eq!(
            error_messages(&p.stderr),
            error_messages(&s.stderr),
            "[{t}] the same error"
        );
    }
}

// ---------------------------------------------------------------------------
// Names image layers reserve
// ---------------------------------------------------------------------------

/// A regular file named `.wh.a` beside a base file `a`, and a `.wh..wh..opq` in a new directory:
/// the plain image hides `a` (its layer's `.wh.a` reads as a whiteout); no squashed image may
/// show it: every variant stops, the error saying why and the step's output (which buildx prints
/// with it) naming the path.
#[test]
fn reserved_names_stop_the_squash() {
    let t = "reserved_names_stop_the_squash";
    let store = start(t);
    let base_ctx = TestContext::new(
        &format!("{t}-base"),
        "FROM squash-test/busybox:latest\nRUN mkdir -p /opt/keep && echo kept > /opt/keep/a\n",
    );
    let base_tag = base_ctx.tag("base");
    base_ctx
        .build(&["--load", "-t", &base_tag])
        .assert_success();
    let _base = TagGuard(vec![base_tag.clone()]);
    for (made, path) in [
        ("touch /opt/keep/.wh.a", "/opt/keep/.wh.a"),
        (
            "mkdir -p /opt/new && touch /opt/new/.wh..wh..opq",
            "/opt/new/.wh..wh..opq",
        ),
    ] {
        let body = format!("FROM {base_tag}\nRUN {made}\n");
        let plain = load_built(
            "plain",
            TestContext::new(&format!("{t}-plain"), &body),
            &[],
            None,
        );
        let _g = TagGuard(vec![plain.tag.clone()]);
        if path.ends_with(".wh.a") {
            assert!(
                !plain.fs.contains("/opt/keep/a"),
                "[{t}] the plain image hides /opt/keep/a"
            );
        }
        assert!(!plain.fs.contains(path), "[{t}] no store shows {path}");
        for v in variants(store) {
            let ctx = TestContext::new(
                &format!("{t}-{}", v.label.replace('/', "-")),
                &squash_dockerfile(&body),
            );
            let tag = ctx.tag("squashed");
            let mut args = vec!["--load", "-t", tag.as_str()];
            args.extend_from_slice(v.args);
            let out = ctx.build(&args);
            docker::rmi(&[&tag]);
            out.assert_failure();
            let errors = error_lines(&out.stderr);
            println!("[{t}] {}: {errors:?}", v.label);
            // The error is our step's (said by us where our solve fails, by BuildKit where the
            // export runs it): its exit code means a file no layer can hold.
            assert!(
                errors.iter().any(|l| l.contains("squash-frontend")
                    && (l.contains("no image layer can hold") || l.ends_with("exit code: 3"))),
                "[{t}] {}: the error is our step's: {errors:?}",
                v.label
            );
            // The step's output, which buildx shows with the error, names the path.
            let named = format!("squash-frontend: the build made {path}");
            assert!(
                out.stderr
                    .lines()
                    .any(|l| l.contains(&named) && l.contains("reserve")),
                "[{t}] {}: the step's output names {path}:\n{}",
                v.label,
                out.stderr
            );
            assert!(!docker::image_exists(&tag), "[{t}] no image is left");
        }
        // With squash-min-saving unmet, the image would be returned as built: the step still
        // stops, and says nothing of returning it.
        let ctx = TestContext::new(&format!("{t}-min-saving"), &squash_dockerfile(&body));
        let tag = ctx.tag("squashed");
        let out = ctx.build(&["--load", "-t", &tag, "--build-arg", "SQUASH_MIN_SAVING=99%"]);
        docker::rmi(&[&tag]);
        out.assert_failure();
        let named = format!("squash-frontend: the build made {path}");
        assert!(
            out.stderr.lines().any(|l| l.contains(&named)),
            "[{t}] min-saving: the step's output names {path}:\n{}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("returned as built"),
            "[{t}] min-saving: no word of returning the image as built:\n{}",
            out.stderr
        );
        assert!(
            !docker::image_exists(&tag),
            "[{t}] min-saving: no image is left"
        );
        // Without the report, base mode: on the containerd store the frontend reads every name
        // above the base (no step of ours runs), on the classic store our sync does; either
        // stops, naming the path.
        let ctx = TestContext::new(&format!("{t}-unreported"), &squash_dockerfile(&body));
        let tag = ctx.tag("squashed");
        let out = ctx.build(&[
            "--load",
            "-t",
            &tag,
            "--build-arg",
            "SQUASH_MODE=base",
            "--build-arg",
            "SQUASH_REPORT=off",
        ]);
        docker::rmi(&[&tag]);
        out.assert_failure();
        assert!(
            out.stderr.lines().any(|l| l.contains(&named)
                && (l.contains("no image layer can hold") || l.contains("reserve"))),
            "[{t}] without the report: the error names {path}:\n{}",
            out.stderr
        );
        assert!(
            !docker::image_exists(&tag),
            "[{t}] without the report: no image is left"
        );
    }
}

// ---------------------------------------------------------------------------
// Hardlinks to a base file
// ---------------------------------------------------------------------------

/// The base has the pair `state` + `state.hl`; the build links `state.hl3` to `state` (inside
/// the RUN: one inode for state and state.hl3, another for state.hl). Every variant, base mode
/// with either method included, has the build's groups, as recorded by the build itself.
#[test]
fn hardlinks_to_a_base_file_keep_the_builds_groups() {
    let t = "hardlinks_to_a_base_file_keep_the_builds_groups";
    let _ = start(t);
    let base_ctx = TestContext::new(
        &format!("{t}-base"),
        "FROM squash-test/busybox:latest\nRUN mkdir -p /var/lib/app && echo s > /var/lib/app/state && ln /var/lib/app/state /var/lib/app/state.hl\n",
    );
    let base_tag = base_ctx.tag("base");
    base_ctx
        .build(&["--load", "-t", &base_tag])
        .assert_success();
    let _base = TagGuard(vec![base_tag.clone()]);
    let body = format!(
        "FROM {base_tag}\nRUN ln /var/lib/app/state /var/lib/app/state.hl3\nRUN stat -c '%i %n' /var/lib/app/state /var/lib/app/state.hl /var/lib/app/state.hl3 > /links-at-build\n"
    );
    each_variant(t, &body, None, &[], |label, plain, squashed| {
        let recorded = docker::run_ok(
            &["--network", "none"],
            &plain.tag,
            &["cat", "/links-at-build"],
        );
        let inode = |name: &str| {
            recorded
                .lines()
                .find(|l| l.ends_with(&format!(" {name}")))
                .and_then(|l| l.split(' ').next())
                .unwrap_or_else(|| panic!("{name} in {recorded}"))
                .to_string()
        };
        let (s, hl, hl3) = (
            inode("/var/lib/app/state"),
            inode("/var/lib/app/state.hl"),
            inode("/var/lib/app/state.hl3"),
        );
        println!("[{t}] at build time: state {s}, state.hl {hl}, state.hl3 {hl3}");
        assert!(s == hl3 && s != hl, "[{t}] the build's groups: {recorded}");
        let group = |p: &str| {
            let mut g: Vec<String> = squashed
                .fs
                .get(p)
                .unwrap_or_else(|| panic!("{p} missing"))
                .hardlinks
                .iter()
                .map(ToString::to_string)
                .collect();
            g.sort();
            g
        };
        assert_eq!(
            group("/var/lib/app/state"),
            ["/var/lib/app/state", "/var/lib/app/state.hl3"],
            "[{t}] {label}: state is linked to state.hl3 alone"
        );
        assert!(
            group("/var/lib/app/state.hl").len() < 2,
            "[{t}] {label}: state.hl stands alone"
        );
        assert_same(
            &format!("{t}: {label}"),
            plain,
            squashed,
            &CompareOptions::new().ignore_field("hardlinks"),
        );
    });
}
