//! The build request: BuildKit's frontend options, read once into one [`Request`], and the
//! squash settings a user picks with a frontend option, a build argument or a Dockerfile
//! directive.
//!
//! Every option key we read is named once, below, with BuildKit's spelling (its Dockerfile
//! frontend reads the same keys: `frontend/dockerui/config.go`). Nothing else in the crate looks
//! an option up by name.
//!
//! Precedence of a setting, highest first: frontend option (`--opt squash-mode=base` with
//! buildctl), build argument (`--build-arg SQUASH_MODE=base`), Dockerfile directive
//! (`# squash=base` in the top comment block), default (`full`). A build argument is what
//! `docker buildx build` users can set per build; the directive is the Dockerfile author's
//! default; the option is the raw frontend interface that both of the others stand in for.

use std::collections::BTreeMap;
use std::fmt;

use squash_proto::gateway::CacheOptionsEntry;

use crate::directives::Directives;
use crate::report::MinSaving;

/// BuildKit's frontend options (`BUILDKIT_FRONTEND_OPT_<n>=key=value`).
pub type Opts = BTreeMap<String, String>;

/// The environment-variable prefix BuildKit passes frontend options under.
const OPT_PREFIX: &str = "BUILDKIT_FRONTEND_OPT_";

// The BuildKit option keys we read. When adding one, also add it to the README if users set it.
/// The Dockerfile's path in its local source (`-f`).
pub const KEY_FILENAME: &str = "filename";
/// Names the local source that holds the Dockerfile, instead of `dockerfile`.
pub const KEY_DOCKERFILE_KEY: &str = "dockerfilekey";
/// The build context, when it is remote (a git or HTTP URL).
pub const KEY_CONTEXT: &str = "context";
/// Set on information requests (`--call`, `--print`).
pub const KEY_REQUEST_ID: &str = "requestid";
/// `--no-cache` (empty) or `--no-cache-filter` (stage names).
pub const KEY_NO_CACHE: &str = "no-cache";
/// `--cache-from`, as a JSON list of `{Type, Attrs}`.
pub const KEY_CACHE_IMPORTS: &str = "cache-imports";
/// The frontend image, as BuildKit resolved it from `# syntax=`.
pub const KEY_SOURCE: &str = "source";
/// What the Dockerfile frontend was started as; its presence stops it from following our own
/// `# syntax=` line back to us.
pub const KEY_CMDLINE: &str = "cmdline";
/// The session of a named local source (`local-sessionid:<name>`).
const KEY_LOCAL_SESSION_PREFIX: &str = "local-sessionid:";
/// Attestations the build exports (`attest:provenance`, `attest:sbom`, ...).
const KEY_ATTEST_PREFIX: &str = "attest:";
/// Build arguments (`build-arg:<NAME>`).
const KEY_BUILD_ARG_PREFIX: &str = "build-arg:";
/// The build argument that sets the source date epoch.
const ARG_SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";
/// The name of the local source (and frontend input) that holds the Dockerfile.
pub const DOCKERFILE_SOURCE: &str = "dockerfile";
/// The Dockerfile's default name.
const DEFAULT_FILENAME: &str = "Dockerfile";

/// What the process was started with.
#[derive(Debug, Clone, Default)]
pub struct Start {
    /// BuildKit's frontend options.
    pub opts: Opts,
    /// The client's session (`BUILDKIT_SESSION_ID`), for local sources.
    pub session_id: String,
    /// The frontend image's own definition (`/run/config/buildkit/metadata/frontend.bin`).
    pub tool_def: Option<Vec<u8>>,
    /// Our binary's path inside our image.
    pub exe: String,
}

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

/// Where the Dockerfile is, as the Dockerfile frontend will look for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerfileSource {
    /// Its path inside the source (`-f`; `Dockerfile` by default).
    pub filename: String,
    /// The local source that holds it: `dockerfile`, or the `dockerfilekey` option.
    pub local_name: String,
    /// Whether a frontend input named `dockerfile` (e.g. a Dockerfile given on stdin) is used
    /// when there is one; not when `dockerfilekey` names another source.
    pub from_input: bool,
    /// The context is remote (git, HTTP): only the Dockerfile frontend fetches it.
    pub remote: bool,
    /// The session the local source is read through.
    pub session: String,
}

impl DockerfileSource {
    /// `dockerfile` for `Dockerfile` (in the same directory), which the Dockerfile frontend
    /// also accepts.
    pub fn lowercase_fallback(&self) -> Option<String> {
        let (dir, base) = self
            .filename
            .rsplit_once('/')
            .unwrap_or(("", &self.filename));
        (base == DEFAULT_FILENAME).then(|| {
            if dir.is_empty() {
                "dockerfile".to_string()
            } else {
                format!("{dir}/dockerfile")
            }
        })
    }

    /// The paths the local source is limited to: the Dockerfile, its own ignore file and the
    /// lowercase fallback name.
    pub fn follow_paths(&self) -> Vec<String> {
        let mut follow = vec![
            self.filename.clone(),
            format!("{}.dockerignore", self.filename),
        ];
        follow.extend(self.lowercase_fallback());
        follow
    }
}

