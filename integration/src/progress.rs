//! Reading what a build prints with `--progress=plain`.
//!
//! This module owns the *build's own account* of what it did: the steps
//! (`#N <name>`, then `#N CACHED`, `#N DONE 0.1s` or `#N ERROR: ...`), the
//! `ERROR` lines buildx ends a failed build with, which of our squash
//! steps ran, and the build-check warnings buildx lists after a build.
//! Everything here reads text; nothing runs.

use std::collections::HashMap;
use std::fmt;

/// The progress name of full mode's empty root (an input-less FileOp on
/// scratch, the lower side of the diff). BuildKit shows an op without inputs
/// as run (`DONE 0.0s`) on every build, as it shows sources; making an empty
/// snapshot is no work.
pub const EMPTY_ROOT_STEP: &str = "squash: an empty root";

/// One step of a build's `--progress=plain` output: `#N <name>`, then
/// `#N CACHED`, `#N DONE 0.1s` or `#N ERROR: ...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The number after `#`.
    pub id: String,
    /// What the first line said after the number.
    pub name: String,
    /// A `#N CACHED` line came.
    pub cached: bool,
    /// A `#N DONE` line came.
    pub done: bool,
    /// A `#N ERROR...` line came.
    pub error: bool,
    /// The time a `DONE 1.2s` line gave.
    pub seconds: Option<f64>,
}

impl Step {
    /// Cached, or the empty root done at once: nothing of the squash was
    /// computed again.
    pub fn reused(&self) -> bool {
        self.cached
            || (self.name == EMPTY_ROOT_STEP && self.done && self.seconds.is_some_and(|s| s < 0.5))
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.cached {
            "CACHED".to_string()
        } else if self.error {
            "ERROR".to_string()
        } else if let (true, Some(s)) = (self.done, self.seconds) {
            format!("DONE {s:.1}s")
        } else if self.done {
            "DONE".to_string()
        } else {
            "(no end)".to_string()
        };
        write!(f, "#{} {} => {state}", self.id, self.name)
    }
}

/// The steps of a build's plain progress output, in order of appearance.
pub fn steps(build_output: &str) -> Vec<Step> {
    let mut order: Vec<String> = Vec::new();
    let mut by_id: HashMap<String, Step> = HashMap::new();
    for line in build_output.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((id, text)) = rest.split_once(' ') else {
            continue;
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        match by_id.get_mut(id) {
            None => {
                order.push(id.to_string());
                by_id.insert(
                    id.to_string(),
                    Step {
                        id: id.to_string(),
                        name: text.to_string(),
                        cached: false,
                        done: false,
                        error: false,
                        seconds: None,
                    },
                );
            }
            Some(step) => {
                if text == "CACHED" {
                    step.cached = true;
                } else if text == "DONE" || text.starts_with("DONE ") {
                    step.done = true;
                    step.seconds = text
                        .strip_prefix("DONE ")
                        .and_then(|t| t.trim().strip_suffix('s'))
                        .and_then(|t| t.parse().ok());
                } else if text.starts_with("ERROR") {
                    step.error = true;
                }
            }
        }
    }
    order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect()
}

/// Our squash steps (named `squash: ...`).
pub fn squash_steps(build_output: &str) -> Vec<Step> {
    steps(build_output)
        .into_iter()
        .filter(|s| s.name.starts_with("squash:"))
        .collect()
}

/// The Dockerfile's RUN and COPY steps (`[2/3] RUN ...`, `[stage 1/2] COPY ...`).
pub fn run_copy_steps(build_output: &str) -> Vec<Step> {
    steps(build_output)
        .into_iter()
        .filter(|s| {
            s.name.starts_with('[')
                && s.name
                    .split_once("] ")
                    .is_some_and(|(_, rest)| rest.starts_with("RUN ") || rest.starts_with("COPY "))
        })
        .collect()
}

