//! The paths a sync needs to look at, when something else already knows which ones changed.
//!
//! BuildKit computes the difference between two states of a build itself (a `DiffOp`); mounted,
//! that difference is a tree holding every path the later state added or changed, and the
//! directory above every path it deleted (the deletions themselves do not show). Everything
//! else is the same in both states. [`Changed`] is that tree's shape (names only), read from one
//! or more such mounts; [`crate::sync_tree_changed`] then reads only these directories and
//! entries and leaves the rest of the destination as it is.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirEntryExt;
use std::path::Path;

use crate::SyncError;

/// A tree of names: the paths below a root that may differ between two trees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    children: BTreeMap<CString, Changed>,
    /// The inode numbers this path (not a directory) has in the mounts it was read from. A
    /// mounted diff holds hardlinks of the layer's own files where it can, so the inode of
    /// such a file has one more name than the image has for each.
    inodes: Vec<u64>,
}

impl Changed {
    /// The union of the trees below `roots` (each a mounted difference). A root that does not
    /// exist adds nothing; symlinks are never followed.
    pub fn read(roots: &[&Path]) -> Result<Changed, SyncError> {
        let mut out = Changed::default();
        for root in roots {
            match std::fs::symlink_metadata(root) {
                Ok(m) if m.is_dir() => out.add_dir(root)?,
                Ok(_) => return Err(SyncError::NotADirectory { path: root.into() }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SyncError::io("stat", root.to_path_buf(), e)),
            }
        }
        Ok(out)
    }

    fn add_dir(&mut self, dir: &Path) -> Result<(), SyncError> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| SyncError::io("read directory", dir.into(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| SyncError::io("read directory", dir.into(), e))?;
            let name = CString::new(entry.file_name().as_bytes())
                .map_err(|e| SyncError::io("read directory", dir.into(), e))?;
            let child = self.children.entry(name).or_default();
            let kind = entry
                .file_type()
                .map_err(|e| SyncError::io("stat", entry.path(), e))?;
            if kind.is_dir() {
                child.add_dir(&entry.path())?;
            } else {
                child.inodes.push(entry.ino());
            }
        }
        Ok(())
    }

    /// Adds `rel` (`/`-separated, relative) and the directories above it.
    pub fn insert(&mut self, rel: &str) {
        self.insert_path(rel.as_bytes());
    }

    /// [`Changed::insert`] of a path as bytes.
    pub(crate) fn insert_path(&mut self, rel: &[u8]) {
        let mut here = self;
        for part in rel.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            let Ok(name) = CString::new(part) else { return };
            here = here.children.entry(name).or_default();
        }
    }

    /// The subtree of `rel` (`/`-separated, relative; a single name for a child), if it holds
    /// it.
    pub fn node(&self, rel: &[u8]) -> Option<&Changed> {
        rel.split(|&b| b == b'/')
            .filter(|p| !p.is_empty())
            .try_fold(self, |here, part| here.child(&CString::new(part).ok()?))
    }

    /// How many names the mounts it was read from gave the inode `ino` at this path: names
    /// outside the image.
    pub(crate) fn names_of(&self, ino: u64) -> u64 {
        self.inodes.iter().filter(|&&i| i == ino).count() as u64
    }

    /// The subtree of `name`, if it may have changed.
    pub(crate) fn child(&self, name: &CStr) -> Option<&Changed> {
        self.children.get(name)
    }

    /// The names directly below the root, each with its own subtree, in name order.
    pub fn entries(&self) -> impl Iterator<Item = (&CStr, &Changed)> {
        self.children.iter().map(|(n, c)| (n.as_c_str(), c))
    }

    /// How many paths it holds.
    pub fn len(&self) -> usize {
        self.children.values().map(|c| 1 + c.len()).sum()
    }

    /// Whether it holds no path.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_union_of_the_roots_without_following_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir_all(a.join("etc/x")).unwrap();
        std::fs::write(a.join("etc/x/f"), b"").unwrap();
        std::fs::create_dir_all(b.join("etc")).unwrap();
        std::fs::write(b.join("etc/g"), b"").unwrap();
        std::os::unix::fs::symlink("/", b.join("etc/root")).unwrap();
        std::fs::write(a.join("etc/g"), b"").unwrap();
        let c = Changed::read(&[&a, &b, &t.path().join("missing")]).unwrap();
        fn paths(c: &Changed, at: &str, out: &mut Vec<String>) {
            for (name, sub) in c.entries() {
                let p = format!("{at}/{}", name.to_str().unwrap());
                out.push(p.clone());
                paths(sub, &p, out);
            }
        }
        let mut got = Vec::new();
        paths(&c, "", &mut got);
        assert_eq!(got, ["/etc", "/etc/g", "/etc/root", "/etc/x", "/etc/x/f"]);
        assert_eq!(c.len(), 5);
        // Each mount's own name of a file is counted, by inode.
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &Path| std::fs::symlink_metadata(p).unwrap().ino();
        let g = c.node(b"etc/g").unwrap();
        assert_eq!(g.names_of(ino(&a.join("etc/g"))), 1);
        assert_eq!(g.names_of(ino(&b.join("etc/g"))), 1);
        assert_eq!(g.names_of(ino(&a.join("etc/x/f"))), 0);
        assert!(c.node(b"etc/nope").is_none());
        assert!(c.child(c"etc").unwrap().child(c"root").unwrap().is_empty());
        let file = a.join("etc/x/f");
        assert!(matches!(
            Changed::read(&[&file]),
            Err(SyncError::NotADirectory { .. })
        ));
    }
}
