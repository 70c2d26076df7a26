//! Planning the squash of one built image: which graph to append, and the config to go with it.
//!
//! Graphs, as measured on real engines (see the README's compatibility table):
//! - full, `diff` method: `diff(scratch + no-op mkdir, result)`: one layer, nothing copied (a
//!   diff against scratch itself would export as the result's own layers);
//! - full, `sync` method: our binary mirroring the result onto an empty writable mount;
//! - full without our own image's definition: `scratch + copy(result:/ -> /)`: one layer on
//!   every engine, but a socket becomes an empty file;
//! - base, `diff` method: `merge(base, diff(base + no-op mkdir, result))`: base layers + one.
//!   The no-op mkdir matters: a diff whose lower side is an ancestor of the upper side is
//!   exported as the upper's own layers, not as one;
//! - base, `sync` method: our binary run in the build with the result mounted read-only and the
//!   base mounted writable; the mount's changes are the one layer. Works where MergeOp and
//!   DiffOp are disabled (Docker's classic store).

use std::collections::BTreeMap;

use squash_proto::pb;

use crate::base::{self, Root};
use crate::config::{self, Layout, SquashEntry};
use crate::llb::{self, Graph, LlbError};
use crate::options::{Method, Mode};

/// The engine's LLB capabilities, from `Ping`: id -> `Ok(())` or the reason it is disabled.
#[derive(Debug, Clone, Default)]
pub struct Caps(pub BTreeMap<String, Result<(), String>>);

impl Caps {
    /// Whether the engine supports `id`.
    pub fn has(&self, id: &str) -> bool {
        matches!(self.0.get(id), Some(Ok(())))
    }

    fn why_not(&self, id: &str) -> String {
        match self.0.get(id) {
            Some(Err(reason)) if !reason.is_empty() => format!("{id}: {reason}"),
            Some(Err(_)) => format!("{id} is disabled"),
            Some(Ok(())) => format!("{id} is supported"),
            None => format!("{id} is unknown to this engine"),
        }
    }
}

/// Our own image, for running the `sync` step inside the build.
#[derive(Debug, Clone)]
pub struct Tool {
    /// The definition of the frontend image (BuildKit hands it to the frontend).
    pub def: pb::Definition,
    /// The path of our binary inside that image.
    pub exe: String,
    /// The platform the step runs at (the worker's own: the step only copies files).
    pub platform: pb::Platform,
}

/// Everything about the build that the plan depends on.
#[derive(Debug, Clone)]
pub struct Env<'a> {
    pub mode: Mode,
    pub method: Method,
    pub caps: &'a Caps,
    pub tool: Option<&'a Tool>,
    /// `SOURCE_DATE_EPOCH`, if the build has one.
    pub epoch: Option<i64>,
}

/// One built image as the Dockerfile frontend returned it.
#[derive(Debug, Clone, Copy)]
pub struct Built<'a> {
    pub def: &'a pb::Definition,
    pub config: Option<&'a [u8]>,
    pub base_config: Option<&'a [u8]>,
}

/// What to do with one image.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Return the image as built.
    Unchanged { reason: String },
    /// Solve `def` and return it with `config`.
    Squash {
        def: pb::Definition,
        /// The rewritten config (`None` if the build returned none).
        config: Option<Vec<u8>>,
        /// Whether `containerimage.base.config` still describes the bottom layers.
        keeps_base: bool,
        /// A one-line description for the progress output and history.
        summary: String,
    },
}

/// Why a squash cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the Dockerfile frontend returned a graph squash-frontend cannot use: {0}")]
    Graph(#[from] LlbError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("squash method diff needs the engine's DiffOp (and MergeOp in base mode), which this engine does not offer ({reason}); set the squash method to sync or auto (valid values: auto, diff, sync)")]
    NoDiff { reason: String },
    #[error("squash method sync needs the frontend's own image definition, which BuildKit did not provide at /run/config/buildkit/metadata/frontend.bin; set the squash method to diff or auto, or use full mode")]
    NoTool,
}

const COMMENT: &str = "squash-frontend";

