//! The build flow: ping, read the settings, delegate the Dockerfile build, squash each image,
//! and `Return` exactly once, with the result or with the error.

use std::collections::BTreeMap;

use prost::Message;
use squash_proto::{gateway, pb, rpc};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config;
use crate::directives::{self, DirectiveError};
use crate::gateway::{Gateway, GatewayError};
use crate::llb::{meta_with_caps, Graph};
use crate::options::{self, Mode, OptionError, Opts, Settings, SETTINGS};
use crate::result::{self, Done, ResultError};
use crate::squash::{self, Caps, Plan, PlanError, Tool};

/// What the process was started with.
#[derive(Debug, Clone, Default)]
pub struct Start {
    pub opts: Opts,
    pub session_id: String,
    /// The frontend image's own definition (`/run/config/buildkit/metadata/frontend.bin`).
    pub tool_def: Option<Vec<u8>>,
    /// Our binary's path inside our image.
    pub exe: String,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An error of the build itself (a failing RUN, a Dockerfile that does not parse): passed
    /// on unchanged, so the user sees exactly what they would see without squash-frontend.
    #[error("{}", .0.message)]
    Upstream(rpc::Status),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Option(#[from] OptionError),
    #[error(transparent)]
    Directive(#[from] DirectiveError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Result(#[from] ResultError),
    #[error("this engine lacks the gateway capability {0}, which squash-frontend needs (BuildKit 0.13 / Docker 26 or newer)")]
    Cap(String),
    #[error("could not read the Dockerfile {path} for # squash= directives: {reason}")]
    Dockerfile { path: String, reason: String },
}

impl BuildError {
    /// The status to send in `Return`.
    pub fn to_status(&self) -> rpc::Status {
        match self {
            BuildError::Upstream(status) => status.clone(),
            other => rpc::Status {
                // Unknown is what BuildKit's own frontends send for their errors; the message
                // is shown to the user as is.
                code: tonic::Code::Unknown as i32,
                message: format!("squash-frontend: {other}"),
                details: vec![],
            },
        }
    }
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
    let outcome = build(&mut gw, &start).await;
    let request = match outcome {
        Ok(result) => gateway::ReturnRequest {
            result: Some(result),
            error: None,
        },
        Err(e) => {
            eprintln!("squash-frontend: {e}");
            gateway::ReturnRequest {
                result: None,
                error: Some(e.to_status()),
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

async fn build(gw: &mut Gateway, start: &Start) -> Result<gateway::Result, BuildError> {
    let pong = gw.ping().await?;
    let enabled = |caps: &[squash_proto::apicaps::ApiCap], id: &str| {
        caps.iter().any(|c| c.id == id && c.enabled)
    };
    for cap in NEEDED {
        if !enabled(&pong.frontend_api_caps, cap) {
            return Err(BuildError::Cap(cap.into()));
        }
    }
    let inputs = if enabled(&pong.frontend_api_caps, "frontend.inputs") {
        gw.inputs().await?
    } else {
        BTreeMap::new()
    };
    let opts = &start.opts;

    // Information requests (--print / --call) are the Dockerfile frontend's to answer, and a
    // build handed to us by a squash frontend as its upstream is passed through as is.
    if opts.contains_key("requestid") || opts.contains_key(options::NESTED) {
        return delegate(gw, opts, None, inputs).await;
    }

    let directives = if options::needs_directives(opts) {
        match read_dockerfile(gw, start, &inputs).await? {
            Some(text) => {
                let ours: Vec<&str> = SETTINGS.iter().map(|s| s.directive).collect();
                directives::read(&text, &ours)?
            }
            None => BTreeMap::new(),
        }
    } else {
        BTreeMap::new()
    };
    let settings = options::settings(opts, &directives)?;
    let built = delegate(gw, opts, settings.upstream.as_deref(), inputs).await?;
    if settings.mode == Mode::Off {
        return Ok(built);
    }
    squash_all(gw, start, &settings, &pong, built).await
}

/// Builds the Dockerfile with the engine's Dockerfile frontend (or `upstream`, a frontend
/// image), with every option and input we were given.
async fn delegate(
    gw: &mut Gateway,
    opts: &Opts,
    upstream: Option<&str>,
    inputs: BTreeMap<String, pb::Definition>,
) -> Result<gateway::Result, BuildError> {
    let mut frontend_opt = options::forwarded(opts);
    let frontend = match upstream {
        Some(image) => {
            frontend_opt.insert("source".into(), image.into());
            frontend_opt.insert("cmdline".into(), image.into());
            frontend_opt.insert(options::NESTED.into(), "1".into());
            "gateway.v0"
        }
        None => "dockerfile.v0",
    };
    let req = gateway::SolveRequest {
        frontend: frontend.into(),
        frontend_opt: frontend_opt.into_iter().collect(),
        frontend_inputs: inputs,
        ..Default::default()
    };
    gw.solve(req).await.map_err(|e| {
        let mut status = e.status;
        if let Some(image) = upstream {
            // Keep the details (they carry Dockerfile locations); say who failed.
            status.message = format!(
                "squash-frontend: the upstream frontend {image} (set with the build argument {}, option {} or directive # {}=) failed: {}",
                options::UPSTREAM.build_arg,
                options::UPSTREAM.option,
                options::UPSTREAM.directive,
                status.message
            );
        }
        BuildError::Upstream(status)
    })
}

async fn squash_all(
    gw: &mut Gateway,
    start: &Start,
    settings: &Settings,
    pong: &gateway::PongResponse,
    built: gateway::Result,
) -> Result<gateway::Result, BuildError> {
    let caps = Caps(
        pong.llb_caps
            .iter()
            .map(|c| {
                let state = if c.enabled {
                    Ok(())
                } else {
                    Err(c.disabled_reason_msg.clone())
                };
                (c.id.clone(), state)
            })
            .collect(),
    );
    let tool = tool(start, pong);
    let cache_imports = cache_imports(&start.opts);
    let mut done = BTreeMap::new();
    for image in result::images(&built)? {
        let platform = image.platform;
        let Some(def) = image
            .reference
            .def
            .as_ref()
            .filter(|_| !image.reference.id.is_empty())
        else {
            done.insert(platform.map(str::to_string), Done::Unchanged);
            continue;
        };
        let env = squash::Env {
            mode: settings.mode,
            method: settings.method,
            caps: &caps,
            tool: tool.as_ref(),
            epoch: result::epoch(&start.opts, &built, platform),
        };
        let mut input = squash::Built {
            def,
            config: result::meta(&built, result::CONFIG, platform),
            base_config: result::meta(&built, result::BASE_CONFIG, platform),
        };
        let described = describe_base(gw, input, &env, platform).await?;
        input.base_config = described.as_deref().or(input.base_config);
        let planned = squash::plan(input, &env)?;
        let d = match planned {
            Plan::Unchanged { reason } => {
                eprintln!("squash-frontend: {}: {reason}", platform.unwrap_or("image"));
                Done::Unchanged
            }
            Plan::Squash {
                mut def,
                config,
                keeps_base,
                summary,
            } => {
                eprintln!(
                    "squash-frontend: {}: {summary}",
                    platform.unwrap_or("image")
                );
                if no_cache(&start.opts) {
                    ignore_cache(&mut def, &built, platform);
                }
                let req = gateway::SolveRequest {
                    definition: Some(def),
                    cache_imports: cache_imports.clone(),
                    ..Default::default()
                };
                let solved = gw
                    .solve(req)
                    .await
                    .map_err(|e| BuildError::Upstream(e.status))?;
                let reference = match solved.result {
                    Some(gateway::result::Result::Ref(r)) => r,
                    _ => return Err(ResultError::Deprecated.into()),
                };
                Done::Squashed {
                    reference,
                    config,
                    keeps_base,
                    base_config: described.filter(|_| keeps_base),
                }
            }
        };
        done.insert(platform.map(str::to_string), d);
    }
    Ok(result::assemble(&built, &done))
}

/// The base image's config, resolved by the engine, when base mode needs it and the Dockerfile
/// frontend did not return it. A failure only costs the base: the image is then squashed to
/// one layer, and the progress line says why.
async fn describe_base(
    gw: &mut Gateway,
    built: squash::Built<'_>,
    env: &squash::Env<'_>,
    platform: Option<&str>,
) -> Result<Option<Vec<u8>>, BuildError> {
    let Some(wanted) = squash::base_to_describe(built, env)? else {
        return Ok(None);
    };
    let what = platform.unwrap_or("image");
    match gw
        .resolve_image_config(&wanted.reference, wanted.platform)
        .await
    {
        Ok(base) => match built.config {
            Some(config) if config::describes_base(config, &base) => Ok(Some(base)),
            _ => {
                eprintln!(
                    "squash-frontend: {what}: the config resolved for {} does not match the built image's bottom layers",
                    wanted.reference
                );
                Ok(None)
            }
        },
        Err(e) => {
            eprintln!(
                "squash-frontend: {what}: could not describe the base image {}: {}",
                wanted.reference, e.status.message
            );
            Ok(None)
        }
    }
}

/// Our own image, if BuildKit told us its definition.
fn tool(start: &Start, pong: &gateway::PongResponse) -> Option<Tool> {
    let def = pb::Definition::decode(start.tool_def.as_deref()?).ok()?;
    let platform = pong
        .workers
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
        exe: start.exe.clone(),
        platform,
    })
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `--no-cache` without stage names means every step, ours included.
fn no_cache(opts: &Opts) -> bool {
    opts.get("no-cache").is_some_and(|v| v.is_empty())
}

/// Marks the ops we added (those not in the built graph) as never cached.
fn ignore_cache(def: &mut pb::Definition, built: &gateway::Result, platform: Option<&str>) {
    let mut received = Graph::default();
    let original = result::images(built).ok().and_then(|list| {
        list.into_iter()
            .find(|i| i.platform == platform)
            .and_then(|i| i.reference.def.clone())
    });
    if let Some(original) = &original {
        let _ = received.add_definition(original);
    }
    for bytes in &def.def {
        let digest = crate::llb::digest_of(bytes);
        if received.op(&digest).is_some() {
            continue;
        }
        let mut meta = def
            .metadata
            .get(&digest)
            .and_then(|m| pb::OpMetadata::decode(m.as_slice()).ok())
            .unwrap_or_else(|| meta_with_caps(None, &[]));
        meta.ignore_cache = true;
        meta.caps.insert("meta.ignorecache".into(), true);
        def.metadata.insert(digest, meta.encode_to_vec());
    }
}

/// The cache sources of the build (`--cache-from`), for our own solves.
fn cache_imports(opts: &Opts) -> Vec<gateway::CacheOptionsEntry> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "Type")]
        kind: String,
        #[serde(rename = "Attrs", default)]
        attrs: BTreeMap<String, String>,
    }
    opts.get("cache-imports")
        .and_then(|v| serde_json::from_str::<Vec<Entry>>(v).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|e| gateway::CacheOptionsEntry {
            r#type: e.kind,
            attrs: e.attrs,
        })
        .collect()
}

/// The Dockerfile's text, read the way the Dockerfile frontend reads it, or `None` where it
/// lives in a remote (git/HTTP) context that only the Dockerfile frontend fetches.
async fn read_dockerfile(
    gw: &mut Gateway,
    start: &Start,
    inputs: &BTreeMap<String, pb::Definition>,
) -> Result<Option<Vec<u8>>, BuildError> {
    let opts = &start.opts;
    let filename = opts
        .get("filename")
        .cloned()
        .unwrap_or_else(|| "Dockerfile".into());
    let forced = opts.get("dockerfilekey");
    let name = forced.cloned().unwrap_or_else(|| "dockerfile".into());
    let def = match (forced, inputs.get("dockerfile")) {
        (None, Some(def)) => def.clone(),
        _ => {
            let context = opts.get("context").map(String::as_str).unwrap_or("");
            if context.contains("://") || context.starts_with("git@") {
                return Ok(None);
            }
            local_source(&name, &filename, start)
        }
    };
    let fail = |reason: String| BuildError::Dockerfile {
        path: filename.clone(),
        reason,
    };
    let solved = gw
        .solve(gateway::SolveRequest {
            definition: Some(def),
            ..Default::default()
        })
        .await
        .map_err(|e| fail(e.status.message))?;
    let reference = match solved.result {
        Some(gateway::result::Result::Ref(r)) => r.id,
        _ => return Err(fail("no file came back".into())),
    };
    match gw.read_file(&reference, &filename).await {
        Ok(data) => Ok(Some(data)),
        Err(first) => {
            // The Dockerfile frontend also accepts `dockerfile` for `Dockerfile`.
            let lower =
                lowercase_fallback(&filename).ok_or_else(|| fail(first.status.message.clone()))?;
            gw.read_file(&reference, &lower)
                .await
                .map(Some)
                .map_err(|_| fail(first.status.message))
        }
    }
}

fn lowercase_fallback(filename: &str) -> Option<String> {
    let (dir, base) = filename.rsplit_once('/').unwrap_or(("", filename));
    (base == "Dockerfile").then(|| {
        if dir.is_empty() {
            "dockerfile".to_string()
        } else {
            format!("{dir}/dockerfile")
        }
    })
}

/// A definition of the local directory holding the Dockerfile, limited to that file.
fn local_source(name: &str, filename: &str, start: &Start) -> pb::Definition {
    let session = start
        .opts
        .get(&format!("local-sessionid:{name}"))
        .cloned()
        .unwrap_or_else(|| start.session_id.clone());
    let mut follow = vec![filename.to_string(), format!("{filename}.dockerignore")];
    if let Some(lower) = lowercase_fallback(filename) {
        follow.push(lower);
    }
    let mut attrs = BTreeMap::new();
    attrs.insert("local.session".to_string(), session);
    attrs.insert(
        "local.followpaths".to_string(),
        serde_json::to_string(&follow).expect("strings serialise"),
    );
    attrs.insert("local.sharedkeyhint".to_string(), name.to_string());
    attrs.insert("local.differ".to_string(), "none".to_string());
    let op = pb::Op {
        op: Some(pb::op::Op::Source(pb::SourceOp {
            identifier: format!("local://{name}"),
            attrs,
        })),
        ..Default::default()
    };
    let mut graph = Graph::default();
    let out = graph.push(
        op,
        meta_with_caps(
            Some(&format!(
                "[internal] squash: read directives from {filename}"
            )),
            &[
                "source.local",
                "source.local.sessionid",
                "source.local.followpaths",
                "source.local.sharedkeyhint",
                "source.local.differ",
                "constraints",
            ],
        ),
    );
    graph.finish(&out).expect("the op was just added")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_imports_are_parsed() {
        let mut opts = Opts::new();
        opts.insert(
            "cache-imports".into(),
            r#"[{"Type":"local","Attrs":{"src":"/c"}}]"#.into(),
        );
        let c = cache_imports(&opts);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].r#type.as_str(), c[0].attrs["src"].as_str()),
            ("local", "/c")
        );
        opts.insert("cache-imports".into(), "garbage".into());
        assert!(cache_imports(&opts).is_empty());
    }

    #[test]
    fn dockerfile_lowercase_fallback() {
        assert_eq!(
            lowercase_fallback("Dockerfile").as_deref(),
            Some("dockerfile")
        );
        assert_eq!(
            lowercase_fallback("sub/Dockerfile").as_deref(),
            Some("sub/dockerfile")
        );
        assert_eq!(lowercase_fallback("app.Dockerfile"), None);
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
        assert_eq!(ours.code, tonic::Code::Unknown as i32);
    }
}
