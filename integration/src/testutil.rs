//! Synthetic layers and image archives for the unit tests.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::{json, Value};
use tar::{EntryType, Header};

use crate::archive::{OCI_INDEX, OCI_MANIFEST};
use crate::blob::{sha256_digest, summarize_blob, Compression};

fn os_path(p: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(p))
}

/// Builds a layer tar entry by entry.
pub(crate) struct LayerBuilder {
    b: tar::Builder<Vec<u8>>,
    mtime: u64,
    uid: u64,
    gid: u64,
}

impl LayerBuilder {
    pub(crate) fn new() -> Self {
        LayerBuilder {
            b: tar::Builder::new(Vec::new()),
            mtime: 1_700_000_000,
            uid: 0,
            gid: 0,
        }
    }

    /// mtime of the entries added from now on.
    pub(crate) fn mtime(&mut self, mtime: u64) -> &mut Self {
        self.mtime = mtime;
        self
    }

    /// Owner of the entries added from now on.
    pub(crate) fn owner(&mut self, uid: u64, gid: u64) -> &mut Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    fn header(&self, ty: EntryType, mode: u32, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(self.uid);
        h.set_gid(self.gid);
        h.set_mtime(self.mtime);
        h.set_size(size);
        h
    }

    pub(crate) fn entry(
        &mut self,
        path: impl AsRef<[u8]>,
        ty: EntryType,
        mode: u32,
        content: &[u8],
    ) -> &mut Self {
        let mut h = self.header(ty, mode, content.len() as u64);
        self.b
            .append_data(&mut h, os_path(path.as_ref()), content)
            .unwrap();
        self
    }

    pub(crate) fn dir(&mut self, path: impl AsRef<[u8]>, mode: u32) -> &mut Self {
        self.entry(path, EntryType::Directory, mode, b"")
    }

    pub(crate) fn file(&mut self, path: impl AsRef<[u8]>, content: &[u8], mode: u32) -> &mut Self {
        self.entry(path, EntryType::Regular, mode, content)
    }

    /// A regular file preceded by a PAX header with these records.
    pub(crate) fn file_pax(
        &mut self,
        path: impl AsRef<[u8]>,
        content: &[u8],
        mode: u32,
        records: &[(&str, &[u8])],
    ) -> &mut Self {
        self.b
            .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
            .unwrap();
        self.file(path, content, mode)
    }

    /// A regular file whose name is carried only by a PAX `path` record
    /// (the ustar header holds a placeholder).
    pub(crate) fn file_pax_path(&mut self, path: &[u8], content: &[u8], mode: u32) -> &mut Self {
        self.b.append_pax_extensions([("path", path)]).unwrap();
        self.file("placeholder-not-the-name", content, mode)
    }

    pub(crate) fn symlink(
        &mut self,
        path: impl AsRef<[u8]>,
        target: impl AsRef<[u8]>,
    ) -> &mut Self {
        let mut h = self.header(EntryType::Symlink, 0o777, 0);
        self.b
            .append_link(&mut h, os_path(path.as_ref()), os_path(target.as_ref()))
            .unwrap();
        self
    }

    pub(crate) fn hardlink(
        &mut self,
        path: impl AsRef<[u8]>,
        target: impl AsRef<[u8]>,
    ) -> &mut Self {
        let mut h = self.header(EntryType::Link, 0o644, 0);
        self.b
            .append_link(&mut h, os_path(path.as_ref()), os_path(target.as_ref()))
            .unwrap();
        self
    }

    pub(crate) fn device(
        &mut self,
        path: impl AsRef<[u8]>,
        ty: EntryType,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> &mut Self {
        let mut h = self.header(ty, mode, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.b
            .append_data(&mut h, os_path(path.as_ref()), &b""[..])
            .unwrap();
        self
    }

    /// `.wh.<name>` next to `path`.
    pub(crate) fn whiteout(&mut self, path: &str) -> &mut Self {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path),
        };
        self.file(format!("{dir}.wh.{name}"), b"", 0o644)
    }

