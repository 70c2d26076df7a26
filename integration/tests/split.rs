//! The split squash (`SQUASH_SPLIT`): the image in two layers above what it keeps, the lower
//! one (a stage's end, or a list of paths) left byte-identical by an app-only change, its
//! squash steps taken from the cache; files and config the plain build's; deletions across
//! the boundary are whiteouts in the upper layer; a stage that is not there is refused with
//! the stages that are.

mod common;

use common::start;
use integration::check::assert_same;
use integration::compare::{compare_fs, CompareOptions};
use integration::context::TestContext;
use integration::docker::Store;
use integration::fixtures::BUSYBOX;
use integration::fs::Kind;
use integration::image::{created_by, is_empty_layer, Image};
use integration::progress::{error_lines, show_steps, squash_reports, squash_steps};
use integration::scenario::{load_built, run_nonce, squash_dockerfile, variants, Built, TagGuard};

/// A dependency stage (a library, a config file and a data file, written once) and an app
/// stage on top of it, which copies the app, deletes one of the dependency stage's files (a
/// deletion across the boundary) and appends to the data file (which both layers of a split at
/// the stage then hold, and the report counts twice; it is outside the paths of the split by
/// paths, whose cached lower layer would hold it with an earlier time, see the README). The
/// dependency step copies `run-id` ([`run_nonce`]), so that the first build of a test run makes
/// every layer anew and the second can only find the lower one in this run's cache.
const BODY: &str = r#"FROM squash-test/busybox:latest AS deps
COPY run-id /opt/deps/run-id
RUN head -c 300000 /dev/urandom > /opt/deps/lib.so && echo old > /opt/deps/old.conf && mkdir -p /etc/deps /srv && echo on > /etc/deps/enabled && head -c 200000 /dev/urandom > /srv/data

FROM deps
COPY app.txt /app/app.txt
RUN rm /opt/deps/old.conf && echo built > /app/built && echo patched >> /srv/data
ENV APP=1
CMD ["cat", "/app/app.txt"]
"#;

/// One split to try: the build argument's value, and the two layers' history entries.
struct SplitCase {
    value: &'static str,
    lower: &'static str,
    upper: &'static str,
    /// Whether the upper layer holds the whiteout of `/opt/deps/old.conf` (made below the
    /// boundary, deleted above it).
    whiteout_above: bool,
    /// What the history entry right before the lower layer's says: the split stage's last
    /// step (the later steps' entries follow it), or the last entry of the Dockerfile.
    follows: &'static str,
}

const CASES: [SplitCase; 2] = [
    SplitCase {
        value: "deps",
        lower: "stage deps -> 1 layer",
        upper: "the steps after stage deps -> 1 layer",
        whiteout_above: true,
        follows: "head -c 300000 /dev/urandom > /opt/deps/lib.so",
    },
    SplitCase {
        // `/nope` is not in the image: it adds nothing, and the step says so.
        value: "/opt,/etc,/nope",
        lower: "/opt, /etc, /nope -> 1 layer",
        upper: "all but /opt, /etc, /nope -> 1 layer",
        whiteout_above: false,
        follows: "CMD",
    },
];

/// A context of `dockerfile` with the app file `app` and [`run_nonce`]'s `run-id`, both with
/// one fixed time: the steps after a split stage run on the lower layer, so the squashed build
/// copies its own context's files (not the plain build's, from the cache), and a plain build
/// of the same context gives the same times.
fn context(name: &str, dockerfile: &str, app: &str) -> TestContext {
    let ctx = TestContext::new(name, dockerfile);
    ctx.write("run-id", run_nonce())
        .write("app.txt", app)
        .set_mtime("run-id", 1_700_000_000)
        .set_mtime("app.txt", 1_700_000_000);
    ctx
}

/// The `created_by` of `image`'s history entries of non-empty layers.
fn layer_entries(image: &Image) -> Vec<String> {
    image
        .history()
        .iter()
        .filter(|h| !is_empty_layer(h))
        .map(|h| created_by(h).to_string())
        .collect()
}

