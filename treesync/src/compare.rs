//! The equality rule: when is a destination entry already what the source
//! entry is, so that it must not be touched at all.
//!
//! Two entries are equal when their type, 12 permission bits, owner, group,
//! mtime (seconds and nanoseconds), size (not for directories), symlink
//! target, device number (devices) and xattrs (per [`XattrPolicy`]) are
//! equal. File content is then assumed equal: comparing bytes would read
//! every file of both images. [`SyncOptions::verify_content`] adds the byte
//! comparison for files whose metadata matches.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::io::Errno;

use crate::sys::{self, Kind, Meta, Node, Xattr, XattrIo};
use crate::{SyncOptions, XattrPolicy};

/// The xattr that holds file capabilities.
pub(crate) const CAPABILITY: &CStr = c"security.capability";

/// Xattrs never compared or copied with [`XattrPolicy::All`]: overlayfs'
/// own bookkeeping, and SELinux labels, which the host's policy assigns and
/// a build step usually cannot set.
const IGNORED_PREFIXES: &[&[u8]] = &[b"trusted.overlay.", b"user.overlay.", b"security.selinux"];

/// Which side of the sync an error happened on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Src,
    Dst,
}

/// An error not yet tied to a path: the caller knows the path.
#[derive(Debug)]
pub(crate) struct SideErr {
    pub side: Side,
    pub op: &'static str,
    pub err: io::Error,
}

impl SideErr {
    pub(crate) fn src(op: &'static str) -> impl FnOnce(Errno) -> SideErr {
        move |e| SideErr {
            side: Side::Src,
            op,
            err: e.into(),
        }
    }
    pub(crate) fn dst(op: &'static str) -> impl FnOnce(Errno) -> SideErr {
        move |e| SideErr {
            side: Side::Dst,
            op,
            err: e.into(),
        }
    }
}

/// Whether an xattr name takes part in comparison and copying.
pub(crate) fn xattr_relevant(policy: XattrPolicy, name: &CStr) -> bool {
    match policy {
        XattrPolicy::CapabilityOnly => name == CAPABILITY,
        XattrPolicy::All => {
            let b = name.to_bytes();
            !IGNORED_PREFIXES.iter().any(|p| b.starts_with(p))
        }
    }
}

/// Reads the relevant xattrs of an entry, sorted by name.
pub(crate) fn read_xattrs(
    xio: XattrIo,
    policy: XattrPolicy,
    node: Node<'_>,
    kind: Kind,
) -> Result<Vec<Xattr>, Errno> {
    let mut out = Vec::new();
    match policy {
        XattrPolicy::CapabilityOnly => {
            if let Some(v) = xio.get(node, kind, CAPABILITY)? {
                out.push((CAPABILITY.to_owned(), v));
            }
        }
        XattrPolicy::All => {
            for name in xio.list(node, kind)? {
                if !xattr_relevant(policy, &name) {
                    continue;
                }
                if let Some(v) = xio.get(node, kind, &name)? {
                    out.push((name, v));
                }
            }
            out.sort();
        }
    }
    Ok(out)
}

/// Whether what `lstat` shows is equal (everything but xattrs, symlink
/// target and content). Directory sizes are filesystem-specific and ignored.
pub(crate) fn stat_equal(s: &Meta, d: &Meta) -> bool {
    s.kind == d.kind
        && s.perm == d.perm
        && s.uid == d.uid
        && s.gid == d.gid
        && s.mtime == d.mtime
        && (s.kind == Kind::Dir || s.size == d.size)
        && (!matches!(s.kind, Kind::CharDev | Kind::BlockDev) || s.rdev == d.rdev)
}

/// The outcome of comparing two non-directory entries of the same name.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Equal: leave the destination alone.
    Equal,
    /// Same identity and content, but owner/mode/times/xattrs differ: can be
    /// fixed in place. Carries the xattrs already read.
    MetaOnly {
        src_x: Vec<Xattr>,
        dst_x: Vec<Xattr>,
    },
    /// Different type, content, target or device: remove and create.
    Replace,
}

