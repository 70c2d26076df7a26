//! The build flow over the gateway: read the request, delegate the Dockerfile build, squash
//! each image, and `Return` exactly once, with the result or with the error.

use std::collections::BTreeMap;

use squash_proto::{gateway, pb, rpc};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config;
use crate::directives::{self, DirectiveError, Directives};
use crate::gateway::{error_status, Gateway, GatewayError};
use crate::llb::{self, LlbError};
use crate::plan::{self, Caps, Def, Inputs, Plan, PlanError, Received, Tool};
use crate::report;
use crate::request::{
    Given, Mode, OptionError, Opts, Request, Start, DOCKERFILE_SOURCE, NESTED, SETTINGS,
};
use crate::result::{self, ResultError, Squashed};
use crate::scan;
use crate::upper::{self, Lister, Tree, WalkError};

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An error of the build itself (a failing RUN, a Dockerfile that does not parse): passed
    /// on unchanged, so the user sees exactly what they would see without squash-frontend.
    #[error("{}", .0.message)]
    Upstream(rpc::Status),
    /// The upstream frontend image failed (to resolve, or to build): its status, with our
    /// words on which image and where it was set, and the Dockerfile line of the directive
    /// that set it, if one did.
    #[error("{}", .status.message)]
    UpstreamImage {
        /// What BuildKit answered, the message rewritten, the details kept.
        status: rpc::Status,
        /// The line of the `# squash-upstream=` directive.
        line: Option<usize>,
    },
    /// Our own squash step failed (e.g. the in-build sync): said to be ours, details kept.
    #[error("{}", squash_failed(&.0.message))]
    Squash(rpc::Status),
    /// The build made a name no layer can hold, found where no step of ours runs
    /// ([`upper::read_changes`]).
    #[error("{0}")]
    Unrepresentable(String),
    /// Our own squash solve gave something other than one ref.
    #[error("the engine answered the squash step with no single result ref")]
    UnexpectedResult,
    /// A gateway call of our own failed.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// A setting is invalid.
    #[error(transparent)]
    Option(#[from] OptionError),
    /// A directive is invalid or misplaced.
    #[error(transparent)]
    Directive(#[from] DirectiveError),
    /// The squash cannot be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Our step's report does not read.
    #[error("the squash step's report does not read: {0}")]
    Report(String),
    /// A graph of our own could not be made.
    #[error("could not hand the Dockerfile frontend the Dockerfile: {0}")]
    Llb(#[from] LlbError),
    /// The Dockerfile frontend's result cannot be squashed.
    #[error(transparent)]
    Result(#[from] ResultError),
    /// The engine lacks a gateway capability we need.
    #[error("this engine lacks the gateway capability {0}, which squash-frontend needs (BuildKit 0.13 / Docker 26 or newer)")]
    Cap(String),
    /// The Dockerfile could not be read for directives.
    #[error("could not read the Dockerfile {path} for # squash= directives: {}", .status.message)]
    Dockerfile {
        /// The Dockerfile's path in its source.
        path: String,
        /// What BuildKit answered (details carry source locations).
        status: rpc::Status,
    },
}

/// What the failure of one of our in-build steps means. Its refusal of a name no layer can
/// hold ([`scan::EXIT_UNREPRESENTABLE`]) is said in words, without BuildKit's account of the
/// process (our binary's arguments, the report request's JSON among them), which says nothing
/// to the user; anything else keeps that account.
fn squash_failed(message: &str) -> String {
    if message.ends_with(&format!("exit code: {}", scan::EXIT_UNREPRESENTABLE)) {
        "the build made a file no image layer can hold: its name starts with .wh., which image layers reserve for whiteouts (the squash step's output above names it; rename it)".into()
    } else {
        format!("the squash step failed: {message}")
    }
}

impl BuildError {
    /// The status to send in `Return`: an upstream error as it came; ours prefixed with our
    /// name, with the details BuildKit gave (they carry source locations).
    pub fn to_status(&self) -> rpc::Status {
        let ours = |status: &rpc::Status| rpc::Status {
            message: format!("squash-frontend: {self}"),
            ..status.clone()
        };
        match self {
            BuildError::Upstream(status) | BuildError::UpstreamImage { status, .. } => {
                status.clone()
            }
            BuildError::Squash(status) | BuildError::Dockerfile { status, .. } => ours(status),
            other => error_status(format!("squash-frontend: {other}")),
        }
    }

    /// The 1-based Dockerfile line the error is about, where it is about one: a directive of
    /// ours, or a setting a directive gave.
    pub fn dockerfile_line(&self) -> Option<usize> {
        match self {
            BuildError::Directive(e) => Some(e.line()),
            BuildError::Option(e) => e.dockerfile_line(),
            BuildError::Plan(e) => e.dockerfile_line(),
            BuildError::UpstreamImage { line, .. } => *line,
            _ => None,
        }
    }
}

/// The type URL of BuildKit's error detail that places an error in a source file:
/// `errdefs.Source` (`solver/errdefs/errdefs.proto`: the file in `info`, lines in `ranges`),
/// registered with typeurl under this name and sent as JSON (`solver/errdefs/vertex.go`,
/// `util/grpcerrors/grpcerrors.go`; BuildKit 0.13 to 0.25). The Dockerfile frontend places an
/// error of the frontend it forwarded a `# syntax=` build to at the `# syntax=` line, unless
/// the error carries a place of its own (`frontend/dockerfile/builder/build.go`); buildx then
/// prints the lines around that place.
pub const SOURCE_DETAIL: &str = "github.com/moby/buildkit/errdefs.Source+json";

/// `status`, placed at the 1-based `line` of the Dockerfile `path` whose bytes are `text`
/// (unless it carries a place already), so that buildx shows that line, not the `# syntax=`
/// one.
pub fn place(mut status: rpc::Status, path: &str, text: &[u8], line: usize) -> rpc::Status {
    use base64::Engine as _;
    if status.details.iter().any(|d| d.type_url == SOURCE_DETAIL) {
        return status;
    }
    let source = serde_json::json!({
        "info": {
            "filename": path,
            // Go's encoding/json writes and reads `[]byte` as standard base64.
            "data": base64::engine::general_purpose::STANDARD.encode(text),
            "language": "Dockerfile",
        },
        "ranges": [{ "start": { "line": line }, "end": { "line": line } }],
    });
    status.details.push(prost_types::Any {
        type_url: SOURCE_DETAIL.into(),
        value: source.to_string().into_bytes(),
    });
    status
}

/// Runs one build over `io` and returns the process exit code.
pub async fn run<IO>(io: IO, start: Start) -> i32
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut gw = match Gateway::connect(io).await {
        Ok(gw) => gw,
        Err(e) => {
            eprintln!("squash-frontend: {e}");
            return 1;
        }
    };
    let mut read = None;
    let request = match build(&mut gw, &start, &mut read).await {
        Ok(result) => gateway::ReturnRequest {
            result: Some(result),
            error: None,
        },
        Err(e) => {
            eprintln!("squash-frontend: {e}");
            let status = match (e.dockerfile_line(), &read) {
                (Some(line), Some(d)) => place(e.to_status(), &d.path, &d.text, line),
                _ => e.to_status(),
            };
            gateway::ReturnRequest {
                result: None,
                error: Some(status),
            }
        }
    };
    match gw.finish(request).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("squash-frontend: {e}");
            1
        }
    }
}