/// Builds the squashed image with `args` and the app file `app`, loads it and checks it
/// against `plain` and the case: its layers (`kept` of the base, then two, with their history
/// entries), where the deletion across the boundary went, its times, and what its report says
/// of the two layers.
#[track_caller]
fn squashed(
    t: &str,
    side: &str,
    args: &[&str],
    app: &str,
    case: &SplitCase,
    kept: usize,
    plain: &Built,
) -> Built {
    let ctx = context(&format!("{t}-{side}"), &squash_dockerfile(BODY), app);
    let built = load_built(side, ctx, args, None);
    let image = &built.image;
    println!(
        "[{t}] {side}: {} layers, diff IDs {:?}\n{}",
        image.layers.len(),
        image.diff_ids(),
        show_steps(&squash_steps(&built.build.stderr))
    );
    assert_eq!(
        image.layers.len(),
        kept + 2,
        "[{t}] {side}: the base's {kept} layers, then two"
    );
    assert_eq!(
        image.diff_ids()[..kept],
        plain.image.diff_ids()[..kept],
        "[{t}] {side}: the base's layers as they were"
    );
    // The report counts both layers. (A build whose squash steps all come from the cache,
    // as a split by paths in base mode does after the same split by the other method, which
    // is the same graph, prints none.)
    let reports = squash_reports(&built.build.stderr);
    let layers = format!("layers {} -> {}", plain.image.layers.len(), kept + 2);
    if squash_steps(&built.build.stderr).iter().all(|s| s.reused()) {
        assert!(reports.is_empty(), "[{t}] {side}: cached, {reports:?}");
    } else {
        assert!(
            reports.len() == 1 && reports[0].title.ends_with(&layers),
            "[{t}] {side}: one report, saying {layers}: {reports:?}"
        );
        // Its squashed bytes are the two layers' (as tars, less the framing each repeats:
        // the end marker and the directories above the entries).
        let layers: u64 = image.layers[kept..]
            .iter()
            .map(|l| l.uncompressed_size)
            .sum();
        let said = reports[0].squashed_bytes;
        assert!(
            said.abs_diff(layers) <= layers / 100 + 2 * 4096,
            "[{t}] {side}: the report's squashed bytes ({said}) are the two layers' ({layers})"
        );
        // The deps' files the app's step deletes or appends to (old.conf, data) are still in
        // the lower layer of a split at the stage, and the report says so apart.
        let below = reports[0].lines.iter().any(|l| {
            l.contains("2 files (200.0 kB) were added up to the split and removed or replaced after it: the lower layer still holds them")
        });
        assert_eq!(
            below,
            !case.value.starts_with('/'),
            "[{t}] {side}: {:#?}",
            reports[0].lines
        );
    }
    let entries = layer_entries(image);
    let top: Vec<&str> = entries[entries.len() - 2..]
        .iter()
        .map(String::as_str)
        .collect();
    assert!(
        top[0].contains(case.lower) && top[1].contains(case.upper),
        "[{t}] {side}: one history entry per layer saying what it holds: {top:?}"
    );
    let history = image.history();
    let history: Vec<&str> = history.iter().map(created_by).collect();
    let lower_at = history
        .iter()
        .position(|h| h.contains(case.lower) && !h.contains(case.upper));
    assert!(
        lower_at.is_some_and(|i| i > 0 && history[i - 1].contains(case.follows)),
        "[{t}] {side}: the lower layer's entry right after the one saying {:?}: {history:#?}",
        case.follows
    );
    let upper = image.layers.last().unwrap().entries().unwrap();
    let whiteout = upper
        .iter()
        .any(|(p, _)| p.trim_start_matches("./") == "opt/deps/.wh.old.conf");
    assert_eq!(
        whiteout, case.whiteout_above,
        "[{t}] {side}: the whiteout of /opt/deps/old.conf in the upper layer: {upper:?}"
    );
    assert_same(
        &format!("{t}: {side}"),
        plain,
        &built,
        &CompareOptions::new(),
    );
    // Times as in the plain image, with the full mode's one exception (README, "Times"), which
    // a split by paths shares (its lower layer is made from the finished tree at once): a
    // directory has the time the build left it, and the root none. (In a split by paths, the
    // lower layer is the one an earlier build made of the same content, BuildKit's content
    // keys leaving times out; an entry there whose time alone moved is in the upper layer
    // again, with the new time.) In a split at a stage, the steps after the stage run on the
    // lower layer, in this build, not taken from the plain build's cache: what they wrote (the
    // upper layer's entries) has this build's times.
    let written_above: std::collections::HashSet<&str> = upper
        .iter()
        .map(|(p, _)| p.trim_start_matches("./").trim_end_matches('/'))
        .collect();
    let mtimes = compare_fs(&plain.fs, &built.fs, &CompareOptions::new().mtimes(true));
    for d in &mtimes.differences {
        let dir = plain.fs.get(d.path.as_bytes()).map(|e| e.kind) == Some(Kind::Dir);
        let paths = case.value.starts_with('/');
        let above = !paths && written_above.contains(d.path.trim_start_matches('/'));
        assert!(
            above || ((kept == 0 || paths) && dir),
            "[{t}] {side}: {} has another mtime than in the plain image: {d}",
            d.path
        );
    }
    built
}

