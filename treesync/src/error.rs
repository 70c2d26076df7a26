//! The error type of [`crate::sync_tree`].

use std::io;
use std::path::PathBuf;

/// Why a sync stopped. Every variant names the path it was working on.
///
/// The sync fails fast: the first error aborts it, leaving the destination
/// partly synced (the build step that runs it fails, so the half-made layer
/// is thrown away).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// A system call failed.
    #[error("cannot {op} {}: {err}", path.display())]
    Io {
        /// What was being done, e.g. "create file" or "remove".
        op: &'static str,
        /// The path it was done to (the source or destination side, as `op` says).
        path: PathBuf,
        /// The underlying error.
        err: io::Error,
    },
    /// The source or destination root is not a directory (or is a symlink).
    #[error("cannot sync {}: not a directory", path.display())]
    NotADirectory {
        /// The root path given.
        path: PathBuf,
    },
    /// The source tree holds a file type this crate does not know.
    #[error("cannot copy {}: unsupported file type (mode {mode:#o})", path.display())]
    UnsupportedType {
        /// The source path.
        path: PathBuf,
        /// Its raw `st_mode`.
        mode: u32,
    },
    /// A directory inside the destination is another mount; the sync never
    /// descends into or deletes across mounts.
    #[error("refusing to enter {}: it is a mount point inside the destination", path.display())]
    MountPoint {
        /// The destination path.
        path: PathBuf,
    },
    /// The source and destination trees overlap: one holds the other's root.
    #[error(
        "refusing to enter {}: it is the root of the other tree (source and destination overlap)",
        path.display()
    )]
    Overlap {
        /// Where the other root was met.
        path: PathBuf,
    },
    /// An entry changed under the sync (for example a file shrank while it
    /// was being copied, or a directory was moved).
    #[error("cannot sync {}: {what}", path.display())]
    Changed {
        /// The path concerned.
        path: PathBuf,
        /// What was seen.
        what: &'static str,
    },
}

impl SyncError {
    /// The operating-system error behind an [`SyncError::Io`], if any.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            SyncError::Io { err, .. } => Some(err),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: PathBuf, err: impl Into<io::Error>) -> Self {
        SyncError::Io {
            op,
            path,
            err: err.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_name_path_and_operation() {
        let e = SyncError::io(
            "create file",
            PathBuf::from("/dst/a"),
            io::Error::from_raw_os_error(17),
        );
        let msg = e.to_string();
        assert!(msg.starts_with("cannot create file /dst/a: "), "{msg}");
        assert!(e.io_error().is_some());
        let e = SyncError::MountPoint {
            path: PathBuf::from("/dst/proc"),
        };
        assert_eq!(
            e.to_string(),
            "refusing to enter /dst/proc: it is a mount point inside the destination"
        );
        let e = SyncError::UnsupportedType {
            path: PathBuf::from("/src/x"),
            mode: 0o170644,
        };
        assert_eq!(
            e.to_string(),
            "cannot copy /src/x: unsupported file type (mode 0o170644)"
        );
    }
}
