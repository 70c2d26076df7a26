//! The whole build flow against a fake BuildKit: the real tonic client and server, talking
//! over an in-memory pipe. The fake records every request so the tests can check what the
//! frontend asked for and what it returned.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prost::Message;
use squash_frontend::flow::{self, run};
use squash_frontend::request::{Opts, Start};
use squash_frontend::testkit;
use squash_proto::apicaps::ApiCap;
use squash_proto::fsutil::types::Stat;
use squash_proto::gateway::llb_bridge_server::{LlbBridge, LlbBridgeServer};
use squash_proto::gateway::{
    result, EvaluateRequest, EvaluateResponse, InputsRequest, InputsResponse, PingRequest,
    PongResponse, ReadDirRequest, ReadDirResponse, ReadFileRequest, ReadFileResponse, Ref,
    ResolveImageConfigRequest, ResolveImageConfigResponse, ReturnRequest, ReturnResponse,
    SolveRequest, SolveResponse, WarnRequest, WarnResponse,
};
use squash_proto::{pb, rpc};
use tonic::{Request, Response, Status};

#[derive(Default)]
struct Log {
    solves: Vec<SolveRequest>,
    returns: Vec<ReturnRequest>,
    reads: Vec<ReadFileRequest>,
    dir_reads: Vec<ReadDirRequest>,
}