/// The gateway capabilities the flow uses.
const NEEDED: [&str; 4] = ["solve.base", "return", "proto.refarray", "reference.output"];

/// The whole build: ping, read the request, delegate, squash every image, assemble. The
/// Dockerfile is read into `read`, where an error can point into it.
async fn build(
    gw: &mut Gateway,
    start: &Start,
    read: &mut Option<Dockerfile>,
) -> Result<gateway::Result, BuildError> {
    let pong = gw.ping().await?;
    let has = |id: &str| {
        pong.frontend_api_caps
            .iter()
            .any(|c| c.id == id && c.enabled)
    };
    if let Some(missing) = NEEDED.into_iter().find(|cap| !has(cap)) {
        return Err(BuildError::Cap(missing.into()));
    }
    let frontend_inputs = if has("frontend.inputs") {
        gw.inputs().await?
    } else {
        BTreeMap::new()
    };
    let request = Request::new(&start.opts, &start.session_id);

    // Information requests (--print / --call) are the Dockerfile frontend's to answer, and a
    // build handed to us by a squash frontend as its upstream is passed through as is.
    if request.passthrough {
        return delegate(gw, request.forwarded(false), None, frontend_inputs, false).await;
    }
    *read = match read_dockerfile(gw, &request, &frontend_inputs).await {
        Ok(dockerfile) => dockerfile,
        // Read only to keep BuildKit's directives working: the Dockerfile frontend says
        // what is wrong with the file in its own words.
        Err(e) if !request.needs_directives() => {
            eprintln!("squash-frontend: {e}");
            None
        }
        Err(e) => return Err(e),
    };
    let dockerfile = read.as_ref();
    let ours: Vec<&str> = SETTINGS.iter().map(|s| s.directive).collect();
    let directives = match dockerfile {
        Some(d) => directives::read(&d.text, &ours)?,
        None => Directives::new(),
    };
    request.check_names(dockerfile.map(|d| d.text.as_slice()))?;
    let settings = request.settings(&directives)?;
    // A directive of ours above one of BuildKit's would hide it from the Dockerfile frontend:
    // hand it the Dockerfile with BuildKit's directives first.
    let mut frontend_inputs = frontend_inputs;
    let mended = match dockerfile {
        Some(d) => match directives::reorder_for_buildkit(&d.text, &ours) {
            Some(text) => {
                let def = llb::replace_file(&d.def, &d.path, text, MENDED)?;
                frontend_inputs.insert(DOCKERFILE_SOURCE.into(), def);
                true
            }
            None => false,
        },
        None => false,
    };
    // Evaluated here only where this frontend runs the build's steps itself: reading the report
    // for squash-min-saving would run them, and a failing RUN would then read as our step's
    // failure. Otherwise everything stays lazy, we return at once, and the exporter runs the
    // build and the squash in one solve: our own image loads while the Dockerfile's steps run,
    // and the time BuildKit takes to finish with this frontend's container overlaps the build
    // instead of following it (measured: about 0.02 s of each). A failing step is then the
    // exporter's error, as BuildKit words it.
    let built = delegate(
        gw,
        request.forwarded(mended),
        settings.upstream.as_ref(),
        frontend_inputs,
        settings.min_saving.is_some(),
    )
    .await?;
    if settings.mode == Mode::Off {
        return Ok(built);
    }

    let caps = Caps::from_api_caps(&pong.llb_caps);
    let tool = Tool::new(start.tool_def.as_deref(), &start.exe, &pong.workers);
    let mut planned = Vec::new();
    for image in result::images(&built)? {
        let platform = image.platform;
        let what = platform.unwrap_or("image");
        let Some(def) = image
            .reference
            .def
            .as_ref()
            .filter(|_| !image.reference.id.is_empty())
        else {
            continue;
        };
        let inputs = Inputs {
            mode: settings.mode,
            method: settings.method,
            caps: &caps,
            tool: tool.as_ref(),
            epoch: request.epoch.or_else(|| result::epoch(&built, platform)),
            no_cache: request.no_cache,
            min_saving: settings.min_saving,
            split: settings.split.clone(),
            report: settings.report,
        };
        let mut received = Received::decode(
            def,
            result::meta(&built, result::CONFIG, platform),
            result::meta(&built, result::BASE_CONFIG, platform),
        )?;
        describe_base(gw, &mut received, &inputs, what).await;
        let squash = match plan::plan(received, &inputs)? {
            Plan::Unchanged { reason, off } => {
                eprintln!("squash-frontend: {what}: {reason}");
                if !off {
                    let on = platform.map(|p| format!("{p}: ")).unwrap_or_default();
                    note(gw, &format!("squash: {on}not squashed: {reason}")).await;
                }
                continue;
            }
            Plan::Squash(squash) => squash,
        };
        eprintln!("squash-frontend: {what}: {}", squash.summary);
        // The report, where the build needs it: read, to weigh the squash against
        // squash-min-saving; as a ref alone, to go with the build's attestations. Reading it
        // runs the step that makes it (which the squash runs anyway) and costs a mount of its
        // output in the engine; a ref alone is lazy, and the exporter runs it with the squash.
        let report = match (&squash.report, settings.min_saving) {
            (Some(def), Some(min)) => {
                let (reference, made) = read_report(gw, def, &request).await?;
                if !weigh(gw, platform, what, min, &made).await {
                    continue;
                }
                Some(reference)
            }
            (Some(def), None) if request.attestations => Some(solve_ref(gw, def, &request).await?),
            (None, _) if !settings.report => None,
            (None, Some(_)) => {
                eprintln!("squash-frontend: {what}: no report without our own image's definition: squash-min-saving is left out");
                None
            }
            (None, None) if request.attestations => {
                eprintln!("squash-frontend: {what}: no report without our own image's definition: the report's attestation is left out");
                None
            }
            _ => None,
        };
        planned.push((platform, squash, report));
    }
    // Where the engine makes a layer alone, the frontend reads what each image's build changed
    // first. A read runs that image's build, so the images' reads run side by side, as the
    // exporter would run their builds (a multi-platform build's platforms at once).
    let reads = planned.iter().map(|(platform, squash, _)| {
        let mut gw = gw.clone();
        let request = &request;
        async move {
            match &squash.def {
                Def::Ready(_) => Ok(None),
                Def::ReadFirst(layer) => {
                    let what = platform.unwrap_or("image");
                    read_first(&mut gw, layer, request, what).await.map(Some)
                }
            }
        }
    });
    let read = futures_util::future::try_join_all(reads).await?;
    let mut squashed = Vec::new();
    for ((platform, squash, report), made) in planned.into_iter().zip(read) {
        let def = match (&squash.def, &made) {
            (_, Some(def)) | (Def::Ready(def), None) => def,
            (Def::ReadFirst(_), None) => return Err(BuildError::UnexpectedResult),
        };
        let reference = solve_ref(gw, def, &request).await?;
        squashed.push(Squashed {
            platform: platform.map(str::to_string),
            reference,
            squash,
            report: report.filter(|_| request.attestations),
            report_inline_only: request.attestations_inline_only,
        });
    }
    Ok(result::assemble(&built, &squashed))
}

