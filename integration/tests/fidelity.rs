//! Fidelity: the squashed image is the same image. Each scenario's Dockerfile
//! is built once plain and then squashed in every mode this store offers
//! (`full`; `base` with the auto method; on the containerd store also `base`
//! with `SQUASH_METHOD=sync`), and every squashed filesystem is compared with
//! the plain one entry by entry: path, type, all 12 mode bits, uid/gid, size,
//! content hash, symlink target, hardlink groups, `security.capability`,
//! other xattrs, device numbers; and the configs field by field.
//!
//! Scenarios are grouped into few Dockerfiles that do not interfere, to keep
//! the builds few. Every variant of a scenario is checked even when an
//! earlier one fails; the test then fails naming every failing variant.
//!
//! What BuildKit itself loses without our line (the layer tars it writes have
//! no entry for sockets and no xattr but `security.capability`) is asserted
//! on the plain image and compared like everything else: the squashed image
//! must do no worse.

mod common;

use std::time::Duration;

use common::start;
use integration::check::{assert_keeps_base, assert_same, assert_same_run, assert_squash_history};
use integration::compare::CompareOptions;
use integration::context::TestContext;
use integration::docker::{self, Buildx, BUILD_TIMEOUT};
use integration::fixtures::{BUSYBOX, DEBIAN, LAYERS};
use integration::fs::{FsModel, Kind};
use integration::image::{created_by, Image};
use integration::progress::{base_method_used, squash_lines};
use integration::scenario::{load_built_timed, squash_dockerfile, variants, Built, TagGuard};
use integration::show::{describe, human, indent};

/// Longest one squashed build of a fidelity scenario may take: a guard against a
/// pathological cost (the 1 GiB sparse file written out in full, a per-file cost
/// that explodes with 50,000 files), not a speed target; those are the
/// benchmark's. Such builds take 5 to 40 s here.
const SLOW_BUILD: Duration = Duration::from_secs(300);

/// A Dockerfile body (no syntax line), its context files and build arguments.
struct Fidelity<'a> {
    t: &'a str,
    body: &'a str,
    /// The image the final stage starts from (its layers are kept in base mode).
    base: &'a str,
    files: Vec<(&'a str, Vec<u8>, u32)>,
    args: Vec<&'a str>,
}

/// Builds `dockerfile` with `--load -t <tag> ARGS...`, saves, verifies and
/// models the image; returns it with the build's wall time.
#[track_caller]
fn build_side(f: &Fidelity<'_>, side: &str, dockerfile: &str, extra: &[&str]) -> (Built, Duration) {
    let context = TestContext::new(&format!("{}-{side}", f.t), dockerfile);
    for (rel, data, mode) in &f.files {
        context.write_mode(rel, data, *mode);
    }
    let mut args = f.args.clone();
    args.extend_from_slice(extra);
    load_built_timed(side, context, &args, None)
}

/// The socket the Debian scenario leaves behind.
const SOCKET: &str = "/x/socket";

/// Filesystem and config of `squashed` equal `plain`'s ([`assert_same`]), with what
/// this suite's scenarios hold to their own rules: no socket where the plain image has
/// none, and the hardlinks the build saw.
#[track_caller]
fn assert_same_variant(t: &str, label: &str, plain: &Built, squashed: &Built) {
    let mut opts = CompareOptions::new();
    // BuildKit's layers leave a socket out. So do both ways of our full mode (the engine's
    // diff; our in-build sync where the engine has no DiffOp); the FileOp copy, used only
    // without our own image's definition, would turn it into an empty file.
    if label == "full" && plain.fs.get(SOCKET).is_none() {
        assert!(
            squashed.fs.get(SOCKET).is_none(),
            "[{t}] {label}: {SOCKET} is in the squashed image but not in the plain one"
        );
    }
    if plain.fs.contains(LINKS_AT_BUILD) {
        assert_links_kept(t, label, plain, squashed);
        opts = opts.ignore_field("hardlinks");
    }
    assert_same(&format!("{t}: {label}"), plain, squashed, &opts);
}

/// `docker run` options of the containers the checks run: no network.
const OFFLINE: &[&str] = &["--network", "none"];

