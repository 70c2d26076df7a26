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

/// What a sync did. Every source entry is counted once as created,
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
        )
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
    sync::run(src, dst, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        assert_eq!(
            s.to_string(),
            "1 created, 2 replaced, 3 metadata updated, 4 removed, 5 unchanged, \
             6 sockets skipped, 7 bytes written"
        );
        assert_eq!(s.changed(), 10);
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