/// Weighs the squash's report `made` against `min` (squash-min-saving), says so in the build's
/// progress, and answers whether to squash.
async fn weigh(
    gw: &mut Gateway,
    platform: Option<&str>,
    what: &str,
    min: report::MinSaving,
    made: &report::Report,
) -> bool {
    // Said in a step of its own: the squash step's name says what a squash would make, and a
    // cached report step prints nothing.
    let met = min.met_by(made);
    let decided = format!(
        "squash: {}reclaims {} ({:.1} %), {} squash-min-saving ({min}): {}",
        platform.map(|p| format!("{p}: ")).unwrap_or_default(),
        report::human(made.reclaimed_bytes),
        made.reclaimed_percent(),
        if met { "at least" } else { "less than" },
        if met {
            "squashed"
        } else {
            "the image is returned as built"
        }
    );
    eprintln!("squash-frontend: {what}: {decided}");
    note(gw, &decided).await;
    met
}

/// Shows `name` in the build's progress ([`llb::note`]). Only words: if the engine cannot, the
/// daemon's log says why and the build goes on.
async fn note(gw: &mut Gateway, name: &str) {
    let solved = match llb::note(name) {
        Ok(def) => gw
            .solve(gateway::SolveRequest {
                definition: Some(def),
                evaluate: true,
                ..Default::default()
            })
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = solved {
        eprintln!("squash-frontend: could not show {name:?} in the progress: {e}");
    }
}

/// Solves one of our definitions (the squash, or its report) with the build's cache imports;
/// its ref. A failure is our step's.
async fn solve_ref(
    gw: &mut Gateway,
    def: &pb::Definition,
    request: &Request,
) -> Result<gateway::Ref, BuildError> {
    solve_ref_or(gw, def, request, BuildError::Squash).await
}

/// [`solve_ref`], with a failure said by `fail`.
async fn solve_ref_or(
    gw: &mut Gateway,
    def: &pb::Definition,
    request: &Request,
    fail: fn(rpc::Status) -> BuildError,
) -> Result<gateway::Ref, BuildError> {
    let solved = gw
        .solve(gateway::SolveRequest {
            definition: Some(def.clone()),
            cache_imports: request.cache_imports.clone(),
            ..Default::default()
        })
        .await
        .map_err(|e| fail(e.status))?;
    match solved.result {
        Some(gateway::result::Result::Ref(reference)) => Ok(reference),
        _ => Err(BuildError::UnexpectedResult),
    }
}

/// The definition of a layer the engine makes alone ([`upper`]): solves the diff and the two
/// trees, reads what the build changed and returns the FileOp that makes the layer. Reading
/// evaluates the build's steps here: a failing step fails the read, and its error is passed on
/// as the build's own.
async fn read_first(
    gw: &mut Gateway,
    layer: &upper::ReadFirst,
    request: &Request,
    what: &str,
) -> Result<pb::Definition, BuildError> {
    let started = std::time::Instant::now();
    let mut refs = Vec::new();
    for def in [&layer.lower, &layer.head, &layer.diff] {
        // Lazy: the build's steps run at the first read, whose failure is the build's own.
        refs.push(
            solve_ref_or(gw, def, request, BuildError::Upstream)
                .await?
                .id,
        );
    }
    let solved = started.elapsed();
    let mut reads = Reads {
        gw,
        refs,
        count: 0,
        started,
        first: None,
    };
    let changes = upper::read_changes(&mut reads).await.map_err(|e| match e {
        WalkError::Read(status) => BuildError::Upstream(status),
        WalkError::Unrepresentable(said) => BuildError::Unrepresentable(said),
    })?;
    // The first read runs what the build changed; the log says how long the rest took.
    let first = reads.first.unwrap_or(solved);
    eprintln!(
        "squash-frontend: {what}: {} directories read, {} removals: solves {} ms, first read \
         (the build) {} ms, the rest {} ms",
        reads.count,
        changes.removals.len(),
        solved.as_millis(),
        (first - solved).as_millis(),
        (started.elapsed() - first).as_millis()
    );
    Ok(layer.finish(&changes)?)
}

/// The trees of a [`upper::ReadFirst`], read through the gateway: refs of the lower tree, the
/// result and the diff, in that order.
struct Reads<'a> {
    gw: &'a mut Gateway,
    refs: Vec<String>,
    count: usize,
    /// When [`read_first`] started, and when the first read ended.
    started: std::time::Instant,
    first: Option<std::time::Duration>,
}