/// One build request, parsed once from the frontend options.
#[derive(Debug, Clone)]
pub struct Request {
    /// The options as given.
    opts: Opts,
    /// An information request (`--call`, `--print`), or a build handed to us by a squash
    /// frontend as its upstream: passed through as is.
    pub passthrough: bool,
    /// Where the Dockerfile is.
    pub dockerfile: DockerfileSource,
    /// `--no-cache` without stage names: every step, ours included, runs again.
    pub no_cache: bool,
    /// The build's cache sources (`--cache-from`), for our own solves too.
    pub cache_imports: Vec<CacheOptionsEntry>,
    /// `SOURCE_DATE_EPOCH` given as a build argument (a number of seconds).
    pub epoch: Option<i64>,
    /// The build asks for attestations (so ours, the squash report, goes with them).
    pub attestations: bool,
    /// Every attestation the build asks for is `inline-only` (buildx's default provenance,
    /// `mode=min,inline-only=true`): exporters that cannot hold attestations inline (local,
    /// tar, and OCI or Docker tarballs) leave such an attestation out, so ours is marked the
    /// same way (see [`attest_requests`]).
    pub attestations_inline_only: bool,
}

/// The build's attestation requests (`attest:<kind>` options, each a list of `key=value`):
/// whether any is on (not `disabled=true`), and whether every one that is on is
/// `inline-only=true`. BuildKit marks such an attestation with the metadata key `inline-only`
/// (its `solver/result/attestation.go`), and its local and tar exporters, and its image writer
/// for OCI and Docker tarballs, leave those out.
fn attest_requests(opts: &Opts) -> (bool, bool) {
    let is_true = |value: &str, key: &str| {
        value.split(',').any(|kv| {
            kv.split_once('=')
                .is_some_and(|(k, v)| k.trim() == key && v.trim().eq_ignore_ascii_case("true"))
        })
    };
    let on: Vec<&str> = opts
        .iter()
        .filter(|(k, _)| k.starts_with(KEY_ATTEST_PREFIX))
        .map(|(_, v)| v.as_str())
        .filter(|v| !is_true(v, "disabled"))
        .collect();
    let inline_only = !on.is_empty() && on.iter().all(|v| is_true(v, "inline-only"));
    (!on.is_empty(), inline_only)
}

impl Request {
    /// Reads the options of one build. `session_id` is the client's session, for the local
    /// source of the Dockerfile when no option names another.
    pub fn new(opts: &Opts, session_id: &str) -> Request {
        let filename = opts
            .get(KEY_FILENAME)
            .cloned()
            .unwrap_or_else(|| DEFAULT_FILENAME.into());
        let forced = opts.get(KEY_DOCKERFILE_KEY);
        let local_name = forced.cloned().unwrap_or_else(|| DOCKERFILE_SOURCE.into());
        let context = opts.get(KEY_CONTEXT).map(String::as_str).unwrap_or("");
        let session = opts
            .get(&format!("{KEY_LOCAL_SESSION_PREFIX}{local_name}"))
            .cloned()
            .unwrap_or_else(|| session_id.to_string());
        let (attestations, attestations_inline_only) = attest_requests(opts);
        Request {
            passthrough: opts.contains_key(KEY_REQUEST_ID) || opts.contains_key(NESTED),
            dockerfile: DockerfileSource {
                filename,
                local_name,
                from_input: forced.is_none(),
                remote: context.contains("://") || context.starts_with("git@"),
                session,
            },
            no_cache: opts.get(KEY_NO_CACHE).is_some_and(|v| v.is_empty()),
            cache_imports: cache_imports(opts),
            epoch: opts
                .get(&build_arg(ARG_SOURCE_DATE_EPOCH))
                .and_then(|v| v.trim().parse().ok()),
            attestations,
            attestations_inline_only,
            opts: opts.clone(),
        }
    }

    /// Whether some setting is given by neither an option nor a build argument, so that the
    /// Dockerfile's directives may set it.
    pub fn needs_directives(&self) -> bool {
        SETTINGS
            .iter()
            .any(|s| raw(&self.opts, &Directives::new(), s).is_none())
    }

    /// Refuses a `squash-*` option that is none of ours, and a `SQUASH_*` build argument that
    /// is none of ours unless `dockerfile` (where it was read) uses the name, either prefix in
    /// any case (`squash_mode` is none of ours: names are case-sensitive): a misspelt
    /// setting would otherwise leave its default in place without a word. A build argument
    /// is the Dockerfile's own if its text names it (in an `ARG` or a `${...}`), which only
    /// errs on the side of leaving a name alone.
    pub fn check_names(&self, dockerfile: Option<&[u8]>) -> Result<(), OptionError> {
        for key in self.opts.keys() {
            let (name, origin) = if let Some(arg) = key.strip_prefix(KEY_BUILD_ARG_PREFIX) {
                let ours = SETTINGS.iter().any(|s| s.build_arg == arg);
                // In any case: build arguments are case-sensitive, so `squash_mode` would
                // otherwise be left unread without a word.
                if ours
                    || !arg.to_ascii_uppercase().starts_with("SQUASH_")
                    || dockerfile.is_none_or(|d| mentions(d, arg))
                {
                    continue;
                }
                (format!("build argument {arg}"), Origin::BuildArg)
            } else {
                let ours = key == NESTED || SETTINGS.iter().any(|s| s.option == key.as_str());
                if ours || !key.to_ascii_lowercase().starts_with("squash-") {
                    continue;
                }
                (format!("option {key}"), Origin::Option)
            };
            return Err(OptionError::Unknown { name, origin });
        }
        Ok(())
    }

