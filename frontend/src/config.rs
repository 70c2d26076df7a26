//! Rewriting the image config for the squashed layers.
//!
//! Everything the Dockerfile frontend put in the config is kept as it was (JSON key order and
//! unknown keys included); only `history` and, with a source date epoch, `created` change. The
//! exporter matches history entries to layers by position (every entry without
//! `empty_layer: true` is one layer) and silently "fixes" a mismatch by blaming the wrong step,
//! so the history is written to match the new layers exactly: base entries verbatim, Dockerfile
//! entries marked empty, one entry per squashed layer (at the end; a split's lower layer's right
//! after the entry of the split stage's last step, see [`SquashEntry::under`]).
//!
//! Layers are counted from the base image's `rootfs.diff_ids`, never from its history: images
//! made by other tools may have no history, fewer entries than layers, or wrong `empty_layer`
//! flags. Only the entries the Dockerfile frontend added above the base's are counted from the
//! history (it writes them itself, one non-empty entry per layer).
//!
//! Times: without an epoch no time is written. The exporter then fills in the time the squashed
//! layer was made for our entry (and for the Dockerfile's entries, now empty, before it) and
//! takes the image's `created` from the last entry, as it does for the plain build
//! (`normalizeLayersAndHistory` and `patchImageConfig` in BuildKit's
//! `exporter/containerimage/writer.go`, and moby's copy for the classic store). A cached
//! rebuild reuses the layer and so its time. With an epoch, our entry and `created` are the
//! epoch, as the Dockerfile frontend writes them for its own entries.

use serde_json::{Map, Value};

/// Why a config could not be rewritten.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The config is not JSON, or not an object.
    #[error("the image config returned by the Dockerfile frontend is not a JSON object: {0}")]
    NotAnObject(String),
    /// `history` is not a list.
    #[error("the image config's history is not a list")]
    BadHistory,
}

/// The base image, as its config tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    /// Its layers: the length of its `rootfs.diff_ids`.
    pub layers: usize,
    /// Its history entries, which the Dockerfile frontend copies to the top of the image's.
    pub history: usize,
}

impl Base {
    /// Reads a base image's config; `None` unless it lists its layers (`rootfs.diff_ids`).
    pub fn read(base_config: &[u8]) -> Option<Base> {
        let value: Value = serde_json::from_slice(base_config).ok()?;
        let layers = value.pointer("/rootfs/diff_ids")?.as_array()?.len();
        let history = match value.get("history") {
            Some(Value::Array(h)) => h.len(),
            _ => 0,
        };
        Some(Base { layers, history })
    }
}

/// The layers of a built image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    /// The base image's (0 for a `scratch` chain).
    pub base: usize,
    /// Those the Dockerfile added: its non-empty history entries above the base's.
    pub added: usize,
}

impl Layers {
    /// Every layer of the image.
    pub fn total(&self) -> usize {
        self.base + self.added
    }
}

/// The layers of the image whose config is `config`, built on `base` (`None`: on nothing, or
/// on an image nobody described, whose layers then count as their history entries do).
pub fn count_layers(config: &[u8], base: Option<Base>) -> Result<Layers, ConfigError> {
    let value = parse(config)?;
    let history = history(&value)?;
    Ok(match base {
        Some(base) => Layers {
            base: base.layers,
            added: non_empty(history.get(base.history..).unwrap_or_default()),
        },
        None => Layers {
            base: 0,
            added: non_empty(history),
        },
    })
}

/// The layers the squashed image will have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One layer, nothing kept from the base.
    Full,
    /// The base image's layers, then one.
    KeepBase(Base),
}

/// What the appended history entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SquashEntry {
    /// The entry's `created_by`.
    pub created_by: String,
    /// The entry's `comment`.
    pub comment: String,
    /// Where it goes: at the end (`None`), or right after the entry of the layer that has
    /// this many of the image's layers above it (a split's lower layer: after the entry of
    /// the split stage's last step, the later steps' entries after it). An entry that count
    /// does not fit goes at the end.
    pub under: Option<usize>,
}

/// What the entry of a base layer with no history entry of its own says.
pub(crate) const BASE_LAYER_WITHOUT_HISTORY: &str =
    "base image layer (the base image has no history entry for it)";

