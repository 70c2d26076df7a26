//! Mapping the Dockerfile frontend's result to ours: one image per ref (a single ref, or one per
//! platform keyed by platform id), each with its own `containerimage.config[/<id>]` metadata.
//! Every other metadata key and every attestation is passed through as received.

use squash_proto::gateway;

use crate::plan::Squash;

/// Metadata key of the image config.
pub const CONFIG: &str = "containerimage.config";
/// Metadata key of the base image's config.
pub const BASE_CONFIG: &str = "containerimage.base.config";
/// Metadata key of the build's source date epoch.
pub const EPOCH: &str = "source.date.epoch";

/// Why a result cannot be squashed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResultError {
    /// Refs in the old string form.
    #[error("the Dockerfile frontend returned its result in an old form without LLB definitions; this engine is too old for squash-frontend (BuildKit 0.13 or newer is needed)")]
    Deprecated,
    /// A ref without its definition.
    #[error("the Dockerfile frontend returned ref {0} without its LLB definition; squash-frontend needs an engine with the reference.output capability")]
    NoDefinition(String),
}

/// One image of a result: its platform id (`None` for a single-ref result) and its ref.
#[derive(Debug, Clone, PartialEq)]
pub struct Image<'a> {
    /// Its platform id (`None` for a single-ref result).
    pub platform: Option<&'a str>,
    /// Its ref.
    pub reference: &'a gateway::Ref,
}

/// The images of a result, in platform order.
pub fn images(result: &gateway::Result) -> Result<Vec<Image<'_>>, ResultError> {
    use gateway::result::Result as R;
    let list = match &result.result {
        None => vec![],
        Some(R::Ref(r)) => vec![Image {
            platform: None,
            reference: r,
        }],
        Some(R::Refs(map)) => map
            .refs
            .iter()
            .map(|(k, r)| Image {
                platform: Some(k.as_str()),
                reference: r,
            })
            .collect(),
        Some(R::RefDeprecated(_) | R::RefsDeprecated(_)) => return Err(ResultError::Deprecated),
    };
    for image in &list {
        if !image.reference.id.is_empty() && image.reference.def.is_none() {
            return Err(ResultError::NoDefinition(image.reference.id.clone()));
        }
    }
    Ok(list)
}

/// The metadata key `key` for one image: `key` or `key/<platform id>`.
pub fn key(key: &str, platform: Option<&str>) -> String {
    match platform {
        Some(p) => format!("{key}/{p}"),
        None => key.to_string(),
    }
}

/// The metadata value for one image, falling back to the unsuffixed key.
pub fn meta<'a>(
    result: &'a gateway::Result,
    name: &str,
    platform: Option<&str>,
) -> Option<&'a [u8]> {
    result
        .metadata
        .get(&key(name, platform))
        .or_else(|| result.metadata.get(name))
        .map(Vec::as_slice)
}

/// The `SOURCE_DATE_EPOCH` the Dockerfile frontend reported for one image (newer ones do).
pub fn epoch(result: &gateway::Result, platform: Option<&str>) -> Option<i64> {
    meta(result, EPOCH, platform).and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
}

/// One squashed image, to take the place of the built one.
#[derive(Debug, Clone, PartialEq)]
pub struct Squashed {
    /// Its platform id (`None` for a single-ref result).
    pub platform: Option<String>,
    /// The result of solving the squash.
    pub reference: gateway::Ref,
    /// What was planned for it.
    pub squash: Squash,
    /// Its report, to go with the build's attestations (an in-toto predicate, see
    /// [`REPORT_PREDICATE`]).
    pub report: Option<gateway::Ref>,
    /// The report is marked `inline-only`, as the build's own attestations are
    /// (`request::Request::attestations_inline_only`).
    pub report_inline_only: bool,
}

/// BuildKit's attestation metadata key for an attestation that only goes where the exporter
/// holds attestations inline (`result.AttestationInlineOnlyKey`).
const INLINE_ONLY: &str = "inline-only";

