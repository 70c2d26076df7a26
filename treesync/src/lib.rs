//! Make one directory tree exactly equal to another, touching only what
//! differs.
//!
//! In base-preserving squash mode the frontend runs a build step with the
//! finished image's filesystem mounted read-only and the base image's
//! filesystem mounted writable on an overlay; whatever the step changes in
//! the base becomes ONE new layer on top of the base's untouched layers
//! (deletions become whiteouts). [`sync_tree`] makes that change: an exact
//! copy of the source tree, metadata included, that leaves every equal entry
//! alone so unchanged base files are not copied up into the new layer. It
//! runs as root over trees a Dockerfile author controls, so it never follows
//! a destination symlink: all work is relative to directory descriptors
//! opened with `O_NOFOLLOW`, through `*at()` calls that do not follow.
//!
//! Content is assumed equal when metadata is (see [`SyncOptions`]).

mod apply;
mod changed;
mod compare;
mod dirstack;
mod error;
mod hardlinks;
mod relpath;
mod remove;
mod sync;
mod sys;

use std::fmt;
use std::path::Path;

pub use changed::Changed;
pub use error::SyncError;

/// Which extended attributes take part in comparing and copying.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XattrPolicy {
    /// Every xattr except overlayfs' own (`trusted.overlay.*`,
    /// `user.overlay.*`) and SELinux labels (`security.selinux`).
    #[default]
    All,
    /// Only `security.capability`: what containerd's layer differ writes
    /// into a layer tar, so other xattr differences would only make the new
    /// layer bigger without showing up in it.
    CapabilityOnly,
}

/// How [`sync_tree`] compares.
///
/// An entry is unchanged when type, the 12 permission bits, owner, group,
/// mtime (to the nanosecond), size, symlink target, device number and the
/// xattrs chosen by [`SyncOptions::xattrs`] are all equal. File content is
/// then *assumed* equal, because reading every byte of both images would
/// dominate the squash. The trade-off: a file rewritten with the same size
/// and the same mtime is missed, which can happen when a build clamps
/// mtimes (e.g. to `SOURCE_DATE_EPOCH`). Set `verify_content` for such
/// builds: bytes are then compared whenever the metadata matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncOptions {
    /// Compare file bytes too when all metadata matches (reads both files).
    pub verify_content: bool,
    /// Which xattrs are compared and copied.
    pub xattrs: XattrPolicy,
    /// The destination's changes become an image layer through a differ that compares
    /// metadata, not links (BuildKit's overlay differ). An entry rewritten only to be linked to
    /// new names then looks unchanged to it and is left out of the layer, keeping its old
    /// links in the image; with this set, such an entry's mtime is moved by one nanosecond
    /// within its second, which the differ sees and a layer tar (whole seconds) does not keep.
    /// The destination then differs from the source by that nanosecond.
    pub for_layer_differ: bool,
}

/// What a sync did. Every source entry it looked at is counted once as created,
/// replaced, metadata-updated, unchanged or skipped socket; `removed` counts
/// destination entries deleted (each entry of a removed subtree counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Entries that did not exist in the destination.
    pub created: u64,
    /// Entries removed and made again (type, content, symlink target or
    /// device changed, or a hardlink group rebuilt).
    pub replaced: u64,
    /// Entries whose owner, mode, times or xattrs were fixed in place.
    pub metadata_updated: u64,
    /// Destination entries deleted because the source lacks them.
    pub removed: u64,
    /// Entries left untouched.
    pub unchanged: u64,
    /// Source sockets, which are never copied.
    pub sockets_skipped: u64,
    /// File data written, in bytes (holes excluded).
    pub bytes_written: u64,
    /// Entries (each with all below it) not looked at, because they were outside the
    /// changed paths ([`sync_tree_changed`]).
    pub outside_changed: u64,
}

impl SyncStats {
    /// Number of destination entries changed in any way.
    pub fn changed(&self) -> u64 {
        self.created + self.replaced + self.metadata_updated + self.removed
    }
}

impl fmt::Display for SyncStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} created, {} replaced, {} metadata updated, {} removed, {} unchanged, \
             {} sockets skipped, {} bytes written",
            self.created,
            self.replaced,
            self.metadata_updated,
            self.removed,
            self.unchanged,
            self.sockets_skipped,
            self.bytes_written
        )?;
        if self.outside_changed > 0 {
            write!(
                f,
                ", {} outside the changed paths left alone",
                self.outside_changed
            )?;
        }
        Ok(())
    }
}