#[derive(Clone)]
struct Fake {
    log: Arc<Mutex<Log>>,
    dockerfile: Vec<u8>,
    /// When set, the Dockerfile build fails with this status.
    upstream_error: Option<rpc::Status>,
    /// When set, the solve of our own squash definition fails with this status.
    squash_error: Option<rpc::Status>,
    /// Our own image's definition, as BuildKit hands it to the frontend.
    tool_def: Option<Vec<u8>>,
    /// What our in-build step's report "says".
    report: Option<Vec<u8>>,
    /// When set, reading the report fails with this status (the read runs our step).
    report_error: Option<rpc::Status>,
    llb_caps: Vec<(&'static str, bool)>,
    /// When set, our definitions are solved to refs named `def-<n>` (in the order of their
    /// solves), and `ReadDir` of the n-th of them lists `trees[n]` (absolute path, Go mode).
    trees: Option<Vec<Vec<(&'static str, u32)>>>,
    /// When set, `ReadDir` fails with this status (as a failing step of the build does).
    read_dir_error: Option<rpc::Status>,
}

fn cap(id: &str, enabled: bool) -> ApiCap {
    ApiCap {
        id: id.into(),
        enabled,
        disabled_reason_msg: if enabled {
            String::new()
        } else {
            "only enabled with containerd image store backend".into()
        },
        ..Default::default()
    }
}

/// The definition the fake Dockerfile frontend "built": image source -> RUN -> terminal.
fn built_definition() -> pb::Definition {
    testkit::sample_definition().0
}

#[tonic::async_trait]
impl LlbBridge for Fake {
    async fn resolve_image_config(
        &self,
        _: Request<ResolveImageConfigRequest>,
    ) -> Result<Response<ResolveImageConfigResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn solve(&self, req: Request<SolveRequest>) -> Result<Response<SolveResponse>, Status> {
        let req = req.into_inner();
        self.log.lock().unwrap().solves.push(req.clone());
        let mut metadata = BTreeMap::new();
        let reference = if !req.frontend.is_empty() {
            if let Some(err) = &self.upstream_error {
                let status = Status::with_details(
                    tonic::Code::from_i32(err.code),
                    err.message.clone(),
                    err.encode_to_vec().into(),
                );
                return Err(status);
            }
            if req.frontend_opt.contains_key("requestid") {
                metadata.insert("result.txt".to_string(), b"targets".to_vec());
                Ref {
                    id: String::new(),
                    def: None,
                }
            } else {
                metadata.insert(
                    "containerimage.config".to_string(),
                    testkit::CONFIG.to_vec(),
                );
                metadata.insert(
                    "containerimage.base.config".to_string(),
                    testkit::BASE_CONFIG.to_vec(),
                );
                metadata.insert("other.key".to_string(), b"kept".to_vec());
                Ref {
                    id: "built".into(),
                    def: Some(built_definition()),
                }
            }
        } else {
            let def = req.definition.clone().unwrap_or_default();
            let is_local = def.def.iter().any(|b| {
                matches!(pb::Op::decode(b.as_slice()).map(|o| o.op), Ok(Some(pb::op::Op::Source(s))) if s.identifier.starts_with("local://"))
            });
            if let (false, Some(err)) = (is_local, &self.squash_error) {
                return Err(Status::with_details(
                    tonic::Code::from_i32(err.code),
                    err.message.clone(),
                    err.encode_to_vec().into(),
                ));
            }
            // Ours come after the Dockerfile's read and its build.
            let ours = self.log.lock().unwrap().solves.len().saturating_sub(3);
            Ref {
                id: match (is_local, &self.trees) {
                    (true, _) => "dockerfile-ref".into(),
                    (false, Some(_)) => format!("def-{ours}"),
                    (false, None) => "squashed".into(),
                },
                def: Some(def),
            }
        };
        Ok(Response::new(SolveResponse {
            r#ref: String::new(),
            result: Some(squash_proto::gateway::Result {
                result: Some(result::Result::Ref(reference)),
                metadata,
                attestations: BTreeMap::new(),
            }),
        }))
    }

    async fn read_dir(
        &self,
        req: Request<ReadDirRequest>,
    ) -> Result<Response<ReadDirResponse>, Status> {
        let req = req.into_inner();
        self.log.lock().unwrap().dir_reads.push(req.clone());
        if let Some(err) = &self.read_dir_error {
            return Err(Status::with_details(
                tonic::Code::from_i32(err.code),
                err.message.clone(),
                err.encode_to_vec().into(),
            ));
        }
        let tree = req
            .r#ref
            .strip_prefix("def-")
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| self.trees.as_ref()?.get(n))
            .ok_or_else(|| Status::not_found("no such ref"))?;
        let prefix = match req.dir_path.as_str() {
            "/" => "/".to_string(),
            dir => format!("{dir}/"),
        };
        let entries = tree
            .iter()
            .filter_map(|(path, mode)| {
                let name = path.strip_prefix(&prefix)?;
                (!name.is_empty() && !name.contains('/')).then(|| Stat {
                    path: name.into(),
                    mode: *mode,
                    ..Default::default()
                })
            })
            .collect();
        Ok(Response::new(ReadDirResponse { entries }))
    }

    async fn read_file(
        &self,
        req: Request<ReadFileRequest>,
    ) -> Result<Response<ReadFileResponse>, Status> {
        let req = req.into_inner();
        self.log.lock().unwrap().reads.push(req.clone());
        if req.r#ref == "dockerfile-ref" && req.file_path == "Dockerfile" {
            Ok(Response::new(ReadFileResponse {
                data: self.dockerfile.clone(),
            }))
        } else if let (Some(e), "report.json") = (&self.report_error, req.file_path.as_str()) {
            Err(Status::new(tonic::Code::Unknown, e.message.clone()))
        } else if let (Some(report), "report.json") = (&self.report, req.file_path.as_str()) {
            Ok(Response::new(ReadFileResponse {
                data: report.clone(),
            }))
        } else {
            Err(Status::not_found("no such file"))
        }
    }

    async fn evaluate(
        &self,
        _: Request<EvaluateRequest>,
    ) -> Result<Response<EvaluateResponse>, Status> {
        Ok(Response::new(EvaluateResponse {}))
    }

    async fn ping(&self, _: Request<PingRequest>) -> Result<Response<PongResponse>, Status> {
        let frontend = [
            "solve.base",
            "return",
            "proto.refarray",
            "reference.output",
            "frontend.inputs",
            "readfile",
        ];
        Ok(Response::new(PongResponse {
            frontend_api_caps: frontend.iter().map(|c| cap(c, true)).collect(),
            llb_caps: self.llb_caps.iter().map(|(c, on)| cap(c, *on)).collect(),
            workers: vec![],
        }))
    }

