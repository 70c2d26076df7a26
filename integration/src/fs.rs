//! The filesystem an image's layers add up to, as an in-memory model.
//!
//! This module owns the *meaning of layer tars*: it applies layers in order
//! the way containerd's and Docker's appliers do on overlayfs, and records
//! for every path what a container would see — kind, the 12 permission bits,
//! owner, size, sha256 of the content, symlink target, device numbers, the
//! `security.capability` xattr and the other xattrs, mtime, and which paths
//! share an inode (hardlink groups). A squashed image is correct when this
//! model of it equals the model of the unsquashed image, so the rules here
//! decide what "the same image" means for the end-to-end tests:
//!
//! * `.wh.<name>` deletes `<name>` (and everything under it) from the *lower*
//!   layers; `.wh..wh..opq` in a directory hides everything the lower layers
//!   had in it. Whiteouts never remove what their own layer adds, whatever the
//!   order of entries in the tar (OCI image spec, "Whiteouts"). Other
//!   `.wh..wh.` names (aufs metadata) are ignored.
//! * An entry for a path that exists replaces it: a directory over a
//!   directory only changes its metadata, anything else replaces the path and
//!   (for a directory being replaced) its whole subtree.
//! * A hardlink entry (tar `TypeLink`) makes the path share the inode of its
//!   target, which may come from a lower layer. Replacing one path of a group
//!   gives it a new inode; the others keep the old content, as after an
//!   overlay copy-up. Hardlinks are reported resolved: the kind and content of
//!   their inode, plus [`Entry::hardlinks`], the sorted list of every path in
//!   the group.
//! * Parent directories missing from a layer are created as `0755 0:0`
//!   (mtime 0); a parent that is a symlink is followed inside the model (as
//!   containerd's applier resolves paths inside the root); a parent that is
//!   another non-directory is an error.
//! * PAX records are honoured: long `path`/`linkpath`, `uid`/`gid`,
//!   sub-second `mtime`, and `SCHILY.xattr.*` xattrs.
//!
//! File contents are streamed through sha256 and never kept. Paths are bytes
//! ([`FsPath`]), never `String`, because layer tars may carry non-UTF-8
//! names. The root directory always exists (as `0755 0:0` until a layer has a
//! `./` entry).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use anyhow::{anyhow, bail, Context, Result};
use sha2::Digest;
use tar::EntryType;

use crate::blob::{decompress, HashingWriter};
use crate::image::Image;

// ---------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------

/// A normalised path inside an image's root filesystem, as raw bytes.
///
/// Stored without the leading `/` (the root is the empty path); no `.`
/// components; `..` is resolved lexically and cannot leave the root.
/// Displayed with a leading `/`, non-UTF-8 bytes as `\xNN`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FsPath(Vec<u8>);

impl FsPath {
    /// Normalises any path (absolute or relative to the root).
    pub fn new(path: impl AsRef<[u8]>) -> FsPath {
        let mut parts: Vec<&[u8]> = Vec::new();
        for part in path.as_ref().split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    parts.pop();
                }
                p => parts.push(p),
            }
        }
        FsPath(parts.join(&b'/'))
    }

    /// The root directory.
    pub fn root() -> FsPath {
        FsPath(Vec::new())
    }

    /// Whether this is the root directory.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path relative to the root (no leading `/`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The absolute path as an `OsString`.
    pub fn to_os_string(&self) -> OsString {
        let mut v = Vec::with_capacity(self.0.len() + 1);
        v.push(b'/');
        v.extend_from_slice(&self.0);
        OsString::from_vec(v)
    }

    /// The parent directory; `None` for the root.
    pub fn parent(&self) -> Option<FsPath> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => FsPath(self.0[..i].to_vec()),
            None => FsPath::root(),
        })
    }

    /// The last component (empty for the root).
    pub fn file_name(&self) -> &[u8] {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// `self/rest`, normalised.
    pub fn join(&self, rest: impl AsRef<[u8]>) -> FsPath {
        let mut v = self.0.clone();
        v.push(b'/');
        v.extend_from_slice(rest.as_ref());
        FsPath::new(v)
    }

    /// The components, root first.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    /// Whether `self` is `ancestor` or lies under it.
    pub fn is_within(&self, ancestor: &FsPath) -> bool {
        ancestor.is_root()
            || self.0 == ancestor.0
            || (self.0.starts_with(&ancestor.0) && self.0.get(ancestor.0.len()) == Some(&b'/'))
    }

    /// The prefix every path strictly under `self` starts with.
    fn child_prefix(&self) -> Vec<u8> {
        if self.is_root() {
            Vec::new()
        } else {
            let mut v = self.0.clone();
            v.push(b'/');
            v
        }
    }
}

impl AsRef<[u8]> for FsPath {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<&str> for FsPath {
    fn from(s: &str) -> Self {
        FsPath::new(s)
    }
}

impl From<&[u8]> for FsPath {
    fn from(s: &[u8]) -> Self {
        FsPath::new(s)
    }
}

impl From<&OsStr> for FsPath {
    fn from(s: &OsStr) -> Self {
        FsPath::new(s.as_bytes())
    }
}

impl fmt::Display for FsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", escape_bytes(&self.0))
    }
}

impl fmt::Debug for FsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Bytes as readable text: valid UTF-8 stays (control characters and `\`
/// escaped), anything else becomes `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&c.escape_default().to_string()),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Entries
// ---------------------------------------------------------------------------

