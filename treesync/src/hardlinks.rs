//! Hardlink groups: which source files share an inode, and whether the
//! destination already links the same names together.
//!
//! Before the main walk, a metadata-only pass over the source collects every
//! non-directory with `nlink > 1` by (device, inode); that map is the only
//! thing the sync keeps for the whole tree. A group is *kept* when all its
//! names exist in the destination as one inode that is equal to the source
//! and that no other surviving destination name shares. Otherwise it is
//! *recreated*: the first member met by the walk is written, every other
//! member is `linkat`-ed to it (replacing what was there), so a new file
//! linked to an unchanged base file still ends up linked.
//!
//! The reverse map (destination inodes with `nlink > 1` to their names) is
//! built lazily, only when a destination inode has more links than the
//! source names explain; it tells whether leaving an entry in place would
//! leave it linked to a name it must not be linked to.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::io::Errno;

use crate::changed::Changed;
use crate::compare::{self, Side, SideErr, Verdict};
use crate::dirstack::{DirHandle, DirStack};
use crate::relpath::{join_bytes, RelPath};
use crate::remove::Guard;
use crate::sys::{self, Kind, Meta, StatError, XattrIo};
use crate::{SyncError, SyncOptions};

/// (device, inode).
pub(crate) type Key = (u64, u64);

/// What to do with a source hardlink group.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GroupState {
    /// The destination already has it: touch none of its names.
    Keep,
    /// Write it anew; `first` is the member written so far (relative path),
    /// which the other members are linked to.
    Recreate { first: Option<Vec<u8>> },
}

/// The hardlink plan and the means to look names up later.
pub(crate) struct Links {
    src_root: OwnedFd,
    dst_root: OwnedFd,
    src_path: PathBuf,
    dst_path: PathBuf,
    guard: Guard,
    groups: HashMap<Key, GroupState>,
    dst_map: Option<HashMap<Key, Vec<Vec<u8>>>>,
}

impl Links {
    /// Scans the source (within `changed`, where given: the sync looks nowhere else) and
    /// decides, for every hardlink group, whether the destination already has it.
    pub(crate) fn plan(
        opts: &SyncOptions,
        xio: XattrIo,
        (src_root, dst_root): (&DirHandle, &DirHandle),
        (src_path, dst_path): (&Path, &Path),
        changed: Option<&Changed>,
        guard: Guard,
    ) -> Result<Links, SyncError> {
        let dup = |h: &DirHandle, p: &Path| {
            h.fd()
                .try_clone_to_owned()
                .map_err(|e| SyncError::io("open directory", p.to_path_buf(), e))
        };
        let mut links = Links {
            src_root: dup(src_root, src_path)?,
            dst_root: dup(dst_root, dst_path)?,
            src_path: src_path.to_path_buf(),
            dst_path: dst_path.to_path_buf(),
            guard,
            groups: HashMap::new(),
            dst_map: None,
        };
        let mut found: HashMap<Key, Vec<Vec<u8>>> = HashMap::new();
        walk(
            src_root,
            src_path,
            (Side::Src, changed),
            &guard,
            |rel, m| {
                if m.nlink > 1 && !matches!(m.kind, Kind::Dir | Kind::Socket) {
                    found.entry(m.key()).or_default().push(rel.to_vec());
                }
            },
        )?;
        for (key, mut members) in found {
            if members.len() < 2 {
                // Its other names are outside the tree: a plain file here.
                continue;
            }
            members.sort();
            let state = if links.group_is_in_place(opts, xio, &members)? {
                GroupState::Keep
            } else {
                GroupState::Recreate { first: None }
            };
            links.groups.insert(key, state);
        }
        Ok(links)
    }

    /// The plan for the source inode `key`, if it is a hardlink group.
    pub(crate) fn group(&mut self, key: Key) -> Option<&mut GroupState> {
        self.groups.get_mut(&key)
    }

