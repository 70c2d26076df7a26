//! Reading saved images: `docker save` archives and OCI layouts.
//!
//! This module owns everything about *where an image's pieces are* in an
//! archive: it turns a tar written by `docker save IMAGE -o file.tar` (Docker
//! 26.1, classic or containerd image store) or by `docker buildx build
//! --output type=oci,dest=x.tar` into an [`Image`]: the image config as a
//! [`serde_json::Value`] and the ordered list of [`Layer`]s, each with its
//! diffID (sha256 of the uncompressed tar, computed here, not trusted), its
//! blob digest and size, and its uncompressed size. What is *inside* a layer
//! is the business of [`crate::fs`].
//!
//! Why it reads both layouts: since Docker 25 the classic store writes an OCI
//! layout (`index.json`, `blobs/sha256/...`) *and* the legacy `manifest.json`;
//! the containerd store writes an OCI layout whose `index.json` usually points
//! at an image index (possibly listing platforms whose blobs were never
//! pulled, and attestation manifests), plus a `manifest.json`. BuildKit's OCI
//! exporter writes an OCI layout only. The OCI path (index.json → manifest →
//! config, layers) is preferred because it carries blob digests and media
//! types; `manifest.json` is the fallback (older Docker, or an OCI manifest
//! that does not list the layers the config promises, as Docker 25.0's
//! regression did).
//!
//! Layer blobs may be uncompressed tar, gzip or zstd; the compression is
//! detected from magic bytes, never from the media type (a mismatch between
//! the two is recorded as a problem, see [`Image::problems`]).
//!
//! The archive is unpacked once into a private temporary directory (blobs are
//! never held in memory); an [`Image`] and its [`Layer`]s keep that directory
//! alive for as long as any of them exists.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Media type of an OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of a Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of a Docker schema 2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Annotation BuildKit puts on attestation manifests in an index.
pub const REFERENCE_TYPE_ANNOTATION: &str = "vnd.docker.reference.type";
/// Annotation naming the manifest an attestation manifest is about.
pub const REFERENCE_DIGEST_ANNOTATION: &str = "vnd.docker.reference.digest";
/// Value of [`REFERENCE_TYPE_ANNOTATION`] for attestation manifests.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

// ---------------------------------------------------------------------------
// Compression
// ---------------------------------------------------------------------------

/// Compression of a layer blob, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar stream.
    Uncompressed,
    /// gzip (possibly several concatenated members).
    Gzip,
    /// zstd (possibly several concatenated frames).
    Zstd,
}

impl Compression {
    /// Detects the compression from the first bytes of a blob (16 are plenty).
    /// Anything that is not gzip, zstd, bzip2 or xz is taken to be a plain tar
    /// (an empty tar is all zeros, so there is no magic to require).
    pub fn detect(head: &[u8]) -> Result<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Ok(Compression::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Ok(Compression::Zstd)
        } else if head.len() >= 10
            && head.starts_with(b"BZh")
            && head[3].is_ascii_digit()
            && &head[4..10] == b"1AY&SY"
        {
            bail!("layer blob is bzip2-compressed: not supported (only tar, gzip, zstd)")
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            bail!("layer blob is xz-compressed: not supported (only tar, gzip, zstd)")
        } else {
            Ok(Compression::Uncompressed)
        }
    }

    /// The compression a layer media type claims, if it says.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        if media_type.ends_with("gzip") {
            Some(Compression::Gzip)
        } else if media_type.ends_with("zstd") {
            Some(Compression::Zstd)
        } else if media_type.ends_with(".tar") {
            Some(Compression::Uncompressed)
        } else {
            None
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Uncompressed => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// Wraps `reader` in the decompressor its first bytes call for and returns
/// the detected compression with the uncompressed stream.
pub fn decompress<'a, R: Read + 'a>(mut reader: R) -> Result<(Compression, Box<dyn Read + 'a>)> {
    let mut head = Vec::with_capacity(16);
    (&mut reader)
        .take(16)
        .read_to_end(&mut head)
        .context("reading the first bytes of a blob")?;
    let compression = Compression::detect(&head)?;
    let stream = io::Cursor::new(head).chain(reader);
    let out: Box<dyn Read + 'a> = match compression {
        Compression::Uncompressed => Box::new(stream),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(stream)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(stream).context("starting a zstd decoder")?)
        }
    };
    Ok((compression, out))
}

/// A reader that hashes (sha256) and counts what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes (sha256) and counts what is written to it.
pub(crate) struct HashingWriter {
    pub(crate) hasher: Sha256,
    pub(crate) count: u64,
}

