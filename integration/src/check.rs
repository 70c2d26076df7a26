//! The assertions the end-to-end tests share.
//!
//! Each one decides one question the same way for every test (is the
//! squashed image the same image, are the base's layers kept, does the
//! history say what happened, does a container do the same, does the engine
//! refuse a build the same way with our line), panics with
//! what a reader needs to see why not, and prints the figures a reader of
//! `--nocapture` output wants when it holds.

use serde_json::Value;

use crate::compare::{compare_configs, compare_fs, CompareOptions};
use crate::context::TestContext;
use crate::docker::{self, Buildx, BUILD_TIMEOUT};
use crate::fs::FsModel;
use crate::image::{created_by, is_empty_layer, Image};
use crate::progress::error_lines;
use crate::scenario::{both_contexts, Built};
use crate::show::indent;

/// The filesystem (as `opts` compares it) and the config of the squashed
/// image equal the plain one's; panics with both reports otherwise. Prints
/// how many mtimes differ, which is not asserted.
#[track_caller]
pub fn assert_same(test: &str, plain: &Built, squashed: &Built, opts: &CompareOptions) {
    assert_same_models(
        test,
        (&plain.fs, &plain.image),
        (&squashed.fs, &squashed.image),
        opts,
    );
}

/// [`assert_same`] for images and their models (plain, squashed), e.g. one
/// platform of two OCI archives.
#[track_caller]
pub fn assert_same_models(
    test: &str,
    (plain_fs, plain): (&FsModel, &Image),
    (squashed_fs, squashed): (&FsModel, &Image),
    opts: &CompareOptions,
) {
    let fs = compare_fs(plain_fs, squashed_fs, opts).with_names("plain", "squashed");
    let config = compare_configs(&plain.config, &squashed.config).with_names("plain", "squashed");
    if !fs.is_empty() || !config.is_empty() {
        panic!(
            "[{test}] the squashed image differs from the plain one ({} filesystem, {} config differences):\n{fs}\n{config}",
            fs.len(),
            config.len()
        );
    }
    let mtimes = compare_fs(plain_fs, squashed_fs, &opts.clone().mtimes(true));
    println!(
        "[{test}] filesystem ({} paths) and config equal; mtime differences (not asserted): {}",
        plain_fs.len(),
        mtimes.len()
    );
    for d in mtimes.differences.iter().take(5) {
        println!("[{test}]   mtime: {d}");
    }
}

/// The base image's layers are the bottom layers of `img`, by diffID, blob
/// digest and size, and in its config's `rootfs.diff_ids`; and there is
/// exactly one more. Prints the layers.
#[track_caller]
pub fn assert_keeps_base(test: &str, base: &Image, img: &Image) {
    let n = base.layers.len();
    assert_eq!(
        img.layers.len(),
        n + 1,
        "[{test}] base mode: the base's {n} layers + 1, got {}",
        img.layers.len()
    );
    for (i, (b, s)) in base.layers.iter().zip(&img.layers).enumerate() {
        println!(
            "[{test}] layer {i}: base diff_id {} digest {} | squashed diff_id {} digest {}",
            &b.diff_id[..19],
            &b.digest[..19],
            &s.diff_id[..19],
            &s.digest[..19]
        );
        assert_eq!(
            b.diff_id, s.diff_id,
            "[{test}] layer {i}: diffID differs from the base's"
        );
        assert_eq!(
            b.digest, s.digest,
            "[{test}] layer {i}: blob digest differs from the base's (same diffID {}, recompressed?)",
            b.diff_id
        );
        assert_eq!(
            b.size, s.size,
            "[{test}] layer {i}: blob size differs from the base's"
        );
    }
    assert_eq!(
        img.config_diff_ids()[..n],
        base.config_diff_ids()[..],
        "[{test}] config rootfs.diff_ids of the base layers"
    );
}

