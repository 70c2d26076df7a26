//! Walking a mounted tree inside the build (our `inspect`, `sync` and `account` steps),
//! without following a symlink and without reading a byte of any file: what the squash checks
//! before it writes a layer, and the filesystems its report counts ([`account`]).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::report::{self, Accounting, AccountingError, Entry, Kind, Listing, Touched};

/// Why a tree could not be walked.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct ScanError {
    /// Where the walk failed.
    pub path: PathBuf,
    /// What the system said.
    #[source]
    pub source: std::io::Error,
}

/// Every path below `root` with what `lstat` says of it (the root itself left out). A missing
/// `root` is an empty filesystem (a build from scratch mounts nothing there).
pub fn listing(root: &Path) -> Result<Listing, ScanError> {
    let mut out = Listing::new();
    if !root.exists() {
        return Ok(out);
    }
    add_below(&mut out, root, &[], None)?;
    Ok(out)
}

/// Adds every path below `root/rel` (a directory) to `out`, keyed `rel/...` (and each key to
/// `touched`, where given).
fn add_below(
    out: &mut Listing,
    root: &Path,
    rel: &[u8],
    mut touched: Option<&mut Touched>,
) -> Result<(), ScanError> {
    let top = root.join(std::ffi::OsStr::from_bytes(rel));
    for entry in walkdir::WalkDir::new(&top).follow_links(false).min_depth(1) {
        let entry = entry.map_err(|e| walk_error(&top, e))?;
        let m = entry.metadata().map_err(|e| walk_error(&top, e))?;
        let key = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let key = key.as_os_str().as_bytes().to_vec();
        if let Some(touched) = touched.as_deref_mut() {
            touched.insert(key.clone());
        }
        out.insert(key, entry_of(entry.path(), &m)?);
    }
    Ok(())
}

/// What `lstat` (`m`) says of `path`, with a symlink's target read.
fn entry_of(path: &Path, m: &std::fs::Metadata) -> Result<Entry, ScanError> {
    let t = m.file_type();
    let kind = if t.is_file() {
        Kind::File
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_symlink() {
        Kind::Symlink
    } else {
        Kind::Other
    };
    let target = if t.is_symlink() {
        std::fs::read_link(path)
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .map_err(|e| ScanError {
                path: path.to_path_buf(),
                source: e,
            })?
    } else if t.is_char_device() || t.is_block_device() {
        m.rdev().to_le_bytes().to_vec()
    } else {
        vec![]
    };
    Ok(Entry {
        kind,
        size: if kind == Kind::File { m.size() } else { 0 },
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: (m.mtime(), m.mtime_nsec() as u32),
        inode: (m.dev(), m.ino()),
        nlink: m.nlink(),
        target,
    })
}

/// The listing of `root` where it can differ from `before` only in the paths `changed` holds
/// (BuildKit's diff from `before`'s filesystem to this one, mounted; see `treesync::Changed`):
/// `before`, with each directory `changed` holds read again (the names it lost removed with
/// everything below them) and each entry `changed` holds stat'ed again. A name a directory
/// has that `before` lacks is read even outside `changed`. Equals [`listing`] of `root`
/// whenever the premise holds; nothing else is read. With it, the paths it read again or
/// removed: outside them it is `before`.
pub fn listing_changed(
    before: &Listing,
    root: &Path,
    changed: &treesync::Changed,
) -> Result<(Listing, Touched), ScanError> {
    if !root.exists() {
        return Ok((Listing::new(), before.keys().cloned().collect()));
    }
    let mut out = Patch {
        listing: before.clone(),
        touched: Touched::new(),
    };
    patch_dir(&mut out, root, &[], changed)?;
    Ok((out.listing, out.touched))
}

/// A listing being patched, and the paths patched so far.
struct Patch {
    listing: Listing,
    touched: Touched,
}

/// [`listing_changed`] in the directory `root/rel`, present in `root`.
fn patch_dir(
    out: &mut Patch,
    root: &Path,
    rel: &[u8],
    changed: &treesync::Changed,
) -> Result<(), ScanError> {
    let here = root.join(std::ffi::OsStr::from_bytes(rel));
    let io = |e| ScanError {
        path: here.clone(),
        source: e,
    };
    let mut now = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&here).map_err(io)? {
        now.insert(entry.map_err(io)?.file_name().as_bytes().to_vec());
    }
    let key = |name: &[u8]| -> Vec<u8> {
        if rel.is_empty() {
            name.to_vec()
        } else {
            [rel, b"/", name].concat()
        }
    };
    // The names the directory had: those it lost go, with everything below them.
    let had: std::collections::BTreeSet<Vec<u8>> =
        children(&out.listing, rel).map(<[u8]>::to_vec).collect();
    for name in had.difference(&now) {
        remove_below(out, &key(name), true);
    }
    for name in &now {
        let sub = changed.node(name);
        if sub.is_none() && had.contains(name) {
            continue;
        }
        let child = key(name);
        let path = root.join(std::ffi::OsStr::from_bytes(&child));
        let m = std::fs::symlink_metadata(&path).map_err(|e| ScanError {
            path: path.clone(),
            source: e,
        })?;
        let entry = entry_of(&path, &m)?;
        let was_dir = out.listing.get(&child).is_some_and(|e| e.kind == Kind::Dir);
        let is_dir = entry.kind == Kind::Dir;
        out.listing.insert(child.clone(), entry);
        out.touched.insert(child.clone());
        match (was_dir, is_dir, sub) {
            // Still a directory, with changes below it named.
            (true, true, Some(sub)) => patch_dir(out, root, &child, sub)?,
            // A directory now that was none (or is new): all of it is new.
            (false, true, _) => add_below(&mut out.listing, root, &child, Some(&mut out.touched))?,
            // No longer a directory: nothing below it.
            (true, false, _) => remove_below(out, &child, false),
            _ => {}
        }
    }
    Ok(())
}

