//! Comparing two images: their filesystem models and their configs.
//!
//! This module owns the *verdict*: it turns two [`FsModel`]s, or two image
//! configs, into a [`Report`] listing every difference as (path, field, left,
//! right), readable in a test failure. An empty report means equal.
//!
//! Filesystem comparison looks at every field [`crate::fs`] records; mtimes
//! only when asked ([`CompareOptions::mtimes`]), because some tests do not
//! care about them even though squashing keeps them. Paths can be left out
//! ([`CompareOptions::ignore_path`], [`CompareOptions::ignore_tree`]) for
//! what BuildKit itself handles differently between two builds; ignored
//! paths are also left out of the hardlink groups that are compared.
//!
//! Config comparison looks at the runtime-relevant fields under `config`
//! ([`CONFIG_FIELDS`]) and at `os`/`architecture`/`variant`
//! ([`PLATFORM_FIELDS`]). A field that is `null` counts as absent; anything
//! else is compared as JSON, exactly (order of `Env` included).

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use crate::fs::{escape_bytes, Entry, FsModel, FsPath};

/// One difference between left and right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Path in the filesystem (`/etc/passwd`), or `config` / `` for config fields.
    pub path: String,
    /// What differs: `presence`, `kind`, `mode`, `xattr:user.x`, `Env`, ...
    pub field: String,
    /// The left value, rendered.
    pub left: String,
    /// The right value, rendered.
    pub right: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {} != {}", self.field, self.left, self.right)
        } else {
            write!(
                f,
                "{} {}: {} != {}",
                self.path, self.field, self.left, self.right
            )
        }
    }
}

/// Every difference found, in path order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What was compared (`filesystem`, `config`).
    pub subject: String,
    /// Name of the left side in the rendering.
    pub left_name: String,
    /// Name of the right side in the rendering.
    pub right_name: String,
    /// The differences.
    pub differences: Vec<Difference>,
}

impl Report {
    fn new(subject: &str) -> Report {
        Report {
            subject: subject.to_owned(),
            left_name: "left".to_owned(),
            right_name: "right".to_owned(),
            differences: Vec::new(),
        }
    }

    /// Renames the two sides (e.g. `plain`, `squashed`).
    pub fn with_names(mut self, left: &str, right: &str) -> Report {
        self.left_name = left.to_owned();
        self.right_name = right.to_owned();
        self
    }

    /// Whether the two sides are equal.
    pub fn is_empty(&self) -> bool {
        self.differences.is_empty()
    }

    /// Number of differences.
    pub fn len(&self) -> usize {
        self.differences.len()
    }

    /// The differences at a path (rendered as in [`Difference::path`]).
    pub fn at(&self, path: &str) -> Vec<&Difference> {
        self.differences.iter().filter(|d| d.path == path).collect()
    }

    /// The difference for one (path, field), if any.
    pub fn find(&self, path: &str, field: &str) -> Option<&Difference> {
        self.differences
            .iter()
            .find(|d| d.path == path && d.field == field)
    }

    /// Panics with the whole report unless it is empty.
    #[track_caller]
    pub fn assert_empty(&self) {
        if !self.is_empty() {
            panic!("{self}");
        }
    }