impl HashingWriter {
    pub(crate) fn new() -> Self {
        HashingWriter {
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// `sha256:<hex>` of everything written.
    pub(crate) fn digest(self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.finalize()))
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.count += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `sha256:<hex>` of a byte slice.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// What reading a whole layer blob tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSummary {
    /// Detected compression.
    pub compression: Compression,
    /// `sha256:<hex>` of the blob as stored.
    pub digest: String,
    /// Size of the blob as stored.
    pub size: u64,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
}

/// Reads a layer blob once, hashing it both as stored and uncompressed.
pub fn summarize_blob<R: Read>(reader: R) -> Result<BlobSummary> {
    let mut raw = HashingReader {
        inner: reader,
        hasher: Sha256::new(),
        count: 0,
    };
    let mut plain = HashingWriter::new();
    let compression = {
        let (compression, mut stream) = decompress(&mut raw)?;
        io::copy(&mut stream, &mut plain)
            .with_context(|| format!("decompressing a {compression} blob"))?;
        compression
    };
    // Whatever the decompressor did not need (padding after the last frame)
    // is still part of the blob.
    io::copy(&mut raw, &mut io::sink()).context("reading the rest of a blob")?;
    let uncompressed_size = plain.count;
    Ok(BlobSummary {
        compression,
        digest: format!("sha256:{}", hex::encode(raw.hasher.finalize())),
        size: raw.count,
        diff_id: plain.digest(),
        uncompressed_size,
    })
}

// ---------------------------------------------------------------------------
// The unpacked archive
// ---------------------------------------------------------------------------

/// Normalises a path inside an archive: no leading `/` or `./`, no `.`
/// components; `..` goes up and may not leave the archive root.
fn normalize_member(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// The files of an unpacked archive or of an OCI layout directory.
#[derive(Debug)]
struct Store {
    _tmp: Option<tempfile::TempDir>,
    /// Member name → file on disk.
    files: BTreeMap<String, PathBuf>,
    /// Member name → member name it stands for (symlinks and hardlinks).
    links: BTreeMap<String, String>,
}

impl Store {
    fn from_reader(reader: impl Read) -> Result<Store> {
        let tmp = tempfile::Builder::new()
            .prefix("squash-e2e-image-")
            .tempdir()
            .context("creating a temporary directory for the archive")?;
        let (_, stream) = decompress(reader)?;
        let mut archive = tar::Archive::new(stream);
        let mut files = BTreeMap::new();
        let mut links = BTreeMap::new();
        for (n, entry) in archive
            .entries()
            .context("reading the archive")?
            .enumerate()
        {
            let mut entry = entry.context("reading an archive entry")?;
            let raw = entry.path_bytes().into_owned();
            let name = String::from_utf8(raw.clone()).map_err(|_| {
                anyhow!(
                    "archive member name is not UTF-8: {}",
                    String::from_utf8_lossy(&raw)
                )
            })?;
            let Some(name) = normalize_member(&name) else {
                bail!("archive member {name:?} escapes the archive root");
            };
            let kind = entry.header().entry_type();
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let dest = tmp.path().join(format!("m{n}"));
                    let mut out = File::create(&dest)
                        .with_context(|| format!("creating {}", dest.display()))?;
                    io::copy(&mut entry, &mut out)
                        .with_context(|| format!("extracting archive member {name}"))?;
                    files.insert(name, dest);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .ok_or_else(|| anyhow!("link {name} has no target"))?;
                    let target = String::from_utf8_lossy(&target).into_owned();
                    let resolved = if kind == tar::EntryType::Symlink && !target.starts_with('/') {
                        let parent = name.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                        normalize_member(&format!("{parent}/{target}"))
                    } else {
                        normalize_member(&target)
                    };
                    let resolved = resolved
                        .ok_or_else(|| anyhow!("link {name} -> {target} escapes the archive"))?;
                    links.insert(name, resolved);
                }
                _ => {}
            }
        }
        Ok(Store {
            _tmp: Some(tmp),
            files,
            links,
        })
    }

    fn from_dir(dir: &Path) -> Result<Store> {
        fn walk(
            root: &Path,
            rel: &str,
            files: &mut BTreeMap<String, PathBuf>,
            links: &mut BTreeMap<String, String>,
        ) -> Result<()> {
            let dir = root.join(rel);
            for item in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
                let item = item?;
                let name = item.file_name().to_string_lossy().into_owned();
                let member = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let ft = item.file_type()?;
                if ft.is_dir() {
                    walk(root, &member, files, links)?;
                } else if ft.is_symlink() {
                    let target = fs::read_link(item.path())?;
                    let target = target.to_string_lossy();
                    let resolved = if target.starts_with('/') {
                        None
                    } else {
                        normalize_member(&format!("{rel}/{target}"))
                    };
                    match resolved {
                        Some(r) => {
                            links.insert(member, r);
                        }
                        None => {
                            files.insert(member, item.path());
                        }
                    }
                } else if ft.is_file() {
                    files.insert(member, item.path());
                }
            }
            Ok(())
        }
        let mut files = BTreeMap::new();
        let mut links = BTreeMap::new();
        walk(dir, "", &mut files, &mut links)?;
        Ok(Store {
            _tmp: None,
            files,
            links,
        })
    }

    /// The file on disk for a member, following links.
    fn lookup(&self, name: &str) -> Option<&Path> {
        let mut name = normalize_member(name)?;
        for _ in 0..32 {
            if let Some(p) = self.files.get(&name) {
                return Some(p);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    fn require(&self, name: &str) -> Result<&Path> {
        self.lookup(name)
            .ok_or_else(|| anyhow!("the archive has no file {name}"))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let p = self.require(name)?;
        fs::read(p).with_context(|| format!("reading archive member {name}"))
    }

    fn read_json(&self, name: &str) -> Result<Value> {
        let bytes = self.read(name)?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {name} as JSON"))
    }
}

/// `blobs/<algorithm>/<hex>` for a digest, refusing anything that is not a
/// plain digest.
pub fn blob_member(digest: &str) -> Result<String> {
    let (algo, hex) = digest
        .split_once(':')
        .ok_or_else(|| anyhow!("not a digest: {digest:?}"))?;
    let algo_ok = !algo.is_empty()
        && algo
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
    let hex_ok = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_alphanumeric());
    if !algo_ok || !hex_ok {
        bail!("not a digest: {digest:?}");
    }
    Ok(format!("blobs/{algo}/{hex}"))
}

// ---------------------------------------------------------------------------
// Platforms and manifest references
// ---------------------------------------------------------------------------

/// An OCI platform (the parts the harness cares about).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    /// `os`, e.g. `linux`.
    pub os: String,
    /// `architecture`, e.g. `amd64`.
    pub architecture: String,
    /// `variant`, e.g. `v8`, if any.
    pub variant: Option<String>,
}

