//! Writes the seed corpora under fuzz/corpus/<target>/ (run from anywhere):
//! `cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds`.
//! Existing seeds of the same name are overwritten; nothing else is removed.

use std::fs;
use std::path::{Path, PathBuf};

use prost::Message;
use serde_json::json;
use squash_frontend::llb::{self, Graph, Output};
use squash_frontend::testkit::{
    config_with_layers, image_source, run_on, sample_definition, RICH_CONFIG,
};
use squash_fuzz::NO_CONFIG;
use squash_proto::pb;

fn main() -> std::io::Result<()> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = fuzz.join("corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes)
    };

    // options: see squash_fuzz::parse_options_input for the format.
    let long = format!("squash-mode={}\n", "a".repeat(4097));
    for (name, text) in [
        ("empty", ""),
        (
            "precedence",
            "squash-mode=base\nsource=docker/dockerfile\nbuild-arg:SQUASH_MODE=full\nD2:squash=off\n",
        ),
        (
            "build-args-and-directives",
            "build-arg:SQUASH_METHOD=sync\nD2:squash=off\nD3:squash-upstream=docker/dockerfile:1.7\ncmdline=img --x\n",
        ),
        (
            "env",
            "E:BUILDKIT_FRONTEND_OPT_0=squash-mode=full\nE:BUILDKIT_FRONTEND_OPT_1=context:base=docker-image://b\nE:BUILDKIT_FRONTEND_OPT_2=noequals\nE:PATH=/bin\nsquash-upstream=-bad\n",
        ),
        (
            "whitespace-and-bad-method",
            "squash-mode= BASE \\n\nsquash-method=copy\nfilename=Dockerfile\n",
        ),
        ("too-long", long.as_str()),
        (
            "upstream-digest",
            "D1:squash=base\nD1:squash-method=diff\nsquash-upstream=docker.io/docker/dockerfile:1.7@sha256:abc\nbuild-arg:SQUASH_UPSTREAM= \nsquash-foo=x\n",
        ),
    ] {
        write("options", name, text.as_bytes())?;
    }

    // directives: the examples' Dockerfiles and hand-made edge cases.
    let examples = fuzz.join("../examples");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&examples)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    dirs.sort();
    for dir in dirs {
        let dockerfile = dir.join("Dockerfile");
        if dockerfile.is_file() {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            write(
                "directives",
                &format!("example-{name}"),
                &fs::read(dockerfile)?,
            )?;
        }
    }
    for (name, bytes) in [
        (
            "bom-shebang-crlf",
            &b"\xEF\xBB\xBF#!/usr/bin/env buildctl\r\n# syntax=x\r\n# squash=off\r\nFROM y\r\n"[..],
        ),
        (
            "all-keys",
            b"# syntax=local/squash\n# squash = base\n#Squash-Method=sync\n# squash-upstream=docker/dockerfile:1.7\n\nFROM x\n",
        ),
        ("misplaced", b"# syntax=x\nFROM y\n# squash=base\nRUN true\n"),
        ("after-comment", b"# syntax=x\n# hello\n# squash=base\nFROM y\n"),
        ("duplicate", b"# syntax=x\n# squash=base\n# squash=full\nFROM y\n"),
        ("before-syntax", b"# squash=base\n# syntax=x\nFROM y\n"),
        ("no-syntax", b"# escape=`\n# check=skip=all\n# squash=base\nFROM y\n"),
        ("odd", b"#=\n# =x\n\xff\xfe#squash=\xff\n# squash=\n"),
    ] {
        write("directives", name, bytes)?;
    }

    // definition: [config byte, base config byte] + an encoded pb::Definition.
    let def_seed = |cfg: u8, base: u8, def: &pb::Definition| {
        let mut v = vec![cfg, base];
        v.extend(def.encode_to_vec());
        v
    };
    let sample = sample_definition().0;
    write("definition", "sample-base", &def_seed(2, 1, &sample))?;
    write(
        "definition",
        "sample-no-config",
        &def_seed(NO_CONFIG, NO_CONFIG, &sample),
    )?;
    write("definition", "sample-one-layer", &def_seed(1, 1, &sample))?;
    write("definition", "empty", &[2, 1])?;
    write("definition", "multistage", &def_seed(4, 2, &multistage()))?;
    write("definition", "copy-link", &def_seed(3, 1, &copy_link()))?;
    write("definition", "local-root", &def_seed(3, 1, &local_root()))?;
    write("definition", "diff-root", &def_seed(3, 1, &diff_root()))?;

    // config: image configs, good and bad.
    // The library's rich sample, with times in other zones and a number JSON allows but
    // no image needs.
    let mut sample_config: serde_json::Value = serde_json::from_slice(RICH_CONFIG).unwrap();
    sample_config["history"][4]["created"] = json!("2025-05-05T11:00:00+01:00");
    sample_config["history"][5]["created"] = json!("2025-05-05T12:00:00-02:30");
    sample_config["x-unknown"]["n"] = json!(1.5e300);
    write(
        "config",
        "sample",
        &serde_json::to_vec(&sample_config).unwrap(),
    )?;
    write("config", "generated-3", &config_with_layers(3))?;
    for (name, bytes) in [
        ("no-history", &br#"{"os":"linux"}"#[..]),
        ("empty-history", br#"{"os":"linux","architecture":"amd64","config":{"Cmd":["a"],"Env":[]},"history":[]}"#),
        ("bad-history", br#"{"history":3}"#),
        ("array", b"[1]"),
        ("not-json", b"not json"),
        ("odd-entries", br#"{"created":"1999-12-31T23:59:59Z","history":[{"created_by":"x","empty_layer":false},{"created":"yesterday"},{"created":"2000-02-29T00:00:00.5z"}]}"#),
    ] {
        write("config", name, bytes)?;
    }
    println!("seeds written under {}", corpus.display());
    Ok(())
}

/// `FROM img AS builder` + RUN; `FROM runtime` + RUN + `COPY --from=builder` (mkdir, then copy).
fn multistage() -> pb::Definition {
    let mut g = Graph::default();
    let builder = g.push(
        image_source("docker-image://docker.io/library/golang:1@sha256:b"),
        Default::default(),
    );
    let built = g.push(run_on(&builder, "go build"), Default::default());
    let runtime = g.push(
        image_source("docker-image://docker.io/library/alpine:3@sha256:r"),
        Default::default(),
    );
    let ran = g.push(run_on(&runtime, "apk add x"), Default::default());
    let input = |o: &Output| pb::Input {
        digest: o.digest.clone(),
        index: o.index,
    };
    let copy = pb::Op {
        inputs: vec![input(&built), input(&ran)],
        op: Some(pb::op::Op::File(pb::FileOp {
            actions: vec![
                pb::FileAction {
                    input: 1,
                    secondary_input: -1,
                    output: -1,
                    action: Some(pb::file_action::Action::Mkdir(pb::FileActionMkDir {
                        path: "/app".into(),
                        mode: 0o755,
                        make_parents: true,
                        timestamp: -1,
                        ..Default::default()
                    })),
                },
                pb::FileAction {
                    input: 2,
                    secondary_input: 0,
                    output: 0,
                    action: Some(pb::file_action::Action::Copy(pb::FileActionCopy {
                        src: "/out/app".into(),
                        dest: "/app/app".into(),
                        mode: -1,
                        timestamp: -1,
                        ..Default::default()
                    })),
                },
            ],
        })),
        ..Default::default()
    };
    let copied = g.push(
        copy,
        llb::meta_with_caps(Some("COPY --from=builder"), &["file.base"]),
    );
    g.finish(&copied).unwrap()
}

/// `COPY --link` of the local context onto an image: merge(image, copy onto scratch).
fn copy_link() -> pb::Definition {
    let mut g = Graph::default();
    let img = g.push(
        image_source("oci-layout://local/base@sha256:c"),
        Default::default(),
    );
    let local = g.push(local_source(), Default::default());
    let layer = g.push(llb::copy_root_onto_scratch(&local), Default::default());
    let merged = g.push(
        llb::merge(&[&img, &layer]),
        llb::meta_with_caps(None, &["mergeop"]),
    );
    let ran = g.push(run_on(&merged, "true"), Default::default());
    g.finish(&ran).unwrap()
}

/// A stage rooted in the local context, not an image.
fn local_root() -> pb::Definition {
    let mut g = Graph::default();
    let local = g.push(local_source(), Default::default());
    let ran = g.push(run_on(&local, "make"), Default::default());
    g.finish(&ran).unwrap()
}

/// A stage whose root is a diff.
fn diff_root() -> pb::Definition {
    let mut g = Graph::default();
    let a = g.push(
        image_source("docker-image://a@sha256:1"),
        Default::default(),
    );
    let b = g.push(run_on(&a, "touch /x"), Default::default());
    let d = g.push(llb::diff(&a, &b), Default::default());
    let ran = g.push(run_on(&d, "true"), Default::default());
    g.finish(&ran).unwrap()
}

fn local_source() -> pb::Op {
    pb::Op {
        op: Some(pb::op::Op::Source(pb::SourceOp {
            identifier: "local://context".into(),
            attrs: [("local.sharedkeyhint".to_string(), "context".to_string())]
                .into_iter()
                .collect(),
        })),
        ..Default::default()
    }
}
