//! Frontend options, build arguments and directives -> `Request::settings`, `forwarded`,
//! `needs_directives` and `opts_from_env`. Input format: `squash_fuzz::parse_options_input`.
//!
//! Asserts, besides "no panic":
//! - `forwarded` always has `cmdline` (the input's own `cmdline`, else its `source`, else ""),
//!   never one of our option keys (`squash-mode`, `squash-method`, `squash-upstream`,
//!   `squash-report`, ..., `squash-nested`), and every other option unchanged; it adds no
//!   other key;
//! - `settings` follows the precedence option > build argument > directive > default: on `Ok`
//!   the mode and its origin are those of the highest-ranked source that sets it (and the
//!   report is on unless that source of `squash-report` says `off`), and on `Err` the
//!   highest-ranked source of some setting has an invalid value, or the report is off with a
//!   `squash-min-saving`;
//! - `needs_directives` is true exactly when some setting has neither option nor build argument;
//! - every option `opts_from_env` returns comes from a `BUILDKIT_FRONTEND_OPT_` variable.

#![no_main]

use libfuzzer_sys::fuzz_target;
use squash_frontend::report::MinSaving;
use squash_frontend::request::{self, Mode, Origin, Request, NESTED, SETTINGS};

fuzz_target!(|data: &[u8]| {
    let input = squash_fuzz::parse_options_input(data);
    let (opts, dirs) = (&input.opts, &input.directives);

    let request = Request::new(opts, "session");
    let fwd = request.forwarded(false);
    let expected_cmdline = opts
        .get("cmdline")
        .or_else(|| opts.get("source"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        fwd.get("cmdline"),
        Some(&expected_cmdline),
        "{opts:?} -> {fwd:?}"
    );
    for s in SETTINGS {
        assert!(
            !fwd.contains_key(s.option),
            "{} forwarded: {fwd:?}",
            s.option
        );
    }
    assert!(!fwd.contains_key(NESTED), "{NESTED} forwarded: {fwd:?}");
    for (k, v) in opts {
        if k != NESTED && !SETTINGS.iter().any(|s| s.option == k) {
            assert_eq!(fwd.get(k), Some(v), "option {k:?} not forwarded as given");
        }
    }
    for k in fwd.keys() {
        assert!(k == "cmdline" || opts.contains_key(k), "{k:?} invented");
    }

    // The raw value of a setting by precedence, and whether it is valid for that setting.
    let raw = |s: &request::Setting| -> Option<(String, Origin)> {
        if let Some(v) = opts.get(s.option) {
            return Some((v.clone(), Origin::Option));
        }
        if let Some(v) = opts.get(&format!("build-arg:{}", s.build_arg)) {
            return Some((v.clone(), Origin::BuildArg));
        }
        dirs.get(s.directive)
            .map(|(v, line)| (v.clone(), Origin::Directive { line: *line }))
    };
    let norm = |v: &str| v.trim().to_ascii_lowercase();
    let valid = |s: &request::Setting, v: &str| -> bool {
        if v.len() > 4096 {
            return false;
        }
        // Empty: refused, but for the split, where it means no split.
        if v.trim().is_empty() {
            return s.option == "squash-split";
        }
        match s.option {
            "squash-mode" => ["full", "base", "off"].contains(&norm(v).as_str()),
            "squash-method" => ["auto", "diff", "sync"].contains(&norm(v).as_str()),
            "squash-report" => ["on", "off"].contains(&norm(v).as_str()),
            // Its forms are the report's own parser's (unit-tested there).
            "squash-min-saving" => MinSaving::parse(v).is_ok(),
            // Its forms are the request's own (unit-tested there).
            "squash-split" => Request::new(
                &[("squash-split".to_string(), v.to_string())]
                    .into_iter()
                    .collect(),
                "s",
            )
            .settings(&Default::default())
            .is_ok(),
            _ => {
                let t = v.trim();
                t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "./:-_@".contains(c))
                    && !t.starts_with(['-', '.', ':', '@'])
            }
        }
    };
    // The report off leaves nothing for squash-min-saving to weigh: the two are refused together.
    let report_off = raw(&request::REPORT).is_some_and(|(v, _)| norm(&v) == "off");
    let all_valid = SETTINGS
        .iter()
        .all(|s| raw(s).is_none_or(|(v, _)| valid(s, &v)))
        && !(report_off && raw(&request::MIN_SAVING).is_some());
    match request.settings(dirs) {
        Ok(s) => {
            assert!(
                all_valid,
                "accepted an invalid setting: {opts:?} {dirs:?} -> {s:?}"
            );
            match raw(&request::MODE) {
                Some((v, _)) => assert_eq!(s.mode.to_string(), norm(&v)),
                None => assert_eq!(s.mode, Mode::Full),
            }
            assert_eq!(
                s.upstream.map(|g| g.value),
                raw(&request::UPSTREAM).map(|(v, _)| v.trim().to_string())
            );
            assert_eq!(s.report, !report_off);
        }
        Err(e) => {
            assert!(
                !all_valid,
                "refused valid settings: {opts:?} {dirs:?} -> {e}"
            );
            let _ = e.to_string();
        }
    }

    let needs = SETTINGS.iter().any(|s| {
        !opts.contains_key(s.option) && !opts.contains_key(&format!("build-arg:{}", s.build_arg))
    });
    assert_eq!(request.needs_directives(), needs);

    let from_env = request::opts_from_env(input.env.iter().cloned());
    for (k, v) in &from_env {
        let joined = format!("{k}={v}");
        assert!(
            input
                .env
                .iter()
                .any(|(name, value)| name.starts_with("BUILDKIT_FRONTEND_OPT_") && *value == joined),
            "{k:?}={v:?} not from a BUILDKIT_FRONTEND_OPT_ variable"
        );
    }
});
