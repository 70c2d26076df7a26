//! A layer the engine makes alone, with no step of ours: the changes from a state `lower` to
//! the result `head` (which the build made on `lower`) as FileOps on `lower`.
//!
//! BuildKit's diff of `lower` and `head` (a DiffOp) holds every path the later steps added or
//! changed and the directory above every path they deleted, but no whiteouts
//! (`snapshot/diffapply_linux.go`): a FileOp copy of it onto `lower` adds and changes what it
//! should and deletes nothing. So the frontend first reads the diff through the gateway's
//! `ReadDir`, and `lower` and `head` in each directory the diff holds and both have as a
//! directory: the names `head` lost, and those whose type changed (a file that became a
//! directory, ...), become FileOp removals, followed by one copy of the diff's `/`. BuildKit
//! keys such a copy by the content it copies, which is only what changed. The layer is the
//! FileOp's own: one layer on `lower`'s.
//!
//! Used where the squash makes no report (`squash-report=off`), whose step of ours costs a
//! container start on every rebuild (measured in BENCHMARKS.md, "The same question, measured
//! again"). Hardlinks between a changed file and a file of `lower` come out as separate files,
//! as the engine's own layers have them.

use std::collections::HashMap;

use squash_proto::fsutil::types::Stat;
use squash_proto::pb;

use crate::llb::{self, Graph, LlbError, Output};
use crate::scan;

/// Where the layer's graph stands before the frontend has read what changed: the definitions
/// to solve and read, and what the layer's FileOp is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadFirst {
    /// The graph with the diff of `lower` and `head` as its result: every op the layer needs,
    /// `lower` and `head` among them.
    pub diff: pb::Definition,
    /// The same graph with `lower` as its result.
    pub lower: pb::Definition,
    /// The same graph with `head` as its result.
    pub head: pb::Definition,
    lower_out: Output,
    diff_out: Output,
    name: String,
    ignore_cache: bool,
}

impl ReadFirst {
    /// Adds the diff of `lower` and `head` (named `diff_name` in the progress) to `g`; the
    /// layer is to be named `name`.
    pub fn new(
        g: &mut Graph,
        lower: &Output,
        head: &Output,
        diff_name: &str,
        name: &str,
        ignore_cache: bool,
    ) -> Result<ReadFirst, LlbError> {
        let diff_out = g.push(
            llb::diff(lower, head),
            llb::meta_with_caps(Some(diff_name), &["diffop"]),
        );
        Ok(ReadFirst {
            diff: g.finish(&diff_out)?,
            lower: g.finish(lower)?,
            head: g.finish(head)?,
            lower_out: lower.clone(),
            diff_out,
            name: name.to_string(),
            ignore_cache,
        })
    }

    /// The squash's definition, once the frontend has read what changed ([`read_changes`]):
    /// the FileOp that makes the layer on `lower`.
    pub fn finish(&self, changes: &Changes) -> Result<pb::Definition, LlbError> {
        let mut g = Graph::default();
        g.add_definition(&self.diff)?;
        g.set_ignore_cache(self.ignore_cache);
        let layer = g.push(
            changes_onto(&self.lower_out, &self.diff_out, changes),
            llb::meta_with_caps(Some(&self.name), &["file.base"]),
        );
        g.finish(&layer)
    }
}

/// What the frontend found in BuildKit's diff: what to remove from the lower tree before the
/// copy (absolute paths, sorted).
///
/// Sockets cannot be told apart here: the gateway's `Stat` clears their type bit (fsutil's
/// `stat.go`: archive/tar has no entry type for one), so a socket reads as an empty file, and
/// a FileOp copy writes it as one. The plain image leaves sockets out; this way keeps each as
/// an empty file (docs/fidelity.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The names the result lost, and those whose type changed.
    pub removals: Vec<String>,
}

/// The FileOp on `lower` that removes `changes.removals` (in order), then copies `/` of `diff`
/// onto what is left, as `COPY --from=<diff> / /` copies (contents, modes, owners and times
/// kept).
pub fn changes_onto(lower: &Output, diff: &Output, changes: &Changes) -> pb::Op {
    // An action's input counts the op's inputs first, then the actions before it (BuildKit's
    // `solver/llbsolver/ops/file.go`).
    const INPUTS: i64 = 2;
    let previous = |k: usize| if k == 0 { 0 } else { INPUTS + k as i64 - 1 };
    let mut actions: Vec<pb::FileAction> = changes
        .removals
        .iter()
        .enumerate()
        .map(|(k, path)| pb::FileAction {
            input: previous(k),
            secondary_input: -1,
            output: -1,
            action: Some(pb::file_action::Action::Rm(pb::FileActionRm {
                path: path.clone(),
                allow_not_found: false,
                allow_wildcard: false,
            })),
        })
        .collect();
    actions.push(pb::FileAction {
        input: previous(actions.len()),
        secondary_input: 1,
        output: 0,
        action: Some(pb::file_action::Action::Copy(llb::copy_root_action())),
    });
    pb::Op {
        inputs: vec![
            pb::Input {
                digest: lower.digest.clone(),
                index: lower.index,
            },
            pb::Input {
                digest: diff.digest.clone(),
                index: diff.index,
            },
        ],
        op: Some(pb::op::Op::File(pb::FileOp { actions })),
        ..Default::default()
    }
}