    async fn r#return(
        &self,
        req: Request<ReturnRequest>,
    ) -> Result<Response<ReturnResponse>, Status> {
        let mut log = self.log.lock().unwrap();
        if !log.returns.is_empty() {
            return Err(Status::failed_precondition("gateway result is already set"));
        }
        log.returns.push(req.into_inner());
        Ok(Response::new(ReturnResponse {}))
    }

    async fn inputs(&self, _: Request<InputsRequest>) -> Result<Response<InputsResponse>, Status> {
        Ok(Response::new(InputsResponse {
            definitions: BTreeMap::new(),
        }))
    }

    async fn warn(&self, _: Request<WarnRequest>) -> Result<Response<WarnResponse>, Status> {
        Ok(Response::new(WarnResponse {}))
    }
}

fn fake(dockerfile: &str) -> Fake {
    Fake {
        log: Arc::default(),
        dockerfile: dockerfile.as_bytes().to_vec(),
        upstream_error: None,
        squash_error: None,
        tool_def: None,
        report: None,
        report_error: None,
        llb_caps: vec![("file.base", true), ("mergeop", true), ("diffop", true)],
        trees: None,
        read_dir_error: None,
    }
}

fn opts(pairs: &[(&str, &str)]) -> Opts {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs the frontend against `fake` and returns its exit code and the fake's log.
async fn drive(fake: Fake, opts: Opts) -> (i32, Log) {
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let log = fake.log.clone();
    let tool_def = fake.tool_def.clone();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(LlbBridgeServer::new(fake))
            .serve_with_incoming(tokio_stream::once(Ok::<_, std::io::Error>(server_io)))
            .await
    });
    let start = Start {
        opts,
        session_id: "sess".into(),
        tool_def,
        exe: "/bin/squash-frontend".into(),
    };
    let code = run(client_io, start).await;
    server.abort();
    let log = std::mem::take(&mut *log.lock().unwrap());
    (code, log)
}

fn returned_result(log: &Log) -> &squash_proto::gateway::Result {
    assert_eq!(log.returns.len(), 1, "exactly one Return");
    let ret = &log.returns[0];
    assert!(ret.error.is_none(), "unexpected error: {:?}", ret.error);
    ret.result.as_ref().expect("a result")
}

#[tokio::test]
async fn full_squash_end_to_end() {
    let (code, log) = drive(
        fake("# syntax=squash\nFROM busybox\nRUN x\n"),
        opts(&[("source", "squash")]),
    )
    .await;
    assert_eq!(code, 0);
    // 1: read the Dockerfile for directives; 2: the Dockerfile build; 3: the squash.
    assert_eq!(log.solves.len(), 3);
    assert_eq!(log.reads[0].file_path, "Dockerfile");
    let delegated = &log.solves[1];
    assert_eq!(delegated.frontend, "dockerfile.v0");
    assert_eq!(
        delegated.frontend_opt["cmdline"], "squash",
        "cmdline guards against a loop"
    );
    assert!(delegated.allow_result_return && delegated.allow_result_array_ref);
    let squash = log.solves[2].definition.as_ref().unwrap();
    let built = built_definition();
    assert_eq!(
        &squash.def[..2],
        &built.def[..2],
        "received op bytes kept verbatim"
    );
    assert_eq!(
        squash.def.len(),
        5,
        "received ops + empty root + diff (the engine has DiffOp) + terminal"
    );
    let result = returned_result(&log);
    let Some(result::Result::Ref(r)) = &result.result else {
        panic!("no ref")
    };
    assert_eq!(r.id, "squashed");
    let cfg: serde_json::Value =
        serde_json::from_slice(&result.metadata["containerimage.config"]).unwrap();
    assert_eq!(cfg["history"].as_array().unwrap().len(), 3);
    let created_by = cfg["history"][2]["created_by"].as_str().unwrap();
    assert_eq!(
        created_by,
        format!(
            "squash: 2 layers -> 1 (by {})",
            squash_frontend::version::describe()
        )
    );
    assert_eq!(
        cfg["history"][2]["comment"],
        squash_frontend::version::describe(),
        "the image says which frontend squashed it"
    );
    assert_eq!(cfg["config"]["Cmd"][0], "sh");
    assert!(
        !result.metadata.contains_key("containerimage.base.config"),
        "no base layer left"
    );
    assert_eq!(result.metadata["other.key"], b"kept");
}