/// Every split, in every mode and method the store has: the first build against the plain
/// one; then an app-only change, after which the lower layer's diff ID is the same and its
/// squash steps are cached, while the upper one holds the new app.
#[test]
fn split_keeps_the_lower_layer_across_an_app_change() {
    let t = "split_keeps_the_lower_layer_across_an_app_change";
    let store = start(t);
    let plain = load_built(
        "plain",
        context(&format!("{t}-plain"), BODY, "v1\n"),
        &[],
        None,
    );
    let plain2 = load_built(
        "plain2",
        context(&format!("{t}-plain2"), BODY, "v2\n"),
        &[],
        None,
    );
    let _guard = TagGuard(vec![plain.tag.clone(), plain2.tag.clone()]);
    let base_layers = integration::docker::save(BUSYBOX).layers.len();
    let mut said_absent = false;
    for case in &CASES {
        for v in variants(store) {
            let label = format!("{} split {}", v.label, case.value);
            let split = format!("SQUASH_SPLIT={}", case.value);
            let mut args = vec!["--build-arg", split.as_str()];
            args.extend_from_slice(v.args);
            let kept = if v.method.is_some() { base_layers } else { 0 };
            let side = |n: u32| {
                format!(
                    "{}-{}-{n}",
                    v.label,
                    if case.value.starts_with('/') {
                        "paths"
                    } else {
                        "stage"
                    }
                )
                .replace('/', "-")
            };
            let first = squashed(t, &side(1), &args, "v1\n", case, kept, &plain);
            let _g1 = TagGuard(vec![first.tag.clone()]);
            // A listed path the image does not have is named as absent, never as something
            // else (the step that says so may come from the cache of another variant's).
            said_absent |= first.build.stderr.contains(
                "squash-frontend sync /nope: not in the result, nothing to put in this layer",
            );
            assert!(
                !first.build.stderr.contains("sync /nope: not a directory"),
                "[{t}] {label}: /nope is absent, not something else:\n{}",
                first.build.stderr
            );
            let second = squashed(t, &side(2), &args, "v2\n", case, kept, &plain2);
            let _g2 = TagGuard(vec![second.tag.clone()]);
            let (ids1, ids2) = (first.image.diff_ids(), second.image.diff_ids());
            assert_eq!(
                ids1[kept], ids2[kept],
                "[{t}] {label}: the lower layer is byte-identical after an app-only change"
            );
            assert_ne!(
                ids1[kept + 1],
                ids2[kept + 1],
                "[{t}] {label}: the upper layer holds the new app"
            );
            // The lower layer's own steps: named after it, the copy of its paths (a split by
            // paths) and the report's reading of its steps (a split at a stage), which the
            // report of the upper layer goes on from.
            let steps = squash_steps(&second.build.stderr);
            let lower: Vec<_> = steps
                .iter()
                .filter(|s| {
                    s.name.starts_with(&format!("squash: {}", case.lower))
                        || s.name.starts_with("squash: copy ")
                        || s.name.starts_with("squash: report on ")
                })
                .collect();
            let resumed = lower
                .iter()
                .any(|s| s.name.starts_with("squash: report on "));
            assert_eq!(
                resumed,
                !case.value.starts_with('/'),
                "[{t}] {label}: a split at a stage reports on the stage's steps in a step of its own:\n{}",
                show_steps(&steps)
            );
            assert!(
                !lower.is_empty() && lower.iter().all(|s| s.cached),
                "[{t}] {label}: the lower layer's squash steps are cached:\n{}",
                show_steps(&steps)
            );
            // With DiffOp (the containerd store, but for the sync method), a split at a stage
            // reads only what the later steps changed: the engine's diff of each, mounted in
            // our step, whose sync says how much it left alone unread.
            let by_diff = store == Store::Containerd && v.label != "base/sync";
            let looked = second
                .build
                .stderr
                .contains("outside the changed paths left alone");
            assert_eq!(
                looked,
                by_diff && !case.value.starts_with('/'),
                "[{t}] {label}: the sync reads only the changed paths where the engine diffs:\n{}",
                second.build.stderr
            );
        }
    }
    assert!(
        said_absent,
        "[{t}] no split by paths said that /nope is not in the result"
    );
}

/// Two later steps that change what the stage made in every way a layer records: a tree and a
/// file deleted across the boundary, a directory deleted and made again (opaque), a mode and
/// a time changed alone, a symlink pointed elsewhere, a file made a directory, a file written
/// again with its old size and time, a new hardlink to a file of the stage, one of the stage's
/// two hardlinked names replaced by a third; then a file the first of them touched, deleted by
/// the second.
const KINDS: &str = r#"FROM squash-test/busybox:latest AS deps
COPY run-id /opt/deps/run-id
RUN mkdir -p /opt/deps/tree/sub /opt/deps/swap /srv/cfg && echo a > /opt/deps/tree/a && echo b > /opt/deps/tree/sub/b && echo s > /opt/deps/swap/s && echo m > /opt/deps/mode && ln -s a /opt/deps/link && echo keep > /srv/cfg/keep && echo f > /opt/deps/to-dir && echo gone > /srv/gone && printf AAAA > /opt/deps/same && touch -d @1000000000 /opt/deps/same && echo h > /opt/deps/hl-src && echo p > /opt/deps/pair1 && ln /opt/deps/pair1 /opt/deps/pair2

