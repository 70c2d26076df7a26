//! Changes to the destination: creating entries and fixing metadata in place.
//!
//! Order matters and is the same everywhere: content, then owner (`chown`
//! clears setuid/setgid and `security.capability`), then mode, then xattrs,
//! then times (every earlier step may bump the mtime, the last one sets it).

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd};

use crate::compare::{self, SideErr};
use crate::dirstack::DirHandle;
use crate::sys::{self, Kind, Meta, Node, Xattr, XattrIo};
use crate::SyncOptions;

/// What creating and updating need to know.
pub(crate) struct Applier<'a> {
    pub opts: &'a SyncOptions,
    pub xio: XattrIo,
}

impl Applier<'_> {
    /// Creates the non-directory `dst_dir/name` as a copy of `src_dir/name`
    /// (`s`). Nothing may exist there. Returns the bytes of data written.
    pub(crate) fn create_nondir(
        &self,
        src_dir: BorrowedFd<'_>,
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
        s: &Meta,
    ) -> Result<u64, SideErr> {
        match s.kind {
            Kind::File => self.create_file(src_dir, dst_dir, name, s),
            Kind::Symlink => {
                let target = sys::readlink_at(src_dir, name).map_err(SideErr::src("read link"))?;
                sys::symlink_at(&target, dst_dir, name).map_err(SideErr::dst("create symlink"))?;
                self.finish_at(src_dir, dst_dir, name, s)?;
                Ok(0)
            }
            Kind::Fifo | Kind::CharDev | Kind::BlockDev => {
                sys::mknod_at(dst_dir, name, s.kind, s.rdev)
                    .map_err(SideErr::dst("create special file"))?;
                self.finish_at(src_dir, dst_dir, name, s)?;
                Ok(0)
            }
            // Callers never pass these.
            Kind::Dir | Kind::Socket => Err(SideErr::dst("create")(rustix::io::Errno::INVAL)),
        }
    }

    fn create_file(
        &self,
        src_dir: BorrowedFd<'_>,
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
        s: &Meta,
    ) -> Result<u64, SideErr> {
        let src = sys::open_read_at(src_dir, name).map_err(SideErr::src("open"))?;
        compare::check_same_inode(src.as_fd(), s).map_err(|err| SideErr {
            side: compare::Side::Src,
            op: "open",
            err,
        })?;
        let dst = sys::create_file_at(dst_dir, name).map_err(SideErr::dst("create file"))?;
        let written = sys::copy_data(src.as_fd(), dst.as_fd(), s.size).map_err(|err| SideErr {
            side: compare::Side::Dst,
            op: "copy data into",
            err,
        })?;
        sys::fchown(dst.as_fd(), s.uid, s.gid).map_err(SideErr::dst("change owner of"))?;
        sys::fchmod(dst.as_fd(), s.perm).map_err(SideErr::dst("change mode of"))?;
        let src_x = compare::read_xattrs(self.xio, self.opts.xattrs, Node::Fd(src.as_fd()), s.kind)
            .map_err(SideErr::src("read xattrs of"))?;
        self.reconcile_xattrs(Node::Fd(dst.as_fd()), s.kind, &src_x, None)?;
        sys::futimens(dst.as_fd(), s.atime, s.mtime).map_err(SideErr::dst("set times on"))?;
        Ok(written)
    }

    /// Owner, mode, xattrs and times of a just-created symlink, fifo or
    /// device node, by name and without following it.
    fn finish_at(
        &self,
        src_dir: BorrowedFd<'_>,
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
        s: &Meta,
    ) -> Result<(), SideErr> {
        sys::lchown_at(dst_dir, name, s.uid, s.gid).map_err(SideErr::dst("change owner of"))?;
        if s.kind != Kind::Symlink {
            sys::lchmod_at(dst_dir, name, s.perm, self.xio.proc_ok)
                .map_err(SideErr::dst("change mode of"))?;
        }
        let src_x =
            compare::read_xattrs(self.xio, self.opts.xattrs, Node::At(src_dir, name), s.kind)
                .map_err(SideErr::src("read xattrs of"))?;
        self.reconcile_xattrs(Node::At(dst_dir, name), s.kind, &src_x, None)?;
        sys::set_times_at(dst_dir, name, s.atime, s.mtime).map_err(SideErr::dst("set times on"))
    }

    /// Creates the directory `dst_dir/name` for the source directory `src`
    /// (`s`) with owner, mode and xattrs; its times are set once its
    /// children are done.
    pub(crate) fn create_dir(
        &self,
        src: &DirHandle,
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
        s: &Meta,
    ) -> Result<DirHandle, SideErr> {
        sys::mkdir_at(dst_dir, name).map_err(SideErr::dst("create directory"))?;
        let d = sys::lstat_at(dst_dir, name).map_err(|e| stat_err(e, "stat"))?;
        let dh = DirHandle::open(dst_dir, name, &d).map_err(|err| SideErr {
            side: compare::Side::Dst,
            op: "open directory",
            err,
        })?;
        sys::fchown(dh.fd(), s.uid, s.gid).map_err(SideErr::dst("change owner of"))?;
        sys::fchmod(dh.fd(), s.perm).map_err(SideErr::dst("change mode of"))?;
        let src_x = compare::read_xattrs(self.xio, self.opts.xattrs, Node::Fd(src.fd()), Kind::Dir)
            .map_err(SideErr::src("read xattrs of"))?;
        self.reconcile_xattrs(Node::Fd(dh.fd()), Kind::Dir, &src_x, None)?;
        Ok(dh)
    }

    /// Brings an existing destination directory's owner, mode and xattrs in
    /// line with the source's (times come later). Returns whether anything
    /// had to change.
    pub(crate) fn update_dir(
        &self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        s: &Meta,
        d: &Meta,
    ) -> Result<bool, SideErr> {
        let src_x = compare::read_xattrs(self.xio, self.opts.xattrs, Node::Fd(src), Kind::Dir)
            .map_err(SideErr::src("read xattrs of"))?;
        let dst_x = compare::read_xattrs(self.xio, self.opts.xattrs, Node::Fd(dst), Kind::Dir)
            .map_err(SideErr::dst("read xattrs of"))?;
        let chown = s.uid != d.uid || s.gid != d.gid;
        if chown {
            sys::fchown(dst, s.uid, s.gid).map_err(SideErr::dst("change owner of"))?;
        }
        if chown || s.perm != d.perm {
            sys::fchmod(dst, s.perm).map_err(SideErr::dst("change mode of"))?;
        }
        let xattrs_differ = src_x != dst_x;
        if chown || xattrs_differ {
            let known = if chown { None } else { Some(&dst_x[..]) };
            self.reconcile_xattrs(Node::Fd(dst), Kind::Dir, &src_x, known)?;
        }
        Ok(chown || s.perm != d.perm || xattrs_differ)
    }

    /// Sets a directory's times from the source unless they already match
    /// (`force` for a directory just created). Returns whether it did.
    pub(crate) fn finish_dir(
        &self,
        dst: &DirHandle,
        s: &Meta,
        force: bool,
    ) -> Result<bool, SideErr> {
        if !force {
            let now = sys::fstat(dst.fd()).map_err(|e| stat_err(e, "stat"))?;
            if now.mtime == s.mtime {
                return Ok(false);
            }
        }
        sys::futimens(dst.fd(), s.atime, s.mtime).map_err(SideErr::dst("set times on"))?;
        Ok(true)
    }

    /// Fixes owner, mode, xattrs and times of the existing non-directory
    /// `dst_dir/name` (`d`, same type and content as `s`) in place.
    pub(crate) fn update_in_place(
        &self,
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
        s: &Meta,
        d: &Meta,
        src_x: &[Xattr],
        dst_x: &[Xattr],
    ) -> Result<(), SideErr> {
        let chown = s.uid != d.uid || s.gid != d.gid;
        if chown {
            sys::lchown_at(dst_dir, name, s.uid, s.gid).map_err(SideErr::dst("change owner of"))?;
        }
        if s.kind != Kind::Symlink && (chown || s.perm != d.perm) {
            sys::lchmod_at(dst_dir, name, s.perm, self.xio.proc_ok)
                .map_err(SideErr::dst("change mode of"))?;
        }
        if chown || src_x != dst_x {
            let known = if chown { None } else { Some(dst_x) };
            self.reconcile_xattrs(Node::At(dst_dir, name), s.kind, src_x, known)?;
        }
        if s.mtime != d.mtime {
            sys::set_times_at(dst_dir, name, s.atime, s.mtime)
                .map_err(SideErr::dst("set times on"))?;
        }
        Ok(())
    }

    /// Makes the relevant xattrs of `node` exactly `want`. `known` is what the
    /// destination has, if already read (and not changed since).
    fn reconcile_xattrs(
        &self,
        node: Node<'_>,
        kind: Kind,
        want: &[Xattr],
        known: Option<&[Xattr]>,
    ) -> Result<(), SideErr> {
        let read;
        let have: &[Xattr] = match known {
            Some(k) => k,
            None => {
                read = compare::read_xattrs(self.xio, self.opts.xattrs, node, kind)
                    .map_err(SideErr::dst("read xattrs of"))?;
                &read
            }
        };
        for (name, _) in have {
            if !want.iter().any(|(n, _)| n == name) {
                self.xio
                    .remove(node, kind, name)
                    .map_err(SideErr::dst("remove xattr from"))?;
            }
        }
        for (name, value) in want {
            if !have.iter().any(|(n, v)| n == name && v == value) {
                self.xio
                    .set(node, kind, name, value)
                    .map_err(SideErr::dst("set xattr on"))?;
            }
        }
        Ok(())
    }
}

