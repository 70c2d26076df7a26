//! The main walk: source and destination side by side, one directory level
//! at a time (deletions first, then each source entry in name order),
//! directory times restored on the way back up.

use std::ffi::CStr;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::io::Errno;

use crate::apply::Applier;
use crate::changed::Changed;
use crate::compare::{self, Side, SideErr, Verdict};
use crate::dirstack::{DirHandle, DirStack};
use crate::hardlinks::{self, GroupState, Links};
use crate::relpath::{join_bytes, RelPath};
use crate::remove::{self, Guard};
use crate::sys::{self, Kind, Meta, StatError, XattrIo};
use crate::{SyncError, SyncOptions, SyncStats};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DirState {
    /// Made by this sync.
    Created,
    /// Existed and has not needed a change (yet).
    Unchanged,
    /// Existed and had its metadata changed.
    Updated,
}

/// One directory level of the walk.
struct Level<'c> {
    /// The source names, sorted; taken one by one.
    names: Vec<CString>,
    /// Where only some names can differ: those names (see [`Changed`]), and the destination's
    /// names (sorted), so that a source entry the destination lacks is made all the same.
    changed: Option<(&'c Changed, Vec<CString>)>,
    next: usize,
    /// The source directory's metadata (its times are applied at the end).
    meta: Meta,
    /// The destination directory was just created: nothing to compare.
    fresh: bool,
    state: DirState,
}

struct Walker<'a> {
    src_path: &'a Path,
    dst_path: &'a Path,
    opts: &'a SyncOptions,
    /// `opts` with `verify_content`: for an entry the changed paths name, which a layer differ
    /// found different (BuildKit's compares the bytes where both mtimes are whole seconds), so
    /// equal metadata does not show it is the same.
    named_opts: SyncOptions,
    ap: Applier<'a>,
    guard: Guard,
    links: Links,
    /// Relative path of the directory or entry being worked on.
    rel: RelPath,
    stats: SyncStats,
}

fn open_root(path: &Path, side: Side) -> Result<DirHandle, SyncError> {
    let fd = sys::open_root(path).map_err(|e| match e {
        Errno::NOTDIR | Errno::LOOP => SyncError::NotADirectory {
            path: path.to_path_buf(),
        },
        e => SyncError::io(
            match side {
                Side::Src => "open source directory",
                Side::Dst => "open destination directory",
            },
            path.to_path_buf(),
            e,
        ),
    })?;
    DirHandle::from_fd(fd).map_err(|e| SyncError::io("stat", path.to_path_buf(), e))
}

fn fstat_root(h: &DirHandle, path: &Path) -> Result<Meta, SyncError> {
    sys::fstat(h.fd()).map_err(|e| match e {
        StatError::Io(e) => SyncError::io("stat", path.to_path_buf(), e),
        StatError::UnknownType(mode) => SyncError::UnsupportedType {
            path: path.to_path_buf(),
            mode,
        },
    })
}

/// Whether the directory `start` is `target` or lies below it, found by
/// walking `..` up to the filesystem root.
fn is_within(start: &DirHandle, target: (u64, u64)) -> std::io::Result<bool> {
    let key_of = |fd: BorrowedFd<'_>| -> std::io::Result<(u64, u64)> {
        let st = rustix::fs::fstat(fd)?;
        Ok((st.st_dev, st.st_ino))
    };
    let mut cur = start.fd().try_clone_to_owned()?;
    let mut key = key_of(cur.as_fd())?;
    // Bounded: PATH_MAX-long paths cannot be deeper than this anyway.
    for _ in 0..4096 {
        if key == target {
            return Ok(true);
        }
        let parent = sys::open_dir_at(cur.as_fd(), c"..")?;
        let pkey = key_of(parent.as_fd())?;
        if pkey == key {
            // "/" is its own parent.
            return Ok(false);
        }
        cur = parent;
        key = pkey;
    }
    Ok(false)
}