/// Whether `base_config` describes the bottom layers of the image whose config is `config`:
/// its `rootfs.diff_ids` are the first ones of the image's, or, where the image config carries
/// no diff IDs, its history entries are the first ones of the image's. Guards a base config
/// resolved after the build (a tag could have moved in between).
pub fn describes_base(config: &[u8], base_config: &[u8]) -> bool {
    let (Ok(image), Ok(base)) = (
        serde_json::from_slice::<Value>(config),
        serde_json::from_slice::<Value>(base_config),
    ) else {
        return false;
    };
    let list = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_array).cloned();
    match (
        list(&image, "/rootfs/diff_ids"),
        list(&base, "/rootfs/diff_ids"),
    ) {
        (Some(ids), Some(base_ids)) if !ids.is_empty() => ids.starts_with(&base_ids),
        (_, Some(_)) => match (list(&image, "/history"), list(&base, "/history")) {
            (Some(h), Some(bh)) => {
                let by = |e: &Value| e.get("created_by").cloned();
                h.len() >= bh.len() && h.iter().zip(&bh).all(|(a, b)| by(a) == by(b))
            }
            _ => false,
        },
        _ => false,
    }
}

/// The config with its history rewritten for `layout` and, when `created` is given (RFC 3339:
/// the source date epoch), `created` set to it on the image and on the new entry.
pub fn rewrite(
    config: &[u8],
    layout: Layout,
    entry: &SquashEntry,
    created: Option<&str>,
) -> Result<Vec<u8>, ConfigError> {
    rewrite_for(config, layout, std::slice::from_ref(entry), created)
}

/// [`rewrite`] for a squash into several layers above `layout`'s base: one entry each, in order.
pub fn rewrite_for(
    config: &[u8],
    layout: Layout,
    entries: &[SquashEntry],
    created: Option<&str>,
) -> Result<Vec<u8>, ConfigError> {
    let mut value = parse(config)?;
    let obj = value.as_object_mut().expect("checked by parse");
    // Taken out of its slot and put back into it: the keys keep their order.
    let old = match obj.get_mut("history") {
        None => vec![],
        Some(Value::Array(h)) => std::mem::take(h),
        Some(_) => return Err(ConfigError::BadHistory),
    };
    let (mut history, rest) = match layout {
        Layout::Full => (vec![], old),
        Layout::KeepBase(base) => {
            let mut old = old;
            let rest = old.split_off(base.history.min(old.len()));
            (base_entries(old, base.layers), rest)
        }
    };
    // Where each new entry goes among `rest`: before the entry at that index (`rest.len()`:
    // at the end).
    let layer_entries: Vec<usize> = (0..rest.len()).filter(|&i| !is_empty(&rest[i])).collect();
    let at: Vec<usize> = entries
        .iter()
        .map(|e| match e.under {
            Some(above) if above < layer_entries.len() => {
                layer_entries[layer_entries.len() - 1 - above] + 1
            }
            _ => rest.len(),
        })
        .collect();
    let new_entries = |i: usize, history: &mut Vec<Value>| {
        for (entry, _) in entries.iter().zip(&at).filter(|(_, &a)| a == i) {
            let mut new = Map::new();
            if let Some(created) = created {
                new.insert("created".into(), Value::String(created.to_string()));
            }
            new.insert("created_by".into(), Value::String(entry.created_by.clone()));
            new.insert("comment".into(), Value::String(entry.comment.clone()));
            history.push(Value::Object(new));
        }
    };
    let count = rest.len();
    for (i, mut item) in rest.into_iter().enumerate() {
        new_entries(i, &mut history);
        match item.as_object_mut() {
            Some(map) => {
                map.insert("empty_layer".into(), Value::Bool(true));
            }
            // A non-object entry (e.g. null) reads as an entry with a layer: make it an empty one.
            None => item = serde_json::json!({ "empty_layer": true }),
        }
        history.push(item);
    }
    new_entries(count, &mut history);
    obj.insert("history".into(), Value::Array(history));
    if let Some(created) = created {
        obj.insert("created".into(), Value::String(created.to_string()));
    }
    Ok(serde_json::to_vec(&value).expect("a JSON value always serialises"))
}

/// The base image's entries, verbatim where they describe its `layers` layers one for one;
/// otherwise made to: the entries past the last layer marked empty, or an entry added for each
/// layer that has none.
fn base_entries(mut entries: Vec<Value>, layers: usize) -> Vec<Value> {
    let mut seen = 0usize;
    for item in &mut entries {
        if is_empty(item) {
            continue;
        }
        seen += 1;
        if seen > layers {
            match item.as_object_mut() {
                Some(map) => {
                    map.insert("empty_layer".into(), Value::Bool(true));
                }
                None => *item = serde_json::json!({ "empty_layer": true }),
            }
        }
    }
    for _ in seen..layers {
        entries.push(serde_json::json!({
            "created_by": BASE_LAYER_WITHOUT_HISTORY,
            "comment": "squash-frontend",
        }));
    }
    entries
}

