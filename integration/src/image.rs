//! One image read from an archive: its config, its layers and what is
//! inconsistent in it.
//!
//! An [`Image`] holds the image config as a [`serde_json::Value`] and the
//! ordered list of [`Layer`]s, each with its diffID (sha256 of the
//! uncompressed tar, computed, not trusted), its blob digest and size, and
//! its uncompressed size. The `archive` module finds these pieces in a
//! `docker save` archive or an OCI layout; what is *inside* a layer is the
//! business of the `fs` module. An image and its layers keep the unpacked
//! archive alive for as long as any of them exists.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::blob::{decompress, BlobSummary, Compression};
use crate::store::Store;

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
    /// Keeps the unpacked archive alive.
    _store: Arc<Store>,
}

impl Layer {
    /// The layer at `index` whose blob is the file `blob` of `store`.
    pub(crate) fn new(
        index: usize,
        media_type: Option<String>,
        digest: String,
        summary: BlobSummary,
        blob: PathBuf,
        store: Arc<Store>,
    ) -> Layer {
        Layer {
            index,
            media_type,
            digest,
            size: summary.size,
            diff_id: summary.diff_id,
            uncompressed_size: summary.uncompressed_size,
            compression: summary.compression,
            blob,
            _store: store,
        }
    }

    /// Opens the layer as an uncompressed tar stream.
    pub fn open(&self) -> Result<Box<dyn Read + 'static>> {
        let file = File::open(&self.blob)
            .with_context(|| format!("opening the blob of layer {}", self.index))?;
        Ok(decompress(io::BufReader::new(file))?.1)
    }

    /// The path and size of every entry of the layer's tar, as stored
    /// (whiteouts included), in order.
    pub fn entries(&self) -> Result<Vec<(String, u64)>> {
        let mut tar = tar::Archive::new(self.open()?);
        let mut out = Vec::new();
        for entry in tar
            .entries()
            .with_context(|| format!("reading layer {}", self.index))?
        {
            let mut entry =
                entry.with_context(|| format!("reading an entry of layer {}", self.index))?;
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let size = entry.header().size().unwrap_or(0);
            // Read to its end, as a reader of the whole tar would.
            let _ = io::copy(&mut entry, &mut io::sink());
            out.push((path, size));
        }
        Ok(out)
    }

    /// Whether the layer's uncompressed tar holds `needle`, names and
    /// headers included.
    pub fn holds(&self, needle: &[u8]) -> Result<bool> {
        let mut data = Vec::new();
        self.open()?
            .read_to_end(&mut data)
            .with_context(|| format!("reading layer {}", self.index))?;
        Ok(!needle.is_empty() && data.windows(needle.len()).any(|w| w == needle))
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
    pub(crate) problems: Vec<String>,
}

impl Image {
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
        strings(self.config.pointer("/rootfs/diff_ids"))
    }

    /// The diffIDs computed from the layers.
    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// The layers (index, digest) whose uncompressed tar holds `needle`
    /// ([`Layer::holds`]).
    pub fn layers_holding(&self, needle: &[u8]) -> Result<Vec<(usize, String)>> {
        let mut out = Vec::new();
        for layer in &self.layers {
            if layer.holds(needle)? {
                out.push((layer.index, layer.digest.clone()));
            }
        }
        Ok(out)
    }

    /// Sum of the layers' uncompressed tar sizes.
    pub fn uncompressed_size(&self) -> u64 {
        self.layers.iter().map(|l| l.uncompressed_size).sum()
    }

    /// Sum of the layers' blob sizes as stored in the archive.
    pub fn stored_size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// `history` from the config (empty if absent).
    pub fn history(&self) -> Vec<Value> {
        self.config
            .get("history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// Records in [`Image::problems`] what the config says that the layers
    /// contradict.
    pub(crate) fn check_config(&mut self) {
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
            let non_empty = history.iter().filter(|h| !is_empty_layer(h)).count();
            if non_empty != ids.len() {
                self.problems.push(format!(
                    "history has {non_empty} entries that are not empty_layer but the image has {} layers",
                    ids.len()
                ));
            }
        }
    }
}

/// The strings of a JSON array, in order (other values left out); empty if
/// `v` is not an array.
pub(crate) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a history entry is marked `empty_layer: true`.
pub fn is_empty_layer(entry: &Value) -> bool {
    entry.get("empty_layer").and_then(Value::as_bool) == Some(true)
}

/// The Unix seconds of an RFC 3339 time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`), as image
/// configs write `created`; `None` for anything else.
pub fn rfc3339_seconds(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let v = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' {
                v
            } else {
                -v
            }
        }
        _ => return None,
    };
    // Days from the civil date (proleptic Gregorian), March-based years.
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// A history entry's `created_by` (empty if it has none).
pub fn created_by(entry: &Value) -> &str {
    entry
        .get("created_by")
        .and_then(Value::as_str)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_seconds("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(
            rfc3339_seconds("2023-11-14T23:13:20.123456789+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(rfc3339_seconds("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(rfc3339_seconds("yesterday"), None);
        assert_eq!(rfc3339_seconds("2023-11-14T22:13:20"), None);
    }

    #[test]
    fn history_entries() {
        let entry = serde_json::json!({"created_by": "RUN x", "empty_layer": true});
        assert!(is_empty_layer(&entry));
        assert_eq!(created_by(&entry), "RUN x");
        let layer = serde_json::json!({"created_by": "COPY a /a", "empty_layer": false});
        assert!(!is_empty_layer(&layer));
        assert!(!is_empty_layer(&serde_json::json!({})));
        assert_eq!(created_by(&serde_json::json!({"comment": "x"})), "");
        assert_eq!(strings(Some(&serde_json::json!(["a", 1, "b"]))), ["a", "b"]);
        assert!(strings(Some(&serde_json::json!("a"))).is_empty());
        assert!(strings(None).is_empty());
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