pub(crate) fn run(
    src: &Path,
    dst: &Path,
    changed: Option<&Changed>,
    opts: &SyncOptions,
) -> Result<SyncStats, SyncError> {
    let src_root = open_root(src, Side::Src)?;
    let dst_root = open_root(dst, Side::Dst)?;
    let s = fstat_root(&src_root, src)?;
    let d = fstat_root(&dst_root, dst)?;
    let xio = XattrIo {
        proc_ok: sys::proc_available(dst_root.fd()),
    };
    let guard = Guard {
        dst_mnt: d.mnt_id,
        src_root: s.key(),
        dst_root: d.key(),
    };
    // One tree inside the other would have the sync copy into its own
    // source or delete it. (The walks check again as they go.)
    if is_within(&src_root, d.key())
        .map_err(|e| SyncError::io("check ancestors of", src.to_path_buf(), e))?
    {
        return Err(SyncError::Overlap {
            path: src.to_path_buf(),
        });
    }
    if is_within(&dst_root, s.key())
        .map_err(|e| SyncError::io("check ancestors of", dst.to_path_buf(), e))?
    {
        return Err(SyncError::Overlap {
            path: dst.to_path_buf(),
        });
    }
    // A hardlink group with names outside the changed paths (a new name linked to a file a
    // diff does not name, as its metadata did not change) is synced whole, as without them.
    let widened = match changed {
        Some(c) => with_whole_groups(c, &src_root, src, &guard)?,
        None => None,
    };
    let changed = widened.as_ref().or(changed);
    let links = Links::plan(
        opts,
        xio,
        (&src_root, &dst_root),
        (src, dst),
        changed,
        guard,
    )?;
    let mut w = Walker {
        src_path: src,
        dst_path: dst,
        opts,
        named_opts: SyncOptions {
            verify_content: true,
            ..opts.clone()
        },
        ap: Applier { opts, xio },
        guard,
        links,
        rel: RelPath::new(),
        stats: SyncStats::default(),
    };
    w.walk(src_root, dst_root, (s, d), changed)?;
    Ok(w.stats)
}

/// `changed` with every name of each hardlink group it names only some names of (the other
/// names found by a walk of the whole source, made only then); `None` when it names whole
/// groups.
fn with_whole_groups(
    changed: &Changed,
    src_root: &DirHandle,
    src: &Path,
    guard: &Guard,
) -> Result<Option<Changed>, SyncError> {
    use std::collections::HashMap;
    let mut seen: HashMap<(u64, u64), (u64, u64)> = HashMap::new();
    hardlinks::walk(
        src_root,
        src,
        (Side::Src, Some(changed)),
        guard,
        |rel, m| {
            if m.nlink > 1 && !matches!(m.kind, Kind::Dir | Kind::Socket) {
                // The names the diffs' own mounts give it are not the image's.
                let outside = changed.node(rel).map_or(0, |c| c.names_of(m.ino));
                let names = m.nlink.saturating_sub(outside);
                seen.entry(m.key()).or_insert((0, names)).0 += 1;
            }
        },
    )?;
    seen.retain(|_, (named, nlink)| named < nlink);
    if seen.is_empty() {
        return Ok(None);
    }
    let mut widened = changed.clone();
    hardlinks::walk(src_root, src, (Side::Src, None), guard, |rel, m| {
        if m.kind != Kind::Dir && seen.contains_key(&m.key()) {
            widened.insert_path(rel);
        }
    })?;
    Ok(Some(widened))
}

