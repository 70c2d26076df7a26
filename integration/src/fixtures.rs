//! What the engine script (`scripts/engine.sh`) prepares for the tests: the
//! base images their Dockerfiles start from, the daemon's log, where
//! BuildKit sends the frontends' stderr, and the local registry with its log
//! of the requests it answered.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::docker::{self, Store};
use crate::image::Image;
use crate::show::indent;

/// One layer, busybox-static.
pub const BUSYBOX: &str = "squash-test/busybox:latest";
/// Four layers: /base/big (5 MiB), /base/dir/{one,two}, /base/suid, /base/hl-{a,b}.
pub const LAYERS: &str = "squash-test/busybox-layers:latest";
/// debootstrap minbase, one layer.
pub const DEBIAN: &str = "squash-test/debian:bookworm";

/// Loads into the engine, as `tag`, an image with `from`'s layers and `from`'s config as `edit`
/// leaves it: how tests make bases that other image tools write (no history, fewer or more
/// history entries than layers), which `docker build` never makes. The image goes in as a
/// `docker save` archive (manifest.json, config, uncompressed layers), which both stores load.
/// Returns what `docker load` said when it refused the image (an engine may refuse configs
/// other tools write).
#[track_caller]
pub fn load_edited(
    tag: &str,
    from: &Image,
    edit: impl FnOnce(&mut Value),
) -> Result<(), docker::CmdOutput> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let archive = dir.path().join("image.tar");
    let mut config = from.config.clone();
    edit(&mut config);
    let file = fs::File::create(&archive).expect("create the archive");
    let mut tar = tar::Builder::new(file);
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, data)
            .unwrap_or_else(|e| panic!("writing {name} into the archive: {e}"));
    };
    let mut names = Vec::new();
    for layer in &from.layers {
        let mut data = Vec::new();
        layer
            .open()
            .and_then(|mut r| Ok(std::io::Read::read_to_end(&mut r, &mut data)?))
            .unwrap_or_else(|e| panic!("reading layer {} of the source image: {e:#}", layer.index));
        let name = format!("layer{}.tar", layer.index);
        add(&name, &data);
        names.push(name);
    }
    add("config.json", &serde_json::to_vec(&config).expect("JSON"));
    let manifest =
        serde_json::json!([{"Config": "config.json", "RepoTags": [tag], "Layers": names}]);
    add(
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("JSON"),
    );
    tar.into_inner()
        .expect("finish the archive")
        .sync_all()
        .expect("write the archive");
    let out = docker::docker(&["load", "-i", &archive.to_string_lossy()]);
    if out.success() {
        Ok(())
    } else {
        Err(out)
    }
}

/// Environment variable [`registry`] reads; `scripts/engine.sh registry
/// start` prints it.
pub const REGISTRY_ENV: &str = "SQUASH_REGISTRY";

/// The local registry (`127.0.0.1:PORT`) of `$SQUASH_REGISTRY`; **panics**
/// if it is unset, saying how to start one, so that a test that needs it
/// never passes without it.
#[track_caller]
pub fn registry() -> String {
    match std::env::var(REGISTRY_ENV) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => panic!(
            "{REGISTRY_ENV} is not set: this test needs the local registry; run `eval \"$(scripts/engine.sh registry start)\"` first"
        ),
    }
}

/// The local registry's log, where it writes one access-log line per
/// request: `$SQUASH_REGISTRY_LOG`, else the engine script's
/// `${SQUASH_ENGINE_STATE:-/var/tmp/squash-engine}/registry/registry.log`.
pub fn registry_log_path() -> PathBuf {
    if let Ok(p) = std::env::var("SQUASH_REGISTRY_LOG") {
        return p.into();
    }
    let state =
        std::env::var("SQUASH_ENGINE_STATE").unwrap_or_else(|_| "/var/tmp/squash-engine".into());
    Path::new(&state).join("registry").join("registry.log")
}