impl Lister for Reads<'_> {
    type Error = rpc::Status;
    async fn list(
        &mut self,
        tree: Tree,
        dir: &str,
    ) -> Result<Vec<squash_proto::fsutil::types::Stat>, rpc::Status> {
        let reference = match tree {
            Tree::Lower => &self.refs[0],
            Tree::Head => &self.refs[1],
            Tree::Diff => &self.refs[2],
        };
        self.count += 1;
        let read = self.gw.read_dir(reference, dir).await.map_err(|e| e.status);
        self.first.get_or_insert_with(|| self.started.elapsed());
        read
    }
}

/// Solves the report's definition and reads the report back: the ref (for an attestation) and
/// the report.
async fn read_report(
    gw: &mut Gateway,
    def: &pb::Definition,
    request: &Request,
) -> Result<(gateway::Ref, report::Report), BuildError> {
    let reference = solve_ref(gw, def, request).await?;
    // The read runs the step (the solve is lazy): its failure is our step's.
    let bytes = gw
        .read_file(&reference.id, llb::REPORT_FILE)
        .await
        .map_err(|e| BuildError::Squash(e.status))?;
    let made = serde_json::from_slice(&bytes).map_err(|e| BuildError::Report(e.to_string()))?;
    Ok((reference, made))
}