/// The in-toto predicate type of the squash report attached as an attestation.
pub const REPORT_PREDICATE: &str = "https://squash-frontend.invalid/report/v1";

/// The result to return: the original with each squashed image's ref and config replaced.
pub fn assemble(original: &gateway::Result, squashed: &[Squashed]) -> gateway::Result {
    use gateway::result::Result as R;
    let mut out = original.clone();
    for s in squashed {
        match (&mut out.result, &s.platform) {
            (Some(R::Ref(r)), None) => *r = s.reference.clone(),
            (Some(R::Refs(map)), Some(p)) => {
                map.refs.insert(p.clone(), s.reference.clone());
            }
            _ => continue,
        }
        let p = s.platform.as_deref();
        if let Some(config) = &s.squash.config {
            out.metadata.insert(key(CONFIG, p), config.clone());
        }
        if let (true, Some(base)) = (s.squash.keeps_base, &s.squash.described_base) {
            out.metadata.insert(key(BASE_CONFIG, p), base.clone());
        }
        if let Some(report) = &s.report {
            let key = match p {
                Some(p) => p.to_string(),
                // A single image's attestations go under its platform, as the exporter reads it
                // from the image config.
                None => s
                    .squash
                    .config
                    .as_deref()
                    .or_else(|| meta(original, CONFIG, None))
                    .and_then(config_platform)
                    .unwrap_or_else(|| "linux/amd64".into()),
            };
            out.attestations
                .entry(key)
                .or_default()
                .attestation
                .push(gateway::Attestation {
                    kind: gateway::AttestationKind::InToto as i32,
                    r#ref: Some(report.clone()),
                    path: crate::llb::REPORT_FILE.into(),
                    in_toto_predicate_type: REPORT_PREDICATE.into(),
                    metadata: if s.report_inline_only {
                        [(INLINE_ONLY.to_string(), b"true".to_vec())].into()
                    } else {
                        Default::default()
                    },
                    ..Default::default()
                });
        }
        if !s.squash.keeps_base {
            // No layer of the base is left: a stale base config would make the exporter
            // treat our squashed layer as a base layer (timestamps, rewrite-timestamp).
            out.metadata.remove(&key(BASE_CONFIG, p));
            if p.is_none() {
                out.metadata.remove(BASE_CONFIG);
            }
        }
    }
    out
}

