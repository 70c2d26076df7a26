//! Deleting destination entries, recursively for directories, without
//! following symlinks and without crossing into other mounts.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use std::os::fd::BorrowedFd;

use crate::dirstack::{DirHandle, DirStack};
use crate::sys::{self, Kind, Meta, StatError};
use crate::SyncError;

/// Limits on what a walk of the destination may enter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Guard {
    /// Mount id of the destination root (when the kernel reports it).
    pub dst_mnt: Option<u64>,
    /// Identity of the source root: never to be entered from the
    /// destination side (nested trees).
    pub src_root: (u64, u64),
    /// Identity of the destination root: never to be entered from the
    /// source side.
    pub dst_root: (u64, u64),
}

impl Guard {
    /// May the destination directory `m` (at `path`) be entered?
    pub(crate) fn check_dst_dir(&self, m: &Meta, path: &Path) -> Result<(), SyncError> {
        if let (Some(a), Some(b)) = (m.mnt_id, self.dst_mnt) {
            if a != b {
                return Err(SyncError::MountPoint {
                    path: path.to_path_buf(),
                });
            }
        }
        if m.key() == self.src_root {
            return Err(SyncError::Overlap {
                path: path.to_path_buf(),
            });
        }
        Ok(())
    }

    /// May the source directory `m` (at `path`) be entered?
    pub(crate) fn check_src_dir(&self, m: &Meta, path: &Path) -> Result<(), SyncError> {
        if m.key() == self.dst_root {
            return Err(SyncError::Overlap {
                path: path.to_path_buf(),
            });
        }
        Ok(())
    }
}

/// Removes `dir/name` (at `path`, for messages), whatever it is; a
/// directory with everything below it. Returns how many entries went.
pub(crate) fn remove_entry(
    dir: BorrowedFd<'_>,
    name: &CStr,
    path: &Path,
    guard: &Guard,
) -> Result<u64, SyncError> {
    match sys::unlink_at(dir, name) {
        Ok(()) => Ok(1),
        Err(Errno::NOENT) => Ok(0),
        Err(Errno::ISDIR) | Err(Errno::PERM) => remove_tree(dir, name, path, guard),
        Err(e) => Err(SyncError::io("remove", path.to_path_buf(), e)),
    }
}

struct Level {
    names: Vec<CString>,
    next: usize,
    /// This directory's name in its parent.
    name: CString,
}

fn open_for_removal(
    dir: BorrowedFd<'_>,
    name: &CStr,
    path: &Path,
    guard: &Guard,
) -> Result<Option<DirHandle>, SyncError> {
    let m = match sys::lstat_at(dir, name) {
        Ok(m) => m,
        Err(StatError::Io(Errno::NOENT)) => return Ok(None),
        Err(StatError::Io(e)) => return Err(SyncError::io("stat", path.to_path_buf(), e)),
        Err(StatError::UnknownType(_)) => {
            return Err(SyncError::io("remove", path.to_path_buf(), Errno::PERM))
        }
    };
    if m.kind != Kind::Dir {
        // unlink said EPERM for a non-directory: a real permission problem
        // (e.g. an immutable file).
        return Err(SyncError::io("remove", path.to_path_buf(), Errno::PERM));
    }
    guard.check_dst_dir(&m, path)?;
    DirHandle::open(dir, name, &m)
        .map(Some)
        .map_err(|e| SyncError::io("open directory", path.to_path_buf(), e))
}

fn remove_tree(
    dir: BorrowedFd<'_>,
    name: &CStr,
    path: &Path,
    guard: &Guard,
) -> Result<u64, SyncError> {
    let Some(top) = open_for_removal(dir, name, path, guard)? else {
        return Ok(0);
    };
    let names = sys::list_names(top.fd())
        .map_err(|e| SyncError::io("read directory", path.to_path_buf(), e))?;
    let mut stack = DirStack::new(
        [top],
        Level {
            names,
            next: 0,
            name: name.to_owned(),
        },
    );
    let mut cur_path: PathBuf = path.to_path_buf();
    let mut count = 0u64;
    loop {
        let (dirs, lvl) = stack.current();
        if lvl.next < lvl.names.len() {
            let child = std::mem::take(&mut lvl.names[lvl.next]);
            lvl.next += 1;
            let here = dirs[0].fd();
            match sys::unlink_at(here, &child) {
                Ok(()) => count += 1,
                Err(Errno::NOENT) => {}
                Err(Errno::ISDIR) | Err(Errno::PERM) => {
                    let child_path = cur_path.join(std::ffi::OsStr::from_bytes(child.to_bytes()));
                    let Some(h) = open_for_removal(here, &child, &child_path, guard)? else {
                        continue;
                    };
                    let names = sys::list_names(h.fd())
                        .map_err(|e| SyncError::io("read directory", child_path.clone(), e))?;
                    cur_path = child_path;
                    stack.push(
                        [h],
                        Level {
                            names,
                            next: 0,
                            name: child,
                        },
                    );
                }
                Err(e) => {
                    let child_path = cur_path.join(std::ffi::OsStr::from_bytes(child.to_bytes()));
                    return Err(SyncError::io("remove", child_path, e));
                }
            }
        } else {
            let done = std::mem::take(&mut lvl.name);
            let popped = stack.pop().map_err(|e| {
                SyncError::io("reopen parent directory of", cur_path.clone(), e.err)
            })?;
            if popped.is_none() {
                break;
            }
            let parent = stack.current().0[0].fd();
            sys::rmdir_at(parent, &done)
                .map_err(|e| SyncError::io("remove directory", cur_path.clone(), e))?;
            count += 1;
            cur_path.pop();
        }
    }
    drop(stack);
    sys::rmdir_at(dir, name)
        .map_err(|e| SyncError::io("remove directory", path.to_path_buf(), e))?;
    Ok(count + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::symlink;

    fn guard() -> Guard {
        Guard {
            dst_mnt: None,
            src_root: (0, 0),
            dst_root: (0, 0),
        }
    }

    #[test]
    fn removes_deep_trees_without_following_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"keep").unwrap();
        let root = t.path().join("root");
        let mut p = root.join("victim");
        for i in 0..300 {
            p.push(if i % 2 == 0 { "a" } else { "b" });
        }
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("file"), b"x").unwrap();
        symlink(&outside, p.join("link-to-outside")).unwrap();
        symlink(&outside, root.join("victim/a/l")).unwrap();

        let rootfd = sys::open_root(&root).unwrap();
        let n = remove_entry(rootfd.as_fd(), c"victim", &root.join("victim"), &guard()).unwrap();
        assert_eq!(n, 1 + 300 + 1 + 1 + 1);
        assert!(!root.join("victim").exists());
        assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"keep");
    }

    #[test]
    fn removing_a_symlink_to_a_directory_removes_only_the_link() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("dir")).unwrap();
        std::fs::write(t.path().join("dir/f"), b"x").unwrap();
        symlink("dir", t.path().join("l")).unwrap();
        let rootfd = sys::open_root(t.path()).unwrap();
        let n = remove_entry(rootfd.as_fd(), c"l", &t.path().join("l"), &guard()).unwrap();
        assert_eq!(n, 1);
        assert!(t.path().join("dir/f").exists());
    }
}