/// Where a scenario records the hardlink groups its build saw (one group per line, paths
/// separated by spaces), written by a last RUN step with `stat -c '%i %n'`.
const LINKS_AT_BUILD: &str = "/t/links-at-build";

/// Hardlinks made across layers. Which paths of a plain image share an inode is the store's
/// layer differ's doing (overlay copy-up): on the containerd store the plain image groups
/// `/t/hl-2` with `/t/hl-3` (their layer) and gives `/t/hl-4` and `/t/hl-base` inodes of
/// their own, while the build ended with hl-3 + hl-4 and hl-a + hl-base; the classic store's
/// plain image has the build's groups. The squashed image is held to the build's groups, as
/// recorded in [`LINKS_AT_BUILD`]: full mode has exactly them; base mode never joins paths
/// the build did not (a link from a new path to a file of a kept base layer cannot be
/// written without copying that file into the new layer, so it may be split). Every other
/// path's group is the plain image's. Contents and metadata are compared for every path.
#[track_caller]
fn assert_links_kept(t: &str, label: &str, plain: &Built, squashed: &Built) {
    let out = docker::run_ok(OFFLINE, &plain.tag, &["cat", LINKS_AT_BUILD]);
    let mut recorded = std::collections::BTreeMap::new();
    for line in out.lines() {
        let group: Vec<String> = line.split(' ').map(str::to_string).collect();
        for p in &group {
            recorded.insert(
                p.clone(),
                if group.len() > 1 {
                    group.clone()
                } else {
                    vec![]
                },
            );
        }
    }
    println!("[{t}] {label}: hardlink groups at build time: {recorded:?}");
    for path in plain.fs.paths() {
        let key = path.to_string();
        let group = |fs: &FsModel| names(&entry(fs, path.as_bytes()).hardlinks);
        let (p, s) = (group(&plain.fs), group(&squashed.fs));
        match recorded.get(&key) {
            Some(at_build) => {
                if label == "full" {
                    assert_eq!(&s, at_build, "[{t}] {label}: {key}: the build's links");
                } else {
                    assert!(
                        s.len() < 2 || s.iter().all(|x| at_build.contains(x)),
                        "[{t}] {label}: {key}: the squashed group {s:?} joins paths the build did not ({at_build:?})"
                    );
                }
                if p != s {
                    println!("[{t}] {label}: {key}: plain {p:?}, squashed {s:?}, at build time {at_build:?}");
                }
            }
            None => assert_eq!(p, s, "[{t}] {label}: {key}: hardlinks"),
        }
    }
}

/// Builds the scenario plain, checks the plain image with `check_plain` (so
/// that the scenario is known to contain what it claims), then squashes it in
/// every variant and compares. `check_squashed` runs on each squashed side.
#[track_caller]
fn fidelity(
    f: &Fidelity<'_>,
    check_plain: impl Fn(&Built),
    check_squashed: impl Fn(&str, &Built, &Built),
) {
    let t = f.t;
    let store = start(t);
    let base = docker::save(f.base);
    describe(t, "base           ", &base);
    let (plain, plain_time) = build_side(f, "plain", f.body, &[]);
    describe(t, "plain          ", &plain.image);
    println!("[{t}] plain build: {plain_time:.1?}");
    let guard = TagGuard(vec![plain.tag.clone()]);
    check_plain(&plain);
    let adds_layers = plain.image.layers.len() > base.layers.len();

    let mut failed = Vec::new();
    for v in variants(store) {
        let label = v.label;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let (squashed, elapsed) = build_side(f, label, &squash_dockerfile(f.body), v.args);
            let _g = TagGuard(vec![squashed.tag.clone()]);
            describe(t, &format!("{label:<15}"), &squashed.image);
            let stderr = &squashed.build.stderr;
            let used = v.method.map(|_| base_method_used(stderr));
            println!(
                "[{t}] {label}: built in {elapsed:.1?}; squash lines:\n{}",
                indent(&squash_lines(stderr))
            );
            assert!(
                elapsed < SLOW_BUILD,
                "[{t}] {label}: the squashed build took {elapsed:.1?} (limit {SLOW_BUILD:?})"
            );
            match (v.method, adds_layers) {
                (None, _) => {
                    assert_eq!(squashed.image.layers.len(), 1, "[{t}] {label}: one layer");
                    assert_squash_history(t, &plain.image, &squashed.image, 0);
                }
                (Some(method), true) => {
                    assert_eq!(used, Some(method), "[{t}] {label}: the squash method used");
                    assert_keeps_base(t, &base, &squashed.image);
                    assert_squash_history(t, &plain.image, &squashed.image, base.layers.len());
                }
                (Some(_), false) => {
                    // Nothing to squash on top of the base: returned as built.
                    assert_eq!(
                        squashed.image.diff_ids(),
                        plain.image.diff_ids(),
                        "[{t}] {label}: an image that adds no layer is returned as built"
                    );
                    let created = |img: &Image| -> Vec<String> {
                        img.history()
                            .iter()
                            .map(|h| created_by(h).to_string())
                            .collect()
                    };
                    assert_eq!(created(&squashed.image), created(&plain.image));
                }
            }
            assert_same_variant(t, label, &plain, &squashed);
            check_squashed(label, &plain, &squashed);
        }));
        if result.is_err() {
            failed.push(label);
        }
    }
    drop(guard);
    assert!(
        failed.is_empty(),
        "[{t}] squash variants that lost fidelity: {failed:?} (each one's report is printed above)"
    );
}