#[tokio::test]
async fn base_mode_from_directive() {
    let df = "# syntax=squash\n# squash=base\nFROM busybox\nRUN x\n";
    let (code, log) = drive(fake(df), opts(&[("source", "squash")])).await;
    assert_eq!(code, 0);
    let squash = log.solves[2].definition.as_ref().unwrap();
    let kinds: Vec<_> = squash
        .def
        .iter()
        .map(|b| pb::Op::decode(b.as_slice()).unwrap().op)
        .collect();
    assert!(kinds
        .iter()
        .any(|k| matches!(k, Some(pb::op::Op::Merge(_)))));
    let result = returned_result(&log);
    assert!(result.metadata.contains_key("containerimage.base.config"));
}

#[tokio::test]
async fn option_beats_directive() {
    let df = "# syntax=squash\n# squash=base\nFROM busybox\n";
    let o = opts(&[
        ("squash-mode", "off"),
        ("squash-method", "auto"),
        ("squash-upstream", "docker/dockerfile:1.7"),
    ]);
    let (code, log) = drive(fake(df), o).await;
    assert_eq!(code, 0);
    // Read all the same: BuildKit's own directives may need our help (see below).
    assert_eq!(log.reads.len(), 1);
    assert_eq!(
        log.solves.len(),
        2,
        "mode off: the read and the Dockerfile build"
    );
    let delegated = &log.solves[1];
    assert_eq!(delegated.frontend, "gateway.v0");
    assert_eq!(delegated.frontend_opt["source"], "docker/dockerfile:1.7");
    assert!(!delegated.frontend_opt.contains_key("squash-mode"));
    assert!(
        delegated.frontend_inputs.is_empty(),
        "nothing to mend: the Dockerfile is the user's own"
    );
    let Some(result::Result::Ref(r)) = &returned_result(&log).result else {
        panic!()
    };
    assert_eq!(r.id, "built");
}

#[tokio::test]
async fn buildkit_directives_below_ours_reach_the_dockerfile_frontend() {
    let df = "# syntax=squash\n# squash=base\n# escape=`\nFROM busybox\nENV P=C:\\x\n";
    let (code, log) = drive(
        fake(df),
        opts(&[("source", "squash"), ("dockerfilekey", "dockerfile")]),
    )
    .await;
    assert_eq!(code, 0);
    let delegated = &log.solves[1];
    assert_eq!(delegated.frontend, "dockerfile.v0");
    assert!(
        !delegated.frontend_opt.contains_key("dockerfilekey"),
        "the Dockerfile frontend must take the input, not a local source"
    );
    let input = &delegated.frontend_inputs["dockerfile"];
    // The source we read, then the mended file on top of it.
    let read = log.solves[0].definition.as_ref().unwrap();
    assert_eq!(input.def[0], read.def[0], "the same local source op");
    let op = pb::Op::decode(input.def[input.def.len() - 2].as_slice()).unwrap();
    let Some(pb::op::Op::File(file)) = op.op else {
        panic!("no file op: {op:?}")
    };
    let Some(pb::file_action::Action::Mkfile(mk)) = &file.actions[0].action else {
        panic!("not a mkfile")
    };
    assert_eq!(mk.path, "/Dockerfile");
    assert_eq!(
        String::from_utf8_lossy(&mk.data),
        "# syntax=squash\n# escape=`\n# squash=base\nFROM busybox\nENV P=C:\\x\n"
    );
    // Our setting still applies.
    let squash = log.solves[2].definition.as_ref().unwrap();
    let kinds: Vec<_> = squash
        .def
        .iter()
        .map(|b| pb::Op::decode(b.as_slice()).unwrap().op)
        .collect();
    assert!(kinds
        .iter()
        .any(|k| matches!(k, Some(pb::op::Op::Merge(_)))));
}