/// A base image the engine must describe before base mode can keep it: the pinned image at the
/// root of the target stage, when the Dockerfile frontend returned no
/// `containerimage.base.config` for it (Docker 26.1's does not for a base given by
/// `--build-context name=docker-image://...`). Resolving that reference gives the config the
/// frontend itself resolved for it.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseToDescribe {
    /// The reference to resolve, without its `docker-image://` scheme. Docker 26.1's frontend
    /// leaves a named context's reference as given (a tag); the config resolved for it is
    /// only used if [`config::describes_base`] finds it under the built image.
    pub reference: String,
    /// The platform the source op was pinned for.
    pub platform: Option<pb::Platform>,
}

/// Which base image, if any, must be resolved before [`plan`] can keep it (see
/// [`BaseToDescribe`]). `None` outside base mode, when the build already described its base, or
/// when the root is not a registry image (scratch, a local context, an OCI layout).
pub fn base_to_describe(
    built: Built<'_>,
    env: &Env<'_>,
) -> Result<Option<BaseToDescribe>, PlanError> {
    if env.mode != Mode::Base || built.base_config.is_some() {
        return Ok(None);
    }
    let mut graph = Graph::default();
    let Some(head) = graph.add_definition(built.def)? else {
        return Ok(None);
    };
    let lineage = base::find_root(&graph, &head);
    let Root::Image { output, identifier } = lineage.root else {
        return Ok(None);
    };
    let Some(reference) = identifier.strip_prefix("docker-image://") else {
        return Ok(None);
    };
    if lineage.steps == 0 {
        return Ok(None);
    }
    Ok(Some(BaseToDescribe {
        reference: reference.to_string(),
        platform: graph.op(&output.digest).and_then(|op| op.platform.clone()),
    }))
}

/// Plans the squash of `built`.
pub fn plan(built: Built<'_>, env: &Env<'_>) -> Result<Plan, PlanError> {
    if env.mode == Mode::Off {
        return Ok(unchanged("squash mode is off"));
    }
    let mut graph = Graph::default();
    let Some(head) = graph.add_definition(built.def)? else {
        return Ok(unchanged("the image is empty"));
    };
    let layers = built.config.map(config::layer_count).transpose()?;
    let lineage = base::find_root(&graph, &head);
    let created = env.epoch.map(config::format_rfc3339);
    let count = layers.map_or_else(|| "all".to_string(), |n| n.to_string());

    // In base mode, why the base cannot be kept (shown in the progress line and history).
    let mut no_base = None;
    let base = match (&env.mode, &lineage.root) {
        (Mode::Base, Root::Image { output, .. }) => {
            let n = built.base_config.and_then(config::base_layer_count);
            if n.is_none() {
                no_base = Some("the Dockerfile frontend did not describe the base image".into());
            }
            n.map(|n| (output.clone(), n))
        }
        (Mode::Base, Root::Scratch) => {
            no_base = Some("the target stage starts from scratch".to_string());
            None
        }
        (Mode::Base, Root::Other(what)) => {
            no_base = Some(format!("the target stage starts from {what}, not an image"));
            None
        }
        _ => None,
    };
    if let Some((base_out, base_layers)) = base {
        if lineage.steps == 0 || layers.is_some_and(|n| n <= base_layers) {
            return Ok(unchanged("the Dockerfile adds no layer to its base image"));
        }
        let summary = format!("squash: {count} layers -> {base_layers} base + 1");
        let squashed = match method(env)? {
            Method::Sync => {
                let tool = env.tool.ok_or(PlanError::NoTool)?;
                let tool_head = graph.add_definition(&tool.def)?.ok_or(PlanError::NoTool)?;
                graph.push(
                    llb::sync_exec(
                        &tool_head,
                        &tool.exe,
                        &head,
                        Some(&base_out),
                        tool.platform.clone(),
                    ),
                    llb::meta_with_caps(Some(&summary), llb::SYNC_EXEC_CAPS),
                )
            }
            _ => {
                let marker = graph.push(
                    llb::mkdir_root(Some(&base_out)),
                    llb::meta_with_caps(Some("squash: mark the base"), &["file.base"]),
                );
                let layer = graph.push(
                    llb::diff(&marker, &head),
                    llb::meta_with_caps(Some("squash: diff against the base"), &["diffop"]),
                );
                graph.push(
                    llb::merge(&[&base_out, &layer]),
                    llb::meta_with_caps(Some(&summary), &["mergeop"]),
                )
            }
        };
        let config = built
            .config
            .map(|c| {
                config::rewrite(
                    c,
                    Layout::KeepBase { base_layers },
                    &entry(&summary),
                    created.as_deref(),
                )
            })
            .transpose()?;
        return Ok(Plan::Squash {
            def: graph.finish(&squashed)?,
            config,
            keeps_base: true,
            summary,
        });
    }

    if layers.is_some_and(|n| n <= 1) {
        return Ok(unchanged("the image already has a single layer"));
    }
    let summary = match no_base {
        Some(why) => format!("squash: {count} layers -> 1 (no base kept: {why})"),
        None => format!("squash: {count} layers -> 1"),
    };
    let squashed = match full_way(env)? {
        FullWay::Diff => {
            let empty = graph.push(
                llb::mkdir_root(None),
                llb::meta_with_caps(Some("squash: an empty root"), &["file.base"]),
            );
            graph.push(
                llb::diff(&empty, &head),
                llb::meta_with_caps(Some(&summary), &["diffop"]),
            )
        }
        FullWay::Sync(tool) => match graph.add_definition(&tool.def)? {
            Some(tool_head) => graph.push(
                llb::sync_exec(&tool_head, &tool.exe, &head, None, tool.platform.clone()),
                llb::meta_with_caps(Some(&summary), llb::SYNC_EXEC_CAPS),
            ),
            None => return Err(PlanError::NoTool),
        },
        FullWay::Copy => graph.push(
            llb::copy_root_onto_scratch(&head),
            llb::meta_with_caps(Some(&summary), &["file.base"]),
        ),
    };
    let config = built
        .config
        .map(|c| config::rewrite(c, Layout::Full, &entry(&summary), created.as_deref()))
        .transpose()?;
    Ok(Plan::Squash {
        def: graph.finish(&squashed)?,
        config,
        keeps_base: false,
        summary,
    })
}

