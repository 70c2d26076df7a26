//! Walking a mounted tree inside the build (our `inspect` and `sync` steps), without following
//! a symlink and without reading a byte of any file: what the squash checks before it writes a
//! layer.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::report::{Entry, Kind, Listing};

/// Why a tree could not be walked.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct ScanError {
    /// Where the walk failed.
    pub path: PathBuf,
    /// What the system said.
    #[source]
    pub source: std::io::Error,
}

/// Every path below `root` with what `lstat` says of it (the root itself left out). A missing
/// `root` is an empty filesystem (a build from scratch mounts nothing there).
pub fn listing(root: &Path) -> Result<Listing, ScanError> {
    let mut out = Listing::new();
    if !root.exists() {
        return Ok(out);
    }
    for entry in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let entry = entry.map_err(|e| walk_error(root, e))?;
        let m = entry.metadata().map_err(|e| walk_error(root, e))?;
        let t = m.file_type();
        let kind = if t.is_file() {
            Kind::File
        } else if t.is_dir() {
            Kind::Dir
        } else if t.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Other
        };
        let target = if t.is_symlink() {
            std::fs::read_link(entry.path())
                .map(|p| p.as_os_str().as_bytes().to_vec())
                .map_err(|e| ScanError {
                    path: entry.path().to_path_buf(),
                    source: e,
                })?
        } else if t.is_char_device() || t.is_block_device() {
            m.rdev().to_le_bytes().to_vec()
        } else {
            vec![]
        };
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        out.insert(
            rel.as_os_str().as_bytes().to_vec(),
            Entry {
                kind,
                size: if kind == Kind::File { m.size() } else { 0 },
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: (m.mtime(), m.mtime_nsec() as u32),
                inode: (m.dev(), m.ino()),
                nlink: m.nlink(),
                target,
            },
        );
    }
    Ok(out)
}

fn walk_error(root: &Path, e: walkdir::Error) -> ScanError {
    ScanError {
        path: e.path().unwrap_or(root).to_path_buf(),
        source: e
            .into_io_error()
            .unwrap_or_else(|| std::io::Error::other("walk failed")),
    }
}

/// The paths of `listing` (as absolute paths of the image) whose names start with
/// [`WHITEOUT_PREFIX`].
pub fn reserved(listing: &Listing) -> Vec<String> {
    listing
        .keys()
        .filter(|p| {
            let name = p.rsplit(|b| *b == b'/').next().unwrap_or(p);
            name.starts_with(WHITEOUT_PREFIX)
        })
        .map(|p| format!("/{}", String::from_utf8_lossy(p)))
        .collect()
}

/// The prefix image layers reserve for whiteouts (OCI image spec, layer.md, "Whiteouts"): an
/// entry named `.wh.<name>` deletes `<name>`, and `.wh..wh..opq` makes its directory opaque.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// The exit code of our in-build steps when the build made something no image layer can hold;
/// the flow tells the user to read the step's output, where [`refusal`] names the paths.
pub const EXIT_UNREPRESENTABLE: u8 = 3;

/// What our in-build step says when the finished tree holds `reserved` names (one line), or
/// `None` when it holds none.
pub fn refusal(reserved: &[String]) -> Option<String> {
    let (first, rest) = reserved.split_first()?;
    let more = match rest.len() {
        0 => String::new(),
        1 => format!(" and {}", rest[0]),
        n => format!(" and {n} more such paths"),
    };
    Some(format!(
        "the build made {first}{more}; image layers reserve names that start with .wh. for whiteouts (OCI image spec, layer whiteouts), so every store would hide a file next to it instead of holding this one: rename it"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn listing_or_empty(root: &Path) -> bool {
        listing(root).unwrap().is_empty()
    }

    #[test]
    fn finds_reserved_names_anywhere_and_follows_no_symlink() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("opt/keep")).unwrap();
        std::fs::write(root.join("opt/keep/a"), b"a").unwrap();
        std::fs::write(root.join("opt/keep/.wh.a"), b"").unwrap();
        std::fs::create_dir_all(root.join("var/.wh..wh..opq")).unwrap();
        std::fs::write(root.join("x.wh.y"), b"").unwrap();
        // A symlink to a tree holding such a name is not followed.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join(".wh.z"), b"").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        let listing = listing(root).unwrap();
        assert_eq!(reserved(&listing), ["/opt/keep/.wh.a", "/var/.wh..wh..opq"]);
        assert!(
            !listing.contains_key(&b"link/.wh.z"[..]),
            "a symlink is not followed"
        );
        let link = &listing[&b"link"[..]];
        assert_eq!(link.kind, Kind::Symlink);
        assert_eq!(link.target, outside.path().as_os_str().as_bytes());
        let a = &listing[&b"opt/keep/a"[..]];
        assert_eq!((a.kind, a.size), (Kind::File, 1));
        // A filesystem nobody mounted (a build from scratch) is empty.
        assert!(listing_or_empty(&root.join("missing")));
    }

    #[test]
    fn the_refusal_names_the_paths() {
        assert_eq!(refusal(&[]), None);
        let one = refusal(&["/opt/keep/.wh.a".into()]).unwrap();
        assert!(
            one.starts_with("the build made /opt/keep/.wh.a; image layers reserve"),
            "{one}"
        );
        let two = refusal(&["/a/.wh.b".into(), "/c/.wh.d".into()]).unwrap();
        assert!(
            two.starts_with("the build made /a/.wh.b and /c/.wh.d;"),
            "{two}"
        );
        let many = refusal(&[
            "/a/.wh.b".into(),
            "/c/.wh.d".into(),
            "/e/.wh..wh..opq".into(),
        ]);
        assert!(many.unwrap().contains("/a/.wh.b and 2 more such paths;"));
    }
}