#[track_caller]
fn entry(fs: &FsModel, path: impl AsRef<[u8]>) -> integration::fs::Entry {
    let path = path.as_ref();
    fs.get(path).unwrap_or_else(|| {
        panic!(
            "{} is missing from the plain image",
            integration::fs::escape_bytes(path)
        )
    })
}

/// The harness's hardlink groups of `paths` (read from the image's layers) are the ones a
/// container of `tag` sees (same inode number in `stat`).
#[track_caller]
fn assert_links_as_a_container_sees_them(t: &str, tag: &str, fs: &FsModel, paths: &[&str]) {
    let mut args = vec!["stat", "-c", "%i %n"];
    args.extend_from_slice(paths);
    let out = docker::run_ok(OFFLINE, tag, &args);
    let inode: std::collections::BTreeMap<String, String> = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(i, n)| (n.to_string(), i.to_string()))
        .collect();
    for a in paths {
        let group = names(&entry(fs, a).hardlinks);
        println!(
            "[{t}] {a}: inode {} in a container; links in the layers {group:?}",
            inode[*a]
        );
        for b in paths.iter().filter(|b| *b != a) {
            assert_eq!(
                inode[*a] == inode[*b],
                group.iter().any(|p| p == b),
                "{a} and {b}: one inode in a container of {tag}, or not, as the layers say"
            );
        }
    }
}

fn names(paths: &[integration::fs::FsPath]) -> Vec<String> {
    paths.iter().map(ToString::to_string).collect()
}

// ---------------------------------------------------------------------------
// Tree changes across layers, special files, owners, modes, names
// ---------------------------------------------------------------------------

/// On the 4-layer base: deletions, replacements, an opaque directory over a
/// base directory, a file modified in three layers, hardlinks made across
/// layers and partly deleted (also into the base's hardlink pair), symlinks
/// of every kind, setuid/setgid/sticky, owners, a fifo, a char device, empty
/// directories, non-UTF-8, 255-byte and deep names.
const TREE: &str = r#"FROM squash-test/busybox-layers:latest
RUN mkdir -p /t/gone-dir/sub /t/dir-to-file /t/empty/nested/deeper /t/empty-later \
 && echo a > /t/gone-dir/sub/f \
 && echo transient > /t/added-then-deleted \
 && echo inner > /t/dir-to-file/inner \
 && echo was-a-file > /t/file-to-dir \
 && echo v1 > /t/modified && chmod 0644 /t/modified \
 && echo linked > /t/hl-1 \
 && echo extra > /base/dir/extra
RUN rm /t/added-then-deleted && rm -rf /t/gone-dir \
 && rm -rf /t/dir-to-file && echo now-a-file > /t/dir-to-file \
 && rm /t/file-to-dir && mkdir /t/file-to-dir && echo inside > /t/file-to-dir/inside \
 && echo v2 >> /t/modified \
 && ln /t/hl-1 /t/hl-2 && ln /t/hl-1 /t/hl-3 && ln /base/hl-a /t/hl-base