fn stat_err(e: sys::StatError, op: &'static str) -> SideErr {
    match e {
        sys::StatError::Io(e) => SideErr::dst(op)(e),
        sys::StatError::UnknownType(_) => SideErr::dst(op)(rustix::io::Errno::INVAL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn created_file_keeps_setuid_owner_and_nanosecond_mtime() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("s")).unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        let f = t.path().join("s/f");
        std::fs::write(&f, b"data").unwrap();
        rustix::fs::chown(
            &f,
            Some(rustix::fs::Uid::from_raw(1234)),
            Some(rustix::fs::Gid::from_raw(5678)),
        )
        .unwrap();
        rustix::fs::chmod(&f, rustix::fs::Mode::from_raw_mode(0o6755)).unwrap();
        let ts = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 1000,
                tv_nsec: 1,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 2000,
                tv_nsec: 123_456_789,
            },
        };
        rustix::fs::utimensat(rustix::fs::CWD, &f, &ts, rustix::fs::AtFlags::empty()).unwrap();

        let sd = sys::open_root(&t.path().join("s")).unwrap();
        let dd = sys::open_root(&t.path().join("d")).unwrap();
        let name = CString::new("f").unwrap();
        let s = sys::lstat_at(sd.as_fd(), &name).unwrap();
        let opts = SyncOptions::default();
        let ap = Applier {
            opts: &opts,
            xio: XattrIo {
                proc_ok: sys::proc_available(dd.as_fd()),
            },
        };
        let n = ap.create_nondir(sd.as_fd(), dd.as_fd(), &name, &s).unwrap();
        assert_eq!(n, 4);
        let m = std::fs::symlink_metadata(t.path().join("d/f")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o6755);
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
        assert_eq!((m.mtime(), m.mtime_nsec()), (2000, 123_456_789));
        assert_eq!(std::fs::read(t.path().join("d/f")).unwrap(), b"data");
    }
}