/// Compares the non-directory `src_dir/name` (`s`) with `dst_dir/name` (`d`).
pub(crate) fn classify(
    opts: &SyncOptions,
    xio: XattrIo,
    src_dir: BorrowedFd<'_>,
    dst_dir: BorrowedFd<'_>,
    name: &CStr,
    s: &Meta,
    d: &Meta,
) -> Result<Verdict, SideErr> {
    if s.kind != d.kind {
        return Ok(Verdict::Replace);
    }
    match s.kind {
        Kind::File => {
            if s.size != d.size || s.mtime != d.mtime {
                return Ok(Verdict::Replace);
            }
            if opts.verify_content && !same_file_content(src_dir, dst_dir, name, s, d)? {
                return Ok(Verdict::Replace);
            }
        }
        Kind::Symlink => {
            if s.size != d.size {
                return Ok(Verdict::Replace);
            }
            let a = sys::readlink_at(src_dir, name).map_err(SideErr::src("read link"))?;
            let b = sys::readlink_at(dst_dir, name).map_err(SideErr::dst("read link"))?;
            if a != b {
                return Ok(Verdict::Replace);
            }
        }
        Kind::CharDev | Kind::BlockDev => {
            if s.rdev != d.rdev {
                return Ok(Verdict::Replace);
            }
        }
        Kind::Fifo | Kind::Socket | Kind::Dir => {}
    }
    let src_x = read_xattrs(xio, opts.xattrs, Node::At(src_dir, name), s.kind)
        .map_err(SideErr::src("read xattrs of"))?;
    let dst_x = read_xattrs(xio, opts.xattrs, Node::At(dst_dir, name), d.kind)
        .map_err(SideErr::dst("read xattrs of"))?;
    if stat_equal(s, d) && src_x == dst_x {
        Ok(Verdict::Equal)
    } else {
        Ok(Verdict::MetaOnly { src_x, dst_x })
    }
}

fn same_file_content(
    src_dir: BorrowedFd<'_>,
    dst_dir: BorrowedFd<'_>,
    name: &CStr,
    s: &Meta,
    d: &Meta,
) -> Result<bool, SideErr> {
    let a = sys::open_read_at(src_dir, name).map_err(SideErr::src("open"))?;
    let b = sys::open_read_at(dst_dir, name).map_err(SideErr::dst("open"))?;
    check_same_inode(a.as_fd(), s).map_err(|err| SideErr {
        side: Side::Src,
        op: "open",
        err,
    })?;
    check_same_inode(b.as_fd(), d).map_err(|err| SideErr {
        side: Side::Dst,
        op: "open",
        err,
    })?;
    sys::same_content(a.as_fd(), b.as_fd(), s.size).map_err(|err| SideErr {
        side: Side::Dst,
        op: "compare content of",
        err,
    })
}

/// Checks that an opened descriptor is the entry `m` was taken from.
pub(crate) fn check_same_inode(fd: BorrowedFd<'_>, m: &Meta) -> io::Result<()> {
    let st = rustix::fs::fstat(fd)?;
    if (st.st_dev, st.st_ino) != m.key() {
        return Err(io::Error::other("entry was replaced while being opened"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Ts;

    fn meta(kind: Kind) -> Meta {
        Meta {
            kind,
            perm: 0o644,
            uid: 0,
            gid: 0,
            size: 10,
            atime: Ts { sec: 1, nsec: 0 },
            mtime: Ts { sec: 100, nsec: 5 },
            rdev: 0,
            dev: 1,
            ino: 2,
            nlink: 1,
            mnt_id: None,
        }
    }

    #[test]
    fn stat_equal_checks_every_field_of_the_rule() {
        let a = meta(Kind::File);
        assert!(stat_equal(&a, &a));
        let mut b = a;
        b.mtime.nsec = 6;
        assert!(!stat_equal(&a, &b), "nanoseconds count");
        let mut b = a;
        b.perm = 0o4644;
        assert!(!stat_equal(&a, &b), "setuid counts");
        let mut b = a;
        b.uid = 1;
        assert!(!stat_equal(&a, &b));
        let mut b = a;
        b.gid = 1;
        assert!(!stat_equal(&a, &b));
        let mut b = a;
        b.size = 11;
        assert!(!stat_equal(&a, &b));
        let mut b = a;
        b.kind = Kind::Fifo;
        assert!(!stat_equal(&a, &b));
        // atime, inode and link count are not part of the rule.
        let mut b = a;
        b.atime.sec = 99;
        b.ino = 77;
        b.nlink = 3;
        assert!(stat_equal(&a, &b));
        // Directory sizes are ignored, device numbers are not.
        let (mut d1, mut d2) = (meta(Kind::Dir), meta(Kind::Dir));
        d1.size = 4096;
        d2.size = 60;
        assert!(stat_equal(&d1, &d2));
        let (c1, mut c2) = (meta(Kind::CharDev), meta(Kind::CharDev));
        c2.rdev = 5;
        assert!(!stat_equal(&c1, &c2));
    }

    #[test]
    fn xattr_policy_filters_names() {
        assert!(xattr_relevant(XattrPolicy::All, c"user.foo"));
        assert!(xattr_relevant(XattrPolicy::All, CAPABILITY));
        assert!(!xattr_relevant(XattrPolicy::All, c"trusted.overlay.opaque"));
        assert!(!xattr_relevant(XattrPolicy::All, c"security.selinux"));
        assert!(xattr_relevant(XattrPolicy::CapabilityOnly, CAPABILITY));
        assert!(!xattr_relevant(XattrPolicy::CapabilityOnly, c"user.foo"));
    }
}
