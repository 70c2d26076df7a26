//! Our binary's in-build steps: `sync`, `inspect` and `account`, which the squash's graph runs
//! inside the build, in our own image (see [`crate::llb`] for their mounts). Each reads its
//! command line, does its work over the mounted trees, and says what it did on stderr, which
//! BuildKit shows as the step's output.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::{llb, report, scan};
use treesync::Subtree;

/// The binary's usage.
pub const USAGE: &str =
    "usage: squash-frontend            (run by BuildKit as a frontend, gRPC on stdio)
       squash-frontend sync FINAL BASE [--only PATHS | --changed DIRS] [--report FILE [--request JSON]]
                                         (make the tree BASE equal to FINAL; with --only,
                                         in those comma-separated absolute paths alone;
                                         with --changed, looking only at the paths the
                                         comma-separated mounted diffs DIRS hold)
       squash-frontend inspect FINAL [--report FILE [--request JSON]]
                                         (check FINAL for what no image layer can hold)
       squash-frontend account FILE [--request JSON]
                                         (save what the first steps cost, for a later
                                         --report to go on from)
       with --report: report what the squash reclaims, as the JSON request asks
       (without --request: the request is in the environment variable SQUASH_REPORT_REQUEST)";

/// Prints the usage; the exit code of a wrong command line.
pub fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

/// The process's peak resident set size (`VmHWM`).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The in-build `inspect` step: reports on the build (with `--report`) and fails with
/// [`scan::EXIT_UNREPRESENTABLE`] when the finished tree holds what no image layer can hold,
/// naming it.
pub fn inspect(args: &[OsString]) -> ExitCode {
    let Some(StepArgs {
        positional: [final_dir],
        only,
        changed,
        report,
    }) = step_args(args)
    else {
        return usage();
    };
    if !only.is_empty() || !changed.is_empty() {
        return usage();
    }
    check(final_dir.as_ref(), report)
        .err()
        .unwrap_or(ExitCode::SUCCESS)
}

/// `--report FILE [--request JSON]`: where to write the report, and what it is to say (without
/// `--request`, from [`llb::REQUEST_ENV`]), read once (a request that does not read fails the
/// step, which says why, rather than its command line).
type ReportArgs<'a> = Option<(&'a OsString, Result<report::Request, String>)>;

/// The arguments of `sync` and `inspect`: `N` positional ones, then flags in any order.
struct StepArgs<'a, const N: usize> {
    positional: [&'a OsString; N],
    /// `--only LIST`: the comma-separated absolute paths `sync` is limited to.
    only: Vec<String>,
    /// `--changed LIST`: the comma-separated mounts of BuildKit's diffs that hold every path
    /// that can differ between the trees (`treesync::Changed`); `sync` looks nowhere else.
    changed: Vec<PathBuf>,
    report: ReportArgs<'a>,
}

/// Reads `args` as [`StepArgs`]; `None` for anything else (the usage is printed).
fn step_args<const N: usize>(args: &[OsString]) -> Option<StepArgs<'_, N>> {
    let positional: [&OsString; N] = args.get(..N)?.iter().collect::<Vec<_>>().try_into().ok()?;
    let (mut only, mut file, mut request) = (Vec::new(), None, None);
    let mut changed = Vec::new();
    let mut rest = args[N..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next()?;
        match flag.to_str()? {
            "--only" if only.is_empty() => {
                only = value
                    .to_str()?
                    .split(',')
                    .map(|p| p.trim_start_matches('/').to_string())
                    .collect();
                if only.iter().any(String::is_empty) {
                    return None;
                }
            }
            "--changed" if changed.is_empty() => {
                changed = value.to_str()?.split(',').map(PathBuf::from).collect();
                if changed.iter().any(|p| !p.is_absolute()) {
                    return None;
                }
            }
            "--report" if file.is_none() => file = Some(value),
            "--request" if request.is_none() => request = Some(value),
            _ => return None,
        }
    }
    let report = match (file, request) {
        (Some(f), given) => Some((f, read_request(&request_or_env(given)?))),
        (None, None) => None,
        (None, Some(_)) => return None,
    };
    if !only.is_empty() && !changed.is_empty() {
        return None;
    }
    Some(StepArgs {
        positional,
        only,
        changed,
        report,
    })
}

