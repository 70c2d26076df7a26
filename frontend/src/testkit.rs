//! Fixtures shared by the unit tests, the fake-BuildKit tests (`tests/gateway_flow.rs`) and the
//! fuzz targets: a definition shaped like the Dockerfile frontend's, image configs (the files
//! in `tests/data/`), engine capabilities and our own image. Built only for tests and with the
//! `testkit` feature.

use std::collections::BTreeMap;

use prost::Message;
use serde_json::json;
use squash_proto::pb;

use crate::llb::{digest_of, Output};
use crate::plan::{Caps, Tool};

/// A built image's config: a base entry and one `RUN`, both with times.
pub const CONFIG: &[u8] = include_bytes!("../tests/data/config.json");
/// A base image's config with one layer.
pub const BASE_CONFIG: &[u8] = include_bytes!("../tests/data/base-config.json");
/// A built image's config with every kind of history entry (fractional and plain times, empty
/// and non-empty entries, base and Dockerfile entries) and a key no version of the spec names.
pub const RICH_CONFIG: &[u8] = include_bytes!("../tests/data/config-rich.json");

/// An image source op for `amd64`.
pub fn image_source(identifier: &str) -> pb::Op {
    pb::Op {
        op: Some(pb::op::Op::Source(pb::SourceOp {
            identifier: identifier.into(),
            attrs: Default::default(),
        })),
        platform: Some(amd64()),
        ..Default::default()
    }
}

/// A `RUN` on `on`: an exec op whose `/` mount (input 0) is output 0.
pub fn run_on(on: &Output, cmd: &str) -> pb::Op {
    pb::Op {
        inputs: vec![pb::Input {
            digest: on.digest.clone(),
            index: on.index,
        }],
        op: Some(pb::op::Op::Exec(pb::ExecOp {
            meta: Some(pb::Meta {
                args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
                ..Default::default()
            }),
            mounts: vec![pb::Mount {
                input: 0,
                dest: "/".into(),
                output: 0,
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A definition like the Dockerfile frontend returns: image source -> exec -> terminal, with
/// metadata for the exec and a source map. The source op carries an unknown field (number 99),
/// standing for whatever newer BuildKit versions add: it must survive untouched. Returns the
/// definition and the digests of the source and the exec op.
pub fn sample_definition() -> (pb::Definition, Vec<String>) {
    let mut source =
        image_source("docker-image://docker.io/library/busybox:latest@sha256:aaaa").encode_to_vec();
    source.extend_from_slice(&[0x98, 0x06, 0x01]);
    let source_digest = digest_of(&source);
    let exec = run_on(
        &Output {
            digest: source_digest.clone(),
            index: 0,
        },
        "echo hi > /f",
    )
    .encode_to_vec();
    let exec_digest = digest_of(&exec);
    let terminal = pb::Op {
        inputs: vec![pb::Input {
            digest: exec_digest.clone(),
            index: 0,
        }],
        ..Default::default()
    }
    .encode_to_vec();
    let mut metadata = BTreeMap::new();
    metadata.insert(exec_digest.clone(), vec![0x08, 0x01]);
    let def = pb::Definition {
        def: vec![source, exec, terminal],
        metadata,
        source: vec![0x0a, 0x00],
    };
    (def, vec![source_digest, exec_digest])
}

/// A two-stage build as the Dockerfile frontend names it (`FROM busybox AS deps`, two `RUN`s,
/// then `FROM deps` and one `RUN`): image source -> `[deps 1/3]`... -> `[stage-1 2/2]` ->
/// terminal. Returns the definition and the digests of the source and the three execs.
pub fn staged_definition() -> (pb::Definition, Vec<String>) {
    let mut g = crate::llb::Graph::default();
    let source = g.push(
        image_source("docker-image://docker.io/library/busybox:latest@sha256:aaaa"),
        crate::llb::meta_with_caps(Some("[deps 1/3] FROM docker.io/library/busybox"), &[]),
    );
    let mut digests = vec![source.digest.clone()];
    let mut head = source;
    for (name, cmd) in [
        ("[deps 2/3] RUN apt-get install -y gcc", "deps one"),
        ("[deps 3/3] RUN rm -rf /var/cache", "deps two"),
        ("[stage-1 2/2] RUN make install", "the app"),
    ] {
        head = g.push(
            run_on(&head, cmd),
            crate::llb::meta_with_caps(Some(name), &[]),
        );
        digests.push(head.digest.clone());
    }
    (g.finish(&head).expect("complete"), digests)
}

/// Engine capabilities with DiffOp and MergeOp on (the containerd store) or off (the classic
/// store, with its reason).
pub fn caps(merge_diff: bool) -> Caps {
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

/// Our own image, for the `sync` method (its definition is the sample one).
pub fn tool() -> Tool {
    Tool {
        def: sample_definition().0,
        exe: "/bin/squash-frontend".into(),
        platform: amd64(),
    }
}

/// A built image's config with `layers` layer-making history entries (plus one empty one).
pub fn config_with_layers(layers: usize) -> Vec<u8> {
    let mut history = vec![
        json!({"created": "2024-01-01T00:00:00Z", "created_by": "ENV A=b", "empty_layer": true}),
    ];
    for i in 0..layers {
        history.push(json!({
            "created": format!("2024-01-{:02}T00:00:00Z", i + 2),
            "created_by": format!("RUN step {i}"),
        }));
    }
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": (0..layers).map(|i| format!("sha256:{i}")).collect::<Vec<_>>()},
        "history": history,
    }))
    .expect("serialises")
}

/// A base image's config with `layers` layers.
pub fn base_config_with_layers(layers: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "rootfs": {"type": "layers", "diff_ids": (0..layers).map(|i| format!("sha256:b{i}")).collect::<Vec<_>>()}
    }))
    .expect("serialises")
}

fn amd64() -> pb::Platform {
    pb::Platform {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..Default::default()
    }
}