#[tokio::test]
async fn an_unreadable_dockerfile_is_the_dockerfile_frontends_to_report_when_no_directive_counts() {
    let o = opts(&[
        ("squash-mode", "off"),
        ("squash-method", "auto"),
        ("squash-upstream", "docker/dockerfile:1.7"),
        ("squash-min-saving", "0"),
        ("squash-split", ""),
        ("squash-report", "on"),
        ("filename", "Missing.Dockerfile"),
    ]);
    let (code, log) = drive(fake("FROM busybox\n"), o).await;
    assert_eq!(code, 0);
    assert_eq!(log.solves.len(), 2, "the read, then the build all the same");
    returned_result(&log);
    // With a setting left to the directives, not reading them is an error of ours.
    let (_, log) = drive(
        fake("FROM busybox\n"),
        opts(&[("filename", "Missing.Dockerfile")]),
    )
    .await;
    let err = log.returns[0].error.as_ref().expect("an error");
    assert!(
        err.message
            .starts_with("squash-frontend: could not read the Dockerfile Missing.Dockerfile"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn bad_option_ends_in_one_clear_error() {
    let (code, log) = drive(
        fake("FROM busybox\n"),
        opts(&[("build-arg:SQUASH_MODE", "fast")]),
    )
    .await;
    assert_eq!(code, 0, "the error travels in Return");
    assert_eq!(log.returns.len(), 1);
    let err = log.returns[0].error.as_ref().expect("an error");
    assert_eq!(
        err.message,
        "squash-frontend: invalid build argument SQUASH_MODE \"fast\": valid values are full, base, off"
    );
    assert!(err.details.is_empty(), "no Dockerfile line to point at");
    assert!(
        log.solves.iter().all(|s| s.frontend.is_empty()),
        "nothing was built"
    );
}

#[tokio::test]
async fn upstream_errors_are_passed_on_unchanged() {
    let mut f = fake("FROM busybox\n");
    let status = rpc::Status {
        code: 2,
        message: "dockerfile parse error on line 2: unknown instruction: RUNN".into(),
        details: vec![prost_types::Any {
            type_url: "github.com/moby/buildkit/errdefs.Source".into(),
            value: b"{}".to_vec(),
        }],
    };
    f.upstream_error = Some(status.clone());
    let (_, log) = drive(f, opts(&[])).await;
    assert_eq!(log.returns[0].error.as_ref(), Some(&status));
}

#[tokio::test]
async fn a_failing_squash_step_is_said_to_be_ours() {
    let mut f = fake("FROM busybox\n");
    let status = rpc::Status {
        code: 2,
        message: "process \"/bin/squash-frontend sync /squash/final /squash/base\" did not complete successfully: exit code: 1".into(),
        details: vec![prost_types::Any {
            type_url: "github.com/moby/buildkit/errdefs.ExitError".into(),
            value: b"{}".to_vec(),
        }],
    };
    f.squash_error = Some(status.clone());
    let (code, log) = drive(f, opts(&[])).await;
    assert_eq!(code, 0, "the error travels in Return");
    // Nothing of ours reads the build here: the Dockerfile build stays lazy, and the exporter
    // runs it with the squash (a failing RUN is then BuildKit's error, as it words it).
    assert!(!log.solves[1].evaluate, "the delegated build is lazy");
    let err = log.returns[0].error.as_ref().expect("an error");
    assert_eq!(
        err.message,
        format!(
            "squash-frontend: the squash step failed: {}",
            status.message
        )
    );
    assert_eq!((err.code, &err.details), (status.code, &status.details));
}

#[tokio::test]
async fn the_inspect_step_is_the_diffs_lower_side_and_its_refusal_is_named() {
    let tool_def = testkit::sample_definition().0.encode_to_vec();
    let mut f = fake("FROM busybox\n");
    f.tool_def = Some(tool_def.clone());
    let (code, log) = drive(f, opts(&[])).await;
    assert_eq!(code, 0);
    // The read, the build, the squash: the inspect step is part of the squash's own graph.
    assert_eq!(log.solves.len(), 3);
    let squash = log.solves[2].definition.as_ref().unwrap();
    let ops: Vec<pb::Op> = squash
        .def
        .iter()
        .map(|b| pb::Op::decode(b.as_slice()).unwrap())
        .collect();
    let inspect = ops
        .iter()
        .position(|op| matches!(&op.op, Some(pb::op::Op::Exec(e)) if e.meta.as_ref().unwrap().args[1] == "inspect"))
        .expect("an inspect step");
    let diff = ops
        .iter()
        .find(|op| matches!(op.op, Some(pb::op::Op::Diff(_))))
        .expect("a diff");
    assert_eq!(
        diff.inputs[0].digest,
        squash_frontend::llb::digest_of(&squash.def[inspect]),
        "the diff's lower side is the inspect step's output"
    );
    returned_result(&log);

    // The step refused the result: the message says so and where to look.
    let mut f = fake("FROM busybox\n");
    f.tool_def = Some(tool_def);
    f.squash_error = Some(rpc::Status {
        code: 2,
        message: "process \"/bin/squash-frontend inspect /squash/final\" did not complete successfully: exit code: 3".into(),
        details: vec![],
    });
    let (code, log) = drive(f, opts(&[])).await;
    assert_eq!(code, 0);
    let err = log.returns[0].error.as_ref().expect("an error");
    let said = "squash-frontend: the build made a file no image layer can hold: its name starts with .wh., which image layers reserve for whiteouts (the squash step's output above names it; rename it)";
    assert_eq!(err.message, said, "said in words, without the process");

    // The same refusal where the report is read (squash-min-saving, attestations): the read
    // runs the step.
    let refused = rpc::Status {
        code: 2,
        message: "process \"/bin/squash-frontend inspect /squash/final --report /squash/report/report.json\" did not complete successfully: exit code: 3".into(),
        details: vec![],
    };
    let mut f = fake("FROM busybox\n");
    f.tool_def = Some(testkit::sample_definition().0.encode_to_vec());
    f.report_error = Some(refused.clone());
    let (code, log) = drive(f, opts(&[("build-arg:SQUASH_MIN_SAVING", "1MB")])).await;
    assert_eq!(code, 0);
    let err = log.returns[0].error.as_ref().expect("an error");
    assert_eq!(err.message, said, "the read's failure is our step's");

    // Any other failure keeps BuildKit's account of it.
    let mut f = fake("FROM busybox\n");
    f.tool_def = Some(testkit::sample_definition().0.encode_to_vec());
    f.report_error = Some(rpc::Status {
        message: refused.message.replace("exit code: 3", "exit code: 1"),
        ..refused
    });
    let (_, log) = drive(f, opts(&[("build-arg:SQUASH_MIN_SAVING", "1MB")])).await;
    let err = log.returns[0].error.as_ref().expect("an error");
    assert!(
        err.message
            .starts_with("squash-frontend: the squash step failed: process")
            && err.message.ends_with("exit code: 1"),
        "{}",
        err.message
    );
}

/// A report of our in-build step, reclaiming `reclaimed` of 1000 bytes.
fn report_json(reclaimed: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schema": "squash-frontend.report/v1", "frontend": "squash-frontend test", "mode": "full",
        "layers_before": 2, "layers_after": 1, "plain_bytes": 1000,
        "squashed_bytes": 1000 - reclaimed, "reclaimed_bytes": reclaimed, "base_layers": 0,
        "wasted": [], "wasted_files": 0, "wasted_file_bytes": 0
    }))
    .unwrap()
}