/// The report's request: as given with `--request`, else from [`llb::REQUEST_ENV`] (where our
/// in-build steps get it).
fn request_or_env(given: Option<&OsString>) -> Option<OsString> {
    given
        .cloned()
        .or_else(|| std::env::var_os(llb::REQUEST_ENV))
}

/// The exit code to stop with (`Err`), if `final_dir` cannot be squashed (said on stderr, which
/// BuildKit shows as the step's output); with `report`, the report is made first (printed, and
/// written as JSON to its file), and `Ok` says whether it met squash-min-saving (`None`: none
/// was asked, or no report).
fn check(final_dir: &Path, report: ReportArgs<'_>) -> Result<Option<bool>, ExitCode> {
    let failed = |e: &dyn std::fmt::Display| {
        eprintln!("squash-frontend: {e}");
        ExitCode::FAILURE
    };
    let (reserved, met) = match report {
        Some((file, request)) => request
            .and_then(|request| make_report(file.as_ref(), &request))
            .map_err(|e| failed(&e))?,
        None => (
            scan::reserved(&scan::listing(final_dir).map_err(|e| failed(&e))?),
            None,
        ),
    };
    match scan::refusal(&reserved) {
        Some(why) => {
            eprintln!("squash-frontend: {why}");
            Err(ExitCode::from(scan::EXIT_UNREPRESENTABLE))
        }
        None => Ok(met),
    }
}