/// The kind of a filesystem entry (hardlinks are resolved to their inode's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// Named pipe.
    Fifo,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Char => "char",
            Kind::Block => "block",
            Kind::Fifo => "fifo",
        })
    }
}

/// Modification time: seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mtime {
    /// Whole seconds (floor).
    pub secs: i64,
    /// Nanoseconds, 0..1e9.
    pub nanos: u32,
}

impl Mtime {
    /// Parses a PAX time record (`1700000000`, `1700000000.5`, `-1.25`).
    pub fn parse_pax(s: &str) -> Option<Mtime> {
        let (neg, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let secs: i64 = int.parse().ok()?;
        let mut digits: String = frac.chars().take(9).collect();
        while digits.len() < 9 {
            digits.push('0');
        }
        let nanos: u32 = digits.parse().ok()?;
        Some(if !neg {
            Mtime { secs, nanos }
        } else if nanos == 0 {
            Mtime {
                secs: -secs,
                nanos: 0,
            }
        } else {
            Mtime {
                secs: -secs - 1,
                nanos: 1_000_000_000 - nanos,
            }
        })
    }
}

impl fmt::Display for Mtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            write!(f, "{}", self.secs)
        } else {
            write!(f, "{}.{:09}", self.secs, self.nanos)
        }
    }
}

/// What the model records for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Kind (a hardlink has its inode's kind).
    pub kind: Kind,
    /// All 12 permission bits (setuid, setgid, sticky, rwxrwxrwx).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Content size for files, 0 otherwise.
    pub size: u64,
    /// Hex sha256 of the content, for files.
    pub sha256: Option<String>,
    /// Raw target, for symlinks.
    pub symlink_target: Option<Vec<u8>>,
    /// (major, minor), for character and block devices.
    pub device: Option<(u32, u32)>,
    /// The `security.capability` xattr, raw.
    pub capability: Option<Vec<u8>>,
    /// Every other xattr (`SCHILY.xattr.<name>` PAX records), raw values.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Modification time.
    pub mtime: Mtime,
    /// Every path sharing this inode, sorted, itself included, when there is
    /// more than one; empty otherwise.
    pub hardlinks: Vec<FsPath>,
}

impl Entry {
    fn new(kind: Kind, mode: u32) -> Entry {
        Entry {
            kind,
            mode,
            uid: 0,
            gid: 0,
            size: 0,
            sha256: None,
            symlink_target: None,
            device: None,
            capability: None,
            xattrs: BTreeMap::new(),
            mtime: Mtime::default(),
            hardlinks: Vec::new(),
        }
    }

    /// The implicit directory: `0755 0:0`, mtime 0.
    fn implicit_dir() -> Entry {
        Entry::new(Kind::Dir, 0o755)
    }
}

// ---------------------------------------------------------------------------
// Parsing a layer
// ---------------------------------------------------------------------------

enum Change {
    Whiteout(FsPath),
    Opaque(FsPath),
    Dir(FsPath, Entry),
    NonDir(FsPath, Entry),
    Hardlink(FsPath, FsPath),
}