/// The progress name of the step that hands the Dockerfile frontend the mended Dockerfile.
const MENDED: &str = "[internal] squash: the Dockerfile with BuildKit's directives above ours";

/// Builds the Dockerfile with the engine's Dockerfile frontend (or `upstream`, a frontend
/// image), with the options and inputs given. With `evaluate`, the result is evaluated here, so
/// that a failing step of the Dockerfile fails this solve (passed on as it is) rather than a
/// later one of ours.
async fn delegate(
    gw: &mut Gateway,
    mut frontend_opt: Opts,
    upstream: Option<&Given<String>>,
    frontend_inputs: BTreeMap<String, pb::Definition>,
    evaluate: bool,
) -> Result<gateway::Result, BuildError> {
    let frontend = match upstream {
        Some(image) => {
            frontend_opt.insert(crate::request::KEY_SOURCE.into(), image.value.clone());
            frontend_opt.insert(crate::request::KEY_CMDLINE.into(), image.value.clone());
            frontend_opt.insert(NESTED.into(), "1".into());
            "gateway.v0"
        }
        None => "dockerfile.v0",
    };
    let req = gateway::SolveRequest {
        frontend: frontend.into(),
        frontend_opt: frontend_opt.into_iter().collect(),
        frontend_inputs,
        evaluate,
        ..Default::default()
    };
    gw.solve(req).await.map_err(|e| {
        let mut status = e.status;
        match upstream {
            Some(image) => {
                // Keep the details (they carry Dockerfile locations); say who failed.
                status.message = upstream_failed(image, &status.message);
                BuildError::UpstreamImage {
                    status,
                    line: image.origin.dockerfile_line(),
                }
            }
            None => BuildError::Upstream(status),
        }
    })
}