FROM deps
COPY app.txt /app/app.txt
RUN rm -r /opt/deps/tree /srv/gone && rm -rf /opt/deps/swap && mkdir /opt/deps/swap && echo new > /opt/deps/swap/new && chmod 600 /opt/deps/mode && ln -sf b /opt/deps/link && rm /opt/deps/to-dir && mkdir /opt/deps/to-dir && echo in > /opt/deps/to-dir/in && touch -d @1000000000 /srv/cfg/keep && printf BBBB > /opt/deps/same && touch -d @1000000000 /opt/deps/same && ln /opt/deps/hl-src /opt/deps/hl-new && rm /opt/deps/pair2 && ln /opt/deps/pair1 /opt/deps/pair3
RUN rm /srv/cfg/keep && echo later > /srv/cfg/later
"#;

/// The hardlink groups [`KINDS`]'s build makes across the boundary (each in path order).
const LINKS_AT_BUILD: [[&str; 2]; 2] = [
    ["/opt/deps/hl-new", "/opt/deps/hl-src"],
    ["/opt/deps/pair1", "/opt/deps/pair3"],
];

/// A split at a stage whose later steps change the stage's files in every way: the image's
/// files and config are the plain build's, in every way the store squashes; and where the
/// engine diffs (our step then reads only what the later steps changed), the report says what
/// the sync method's, which reads every filesystem whole, says.
#[test]
fn split_at_a_stage_honours_every_kind_of_later_change() {
    let t = "split_at_a_stage_honours_every_kind_of_later_change";
    let store = start(t);
    let ctx = |side: &str, body: &str| context(&format!("{t}-{side}"), body, "app\n");
    let plain = load_built("plain", ctx("plain", KINDS), &[], None);
    let _guard = TagGuard(vec![plain.tag.clone()]);
    let mut reports = Vec::new();
    for v in variants(store) {
        let mut args = vec!["--build-arg", "SQUASH_SPLIT=deps"];
        args.extend_from_slice(v.args);
        let side = v.label.replace('/', "-");
        let built = load_built(&side, ctx(&side, &squash_dockerfile(KINDS)), &args, None);
        let _g = TagGuard(vec![built.tag.clone()]);
        let kept = built.image.layers.len() - 2;
        assert_eq!(
            built.image.diff_ids()[..kept],
            plain.image.diff_ids()[..kept],
            "[{t}] {}: the base's layers, then two",
            v.label
        );
        // Where our sync compares whole trees it tells files by their metadata: a file written
        // again with its old size and time keeps its old content there (README, "The same
        // image"); where the engine diffs, the diff names it and its bytes are compared.
        let by_diff = store == Store::Containerd && v.label != "base/sync";
        let opts = if by_diff {
            CompareOptions::new()
        } else {
            CompareOptions::new().ignore_path("/opt/deps/same")
        };
        // Hardlinks made across the boundary: the plain image's groups are the layer differ's
        // doing (a new link to a file of an earlier layer is written as a file of its own), so
        // the squashed image is held to the groups the build made, as in the fidelity suite;
        // every other path's hardlinks are the plain image's.
        for (path, at_build) in LINKS_AT_BUILD
            .iter()
            .flat_map(|g| g.iter().map(move |p| (p, g)))
        {
            let group = |b: &Built| {
                let e =
                    b.fs.get(path)
                        .unwrap_or_else(|| panic!("[{t}] {path} is missing"));
                e.hardlinks
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            };
            println!(
                "[{t}] {}: {path}: plain {:?}, squashed {:?}",
                v.label,
                group(&plain),
                group(&built)
            );
            assert_eq!(
                group(&built),
                at_build,
                "[{t}] {}: {path}: the build's links",
                v.label
            );
        }
        let opts = LINKS_AT_BUILD
            .iter()
            .flatten()
            .fold(opts, |o, path| o.ignore_field_at(path, "hardlinks"));
        assert_same(&format!("{t}: {}", v.label), &plain, &built, &opts);
        let report = squash_reports(&built.build.stderr);
        assert_eq!(report.len(), 1, "[{t}] {}: one report", v.label);
        reports.push((
            v.label,
            built.build.stderr.contains("outside the changed paths"),
            report[0].clone(),
        ));
    }
    if store == Store::Containerd {
        let by_diff = reports.iter().find(|(l, _, _)| *l == "base/auto").unwrap();
        let by_sync = reports.iter().find(|(l, _, _)| *l == "base/sync").unwrap();
        assert!(
            by_diff.1 && !by_sync.1,
            "[{t}] only the diff method reads the changed paths alone"
        );
        let figures = |r: &integration::progress::SquashReport| {
            (
                r.plain_bytes,
                r.squashed_bytes,
                r.reclaimed_bytes,
                r.wasted.clone(),
            )
        };
        assert_eq!(
            figures(&by_diff.2),
            figures(&by_sync.2),
            "[{t}] the report from the changed paths is the one from the whole filesystems:\n{:#?}\n{:#?}",
            by_diff.2.lines,
            by_sync.2.lines
        );
    }
}