/// Which tree a directory is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// The state the layer goes onto.
    Lower,
    /// The result.
    Head,
    /// BuildKit's diff of the two.
    Diff,
}

/// Reads one directory (an absolute path) of a tree: its entries, not below them.
pub trait Lister {
    /// A failed read.
    type Error;
    /// The entries of `dir` in `tree`.
    fn list(
        &mut self,
        tree: Tree,
        dir: &str,
    ) -> impl std::future::Future<Output = Result<Vec<Stat>, Self::Error>> + Send;
}

/// Why the changes could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WalkError<E> {
    /// A read failed (a failing step of the build fails here, as the diff is read).
    #[error("a read through the gateway failed")]
    Read(E),
    /// The build made names that image layers reserve for whiteouts: [`scan::refusal`]'s
    /// words, as our in-build step says them.
    #[error("{0}")]
    Unrepresentable(String),
}

/// Go's `os.ModeType`: the bits of a `FileMode` that say what kind of entry it is.
const MODE_TYPE: u32 =
    (1 << 31) | (1 << 27) | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19);
/// Go's `os.ModeDir`.
const MODE_DIR: u32 = 1 << 31;

/// What changed from `lower` to `head`, read from the diff: the names `head` lost, and those
/// whose type changed, in every directory the diff holds that is a directory in all three
/// trees (to remove before the copy). Every directory of the diff is read, so that a name no
/// layer can hold (`.wh.*`) is refused wherever the build made it, all of them named as our
/// in-build step names them.
pub async fn read_changes<L: Lister>(l: &mut L) -> Result<Changes, WalkError<L::Error>> {
    let mut changes = Changes::default();
    let mut reserved = Vec::new();
    // Each directory of the diff, and whether it is a directory in `lower` and `head` too.
    let mut todo = vec![("/".to_string(), true)];
    while let Some((dir, in_both)) = todo.pop() {
        let changed = l.list(Tree::Diff, &dir).await.map_err(WalkError::Read)?;
        let (lower, head) = if in_both {
            (
                kinds(l.list(Tree::Lower, &dir).await.map_err(WalkError::Read)?),
                kinds(l.list(Tree::Head, &dir).await.map_err(WalkError::Read)?),
            )
        } else {
            (HashMap::new(), HashMap::new())
        };
        for (name, kind) in &lower {
            if head.get(name) != Some(kind) {
                changes.removals.push(join(&dir, name));
            }
        }
        for entry in &changed {
            let name = base_name(&entry.path);
            let path = join(&dir, name);
            if name.as_bytes().starts_with(scan::WHITEOUT_PREFIX) {
                reserved.push(path.clone());
            }
            if entry.mode & MODE_DIR != 0 {
                let both = in_both
                    && lower.get(name) == Some(&MODE_DIR)
                    && head.get(name) == Some(&MODE_DIR);
                todo.push((path, both));
            }
        }
    }
    reserved.sort();
    if let Some(refusal) = scan::refusal(&reserved) {
        return Err(WalkError::Unrepresentable(refusal));
    }
    changes.removals.sort();
    Ok(changes)
}

/// A directory's entries: name -> the bits of its mode that say what kind of entry it is.
fn kinds(entries: Vec<Stat>) -> HashMap<String, u32> {
    entries
        .into_iter()
        .map(|e| (base_name(&e.path).to_string(), e.mode & MODE_TYPE))
        .collect()
}