fn parse(config: &[u8]) -> Result<Value, ConfigError> {
    let value: Value =
        serde_json::from_slice(config).map_err(|e| ConfigError::NotAnObject(e.to_string()))?;
    if !value.is_object() {
        return Err(ConfigError::NotAnObject("not an object".into()));
    }
    Ok(value)
}

fn history(value: &Value) -> Result<&[Value], ConfigError> {
    match value.get("history") {
        None => Ok(&[]),
        Some(Value::Array(h)) => Ok(h),
        Some(_) => Err(ConfigError::BadHistory),
    }
}

fn is_empty(entry: &Value) -> bool {
    entry.get("empty_layer").and_then(Value::as_bool) == Some(true)
}

/// The number of entries that describe a layer.
fn non_empty(history: &[Value]) -> usize {
    history.iter().filter(|h| !is_empty(h)).count()
}

/// Formats Unix seconds as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn format_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's civil calendar algorithm.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> SquashEntry {
        SquashEntry {
            created_by: "squash: 3 layers -> 1".into(),
            comment: "squash-frontend".into(),
            under: None,
        }
    }

    fn sample() -> Value {
        serde_json::from_slice(crate::testkit::RICH_CONFIG).unwrap()
    }

    fn rewritten(layout: Layout, created: Option<&str>) -> Value {
        let bytes = serde_json::to_vec(&sample()).unwrap();
        serde_json::from_slice(&rewrite(&bytes, layout, &entry(), created).unwrap()).unwrap()
    }

    #[test]
    fn a_base_config_describes_the_bottom_layers_or_not() {
        let image = json!({
            "rootfs": {"type": "layers", "diff_ids": ["sha256:a", "sha256:b", "sha256:c"]},
            "history": [{"created_by": "base 1"}, {"created_by": "base 2"}, {"created_by": "RUN x"}]
        });
        let base = json!({
            "rootfs": {"type": "layers", "diff_ids": ["sha256:a", "sha256:b"]},
            "history": [{"created_by": "base 1"}, {"created_by": "base 2"}]
        });
        let other = json!({
            "rootfs": {"type": "layers", "diff_ids": ["sha256:x"]},
            "history": [{"created_by": "other"}]
        });
        let b = |v: &Value| serde_json::to_vec(v).unwrap();
        assert!(describes_base(&b(&image), &b(&base)));
        assert!(!describes_base(&b(&image), &b(&other)));
        // No diff IDs in the image config: the history decides.
        let mut no_ids = image.clone();
        no_ids.as_object_mut().unwrap().remove("rootfs");
        assert!(describes_base(&b(&no_ids), &b(&base)));
        assert!(!describes_base(&b(&no_ids), &b(&other)));
        // Not a config at all.
        assert!(!describes_base(b"[", &b(&base)));
        assert!(!describes_base(&b(&image), b"{}"));
    }

    #[test]
    fn full_squash_marks_every_old_entry_empty_and_adds_one() {
        let out = rewritten(Layout::Full, None);
        let h = out["history"].as_array().unwrap();
        assert_eq!(h.len(), 7);
        assert!(h[..6].iter().all(|e| e["empty_layer"] == json!(true)));
        assert_eq!(h[6]["created_by"], "squash: 3 layers -> 1");
        assert!(h[6].get("empty_layer").is_none());
        // No epoch: the exporter stamps the layer's own time, as for the plain build.
        assert!(h[6].get("created").is_none(), "{}", h[6]);
        assert!(out.get("created").is_none());
        // The Dockerfile's entries keep the times they have.
        assert_eq!(h[5]["created"], "2025-05-05T12:00:00Z");
    }

    #[test]
    fn an_epoch_is_the_time_of_the_new_entry_and_the_image() {
        let out = rewritten(Layout::Full, Some("2023-11-14T22:13:20Z"));
        assert_eq!(out["created"], "2023-11-14T22:13:20Z");
        assert_eq!(out["history"][6]["created"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn keep_base_leaves_base_entries_byte_for_byte() {
        let out = rewritten(
            Layout::KeepBase(Base {
                layers: 2,
                history: 3,
            }),
            None,
        );
        let h = out["history"].as_array().unwrap();
        let before = sample();
        assert_eq!(&h[..3], &before["history"].as_array().unwrap()[..3]);
        assert_eq!(h[3]["empty_layer"], json!(true));
        assert_eq!(h[5]["empty_layer"], json!(true));
        assert_eq!(
            h.iter().filter(|e| !is_empty(e)).count(),
            3,
            "2 base layers + 1"
        );
    }

    #[test]
    fn everything_but_history_and_created_is_kept() {
        let mut out = rewritten(Layout::Full, Some("2023-11-14T22:13:20Z"));
        let mut before = sample();
        assert_eq!(out["created"], "2023-11-14T22:13:20Z");
        for v in [&mut out, &mut before] {
            let o = v.as_object_mut().unwrap();
            o.remove("history");
            o.remove("created");
        }
        assert_eq!(out, before);
    }

    #[test]
    fn key_order_is_kept() {
        let bytes = br#"{"os":"linux","architecture":"amd64","config":{"Cmd":["a"],"Env":[]},"history":[]}"#;
        let out = rewrite(bytes, Layout::Full, &entry(), None).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with(
                r#"{"os":"linux","architecture":"amd64","config":{"Cmd":["a"],"Env":[]}"#
            ),
            "{s}"
        );
    }

    #[test]
    fn no_history_no_created() {
        let out = rewrite(br#"{"os":"linux"}"#, Layout::Full, &entry(), None).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["history"].as_array().unwrap().len(), 1);
        assert!(v.get("created").is_none());
    }

    #[test]
    fn non_object_entries_cannot_claim_a_layer() {
        let out = rewrite(
            br#"{"history":[null,{"created_by":"RUN a"}]}"#,
            Layout::Full,
            &entry(),
            None,
        )
        .unwrap();
        assert_eq!(non_empty(&entries(&out)), 1);
    }

    #[test]
    fn counts_layers_from_the_base_layers_and_the_added_history() {
        let bytes = serde_json::to_vec(&sample()).unwrap();
        let base = Base::read(&bytes).unwrap();
        assert_eq!(
            base,
            Base {
                layers: 2,
                history: 6
            }
        );
        assert_eq!(Base::read(b"{}"), None);
        assert_eq!(
            count_layers(&bytes, None).unwrap(),
            Layers { base: 0, added: 4 }
        );
        let base = Base {
            layers: 2,
            history: 3,
        };
        let layers = count_layers(&bytes, Some(base)).unwrap();
        assert_eq!((layers, layers.total()), (Layers { base: 2, added: 2 }, 4));
    }

    /// A config the Dockerfile frontend returns for two RUN steps on `base_history`.
    fn built_on(base_history: &[Value]) -> Vec<u8> {
        let mut history = base_history.to_vec();
        history.push(json!({"created_by": "RUN a", "comment": "buildkit.dockerfile.v0"}));
        history.push(json!({"created_by": "ENV x", "empty_layer": true}));
        history.push(json!({"created_by": "RUN b", "comment": "buildkit.dockerfile.v0"}));
        serde_json::to_vec(&json!({"os": "linux", "history": history})).unwrap()
    }

    fn entries(config: &[u8]) -> Vec<Value> {
        let v: Value = serde_json::from_slice(config).unwrap();
        v["history"].as_array().unwrap().clone()
    }

    #[test]
    fn a_base_with_no_history_still_counts_its_layers() {
        let config = built_on(&[]);
        let base = Base {
            layers: 2,
            history: 0,
        };
        assert_eq!(
            count_layers(&config, Some(base)).unwrap(),
            Layers { base: 2, added: 2 }
        );
        // Base mode: one entry per base layer, then the Dockerfile's (empty), then ours.
        let out = rewrite(&config, Layout::KeepBase(base), &entry(), None).unwrap();
        let h = entries(&out);
        assert_eq!(non_empty(&h), 3, "{h:?}");
        assert_eq!(h[0]["created_by"], BASE_LAYER_WITHOUT_HISTORY);
        assert_eq!(h[1]["created_by"], BASE_LAYER_WITHOUT_HISTORY);
        assert!(h[2..5].iter().all(is_empty));
        assert_eq!(h[2]["created_by"], "RUN a");
        assert_eq!(h[5]["created_by"], "squash: 3 layers -> 1");
        // Full mode: one layer, one entry.
        let out = rewrite(&config, Layout::Full, &entry(), None).unwrap();
        assert_eq!(non_empty(&entries(&out)), 1);
    }

    #[test]
    fn an_entry_with_layers_above_it_follows_the_entry_of_the_layer_below_them() {
        // Base: one layer; the Dockerfile: RUN a, ENV x (empty), RUN b, CMD (empty).
        let mut config: Value =
            serde_json::from_slice(&built_on(&[json!({"created_by": "base"})])).unwrap();
        config["history"]
            .as_array_mut()
            .unwrap()
            .push(json!({"created_by": "CMD c", "empty_layer": true}));
        let config = serde_json::to_vec(&config).unwrap();
        let base = Base {
            layers: 1,
            history: 1,
        };
        let split = |under: Option<usize>| {
            let lower = SquashEntry {
                created_by: "lower".into(),
                under,
                ..entry()
            };
            let upper = SquashEntry {
                created_by: "upper".into(),
                ..entry()
            };
            let out = rewrite_for(&config, Layout::KeepBase(base), &[lower, upper], None).unwrap();
            let h = entries(&out);
            assert_eq!(non_empty(&h), 3, "the base's layer and two: {h:?}");
            h.iter()
                .map(|e| e["created_by"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        // One layer above the lower one: right after RUN a, ENV x (of either part) after it.
        assert_eq!(
            split(Some(1)),
            ["base", "RUN a", "lower", "ENV x", "RUN b", "CMD c", "upper"]
        );
        // None above it: right after RUN b, the entries that follow (no layer) after it.
        assert_eq!(
            split(Some(0)),
            ["base", "RUN a", "ENV x", "RUN b", "lower", "CMD c", "upper"]
        );
        // A count the Dockerfile's entries cannot hold (as many layers as it has, or more), and
        // none: at the end, in order.
        for under in [Some(2), Some(7), None] {
            assert_eq!(
                split(under),
                ["base", "RUN a", "ENV x", "RUN b", "CMD c", "lower", "upper"]
            );
        }
        // Full mode counts from the first entry: the base's layer is one of them.
        let out = rewrite_for(
            &config,
            Layout::Full,
            &[SquashEntry {
                created_by: "lower".into(),
                under: Some(2),
                ..entry()
            }],
            None,
        )
        .unwrap();
        let h = entries(&out);
        assert_eq!(h[1]["created_by"], "lower", "{h:?}");
        assert_eq!(non_empty(&h), 1);
    }

    #[test]
    fn a_base_with_too_few_or_too_many_layer_entries_is_evened_out() {
        // Two layers, one of them with an entry.
        let fewer = [
            json!({"created_by": "base 1"}),
            json!({"created_by": "base env", "empty_layer": true}),
        ];
        let config = built_on(&fewer);
        let base = Base {
            layers: 2,
            history: 2,
        };
        assert_eq!(count_layers(&config, Some(base)).unwrap().total(), 4);
        let h = entries(&rewrite(&config, Layout::KeepBase(base), &entry(), None).unwrap());
        assert_eq!(
            &h[..2],
            &fewer[..],
            "the base's own entries stay as they are"
        );
        assert_eq!(h[2]["created_by"], BASE_LAYER_WITHOUT_HISTORY);
        assert_eq!(non_empty(&h), 3);
        // One layer, three entries claiming one (wrong empty_layer flags).
        let more = [
            json!({"created_by": "base 1"}),
            json!({"created_by": "base 2"}),
            json!({"created_by": "base 3"}),
        ];
        let config = built_on(&more);
        let base = Base {
            layers: 1,
            history: 3,
        };
        assert_eq!(
            count_layers(&config, Some(base)).unwrap(),
            Layers { base: 1, added: 2 }
        );
        let h = entries(&rewrite(&config, Layout::KeepBase(base), &entry(), None).unwrap());
        assert_eq!(h[0], more[0]);
        assert!(is_empty(&h[1]) && is_empty(&h[2]));
        assert_eq!(non_empty(&h), 2, "{h:?}");
    }

    #[test]
    fn bad_configs_are_errors() {
        assert!(matches!(
            rewrite(b"[1]", Layout::Full, &entry(), None),
            Err(ConfigError::NotAnObject(_))
        ));
        assert!(matches!(
            rewrite(b"not json", Layout::Full, &entry(), None),
            Err(ConfigError::NotAnObject(_))
        ));
        assert_eq!(
            rewrite(br#"{"history":3}"#, Layout::Full, &entry(), None),
            Err(ConfigError::BadHistory)
        );
    }

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(-86_401), "1969-12-30T23:59:59Z");
    }
}