/// The in-build `account` step: reads the filesystems the request names and saves what they
/// cost to FILE, for a later step's report to go on from (see `report::Request::resume`).
pub fn account(args: &[OsString]) -> ExitCode {
    let given = match args {
        [_, flag, request] if flag == "--request" => Some(request),
        [_] => None,
        _ => return usage(),
    };
    let (Some(file), Some(request)) = (args.first(), request_or_env(given)) else {
        return usage();
    };
    let started = std::time::Instant::now();
    let saved = read_request(&request)
        .and_then(|request| {
            scan::account(&request)
                .map(|accounting| (accounting, request.top))
                .map_err(|e| e.to_string())
        })
        .and_then(|(mut accounting, top)| {
            std::fs::write(file, accounting.save(top))
                .map_err(|e| format!("cannot write {}: {e}", Path::new(file).display()))
                .map(|()| accounting.steps_read())
        });
    match saved {
        Ok(steps) => {
            say(&[format!(
                "squash report: the filesystems of the first {steps} steps, counted for the report of the later ones (made from metadata in {} ms, peak RSS {} KiB)",
                started.elapsed().as_millis(),
                peak_rss_kib().unwrap_or(0)
            )]);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("squash-frontend: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_request(request: &OsString) -> Result<report::Request, String> {
    serde_json::from_str(&request.to_string_lossy())
        .map_err(|e| format!("the report request does not read: {e}"))
}

/// Makes the report the request asks for, prints it and writes it to `file`; returns the names
/// of the last filesystem it read (the finished one) that no layer can hold, and whether the
/// report met squash-min-saving (`None`: none was asked).
fn make_report(
    file: &Path,
    request: &report::Request,
) -> Result<(Vec<String>, Option<bool>), String> {
    let started = std::time::Instant::now();
    let accounting = scan::account(request).map_err(|e| e.to_string())?;
    let reserved = scan::reserved(accounting.last());
    let made = accounting.report(request.layers_before, request.top);
    let mut lines = made.lines();
    lines.push(format!(
        "  (made from metadata in {} ms, peak RSS {} KiB)",
        started.elapsed().as_millis(),
        peak_rss_kib().unwrap_or(0)
    ));
    // With a name no layer can hold, the step stops (see `check`) whatever the report weighs:
    // no verdict that the build would go on.
    let met = request.min_saving.map(|min| (min, min.met_by(&made)));
    if let Some((min, met)) = met.filter(|_| reserved.is_empty()) {
        lines.push(if met {
            format!("  at least squash-min-saving ({min}): squashed")
        } else {
            format!("  less than squash-min-saving ({min}): the image is returned as built")
        });
    }
    say(&lines);
    let json = serde_json::to_vec_pretty(&made).expect("plain data serialises");
    std::fs::write(file, json).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok((reserved, met.map(|(_, met)| met)))
}

/// Whether the report `request` asks for weighs the squash against squash-min-saving.
fn weighs(report: &ReportArgs<'_>) -> bool {
    matches!(report, Some((_, Ok(request))) if request.min_saving.is_some())
}

/// Writes `lines` to stderr in one write: BuildKit reads the step's output in chunks, and
/// buildx's plain progress cuts a line that arrives in two when another step's output comes
/// between them (Rust's stderr is unbuffered, so `eprintln!` may write a line in pieces).
fn say(lines: &[String]) {
    use std::io::Write;
    let mut text = lines.join("\n");
    text.push('\n');
    // Nowhere to say that stderr failed.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// The in-build step: makes the tree at BASE equal to the one at FINAL, touching only what
/// differs (see the `treesync` crate), and says what it changed and how long that took.
pub fn sync(args: &[OsString]) -> ExitCode {
    let Some(StepArgs {
        positional: [final_dir, base_dir],
        only,
        changed,
        report,
    }) = step_args(args)
    else {
        return usage();
    };
    let (final_dir, base_dir): (&Path, &Path) = (final_dir.as_ref(), base_dir.as_ref());
    // The time the sync itself takes (after the report, where that comes first).
    let sync_now = || {
        let started = std::time::Instant::now();
        let synced = mirror(final_dir, base_dir, &only, &changed);
        (synced, started.elapsed().as_millis())
    };
    let synced = if weighs(&report) {
        // Weighed against squash-min-saving, the squash is used only if the report meets it
        // (the frontend weighs the same report the same way, `flow::weigh`): the report comes
        // first, and below the minimum BASE is left as it is, unused, instead of written for
        // nothing.
        match check(final_dir, report) {
            Err(stop) => return stop,
            Ok(Some(false)) => {
                say(&["squash-frontend sync: not run: the squash reclaims less than squash-min-saving, so the image is returned as built".into()]);
                return ExitCode::SUCCESS;
            }
            Ok(_) => Ok(sync_now()),
        }
    } else {
        // The check (and report) and the sync read different things and share nothing: they
        // run side by side. If the check stops the step, what the sync wrote is thrown away
        // with it (BuildKit keeps no output of a failed step).
        let (checked, synced) = std::thread::scope(|s| {
            let syncing = s.spawn(sync_now);
            (check(final_dir, report), syncing.join())
        });
        if let Err(stop) = checked {
            return stop;
        }
        synced
    };
    match synced {
        Ok((Ok(done), ms)) => {
            for (path, done) in &done {
                match done {
                    Subtree::Synced(stats) if only.is_empty() => {
                        say(&[format!("squash-frontend sync: {stats}, in {ms} ms")])
                    }
                    Subtree::Synced(stats) => eprintln!("squash-frontend sync {path}: {stats}"),
                    Subtree::NotADirectory => eprintln!("squash-frontend sync {path}: not a directory in the result, left to the next layer"),
                    Subtree::Absent => eprintln!("squash-frontend sync {path}: not in the result, nothing to put in this layer"),
                }
            }
            if !only.is_empty() {
                eprintln!("squash-frontend sync: {} paths in {ms} ms", done.len());
            }
            if let Some(none) = none_there(&done) {
                eprintln!("squash-frontend sync: {none}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Ok((Err(e), _)) => {
            eprintln!("squash-frontend sync: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("squash-frontend sync: the sync stopped unexpectedly");
            ExitCode::FAILURE
        }
    }
}

/// What the sync did with each path.
type Synced = Vec<(String, Subtree)>;

/// Where a split by paths names only paths the image does not have, why the build stops: its
/// lower layer would hold nothing (a mistyped path, most likely). `None` for a sync of the
/// whole tree, or where one path is there.
fn none_there(done: &Synced) -> Option<String> {
    if done.is_empty() || !done.iter().all(|(_, d)| matches!(d, Subtree::Absent)) {
        return None;
    }
    let paths: Vec<&str> = done.iter().map(|(p, _)| p.as_str()).collect();
    Some(format!(
        "squash-split: none of {} is in the image, so the split's lower layer would be empty; valid values are absolute paths the image has (such as /usr,/etc), or a stage",
        paths.join(",")
    ))
}

/// Makes BASE equal to FINAL (with `only`: in those paths alone; with `changed`: looking only
/// at the paths those diffs hold).
fn mirror(
    final_dir: &Path,
    base_dir: &Path,
    only: &[String],
    changed: &[PathBuf],
) -> Result<Synced, treesync::SyncError> {
    // The changes of BASE become the squashed layer, through BuildKit's layer differ.
    let options = treesync::SyncOptions {
        for_layer_differ: true,
        ..Default::default()
    };
    if !changed.is_empty() {
        let roots: Vec<&Path> = changed.iter().map(PathBuf::as_path).collect();
        let changed = treesync::Changed::read(&roots)?;
        treesync::sync_tree_changed(final_dir, base_dir, &changed, &options)
            .map(|stats| vec![("/".into(), Subtree::Synced(stats))])
    } else if only.is_empty() {
        treesync::sync_tree(final_dir, base_dir, &options)
            .map(|stats| vec![("/".into(), Subtree::Synced(stats))])
    } else {
        // A path that is not a directory in FINAL is left as BASE has it: the next layer
        // holds it (an absent one adds nothing).
        only.iter()
            .map(|rel| {
                treesync::sync_subtree(final_dir, base_dir, rel, &options)
                    .map(|stats| (format!("/{rel}"), stats))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report request with the least it needs, and no squash-min-saving.
    const REQUEST: &str = r#"{"squash":"full","layers_before":2,"new_layers":1,"states":"/s","steps":[],"top":10,"min_saving":null}"#;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn step_args_read_flags_in_any_order() {
        let a = args(&[
            "/f",
            "/b",
            "--report",
            "/r/report.json",
            "--changed",
            "/s/1.changed,/s/2.changed",
            "--request",
            REQUEST,
        ]);
        let read = step_args::<2>(&a).expect("valid");
        assert_eq!(read.positional, [&a[0], &a[1]]);
        assert!(read.only.is_empty());
        assert_eq!(
            read.changed,
            [PathBuf::from("/s/1.changed"), PathBuf::from("/s/2.changed")]
        );
        let (file, request) = read.report.expect("a report");
        assert_eq!(file.as_os_str(), "/r/report.json");
        // The request given, read.
        assert_eq!(request, read_request(&OsString::from(REQUEST)));
        assert!(request.is_ok());
        let only = args(&["/f", "/b", "--only", "/usr,/etc"]);
        assert_eq!(step_args::<2>(&only).unwrap().only, ["usr", "etc"]);
    }

    #[test]
    fn step_args_refuse_what_no_step_takes() {
        for bad in [
            &["/f"][..],                                      // a positional missing
            &["/f", "/b", "--only"],                          // a flag without its value
            &["/f", "/b", "--only", "/a", "--only", "/b"],    // a flag twice
            &["/f", "/b", "--only", "/a,"],                   // an empty path
            &["/f", "/b", "--changed", "relative"],           // a diff not absolute
            &["/f", "/b", "--only", "/a", "--changed", "/d"], // both limits
            &["/f", "/b", "--request", "{}"],                 // a request with no report
            &["/f", "/b", "--frobnicate", "x"],               // no such flag
        ] {
            assert!(step_args::<2>(&args(bad)).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_split_of_paths_the_image_has_none_of_stops() {
        let absent = |p: &str| (p.to_string(), Subtree::Absent);
        let said = none_there(&vec![absent("/nope"), absent("/usr/lcoal")]).unwrap();
        assert!(
            said.starts_with("squash-split: none of /nope,/usr/lcoal is in the image"),
            "{said}"
        );
        // One path there (or not a directory, left to the next layer) is a split.
        assert_eq!(
            none_there(&vec![
                absent("/nope"),
                ("/lib".into(), Subtree::NotADirectory)
            ]),
            None
        );
        assert_eq!(none_there(&Vec::new()), None, "the whole tree");
    }

    #[test]
    fn a_request_weighs_only_with_a_minimum() {
        let file = OsString::from("/r/report.json");
        let with = |min: &str| -> ReportArgs<'_> {
            let json = REQUEST.replace(r#""min_saving":null"#, &format!(r#""min_saving":{min}"#));
            Some((&file, read_request(&OsString::from(json))))
        };
        let five = serde_json::to_string(&report::MinSaving::Percent(5.0)).unwrap();
        assert!(weighs(&with(&five)));
        let none = with("null");
        assert!(none
            .as_ref()
            .unwrap()
            .1
            .as_ref()
            .is_ok_and(|r| r.min_saving.is_none()));
        assert!(!weighs(&none));
        assert!(!weighs(&None));
        // A request that does not read does not weigh: the report says why it fails.
        assert!(!weighs(&Some((&file, read_request(&OsString::from("{"))))));
    }
}
