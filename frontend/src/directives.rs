//! Reading our parser directives (`# squash=base`) from the Dockerfile's top comment block.
//!
//! The block is read as BuildKit reads it: after an optional BOM and `#!` line, consecutive
//! `# key=value` comment lines, stopping at the first line that is not one. BuildKit itself
//! stops at the first key it does not know, so our lines must come after `# syntax=`
//! (and `# escape=`/`# check=`): a `# squash=` above `# syntax=` would hide the syntax line
//! from BuildKit. A `# squash...=` comment anywhere else is an error, not a silent default.

use std::collections::BTreeMap;

/// Directive name -> (value, 1-based line).
pub type Directives = BTreeMap<String, (String, usize)>;

/// The keys BuildKit's own parser knows.
const BUILDKIT_KEYS: [&str; 3] = ["syntax", "escape", "check"];

/// A directive the user must fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirectiveError {
    #[error(
        "Dockerfile line {line}: the # {key}= directive is given twice (first on line {first})"
    )]
    Duplicate {
        key: String,
        line: usize,
        first: usize,
    },
    #[error("Dockerfile line {line}: the # {key}= directive is outside the comment block at the top of the Dockerfile, where directives are read; move it right below the # syntax= line")]
    Misplaced { key: String, line: usize },
    #[error("Dockerfile line {line}: the # {key}= directive comes before # syntax= (line {syntax_line}); BuildKit stops reading directives at the first one it does not know, so put # {key}= below # syntax=")]
    BeforeSyntax {
        key: String,
        line: usize,
        syntax_line: usize,
    },
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
}