/// `squash-report=off`: no report, and in a split at a stage where the engine diffs (the
/// containerd store) no step of ours at all: the frontend reads the later steps' changes
/// through the gateway and the upper layer is the engine's FileOps. Every kind of later change
/// ([`KINDS`]) gives the plain build's files and config, in full and base mode; hardlinks the
/// later steps made to the stage's files are separate files there, as in the plain image (our
/// sync, on the classic store, keeps the build's links). An app-only change leaves the lower
/// layer byte-identical and its steps cached. Base mode without a split: the base's layers and
/// one, by our sync without the report. A failing later step fails the frontend's read, and is
/// the build's own error.
#[test]
fn without_the_report_the_engine_makes_the_layers_alone() {
    let t = "without_the_report_the_engine_makes_the_layers_alone";
    let store = start(t);
    let by_engine = store == Store::Containerd;
    let ctx = |side: &str, body: &str, app: &str| context(&format!("{t}-{side}"), body, app);
    let plain = load_built("plain", ctx("plain", KINDS, "app\n"), &[], None);
    let _guard = TagGuard(vec![plain.tag.clone()]);
    let base_layers = integration::docker::save(BUSYBOX).layers.len();
    let off = ["--build-arg", "SQUASH_REPORT=off"];
    let cases: [(&str, &[&str], usize); 3] = [
        ("full-split", &["--build-arg", "SQUASH_SPLIT=deps"], 2),
        (
            "base-split",
            &[
                "--build-arg",
                "SQUASH_SPLIT=deps",
                "--build-arg",
                "SQUASH_MODE=base",
            ],
            base_layers + 2,
        ),
        (
            "base",
            &["--build-arg", "SQUASH_MODE=base"],
            base_layers + 1,
        ),
    ];
    for (label, args, layers) in cases {
        let args: Vec<&str> = args.iter().chain(&off).copied().collect();
        let build = |n: u32, app: &str| {
            let side = format!("{label}-{n}");
            load_built(
                &side,
                ctx(&side, &squash_dockerfile(KINDS), app),
                &args,
                None,
            )
        };
        let built = build(1, "app\n");
        let _g = TagGuard(vec![built.tag.clone()]);
        let stderr = &built.build.stderr;
        println!(
            "[{t}] {label}: diff IDs {:?}\n{}",
            built.image.diff_ids(),
            show_steps(&squash_steps(stderr))
        );
        assert_eq!(built.image.layers.len(), layers, "[{t}] {label}: layers");
        assert!(
            squash_reports(stderr).is_empty(),
            "[{t}] {label}: no report:\n{stderr}"
        );
        // Base mode keeps our sync (reading only what each step changed), without the report.
        let engine_alone = by_engine && label != "base";
        assert_eq!(
            stderr.contains("squash-frontend's own image"),
            !engine_alone,
            "[{t}] {label}: a step of ours only where the engine does not make the layers:\n{stderr}"
        );
        // Hardlinks made across the stage's end are the plain image's (separate files) where
        // the engine copies the changes, and the build's where our sync mirrors them.
        let plain_links = engine_alone;
        let mut opts = CompareOptions::new();
        if !plain_links {
            for group in LINKS_AT_BUILD {
                for path in group {
                    let e = built.fs.get(path).expect("in the image");
                    let got: Vec<String> = e.hardlinks.iter().map(ToString::to_string).collect();
                    assert_eq!(got, group, "[{t}] {label}: {path}: the build's links");
                    opts = opts.ignore_field_at(path, "hardlinks");
                }
            }
        }
        if !by_engine {
            // Our sync compares whole trees by metadata (see the every-kind test above).
            opts = opts.ignore_path("/opt/deps/same");
        }
        assert_same(&format!("{t}: {label}"), &plain, &built, &opts);
        // Times as in the plain image: in base mode every one (the steps are the plain
        // build's own); in a split, the later steps run on the lower layer in this build, so
        // what the upper layer holds has this build's times, and nothing else moved but, in
        // full mode, directories (README, "Times": a directory has the time the build left it
        // with, and the root none).
        let upper: std::collections::HashSet<String> = built
            .image
            .layers
            .last()
            .unwrap()
            .entries()
            .unwrap()
            .iter()
            .map(|(p, _)| format!("/{}", p.trim_start_matches("./").trim_end_matches('/')))
            .collect();
        let kept_none = label == "full-split";
        let mtimes = compare_fs(&plain.fs, &built.fs, &opts.clone().mtimes(true));
        for d in &mtimes.differences {
            let dir = plain.fs.get(d.path.as_bytes()).map(|e| e.kind) == Some(Kind::Dir);
            assert!(
                label != "base" && (upper.contains(d.path.as_str()) || (dir && kept_none)),
                "[{t}] {label}: {} has another mtime than in the plain image: {d}",
                d.path
            );
        }
        if label == "base" {
            continue;
        }
        let again = build(2, "app 2\n");
        let _g2 = TagGuard(vec![again.tag.clone()]);
        let kept = layers - 2;
        let (ids1, ids2) = (built.image.diff_ids(), again.image.diff_ids());
        assert_eq!(
            ids1[..=kept],
            ids2[..=kept],
            "[{t}] {label}: the lower layer"
        );
        assert_ne!(
            ids1[kept + 1],
            ids2[kept + 1],
            "[{t}] {label}: the upper layer"
        );
        let steps = squash_steps(&again.build.stderr);
        let lower: Vec<_> = steps
            .iter()
            .filter(|s| s.name.starts_with("squash: stage deps"))
            .collect();
        assert!(
            !lower.is_empty() && lower.iter().all(|s| s.cached),
            "[{t}] {label}: the lower layer's steps are cached:\n{}",
            show_steps(&steps)
        );
        let app = integration::docker::run(&again.tag, &["cat", "/app/app.txt"]);
        app.assert_success();
        assert_eq!(app.stdout, "app 2\n", "[{t}] {label}");
    }
    let failing = "FROM squash-test/busybox:latest AS deps\nRUN echo a > /a\n\nFROM deps\nRUN echo about-to-fail && exit 7\n";
    let out = TestContext::new(&format!("{t}-failing"), &squash_dockerfile(failing)).build(&[
        "--build-arg",
        "SQUASH_SPLIT=deps",
        "--build-arg",
        "SQUASH_REPORT=off",
    ]);
    out.assert_failure();
    // BuildKit's words and the step's output; not its Dockerfile line, which the steps after
    // the stage, rebased onto the lower layer, do not carry to the error with the report either.
    assert!(
        out.stderr
            .contains("did not complete successfully: exit code: 7")
            && out
                .stderr
                .lines()
                .any(|l| l.contains("> [stage-1 1/1] RUN echo about-to-fail && exit 7:")),
        "[{t}] a failing later step is the build's own error:\n{out}"
    );
}

