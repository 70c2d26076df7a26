//! Arbitrary bytes as an image config -> `config::rewrite` (layouts `Full`, `KeepBase { 1 }` and
//! `KeepBase { <the input's own rootfs.diff_ids count, else 2> }`, each with and without a
//! `created` time), `config::layer_count` and `config::base_layer_count`; and the RFC 3339
//! helpers.
//!
//! Asserts, besides "no panic":
//! - `rewrite` fails exactly when `layer_count` does (the input is not a JSON object, or its
//!   `history` is there and not a list);
//! - on `Ok`, with `keep` = 0 for `Full` and `base_layers` for `KeepBase`, and `n` the input's
//!   non-empty history entries (those whose `empty_layer` is not `true`):
//!   * the output is a JSON object equal to the input outside `history` and `created`;
//!   * its history is the input's plus one entry at the end: entries with `empty_layer: true`
//!     and the first `keep` non-empty ones unchanged; every later non-empty entry that is an
//!     object unchanged but for `empty_layer: true`; a later non-empty entry that is *not* an
//!     object (`null`, a number...) replaced by `{"empty_layer": true}`;
//!   * the new last entry is `{created?, created_by, comment}`, non-empty;
//!   * EXACT: the output has exactly `min(n, keep) + 1` non-empty entries, i.e. `keep + 1`
//!     whenever the input had at least `keep`, and `layer_count` of the output says the same;
//!   * `created` (top level and last entry) is the given time; with none given, the top-level
//!     `created` is the last entry's, which is one of the history's own `created` strings, and
//!     with no such string both are left as they were (absent in the last entry);
//! - `rfc3339_seconds(format_rfc3339(x)) == Some(x)` for every x from 0000-01-01T00:00:00Z to
//!   9999-12-31T23:59:59Z (x taken from the input's first 8 bytes), and `rfc3339_seconds` does
//!   not panic on the input as a string.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use squash_frontend::config::{self, Layout, SquashEntry};

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z in Unix seconds.
const MIN_SECS: i64 = -62_167_219_200;
const MAX_SECS: i64 = 253_402_300_799;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = config::rfc3339_seconds(s);
    }
    if let Some(first) = data.first_chunk::<8>() {
        let x = MIN_SECS + i64::from_le_bytes(*first).rem_euclid(MAX_SECS - MIN_SECS + 1);
        let text = config::format_rfc3339(x);
        assert_eq!(config::rfc3339_seconds(&text), Some(x), "{x} -> {text}");
    }

    let layers = config::layer_count(data);
    let base = config::base_layer_count(data);
    let entry = SquashEntry {
        created_by: "squash: fuzz".into(),
        comment: "squash-frontend".into(),
    };
    for layout in [
        Layout::Full,
        Layout::KeepBase { base_layers: 1 },
        Layout::KeepBase {
            base_layers: base.unwrap_or(2),
        },
    ] {
        for created in [None, Some("2023-11-14T22:13:20Z")] {
            match config::rewrite(data, layout, &entry, created) {
                Ok(out) => {
                    assert!(layers.is_ok(), "rewrite took what layer_count refused");
                    check(data, &out, layout, &entry, created);
                }
                Err(e) => {
                    assert_eq!(
                        layers.as_ref().err(),
                        Some(&e),
                        "rewrite and layer_count differ"
                    );
                }
            }
        }
    }
});

fn check(input: &[u8], out: &[u8], layout: Layout, entry: &SquashEntry, created: Option<&str>) {
    let keep = match layout {
        Layout::Full => 0,
        Layout::KeepBase { base_layers } => base_layers,
    };
    // The input as the library sees it, round-tripped through the same serialiser so that
    // number formatting does not count as a change.
    let before: Value = serde_json::from_slice(input).expect("rewrite took it");
    let before: Value = serde_json::from_slice(&serde_json::to_vec(&before).unwrap()).unwrap();
    let after: Value = serde_json::from_slice(out).expect("the rewritten config is JSON");
    let (b, a) = (
        before.as_object().unwrap(),
        after.as_object().expect("an object"),
    );

    let strip = |m: &serde_json::Map<String, Value>| {
        let mut m = m.clone();
        m.remove("history");
        m.remove("created");
        m
    };
    assert_eq!(strip(b), strip(a), "more than history and created changed");

    let empty = |v: &Value| v.get("empty_layer").and_then(Value::as_bool) == Some(true);
    let h_in: &[Value] = b
        .get("history")
        .and_then(Value::as_array)
        .map_or(&[], |v| v);
    let h_out = a["history"].as_array().expect("history is a list");
    assert_eq!(h_out.len(), h_in.len() + 1);
    let mut kept = 0;
    for (i, (x, y)) in h_in.iter().zip(h_out).enumerate() {
        if empty(x) {
            assert_eq!(x, y, "empty entry {i} changed");
        } else if kept < keep {
            kept += 1;
            assert_eq!(x, y, "kept base entry {i} changed");
        } else if let Some(obj) = x.as_object() {
            let mut marked = obj.clone();
            marked.insert("empty_layer".into(), Value::Bool(true));
            assert_eq!(
                y.as_object(),
                Some(&marked),
                "entry {i} not just marked empty"
            );
        } else {
            assert_eq!(
                y,
                &serde_json::json!({ "empty_layer": true }),
                "non-object entry {i} not made empty"
            );
        }
    }
    let last = h_out
        .last()
        .unwrap()
        .as_object()
        .expect("new entry is an object");
    assert_eq!(last["created_by"], entry.created_by.as_str());
    assert_eq!(last["comment"], entry.comment.as_str());
    assert!(!empty(&h_out[h_in.len()]), "new entry is empty");

    let n = squash_fuzz::non_empty(h_in);
    let want = n.min(keep) + 1;
    assert_eq!(squash_fuzz::non_empty(h_out), want, "non-empty entries");
    assert_eq!(config::layer_count(out), Ok(want));

    match created {
        Some(c) => {
            assert_eq!(a.get("created"), Some(&Value::from(c)));
            assert_eq!(last.get("created"), Some(&Value::from(c)));
        }
        None => match last.get("created") {
            Some(c) => {
                assert_eq!(a.get("created"), Some(c));
                assert!(
                    h_in.iter().any(|e| e.get("created") == Some(c)),
                    "created {c} is not from the history"
                );
            }
            None => {
                assert!(
                    !h_in
                        .iter()
                        .any(|e| e.get("created").is_some_and(Value::is_string)),
                    "a history time was ignored"
                );
                assert_eq!(a.get("created"), b.get("created"));
            }
        },
    }
}
