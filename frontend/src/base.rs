//! Finding the base image of a finished build in the graph the Dockerfile frontend returned.
//!
//! The base is the image at the root of the target stage's filesystem lineage: from the result,
//! follow the root filesystem back through every RUN (the exec mount at `/`), COPY/ADD (the
//! file action's destination input), `COPY --link` (a merge's first input) and `FROM <stage>`
//! (which is just more of the same chain) until an image source op. Reading it from the graph,
//! not from the Dockerfile, gives the exact pinned image the build used, after every ARG,
//! `--platform`, named context and stage link has been resolved by the Dockerfile frontend.

use squash_proto::pb;

use crate::llb::{Graph, Output};

/// What the finished filesystem grew from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// An image (registry or OCI layout) source op.
    Image {
        /// That op's result.
        output: Output,
        /// Its identifier (`docker-image://...`, `oci-layout://...`).
        identifier: String,
    },
    /// Nothing: a `FROM scratch` chain.
    Scratch,
    /// Something we cannot keep as layers (a local or git context as the stage root, a diff).
    Other(String),
}

/// How many layer-making steps lie between the root and the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// Where the filesystem started.
    pub root: Root,
    /// The steps on the way from the root to the result.
    pub steps: usize,
    /// The filesystem after each of those steps, the first step's first, the result last.
    pub states: Vec<Output>,
}

/// Follows the filesystem of `head` back to its root.
pub fn find_root(graph: &Graph, head: &Output) -> Lineage {
    let mut current = head.clone();
    let mut states = Vec::new();
    // A graph is acyclic by construction (digests), but the walk is bounded all the same.
    for _ in 0..100_000 {
        let Some(op) = graph.op(&current.digest) else {
            return lineage(
                Root::Other(format!("op {} missing", current.digest)),
                states,
            );
        };
        let next = match &op.op {
            Some(pb::op::Op::Source(src)) => {
                let root = if is_image(&src.identifier) {
                    Root::Image {
                        output: current.clone(),
                        identifier: src.identifier.clone(),
                    }
                } else {
                    Root::Other(format!("a {} source", scheme(&src.identifier)))
                };
                return lineage(root, states);
            }
            Some(pb::op::Op::Exec(exec)) => exec
                .mounts
                .iter()
                .find(|m| m.output == current.index)
                .map(|m| m.input),
            Some(pb::op::Op::File(file)) => file_input(op, file, current.index),
            Some(pb::op::Op::Merge(merge)) => merge.inputs.first().map(|i| i.input),
            Some(pb::op::Op::Diff(_)) => {
                return lineage(Root::Other("a diff".into()), states);
            }
            Some(pb::op::Op::Build(_)) | None => {
                return lineage(Root::Other("a nested build".into()), states);
            }
        };
        states.push(current.clone());
        match next {
            Some(i) if i >= 0 && (i as usize) < op.inputs.len() => {
                let input = &op.inputs[i as usize];
                current = Output {
                    digest: input.digest.clone(),
                    index: input.index,
                };
            }
            // -1 (or no producing mount/action): the filesystem started empty.
            _ => return lineage(Root::Scratch, states),
        }
    }
    lineage(Root::Other("a graph too deep to follow".into()), states)
}

fn lineage(root: Root, mut states: Vec<Output>) -> Lineage {
    states.reverse();
    Lineage {
        root,
        steps: states.len(),
        states,
    }
}

/// The `Op.inputs` index that the file action producing output `index` builds on, following
/// references to earlier actions of the same op (numbered after the op's inputs).
fn file_input(op: &pb::Op, file: &pb::FileOp, index: i64) -> Option<i64> {
    let n = op.inputs.len() as i64;
    let mut action = file.actions.iter().find(|a| a.output == index)?;
    for _ in 0..=file.actions.len() {
        if action.input < n {
            return Some(action.input);
        }
        action = file.actions.get((action.input - n) as usize)?;
    }
    None
}

fn is_image(identifier: &str) -> bool {
    identifier.starts_with("docker-image://") || identifier.starts_with("oci-layout://")
}