/// Every step, one a line, for messages.
pub fn show_steps(list: &[Step]) -> String {
    list.iter()
        .map(|s| format!("    {s}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lines that start with `ERROR`: what buildx ends a failed build or
/// request with (`ERROR: failed to solve: ...`), not a step's own
/// `#N ERROR: ...` line.
pub fn error_lines(build_output: &str) -> Vec<String> {
    build_output
        .lines()
        .filter(|l| l.starts_with("ERROR"))
        .map(str::to_string)
        .collect()
}

/// The `ERROR` lines without the client's prefix ([`error_message`]): what to compare between
/// two builds of the same failure, which may reach buildx by either of its two paths.
pub fn error_messages(build_output: &str) -> Vec<String> {
    error_lines(build_output)
        .iter()
        .map(|l| error_message(l).to_string())
        .collect()
}

/// An `ERROR` line's message without buildx's client prefix: `ERROR: `, buildx 0.2x's
/// `failed to build: `, then `failed to solve: ` or `failed to run Build function: `
/// (buildx runs a build through a client-side build function and a solve at once, and the same
/// failure reaches it through either first, with or without our line).
pub fn error_message(line: &str) -> &str {
    let l = line.strip_prefix("ERROR: ").unwrap_or(line);
    let l = l.strip_prefix("failed to build: ").unwrap_or(l);
    ["failed to solve: ", "failed to run Build function: "]
        .iter()
        .find_map(|p| l.strip_prefix(p))
        .unwrap_or(l)
}

/// Which squash graph a base-mode build used: the diff method's vertices
/// are the engine's diffs, named `squash: the changes of <step>` (one per
/// step, which our `sync` step reads) or, where the frontend does not know
/// its own image, `squash: diff against the base`; the sync method's step
/// prints `squash-frontend sync:` (or is cached under the summary name) and
/// reads no diff.
pub fn base_method_used(build_output: &str) -> &'static str {
    if build_output.contains("squash: diff against the base")
        || build_output.contains("squash: the changes of ")
    {
        "diff"
    } else {
        "sync"
    }
}

/// The lines of a build's output that mention the squash.
pub fn squash_lines(build_output: &str) -> String {
    build_output
        .lines()
        .filter(|l| l.contains("squash"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One line of the build-check summary buildx prints after a build (`N
/// warnings found (use docker --debug to expand):`, then ` - Rule: detail
/// (line N)` each).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LintWarning {
    /// The check's name (`FromAsCasing`).
    pub rule: String,
    /// What buildx says about this occurrence.
    pub detail: String,
    /// The Dockerfile line it points at, if the line names one.
    pub line: Option<u32>,
}

impl fmt::Display for LintWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.detail)?;
        if let Some(n) = self.line {
            write!(f, " (line {n})")?;
        }
        Ok(())
    }
}

/// `s` without terminal colour sequences (`ESC [ ... m`), which buildx writes
/// around the warning summary even with `--progress=plain`.
pub fn strip_colours(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The build-check warnings a build's output lists, sorted (BuildKit lists
/// them in no fixed order), and the count its summary line gives (`None`
/// without a summary: no warning, or an engine without build checks).
pub fn lint_warnings(build_output: &str) -> (Option<usize>, Vec<LintWarning>) {
    let text = strip_colours(build_output);
    let mut count = None;
    let mut warnings = Vec::new();
    let mut in_summary = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some((n, rest)) = trimmed.split_once(' ') {
            if rest.starts_with("warning found") || rest.starts_with("warnings found") {
                count = n.parse().ok();
                in_summary = true;
                continue;
            }
        }
        if !in_summary {
            continue;
        }
        let Some(item) = line.strip_prefix(" - ") else {
            in_summary = false;
            continue;
        };
        let Some((rule, rest)) = item.split_once(": ") else {
            continue;
        };
        let (detail, line) = match rest.rsplit_once(" (line ") {
            Some((detail, n)) => match n.strip_suffix(')').and_then(|n| n.parse().ok()) {
                Some(n) => (detail, Some(n)),
                None => (rest, None),
            },
            None => (rest, None),
        };
        warnings.push(LintWarning {
            rule: rule.to_string(),
            detail: detail.to_string(),
            line,
        });
    }
    warnings.sort();
    (count, warnings)
}

/// The rules a build failed on with build checks set to fail it (`ERROR: ...
/// lint violation found for rules: A, B`), sorted; empty without that line.
pub fn lint_violation_rules(build_output: &str) -> Vec<String> {
    const MARK: &str = "lint violation found for rules: ";
    let mut rules: Vec<String> = error_lines(build_output)
        .iter()
        .filter_map(|l| l.split_once(MARK).map(|(_, r)| r.to_string()))
        .flat_map(|r| {
            r.split(',')
                .map(|x| x.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|r| !r.is_empty())
        .collect();
    rules.sort();
    rules
}

/// What one squash report in a build's progress output says (see the frontend's
/// `report` module): the byte counts it gives exactly, and the files it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SquashReport {
    /// Its first line (`squash report (squash-frontend ...): layers 6 -> 1`).
    pub title: String,
    /// The plain image's layers (above the base, in base mode), in bytes.
    pub plain_bytes: u64,
    /// The squashed layer, in bytes.
    pub squashed_bytes: u64,
    /// What the squash reclaims, in bytes.
    pub reclaimed_bytes: u64,
    /// The files it names as added by one step and removed or replaced by a later one: (path,
    /// added by, removed or replaced by), each step by its whole name (a line that gives only
    /// a step's label, `[2/6]`, is read with the list of whole names after the lines).
    pub wasted: Vec<(String, String, String)>,
    /// Every line, as printed (without the step's `#N 0.123` prefix).
    pub lines: Vec<String>,
}

/// The squash reports in a build's plain progress output, in order (one per image: a
/// multi-platform build has one per platform).
///
/// Each line goes to the report of its own step (`#N`): two platforms' reports may come
/// interleaved. A line buildx cut off to show another step's output (it ends with `#N ...`)
/// is left out: buildx prints it again, whole, when it comes back to the step.
pub fn squash_reports(build_output: &str) -> Vec<SquashReport> {
    let mut out: Vec<SquashReport> = Vec::new();
    let mut by_step: std::collections::HashMap<&str, usize> = Default::default();
    for line in build_output.lines() {
        // `#12 0.123 <text>`: a step's output line.
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let mut parts = rest.splitn(3, ' ');
        let (Some(id), Some(time), Some(text)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if time.parse::<f64>().is_err() || text.ends_with(&format!("#{id} ...")) {
            continue;
        }
        if text.starts_with("squash report (") {
            let report = SquashReport {
                title: text.to_string(),
                ..Default::default()
            };
            match by_step.get(id) {
                // The step's output printed again from its first line.
                Some(&k) => out[k] = report,
                None => {
                    by_step.insert(id, out.len());
                    out.push(report);
                }
            }
            continue;
        }
        let Some(report) = by_step.get(id).map(|&k| &mut out[k]) else {
            continue;
        };
        if !text.starts_with("  ") {
            continue;
        }
        report.lines.push(text.to_string());
        // `<what>: <size> (<bytes> bytes...)`: the bytes after the label.
        let bytes = || {
            let inner = text.split_once(": ")?.1.split_once('(')?.1;
            inner.split(' ').next()?.parse::<u64>().ok()
        };
        let t = text.trim_start();
        if t.starts_with("plain image layers") {
            report.plain_bytes = bytes().unwrap_or(0);
        } else if t.starts_with("squashed layer") {
            // `squashed layer:`, or `squashed layers (2, together):` for a split.
            report.squashed_bytes = bytes().unwrap_or(0);
        } else if t.starts_with("reclaimed:") {
            report.reclaimed_bytes = bytes().unwrap_or(0);
        } else if let Some((head, steps)) = t.split_once("  added by ") {
            let later = steps
                .split_once(", removed by ")
                .or_else(|| steps.split_once(", replaced by "));
            if let Some((added, removed)) = later {
                let path = head.split_once("  ").map_or(head, |(_, p)| p).trim();
                report
                    .wasted
                    .push((path.to_string(), added.to_string(), removed.to_string()));
            }
        }
    }
    for report in &mut out {
        report.name_steps_whole();
    }
    out
}

impl SquashReport {
    /// Replaces the step labels of [`SquashReport::wasted`] by the whole names the report lists
    /// after its file lines (`  the steps named above:`, then one `    [2/6] RUN ...` each).
    fn name_steps_whole(&mut self) {
        let Some(at) = self
            .lines
            .iter()
            .position(|l| l == "  the steps named above:")
        else {
            return;
        };
        let whole: Vec<&str> = self.lines[at + 1..]
            .iter()
            .filter_map(|l| l.strip_prefix("    "))
            .collect();
        let name = |label: &str| -> String {
            whole
                .iter()
                .find(|w| w.strip_prefix(label).is_some_and(|r| r.starts_with(' ')))
                .map_or(label, |w| w)
                .to_string()
        };
        for (_, added, removed) in &mut self.wasted {
            *added = name(added);
            *removed = name(removed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_and_cut_reports_are_read_per_step() {
        // As buildx 0.13 printed two platforms' reports: #9's first line cut off by #10's
        // output, then printed again, whole.
        let out = "\
#9 squash: inspect the result
#9 0.251 squash report (squash-frontend 0.1.0): layers 2 -> 1#9 ...

#10 squash: inspect the result
#10 0.274 squash report (squash-frontend 0.1.0): layers 2 -> 1
#10 0.274   plain image layers: 2.0 kB (2048 bytes: what each layer adds, uncompressed)
#10 0.274   squashed layer: 2.0 kB (2048 bytes)
#10 0.274   reclaimed: 0 B (0 bytes, 0.0 %)
#10 DONE 0.4s

#9 squash: inspect the result
#9 0.251 squash report (squash-frontend 0.1.0): layers 2 -> 1
#9 0.264   plain image layers: 3.0 kB (3072 bytes: what each layer adds, uncompressed)
#9 0.271   squashed layer: 2.5 kB (2560 bytes)
#9 0.271   reclaimed: 512 B (512 bytes, 16.7 %)
#9 DONE 0.4s
";
        let reports = squash_reports(out);
        assert_eq!(reports.len(), 2, "{reports:?}");
        let figures: Vec<(u64, u64, u64)> = reports
            .iter()
            .map(|r| (r.plain_bytes, r.squashed_bytes, r.reclaimed_bytes))
            .collect();
        assert_eq!(
            figures,
            [(2048, 2048, 0), (3072, 2560, 512)],
            "in the order their whole first lines came"
        );
        assert!(reports.iter().all(|r| r.lines.len() == 3));
    }

    const OUTPUT: &str = "\
#0 building with \"default\" instance using docker driver

#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 120B done
#1 DONE 0.0s

#2 [1/3] FROM docker.io/squash-test/busybox:latest
#2 CACHED

#3 [2/3] COPY a.txt /a.txt
#3 DONE 0.1s

#4 [stage-1 3/3] RUN echo one > /one
#4 0.215 one
#4 DONE 1.25s

#5 squash: an empty root
#5 DONE 0.0s

#6 squash: diff against the base
#6 CACHED

#7 [2/3] RUN exit 7
#7 ERROR: process \"/bin/sh -c exit 7\" did not complete successfully: exit code: 7

#8 squash: 4 layers -> 1
------
 > [2/3] RUN exit 7:
------
Dockerfile:3
ERROR: failed to solve: process \"/bin/sh -c exit 7\" did not complete successfully: exit code: 7
ERROR
";

    #[test]
    fn steps_in_order_with_their_end() {
        let all = steps(OUTPUT);
        let ids: Vec<&str> = all.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["0", "1", "2", "3", "4", "5", "6", "7", "8"]);
        assert_eq!(
            all[1].name,
            "[internal] load build definition from Dockerfile"
        );
        assert!(all[1].done && !all[1].cached && !all[1].error);
        assert_eq!(all[1].seconds, Some(0.0));
        assert!(all[2].cached && !all[2].done);
        assert_eq!(all[4].seconds, Some(1.25), "a log line is not an end");
        assert!(all[7].error && !all[7].done);
        assert!(!all[8].done && !all[8].cached && !all[8].error);
        assert_eq!(
            all[2].to_string(),
            "#2 [1/3] FROM docker.io/squash-test/busybox:latest => CACHED"
        );
        assert_eq!(
            all[4].to_string(),
            "#4 [stage-1 3/3] RUN echo one > /one => DONE 1.2s"
        );
        assert_eq!(all[7].to_string(), "#7 [2/3] RUN exit 7 => ERROR");
        assert_eq!(all[8].to_string(), "#8 squash: 4 layers -> 1 => (no end)");
        let done = Step {
            seconds: None,
            ..all[1].clone()
        };
        assert!(done.to_string().ends_with("=> DONE"), "{done}");
    }

    #[test]
    fn squash_and_dockerfile_steps() {
        let ours: Vec<String> = squash_steps(OUTPUT)
            .iter()
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(
            ours,
            [
                "squash: an empty root",
                "squash: diff against the base",
                "squash: 4 layers -> 1"
            ]
        );
        let theirs: Vec<String> = run_copy_steps(OUTPUT)
            .iter()
            .map(|s| s.id.clone())
            .collect();
        assert_eq!(theirs, ["3", "4", "7"]);
        assert_eq!(
            show_steps(&squash_steps(OUTPUT)[..2]),
            "    #5 squash: an empty root => DONE 0.0s\n    #6 squash: diff against the base => CACHED"
        );
    }

    #[test]
    fn reused_is_cached_or_the_empty_root_done_at_once() {
        let ours = squash_steps(OUTPUT);
        assert!(ours[0].reused(), "the empty root done in 0.0s");
        assert!(ours[1].reused(), "cached");
        assert!(!ours[2].reused());
        let slow_root = steps("#5 squash: an empty root\n#5 DONE 0.6s\n");
        assert!(!slow_root[0].reused());
        let other = steps("#5 squash: copy\n#5 DONE 0.0s\n");
        assert!(!other[0].reused());
    }

    #[test]
    fn error_lines_are_buildx_own() {
        assert_eq!(
            error_lines(OUTPUT),
            [
                "ERROR: failed to solve: process \"/bin/sh -c exit 7\" did not complete successfully: exit code: 7",
                "ERROR"
            ]
        );
        assert!(error_lines("#1 DONE 0.0s\n").is_empty());
    }

    /// The same lint failure as buildx 0.29 printed it by either path (seen on one run of the
    /// same Dockerfile each): the messages compare equal, the lines do not.
    #[test]
    fn error_messages_drop_either_client_path() {
        let solve = "ERROR: failed to build: failed to solve: lint violation found for rules: FromAsCasing\n";
        let build_fn = "ERROR: failed to build: failed to run Build function: lint violation found for rules: FromAsCasing\n";
        assert_ne!(error_lines(solve), error_lines(build_fn));
        assert_eq!(
            error_messages(solve),
            ["lint violation found for rules: FromAsCasing"]
        );
        assert_eq!(error_messages(solve), error_messages(build_fn));
        assert_eq!(error_messages("ERROR: boom\n"), ["boom"]);
    }

    /// What buildx 0.29 printed after a build of a Dockerfile with four
    /// check warnings and `BUILDKIT_DOCKERFILE_CHECK=error=true`.
    const LINT: &str = "#9 DONE 0.0s
\u{1b}[33m4 warnings found (use docker --debug to expand):
\u{1b}[0m - MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 3)
 - SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV \"secret_password\") (line 5)
 - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 9)
 - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 2)
Dockerfile:1
--------------------
   1 | >>> # syntax=squash-frontend:dev
--------------------
ERROR: failed to build: failed to solve: lint violation found for rules: FromAsCasing, MaintainerDeprecated, SecretsUsedInArgOrEnv, JSONArgsRecommended
";

    #[test]
    fn lint_warnings_and_violations() {
        assert_eq!(strip_colours("\u{1b}[33mwarn\u{1b}[0m - x"), "warn - x");
        let (count, warnings) = lint_warnings(LINT);
        assert_eq!(count, Some(4));
        let shown: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 2)",
                "JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 9)",
                "MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 3)",
                "SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV \"secret_password\") (line 5)",
            ]
        );
        assert_eq!(
            lint_violation_rules(LINT),
            [
                "FromAsCasing",
                "JSONArgsRecommended",
                "MaintainerDeprecated",
                "SecretsUsedInArgOrEnv"
            ]
        );
        let one = "1 warning found (use docker --debug to expand):\n - StageNameCasing: Stage name 'Build' should be lowercase (line 1)\n\n - not a warning: after the list\n";
        let (count, warnings) = lint_warnings(one);
        assert_eq!(count, Some(1));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].line, Some(1));
        assert_eq!(warnings[0].rule, "StageNameCasing");
        assert_eq!(lint_warnings(OUTPUT), (None, Vec::new()));
        assert!(lint_violation_rules(OUTPUT).is_empty());
    }

    #[test]
    fn the_base_method_and_the_squash_lines() {
        assert_eq!(base_method_used(OUTPUT), "diff");
        assert_eq!(
            base_method_used("#9 squash-frontend sync: 3 files\n"),
            "sync"
        );
        assert_eq!(
            base_method_used(
                "#7 squash: the changes of [2/2] RUN true\n#8 squash-frontend sync: 3 files\n"
            ),
            "diff"
        );
        assert_eq!(
            squash_lines(OUTPUT),
            "#2 [1/3] FROM docker.io/squash-test/busybox:latest\n\
             #5 squash: an empty root\n\
             #6 squash: diff against the base\n\
             #8 squash: 4 layers -> 1"
        );
    }

    #[test]
    fn squash_reports_are_read_from_the_steps_output() {
        let out = "#10 squash: inspect the result
#10 0.051 squash report (squash-frontend 0.1.0): layers 4 -> 1
#10 0.051   plain image layers: 22.1 MB (22101504 bytes: what each layer adds, uncompressed)
#10 0.051   squashed layer: 2.1 MB (2100224 bytes)
#10 0.051   reclaimed: 20.0 MB (20001280 bytes, 90.5 %)
#10 0.051   2 files (20.0 MB) were added by one step and removed or replaced by a later one; the largest (file sizes, hardlinks once):
#10 0.051       20.0 MB  /big  added by [2/4], removed by [3/4]
#10 0.051       1.0 kB  /conf  added by [2/4], replaced by [4/4]
#10 0.051   the steps named above:
#10 0.051     [2/4] RUN head -c 20000000 /dev/zero > /big
#10 0.051     [3/4] RUN rm /big
#10 0.051     [4/4] RUN chmod 600 /conf
#10 DONE 0.1s
";
        // The same, as the file lines give whole names where the steps have no labels of
        // their own.
        let whole = out
            .replace(
                "added by [2/4]",
                "added by [2/4] RUN head -c 20000000 /dev/zero > /big",
            )
            .replace("by [3/4]", "by [3/4] RUN rm /big")
            .replace("by [4/4]", "by [4/4] RUN chmod 600 /conf");
        let whole = whole
            .lines()
            .filter(|l| !l.starts_with("#10 0.051     [") && !l.ends_with("named above:"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            squash_reports(&whole)[0].wasted,
            squash_reports(out)[0].wasted
        );
        assert!(whole.contains("/big  added by [2/4] RUN head"), "{whole}");
        let r = squash_reports(out);
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].plain_bytes, r[0].squashed_bytes, r[0].reclaimed_bytes),
            (22_101_504, 2_100_224, 20_001_280)
        );
        assert_eq!(
            r[0].wasted,
            [
                (
                    "/big".to_string(),
                    "[2/4] RUN head -c 20000000 /dev/zero > /big".to_string(),
                    "[3/4] RUN rm /big".to_string()
                ),
                (
                    "/conf".to_string(),
                    "[2/4] RUN head -c 20000000 /dev/zero > /big".to_string(),
                    "[4/4] RUN chmod 600 /conf".to_string()
                )
            ]
        );
        assert!(r[0].title.contains("layers 4 -> 1"));
        assert!(squash_reports("#1 DONE 0.1s\n").is_empty());
    }
}
