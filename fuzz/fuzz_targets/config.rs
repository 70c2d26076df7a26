//! Arbitrary bytes as an image config -> `config::rewrite` (layouts `Full`, `KeepBase` with one
//! layer and the first two history entries, and `KeepBase` as the input itself would describe
//! a base, each with and without a `created` time), `config::count_layers`, `Base::read`; and
//! the RFC 3339 formatting.
//!
//! Asserts, besides "no panic":
//! - `rewrite` fails exactly when `count_layers` does (the input is not a JSON object, or its
//!   `history` is there and not a list);
//! - on `Ok`, with `keep` = 0 for `Full` and the base's layers for `KeepBase`:
//!   * the output is a JSON object equal to the input outside `history` and `created`;
//!   * EXACT: the output's history has exactly `keep + 1` non-empty entries, whatever the
//!     input's history said about the base (none, fewer, more), and `count_layers` of the
//!     output says the same;
//!   * every input entry above the base's is in the output, unchanged but for
//!     `empty_layer: true` (a non-object one replaced by `{"empty_layer": true}`), in order,
//!     right before the new last entry;
//!   * in `KeepBase`, the base's entries are unchanged when they describe its layers one for
//!     one;
//!   * the new last entry is `{created?, created_by, comment}`, non-empty;
//!   * `created` (top level and last entry) is the given time; with none given, the last entry
//!     has none and the top-level `created` is the input's;
//! - `format_rfc3339` gives a well-formed time for every x from 0000-01-01T00:00:00Z to
//!   9999-12-31T23:59:59Z (x taken from the input's first 8 bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use squash_frontend::config::{self, Base, Layout, SquashEntry};

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z in Unix seconds.
const MIN_SECS: i64 = -62_167_219_200;
const MAX_SECS: i64 = 253_402_300_799;

fuzz_target!(|data: &[u8]| {
    if let Some(first) = data.first_chunk::<8>() {
        let x = MIN_SECS + i64::from_le_bytes(*first).rem_euclid(MAX_SECS - MIN_SECS + 1);
        let text = config::format_rfc3339(x);
        let b = text.as_bytes();
        assert!(
            b.len() == 20 && b[4] == b'-' && b[10] == b'T' && b[19] == b'Z',
            "{x} -> {text}"
        );
    }

    let counted = config::count_layers(data, None);
    let entry = SquashEntry {
        created_by: "squash: fuzz".into(),
        comment: "squash-frontend".into(),
        under: None,
    };
    // A split's two entries: the lower one under some of the Dockerfile's layers.
    let split = [
        SquashEntry {
            created_by: "squash: fuzz lower".into(),
            under: Some(data.len() % 5),
            ..entry.clone()
        },
        SquashEntry {
            created_by: "squash: fuzz upper".into(),
            ..entry.clone()
        },
    ];
    let mut layouts = vec![
        Layout::Full,
        Layout::KeepBase(Base {
            layers: 1,
            history: 2,
        }),
    ];
    layouts.extend(Base::read(data).map(Layout::KeepBase));
    for layout in layouts {
        for created in [None, Some("2023-11-14T22:13:20Z")] {
            match config::rewrite(data, layout, &entry, created) {
                Ok(out) => {
                    assert!(counted.is_ok(), "rewrite took what count_layers refused");
                    check(data, &out, layout, &entry, created);
                    let two = config::rewrite_for(data, layout, &split, created)
                        .expect("rewrite_for takes what rewrite takes");
                    check_split(&out, &two, &split);
                }
                Err(e) => {
                    assert_eq!(
                        counted.as_ref().err(),
                        Some(&e),
                        "rewrite and count_layers differ"
                    );
                }
            }
        }
    }
});

fn check(input: &[u8], out: &[u8], layout: Layout, entry: &SquashEntry, created: Option<&str>) {
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
    let (keep, base_entries) = match layout {
        Layout::Full => (0, 0),
        Layout::KeepBase(base) => (base.layers, base.history.min(h_in.len())),
    };

    // EXACT: one non-empty entry per layer of the squashed image.
    assert_eq!(squash_fuzz::non_empty(h_out), keep + 1, "non-empty entries");
    assert_eq!(
        config::count_layers(out, None).map(|l| l.total()),
        Ok(keep + 1)
    );

    // The Dockerfile's entries, marked empty, right before the new one.
    let above = &h_in[base_entries..];
    assert!(h_out.len() > above.len(), "entries went missing");
    let tail = &h_out[h_out.len() - 1 - above.len()..h_out.len() - 1];
    for (i, (x, y)) in above.iter().zip(tail).enumerate() {
        let want = match x.as_object() {
            Some(obj) => {
                let mut marked = obj.clone();
                marked.insert("empty_layer".into(), Value::Bool(true));
                Value::Object(marked)
            }
            None => serde_json::json!({ "empty_layer": true }),
        };
        assert_eq!(y, &want, "entry {i} above the base not just marked empty");
    }

    // Base entries that describe the base's layers one for one stay as they were.
    let base_in = &h_in[..base_entries];
    if keep > 0 && squash_fuzz::non_empty(base_in) == keep {
        assert_eq!(&h_out[..base_entries], base_in, "base entries changed");
    }

    let last = h_out
        .last()
        .unwrap()
        .as_object()
        .expect("new entry is an object");
    assert_eq!(last["created_by"], entry.created_by.as_str());
    assert_eq!(last["comment"], entry.comment.as_str());
    assert!(!empty(h_out.last().unwrap()), "new entry is empty");

    match created {
        Some(c) => {
            assert_eq!(a.get("created"), Some(&Value::from(c)));
            assert_eq!(last.get("created"), Some(&Value::from(c)));
        }
        None => {
            assert_eq!(last.get("created"), None, "a time was made up");
            assert_eq!(a.get("created"), b.get("created"));
        }
    }
}

/// The split's rewrite (`two`) against the single one (`one`): the same entries with the
/// single entry replaced by the split's two, the upper one last, the lower one anywhere before
/// it, and one more layer.
fn check_split(one: &[u8], two: &[u8], split: &[SquashEntry; 2]) {
    let history = |b: &[u8]| -> Vec<Value> {
        let v: Value = serde_json::from_slice(b).unwrap();
        v["history"].as_array().unwrap().clone()
    };
    let (h1, h2) = (history(one), history(two));
    assert_eq!(h2.len(), h1.len() + 1, "one entry more");
    assert_eq!(
        squash_fuzz::non_empty(&h2),
        squash_fuzz::non_empty(&h1) + 1,
        "one layer more"
    );
    let by = |h: &Value| h["created_by"].as_str().map(str::to_string);
    assert_eq!(
        by(h2.last().unwrap()).as_deref(),
        Some(split[1].created_by.as_str()),
        "the upper entry last"
    );
    // The lower entry: one named as the split names it (the input's history may have an
    // entry of that name too), without which the rest is the single rewrite's history.
    let without = |k: usize| {
        let mut rest = h2.clone();
        rest.remove(k);
        rest.pop();
        rest
    };
    let named: Vec<usize> = (0..h2.len() - 1)
        .filter(|&k| by(&h2[k]).as_deref() == Some(split[0].created_by.as_str()))
        .collect();
    assert!(!named.is_empty(), "the lower entry is there");
    assert!(
        named.iter().any(|&k| without(k) == h1[..h1.len() - 1]),
        "the other entries as the single rewrite has them:\n{:?}\nagainst\n{:?}",
        named.iter().map(|&k| without(k)).collect::<Vec<_>>(),
        &h1[..h1.len() - 1]
    );
}