/// How full mode makes its one layer.
enum FullWay<'a> {
    /// `Diff(scratch + no-op mkdir, result)`: nothing is copied; the layer is written the way
    /// the Dockerfile's own layers are.
    Diff,
    /// Our binary mirrors the result onto an empty mount inside the build (sockets are left
    /// out, as the Dockerfile's own layers leave them out).
    Sync(&'a Tool),
    /// A FileOp copy of `/` onto scratch, as `COPY --from=<stage> / /` does: works on every
    /// engine, but turns a socket into an empty file.
    Copy,
}

/// Full mode's way: the engine's DiffOp where it has one (methods `auto` and `diff`; `diff`
/// without it is refused), else the in-build sync (methods `auto` and `sync`), else, without
/// our own image's definition, the copy.
fn full_way<'a>(env: &Env<'a>) -> Result<FullWay<'a>, PlanError> {
    let has_diff = env.caps.has("diffop");
    match (env.method, env.tool) {
        (Method::Diff | Method::Auto, _) if has_diff => Ok(FullWay::Diff),
        (Method::Diff, _) => Err(PlanError::NoDiff {
            reason: env.caps.why_not("diffop"),
        }),
        (Method::Auto | Method::Sync, Some(tool)) => Ok(FullWay::Sync(tool)),
        (Method::Auto | Method::Sync, None) => Ok(FullWay::Copy),
    }
}

fn method(env: &Env<'_>) -> Result<Method, PlanError> {
    let diff_ok = env.caps.has("diffop") && env.caps.has("mergeop");
    match env.method {
        Method::Diff if !diff_ok => Err(PlanError::NoDiff {
            reason: format!(
                "{}; {}",
                env.caps.why_not("diffop"),
                env.caps.why_not("mergeop")
            ),
        }),
        Method::Auto if diff_ok => Ok(Method::Diff),
        Method::Auto => Ok(Method::Sync),
        m => Ok(m),
    }
}