fn parse_layer<R: Read>(reader: R) -> Result<Vec<Change>> {
    let mut archive = tar::Archive::new(reader);
    let mut out = Vec::new();
    for entry in archive.entries().context("reading the layer tar")? {
        let mut entry = entry.context("reading a layer tar entry")?;
        let ty = entry.header().entry_type();
        if ty.is_pax_global_extensions()
            || ty.is_pax_local_extensions()
            || ty.is_gnu_longname()
            || ty.is_gnu_longlink()
        {
            continue;
        }
        let raw_path = entry.path_bytes().into_owned();
        let path = FsPath::new(&raw_path);
        let shown = path.clone();
        let name = path.file_name().to_vec();
        if name == b".wh..wh..opq" {
            out.push(Change::Opaque(path.parent().unwrap_or_default()));
            continue;
        }
        if name.starts_with(b".wh..wh.") {
            continue;
        }
        if let Some(victim) = name.strip_prefix(b".wh.") {
            if victim.is_empty() {
                bail!("whiteout {shown} names nothing");
            }
            out.push(Change::Whiteout(
                path.parent().unwrap_or_default().join(victim),
            ));
            continue;
        }
        let records: Vec<(Vec<u8>, Vec<u8>)> = match entry
            .pax_extensions()
            .with_context(|| format!("reading the PAX records of {shown}"))?
        {
            Some(it) => it
                .map(|r| r.map(|e| (e.key_bytes().to_vec(), e.value_bytes().to_vec())))
                .collect::<io::Result<_>>()
                .with_context(|| format!("reading the PAX records of {shown}"))?,
            None => Vec::new(),
        };
        let header = entry.header();
        let mode = header.mode().with_context(|| format!("mode of {shown}"))? & 0o7777;
        let uid = header.uid().with_context(|| format!("uid of {shown}"))?;
        let gid = header.gid().with_context(|| format!("gid of {shown}"))?;
        let mut mtime = Mtime {
            secs: header
                .mtime()
                .with_context(|| format!("mtime of {shown}"))? as i64,
            nanos: 0,
        };
        let mut e = Entry::new(Kind::File, mode);
        e.uid = uid;
        e.gid = gid;
        for (k, v) in &records {
            if k == b"mtime" {
                mtime = std::str::from_utf8(v)
                    .ok()
                    .and_then(Mtime::parse_pax)
                    .ok_or_else(|| {
                        anyhow!("bad PAX mtime {:?} on {shown}", String::from_utf8_lossy(v))
                    })?;
            } else if let Some(xname) = k.strip_prefix(b"SCHILY.xattr.") {
                let xname = String::from_utf8_lossy(xname).into_owned();
                if xname == "security.capability" {
                    e.capability = Some(v.clone());
                } else {
                    e.xattrs.insert(xname, v.clone());
                }
            }
        }
        e.mtime = mtime;
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let dev = (
            header.device_major().ok().flatten(),
            header.device_minor().ok().flatten(),
        );
        match ty {
            EntryType::Directory => {
                e.kind = Kind::Dir;
                out.push(Change::Dir(path, e))
            }
            // Old tars mark directories as regular files with a trailing slash.
            EntryType::Regular if raw_path.ends_with(b"/") => {
                e.kind = Kind::Dir;
                out.push(Change::Dir(path, e))
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut w = HashingWriter::new();
                io::copy(&mut entry, &mut w).with_context(|| format!("reading {shown}"))?;
                e.size = w.count;
                e.sha256 = Some(hex::encode(w.hasher.finalize()));
                out.push(Change::NonDir(path, e));
            }
            EntryType::Link => {
                let target = link.ok_or_else(|| anyhow!("hardlink {shown} has no target"))?;
                out.push(Change::Hardlink(path, FsPath::new(target)));
            }
            EntryType::Symlink => {
                let target = link.ok_or_else(|| anyhow!("symlink {shown} has no target"))?;
                e.kind = Kind::Symlink;
                e.symlink_target = Some(target);
                out.push(Change::NonDir(path, e));
            }
            EntryType::Char | EntryType::Block => {
                e.kind = if ty == EntryType::Char {
                    Kind::Char
                } else {
                    Kind::Block
                };
                e.device = Some((dev.0.unwrap_or(0), dev.1.unwrap_or(0)));
                out.push(Change::NonDir(path, e));
            }
            EntryType::Fifo => {
                e.kind = Kind::Fifo;
                out.push(Change::NonDir(path, e));
            }
            other => bail!("unsupported tar entry type {other:?} at {shown}"),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Slot {
    Dir(Entry),
    Inode(u64),
}

/// The root filesystem that a sequence of layers adds up to.
#[derive(Debug, Clone)]
pub struct FsModel {
    tree: BTreeMap<FsPath, Slot>,
    inodes: HashMap<u64, Entry>,
    next_inode: u64,
    layers_applied: usize,
}

impl Default for FsModel {
    fn default() -> Self {
        FsModel::new()
    }
}

impl FsModel {
    /// An empty filesystem: only the root directory.
    pub fn new() -> FsModel {
        let mut tree = BTreeMap::new();
        tree.insert(FsPath::root(), Slot::Dir(Entry::implicit_dir()));
        FsModel {
            tree,
            inodes: HashMap::new(),
            next_inode: 1,
            layers_applied: 0,
        }
    }

    /// Applies all layers of an image, in order.
    pub fn from_image(image: &Image) -> Result<FsModel> {
        let mut model = FsModel::new();
        for layer in &image.layers {
            model
                .apply_layer(layer.open()?)
                .with_context(|| format!("applying layer {} ({})", layer.index, layer.digest))?;
        }
        Ok(model)
    }

    /// How many layers have been applied.
    pub fn layers_applied(&self) -> usize {
        self.layers_applied
    }

    /// Applies a layer blob, uncompressed, gzip or zstd (detected).
    pub fn apply_blob<R: Read>(&mut self, blob: R) -> Result<()> {
        let (_, stream) = decompress(blob)?;
        self.apply_layer(stream)
    }

    /// Applies an uncompressed layer tar.
    pub fn apply_layer<R: Read>(&mut self, tar: R) -> Result<()> {
        let n = self.layers_applied;
        let changes = parse_layer(tar).with_context(|| format!("layer {n}"))?;
        // Whiteouts first: they only hide what the lower layers had.
        for change in &changes {
            match change {
                Change::Whiteout(p) => {
                    if let Some(p) = self.resolve_parent(p, false)? {
                        self.remove_tree(&p);
                    }
                }
                Change::Opaque(p) => {
                    // A directory that replaces a lower non-directory is marked opaque too;
                    // the directory entry applied below replaces that entry, so there is
                    // nothing under it to hide.
                    let replaces_non_dir = matches!(
                        self.resolve_parent(p, false)?
                            .and_then(|q| self.tree.get(&q)),
                        Some(Slot::Inode(_))
                    );
                    if replaces_non_dir {
                        continue;
                    }
                    if let Some(dir) = self.resolve_dir(p, false, 0)? {
                        self.remove_children(&dir);
                    }
                }
                _ => {}
            }
        }
        for change in changes {
            match change {
                Change::Whiteout(_) | Change::Opaque(_) => {}
                Change::Dir(p, e) => {
                    let p = self.resolve_parent(&p, true)?.expect("created");
                    if let Some(Slot::Inode(_)) = self.tree.get(&p) {
                        self.tree.remove(&p);
                    }
                    self.tree.insert(p, Slot::Dir(e));
                }
                Change::NonDir(p, e) => {
                    if p.is_root() {
                        bail!("layer {n}: the root is not a directory");
                    }
                    let p = self.resolve_parent(&p, true)?.expect("created");
                    self.remove_tree(&p);
                    let id = self.next_inode;
                    self.next_inode += 1;
                    self.inodes.insert(id, e);
                    self.tree.insert(p, Slot::Inode(id));
                }
                Change::Hardlink(p, target) => {
                    let shown = p.clone();
                    let t = self.resolve_parent(&target, false)?;
                    let id = match t.as_ref().and_then(|t| self.tree.get(t)) {
                        Some(Slot::Inode(id)) => *id,
                        Some(Slot::Dir(_)) => {
                            bail!("layer {n}: hardlink {shown} -> {target}: target is a directory")
                        }
                        None => {
                            bail!("layer {n}: hardlink {shown} -> {target}: target does not exist")
                        }
                    };
                    let p = self.resolve_parent(&p, true)?.expect("created");
                    if Some(&p) == t.as_ref() {
                        continue;
                    }
                    self.remove_tree(&p);
                    self.tree.insert(p, Slot::Inode(id));
                }
            }
        }
        self.layers_applied += 1;
        let live: HashSet<u64> = self
            .tree
            .values()
            .filter_map(|s| match s {
                Slot::Inode(id) => Some(*id),
                Slot::Dir(_) => None,
            })
            .collect();
        self.inodes.retain(|id, _| live.contains(id));
        Ok(())
    }

    /// `path` with its parent directory resolved (symlinks followed). With
    /// `create`, missing parents are created; without, `None` if one is
    /// missing.
    fn resolve_parent(&mut self, path: &FsPath, create: bool) -> Result<Option<FsPath>> {
        let Some(parent) = path.parent() else {
            return Ok(Some(FsPath::root()));
        };
        Ok(self
            .resolve_dir(&parent, create, 0)?
            .map(|d| d.join(path.file_name())))
    }

    fn resolve_dir(&mut self, dir: &FsPath, create: bool, depth: usize) -> Result<Option<FsPath>> {
        if depth > 40 {
            bail!("too many levels of symlinks resolving {dir}");
        }
        let mut cur = FsPath::root();
        let comps: Vec<Vec<u8>> = dir.components().map(<[u8]>::to_vec).collect();
        for comp in comps {
            let next = cur.join(&comp);
            let symlink = match self.tree.get(&next) {
                None => {
                    if !create {
                        return Ok(None);
                    }
                    self.tree
                        .insert(next.clone(), Slot::Dir(Entry::implicit_dir()));
                    None
                }
                Some(Slot::Dir(_)) => None,
                Some(Slot::Inode(id)) => {
                    let e = &self.inodes[id];
                    match (&e.kind, &e.symlink_target) {
                        (Kind::Symlink, Some(t)) => Some(t.clone()),
                        (kind, _) => {
                            bail!("{next} is a {kind}, not a directory, but the layer has entries under it")
                        }
                    }
                }
            };
            cur = match symlink {
                None => next,
                Some(target) => {
                    let t = if target.starts_with(b"/") {
                        FsPath::new(&target)
                    } else {
                        cur.join(&target)
                    };
                    match self.resolve_dir(&t, create, depth + 1)? {
                        Some(r) => r,
                        None => return Ok(None),
                    }
                }
            };
        }
        Ok(Some(cur))
    }

    fn under(&self, dir: &FsPath) -> Vec<FsPath> {
        let prefix = dir.child_prefix();
        self.tree
            .range(FsPath(prefix.clone())..)
            .take_while(|(k, _)| k.0.starts_with(&prefix))
            .filter(|(k, _)| !k.is_root())
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn remove_children(&mut self, dir: &FsPath) {
        for k in self.under(dir) {
            self.tree.remove(&k);
        }
    }

    fn remove_tree(&mut self, path: &FsPath) {
        if path.is_root() {
            return;
        }
        if self.tree.remove(path).is_some() {
            self.remove_children(path);
        }
    }

    fn group_of(&self, id: u64) -> Vec<FsPath> {
        self.tree
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Inode(i) if *i == id))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The entry at a path (hardlinks resolved), if it exists.
    pub fn get(&self, path: impl AsRef<[u8]>) -> Option<Entry> {
        match self.tree.get(&FsPath::new(path))? {
            Slot::Dir(e) => Some(e.clone()),
            Slot::Inode(id) => {
                let mut e = self.inodes[id].clone();
                let group = self.group_of(*id);
                if group.len() > 1 {
                    e.hardlinks = group;
                }
                Some(e)
            }
        }
    }

    /// Whether a path exists.
    pub fn contains(&self, path: impl AsRef<[u8]>) -> bool {
        self.tree.contains_key(&FsPath::new(path))
    }

    /// The names of a directory's children, sorted by bytes (non-UTF-8
    /// bytes replaced).
    pub fn children(&self, dir: impl AsRef<[u8]>) -> Vec<String> {
        let dir = FsPath::new(dir);
        self.paths()
            .filter(|p| p.parent().as_ref() == Some(&dir) && !p.is_root())
            .map(|p| String::from_utf8_lossy(p.file_name()).into_owned())
            .collect()
    }

    /// Every path, sorted by bytes, the root first.
    pub fn paths(&self) -> impl Iterator<Item = &FsPath> {
        self.tree.keys()
    }

    /// Number of paths, the root included.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether only the root exists.
    pub fn is_empty(&self) -> bool {
        self.tree.len() <= 1
    }

    /// Every path with its entry (hardlinks resolved).
    pub fn entries(&self) -> BTreeMap<FsPath, Entry> {
        let mut groups: HashMap<u64, Vec<FsPath>> = HashMap::new();
        for (p, s) in &self.tree {
            if let Slot::Inode(id) = s {
                groups.entry(*id).or_default().push(p.clone());
            }
        }
        self.tree
            .iter()
            .map(|(p, s)| {
                let e = match s {
                    Slot::Dir(e) => e.clone(),
                    Slot::Inode(id) => {
                        let mut e = self.inodes[id].clone();
                        let g = &groups[id];
                        if g.len() > 1 {
                            e.hardlinks = g.clone();
                        }
                        e
                    }
                };
                (p.clone(), e)
            })
            .collect()
    }

    /// The hardlink groups (paths sharing an inode, two or more), each sorted,
    /// sorted by first path.
    pub fn hardlink_groups(&self) -> Vec<Vec<FsPath>> {
        let mut groups: HashMap<u64, Vec<FsPath>> = HashMap::new();
        for (p, s) in &self.tree {
            if let Slot::Inode(id) = s {
                groups.entry(*id).or_default().push(p.clone());
            }
        }
        let mut out: Vec<Vec<FsPath>> = groups.into_values().filter(|g| g.len() > 1).collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use sha2::{Digest, Sha256};

    fn sha(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    fn model(layers: &[Vec<u8>]) -> FsModel {
        let mut m = FsModel::new();
        for l in layers {
            m.apply_layer(&l[..]).unwrap();
        }
        m
    }

    fn p(s: &str) -> FsPath {
        FsPath::new(s)
    }

    #[test]
    fn paths_are_normalized_bytes() {
        assert_eq!(p("./a//b/./c/"), p("/a/b/c"));
        assert_eq!(p("/a/b/../c").as_bytes(), b"a/c");
        assert_eq!(p("../../x"), p("/x"));
        assert!(p("/").is_root());
        assert_eq!(p("a/b").parent(), Some(p("a")));
        assert_eq!(p("a").parent(), Some(FsPath::root()));
        assert_eq!(p("a/b").file_name(), b"b");
        assert!(p("a/b/c").is_within(&p("a/b")));
        assert!(!p("a/bc").is_within(&p("a/b")));
        assert!(p("a").is_within(&FsPath::root()));
        let odd = FsPath::new(b"dir/caf\xe9\n\\x");
        assert_eq!(odd.to_string(), "/dir/caf\\xe9\\n\\\\x");
        assert_eq!(odd.to_os_string().as_bytes(), b"/dir/caf\xe9\n\\x");
        assert_eq!(FsPath::new("日本/語").to_string(), "/日本/語");
    }

    #[test]
    fn pax_mtime_parsing() {
        assert_eq!(
            Mtime::parse_pax("1700000000"),
            Some(Mtime {
                secs: 1_700_000_000,
                nanos: 0
            })
        );
        assert_eq!(
            Mtime::parse_pax("1.5"),
            Some(Mtime {
                secs: 1,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            Mtime::parse_pax("1.1234567891"),
            Some(Mtime {
                secs: 1,
                nanos: 123_456_789
            })
        );
        assert_eq!(
            Mtime::parse_pax("-1.25"),
            Some(Mtime {
                secs: -2,
                nanos: 750_000_000
            })
        );
        assert_eq!(Mtime::parse_pax("-3"), Some(Mtime { secs: -3, nanos: 0 }));
        assert_eq!(Mtime::parse_pax("x"), None);
        assert_eq!(Mtime::parse_pax("1.x"), None);
        assert_eq!(Mtime { secs: 1, nanos: 5 }.to_string(), "1.000000005");
    }

    #[test]
    fn every_kind_and_its_metadata() {
        let mut l = LayerBuilder::new();
        l.owner(1000, 1001)
            .dir("bin", 0o1777)
            .file("bin/su", b"#!/bin/sh\n", 0o4755)
            .file("bin/sg", b"", 0o2711)
            .symlink("bin/sh", "busybox")
            .symlink("abs", "/bin/../etc")
            .device("null", EntryType::Char, 0o666, 1, 3)
            .device("sda", EntryType::Block, 0o660, 8, 0)
            .entry("pipe", EntryType::Fifo, 0o600, b"");
        let m = model(&[l.finish()]);
        let su = m.get("/bin/su").unwrap();
        assert_eq!(su.kind, Kind::File);
        assert_eq!(su.mode, 0o4755);
        assert_eq!((su.uid, su.gid), (1000, 1001));
        assert_eq!(su.size, 10);
        assert_eq!(su.sha256.as_deref(), Some(sha(b"#!/bin/sh\n").as_str()));
        assert_eq!(
            su.mtime,
            Mtime {
                secs: 1_700_000_000,
                nanos: 0
            }
        );
        assert_eq!(m.get("bin").unwrap().mode, 0o1777);
        assert_eq!(m.get("bin").unwrap().kind, Kind::Dir);
        assert_eq!(m.get("bin/sg").unwrap().mode, 0o2711);
        assert_eq!(
            m.get("bin/sg").unwrap().sha256.as_deref(),
            Some(sha(b"").as_str())
        );
        let sh = m.get("bin/sh").unwrap();
        assert_eq!(sh.kind, Kind::Symlink);
        assert_eq!(sh.symlink_target.as_deref(), Some(&b"busybox"[..]));
        assert_eq!(sh.sha256, None);
        // Symlink targets are kept raw, not normalised.
        assert_eq!(
            m.get("abs").unwrap().symlink_target.as_deref(),
            Some(&b"/bin/../etc"[..])
        );
        let null = m.get("null").unwrap();
        assert_eq!(
            (null.kind, null.device, null.mode),
            (Kind::Char, Some((1, 3)), 0o666)
        );
        assert_eq!(m.get("sda").unwrap().kind, Kind::Block);
        assert_eq!(m.get("sda").unwrap().device, Some((8, 0)));
        assert_eq!(m.get("pipe").unwrap().kind, Kind::Fifo);
        assert_eq!(m.len(), 9); // root + 8
        assert!(m.hardlink_groups().is_empty());
    }

    #[test]
    fn children_of_a_directory() {
        let mut l = LayerBuilder::new();
        l.dir("etc", 0o755)
            .file("etc/b", b"", 0o644)
            .file("etc/a", b"", 0o644)
            .dir("etc/sub", 0o755)
            .file("etc/sub/deep", b"", 0o644)
            .file(b"etc/\xff", b"", 0o644)
            .file("etc2", b"", 0o644);
        let m = model(&[l.finish()]);
        assert_eq!(m.children("/etc"), ["a", "b", "sub", "\u{fffd}"]);
        assert_eq!(m.children("etc/sub"), ["deep"]);
        assert_eq!(m.children("/"), ["etc", "etc2"]);
        assert!(m.children("/etc/a").is_empty());
        assert!(m.children("/nowhere").is_empty());
    }

    #[test]
    fn whiteouts_delete_lower_paths_and_their_subtrees() {
        let mut a = LayerBuilder::new();
        a.dir("etc", 0o755)
            .file("etc/a", b"a", 0o644)
            .file("etc/b", b"b", 0o644)
            .dir("opt", 0o755)
            .dir("opt/tool", 0o755)
            .file("opt/tool/bin", b"x", 0o755)
            .file("keep", b"k", 0o644);
        let mut b = LayerBuilder::new();
        b.whiteout("etc/a")
            .whiteout("opt/tool")
            .whiteout("never/existed");
        let m = model(&[a.finish(), b.finish()]);
        assert!(!m.contains("etc/a"));
        assert!(m.contains("etc/b"));
        assert!(!m.contains("opt/tool"));
        assert!(!m.contains("opt/tool/bin"));
        assert!(m.contains("opt"));
        assert!(m.contains("keep"));
        assert!(
            !m.contains("never"),
            "a whiteout must not create its parent"
        );
        assert!(!m.paths().any(|p| p.file_name().starts_with(b".wh.")));
    }

    #[test]
    fn a_whiteout_does_not_hide_its_own_layers_entries() {
        let mut a = LayerBuilder::new();
        a.file("f", b"old", 0o644);
        let mut b = LayerBuilder::new();
        // The new file comes before the whiteout in the tar: still kept.
        b.file("f", b"new", 0o600).whiteout("f");
        let m = model(&[a.finish(), b.finish()]);
        let f = m.get("f").expect("the layer's own f survives its whiteout");
        assert_eq!(f.sha256.as_deref(), Some(sha(b"new").as_str()));
        assert_eq!(f.mode, 0o600);
    }

    #[test]
    fn opaque_directories_hide_lower_content_only() {
        let mut a = LayerBuilder::new();
        a.dir("d", 0o755)
            .file("d/x", b"x", 0o644)
            .dir("d/sub", 0o755)
            .file("d/sub/y", b"y", 0o644)
            .file("d2", b"sibling with a common prefix", 0o644)
            .dir("e", 0o755)
            .file("e/z", b"z", 0o644);
        let mut b = LayerBuilder::new();
        b.file("d/new", b"n", 0o644).dir("d", 0o700).opaque("d");
        let m = model(&[a.finish(), b.finish()]);
        assert!(!m.contains("d/x"));
        assert!(!m.contains("d/sub"));
        assert!(!m.contains("d/sub/y"));
        assert!(m.contains("d/new"), "the opaque layer's own content stays");
        assert_eq!(m.get("d").unwrap().mode, 0o700);
        assert!(m.contains("d2"));
        assert!(m.contains("e/z"));
        assert!(!m.contains("d/.wh..wh..opq"));
    }

    #[test]
    fn an_opaque_directory_may_replace_a_lower_file() {
        // What Docker's classic store writes for `rm f && mkdir f && touch f/x`.
        let mut a = LayerBuilder::new();
        a.file("f", b"file", 0o644);
        let mut b = LayerBuilder::new();
        b.dir("f", 0o755).opaque("f").file("f/x", b"x", 0o600);
        let m = model(&[a.finish(), b.finish()]);
        assert_eq!(m.get("f").unwrap().kind, Kind::Dir);
        assert_eq!(m.get("f/x").unwrap().mode, 0o600);
    }

    #[test]
    fn replacing_paths_across_kinds() {
        let mut a = LayerBuilder::new();
        a.dir("d", 0o755)
            .file("d/inner", b"i", 0o644)
            .file("f", b"file", 0o644)
            .dir("keepdir", 0o755)
            .file("keepdir/child", b"c", 0o644);
        let mut b = LayerBuilder::new();
        b.file("d", b"now a file", 0o644)
            .dir("f", 0o711)
            .dir("keepdir", 0o750)
            .file("late/parent/file", b"p", 0o644);
        let m = model(&[a.finish(), b.finish()]);
        assert_eq!(m.get("d").unwrap().kind, Kind::File);
        assert!(
            !m.contains("d/inner"),
            "a file over a directory removes its subtree"
        );
        assert_eq!(m.get("f").unwrap().kind, Kind::Dir);
        assert_eq!(m.get("f").unwrap().mode, 0o711);
        assert_eq!(m.get("keepdir").unwrap().mode, 0o750);
        assert!(
            m.contains("keepdir/child"),
            "a directory over a directory keeps children"
        );
        let implicit = m.get("late/parent").unwrap();
        assert_eq!(
            (implicit.kind, implicit.mode, implicit.uid),
            (Kind::Dir, 0o755, 0)
        );
        assert_eq!(m.layers_applied(), 2);
    }

    #[test]
    fn hardlinks_share_an_inode_until_one_is_replaced() {
        let mut a = LayerBuilder::new();
        a.dir("bin", 0o755)
            .file("bin/busybox", b"BB v1", 0o755)
            .hardlink("bin/ls", "bin/busybox")
            .hardlink("bin/cat", "bin/ls")
            .file("lone", b"l", 0o644);
        let m1 = model(&[a.finish()]);
        let group = vec![p("bin/busybox"), p("bin/cat"), p("bin/ls")];
        assert_eq!(m1.hardlink_groups(), vec![group.clone()]);
        let ls = m1.get("bin/ls").unwrap();
        assert_eq!(ls.kind, Kind::File);
        assert_eq!(ls.sha256.as_deref(), Some(sha(b"BB v1").as_str()));
        assert_eq!(ls.mode, 0o755);
        assert_eq!(ls.hardlinks, group);
        assert_eq!(m1.entries()[&p("bin/cat")].hardlinks, group);
        assert!(m1.get("lone").unwrap().hardlinks.is_empty());

        // A later layer replaces busybox and links a new name to a lower file.
        let mut b = LayerBuilder::new();
        b.file("bin/busybox", b"BB v2", 0o755)
            .hardlink("lone2", "lone");
        let mut m2 = m1.clone();
        m2.apply_layer(&b.finish()[..]).unwrap();
        assert_eq!(
            m2.get("bin/busybox").unwrap().sha256.as_deref(),
            Some(sha(b"BB v2").as_str())
        );
        assert!(m2.get("bin/busybox").unwrap().hardlinks.is_empty());
        let ls = m2.get("bin/ls").unwrap();
        assert_eq!(
            ls.sha256.as_deref(),
            Some(sha(b"BB v1").as_str()),
            "old content kept"
        );
        assert_eq!(
            m2.hardlink_groups(),
            vec![vec![p("bin/cat"), p("bin/ls")], vec![p("lone"), p("lone2")]]
        );

        // Deleting the original keeps the other names.
        let mut c = LayerBuilder::new();
        c.whiteout("lone");
        m2.apply_layer(&c.finish()[..]).unwrap();
        assert_eq!(
            m2.get("lone2").unwrap().sha256.as_deref(),
            Some(sha(b"l").as_str())
        );
        assert!(m2.get("lone2").unwrap().hardlinks.is_empty());
    }

    #[test]
    fn hardlink_errors_name_the_paths() {
        let mut a = LayerBuilder::new();
        a.hardlink("x", "missing");
        let err = FsModel::new().apply_layer(&a.finish()[..]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("/x -> /missing") && msg.contains("does not exist"),
            "{msg}"
        );
        let mut b = LayerBuilder::new();
        b.dir("d", 0o755).hardlink("y", "d");
        let err = FsModel::new().apply_layer(&b.finish()[..]).unwrap_err();
        assert!(
            format!("{err:#}").contains("target is a directory"),
            "{err:#}"
        );
    }

    #[test]
    fn entries_under_a_file_are_an_error() {
        let mut a = LayerBuilder::new();
        a.file("f", b"", 0o644).file("f/g", b"", 0o644);
        let err = FsModel::new().apply_layer(&a.finish()[..]).unwrap_err();
        assert!(
            format!("{err:#}").contains("/f is a file, not a directory"),
            "{err:#}"
        );
    }

    #[test]
    fn symlinked_parents_are_followed() {
        let mut a = LayerBuilder::new();
        a.dir("usr", 0o755)
            .dir("usr/lib", 0o755)
            .symlink("lib", "usr/lib");
        a.symlink("abs", "/usr");
        let mut b = LayerBuilder::new();
        b.file("lib/libc.so", b"c", 0o644)
            .file("abs/share", b"s", 0o644);
        let mut c = LayerBuilder::new();
        c.whiteout("lib/libc.so");
        let mut m = model(&[a.finish(), b.finish()]);
        assert!(m.contains("usr/lib/libc.so"));
        assert!(m.contains("usr/share"));
        assert_eq!(m.get("lib").unwrap().kind, Kind::Symlink);
        m.apply_layer(&c.finish()[..]).unwrap();
        assert!(!m.contains("usr/lib/libc.so"));
    }

    #[test]
    fn pax_xattrs_capabilities_and_mtime() {
        let cap =
            b"\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        let mut l = LayerBuilder::new();
        l.file_pax(
            "ping",
            b"elf",
            0o755,
            &[
                ("SCHILY.xattr.security.capability", &cap[..]),
                ("SCHILY.xattr.user.comment", b"bin\xffary"),
                ("SCHILY.xattr.trusted.x", b""),
                ("mtime", b"1700000000.25"),
                ("uid", b"4294967296"),
            ],
        );
        l.file("plain", b"p", 0o644);
        let m = model(&[l.finish()]);
        let ping = m.get("ping").unwrap();
        assert_eq!(ping.capability.as_deref(), Some(&cap[..]));
        assert_eq!(ping.xattrs.len(), 2);
        assert_eq!(ping.xattrs["user.comment"], b"bin\xffary");
        assert_eq!(ping.xattrs["trusted.x"], b"");
        assert!(!ping.xattrs.contains_key("security.capability"));
        assert_eq!(
            ping.mtime,
            Mtime {
                secs: 1_700_000_000,
                nanos: 250_000_000
            }
        );
        assert_eq!(ping.uid, 4_294_967_296);
        let plain = m.get("plain").unwrap();
        assert_eq!(plain.capability, None);
        assert!(
            plain.xattrs.is_empty(),
            "PAX records must not leak to the next entry"
        );
    }

    #[test]
    fn long_and_non_utf8_names() {
        let long = format!("{}/{}", "d".repeat(150), "f".repeat(150));
        let pax_long = format!("{}/{}", "p".repeat(120), "q".repeat(200));
        let mut l = LayerBuilder::new();
        l.file(&long, b"gnu long name", 0o644)
            .file_pax_path(pax_long.as_bytes(), b"pax long name", 0o644)
            .dir(b"caf\xe9", 0o755)
            .file(b"caf\xe9/\xff\xfe", b"latin1", 0o644)
            .symlink(b"link\x80", b"caf\xe9/\xff\xfe")
            .hardlink(b"hard\x81", b"caf\xe9/\xff\xfe");
        let m = model(&[l.finish()]);
        assert_eq!(m.get(&long).unwrap().size, 13);
        assert_eq!(m.get(&pax_long).unwrap().size, 13);
        assert!(!m.contains("placeholder-not-the-name"));
        let f = m.get(b"caf\xe9/\xff\xfe").unwrap();
        assert_eq!(f.sha256.as_deref(), Some(sha(b"latin1").as_str()));
        assert_eq!(
            f.hardlinks,
            vec![FsPath::new(b"caf\xe9/\xff\xfe"), FsPath::new(b"hard\x81")]
        );
        assert_eq!(
            m.get(b"link\x80").unwrap().symlink_target.as_deref(),
            Some(&b"caf\xe9/\xff\xfe"[..])
        );
    }

    #[test]
    fn gzip_and_zstd_layers_apply_like_plain_ones() {
        let mut a = LayerBuilder::new();
        a.dir("etc", 0o755)
            .file("etc/os-release", b"ID=test\n", 0o644);
        let a = a.finish();
        let mut b = LayerBuilder::new();
        b.whiteout("etc/os-release")
            .file("etc/hostname", b"box\n", 0o644);
        let b = b.finish();
        let plain = model(&[a.clone(), b.clone()]);
        let mut packed = FsModel::new();
        packed.apply_blob(&gzip(&a)[..]).unwrap();
        packed.apply_blob(&zstd_compress(&b)[..]).unwrap();
        assert_eq!(plain.entries(), packed.entries());
        assert!(packed.contains("etc/hostname"));
        assert!(!packed.contains("etc/os-release"));
    }

    #[test]
    fn big_files_are_hashed_in_full() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut l = LayerBuilder::new();
        l.file("big", &data, 0o644);
        let m = model(&[l.finish()]);
        let e = m.get("big").unwrap();
        assert_eq!(e.size, data.len() as u64);
        assert_eq!(e.sha256.as_deref(), Some(sha(&data).as_str()));
    }

    #[test]
    fn the_root_entry_sets_root_metadata() {
        let m0 = FsModel::new();
        assert_eq!(m0.get("/").unwrap().mode, 0o755);
        assert!(m0.is_empty());
        let mut l = LayerBuilder::new();
        l.owner(0, 0)
            .mtime(5)
            .dir("./", 0o700)
            .file("./x", b"", 0o644);
        let m = model(&[l.finish()]);
        let root = m.get("/").unwrap();
        assert_eq!((root.mode, root.mtime.secs), (0o700, 5));
        assert!(m.contains("x"));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn model_of_an_image_from_an_archive() {
        let mut a = LayerBuilder::new();
        a.dir("app", 0o755).file("app/run", b"v1", 0o755);
        let mut b = LayerBuilder::new();
        b.file("app/run", b"v2", 0o755);
        let spec = ImageSpec::new(vec![gzip(&a.finish()), b.finish()]);
        let tar = docker_save_classic(&spec, "squash-e2e/t:fs");
        let img = read_image(&tar);
        let m = FsModel::from_image(&img).unwrap();
        assert_eq!(m.layers_applied(), 2);
        assert_eq!(
            m.get("app/run").unwrap().sha256.as_deref(),
            Some(sha(b"v2").as_str())
        );
    }
}