/// The last element of a path `ReadDir` gave (relative to the directory read).
fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const FILE: u32 = 0o644;
    const DIR: u32 = MODE_DIR | 0o755;
    const LINK: u32 = (1 << 27) | 0o777;

    /// Three trees as path -> mode.
    struct Trees(BTreeMap<(u8, String), u32>, Vec<(Tree, String)>);

    impl Trees {
        fn new(lower: &[(&str, u32)], head: &[(&str, u32)], diff: &[(&str, u32)]) -> Trees {
            let mut m = BTreeMap::new();
            for (t, entries) in [(0u8, lower), (1, head), (2, diff)] {
                for (p, mode) in entries {
                    m.insert((t, p.to_string()), *mode);
                }
            }
            Trees(m, Vec::new())
        }
    }

    impl Lister for Trees {
        type Error = String;
        async fn list(&mut self, tree: Tree, dir: &str) -> Result<Vec<Stat>, String> {
            self.1.push((tree, dir.to_string()));
            let t = tree as u8;
            let prefix = if dir == "/" {
                "/".to_string()
            } else {
                format!("{dir}/")
            };
            Ok(self
                .0
                .iter()
                .filter(|((tt, p), _)| {
                    *tt == t
                        && p.strip_prefix(&prefix)
                            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
                })
                .map(|((_, p), mode)| Stat {
                    path: base_name(p).to_string(),
                    mode: *mode,
                    ..Default::default()
                })
                .collect())
        }
    }

    fn run(t: &mut Trees) -> Result<Changes, WalkError<String>> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(read_changes(t))
    }

    #[test]
    fn removes_what_the_result_lost_and_what_changed_type() {
        let lower = [
            ("/etc", DIR),
            ("/etc/gone", FILE),
            ("/etc/kept", FILE),
            ("/etc/to-dir", FILE),
            ("/etc/to-link", FILE),
            ("/opt", DIR),
            ("/opt/old", DIR),
            ("/opt/old/a", FILE),
            ("/usr", DIR),
            ("/usr/bin", DIR),
            ("/usr/bin/x", FILE),
        ];
        let head = [
            ("/etc", DIR),
            ("/etc/kept", FILE),
            ("/etc/to-dir", DIR),
            ("/etc/to-link", LINK),
            ("/opt", DIR),
            ("/opt/old", DIR),
            ("/opt/old/b", FILE),
            ("/usr", DIR),
            ("/usr/bin", DIR),
            ("/usr/bin/x", FILE),
        ];
        // /usr is untouched: the diff does not hold it, and it is not read.
        let diff = [
            ("/etc", DIR),
            ("/etc/to-dir", DIR),
            ("/etc/to-link", LINK),
            ("/opt", DIR),
            ("/opt/old", DIR),
            ("/opt/old/b", FILE),
        ];
        let mut t = Trees::new(&lower, &head, &diff);
        assert_eq!(
            run(&mut t).unwrap().removals,
            ["/etc/gone", "/etc/to-dir", "/etc/to-link", "/opt/old/a"]
        );
        assert!(!t.1.iter().any(|(_, d)| d.starts_with("/usr")), "{:?}", t.1);
        // The directory that was a file is read in the diff alone.
        assert!(t.1.contains(&(Tree::Diff, "/etc/to-dir".into())));
        assert!(!t.1.contains(&(Tree::Lower, "/etc/to-dir".into())));
    }

    #[test]
    fn a_new_directory_is_read_in_the_diff_alone_and_whiteout_names_are_refused() {
        let lower = [("/app", DIR)];
        let head = [
            ("/app", DIR),
            ("/app/new", DIR),
            ("/app/new/.wh.x", FILE),
            ("/app/.wh..wh..opq", FILE),
        ];
        let diff = head;
        let mut t = Trees::new(&lower, &head, &diff);
        let Err(WalkError::Unrepresentable(said)) = run(&mut t) else {
            panic!("refused")
        };
        // As our in-build step says it: every such name counted.
        assert_eq!(
            Some(said),
            scan::refusal(&["/app/.wh..wh..opq".into(), "/app/new/.wh.x".into()])
        );
        assert!(!t.1.contains(&(Tree::Lower, "/app/new".into())));
    }

    #[test]
    fn nothing_changed_removes_nothing() {
        let tree = [("/a", FILE)];
        let mut t = Trees::new(&tree, &tree, &[]);
        assert_eq!(run(&mut t).unwrap(), Changes::default());
    }

    #[test]
    fn removals_come_before_the_copy_each_on_the_one_before() {
        let lower = Output {
            digest: "sha256:l".into(),
            index: 0,
        };
        let diff = Output {
            digest: "sha256:d".into(),
            index: 0,
        };
        let changes = Changes {
            removals: vec!["/a".into(), "/b".into()],
        };
        let op = changes_onto(&lower, &diff, &changes);
        let Some(pb::op::Op::File(file)) = op.op else {
            panic!("a FileOp")
        };
        let wiring: Vec<(i64, i64, i64)> = file
            .actions
            .iter()
            .map(|a| (a.input, a.secondary_input, a.output))
            .collect();
        assert_eq!(
            wiring,
            [(0, -1, -1), (2, -1, -1), (3, 1, 0)],
            "the removals, then the copy, each on the one before"
        );
        let none = changes_onto(&lower, &diff, &Changes::default());
        let Some(pb::op::Op::File(file)) = none.op else {
            panic!("a FileOp")
        };
        assert_eq!(file.actions.len(), 1);
        assert_eq!(file.actions[0].input, 0);
    }
}
