//! Build contexts and image tags for the tests.
//!
//! A [`TestContext`] is a temporary directory holding a Dockerfile and the
//! files a test writes next to it, removed when dropped; paths written into
//! it must stay inside it. Image tags must not collide between tests running
//! in parallel (or two runs of one test): [`unique_tag`] and
//! [`TestContext::tag`] put the test name, the process id and a counter in
//! every tag.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::docker::{BuildOutput, Buildx};

fn sanitize(s: &str, keep: impl Fn(char) -> bool, max: usize) -> String {
    let mapped: String = s
        .chars()
        .map(|c| if keep(c) { c } else { '-' })
        .take(max)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// An image tag unique to this test, process and call:
/// `squash-e2e-<test name>:<suffix>-<pid>-<n>`, sanitised to what image
/// references allow. `scripts/e2e.sh` removes the images a run leaves by that
/// `squash-e2e-` prefix (see `scenario::REMOVE_AT_ONCE_ABOVE`).
pub fn unique_tag(test_name: &str, suffix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let lower = test_name.to_ascii_lowercase();
    let repo = sanitize(
        &lower,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        100,
    );
    let repo = if repo.is_empty() {
        "test".to_owned()
    } else {
        repo
    };
    let suffix = sanitize(
        suffix,
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '.',
        80,
    );
    let suffix = if suffix.is_empty() {
        "t".to_owned()
    } else {
        suffix
    };
    format!("squash-e2e-{repo}:{suffix}-{}-{n}", std::process::id())
}

fn checked_relative(rel: &Path) -> PathBuf {
    assert!(
        !rel.as_os_str().is_empty()
            && rel
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir)),
        "context paths must be relative and stay inside the context: {}",
        rel.display()
    );
    rel.to_path_buf()
}

/// A build context in a temporary directory: a Dockerfile and other files,
/// removed when dropped.
#[derive(Debug)]
pub struct TestContext {
    dir: tempfile::TempDir,
    name: String,
}

impl TestContext {
    /// A context holding `Dockerfile` with this content.
    #[track_caller]
    pub fn new(test_name: &str, dockerfile: &str) -> TestContext {
        let dir = tempfile::Builder::new()
            .prefix("squash-e2e-ctx-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a context directory: {e}"));
        let ctx = TestContext {
            dir,
            name: test_name.to_owned(),
        };
        ctx.write("Dockerfile", dockerfile);
        ctx
    }

    /// The context directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The test name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes a file (creating parent directories), relative to the context.
    #[track_caller]
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> &Self {
        let path = self.path().join(checked_relative(rel.as_ref()));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        self
    }

    /// Writes a file and sets its permission bits.
    #[track_caller]
    pub fn write_mode(
        &self,
        rel: impl AsRef<Path>,
        contents: impl AsRef<[u8]>,
        mode: u32,
    ) -> &Self {
        self.write(rel.as_ref(), contents);
        let path = self.path().join(rel.as_ref());
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        self
    }

    /// Sets a file's modification time to `secs` seconds after the epoch: two contexts
    /// written at different times then send the same file, time included (BuildKit's `COPY`
    /// keeps a context file's time).
    #[track_caller]
    pub fn set_mtime(&self, rel: impl AsRef<Path>, secs: u64) -> &Self {
        let path = self.path().join(checked_relative(rel.as_ref()));
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_times(fs::FileTimes::new().set_modified(when)))
            .unwrap_or_else(|e| panic!("setting the time of {}: {e}", path.display()));
        self
    }

    /// Creates a directory (and its parents).
    #[track_caller]
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> &Self {
        let path = self.path().join(checked_relative(rel.as_ref()));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        self
    }

    /// Creates a symlink `rel -> target` (target written as given).
    #[track_caller]
    pub fn symlink(&self, rel: impl AsRef<Path>, target: impl AsRef<Path>) -> &Self {
        let path = self.path().join(checked_relative(rel.as_ref()));
        std::os::unix::fs::symlink(target.as_ref(), &path)
            .unwrap_or_else(|e| panic!("symlinking {}: {e}", path.display()));
        self
    }

    /// Reads back a file of the context.
    #[track_caller]
    pub fn read(&self, rel: impl AsRef<Path>) -> Vec<u8> {
        let path = self.path().join(checked_relative(rel.as_ref()));
        fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// A tag unique to this test (see [`unique_tag`]).
    pub fn tag(&self, suffix: &str) -> String {
        unique_tag(&self.name, suffix)
    }

    /// A [`Buildx`] build of this context with `args`, to its end.
    #[track_caller]
    pub fn build(&self, args: &[&str]) -> BuildOutput {
        Buildx::new(self.path()).args(args).run().out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn is_valid_reference(r: &str) -> bool {
        let (repo, tag) = r.split_once(':').unwrap();
        let repo_ok = !repo.is_empty()
            && repo.len() <= 255
            && repo
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && repo.as_bytes()[0].is_ascii_alphanumeric()
            && repo.as_bytes()[repo.len() - 1].is_ascii_alphanumeric();
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && (tag.as_bytes()[0].is_ascii_alphanumeric() || tag.as_bytes()[0] == b'_')
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        repo_ok && tag_ok
    }

    #[test]
    fn tags_are_unique_and_valid() {
        let mut seen = HashSet::new();
        for (name, suffix) in [
            ("tests::Copy_And_Run", "plain"),
            ("tests::Copy_And_Run", "plain"),
            ("", ""),
            ("::weird name!!", "-squashed."),
            (&"x".repeat(400)[..], &"y".repeat(400)[..]),
        ] {
            let t = unique_tag(name, suffix);
            assert!(is_valid_reference(&t), "{t}");
            assert!(seen.insert(t.clone()), "duplicate {t}");
        }
        let t = unique_tag("tests::copy_and_run", "plain");
        assert!(
            t.starts_with("squash-e2e-tests--copy-and-run:plain-"),
            "{t}"
        );
        assert!(t.contains(&format!("-{}-", std::process::id())), "{t}");
    }

    #[test]
    fn context_writes_files_and_is_removed_on_drop() {
        let ctx = TestContext::new("ctx_test", "FROM scratch\n");
        ctx.write("a/b/c.txt", "hello")
            .write_mode("run.sh", "#!/bin/sh\n", 0o751)
            .mkdir("empty/dir")
            .symlink("link", "a/b/c.txt");
        let root = ctx.path().to_path_buf();
        assert_eq!(ctx.read("Dockerfile"), b"FROM scratch\n");
        assert_eq!(fs::read_to_string(root.join("a/b/c.txt")).unwrap(), "hello");
        assert_eq!(
            fs::metadata(root.join("run.sh"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o751
        );
        assert!(root.join("empty/dir").is_dir());
        assert_eq!(
            fs::read_link(root.join("link")).unwrap(),
            Path::new("a/b/c.txt")
        );
        assert_eq!(ctx.name(), "ctx_test");
        assert!(ctx.tag("x").starts_with("squash-e2e-ctx-test:x-"));
        assert!(root.is_dir());
        drop(ctx);
        assert!(!root.exists(), "context directory left behind");
    }

    #[test]
    #[should_panic(expected = "must be relative")]
    fn context_refuses_escaping_paths() {
        TestContext::new("escape", "FROM scratch\n").write("../outside", "x");
    }
}
