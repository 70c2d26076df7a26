//! The frontend's options: BuildKit's frontend options as given to the process, and the squash
//! settings a user picks with a frontend option, a build argument or a Dockerfile directive.
//!
//! Precedence, highest first: frontend option (`--opt squash-mode=base` with buildctl), build
//! argument (`--build-arg SQUASH_MODE=base`), Dockerfile directive (`# squash=base` in the top
//! comment block), default (`full`). A build argument is what `docker buildx build` users can
//! set per build; the directive is the Dockerfile author's default; the option is the raw
//! frontend interface that both of the others stand in for.

use std::collections::BTreeMap;
use std::fmt;

/// BuildKit's frontend options (`BUILDKIT_FRONTEND_OPT_<n>=key=value`).
pub type Opts = BTreeMap<String, String>;

/// The environment-variable prefix BuildKit passes frontend options under.
const OPT_PREFIX: &str = "BUILDKIT_FRONTEND_OPT_";

/// Reads frontend options from environment variables; each value is split on its first `=`
/// (values may hold `=`, keys may hold `:`).
pub fn opts_from_env(vars: impl IntoIterator<Item = (String, String)>) -> Opts {
    vars.into_iter()
        .filter(|(k, _)| k.starts_with(OPT_PREFIX))
        .filter_map(|(_, v)| {
            v.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// How the result is squashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everything in one layer.
    Full,
    /// The base image's layers untouched, plus one layer for everything the Dockerfile did.
    Base,
    /// No squash: the image the Dockerfile frontend built.
    Off,
}

impl Mode {
    const CHOICES: &'static str = "full, base, off";

    fn parse(value: &str) -> Option<Mode> {
        match value.trim().to_ascii_lowercase().as_str() {
            "full" => Some(Mode::Full),
            "base" => Some(Mode::Base),
            "off" => Some(Mode::Off),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Full => "full",
            Mode::Base => "base",
            Mode::Off => "off",
        })
    }
}

/// How the squashed layer is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The engine's ops where it has them, the in-build sync otherwise.
    Auto,
    /// The engine's DiffOp (and MergeOp in base mode).
    Diff,
    /// Our own binary run inside the build, mirroring the result onto the base (full mode:
    /// onto an empty mount).
    Sync,
}

impl Method {
    const CHOICES: &'static str = "auto, diff, sync";

    fn parse(value: &str) -> Option<Method> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(Method::Auto),
            "diff" => Some(Method::Diff),
            "sync" => Some(Method::Sync),
            _ => None,
        }
    }
}

/// Where a setting came from, for error messages and for the precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    Directive { line: usize },
    BuildArg,
    Option,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("the default"),
            Origin::Directive { line } => write!(f, "Dockerfile line {line}"),
            Origin::BuildArg => f.write_str("a build argument"),
            Origin::Option => f.write_str("a frontend option"),
        }
    }
}

/// One user-settable setting: its names in each place a user can set it.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub option: &'static str,
    pub build_arg: &'static str,
    pub directive: &'static str,
}

pub const MODE: Setting = Setting {
    option: "squash-mode",
    build_arg: "SQUASH_MODE",
    directive: "squash",
};
pub const METHOD: Setting = Setting {
    option: "squash-method",
    build_arg: "SQUASH_METHOD",
    directive: "squash-method",
};
pub const UPSTREAM: Setting = Setting {
    option: "squash-upstream",
    build_arg: "SQUASH_UPSTREAM",
    directive: "squash-upstream",
};

/// Every setting, to tell which option names are ours.
pub const SETTINGS: [Setting; 3] = [MODE, METHOD, UPSTREAM];

/// The option we set when we hand the build to an upstream frontend image: should that image
/// be a squash frontend too, it passes the build through instead of following the same
/// upstream setting (a build argument or directive it also sees) back to itself forever.
pub const NESTED: &str = "squash-nested";

/// Longest value we accept for any setting.
const MAX_VALUE: usize = 4096;