/// The message of a failed build by the upstream frontend image: which image, where it was set.
fn upstream_failed(image: &Given<String>, message: &str) -> String {
    let set = match image.origin.dockerfile_line() {
        Some(line) => format!("the {} on Dockerfile line {line}", image.name),
        None => format!("the {}", image.name),
    };
    format!(
        "squash-frontend: the upstream frontend {} (set with {set}; it must be a Dockerfile \
         frontend image, such as docker/dockerfile:1.7) failed: {message}",
        image.value
    )
}

/// Resolves the base image's config where base mode needs it and the Dockerfile frontend did not
/// return it. A failure only costs the base: the image is then squashed to one layer, and the
/// progress line says why.
async fn describe_base(gw: &mut Gateway, received: &mut Received, inputs: &Inputs<'_>, what: &str) {
    let Some(wanted) = received.base_to_describe(inputs) else {
        return;
    };
    match gw
        .resolve_image_config(&wanted.reference, wanted.platform)
        .await
    {
        Ok(base) => match received.config() {
            Some(config) if config::describes_base(config, &base) => {
                received.set_described_base(base)
            }
            _ => eprintln!(
                "squash-frontend: {what}: the config resolved for {} does not match the built image's bottom layers",
                wanted.reference
            ),
        },
        Err(e) => eprintln!(
            "squash-frontend: {what}: could not describe the base image {}: {}",
            wanted.reference, e.status.message
        ),
    }
}

/// The Dockerfile, as the Dockerfile frontend will read it.
struct Dockerfile {
    /// The source it was read from.
    def: pb::Definition,
    /// Its path in that source (the lowercase `dockerfile` where only that exists).
    path: String,
    /// Its text.
    text: Vec<u8>,
}

