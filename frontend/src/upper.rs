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

use squash_proto::fsutil::types::Stat;
use squash_proto::pb;

use crate::llb::{self, Graph, LlbError, Output};

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

    /// The squash's definition, once the frontend has found `removals` (absolute paths, from
    /// [`removals`]): the FileOp that makes the layer on `lower`.
    pub fn finish(&self, removals: &[String]) -> Result<pb::Definition, LlbError> {
        let mut g = Graph::default();
        g.add_definition(&self.diff)?;
        g.set_ignore_cache(self.ignore_cache);
        let layer = g.push(
            changes_onto(&self.lower_out, &self.diff_out, removals),
            llb::meta_with_caps(Some(&self.name), &["file.base"]),
        );
        g.finish(&layer)
    }
}

/// The FileOp on `lower` that removes `removals` (in order) and then copies `/` of `diff` onto
/// what is left, as `COPY --from=<diff> / /` copies (contents, modes, owners and times kept).
pub fn changes_onto(lower: &Output, diff: &Output, removals: &[String]) -> pb::Op {
    // An action's input counts the op's inputs first, then the actions before it (BuildKit's
    // `solver/llbsolver/ops/file.go`).
    const INPUTS: i64 = 2;
    let previous = |k: usize| if k == 0 { 0 } else { INPUTS + k as i64 - 1 };
    let mut actions: Vec<pb::FileAction> = removals
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
        input: previous(removals.len()),
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

/// Why the removals could not be found.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WalkError<E> {
    /// A read failed (a failing step of the build fails here, as the diff is read).
    #[error("a read through the gateway failed")]
    Read(E),
    /// The build made a name that image layers reserve for whiteouts.
    #[error("the build made {path}, a file no image layer can hold: its name starts with .wh., which image layers reserve for whiteouts (rename it)")]
    Unrepresentable {
        /// Its absolute path.
        path: String,
    },
}

/// Go's `os.ModeType`: the bits of a `FileMode` that say what kind of entry it is.
const MODE_TYPE: u32 =
    (1 << 31) | (1 << 27) | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19);
/// Go's `os.ModeDir`.
const MODE_DIR: u32 = 1 << 31;

/// The absolute paths of `lower` to remove before the diff is copied onto it, sorted: the
/// names `head` lost, and those whose type changed, in every directory the diff holds that is
/// a directory in all three trees. Every directory of the diff is read, so that a name no layer
/// can hold (`.wh.*`) is refused wherever the build made it.
pub async fn removals<L: Lister>(l: &mut L) -> Result<Vec<String>, WalkError<L::Error>> {
    let mut out = Vec::new();
    // Each directory of the diff, and whether it is a directory in `lower` and `head` too.
    let mut todo = vec![("/".to_string(), true)];
    while let Some((dir, in_both)) = todo.pop() {
        let changed = l.list(Tree::Diff, &dir).await.map_err(WalkError::Read)?;
        let (lower, head) = if in_both {
            (
                l.list(Tree::Lower, &dir).await.map_err(WalkError::Read)?,
                l.list(Tree::Head, &dir).await.map_err(WalkError::Read)?,
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let kind = |entries: &[Stat], name: &str| {
            entries
                .iter()
                .find(|e| base_name(&e.path) == name)
                .map(|e| e.mode & MODE_TYPE)
        };
        for gone in &lower {
            let name = base_name(&gone.path);
            if kind(&head, name) != Some(gone.mode & MODE_TYPE) {
                out.push(join(&dir, name));
            }
        }
        for entry in &changed {
            let name = base_name(&entry.path);
            let path = join(&dir, name);
            if name.starts_with(".wh.") {
                return Err(WalkError::Unrepresentable { path });
            }
            if entry.mode & MODE_DIR != 0 {
                let both = in_both
                    && kind(&lower, name) == Some(MODE_DIR)
                    && kind(&head, name) == Some(MODE_DIR);
                todo.push((path, both));
            }
        }
    }
    out.sort();
    Ok(out)
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

    fn run(t: &mut Trees) -> Result<Vec<String>, WalkError<String>> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(removals(t))
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
            run(&mut t).unwrap(),
            ["/etc/gone", "/etc/to-dir", "/etc/to-link", "/opt/old/a"]
        );
        assert!(!t.1.iter().any(|(_, d)| d.starts_with("/usr")), "{:?}", t.1);
        // The directory that was a file is read in the diff alone.
        assert!(t.1.contains(&(Tree::Diff, "/etc/to-dir".into())));
        assert!(!t.1.contains(&(Tree::Lower, "/etc/to-dir".into())));
    }

    #[test]
    fn a_new_directory_is_read_in_the_diff_alone_and_a_whiteout_name_is_refused() {
        let lower = [("/app", DIR)];
        let head = [("/app", DIR), ("/app/new", DIR), ("/app/new/.wh.x", FILE)];
        let diff = head;
        let mut t = Trees::new(&lower, &head, &diff);
        assert_eq!(
            run(&mut t),
            Err(WalkError::Unrepresentable {
                path: "/app/new/.wh.x".into()
            })
        );
        assert!(!t.1.contains(&(Tree::Lower, "/app/new".into())));
    }

    #[test]
    fn nothing_changed_removes_nothing() {
        let tree = [("/a", FILE)];
        let mut t = Trees::new(&tree, &tree, &[]);
        assert_eq!(run(&mut t).unwrap(), Vec::<String>::new());
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
        let op = changes_onto(&lower, &diff, &["/a".into(), "/b".into()]);
        let Some(pb::op::Op::File(file)) = op.op else {
            panic!("a FileOp")
        };
        let wiring: Vec<(i64, i64, i64)> = file
            .actions
            .iter()
            .map(|a| (a.input, a.secondary_input, a.output))
            .collect();
        assert_eq!(wiring, [(0, -1, -1), (2, -1, -1), (3, 1, 0)]);
        let none = changes_onto(&lower, &diff, &[]);
        let Some(pb::op::Op::File(file)) = none.op else {
            panic!("a FileOp")
        };
        assert_eq!(file.actions.len(), 1);
        assert_eq!(file.actions[0].input, 0);
    }
}