/// A bad setting, named the way the user set it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    #[error("invalid {name} {value:?} (from {origin}): valid values are {choices}")]
    Invalid {
        name: String,
        value: String,
        origin: Origin,
        choices: &'static str,
    },
    #[error("{name} (from {origin}) is empty: valid values are {choices}")]
    Empty {
        name: String,
        origin: Origin,
        choices: &'static str,
    },
    #[error("{name} (from {origin}) is {len} bytes long; at most {MAX_VALUE} are accepted")]
    TooLong {
        name: String,
        origin: Origin,
        len: usize,
    },
}

/// The squash settings of one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub mode: Mode,
    pub mode_origin: Origin,
    pub method: Method,
    /// A frontend image to do the Dockerfile build instead of the engine's built-in one.
    pub upstream: Option<String>,
}

/// Whether a setting is given by an option or build argument, so that reading the Dockerfile
/// for directives can be skipped.
pub fn needs_directives(opts: &Opts) -> bool {
    SETTINGS
        .iter()
        .any(|s| raw(opts, &BTreeMap::new(), s).is_none())
}

/// Resolves every setting from the options and the Dockerfile's directives.
pub fn settings(
    opts: &Opts,
    directives: &BTreeMap<String, (String, usize)>,
) -> Result<Settings, OptionError> {
    let (mode, mode_origin) = match raw(opts, directives, &MODE) {
        Some((name, value, origin)) => {
            let mode = check(&name, &value, &origin, Mode::CHOICES, Mode::parse)?;
            (mode, origin)
        }
        None => (Mode::Full, Origin::Default),
    };
    let method = match raw(opts, directives, &METHOD) {
        Some((name, value, origin)) => {
            check(&name, &value, &origin, Method::CHOICES, Method::parse)?
        }
        None => Method::Auto,
    };
    let upstream = match raw(opts, directives, &UPSTREAM) {
        Some((name, value, origin)) => Some(check(
            &name,
            &value,
            &origin,
            "an image reference such as docker/dockerfile:1.7",
            valid_image_ref,
        )?),
        None => None,
    };
    Ok(Settings {
        mode,
        mode_origin,
        method,
        upstream,
    })
}

/// The value of a setting, the name it was given under and where, by precedence.
fn raw(
    opts: &Opts,
    directives: &BTreeMap<String, (String, usize)>,
    s: &Setting,
) -> Option<(String, String, Origin)> {
    if let Some(v) = opts.get(s.option) {
        return Some((format!("option {}", s.option), v.clone(), Origin::Option));
    }
    if let Some(v) = opts.get(&format!("build-arg:{}", s.build_arg)) {
        return Some((
            format!("build argument {}", s.build_arg),
            v.clone(),
            Origin::BuildArg,
        ));
    }
    directives.get(s.directive).map(|(v, line)| {
        (
            format!("directive # {}=", s.directive),
            v.clone(),
            Origin::Directive { line: *line },
        )
    })
}

fn check<T>(
    name: &str,
    value: &str,
    origin: &Origin,
    choices: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, OptionError> {
    if value.len() > MAX_VALUE {
        return Err(OptionError::TooLong {
            name: name.into(),
            origin: origin.clone(),
            len: value.len(),
        });
    }
    if value.trim().is_empty() {
        return Err(OptionError::Empty {
            name: name.into(),
            origin: origin.clone(),
            choices,
        });
    }
    parse(value).ok_or_else(|| OptionError::Invalid {
        name: name.into(),
        value: value.into(),
        origin: origin.clone(),
        choices,
    })
}

fn valid_image_ref(value: &str) -> Option<String> {
    let v = value.trim();
    let ok = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "./:-_@".contains(c));
    (ok && !v.starts_with(['-', '.', ':', '@'])).then(|| v.to_string())
}