/// The names directly below `rel` (the root for empty) in `listing`.
fn children<'a>(listing: &'a Listing, rel: &[u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let prefix: Vec<u8> = if rel.is_empty() {
        Vec::new()
    } else {
        [rel, b"/"].concat()
    };
    let skip = prefix.len();
    listing
        .range(prefix.clone()..)
        .take_while(move |(k, _)| k.starts_with(&prefix))
        .map(move |(k, _)| &k[skip..])
        .filter(|rest| !rest.contains(&b'/'))
}

/// Removes everything below `key` from the listing (and `key` itself with `itself`).
fn remove_below(out: &mut Patch, key: &[u8], itself: bool) {
    if itself && out.listing.remove(key).is_some() {
        out.touched.insert(key.to_vec());
    }
    let prefix = [key, b"/"].concat();
    let below: Vec<Vec<u8>> = out
        .listing
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in below {
        out.listing.remove(&k);
        out.touched.insert(k);
    }
}

fn walk_error(root: &Path, e: walkdir::Error) -> ScanError {
    ScanError {
        path: e.path().unwrap_or(root).to_path_buf(),
        source: e
            .into_io_error()
            .unwrap_or_else(|| std::io::Error::other("walk failed")),
    }
}

/// Why the filesystems a report request names could not be accounted for.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A filesystem could not be walked.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// The saved accounting could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The saved accounting's file.
        path: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The saved accounting does not read.
    #[error(transparent)]
    Load(#[from] AccountingError),
    /// The reading of the filesystems stopped before this step's (it does not, short of a
    /// crash of that thread).
    #[error("the filesystems stopped being read before the one after {step}")]
    Stopped {
        /// The step whose filesystem was not read.
        step: String,
    },
    /// The saved accounting and the request disagree on how many steps it covers.
    #[error(
        "the saved accounting covers {saved} steps, the report request says {said} of {steps}"
    )]
    Resume {
        /// Steps the saved accounting covers.
        saved: usize,
        /// Steps the request says it covers.
        said: usize,
        /// Steps the request names.
        steps: usize,
    },
}

