//! LLB graphs: taking in a definition BuildKit returned, appending our own ops, handing it back.
//!
//! Received op bytes are never re-encoded: an op's digest is sha256 over its exact bytes, and
//! prost would drop fields our `.proto` subset does not name. Every input digest is checked
//! against the graph before anything is sent, because a definition with a dangling input
//! crashes some engines' solvers instead of failing the build.

use std::collections::{BTreeMap, HashMap};

use prost::Message;
use sha2::{Digest, Sha256};
use squash_proto::pb;

use crate::request::DockerfileSource;

/// Why a definition cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LlbError {
    /// An op's bytes are not an op.
    #[error("definition op {index} does not decode: {reason}")]
    Decode {
        /// Its position in the definition.
        index: usize,
        /// What the decoder said.
        reason: String,
    },
    /// The last op is not a terminal.
    #[error("definition has no terminal op (it needs at least 2 ops, the last one a single-input terminal)")]
    NoTerminal,
    /// An op's bytes could not be read field by field to rebase it.
    #[error("op {digest} could not be rebased: {reason}")]
    Rebase {
        /// The op.
        digest: String,
        /// What was wrong with its bytes.
        reason: String,
    },
    /// An input names an op that is not there.
    #[error("op {digest} names input {input} that is not in the definition")]
    MissingInput {
        /// The op whose input it is (`terminal` for the terminal).
        digest: String,
        /// The missing op's digest.
        input: String,
    },
}

/// One output of one op: what an `Input` points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Output {
    /// The op's digest.
    pub digest: String,
    /// The output's index.
    pub index: i64,
}

impl Output {
    fn input(&self) -> pb::Input {
        pb::Input {
            digest: self.digest.clone(),
            index: self.index,
        }
    }
}

/// The digest BuildKit gives an op: sha256 over its marshalled bytes.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A set of ops keyed by digest, kept as the exact bytes they arrived or were built with.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    order: Vec<String>,
    ops: HashMap<String, (Vec<u8>, pb::Op)>,
    metadata: BTreeMap<String, Vec<u8>>,
    source: Vec<u8>,
    /// Ops added from now on are never taken from the cache (`--no-cache`).
    ignore_cache: bool,
}

impl Graph {
    /// Takes in a definition (not its terminal) and returns the output its terminal points at,
    /// or `None` for an empty definition (scratch).
    pub fn add_definition(&mut self, def: &pb::Definition) -> Result<Option<Output>, LlbError> {
        if def.def.is_empty() {
            return Ok(None);
        }
        if def.def.len() < 2 {
            return Err(LlbError::NoTerminal);
        }
        let mut decoded = Vec::with_capacity(def.def.len());
        for (index, bytes) in def.def.iter().enumerate() {
            let op = pb::Op::decode(bytes.as_slice()).map_err(|e| LlbError::Decode {
                index,
                reason: e.to_string(),
            })?;
            decoded.push(op);
        }
        let terminal = decoded.pop().ok_or(LlbError::NoTerminal)?;
        if terminal.op.is_some() || terminal.inputs.len() != 1 {
            return Err(LlbError::NoTerminal);
        }
        let body = &def.def[..def.def.len() - 1];
        let mut added = Vec::new();
        for (bytes, op) in body.iter().zip(decoded) {
            let digest = digest_of(bytes);
            if !self.ops.contains_key(&digest) {
                self.order.push(digest.clone());
                self.ops.insert(digest.clone(), (bytes.clone(), op));
                added.push(digest);
            }
        }
        for (digest, meta) in &def.metadata {
            if self.ops.contains_key(digest) {
                self.metadata
                    .entry(digest.clone())
                    .or_insert_with(|| meta.clone());
            }
        }
        if self.ignore_cache {
            for digest in &added {
                let meta = self
                    .metadata
                    .get(digest)
                    .and_then(|m| pb::OpMetadata::decode(m.as_slice()).ok())
                    .unwrap_or_default();
                self.metadata
                    .insert(digest.clone(), never_cached(meta).encode_to_vec());
            }
        }
        if self.source.is_empty() {
            self.source = def.source.clone();
        }
        let head = &terminal.inputs[0];
        let head = Output {
            digest: head.digest.clone(),
            index: head.index,
        };
        self.check_inputs(added.iter().chain(std::iter::once(&head.digest)))?;
        if !self.ops.contains_key(&head.digest) {
            return Err(LlbError::MissingInput {
                digest: "terminal".into(),
                input: head.digest,
            });
        }
        Ok(Some(head))
    }