#[tokio::test]
async fn below_the_minimum_saving_the_image_is_returned_as_built() {
    let tool_def = testkit::sample_definition().0.encode_to_vec();
    for (reclaimed, squashed) in [(40, false), (60, true)] {
        let mut f = fake("FROM busybox\n");
        f.tool_def = Some(tool_def.clone());
        f.report = Some(report_json(reclaimed));
        let (code, log) = drive(f, opts(&[("build-arg:SQUASH_MIN_SAVING", "5%")])).await;
        assert_eq!(code, 0);
        // The read, the build, the report, the step that says what was decided; then the
        // squash only if it reclaims enough.
        assert!(log.reads.iter().any(|r| r.file_path == "report.json"));
        // The Dockerfile build is evaluated in its own solve before the report's read runs
        // our step: a failing RUN fails there, not as our step.
        assert!(log.solves[1].evaluate, "the delegated build is evaluated");
        assert_eq!(
            log.solves.len(),
            if squashed { 5 } else { 4 },
            "{reclaimed}"
        );
        let said = &log.solves[3];
        assert!(said.evaluate, "run, so that the progress shows it");
        let def = said.definition.as_ref().unwrap();
        let names: Vec<String> = def
            .metadata
            .values()
            .filter_map(|m| {
                let meta = pb::OpMetadata::decode(m.as_slice()).unwrap();
                meta.description.get("llb.customname").cloned()
            })
            .collect();
        let want = if squashed {
            "squash: reclaims 60 B (6.0 %), at least squash-min-saving (5 %): squashed"
        } else {
            "squash: reclaims 40 B (4.0 %), less than squash-min-saving (5 %): the image is returned as built"
        };
        assert_eq!(names, [want]);
        let Some(result::Result::Ref(r)) = &returned_result(&log).result else {
            panic!()
        };
        assert_eq!(r.id, if squashed { "squashed" } else { "built" });
    }
}

