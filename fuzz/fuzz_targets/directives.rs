//! Arbitrary bytes as a Dockerfile -> `directives::read` with our three keys, and what it finds
//! -> `options::settings`.
//!
//! Asserts, besides "no panic":
//! - on `Ok`, every key is one of ours; every value is trimmed (an empty one is kept, for the
//!   settings to refuse); every line number
//!   names a line of the input (1-based, after the BOM) that holds a `#`, and the key
//!   (case-insensitively) and the value both appear in that line;
//! - on `Err`, the line numbers the error names are lines of the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use squash_frontend::directives::{self, DirectiveError};
use squash_frontend::request::{Opts, Request};

const OURS: [&str; 5] = [
    "squash-split",
    "squash",
    "squash-method",
    "squash-upstream",
    "squash-min-saving",
];

fuzz_target!(|data: &[u8]| {
    let text = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    match directives::read(data, &OURS) {
        Ok(found) => {
            for (key, (value, line)) in &found {
                assert!(OURS.contains(&key.as_str()), "foreign key {key:?}");
                assert!(value.trim() == value, "value {value:?}");
                assert!(
                    (1..=lines.len()).contains(line),
                    "line {line} of {}",
                    lines.len()
                );
                let raw = String::from_utf8_lossy(lines[line - 1]);
                assert!(raw.contains('#'), "line {line} {raw:?} has no #");
                assert!(
                    raw.to_ascii_lowercase().contains(key.as_str()),
                    "{key:?} not in {raw:?}"
                );
                assert!(raw.contains(value.as_str()), "{value:?} not in {raw:?}");
            }
            let _ = Request::new(&Opts::new(), "session").settings(&found);
        }
        Err(e) => {
            let named = match &e {
                DirectiveError::Duplicate { line, first, .. } => vec![*line, *first],
                DirectiveError::Misplaced { line, .. } | DirectiveError::Unknown { line, .. } => {
                    vec![*line]
                }
                DirectiveError::BeforeSyntax {
                    line, syntax_line, ..
                } => vec![*line, *syntax_line],
            };
            for l in named {
                assert!((1..=lines.len()).contains(&l), "error names line {l}: {e}");
            }
            let _ = e.to_string();
        }
    }
});