    /// Resolves every setting from the options and the Dockerfile's directives.
    pub fn settings(&self, directives: &Directives) -> Result<Settings, OptionError> {
        settings(&self.opts, directives)
    }

    /// The options to hand to the Dockerfile frontend: ours removed, `cmdline` guaranteed (its
    /// presence is the only thing that stops the Dockerfile frontend from following our own
    /// `# syntax=` line back to us). With `own_dockerfile`, the Dockerfile frontend is to read
    /// the Dockerfile from the `dockerfile` input we give it, so `dockerfilekey` (which would
    /// make it read a local source of that name instead) is left out.
    pub fn forwarded(&self, own_dockerfile: bool) -> Opts {
        let mut out = forwarded(&self.opts);
        if own_dockerfile {
            out.remove(KEY_DOCKERFILE_KEY);
        }
        out
    }
}

fn build_arg(name: &str) -> String {
    format!("{KEY_BUILD_ARG_PREFIX}{name}")
}

/// The cache sources of the build (`--cache-from`); unreadable ones are left out (the
/// Dockerfile frontend reports them).
fn cache_imports(opts: &Opts) -> Vec<CacheOptionsEntry> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "Type")]
        kind: String,
        #[serde(rename = "Attrs", default)]
        attrs: BTreeMap<String, String>,
    }
    opts.get(KEY_CACHE_IMPORTS)
        .and_then(|v| serde_json::from_str::<Vec<Entry>>(v).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|e| CacheOptionsEntry {
            r#type: e.kind,
            attrs: e.attrs,
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
    /// The engine's DiffOp (and MergeOp in base mode): the squash reads only what the engine's
    /// diffs name.
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

/// Where the squash splits the image into two layers (the `squash-split` setting), so that an
/// app-only change leaves the lower one as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// Everything up to the end of the named stage in one layer, the rest in another.
    Stage(String),
    /// These paths (absolute, without a trailing `/`) in one layer, everything else in another.
    Paths(Vec<String>),
}

impl Split {
    /// The valid forms, for error messages.
    pub const FORMS: &'static str = "a stage name (as in FROM ... AS <name>: a letter, then letters, digits, '.', '_', '-') or a comma-separated list of absolute paths (/usr,/etc,/var/lib/dpkg), or empty for no split";

    /// Reads a stage name or a list of paths; what is wrong with anything else, in words.
    fn parse(value: &str) -> Result<Split, String> {
        let v = value.trim();
        if v.starts_with('/') {
            let mut paths: Vec<String> = Vec::new();
            for p in v.split(',') {
                if p.trim().is_empty() {
                    return Err(
                        "the list has an empty entry (two commas in a row, or one at an end)"
                            .into(),
                    );
                }
                let p = p.trim().trim_end_matches('/');
                if p.is_empty() {
                    return Err(
                        "/ is the whole image, which leaves nothing for the other layer".into(),
                    );
                }
                if !p.starts_with('/') {
                    return Err(format!("{p} is not an absolute path"));
                }
                if p[1..]
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == "..")
                {
                    return Err(format!(
                        "{p} holds an empty, . or .. part; write each path as the image has it"
                    ));
                }
                if paths.iter().any(|q| q == p) {
                    return Err(format!("{p} is listed twice"));
                }
                // A path inside another would be in both layers.
                if let Some((inner, outer)) = paths.iter().find_map(|q| {
                    if p.starts_with(&format!("{q}/")) {
                        Some((p, q.as_str()))
                    } else if q.starts_with(&format!("{p}/")) {
                        Some((q.as_str(), p))
                    } else {
                        None
                    }
                }) {
                    return Err(format!(
                        "{inner} is inside {outer}, so it would be in both layers"
                    ));
                }
                paths.push(p.to_string());
            }
            if paths.len() > 64 {
                return Err(format!("{} paths are listed; at most 64 are", paths.len()));
            }
            return Ok(Split::Paths(paths));
        }
        // BuildKit's rule for `FROM ... AS <name>` (lower-cased, then
        // `^[a-z][a-z0-9-_.]*$`: frontend/dockerfile/instructions/parse.go).
        let name = v.to_ascii_lowercase();
        let name_chars = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        let ok = name.starts_with(|c: char| c.is_ascii_alphabetic()) && name_chars;
        if ok {
            Ok(Split::Stage(name))
        } else if v.contains(',') {
            // A list: name the entry that is wrong, not the whole list.
            let first = v
                .split(',')
                .map(str::trim)
                .find(|p| !p.starts_with('/'))
                .unwrap_or(v);
            Err(format!(
                "{first} is not an absolute path, and a list holds absolute paths only (a stage name stands alone)"
            ))
        } else if name.starts_with(|c: char| c.is_ascii_digit()) && name_chars {
            // `COPY --from=1` counts stages, but a split's stage is one the target stage is
            // built on, by `FROM <name>`: it has a name.
            Err(format!(
                "{v} is not a stage name (a stage name starts with a letter; a split is at a stage the target stage names in its FROM line)"
            ))
        } else if name.contains('/') {
            Err(format!(
                "{v} is neither a stage name nor an absolute path (it does not start with /)"
            ))
        } else {
            Err(format!("{v} is not a stage name"))
        }
    }
}