/// Makes the tree at `dst` exactly equal to the tree at `src` (contents,
/// types, modes, owners, times, xattrs, hardlinks), changing only entries
/// that differ. `dst` itself gets `src`'s metadata but is never removed.
///
/// `src` is only read; neither side's symlinks are followed (both roots
/// must be real directories). Fails fast on the first error, which names
/// the path and the operation; the destination may then be partly synced.
pub fn sync_tree(src: &Path, dst: &Path, opts: &SyncOptions) -> Result<SyncStats, SyncError> {
    sync::run(src, dst, None, opts)
}

/// [`sync_tree`] where only the paths in `changed` can differ between `src` and `dst` (the
/// tree of a difference BuildKit computed, see [`Changed`]): in a directory `changed` holds,
/// the entries it lists are synced, the entries `dst` has and `src` lacks are removed, and an
/// entry `src` has and `dst` lacks is made even when `changed` does not list it; every other
/// entry, with everything below it, is left as it is without being read. With an empty
/// `changed` nothing below the roots is read. The result equals [`sync_tree`]'s whenever the
/// premise holds; where it does not, the paths outside `changed` keep `dst`'s content.
pub fn sync_tree_changed(
    src: &Path,
    dst: &Path,
    changed: &Changed,
    opts: &SyncOptions,
) -> Result<SyncStats, SyncError> {
    sync::run(src, dst, Some(changed), opts)
}

/// [`sync_tree`] of one subtree: makes `dst/rel` equal to `src/rel` (`rel` relative, `/`
/// separated, no `.` or `..`), touching nothing else of `dst`. Directories above it that `dst`
/// lacks are made with their metadata in `src`; one that is not a real directory in `dst` (a
/// symlink, a file) is an error, never followed. Touches nothing when `src/rel` is not a real
/// directory, and says why ([`Subtree`]).
pub fn sync_subtree(
    src: &Path,
    dst: &Path,
    rel: &str,
    opts: &SyncOptions,
) -> Result<Subtree, SyncError> {
    use std::ffi::CString;
    use std::os::fd::AsFd;
    let parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    if parts.is_empty() || parts.iter().any(|c| *c == "." || *c == "..") {
        return Err(SyncError::io(
            "sync the subtree",
            dst.join(rel),
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    }
    let name = |c: &str| {
        CString::new(c).map_err(|e| SyncError::io("open", dst.join(rel), std::io::Error::other(e)))
    };
    // The source side first: the subtree must be a real directory, reached without a symlink.
    let mut s = sys::open_root(src).map_err(|e| SyncError::io("open directory", src.into(), e))?;
    let mut metas = Vec::new();
    for c in &parts {
        match sys::open_dir_at(s.as_fd(), &name(c)?) {
            Ok(fd) => {
                let m = sys::fstat(fd.as_fd()).map_err(|e| match e {
                    sys::StatError::Io(e) => SyncError::io("stat", src.join(rel), e),
                    sys::StatError::UnknownType(_) => SyncError::io(
                        "stat",
                        src.join(rel),
                        std::io::Error::from(std::io::ErrorKind::InvalidData),
                    ),
                })?;
                metas.push(m);
                s = fd;
            }
            Err(rustix::io::Errno::NOENT) => return Ok(Subtree::Absent),
            Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
                return Ok(Subtree::NotADirectory)
            }
            Err(e) => return Err(SyncError::io("open directory", src.join(rel), e)),
        }
    }
    // The destination side: every directory on the way, made where missing.
    let mut d = sys::open_root(dst).map_err(|e| SyncError::io("open directory", dst.into(), e))?;
    let mut here = dst.to_path_buf();
    for (c, m) in parts.iter().zip(&metas) {
        here.push(c);
        let n = name(c)?;
        let fd = match sys::open_dir_at(d.as_fd(), &n) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                sys::mkdir_at(d.as_fd(), &n)
                    .map_err(|e| SyncError::io("create directory", here.clone(), e))?;
                let fd = sys::open_dir_at(d.as_fd(), &n)
                    .map_err(|e| SyncError::io("open directory", here.clone(), e))?;
                sys::fchown(fd.as_fd(), m.uid, m.gid)
                    .map_err(|e| SyncError::io("change owner of", here.clone(), e))?;
                sys::fchmod(fd.as_fd(), m.perm)
                    .map_err(|e| SyncError::io("change mode of", here.clone(), e))?;
                sys::futimens(fd.as_fd(), m.atime, m.mtime)
                    .map_err(|e| SyncError::io("set times", here.clone(), e))?;
                fd
            }
            Err(e @ (rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP)) => {
                return Err(SyncError::io(
                    "enter (not a directory, never followed)",
                    here,
                    e,
                ))
            }
            Err(e) => return Err(SyncError::io("open directory", here, e)),
        };
        d = fd;
    }
    sync_tree(&src.join(rel), &dst.join(rel), opts).map(Subtree::Synced)
}