fn unchanged(reason: &str) -> Plan {
    Plan::Unchanged {
        reason: reason.into(),
    }
}

fn entry(summary: &str) -> SquashEntry {
    SquashEntry {
        created_by: summary.into(),
        comment: COMMENT.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llb::tests::sample_definition;
    use prost::Message;
    use serde_json::{json, Value};

    fn caps(merge_diff: bool) -> Caps {
        let state = |on: bool| {
            if on {
                Ok(())
            } else {
                Err("only enabled with containerd image store backend".to_string())
            }
        };
        Caps(
            [
                ("file.base".to_string(), Ok(())),
                ("mergeop".to_string(), state(merge_diff)),
                ("diffop".to_string(), state(merge_diff)),
            ]
            .into_iter()
            .collect(),
        )
    }

    fn config() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "os": "linux", "architecture": "amd64",
            "config": {"Env": ["PATH=/bin"]},
            "history": [
                {"created": "2024-01-01T00:00:00Z", "created_by": "base"},
                {"created": "2025-01-01T00:00:00Z", "created_by": "RUN echo hi"}
            ]
        }))
        .unwrap()
    }

    fn base_config() -> Vec<u8> {
        serde_json::to_vec(&json!({"rootfs": {"type": "layers", "diff_ids": ["sha256:1"]}}))
            .unwrap()
    }

    fn tool() -> Tool {
        let (def, _) = sample_definition();
        Tool {
            def,
            exe: "/bin/squash-frontend".into(),
            platform: pb::Platform {
                architecture: "amd64".into(),
                os: "linux".into(),
                ..Default::default()
            },
        }
    }

    fn ops(def: &pb::Definition) -> Vec<pb::Op> {
        def.def
            .iter()
            .map(|b| pb::Op::decode(b.as_slice()).unwrap())
            .collect()
    }

    /// A readable dump of the ops we appended (the golden form of a plan).
    fn appended(def: &pb::Definition, received: usize) -> Vec<String> {
        ops(def)[received..]
            .iter()
            .map(|op| match &op.op {
                Some(pb::op::Op::File(f)) => match &f.actions[0].action {
                    Some(pb::file_action::Action::Copy(c)) => {
                        format!("copy {} -> {}", c.src, c.dest)
                    }
                    Some(pb::file_action::Action::Mkdir(m)) => format!("mkdir {}", m.path),
                    other => format!("file {other:?}"),
                },
                Some(pb::op::Op::Diff(_)) => "diff".into(),
                Some(pb::op::Op::Merge(m)) => format!("merge {}", m.inputs.len()),
                Some(pb::op::Op::Exec(e)) => e.meta.as_ref().unwrap().args.join(" "),
                Some(other) => format!("{other:?}"),
                None => "terminal".into(),
            })
            .collect()
    }

    fn env<'a>(mode: Mode, method: Method, caps: &'a Caps, tool: Option<&'a Tool>) -> Env<'a> {
        Env {
            mode,
            method,
            caps,
            tool,
            epoch: None,
        }
    }

    #[test]
    fn base_to_describe_is_the_pinned_root_image_when_no_base_config_came_back() {
        let (def, _) = sample_definition();
        let (cfg, bcfg) = (config(), base_config());
        let c = caps(true);
        let built = |base_config| Built {
            def: &def,
            config: Some(&cfg),
            base_config,
        };
        let wanted = base_to_describe(built(None), &env(Mode::Base, Method::Auto, &c, None))
            .unwrap()
            .expect("a base to describe");
        assert_eq!(
            wanted.reference,
            "docker.io/library/busybox:latest@sha256:aaaa"
        );
        assert_eq!(wanted.platform.unwrap().architecture, "amd64");
        // Described already, or not base mode: nothing to ask.
        for (cfg, mode) in [
            (Some(&bcfg[..]), Mode::Base),
            (None, Mode::Full),
            (None, Mode::Off),
        ] {
            let got = base_to_describe(built(cfg), &env(mode, Method::Auto, &c, None)).unwrap();
            assert_eq!(got, None, "{mode:?} with base config {:?}", cfg.is_some());
        }
    }

    #[test]
    fn base_to_describe_skips_non_registry_roots() {
        for (identifier, want) in [
            ("docker-image://docker.io/library/busybox:latest", true),
            ("local://context", false),
            ("oci-layout://store/busybox@sha256:aaaa", false),
            ("docker-image://docker.io/library/busybox@sha256:aaaa", true),
        ] {
            let def = with_root(identifier);
            let c = caps(true);
            let cfg = config();
            let built = Built {
                def: &def,
                config: Some(&cfg),
                base_config: None,
            };
            let got = base_to_describe(built, &env(Mode::Base, Method::Auto, &c, None)).unwrap();
            assert_eq!(got.is_some(), want, "{identifier}");
        }
    }

    /// The sample definition with another root source identifier.
    fn with_root(identifier: &str) -> pb::Definition {
        let mut g = Graph::default();
        let src = g.push(
            pb::Op {
                op: Some(pb::op::Op::Source(pb::SourceOp {
                    identifier: identifier.into(),
                    attrs: Default::default(),
                })),
                ..Default::default()
            },
            pb::OpMetadata::default(),
        );
        let (sample, _) = sample_definition();
        let exec = ops(&sample)
            .into_iter()
            .find(|op| matches!(op.op, Some(pb::op::Op::Exec(_))))
            .unwrap();
        let mut exec = exec;
        exec.inputs[0].digest = src.digest.clone();
        let head = g.push(exec, pb::OpMetadata::default());
        g.finish(&head).unwrap()
    }

    #[test]
    fn full_squash_appends_one_copy() {
        let (def, _) = sample_definition();
        let cfg = config();
        let c = caps(false);
        let built = Built {
            def: &def,
            config: Some(&cfg),
            base_config: None,
        };
        let Plan::Squash {
            def: out,
            config,
            keeps_base,
            summary,
        } = plan(built, &env(Mode::Full, Method::Auto, &c, None)).unwrap()
        else {
            panic!("not squashed")
        };
        assert_eq!(appended(&out, 2), ["copy / -> /", "terminal"]);
        assert_eq!(summary, "squash: 2 layers -> 1");
        assert!(!keeps_base);
        let v: Value = serde_json::from_slice(&config.unwrap()).unwrap();
        assert_eq!(v["history"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn full_squash_by_diff_where_the_engine_has_diffop() {
        let (def, _) = sample_definition();
        let cfg = config();
        let built = Built {
            def: &def,
            config: Some(&cfg),
            base_config: None,
        };
        let appended_with = |has_diff: bool, method: Method| {
            let c = caps(has_diff);
            match plan(built, &env(Mode::Full, method, &c, None)) {
                Ok(Plan::Squash { def, .. }) => Ok(appended(&def, 2)),
                Ok(other) => panic!("not squashed: {other:?}"),
                Err(e) => Err(e),
            }
        };
        let by_diff = appended_with(true, Method::Auto).unwrap();
        assert_eq!(by_diff, ["mkdir /", "diff", "terminal"]);
        // The empty root is made on scratch (no input), not on the result.
        let c = caps(true);
        let Plan::Squash { def: out, .. } =
            plan(built, &env(Mode::Full, Method::Diff, &c, None)).unwrap()
        else {
            panic!("not squashed")
        };
        let mkdir = &ops(&out)[2];
        assert!(mkdir.inputs.is_empty(), "{mkdir:?}");
        assert_eq!(
            appended_with(true, Method::Sync).unwrap(),
            ["copy / -> /", "terminal"]
        );
        assert!(matches!(
            appended_with(false, Method::Diff),
            Err(PlanError::NoDiff { .. })
        ));
    }

    #[test]
    fn full_squash_by_sync_onto_an_empty_mount_without_diffop() {
        let (def, _) = sample_definition();
        let cfg = config();
        let t = tool();
        let built = Built {
            def: &def,
            config: Some(&cfg),
            base_config: None,
        };
        for (has_diff, method) in [
            (false, Method::Auto),
            (false, Method::Sync),
            (true, Method::Sync),
        ] {
            let c = caps(has_diff);
            let Plan::Squash {
                def: out,
                keeps_base,
                ..
            } = plan(built, &env(Mode::Full, method, &c, Some(&t))).unwrap()
            else {
                panic!("not squashed")
            };
            assert!(!keeps_base);
            let all = ops(&out);
            let is_sync = |e: &pb::ExecOp| {
                e.meta
                    .as_ref()
                    .and_then(|m| m.args.get(1))
                    .map(String::as_str)
                    == Some("sync")
            };
            let (op, e) = all
                .iter()
                .find_map(|op| match &op.op {
                    Some(pb::op::Op::Exec(e)) if is_sync(e) => Some((op, e)),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no sync step with diffop {has_diff}, {method:?}"));
            // The tool and the result; the base mount starts empty (scratch).
            assert_eq!(op.inputs.len(), 2);
            let base = e.mounts.iter().find(|m| m.dest == llb::SYNC_BASE).unwrap();
            assert_eq!((base.input, base.output, base.readonly), (-1, 0, false));
        }
        // With DiffOp and method auto, the diff wins over the sync.
        let c = caps(true);
        let Plan::Squash { def: out, .. } =
            plan(built, &env(Mode::Full, Method::Auto, &c, Some(&t))).unwrap()
        else {
            panic!("not squashed")
        };
        assert_eq!(appended(&out, 2), ["mkdir /", "diff", "terminal"]);
    }

    #[test]
    fn base_mode_uses_diff_and_merge_where_the_engine_has_them() {
        let (def, digests) = sample_definition();
        let (cfg, bcfg) = (config(), base_config());
        let c = caps(true);
        let built = Built {
            def: &def,
            config: Some(&cfg),
            base_config: Some(&bcfg),
        };
        let Plan::Squash {
            def: out,
            keeps_base,
            summary,
            ..
        } = plan(built, &env(Mode::Base, Method::Auto, &c, None)).unwrap()
        else {
            panic!("not squashed")
        };
        assert!(keeps_base);
        assert_eq!(summary, "squash: 2 layers -> 1 base + 1");
        assert_eq!(
            appended(&out, 2),
            ["mkdir /", "diff", "merge 2", "terminal"]
        );
        let all = ops(&out);
        // The no-op mkdir sits on the base image op; the diff's upper side is the result;
        // the merge puts the base first.
        assert_eq!(all[2].inputs[0].digest, digests[0]);
        assert_eq!(all[3].inputs[1].digest, digests[1]);
        assert_eq!(all[4].inputs[0].digest, digests[0]);
        for (i, caps) in [(3, "diffop"), (4, "mergeop")] {
            let meta =
                pb::OpMetadata::decode(out.metadata[&llb::digest_of(&out.def[i])].as_slice())
                    .unwrap();
            assert!(meta.caps[caps]);
        }
    }

    #[test]
    fn base_mode_falls_back_to_sync_without_diff() {
        let (def, digests) = sample_definition();
        let (cfg, bcfg) = (config(), base_config());
        let c = caps(false);
        let t = tool();
        let built = Built {
            def: &def,
            config: Some(&cfg),
            base_config: Some(&bcfg),
        };
        let Plan::Squash { def: out, .. } =
            plan(built, &env(Mode::Base, Method::Auto, &c, Some(&t))).unwrap()
        else {
            panic!("not squashed")
        };
        // The tool's own definition here is the sample one, so its ops are shared.
        assert_eq!(
            appended(&out, 2),
            [
                "/bin/squash-frontend sync /squash/final /squash/base",
                "terminal"
            ]
        );
        let exec = &ops(&out)[2];
        assert_eq!(exec.inputs[1].digest, digests[1], "result mounted");
        assert_eq!(exec.inputs[2].digest, digests[0], "base mounted");
        let Some(pb::op::Op::Exec(e)) = &exec.op else {
            panic!()
        };
        assert_eq!(e.network, pb::NetMode::None as i32);
        assert!(
            e.mounts[0].readonly,
            "the tool root must be a throw-away copy"
        );
        assert!(e.mounts[1].readonly && !e.mounts[2].readonly);
        assert_eq!(e.mounts[2].output, 0);
    }

    #[test]
    fn explicit_diff_on_an_engine_without_it_names_the_limit() {
        let (def, _) = sample_definition();
        let (cfg, bcfg) = (config(), base_config());
        let c = caps(false);
        let built = Built {
            def: &def,
            config: Some(&cfg),
            base_config: Some(&bcfg),
        };
        let e = plan(built, &env(Mode::Base, Method::Diff, &c, None)).unwrap_err();
        assert!(
            e.to_string()
                .contains("only enabled with containerd image store"),
            "{e}"
        );
        let e = plan(built, &env(Mode::Base, Method::Sync, &c, None)).unwrap_err();
        assert_eq!(e, PlanError::NoTool);
    }

    #[test]
    fn nothing_to_squash_is_left_alone() {
        let c = caps(true);
        let empty = pb::Definition::default();
        let built = Built {
            def: &empty,
            config: None,
            base_config: None,
        };
        assert!(matches!(
            plan(built, &env(Mode::Full, Method::Auto, &c, None)),
            Ok(Plan::Unchanged { .. })
        ));
        let (def, _) = sample_definition();
        let one = serde_json::to_vec(&json!({"history": [{"created_by": "x"}]})).unwrap();
        let built = Built {
            def: &def,
            config: Some(&one),
            base_config: None,
        };
        assert!(matches!(
            plan(built, &env(Mode::Full, Method::Auto, &c, None)),
            Ok(Plan::Unchanged { .. })
        ));
        let built = Built {
            def: &def,
            config: None,
            base_config: None,
        };
        assert!(matches!(
            plan(built, &env(Mode::Off, Method::Auto, &c, None)),
            Ok(Plan::Unchanged { .. })
        ));
    }

    #[test]
    fn base_mode_on_a_scratch_chain_is_a_full_squash() {
        let (def, _) = sample_definition();
        let mut g = Graph::default();
        let head = g.add_definition(&def).unwrap().unwrap();
        let on_scratch = g.push(llb::copy_root_onto_scratch(&head), Default::default());
        let mut g2 = g.clone();
        let again = g2.push(
            pb::Op {
                inputs: vec![pb::Input {
                    digest: on_scratch.digest.clone(),
                    index: 0,
                }],
                op: Some(pb::op::Op::Exec(pb::ExecOp {
                    mounts: vec![pb::Mount {
                        input: 0,
                        dest: "/".into(),
                        output: 0,
                        ..Default::default()
                    }],
                    ..Default::default()
                })),
                ..Default::default()
            },
            Default::default(),
        );
        let scratch_def = g2.finish(&again).unwrap();
        let cfg = config();
        let c = caps(true);
        let built = Built {
            def: &scratch_def,
            config: Some(&cfg),
            base_config: None,
        };
        let Plan::Squash {
            keeps_base,
            summary,
            ..
        } = plan(built, &env(Mode::Base, Method::Auto, &c, None)).unwrap()
        else {
            panic!()
        };
        assert!(!keeps_base);
        assert_eq!(
            summary,
            "squash: 2 layers -> 1 (no base kept: the target stage starts from scratch)"
        );
    }

    #[test]
    fn epoch_sets_created() {
        let (def, _) = sample_definition();
        let cfg = config();
        let c = caps(true);
        let mut e = env(Mode::Full, Method::Auto, &c, None);
        e.epoch = Some(1_700_000_000);
        let built = Built {
            def: &def,
            config: Some(&cfg),
            base_config: None,
        };
        let Plan::Squash { config, .. } = plan(built, &e).unwrap() else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&config.unwrap()).unwrap();
        assert_eq!(v["created"], "2023-11-14T22:13:20Z");
        assert_eq!(v["history"][2]["created"], "2023-11-14T22:13:20Z");
    }
}
