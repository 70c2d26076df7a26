//! A relative path built one name at a time during a walk. It only ever
//! serves error messages and the hardlink map: no system call is given it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Raw bytes (names need not be UTF-8), `/`-separated, no leading slash.
#[derive(Debug, Default, Clone)]
pub(crate) struct RelPath {
    buf: Vec<u8>,
    marks: Vec<usize>,
}

impl RelPath {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, name: &[u8]) {
        self.marks.push(self.buf.len());
        if !self.buf.is_empty() {
            self.buf.push(b'/');
        }
        self.buf.extend_from_slice(name);
    }

    pub(crate) fn pop(&mut self) {
        if let Some(m) = self.marks.pop() {
            self.buf.truncate(m);
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// `root/self` for messages.
    pub(crate) fn under(&self, root: &Path) -> PathBuf {
        join_bytes(root, &self.buf)
    }

    /// `root/self/name` for messages.
    pub(crate) fn under_with(&self, root: &Path, name: &[u8]) -> PathBuf {
        let mut p = join_bytes(root, &self.buf);
        p.push(OsStr::from_bytes(name));
        p
    }
}

/// `root/rel` where `rel` is a raw relative path (may be empty).
pub(crate) fn join_bytes(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_pop_round_trips_odd_names() {
        let mut r = RelPath::new();
        r.push(b"a");
        r.push(b"..");
        r.push(b"\xff\nx");
        assert_eq!(r.as_bytes(), b"a/../\xff\nx");
        r.pop();
        assert_eq!(r.as_bytes(), b"a/..");
        r.pop();
        r.pop();
        assert_eq!(r.as_bytes(), b"");
        r.pop();
        assert_eq!(r.under(Path::new("/d")), PathBuf::from("/d"));
        assert_eq!(r.under_with(Path::new("/d"), b"f"), PathBuf::from("/d/f"));
    }
}