/// Reads the Dockerfile the way the Dockerfile frontend reads it; `None` where it lives in a
/// remote (git/HTTP) context that only the Dockerfile frontend fetches.
async fn read_dockerfile(
    gw: &mut Gateway,
    request: &Request,
    frontend_inputs: &BTreeMap<String, pb::Definition>,
) -> Result<Option<Dockerfile>, BuildError> {
    let source = &request.dockerfile;
    let def = match frontend_inputs.get(DOCKERFILE_SOURCE) {
        Some(def) if source.from_input => def.clone(),
        _ if source.remote => return Ok(None),
        _ => llb::dockerfile_source(source),
    };
    let fail = |status: rpc::Status| BuildError::Dockerfile {
        path: source.filename.clone(),
        status,
    };
    let solved = gw
        .solve(gateway::SolveRequest {
            definition: Some(def.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| fail(e.status))?;
    let Some(gateway::result::Result::Ref(reference)) = solved.result else {
        return Err(fail(error_status("no file came back".into())));
    };
    let (path, text) = match gw.read_file(&reference.id, &source.filename).await {
        Ok(data) => (source.filename.clone(), data),
        Err(first) => {
            // The Dockerfile frontend also accepts `dockerfile` for `Dockerfile`.
            let lower = source
                .lowercase_fallback()
                .ok_or_else(|| fail(first.status.clone()))?;
            let data = gw
                .read_file(&reference.id, &lower)
                .await
                .map_err(|_| fail(first.status))?;
            (lower, data)
        }
    };
    Ok(Some(Dockerfile { def, path, text }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Origin;

    #[test]
    fn an_upstream_failure_names_where_the_image_was_set() {
        let given = |name: &str, origin| Given {
            value: "reg/df:1".to_string(),
            name: name.to_string(),
            origin,
        };
        assert_eq!(
            upstream_failed(
                &given("build argument SQUASH_UPSTREAM", Origin::BuildArg),
                "not found"
            ),
            "squash-frontend: the upstream frontend reg/df:1 (set with the build argument \
             SQUASH_UPSTREAM; it must be a Dockerfile frontend image, such as \
             docker/dockerfile:1.7) failed: not found"
        );
        assert_eq!(
            upstream_failed(
                &given(
                    "directive # squash-upstream=",
                    Origin::Directive { line: 2 }
                ),
                "x"
            ),
            "squash-frontend: the upstream frontend reg/df:1 (set with the directive # \
             squash-upstream= on Dockerfile line 2; it must be a Dockerfile frontend image, \
             such as docker/dockerfile:1.7) failed: x"
        );
        // Placed at the directive's line, as errors about our directives are.
        let e = BuildError::UpstreamImage {
            status: error_status("x".into()),
            line: Some(2),
        };
        assert_eq!(e.dockerfile_line(), Some(2));
        assert_eq!(e.to_status().message, "x");
    }

    #[test]
    fn errors_of_our_own_name_us_and_upstream_errors_pass_unchanged() {
        let upstream = rpc::Status {
            code: 2,
            message: "process \"/bin/sh -c false\" did not complete".into(),
            details: vec![prost_types::Any {
                type_url: "x".into(),
                value: vec![1],
            }],
        };
        assert_eq!(BuildError::Upstream(upstream.clone()).to_status(), upstream);
        let ours = BuildError::Cap("return".into()).to_status();
        assert!(ours
            .message
            .starts_with("squash-frontend: this engine lacks"));
        assert_eq!(ours.code, error_status(String::new()).code);
        // Our own step failing keeps the engine's details but says it was ours.
        let step = BuildError::Squash(upstream.clone()).to_status();
        assert_eq!(
            step.message,
            "squash-frontend: the squash step failed: process \"/bin/sh -c false\" did not complete"
        );
        assert_eq!(
            (step.code, &step.details),
            (upstream.code, &upstream.details)
        );
        let read = BuildError::Dockerfile {
            path: "Dockerfile".into(),
            status: upstream.clone(),
        }
        .to_status();
        assert!(read
            .message
            .starts_with("squash-frontend: could not read the Dockerfile Dockerfile"));
        assert_eq!(read.details, upstream.details);
    }

    #[test]
    fn a_placed_error_carries_buildkits_source_detail_once() {
        let text = b"# syntax=x\n# squash=fast\nFROM busybox\n";
        let status = place(error_status("bad".into()), "Dockerfile", text, 2);
        assert_eq!(status.message, "bad");
        assert_eq!(status.details.len(), 1);
        assert_eq!(status.details[0].type_url, SOURCE_DETAIL);
        let json: serde_json::Value = serde_json::from_slice(&status.details[0].value).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "info": {
                    "filename": "Dockerfile",
                    "data": "IyBzeW50YXg9eAojIHNxdWFzaD1mYXN0CkZST00gYnVzeWJveAo=",
                    "language": "Dockerfile",
                },
                "ranges": [{ "start": { "line": 2 }, "end": { "line": 2 } }],
            })
        );
        // One place is enough: a status placed already keeps its own.
        let again = place(status.clone(), "Dockerfile", text, 3);
        assert_eq!(again, status);
    }

    #[test]
    fn only_errors_about_a_dockerfile_line_have_one() {
        let directive = BuildError::Directive(DirectiveError::Misplaced {
            key: "squash".into(),
            line: 4,
        });
        assert_eq!(directive.dockerfile_line(), Some(4));
        let from_directive = BuildError::Option(OptionError::Empty {
            name: "directive # squash=".into(),
            origin: crate::request::Origin::Directive { line: 2 },
            choices: "full, base, off",
        });
        assert_eq!(from_directive.dockerfile_line(), Some(2));
        let from_arg = BuildError::Option(OptionError::Empty {
            name: "build argument SQUASH_MODE".into(),
            origin: crate::request::Origin::BuildArg,
            choices: "full, base, off",
        });
        assert_eq!(from_arg.dockerfile_line(), None);
        assert_eq!(BuildError::UnexpectedResult.dockerfile_line(), None);
    }
}