impl Platform {
    /// A platform from its parts.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => bail!("not a platform (os/arch[/variant]): {s:?}"),
        }
    }

    /// Reads a platform object (`{"os": .., "architecture": .., "variant": ..}`),
    /// as found in descriptors and in image configs.
    pub fn from_json(v: &Value) -> Option<Platform> {
        let os = v.get("os")?.as_str()?;
        let arch = v.get("architecture")?.as_str()?;
        let variant = v.get("variant").and_then(Value::as_str);
        Some(Platform::new(os, arch, variant))
    }

    /// The platform this process runs on, in OCI terms (`linux/amd64`, ...).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform::new("linux", arch, None)
    }

    /// Whether `self` matches `wanted`; a `wanted` without a variant matches
    /// any variant.
    pub fn matches(&self, wanted: &Platform) -> bool {
        self.os == wanted.os
            && self.architecture == wanted.architecture
            && (wanted.variant.is_none() || self.variant == wanted.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest found by walking `index.json` (through nested indexes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRef {
    /// Digest of the manifest blob.
    pub digest: String,
    /// Media type from the descriptor (may be empty if the descriptor had none).
    pub media_type: String,
    /// Size from the descriptor.
    pub size: u64,
    /// Platform from the descriptor, if it has one.
    pub platform: Option<Platform>,
    /// Annotations on the descriptor.
    pub annotations: BTreeMap<String, String>,
    /// Whether the manifest blob is in the archive (the containerd store lists
    /// platforms whose content it never pulled).
    pub present: bool,
    /// Digest of the index that listed it; `None` for `index.json` itself.
    pub parent_index: Option<String>,
}

impl ManifestRef {
    /// Whether this is a BuildKit attestation manifest.
    pub fn is_attestation(&self) -> bool {
        self.annotations
            .get(REFERENCE_TYPE_ANNOTATION)
            .map(String::as_str)
            == Some(ATTESTATION_MANIFEST)
    }

    /// For an attestation manifest, the digest of the manifest it attests.
    pub fn attests(&self) -> Option<&str> {
        self.annotations
            .get(REFERENCE_DIGEST_ANNOTATION)
            .map(String::as_str)
    }
}

impl fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.digest)?;
        match &self.platform {
            Some(p) => write!(f, " ({p})")?,
            None => write!(f, " (no platform)")?,
        }
        if self.is_attestation() {
            write!(f, " [attestation]")?;
        }
        if !self.present {
            write!(f, " [blob missing]")?;
        }
        Ok(())
    }
}

fn annotations_of(desc: &Value) -> BTreeMap<String, String> {
    desc.get("annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

// ---------------------------------------------------------------------------
// Layers and images
// ---------------------------------------------------------------------------

/// One layer of an image, in order from the base.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Position in the image, 0 = base.
    pub index: usize,
    /// Media type from the manifest (`None` when read from `manifest.json`).
    pub media_type: Option<String>,
    /// Blob digest: from the manifest on the OCI path, computed from the file
    /// on the `manifest.json` path.
    pub digest: String,
    /// Size of the blob as stored in the archive.
    pub size: u64,
    /// `sha256:` of the uncompressed tar, computed here.
    pub diff_id: String,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// Compression detected from the blob's magic bytes.
    pub compression: Compression,
    blob: PathBuf,
    _store: Arc<Store>,
}

impl Layer {
    /// Opens the layer as an uncompressed tar stream.
    pub fn open(&self) -> Result<Box<dyn Read + 'static>> {
        let file = File::open(&self.blob)
            .with_context(|| format!("opening the blob of layer {}", self.index))?;
        Ok(decompress(io::BufReader::new(file))?.1)
    }
}

/// Which part of the archive an [`Image`] was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// index.json → manifest `digest` → config, layers.
    Oci {
        /// Digest of the image manifest.
        manifest_digest: String,
    },
    /// `manifest.json`, entry `index`.
    DockerManifest {
        /// Position of the entry in `manifest.json`.
        index: usize,
    },
}

/// One image read from an archive.
#[derive(Debug, Clone)]
pub struct Image {
    /// The image config (`architecture`, `os`, `config`, `rootfs`, `history`, ...).
    pub config: Value,
    /// `sha256:` of the config blob (the image ID).
    pub config_digest: String,
    /// The image manifest, on the OCI path.
    pub manifest: Option<Value>,
    /// Platform from the manifest's descriptor, else from the config.
    pub platform: Option<Platform>,
    /// Tags from `manifest.json`'s `RepoTags` or the descriptor's
    /// `io.containerd.image.name` annotation.
    pub repo_tags: Vec<String>,
    /// Where in the archive this image was read from.
    pub source: Source,
    /// Layers in order, base first.
    pub layers: Vec<Layer>,
    /// Why the OCI path was not used, when the image came from `manifest.json`
    /// although the archive has an `index.json`.
    pub fallback_reason: Option<String>,
    problems: Vec<String>,
}

impl Image {
    /// Reads the one image in a `docker save` or OCI layout tar; see
    /// [`Archive::image`] for how it is chosen.
    pub fn load(path: impl AsRef<Path>) -> Result<Image> {
        Archive::open(path)?.image()
    }

