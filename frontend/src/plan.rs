//! Planning the squash of one built image: which graph to append, and the config to go with it.
//!
//! Graphs, as measured on real engines (see the README's compatibility table):
//! - full, `diff` method: `diff(scratch + no-op mkdir, result)`: one layer, nothing copied (a
//!   diff against scratch itself would export as the result's own layers);
//! - full, `sync` method: our binary mirroring the result onto an empty writable mount;
//! - full without our own image's definition: `scratch + copy(result:/ -> /)`: one layer on
//!   every engine, but a socket becomes an empty file;
//! - base, `diff` method: our binary's `sync` onto a writable mount of the base, reading only
//!   the paths the engine's diff of each step from the one before names (mounted beside it);
//!   the mount's changes are the one layer. Without our own image's definition:
//!   `merge(base, diff(base + no-op mkdir, result))`: base layers + one, the engine's differ
//!   walking both trees at export. The no-op mkdir matters: a diff whose lower side is an
//!   ancestor of the upper side is exported as the upper's own layers, not as one;
//! - base, `sync` method: our binary run in the build with the result mounted read-only and the
//!   base mounted writable; the mount's changes are the one layer. Works where MergeOp and
//!   DiffOp are disabled (Docker's classic store).

use std::collections::BTreeMap;

use prost::Message;
use squash_proto::{apicaps::ApiCap, pb, types::WorkerRecord};

use crate::base::{self, Lineage, Root};
use crate::config::{self, Layout, SquashEntry};
use crate::llb::{self, Graph, LlbError, Output};
use crate::report;
use crate::request::{Given, Method, Mode, Split};
use crate::upper;
use crate::version;

/// The engine's LLB capabilities, from `Ping`: id -> `Ok(())` or the reason it is disabled.
#[derive(Debug, Clone, Default)]
pub struct Caps(pub BTreeMap<String, Result<(), String>>);

impl Caps {
    /// The capabilities as the engine lists them in its `Ping` answer.
    pub fn from_api_caps(caps: &[ApiCap]) -> Caps {
        Caps(
            caps.iter()
                .map(|c| {
                    let state = if c.enabled {
                        Ok(())
                    } else {
                        Err(c.disabled_reason_msg.clone())
                    };
                    (c.id.clone(), state)
                })
                .collect(),
        )
    }

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

impl Tool {
    /// Our own image, if BuildKit told us its definition (`def`, the bytes of
    /// `/run/config/buildkit/metadata/frontend.bin`) and it decodes; the step runs at the first
    /// worker's first platform, or at this binary's own.
    pub fn new(def: Option<&[u8]>, exe: &str, workers: &[WorkerRecord]) -> Option<Tool> {
        let mut def = pb::Definition::decode(def?).ok()?;
        if def.def.is_empty() {
            return None;
        }
        as_regular_image(&mut def);
        let platform = workers
            .first()
            .and_then(|w| w.platforms.first())
            .cloned()
            .unwrap_or_else(|| pb::Platform {
                architecture: host_arch().into(),
                os: "linux".into(),
                ..Default::default()
            });
        Some(Tool {
            def,
            exe: exe.to_string(),
            platform,
        })
    }
}

/// BuildKit describes the frontend's own image with the record type `frontend`
/// (`image.recordtype`), which keeps every step that uses it out of an exported build cache
/// (measured: a squash step built on it was never found in an imported cache). Our steps use it
/// as the image it is, so the attribute is dropped (the ops are re-encoded: their digests are
/// ours to make). The terminal is re-pointed at the new head. The source is named
/// [`OWN_IMAGE_NAME`] in the progress: it is the frontend image's third line there (after its
/// resolution and its load for the frontend itself), and its reference alone does not say why.
fn as_regular_image(def: &mut pb::Definition) {
    let mut renamed = BTreeMap::new();
    for bytes in &mut def.def {
        let Ok(mut op) = pb::Op::decode(bytes.as_slice()) else {
            continue;
        };
        for input in &mut op.inputs {
            if let Some(new) = renamed.get(&input.digest) {
                input.digest = String::clone(new);
            }
        }
        let source = matches!(op.op, Some(pb::op::Op::Source(_)));
        if let Some(pb::op::Op::Source(src)) = &mut op.op {
            src.attrs.remove("image.recordtype");
        }
        let old = llb::digest_of(bytes);
        let new_bytes = op.encode_to_vec();
        let new = llb::digest_of(&new_bytes);
        if new != old {
            if let Some(meta) = def.metadata.remove(&old) {
                def.metadata.insert(new.clone(), meta);
            }
            renamed.insert(old, new.clone());
            *bytes = new_bytes;
        }
        if source {
            let mut meta = def
                .metadata
                .get(&new)
                .and_then(|m| pb::OpMetadata::decode(m.as_slice()).ok())
                .unwrap_or_default();
            meta.description
                .insert("llb.customname".into(), OWN_IMAGE_NAME.into());
            meta.caps.insert("meta.description".into(), true);
            def.metadata.insert(new, meta.encode_to_vec());
        }
    }
}

/// The progress name of our own image where our in-build steps take it in. Not `squash: ...`,
/// the prefix of our steps: an image source shows as `DONE` on every build, never `CACHED`.
pub const OWN_IMAGE_NAME: &str = "squash-frontend's own image, for its in-build steps";

/// This binary's architecture, in OCI's words.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Everything about the build, beyond the image itself, that the plan depends on.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The squash mode.
    pub mode: Mode,
    /// The squash method.
    pub method: Method,
    /// The engine's LLB capabilities.
    pub caps: &'a Caps,
    /// Our own image, where BuildKit described it.
    pub tool: Option<&'a Tool>,
    /// `SOURCE_DATE_EPOCH`, if the build has one.
    pub epoch: Option<i64>,
    /// `--no-cache`: the ops we add are never taken from the cache.
    pub no_cache: bool,
    /// The least the squash must reclaim (`squash-min-saving`), if set.
    pub min_saving: Option<report::MinSaving>,
    /// Where the squash splits the image into two layers (`squash-split`), if it does, and
    /// where that was given.
    pub split: Option<Given<Split>>,
    /// Whether the squash makes its report (`squash-report`).
    pub report: bool,
}

/// One built image as the Dockerfile frontend returned it, its definition decoded once.
#[derive(Debug, Clone)]
pub struct Received {
    graph: Graph,
    /// The result's output, and where its filesystem grew from; `None` for an empty image.
    head: Option<(Output, Lineage)>,
    config: Option<Vec<u8>>,
    base_config: Option<Vec<u8>>,
    /// Whether `base_config` was resolved by us rather than returned by the build.
    described: bool,
}

impl Received {
    /// Takes in one image: its definition, its config and its base image's config as the
    /// Dockerfile frontend returned them.
    pub fn decode(
        def: &pb::Definition,
        config: Option<&[u8]>,
        base_config: Option<&[u8]>,
    ) -> Result<Received, PlanError> {
        let mut graph = Graph::default();
        let head = graph.add_definition(def)?.map(|head| {
            let lineage = base::find_root(&graph, &head);
            (head, lineage)
        });
        Ok(Received {
            graph,
            head,
            config: config.map(<[u8]>::to_vec),
            base_config: base_config.map(<[u8]>::to_vec),
            described: false,
        })
    }

    /// The image's config, if the build returned one.
    pub fn config(&self) -> Option<&[u8]> {
        self.config.as_deref()
    }

    /// Sets the base image's config resolved by the engine (see [`Received::base_to_describe`]).
    pub fn set_described_base(&mut self, base_config: Vec<u8>) {
        self.base_config = Some(base_config);
        self.described = true;
    }

    /// A base image the engine must describe before the squash can count its layers (and base
    /// mode keep them): the pinned image at the root of the target stage, when the Dockerfile
    /// frontend returned no `containerimage.base.config` for it (Docker 26.1's does not for a
    /// base given by `--build-context name=docker-image://...`). `None` with squashing off, when
    /// the build already described its base, or when the root is not a registry image (scratch,
    /// a local context, an OCI layout).
    pub fn base_to_describe(&self, inputs: &Inputs<'_>) -> Option<BaseToDescribe> {
        if inputs.mode == Mode::Off || self.base_config.is_some() {
            return None;
        }
        let (_, lineage) = self.head.as_ref()?;
        let Root::Image { output, identifier } = &lineage.root else {
            return None;
        };
        let reference = identifier.strip_prefix("docker-image://")?;
        if lineage.steps == 0 {
            return None;
        }
        Some(BaseToDescribe {
            reference: reference.to_string(),
            platform: self
                .graph
                .op(&output.digest)
                .and_then(|op| op.platform.clone()),
        })
    }
}

/// See [`Received::base_to_describe`].
#[derive(Debug, Clone, PartialEq)]
pub struct BaseToDescribe {
    /// The reference to resolve, without its `docker-image://` scheme. Docker 26.1's frontend
    /// leaves a named context's reference as given (a tag); the config resolved for it is
    /// only used if [`config::describes_base`] finds it under the built image.
    pub reference: String,
    /// The platform the source op was pinned for.
    pub platform: Option<pb::Platform>,
}

/// What to do with one image.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Return the image as built.
    Unchanged {
        /// Why: for the daemon's log, and, where a squash was asked for, a step of its own in
        /// the build's progress.
        reason: String,
        /// Squash mode is off: nothing was asked for, and nothing is shown.
        off: bool,
    },
    /// Solve the squash and return it.
    Squash(Squash),
}

/// A planned squash of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Squash {
    /// The received graph with our ops appended.
    pub def: Def,
    /// The rewritten config (`None` if the build returned none).
    pub config: Option<Vec<u8>>,
    /// Whether `containerimage.base.config` still describes the bottom layers.
    pub keeps_base: bool,
    /// The base image's config to return as `containerimage.base.config`, where we resolved it
    /// ourselves and keep the base: the exporter then treats the kept layers as the base's
    /// (`rewrite-timestamp` leaves them alone).
    pub described_base: Option<Vec<u8>>,
    /// A one-line description for the progress output and history.
    pub summary: String,
    /// The definition of the squash step's report ([`crate::report::Report`] in the file
    /// [`llb::REPORT_FILE`]), where our own image made the squash.
    pub report: Option<pb::Definition>,
}

