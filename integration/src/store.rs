//! An archive's files on disk.
//!
//! A tar (optionally gzip/zstd-compressed as a whole) is unpacked once into a
//! private temporary directory, so that blobs are never held in memory; an
//! OCI layout directory is read where it is. Members are looked up by their
//! normalised name, through symlinks and hardlinks, and never outside the
//! archive root. Whatever holds the [`Store`] (an archive, each of its
//! layers) keeps the temporary directory alive.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::blob::decompress;

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
pub(crate) struct Store {
    _tmp: Option<tempfile::TempDir>,
    /// Member name → file on disk.
    files: BTreeMap<String, PathBuf>,
    /// Member name → member name it stands for (symlinks and hardlinks).
    links: BTreeMap<String, String>,
}

impl Store {
    pub(crate) fn from_reader(reader: impl Read) -> Result<Store> {
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

    pub(crate) fn from_dir(dir: &Path) -> Result<Store> {
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
    pub(crate) fn lookup(&self, name: &str) -> Option<&Path> {
        let mut name = normalize_member(name)?;
        for _ in 0..32 {
            if let Some(p) = self.files.get(&name) {
                return Some(p);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    pub(crate) fn require(&self, name: &str) -> Result<&Path> {
        self.lookup(name)
            .ok_or_else(|| anyhow!("the archive has no file {name}"))
    }

    pub(crate) fn read(&self, name: &str) -> Result<Vec<u8>> {
        let p = self.require(name)?;
        fs::read(p).with_context(|| format!("reading archive member {name}"))
    }

    pub(crate) fn read_json(&self, name: &str) -> Result<Value> {
        let bytes = self.read(name)?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {name} as JSON"))
    }
}

/// `blobs/<algorithm>/<hex>` for a digest, refusing anything that is not a
/// plain digest.
pub(crate) fn blob_member(digest: &str) -> Result<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