#[tokio::test]
async fn the_report_goes_with_the_builds_attestations() {
    let tool_def = testkit::sample_definition().0.encode_to_vec();
    let mut f = fake("FROM busybox\n");
    f.tool_def = Some(tool_def.clone());
    f.report = Some(report_json(100));
    let (_, log) = drive(f, opts(&[("attest:provenance", "mode=min")])).await;
    let result = returned_result(&log);
    let atts = &result.attestations["linux/amd64"].attestation;
    assert_eq!(atts.len(), 1);
    assert_eq!(atts[0].path, "report.json");
    assert_eq!(
        atts[0].in_toto_predicate_type,
        squash_frontend::result::REPORT_PREDICATE
    );
    // Attached as its ref, unread: the exporter runs the step that makes it.
    assert!(log.reads.iter().all(|r| r.file_path != "report.json"));
    assert!(!log.solves[1].evaluate);
    // Without attestations (and without a minimum), nothing waits for the report.
    let mut f = fake("FROM busybox\n");
    f.tool_def = Some(tool_def);
    f.report = Some(report_json(100));
    let (_, log) = drive(f, opts(&[])).await;
    assert!(log.reads.iter().all(|r| r.file_path != "report.json"));
    assert!(returned_result(&log).attestations.is_empty());
}

#[tokio::test]
async fn a_nested_run_passes_the_build_through() {
    // What an upstream squash frontend sees: the upstream setting again (as a build argument and
    // a directive), plus our nested marker. It must build with the Dockerfile frontend, once.
    let df = "# syntax=squash\n# squash-upstream=local/up:1\nFROM busybox\n";
    let o = opts(&[
        ("squash-nested", "1"),
        ("build-arg:SQUASH_UPSTREAM", "local/up:1"),
    ]);
    let (code, log) = drive(fake(df), o).await;
    assert_eq!(code, 0);
    assert!(log.reads.is_empty());
    assert_eq!(log.solves.len(), 1);
    assert_eq!(log.solves[0].frontend, "dockerfile.v0");
    assert!(!log.solves[0].frontend_opt.contains_key("squash-nested"));
    let Some(result::Result::Ref(r)) = &returned_result(&log).result else {
        panic!()
    };
    assert_eq!(r.id, "built", "not squashed: the outer frontend does that");
}