RUN rm -rf /base/dir && mkdir /base/dir && echo fresh > /base/dir/fresh \
 && echo v3 >> /t/modified && chown 1000:1001 /t/modified && chmod 0640 /t/modified \
 && rm /t/hl-1 && ln /t/hl-3 /t/hl-4 \
 && rm /base/hl-b && rm /base/big \
 && rmdir /t/empty-later && mkdir -m 0700 /t/empty-later
RUN ln -s ../t/modified /t/rel-link \
 && ln -s /t/modified /t/abs-link \
 && ln -s /does/not/exist /t/dangling \
 && ln -s loop-b /t/loop-a && ln -s loop-a /t/loop-b && ln -s self /t/self \
 && ln -s /t/file-to-dir /t/dir-link \
 && ln -s /t/modified /t/owned-link && chown -h 42:43 /t/owned-link \
 && cp /bin/busybox /t/suid && chmod 4755 /t/suid \
 && cp /bin/busybox /t/sgid && chmod 2711 /t/sgid \
 && echo both > /t/suid-sgid-owned && chown 1000:1000 /t/suid-sgid-owned && chmod 6750 /t/suid-sgid-owned \
 && mkdir /t/sticky && chmod 1777 /t/sticky \
 && mkdir /t/sgid-dir && chown 0:50 /t/sgid-dir && chmod 2775 /t/sgid-dir && echo in > /t/sgid-dir/f \
 && echo owned > /t/owned && chown 1234:5678 /t/owned \
 && mkdir /t/owned-dir && chown 65534:65534 /t/owned-dir && chmod 0700 /t/owned-dir \
 && echo big-ids > /t/big-ids && chown 3000000:4000000 /t/big-ids \
 && mkfifo -m 0620 /t/fifo && chown 7:8 /t/fifo \
 && if mknod -m 0666 /t/chardev c 1 3; then echo mknod-allowed; else echo mknod-refused > /t/mknod-refused; fi \
 && chmod 0000 /t/empty/nested \
 && touch "$(printf '/t/non-utf8-\377\376-\303\050')" \
 && mkdir "$(printf '/t/latin1-\351t\351')" && echo latin1 > "$(printf '/t/latin1-\351t\351/f\374r')" \
 && long=$(head -c 255 /dev/zero | tr '\0' L) && echo long > "/t/$long" \
 && ln -s "/t/$long" /t/long-link && ln "/t/$long" /t/long-hl \
 && deep=/t/deep && for i in $(seq 25); do deep="$deep/$(head -c 100 /dev/zero | tr '\0' d)$i"; done \
 && mkdir -p "$deep" && echo bottom > "$deep/f" && ln -s "$deep/f" /t/deep-link && ln "$deep/f" /t/deep-hl
RUN stat -c '%i %n' /t/hl-2 /t/hl-3 /t/hl-4 /t/hl-base /base/hl-a | sort -n \
 | awk '{ g[$1] = g[$1] " " $2 } END { for (i in g) print substr(g[i], 2) }' | sort > /t/links-at-build
ENV TREE=done
CMD ["sh", "-c", "cat /t/modified /t/dir-to-file /t/file-to-dir/inside /t/rel-link /base/dir/fresh; ls /base /base/dir"]
"#;

