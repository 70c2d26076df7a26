//! Rewriting the image config for the squashed layers.
//!
//! Everything the Dockerfile frontend put in the config is kept as it was (JSON key order and
//! unknown keys included); only `history` and `created` change. The exporter matches history
//! entries to layers by position (every entry without `empty_layer: true` is one layer) and
//! silently "fixes" a mismatch by blaming the wrong step, so the history is written to match
//! the new layers exactly: base entries verbatim, Dockerfile entries marked empty, one entry
//! for the squashed layer.

use serde_json::{Map, Value};

/// Why a config could not be rewritten.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("the image config returned by the Dockerfile frontend is not a JSON object: {0}")]
    NotAnObject(String),
    #[error("the image config's history is not a list")]
    BadHistory,
}

/// The layers the squashed image will have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One layer, nothing kept from the base.
    Full,
    /// The base image's `base_layers` layers, then one.
    KeepBase { base_layers: usize },
}

/// What the appended history entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SquashEntry {
    pub created_by: String,
    pub comment: String,
}

/// The number of layers the unsquashed image has, as its history tells.
pub fn layer_count(config: &[u8]) -> Result<usize, ConfigError> {
    let value = parse(config)?;
    Ok(history(&value)?.iter().filter(|h| !is_empty(h)).count())
}

/// The number of layers of a base image config (`rootfs.diff_ids`).
pub fn base_layer_count(base_config: &[u8]) -> Option<usize> {
    let value: Value = serde_json::from_slice(base_config).ok()?;
    value
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(Vec::len)
}

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

/// The config with its history rewritten for `layout` and `created` set to `created` (RFC 3339),
/// or, when that is `None`, to the newest time the history already holds (never "now": that
/// would make every cached rebuild a new image).
pub fn rewrite(
    config: &[u8],
    layout: Layout,
    entry: &SquashEntry,
    created: Option<&str>,
) -> Result<Vec<u8>, ConfigError> {
    let mut value = parse(config)?;
    let keep = match layout {
        Layout::Full => 0,
        Layout::KeepBase { base_layers } => base_layers,
    };
    let created = created
        .map(str::to_string)
        .or_else(|| last_created(&value).map(str::to_string));
    let obj = value.as_object_mut().expect("checked by parse");
    let history = match obj.get_mut("history") {
        Some(Value::Array(h)) => h,
        Some(_) => return Err(ConfigError::BadHistory),
        None => {
            obj.insert("history".into(), Value::Array(vec![]));
            match obj.get_mut("history") {
                Some(Value::Array(h)) => h,
                _ => unreachable!("just inserted"),
            }
        }
    };
    let mut kept = 0usize;
    for item in history.iter_mut() {
        if is_empty(item) {
            continue;
        }
        if kept < keep {
            kept += 1;
            continue;
        }
        match item.as_object_mut() {
            Some(map) => {
                map.insert("empty_layer".into(), Value::Bool(true));
            }
            // A non-object entry (e.g. null) reads as an entry with a layer: make it an empty one.
            None => *item = serde_json::json!({ "empty_layer": true }),
        }
    }
    let mut new = Map::new();
    if let Some(created) = &created {
        new.insert("created".into(), Value::String(created.clone()));
    }
    new.insert("created_by".into(), Value::String(entry.created_by.clone()));
    new.insert("comment".into(), Value::String(entry.comment.clone()));
    history.push(Value::Object(new));
    if let Some(created) = created {
        obj.insert("created".into(), Value::String(created));
    }
    Ok(serde_json::to_vec(&value).expect("a JSON value always serialises"))
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

/// The newest `created` in the history (RFC 3339 strings of one format sort by time only
/// when equal in shape, so compare as parsed seconds where possible).
fn last_created(value: &Value) -> Option<&str> {
    let h = value.get("history")?.as_array()?;
    h.iter()
        .filter_map(|e| e.get("created").and_then(Value::as_str))
        .max_by_key(|s| rfc3339_seconds(s).unwrap_or(i64::MIN))
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

/// Parses the seconds of an RFC 3339 time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`).
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
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

// Howard Hinnant's civil calendar algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

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
        assert_eq!(h[6]["created"], "2025-05-05T12:00:00Z");
        assert_eq!(out["created"], "2025-05-05T12:00:00Z");
    }

    #[test]
    fn keep_base_leaves_base_entries_byte_for_byte() {
        let out = rewritten(Layout::KeepBase { base_layers: 2 }, None);
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
        assert_eq!(layer_count(&out).unwrap(), 1);
    }

    #[test]
    fn counts_layers() {
        let bytes = serde_json::to_vec(&sample()).unwrap();
        assert_eq!(layer_count(&bytes).unwrap(), 4);
        assert_eq!(base_layer_count(&bytes), Some(2));
        assert_eq!(base_layer_count(b"{}"), None);
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
    fn rfc3339_round_trip() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for s in [0, 1_700_000_000, 951_782_400, 4_102_444_800, -86_401] {
            assert_eq!(rfc3339_seconds(&format_rfc3339(s)), Some(s));
        }
        assert_eq!(
            rfc3339_seconds("2023-11-14T23:13:20.5+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(rfc3339_seconds("yesterday"), None);
    }
}