#[tokio::test]
async fn subrequests_are_forwarded_and_returned_as_is() {
    let (code, log) = drive(
        fake("FROM busybox\n"),
        opts(&[("requestid", "frontend.targets")]),
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(log.solves.len(), 1);
    assert!(log.reads.is_empty());
    assert!(
        !log.solves[0].evaluate,
        "an information request builds nothing"
    );
    let result = returned_result(&log);
    assert_eq!(result.metadata["result.txt"], b"targets");
}

#[tokio::test]
async fn explicit_diff_method_on_classic_engine_fails_clearly() {
    let mut f = fake("FROM busybox\n");
    f.llb_caps = vec![("file.base", true), ("mergeop", false), ("diffop", false)];
    let (_, log) = drive(
        f,
        opts(&[("squash-mode", "base"), ("squash-method", "diff")]),
    )
    .await;
    let err = log.returns[0].error.as_ref().expect("an error");
    assert!(
        err.message
            .contains("only enabled with containerd image store backend"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("valid values: auto, diff, sync"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn misplaced_directive_names_the_line() {
    let (_, log) = drive(fake("FROM busybox\n# squash=base\n"), opts(&[])).await;
    let err = log.returns[0].error.as_ref().expect("an error");
    assert!(err.message.contains("Dockerfile line 2"), "{}", err.message);
    // And places the error there, for buildx to show that line.
    assert_eq!(err.details.len(), 1, "{err:?}");
    assert_eq!(err.details[0].type_url, flow::SOURCE_DETAIL);
    let source: serde_json::Value = serde_json::from_slice(&err.details[0].value).unwrap();
    assert_eq!(source["ranges"][0]["start"]["line"], 2, "{source}");
    assert_eq!(source["info"]["filename"], "Dockerfile", "{source}");
}

/// Go's `os.ModeDir`, and a plain file's mode.
const DIR: u32 = (1 << 31) | 0o755;
const FILE: u32 = 0o644;

#[tokio::test]
async fn without_the_report_or_our_image_base_mode_reads_the_changes_and_the_engine_makes_the_layer(
) {
    // Without our own image's definition, base mode without the report is the engine's alone.
    let mut f = fake("FROM busybox\nRUN x\n");
    // Solved in this order: the base, the result, the diff of the two.
    f.trees = Some(vec![
        vec![("/a", FILE), ("/etc", DIR), ("/etc/x", FILE), ("/usr", DIR)],
        vec![("/etc", DIR), ("/etc/y", FILE), ("/usr", DIR)],
        vec![("/etc", DIR), ("/etc/y", FILE)],
    ]);
    let (code, log) = drive(
        f,
        opts(&[("squash-mode", "base"), ("squash-report", "off")]),
    )
    .await;
    assert_eq!(code, 0);
    let read: Vec<(&str, &str)> = log
        .dir_reads
        .iter()
        .map(|r| (r.r#ref.as_str(), r.dir_path.as_str()))
        .collect();
    assert_eq!(
        read,
        [
            ("def-2", "/"),
            ("def-0", "/"),
            ("def-1", "/"),
            ("def-2", "/etc"),
            ("def-0", "/etc"),
            ("def-1", "/etc"),
        ],
        "the diff, then both trees, where the diff holds a directory both have"
    );
    // The squash solved last: the removals, then the copy of the diff, onto the base.
    let squash = log.solves.last().unwrap().definition.as_ref().unwrap();
    let layer = pb::Op::decode(squash.def[squash.def.len() - 2].as_slice()).unwrap();
    let Some(pb::op::Op::File(file)) = layer.op else {
        panic!("the layer is a FileOp: {layer:?}")
    };
    let actions: Vec<String> = file
        .actions
        .iter()
        .map(|a| match &a.action {
            Some(pb::file_action::Action::Rm(rm)) => format!("rm {}", rm.path),
            Some(pb::file_action::Action::Copy(c)) => format!("copy {}", c.src),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(actions, ["rm /a", "rm /etc/x", "copy /"]);
    let result = returned_result(&log);
    assert!(result.metadata.contains_key("containerimage.base.config"));
}

#[tokio::test]
async fn without_the_report_a_failing_step_read_in_the_frontend_is_the_builds_own_error() {
    let mut f = fake("FROM busybox\nRUN x\n");
    f.trees = Some(vec![vec![], vec![], vec![]]);
    let status = rpc::Status {
        code: 2,
        message: "process \"/bin/sh -c x\" did not complete successfully: exit code: 7".into(),
        details: vec![prost_types::Any {
            type_url: "github.com/moby/buildkit/errdefs.Source".into(),
            value: b"{}".to_vec(),
        }],
    };
    f.read_dir_error = Some(status.clone());
    let (_, log) = drive(
        f,
        opts(&[("squash-mode", "base"), ("squash-report", "off")]),
    )
    .await;
    assert_eq!(log.returns[0].error.as_ref(), Some(&status));
}