#[test]
fn fidelity_tree_changes_and_special_files() {
    let t = "fidelity_tree_changes_and_special_files";
    let f = Fidelity {
        t,
        body: TREE,
        base: LAYERS,
        files: vec![],
        args: vec![],
    };
    fidelity(
        &f,
        |plain| {
            let fs = &plain.fs;
            // What the scenario made, on the plain image (so a squash that
            // matches it is known to have kept each of these).
            for gone in [
                "/t/added-then-deleted",
                "/t/gone-dir",
                "/t/hl-1",
                "/base/hl-b",
                "/base/big",
                "/base/dir/one",
                "/base/dir/extra",
            ] {
                assert!(!fs.contains(gone), "{gone} should be gone");
            }
            assert_eq!(fs.children("/base/dir"), ["fresh"]);
            assert_eq!(entry(fs, "/t/dir-to-file").kind, Kind::File);
            assert_eq!(entry(fs, "/t/file-to-dir").kind, Kind::Dir);
            let m = entry(fs, "/t/modified");
            assert_eq!((m.mode, m.uid, m.gid, m.size), (0o640, 1000, 1001, 9));
            // Which of hl-2, hl-3, hl-4 share an inode depends on the store's layer differ
            // (overlay copy-up splits links made across layers): classic exports hl-3 + hl-4
            // together, containerd hl-2 + hl-3 with hl-4 alone. The harness's reading of
            // the layers must be what a container of the image sees; the squashed image
            // must then match it (compared with every other path below).
            assert_links_as_a_container_sees_them(
                t,
                &plain.tag,
                fs,
                &["/t/hl-2", "/t/hl-3", "/t/hl-4"],
            );
            println!(
                "[{t}] plain: /base/hl-a links {:?}, /t/long-hl links {}",
                names(&entry(fs, "/base/hl-a").hardlinks),
                entry(fs, "/t/long-hl").hardlinks.len()
            );
            let link = |p: &str| entry(fs, p).symlink_target.unwrap_or_default();
            assert_eq!(link("/t/rel-link"), b"../t/modified");
            assert_eq!(link("/t/abs-link"), b"/t/modified");
            assert_eq!(link("/t/dangling"), b"/does/not/exist");
            assert_eq!(link("/t/loop-a"), b"loop-b");
            assert_eq!(link("/t/self"), b"self");
            let ol = entry(fs, "/t/owned-link");
            assert_eq!((ol.uid, ol.gid), (42, 43), "symlink owner (lchown)");
            assert_eq!(entry(fs, "/t/suid").mode, 0o4755);
            assert_eq!(entry(fs, "/t/sgid").mode, 0o2711);
            let both = entry(fs, "/t/suid-sgid-owned");
            assert_eq!((both.mode, both.uid, both.gid), (0o6750, 1000, 1000));
            assert_eq!(entry(fs, "/t/sticky").mode, 0o1777);
            assert_eq!(entry(fs, "/t/sgid-dir").mode, 0o2775);
            let big = entry(fs, "/t/big-ids");
            assert_eq!(
                (big.uid, big.gid),
                (3_000_000, 4_000_000),
                "ids past tar's octal fields"
            );
            let fifo = entry(fs, "/t/fifo");
            assert_eq!(
                (fifo.kind, fifo.mode, fifo.uid, fifo.gid),
                (Kind::Fifo, 0o620, 7, 8)
            );
            match fs.get("/t/chardev") {
                Some(dev) => {
                    assert_eq!((dev.kind, dev.device), (Kind::Char, Some((1, 3))));
                    println!(
                        "[{t}] mknod c 1 3 is allowed in RUN: /t/chardev is a char device 1,3"
                    );
                }
                None => {
                    // BuildKit's RUN sandbox refused mknod: nothing to squash.
                    assert!(fs.contains("/t/mknod-refused"));
                    println!(
                        "[{t}] mknod c 1 3 is refused in RUN on this engine: no device to compare"
                    );
                }
            }
            assert_eq!(entry(fs, "/t/empty/nested").mode, 0o000);
            assert!(fs
                .children("/t/empty/nested")
                .contains(&"deeper".to_string()));
            assert_eq!(entry(fs, "/t/empty-later").mode, 0o700);
            assert!(fs.contains(b"/t/non-utf8-\xff\xfe-\xc3\x28"));
            assert!(fs.contains(b"/t/latin1-\xe9t\xe9/f\xfcr"));
            let long = format!("/t/{}", "L".repeat(255));
            assert_eq!(entry(fs, &long).hardlinks.len(), 2);
            let deep = entry(fs, "/t/deep-link").symlink_target.unwrap();
            println!(
                "[{t}] plain: deep path of {} bytes, {} paths in all",
                deep.len(),
                fs.len()
            );
            assert!(deep.len() > 2500);
            assert_eq!(entry(fs, &deep).hardlinks.len(), 2);
        },
        |label, plain, squashed| {
            // Nothing but the config decides what runs: same output.
            if label == "full" {
                assert_same_run(t, plain, squashed, &[]);
            }
        },
    );
}