/// What the frontend solves for a squash.
#[derive(Debug, Clone, PartialEq)]
pub enum Def {
    /// The squash's definition.
    Ready(pb::Definition),
    /// The definition of a layer the engine makes alone, once the frontend has read what the
    /// build changed ([`upper`]).
    ReadFirst(Box<upper::ReadFirst>),
}

/// Why a squash cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// The received graph does not take.
    #[error("the Dockerfile frontend returned a graph squash-frontend cannot use: {0}")]
    Graph(#[from] LlbError),
    /// The received config cannot be rewritten.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Method `diff` on an engine without DiffOp/MergeOp.
    #[error("squash method diff needs the engine's DiffOp (and MergeOp in base mode), which this engine does not offer ({reason}); set the squash method to sync or auto (valid values: auto, diff, sync)")]
    NoDiff {
        /// The engine's reason.
        reason: String,
    },
    /// `squash-split` names a stage none of whose steps the target stage's build runs: one
    /// the target stage is not built on, or one that makes no filesystem of its own (a stage of
    /// `ENV`, `LABEL` and the like alone is its `FROM`'s filesystem, and the progress names no
    /// step after it).
    #[error("{from} names the stage {stage}, which has no step in the build of the target stage: it is not a stage the target stage starts FROM (directly or through other stages), or it runs no step that changes files; valid values are {valid}")]
    SplitStage {
        /// Where the setting was given.
        from: String,
        /// Its Dockerfile line, where a directive gave it.
        line: Option<usize>,
        /// The stage asked for.
        stage: String,
        /// The valid values, in words: the stages it is built on, as the progress names them.
        valid: String,
    },
    /// `squash-split` names the target stage itself, or a stage after whose end no step
    /// changes files (the target stage's own instructions are all `ENV`, `CMD` and the like).
    #[error("{from} names the stage {stage}, after which no step of the build changes files: nothing is left for the upper layer; valid values are {valid}")]
    SplitNothingAfter {
        /// Where the setting was given.
        from: String,
        /// Its Dockerfile line, where a directive gave it.
        line: Option<usize>,
        /// The stage asked for.
        stage: String,
        /// The valid values, in words.
        valid: String,
    },
    /// Method `sync` without our own image's definition.
    #[error("squash method sync needs the frontend's own image definition, which BuildKit did not provide at /run/config/buildkit/metadata/frontend.bin; set the squash method to diff or auto, or use full mode")]
    NoTool,
}

impl PlanError {
    /// The 1-based Dockerfile line it is about, where a directive gave the setting at fault.
    pub fn dockerfile_line(&self) -> Option<usize> {
        match self {
            PlanError::SplitStage { line, .. } | PlanError::SplitNothingAfter { line, .. } => *line,
            _ => None,
        }
    }
}

/// Plans the squash of `received`.
pub fn plan(received: Received, inputs: &Inputs<'_>) -> Result<Plan, PlanError> {
    if inputs.mode == Mode::Off {
        return Ok(Plan::Unchanged {
            reason: "squash mode is off".into(),
            off: true,
        });
    }
    let Some((head, lineage)) = received.head.clone() else {
        return Ok(unchanged("the image is empty"));
    };
    // Layers are counted from the base's diff IDs and the Dockerfile's own history entries.
    let base_info = received.base_config.as_deref().and_then(config::Base::read);
    let layers = received
        .config
        .as_deref()
        .map(|c| config::count_layers(c, base_info))
        .transpose()?;
    let mut graph = received.graph;
    graph.set_ignore_cache(inputs.no_cache);
    let created = inputs.epoch.map(config::format_rfc3339);
    let count = layers.map_or_else(|| "all".to_string(), |l| l.total().to_string());
    let config = received.config.as_deref();

    // In base mode, the base to keep, or why it cannot be kept (shown in the progress line and
    // history).
    let base = match (&inputs.mode, &lineage.root) {
        (Mode::Base, Root::Image { output, .. }) => base_info
            .map(|b| (output.clone(), b))
            .ok_or("the Dockerfile frontend did not describe the base image".to_string()),
        // The Dockerfile frontend builds on an image without layers as on scratch
        // (dockerfile2llb/convert.go), so the graph cannot tell the two apart.
        (Mode::Base, Root::Scratch) => {
            Err("the target stage starts from scratch or from an image without layers".to_string())
        }
        (Mode::Base, Root::Other(what)) => {
            Err(format!("the target stage starts from {what}, not an image"))
        }
        _ => Err(String::new()),
    };
    let root_image = match &lineage.root {
        Root::Image { output, .. } => Some(output.clone()),
        _ => None,
    };
    let step_names: Vec<String> = lineage
        .states
        .iter()
        .enumerate()
        .map(|(k, s)| {
            graph
                .name(&s.digest)
                .unwrap_or_else(|| format!("step {}", k + 1))
        })
        .collect();
    let reporting = |squash: report::Squash| -> llb::Reporting<'_> {
        let request = report::Request {
            squash,
            layers_before: layers.map_or(0, |l| l.total()),
            states: llb::REPORT_STATES.into(),
            steps: step_names.clone(),
            top: REPORT_TOP,
            min_saving: inputs.min_saving,
            // A split at a stage is counted from the step it ends with (`split_layers`).
            split: match inputs.split.as_ref().map(|g| &g.value) {
                Some(Split::Paths(paths)) => Some(report::SplitAt::Paths(paths.clone())),
                _ => None,
            },
            resume: None,
            changed: false,
        };
        llb::Reporting {
            base: root_image.as_ref(),
            states: &lineage.states,
            request,
            resume: None,
            changed: Vec::new(),
        }
    };
    if let Some(given) = &inputs.split {
        let split = &given.value;
        let kept = base.as_ref().ok().cloned();
        let one_layer = || unchanged("the Dockerfile adds at most one layer to its base image");
        if lineage.steps == 0 {
            return Ok(one_layer());
        }
        let (low, high) = split_names(split);
        // A split at a stage: the stage's last step. A bad stage name is refused here, before
        // the build is found too small to split, so that it is refused in every mode.
        let boundary = match split {
            Split::Stage(stage) => Boundary::Stage {
                end: stage_end(&graph, &lineage, stage, given)?,
                name: &low,
            },
            Split::Paths(paths) => Boundary::Paths(paths),
        };
        if layers.is_some_and(|l| l.added <= 1 && kept.is_some()) {
            return Ok(one_layer());
        }
        let (summary, layout, squash) = match kept {
            Some((_, b)) => (
                summary(&format!(
                    "{count} layers -> {} base + 2, {low} apart",
                    b.layers
                )),
                Layout::KeepBase(b),
                report::Squash::Base { layers: b.layers },
            ),
            None => (
                summary(&format!("{count} layers -> 2, {low} apart")),
                Layout::Full,
                report::Squash::Full,
            ),
        };
        let mut entries = [
            entry(&summary_of_layer(&low)),
            entry(&summary_of_layer(&high)),
        ];
        // The lower layer's entry follows the stage's last step's, where the Dockerfile's
        // steps are its layer entries one for one; the upper one's goes at the end.
        if let (Boundary::Stage { end, .. }, Some(l)) = (&boundary, layers) {
            if l.added == lineage.states.len() {
                entries[0].under = Some(lineage.states.len() - 1 - end);
            }
        }
        let reporting = reporting(squash);
        let base_out = base.as_ref().ok().map(|(o, _)| o.clone());
        let made = split_layers(
            &mut graph,
            (&head, &lineage),
            &boundary,
            base_out.as_ref(),
            inputs,
            &entries,
            &reporting,
        )?;
        let config = config
            .map(|c| config::rewrite_for(c, layout, &entries, created.as_deref()))
            .transpose()?;
        return Ok(Plan::Squash(Squash {
            report: made.report.as_ref().map(|r| graph.finish(r)).transpose()?,
            def: made.def(&graph)?,
            config,
            keeps_base: base_out.is_some(),
            described_base: base_out
                .and(received.described.then_some(received.base_config))
                .flatten(),
            summary,
        }));
    }
    let no_base = match base {
        Ok((base_out, base)) => {
            if lineage.steps == 0 || layers.is_some_and(|l| l.added == 0) {
                return Ok(unchanged("the Dockerfile adds no layer to its base image"));
            }
            let summary = summary(&format!("{count} layers -> {} base + 1", base.layers));
            let reporting = reporting(report::Squash::Base {
                layers: base.layers,
            });
            let made = base_layer(&mut graph, &head, &base_out, inputs, &summary, &reporting)?;
            let config = config
                .map(|c| {
                    config::rewrite(
                        c,
                        Layout::KeepBase(base),
                        &entry(&summary),
                        created.as_deref(),
                    )
                })
                .transpose()?;
            return Ok(Plan::Squash(Squash {
                report: made.report.as_ref().map(|r| graph.finish(r)).transpose()?,
                def: made.def(&graph)?,
                config,
                keeps_base: true,
                described_base: received.described.then_some(received.base_config).flatten(),
                summary,
            }));
        }
        Err(why) => why,
    };

    if layers.is_some_and(|l| l.total() <= 1) {
        return Ok(unchanged("the image already has a single layer"));
    }
    let summary = if no_base.is_empty() {
        summary(&format!("{count} layers -> 1"))
    } else {
        summary(&format!("{count} layers -> 1, no base kept: {no_base}"))
    };
    let reporting = reporting(report::Squash::Full);
    let made = full_layer(&mut graph, &head, inputs, &summary, &reporting)?;
    let config = config
        .map(|c| config::rewrite(c, Layout::Full, &entry(&summary), created.as_deref()))
        .transpose()?;
    Ok(Plan::Squash(Squash {
        report: made.report.as_ref().map(|r| graph.finish(r)).transpose()?,
        def: made.def(&graph)?,
        config,
        keeps_base: false,
        described_base: None,
        summary,
    }))
}

/// How many wasted files a report names.
const REPORT_TOP: usize = 10;

/// The squashed layer, and where our in-build step put its report (its output 1); or a layer
/// the engine makes once the frontend has read what changed.
struct Made {
    layer: Output,
    report: Option<Output>,
    read_first: Option<upper::ReadFirst>,
}

impl Made {
    /// The layer our `sync` step at `step` wrote (its output 0), with its report where it
    /// makes one.
    fn by_step(step: Output, inputs: &Inputs<'_>) -> Made {
        Made {
            report: report_of(&step).filter(|_| inputs.report),
            layer: step,
            read_first: None,
        }
    }