    fn group_is_in_place(
        &mut self,
        opts: &SyncOptions,
        xio: XattrIo,
        members: &[Vec<u8>],
    ) -> Result<bool, SyncError> {
        let first = &members[0];
        let (src_dir, name) = resolve(self.src_root.as_fd(), first)
            .map_err(|e| SyncError::io("open", join_bytes(&self.src_path, first), e))?
            .ok_or_else(|| SyncError::Changed {
                path: join_bytes(&self.src_path, first),
                what: "source entry vanished",
            })?;
        let s = stat(src_dir.as_fd(), &name, &self.src_path, first)?.ok_or_else(|| {
            SyncError::Changed {
                path: join_bytes(&self.src_path, first),
                what: "source entry vanished",
            }
        })?;
        let mut found: Option<(OwnedFd, Meta)> = None;
        for m in members {
            let Some((dir, mname)) = self.resolve_dst(m)? else {
                return Ok(false);
            };
            let Some(d) = stat(dir.as_fd(), &mname, &self.dst_path, m)? else {
                return Ok(false);
            };
            if d.kind == Kind::Dir {
                return Ok(false);
            }
            match &found {
                None => found = Some((dir, d)),
                Some((_, d0)) if d0.key() != d.key() => return Ok(false),
                Some(_) => {}
            }
        }
        let Some((dst_dir, d)) = found else {
            return Ok(false);
        };
        let verdict = compare::classify(opts, xio, src_dir.as_fd(), dst_dir.as_fd(), &name, &s, &d)
            .map_err(|e| self.side_err(e, first))?;
        if !matches!(verdict, Verdict::Equal) {
            return Ok(false);
        }
        if d.nlink > members.len() as u64 {
            // More destination names share the inode: any of them that
            // survives in the destination would join the group.
            let others: Vec<Vec<u8>> = self
                .dst_map()?
                .get(&d.key())
                .map(|v| v.iter().filter(|q| !members.contains(q)).cloned().collect())
                .unwrap_or_default();
            for q in others {
                if self.src_stat(&q)?.is_some() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Would leaving the destination entry `d` at `rel` (whose source is not
    /// a hardlink group) in place leave it linked to another name that stays?
    pub(crate) fn conflict(&mut self, rel: &[u8], d: &Meta) -> Result<bool, SyncError> {
        if d.nlink <= 1 {
            return Ok(false);
        }
        let others: Vec<Vec<u8>> = match self.dst_map()?.get(&d.key()) {
            Some(v) => v.iter().filter(|q| q.as_slice() != rel).cloned().collect(),
            None => return Ok(false),
        };
        for q in others {
            // Only a name the walk will leave alone can conflict.
            let Some(sq) = self.src_stat(&q)? else {
                continue;
            };
            if !compare::stat_equal(&sq, d) {
                continue;
            }
            if sq.nlink > 1
                && matches!(
                    self.groups.get(&sq.key()),
                    Some(GroupState::Recreate { .. })
                )
            {
                continue;
            }
            let Some((dir, name)) = self.resolve_dst(&q)? else {
                continue;
            };
            match stat(dir.as_fd(), &name, &self.dst_path, &q)? {
                Some(dq) if dq.key() == d.key() => return Ok(true),
                _ => {}
            }
        }
        Ok(false)
    }

    /// Opens the destination parent of `rel` (never through a symlink).
    pub(crate) fn resolve_dst(&self, rel: &[u8]) -> Result<Option<(OwnedFd, CString)>, SyncError> {
        resolve(self.dst_root.as_fd(), rel)
            .map_err(|e| SyncError::io("open", join_bytes(&self.dst_path, rel), e))
    }

    fn src_stat(&self, rel: &[u8]) -> Result<Option<Meta>, SyncError> {
        let Some((dir, name)) = resolve(self.src_root.as_fd(), rel)
            .map_err(|e| SyncError::io("open", join_bytes(&self.src_path, rel), e))?
        else {
            return Ok(None);
        };
        stat(dir.as_fd(), &name, &self.src_path, rel)
    }

    fn dst_map(&mut self) -> Result<&HashMap<Key, Vec<Vec<u8>>>, SyncError> {
        if self.dst_map.is_none() {
            let mut map: HashMap<Key, Vec<Vec<u8>>> = HashMap::new();
            let root = DirHandle::from_fd(
                self.dst_root
                    .try_clone()
                    .map_err(|e| SyncError::io("open directory", self.dst_path.clone(), e))?,
            )
            .map_err(|e| SyncError::io("open directory", self.dst_path.clone(), e))?;
            walk(
                &root,
                &self.dst_path,
                (Side::Dst, None),
                &self.guard,
                |rel, m| {
                    if m.nlink > 1 && m.kind != Kind::Dir {
                        map.entry(m.key()).or_default().push(rel.to_vec());
                    }
                },
            )?;
            self.dst_map = Some(map);
        }
        Ok(self.dst_map.get_or_insert_with(HashMap::new))
    }

    fn side_err(&self, e: SideErr, rel: &[u8]) -> SyncError {
        let root = match e.side {
            Side::Src => &self.src_path,
            Side::Dst => &self.dst_path,
        };
        SyncError::io(e.op, join_bytes(root, rel), e.err)
    }
}

fn stat(
    dir: BorrowedFd<'_>,
    name: &std::ffi::CStr,
    root: &Path,
    rel: &[u8],
) -> Result<Option<Meta>, SyncError> {
    match sys::lstat_opt(dir, name) {
        Ok(m) => Ok(m),
        Err(StatError::Io(e)) => Err(SyncError::io("stat", join_bytes(root, rel), e)),
        // Not something a hardlink group can be made of.
        Err(StatError::UnknownType(_)) => Ok(None),
    }
}

/// Opens the parent directory of the relative path `rel` below `root`, one
/// component at a time with `O_NOFOLLOW|O_DIRECTORY`, and returns it with
/// the last name. `None` if a component is missing, a symlink or not a
/// directory.
pub(crate) fn resolve(
    root: BorrowedFd<'_>,
    rel: &[u8],
) -> Result<Option<(OwnedFd, CString)>, Errno> {
    let comps: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    let Some((last, dirs)) = comps.split_last() else {
        return Ok(None);
    };
    let mut cur = root.try_clone_to_owned().map_err(|e| {
        e.raw_os_error()
            .map(Errno::from_raw_os_error)
            .unwrap_or(Errno::IO)
    })?;
    for c in dirs {
        let Ok(c) = CString::new(*c) else {
            return Ok(None);
        };
        match sys::open_dir_at(cur.as_fd(), &c) {
            Ok(fd) => cur = fd,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    match CString::new(*last) {
        Ok(name) if !last.is_empty() => Ok(Some((cur, name))),
        _ => Ok(None),
    }
}

struct WalkLevel<'c> {
    names: Vec<CString>,
    next: usize,
    /// Only these names, where given.
    changed: Option<&'c Changed>,
}

/// Visits every entry below `root` (depth first, never following a
/// symlink; with `changed`, only the paths it holds) with its relative path and `lstat`.
pub(crate) fn walk(
    root: &DirHandle,
    root_path: &Path,
    (side, changed): (Side, Option<&Changed>),
    guard: &Guard,
    mut visit: impl FnMut(&[u8], &Meta),
) -> Result<(), SyncError> {
    let io = |op, rel: &RelPath, e: Errno| SyncError::io(op, rel.under(root_path), e);
    let mut rel = RelPath::new();
    let top = root
        .fd()
        .try_clone_to_owned()
        .and_then(DirHandle::from_fd)
        .map_err(|e| SyncError::io("open directory", root_path.to_path_buf(), e))?;
    let names = sys::list_names(top.fd()).map_err(|e| io("read directory", &rel, e))?;
    let mut stack = DirStack::new(
        [top],
        WalkLevel {
            names,
            next: 0,
            changed,
        },
    );
    loop {
        let (dirs, lvl) = stack.current();
        if lvl.next < lvl.names.len() {
            let name = std::mem::take(&mut lvl.names[lvl.next]);
            lvl.next += 1;
            let below = match lvl.changed {
                None => None,
                Some(c) => match c.child(&name) {
                    None => continue,
                    sub => sub,
                },
            };
            let here = dirs[0].fd();
            rel.push(name.to_bytes());
            let m = match sys::lstat_at(here, &name) {
                Ok(m) => m,
                Err(StatError::Io(Errno::NOENT)) | Err(StatError::UnknownType(_)) => {
                    rel.pop();
                    continue;
                }
                Err(StatError::Io(e)) => return Err(io("stat", &rel, e)),
            };
            visit(rel.as_bytes(), &m);
            if m.kind == Kind::Dir {
                match side {
                    Side::Src => guard.check_src_dir(&m, &rel.under(root_path))?,
                    Side::Dst => guard.check_dst_dir(&m, &rel.under(root_path))?,
                }
                let h = DirHandle::open(here, &name, &m)
                    .map_err(|e| SyncError::io("open directory", rel.under(root_path), e))?;
                let names = sys::list_names(h.fd()).map_err(|e| io("read directory", &rel, e))?;
                stack.push(
                    [h],
                    WalkLevel {
                        names,
                        next: 0,
                        changed: below,
                    },
                );
                continue;
            }
            rel.pop();
        } else {
            match stack.pop() {
                Ok(Some(_)) => rel.pop(),
                Ok(None) => break,
                Err(e) => {
                    return Err(SyncError::io(
                        "reopen parent directory of",
                        rel.under(root_path),
                        e.err,
                    ))
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolve_refuses_symlinked_components() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("real/sub")).unwrap();
        std::fs::write(t.path().join("real/sub/f"), b"x").unwrap();
        symlink("real", t.path().join("link")).unwrap();
        let root = sys::open_root(t.path()).unwrap();
        let (_, name) = resolve(root.as_fd(), b"real/sub/f").unwrap().unwrap();
        assert_eq!(name.to_bytes(), b"f");
        assert!(resolve(root.as_fd(), b"link/sub/f").unwrap().is_none());
        assert!(resolve(root.as_fd(), b"real/sub/f/g").unwrap().is_none());
        assert!(resolve(root.as_fd(), b"nope/f").unwrap().is_none());
    }

    #[test]
    fn walk_lists_everything_once_and_does_not_follow_symlinks() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        std::fs::write(t.path().join("a/b/f"), b"x").unwrap();
        symlink("/", t.path().join("a/root")).unwrap();
        let root = DirHandle::from_fd(sys::open_root(t.path()).unwrap()).unwrap();
        let guard = Guard {
            dst_mnt: None,
            src_root: (0, 0),
            dst_root: (0, 0),
        };
        let mut seen = Vec::new();
        walk(&root, t.path(), (Side::Src, None), &guard, |rel, _| {
            seen.push(String::from_utf8_lossy(rel).into_owned())
        })
        .unwrap();
        seen.sort();
        assert_eq!(seen, vec!["a", "a/b", "a/b/f", "a/root"]);
    }
}