/// Where a setting came from, for error messages and for the precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A Dockerfile directive.
    Directive {
        /// Its line.
        line: usize,
    },
    /// A build argument.
    BuildArg,
    /// A frontend option.
    Option,
}

impl Origin {
    /// The 1-based Dockerfile line, where a directive is the origin.
    pub fn dockerfile_line(&self) -> Option<usize> {
        match self {
            Origin::Directive { line } => Some(*line),
            Origin::BuildArg | Origin::Option => None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Directive { line } => write!(f, "Dockerfile line {line}"),
            Origin::BuildArg => f.write_str("a build argument"),
            Origin::Option => f.write_str("a frontend option"),
        }
    }
}

/// One user-settable setting: its names in each place a user can set it.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// As a frontend option (`--opt <name>=`).
    pub option: &'static str,
    /// As a build argument (`--build-arg <NAME>=`).
    pub build_arg: &'static str,
    /// As a Dockerfile directive (`# <name>=`).
    pub directive: &'static str,
}

/// The squash mode.
pub const MODE: Setting = Setting {
    option: "squash-mode",
    build_arg: "SQUASH_MODE",
    directive: "squash",
};
/// The squash method.
pub const METHOD: Setting = Setting {
    option: "squash-method",
    build_arg: "SQUASH_METHOD",
    directive: "squash-method",
};
/// Where the squash splits the image into two layers.
pub const SPLIT: Setting = Setting {
    option: "squash-split",
    build_arg: "SQUASH_SPLIT",
    directive: "squash-split",
};
/// The least the squash must reclaim.
pub const MIN_SAVING: Setting = Setting {
    option: "squash-min-saving",
    build_arg: "SQUASH_MIN_SAVING",
    directive: "squash-min-saving",
};
/// Whether the squash makes its report.
pub const REPORT: Setting = Setting {
    option: "squash-report",
    build_arg: "SQUASH_REPORT",
    directive: "squash-report",
};
/// The Dockerfile frontend image to delegate to.
pub const UPSTREAM: Setting = Setting {
    option: "squash-upstream",
    build_arg: "SQUASH_UPSTREAM",
    directive: "squash-upstream",
};

/// Every setting, to tell which option names are ours.
pub const SETTINGS: [Setting; 6] = [MODE, METHOD, UPSTREAM, MIN_SAVING, SPLIT, REPORT];

/// The option we set when we hand the build to an upstream frontend image: should that image
/// be a squash frontend too, it passes the build through instead of following the same
/// upstream setting (a build argument or directive it also sees) back to itself forever.
pub const NESTED: &str = "squash-nested";

/// Longest value we accept for any setting.
const MAX_VALUE: usize = 4096;

/// A bad setting, named the way the user set it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    /// Not one of the valid values.
    #[error("invalid {name} {value:?}{}: {}valid values are {choices}", placed(.origin), because(.why))]
    Invalid {
        /// The setting, as the user named it (`build argument SQUASH_MODE`).
        name: String,
        /// What was given.
        value: String,
        /// Where.
        origin: Origin,
        /// What is wrong with it, where more can be said than that it is none of the choices.
        why: Option<String>,
        /// The valid values.
        choices: &'static str,
    },
    /// Given, but empty.
    #[error("{name}{} is empty: valid values are {choices}", placed(.origin))]
    Empty {
        /// The setting, as the user named it.
        name: String,
        /// Where.
        origin: Origin,
        /// The valid values.
        choices: &'static str,
    },
    /// A `squash-*` option, or a `SQUASH_*` build argument the Dockerfile does not use, that
    /// is none of our settings (e.g. `SQUASH_MOD`): refused rather than left to a silent
    /// default.
    #[error("{name} is not a squash-frontend setting{}", known_names(.origin))]
    Unknown {
        /// The name, as the user gave it (`build argument SQUASH_MOD`).
        name: String,
        /// Where: a build argument or a frontend option.
        origin: Origin,
    },
    /// Longer than any valid value.
    #[error("{name}{} is {len} bytes long; at most {MAX_VALUE} are accepted", placed(.origin))]
    TooLong {
        /// The setting, as the user named it.
        name: String,
        /// Where.
        origin: Origin,
        /// Its length in bytes.
        len: usize,
    },
}

/// ` (from Dockerfile line N)` after a directive's name; nothing after a build argument's or
/// an option's, whose names say where they come from.
fn placed(origin: &Origin) -> String {
    match origin {
        Origin::Directive { .. } => format!(" (from {origin})"),
        Origin::BuildArg | Origin::Option => String::new(),
    }
}

impl OptionError {
    /// The 1-based Dockerfile line it is about, where the setting came from a directive.
    pub fn dockerfile_line(&self) -> Option<usize> {
        match self {
            OptionError::Invalid { origin, .. }
            | OptionError::Empty { origin, .. }
            | OptionError::Unknown { origin, .. }
            | OptionError::TooLong { origin, .. } => origin.dockerfile_line(),
        }
    }
}