    /// A layer the engine makes on `lower` from the changes up to `head` (`upper`), named
    /// `name`; `changes` names BuildKit's diff of the two in the progress.
    fn by_engine(
        g: &mut Graph,
        (lower, head): (&Output, &Output),
        changes: &str,
        name: &str,
        inputs: &Inputs<'_>,
    ) -> Result<Made, PlanError> {
        let read_first = upper::ReadFirst::new(g, lower, head, changes, name, inputs.no_cache)?;
        Ok(Made {
            layer: lower.clone(),
            report: None,
            read_first: Some(read_first),
        })
    }

    /// What the frontend solves.
    fn def(self, g: &Graph) -> Result<Def, PlanError> {
        Ok(match self.read_first {
            Some(r) => Def::ReadFirst(Box::new(r)),
            None => Def::Ready(g.finish(&self.layer)?),
        })
    }
}

/// Output 1 of the op at `step`: where our in-build step writes its report.
fn report_of(step: &Output) -> Option<Output> {
    Some(Output {
        digest: step.digest.clone(),
        index: 1,
    })
}

/// Our own image, taken into the graph: what our in-build steps run in.
struct Ours<'a> {
    tool: &'a Tool,
    /// The image's output in the graph.
    head: Output,
}

impl<'a> Ours<'a> {
    /// Our image where BuildKit described it (and its definition is not empty).
    fn find(g: &mut Graph, inputs: &Inputs<'a>) -> Result<Option<Ours<'a>>, PlanError> {
        inputs.tool.map_or(Ok(None), |tool| Ours::of(g, tool))
    }

    /// `tool`'s image taken into the graph, unless its definition is empty.
    fn of(g: &mut Graph, tool: &'a Tool) -> Result<Option<Ours<'a>>, PlanError> {
        Ok(g.add_definition(&tool.def)?.map(|head| Ours { tool, head }))
    }

    /// [`Ours::find`], where the plan cannot do without it.
    fn needed(g: &mut Graph, inputs: &Inputs<'a>) -> Result<Ours<'a>, PlanError> {
        Ours::find(g, inputs)?.ok_or(PlanError::NoTool)
    }

    /// Our `sync` step ([`llb::sync_exec`]), named `name`: `from` mirrored onto `onto` (in the
    /// paths `only` alone, where there are any), with `report`.
    fn sync(
        &self,
        g: &mut Graph,
        from: &Output,
        onto: Option<&Output>,
        only: &[String],
        report: Option<&llb::Reporting<'_>>,
        name: &str,
    ) -> Output {
        g.push(
            llb::sync_exec(
                &self.head,
                &self.tool.exe,
                from,
                onto,
                only,
                report,
                self.tool.platform.clone(),
            ),
            llb::meta_with_caps(Some(name), llb::SYNC_EXEC_CAPS),
        )
    }
}

/// Base mode: the base's layers and one layer of everything the Dockerfile did on it.
///
/// With DiffOp (method `diff`, and `auto` where the engine has it) and our own image: our `sync`
/// step writes onto the base, reading only the paths BuildKit's diff of each step names
/// ([`step_changes`]); its output is the image, and the engine exports the step's own layer as
/// it stands. Without our image: the engine's diff from a no-op on the base to the result
/// ([`new_root`]), which its differ computes by walking both trees at export (measured on the
/// toolchain benchmark after a one-line change, Docker 28.5: 0.82 s in our `inspect` step and
/// 0.47 s in the export, against 0.29 s in the `sync` and 0.06 s in the export). With method
/// `sync`: our `sync` step reads both trees whole.
fn base_layer(
    g: &mut Graph,
    head: &Output,
    base: &Output,
    inputs: &Inputs<'_>,
    summary: &str,
    reporting: &llb::Reporting<'_>,
) -> Result<Made, PlanError> {
    let by_diff = base_method(inputs)? != Method::Sync;
    let ours = if by_diff {
        Ours::find(g, inputs)?
    } else {
        Some(Ours::needed(g, inputs)?)
    };
    if let Some(ours) = ours {
        let changed = match by_diff {
            true => step_changes(g, base, reporting.states, 0, &reporting.request),
            false => Vec::new(),
        };
        // Without the report, our sync still writes the layer, reading only what each step
        // changed: the engine alone (below) reads every directory of the diff above the base
        // and copies all of it on every rebuild, which measured twice as slow on the toolchain
        // benchmark's one-line change (Docker 28.5: 2.2 s against 1.1 s).
        let step = if inputs.report {
            let reporting = llb::Reporting {
                changed,
                ..reporting.clone()
            };
            ours.sync(g, head, Some(base), &[], Some(&reporting), summary)
        } else {
            g.push(
                llb::sync_exec_changed(
                    &ours.head,
                    &ours.tool.exe,
                    head,
                    Some(base),
                    &changed,
                    ours.tool.platform.clone(),
                ),
                llb::meta_with_caps(Some(summary), llb::SYNC_EXEC_CAPS),
            )
        };
        return Ok(Made::by_step(step, inputs));
    }
    // Only with DiffOp: without it, our image is needed above.
    if !inputs.report {
        let changes = "squash: the changes above the base";
        return Made::by_engine(g, (base, head), changes, summary, inputs);
    }
    let (marker, report) = new_root(g, head, Some(base), inputs, reporting)?;
    let layer = g.push(
        llb::diff(&marker, head),
        llb::meta_with_caps(Some("squash: diff against the base"), &["diffop"]),
    );
    let layer = g.push(
        llb::merge(&[base, &layer]),
        llb::meta_with_caps(Some(summary), &["mergeop"]),
    );
    Ok(Made {
        layer,
        report,
        read_first: None,
    })
}

/// Full mode: one layer.
fn full_layer(
    g: &mut Graph,
    head: &Output,
    inputs: &Inputs<'_>,
    summary: &str,
    reporting: &llb::Reporting<'_>,
) -> Result<Made, PlanError> {
    Ok(match full_way(inputs)? {
        FullWay::Diff => {
            let (empty, report) = new_root(g, head, None, inputs, reporting)?;
            let layer = g.push(
                llb::diff(&empty, head),
                llb::meta_with_caps(Some(summary), &["diffop"]),
            );
            Made {
                layer,
                report,
                read_first: None,
            }
        }
        FullWay::Sync(tool) => {
            let ours = Ours::of(g, tool)?.ok_or(PlanError::NoTool)?;
            let reporting = Some(reporting).filter(|_| inputs.report);
            Made::by_step(ours.sync(g, head, None, &[], reporting, summary), inputs)
        }
        FullWay::Copy => Made {
            layer: g.push(
                llb::copy_root_onto_scratch(head),
                llb::meta_with_caps(Some(summary), &["file.base"]),
            ),
            report: None,
            read_first: None,
        },
    })
}

/// The lower side of a diff that is to give one layer: a snapshot with the content of `base`
/// (an empty tree for `None`) made outside the result's chain (a diff whose lower side is an
/// ancestor of the upper side is exported as the upper's own layers, not as one), and where its
/// report is. Where our own image is known, it is our in-build `inspect` step, which checks the
/// result for what no layer can hold, writes the report, and leaves its writable mount of
/// `base` as it was; else a no-op `mkdir /`, with no report.
fn new_root(
    g: &mut Graph,
    head: &Output,
    base: Option<&Output>,
    inputs: &Inputs<'_>,
    reporting: &llb::Reporting<'_>,
) -> Result<(Output, Option<Output>), PlanError> {
    let ours = match inputs.report {
        true => Ours::find(g, inputs)?,
        false => None,
    };
    if let Some(ours) = ours {
        let step = g.push(
            llb::inspect_exec(
                &ours.head,
                &ours.tool.exe,
                head,
                base,
                reporting,
                ours.tool.platform.clone(),
            ),
            llb::meta_with_caps(Some(INSPECT_STEP), llb::SYNC_EXEC_CAPS),
        );
        let report = report_of(&step);
        return Ok((step, report));
    }
    Ok((
        g.push(
            llb::mkdir_root(base),
            llb::meta_with_caps(Some(root_name(base)), &["file.base"]),
        ),
        None,
    ))
}

/// The progress name of the no-op a diff starts from: on the base, or on nothing.
fn root_name(base: Option<&Output>) -> &'static str {
    match base {
        Some(_) => "squash: mark the base",
        None => "squash: an empty root",
    }
}

/// The progress name of our in-build `inspect` step.
pub const INSPECT_STEP: &str = "squash: inspect the result";

/// What the two layers of a split hold, in words: `(lower, upper)`.
fn split_names(split: &Split) -> (String, String) {
    match split {
        Split::Stage(stage) => (
            format!("stage {stage}"),
            format!("the steps after stage {stage}"),
        ),
        Split::Paths(paths) => (paths.join(", "), format!("all but {}", paths.join(", "))),
    }
}

/// The progress name and history entry of one layer of a split.
fn summary_of_layer(holds: &str) -> String {
    summary(&format!("{holds} -> 1 layer"))
}

/// The stage a step of the Dockerfile frontend belongs to, from its progress name:
/// `[<stage> N/M] ...`, or `[<platform> <stage> N/M] ...` in a multi-platform build (BuildKit's
/// `dockerfile2llb.prefixCommand`); stage names are lower case and never hold a `/`.
fn stage_of(name: &str) -> Option<&str> {
    let inside = name.strip_prefix('[')?.split(']').next()?;
    let tokens: Vec<&str> = inside.split_whitespace().collect();
    match tokens.as_slice() {
        [.., stage, count] if count.contains('/') && !stage.contains('/') => Some(stage),
        _ => None,
    }
}

/// The last of `lineage`'s filesystems that the stage `stage` made (`given`: where the
/// setting was given, for the errors, placed at its Dockerfile line where a directive gave it).
fn stage_end(
    g: &Graph,
    lineage: &base::Lineage,
    stage: &str,
    given: &Given<Split>,
) -> Result<usize, PlanError> {
    let names: Vec<String> = lineage
        .states
        .iter()
        .map(|s| g.name(&s.digest).unwrap_or_default())
        .collect();
    // The stages one can split at: those the target stage is built on, not itself.
    let target = names.last().and_then(|n| stage_of(n));
    let mut below: Vec<&str> = names
        .iter()
        .filter_map(|n| stage_of(n))
        .filter(|s| Some(*s) != target)
        .collect();
    below.dedup();
    let valid = if below.is_empty() {
        "absolute paths such as /usr,/etc (no stage's end is followed by a step that changes files)"
            .into()
    } else {
        format!(
            "the stages it is built on ({}), or absolute paths such as /usr,/etc",
            below.join(", ")
        )
    };
    let (from, line) = (given.from(), given.origin.dockerfile_line());
    let Some(k) = names.iter().rposition(|n| stage_of(n) == Some(stage)) else {
        return Err(PlanError::SplitStage {
            from,
            line,
            stage: stage.to_string(),
            valid,
        });
    };
    if k + 1 == lineage.states.len() {
        return Err(PlanError::SplitNothingAfter {
            from,
            line,
            stage: stage.to_string(),
            valid,
        });
    }
    Ok(k)
}

/// A split resolved against the build: where its lower layer ends.
enum Boundary<'a> {
    /// At the end of a stage: its last step made the lineage's filesystem `end`; `name` names
    /// the lower layer (`stage deps`).
    Stage { end: usize, name: &'a str },
    /// At these absolute paths.
    Paths(&'a [String]),
}

/// The two layers of a split squash above `base` (on scratch for `None`): `entries` name them.
///
/// At a stage: the lower layer is the squash of the filesystem at the stage's end, which the
/// build cache keeps as long as that stage's steps do not change; the later steps are rebased
/// onto it (on the base, see [`rebased`]), and the upper one holds what they changed
/// (whiteouts for what they deleted). With DiffOp and MergeOp: the lower layer is
/// `diff(base + no-op, stage end)`, and our `sync` of the result writes onto
/// `merge(base, lower)` (without our image: the engine's diff, see [`upper_at`]); without:
/// our `sync` of the stage's end onto the base, then of the result onto that.
///
/// At paths: the lower layer is those paths of the result, synced onto the base from a copy of
/// them alone (a FileOp copy is keyed by the content it copies, so the step stays cached while
/// they stay the same); the upper one is our `sync` of the whole result onto that.
fn split_layers(
    g: &mut Graph,
    (head, lineage): (&Output, &base::Lineage),
    boundary: &Boundary<'_>,
    base: Option<&Output>,
    inputs: &Inputs<'_>,
    entries: &[SquashEntry; 2],
    reporting: &llb::Reporting<'_>,
) -> Result<Made, PlanError> {
    let (low_name, high_name) = (&entries[0].created_by, &entries[1].created_by);
    let diff_ok = inputs.caps.has("diffop") && inputs.caps.has("mergeop");
    let method = match inputs.method {
        Method::Diff if !diff_ok => {
            return Err(PlanError::NoDiff {
                reason: format!(
                    "{}; {}",
                    inputs.caps.why_not("diffop"),
                    inputs.caps.why_not("mergeop")
                ),
            })
        }
        Method::Auto if diff_ok => Method::Diff,
        Method::Auto => Method::Sync,
        m => m,
    };
    match (boundary, method) {
        (&Boundary::Stage { end, name }, Method::Diff) => {
            let at = lineage.states[end].clone();
            let lower_root = g.push(
                llb::mkdir_root(base),
                llb::meta_with_caps(Some(root_name(base)), &["file.base"]),
            );
            let lower = g.push(
                llb::diff(&lower_root, &at),
                llb::meta_with_caps(Some(low_name), &["diffop"]),
            );
            let lowered = match base {
                Some(base) => g.push(
                    llb::merge(&[base, &lower]),
                    llb::meta_with_caps(Some("squash: the layers together"), &["mergeop"]),
                ),
                None => lower.clone(),
            };
            let (head, states) = rebased(g, head, &lineage.states, end, &lowered)?;
            if !inputs.report {
                let changes = format!("squash: the changes after {name}");
                return Made::by_engine(g, (&lowered, &head), &changes, high_name, inputs);
            }
            let reporting = llb::Reporting {
                states: &states,
                ..reporting.clone()
            };
            let mut reporting = resumed_at(g, inputs, &reporting, end + 1, name)?;
            if reporting.resume.is_some() {
                reporting.changed = step_changes(g, &lowered, &states, end + 1, &reporting.request);
            }
            let reporting = &reporting;
            if let Some(ours) = Ours::find(g, inputs)? {
                // Our step's writable mount is the lower layer (on the base): its output is
                // then the image, the upper layer its own, and nothing runs after it.
                let synced = ours.sync(g, &head, Some(&lowered), &[], Some(reporting), high_name);
                return Ok(Made::by_step(synced, inputs));
            }
            let upper = upper_at(g, &head, &lowered, inputs, reporting, high_name)?;
            let parts: Vec<&Output> = base.into_iter().chain([&lower, &upper.layer]).collect();
            let layer = g.push(
                llb::merge(&parts),
                llb::meta_with_caps(Some("squash: the layers together"), &["mergeop"]),
            );
            Ok(Made {
                layer,
                report: upper.report,
                read_first: None,
            })
        }
        (&Boundary::Stage { end, name }, _) => {
            let ours = Ours::needed(g, inputs)?;
            let at = lineage.states[end].clone();
            let lowered = ours.sync(g, &at, base, &[], None, low_name);
            let (head, states) = rebased(g, head, &lineage.states, end, &lowered)?;
            let reporting = llb::Reporting {
                states: &states,
                ..reporting.clone()
            };
            let reporting = match inputs.report {
                true => Some(resumed_at(g, inputs, &reporting, end + 1, name)?),
                false => None,
            };
            let upper = ours.sync(g, &head, Some(&lowered), &[], reporting.as_ref(), high_name);
            Ok(Made::by_step(upper, inputs))
        }
        (Boundary::Paths(paths), _) => {
            let ours = Ours::needed(g, inputs)?;
            let copied = g.push(
                llb::copy_paths_onto_scratch(head, paths),
                llb::meta_with_caps(
                    Some(&format!("squash: copy {}", paths.join(", "))),
                    llb::COPY_PATHS_CAPS,
                ),
            );
            // Those paths onto the base, then the whole result onto that, with the report.
            let lowered = ours.sync(g, &copied, base, paths, None, low_name);
            let reporting = Some(reporting).filter(|_| inputs.report);
            let upper = ours.sync(g, head, Some(&lowered), &[], reporting, high_name);
            Ok(Made::by_step(upper, inputs))
        }
    }
}

/// The build's steps after the stage's end (the lineage's state `end`) rebased onto `lowered`,
/// the filesystem the split's lower layer makes (on the base): the later steps then run on
/// what that layer holds, so the upper layer is their changes to it. Without this, the lower
/// layer (cached while the stage's steps stay the same) and the later steps could each take
/// another of the stage's cached results, where BuildKit's cache has two for the same steps (a
/// stage that is not reproducible, built again with `--no-cache` or in another way): the image
/// would then hold the stage's files of one build below the later steps' changes made over
/// another's. Returns the new head and the lineage's states with the later ones replaced.
fn rebased(
    g: &mut Graph,
    head: &Output,
    states: &[Output],
    end: usize,
    lowered: &Output,
) -> Result<(Output, Vec<Output>), PlanError> {
    let moved = g.rebase(head, &states[end], lowered)?;
    let new = |o: &Output| Output {
        digest: moved.get(&o.digest).unwrap_or(&o.digest).clone(),
        index: o.index,
    };
    let states = states
        .iter()
        .enumerate()
        .map(|(k, s)| if k > end { new(s) } else { s.clone() })
        .collect();
    Ok((new(head), states))
}

/// The upper layer of a split at the state `at`, with DiffOp, where our own image is not known:
/// the diff from a no-op on `at` to the result, which BuildKit's differ computes by walking both
/// trees at export. (With our image, our `sync` step writes onto the lower layer instead, and
/// its output is the image: see `split_layers`.)
fn upper_at(
    g: &mut Graph,
    head: &Output,
    at: &Output,
    inputs: &Inputs<'_>,
    reporting: &llb::Reporting<'_>,
    name: &str,
) -> Result<Made, PlanError> {
    let (root, report) = new_root(g, head, Some(at), inputs, reporting)?;
    let layer = g.push(
        llb::diff(&root, head),
        llb::meta_with_caps(Some(name), &["diffop"]),
    );
    Ok(Made {
        layer,
        report,
        read_first: None,
    })
}

/// BuildKit's diff of each state from the `from`th on (counted from 0) from the one before it
/// (the `from`th's from `before`): what each of those steps changed. Mounted in our step, they
/// name every path that can differ from `before` (the directories above deletions included:
/// BuildKit makes them in a mounted diff, `snapshot/diffapply_linux.go`), so that it reads only
/// those (`llb::Reporting::changed`); a change to the app's steps then costs what the app
/// changed, not what the image holds.
fn step_changes(
    g: &mut Graph,
    before: &Output,
    states: &[Output],
    from: usize,
    request: &report::Request,
) -> Vec<Output> {
    let mut lower = before.clone();
    let mut diffs = Vec::new();
    for (k, upper) in states.iter().enumerate().skip(from) {
        let step = request.steps.get(k).map_or("a step", String::as_str);
        diffs.push(g.push(
            llb::diff(&lower, upper),
            llb::meta_with_caps(Some(&format!("squash: the changes of {step}")), &["diffop"]),
        ));
        lower = upper.clone();
    }
    diffs
}

/// The report of a split after the first `steps` steps (`lower` says what they hold): where
/// our own image is known, its accounting of those steps is made by a step of its own, which
/// the build cache keeps while they stay the same, and the report goes on from it, reading only
/// the later steps' filesystems (an app-only change then reads the app's steps alone).
fn resumed_at<'a>(
    g: &mut Graph,
    inputs: &Inputs<'_>,
    reporting: &llb::Reporting<'a>,
    steps: usize,
    lower: &str,
) -> Result<llb::Reporting<'a>, PlanError> {
    let mut reporting = reporting.clone();
    reporting.request.split = Some(report::SplitAt::Step(steps));
    let Some(ours) = Ours::find(g, inputs)? else {
        return Ok(reporting);
    };
    let mut first = reporting.clone();
    first.states = &reporting.states[..steps];
    first.request.steps.truncate(steps);
    let account = g.push(
        llb::account_exec(
            &ours.head,
            &ours.tool.exe,
            &first,
            ours.tool.platform.clone(),
        ),
        llb::meta_with_caps(
            Some(&format!("squash: report on {lower}")),
            llb::SYNC_EXEC_CAPS,
        ),
    );
    reporting.resume = Some((account, steps));
    Ok(reporting)
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
fn full_way<'a>(inputs: &Inputs<'a>) -> Result<FullWay<'a>, PlanError> {
    let has_diff = inputs.caps.has("diffop");
    match (inputs.method, inputs.tool) {
        (Method::Diff | Method::Auto, _) if has_diff => Ok(FullWay::Diff),
        (Method::Diff, _) => Err(PlanError::NoDiff {
            reason: inputs.caps.why_not("diffop"),
        }),
        (Method::Auto | Method::Sync, Some(tool)) => Ok(FullWay::Sync(tool)),
        (Method::Auto | Method::Sync, None) => Ok(FullWay::Copy),
    }
}

