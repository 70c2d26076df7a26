//! Reading saved images: `docker save` archives and OCI layouts.
//!
//! This module owns *where an image's pieces are* in an archive: it turns a
//! tar written by `docker save IMAGE -o file.tar` (Docker 26.1, classic or
//! containerd image store) or by `docker buildx build --output
//! type=oci,dest=x.tar` into an [`Image`], checking every digest and size it
//! meets against the bytes.
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
//! regression did). A media type that contradicts the blob's compression is
//! recorded as a problem (see [`Image::problems`]).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::blob::{sha256_digest, summarize_file, Compression};
use crate::image::{strings, Image, Layer, Platform, Source};
use crate::store::{blob_member, Store};

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
            layers.push(Layer::new(
                index,
                media_type,
                digest,
                summary,
                blob,
                Arc::clone(&self.store),
            ));
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
            let digest = summary.digest.clone();
            layers.push(Layer::new(
                index,
                None,
                digest,
                summary,
                blob,
                Arc::clone(&self.store),
            ));
        }
        let repo_tags = strings(entry.get("RepoTags"));
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
    fn an_images_sizes_layer_listings_and_contents() {
        let (a, b) = two_layers();
        let mut c = LayerBuilder::new();
        c.whiteout("etc/motd");
        let c = c.finish();
        let spec = ImageSpec::new(vec![gzip(&a), b.clone(), c.clone()]);
        let tar = docker_save_classic(&spec, "squash-e2e/t:sizes");
        let img = Archive::from_reader(&tar[..]).unwrap().image().unwrap();
        let plain = (a.len() + b.len() + c.len()) as u64;
        assert_eq!(img.uncompressed_size(), plain);
        assert_eq!(
            img.stored_size(),
            (gzip(&a).len() + b.len() + c.len()) as u64
        );
        assert_eq!(
            img.layers[0].entries().unwrap(),
            [("etc".to_owned(), 0), ("etc/hosts".to_owned(), 20)]
        );
        assert_eq!(
            img.layers[2].entries().unwrap(),
            [("etc/.wh.motd".to_owned(), 0)]
        );
        // Names and contents count, in compressed layers too.
        assert_eq!(
            img.layers_holding(b"127.0.0.1").unwrap(),
            [(0, img.layers[0].digest.clone())]
        );
        let motd = img.layers_holding(b"etc/motd").unwrap();
        let indexes: Vec<usize> = motd.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, [1]);
        assert!(img.layers_holding(b"etc/.wh.").unwrap().len() == 1);
        assert!(img.layers_holding(b"").unwrap().is_empty());
        assert!(img.layers_holding(b"not in any layer").unwrap().is_empty());
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
}