    /// `<dir>/.wh..wh..opq`.
    pub(crate) fn opaque(&mut self, dir: &str) -> &mut Self {
        self.file(format!("{dir}/.wh..wh..opq"), b"", 0o644)
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub(crate) fn zstd_compress(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// An image to write into synthetic archives: layer blobs as stored and a
/// config whose diff_ids match them.
pub(crate) struct ImageSpec {
    pub layers: Vec<Vec<u8>>,
    pub config: Value,
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
    /// Write an OCI manifest with no layers (Docker 25.0's bug).
    pub oci_manifest_without_layers: bool,
    /// Claim this media type for every layer.
    pub media_type_override: Option<String>,
    /// Leave the layer blobs out of the archive.
    pub drop_layer_blobs: bool,
}

impl ImageSpec {
    pub(crate) fn new(layers: Vec<Vec<u8>>) -> Self {
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|l| summarize_blob(&l[..]).unwrap().diff_id)
            .collect();
        let history: Vec<Value> = (0..layers.len())
            .map(|i| json!({"created_by": format!("RUN step {i}")}))
            .collect();
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["sh"],
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        });
        ImageSpec {
            layers,
            config,
            os: "linux".into(),
            arch: "amd64".into(),
            variant: None,
            oci_manifest_without_layers: false,
            media_type_override: None,
            drop_layer_blobs: false,
        }
    }

    pub(crate) fn platform(mut self, os: &str, arch: &str, variant: Option<&str>) -> Self {
        self.os = os.into();
        self.arch = arch.into();
        self.variant = variant.map(Into::into);
        self.config["os"] = json!(os);
        self.config["architecture"] = json!(arch);
        if let Some(v) = variant {
            self.config["variant"] = json!(v);
        }
        self
    }

    pub(crate) fn platform_json(&self) -> Value {
        let mut p = json!({"os": self.os, "architecture": self.arch});
        if let Some(v) = &self.variant {
            p["variant"] = json!(v);
        }
        p
    }

    pub(crate) fn config_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.config).unwrap()
    }

    fn layer_media_type(&self, blob: &[u8]) -> String {
        if let Some(m) = &self.media_type_override {
            return m.clone();
        }
        match Compression::detect(blob).unwrap() {
            Compression::Uncompressed => "application/vnd.oci.image.layer.v1.tar".into(),
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd".into(),
        }
    }

    pub(crate) fn manifest_bytes(&self) -> Vec<u8> {
        let config = self.config_bytes();
        let layers: Vec<Value> = if self.oci_manifest_without_layers {
            vec![]
        } else {
            self.layers
                .iter()
                .map(|l| {
                    json!({
                        "mediaType": self.layer_media_type(l),
                        "digest": sha256_digest(l),
                        "size": l.len(),
                    })
                })
                .collect()
        };
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_digest(&config),
                "size": config.len(),
            },
            "layers": layers,
        }))
        .unwrap()
    }

    pub(crate) fn manifest_descriptor(&self, annotations: Value) -> Value {
        let m = self.manifest_bytes();
        let mut d = json!({
            "mediaType": OCI_MANIFEST,
            "digest": sha256_digest(&m),
            "size": m.len(),
            "platform": self.platform_json(),
        });
        if !annotations.is_null() {
            d["annotations"] = annotations;
        }
        d
    }

    /// Blobs as (digest, bytes): config, layers, manifest.
    pub(crate) fn blobs(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = vec![(sha256_digest(&self.config_bytes()), self.config_bytes())];
        if !self.drop_layer_blobs {
            for l in &self.layers {
                out.push((sha256_digest(l), l.clone()));
            }
        }
        out.push((sha256_digest(&self.manifest_bytes()), self.manifest_bytes()));
        out
    }

    /// A BuildKit attestation manifest for this image: (descriptor, blobs).
    pub(crate) fn attestation(&self) -> (Value, Vec<(String, Vec<u8>)>) {
        let own = sha256_digest(&self.manifest_bytes());
        let statement =
            format!(r#"{{"_type":"https://in-toto.io/Statement/v0.1","subject":"{own}"}}"#)
                .into_bytes();
        let config = br#"{"architecture":"unknown","os":"unknown","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": sha256_digest(&statement), "size": statement.len()}],
        }))
        .unwrap();
        let desc = json!({
            "mediaType": OCI_MANIFEST,
            "digest": sha256_digest(&manifest),
            "size": manifest.len(),
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {
                "vnd.docker.reference.type": "attestation-manifest",
                "vnd.docker.reference.digest": own,
            },
        });
        let blobs = vec![
            (sha256_digest(&statement), statement),
            (sha256_digest(&config), config),
            (sha256_digest(&manifest), manifest),
        ];
        (desc, blobs)
    }
}