/// Base mode's method: `diff` needs DiffOp and MergeOp; `auto` takes them where the engine
/// has them, else `sync`.
fn base_method(inputs: &Inputs<'_>) -> Result<Method, PlanError> {
    let diff_ok = inputs.caps.has("diffop") && inputs.caps.has("mergeop");
    match inputs.method {
        Method::Diff if !diff_ok => Err(PlanError::NoDiff {
            reason: format!(
                "{}; {}",
                inputs.caps.why_not("diffop"),
                inputs.caps.why_not("mergeop")
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
        off: false,
    }
}

fn entry(summary: &str) -> SquashEntry {
    SquashEntry {
        created_by: summary.into(),
        comment: version::describe(),
        under: None,
    }
}

/// The progress line and history entry of a squash: what it did, and which frontend did it.
fn summary(what: &str) -> String {
    format!("squash: {what} (by {})", version::describe())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{caps, sample_definition, tool, BASE_CONFIG, CONFIG};
    use serde_json::{json, Value};

    fn config() -> Vec<u8> {
        CONFIG.to_vec()
    }

    fn base_config() -> Vec<u8> {
        BASE_CONFIG.to_vec()
    }

    /// A definition a test reads: a plain one, or a plan's (which must be ready).
    trait Read {
        fn get(&self) -> &pb::Definition;
    }

    impl Read for pb::Definition {
        fn get(&self) -> &pb::Definition {
            self
        }
    }

    impl Read for Def {
        fn get(&self) -> &pb::Definition {
            match self {
                Def::Ready(def) => def,
                Def::ReadFirst(_) => panic!("the plan reads first: no definition yet"),
            }
        }
    }

    fn ops(def: &impl Read) -> Vec<pb::Op> {
        def.get()
            .def
            .iter()
            .map(|b| pb::Op::decode(b.as_slice()).unwrap())
            .collect()
    }

    /// A readable dump of the ops we appended (the golden form of a plan).
    fn appended(def: &impl Read, received: usize) -> Vec<String> {
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
                // Our steps' own arguments, without the report's request.
                Some(pb::op::Op::Exec(e)) => e
                    .meta
                    .as_ref()
                    .unwrap()
                    .args
                    .iter()
                    .take_while(|a| *a != "--report" && *a != "--request")
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" "),
                Some(other) => format!("{other:?}"),
                None => "terminal".into(),
            })
            .collect()
    }

    /// [`env`] with method `auto`, without our image and without the report.
    fn env_report_off(mode: Mode, caps: &Caps) -> Inputs<'_> {
        Inputs {
            report: false,
            ..env(mode, Method::Auto, caps, None)
        }
    }

    fn env<'a>(mode: Mode, method: Method, caps: &'a Caps, tool: Option<&'a Tool>) -> Inputs<'a> {
        Inputs {
            mode,
            method,
            caps,
            tool,
            epoch: None,
            no_cache: false,
            min_saving: None,
            split: None,
            report: true,
        }
    }

    /// The summary line for `what`, with this frontend's version.
    fn summary_of(what: &str) -> String {
        format!("squash: {what} (by {})", version::describe())
    }

    /// One received image.
    fn received(def: &pb::Definition, config: Option<&[u8]>, base: Option<&[u8]>) -> Received {
        Received::decode(def, config, base).unwrap()
    }

    #[test]
    fn base_to_describe_is_the_pinned_root_image_when_no_base_config_came_back() {
        let (def, _) = sample_definition();
        let (cfg, bcfg) = (config(), base_config());
        let c = caps(true);
        let built = |base_config| received(&def, Some(&cfg[..]), base_config);
        let wanted = built(None)
            .base_to_describe(&env(Mode::Base, Method::Auto, &c, None))
            .expect("a base to describe");
        assert_eq!(
            wanted.reference,
            "docker.io/library/busybox:latest@sha256:aaaa"
        );
        assert_eq!(wanted.platform.as_ref().unwrap().architecture, "amd64");
        // Full mode asks too: it counts the base's layers.
        let full = built(None).base_to_describe(&env(Mode::Full, Method::Auto, &c, None));
        assert_eq!(full, Some(wanted));
        // Described already, or not squashing: nothing to ask.
        for (cfg, mode) in [
            (Some(&bcfg[..]), Mode::Base),
            (Some(&bcfg[..]), Mode::Full),
            (None, Mode::Off),
        ] {
            let got = built(cfg).base_to_describe(&env(mode, Method::Auto, &c, None));
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
            let built = received(&def, Some(&cfg[..]), None);
            let got = built.base_to_describe(&env(Mode::Base, Method::Auto, &c, None));
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
        let built = received(&def, Some(&cfg[..]), None);
        let Plan::Squash(Squash {
            def: out,
            config,
            keeps_base,
            summary,
            ..
        }) = plan(built.clone(), &env(Mode::Full, Method::Auto, &c, None)).unwrap()
        else {
            panic!("not squashed")
        };
        assert_eq!(appended(&out, 2), ["copy / -> /", "terminal"]);
        assert_eq!(summary, summary_of("2 layers -> 1"));
        assert!(!keeps_base);
        let v: Value = serde_json::from_slice(&config.unwrap()).unwrap();
        assert_eq!(v["history"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn full_squash_by_diff_where_the_engine_has_diffop() {
        let (def, _) = sample_definition();
        let cfg = config();
        let built = received(&def, Some(&cfg[..]), None);
        let appended_with = |has_diff: bool, method: Method| {
            let c = caps(has_diff);
            match plan(built.clone(), &env(Mode::Full, method, &c, None)) {
                Ok(Plan::Squash(Squash { def, .. })) => Ok(appended(&def, 2)),
                Ok(other) => panic!("not squashed: {other:?}"),
                Err(e) => Err(e),
            }
        };
        let by_diff = appended_with(true, Method::Auto).unwrap();
        assert_eq!(by_diff, ["mkdir /", "diff", "terminal"]);
        // The empty root is made on scratch (no input), not on the result.
        let c = caps(true);
        let Plan::Squash(Squash { def: out, .. }) =
            plan(built.clone(), &env(Mode::Full, Method::Diff, &c, None)).unwrap()
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
        let built = received(&def, Some(&cfg[..]), None);
        for (has_diff, method) in [
            (false, Method::Auto),
            (false, Method::Sync),
            (true, Method::Sync),
        ] {
            let c = caps(has_diff);
            let Plan::Squash(Squash {
                def: out,
                keeps_base,
                ..
            }) = plan(built.clone(), &env(Mode::Full, method, &c, Some(&t))).unwrap()
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
            // The tool, the result, then the report's filesystems (the base image's root and
            // the one step); the base mount starts empty (scratch).
            assert_eq!(op.inputs.len(), 4);
            let base = e.mounts.iter().find(|m| m.dest == llb::SYNC_BASE).unwrap();
            assert_eq!((base.input, base.output, base.readonly), (-1, 0, false));
            let report = e.mounts.iter().find(|m| m.dest == llb::REPORT_DIR).unwrap();
            assert_eq!(
                (report.input, report.output, report.readonly),
                (-1, 1, false)
            );
            for (dest, input) in [("/squash/states/base", 2), ("/squash/states/1", 3)] {
                let m = e.mounts.iter().find(|m| m.dest == dest).unwrap();
                assert_eq!((m.input, m.readonly, m.output), (input, true, -1), "{dest}");
                assert_eq!(m.content_cache, pb::MountContentCache::Off as i32);
            }
        }
        // With DiffOp and method auto, the diff wins over the sync; its empty lower side is
        // our inspect step's untouched empty mount.
        let c = caps(true);
        let Plan::Squash(Squash { def: out, .. }) =
            plan(built.clone(), &env(Mode::Full, Method::Auto, &c, Some(&t))).unwrap()
        else {
            panic!("not squashed")
        };
        assert_eq!(
            appended(&out, 2),
            [
                "/bin/squash-frontend inspect /squash/final",
                "diff",
                "terminal"
            ]
        );
        let all = ops(&out);
        let Some(pb::op::Op::Exec(e)) = &all[2].op else {
            panic!("not the inspect step")
        };
        assert_eq!(
            all[2].inputs.len(),
            4,
            "the tool, the result and the report's two filesystems"
        );
        let out_mount = e.mounts.iter().find(|m| m.output == 0).unwrap();
        assert_eq!((out_mount.input, out_mount.readonly), (-1, false));
        assert_eq!(
            all[3].inputs[0].digest,
            llb::digest_of(&out.get().def[2]),
            "the diff's lower side"
        );
    }

    #[test]
    fn without_the_report_base_mode_syncs_the_changes_and_full_mode_is_the_engines_diff() {
        let (def, digests) = sample_definition();
        let (cfg, bcfg) = (config(), base_config());
        let c = caps(true);
        let t = tool();
        let built = received(&def, Some(&cfg[..]), Some(&bcfg[..]));
        let mut inputs = env(Mode::Base, Method::Auto, &c, Some(&t));
        inputs.report = false;
        // With our image: our sync, reading only what the step changed, with no report.
        let Plan::Squash(synced) = plan(built.clone(), &inputs).unwrap() else {
            panic!("not squashed")
        };
        assert_eq!(synced.report, None);
        assert_eq!(
            appended(&synced.def, 2),
            [
                "diff",
                "/bin/squash-frontend sync /squash/final /squash/base --changed /squash/states/1.changed",
                "terminal"
            ]
        );
        let all = ops(&synced.def);
        let Some(pb::op::Op::Exec(sync)) = &all[all.len() - 2].op else {
            panic!("our sync")
        };
        assert!(!sync
            .meta
            .as_ref()
            .unwrap()
            .env
            .iter()
            .any(|v| v.starts_with(llb::REQUEST_ENV)));
        let changed = sync
            .mounts
            .iter()
            .find(|m| m.dest == "/squash/states/1.changed")
            .expect("the step's diff mounted");
        assert!(changed.readonly);
        assert_eq!(
            all[all.len() - 2].inputs[changed.input as usize].digest,
            llb::digest_of(&synced.def.get().def[2]),
            "the diff of the step"
        );
        // Without our image: the engine alone.
        let Plan::Squash(base) = plan(built.clone(), &env_report_off(Mode::Base, &c)).unwrap()
        else {
            panic!("not squashed")
        };
        assert_eq!(base.report, None);
        let Def::ReadFirst(r) = &base.def else {
            panic!("base mode reads first")
        };
        assert_eq!(appended(&r.diff, 2), ["diff", "terminal"]);
        let diff = &ops(&r.diff)[2];
        assert_eq!(
            diff.inputs.iter().map(|i| &i.digest).collect::<Vec<_>>(),
            [&digests[0], &digests[1]],
            "the base against the result"
        );
        // Full mode: the engine's diff from a no-op, not our inspect step.
        inputs.mode = Mode::Full;
        let Plan::Squash(full) = plan(built, &inputs).unwrap() else {
            panic!("not squashed")
        };
        assert_eq!(full.report, None);
        assert_eq!(appended(&full.def, 2), ["mkdir /", "diff", "terminal"]);
    }

    #[test]
    fn base_mode_diff_syncs_onto_the_base_reading_each_steps_changes() {
        let (def, digests) = sample_definition();
        let (cfg, bcfg) = (config(), base_config());
        let c = caps(true);
        let t = tool();
        let built = received(&def, Some(&cfg[..]), Some(&bcfg[..]));
        for method in [Method::Auto, Method::Diff] {
            let Plan::Squash(Squash {
                def: out, report, ..
            }) = plan(built.clone(), &env(Mode::Base, method, &c, Some(&t))).unwrap()
            else {
                panic!("not squashed")
            };
            assert!(report.is_some(), "{method:?}: the sync step's report");
            // The one step's diff from the base, then our sync of the result onto the base;
            // nothing after it: its output is the image.
            assert_eq!(
                appended(&out, 2),
                [
                    "diff",
                    "/bin/squash-frontend sync /squash/final /squash/base --changed /squash/states/1.changed",
                    "terminal"
                ],
                "{method:?}"
            );
            let all = ops(&out);
            let diff = &all[2];
            assert_eq!(
                diff.inputs[0].digest, digests[0],
                "the diff's lower side: the base"
            );
            assert_eq!(
                diff.inputs[1].digest, digests[1],
                "the diff's upper side: the step"
            );
            let sync = &all[3];
            let Some(pb::op::Op::Exec(e)) = &sync.op else {
                panic!("not our step")
            };
            let input_of = |dest: &str| {
                let m = e.mounts.iter().find(|m| m.dest == dest).unwrap();
                (
                    sync.inputs[m.input as usize].digest.clone(),
                    m.output,
                    m.readonly,
                )
            };
            assert_eq!(input_of(llb::SYNC_FINAL), (digests[1].clone(), -1, true));
            assert_eq!(input_of(llb::SYNC_BASE), (digests[0].clone(), 0, false));
            assert_eq!(
                input_of(&format!("{}/1.changed", llb::REPORT_STATES)).0,
                llb::digest_of(&out.get().def[2]),
                "the step's diff, where the sync and the report read"
            );
            let request = request_of(sync);
            assert!(request.changed && request.resume.is_none(), "{request:?}");
        }
    }

    #[test]
    fn base_mode_uses_diff_and_merge_where_the_engine_has_them() {
        let (def, digests) = sample_definition();
        let (cfg, bcfg) = (config(), base_config());
        let c = caps(true);
        let built = received(&def, Some(&cfg[..]), Some(&bcfg));
        let Plan::Squash(Squash {
            def: out,
            keeps_base,
            summary,
            ..
        }) = plan(built.clone(), &env(Mode::Base, Method::Auto, &c, None)).unwrap()
        else {
            panic!("not squashed")
        };
        assert!(keeps_base);
        assert_eq!(summary, summary_of("2 layers -> 1 base + 1"));
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
            let meta = pb::OpMetadata::decode(
                out.get().metadata[&llb::digest_of(&out.get().def[i])].as_slice(),
            )
            .unwrap();
            assert!(meta.caps[caps]);
        }
    }

    /// Our step that accounts for the steps below a split, in [`appended`]'s form.
    const ACCOUNT: &str = "/bin/squash-frontend account /squash/report/accounting";

    /// The report request of one of our steps.
    fn request_of(op: &pb::Op) -> report::Request {
        let Some(pb::op::Op::Exec(e)) = &op.op else {
            panic!("not our step: {op:?}")
        };
        let env = &e.meta.as_ref().unwrap().env;
        let json = env
            .iter()
            .find_map(|v| v.strip_prefix(&format!("{}=", llb::REQUEST_ENV)))
            .expect("the request in the environment");
        serde_json::from_str(json).unwrap()
    }

    /// Plans the staged build with `split`, in `mode`, with or without DiffOp.
    fn split_plan(split: &str, mode: Mode, has_diff: bool) -> Result<Squash, PlanError> {
        split_plan_with(split, mode, has_diff, true)
    }

    /// [`split_plan`], with or without the report.
    fn split_plan_with(
        split: &str,
        mode: Mode,
        has_diff: bool,
        report: bool,
    ) -> Result<Squash, PlanError> {
        let (def, _) = crate::testkit::staged_definition();
        // A base of one layer, and the three steps' layers above it.
        let cfg = crate::testkit::config_with_layers(3);
        let bcfg = crate::testkit::base_config_with_layers(1);
        let c = caps(has_diff);
        let t = tool();
        let built = received(&def, Some(&cfg[..]), Some(&bcfg[..]));
        let split = match split.strip_prefix('/') {
            Some(_) => Split::Paths(split.split(',').map(str::to_string).collect()),
            None => Split::Stage(split.into()),
        };
        let mut inputs = env(mode, Method::Auto, &c, Some(&t));
        inputs.report = report;
        inputs.split = Some(Given {
            value: split,
            name: "option squash-split".into(),
            origin: crate::request::Origin::Option,
        });
        match plan(built, &inputs)? {
            Plan::Squash(s) => Ok(s),
            other => panic!("not squashed: {other:?}"),
        }
    }

    /// The ops a split plan added to the staged definition (its 4 received ops), without our
    /// own image's (the sample definition's, which the plan adds where it first needs them),
    /// each with its digest.
    fn split_added(def: &impl Read) -> Vec<(String, pb::Op)> {
        let (_, tool_ops) = sample_definition();
        def.get().def[4..]
            .iter()
            .map(|b| (llb::digest_of(b), pb::Op::decode(b.as_slice()).unwrap()))
            .filter(|(d, _)| !tool_ops.contains(d))
            .collect()
    }

    /// [`split_added`] in the golden form of [`appended`].
    fn split_appended(def: &impl Read) -> Vec<String> {
        let added: Vec<Vec<u8>> = split_added(def)
            .into_iter()
            .map(|(_, op)| op.encode_to_vec())
            .collect();
        appended(
            &pb::Definition {
                def: added,
                ..Default::default()
            },
            0,
        )
    }

    #[test]
    fn a_split_at_a_stage_without_the_report_is_made_by_the_engine_alone() {
        let (_, digests) = crate::testkit::staged_definition();
        for mode in [Mode::Base, Mode::Full] {
            let s = split_plan_with("deps", mode, true, false).unwrap();
            assert_eq!(s.report, None, "{mode:?}");
            let Def::ReadFirst(r) = &s.def else {
                panic!("{mode:?}: the plan reads first")
            };
            // No step of ours: the lower layer, the later step on it, and the diff to read.
            let mut expected = vec!["mkdir /", "diff"];
            if mode == Mode::Base {
                expected.push("merge 2");
            }
            expected.extend(["/bin/sh -c the app", "diff", "terminal"]);
            assert_eq!(split_appended(&r.diff), expected, "{mode:?}");
            let added = split_added(&r.diff);
            let lowered_d = &added[expected.len() - 4].0;
            let (app_d, app) = &added[expected.len() - 3];
            let (diff_d, diff) = &added[expected.len() - 2];
            assert_eq!(
                &app.inputs[0].digest, lowered_d,
                "the app runs on the lower layer"
            );
            assert_eq!(
                diff.inputs.iter().map(|i| &i.digest).collect::<Vec<_>>(),
                [lowered_d, app_d],
                "{mode:?}: the diff of the later steps"
            );
            let terminal = |def: &pb::Definition| ops(def).last().unwrap().inputs[0].digest.clone();
            assert_eq!(&terminal(&r.lower), lowered_d);
            assert_eq!(&terminal(&r.head), app_d);
            assert!(!digests.contains(app_d), "the app step is the rebased one");
            // Once read: the removals, then the copy of the diff, on the lower layer.
            let done = r
                .finish(&upper::Changes {
                    removals: vec!["/etc/gone".into()],
                })
                .unwrap();
            let all = ops(&done);
            let layer = &all[all.len() - 2];
            assert_eq!(
                layer.inputs.iter().map(|i| &i.digest).collect::<Vec<_>>(),
                [lowered_d, diff_d]
            );
            let Some(pb::op::Op::File(file)) = &layer.op else {
                panic!("a FileOp")
            };
            assert!(matches!(
                &file.actions[0].action,
                Some(pb::file_action::Action::Rm(rm)) if rm.path == "/etc/gone"
            ));
            assert!(matches!(
                &file.actions[1].action,
                Some(pb::file_action::Action::Copy(c)) if c.src == "/" && c.dest == "/"
            ));
            let meta = pb::OpMetadata::decode(
                done.metadata[&llb::digest_of(&done.def[done.def.len() - 2])].as_slice(),
            )
            .unwrap();
            assert_eq!(
                meta.description["llb.customname"],
                summary("the steps after stage deps -> 1 layer")
            );
        }
    }

    #[test]
    fn without_the_report_no_step_of_ours_makes_one() {
        // Without DiffOp the syncs still run, with no report; by paths too.
        let s = split_plan_with("deps", Mode::Base, false, false).unwrap();
        assert_eq!(s.report, None);
        let appended = split_appended(&s.def);
        assert_eq!(appended.len(), 4, "{appended:?}");
        assert!(appended[..3]
            .iter()
            .all(|a| a.starts_with("/bin/squash-frontend sync") || a.starts_with("/bin/sh")));
        let by_paths = split_plan_with("/usr", Mode::Base, true, false).unwrap();
        assert_eq!(by_paths.report, None);
        for op in split_added(&by_paths.def) {
            if let (
                _,
                pb::Op {
                    op: Some(pb::op::Op::Exec(e)),
                    ..
                },
            ) = op
            {
                assert!(!e
                    .meta
                    .unwrap()
                    .env
                    .iter()
                    .any(|v| v.starts_with(llb::REQUEST_ENV)));
            }
        }
    }

    #[test]
    fn a_split_at_a_stage_by_diff_merges_the_base_and_two_diffs() {
        let (_, digests) = crate::testkit::staged_definition();
        let s = split_plan("deps", Mode::Base, true).unwrap();
        assert_eq!(
            split_appended(&s.def),
            [
                "mkdir /",
                "diff",
                "merge 2",
                "/bin/sh -c the app",
                ACCOUNT,
                "diff",
                "/bin/squash-frontend sync /squash/final /squash/base --changed /squash/states/3.changed",
                "terminal"
            ]
        );
        let added = split_added(&s.def);
        let [(_, mkdir), (lower_d, lower), (merge_d, merge), (app_d, app), (account_d, account), (changes_d, changes), (_, sync), _] =
            &added[..]
        else {
            unreachable!()
        };
        // The report: the base and the stage's two steps read by a step of their own (kept
        // by the build cache while they stay the same); the upper sync reads the last step's
        // filesystem and goes on from there.
        let mounted = |op: &pb::Op| -> Vec<String> {
            op.inputs[1..].iter().map(|i| i.digest.clone()).collect()
        };
        assert_eq!(mounted(account), &digests[..3]);
        assert_eq!(
            request_of(account).steps.len(),
            2,
            "the stage's steps alone"
        );
        assert_eq!(request_of(account).split, Some(report::SplitAt::Step(2)));
        let resumed = request_of(sync);
        assert_eq!(resumed.steps.len(), 3, "every step's name");
        assert_eq!(
            resumed.resume,
            Some(report::Resume {
                file: "/squash/states/resume/accounting".into(),
                steps: 2
            })
        );
        assert_eq!(
            mounted(sync)[2..],
            [app_d.clone(), account_d.clone(), changes_d.clone()],
            "after the result and the stage's end: the last step, the saved accounting and \
             what the last step changed"
        );
        assert!(
            resumed.changed,
            "the sync's report reads only what the diff holds"
        );
        assert_eq!(
            mkdir.inputs[0].digest, digests[0],
            "the no-op sits on the base"
        );
        // The lower layer: the base (+ no-op) against the stage's last step.
        assert_eq!(lower.inputs[1].digest, digests[2]);
        let merged: Vec<&str> = merge.inputs.iter().map(|i| i.digest.as_str()).collect();
        assert_eq!(merged, [digests[0].as_str(), lower_d], "the base first");
        // The step after the stage runs on the base and the lower layer, not on the stage's
        // end: on what the lower layer holds, whichever of the stage's cached results it came
        // from. The same command, under its own name.
        assert_eq!(
            app.inputs,
            [pb::Input {
                digest: merge_d.clone(),
                index: 0
            }]
        );
        let mut planned = Graph::default();
        planned.add_definition(s.def.get()).unwrap();
        assert_eq!(app.op, planned.op(&digests[3]).unwrap().op);
        assert_eq!(
            planned.name(app_d).as_deref(),
            Some("[stage-1 2/2] RUN make install")
        );
        // What that step changed: its filesystem against the one it ran on.
        let diffed: Vec<&str> = changes.inputs.iter().map(|i| i.digest.as_str()).collect();
        assert_eq!(diffed, [merge_d.as_str(), app_d.as_str()]);
        // The image: our sync of the result onto the base and the lower layer, whose own layer
        // is the upper one.
        assert_eq!(sync.inputs[1].digest, *app_d, "the result, read-only");
        assert_eq!(
            sync.inputs[2].digest, *merge_d,
            "the base and the lower layer, its output"
        );
        assert!(s.keeps_base && s.report.is_some());
        assert_eq!(
            s.summary,
            summary_of("4 layers -> 1 base + 2, stage deps apart")
        );
        let v: Value = serde_json::from_slice(&s.config.unwrap()).unwrap();
        let history = v["history"].as_array().unwrap();
        let entries: Vec<(&str, bool)> = history
            .iter()
            .map(|h| (h["created_by"].as_str().unwrap(), h["empty_layer"] == true))
            .collect();
        let (low, high) = (
            summary_of("stage deps -> 1 layer"),
            summary_of("the steps after stage deps -> 1 layer"),
        );
        // The lower layer's entry after the stage's last step's, the upper one's at the end:
        // `docker history` reads as the build went.
        assert_eq!(
            entries,
            [
                (config::BASE_LAYER_WITHOUT_HISTORY, false),
                ("ENV A=b", true),
                ("RUN step 0", true),
                ("RUN step 1", true),
                (low.as_str(), false),
                ("RUN step 2", true),
                (high.as_str(), false),
            ]
        );
    }

    #[test]
    fn a_split_at_a_stage_in_full_mode_starts_from_scratch() {
        let s = split_plan("deps", Mode::Full, true).unwrap();
        assert_eq!(
            split_appended(&s.def),
            [
                "mkdir /",
                "diff",
                "/bin/sh -c the app",
                ACCOUNT,
                "diff",
                "/bin/squash-frontend sync /squash/final /squash/base --changed /squash/states/3.changed",
                "terminal"
            ]
        );
        let added = split_added(&s.def);
        assert!(
            added[0].1.inputs.is_empty(),
            "the lower layer's empty side is scratch"
        );
        assert_eq!(
            added[2].1.inputs[0].digest, added[1].0,
            "the step after the stage runs on the lower layer alone"
        );
        assert_eq!(
            added[5].1.inputs[2].digest, added[1].0,
            "the sync writes onto the lower layer alone"
        );
        assert!(!s.keeps_base);
        assert_eq!(s.summary, summary_of("4 layers -> 2, stage deps apart"));
        // Every earlier entry is empty; the lower layer's follows the stage's last step's.
        let v: Value = serde_json::from_slice(&s.config.unwrap()).unwrap();
        let order: Vec<(&str, bool)> = v["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["created_by"].as_str().unwrap_or(""),
                    h["empty_layer"] == true,
                )
            })
            .collect();
        let (low, high) = (
            summary_of("stage deps -> 1 layer"),
            summary_of("the steps after stage deps -> 1 layer"),
        );
        assert_eq!(
            order[order.len() - 4..],
            [
                ("RUN step 1", true),
                (low.as_str(), false),
                ("RUN step 2", true),
                (high.as_str(), false),
            ],
            "{order:?}"
        );
        assert_eq!(order.iter().filter(|(_, empty)| !empty).count(), 2);
    }

    #[test]
    fn a_split_at_a_stage_by_sync_syncs_twice() {
        let (_, digests) = crate::testkit::staged_definition();
        let s = split_plan("deps", Mode::Base, false).unwrap();
        assert_eq!(
            split_appended(&s.def),
            [
                "/bin/squash-frontend sync /squash/final /squash/base",
                "/bin/sh -c the app",
                ACCOUNT,
                "/bin/squash-frontend sync /squash/final /squash/base",
                "terminal"
            ]
        );
        let added = split_added(&s.def);
        let [(lower_d, lower), (app_d, app), (account_d, _), (_, upper), _] = &added[..] else {
            unreachable!()
        };
        // The step after the stage runs on the lower step's output.
        assert_eq!(
            app.inputs,
            [pb::Input {
                digest: lower_d.clone(),
                index: 0
            }]
        );
        assert_eq!(
            upper.inputs.last().map(|i| &i.digest),
            Some(account_d),
            "the report goes on from the stage's accounting"
        );
        // The writable mounts are keyed by their definitions: the lower step's output holds
        // the stage's content, and a key by content would answer the upper step from the
        // cache of a sync onto the stage's end itself (the other method), on its layers.
        for op in [lower, upper] {
            let Some(pb::op::Op::Exec(e)) = &op.op else {
                unreachable!()
            };
            let onto = e.mounts.iter().find(|m| m.dest == llb::SYNC_BASE).unwrap();
            assert_eq!(
                (onto.readonly, onto.content_cache),
                (false, pb::MountContentCache::Off as i32)
            );
        }
        // The stage's end onto the base, with no report; the result onto that, with one.
        assert_eq!(
            (
                lower.inputs[1].digest.as_str(),
                lower.inputs[2].digest.as_str()
            ),
            (digests[2].as_str(), digests[0].as_str())
        );
        assert_eq!(lower.inputs.len(), 3, "no report's filesystems");
        assert_eq!(upper.inputs[1].digest, *app_d);
        assert_eq!(upper.inputs[2].digest, *lower_d);
        assert!(upper.inputs.len() > 3, "the report's filesystems");
        assert!(s.report.is_some());
    }

    #[test]
    fn a_split_at_paths_copies_them_then_syncs_twice() {
        let (_, digests) = crate::testkit::staged_definition();
        for has_diff in [true, false] {
            let s = split_plan("/usr,/var/lib/dpkg", Mode::Base, has_diff).unwrap();
            assert_eq!(
                split_appended(&s.def),
                [
                    "copy / -> /",
                    "/bin/squash-frontend sync /squash/final /squash/base --only /usr,/var/lib/dpkg",
                    "/bin/squash-frontend sync /squash/final /squash/base",
                    "terminal"
                ]
            );
            let added = split_added(&s.def);
            let [(copy_d, copy), (lower_d, lower), (_, upper), _] = &added[..] else {
                unreachable!()
            };
            let Some(pb::op::Op::File(f)) = &copy.op else {
                unreachable!()
            };
            let Some(pb::file_action::Action::Copy(c)) = &f.actions[0].action else {
                unreachable!()
            };
            assert_eq!(c.include_patterns, ["usr", "var/lib/dpkg"]);
            assert_eq!(copy.inputs[0].digest, digests[3], "copied from the result");
            assert_eq!(lower.inputs[1].digest, *copy_d, "the copy, synced");
            assert_eq!(lower.inputs[2].digest, digests[0], "onto the base");
            assert_eq!(upper.inputs[1].digest, digests[3], "then the whole result");
            assert_eq!(upper.inputs[2].digest, *lower_d);
        }
    }

    #[test]
    fn a_split_names_the_stages_it_could_use_and_where_it_was_given() {
        let valid = "the stages it is built on (deps), or absolute paths such as /usr,/etc";
        let e = split_plan("build", Mode::Base, true).unwrap_err();
        assert_eq!(
            e,
            PlanError::SplitStage {
                from: "option squash-split".into(),
                line: None,
                stage: "build".into(),
                valid: valid.into(),
            }
        );
        assert_eq!(
            e.to_string(),
            format!("option squash-split names the stage build, which has no step in the build of the target stage: it is not a stage the target stage starts FROM (directly or through other stages), or it runs no step that changes files; valid values are {valid}")
        );
        // The target stage itself is no choice: nothing would be left for the upper layer.
        let e = split_plan("stage-1", Mode::Full, false).unwrap_err();
        assert_eq!(
            e,
            PlanError::SplitNothingAfter {
                from: "option squash-split".into(),
                line: None,
                stage: "stage-1".into(),
                valid: valid.into(),
            }
        );
        // Where the setting came from, as the flow passes it on.
        let (def, _) = crate::testkit::staged_definition();
        let cfg = crate::testkit::config_with_layers(3);
        let bcfg = crate::testkit::base_config_with_layers(1);
        let (c, t) = (caps(true), tool());
        let mut inputs = env(Mode::Base, Method::Auto, &c, Some(&t));
        inputs.split = Some(Given {
            value: Split::Stage("nope".into()),
            name: "build argument SQUASH_SPLIT".into(),
            origin: crate::request::Origin::BuildArg,
        });
        let e = plan(received(&def, Some(&cfg[..]), Some(&bcfg[..])), &inputs).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("build argument SQUASH_SPLIT names the stage nope, which"),
            "{e}"
        );
        assert_eq!(e.dockerfile_line(), None);
        // From a directive: its line too, for the flow to place the error there.
        inputs.split = Some(Given {
            value: Split::Stage("nope".into()),
            name: "directive # squash-split=".into(),
            origin: crate::request::Origin::Directive { line: 3 },
        });
        let e = plan(received(&def, Some(&cfg[..]), Some(&bcfg[..])), &inputs).unwrap_err();
        assert_eq!(e.dockerfile_line(), Some(3), "{e}");
        assert!(
            e.to_string().starts_with(
                "directive # squash-split= (from Dockerfile line 3) names the stage nope, which"
            ),
            "{e}"
        );
    }

    #[test]
    fn stage_names_are_read_from_progress_names() {
        for (name, stage) in [
            ("[deps 2/3] RUN x", Some("deps")),
            ("[build  3/12] COPY . .", Some("build")),
            ("[linux/arm64 deps 1/2] FROM x", Some("deps")),
            ("[linux/amd64->arm64 stage-1 2/2] RUN y", Some("stage-1")),
            ("[1/3] RUN z", None),
            ("[linux/amd64 1/3] RUN z", None),
            ("[internal] load build context", None),
            ("RUN x", None),
        ] {
            assert_eq!(stage_of(name), stage, "{name}");
        }
    }

    #[test]
    fn base_mode_falls_back_to_sync_without_diff() {
        let (def, digests) = sample_definition();
        let (cfg, bcfg) = (config(), base_config());
        let c = caps(false);
        let t = tool();
        let built = received(&def, Some(&cfg[..]), Some(&bcfg));
        let Plan::Squash(Squash { def: out, .. }) =
            plan(built.clone(), &env(Mode::Base, Method::Auto, &c, Some(&t))).unwrap()
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
        let built = received(&def, Some(&cfg[..]), Some(&bcfg));
        let e = plan(built.clone(), &env(Mode::Base, Method::Diff, &c, None)).unwrap_err();
        assert!(
            e.to_string()
                .contains("only enabled with containerd image store"),
            "{e}"
        );
        let e = plan(built.clone(), &env(Mode::Base, Method::Sync, &c, None)).unwrap_err();
        assert_eq!(e, PlanError::NoTool);
    }

    #[test]
    fn nothing_to_squash_is_left_alone() {
        let c = caps(true);
        let empty = pb::Definition::default();
        let built = received(&empty, None, None);
        assert!(matches!(
            plan(built.clone(), &env(Mode::Full, Method::Auto, &c, None)),
            Ok(Plan::Unchanged { .. })
        ));
        let (def, _) = sample_definition();
        let one = serde_json::to_vec(&json!({"history": [{"created_by": "x"}]})).unwrap();
        let built = received(&def, Some(&one), None);
        assert!(matches!(
            plan(built.clone(), &env(Mode::Full, Method::Auto, &c, None)),
            Ok(Plan::Unchanged { .. })
        ));
        let built = received(&def, None, None);
        assert!(matches!(
            plan(built.clone(), &env(Mode::Off, Method::Auto, &c, None)),
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
        let built = received(&scratch_def, Some(&cfg[..]), None);
        let Plan::Squash(Squash {
            keeps_base,
            summary,
            ..
        }) = plan(built.clone(), &env(Mode::Base, Method::Auto, &c, None)).unwrap()
        else {
            panic!()
        };
        assert!(!keeps_base);
        assert_eq!(
            summary,
            summary_of("2 layers -> 1, no base kept: the target stage starts from scratch or from an image without layers")
        );
    }

    #[test]
    fn epoch_sets_created() {
        let (def, _) = sample_definition();
        let cfg = config();
        let c = caps(true);
        let mut e = env(Mode::Full, Method::Auto, &c, None);
        e.epoch = Some(1_700_000_000);
        let built = received(&def, Some(&cfg[..]), None);
        let Plan::Squash(Squash { config, .. }) = plan(built.clone(), &e).unwrap() else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&config.unwrap()).unwrap();
        assert_eq!(v["created"], "2023-11-14T22:13:20Z");
        assert_eq!(v["history"][2]["created"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn layers_are_counted_from_the_base_layers_not_its_history() {
        let (def, _) = sample_definition();
        // A 2-layer base with no history (as some image tools write them), two RUN steps.
        let base = serde_json::to_vec(&json!({
            "rootfs": {"type": "layers", "diff_ids": ["sha256:b0", "sha256:b1"]}
        }))
        .unwrap();
        let cfg = serde_json::to_vec(&json!({
            "os": "linux", "architecture": "amd64",
            "history": [{"created_by": "RUN a"}, {"created_by": "RUN b"}]
        }))
        .unwrap();
        let c = caps(true);
        let built = received(&def, Some(&cfg[..]), Some(&base[..]));
        let Plan::Squash(Squash {
            summary,
            config,
            keeps_base,
            ..
        }) = plan(built.clone(), &env(Mode::Base, Method::Auto, &c, None)).unwrap()
        else {
            panic!("a history-less base must not stop the squash")
        };
        assert!(keeps_base);
        assert_eq!(summary, summary_of("4 layers -> 2 base + 1"));
        let v: Value = serde_json::from_slice(&config.unwrap()).unwrap();
        let non_empty = v["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["empty_layer"] != json!(true))
            .count();
        assert_eq!(non_empty, 3, "one entry per layer: {}", v["history"]);
        let Plan::Squash(Squash { summary, .. }) =
            plan(built, &env(Mode::Full, Method::Auto, &c, None)).unwrap()
        else {
            panic!()
        };
        assert_eq!(summary, summary_of("4 layers -> 1"));
    }

    #[test]
    fn base_mode_leaves_an_image_with_nothing_above_its_base() {
        let (def, _) = sample_definition();
        let cfg = serde_json::to_vec(&json!({
            "os": "linux", "architecture": "amd64",
            "history": [{"created_by": "base"}, {"created_by": "ENV a=b", "empty_layer": true}]
        }))
        .unwrap();
        let bcfg = base_config();
        let c = caps(true);
        let got = plan(
            received(&def, Some(&cfg[..]), Some(&bcfg[..])),
            &env(Mode::Base, Method::Auto, &c, None),
        )
        .unwrap();
        assert!(matches!(got, Plan::Unchanged { .. }), "{got:?}");
    }

    #[test]
    fn our_image_is_used_as_a_regular_image() {
        // As BuildKit hands it over: the source carries the frontend record type.
        let mut g = Graph::default();
        let mut src =
            crate::testkit::image_source("docker-image://docker.io/library/squash:1@sha256:ab");
        if let Some(pb::op::Op::Source(s)) = &mut src.op {
            s.attrs.insert("image.recordtype".into(), "frontend".into());
        }
        let src = g.push(src, llb::meta_with_caps(Some("ours"), &["source.image"]));
        let def = g.finish(&src).unwrap();
        let tool = Tool::new(Some(&def.encode_to_vec()), "/bin/x", &[]).unwrap();
        let source = pb::Op::decode(tool.def.def[0].as_slice()).unwrap();
        let Some(pb::op::Op::Source(s)) = source.op else {
            panic!()
        };
        assert!(s.attrs.is_empty(), "{:?}", s.attrs);
        let digest = llb::digest_of(&tool.def.def[0]);
        assert!(tool.def.metadata.contains_key(&digest), "metadata moved");
        // Named for what it is there, its caps kept.
        let meta = pb::OpMetadata::decode(tool.def.metadata[&digest].as_slice()).unwrap();
        assert_eq!(meta.description["llb.customname"], OWN_IMAGE_NAME);
        assert!(meta.caps.contains_key("source.image"), "{:?}", meta.caps);
        // The terminal points at the new source; the whole takes a graph.
        let terminal = pb::Op::decode(tool.def.def[1].as_slice()).unwrap();
        assert_eq!(terminal.inputs[0].digest, digest);
        assert!(Graph::default()
            .add_definition(&tool.def)
            .unwrap()
            .is_some());
        assert_eq!(tool.platform.os, "linux");
    }
}