    fn check_inputs<'a>(&self, digests: impl Iterator<Item = &'a String>) -> Result<(), LlbError> {
        for digest in digests {
            let Some((_, op)) = self.ops.get(digest) else {
                continue;
            };
            for input in &op.inputs {
                if !self.ops.contains_key(&input.digest) {
                    return Err(LlbError::MissingInput {
                        digest: digest.clone(),
                        input: input.digest.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// From now on, every op added (pushed, or taken in with a definition) is marked never to be
    /// taken from the cache, as `--no-cache` asks for every step of the build.
    pub fn set_ignore_cache(&mut self, on: bool) {
        self.ignore_cache = on;
    }

    /// The name the build's progress shows for the op `digest` (its `llb.customname`), if it has
    /// one.
    pub fn name(&self, digest: &str) -> Option<String> {
        let meta = pb::OpMetadata::decode(self.metadata.get(digest)?.as_slice()).ok()?;
        meta.description.get("llb.customname").cloned()
    }

    /// The decoded op with this digest.
    pub fn op(&self, digest: &str) -> Option<&pb::Op> {
        self.ops.get(digest).map(|(_, op)| op)
    }

    /// Adds an op we built, with its metadata; returns its first output.
    pub fn push(&mut self, mut op: pb::Op, meta: pb::OpMetadata) -> Output {
        // Go always emits an empty constraints message; doing the same gives our ops the same
        // bytes (and cache keys) as the equivalent ops the Dockerfile frontend makes.
        op.constraints.get_or_insert_with(Default::default);
        let bytes = op.encode_to_vec();
        let digest = digest_of(&bytes);
        if !self.ops.contains_key(&digest) {
            self.order.push(digest.clone());
            self.ops.insert(digest.clone(), (bytes, op));
        }
        let meta = if self.ignore_cache {
            never_cached(meta)
        } else {
            meta
        };
        self.metadata.insert(digest.clone(), meta.encode_to_vec());
        Output { digest, index: 0 }
    }

    /// The definition whose result is `head`: every op, then a terminal pointing at `head`.
    pub fn finish(&self, head: &Output) -> Result<pb::Definition, LlbError> {
        if !self.ops.contains_key(&head.digest) {
            return Err(LlbError::MissingInput {
                digest: "terminal".into(),
                input: head.digest.clone(),
            });
        }
        self.check_inputs(self.order.iter())?;
        let mut def: Vec<Vec<u8>> = self.order.iter().map(|d| self.ops[d].0.clone()).collect();
        let terminal = pb::Op {
            inputs: vec![head.input()],
            constraints: Some(Default::default()),
            ..Default::default()
        }
        .encode_to_vec();
        let terminal_digest = digest_of(&terminal);
        def.push(terminal);
        let mut metadata = self.metadata.clone();
        let terminal_meta = meta_with_caps(None, &["constraints", "platform"]);
        let terminal_meta = if self.ignore_cache {
            never_cached(terminal_meta)
        } else {
            terminal_meta
        };
        metadata.insert(terminal_digest, terminal_meta.encode_to_vec());
        Ok(pb::Definition {
            def,
            metadata,
            source: self.source.clone(),
        })
    }
}

impl Graph {
    /// Rebases the ops that lead from `from` to `head` onto `onto`: each op on the way from
    /// `from` to `head` is copied with its inputs that named `from` naming `onto` instead, and
    /// those that named a copied op naming its copy. Returns the digest of each copy, keyed by
    /// the digest of the op it copies (its outputs keep their indexes); `head`'s is there too
    /// (unless `head` is `from`).
    ///
    /// The copies keep every byte of the ops but their inputs (they are rewritten field by
    /// field, so fields this crate's protobuf subset does not know stay as they came), the
    /// ops' metadata (progress names, caps, cache flags) and their places in the Dockerfile
    /// (the definition's source map). Ops that do not lead to `head` (such as ours that read
    /// `from` itself) and the old ops stay as they are.
    pub fn rebase(
        &mut self,
        head: &Output,
        from: &Output,
        onto: &Output,
    ) -> Result<HashMap<String, String>, LlbError> {
        // The ops on the way: those that lead to `head` and read `from`, directly or not.
        let mut order = Vec::new();
        let mut seen: HashMap<String, bool> = HashMap::new();
        self.on_the_way(&head.digest, &from.digest, &mut seen, &mut order);
        let mut renamed: HashMap<String, String> = HashMap::new();
        for digest in order {
            let rebase_error = |reason: String| LlbError::Rebase {
                digest: digest.clone(),
                reason,
            };
            let new_bytes = rebase_inputs(&self.ops[&digest].0, |input| {
                if input.digest == from.digest && input.index == from.index {
                    Some(onto.input())
                } else {
                    renamed.get(&input.digest).map(|d| pb::Input {
                        digest: d.clone(),
                        index: input.index,
                    })
                }
            })
            .map_err(rebase_error)?;
            let new_op =
                pb::Op::decode(new_bytes.as_slice()).map_err(|e| rebase_error(e.to_string()))?;
            let new_digest = digest_of(&new_bytes);
            if let Some(meta) = self.metadata.get(&digest).cloned() {
                self.metadata.insert(new_digest.clone(), meta);
            }
            if !self.ops.contains_key(&new_digest) {
                self.order.push(new_digest.clone());
                self.ops.insert(new_digest.clone(), (new_bytes, new_op));
            }
            renamed.insert(digest, new_digest);
        }
        // A source map that does not read is left as it came: it only places errors.
        if let Ok(source) = source_renamed(&self.source, &renamed) {
            self.source = source;
        }
        Ok(renamed)
    }

    /// Puts into `order` (inputs first) the ops that lead to `digest` and read `from`; `seen`
    /// says for each op visited whether it reads `from`.
    fn on_the_way(
        &self,
        digest: &str,
        from: &str,
        seen: &mut HashMap<String, bool>,
        order: &mut Vec<String>,
    ) -> bool {
        if digest == from {
            return true;
        }
        if let Some(&reads) = seen.get(digest) {
            return reads;
        }
        seen.insert(digest.to_string(), false);
        let Some((_, op)) = self.ops.get(digest) else {
            return false;
        };
        let mut reads = false;
        for input in &op.inputs {
            reads |= self.on_the_way(&input.digest, from, seen, order);
        }
        seen.insert(digest.to_string(), reads);
        if reads {
            order.push(digest.to_string());
        }
        reads
    }
}

/// One top-level field of a protobuf message: its number, all its bytes (key included), and
/// the body of a length-delimited one.
struct Field<'a> {
    tag: u32,
    whole: &'a [u8],
    body: Option<&'a [u8]>,
}

/// The top-level fields of the message `bytes`, in order, as they are on the wire.
fn fields(bytes: &[u8]) -> Result<Vec<Field<'_>>, String> {
    use prost::encoding::{decode_key, decode_varint, WireType};
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let start = rest;
        let (tag, wire) = decode_key(&mut rest).map_err(|e| e.to_string())?;
        let body = match wire {
            WireType::Varint => {
                decode_varint(&mut rest).map_err(|e| e.to_string())?;
                None
            }
            WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                let n = if wire == WireType::SixtyFourBit { 8 } else { 4 };
                if rest.len() < n {
                    return Err("a field runs past the end".into());
                }
                rest = &rest[n..];
                None
            }
            WireType::LengthDelimited => {
                let n = decode_varint(&mut rest).map_err(|e| e.to_string())? as usize;
                if rest.len() < n {
                    return Err("a field runs past the end".into());
                }
                let (body, after) = rest.split_at(n);
                rest = after;
                Some(body)
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(format!("field {tag} is a group"));
            }
        };
        out.push(Field {
            tag,
            whole: &start[..start.len() - rest.len()],
            body,
        });
    }
    Ok(out)
}

/// `bytes` (an `Op`) with each of its inputs (field 1) replaced where `new` gives another;
/// every other field is copied as it is.
fn rebase_inputs(
    bytes: &[u8],
    mut new: impl FnMut(&pb::Input) -> Option<pb::Input>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(bytes.len());
    for field in fields(bytes)? {
        match field.body {
            Some(body) if field.tag == 1 => {
                let input = pb::Input::decode(body).map_err(|e| e.to_string())?;
                let input = new(&input).unwrap_or(input);
                prost::encoding::message::encode(1, &input, &mut out);
            }
            _ => out.extend_from_slice(field.whole),
        }
    }
    Ok(out)
}

/// The definition's source map (`pb.Source`: where each op comes from in the Dockerfile; its
/// field 1 is the map from op digest to places) with each renamed op's places under its new
/// digest as well: a copy of its entry, the key replaced, after the whole source (a map's
/// entries come in any order).
fn source_renamed(source: &[u8], renamed: &HashMap<String, String>) -> Result<Vec<u8>, String> {
    let mut out = source.to_vec();
    for entry in fields(source)? {
        let Some(body) = entry.body.filter(|_| entry.tag == 1) else {
            continue;
        };
        let mut key = None;
        let mut rest = Vec::new();
        for field in fields(body)? {
            match field.body {
                Some(k) if field.tag == 1 => key = Some(String::from_utf8_lossy(k).into_owned()),
                _ => rest.extend_from_slice(field.whole),
            }
        }
        if let Some(new) = key.and_then(|k| renamed.get(&k)) {
            let mut copy = Vec::new();
            prost::encoding::string::encode(1, new, &mut copy);
            copy.extend_from_slice(&rest);
            prost::encoding::bytes::encode(1, &copy, &mut out);
        }
    }
    Ok(out)
}

/// `meta`, marked never to be taken from the cache.
fn never_cached(mut meta: pb::OpMetadata) -> pb::OpMetadata {
    meta.ignore_cache = true;
    meta.caps.insert("meta.ignorecache".into(), true);
    meta
}

/// Op metadata with a progress name (if any) and the caps the op needs.
pub fn meta_with_caps(name: Option<&str>, caps: &[&str]) -> pb::OpMetadata {
    let mut meta = pb::OpMetadata::default();
    for cap in caps {
        meta.caps.insert((*cap).to_string(), true);
    }
    if let Some(name) = name {
        meta.description
            .insert("llb.customname".into(), name.to_string());
        meta.caps.insert("meta.description".into(), true);
    }
    meta
}

/// `scratch` + a copy of `/` from `from`: exactly the FileOp that `COPY --from=x / /` makes in
/// a `FROM scratch` stage (mode and times kept), so the two share cache.
pub fn copy_root_onto_scratch(from: &Output) -> pb::Op {
    let copy = copy_root_action();
    pb::Op {
        inputs: vec![from.input()],
        op: Some(pb::op::Op::File(pb::FileOp {
            actions: vec![pb::FileAction {
                input: -1,
                secondary_input: 0,
                output: 0,
                action: Some(pb::file_action::Action::Copy(copy)),
            }],
        })),
        ..Default::default()
    }
}

/// A copy of `/` of the secondary input onto `/`, as `COPY --from=x / /` makes it: contents,
/// modes, owners and times kept.
pub fn copy_root_action() -> pb::FileActionCopy {
    pb::FileActionCopy {
        src: "/".into(),
        dest: "/".into(),
        mode: -1,
        follow_symlink: true,
        dir_copy_contents: true,
        create_dest_path: true,
        allow_wildcard: true,
        allow_empty_wildcard: true,
        timestamp: -1,
        ..Default::default()
    }
}

/// `scratch` + a copy of the `paths` (absolute) of `from`, with the directories above them: one
/// layer, keyed by the content of those paths alone, so that it stays cached while they stay the
/// same.
pub fn copy_paths_onto_scratch(from: &Output, paths: &[String]) -> pb::Op {
    let mut op = copy_root_onto_scratch(from);
    if let Some(pb::op::Op::File(file)) = &mut op.op {
        if let Some(pb::file_action::Action::Copy(copy)) = &mut file.actions[0].action {
            copy.include_patterns = paths
                .iter()
                .map(|p| p.trim_start_matches('/').to_string())
                .collect();
        }
    }
    op
}

/// The caps [`copy_paths_onto_scratch`] needs.
pub const COPY_PATHS_CAPS: &[&str] = &["file.base", "file.copy.includeexcludepatterns"];

/// A no-op `mkdir /` on `on` (on scratch for `None`): a new snapshot with no changes, outside
/// the chain of anything built on `on`, so that a diff against it is computed as one layer.
/// (A diff against scratch itself is not: it exports as the upper's own layers.)
pub fn mkdir_root(on: Option<&Output>) -> pb::Op {
    mkdir(on, "/")
}

/// A step that only shows `name` in the build's progress: a directory made on scratch, which
/// nothing uses. How the frontend says what it decided where no step of the build would (a
/// cached step prints nothing). The directory is named after `name`, so that two notes are two
/// ops (BuildKit shows one op once, under one name).
pub fn note(name: &str) -> Result<pb::Definition, LlbError> {
    let mut g = Graph::default();
    let tag = &hex::encode(Sha256::digest(name.as_bytes()))[..16];
    let out = g.push(
        mkdir(None, &format!("/squash-frontend-{tag}")),
        meta_with_caps(Some(name), &["file.base"]),
    );
    g.finish(&out)
}

/// `mkdir path` on `on` (on scratch for `None`).
fn mkdir(on: Option<&Output>, path: &str) -> pb::Op {
    pb::Op {
        inputs: on.map(Output::input).into_iter().collect(),
        op: Some(pb::op::Op::File(pb::FileOp {
            actions: vec![pb::FileAction {
                input: if on.is_some() { 0 } else { -1 },
                secondary_input: -1,
                output: 0,
                action: Some(pb::file_action::Action::Mkdir(pb::FileActionMkDir {
                    path: path.into(),
                    mode: 0o755,
                    timestamp: -1,
                    ..Default::default()
                })),
            }],
        })),
        ..Default::default()
    }
}

/// The changes from `lower` to `upper`.
pub fn diff(lower: &Output, upper: &Output) -> pb::Op {
    pb::Op {
        inputs: vec![lower.input(), upper.input()],
        op: Some(pb::op::Op::Diff(pb::DiffOp {
            lower: Some(pb::LowerDiffInput { input: 0 }),
            upper: Some(pb::UpperDiffInput { input: 1 }),
        })),
        ..Default::default()
    }
}

/// `inputs` stacked in order.
pub fn merge(inputs: &[&Output]) -> pb::Op {
    pb::Op {
        inputs: inputs.iter().map(|o| o.input()).collect(),
        op: Some(pb::op::Op::Merge(pb::MergeOp {
            inputs: (0..inputs.len() as i64)
                .map(|input| pb::MergeInput { input })
                .collect(),
        })),
        ..Default::default()
    }
}

/// A definition of the local source holding the Dockerfile, limited to the Dockerfile and its
/// ignore file, read the way the Dockerfile frontend reads it.
pub fn dockerfile_source(source: &DockerfileSource) -> pb::Definition {
    let mut attrs = BTreeMap::new();
    attrs.insert("local.session".to_string(), source.session.clone());
    attrs.insert(
        "local.followpaths".to_string(),
        serde_json::to_string(&source.follow_paths()).expect("strings serialise"),
    );
    attrs.insert("local.sharedkeyhint".to_string(), source.local_name.clone());
    attrs.insert("local.differ".to_string(), "none".to_string());
    let op = pb::Op {
        op: Some(pb::op::Op::Source(pb::SourceOp {
            identifier: format!("local://{}", source.local_name),
            attrs,
        })),
        ..Default::default()
    };
    let mut graph = Graph::default();
    let out = graph.push(
        op,
        meta_with_caps(
            Some(&format!(
                "[internal] squash: read directives from {}",
                source.filename
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

/// `on` with the file at `path` (relative to its root) replaced by one holding `data` (mode
/// 0644, owned by root, times taken from nothing: the build's own time).
pub fn mkfile(on: &Output, path: &str, data: Vec<u8>) -> pb::Op {
    pb::Op {
        inputs: vec![on.input()],
        op: Some(pb::op::Op::File(pb::FileOp {
            actions: vec![pb::FileAction {
                input: 0,
                secondary_input: -1,
                output: 0,
                action: Some(pb::file_action::Action::Mkfile(pb::FileActionMkFile {
                    path: format!("/{}", path.trim_start_matches('/')),
                    mode: 0o644,
                    data,
                    timestamp: -1,
                    ..Default::default()
                })),
            }],
        })),
        ..Default::default()
    }
}

/// The definition `def` with its file at `path` replaced by one holding `data`: how the
/// Dockerfile frontend is handed a Dockerfile we mended.
pub fn replace_file(
    def: &pb::Definition,
    path: &str,
    data: Vec<u8>,
    name: &str,
) -> Result<pb::Definition, LlbError> {
    let mut graph = Graph::default();
    let head = graph.add_definition(def)?.ok_or(LlbError::NoTerminal)?;
    let out = graph.push(
        mkfile(&head, path, data),
        meta_with_caps(Some(name), &["file.base"]),
    );
    graph.finish(&out)
}

/// Where the sync step mounts the finished image (read-only).
pub const SYNC_FINAL: &str = "/squash/final";
/// Where the sync step mounts the base image (writable; its changes become the new layer).
pub const SYNC_BASE: &str = "/squash/base";

/// Where the inspect step mounts the base (writable, left as it is; output 0).
pub const INSPECT_BASE: &str = "/squash/base";

/// Where our in-build steps find the filesystems a report is made of: `base` and `1`..`n`.
pub const REPORT_STATES: &str = "/squash/states";
/// Where they write the report (a writable mount that starts empty; output 1).
pub const REPORT_DIR: &str = "/squash/report";
/// The report's file name in [`REPORT_DIR`].
pub const REPORT_FILE: &str = "report.json";

/// What our in-build step also reports on (see [`crate::report`]): the filesystem before the
/// build's first step and after each.
#[derive(Debug, Clone)]
pub struct Reporting<'a> {
    /// Before the first step: the base image's root (`None` for `scratch`).
    pub base: Option<&'a Output>,
    /// After each step, in order.
    pub states: &'a [Output],
    /// What the report is to say.
    pub request: crate::report::Request,
    /// Our [`account_exec`] step of the first steps, and how many it covers: their
    /// filesystems (and the base's) are then not mounted, and the report goes on from there.
    pub resume: Option<(Output, usize)>,
    /// BuildKit's diffs of the states read after the resumed ones, each from the state before
    /// it, in order (empty: none): only the paths they hold are read
    /// ([`crate::report::Request::changed`]).
    pub changed: Vec<Output>,
}

impl Reporting<'_> {
    /// The filesystems to mount, named as the in-build step finds them under
    /// [`REPORT_STATES`], and the request with where the resumed accounting is.
    fn mounts(&self) -> (Vec<(String, &Output)>, crate::report::Request) {
        let mut request = self.request.clone();
        let skip = self.resume.as_ref().map_or(0, |(_, n)| *n);
        let base = self.base.filter(|_| self.resume.is_none());
        let mut named: Vec<(String, &Output)> = base
            .map(|b| ("base".to_string(), b))
            .into_iter()
            .chain(
                self.states
                    .iter()
                    .enumerate()
                    .skip(skip)
                    .map(|(k, s)| ((k + 1).to_string(), s)),
            )
            .collect();
        if let Some((saved, steps)) = &self.resume {
            named.push((RESUME.to_string(), saved));
            request.resume = Some(crate::report::Resume {
                file: format!("{REPORT_STATES}/{RESUME}/{ACCOUNTING_FILE}"),
                steps: *steps,
            });
        }
        if !self.changed.is_empty() {
            request.changed = true;
            named.extend(self.changed_names().zip(&self.changed));
        }
        (named, request)
    }

    /// The names of the diffs of [`Reporting::changed`] under [`REPORT_STATES`]: `<k>.changed`
    /// beside the state `<k>` they lead to.
    fn changed_names(&self) -> impl Iterator<Item = String> + '_ {
        let skip = self.resume.as_ref().map_or(0, |(_, n)| *n);
        (0..self.changed.len()).map(move |i| changed_name(skip + i + 1))
    }

    /// Where the step finds the diffs of [`Reporting::changed`].
    fn changed_dirs(&self) -> Vec<String> {
        self.changed_names()
            .map(|name| format!("{REPORT_STATES}/{name}"))
            .collect()
    }

    /// `mounts` and `inputs` for the filesystems, keyed by their definitions.
    fn add_to(&self, inputs: &mut Vec<pb::Input>, mounts: &mut Vec<pb::Mount>) -> String {
        let (named, request) = self.mounts();
        for (name, state) in named {
            inputs.push(state.input());
            mounts.push(by_definition(mount(
                inputs.len() as i64 - 1,
                &format!("{REPORT_STATES}/{name}"),
                -1,
                true,
            )));
        }
        serde_json::to_string(&request).expect("plain data serialises")
    }
}

/// The name under [`REPORT_STATES`] of BuildKit's diff that leads to the state `state` (counted
/// from 1), beside that state's own.
fn changed_name(state: usize) -> String {
    format!("{state}.changed")
}

/// Where a resumed report finds the saved accounting, under [`REPORT_STATES`].
const RESUME: &str = "resume";
/// The saved accounting's file name (in [`REPORT_DIR`] of our [`account_exec`] step).
pub const ACCOUNTING_FILE: &str = "accounting";

/// The environment variable our in-build steps read the report's request from (JSON). Not an
/// argument: where the export runs a step that fails, BuildKit's error line quotes the
/// process's arguments, and the request would make that line thousands of characters long.
pub const REQUEST_ENV: &str = "SQUASH_REPORT_REQUEST";

/// A mount of `input` at `dest` (read-only or writable), as output `output` (-1: none).
fn mount(input: i64, dest: &str, output: i64, readonly: bool) -> pb::Mount {
    pb::Mount {
        input,
        dest: dest.into(),
        output,
        readonly,
        ..Default::default()
    }
}

/// `m`, keyed by its input's definition, not its content. Read-only: a cached squash (or one
/// whose cache was imported) then needs no copy of the finished image or of any step's
/// filesystem at all. Writable: BuildKit keys a writable mount of a whole state by its content
/// by default (solver/llbsolver/ops/exec.go, getMountDeps), so our step onto one state would be
/// answered from the cache with our step onto another state of the same content, whose output
/// sits on that state's layers, not on these.
fn by_definition(m: pb::Mount) -> pb::Mount {
    pb::Mount {
        content_cache: pb::MountContentCache::Off as i32,
        ..m
    }
}

/// A run of our own binary's `account` subcommand, in our own image: it reads the filesystems
/// `report` names and saves what they cost ([`crate::report::Accounting::save`]) to
/// [`ACCOUNTING_FILE`] in an empty mount at [`REPORT_DIR`], its output 0, for a later step to
/// go on from. No network.
pub fn account_exec(
    tool: &Output,
    exe: &str,
    report: &Reporting<'_>,
    platform: pb::Platform,
) -> pb::Op {
    let mut inputs = vec![tool.input()];
    // Read-only with no output: see `tool_exec`.
    let mut mounts = vec![mount(0, "/", -1, true), mount(-1, REPORT_DIR, 0, false)];
    let request = report.add_to(&mut inputs, &mut mounts);
    let args = vec![
        exe.to_string(),
        "account".into(),
        format!("{REPORT_DIR}/{ACCOUNTING_FILE}"),
    ];
    let env = vec![format!("{REQUEST_ENV}={request}")];
    exec_op(inputs, args, env, mounts, platform)
}

/// A run of our own binary's `sync` subcommand, in our own image, that makes a writable mount of
/// `base` (an empty one for `None`) equal to `finished` (with `only`: in those paths alone,
/// relative to the root); output 0 is that mount: the base plus one layer of changes; output 1
/// holds its report, where it makes one. Where the report comes with BuildKit's diffs of the
/// states it reads ([`Reporting::changed`]; `base` then holds what the state before the first of
/// them holds), the sync looks only at the paths they hold (`--changed`).
pub fn sync_exec(
    tool: &Output,
    exe: &str,
    finished: &Output,
    base: Option<&Output>,
    only: &[String],
    report: Option<&Reporting<'_>>,
    platform: pb::Platform,
) -> pb::Op {
    let changed = report.map(Reporting::changed_dirs).unwrap_or_default();
    let args = sync_args(exe, only, &changed);
    tool_exec(tool, args, finished, (base, SYNC_BASE), report, platform)
}

/// Our binary's `sync` command line: `--only` the paths `only`, else `--changed` the mounted
/// diffs `changed`, where there are any.
fn sync_args(exe: &str, only: &[String], changed: &[String]) -> Vec<String> {
    let mut args = vec![
        exe.to_string(),
        "sync".into(),
        SYNC_FINAL.into(),
        SYNC_BASE.into(),
    ];
    if !only.is_empty() {
        args.extend(["--only".to_string(), only.join(",")]);
    } else if !changed.is_empty() {
        args.extend(["--changed".to_string(), changed.join(",")]);
    }
    args
}

/// [`sync_exec`] without a report, reading only the paths BuildKit's diffs `changed` hold (of
/// each step from the one before, in order; `base` holds what the state before the first of
/// them holds): each is mounted read-only where a report's request would mount it, and named
/// in `--changed`.
pub fn sync_exec_changed(
    tool: &Output,
    exe: &str,
    finished: &Output,
    base: Option<&Output>,
    changed: &[Output],
    platform: pb::Platform,
) -> pb::Op {
    let dirs: Vec<String> = (1..=changed.len())
        .map(|k| format!("{REPORT_STATES}/{}", changed_name(k)))
        .collect();
    let args = sync_args(exe, &[], &dirs);
    let mut op = tool_exec(tool, args, finished, (base, SYNC_BASE), None, platform);
    if let Some(pb::op::Op::Exec(exec)) = &mut op.op {
        for (diff, dir) in changed.iter().zip(&dirs) {
            op.inputs.push(diff.input());
            let input = op.inputs.len() as i64 - 1;
            exec.mounts.push(by_definition(mount(input, dir, -1, true)));
        }
    }
    op
}

/// A run of our own binary's `inspect` subcommand, in our own image, over `finished` (mounted
/// read-only); it fails when `finished` holds what no layer can hold. Output 0 is its writable
/// mount of `base` (an empty one for `None`), which it leaves as it was: a new snapshot with
/// `base`'s content, outside `finished`'s chain; output 1 holds its report.
pub fn inspect_exec(
    tool: &Output,
    exe: &str,
    finished: &Output,
    base: Option<&Output>,
    report: &Reporting<'_>,
    platform: pb::Platform,
) -> pb::Op {
    tool_exec(
        tool,
        vec![exe.to_string(), "inspect".into(), SYNC_FINAL.into()],
        finished,
        (base, INSPECT_BASE),
        Some(report),
        platform,
    )
}

/// Our binary run with `args` in our own image (`tool`), `finished` mounted read-only at
/// [`SYNC_FINAL`], a writable mount (of `output.0`, empty for `None`) at `output.1` that is the
/// op's output 0, and, with a report, `--report FILE` after `args` and the request in
/// [`REQUEST_ENV`], the report's
/// filesystems read-only under [`REPORT_STATES`] and an empty mount at [`REPORT_DIR`], output 1.
/// No network.
fn tool_exec(
    tool: &Output,
    mut args: Vec<String>,
    finished: &Output,
    output: (Option<&Output>, &str),
    report: Option<&Reporting<'_>>,
    platform: pb::Platform,
) -> pb::Op {
    let (writable, at) = output;
    let mut inputs: Vec<pb::Input> = vec![tool.input(), finished.input()];
    let mut mounts = vec![
        // Read-only with no output: BuildKit then runs on a throw-away writable copy in which
        // runc can create /proc and /dev (our image is FROM scratch). Writable with no output
        // mounts the cached image itself, which is read-only on the containerd store: runc
        // fails to create /proc there.
        mount(0, "/", -1, true),
        by_definition(mount(1, SYNC_FINAL, -1, true)),
    ];
    let writable_input = match writable {
        Some(w) => {
            inputs.push(w.input());
            inputs.len() as i64 - 1
        }
        None => -1,
    };
    mounts.push(by_definition(mount(writable_input, at, 0, false)));
    let mut env = vec![];
    if let Some(report) = report {
        mounts.push(mount(-1, REPORT_DIR, 1, false));
        let request = report.add_to(&mut inputs, &mut mounts);
        args.extend([
            "--report".to_string(),
            format!("{REPORT_DIR}/{REPORT_FILE}"),
        ]);
        env.push(format!("{REQUEST_ENV}={request}"));
    }
    exec_op(inputs, args, env, mounts, platform)
}

/// An exec of `args` with `env` (`KEY=value`) and `mounts` (the first is the root), no network.
fn exec_op(
    inputs: Vec<pb::Input>,
    args: Vec<String>,
    env: Vec<String>,
    mounts: Vec<pb::Mount>,
    platform: pb::Platform,
) -> pb::Op {
    pb::Op {
        inputs,
        op: Some(pb::op::Op::Exec(pb::ExecOp {
            meta: Some(pb::Meta {
                args,
                env,
                cwd: "/".into(),
                ..Default::default()
            }),
            mounts,
            network: pb::NetMode::None as i32,
            security: pb::SecurityMode::Sandbox as i32,
        })),
        platform: Some(platform),
        ..Default::default()
    }
}

/// The caps `sync_exec` and `inspect_exec` need.
pub const SYNC_EXEC_CAPS: &[&str] = &[
    "exec.meta.base",
    "exec.meta.network",
    "exec.mount.bind",
    "exec.mount.cache.content",
    "constraints",
    "platform",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::sample_definition;

    #[test]
    fn received_ops_keep_their_bytes_and_digests() {
        let (def, digests) = sample_definition();
        let mut g = Graph::default();
        let head = g.add_definition(&def).unwrap().unwrap();
        assert_eq!(head.digest, digests[1]);
        let copy = g.push(
            copy_root_onto_scratch(&head),
            meta_with_caps(Some("squash"), &["file.base"]),
        );
        let out = g.finish(&copy).unwrap();
        assert_eq!(&out.def[0], &def.def[0], "source op bytes changed");
        assert_eq!(&out.def[1], &def.def[1], "exec op bytes changed");
        assert_eq!(digest_of(&out.def[0]), digests[0]);
        assert_eq!(out.metadata[&digests[1]], def.metadata[&digests[1]]);
        assert_eq!(out.source, def.source);
        // Every op we added has metadata, the terminal included.
        for bytes in &out.def[2..] {
            assert!(out.metadata.contains_key(&digest_of(bytes)));
        }
    }

    #[test]
    fn new_ops_reference_the_received_head() {
        let (def, digests) = sample_definition();
        let mut g = Graph::default();
        let head = g.add_definition(&def).unwrap().unwrap();
        let copy = g.push(copy_root_onto_scratch(&head), Default::default());
        let out = g.finish(&copy).unwrap();
        let copy_op = pb::Op::decode(out.def[2].as_slice()).unwrap();
        assert_eq!(copy_op.inputs[0].digest, digests[1]);
        let Some(pb::op::Op::File(file)) = &copy_op.op else {
            panic!("not a file op")
        };
        let action = &file.actions[0];
        assert_eq!(
            (action.input, action.secondary_input, action.output),
            (-1, 0, 0)
        );
        let Some(pb::file_action::Action::Copy(c)) = &action.action else {
            panic!("not a copy")
        };
        assert_eq!(
            (c.mode, c.timestamp),
            (-1, -1),
            "0 would mean chmod 000 / epoch 0"
        );
        let terminal = pb::Op::decode(out.def.last().unwrap().as_slice()).unwrap();
        assert!(terminal.op.is_none());
        assert_eq!(terminal.inputs[0].digest, copy.digest);
    }

    #[test]
    fn copy_op_matches_go_encoding_of_copy_from_root() {
        // Bytes of the FileOp the Dockerfile frontend emits for `COPY --from=x / /` in a
        // scratch stage, with input digest "sha256:x": fields in number order, Go's defaults.
        let op = copy_root_onto_scratch(&Output {
            digest: "sha256:x".into(),
            index: 0,
        });
        let mut g = Graph::default();
        let out = g.push(op, Default::default());
        let bytes = &g.ops[&out.digest].0;
        let decoded = pb::Op::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.constraints, Some(pb::WorkerConstraints::default()));
        // The constraints field (11) is present even though empty, as Go writes it.
        assert_eq!(&bytes[bytes.len() - 2..], &[0x5a, 0x00]);
    }

    #[test]
    fn rebase_copies_the_ops_on_the_way_onto_another_input() {
        use crate::testkit::{image_source, run_on};
        // FROM image; RUN a (the stage's end); RUN b; RUN c (reads a as well, by a mount);
        // our op reads a too, and does not lead to the head.
        let mut g = Graph::default();
        let image = g.push(image_source("docker-image://x"), meta_with_caps(None, &[]));
        let a = g.push(
            run_on(&image, "a"),
            meta_with_caps(Some("[deps 2/2] RUN a"), &[]),
        );
        let b = g.push(
            run_on(&a, "b"),
            meta_with_caps(Some("[app 2/3] RUN b"), &[]),
        );
        let mut c_op = run_on(&b, "c");
        c_op.inputs.push(a.input());
        if let Some(pb::op::Op::Exec(exec)) = &mut c_op.op {
            exec.mounts.push(mount(1, "/deps", -1, true));
        }
        // A field the protobuf subset does not know (number 999, a string) must survive.
        let mut c_bytes = {
            c_op.constraints.get_or_insert_with(Default::default);
            c_op.encode_to_vec()
        };
        prost::encoding::string::encode(999, &"kept".to_string(), &mut c_bytes);
        let c_digest = digest_of(&c_bytes);
        let c = Output {
            digest: c_digest.clone(),
            index: 0,
        };
        g.order.push(c_digest.clone());
        let c_decoded = pb::Op::decode(c_bytes.as_slice()).unwrap();
        g.ops.insert(c_digest.clone(), (c_bytes, c_decoded));
        g.metadata.insert(
            c_digest.clone(),
            meta_with_caps(Some("[app 3/3] RUN c"), &[]).encode_to_vec(),
        );
        let ours = g.push(diff(&image, &a), meta_with_caps(Some("squash: ours"), &[]));
        let onto = g.push(mkdir_root(Some(&image)), meta_with_caps(None, &[]));
        // Dockerfile places for b and c.
        let mut source = Vec::new();
        for (digest, line) in [(&b.digest, 2u8), (&c.digest, 3u8)] {
            let mut entry = Vec::new();
            prost::encoding::string::encode(1, digest, &mut entry);
            prost::encoding::bytes::encode(2, &vec![8u8, line], &mut entry);
            prost::encoding::bytes::encode(1, &entry, &mut source);
        }
        g.source = source.clone();

        let moved = g.rebase(&c, &a, &onto).unwrap();
        assert_eq!(moved.len(), 2, "b and c: {moved:?}");
        let moved_to = |o: &Output| Output {
            digest: moved[&o.digest].clone(),
            index: o.index,
        };
        let (b2, c2) = (&moved_to(&b), &moved_to(&c));
        assert_ne!(b2, &b);
        let b2_op = g.op(&b2.digest).unwrap();
        assert_eq!(
            b2_op.inputs,
            [onto.input()],
            "b reads what a's readers now read"
        );
        let c2_op = g.op(&c2.digest).unwrap();
        assert_eq!(
            c2_op.inputs,
            [b2.input(), onto.input()],
            "both of c's inputs"
        );
        let c2_bytes = &g.ops[&c2.digest].0;
        assert!(
            c2_bytes.ends_with(&[0xba, 0x3e, 4, b'k', b'e', b'p', b't']),
            "the unknown field is kept: {c2_bytes:?}"
        );
        assert_eq!(g.name(&c2.digest).as_deref(), Some("[app 3/3] RUN c"));
        // Ours and the old ops stay as they were.
        assert_eq!(g.op(&ours.digest).unwrap().inputs[1], a.input());
        assert_eq!(g.op(&b.digest).unwrap().inputs, [a.input()]);
        // The places: the old entries, then copies under the new digests.
        assert!(g.source.starts_with(&source));
        let added = &g.source[source.len()..];
        for (new, line) in [(&b2.digest, 2u8), (&c2.digest, 3u8)] {
            let at = added
                .windows(new.len())
                .position(|w| w == new.as_bytes())
                .expect("the new digest is a key");
            assert_eq!(
                &added[at + new.len()..at + new.len() + 4],
                &[0x12, 2, 8, line]
            );
        }
        // The rebased definition is whole.
        g.finish(c2).unwrap();
        // The head itself is the state rebased from: nothing to copy.
        assert!(g.rebase(&a, &a, &onto).unwrap().is_empty());
    }

    #[test]
    fn dangling_input_is_refused() {
        let (mut def, _) = sample_definition();
        def.def.remove(0); // drop the source op the exec points at
        let err = Graph::default().add_definition(&def).unwrap_err();
        assert!(matches!(err, LlbError::MissingInput { .. }), "{err}");
    }

    #[test]
    fn dangling_terminal_is_refused() {
        let (mut def, _) = sample_definition();
        let bad = pb::Op {
            inputs: vec![pb::Input {
                digest: "sha256:nothere".into(),
                index: 0,
            }],
            ..Default::default()
        };
        *def.def.last_mut().unwrap() = bad.encode_to_vec();
        assert!(matches!(
            Graph::default().add_definition(&def),
            Err(LlbError::MissingInput { .. })
        ));
        let mut g = Graph::default();
        g.add_definition(&sample_definition().0).unwrap();
        assert!(g
            .finish(&Output {
                digest: "sha256:nothere".into(),
                index: 0
            })
            .is_err());
    }

    #[test]
    fn malformed_definitions_are_errors_not_panics() {
        let one = pb::Definition {
            def: vec![vec![]],
            ..Default::default()
        };
        assert_eq!(
            Graph::default().add_definition(&one),
            Err(LlbError::NoTerminal)
        );
        let garbage = pb::Definition {
            def: vec![vec![0xff, 0xff], vec![0x0a]],
            ..Default::default()
        };
        assert!(matches!(
            Graph::default().add_definition(&garbage),
            Err(LlbError::Decode { .. })
        ));
        let empty = pb::Definition::default();
        assert_eq!(Graph::default().add_definition(&empty), Ok(None));
    }

    #[test]
    fn two_definitions_share_ops_once() {
        let (def, _) = sample_definition();
        let mut g = Graph::default();
        let a = g.add_definition(&def).unwrap().unwrap();
        let b = g.add_definition(&def).unwrap().unwrap();
        assert_eq!(a, b);
        let out = g.finish(&a).unwrap();
        assert_eq!(out.def.len(), 3);
    }
}