/// `os/architecture[/variant]` of an image config, as BuildKit names a platform.
fn config_platform(config: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(config).ok()?;
    let os = v.get("os")?.as_str()?;
    let arch = v.get("architecture")?.as_str()?;
    Some(match v.get("variant").and_then(serde_json::Value::as_str) {
        Some(variant) if !variant.is_empty() => format!("{os}/{arch}/{variant}"),
        _ => format!("{os}/{arch}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use squash_proto::pb;
    use std::collections::BTreeMap;

    fn r(id: &str) -> gateway::Ref {
        gateway::Ref {
            id: id.into(),
            def: Some(pb::Definition::default()),
        }
    }

    fn multi() -> gateway::Result {
        let mut refs = BTreeMap::new();
        refs.insert("linux/amd64".to_string(), r("a"));
        refs.insert("linux/arm64".to_string(), r("b"));
        let mut metadata = BTreeMap::new();
        for p in ["linux/amd64", "linux/arm64"] {
            metadata.insert(format!("{CONFIG}/{p}"), format!("cfg {p}").into_bytes());
            metadata.insert(format!("{BASE_CONFIG}/{p}"), b"base".to_vec());
        }
        metadata.insert("refs.platforms".into(), b"{}".to_vec());
        gateway::Result {
            result: Some(gateway::result::Result::Refs(gateway::RefMap { refs })),
            metadata,
            attestations: BTreeMap::new(),
        }
    }

    #[test]
    fn lists_images_per_platform() {
        let res = multi();
        let list = images(&res).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].platform, Some("linux/arm64"));
        assert_eq!(
            meta(&res, CONFIG, Some("linux/arm64")),
            Some(&b"cfg linux/arm64"[..])
        );
    }

    #[test]
    fn deprecated_and_definitionless_results_are_refused() {
        let res = gateway::Result {
            result: Some(gateway::result::Result::RefDeprecated("x".into())),
            ..Default::default()
        };
        assert_eq!(images(&res), Err(ResultError::Deprecated));
        let res = gateway::Result {
            result: Some(gateway::result::Result::Ref(gateway::Ref {
                id: "x".into(),
                def: None,
            })),
            ..Default::default()
        };
        assert_eq!(images(&res), Err(ResultError::NoDefinition("x".into())));
    }

    #[test]
    fn assemble_replaces_refs_and_configs_and_keeps_the_rest() {
        let res = multi();
        let done = [squashed("linux/arm64", Some(b"new cfg"), false, None)];
        let out = assemble(&res, &done);
        let Some(gateway::result::Result::Refs(map)) = &out.result else {
            panic!()
        };
        assert_eq!(map.refs["linux/arm64"].id, "new");
        assert_eq!(map.refs["linux/amd64"].id, "a");
        assert_eq!(out.metadata[&format!("{CONFIG}/linux/arm64")], b"new cfg");
        assert_eq!(
            out.metadata[&format!("{CONFIG}/linux/amd64")],
            b"cfg linux/amd64"
        );
        assert!(!out
            .metadata
            .contains_key(&format!("{BASE_CONFIG}/linux/arm64")));
        assert!(out
            .metadata
            .contains_key(&format!("{BASE_CONFIG}/linux/amd64")));
        assert_eq!(out.metadata["refs.platforms"], b"{}");
    }

    #[test]
    fn assemble_returns_a_base_config_we_resolved_only_when_the_base_is_kept() {
        for keeps_base in [true, false] {
            let mut res = multi();
            res.metadata.remove(&format!("{BASE_CONFIG}/linux/arm64"));
            let done = [squashed("linux/arm64", None, keeps_base, Some(b"resolved"))];
            let out = assemble(&res, &done);
            let got = out.metadata.get(&format!("{BASE_CONFIG}/linux/arm64"));
            assert_eq!(got.is_some(), keeps_base, "keeps_base {keeps_base}");
            if keeps_base {
                assert_eq!(got.unwrap(), b"resolved");
            }
        }
    }

    #[test]
    fn epoch_from_metadata() {
        let mut res = multi();
        assert_eq!(epoch(&res, None), None);
        res.metadata.insert(EPOCH.into(), b"100".to_vec());
        assert_eq!(epoch(&res, Some("linux/amd64")), Some(100));
        res.metadata.insert(EPOCH.into(), b"soon".to_vec());
        assert_eq!(epoch(&res, None), None);
    }

    fn squashed(
        platform: &str,
        config: Option<&[u8]>,
        keeps_base: bool,
        described_base: Option<&[u8]>,
    ) -> Squashed {
        Squashed {
            platform: Some(platform.into()),
            reference: r("new"),
            squash: Squash {
                def: crate::plan::Def::Ready(pb::Definition::default()),
                config: config.map(<[u8]>::to_vec),
                keeps_base,
                described_base: described_base.map(<[u8]>::to_vec),
                summary: "squash".into(),
                report: None,
            },
            report: None,
            report_inline_only: false,
        }
    }

    #[test]
    fn the_report_goes_with_the_attestations_inline_only_as_they_are() {
        for inline_only in [false, true] {
            let mut s = squashed("linux/amd64", None, false, None);
            s.report = Some(r("report"));
            s.report_inline_only = inline_only;
            let out = assemble(&multi(), &[s]);
            let atts = &out.attestations["linux/amd64"].attestation;
            assert_eq!(atts.len(), 1);
            assert_eq!(atts[0].r#ref, Some(r("report")));
            assert_eq!(atts[0].in_toto_predicate_type, REPORT_PREDICATE);
            assert_eq!(
                atts[0].metadata.get("inline-only").map(Vec::as_slice),
                inline_only.then_some(&b"true"[..]),
                "inline-only {inline_only}"
            );
        }
    }
}