/// A socket the build made, without the report: the plain image leaves it out (a layer's tar
/// has no entry type for one). Where the engine copies the changes, the gateway reads it as an
/// empty file (fsutil clears a socket's type bit) and the copy writes it as one: the squashed
/// image holds an empty file there, and is the plain image's otherwise (docs/fidelity.md): in a
/// split at a stage, on the containerd store. Base mode keeps our sync, which leaves it out,
/// as on the classic store (with or without the report; with it,
/// `fidelity_capabilities_xattrs_sockets_on_debian` checks that).
#[test]
fn without_the_report_a_socket_is_an_empty_file_where_the_engine_copies() {
    let t = "without_the_report_a_socket_is_an_empty_file_where_the_engine_copies";
    let store = start(t);
    if store == Store::Classic {
        println!("[{t}] the classic store has no DiffOp: our sync makes the layers");
        return;
    }
    let body = format!(
        "FROM {} AS deps\nCOPY run-id /run-id\nRUN mkdir /x && echo data > /x/file\n\nFROM deps\nCOPY app.txt /app.txt\nRUN perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Local => \"/x/socket\", Listen => 1) or die \"socket: $!\"' && test -S /x/socket\n",
        integration::fixtures::DEBIAN
    );
    let ctx = |side: &str, body: &str| context(&format!("{t}-{side}"), body, "app\n");
    let plain = load_built("plain", ctx("plain", &body), &[], None);
    let _guard = TagGuard(vec![plain.tag.clone()]);
    assert!(
        !plain.fs.contains("/x/socket"),
        "[{t}] BuildKit now keeps sockets"
    );
    for (label, split) in [("base", ""), ("base-split", "deps")] {
        let split = format!("SQUASH_SPLIT={split}");
        let args = [
            "--build-arg",
            "SQUASH_MODE=base",
            "--build-arg",
            "SQUASH_REPORT=off",
            "--build-arg",
            &split,
        ];
        let built = load_built(label, ctx(label, &squash_dockerfile(&body)), &args, None);
        let _g = TagGuard(vec![built.tag.clone()]);
        let socket = built.fs.get(b"/x/socket".as_slice());
        println!(
            "[{t}] {label}: /x/socket {:?}",
            socket.as_ref().map(|e| (e.kind, e.size))
        );
        if split.ends_with("deps") {
            assert!(
                socket.is_some_and(|e| e.kind == Kind::File && e.size == 0),
                "[{t}] {label}: an empty file where the socket was"
            );
        } else {
            assert!(socket.is_none(), "[{t}] {label}: left out by our sync");
        }
        assert_same(
            &format!("{t}: {label}"),
            &plain,
            &built,
            &CompareOptions::new().ignore_path("/x/socket"),
        );
    }
}

/// A stage whose step is not reproducible (it writes random bytes) and an app step that copies
/// what the stage wrote: in the plain image the two files are equal.
const UNSTABLE: &str = r#"FROM squash-test/busybox:latest AS deps
COPY run-id /run-id
RUN head -c 64 /dev/urandom | md5sum > /opt-r

FROM deps
ARG APP=1
RUN cp /opt-r /rcopy && echo "app $APP" > /app
"#;