/// One request the registry answered, from its access log: `127.0.0.1 - -
/// [29/Nov/2026:19:52:34 +0000] "HEAD /v2/repo/manifests/tag HTTP/1.1" 200
/// 503 "" "buildkit/v0.25"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRequest {
    /// `GET`, `HEAD`, `PUT`, ...
    pub method: String,
    /// The path asked for (`/v2/repo/manifests/tag`).
    pub path: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The client's user agent (`buildkit/...`, `docker/...`).
    pub agent: String,
}

impl RegistryRequest {
    /// The request of one access-log line; `None` for any other line.
    pub fn parse(line: &str) -> Option<RegistryRequest> {
        let (_, rest) = line.split_once("] \"")?;
        let (request, rest) = rest.split_once('"')?;
        let mut words = request.split(' ');
        let (method, path) = (words.next()?, words.next()?);
        if !words.next()?.starts_with("HTTP/") {
            return None;
        }
        let status = rest.split_whitespace().next()?.parse().ok()?;
        let agent = rest.trim_end().strip_suffix('"')?.rsplit_once('"')?.1;
        Some(RegistryRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            status,
            agent: agent.to_owned(),
        })
    }

    /// A request for the manifest of `repository` under `reference` (a tag
    /// or digest).
    pub fn is_manifest(&self, repository: &str, reference: &str) -> bool {
        self.path == format!("/v2/{repository}/manifests/{reference}")
    }
}

impl fmt::Display for RegistryRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {} ({})",
            self.method, self.path, self.status, self.agent
        )
    }
}

/// The engine's daemon log, where BuildKit sends the frontends' stderr:
/// `$SQUASH_DAEMON_LOG` (which `scripts/engine.sh` exports), else that
/// script's `${SQUASH_ENGINE_STATE:-/var/tmp/squash-engine}/<engine>-<mode>/dockerd.log`,
/// the engine from `$SQUASH_ENGINE` (default 26), the mode from
/// `$SQUASH_ENGINE_MODE` or the store.
pub fn daemon_log_path() -> PathBuf {
    if let Ok(p) = std::env::var("SQUASH_DAEMON_LOG") {
        return p.into();
    }
    let state =
        std::env::var("SQUASH_ENGINE_STATE").unwrap_or_else(|_| "/var/tmp/squash-engine".into());
    let mode = std::env::var("SQUASH_ENGINE_MODE").unwrap_or_else(|_| {
        match docker::store() {
            Store::Classic => "classic",
            Store::Containerd => "c8d",
        }
        .into()
    });
    let engine = std::env::var("SQUASH_ENGINE").unwrap_or_else(|_| "26".into());
    Path::new(&state)
        .join(format!("{engine}-{mode}"))
        .join("dockerd.log")
}

/// A position in a log one of the engine script's daemons writes (the
/// engine's, or the registry's), to read what was logged after it.
#[derive(Debug)]
pub struct DaemonLog {
    path: PathBuf,
    offset: u64,
}

impl DaemonLog {
    /// The log's current end; panics if there is no log to read (set
    /// `SQUASH_DAEMON_LOG` for an engine not started by `scripts/engine.sh`).
    #[track_caller]
    pub fn mark() -> DaemonLog {
        DaemonLog::mark_at(daemon_log_path())
    }

    /// The registry log's current end ([`registry_log_path`]); panics if
    /// there is no log to read.
    #[track_caller]
    pub fn mark_registry() -> DaemonLog {
        DaemonLog::mark_at(registry_log_path())
    }

    #[track_caller]
    fn mark_at(path: PathBuf) -> DaemonLog {
        let offset = fs::metadata(&path)
            .unwrap_or_else(|e| {
                panic!(
                    "cannot read the daemon log {} ({e}); set SQUASH_DAEMON_LOG to the engine's log",
                    path.display()
                )
            })
            .len();
        DaemonLog { path, offset }
    }

    /// Everything logged since the mark (lossily decoded).
    pub fn since(&self) -> String {
        let data = fs::read(&self.path).unwrap_or_default();
        let from = (self.offset as usize).min(data.len());
        String::from_utf8_lossy(&data[from..]).into_owned()
    }

