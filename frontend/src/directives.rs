//! Reading our parser directives (`# squash=base`) from the Dockerfile's top comment block.
//!
//! The block is read as BuildKit reads it: after an optional BOM and `#!` line, consecutive
//! `# key=value` comment lines, stopping at the first line that is not one. BuildKit itself
//! stops at the first key it does not know (`frontend/dockerfile/parser/directives.go`), so a
//! line of ours above `# escape=` or `# check=` would hide those from the Dockerfile frontend:
//! [`reorder_for_buildkit`] gives the Dockerfile with BuildKit's lines first, which the flow
//! hands to the Dockerfile frontend instead. A `# squash=` above `# syntax=` cannot be mended
//! that way (BuildKit reads the syntax line before it starts us) and is an error, as is a
//! `# squash...=` comment anywhere else: never a silent default.

use std::collections::BTreeMap;

/// Directive name -> (value, 1-based line).
pub type Directives = BTreeMap<String, (String, usize)>;

/// The keys BuildKit's own parser knows.
const BUILDKIT_KEYS: [&str; 3] = ["syntax", "escape", "check"];

/// A directive the user must fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirectiveError {
    /// One of ours, twice.
    #[error(
        "Dockerfile line {line}: the # {key}= directive is given twice (first on line {first})"
    )]
    Duplicate {
        /// The directive.
        key: String,
        /// Its second line.
        line: usize,
        /// Its first line.
        first: usize,
    },
    /// One of ours, below the top comment block.
    #[error("Dockerfile line {line}: the # {key}= directive is outside the comment block at the top of the Dockerfile, where directives are read; move it right below the # syntax= line")]
    Misplaced {
        /// The directive.
        key: String,
        /// Its line.
        line: usize,
    },
    /// A `# squash-...=` line that is none of ours (e.g. `# squash-mode=`, where the mode's
    /// directive is `# squash=`): refused rather than left to a silent default.
    #[error("Dockerfile line {line}: # {key}= is not a squash-frontend directive; valid directives are {}", known.iter().map(|k| format!("# {k}=")).collect::<Vec<_>>().join(", "))]
    Unknown {
        /// What the line names.
        key: String,
        /// Its line.
        line: usize,
        /// Our directives.
        known: Vec<String>,
    },
    /// One of ours, above `# syntax=`.
    #[error("Dockerfile line {line}: the # {key}= directive comes before # syntax= (line {syntax_line}); BuildKit stops reading directives at the first one it does not know, so put # {key}= below # syntax=")]
    BeforeSyntax {
        /// The directive.
        key: String,
        /// Its line.
        line: usize,
        /// The line of `# syntax=`.
        syntax_line: usize,
    },
}

impl DirectiveError {
    /// The 1-based Dockerfile line it is about.
    pub fn line(&self) -> usize {
        match self {
            DirectiveError::Duplicate { line, .. }
            | DirectiveError::Misplaced { line, .. }
            | DirectiveError::Unknown { line, .. }
            | DirectiveError::BeforeSyntax { line, .. } => *line,
        }
    }
}

/// Reads the directives whose keys are in `ours` (plus BuildKit's own, for ordering checks).
pub fn read(dockerfile: &[u8], ours: &[&str]) -> Result<Directives, DirectiveError> {
    let text = dockerfile
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(dockerfile);
    let mut found = Directives::new();
    let mut in_block = true;
    for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
        let line_no = i + 1;
        let line = String::from_utf8_lossy(raw);
        let line = line.trim_end_matches('\r');
        if i == 0 && line.starts_with("#!") {
            continue;
        }
        let parsed = parse_line(line);
        if in_block {
            match parsed {
                // An empty value ends BuildKit's block; one of ours is kept, to be refused
                // as empty by the settings rather than silently ignored.
                Some((key, value))
                    if ours.contains(&key.as_str())
                        || (BUILDKIT_KEYS.contains(&key.as_str()) && !value.is_empty()) =>
                {
                    if let Some((_, first)) = found.get(&key) {
                        return Err(DirectiveError::Duplicate {
                            key,
                            line: line_no,
                            first: *first,
                        });
                    }
                    found.insert(key, (value, line_no));
                    continue;
                }
                _ => in_block = false,
            }
        }
        if let Some((key, _)) = parsed {
            if ours.contains(&key.as_str()) {
                return Err(DirectiveError::Misplaced { key, line: line_no });
            }
            if key.starts_with("squash-") {
                return Err(DirectiveError::Unknown {
                    key,
                    line: line_no,
                    known: ours.iter().map(|k| k.to_string()).collect(),
                });
            }
        }
    }
    if let Some((_, syntax_line)) = found.get("syntax") {
        for (key, (_, line)) in &found {
            if ours.contains(&key.as_str()) && line < syntax_line {
                return Err(DirectiveError::BeforeSyntax {
                    key: key.clone(),
                    line: *line,
                    syntax_line: *syntax_line,
                });
            }
        }
    }
    found.retain(|k, _| ours.contains(&k.as_str()));
    Ok(found)
}