// ---------------------------------------------------------------------------
// File capabilities, other xattrs, sockets: on Debian
// ---------------------------------------------------------------------------

/// `setxattr PATH NAME HEX`: setxattr(2) through perl's syscall(), as
/// `setfattr -n NAME -v 0xHEX PATH` would; a minbase Debian has neither
/// setfattr nor setcap, and perl-base needs no network.
const SETXATTR_PL: &str = r#"#!/usr/bin/perl
use strict;
use warnings;
my ($path, $name, $hex) = @ARGV;
chomp(my $machine = `uname -m`);
my %nr = (x86_64 => 188, aarch64 => 5);
my $nr = $nr{$machine} or die "setxattr: no syscall number for $machine\n";
my $value = pack("H*", $hex);
syscall($nr, $path, $name, $value, length($value), 0) == 0
  or die "setxattr $path $name: $!\n";
"#;

/// `vfs_cap_data` revision 2 for `cap_net_bind_service+ep`, what
/// `setcap cap_net_bind_service+ep FILE` writes: magic 0x02000001
/// (revision 2, effective), permitted bit 10, nothing inheritable.
const CAP_NET_BIND_EP: &str = "0100000200040000000000000000000000000000";
/// `cap_net_raw+p` (bit 13, not effective).
const CAP_NET_RAW_P: &str = "0000000200200000000000000000000000000000";

const DEBIAN_XATTRS: &str = r#"FROM squash-test/debian:bookworm
COPY --chmod=0755 setxattr.pl /usr/local/bin/setxattr
RUN mkdir /x && cp /bin/true /x/cap-ep && cp /bin/true /x/cap-owned && chown 1000:1000 /x/cap-owned \
 && cp /bin/true /x/cap-hl && ln /x/cap-hl /x/cap-hl-2 \
 && cp /bin/true /x/cap-chmod-later \
 && echo data > /x/user-xattr \
 && setxattr /x/cap-ep security.capability CAP_EP \
 && setxattr /x/cap-owned security.capability CAP_P \
 && setxattr /x/cap-hl security.capability CAP_EP \
 && setxattr /x/cap-chmod-later security.capability CAP_EP \
 && setxattr /x/user-xattr user.squash-test 68656c6c6f \
 && perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Local => "/x/socket", Listen => 1) or die "socket: $!"' \
 && test -S /x/socket
RUN chmod 0700 /x/cap-chmod-later && cp /bin/true /x/cap-late && setxattr /x/cap-late security.capability CAP_EP \
 && rm -rf /usr/share/doc /etc/apt/apt.conf.d && mkdir /etc/apt/apt.conf.d && echo '// new' > /etc/apt/apt.conf.d/99new \
 && chmod 0700 /usr/bin/perl5.36.0 \
 && echo changed > /etc/hostname-marker && rm /etc/debian_version
CMD ["ls", "-l", "/x"]
"#;

#[test]
fn fidelity_capabilities_xattrs_sockets_on_debian() {
    let t = "fidelity_capabilities_xattrs_sockets_on_debian";
    let body = DEBIAN_XATTRS
        .replace("CAP_EP", CAP_NET_BIND_EP)
        .replace("CAP_P", CAP_NET_RAW_P);
    let f = Fidelity {
        t,
        body: &body,
        base: DEBIAN,
        files: vec![("setxattr.pl", SETXATTR_PL.as_bytes().to_vec(), 0o755)],
        args: vec![],
    };
    let cap = |hex: &str| Some(hex::decode(hex).unwrap());
    fidelity(
        &f,
        |plain| {
            let fs = &plain.fs;
            for p in [
                "/x/cap-ep",
                "/x/cap-hl",
                "/x/cap-hl-2",
                "/x/cap-chmod-later",
                "/x/cap-late",
            ] {
                assert_eq!(
                    entry(fs, p).capability,
                    cap(CAP_NET_BIND_EP),
                    "{p}: security.capability in the plain image"
                );
            }
            let owned = entry(fs, "/x/cap-owned");
            assert_eq!(owned.capability, cap(CAP_NET_RAW_P));
            assert_eq!((owned.uid, owned.gid), (1000, 1000));
            assert_eq!(entry(fs, "/x/cap-chmod-later").mode, 0o700);
            // BuildKit's layer tars carry no xattr but security.capability
            // and no socket entry: the plain image has lost both already.
            let ux = entry(fs, "/x/user-xattr");
            println!(
                "[{t}] plain: /x/user-xattr xattrs {:?} (BuildKit keeps only security.capability); /x/socket present: {}",
                ux.xattrs.keys().collect::<Vec<_>>(),
                fs.contains("/x/socket")
            );
            assert!(
                ux.xattrs.is_empty(),
                "BuildKit now keeps user xattrs: {:?}",
                ux.xattrs
            );
            assert!(!fs.contains("/x/socket"), "BuildKit now keeps sockets");
            assert!(!fs.contains("/usr/share/doc"));
            assert_eq!(fs.children("/etc/apt/apt.conf.d"), ["99new"]);
            let perl = entry(fs, "/usr/bin/perl5.36.0");
            println!(
                "[{t}] plain: /usr/bin/perl5.36.0 mode {:o}, hardlinks {:?}; /usr/bin/perl mode {:o}",
                perl.mode,
                names(&perl.hardlinks),
                entry(fs, "/usr/bin/perl").mode
            );
        },
        |_, _, _| {},
    );
}