/// The options to hand to the Dockerfile frontend: ours removed, `cmdline` guaranteed (its
/// presence is the only thing that stops the Dockerfile frontend from following our own
/// `# syntax=` line back to us).
pub fn forwarded(opts: &Opts) -> Opts {
    let mut out: Opts = opts
        .iter()
        .filter(|(k, _)| k.as_str() != NESTED && !SETTINGS.iter().any(|s| s.option == k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !out.contains_key("cmdline") {
        let source = out.get("source").cloned().unwrap_or_default();
        out.insert("cmdline".into(), source);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Opts {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn dirs(pairs: &[(&str, &str, usize)]) -> BTreeMap<String, (String, usize)> {
        pairs
            .iter()
            .map(|(k, v, l)| (k.to_string(), (v.to_string(), *l)))
            .collect()
    }

    #[test]
    fn env_is_split_on_the_first_equals() {
        let env = vec![
            ("BUILDKIT_FRONTEND_OPT_0".into(), "build-arg:A=x=y".into()),
            (
                "BUILDKIT_FRONTEND_OPT_1".into(),
                "context:base=docker-image://b".into(),
            ),
            ("BUILDKIT_FRONTEND_OPT_2".into(), "noequals".into()),
            ("PATH".into(), "/bin".into()),
        ];
        let o = opts_from_env(env);
        assert_eq!(o["build-arg:A"], "x=y");
        assert_eq!(o["context:base"], "docker-image://b");
        assert_eq!(o.len(), 2);
    }

    #[test]
    fn default_is_full() {
        let s = settings(&opts(&[]), &dirs(&[])).unwrap();
        assert_eq!(
            (s.mode, s.mode_origin, s.method),
            (Mode::Full, Origin::Default, Method::Auto)
        );
    }

    #[test]
    fn precedence_option_then_build_arg_then_directive() {
        let d = dirs(&[("squash", "off", 2)]);
        assert_eq!(settings(&opts(&[]), &d).unwrap().mode, Mode::Off);
        let o = opts(&[("build-arg:SQUASH_MODE", "base")]);
        assert_eq!(settings(&o, &d).unwrap().mode, Mode::Base);
        let o = opts(&[("build-arg:SQUASH_MODE", "base"), ("squash-mode", "full")]);
        let s = settings(&o, &d).unwrap();
        assert_eq!((s.mode, s.mode_origin), (Mode::Full, Origin::Option));
    }

    #[test]
    fn invalid_values_name_the_setting_and_the_choices() {
        let e = settings(&opts(&[("build-arg:SQUASH_MODE", "ful")]), &dirs(&[])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid build argument SQUASH_MODE \"ful\" (from a build argument): valid values are full, base, off"
        );
        let e = settings(&opts(&[]), &dirs(&[("squash", "yes", 3)])).unwrap_err();
        assert!(e.to_string().contains("Dockerfile line 3"), "{e}");
        let e = settings(&opts(&[("squash-mode", " ")]), &dirs(&[])).unwrap_err();
        assert!(matches!(e, OptionError::Empty { .. }), "{e}");
        let e = settings(&opts(&[("squash-method", "copy")]), &dirs(&[])).unwrap_err();
        assert!(e.to_string().contains("auto, diff, sync"), "{e}");
        let long = "a".repeat(5000);
        let e = settings(&opts(&[("squash-mode", &long)]), &dirs(&[])).unwrap_err();
        assert!(matches!(e, OptionError::TooLong { len: 5000, .. }), "{e}");
        let e = settings(&opts(&[("squash-upstream", "a b")]), &dirs(&[])).unwrap_err();
        assert!(e.to_string().contains("image reference"), "{e}");
    }

    #[test]
    fn values_are_case_insensitive_and_trimmed() {
        let s = settings(&opts(&[("squash-mode", " BASE ")]), &dirs(&[])).unwrap();
        assert_eq!(s.mode, Mode::Base);
    }

    #[test]
    fn forwarded_drops_our_options_and_sets_cmdline() {
        let o = opts(&[
            ("squash-mode", "base"),
            ("source", "img"),
            ("build-arg:SQUASH_MODE", "x"),
        ]);
        let f = forwarded(&o);
        assert!(!f.contains_key("squash-mode"));
        assert_eq!(f["cmdline"], "img");
        assert_eq!(
            f["build-arg:SQUASH_MODE"], "x",
            "build args are the user's: kept"
        );
        let o = opts(&[("cmdline", "img --x"), ("source", "img")]);
        assert_eq!(forwarded(&o)["cmdline"], "img --x");
    }

    #[test]
    fn directives_needed_only_when_a_setting_is_unset() {
        assert!(needs_directives(&opts(&[])));
        let all = opts(&[
            ("squash-mode", "full"),
            ("build-arg:SQUASH_METHOD", "auto"),
            ("squash-upstream", "x"),
        ]);
        assert!(!needs_directives(&all));
    }
}