/// The squash settings of one build.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// How the result is squashed.
    pub mode: Mode,
    /// How the squashed layer is computed.
    pub method: Method,
    /// A frontend image to do the Dockerfile build instead of the engine's built-in one, and
    /// where it was given, for the error when that image fails.
    pub upstream: Option<Given<String>>,
    /// The least the squash must reclaim; below it the image is returned as built.
    pub min_saving: Option<MinSaving>,
    /// Where the squash splits the image into two layers, if it does, and where that was
    /// given, for the errors only the plan can find.
    pub split: Option<Given<Split>>,
    /// Whether the squash makes its report (`on`, the default). Off, no step of ours runs
    /// only to make it: where the engine has DiffOp, full mode is the engine's diff and a
    /// split at a stage makes its upper layer with the engine's FileOps ([`crate::upper`]);
    /// our `sync` steps run elsewhere, without it.
    pub report: bool,
}

/// A setting's value with the name and the place it was given under, for the errors that only
/// a later step can find (the plan's, about a stage the build does not have).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given<T> {
    /// The value.
    pub value: T,
    /// The name it was given under (`build argument SQUASH_SPLIT`).
    pub name: String,
    /// Where.
    pub origin: Origin,
}

impl<T> Given<T> {
    /// Where it was given, in words: `build argument SQUASH_SPLIT`, `directive # squash-split=
    /// (from Dockerfile line 3)`.
    pub fn from(&self) -> String {
        format!("{}{}", self.name, placed(&self.origin))
    }
}

/// Resolves every setting from the options and the Dockerfile's directives.
fn settings(opts: &Opts, directives: &Directives) -> Result<Settings, OptionError> {
    let mode = match raw(opts, directives, &MODE) {
        Some((name, value, origin)) => check(&name, &value, &origin, Mode::CHOICES, Mode::parse)?,
        None => Mode::Full,
    };
    let method = match raw(opts, directives, &METHOD) {
        Some((name, value, origin)) => {
            check(&name, &value, &origin, Method::CHOICES, Method::parse)?
        }
        None => Method::Auto,
    };
    let upstream = match raw(opts, directives, &UPSTREAM) {
        Some((name, value, origin)) => Some(Given {
            value: check(
                &name,
                &value,
                &origin,
                "an image reference such as docker/dockerfile:1.7",
                valid_image_ref,
            )?,
            name,
            origin,
        }),
        None => None,
    };
    let min_saving = match raw(opts, directives, &MIN_SAVING) {
        Some((name, value, origin)) => Some(check_why(
            &name,
            &value,
            &origin,
            MinSaving::FORMS,
            MinSaving::parse,
        )?),
        None => None,
    };
    let split = match raw(opts, directives, &SPLIT) {
        // Empty: no split, also over a directive that asks for one.
        Some((_, value, _)) if value.trim().is_empty() => None,
        Some((name, value, origin)) => Some(Given {
            value: check_why(&name, &value, &origin, Split::FORMS, |v| {
                Split::parse(v).map_err(Some)
            })?,
            name,
            origin,
        }),
        None => None,
    };
    let report = match raw(opts, directives, &REPORT) {
        Some((name, value, origin)) => {
            let on = check(&name, &value, &origin, REPORT_CHOICES, |v| {
                match v.trim().to_ascii_lowercase().as_str() {
                    "on" => Some(true),
                    "off" => Some(false),
                    _ => None,
                }
            })?;
            if let (false, Some((min_name, _, min_origin))) =
                (on, raw(opts, directives, &MIN_SAVING))
            {
                return Err(OptionError::Invalid {
                    name,
                    value,
                    origin,
                    why: Some(format!(
                        "{min_name}{} weighs the report, so the report must be on",
                        placed(&min_origin)
                    )),
                    choices: REPORT_CHOICES,
                });
            }
            on
        }
        None => true,
    };
    Ok(Settings {
        mode,
        method,
        upstream,
        min_saving,
        split,
        report,
    })
}

/// The values of `squash-report`.
const REPORT_CHOICES: &str = "on, off";

