//! Thin, safe wrappers over the `*at()` system calls the sync is built on.
//!
//! Every function here works on a directory file descriptor plus a single
//! name (never a multi-component path) and never follows a symlink in that
//! last component. Nothing here knows about the sync's policy.

use std::ffi::{CStr, CString};
use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, StatxFlags, Timespec, Timestamps};
use rustix::io::Errno;

/// The kind of a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDev,
    BlockDev,
    Socket,
}

impl Kind {
    pub(crate) fn from_mode(mode: u32) -> Option<Kind> {
        Some(match FileType::from_raw_mode(mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::CharacterDevice => Kind::CharDev,
            FileType::BlockDevice => Kind::BlockDev,
            FileType::Socket => Kind::Socket,
            _ => return None,
        })
    }

    fn file_type(self) -> FileType {
        match self {
            Kind::File => FileType::RegularFile,
            Kind::Dir => FileType::Directory,
            Kind::Symlink => FileType::Symlink,
            Kind::Fifo => FileType::Fifo,
            Kind::CharDev => FileType::CharacterDevice,
            Kind::BlockDev => FileType::BlockDevice,
            Kind::Socket => FileType::Socket,
        }
    }
}

/// A timestamp with nanosecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ts {
    pub sec: i64,
    pub nsec: u32,
}

impl Ts {
    fn to_timespec(self) -> Timespec {
        Timespec {
            tv_sec: self.sec,
            tv_nsec: self.nsec.into(),
        }
    }
}

/// What `lstat` tells about an entry, reduced to what the sync uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub kind: Kind,
    /// The 12 permission bits (rwx for u/g/o plus setuid, setgid, sticky).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime: Ts,
    pub mtime: Ts,
    pub rdev: u64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    /// The mount id, when the kernel reports it (statx, Linux 5.8+).
    pub mnt_id: Option<u64>,
}