/// The squashed config history against the plain one: every plain entry is
/// kept in order with its `created_by`; the first `kept` layer entries stay
/// layer entries (the base's), every later one is marked empty; one new entry
/// at the end, not empty, whose `created_by` starts with `squash:`.
#[track_caller]
pub fn assert_squash_history(test: &str, plain: &Image, squashed: &Image, kept: usize) {
    let ph = plain.history();
    let sh = squashed.history();
    let show = |h: &[Value]| {
        h.iter()
            .map(|e| {
                format!(
                    "    {} {}",
                    if is_empty_layer(e) {
                        "(empty)"
                    } else {
                        "(layer)"
                    },
                    created_by(e)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let context = format!(
        "plain history:\n{}\nsquashed history:\n{}",
        show(&ph),
        show(&sh)
    );
    assert_eq!(
        sh.len(),
        ph.len() + 1,
        "the squashed history should be the plain one plus one entry\n{context}"
    );
    let mut layers_seen = 0;
    for (i, (p, s)) in ph.iter().zip(&sh).enumerate() {
        assert_eq!(
            created_by(p),
            created_by(s),
            "history entry {i} changed its created_by\n{context}"
        );
        if is_empty_layer(p) {
            assert!(
                is_empty_layer(s),
                "history entry {i} was empty and is not any more\n{context}"
            );
            continue;
        }
        if layers_seen < kept {
            assert!(
                !is_empty_layer(s),
                "history entry {i} belongs to a kept base layer but is marked empty\n{context}"
            );
        } else {
            assert!(
                is_empty_layer(s),
                "history entry {i} ({}) was squashed but is not marked empty_layer\n{context}",
                created_by(p)
            );
        }
        layers_seen += 1;
    }
    let last = sh.last().expect("non-empty history");
    assert!(
        !is_empty_layer(last) && created_by(last).starts_with("squash:"),
        "the last history entry should be the squashed layer's, created_by `squash: ...`\n{context}"
    );
    let non_empty = sh.iter().filter(|h| !is_empty_layer(h)).count();
    assert_eq!(non_empty, kept + 1, "{context}");
    assert_eq!(non_empty, squashed.layers.len(), "{context}");
    println!(
        "[{test}] history: {} plain entries, {} squashed entries, {} layer entries; last: {:?} ({:?})",
        ph.len(),
        sh.len(),
        non_empty,
        created_by(last),
        last.get("comment").and_then(Value::as_str).unwrap_or("")
    );
}

/// A container of each image, run with ARGS: both must exit 0 and print the
/// same stdout and stderr. Returns stdout.
#[track_caller]
pub fn assert_same_run(test: &str, plain: &Built, squashed: &Built, args: &[&str]) -> String {
    let p = docker::run(&plain.tag, args);
    let s = docker::run(&squashed.tag, args);
    assert!(p.success(), "docker run of the plain image failed: {p}");
    assert!(s.success(), "docker run of the squashed image failed: {s}");
    assert_eq!(
        p.stdout, s.stdout,
        "docker run stdout differs (plain, squashed)"
    );
    assert_eq!(
        p.stderr, s.stderr,
        "docker run stderr differs (plain, squashed)"
    );
    println!(
        "[{test}] docker run {args:?} printed the same on both ({} bytes):\n{}",
        s.stdout.len(),
        indent(&s.stdout)
    );
    s.stdout
}

/// Builds one body with and without our syntax line (same files, same
/// arguments, within [`BUILD_TIMEOUT`]) and asserts the engine refuses both
/// with `needle` in the same `ERROR` lines and the same exit status: a limit
/// of the engine or store that our line neither hides nor changes. Returns
/// the refusal's `ERROR` lines.
#[track_caller]
pub fn assert_refused_alike(
    test: &str,
    body: &str,
    files: &[(&str, &str)],
    args: &[&str],
    needle: &str,
) -> Vec<String> {
    let (plain, squashed) = both_contexts(test, body, files);
    let build = |ctx: &TestContext| {
        Buildx::new(ctx.path())
            .args(args)
            .timeout(BUILD_TIMEOUT)
            .run()
            .out
    };
    let (p, s) = (build(&plain), build(&squashed));
    for (side, out) in [("plain", &p), ("squashed", &s)] {
        out.assert_failure();
        assert!(
            out.stderr.contains(needle),
            "{side} build of {test}: expected the refusal {needle:?}:\n{out}"
        );
    }
    assert_eq!(p.status.code(), s.status.code(), "same exit status");
    let errors = error_lines(&s.stderr);
    assert_eq!(
        error_lines(&p.stderr),
        errors,
        "the refusal differs with our syntax line"
    );
    println!(
        "[{test}] refused alike with and without our line ({}), args {args:?}:\n{}",
        p.status,
        indent(&errors.join("\n"))
    );
    errors
}

/// No image is tagged `tag` (what a failed build must leave); panics, after
/// removing it, if one is.
#[track_caller]
pub fn assert_not_tagged(test: &str, tag: &str) {
    if docker::image_exists(tag) {
        docker::rmi(&[tag]);
        panic!("[{test}] a failed build left an image tagged {tag}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use serde_json::json;

    fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut l = LayerBuilder::new();
        for (path, data) in files {
            l.file(path, data, 0o644);
        }
        l.finish()
    }

    fn model(img: &Image) -> FsModel {
        FsModel::from_image(img).unwrap()
    }

    #[test]
    fn the_same_image_in_one_layer() {
        let a = layer(&[("a", b"1"), ("tmp", b"x")]);
        let mut b = LayerBuilder::new();
        b.whiteout("tmp").file("b", b"2", 0o644);
        let plain = image_of(&ImageSpec::new(vec![a, b.finish()]));
        let squashed = image_of(&ImageSpec::new(vec![layer(&[("a", b"1"), ("b", b"2")])]));
        let (pf, sf) = (model(&plain), model(&squashed));
        assert_same_models("t", (&pf, &plain), (&sf, &squashed), &CompareOptions::new());
    }

    #[test]
    #[should_panic(
        expected = "[t] the squashed image differs from the plain one (1 filesystem, 0 config"
    )]
    fn a_changed_file_is_a_difference() {
        let plain = image_of(&ImageSpec::new(vec![layer(&[("a", b"1")])]));
        let squashed = image_of(&ImageSpec::new(vec![layer(&[("a", b"2")])]));
        let (pf, sf) = (model(&plain), model(&squashed));
        assert_same_models("t", (&pf, &plain), (&sf, &squashed), &CompareOptions::new());
    }

    #[test]
    fn what_the_options_leave_out_is_not_compared() {
        let plain = image_of(&ImageSpec::new(vec![layer(&[("a", b"1"), ("x", b"1")])]));
        let squashed = image_of(&ImageSpec::new(vec![layer(&[("a", b"1"), ("x", b"2")])]));
        let (pf, sf) = (model(&plain), model(&squashed));
        let opts = CompareOptions::new().ignore_path("/x");
        assert_same_models("t", (&pf, &plain), (&sf, &squashed), &opts);
    }

    #[test]
    #[should_panic(expected = "(0 filesystem, 1 config differences)")]
    fn a_changed_config_is_a_difference() {
        let plain = image_of(&ImageSpec::new(vec![layer(&[("a", b"1")])]));
        let mut spec = ImageSpec::new(vec![layer(&[("a", b"1")])]);
        spec.config["config"]["User"] = json!("nobody");
        let squashed = image_of(&spec);
        let (pf, sf) = (model(&plain), model(&squashed));
        assert_same_models("t", (&pf, &plain), (&sf, &squashed), &CompareOptions::new());
    }

    /// A two-layer base, and an image of its layers (after `change`) and one
    /// more.
    fn on_the_base(change: impl FnOnce(&mut Vec<Vec<u8>>)) -> (Image, Image) {
        let layers = vec![
            gzip(&layer(&[("base/1", b"1")])),
            layer(&[("base/2", b"2")]),
        ];
        let base = image_of(&ImageSpec::new(layers.clone()));
        let mut on_top = layers;
        change(&mut on_top);
        on_top.push(layer(&[("top", b"t")]));
        (base, image_of(&ImageSpec::new(on_top)))
    }

    #[test]
    fn the_base_layers_kept_and_one_more() {
        let (base, img) = on_the_base(|_| {});
        assert_keeps_base("t", &base, &img);
    }

    #[test]
    #[should_panic(expected = "[t] base mode: the base's 2 layers + 1, got 2")]
    fn no_layer_on_top_of_the_base() {
        let (base, _) = on_the_base(|_| {});
        assert_keeps_base("t", &base, &base);
    }

    #[test]
    #[should_panic(expected = "[t] layer 0: blob digest differs from the base's")]
    fn a_recompressed_base_layer() {
        let (base, img) = on_the_base(|layers| layers[0] = layer(&[("base/1", b"1")]));
        assert_keeps_base("t", &base, &img);
    }

    #[test]
    #[should_panic(expected = "[t] layer 1: diffID differs from the base's")]
    fn a_changed_base_layer() {
        let (base, img) = on_the_base(|layers| layers[1] = layer(&[("base/2", b"changed")]));
        assert_keeps_base("t", &base, &img);
    }

    /// An image of `layers` layers with this history.
    fn with_history(layers: usize, history: Value) -> Image {
        let mut spec = ImageSpec::new(
            (0..layers)
                .map(|i| layer(&[(&format!("f{i}"), b"x")]))
                .collect(),
        );
        spec.config["history"] = history;
        image_of(&spec)
    }

    fn plain_history() -> Image {
        with_history(
            2,
            json!([
                {"created_by": "FROM base"},
                {"created_by": "ENV A=1", "empty_layer": true},
                {"created_by": "RUN make"}
            ]),
        )
    }

    #[test]
    fn a_squash_history_in_full_and_base_mode() {
        let full = with_history(
            1,
            json!([
                {"created_by": "FROM base", "empty_layer": true},
                {"created_by": "ENV A=1", "empty_layer": true},
                {"created_by": "RUN make", "empty_layer": true},
                {"created_by": "squash: 2 layers -> 1", "comment": "squash-frontend"}
            ]),
        );
        assert_squash_history("t", &plain_history(), &full, 0);
        let base = with_history(
            2,
            json!([
                {"created_by": "FROM base"},
                {"created_by": "ENV A=1", "empty_layer": true},
                {"created_by": "RUN make", "empty_layer": true},
                {"created_by": "squash: 1 layer on the base"}
            ]),
        );
        assert_squash_history("t", &plain_history(), &base, 1);
    }

    #[test]
    #[should_panic(
        expected = "history entry 2 (RUN make) was squashed but is not marked empty_layer"
    )]
    fn a_squashed_entry_left_as_a_layer() {
        let squashed = with_history(
            2,
            json!([
                {"created_by": "FROM base", "empty_layer": true},
                {"created_by": "ENV A=1", "empty_layer": true},
                {"created_by": "RUN make"},
                {"created_by": "squash: 2 layers -> 1"}
            ]),
        );
        assert_squash_history("t", &plain_history(), &squashed, 0);
    }

    #[test]
    #[should_panic(expected = "the last history entry should be the squashed layer's")]
    fn no_squash_entry() {
        let squashed = with_history(
            1,
            json!([
                {"created_by": "FROM base", "empty_layer": true},
                {"created_by": "ENV A=1", "empty_layer": true},
                {"created_by": "RUN make", "empty_layer": true},
                {"created_by": "COPY . /"}
            ]),
        );
        assert_squash_history("t", &plain_history(), &squashed, 0);
    }
}