/// The Dockerfile with the lines of its top comment block reordered so that BuildKit reads its
/// own directives (`# syntax=`, `# escape=`, `# check=`): theirs first, then ours, each in its
/// own order; every other byte and the number of lines stay as they were. `None` when no line
/// of ours comes before one of BuildKit's.
pub fn reorder_for_buildkit(dockerfile: &[u8], ours: &[&str]) -> Option<Vec<u8>> {
    let (bom, text) = match dockerfile.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => (&dockerfile[..3], rest),
        None => (&b""[..], dockerfile),
    };
    let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
    let start = usize::from(lines.first().is_some_and(|l| l.starts_with(b"#!")));
    let mut theirs = Vec::new();
    let mut mine = Vec::new();
    let mut end = start;
    for line in &lines[start..] {
        let text = String::from_utf8_lossy(line);
        let Some((key, value)) = parse_line(text.trim_end_matches(['\n', '\r'])) else {
            break;
        };
        if ours.contains(&key.as_str()) {
            mine.push(*line);
        } else if BUILDKIT_KEYS.contains(&key.as_str()) && !value.is_empty() {
            if !mine.is_empty() && !line.ends_with(b"\n") {
                // The whole file is the block: nothing to build, nothing to mend.
                return None;
            }
            theirs.push(*line);
        } else {
            break;
        }
        end += 1;
    }
    // Nothing to move unless one of ours sits above one of BuildKit's.
    let block = &lines[start..end];
    let last_theirs = block.iter().rposition(|l| theirs.contains(l))?;
    let first_mine = block.iter().position(|l| mine.contains(l))?;
    if first_mine > last_theirs {
        return None;
    }
    let mut out = Vec::with_capacity(dockerfile.len());
    out.extend_from_slice(bom);
    for line in lines[..start]
        .iter()
        .chain(&theirs)
        .chain(&mine)
        .chain(&lines[end..])
    {
        out.extend_from_slice(line);
    }
    Some(out)
}