    /// Inconsistencies found while reading: digests or sizes that do not match
    /// the bytes, config `rootfs.diff_ids` that do not match the layers,
    /// history whose non-empty entries do not match the layer count, media
    /// types that contradict the compression. Empty for a sound image.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// `Err` listing [`Image::problems`] if there are any.
    pub fn verify(&self) -> Result<()> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            bail!(
                "image {} is inconsistent:\n  {}",
                self.config_digest,
                self.problems.join("\n  ")
            )
        }
    }

    /// The container config (`config` inside the image config), or `null`.
    pub fn container_config(&self) -> &Value {
        self.config.get("config").unwrap_or(&Value::Null)
    }

    /// `rootfs.diff_ids` from the config.
    pub fn config_diff_ids(&self) -> Vec<String> {
        self.config
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The diffIDs computed from the layers.
    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// `history` from the config (empty if absent).
    pub fn history(&self) -> Vec<Value> {
        self.config
            .get("history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// Applies the layers into a filesystem model.
    pub fn fs(&self) -> Result<crate::fs::FsModel> {
        crate::fs::FsModel::from_image(self)
    }

    fn check_config(&mut self) {
        let config_ids = self.config_diff_ids();
        let ids = self.diff_ids();
        if config_ids.len() != ids.len() {
            self.problems.push(format!(
                "config rootfs.diff_ids has {} entries but the image has {} layers",
                config_ids.len(),
                ids.len()
            ));
        }
        for (i, (want, got)) in config_ids.iter().zip(&ids).enumerate() {
            if want != got {
                self.problems.push(format!(
                    "layer {i}: config says diffID {want} but the layer's uncompressed sha256 is {got}"
                ));
            }
        }
        let history = self.history();
        if !history.is_empty() {
            let non_empty = history
                .iter()
                .filter(|h| h.get("empty_layer").and_then(Value::as_bool) != Some(true))
                .count();
            if non_empty != ids.len() {
                self.problems.push(format!(
                    "history has {non_empty} entries that are not empty_layer but the image has {} layers",
                    ids.len()
                ));
            }
        }
    }
}

/// An unpacked `docker save` archive or OCI layout.
#[derive(Debug)]
pub struct Archive {
    store: Arc<Store>,
    index: Option<Value>,
    docker_manifest: Option<Value>,
    manifests: Vec<ManifestRef>,
}

impl Archive {
    /// Unpacks a tar file (optionally gzip/zstd-compressed as a whole).
    pub fn open(path: impl AsRef<Path>) -> Result<Archive> {
        let path = path.as_ref();
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Archive::from_reader(io::BufReader::new(file))
            .with_context(|| format!("reading image archive {}", path.display()))
    }

    /// Unpacks a tar stream.
    pub fn from_reader(reader: impl Read) -> Result<Archive> {
        Archive::from_store(Store::from_reader(reader)?)
    }

    /// Reads an OCI layout directory (e.g. `--output type=oci,dest=d,tar=false`).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Archive> {
        Archive::from_store(Store::from_dir(dir.as_ref())?)
    }

    fn from_store(store: Store) -> Result<Archive> {
        let index = match store.lookup("index.json") {
            Some(_) => Some(store.read_json("index.json")?),
            None => None,
        };
        let docker_manifest = match store.lookup("manifest.json") {
            Some(_) => Some(store.read_json("manifest.json")?),
            None => None,
        };
        if index.is_none() && docker_manifest.is_none() {
            bail!("neither index.json nor manifest.json in the archive: not a saved image");
        }
        let mut manifests = Vec::new();
        if let Some(index) = &index {
            let mut seen = HashSet::new();
            walk_index(&store, index, None, 0, &mut seen, &mut manifests)
                .context("walking index.json")?;
        }
        Ok(Archive {
            store: Arc::new(store),
            index,
            docker_manifest,
            manifests,
        })
    }

    /// `index.json`, if the archive has one.
    pub fn index_json(&self) -> Option<&Value> {
        self.index.as_ref()
    }

    /// `manifest.json`, if the archive has one.
    pub fn manifest_json(&self) -> Option<&Value> {
        self.docker_manifest.as_ref()
    }

    /// Whether the archive has a member (following links).
    pub fn has_member(&self, name: &str) -> bool {
        self.store.lookup(name).is_some()
    }

    /// Reads a member of the archive (following links).
    pub fn read_member(&self, name: &str) -> Result<Vec<u8>> {
        self.store.read(name)
    }

    /// Reads a blob by digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        self.store.read(&blob_member(digest)?)
    }

    /// Every image manifest reachable from `index.json`, attestation manifests
    /// and manifests whose blob is missing included, in index order.
    pub fn manifests(&self) -> &[ManifestRef] {
        &self.manifests
    }

    /// The image manifests that are present and are not attestations.
    pub fn image_manifests(&self) -> Vec<&ManifestRef> {
        self.manifests
            .iter()
            .filter(|m| m.present && !m.is_attestation())
            .collect()
    }

    /// The attestation manifests (present or not).
    pub fn attestation_manifests(&self) -> Vec<&ManifestRef> {
        self.manifests
            .iter()
            .filter(|m| m.is_attestation())
            .collect()
    }

    /// The image of the archive. On the OCI path: the one present,
    /// non-attestation manifest, or if there are several, the one for the
    /// host platform ([`Platform::host`]). Falls back to `manifest.json` when
    /// there is no `index.json`, when the OCI path fails, or when the OCI
    /// manifest lists a different number of layers than the config's
    /// `rootfs.diff_ids` (Docker 25.0 wrote manifests without layers).
    pub fn image(&self) -> Result<Image> {
        let oci = if self.index.is_some() {
            Some(
                self.select_default()
                    .and_then(|m| self.image_for_manifest(m)),
            )
        } else {
            None
        };
        let reason = match oci {
            None => None,
            Some(Ok(img)) => {
                if img.layers.len() == img.config_diff_ids().len() || self.docker_manifest.is_none()
                {
                    return Ok(img);
                }
                Some(format!(
                    "the OCI manifest lists {} layers but the config has {} diff_ids",
                    img.layers.len(),
                    img.config_diff_ids().len()
                ))
            }
            Some(Err(e)) => {
                if self.docker_manifest.is_none() {
                    return Err(e);
                }
                Some(format!("{e:#}"))
            }
        };
        let entries = self.docker_manifest_entries()?;
        if entries.len() != 1 {
            bail!(
                "manifest.json has {} images; use Archive::image_from_manifest_json(i){}",
                entries.len(),
                reason
                    .as_ref()
                    .map(|r| format!(" (OCI path failed: {r})"))
                    .unwrap_or_default()
            );
        }
        let mut img = self.image_from_manifest_json(0)?;
        img.fallback_reason = reason;
        Ok(img)
    }

    fn select_default(&self) -> Result<&ManifestRef> {
        let candidates = self.image_manifests();
        let listing = || {
            self.manifests
                .iter()
                .map(|m| format!("  {m}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        match candidates.len() {
            0 => bail!(
                "index.json leads to no present, non-attestation image manifest; found:\n{}",
                listing()
            ),
            1 => Ok(candidates[0]),
            _ => {
                let host = Platform::host();
                let on_host: Vec<&ManifestRef> = candidates
                    .iter()
                    .copied()
                    .filter(|m| m.platform.as_ref().is_some_and(|p| p.matches(&host)))
                    .collect();
                if on_host.len() == 1 {
                    Ok(on_host[0])
                } else {
                    bail!(
                        "index.json leads to several image manifests and not exactly one for {host}; \
                         choose with Archive::image_for_platform or image_for_manifest; found:\n{}",
                        listing()
                    )
                }
            }
        }
    }

    /// The image for a platform, among the present, non-attestation manifests.
    pub fn image_for_platform(&self, platform: &Platform) -> Result<Image> {
        let found: Vec<&ManifestRef> = self
            .image_manifests()
            .into_iter()
            .filter(|m| m.platform.as_ref().is_some_and(|p| p.matches(platform)))
            .collect();
        match found.as_slice() {
            [m] => self.image_for_manifest(m),
            [] => bail!("no image manifest for {platform} in the archive"),
            _ => bail!(
                "{} image manifests for {platform} in the archive",
                found.len()
            ),
        }
    }

    /// Reads the image of one manifest (OCI path).
    pub fn image_for_manifest(&self, m: &ManifestRef) -> Result<Image> {
        let mut problems = Vec::new();
        let member = blob_member(&m.digest)?;
        let bytes = self
            .store
            .read(&member)
            .with_context(|| format!("reading manifest {}", m.digest))?;
        let actual = sha256_digest(&bytes);
        if m.digest.starts_with("sha256:") && actual != m.digest {
            problems.push(format!("manifest blob {} has sha256 {actual}", m.digest));
        }
        if m.size != 0 && m.size != bytes.len() as u64 {
            problems.push(format!(
                "manifest {} is {} bytes but its descriptor says {}",
                m.digest,
                bytes.len(),
                m.size
            ));
        }
        let manifest: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing manifest {}", m.digest))?;
        let config_desc = manifest
            .get("config")
            .ok_or_else(|| anyhow!("manifest {} has no config", m.digest))?;
        let config_digest = str_field(config_desc, "digest")
            .ok_or_else(|| anyhow!("manifest {} has a config without digest", m.digest))?
            .to_owned();
        let config_bytes = self
            .store
            .read(&blob_member(&config_digest)?)
            .with_context(|| format!("reading config {config_digest}"))?;
        let actual = sha256_digest(&config_bytes);
        if actual != config_digest {
            problems.push(format!("config blob {config_digest} has sha256 {actual}"));
        }
        if let Some(size) = config_desc.get("size").and_then(Value::as_u64) {
            if size != config_bytes.len() as u64 {
                problems.push(format!(
                    "config is {} bytes but its descriptor says {size}",
                    config_bytes.len()
                ));
            }
        }
        let config: Value = serde_json::from_slice(&config_bytes)
            .with_context(|| format!("parsing config {config_digest}"))?;
        let descs = manifest
            .get("layers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut layers = Vec::with_capacity(descs.len());
        for (index, desc) in descs.iter().enumerate() {
            let digest = str_field(desc, "digest")
                .ok_or_else(|| anyhow!("layer {index} of manifest {} has no digest", m.digest))?
                .to_owned();
            let media_type = str_field(desc, "mediaType").map(str::to_owned);
            let blob = self
                .store
                .require(&blob_member(&digest)?)
                .with_context(|| format!("layer {index} ({digest})"))?
                .to_path_buf();
            let summary =
                summarize_file(&blob).with_context(|| format!("layer {index} ({digest})"))?;
            if summary.digest != digest && digest.starts_with("sha256:") {
                problems.push(format!(
                    "layer {index}: blob {digest} has sha256 {}",
                    summary.digest
                ));
            }
            if let Some(size) = desc.get("size").and_then(Value::as_u64) {
                if size != summary.size {
                    problems.push(format!(
                        "layer {index}: blob is {} bytes but its descriptor says {size}",
                        summary.size
                    ));
                }
            }
            if let Some(claimed) = media_type.as_deref().and_then(Compression::from_media_type) {
                if claimed != summary.compression {
                    problems.push(format!(
                        "layer {index}: media type {} but the blob is {}",
                        media_type.as_deref().unwrap_or_default(),
                        summary.compression
                    ));
                }
            }
            layers.push(Layer {
                index,
                media_type,
                digest,
                size: summary.size,
                diff_id: summary.diff_id,
                uncompressed_size: summary.uncompressed_size,
                compression: summary.compression,
                blob,
                _store: Arc::clone(&self.store),
            });
        }
        let mut repo_tags = Vec::new();
        if let Some(name) = m.annotations.get("io.containerd.image.name") {
            repo_tags.push(name.clone());
        }
        let platform = m.platform.clone().or_else(|| Platform::from_json(&config));
        let mut image = Image {
            config,
            config_digest,
            manifest: Some(manifest),
            platform,
            repo_tags,
            source: Source::Oci {
                manifest_digest: m.digest.clone(),
            },
            layers,
            fallback_reason: None,
            problems,
        };
        image.check_config();
        Ok(image)
    }

    fn docker_manifest_entries(&self) -> Result<&Vec<Value>> {
        self.docker_manifest
            .as_ref()
            .ok_or_else(|| anyhow!("the archive has no manifest.json"))?
            .as_array()
            .ok_or_else(|| anyhow!("manifest.json is not an array"))
    }

    /// Reads entry `i` of `manifest.json` (legacy path).
    pub fn image_from_manifest_json(&self, i: usize) -> Result<Image> {
        let entries = self.docker_manifest_entries()?;
        let entry = entries
            .get(i)
            .ok_or_else(|| anyhow!("manifest.json has {} entries, not {}", entries.len(), i + 1))?;
        let mut problems = Vec::new();
        let config_member = str_field(entry, "Config")
            .ok_or_else(|| anyhow!("manifest.json entry {i} has no Config"))?;
        let config_bytes = self.store.read(config_member)?;
        let config_digest = sha256_digest(&config_bytes);
        // The config's file name is its digest in both the legacy
        // (`<hex>.json`) and the OCI (`blobs/sha256/<hex>`) naming.
        let stem = config_member
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .trim_end_matches(".json");
        if stem.len() == 64
            && stem.bytes().all(|b| b.is_ascii_hexdigit())
            && format!("sha256:{stem}") != config_digest
        {
            problems.push(format!("config {config_member} has sha256 {config_digest}"));
        }
        let config: Value = serde_json::from_slice(&config_bytes)
            .with_context(|| format!("parsing config {config_member}"))?;
        let members: Vec<&str> = entry
            .get("Layers")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut layers = Vec::with_capacity(members.len());
        for (index, member) in members.iter().enumerate() {
            let blob = self
                .store
                .require(member)
                .with_context(|| format!("layer {index}"))?
                .to_path_buf();
            let summary =
                summarize_file(&blob).with_context(|| format!("layer {index} ({member})"))?;
            layers.push(Layer {
                index,
                media_type: None,
                digest: summary.digest,
                size: summary.size,
                diff_id: summary.diff_id,
                uncompressed_size: summary.uncompressed_size,
                compression: summary.compression,
                blob,
                _store: Arc::clone(&self.store),
            });
        }
        let repo_tags = entry
            .get("RepoTags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let platform = Platform::from_json(&config);
        let mut image = Image {
            config,
            config_digest,
            manifest: None,
            platform,
            repo_tags,
            source: Source::DockerManifest { index: i },
            layers,
            fallback_reason: None,
            problems,
        };
        image.check_config();
        Ok(image)
    }
}

fn summarize_file(path: &Path) -> Result<BlobSummary> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    summarize_blob(io::BufReader::new(file))
}

fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

fn is_manifest_type(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

fn walk_index(
    store: &Store,
    index: &Value,
    parent: Option<&str>,
    depth: usize,
    seen: &mut HashSet<String>,
    out: &mut Vec<ManifestRef>,
) -> Result<()> {
    if depth > 8 {
        bail!("indexes nested more than 8 deep");
    }
    let Some(descs) = index.get("manifests").and_then(Value::as_array) else {
        return Ok(());
    };
    for desc in descs {
        let Some(digest) = str_field(desc, "digest") else {
            continue;
        };
        if !seen.insert(digest.to_owned()) {
            continue;
        }
        let member = blob_member(digest)?;
        let present = store.lookup(&member).is_some();
        let mut media_type = str_field(desc, "mediaType").unwrap_or_default().to_owned();
        let mut body = None;
        if present && !is_index_type(&media_type) && !is_manifest_type(&media_type) {
            // No or unknown media type: look inside.
            let v = store.read_json(&member)?;
            if let Some(mt) = str_field(&v, "mediaType") {
                media_type = mt.to_owned();
            } else if v.get("manifests").is_some() {
                media_type = OCI_INDEX.to_owned();
            } else if v.get("layers").is_some() || v.get("config").is_some() {
                media_type = OCI_MANIFEST.to_owned();
            }
            body = Some(v);
        }
        if is_index_type(&media_type) {
            if present {
                let v = match body {
                    Some(v) => v,
                    None => store.read_json(&member)?,
                };
                walk_index(store, &v, Some(digest), depth + 1, seen, out)?;
            }
            continue;
        }
        out.push(ManifestRef {
            digest: digest.to_owned(),
            media_type,
            size: desc.get("size").and_then(Value::as_u64).unwrap_or(0),
            platform: desc.get("platform").and_then(Platform::from_json),
            annotations: annotations_of(desc),
            present,
            parent_index: parent.map(str::to_owned),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use serde_json::json;

    fn two_layers() -> (Vec<u8>, Vec<u8>) {
        let mut a = LayerBuilder::new();
        a.dir("etc", 0o755)
            .file("etc/hosts", b"127.0.0.1 localhost\n", 0o644);
        let mut b = LayerBuilder::new();
        b.file("etc/motd", b"hello\n", 0o644);
        (a.finish(), b.finish())
    }

    #[test]
    fn compression_is_detected_by_magic() {
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 8]).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]).unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(&[0; 16]).unwrap(),
            Compression::Uncompressed
        );
        assert_eq!(
            Compression::detect(b"etc/\0").unwrap(),
            Compression::Uncompressed
        );
        let err = Compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]).unwrap_err();
        assert!(err.to_string().contains("xz"), "{err}");
        let err = Compression::detect(b"BZh91AY&SY....").unwrap_err();
        assert!(err.to_string().contains("bzip2"), "{err}");
    }

    #[test]
    fn summarize_gives_the_same_diff_id_for_every_compression() {
        let (tar, _) = two_layers();
        let plain = summarize_blob(&tar[..]).unwrap();
        let gz = summarize_blob(&gzip(&tar)[..]).unwrap();
        let zs = summarize_blob(&zstd_compress(&tar)[..]).unwrap();
        assert_eq!(plain.compression, Compression::Uncompressed);
        assert_eq!(gz.compression, Compression::Gzip);
        assert_eq!(zs.compression, Compression::Zstd);
        assert_eq!(plain.diff_id, sha256_digest(&tar));
        assert_eq!(plain.digest, plain.diff_id);
        assert_eq!(gz.diff_id, plain.diff_id);
        assert_eq!(zs.diff_id, plain.diff_id);
        assert_eq!(gz.uncompressed_size, tar.len() as u64);
        assert_eq!(zs.uncompressed_size, tar.len() as u64);
        assert_eq!(gz.digest, sha256_digest(&gzip(&tar)));
        assert_eq!(gz.size, gzip(&tar).len() as u64);
        assert_ne!(gz.digest, gz.diff_id);
    }

    #[test]
    fn classic_store_save_prefers_the_oci_path() {
        let (a, b) = two_layers();
        let spec = ImageSpec::new(vec![a.clone(), b.clone()]);
        let tar = docker_save_classic(&spec, "squash-e2e/t:plain");
        let archive = Archive::from_reader(&tar[..]).unwrap();
        assert!(archive.manifest_json().is_some());
        let img = archive.image().unwrap();
        assert!(matches!(img.source, Source::Oci { .. }), "{:?}", img.source);
        assert_eq!(img.fallback_reason, None);
        assert_eq!(img.problems(), &[] as &[String]);
        img.verify().unwrap();
        assert_eq!(img.layers.len(), 2);
        assert_eq!(img.layers[0].diff_id, sha256_digest(&a));
        assert_eq!(img.layers[1].diff_id, sha256_digest(&b));
        assert_eq!(img.layers[1].digest, sha256_digest(&b));
        assert_eq!(img.layers[1].size, b.len() as u64);
        assert_eq!(img.layers[1].uncompressed_size, b.len() as u64);
        assert_eq!(img.layers[0].compression, Compression::Uncompressed);
        assert_eq!(img.container_config()["Cmd"], json!(["sh"]));
        assert_eq!(img.config_digest, sha256_digest(&spec.config_bytes()));
        assert_eq!(
            img.repo_tags,
            vec!["docker.io/squash-e2e/t:plain".to_owned()]
        );
        assert_eq!(img.platform, Some(Platform::new("linux", "amd64", None)));
        // The layer streams back uncompressed.
        let mut back = Vec::new();
        img.layers[1]
            .open()
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn manifest_json_is_the_fallback_when_the_oci_manifest_lacks_layers() {
        let (a, b) = two_layers();
        let mut spec = ImageSpec::new(vec![a, b]);
        spec.oci_manifest_without_layers = true;
        let tar = docker_save_classic(&spec, "squash-e2e/t:plain");
        let img = Archive::from_reader(&tar[..]).unwrap().image().unwrap();
        assert_eq!(img.source, Source::DockerManifest { index: 0 });
        let reason = img.fallback_reason.clone().unwrap();
        assert!(reason.contains("0 layers"), "{reason}");
        assert_eq!(img.layers.len(), 2);
        img.verify().unwrap();
        assert_eq!(img.repo_tags, vec!["squash-e2e/t:plain".to_owned()]);
    }

    #[test]
    fn legacy_save_with_layer_symlinks_reads_manifest_json() {
        let (a, b) = two_layers();
        // The second image layer is the same as the first: the legacy format
        // stores it once and links the other directory's layer.tar to it.
        let spec = ImageSpec::new(vec![a.clone(), b, a.clone()]);
        let tar = docker_save_legacy(&spec);
        let archive = Archive::from_reader(&tar[..]).unwrap();
        assert!(archive.index_json().is_none());
        let img = archive.image().unwrap();
        assert_eq!(img.source, Source::DockerManifest { index: 0 });
        assert_eq!(img.layers.len(), 3);
        assert_eq!(img.layers[2].diff_id, sha256_digest(&a));
        img.verify().unwrap();
    }

    #[test]
    fn containerd_store_save_with_gzip_and_zstd_layers_and_missing_platforms() {
        let (a, b) = two_layers();
        let spec = ImageSpec::new(vec![gzip(&a), zstd_compress(&b)]);
        let tar = docker_save_containerd(&spec);
        let archive = Archive::from_reader(&tar[..]).unwrap();
        // index.json → index → {amd64 (present), arm64 (absent), attestation}.
        assert_eq!(archive.manifests().len(), 3, "{:?}", archive.manifests());
        assert_eq!(archive.image_manifests().len(), 1);
        assert_eq!(archive.attestation_manifests().len(), 1);
        let att = archive.attestation_manifests()[0];
        assert_eq!(
            att.attests(),
            Some(archive.image_manifests()[0].digest.as_str())
        );
        let img = archive.image().unwrap();
        img.verify().unwrap();
        assert!(matches!(img.source, Source::Oci { .. }));
        assert_eq!(img.layers[0].compression, Compression::Gzip);
        assert_eq!(img.layers[1].compression, Compression::Zstd);
        assert_eq!(img.layers[0].diff_id, sha256_digest(&a));
        assert_eq!(img.layers[1].diff_id, sha256_digest(&b));
        assert_eq!(img.layers[0].digest, sha256_digest(&gzip(&a)));
        assert_eq!(img.layers[0].uncompressed_size, a.len() as u64);
        let mut back = Vec::new();
        img.layers[1]
            .open()
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn oci_output_with_several_platforms_and_attestations() {
        let (a, b) = two_layers();
        let amd = ImageSpec::new(vec![gzip(&a)]).platform("linux", "amd64", None);
        let arm = ImageSpec::new(vec![gzip(&b)]).platform("linux", "arm64", Some("v8"));
        let riscv = ImageSpec::new(vec![gzip(&b)]).platform("linux", "riscv64", None);
        let tar = oci_layout_multi(&[&amd, &arm, &riscv]);
        let archive = Archive::from_reader(&tar[..]).unwrap();
        assert_eq!(archive.image_manifests().len(), 3);
        assert_eq!(archive.attestation_manifests().len(), 3);
        let arm_img = archive
            .image_for_platform(&Platform::parse("linux/arm64").unwrap())
            .unwrap();
        assert_eq!(arm_img.layers[0].diff_id, sha256_digest(&b));
        assert_eq!(
            arm_img.platform,
            Some(Platform::new("linux", "arm64", Some("v8")))
        );
        arm_img.verify().unwrap();
        let err = archive
            .image_for_platform(&Platform::parse("linux/s390x").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("s390x"), "{err}");
        // The default choice is the host platform, when it is one of them.
        match archive.image() {
            Ok(img) => assert!(img.platform.unwrap().matches(&Platform::host())),
            Err(e) => {
                let host = Platform::host();
                assert!(
                    !["amd64", "arm64", "riscv64"].contains(&host.architecture.as_str()),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn several_platforms_without_the_host_is_an_error_listing_them() {
        let (a, b) = two_layers();
        let one = ImageSpec::new(vec![a]).platform("linux", "testarch1", None);
        let two = ImageSpec::new(vec![b]).platform("linux", "testarch2", None);
        let tar = oci_layout_multi(&[&one, &two]);
        let archive = Archive::from_reader(&tar[..]).unwrap();
        let err = archive.image().unwrap_err().to_string();
        assert!(err.contains("several image manifests"), "{err}");
        assert!(
            err.contains("(linux/testarch1)") && err.contains("(linux/testarch2)"),
            "{err}"
        );
        assert!(err.contains("[attestation]"), "{err}");
        let img = archive
            .image_for_platform(&Platform::new("linux", "testarch2", None))
            .unwrap();
        assert_eq!(img.config["architecture"], "testarch2");
    }

    #[test]
    fn corrupt_digests_and_diff_ids_are_problems() {
        let (a, b) = two_layers();
        let mut spec = ImageSpec::new(vec![a, b]);
        spec.config["rootfs"]["diff_ids"][1] = json!(format!("sha256:{}", "0".repeat(64)));
        spec.media_type_override = Some("application/vnd.oci.image.layer.v1.tar+gzip".into());
        let tar = oci_layout_single(&spec);
        let img = Archive::from_reader(&tar[..]).unwrap().image().unwrap();
        let problems = img.problems().join("\n");
        assert!(
            problems.contains("layer 1: config says diffID sha256:000"),
            "{problems}"
        );
        assert!(problems.contains("media type application/vnd.oci.image.layer.v1.tar+gzip but the blob is uncompressed"), "{problems}");
        assert!(img.verify().is_err());
    }

    #[test]
    fn history_must_match_the_layer_count() {
        let (a, _) = two_layers();
        let mut spec = ImageSpec::new(vec![a]);
        spec.config["history"] = json!([{"created_by": "x"}, {"created_by": "y"}, {"created_by": "z", "empty_layer": true}]);
        let tar = oci_layout_single(&spec);
        let img = Archive::from_reader(&tar[..]).unwrap().image().unwrap();
        assert_eq!(
            img.problems(),
            &[
                "history has 2 entries that are not empty_layer but the image has 1 layers"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn missing_layer_blob_is_an_error_naming_it() {
        let (a, _) = two_layers();
        let mut spec = ImageSpec::new(vec![a]);
        spec.drop_layer_blobs = true;
        let tar = oci_layout_single(&spec);
        let err = Archive::from_reader(&tar[..]).unwrap().image().unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("layer 0") && msg.contains("no file blobs/sha256/"),
            "{msg}"
        );
    }

    #[test]
    fn from_dir_reads_an_unpacked_layout() {
        let (a, b) = two_layers();
        let spec = ImageSpec::new(vec![gzip(&a), b.clone()]);
        let tar = oci_layout_single(&spec);
        let dir = tempfile::tempdir().unwrap();
        tar::Archive::new(&tar[..]).unpack(dir.path()).unwrap();
        let img = Archive::from_dir(dir.path()).unwrap().image().unwrap();
        img.verify().unwrap();
        assert_eq!(img.layers[1].diff_id, sha256_digest(&b));
    }

    #[test]
    fn not_an_image() {
        let mut l = LayerBuilder::new();
        l.file("hello", b"x", 0o644);
        let err = Archive::from_reader(&l.finish()[..]).unwrap_err();
        assert!(err.to_string().contains("not a saved image"), "{err}");
    }

    #[test]
    fn member_names_are_normalized_and_confined() {
        assert_eq!(
            normalize_member("./blobs//sha256/./x").as_deref(),
            Some("blobs/sha256/x")
        );
        assert_eq!(normalize_member("/a/b/../c").as_deref(), Some("a/c"));
        assert_eq!(normalize_member("../x"), None);
        assert!(blob_member("sha256:../../etc").is_err());
        assert!(blob_member("nodigest").is_err());
        assert_eq!(blob_member("sha256:ab12").unwrap(), "blobs/sha256/ab12");
    }

    #[test]
    fn platform_parsing_and_matching() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert!(p.matches(&Platform::parse("linux/arm").unwrap()));
        assert!(!p.matches(&Platform::parse("linux/arm/v6").unwrap()));
        assert!(Platform::parse("linux").is_err());
    }
}