impl Walker<'_> {
    fn src_here(&self) -> std::path::PathBuf {
        self.rel.under(self.src_path)
    }

    fn dst_here(&self) -> std::path::PathBuf {
        self.rel.under(self.dst_path)
    }

    /// Ties an error to the entry at `self.rel`.
    fn at(&self, e: SideErr) -> SyncError {
        let path = match e.side {
            Side::Src => self.src_here(),
            Side::Dst => self.dst_here(),
        };
        SyncError::io(e.op, path, e.err)
    }

    fn walk(
        &mut self,
        src_root: DirHandle,
        dst_root: DirHandle,
        (s, d): (Meta, Meta),
        changed: Option<&Changed>,
    ) -> Result<(), SyncError> {
        let updated = self
            .ap
            .update_dir(src_root.fd(), dst_root.fd(), &s, &d)
            .map_err(|e| self.at(e))?;
        let names = self.read_src_dir(&src_root)?;
        let dst_names = self.delete_extras(dst_root.fd(), &names)?;
        let mut stack = DirStack::new(
            [src_root, dst_root],
            Level {
                names,
                changed: changed.map(|c| (c, dst_names)),
                next: 0,
                meta: s,
                fresh: false,
                state: if updated {
                    DirState::Updated
                } else {
                    DirState::Unchanged
                },
            },
        );
        loop {
            let (dirs, lvl) = stack.current();
            if lvl.next < lvl.names.len() {
                let name = std::mem::take(&mut lvl.names[lvl.next]);
                lvl.next += 1;
                let fresh = lvl.fresh;
                // Below a changed directory: the entry's own part of the changed paths, if it
                // has one; an entry with none that the destination has is left alone.
                let below = match &lvl.changed {
                    None => None,
                    Some((c, dst_names)) => match c.child(&name) {
                        Some(sub) => Some(sub),
                        None if dst_names.binary_search(&name).is_ok() => {
                            self.stats.outside_changed += 1;
                            continue;
                        }
                        None => None,
                    },
                };
                self.rel.push(name.to_bytes());
                match self.entry(dirs[0].fd(), dirs[1].fd(), &name, fresh, below) {
                    Ok(Some((sh, dh, level))) => stack.push([sh, dh], level),
                    Ok(None) => self.rel.pop(),
                    Err(e) => return Err(e),
                }
            } else {
                self.finish_dir(&dirs[1], lvl)?;
                match stack.pop() {
                    Ok(Some(_)) => self.rel.pop(),
                    Ok(None) => break,
                    Err(e) => {
                        let path = if e.which == 0 {
                            self.src_here()
                        } else {
                            self.dst_here()
                        };
                        return Err(SyncError::io("reopen parent directory of", path, e.err));
                    }
                }
            }
        }
        Ok(())
    }

    fn read_src_dir(&self, h: &DirHandle) -> Result<Vec<CString>, SyncError> {
        sys::list_names(h.fd()).map_err(|e| SyncError::io("read directory", self.src_here(), e))
    }

    /// Removes every destination entry whose name the source lacks; the names left (sorted).
    fn delete_extras(
        &mut self,
        dst: BorrowedFd<'_>,
        src_names: &[CString],
    ) -> Result<Vec<CString>, SyncError> {
        let names = sys::list_names(dst)
            .map_err(|e| SyncError::io("read directory", self.dst_here(), e))?;
        let mut kept = Vec::with_capacity(names.len());
        for n in names {
            if src_names.binary_search(&n).is_err() {
                let path = self.rel.under_with(self.dst_path, n.to_bytes());
                self.stats.removed += remove::remove_entry(dst, &n, &path, &self.guard)?;
            } else {
                kept.push(n);
            }
        }
        Ok(kept)
    }

    /// Sets a finished directory's times and counts it.
    fn finish_dir(&mut self, dst: &DirHandle, lvl: &mut Level) -> Result<(), SyncError> {
        let force = lvl.state == DirState::Created;
        let set = self
            .ap
            .finish_dir(dst, &lvl.meta, force)
            .map_err(|e| self.at(e))?;
        if set && lvl.state == DirState::Unchanged {
            lvl.state = DirState::Updated;
        }
        match lvl.state {
            DirState::Created => {}
            DirState::Unchanged => self.stats.unchanged += 1,
            DirState::Updated => self.stats.metadata_updated += 1,
        }
        Ok(())
    }

    fn stat_src(&self, dir: BorrowedFd<'_>, name: &CStr) -> Result<Meta, SyncError> {
        sys::lstat_at(dir, name).map_err(|e| match e {
            StatError::Io(e) => SyncError::io("stat", self.src_here(), e),
            StatError::UnknownType(mode) => SyncError::UnsupportedType {
                path: self.src_here(),
                mode,
            },
        })
    }

    fn stat_dst(&self, dir: BorrowedFd<'_>, name: &CStr) -> Result<Option<Meta>, SyncError> {
        sys::lstat_opt(dir, name).map_err(|e| match e {
            StatError::Io(e) => SyncError::io("stat", self.dst_here(), e),
            // Linux has no other types; treat it as something to replace.
            StatError::UnknownType(_) => SyncError::io("stat", self.dst_here(), Errno::INVAL),
        })
    }

    /// Removes the destination entry `d` at `dir/name` ahead of a creation.
    fn clear(&mut self, dir: BorrowedFd<'_>, name: &CStr) -> Result<(), SyncError> {
        let n = remove::remove_entry(dir, name, &self.dst_here(), &self.guard)?;
        // The entry itself is counted as replaced by the caller.
        self.stats.removed += n.saturating_sub(1);
        Ok(())
    }

    /// Syncs one source entry (`self.rel` names it; `below`: the changed paths under it,
    /// where only those can differ). Returns the level to descend into for a directory.
    fn entry<'c>(
        &mut self,
        src_dir: BorrowedFd<'_>,
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
        fresh: bool,
        below: Option<&'c Changed>,
    ) -> Result<Option<(DirHandle, DirHandle, Level<'c>)>, SyncError> {
        let s = self.stat_src(src_dir, name)?;
        let d = if fresh {
            None
        } else {
            self.stat_dst(dst_dir, name)?
        };
        if s.kind == Kind::Socket {
            // BuildKit leaves sockets out of layers: neither copied nor kept
            // over something else.
            self.stats.sockets_skipped += 1;
            if let Some(d) = d {
                if d.kind != Kind::Socket {
                    self.stats.removed +=
                        remove::remove_entry(dst_dir, name, &self.dst_here(), &self.guard)?;
                }
            }
            return Ok(None);
        }
        if s.kind != Kind::Dir && s.nlink > 1 && self.links.group(s.key()).is_some() {
            self.group_member(src_dir, dst_dir, name, &s, d)?;
            return Ok(None);
        }
        if s.kind == Kind::Dir {
            return self
                .dir_entry(src_dir, dst_dir, name, (s, d), below)
                .map(Some);
        }
        let Some(d) = d else {
            self.create(src_dir, dst_dir, name, &s)?;
            self.stats.created += 1;
            return Ok(None);
        };
        let verdict = if d.kind == Kind::Dir {
            Verdict::Replace
        } else {
            let opts = if below.is_some() {
                &self.named_opts
            } else {
                self.opts
            };
            compare::classify(opts, self.ap.xio, src_dir, dst_dir, name, &s, &d)
                .map_err(|e| self.at(e))?
        };
        // Left in place, it must not stay linked to a name it is not
        // linked to in the source.
        let verdict = if !matches!(verdict, Verdict::Replace)
            && self.links.conflict(self.rel.as_bytes(), &d)?
        {
            Verdict::Replace
        } else {
            verdict
        };
        match verdict {
            Verdict::Equal => self.stats.unchanged += 1,
            Verdict::MetaOnly { src_x, dst_x } => {
                self.ap
                    .update_in_place(dst_dir, name, &s, &d, &src_x, &dst_x)
                    .map_err(|e| self.at(e))?;
                self.stats.metadata_updated += 1;
            }
            Verdict::Replace => {
                self.clear(dst_dir, name)?;
                self.create(src_dir, dst_dir, name, &s)?;
                self.stats.replaced += 1;
            }
        }
        Ok(None)
    }

    fn create(
        &mut self,
        src_dir: BorrowedFd<'_>,
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
        s: &Meta,
    ) -> Result<(), SyncError> {
        let n = self
            .ap
            .create_nondir(src_dir, dst_dir, name, s)
            .map_err(|e| self.at(e))?;
        self.stats.bytes_written += n;
        Ok(())
    }

    /// A source directory: update or create the destination one, clear out
    /// what the source lacks, and hand back the level to descend into.
    fn dir_entry<'c>(
        &mut self,
        src_dir: BorrowedFd<'_>,
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
        (s, d): (Meta, Option<Meta>),
        below: Option<&'c Changed>,
    ) -> Result<(DirHandle, DirHandle, Level<'c>), SyncError> {
        self.guard.check_src_dir(&s, &self.src_here())?;
        let sh = DirHandle::open(src_dir, name, &s)
            .map_err(|e| SyncError::io("open directory", self.src_here(), e))?;
        let names = self.read_src_dir(&sh)?;
        match d {
            Some(d) if d.kind == Kind::Dir => {
                self.guard.check_dst_dir(&d, &self.dst_here())?;
                let dh = DirHandle::open(dst_dir, name, &d)
                    .map_err(|e| SyncError::io("open directory", self.dst_here(), e))?;
                let updated = self
                    .ap
                    .update_dir(sh.fd(), dh.fd(), &s, &d)
                    .map_err(|e| self.at(e))?;
                let dst_names = self.delete_extras(dh.fd(), &names)?;
                let state = if updated {
                    DirState::Updated
                } else {
                    DirState::Unchanged
                };
                let mut level = self.level(names, s, false, state);
                level.changed = below.map(|c| (c, dst_names));
                Ok((sh, dh, level))
            }
            other => {
                if other.is_some() {
                    self.clear(dst_dir, name)?;
                    self.stats.replaced += 1;
                } else {
                    self.stats.created += 1;
                }
                let dh = self
                    .ap
                    .create_dir(&sh, dst_dir, name, &s)
                    .map_err(|e| self.at(e))?;
                Ok((sh, dh, self.level(names, s, true, DirState::Created)))
            }
        }
    }

    fn level<'c>(
        &self,
        names: Vec<CString>,
        meta: Meta,
        fresh: bool,
        state: DirState,
    ) -> Level<'c> {
        Level {
            names,
            changed: None,
            next: 0,
            meta,
            fresh,
            state,
        }
    }

    /// A member of a source hardlink group.
    fn group_member(
        &mut self,
        src_dir: BorrowedFd<'_>,
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
        s: &Meta,
        d: Option<Meta>,
    ) -> Result<(), SyncError> {
        let rel = self.rel.as_bytes().to_vec();
        let first = match self.links.group(s.key()) {
            Some(GroupState::Keep) => {
                // The plan saw this name in place; check nothing moved since.
                match d {
                    Some(d) if compare::stat_equal(s, &d) => {
                        self.stats.unchanged += 1;
                        return Ok(());
                    }
                    _ => {
                        return Err(SyncError::Changed {
                            path: self.dst_here(),
                            what: "hardlinked entry changed during the sync",
                        })
                    }
                }
            }
            Some(GroupState::Recreate { first }) => first.clone(),
            None => None,
        };
        if d.is_some() {
            self.clear(dst_dir, name)?;
            self.stats.replaced += 1;
        } else {
            self.stats.created += 1;
        }
        // Rewritten only to join its group: to a layer differ that compares metadata (and not
        // links) the new entry looks unchanged, and it would leave it out of the layer, where
        // the old entry's links then stay. See [`mark_rewritten`].
        let unchanged_but_for_links =
            d.filter(|d| self.opts.for_layer_differ && compare::stat_equal(s, d));
        match first {
            None => {
                self.create(src_dir, dst_dir, name, s)?;
                if let Some(GroupState::Recreate { first }) = self.links.group(s.key()) {
                    *first = Some(rel);
                }
            }
            Some(first) => {
                let Some((dir, fname)) = self.links.resolve_dst(&first)? else {
                    return Err(SyncError::Changed {
                        path: join_bytes(self.dst_path, &first),
                        what: "hardlink target vanished during the sync",
                    });
                };
                sys::link_at(dir.as_fd(), &fname, dst_dir, name)
                    .map_err(|e| SyncError::io("link", self.dst_here(), e))?;
            }
        }
        if let Some(old) = unchanged_but_for_links {
            mark_rewritten(dst_dir, name, s, &old)
                .map_err(|e| SyncError::io("set times", self.dst_here(), e))?;
        }
        Ok(())
    }
}

/// Moves the mtime of `dst_dir/name` (which has `s`'s metadata, and replaced an entry `old`
/// with the same) by one nanosecond within its second, away from `old`'s. Layer differs leave
/// out an entry whose mode, owner, size and mtime equal the lower one's (BuildKit's overlay
/// differ, `util/overlay` `sameDirent`); they do not look at hardlinks, so an entry rewritten
/// only to be linked to new names would be left out, and the image would keep its old links.
/// Layer tars hold whole seconds of mtime, so the image shows the source's time all the same.
fn mark_rewritten(
    dst_dir: BorrowedFd<'_>,
    name: &CStr,
    s: &Meta,
    old: &Meta,
) -> Result<(), rustix::io::Errno> {
    let mut mtime = s.mtime;
    mtime.nsec = if old.mtime.nsec == 0 {
        1
    } else {
        old.mtime.nsec - 1
    };
    sys::set_times_at(dst_dir, name, s.atime, mtime)
}

#[cfg(test)]
mod tests;
