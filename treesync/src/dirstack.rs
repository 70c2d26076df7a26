//! An explicit stack of open directories for depth-first walks.
//!
//! Walks never recurse (a 1000-deep hostile tree must not blow the thread's
//! stack) and never hold more than a bounded number of descriptors (a
//! container may run with `RLIMIT_NOFILE` = 1024): only the root and the
//! `window` innermost levels keep their directories open. An evicted level
//! is reopened on the way back up through `..` of its child, and checked to
//! be the very directory (device and inode) it was before.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys::{self, Meta};

/// How many levels below the root keep their descriptors open.
pub(crate) const DEFAULT_WINDOW: usize = 48;

/// An open directory and the identity it had when opened.
#[derive(Debug)]
pub(crate) struct DirHandle {
    fd: OwnedFd,
    dev: u64,
    ino: u64,
}

impl DirHandle {
    /// Opens the real directory `dir/name` (never through a symlink) and
    /// checks it is the entry `expected` was taken from.
    pub(crate) fn open(dir: BorrowedFd<'_>, name: &CStr, expected: &Meta) -> io::Result<Self> {
        let fd = sys::open_dir_at(dir, name)?;
        let h = Self::from_fd(fd)?;
        if (h.dev, h.ino) != expected.key() {
            return Err(io::Error::other(
                "directory was replaced while being opened",
            ));
        }
        Ok(h)
    }

    /// Wraps an already open directory.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        let st = rustix::fs::fstat(&fd)?;
        Ok(DirHandle {
            fd,
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reopens the parent directory through `..` and checks its identity.
    fn reopen_parent(&self, dev: u64, ino: u64) -> io::Result<DirHandle> {
        let fd = sys::open_dir_at(self.fd(), c"..")?;
        let h = DirHandle::from_fd(fd)?;
        if (h.dev, h.ino) != (dev, ino) {
            return Err(io::Error::other("parent directory changed during the walk"));
        }
        Ok(h)
    }
}

struct Parked<const N: usize, T> {
    /// `Some` while open; `None` once evicted. Identity kept for reopening.
    fds: [Option<OwnedFd>; N],
    ids: [(u64, u64); N],
    data: T,
}

/// A stack of `N` parallel directories per level (1 for a plain walk, 2 for
/// source and destination), each level carrying caller data `T`.
pub(crate) struct DirStack<const N: usize, T> {
    parents: Vec<Parked<N, T>>,
    cur: [DirHandle; N],
    data: T,
    window: usize,
}

impl<const N: usize, T> DirStack<N, T> {
    pub(crate) fn new(root: [DirHandle; N], data: T) -> Self {
        Self::with_window(root, data, DEFAULT_WINDOW)
    }

    pub(crate) fn with_window(root: [DirHandle; N], data: T, window: usize) -> Self {
        DirStack {
            parents: Vec::new(),
            cur: root,
            data,
            window: window.max(1),
        }
    }

    /// Levels above the current one (0 at the root).
    #[cfg(test)]
    pub(crate) fn depth(&self) -> usize {
        self.parents.len()
    }

    /// The current level's directories and data.
    pub(crate) fn current(&mut self) -> (&[DirHandle; N], &mut T) {
        (&self.cur, &mut self.data)
    }

    /// Makes `dirs` the current level.
    pub(crate) fn push(&mut self, dirs: [DirHandle; N], data: T) {
        let old_dirs = std::mem::replace(&mut self.cur, dirs);
        let old_data = std::mem::replace(&mut self.data, data);
        let ids = old_dirs.each_ref().map(|h| (h.dev, h.ino));
        let fds = old_dirs.map(|h| Some(h.fd));
        self.parents.push(Parked {
            fds,
            ids,
            data: old_data,
        });
        // Keep the root and the innermost `window` parents open.
        let len = self.parents.len();
        if len > self.window {
            let idx = len - 1 - self.window;
            if idx > 0 {
                self.parents[idx].fds = std::array::from_fn(|_| None);
            }
        }
    }

    /// Drops the current level and returns to its parent, returning the
    /// dropped level's data. `Ok(None)` at the root (nothing changes). On
    /// error, `which` tells the caller which of the `N` sides failed.
    pub(crate) fn pop(&mut self) -> Result<Option<T>, PopError> {
        let Some(parent) = self.parents.pop() else {
            return Ok(None);
        };
        let Parked { fds, ids, data } = parent;
        let mut opened = Vec::with_capacity(N);
        for (i, fd) in fds.into_iter().enumerate() {
            let (dev, ino) = ids[i];
            opened.push(match fd {
                Some(fd) => DirHandle { fd, dev, ino },
                None => self.cur[i]
                    .reopen_parent(dev, ino)
                    .map_err(|err| PopError { which: i, err })?,
            });
        }
        let dirs: [DirHandle; N] = opened.try_into().map_err(|_| PopError {
            which: 0,
            err: io::Error::other("internal error: wrong number of directories"),
        })?;
        self.cur = dirs;
        Ok(Some(std::mem::replace(&mut self.data, data)))
    }
}

/// Reopening a parent directory failed.
#[derive(Debug)]
pub(crate) struct PopError {
    pub which: usize,
    pub err: io::Error,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    #[test]
    fn deep_walk_reopens_evicted_parents() {
        let t = tempfile::tempdir().unwrap();
        let mut p = t.path().to_path_buf();
        for _ in 0..20 {
            p.push("d");
        }
        std::fs::create_dir_all(&p).unwrap();
        let root = DirHandle::from_fd(sys::open_root(t.path()).unwrap()).unwrap();
        let root_ino = root.ino;
        let mut st: DirStack<1, usize> = DirStack::with_window([root], 0, 2);
        let d = CString::new("d").unwrap();
        for level in 1..=20 {
            let (dirs, _) = st.current();
            let m = sys::lstat_at(dirs[0].fd(), &d).unwrap();
            let h = DirHandle::open(dirs[0].fd(), &d, &m).unwrap();
            st.push([h], level);
        }
        assert_eq!(st.depth(), 20);
        // Only the root and the window are open.
        let open = st.parents.iter().filter(|p| p.fds[0].is_some()).count();
        assert_eq!(open, 3);
        for level in (1..=20).rev() {
            assert_eq!(st.pop().unwrap(), Some(level));
        }
        assert_eq!(st.depth(), 0);
        assert_eq!(st.current().0[0].ino, root_ino);
        assert_eq!(st.pop().unwrap(), None);
    }
}