/// BuildKit's cache can hold two results of the same steps: here the stage is built again
/// with `--no-cache` (in mode off) between a split build and an app-only change. The split's
/// lower layer then comes from the cache of the first build, and the app's steps must run on
/// it, not on the other result: the image holds the stage's files of one build, as a plain
/// image does (the app's copy of the stage's file equals the file). In every mode and method
/// the store has.
#[test]
fn split_at_a_stage_builds_the_later_steps_on_the_lower_layer() {
    let t = "split_at_a_stage_builds_the_later_steps_on_the_lower_layer";
    let store = start(t);
    let dockerfile = squash_dockerfile(UNSTABLE);
    let ctx = |side: &str| {
        let ctx = TestContext::new(&format!("{t}-{side}"), &dockerfile);
        ctx.write("run-id", run_nonce());
        ctx
    };
    for v in variants(store) {
        let label = v.label.replace('/', "-");
        let split = ["--build-arg", "SQUASH_SPLIT=deps"];
        let with = |more: &[&'static str]| -> Vec<&'static str> {
            split.iter().chain(v.args).chain(more).copied().collect()
        };
        let first = load_built(
            &format!("{label}-1"),
            ctx(&format!("{label}-1")),
            &with(&[]),
            None,
        );
        let _g1 = TagGuard(vec![first.tag.clone()]);
        let again = load_built(
            &format!("{label}-off"),
            ctx(&format!("{label}-off")),
            &["--no-cache", "--build-arg", "SQUASH_MODE=off"],
            None,
        );
        let _g2 = TagGuard(vec![again.tag.clone()]);
        let changed = load_built(
            &format!("{label}-2"),
            ctx(&format!("{label}-2")),
            &with(&["--build-arg", "APP=2"]),
            None,
        );
        let _g3 = TagGuard(vec![changed.tag.clone()]);
        let kept = changed.image.layers.len() - 2;
        println!(
            "[{t}] {}: diff IDs {:?}, then {:?}\n{}",
            v.label,
            first.image.diff_ids(),
            changed.image.diff_ids(),
            show_steps(&squash_steps(&changed.build.stderr))
        );
        assert_eq!(
            changed.image.diff_ids()[..kept + 1],
            first.image.diff_ids()[..kept + 1],
            "[{t}] {}: the lower layer is the first build's",
            v.label
        );
        let files = integration::docker::run(&changed.tag, &["cat", "/opt-r", "/rcopy", "/app"]);
        files.assert_success();
        let lines: Vec<&str> = files.stdout.lines().collect();
        assert!(
            lines.len() == 3 && lines[0] == lines[1] && lines[2] == "app 2",
            "[{t}] {}: /opt-r (the stage's), /rcopy (the app's copy of it), /app: {lines:?}",
            v.label
        );
    }
}

/// A stage the Dockerfile does not have, a stage with nothing after it (the target itself, in
/// any mode, or the stage a target of config alone starts FROM) and a stage of config alone
/// are refused with one line each, naming the setting and the stages there are. A split of a
/// base-mode build too small to split is returned as built, and a step says so.
#[test]
fn split_at_a_stage_that_is_not_there_names_the_stages() {
    let t = "split_at_a_stage_that_is_not_there_names_the_stages";
    start(t);
    let config_target =
        "FROM squash-test/busybox:latest AS deps\nRUN echo a > /a\n\nFROM deps AS app\nENV X=1\n";
    let config_middle = "FROM squash-test/busybox:latest AS deps\nRUN echo a > /a\n\nFROM deps AS app\nENV X=1\n\nFROM app\nRUN echo c > /c\n";
    let nothing_after =
        "after which no step of the build changes files: nothing is left for the upper layer";
    for (body, args, expected) in [
        (
            BODY,
            &["--build-arg", "SQUASH_SPLIT=build"][..],
            "build argument SQUASH_SPLIT names the stage build, which has no step in the build of the target stage: it is not a stage the target stage starts FROM (directly or through other stages), or it runs no step that changes files; valid values are the stages it is built on (deps), or absolute paths".to_string(),
        ),
        (
            BODY,
            &["--build-arg", "SQUASH_SPLIT=stage-1"][..],
            format!("build argument SQUASH_SPLIT names the stage stage-1, {nothing_after}; valid values are the stages it is built on (deps)"),
        ),
        (
            BODY,
            &["--build-arg", "SQUASH_SPLIT=deps", "--build-arg", "SQUASH_MODE=base", "--target", "deps"][..],
            format!("build argument SQUASH_SPLIT names the stage deps, {nothing_after}; valid values are absolute paths such as /usr,/etc (no stage's end is followed by a step that changes files)"),
        ),
        (
            config_target,
            &["--build-arg", "SQUASH_SPLIT=deps"][..],
            format!("build argument SQUASH_SPLIT names the stage deps, {nothing_after}"),
        ),
        (
            config_middle,
            &["--build-arg", "SQUASH_SPLIT=app"][..],
            "build argument SQUASH_SPLIT names the stage app, which has no step in the build of the target stage: it is not a stage the target stage starts FROM (directly or through other stages), or it runs no step that changes files; valid values are the stages it is built on (deps)".to_string(),
        ),
    ] {
        let ctx = context(t, &squash_dockerfile(body), "v1\n");
        let out = ctx.build(args);
        out.assert_failure();
        let errors = error_lines(&out.stderr);
        println!("[{t}] {args:?}: {errors:?}");
        assert!(
            errors
                .iter()
                .any(|l| l.contains("squash-frontend:") && l.contains(&expected)),
            "[{t}] {args:?}: {errors:?}"
        );
    }
    // A split by paths the image has none of (mistyped) stops the build: its lower layer
    // would be empty.
    let ctx = context(t, &squash_dockerfile(BODY), "v1\n");
    let out = ctx.build(&["--build-arg", "SQUASH_SPLIT=/nope,/usr/lcoal"]);
    out.assert_failure();
    assert!(
        out.stderr.contains(
            "squash-frontend sync: squash-split: none of /nope,/usr/lcoal is in the image, so the split's lower layer would be empty"
        ),
        "[{t}] paths the image has none of:\n{out}"
    );
    // One layer above the base: nothing to split in base mode, and a step says so.
    let ctx = context(
        t,
        &squash_dockerfile("FROM squash-test/busybox:latest\nRUN echo a > /a\n"),
        "v1\n",
    );
    let out = ctx.build(&[
        "--build-arg",
        "SQUASH_MODE=base",
        "--build-arg",
        "SQUASH_SPLIT=/usr",
    ]);
    out.assert_success();
    let steps = squash_steps(&out.stderr);
    assert!(
        steps.iter().any(|s| s.name
            == "squash: not squashed: the Dockerfile adds at most one layer to its base image"),
        "[{t}] one layer above the base: {}",
        show_steps(&steps)
    );
    // Given by a directive: the error names its line, and buildx marks that line.
    let ctx = context(
        t,
        &squash_dockerfile(&format!("# squash-split=build\n{BODY}")),
        "v1\n",
    );
    let out = ctx.build(&[]);
    out.assert_failure();
    let errors = error_lines(&out.stderr);
    println!("[{t}] directive: {errors:?}");
    assert!(
        errors.iter().any(|l| l.contains(
            "squash-frontend: directive # squash-split= (from Dockerfile line 2) names the stage build, which"
        )),
        "[{t}] directive: {errors:?}"
    );
    assert!(
        out.stderr.contains("   2 | >>> # squash-split=build\n"),
        "[{t}] the directive's line, marked:\n{out}"
    );
}

/// A multi-platform build splits each platform's image (containerd store; the classic store
/// refuses multi-platform builds under the `docker` driver, with or without us): two layers
/// each, the stage's own file below and the app above.
#[test]
fn split_per_platform() {
    let t = "split_per_platform";
    let store = start(t);
    if store == integration::docker::Store::Classic {
        println!("[{t}] SKIPPED on the classic store: the docker driver refuses multi-platform builds there, with or without this frontend (buildx_features asserts the refusal)");
        return;
    }
    // COPY only: no emulation needed for the foreign platform.
    let body = "FROM --platform=$TARGETPLATFORM scratch AS deps\nCOPY run-id /deps/run-id\nCOPY lib.txt /deps/lib.txt\n\nFROM deps\nCOPY app.txt /app/app.txt\n";
    let ctx = context(t, &squash_dockerfile(body), "app\n");
    ctx.write("lib.txt", "lib\n");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("image.tar");
    let output = format!("type=oci,dest={}", dest.display());
    let run = integration::docker::Buildx::new(ctx.path())
        .args(&[
            "--platform",
            "linux/amd64,linux/arm64",
            "--build-arg",
            "SQUASH_SPLIT=deps",
            "--output",
            &output,
        ])
        .timeout(integration::docker::BUILD_TIMEOUT)
        .run();
    run.out.assert_success();
    let archive = integration::archive::Archive::open(&dest)
        .unwrap_or_else(|e| panic!("[{t}] the OCI archive: {e:#}"));
    let manifests = archive.image_manifests();
    assert_eq!(manifests.len(), 2, "[{t}] two platforms");
    for m in manifests {
        let image = archive.image_for_manifest(m).unwrap();
        let layers: Vec<Vec<String>> = image
            .layers
            .iter()
            .map(|l| {
                l.entries()
                    .unwrap()
                    .into_iter()
                    .map(|(p, _)| p.trim_start_matches("./").to_string())
                    .filter(|p| !p.ends_with('/'))
                    .collect()
            })
            .collect();
        println!("[{t}] {:?}: {layers:?}", m.platform);
        assert_eq!(layers.len(), 2, "[{t}] two layers: {layers:?}");
        assert!(
            layers[0].iter().any(|p| p == "deps/lib.txt")
                && !layers[0].iter().any(|p| p.starts_with("app")),
            "[{t}] the stage below: {layers:?}"
        );
        assert!(
            layers[1].iter().any(|p| p == "app/app.txt")
                && !layers[1].iter().any(|p| p.starts_with("deps/")),
            "[{t}] the app above: {layers:?}"
        );
    }
}
