//! Shared pieces of the fuzz targets and the seed generator: the input formats the targets
//! read, sample graphs and configs, and the checks on what the library returns.

use std::collections::{BTreeMap, HashSet};

use prost::Message;
use serde_json::Value;
use squash_frontend::llb::{digest_of, Graph, Output};
use squash_frontend::testkit::{base_config_with_layers, config_with_layers};
use squash_proto::pb;

// ---------------------------------------------------------------------------------------------
// options: a text format, one record a line, so that seeds are readable and mutations stay
// meaningful. `D<line>:key=value` is a directive found on Dockerfile line <line>;
// `E:NAME=value` is an environment variable for `opts_from_env`; any other line is a frontend
// option `key=value` (split on the first `=`). In values, the two bytes `\n` stand for a newline.
// ---------------------------------------------------------------------------------------------

/// One decoded `options` input.
#[derive(Debug, Default)]
pub struct OptionsInput {
    pub opts: BTreeMap<String, String>,
    pub directives: BTreeMap<String, (String, usize)>,
    pub env: Vec<(String, String)>,
}

/// Decodes an `options` input (never fails: every byte string is some input).
pub fn parse_options_input(data: &[u8]) -> OptionsInput {
    let text = String::from_utf8_lossy(data);
    let mut input = OptionsInput::default();
    for record in text.split('\n') {
        let unescape = |s: &str| s.replace("\\n", "\n");
        if let Some(rest) = record.strip_prefix("E:") {
            let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
            input.env.push((k.to_string(), unescape(v)));
        } else if let Some(rest) = record.strip_prefix('D') {
            let Some((line, kv)) = rest.split_once(':') else {
                continue;
            };
            let line = line.parse().unwrap_or(0);
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            input.directives.insert(k.to_string(), (unescape(v), line));
        } else if let Some((k, v)) = record.split_once('=') {
            input.opts.insert(k.to_string(), unescape(v));
        }
    }
    input
}

// ---------------------------------------------------------------------------------------------
// definition: two header bytes, then a protobuf `pb::Definition`.
// Byte 0 picks the built image's config: 0xff none, else one with `b % 8` layers.
// Byte 1 picks the base image's config: 0xff none, else one with `b % 8` layers.
// ---------------------------------------------------------------------------------------------

/// The header byte for "no config".
pub const NO_CONFIG: u8 = 0xff;

/// The config a header byte picks.
pub fn pick_config(b: u8, base: bool) -> Option<Vec<u8>> {
    let layers = usize::from(b % 8);
    match (b, base) {
        (NO_CONFIG, _) => None,
        (_, false) => Some(config_with_layers(layers)),
        (_, true) => Some(base_config_with_layers(layers)),
    }
}

/// Re-links a definition whose ops decode, so that mutated graphs get past the digest checks:
/// every input that names no earlier op is pointed at an earlier one (chosen by its old digest's
/// bytes), an op with no earlier op loses its inputs, and the terminal points at the last op.
/// Ops are re-encoded (unknown fields dropped). `None` if an op does not decode or there are
/// fewer than 2.
pub fn relink(def: &pb::Definition) -> Option<pb::Definition> {
    if def.def.len() < 2 {
        return None;
    }
    let mut ops = Vec::with_capacity(def.def.len());
    for bytes in &def.def {
        ops.push(pb::Op::decode(bytes.as_slice()).ok()?);
    }
    let terminal = ops.pop()?;
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(def.def.len());
    let mut digests: Vec<String> = Vec::new();
    let mut metadata = BTreeMap::new();
    for (old_bytes, mut op) in def.def.iter().zip(ops) {
        if digests.is_empty() {
            op.inputs.clear();
        }
        for input in &mut op.inputs {
            if !digests.contains(&input.digest) {
                let pick = input
                    .digest
                    .bytes()
                    .fold(0usize, |a, b| a.wrapping_add(usize::from(b)));
                input.digest = digests[pick % digests.len()].clone();
            }
        }
        let bytes = op.encode_to_vec();
        let digest = digest_of(&bytes);
        if let Some(meta) = def.metadata.get(&digest_of(old_bytes)) {
            metadata.insert(digest.clone(), meta.clone());
        }
        digests.push(digest);
        out.push(bytes);
    }
    let index = terminal.inputs.first().map_or(0, |i| i.index);
    out.push(
        pb::Op {
            inputs: vec![pb::Input {
                digest: digests.last()?.clone(),
                index,
            }],
            ..Default::default()
        }
        .encode_to_vec(),
    );
    Some(pb::Definition {
        def: out,
        metadata,
        source: def.source.clone(),
    })
}

/// Checks a definition `plan` returned: every op decodes, every input (the terminal's
/// included) names an op of the definition, the last op is a terminal with one input, and
/// the whole takes a fresh `Graph` without error. Returns the head the terminal points at and
/// the graph it was added to.
pub fn check_planned_definition(def: &pb::Definition) -> (Graph, Output) {
    let n = def.def.len();
    assert!(n >= 2, "a planned definition has {n} ops");
    let digests: HashSet<String> = def.def[..n - 1].iter().map(|b| digest_of(b)).collect();
    for (i, bytes) in def.def.iter().enumerate() {
        let op = pb::Op::decode(bytes.as_slice())
            .unwrap_or_else(|e| panic!("planned op {i} does not decode: {e}"));
        for input in &op.inputs {
            assert!(
                digests.contains(&input.digest),
                "planned op {i} names input {} that is not in the definition",
                input.digest
            );
        }
        if i == n - 1 {
            assert!(op.op.is_none(), "the last planned op is not a terminal");
            assert_eq!(
                op.inputs.len(),
                1,
                "the terminal has {} inputs",
                op.inputs.len()
            );
        }
    }
    let mut graph = Graph::default();
    let head = graph
        .add_definition(def)
        .unwrap_or_else(|e| panic!("a planned definition is refused by a fresh graph: {e}"))
        .expect("a planned definition is not empty");
    (graph, head)
}

/// Non-empty history entries (`empty_layer` is not `true`), as the library counts layers.
pub fn non_empty(history: &[Value]) -> usize {
    history
        .iter()
        .filter(|h| h.get("empty_layer").and_then(Value::as_bool) != Some(true))
        .count()
}