/// The accounting of the steps `request` names: each step's filesystem (mounted at
/// `<states>/<k>`) read in turn, from the base's (`<states>/base`), or from a saved accounting
/// of the first ones ([`report::Request::resume`]). The next filesystem is read while the last
/// one is counted (never more than one ahead).
pub fn account(request: &report::Request) -> Result<Accounting, AccountError> {
    let states = Path::new(&request.states);
    let count = request.steps.len();
    let first = request.resume.as_ref().map_or(0, |r| r.steps);
    let mismatch = |saved| AccountError::Resume {
        saved,
        said: first,
        steps: count,
    };
    if first > count {
        return Err(mismatch(first));
    }
    if request.changed {
        return account_changed(request, first, mismatch);
    }
    std::thread::scope(|s| {
        let (listed, next) = std::sync::mpsc::sync_channel(0);
        s.spawn(move || {
            for k in first..count {
                let listing = listing(&states.join((k + 1).to_string()));
                let failed = listing.is_err();
                // The other side stops taking when it fails itself.
                if listed.send(listing).is_err() || failed {
                    break;
                }
            }
        });
        let mut accounting = started(request, first, &mismatch)?;
        for name in &request.steps[first..] {
            let listing = next
                .recv()
                .map_err(|_| AccountError::Stopped { step: name.clone() })?;
            accounting.step(name, listing?);
        }
        Ok(accounting)
    })
}

/// The accounting of the first `first` steps: the saved one, or the base's filesystem read.
fn started(
    request: &report::Request,
    first: usize,
    mismatch: &impl Fn(usize) -> AccountError,
) -> Result<Accounting, AccountError> {
    let accounting = match &request.resume {
        Some(resume) => {
            let bytes = std::fs::read(&resume.file).map_err(|source| AccountError::Read {
                path: resume.file.clone(),
                source,
            })?;
            Accounting::load(&bytes)?
        }
        None => Accounting::new(
            listing(&Path::new(&request.states).join("base"))?,
            request.squash,
        )
        .with_split(request.split.clone()),
    };
    if accounting.steps_read() != first {
        return Err(mismatch(accounting.steps_read()));
    }
    Ok(accounting)
}