/// Writes an outer archive.
pub(crate) struct ArchiveWriter {
    b: tar::Builder<Vec<u8>>,
    seen: std::collections::HashSet<String>,
}

impl ArchiveWriter {
    pub(crate) fn new() -> Self {
        ArchiveWriter {
            b: tar::Builder::new(Vec::new()),
            seen: Default::default(),
        }
    }

    pub(crate) fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        if self.seen.insert(name.to_owned()) {
            let mut h = Header::new_gnu();
            h.set_entry_type(EntryType::Regular);
            h.set_mode(0o444);
            h.set_size(data.len() as u64);
            self.b.append_data(&mut h, name, data).unwrap();
        }
        self
    }

    pub(crate) fn json(&mut self, name: &str, v: &Value) -> &mut Self {
        self.file(name, &serde_json::to_vec(v).unwrap())
    }

    pub(crate) fn blobs(&mut self, blobs: &[(String, Vec<u8>)]) -> &mut Self {
        for (d, b) in blobs {
            let name = format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
            self.file(&name, b);
        }
        self
    }

    pub(crate) fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        self.b.append_link(&mut h, name, target).unwrap();
        self
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

fn layer_members(spec: &ImageSpec) -> Vec<String> {
    spec.layers
        .iter()
        .map(|l| {
            format!(
                "blobs/sha256/{}",
                sha256_digest(l).trim_start_matches("sha256:")
            )
        })
        .collect()
}

/// What Docker 26.1 with the classic store writes for `docker save TAG`.
pub(crate) fn docker_save_classic(spec: &ImageSpec, tag: &str) -> Vec<u8> {
    let mut w = ArchiveWriter::new();
    w.blobs(&spec.blobs());
    let cfg = sha256_digest(&spec.config_bytes());
    let (_, tag_part) = tag.rsplit_once(':').unwrap();
    w.json(
        "index.json",
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [spec.manifest_descriptor(json!({
                "io.containerd.image.name": format!("docker.io/{tag}"),
                "org.opencontainers.image.ref.name": tag_part,
            }))],
        }),
    );
    w.json(
        "manifest.json",
        &json!([{
            "Config": format!("blobs/sha256/{}", cfg.trim_start_matches("sha256:")),
            "RepoTags": [tag],
            "Layers": layer_members(spec),
        }]),
    );
    w.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    w.finish()
}