    fn push(&mut self, path: &str, field: &str, left: String, right: String) {
        self.differences.push(Difference {
            path: path.to_owned(),
            field: field.to_owned(),
            left,
            right,
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(
                f,
                "{}: {} and {} are equal",
                self.subject, self.left_name, self.right_name
            );
        }
        writeln!(
            f,
            "{}: {} difference(s) ({} != {}):",
            self.subject,
            self.len(),
            self.left_name,
            self.right_name
        )?;
        for d in &self.differences {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

/// What to leave out of a filesystem comparison.
#[derive(Debug, Clone, Default)]
pub struct CompareOptions {
    /// Paths left out (only that path).
    pub ignore_paths: BTreeSet<FsPath>,
    /// Paths left out together with everything under them.
    pub ignore_trees: BTreeSet<FsPath>,
    /// Fields left out (`mode`, `uid`, `xattrs`, ... as in [`Difference::field`];
    /// `xattrs` covers every `xattr:*`).
    pub ignore_fields: BTreeSet<String>,
    /// Fields left out at one path only (`(path, field)`).
    pub ignore_fields_at: BTreeSet<(FsPath, String)>,
    /// Whether mtimes are compared (default: no).
    pub compare_mtime: bool,
}

impl CompareOptions {
    /// Compare everything but mtimes.
    pub fn new() -> CompareOptions {
        CompareOptions::default()
    }

    /// Leave out one path (not what is under it).
    pub fn ignore_path(mut self, path: impl AsRef<[u8]>) -> Self {
        self.ignore_paths.insert(FsPath::new(path));
        self
    }

    /// Leave out a path and everything under it.
    pub fn ignore_tree(mut self, path: impl AsRef<[u8]>) -> Self {
        self.ignore_trees.insert(FsPath::new(path));
        self
    }

    /// Leave out a field everywhere.
    pub fn ignore_field(mut self, field: &str) -> Self {
        self.ignore_fields.insert(field.to_owned());
        self
    }

    /// Leave out a field at one path (the path and its other fields are compared).
    pub fn ignore_field_at(mut self, path: impl AsRef<[u8]>, field: &str) -> Self {
        self.ignore_fields_at
            .insert((FsPath::new(path), field.to_owned()));
        self
    }

    /// Compare mtimes too (or not).
    pub fn mtimes(mut self, compare: bool) -> Self {
        self.compare_mtime = compare;
        self
    }

    /// Whether a path is left out.
    pub fn ignores(&self, path: &FsPath) -> bool {
        self.ignore_paths.contains(path) || self.ignore_trees.iter().any(|t| path.is_within(t))
    }

    fn ignores_at(&self, path: &FsPath, field: &str) -> bool {
        self.ignore_fields_at
            .contains(&(path.clone(), field.to_owned()))
    }

    fn wants(&self, field: &str) -> bool {
        if field == "mtime" && !self.compare_mtime {
            return false;
        }
        if field.starts_with("xattr:") && self.ignore_fields.contains("xattrs") {
            return false;
        }
        !self.ignore_fields.contains(field)
    }
}

fn opt<T>(v: &Option<T>, show: impl Fn(&T) -> String) -> String {
    match v {
        Some(x) => show(x),
        None => "-".to_owned(),
    }
}

fn hardlinks(e: &Entry, opts: &CompareOptions) -> String {
    let kept: Vec<String> = e
        .hardlinks
        .iter()
        .filter(|p| !opts.ignores(p))
        .map(ToString::to_string)
        .collect();
    if kept.len() < 2 {
        "-".to_owned()
    } else {
        format!("[{}]", kept.join(", "))
    }
}

fn compare_entries(
    (at, path): (&FsPath, &str),
    l: &Entry,
    r: &Entry,
    opts: &CompareOptions,
    out: &mut Report,
) {
    let fields: [(&str, String, String); 11] = [
        ("kind", l.kind.to_string(), r.kind.to_string()),
        ("mode", format!("{:04o}", l.mode), format!("{:04o}", r.mode)),
        ("uid", l.uid.to_string(), r.uid.to_string()),
        ("gid", l.gid.to_string(), r.gid.to_string()),
        ("size", l.size.to_string(), r.size.to_string()),
        (
            "sha256",
            opt(&l.sha256, Clone::clone),
            opt(&r.sha256, Clone::clone),
        ),
        (
            "symlink_target",
            opt(&l.symlink_target, |t| escape_bytes(t)),
            opt(&r.symlink_target, |t| escape_bytes(t)),
        ),
        (
            "device",
            opt(&l.device, |(a, b)| format!("{a},{b}")),
            opt(&r.device, |(a, b)| format!("{a},{b}")),
        ),
        (
            "capability",
            opt(&l.capability, |c| hex::encode(c)),
            opt(&r.capability, |c| hex::encode(c)),
        ),
        ("mtime", l.mtime.to_string(), r.mtime.to_string()),
        ("hardlinks", hardlinks(l, opts), hardlinks(r, opts)),
    ];
    for (field, a, b) in fields {
        if a != b && opts.wants(field) && !opts.ignores_at(at, field) {
            out.push(path, field, a, b);
        }
    }
    let names: BTreeSet<&String> = l.xattrs.keys().chain(r.xattrs.keys()).collect();
    for name in names {
        let field = format!("xattr:{name}");
        let (a, b) = (l.xattrs.get(name), r.xattrs.get(name));
        if a != b && opts.wants(&field) {
            let show = |v: Option<&Vec<u8>>| match v {
                Some(v) => format!("\"{}\"", escape_bytes(v)),
                None => "-".to_owned(),
            };
            out.push(path, &field, show(a), show(b));
        }
    }
}

/// Every difference between two filesystem models.
pub fn compare_fs(left: &FsModel, right: &FsModel, opts: &CompareOptions) -> Report {
    let mut out = Report::new("filesystem");
    let l = left.entries();
    let r = right.entries();
    let paths: BTreeSet<&FsPath> = l.keys().chain(r.keys()).collect();
    for p in paths {
        if opts.ignores(p) {
            continue;
        }
        let shown = p.to_string();
        match (l.get(p), r.get(p)) {
            (Some(a), Some(b)) => compare_entries((p, &shown), a, b, opts, &mut out),
            (Some(a), None) => out.push(&shown, "presence", a.kind.to_string(), "absent".into()),
            (None, Some(b)) => out.push(&shown, "presence", "absent".into(), b.kind.to_string()),
            (None, None) => unreachable!(),
        }
    }
    out
}

/// The fields under `config` that [`compare_configs`] compares.
pub const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "User",
    "WorkingDir",
    "Cmd",
    "Entrypoint",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "Healthcheck",
    "StopSignal",
    "Shell",
    "OnBuild",
    "ArgsEscaped",
];

/// The top-level fields that [`compare_configs`] compares.
pub const PLATFORM_FIELDS: &[&str] = &["os", "architecture", "variant"];

fn get_present<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn show_json(v: Option<&Value>) -> String {
    match v {
        Some(v) => serde_json::to_string(v).unwrap_or_else(|_| v.to_string()),
        None => "<absent>".to_owned(),
    }
}

/// Compares image configs on [`CONFIG_FIELDS`] and [`PLATFORM_FIELDS`].
pub fn compare_configs(left: &Value, right: &Value) -> Report {
    compare_config_fields(left, right, CONFIG_FIELDS, PLATFORM_FIELDS)
}

/// Compares image configs on chosen fields: `config_fields` under `config`,
/// `top_fields` at the top level. `null` counts as absent.
pub fn compare_config_fields(
    left: &Value,
    right: &Value,
    config_fields: &[&str],
    top_fields: &[&str],
) -> Report {
    let mut out = Report::new("config");
    let lc = left.get("config").unwrap_or(&Value::Null);
    let rc = right.get("config").unwrap_or(&Value::Null);
    for field in config_fields {
        let (a, b) = (get_present(lc, field), get_present(rc, field));
        if a != b {
            out.push("config", field, show_json(a), show_json(b));
        }
    }
    for field in top_fields {
        let (a, b) = (get_present(left, field), get_present(right, field));
        if a != b {
            out.push("", field, show_json(a), show_json(b));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::LayerBuilder;
    use serde_json::json;
    use tar::EntryType;

    fn model(layers: &[Vec<u8>]) -> FsModel {
        let mut m = FsModel::new();
        for l in layers {
            m.apply_layer(&l[..]).unwrap();
        }
        m
    }

    fn base() -> LayerBuilder {
        let mut l = LayerBuilder::new();
        l.dir("etc", 0o755)
            .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644)
            .file("bin/busybox", b"bb", 0o755)
            .hardlink("bin/sh", "bin/busybox")
            .symlink("bin/ls", "busybox")
            .device("dev/null", EntryType::Char, 0o666, 1, 3)
            .file_pax(
                "ping",
                b"p",
                0o755,
                &[
                    ("SCHILY.xattr.security.capability", b"\x01\x02"),
                    ("SCHILY.xattr.user.a", b"1"),
                ],
            );
        l
    }

    #[test]
    fn equal_models_give_an_empty_report() {
        let a = model(&[base().finish()]);
        let b = model(&[base().finish()]);
        let r = compare_fs(&a, &b, &CompareOptions::new());
        assert!(r.is_empty(), "{r}");
        assert_eq!(r.to_string(), "filesystem: left and right are equal");
        r.assert_empty();
    }

    #[test]
    fn squashed_and_layered_forms_of_one_tree_are_equal() {
        // Two layers (add, then delete and change) against the single layer
        // that a squash of them would give.
        let mut l1 = base();
        l1.file("tmp/junk", b"j", 0o644)
            .file("etc/motd", b"v1", 0o644);
        let mut l2 = LayerBuilder::new();
        l2.whiteout("tmp/junk").file("etc/motd", b"v2", 0o644);
        let layered = model(&[l1.finish(), l2.finish()]);
        let mut sq = base();
        sq.dir("tmp", 0o755).file("etc/motd", b"v2", 0o644);
        let squashed = model(&[sq.finish()]);
        compare_fs(&layered, &squashed, &CompareOptions::new()).assert_empty();
    }

    #[test]
    fn every_field_difference_is_reported() {
        let a = model(&[base().finish()]);
        let mut l = LayerBuilder::new();
        l.owner(1, 2)
            .dir("etc", 0o700)
            .owner(0, 0)
            .file("etc/passwd", b"changed", 0o4644)
            .file("bin/busybox", b"bb", 0o755)
            .file("bin/sh", b"bb", 0o755)
            .symlink("bin/ls", "toybox")
            .device("dev/null", EntryType::Char, 0o666, 1, 5)
            .file_pax(
                "ping",
                b"p",
                0o755,
                &[
                    ("SCHILY.xattr.user.a", b"2"),
                    ("SCHILY.xattr.user.b", b"\xff"),
                ],
            )
            .file("extra", b"", 0o644);
        let b = model(&[l.finish()]);
        let r = compare_fs(&a, &b, &CompareOptions::new()).with_names("plain", "squashed");
        let text = r.to_string();
        let expect = |path: &str, field: &str, left: &str, right: &str| {
            let d = r
                .find(path, field)
                .unwrap_or_else(|| panic!("no {path} {field} in\n{text}"));
            assert_eq!(
                (d.left.as_str(), d.right.as_str()),
                (left, right),
                "{path} {field}"
            );
        };
        expect("/etc", "mode", "0755", "0700");
        expect("/etc", "uid", "0", "1");
        expect("/etc", "gid", "0", "2");
        expect("/etc/passwd", "mode", "0644", "4644");
        expect("/etc/passwd", "size", "26", "7");
        expect("/bin/ls", "symlink_target", "busybox", "toybox");
        expect("/dev/null", "device", "1,3", "1,5");
        expect("/ping", "capability", "0102", "-");
        expect("/ping", "xattr:user.a", "\"1\"", "\"2\"");
        expect("/ping", "xattr:user.b", "-", "\"\\xff\"");
        expect("/bin/sh", "hardlinks", "[/bin/busybox, /bin/sh]", "-");
        expect("/bin/busybox", "hardlinks", "[/bin/busybox, /bin/sh]", "-");
        expect("/extra", "presence", "absent", "file");
        assert!(r.find("/etc/passwd", "sha256").is_some());
        // Implicit parents (bin, dev) are equal on both sides.
        assert!(r.at("/bin").is_empty(), "{text}");
        assert!(text.contains("(plain != squashed)"), "{text}");
        assert!(text.contains("/etc mode: 0755 != 0700"), "{text}");
        // Mtimes are equal here; nothing else should be reported.
        assert_eq!(r.len(), 14, "{text}");
    }

    #[test]
    fn presence_on_the_left_only() {
        let a = model(&[base().finish()]);
        let b = FsModel::new();
        let r = compare_fs(&a, &b, &CompareOptions::new());
        let d = r.find("/etc/passwd", "presence").unwrap();
        assert_eq!((d.left.as_str(), d.right.as_str()), ("file", "absent"));
        assert_eq!(r.find("/bin/ls", "presence").unwrap().left, "symlink");
    }

    #[test]
    fn mtimes_only_on_request() {
        let mut a = LayerBuilder::new();
        a.mtime(100).file("f", b"x", 0o644);
        let mut b = LayerBuilder::new();
        b.mtime(200).file("f", b"x", 0o644);
        let (a, b) = (model(&[a.finish()]), model(&[b.finish()]));
        assert!(compare_fs(&a, &b, &CompareOptions::new()).is_empty());
        let r = compare_fs(&a, &b, &CompareOptions::new().mtimes(true));
        assert_eq!(r.len(), 1, "{r}");
        let d = r.find("/f", "mtime").unwrap();
        assert_eq!((d.left.as_str(), d.right.as_str()), ("100", "200"));
    }

    #[test]
    fn ignored_paths_trees_and_fields() {
        let mut a = LayerBuilder::new();
        a.file("etc/hostname", b"a", 0o644)
            .file("var/cache/x", b"a", 0o644)
            .file("var/cache2", b"a", 0o644)
            .file("f", b"a", 0o644)
            .hardlink("g", "f")
            .file_pax("h", b"", 0o644, &[("SCHILY.xattr.user.q", b"1")]);
        let mut b = LayerBuilder::new();
        b.owner(5, 5)
            .file("etc/hostname", b"b", 0o644)
            .file("var/cache/y", b"b", 0o644)
            .file("var/cache2", b"b", 0o644)
            .file("f", b"a", 0o644)
            .file("h", b"", 0o644);
        let (a, b) = (model(&[a.finish()]), model(&[b.finish()]));
        let opts = CompareOptions::new()
            .ignore_path("/etc/hostname")
            .ignore_tree("/var/cache")
            .ignore_path("g")
            .ignore_field("uid")
            .ignore_field("gid")
            .ignore_field("xattrs");
        let r = compare_fs(&a, &b, &opts);
        // var/cache2 is not under /var/cache; the f/g group is not compared
        // once g is ignored.
        let paths: Vec<&str> = r.differences.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, vec!["/var/cache2"], "{r}");
        assert_eq!(r.differences[0].field, "sha256");
        // Without the options, all of it shows.
        let full = compare_fs(&a, &b, &CompareOptions::new());
        assert!(full.find("/etc/hostname", "sha256").is_some());
        assert!(full.find("/var/cache/x", "presence").is_some());
        assert!(full.find("/g", "presence").is_some());
        assert!(full.find("/f", "hardlinks").is_some());
        assert!(full.find("/h", "xattr:user.q").is_some());
        assert!(full.find("/f", "uid").is_some());
        // A field left out at one path: the group shows at g, not at f.
        let at = compare_fs(
            &a,
            &b,
            &CompareOptions::new().ignore_field_at("/f", "hardlinks"),
        );
        assert!(at.find("/f", "hardlinks").is_none(), "{at}");
        assert!(at.find("/f", "uid").is_some(), "{at}");
        assert!(at.find("/g", "presence").is_some(), "{at}");
    }

    #[test]
    fn non_utf8_paths_are_shown_escaped() {
        let mut a = LayerBuilder::new();
        a.file(b"caf\xe9", b"1", 0o644);
        let mut b = LayerBuilder::new();
        b.file(b"caf\xe9", b"2", 0o644);
        let r = compare_fs(
            &model(&[a.finish()]),
            &model(&[b.finish()]),
            &CompareOptions::new(),
        );
        assert_eq!(r.differences[0].path, "/caf\\xe9");
    }

    fn config() -> Value {
        json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/bin", "A=1"],
                "User": "app",
                "WorkingDir": "/app",
                "Cmd": ["run"],
                "Entrypoint": null,
                "Labels": {"a": "b"},
                "ExposedPorts": {"80/tcp": {}},
                "Volumes": {"/data": {}},
                "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000000000u64},
                "StopSignal": "SIGTERM",
                "Shell": ["/bin/bash", "-c"],
                "OnBuild": ["RUN x"],
                "ArgsEscaped": true
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:1", "sha256:2"]},
            "history": [{"created_by": "a"}, {"created_by": "b"}],
            "created": "2024-01-01T00:00:00Z"
        })
    }

    #[test]
    fn configs_equal_on_the_compared_fields() {
        let a = config();
        let mut b = config();
        // Not compared: rootfs, history, created.
        b["rootfs"]["diff_ids"] = json!(["sha256:3"]);
        b["history"] = json!([{"created_by": "squash"}]);
        b["created"] = json!("2025-01-01T00:00:00Z");
        // null and absent are the same.
        b["config"].as_object_mut().unwrap().remove("Entrypoint");
        let r = compare_configs(&a, &b);
        assert!(r.is_empty(), "{r}");
    }

    #[test]
    fn every_config_field_difference_is_reported() {
        let a = config();
        let b = json!({
            "architecture": "arm64",
            "variant": "v8",
            "os": "linux",
            "config": {
                "Env": ["A=1", "PATH=/bin"],
                "User": "root",
                "WorkingDir": "/",
                "Cmd": ["run", "x"],
                "Entrypoint": ["/init"],
                "Labels": {"a": "c"},
                "ExposedPorts": {"81/tcp": {}},
                "Volumes": {},
                "Healthcheck": {"Test": ["NONE"]},
                "StopSignal": "SIGKILL",
                "Shell": ["/bin/sh", "-c"],
                "OnBuild": null,
                "ArgsEscaped": false
            }
        });
        let r = compare_configs(&a, &b);
        let fields: Vec<&str> = r.differences.iter().map(|d| d.field.as_str()).collect();
        let mut expected: Vec<&str> = CONFIG_FIELDS.to_vec();
        expected.extend(["architecture", "variant"]);
        assert_eq!(fields, expected, "{r}");
        let env = r.find("config", "Env").unwrap();
        assert_eq!(env.left, r#"["PATH=/bin","A=1"]"#);
        assert_eq!(env.right, r#"["A=1","PATH=/bin"]"#);
        assert_eq!(r.find("config", "OnBuild").unwrap().right, "<absent>");
        assert_eq!(r.find("", "variant").unwrap().left, "<absent>");
        assert!(
            r.to_string().contains("config User: \"app\" != \"root\""),
            "{r}"
        );
        assert!(
            r.to_string()
                .contains("architecture: \"amd64\" != \"arm64\""),
            "{r}"
        );
    }

    #[test]
    #[should_panic(expected = "config: 1 difference(s)")]
    fn assert_empty_panics_with_the_report() {
        let a = config();
        let mut b = config();
        b["config"]["User"] = json!("nobody");
        compare_configs(&a, &b).assert_empty();
    }
}