/// What [`sync_subtree`] did with its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subtree {
    /// Synced, with these statistics.
    Synced(SyncStats),
    /// Not in the source: neither it nor anything above it that is missing was made.
    Absent,
    /// In the source, or a part of the way there, as something other than a real directory (a
    /// file, a symlink): never followed.
    NotADirectory,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subtree_alone_is_synced() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        std::fs::create_dir_all(src.join("var/lib/dpkg")).unwrap();
        std::fs::write(src.join("var/lib/dpkg/status"), b"new").unwrap();
        std::fs::write(src.join("var/other"), b"not in the subtree").unwrap();
        std::fs::create_dir_all(dst.join("var")).unwrap();
        std::fs::write(dst.join("var/keep"), b"stays").unwrap();
        std::fs::create_dir_all(dst.join("usr")).unwrap();
        let o = SyncOptions::default();
        let Subtree::Synced(st) = sync_subtree(&src, &dst, "var/lib/dpkg", &o).unwrap() else {
            panic!("not synced");
        };
        assert_eq!(st.created, 1, "{st}");
        assert_eq!(
            std::fs::read(dst.join("var/lib/dpkg/status")).unwrap(),
            b"new"
        );
        assert!(
            dst.join("var/keep").exists(),
            "outside the subtree: untouched"
        );
        assert!(!dst.join("var/other").exists());
        assert!(dst.join("usr").exists());
        // Absent, or not a directory, in the source: nothing done.
        for (rel, said) in [
            ("opt", Subtree::Absent),
            ("opt/x", Subtree::Absent),
            ("var/other", Subtree::NotADirectory),
            ("var/other/x", Subtree::NotADirectory),
        ] {
            assert_eq!(sync_subtree(&src, &dst, rel, &o).unwrap(), said, "{rel}");
        }
        std::os::unix::fs::symlink("var/lib", src.join("lib")).unwrap();
        assert_eq!(
            sync_subtree(&src, &dst, "lib", &o).unwrap(),
            Subtree::NotADirectory,
            "a symlink to a directory"
        );
        assert!(!dst.join("opt").exists() && !dst.join("lib").exists());
        // A symlink on the way in the destination is never followed.
        std::fs::create_dir_all(src.join("etc/app")).unwrap();
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dst.join("etc")).unwrap();
        let e = sync_subtree(&src, &dst, "etc/app", &o).unwrap_err();
        assert!(e.to_string().contains("never followed"), "{e}");
        assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none());
        assert!(sync_subtree(&src, &dst, "../x", &o).is_err());
    }

    #[test]
    fn stats_print_every_counter() {
        let s = SyncStats {
            created: 1,
            replaced: 2,
            metadata_updated: 3,
            removed: 4,
            unchanged: 5,
            sockets_skipped: 6,
            bytes_written: 7,
            outside_changed: 0,
        };
        assert_eq!(
            s.to_string(),
            "1 created, 2 replaced, 3 metadata updated, 4 removed, 5 unchanged, \
             6 sockets skipped, 7 bytes written"
        );
        assert_eq!(s.changed(), 10);
        let s = SyncStats {
            outside_changed: 8,
            ..s
        };
        assert!(s
            .to_string()
            .ends_with("7 bytes written, 8 outside the changed paths left alone"));
    }

    #[test]
    fn roots_must_be_real_directories() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("f"), b"").unwrap();
        std::os::unix::fs::symlink("d", t.path().join("l")).unwrap();
        let o = SyncOptions::default();
        let e = sync_tree(&t.path().join("f"), &t.path().join("d"), &o).unwrap_err();
        assert!(matches!(e, SyncError::NotADirectory { .. }), "{e}");
        let e = sync_tree(&t.path().join("d"), &t.path().join("l"), &o).unwrap_err();
        assert!(matches!(e, SyncError::NotADirectory { .. }), "{e}");
        let e = sync_tree(&t.path().join("d"), &t.path().join("d"), &o).unwrap_err();
        assert!(matches!(e, SyncError::Overlap { .. }), "{e}");
    }
}