/// What Docker before 25 wrote: `<id>/layer.tar`, `<config>.json`,
/// `manifest.json`; a layer seen before is a symlink to the first copy.
pub(crate) fn docker_save_legacy(spec: &ImageSpec) -> Vec<u8> {
    let mut w = ArchiveWriter::new();
    let cfg = sha256_digest(&spec.config_bytes());
    let cfg_name = format!("{}.json", cfg.trim_start_matches("sha256:"));
    w.file(&cfg_name, &spec.config_bytes());
    let mut first: std::collections::HashMap<Vec<u8>, String> = Default::default();
    let mut members = Vec::new();
    for (i, l) in spec.layers.iter().enumerate() {
        let id = sha256_digest(format!("layer {i}").as_bytes());
        let id = id.trim_start_matches("sha256:");
        let member = format!("{id}/layer.tar");
        w.file(&format!("{id}/VERSION"), b"1.0");
        match first.get(l) {
            Some(prev) => {
                w.symlink(&member, &format!("../{prev}"));
            }
            None => {
                w.file(&member, l);
                first.insert(l.clone(), member.clone());
            }
        }
        members.push(member);
    }
    w.json(
        "manifest.json",
        &json!([{"Config": cfg_name, "RepoTags": ["squash-e2e/t:legacy"], "Layers": members}]),
    );
    w.finish()
}

/// What Docker 26.1 with the containerd store writes: index.json → image
/// index → {this platform, an arm64 manifest whose blobs were never pulled,
/// an attestation}; plus manifest.json.
pub(crate) fn docker_save_containerd(spec: &ImageSpec) -> Vec<u8> {
    let mut w = ArchiveWriter::new();
    w.blobs(&spec.blobs());
    let absent = br#"{"absent":true}"#;
    let (att_desc, att_blobs) = spec.attestation();
    w.blobs(&att_blobs);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            spec.manifest_descriptor(Value::Null),
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256_digest(absent),
                "size": absent.len(),
                "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
            },
            att_desc,
        ],
    }))
    .unwrap();
    w.blobs(&[(sha256_digest(&index), index.clone())]);
    w.json(
        "index.json",
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{
                "mediaType": OCI_INDEX,
                "digest": sha256_digest(&index),
                "size": index.len(),
                "annotations": {"io.containerd.image.name": "docker.io/squash-e2e/t:ctr"},
            }],
        }),
    );
    let cfg = sha256_digest(&spec.config_bytes());
    w.json(
        "manifest.json",
        &json!([{
            "Config": format!("blobs/sha256/{}", cfg.trim_start_matches("sha256:")),
            "RepoTags": ["squash-e2e/t:ctr"],
            "Layers": layer_members(spec),
        }]),
    );
    w.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    w.finish()
}

/// `--output type=oci` for a single platform, no attestations: index.json
/// points at the manifest directly.
pub(crate) fn oci_layout_single(spec: &ImageSpec) -> Vec<u8> {
    let mut w = ArchiveWriter::new();
    w.blobs(&spec.blobs());
    w.json(
        "index.json",
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [spec.manifest_descriptor(Value::Null)]}),
    );
    w.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    w.finish()
}

/// `--output type=oci` for several platforms with attestations: index.json →
/// image index → one manifest and one attestation manifest per platform.
pub(crate) fn oci_layout_multi(specs: &[&ImageSpec]) -> Vec<u8> {
    let mut w = ArchiveWriter::new();
    let mut descs = Vec::new();
    for s in specs {
        w.blobs(&s.blobs());
        descs.push(s.manifest_descriptor(Value::Null));
    }
    for s in specs {
        let (d, b) = s.attestation();
        w.blobs(&b);
        descs.push(d);
    }
    let index = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs}),
    )
    .unwrap();
    w.blobs(&[(sha256_digest(&index), index.clone())]);
    w.json(
        "index.json",
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
            "mediaType": OCI_INDEX, "digest": sha256_digest(&index), "size": index.len(),
        }]}),
    );
    w.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    w.finish()
}

/// The image of an archive.
pub(crate) fn read_image(archive: &[u8]) -> crate::image::Image {
    crate::archive::Archive::from_reader(archive)
        .unwrap()
        .image()
        .unwrap()
}

/// The image of `spec`, read back from an OCI layout.
pub(crate) fn image_of(spec: &ImageSpec) -> crate::image::Image {
    read_image(&oci_layout_single(spec))
}