/// [`account`] where each filesystem after the first `first` steps' comes with its diff from
/// the one before ([`report::Request::changed`]): read in turn, each from the last.
fn account_changed(
    request: &report::Request,
    first: usize,
    mismatch: impl Fn(usize) -> AccountError,
) -> Result<Accounting, AccountError> {
    let states = Path::new(&request.states);
    let mut accounting = started(request, first, &mismatch)?;
    for (k, name) in request.steps.iter().enumerate().skip(first) {
        let diff = states.join(format!("{}.changed", k + 1));
        let changed = treesync::Changed::read(&[&diff]).map_err(|e| ScanError {
            path: diff.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let (listing, touched) = listing_changed(
            accounting.last(),
            &states.join((k + 1).to_string()),
            &changed,
        )?;
        accounting.step_touched(name, listing, &touched);
    }
    Ok(accounting)
}

/// The paths of `listing` (as absolute paths of the image) whose names start with
/// [`WHITEOUT_PREFIX`].
pub fn reserved(listing: &Listing) -> Vec<String> {
    listing
        .keys()
        .filter(|p| {
            let name = p.rsplit(|b| *b == b'/').next().unwrap_or(p);
            name.starts_with(WHITEOUT_PREFIX)
        })
        .map(|p| format!("/{}", String::from_utf8_lossy(p)))
        .collect()
}

/// The prefix image layers reserve for whiteouts (OCI image spec, layer.md, "Whiteouts"): an
/// entry named `.wh.<name>` deletes `<name>`, and `.wh..wh..opq` makes its directory opaque.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// The exit code of our in-build steps when the build made something no image layer can hold;
/// the flow tells the user to read the step's output, where [`refusal`] names the paths.
pub const EXIT_UNREPRESENTABLE: u8 = 3;

/// What our in-build step says when the finished tree holds `reserved` names (one line), or
/// `None` when it holds none.
pub fn refusal(reserved: &[String]) -> Option<String> {
    let (first, rest) = reserved.split_first()?;
    let more = match rest.len() {
        0 => String::new(),
        1 => format!(" and {}", rest[0]),
        n => format!(" and {n} more such paths"),
    };
    Some(format!(
        "the build made {first}{more}; image layers reserve names that start with .wh. for whiteouts (OCI image spec, layer whiteouts), so every store would hide a file next to it instead of holding this one: rename it"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_listing_from_the_changed_paths_equals_one_read_whole() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let w = |p: &str, data: &[u8]| std::fs::write(r.join(p), data).unwrap();
        for d in ["etc", "var/gone/deep", "usr/lib", "opt/was-dir"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        w("etc/conf", b"v1");
        w("etc/old", b"old");
        w("var/gone/deep/f", b"f");
        w("usr/lib/x", b"x");
        w("opt/was-file", b"file");
        w("opt/was-dir/f", b"f");
        let before = listing(r).unwrap();
        // A later step: a new file, a rewrite, a file and a tree deleted, a file made a
        // directory and a directory made a file.
        w("etc/conf", b"version 2");
        w("etc/new", b"new");
        std::fs::remove_file(r.join("etc/old")).unwrap();
        std::fs::remove_dir_all(r.join("var/gone")).unwrap();
        std::fs::remove_file(r.join("opt/was-file")).unwrap();
        std::fs::create_dir_all(r.join("opt/was-file/sub")).unwrap();
        w("opt/was-file/sub/g", b"g");
        std::fs::remove_dir_all(r.join("opt/was-dir")).unwrap();
        w("opt/was-dir", b"now a file");
        // What BuildKit's diff holds: the changed paths and the directories above deletions.
        let mut changed = treesync::Changed::default();
        for p in [
            "etc/conf",
            "etc/new",
            "var",
            "opt/was-file/sub/g",
            "opt/was-dir",
        ] {
            changed.insert(p);
        }
        let (seen, touched) = listing_changed(&before, r, &changed).unwrap();
        let after = listing(r).unwrap();
        assert_eq!(seen, after);
        // Every path that differs is touched, and the rest of the tree is not.
        let differs: Touched = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .cloned()
            .collect();
        assert!(differs.is_subset(&touched), "{differs:?} in {touched:?}");
        assert!(!touched.contains(b"usr/lib/x".as_slice()));
        for gone in [
            "var/gone",
            "var/gone/deep",
            "var/gone/deep/f",
            "opt/was-dir/f",
        ] {
            assert!(touched.contains(gone.as_bytes()), "{gone}");
        }
        // Outside the changed paths nothing is read: a change there is not seen.
        w("usr/lib/x", b"a change nobody named");
        let (seen, _) = listing_changed(&before, r, &changed).unwrap();
        assert_eq!(
            seen.get(b"usr/lib/x".as_slice()),
            before.get(b"usr/lib/x".as_slice())
        );
        assert_ne!(seen, listing(r).unwrap());
        // ...but in a directory read again, a name it gained is read, named or not.
        w("usr/lib/y", b"y");
        let (seen, touched) = listing_changed(&before, r, &treesync::Changed::default()).unwrap();
        assert!(!seen.contains_key(b"usr/lib/y".as_slice()));
        assert!(touched.is_empty());
        let mut lib = treesync::Changed::default();
        lib.insert("usr/lib");
        let (seen, touched) = listing_changed(&before, r, &lib).unwrap();
        assert!(seen.contains_key(b"usr/lib/y".as_slice()));
        assert!(touched.contains(b"usr/lib/y".as_slice()));
        let (gone, touched) = listing_changed(&before, &r.join("missing"), &changed).unwrap();
        assert_eq!(gone, Listing::new());
        assert!(touched.iter().eq(before.keys()));
    }

    fn listing_or_empty(root: &Path) -> bool {
        listing(root).unwrap().is_empty()
    }

    #[test]
    fn finds_reserved_names_anywhere_and_follows_no_symlink() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("opt/keep")).unwrap();
        std::fs::write(root.join("opt/keep/a"), b"a").unwrap();
        std::fs::write(root.join("opt/keep/.wh.a"), b"").unwrap();
        std::fs::create_dir_all(root.join("var/.wh..wh..opq")).unwrap();
        std::fs::write(root.join("x.wh.y"), b"").unwrap();
        // A symlink to a tree holding such a name is not followed.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join(".wh.z"), b"").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        let listing = listing(root).unwrap();
        assert_eq!(reserved(&listing), ["/opt/keep/.wh.a", "/var/.wh..wh..opq"]);
        assert!(
            !listing.contains_key(&b"link/.wh.z"[..]),
            "a symlink is not followed"
        );
        let link = &listing[&b"link"[..]];
        assert_eq!(link.kind, Kind::Symlink);
        assert_eq!(link.target, outside.path().as_os_str().as_bytes());
        let a = &listing[&b"opt/keep/a"[..]];
        assert_eq!((a.kind, a.size), (Kind::File, 1));
        // A filesystem nobody mounted (a build from scratch) is empty.
        assert!(listing_or_empty(&root.join("missing")));
    }

    /// A request over `states` for the steps named.
    fn request(states: &Path, steps: &[&str], split: Option<report::SplitAt>) -> report::Request {
        report::Request {
            squash: report::Squash::Base { layers: 1 },
            layers_before: steps.len() + 1,
            states: states.to_string_lossy().into_owned(),
            steps: steps.iter().map(|s| s.to_string()).collect(),
            top: 10,
            min_saving: None,
            split,
            resume: None,
            changed: false,
        }
    }

    #[test]
    fn an_accounting_resumed_from_a_saved_one_ends_as_one_read_at_once() {
        let t = tempfile::tempdir().unwrap();
        let states = t.path();
        let write = |dir: &str, files: &[(&str, usize)]| {
            for (name, size) in files {
                let path = states.join(dir).join(name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, vec![b'x'; *size]).unwrap();
                // One time for all: a file is the same in two filesystems unless its size
                // says otherwise.
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(at))
                    .unwrap();
            }
        };
        write("base", &[("etc/conf", 100)]);
        write(
            "1",
            &[("etc/conf", 100), ("lib/dep", 50_000), ("tmp/junk", 9_000)],
        );
        write("2", &[("etc/conf", 100), ("lib/dep", 50_000)]);
        write("3", &[("etc/conf", 100), ("lib/dep", 50_500), ("app", 700)]);
        let steps = [
            "[deps 2/3] RUN deps",
            "[deps 3/3] RUN clean",
            "[app 1/1] RUN app",
        ];
        let split = Some(report::SplitAt::Step(2));
        let whole = account(&request(states, &steps, split.clone())).unwrap();
        assert_eq!(whole.steps_read(), 3);
        let whole = whole.report(4, 10);
        assert_eq!(
            (whole.wasted_files, whole.kept_below_split_files),
            (1, 1),
            "the junk, and the first /lib/dep, which the lower layer still holds: {whole:?}"
        );

        // The first two steps, saved; the last one read after them.
        let mut first = account(&request(states, &steps[..2], split.clone())).unwrap();
        let saved = states.join("saved");
        std::fs::write(&saved, first.save(10)).unwrap();
        let mut resumed = request(states, &steps, split);
        resumed.resume = Some(report::Resume {
            file: saved.to_string_lossy().into_owned(),
            steps: 2,
        });
        // The base and the first two filesystems are not read again: gone, they are not missed.
        for dir in ["base", "1", "2"] {
            std::fs::remove_dir_all(states.join(dir)).unwrap();
        }
        assert_eq!(account(&resumed).unwrap().report(4, 10), whole);
        // With BuildKit's diff from the second filesystem to the third mounted beside it, only
        // the paths it holds are read: the same report.
        write("3.changed", &[("lib/dep", 1), ("app", 1)]);
        resumed.changed = true;
        assert_eq!(account(&resumed).unwrap().report(4, 10), whole);
        resumed.changed = false;

        // A request that says the saved accounting covers more or fewer steps than it does.
        for steps in [1, 3, 4] {
            resumed.resume.as_mut().unwrap().steps = steps;
            let e = account(&resumed).unwrap_err();
            assert!(
                matches!(
                    e,
                    AccountError::Resume { saved: 2, .. } | AccountError::Resume { said: 4, .. }
                ),
                "{e}"
            );
        }
        resumed.resume.as_mut().unwrap().file = states.join("nothing").to_string_lossy().into();
        resumed.resume.as_mut().unwrap().steps = 2;
        assert!(matches!(account(&resumed), Err(AccountError::Read { .. })));
    }

    #[test]
    fn the_refusal_names_the_paths() {
        assert_eq!(refusal(&[]), None);
        let one = refusal(&["/opt/keep/.wh.a".into()]).unwrap();
        assert!(
            one.starts_with("the build made /opt/keep/.wh.a; image layers reserve"),
            "{one}"
        );
        let two = refusal(&["/a/.wh.b".into(), "/c/.wh.d".into()]).unwrap();
        assert!(
            two.starts_with("the build made /a/.wh.b and /c/.wh.d;"),
            "{two}"
        );
        let many = refusal(&[
            "/a/.wh.b".into(),
            "/c/.wh.d".into(),
            "/e/.wh..wh..opq".into(),
        ]);
        assert!(many.unwrap().contains("/a/.wh.b and 2 more such paths;"));
    }
}