// ---------------------------------------------------------------------------
// A sparse 1 GiB file
// ---------------------------------------------------------------------------

/// Every path of a container's root filesystem (other mounts and the files
/// the engine bind-mounts left out) with type, mode, owner and size, then the
/// MD5 of every file under /sparse: computed inside the container. MD5, not
/// SHA-256: the hash only tells a changed byte from none, and busybox's MD5
/// reads the 1 GiB file in 2.4 s of CPU where its SHA-256 takes 7.2 s (Docker
/// 26.1 here), once per image.
const LIST_IN_CONTAINER: &str = "find / -xdev \\( -path /etc/hosts -o -path /etc/hostname -o -path /etc/resolv.conf \\) -prune -o -exec stat -c '%n|%F|%a|%u|%g|%s' {} + | sort && cd /sparse && md5sum *";

/// `LIST_IN_CONTAINER` in a container of `tag`.
#[track_caller]
fn list_in_container(tag: &str) -> String {
    docker::run_ok(OFFLINE, tag, &["sh", "-c", LIST_IN_CONTAINER])
}

/// `docker image inspect`'s layer diffIDs and size.
fn inspect_layers(tag: &str) -> (Vec<String>, u64) {
    let v = docker::inspect(tag);
    let layers = v["RootFS"]["Layers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (layers, v["Size"].as_u64().unwrap_or(0))
}

/// A sparse 1 GiB file (`truncate`, with data at the start, in the middle and
/// at the very end) and a `dd seek` one. Compared inside containers, with the
/// image's own `find`, `stat` and `md5sum`: what a container reads back,
/// without saving each image and reading its layer tars, which hold the
/// 1 GiB of zeros in full.
#[test]
fn fidelity_sparse_1g_file() {
    let t = "fidelity_sparse_1g_file";
    let store = start(t);
    let body = r#"FROM squash-test/busybox:latest
RUN mkdir /sparse && truncate -s 1G /sparse/one-gib \
 && echo head | dd of=/sparse/one-gib conv=notrunc 2>/dev/null \
 && echo middle | dd of=/sparse/one-gib bs=1M seek=512 conv=notrunc 2>/dev/null \
 && printf tail | dd of=/sparse/one-gib bs=1 seek=1073741820 conv=notrunc 2>/dev/null \
 && dd if=/dev/zero of=/sparse/dd-seek bs=1 count=1 seek=16777215 2>/dev/null \
 && ls -ls /sparse
RUN echo later > /sparse/later
"#;
    let (base_layers, _) = inspect_layers(BUSYBOX);
    let build = |label: &str, dockerfile: &str, args: &[&str]| {
        let ctx = TestContext::new(&format!("{t}-{label}"), dockerfile);
        let tag = ctx.tag(label);
        let run = Buildx::new(ctx.path())
            .args(&["--load", "-t", &tag])
            .args(args)
            .timeout(BUILD_TIMEOUT)
            .run();
        let guard = TagGuard(vec![tag.clone()]);
        assert!(
            run.out.success(),
            "[{t}] the {label} build failed:\n{}",
            run.out
        );
        let (layers, size) = inspect_layers(&tag);
        let listing = list_in_container(&tag);
        println!(
            "[{t}] {label:<9}: built in {:.1?}; {} layer(s), {} (docker image inspect .Size)",
            run.elapsed,
            layers.len(),
            human(size)
        );
        (guard, run, layers, listing)
    };
    let (_plain_guard, _, plain_layers, plain_listing) = build("plain", body, &[]);
    let sparse: Vec<&str> = plain_listing
        .lines()
        .filter(|l| l.contains("/sparse") || l.contains("  "))
        .collect();
    println!(
        "[{t}] plain: {}\n{}",
        plain_listing.lines().count(),
        indent(&sparse.join("\n"))
    );
    assert!(
        plain_listing.contains("/sparse/one-gib|regular file|644|0|0|1073741824\n"),
        "{plain_listing}"
    );
    assert!(plain_listing.contains("/sparse/dd-seek|regular file|644|0|0|16777216\n"));
    assert_eq!(plain_layers.len(), base_layers.len() + 2);

    let mut failed = Vec::new();
    for v in variants(store) {
        let label = v.label;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let (_g, run, layers, listing) = build(label, &squash_dockerfile(body), v.args);
            assert!(
                run.elapsed < SLOW_BUILD,
                "[{t}] {label}: the squashed build took {:.1?}",
                run.elapsed
            );
            match v.method {
                None => assert_eq!(layers.len(), 1, "[{t}] {label}: one layer"),
                Some(method) => {
                    assert_eq!(base_method_used(&run.out.stderr), method);
                    assert_eq!(layers.len(), base_layers.len() + 1);
                    assert_eq!(layers[..base_layers.len()], base_layers[..]);
                }
            }
            assert_eq!(
                listing, plain_listing,
                "[{t}] {label}: the squashed filesystem (paths, types, modes, owners, sizes, /sparse MD5s) differs"
            );
            println!(
                "[{t}] {label}: the same {} paths, sizes and /sparse MD5s",
                listing.lines().count()
            );
        }));
        if result.is_err() {
            failed.push(label);
        }
    }
    assert!(
        failed.is_empty(),
        "[{t}] squash variants that lost fidelity: {failed:?}"
    );
}