impl Meta {
    pub(crate) fn key(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// `lstat` could not classify the entry: carries the raw mode.
#[derive(Debug)]
pub(crate) enum StatError {
    Io(Errno),
    UnknownType(u32),
}

impl From<Errno> for StatError {
    fn from(e: Errno) -> Self {
        StatError::Io(e)
    }
}

fn meta_from_statx(x: &rfs::Statx) -> Result<Meta, StatError> {
    let mode = u32::from(x.stx_mode);
    let kind = Kind::from_mode(mode).ok_or(StatError::UnknownType(mode))?;
    let ts = |t: rfs::StatxTimestamp| Ts {
        sec: t.tv_sec,
        nsec: t.tv_nsec,
    };
    let mnt_id = (x.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(x.stx_mnt_id);
    Ok(Meta {
        kind,
        perm: mode & 0o7777,
        uid: x.stx_uid,
        gid: x.stx_gid,
        size: x.stx_size,
        atime: ts(x.stx_atime),
        mtime: ts(x.stx_mtime),
        rdev: rfs::makedev(x.stx_rdev_major, x.stx_rdev_minor),
        dev: rfs::makedev(x.stx_dev_major, x.stx_dev_minor),
        ino: x.stx_ino,
        nlink: x.stx_nlink.into(),
        mnt_id,
    })
}

// `st_nlink` is a u64 on x86_64, ppc64le and s390x, a u32 on aarch64, arm and i686: the
// conversion is a no-op on the first.
#[allow(clippy::useless_conversion)]
fn meta_from_stat(st: &rfs::Stat) -> Result<Meta, StatError> {
    let mode = st.st_mode;
    let kind = Kind::from_mode(mode).ok_or(StatError::UnknownType(mode))?;
    fn ts(sec: i64, nsec: impl TryInto<u32>) -> Ts {
        Ts {
            sec,
            nsec: nsec.try_into().unwrap_or(0),
        }
    }
    Ok(Meta {
        kind,
        perm: mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: u64::try_from(st.st_size).unwrap_or(0),
        atime: ts(st.st_atime, st.st_atime_nsec),
        mtime: ts(st.st_mtime, st.st_mtime_nsec),
        rdev: st.st_rdev,
        dev: st.st_dev,
        ino: st.st_ino,
        nlink: u64::from(st.st_nlink),
        mnt_id: None,
    })
}

fn stat_impl(dirfd: BorrowedFd<'_>, name: &CStr, flags: AtFlags) -> Result<Meta, StatError> {
    let flags = flags | AtFlags::SYMLINK_NOFOLLOW;
    match rfs::statx(
        dirfd,
        name,
        flags | AtFlags::STATX_SYNC_AS_STAT,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    ) {
        Ok(x) => meta_from_statx(&x),
        // No statx (old kernel or a seccomp filter): plain fstatat.
        Err(Errno::NOSYS) | Err(Errno::PERM) => meta_from_stat(&rfs::statat(dirfd, name, flags)?),
        Err(e) => Err(e.into()),
    }
}

/// `lstat(dirfd/name)`: never follows a symlink.
pub(crate) fn lstat_at(dirfd: BorrowedFd<'_>, name: &CStr) -> Result<Meta, StatError> {
    stat_impl(dirfd, name, AtFlags::empty())
}

/// Like [`lstat_at`], but a missing entry is `Ok(None)`.
pub(crate) fn lstat_opt(dirfd: BorrowedFd<'_>, name: &CStr) -> Result<Option<Meta>, StatError> {
    match lstat_at(dirfd, name) {
        Ok(m) => Ok(Some(m)),
        Err(StatError::Io(Errno::NOENT)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `fstat(fd)`.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> Result<Meta, StatError> {
    stat_impl(fd, c"", AtFlags::EMPTY_PATH)
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens the directory `dirfd/name` for reading; fails (ELOOP/ENOTDIR) on a
/// symlink or anything that is not a directory.
pub(crate) fn open_dir_at(dirfd: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    rfs::openat(dirfd, name, DIR_FLAGS, Mode::empty())
}

/// Opens a root given by path (trusted up to its last component, which must
/// be a real directory, not a symlink to one).
pub(crate) fn open_root(path: &std::path::Path) -> Result<OwnedFd, Errno> {
    rfs::open(path, DIR_FLAGS, Mode::empty())
}

/// Opens the regular file `dirfd/name` for reading without following a
/// symlink and without blocking (should it have been swapped for a fifo).
pub(crate) fn open_read_at(dirfd: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    rfs::openat(
        dirfd,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    )
}

/// Creates a new regular file `dirfd/name` (`O_EXCL`, so never through a
/// symlink or over an existing entry), mode 0600 until the caller fixes it.
pub(crate) fn create_file_at(dirfd: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    rfs::openat(
        dirfd,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
}

/// Opens `dirfd/name` with `O_PATH|O_NOFOLLOW`: a handle on the entry itself,
/// whatever its type, that cannot read or write it.
pub(crate) fn open_path_at(dirfd: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    rfs::openat(
        dirfd,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The names in a directory, without "." and "..", sorted bytewise.
pub(crate) fn list_names(dirfd: BorrowedFd<'_>) -> Result<Vec<CString>, Errno> {
    let mut dir = rfs::Dir::read_from(dirfd)?;
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        names.push(name.to_owned());
    }
    names.sort_unstable();
    Ok(names)
}

pub(crate) fn readlink_at(dirfd: BorrowedFd<'_>, name: &CStr) -> Result<CString, Errno> {
    rfs::readlinkat(dirfd, name, Vec::new())
}

pub(crate) fn mkdir_at(dirfd: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    rfs::mkdirat(dirfd, name, Mode::from_raw_mode(0o700))
}

pub(crate) fn symlink_at(target: &CStr, dirfd: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    rfs::symlinkat(target, dirfd, name)
}

/// `mknodat` for fifos and device nodes (mode 0600 until fixed).
pub(crate) fn mknod_at(
    dirfd: BorrowedFd<'_>,
    name: &CStr,
    kind: Kind,
    rdev: u64,
) -> Result<(), Errno> {
    rfs::mknodat(
        dirfd,
        name,
        kind.file_type(),
        Mode::from_raw_mode(0o600),
        rdev,
    )
}

/// `linkat(olddir, oldname, newdir, newname, 0)`: links the entry itself,
/// even if it is a symlink.
pub(crate) fn link_at(
    olddir: BorrowedFd<'_>,
    oldname: &CStr,
    newdir: BorrowedFd<'_>,
    newname: &CStr,
) -> Result<(), Errno> {
    rfs::linkat(olddir, oldname, newdir, newname, AtFlags::empty())
}

pub(crate) fn unlink_at(dirfd: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    rfs::unlinkat(dirfd, name, AtFlags::empty())
}

pub(crate) fn rmdir_at(dirfd: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    rfs::unlinkat(dirfd, name, AtFlags::REMOVEDIR)
}

/// `lchown`: changes the entry itself, never a symlink's target.
pub(crate) fn lchown_at(
    dirfd: BorrowedFd<'_>,
    name: &CStr,
    uid: u32,
    gid: u32,
) -> Result<(), Errno> {
    // u32::MAX would mean "leave unchanged", but no stat reports it.
    rfs::chownat(
        dirfd,
        name,
        Some(rfs::Uid::from_raw(uid)),
        Some(rfs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
}

pub(crate) fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> Result<(), Errno> {
    rfs::fchown(
        fd,
        Some(rfs::Uid::from_raw(uid)),
        Some(rfs::Gid::from_raw(gid)),
    )
}

pub(crate) fn fchmod(fd: BorrowedFd<'_>, perm: u32) -> Result<(), Errno> {
    rfs::fchmod(fd, Mode::from_raw_mode(perm))
}

/// The `/proc/self/fd/N` path of an open descriptor, optionally followed by
/// one more name. Resolving it jumps straight to the object the descriptor
/// refers to; the optional name is a single component looked up in it.
pub(crate) fn proc_path(fd: BorrowedFd<'_>, name: Option<&CStr>) -> CString {
    use std::os::fd::AsRawFd;
    let mut s = String::with_capacity(32);
    let _ = write!(s, "/proc/self/fd/{}", fd.as_raw_fd());
    let mut bytes = s.into_bytes();
    if let Some(name) = name {
        bytes.push(b'/');
        bytes.extend_from_slice(name.to_bytes());
    }
    // Neither part can hold a NUL: the name came out of a CStr.
    CString::new(bytes).unwrap_or_default()
}

/// Whether `/proc/self/fd` works here (it is needed to reach the xattrs of
/// symlinks and device nodes, and to chmod device nodes, without following
/// anything).
pub(crate) fn proc_available(probe: BorrowedFd<'_>) -> bool {
    let Ok(via_proc) = rfs::stat(proc_path(probe, None)) else {
        return false;
    };
    let Ok(direct) = rfs::fstat(probe) else {
        return false;
    };
    via_proc.st_dev == direct.st_dev && via_proc.st_ino == direct.st_ino
}

/// `chmod` on the entry itself. Symlinks have no mode of their own on Linux,
/// so they are left alone. Works through an `O_PATH` handle and
/// `/proc/self/fd` (as glibc's `fchmodat(AT_SYMLINK_NOFOLLOW)` does); without
/// /proc it falls back to `fchmodat` after checking the entry is not a
/// symlink.
pub(crate) fn lchmod_at(
    dirfd: BorrowedFd<'_>,
    name: &CStr,
    perm: u32,
    proc_ok: bool,
) -> Result<(), Errno> {
    let handle = open_path_at(dirfd, name)?;
    let st = rfs::fstat(&handle)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        return Ok(());
    }
    let mode = Mode::from_raw_mode(perm);
    if proc_ok {
        rfs::chmod(proc_path(handle.as_fd(), None), mode)
    } else {
        rfs::chmodat(dirfd, name, mode, AtFlags::empty())
    }
}

fn timestamps(atime: Ts, mtime: Ts) -> Timestamps {
    Timestamps {
        last_access: atime.to_timespec(),
        last_modification: mtime.to_timespec(),
    }
}

/// `utimensat(dirfd, name, .., AT_SYMLINK_NOFOLLOW)`: nanosecond times on the
/// entry itself (symlinks included).
pub(crate) fn set_times_at(
    dirfd: BorrowedFd<'_>,
    name: &CStr,
    atime: Ts,
    mtime: Ts,
) -> Result<(), Errno> {
    rfs::utimensat(
        dirfd,
        name,
        &timestamps(atime, mtime),
        AtFlags::SYMLINK_NOFOLLOW,
    )
}

pub(crate) fn futimens(fd: BorrowedFd<'_>, atime: Ts, mtime: Ts) -> Result<(), Errno> {
    rfs::futimens(fd, &timestamps(atime, mtime))
}

/// Files smaller than this are copied without looking for holes.
const SPARSE_MIN: u64 = 64 * 1024;

/// Copies `size` bytes from `src` to the empty file `dst`, keeping holes
/// (SEEK_DATA/SEEK_HOLE, for files of 64 KiB and more) and using
/// `copy_file_range` with a pread/pwrite fallback. Returns the number of
/// data bytes written.
pub(crate) fn copy_data(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, size: u64) -> io::Result<u64> {
    let mut written = 0u64;
    let mut pos = 0u64;
    let mut data_end = 0u64;
    let mut use_cfr = true;
    let mut buf: Vec<u8> = Vec::new();
    while pos < size {
        // The next data segment [start, end).
        let (start, end) = if size < SPARSE_MIN {
            (pos, size)
        } else {
            match rfs::seek(src, rfs::SeekFrom::Data(pos)) {
                Ok(start) => {
                    let end = match rfs::seek(src, rfs::SeekFrom::Hole(start)) {
                        Ok(end) => end.min(size),
                        Err(_) => size,
                    };
                    (start, end)
                }
                // Only a hole is left.
                Err(Errno::NXIO) => break,
                // SEEK_DATA unsupported: treat everything as data.
                Err(_) => (pos, size),
            }
        };
        if start >= size {
            break;
        }
        let mut off = start;
        while off < end {
            let chunk = usize::try_from(end - off)
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            let n = if use_cfr {
                let mut off_in = off;
                let mut off_out = off;
                match rfs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), chunk) {
                    Ok(n) if n > 0 => n,
                    // 0 before the expected end: some filesystems say so
                    // instead of failing; let read/write decide.
                    Ok(_)
                    | Err(
                        Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP | Errno::PERM,
                    ) => {
                        use_cfr = false;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            } else {
                if buf.is_empty() {
                    buf = vec![0u8; 256 * 1024];
                }
                let want = chunk.min(buf.len());
                let n = rustix::io::pread(src, &mut buf[..want], off)?;
                write_all_at(dst, &buf[..n], off)?;
                n
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "source file shrank while being copied",
                ));
            }
            off += n as u64;
            written += n as u64;
        }
        pos = end;
        data_end = end;
    }
    if data_end < size {
        // Trailing hole (or an all-hole file): set the length.
        rfs::ftruncate(dst, size)?;
    }
    Ok(written)
}

fn write_all_at(fd: BorrowedFd<'_>, mut data: &[u8], mut off: u64) -> io::Result<()> {
    while !data.is_empty() {
        let n = rustix::io::pwrite(fd, data, off)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
        off += n as u64;
    }
    Ok(())
}

/// Compares the first `size` bytes of two open files.
pub(crate) fn same_content(a: BorrowedFd<'_>, b: BorrowedFd<'_>, size: u64) -> io::Result<bool> {
    const CHUNK: usize = 128 * 1024;
    let mut ba = vec![0u8; CHUNK];
    let mut bb = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < size {
        let want = usize::try_from(size - off).unwrap_or(CHUNK).min(CHUNK);
        let na = read_full_at(a, &mut ba[..want], off)?;
        let nb = read_full_at(b, &mut bb[..want], off)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na < want {
            // Both ended early at the same point.
            return Ok(true);
        }
        off += want as u64;
    }
    Ok(true)
}

fn read_full_at(fd: BorrowedFd<'_>, buf: &mut [u8], off: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = rustix::io::pread(fd, &mut buf[got..], off + got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// Where an entry's xattrs are reached.
#[derive(Clone, Copy)]
pub(crate) enum Node<'a> {
    /// An open descriptor on the entry itself (not `O_PATH`).
    Fd(BorrowedFd<'a>),
    /// `dir/name`, not followed.
    At(BorrowedFd<'a>, &'a CStr),
}

/// One extended attribute.
pub(crate) type Xattr = (CString, Vec<u8>);

/// How xattrs are reached when there is no descriptor on the entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct XattrIo {
    pub proc_ok: bool,
}

enum Via<'a> {
    Fd(BorrowedFd<'a>),
    Path(CString),
    Owned(OwnedFd),
    Unreachable,
}

impl XattrIo {
    fn via<'a>(&self, node: Node<'a>, kind: Kind) -> Result<Via<'a>, Errno> {
        Ok(match node {
            Node::Fd(fd) => Via::Fd(fd),
            Node::At(dir, name) if self.proc_ok => Via::Path(proc_path(dir, Some(name))),
            Node::At(dir, name) => match kind {
                // Without /proc, only what can be opened harmlessly.
                Kind::File | Kind::Fifo => Via::Owned(open_read_at(dir, name)?),
                Kind::Dir => Via::Owned(open_dir_at(dir, name)?),
                _ => Via::Unreachable,
            },
        })
    }

    /// Lists the names of the xattrs of an entry (empty where the
    /// filesystem has none or cannot be reached, see `via`).
    pub(crate) fn list(&self, node: Node<'_>, kind: Kind) -> Result<Vec<CString>, Errno> {
        let via = self.via(node, kind)?;
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let size = match &via {
                Via::Fd(fd) => rfs::flistxattr_query(fd),
                Via::Owned(fd) => rfs::flistxattr_query(fd),
                Via::Path(p) => rfs::llistxattr_query(p),
                Via::Unreachable => return Ok(Vec::new()),
            };
            let size = match size {
                Ok(n) => n,
                Err(Errno::NOTSUP) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            if size == 0 {
                return Ok(Vec::new());
            }
            buf.resize(size, 0);
            let got = match &via {
                Via::Fd(fd) => rfs::flistxattr(fd, &mut buf[..]),
                Via::Owned(fd) => rfs::flistxattr(fd, &mut buf[..]),
                Via::Path(p) => rfs::llistxattr(p, &mut buf[..]),
                Via::Unreachable => return Ok(Vec::new()),
            };
            match got {
                Ok(n) => {
                    buf.truncate(n);
                    break;
                }
                // Grew in between: ask again.
                Err(Errno::RANGE) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(buf
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .filter_map(|s| CString::new(s).ok())
            .collect())
    }

    /// Reads one xattr; `None` if absent.
    pub(crate) fn get(
        &self,
        node: Node<'_>,
        kind: Kind,
        name: &CStr,
    ) -> Result<Option<Vec<u8>>, Errno> {
        let via = self.via(node, kind)?;
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let size = match &via {
                Via::Fd(fd) => rfs::fgetxattr_query(fd, name),
                Via::Owned(fd) => rfs::fgetxattr_query(fd, name),
                Via::Path(p) => rfs::lgetxattr_query(p, name),
                Via::Unreachable => return Ok(None),
            };
            let size = match size {
                Ok(n) => n,
                Err(Errno::NODATA | Errno::NOTSUP) => return Ok(None),
                Err(e) => return Err(e),
            };
            if size == 0 {
                return Ok(Some(Vec::new()));
            }
            buf.resize(size, 0);
            let got = match &via {
                Via::Fd(fd) => rfs::fgetxattr(fd, name, &mut buf[..]),
                Via::Owned(fd) => rfs::fgetxattr(fd, name, &mut buf[..]),
                Via::Path(p) => rfs::lgetxattr(p, name, &mut buf[..]),
                Via::Unreachable => return Ok(None),
            };
            match got {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(Some(buf));
                }
                Err(Errno::RANGE) => continue,
                Err(Errno::NODATA) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn set(
        &self,
        node: Node<'_>,
        kind: Kind,
        name: &CStr,
        value: &[u8],
    ) -> Result<(), Errno> {
        let flags = rfs::XattrFlags::empty();
        match self.via(node, kind)? {
            Via::Fd(fd) => rfs::fsetxattr(fd, name, value, flags),
            Via::Owned(fd) => rfs::fsetxattr(&fd, name, value, flags),
            Via::Path(p) => rfs::lsetxattr(&p, name, value, flags),
            Via::Unreachable => Err(Errno::NOTSUP),
        }
    }

    pub(crate) fn remove(&self, node: Node<'_>, kind: Kind, name: &CStr) -> Result<(), Errno> {
        let r = match self.via(node, kind)? {
            Via::Fd(fd) => rfs::fremovexattr(fd, name),
            Via::Owned(fd) => rfs::fremovexattr(&fd, name),
            Via::Path(p) => rfs::lremovexattr(&p, name),
            Via::Unreachable => Err(Errno::NOTSUP),
        };
        match r {
            Err(Errno::NODATA) => Ok(()),
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn cs(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn lstat_does_not_follow_and_open_dir_refuses_symlinks() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        symlink("d", t.path().join("l")).unwrap();
        let root = open_root(t.path()).unwrap();
        let m = lstat_at(root.as_fd(), &cs("l")).unwrap();
        assert_eq!(m.kind, Kind::Symlink);
        assert_eq!(m.size, 1);
        assert!(open_dir_at(root.as_fd(), &cs("l")).is_err());
        assert!(open_dir_at(root.as_fd(), &cs("d")).is_ok());
        assert!(lstat_opt(root.as_fd(), &cs("nope")).unwrap().is_none());
        assert!(create_file_at(root.as_fd(), &cs("l")).is_err());
    }

    #[test]
    fn list_names_is_sorted_and_skips_dots() {
        let t = tempfile::tempdir().unwrap();
        for n in ["b", "a", "..x", "c"] {
            std::fs::write(t.path().join(n), b"").unwrap();
        }
        let root = open_root(t.path()).unwrap();
        let names = list_names(root.as_fd()).unwrap();
        let names: Vec<&[u8]> = names.iter().map(|n| n.to_bytes()).collect();
        assert_eq!(names, vec![&b"..x"[..], b"a", b"b", b"c"]);
    }

    #[test]
    fn copy_data_keeps_holes_and_content() {
        let t = tempfile::tempdir().unwrap();
        let root = open_root(t.path()).unwrap();
        // 1 MiB hole, 5 bytes, 1 MiB hole.
        let size = (2 << 20) + 5;
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::File::create(t.path().join("sparse")).unwrap();
            f.write_all_at(b"hello", 1 << 20).unwrap();
            f.set_len(size).unwrap();
        }
        let src = open_read_at(root.as_fd(), &cs("sparse")).unwrap();
        let dst = create_file_at(root.as_fd(), &cs("copy")).unwrap();
        let n = copy_data(src.as_fd(), dst.as_fd(), size).unwrap();
        assert!(n < size, "holes were copied as data: {n} bytes");
        let a = std::fs::read(t.path().join("sparse")).unwrap();
        let b = std::fs::read(t.path().join("copy")).unwrap();
        assert_eq!(a, b);
        let rd = open_read_at(root.as_fd(), &cs("copy")).unwrap();
        assert!(same_content(src.as_fd(), rd.as_fd(), size).unwrap());
    }

    #[test]
    fn copy_data_falls_back_to_read_write_across_filesystems() {
        // memfd lives on tmpfs: copy_file_range to ext4 says EXDEV (or 0).
        let t = tempfile::tempdir().unwrap();
        let root = open_root(t.path()).unwrap();
        let mem = rfs::memfd_create("treesync-test", rfs::MemfdFlags::CLOEXEC).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        write_all_at(mem.as_fd(), &data, 0).unwrap();
        let dst = create_file_at(root.as_fd(), &cs("copy")).unwrap();
        let n = copy_data(mem.as_fd(), dst.as_fd(), data.len() as u64).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(std::fs::read(t.path().join("copy")).unwrap(), data);
    }

    #[test]
    fn xattrs_and_chmod_work_without_proc() {
        let t = tempfile::tempdir().unwrap();
        let root = open_root(t.path()).unwrap();
        std::fs::write(t.path().join("f"), b"x").unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        symlink("f", t.path().join("l")).unwrap();
        let xio = XattrIo { proc_ok: false };
        for (name, kind) in [("f", Kind::File), ("d", Kind::Dir)] {
            let n = cs(name);
            xio.set(Node::At(root.as_fd(), &n), kind, c"user.t", b"v")
                .unwrap();
            assert_eq!(
                xio.get(Node::At(root.as_fd(), &n), kind, c"user.t")
                    .unwrap(),
                Some(b"v".to_vec())
            );
            assert_eq!(
                xio.list(Node::At(root.as_fd(), &n), kind).unwrap(),
                vec![cs("user.t")]
            );
            xio.remove(Node::At(root.as_fd(), &n), kind, c"user.t")
                .unwrap();
        }
        // Symlinks cannot be reached without /proc: read as having none.
        let l = cs("l");
        assert!(xio
            .list(Node::At(root.as_fd(), &l), Kind::Symlink)
            .unwrap()
            .is_empty());
        lchmod_at(root.as_fd(), &cs("f"), 0o640, false).unwrap();
        lchmod_at(root.as_fd(), &l, 0o600, false).unwrap();
        assert_eq!(lstat_at(root.as_fd(), &cs("f")).unwrap().perm, 0o640);
    }

    #[test]
    fn proc_paths_reach_the_entry_itself() {
        let t = tempfile::tempdir().unwrap();
        let root = open_root(t.path()).unwrap();
        assert!(
            proc_available(root.as_fd()),
            "/proc/self/fd is not usable here"
        );
        std::fs::write(t.path().join("f"), b"x").unwrap();
        symlink("f", t.path().join("l")).unwrap();
        lchmod_at(root.as_fd(), &cs("f"), 0o4711, true).unwrap();
        // A symlink is left alone and its target is not changed through it.
        lchmod_at(root.as_fd(), &cs("l"), 0o600, true).unwrap();
        let m = lstat_at(root.as_fd(), &cs("f")).unwrap();
        assert_eq!(m.perm, 0o4711);
    }
}