fn scheme(identifier: &str) -> &str {
    identifier.split("://").next().unwrap_or(identifier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llb::{copy_root_onto_scratch, merge, meta_with_caps};

    fn source(graph: &mut Graph, id: &str) -> Output {
        graph.push(
            pb::Op {
                op: Some(pb::op::Op::Source(pb::SourceOp {
                    identifier: id.into(),
                    attrs: Default::default(),
                })),
                ..Default::default()
            },
            Default::default(),
        )
    }

    fn run(graph: &mut Graph, on: &Output, also: Option<&Output>) -> Output {
        let mut inputs = vec![pb::Input {
            digest: on.digest.clone(),
            index: on.index,
        }];
        let mut mounts = vec![pb::Mount {
            input: 0,
            dest: "/".into(),
            output: 0,
            ..Default::default()
        }];
        if let Some(other) = also {
            // A `RUN --mount=from=...` read-only mount: not part of the lineage.
            inputs.insert(
                0,
                pb::Input {
                    digest: other.digest.clone(),
                    index: other.index,
                },
            );
            mounts[0].input = 1;
            mounts.push(pb::Mount {
                input: 0,
                dest: "/mnt".into(),
                output: -1,
                readonly: true,
                ..Default::default()
            });
        }
        graph.push(
            pb::Op {
                inputs,
                op: Some(pb::op::Op::Exec(pb::ExecOp {
                    mounts,
                    ..Default::default()
                })),
                ..Default::default()
            },
            Default::default(),
        )
    }

    /// `COPY --from=from /x /x` onto `on` with a mkdir first: two actions chained.
    fn copy_from(graph: &mut Graph, on: &Output, from: &Output) -> Output {
        let mkdir = pb::FileAction {
            input: 1,
            secondary_input: -1,
            output: -1,
            action: Some(pb::file_action::Action::Mkdir(Default::default())),
        };
        let copy = pb::FileAction {
            input: 2, // the result of action 0 (2 inputs + 0)
            secondary_input: 0,
            output: 0,
            action: Some(pb::file_action::Action::Copy(Default::default())),
        };
        let op = pb::Op {
            inputs: vec![
                pb::Input {
                    digest: from.digest.clone(),
                    index: from.index,
                },
                pb::Input {
                    digest: on.digest.clone(),
                    index: on.index,
                },
            ],
            op: Some(pb::op::Op::File(pb::FileOp {
                actions: vec![mkdir, copy],
            })),
            ..Default::default()
        };
        graph.push(op, Default::default())
    }

    #[test]
    fn runs_lead_back_to_the_image() {
        let mut g = Graph::default();
        let img = source(
            &mut g,
            "docker-image://docker.io/library/debian:bookworm@sha256:1",
        );
        let a = run(&mut g, &img, None);
        let b = run(&mut g, &a, None);
        let found = find_root(&g, &b);
        assert_eq!(found.steps, 2);
        assert_eq!(
            found.root,
            Root::Image {
                output: img,
                identifier: "docker-image://docker.io/library/debian:bookworm@sha256:1".into()
            }
        );
    }

    #[test]
    fn multi_stage_root_is_the_target_stage_chain_not_other_stages() {
        let mut g = Graph::default();
        let builder_img = source(&mut g, "docker-image://golang@sha256:b");
        let built = run(&mut g, &builder_img, None);
        let runtime_img = source(&mut g, "docker-image://alpine@sha256:r");
        let with_cache = run(&mut g, &runtime_img, Some(&built));
        let copied = copy_from(&mut g, &with_cache, &built);
        let found = find_root(&g, &copied);
        assert_eq!(found.steps, 2);
        assert!(
            matches!(&found.root, Root::Image { identifier, .. } if identifier.contains("alpine")),
            "{found:?}"
        );
    }

    #[test]
    fn stage_links_are_followed() {
        // FROM img AS a / RUN / FROM a AS b / RUN / FROM b: one chain through two stages.
        let mut g = Graph::default();
        let img = source(&mut g, "oci-layout://local/base@sha256:c");
        let a = run(&mut g, &img, None);
        let b = run(&mut g, &a, None);
        let c = run(&mut g, &b, None);
        assert!(matches!(find_root(&g, &c).root, Root::Image { .. }));
        assert_eq!(find_root(&g, &c).steps, 3);
    }

    #[test]
    fn scratch_chains_have_no_base() {
        let mut g = Graph::default();
        let img = source(&mut g, "docker-image://x@sha256:1");
        let squashed = g.push(copy_root_onto_scratch(&img), meta_with_caps(None, &[]));
        assert_eq!(find_root(&g, &squashed).root, Root::Scratch);
    }

    #[test]
    fn copy_link_follows_the_first_merge_input() {
        let mut g = Graph::default();
        let img = source(&mut g, "docker-image://x@sha256:1");
        let local = source(&mut g, "local://context");
        let layer = g.push(copy_root_onto_scratch(&local), Default::default());
        let merged = g.push(merge(&[&img, &layer]), Default::default());
        assert!(matches!(find_root(&g, &merged).root, Root::Image { .. }));
    }

    #[test]
    fn a_local_context_root_is_not_a_base() {
        let mut g = Graph::default();
        let local = source(&mut g, "local://context");
        let a = run(&mut g, &local, None);
        assert_eq!(find_root(&g, &a).root, Root::Other("a local source".into()));
    }
}
