//! What `docker buildx build --call outline|targets|check` prints, made
//! comparable between a Dockerfile and the same Dockerfile with lines added
//! on top (our `# syntax=` line).
//!
//! With `format=json` every location is a Dockerfile line number and every
//! source is the Dockerfile's text (base64), so the result of the longer
//! Dockerfile differs from the plain one's in exactly those places;
//! [`without_added_lines`] takes them back out, and what remains must be
//! equal. The text form of `check` quotes the Dockerfile around each warning,
//! and [`check_text_without_excerpts`] leaves those quotes out. Everything
//! here reads text; nothing runs.

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde_json::Value;

/// `--call ...,format=json`'s standard output as JSON.
pub fn parse(stdout: &str) -> Result<Value> {
    serde_json::from_str(stdout.trim())
        .with_context(|| format!("--call printed no JSON: {stdout:?}"))
}

/// A `--call ...,format=json` result of a Dockerfile that had `added` lines
/// on top, as the Dockerfile without them gives it, and the lines taken off
/// (from the first source).
///
/// Every `line` inside a `location` moves up by `added` (a location inside
/// the added lines is an error); every source is decoded to its text, its
/// first `added` lines taken off; a source's `definition` (the build graph
/// that loaded the Dockerfile, which names the client's session and so
/// differs on every build) is left out. With `added` 0 it only decodes and
/// leaves out the definitions, so both sides of a comparison go through it.
pub fn without_added_lines(result: &Value, added: usize) -> Result<(Value, Vec<String>)> {
    let mut v = result.clone();
    shift_locations(&mut v, added as u64, false)?;
    let mut removed = Vec::new();
    if let Some(sources) = v.get_mut("sources").and_then(Value::as_array_mut) {
        for source in sources {
            match source {
                Value::String(data) => {
                    let text = take_lines(&decode(data)?, added, &mut removed)?;
                    *data = text;
                }
                Value::Object(fields) => {
                    fields.remove("definition");
                    if let Some(Value::String(data)) = fields.get_mut("data") {
                        let text = take_lines(&decode(data)?, added, &mut removed)?;
                        *data = text;
                    }
                }
                _ => {}
            }
        }
    }
    Ok((v, removed))
}

fn decode(data: &str) -> Result<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .context("a --call source is not base64")?;
    String::from_utf8(bytes).context("a --call source is not UTF-8")
}

/// `text` without its first `n` lines, which are appended to `taken`.
fn take_lines(text: &str, n: usize, taken: &mut Vec<String>) -> Result<String> {
    let mut rest = text;
    for i in 0..n {
        let Some((line, after)) = rest.split_once('\n') else {
            bail!("the source has {i} lines, fewer than the {n} added on top");
        };
        taken.push(line.to_string());
        rest = after;
    }
    Ok(rest.to_string())
}