// ---------------------------------------------------------------------------
// 50,000 small files
// ---------------------------------------------------------------------------

#[test]
fn fidelity_fifty_thousand_files() {
    let t = "fidelity_fifty_thousand_files";
    let body = r#"FROM squash-test/busybox:latest
RUN mkdir /many && cd /many && seq -w 1 50000 | sed 's/^/f/' | xargs touch && echo first > f00001 && ls | wc -l
RUN cd /many && seq -w 7 7 50000 | sed 's/^/f/' | xargs rm && echo later > f00002 && ls | wc -l
"#;
    let f = Fidelity {
        t,
        body,
        base: BUSYBOX,
        files: vec![],
        args: vec![],
    };
    fidelity(
        &f,
        |plain| {
            let n = plain.fs.children("/many").len();
            println!(
                "[{t}] plain: {n} files in /many, {} paths in all",
                plain.fs.len()
            );
            assert_eq!(n, 50_000 - 50_000 / 7);
        },
        |_, _, _| {},
    );
}

// ---------------------------------------------------------------------------
// An ENV-only Dockerfile on a multi-layer base
// ---------------------------------------------------------------------------

#[test]
fn fidelity_env_only_on_multi_layer_base() {
    let t = "fidelity_env_only_on_multi_layer_base";
    let body = "FROM squash-test/busybox-layers:latest\nENV ONLY_ENV=yes\nENV SECOND=2\n";
    let f = Fidelity {
        t,
        body,
        base: LAYERS,
        files: vec![],
        args: vec![],
    };
    fidelity(
        &f,
        |plain| assert_eq!(plain.image.layers.len(), 4),
        |label, _, squashed| {
            let expect = if label == "full" { 1 } else { 4 };
            assert_eq!(squashed.image.layers.len(), expect, "{label}");
        },
    );
}