/// `# key = value` -> (lowercased key, trimmed value).
fn parse_line(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let (key, value) = rest.split_once('=')?;
    let key = key.trim_end();
    let mut chars = key.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return None;
    }
    Some((key.to_ascii_lowercase(), value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &[&str] = &["squash", "squash-method"];

    fn get(d: &Directives, k: &str) -> Option<(String, usize)> {
        d.get(k).cloned()
    }

    #[test]
    fn reads_directives_below_syntax() {
        let df = b"# syntax=local/squash\n# squash = base\n#Squash-Method=sync\n\nFROM x\n";
        let d = read(df, OURS).unwrap();
        assert_eq!(get(&d, "squash"), Some(("base".into(), 2)));
        assert_eq!(get(&d, "squash-method"), Some(("sync".into(), 3)));
        assert!(!d.contains_key("syntax"));
    }

    #[test]
    fn bom_shebang_and_crlf() {
        let df = b"\xEF\xBB\xBF#!/usr/bin/env buildctl\r\n# syntax=x\r\n# squash=off\r\nFROM y\r\n";
        let d = read(df, OURS).unwrap();
        assert_eq!(get(&d, "squash"), Some(("off".into(), 3)));
    }

    #[test]
    fn block_ends_at_first_other_line() {
        let df = b"# syntax=x\n# a plain comment\nFROM y\n";
        assert!(read(df, OURS).unwrap().is_empty());
    }

    #[test]
    fn a_squash_directive_that_is_none_of_ours_is_an_error_naming_ours() {
        // In the block (the natural guess for the mode), and further down.
        for (df, line) in [
            (&b"# syntax=x\n# squash-mode=base\nFROM y\n"[..], 2),
            (
                &b"# syntax=x\n# squash=base\nFROM y\n# Squash-Methd=sync\n"[..],
                4,
            ),
        ] {
            let e = read(df, OURS).unwrap_err();
            assert!(
                matches!(&e, DirectiveError::Unknown { line: l, .. } if *l == line),
                "{e:?}"
            );
            assert!(
                e.to_string()
                    .ends_with("is not a squash-frontend directive; valid directives are # squash=, # squash-method="),
                "{e}"
            );
        }
        // Other comments are the user's: `# squash` alone, or a key that only starts alike.
        let df = b"# syntax=x\n# squashfs=yes\nFROM y\n# squash everything\n";
        assert_eq!(read(df, OURS).unwrap(), Directives::new());
    }

    #[test]
    fn misplaced_directive_is_an_error_naming_the_line() {
        let df = b"# syntax=x\nFROM y\n# squash=base\nRUN true\n";
        let e = read(df, OURS).unwrap_err();
        assert_eq!(
            e,
            DirectiveError::Misplaced {
                key: "squash".into(),
                line: 3
            }
        );
        assert!(e.to_string().starts_with("Dockerfile line 3:"));
        // After a non-directive comment the block is over too.
        let df = b"# syntax=x\n# hello\n# squash=base\nFROM y\n";
        assert!(matches!(
            read(df, OURS),
            Err(DirectiveError::Misplaced { line: 3, .. })
        ));
    }

    #[test]
    fn duplicates_and_order_are_checked() {
        let df = b"# syntax=x\n# squash=base\n# squash=full\nFROM y\n";
        assert!(matches!(
            read(df, OURS),
            Err(DirectiveError::Duplicate {
                line: 3,
                first: 2,
                ..
            })
        ));
        let df = b"# squash=base\n# syntax=x\nFROM y\n";
        assert!(matches!(
            read(df, OURS),
            Err(DirectiveError::BeforeSyntax {
                line: 1,
                syntax_line: 2,
                ..
            })
        ));
    }

    #[test]
    fn an_empty_directive_of_ours_is_kept_to_be_refused() {
        let d = read(b"# syntax=x\n# squash=\nFROM y\n", OURS).unwrap();
        assert_eq!(get(&d, "squash"), Some((String::new(), 2)));
        // An empty BuildKit directive ends the block, as in BuildKit.
        let d = read(b"# escape=\n# squash=base\nFROM y\n", OURS);
        assert!(
            matches!(d, Err(DirectiveError::Misplaced { line: 2, .. })),
            "{d:?}"
        );
    }

    #[test]
    fn no_syntax_line_is_fine() {
        // Selected with --build-arg BUILDKIT_SYNTAX=... instead.
        let d = read(b"# squash=base\nFROM y\n", OURS).unwrap();
        assert_eq!(get(&d, "squash"), Some(("base".into(), 1)));
    }

    #[test]
    fn odd_input_does_not_panic() {
        for df in [
            &b""[..],
            b"#",
            b"#=",
            b"# =x",
            b"\xff\xfe#squash=\xff",
            b"# squash=",
            b"\n\n\n",
        ] {
            let _ = read(df, OURS);
        }
    }

    fn reordered(df: &str) -> Option<String> {
        reorder_for_buildkit(df.as_bytes(), OURS).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn buildkit_directives_below_ours_are_moved_up() {
        let df = "# syntax=x\n# squash=base\n# escape=`\nFROM y\nENV A=C:\\a\n";
        assert_eq!(
            reordered(df).as_deref(),
            Some("# syntax=x\n# escape=`\n# squash=base\nFROM y\nENV A=C:\\a\n")
        );
        // Several of each, CRLF, a BOM and a shebang: each keeps its own order and bytes.
        let df = "\u{feff}#!/bin/x\r\n# syntax=x\r\n# squash-method=sync\r\n# check=skip=all\r\n# squash=base\r\n#escape=`\r\nFROM y\r\n";
        assert_eq!(
            reordered(df).as_deref(),
            Some("\u{feff}#!/bin/x\r\n# syntax=x\r\n# check=skip=all\r\n#escape=`\r\n# squash-method=sync\r\n# squash=base\r\nFROM y\r\n")
        );
        // What we read is the same either way (on other lines).
        let values = |d: Directives| d.into_iter().map(|(k, (v, _))| (k, v)).collect::<Vec<_>>();
        let d = read(reordered(df).unwrap().as_bytes(), OURS).unwrap();
        assert_eq!(values(d), values(read(df.as_bytes(), OURS).unwrap()));
    }

    #[test]
    fn nothing_to_move_is_none() {
        for df in [
            "# syntax=x\n# escape=`\n# squash=base\nFROM y\n",
            "# syntax=x\nFROM y\n",
            "FROM y\n# escape=`\n",
            "# squash=base\nFROM y\n",
            "",
            // An empty escape ends the block for BuildKit: it is not a directive to keep.
            "# squash=base\n# escape=\nFROM y\n",
            // A plain comment ends the block: what follows is not a directive at all.
            "# squash=base\n# hello\n# escape=`\nFROM y\n",
        ] {
            assert_eq!(reordered(df), None, "{df:?}");
        }
    }

    #[test]
    fn the_line_count_is_kept() {
        let df = "# squash=base\n# syntax=x\n# escape=`\nFROM y\nRUN a \\\n b\n";
        let out = reordered(df).unwrap();
        assert_eq!(out.lines().count(), df.lines().count());
        assert!(
            out.starts_with("# syntax=x\n# escape=`\n# squash=base\n"),
            "{out}"
        );
    }
}