    /// Lines logged since the mark that hold `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.since()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// The registry requests logged since the mark.
    pub fn registry_requests(&self) -> Vec<RegistryRequest> {
        self.since()
            .lines()
            .filter_map(RegistryRequest::parse)
            .collect()
    }

    /// No process logged `panicked` (a Rust panic: our frontend or its
    /// in-build sync step) since the mark.
    #[track_caller]
    pub fn assert_no_panic(&self, test: &str) {
        let since = self.since();
        let lines: Vec<&str> = since.lines().collect();
        let hits: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].contains("panicked"))
            .collect();
        if let Some(&i) = hits.first() {
            let from = i.saturating_sub(3);
            let to = (i + 6).min(lines.len());
            panic!(
                "[{test}] the daemon log {} shows a panic ({} line(s) with `panicked`):\n{}",
                self.path.display(),
                hits.len(),
                indent(&lines[from..to].join("\n"))
            );
        }
        println!(
            "[{test}] daemon log: no panic in {} new line(s); our frontend's lines: {}",
            lines.len(),
            lines
                .iter()
                .filter(|l| l.starts_with("squash-frontend"))
                .count()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    #[test]
    fn the_log_since_a_mark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dockerd.log");
        fs::write(&path, "before: panicked long ago\n").unwrap();
        let log = DaemonLog::mark_at(path.clone());
        assert_eq!(log.since(), "");
        append(&path, "squash-frontend: one\nother\nsquash-frontend: two\n");
        assert_eq!(
            log.since(),
            "squash-frontend: one\nother\nsquash-frontend: two\n"
        );
        assert_eq!(
            log.lines_with("squash-frontend"),
            ["squash-frontend: one", "squash-frontend: two"]
        );
        log.assert_no_panic("t");
    }

    #[test]
    #[should_panic(expected = "shows a panic (1 line(s) with `panicked`)")]
    fn a_panic_since_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dockerd.log");
        fs::write(&path, "").unwrap();
        let log = DaemonLog::mark_at(path.clone());
        append(&path, "thread 'main' panicked at src/main.rs:1:1\n");
        log.assert_no_panic("t");
    }

    #[test]
    fn registry_requests_from_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.log");
        fs::write(&path, "").unwrap();
        let log = DaemonLog::mark_at(path.clone());
        append(
            &path,
            concat!(
                "127.0.0.1 - - [29/Nov/2026:19:52:34 +0000] \"HEAD /v2/squash-frontend/manifests/e2e-1 HTTP/1.1\" 200 503 \"\" \"buildkit/v0.0-dev\"\n",
                "time=\"2026-11-29T19:52:34Z\" level=info msg=\"response completed\" http.request.method=HEAD\n",
                "127.0.0.1 - - [29/Nov/2026:19:52:35 +0000] \"PUT /v2/a/b/manifests/sha256:00 HTTP/1.1\" 201 0 \"\" \"docker/28.5.2 go/go1.24\"\n",
                "127.0.0.1 - - [29/Nov/2026:19:52:35 +0000] \"GET /v2/ HTTP/1.1\" 200 2 \"\" \"\"\n",
            ),
        );
        let requests = log.registry_requests();
        let shown: Vec<String> = requests.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "HEAD /v2/squash-frontend/manifests/e2e-1 -> 200 (buildkit/v0.0-dev)",
                "PUT /v2/a/b/manifests/sha256:00 -> 201 (docker/28.5.2 go/go1.24)",
                "GET /v2/ -> 200 ()",
            ]
        );
        assert!(requests[0].is_manifest("squash-frontend", "e2e-1"));
        assert!(!requests[0].is_manifest("squash-frontend", "e2e"));
        assert!(requests[1].is_manifest("a/b", "sha256:00"));
        assert_eq!(
            RegistryRequest::parse("127.0.0.1 - - [x] \"nonsense\" 1 2"),
            None
        );
    }

    #[test]
    #[should_panic(expected = "set SQUASH_DAEMON_LOG")]
    fn no_log_to_read() {
        DaemonLog::mark_at(PathBuf::from("/nonexistent/squash-e2e/dockerd.log"));
    }
}
