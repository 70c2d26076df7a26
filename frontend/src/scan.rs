//! Walking a mounted tree inside the build (our `inspect` and `sync` steps), without following
//! a symlink and without reading a byte of any file: what the squash checks before it writes a
//! layer.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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

/// The prefix image layers reserve for whiteouts (OCI image spec, layer.md, "Whiteouts"): an
/// entry named `.wh.<name>` deletes `<name>`, and `.wh..wh..opq` makes its directory opaque.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// The paths below `root` (as absolute paths of the image, `/`-separated, lossily decoded)
/// whose names start with [`WHITEOUT_PREFIX`]: files no layer can hold, because every store
/// reads them as whiteouts.
pub fn reserved_names(root: &Path) -> Result<Vec<String>, ScanError> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let entry = entry.map_err(|e| ScanError {
            path: e.path().unwrap_or(root).to_path_buf(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("walk failed")),
        })?;
        if entry.file_name().as_bytes().starts_with(WHITEOUT_PREFIX) {
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            found.push(format!("/{}", rel.to_string_lossy()));
        }
    }
    found.sort();
    Ok(found)
}

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
        assert_eq!(
            reserved_names(root).unwrap(),
            ["/opt/keep/.wh.a", "/var/.wh..wh..opq"]
        );
        assert!(reserved_names(&root.join("opt/keep/a")).unwrap().is_empty());
        let e = reserved_names(&root.join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
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