/// The value of a setting, the name it was given under and where, by precedence.
fn raw(opts: &Opts, directives: &Directives, s: &Setting) -> Option<(String, String, Origin)> {
    if let Some(v) = opts.get(s.option) {
        return Some((format!("option {}", s.option), v.clone(), Origin::Option));
    }
    if let Some(v) = opts.get(&build_arg(s.build_arg)) {
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

/// `why` as the start of an [`OptionError::Invalid`] message's second part.
fn because(why: &Option<String>) -> String {
    why.as_ref().map(|w| format!("{w}; ")).unwrap_or_default()
}

fn check<T>(
    name: &str,
    value: &str,
    origin: &Origin,
    choices: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, OptionError> {
    check_why(name, value, origin, choices, |v| parse(v).ok_or(None))
}

/// [`check`] with a parser that can say what is wrong with a value.
fn check_why<T>(
    name: &str,
    value: &str,
    origin: &Origin,
    choices: &'static str,
    parse: impl Fn(&str) -> Result<T, Option<String>>,
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
    parse(value).map_err(|why| OptionError::Invalid {
        name: name.into(),
        value: value.into(),
        origin: origin.clone(),
        why,
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

/// The end of [`OptionError::Unknown`]'s message: our settings' names of the kind `origin`
/// says (build arguments, else options).
fn known_names(origin: &Origin) -> String {
    let (what, names): (&str, Vec<&str>) = match origin {
        Origin::BuildArg => (
            ", and the Dockerfile does not use it; valid build arguments",
            SETTINGS.iter().map(|s| s.build_arg).collect(),
        ),
        _ => (
            "; valid options",
            SETTINGS.iter().map(|s| s.option).collect(),
        ),
    };
    format!("{what} are {}", names.join(", "))
}

/// Whether `text` holds `name` as a whole word (not inside a longer name).
fn mentions(text: &[u8], name: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let name = name.as_bytes();
    text.windows(name.len()).enumerate().any(|(i, w)| {
        w == name
            && (i == 0 || !word(text[i - 1]))
            && text.get(i + name.len()).is_none_or(|b| !word(*b))
    })
}

fn forwarded(opts: &Opts) -> Opts {
    let mut out: Opts = opts
        .iter()
        .filter(|(k, _)| k.as_str() != NESTED && !SETTINGS.iter().any(|s| s.option == k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !out.contains_key(KEY_CMDLINE) {
        let source = out.get(KEY_SOURCE).cloned().unwrap_or_default();
        out.insert(KEY_CMDLINE.into(), source);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attestation_requests_on_and_inline_only() {
        let of = |pairs: &[(&str, &str)]| {
            attest_requests(
                &pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert_eq!(of(&[]), (false, false));
        // buildx's default provenance.
        assert_eq!(
            of(&[("attest:provenance", "mode=min,inline-only=true")]),
            (true, true)
        );
        assert_eq!(of(&[("attest:provenance", "mode=max")]), (true, false));
        assert_eq!(
            of(&[("attest:provenance", "disabled=true")]),
            (false, false)
        );
        // One that is not inline-only makes ours go everywhere too.
        assert_eq!(
            of(&[
                ("attest:provenance", "mode=min,inline-only=true"),
                ("attest:sbom", "generator=x")
            ]),
            (true, false)
        );
        assert_eq!(
            of(&[
                ("attest:provenance", "mode=min, inline-only = TRUE"),
                ("attest:sbom", "disabled=true")
            ]),
            (true, true)
        );
        assert_eq!(
            of(&[("build-arg:attest", "inline-only=true")]),
            (false, false)
        );
    }

    fn opts(pairs: &[(&str, &str)]) -> Opts {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn dirs(pairs: &[(&str, &str, usize)]) -> Directives {
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
    fn a_misspelt_setting_is_refused_with_the_valid_names() {
        let check = |pairs: &[(&str, &str)], dockerfile: Option<&str>| {
            Request::new(&opts(pairs), "s")
                .check_names(dockerfile.map(str::as_bytes))
                .map_err(|e| e.to_string())
        };
        let dockerfile = "FROM x\nARG SQUASH_LEVEL=1\nRUN echo ${SQUASH_LEVEL}\n";
        assert_eq!(
            check(&[("build-arg:SQUASH_MOD", "base")], Some(dockerfile)).unwrap_err(),
            "build argument SQUASH_MOD is not a squash-frontend setting, and the Dockerfile does \
             not use it; valid build arguments are SQUASH_MODE, SQUASH_METHOD, SQUASH_UPSTREAM, \
             SQUASH_MIN_SAVING, SQUASH_SPLIT, SQUASH_REPORT"
        );
        // Names are case-sensitive: ours in another case would go unread.
        assert_eq!(
            check(&[("build-arg:squash_mode", "base")], Some(dockerfile)).unwrap_err(),
            "build argument squash_mode is not a squash-frontend setting, and the Dockerfile \
             does not use it; valid build arguments are SQUASH_MODE, SQUASH_METHOD, \
             SQUASH_UPSTREAM, SQUASH_MIN_SAVING, SQUASH_SPLIT, SQUASH_REPORT"
        );
        assert!(check(&[("Squash-Mode", "base")], None).is_err());
        assert_eq!(
            check(&[("squash-mod", "base")], Some(dockerfile)).unwrap_err(),
            "option squash-mod is not a squash-frontend setting; valid options are squash-mode, \
             squash-method, squash-upstream, squash-min-saving, squash-split, squash-report"
        );
        // The Dockerfile's own argument, ours, and names that are not ours to judge.
        for pairs in [
            &[("build-arg:SQUASH_LEVEL", "2")][..],
            &[("build-arg:SQUASH_MODE", "base"), ("squash-split", "app")],
            &[
                ("build-arg:SQUASHFS", "1"),
                ("build-arg:MY_SQUASH_MOD", "1"),
            ],
            &[("squash-nested", "1"), ("squashed", "1")],
        ] {
            assert_eq!(check(pairs, Some(dockerfile)), Ok(()), "{pairs:?}");
        }
        // A name inside a longer one is not a use of it.
        assert!(check(&[("build-arg:SQUASH_LEVE", "2")], Some(dockerfile)).is_err());
        // Without the Dockerfile, no build argument can be told apart from its own.
        assert_eq!(check(&[("build-arg:SQUASH_MOD", "base")], None), Ok(()));
        assert!(check(&[("squash-mod", "base")], None).is_err());
    }

    #[test]
    fn default_is_full() {
        let s = settings(&opts(&[]), &dirs(&[])).unwrap();
        assert_eq!((s.mode, s.method), (Mode::Full, Method::Auto));
    }

    #[test]
    fn precedence_option_then_build_arg_then_directive() {
        let d = dirs(&[("squash", "off", 2)]);
        assert_eq!(settings(&opts(&[]), &d).unwrap().mode, Mode::Off);
        let o = opts(&[("build-arg:SQUASH_MODE", "base")]);
        assert_eq!(settings(&o, &d).unwrap().mode, Mode::Base);
        let o = opts(&[("build-arg:SQUASH_MODE", "base"), ("squash-mode", "full")]);
        assert_eq!(settings(&o, &d).unwrap().mode, Mode::Full);
    }

    #[test]
    fn invalid_values_name_the_setting_and_the_choices() {
        let e = settings(&opts(&[("build-arg:SQUASH_MODE", "ful")]), &dirs(&[])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid build argument SQUASH_MODE \"ful\": valid values are full, base, off"
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
        let f = Request::new(&o, "s").forwarded(false);
        assert!(!f.contains_key("squash-mode"));
        assert_eq!(f["cmdline"], "img");
        assert_eq!(
            f["build-arg:SQUASH_MODE"], "x",
            "build args are the user's: kept"
        );
        let o = opts(&[("cmdline", "img --x"), ("source", "img")]);
        assert_eq!(forwarded(&o)["cmdline"], "img --x");
        let o = opts(&[("dockerfilekey", "df2"), ("source", "img")]);
        let r = Request::new(&o, "s");
        assert_eq!(r.forwarded(false)["dockerfilekey"], "df2");
        assert!(!r.forwarded(true).contains_key("dockerfilekey"));
    }

    #[test]
    fn directives_needed_only_when_a_setting_is_unset() {
        assert!(Request::new(&opts(&[]), "s").needs_directives());
        let all = opts(&[
            ("squash-mode", "full"),
            ("build-arg:SQUASH_METHOD", "auto"),
            ("squash-upstream", "x"),
            ("build-arg:SQUASH_MIN_SAVING", "5%"),
            ("squash-split", "deps"),
            ("squash-report", "on"),
        ]);
        assert!(!Request::new(&all, "s").needs_directives());
    }

    #[test]
    fn the_report_is_on_unless_set_off_and_off_refuses_a_threshold() {
        let report = |pairs: &[(&str, &str)], d: &[(&str, &str, usize)]| {
            settings(&opts(pairs), &dirs(d))
                .map(|s| s.report)
                .map_err(|e| (e.to_string(), e.dockerfile_line()))
        };
        assert_eq!(report(&[], &[]), Ok(true));
        assert_eq!(report(&[("squash-report", "OFF")], &[]), Ok(false));
        assert_eq!(report(&[], &[("squash-report", "off", 2)]), Ok(false));
        // An option wins over a build argument, which wins over a directive.
        assert_eq!(
            report(
                &[("build-arg:SQUASH_REPORT", "on")],
                &[("squash-report", "off", 2)]
            ),
            Ok(true)
        );
        assert_eq!(
            report(&[("squash-report", "no")], &[]),
            Err((
                "invalid option squash-report \"no\": valid values are on, off".into(),
                None
            ))
        );
        assert_eq!(
            report(
                &[("build-arg:SQUASH_MIN_SAVING", "5%")],
                &[("squash-report", "off", 3)]
            ),
            Err((
                "invalid directive # squash-report= \"off\" (from Dockerfile line 3): build \
                 argument SQUASH_MIN_SAVING weighs the report, so the report must be on; valid \
                 values are on, off"
                    .into(),
                Some(3)
            ))
        );
    }

    #[test]
    fn split_forms() {
        let split = |v: &str| {
            settings(&opts(&[("squash-split", v)]), &dirs(&[])).map(|s| s.split.map(|g| g.value))
        };
        assert_eq!(split(" Deps "), Ok(Some(Split::Stage("deps".into()))));
        assert_eq!(
            split("/usr, /etc/,/var/lib/dpkg"),
            Ok(Some(Split::Paths(vec![
                "/usr".into(),
                "/etc".into(),
                "/var/lib/dpkg".into()
            ])))
        );
        // Each refusal says what is wrong, then the valid forms.
        for (bad, why) in [
            (
                "/",
                "/ is the whole image, which leaves nothing for the other layer",
            ),
            ("/usr,/", "/ is the whole image"),
            (
                "/opt,,/etc",
                "the list has an empty entry (two commas in a row, or one at an end)",
            ),
            ("/opt,/etc,", "the list has an empty entry"),
            ("/opt, ,/etc", "the list has an empty entry"),
            ("/usr,/usr", "/usr is listed twice"),
            (
                "/usr,/usr/lib",
                "/usr/lib is inside /usr, so it would be in both layers",
            ),
            ("/usr/lib,/usr", "/usr/lib is inside /usr"),
            ("/a/../b", "/a/../b holds an empty, . or .. part"),
            ("//x", "//x holds an empty, . or .. part"),
            ("/x,y", "y is not an absolute path"),
            ("-x", "-x is not a stage name"),
            (
                "1",
                "1 is not a stage name (a stage name starts with a letter; a split is at a stage the target stage names in its FROM line)",
            ),
            ("2deps", "2deps is not a stage name (a stage name starts with a letter"),
            (
                "deps,/usr",
                "deps is not an absolute path, and a list holds absolute paths only (a stage name stands alone)",
            ),
            ("a b", "a b is not a stage name"),
            (
                "usr/lib",
                "usr/lib is neither a stage name nor an absolute path (it does not start with /)",
            ),
        ] {
            let e = split(bad).unwrap_err().to_string();
            let want = format!("invalid option squash-split {bad:?}: {why}");
            assert!(e.starts_with(&want), "{bad}: {e}");
            assert!(e.ends_with(Split::FORMS), "{bad}: {e}");
        }
        let many: Vec<String> = (0..65).map(|k| format!("/p{k}")).collect();
        let e = split(&many.join(",")).unwrap_err().to_string();
        assert!(e.contains("65 paths are listed; at most 64 are"), "{e}");
        assert_eq!(settings(&opts(&[]), &dirs(&[])).unwrap().split, None);
        assert_eq!(
            settings(
                &opts(&[("build-arg:SQUASH_SPLIT", " ")]),
                &dirs(&[("squash-split", "deps", 3)])
            )
            .unwrap()
            .split,
            None,
            "empty: no split, over a directive's"
        );
        // Where it was given, for the errors the plan finds.
        let given = |o: &[(&str, &str)], d: &[(&str, &str, usize)]| {
            settings(&opts(o), &dirs(d)).unwrap().split.unwrap()
        };
        let by_directive = given(&[], &[("squash-split", "deps", 3)]);
        assert_eq!(
            by_directive.from(),
            "directive # squash-split= (from Dockerfile line 3)"
        );
        // And the directive's line, where the error is placed.
        assert_eq!(by_directive.origin.dockerfile_line(), Some(3));
        let by_arg = given(
            &[("build-arg:SQUASH_SPLIT", "app")],
            &[("squash-split", "deps", 3)],
        );
        assert_eq!(by_arg.from(), "build argument SQUASH_SPLIT");
        assert_eq!(by_arg.value, Split::Stage("app".into()));
        assert_eq!(by_arg.origin.dockerfile_line(), None);
        assert_eq!(
            given(&[("squash-split", "app")], &[]).from(),
            "option squash-split"
        );
        assert_eq!(
            given(&[("squash-split", "app")], &[]).origin,
            Origin::Option
        );
        assert_eq!(
            given(&[("squash-split", "app")], &[("squash-split", "deps", 3)]).origin,
            Origin::Option
        );
    }

    #[test]
    fn cache_imports_are_parsed() {
        let mut o = opts(&[(
            "cache-imports",
            r#"[{"Type":"local","Attrs":{"src":"/c"}}]"#,
        )]);
        let c = Request::new(&o, "s").cache_imports;
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].r#type.as_str(), c[0].attrs["src"].as_str()),
            ("local", "/c")
        );
        o.insert("cache-imports".into(), "garbage".into());
        assert!(Request::new(&o, "s").cache_imports.is_empty());
    }

    #[test]
    fn dockerfile_lowercase_fallback() {
        let name = |f: &str| {
            Request::new(&opts(&[("filename", f)]), "s")
                .dockerfile
                .lowercase_fallback()
        };
        assert_eq!(name("Dockerfile").as_deref(), Some("dockerfile"));
        assert_eq!(name("sub/Dockerfile").as_deref(), Some("sub/dockerfile"));
        assert_eq!(name("app.Dockerfile"), None);
    }

    #[test]
    fn the_dockerfile_source_follows_the_options() {
        let r = Request::new(&opts(&[]), "client");
        assert_eq!(
            r.dockerfile,
            DockerfileSource {
                filename: "Dockerfile".into(),
                local_name: "dockerfile".into(),
                from_input: true,
                remote: false,
                session: "client".into(),
            }
        );
        assert_eq!(
            r.dockerfile.follow_paths(),
            ["Dockerfile", "Dockerfile.dockerignore", "dockerfile"]
        );
        let r = Request::new(
            &opts(&[
                ("dockerfilekey", "df2"),
                ("local-sessionid:df2", "other"),
                ("filename", "app.Dockerfile"),
                ("context", "https://github.com/x/y.git"),
            ]),
            "client",
        );
        assert_eq!(
            (
                r.dockerfile.local_name.as_str(),
                r.dockerfile.from_input,
                r.dockerfile.remote,
                r.dockerfile.session.as_str()
            ),
            ("df2", false, true, "other")
        );
    }

    #[test]
    fn request_flags_and_epoch() {
        let r = Request::new(&opts(&[]), "s");
        assert!(!r.passthrough && !r.no_cache && r.epoch.is_none());
        assert!(Request::new(&opts(&[("requestid", "frontend.outline")]), "s").passthrough);
        assert!(Request::new(&opts(&[(NESTED, "1")]), "s").passthrough);
        assert!(Request::new(&opts(&[("no-cache", "")]), "s").no_cache);
        assert!(
            !Request::new(&opts(&[("no-cache", "stage1")]), "s").no_cache,
            "--no-cache-filter names stages: not every step"
        );
        let r = Request::new(
            &opts(&[("build-arg:SOURCE_DATE_EPOCH", " 1700000000 ")]),
            "s",
        );
        assert_eq!(r.epoch, Some(1_700_000_000));
        let r = Request::new(&opts(&[("build-arg:SOURCE_DATE_EPOCH", "soon")]), "s");
        assert_eq!(r.epoch, None);
    }
}