fn shift_locations(v: &mut Value, by: u64, in_location: bool) -> Result<()> {
    match v {
        Value::Object(fields) => {
            for (key, value) in fields.iter_mut() {
                if in_location && key == "line" {
                    if let Some(n) = value.as_u64() {
                        if n <= by {
                            bail!("a location points at line {n}, one of the {by} added on top");
                        }
                        *value = Value::from(n - by);
                        continue;
                    }
                }
                shift_locations(value, by, in_location || key == "location")?;
            }
        }
        Value::Array(items) => {
            for item in items {
                shift_locations(item, by, in_location)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The text `--call check` prints (`Check complete, ...`, then per warning
/// `WARNING: Rule - url`, its detail, `<path of the Dockerfile>:N` and an
/// excerpt between two lines of dashes) without the excerpts, every
/// `<path>:N` line as `<file name>:N` (each side's context is a directory of
/// its own), N moved up by `added`.
pub fn check_text_without_excerpts(text: &str, added: u32) -> String {
    let mut out = Vec::new();
    let mut in_excerpt = false;
    for line in text.lines() {
        if line.starts_with("--------------------") {
            in_excerpt = !in_excerpt;
            continue;
        }
        if in_excerpt {
            continue;
        }
        let moved = line
            .rsplit_once(':')
            .filter(|(file, _)| !file.is_empty() && !file.contains(' '))
            .and_then(|(file, n)| Some((file, n.parse::<u32>().ok()?)))
            .map(|(file, n)| {
                let name = file.rsplit('/').next().unwrap_or(file);
                format!("{name}:{}", n.saturating_sub(added))
            });
        out.push(moved.unwrap_or_else(|| line.to_string()));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn location(line: u64) -> Value {
        json!({"ranges": [{"start": {"line": line}, "end": {"line": line}}]})
    }

    const PLAIN: &str = "ARG BASE=busybox\nFROM ${BASE} AS one\n";

    #[test]
    fn an_outline_with_a_line_on_top_is_the_plain_one() {
        let plain = json!({
            "name": "one",
            "args": [{"name": "BASE", "value": "busybox", "location": location(1)}],
            "sources": [b64(PLAIN)]
        });
        let ours = json!({
            "name": "one",
            "args": [{"name": "BASE", "value": "busybox", "location": location(2)}],
            "sources": [b64(&format!("# syntax=x\n{PLAIN}"))]
        });
        let (p, none) = without_added_lines(&plain, 0).unwrap();
        let (s, removed) = without_added_lines(&ours, 1).unwrap();
        assert!(none.is_empty());
        assert_eq!(removed, ["# syntax=x"]);
        assert_eq!(p, s);
        assert_eq!(p["sources"][0], PLAIN, "sources are decoded");
        assert_eq!(p["args"][0]["location"], location(1));
        // Without taking the line off, they differ.
        assert_ne!(p, without_added_lines(&ours, 0).unwrap().0);
    }

    #[test]
    fn check_sources_lose_their_definition() {
        let source = |data: &str, session: &str| {
            json!({"filename": "Dockerfile", "language": "Dockerfile", "data": b64(data),
                   "definition": {"def": [session]}})
        };
        let plain = json!({
            "warnings": [{"ruleName": "FromAsCasing", "location": location(2)}],
            "sources": [source(PLAIN, "a")]
        });
        let ours = json!({
            "warnings": [{"ruleName": "FromAsCasing", "location": location(3)}],
            "sources": [source(&format!("# syntax=x\n{PLAIN}"), "b")]
        });
        let (p, _) = without_added_lines(&plain, 0).unwrap();
        let (s, removed) = without_added_lines(&ours, 1).unwrap();
        assert_eq!(p, s);
        assert_eq!(removed, ["# syntax=x"]);
        assert!(p["sources"][0].get("definition").is_none());
        assert_eq!(p["sources"][0]["data"], PLAIN);
    }

    #[test]
    fn what_cannot_be_taken_back_is_an_error() {
        let inside = json!({"args": [{"location": location(1)}]});
        let err = without_added_lines(&inside, 1).unwrap_err().to_string();
        assert!(err.contains("line 1, one of the 1 added"), "{err}");
        let short = json!({"sources": [b64("one line, no newline")]});
        assert!(without_added_lines(&short, 1).is_err());
        let not_base64 = json!({"sources": ["%%%"]});
        assert!(without_added_lines(&not_base64, 0).is_err());
        // A `line` outside a location is data, not moved.
        let data = json!({"line": 1});
        assert_eq!(without_added_lines(&data, 1).unwrap().0, data);
        assert!(parse("TARGET: x\n").is_err());
        assert_eq!(parse(" {\"a\": 1}\n").unwrap(), json!({"a": 1}));
    }

    #[test]
    fn check_text_without_its_excerpts() {
        let plain = "Check complete, 1 warning has been found!

WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/
'as' and 'FROM' keywords' casing do not match
/tmp/ctx-a/Dockerfile:1
--------------------
   1 | >>> FROM busybox as one
   2 |     RUN true
--------------------
";
        let ours = "Check complete, 1 warning has been found!

WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/
'as' and 'FROM' keywords' casing do not match
/tmp/ctx-b/Dockerfile:2
--------------------
   1 |     # syntax=x
   2 | >>> FROM busybox as one
   3 |     RUN true
--------------------
";
        assert_eq!(
            check_text_without_excerpts(plain, 0),
            check_text_without_excerpts(ours, 1)
        );
        assert_eq!(
            check_text_without_excerpts(ours, 1),
            "Check complete, 1 warning has been found!\n\nWARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n'as' and 'FROM' keywords' casing do not match\nDockerfile:1"
        );
        assert_ne!(
            check_text_without_excerpts(plain, 0),
            check_text_without_excerpts(ours, 0)
        );
    }
}
