//! What a squash reclaims, from metadata alone: the bytes each step of the build added (the
//! plain image's layers), the bytes of the squashed layer, and the files one step added and a
//! later one deleted or replaced, each with the steps that did it.
//!
//! The input is the filesystem after every step ([`Listing`]s, made inside the build by
//! [`crate::scan::listing`]); no file is read. What a layer adds is counted as in the tar BuildKit
//! writes for it: an entry for every path that is new or changed since the step before (a file
//! whose type, size, mode, owner, mtime, link target or device changed; a directory whose type,
//! mode or owner changed) and a whiteout for every path gone (one for a whole directory), each a
//! 512-byte header (two more blocks for a name too long for the header itself), files with their
//! data in 512-byte blocks; hardlinked names after the first in a layer carry no data. The
//! directories above those entries and the closing blocks, which every layer repeats, are not
//! counted: a build that deletes and replaces nothing adds as much in its layers as in one, and
//! what the squash reclaims is what the deleted and replaced files took. Sizes of files (the
//! `wasted` list) are file sizes, each inode counted once per step.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// What a path is, for the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else (device, fifo, socket).
    Other,
}

/// One path of a filesystem, as `lstat` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What it is.
    pub kind: Kind,
    /// Its size in bytes (files; 0 for the rest).
    pub size: u64,
    /// Permission bits and owner.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
    /// Device and inode, which tell hardlinks apart within one filesystem.
    pub inode: (u64, u64),
    /// How many names the inode has.
    pub nlink: u64,
    /// A symlink's target; a device's number; empty for the rest.
    pub target: Vec<u8>,
}

impl Entry {
    /// Whether a layer differ writes this path again when it changed from `before` to `self`.
    fn changed_from(&self, before: &Entry) -> bool {
        let common = self.kind != before.kind
            || self.mode != before.mode
            || self.uid != before.uid
            || self.gid != before.gid;
        match self.kind {
            Kind::Dir => common,
            _ => {
                common
                    || self.size != before.size
                    || self.mtime != before.mtime
                    || self.target != before.target
            }
        }
    }
}

/// A filesystem: every path below its root (relative, `/`-separated, the root itself left
/// out), in order.
pub type Listing = BTreeMap<Vec<u8>, Entry>;

/// The paths (keyed as in a [`Listing`]) outside which a filesystem is known to equal the one
/// before it: every path where the two differ, and maybe more. A read of only what BuildKit's
/// diff of a step holds finds them ([`crate::scan::listing_changed`]); counting a step over
/// them alone gives what counting it over both whole filesystems gives.
pub type Touched = BTreeSet<Vec<u8>>;

/// A file one step added and a later step deleted or replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wasted {
    /// Its path in the image (`/usr/lib/...`).
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// The step that added it.
    pub added_by: String,
    /// The step that deleted or replaced it.
    pub removed_by: String,
    /// Whether that step replaced it (wrote it again, or changed only its metadata, which a
    /// layer records as the whole file again) rather than deleted it.
    #[serde(default)]
    pub replaced: bool,
}

/// The report's version, in its JSON form (`schema`).
pub const SCHEMA: &str = "squash-frontend.report/v1";

/// What a squash reclaims (the machine-readable record; see the README for its schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: String,
    /// The frontend that made it ([`crate::version::describe`]).
    pub frontend: String,
    /// `full` or `base`.
    pub mode: String,
    /// The image's layers before the squash.
    pub layers_before: usize,
    /// Its layers after.
    pub layers_after: usize,
    /// The plain image's layers (in base mode: those above the base), estimated as tars, in
    /// bytes.
    pub plain_bytes: u64,
    /// The squashed layer, estimated the same way.
    pub squashed_bytes: u64,
    /// `plain_bytes - squashed_bytes` (0 if the squash holds more).
    pub reclaimed_bytes: u64,
    /// The base image's layers kept (base mode; 0 in full mode).
    pub base_layers: usize,
    /// The layers the squash makes above them: 1, or 2 with `squash-split`.
    #[serde(default = "one")]
    pub new_layers: usize,
    /// The files that took the most bytes and are not in the image: added by one step, deleted
    /// or replaced by a later one; largest first, at most the number asked for.
    pub wasted: Vec<Wasted>,
    /// How many such files there were in all.
    pub wasted_files: u64,
    /// Their bytes, in all (file sizes).
    pub wasted_file_bytes: u64,
    /// With a split at a stage: the files a step up to the split added and a later step
    /// deleted or replaced. The lower layer still holds them, so they are not among
    /// [`Report::wasted`]; a deletion in the stage itself would reclaim them.
    #[serde(default)]
    pub kept_below_split_files: u64,
    /// Their bytes (file sizes).
    #[serde(default)]
    pub kept_below_split_bytes: u64,
}

fn one() -> usize {
    1
}

impl Report {
    /// The share of the plain bytes reclaimed, in percent.
    pub fn reclaimed_percent(&self) -> f64 {
        if self.plain_bytes == 0 {
            0.0
        } else {
            self.reclaimed_bytes as f64 * 100.0 / self.plain_bytes as f64
        }
    }

    /// [`Report::reclaimed_percent`] to one decimal, as the progress shows it: `100.0` only
    /// when nothing is left and `0.0` only when nothing was reclaimed, so that a squash that
    /// kept a few bytes of megabytes does not read as all reclaimed (99.9 instead).
    fn reclaimed_percent_shown(&self) -> String {
        let p = self.reclaimed_percent();
        let shown = if self.reclaimed_bytes == 0 {
            0.0
        } else if self.reclaimed_bytes >= self.plain_bytes {
            100.0
        } else {
            p.clamp(0.1, 99.9)
        };
        format!("{shown:.1}")
    }

    /// The report as the build's progress output shows it.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "squash report ({}): layers {} -> {}",
            self.frontend, self.layers_before, self.layers_after
        )];
        let above = if self.mode == "base" {
            match self.base_layers {
                1 => " above the base layer".to_string(),
                n => format!(" above the {n} base layers"),
            }
        } else {
            String::new()
        };
        out.push(format!(
            "  plain image layers{above}: {} ({} bytes: what each layer adds, uncompressed)",
            human(self.plain_bytes),
            self.plain_bytes
        ));
        let squashed = match self.new_layers {
            1 => "squashed layer".to_string(),
            n => format!("squashed layers ({n}, together)"),
        };
        out.push(format!(
            "  {squashed}: {} ({} bytes)",
            human(self.squashed_bytes),
            self.squashed_bytes
        ));
        out.push(format!(
            "  reclaimed: {} ({} bytes, {} %)",
            human(self.reclaimed_bytes),
            self.reclaimed_bytes,
            self.reclaimed_percent_shown()
        ));
        if self.mode == "base" {
            let (squashed, plain) = (human(self.squashed_bytes), human(self.plain_bytes));
            out.push(if squashed == plain {
                format!(
                    "  a host that has the base pulls {squashed}, as it would without the squash"
                )
            } else {
                format!("  a host that has the base pulls {squashed} instead of {plain}")
            });
        }
        if self.wasted.is_empty() {
            out.push("  no file was added by one step and removed by a later one".into());
        } else {
            let (files, were) = files_were(self.wasted_files);
            out.push(format!(
                "  {} {files} ({}) {were} added by one step and removed or replaced by a later one; the largest (file sizes, hardlinks once):",
                self.wasted_files,
                human(self.wasted_file_bytes)
            ));
            let names = self
                .wasted
                .iter()
                .flat_map(|w| [w.added_by.as_str(), w.removed_by.as_str()]);
            let labels = StepLabels::new(names);
            for w in &self.wasted {
                out.push(format!(
                    "  {:>10}  {}  added by {}, {} by {}",
                    human(w.bytes),
                    w.path,
                    labels.short(&w.added_by),
                    if w.replaced { "replaced" } else { "removed" },
                    labels.short(&w.removed_by)
                ));
            }
            if let Some(legend) = labels.legend() {
                out.push(format!("  {STEPS_NAMED}"));
                out.extend(legend.iter().map(|name| format!("    {name}")));
            }
        }
        if self.kept_below_split_files > 0 {
            let (files, were) = files_were(self.kept_below_split_files);
            out.push(format!(
                "  {} {files} ({}) {were} added up to the split and removed or replaced after it: the lower layer still holds them (deleting them in the stage itself would reclaim them)",
                self.kept_below_split_files,
                human(self.kept_below_split_bytes)
            ));
        }
        out
    }
}

/// "file was" for one, "files were" for any other count.
fn files_were(count: u64) -> (&'static str, &'static str) {
    match count {
        1 => ("file", "was"),
        _ => ("files", "were"),
    }
}

/// The line above the full names of the steps that the report's file lines name by their
/// labels alone.
pub const STEPS_NAMED: &str = "the steps named above:";

/// The steps a report's file lines name, by their progress labels (`[2/6]`, `[deps 2/3]`: the
/// bracketed start of BuildKit's step names) where every one has a label of its own, so that
/// a line holds its path and two labels instead of two whole commands; the full names follow
/// once each ([`StepLabels::legend`]).
struct StepLabels<'a> {
    /// The full names in the order they first come, when labels stand for them.
    named: Option<Vec<&'a str>>,
}

impl<'a> StepLabels<'a> {
    fn new(names: impl Iterator<Item = &'a str>) -> Self {
        let mut named: Vec<&'a str> = Vec::new();
        for name in names {
            if !named.contains(&name) {
                named.push(name);
            }
        }
        let labels: Option<Vec<&str>> = named.iter().map(|n| label(n)).collect();
        let distinct = labels.as_ref().is_some_and(|l| {
            let set: BTreeSet<&str> = l.iter().copied().collect();
            set.len() == l.len()
        });
        StepLabels {
            named: distinct.then_some(named),
        }
    }

    /// What a file line says for the step `name`.
    fn short<'n>(&self, name: &'n str) -> &'n str {
        match self.named {
            Some(_) => label(name).unwrap_or(name),
            None => name,
        }
    }

    /// The full names, where the file lines gave labels.
    fn legend(&self) -> Option<&[&'a str]> {
        self.named.as_deref()
    }
}

/// The bracketed label a BuildKit step name starts with (`[2/6]` of `[2/6] RUN make`), if it
/// has one and more after it.
fn label(name: &str) -> Option<&str> {
    let end = name.strip_prefix('[')?.find(']')? + 2;
    (name.len() > end && name[end..].starts_with(' ')).then(|| &name[..end])
}

/// Bytes in SI units with one decimal (`12.3 MB`), as `docker images` shows sizes.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The least a squash must reclaim to be worth it (the `squash-min-saving` setting).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MinSaving {
    /// Bytes of the plain image's layers (in base mode: those above the base).
    Bytes(u64),
    /// A share of them, in percent.
    Percent(f64),
}

impl MinSaving {
    /// The valid forms, for error messages.
    pub const FORMS: &'static str = "a size (10MB, 512KiB, 1GB, 0; units B, kB, MB, GB, KiB, MiB, GiB) or a share of the plain layers (5%)";

    /// Reads `10MB`, `512KiB`, `1.5GB`, `0`, `5%`; what is wrong with a value of the right
    /// form out of range, in words (`None`: not of the form at all).
    pub fn parse(value: &str) -> Result<MinSaving, Option<String>> {
        let v = value.trim();
        if let Some(p) = v.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| None)?;
            if !p.is_finite() || !(0.0..=100.0).contains(&p) {
                return Err(Some(format!(
                    "a share is between 0% and 100%, not {}%",
                    p.to_string().trim_end_matches(".0")
                )));
            }
            return Ok(MinSaving::Percent(p));
        }
        if v.starts_with('-') {
            return Err(Some("a size cannot be negative".into()));
        }
        let split = v
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(v.len());
        let (number, unit) = v.split_at(split);
        let n: f64 = number.parse().map_err(|_| None)?;
        let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "kb" => 1e3,
            "mb" => 1e6,
            "gb" => 1e9,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            _ => return Err(Some(format!("{} is not a unit", unit.trim()))),
        };
        let bytes = n * scale;
        if !(bytes.is_finite() && bytes < u64::MAX as f64) {
            return Err(Some("more bytes than any image holds".into()));
        }
        Ok(MinSaving::Bytes(bytes.round() as u64))
    }

    /// Whether `report` reclaims at least this much.
    pub fn met_by(&self, report: &Report) -> bool {
        match *self {
            MinSaving::Bytes(b) => report.reclaimed_bytes >= b,
            MinSaving::Percent(p) => report.reclaimed_percent() >= p,
        }
    }
}

impl std::fmt::Display for MinSaving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MinSaving::Bytes(b) => f.write_str(&human(*b)),
            MinSaving::Percent(p) => write!(f, "{p} %"),
        }
    }
}

/// What our in-build step is asked to report on (passed to it as one JSON argument).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// What the squash keeps.
    pub squash: Squash,
    /// The image's layers before the squash.
    pub layers_before: usize,
    /// Where the filesystems are mounted: `<states>/base` (absent for `scratch`) and
    /// `<states>/1` to `<states>/<n>`, one per step.
    pub states: String,
    /// The steps' names, one per filesystem after the base.
    pub steps: Vec<String>,
    /// How many wasted files to name.
    pub top: usize,
    /// The least the squash must reclaim, if the build set one.
    pub min_saving: Option<MinSaving>,
    /// Where the squash splits its layers (`squash-split`), if it does.
    #[serde(default)]
    pub split: Option<SplitAt>,
    /// A saved [`Accounting`] of the first steps (made by an earlier step of ours, which the
    /// build cache keeps while those steps stay the same): the steps it covers are not read
    /// again, and their filesystems are not mounted.
    #[serde(default)]
    pub resume: Option<Resume>,
    /// Each filesystem read after the resumed ones comes with BuildKit's diff from the one
    /// before, mounted at `<states>/<k>.changed`: only the paths it holds are read, the rest is
    /// the filesystem before ([`crate::scan::listing_changed`]).
    #[serde(default)]
    pub changed: bool,
}

/// Where a report goes on from a saved [`Accounting`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The saved accounting's file.
    pub file: String,
    /// How many steps it covers: the first of [`Request::steps`].
    pub steps: usize,
}

/// Where a split squash divides the image, as the report counts its two layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitAt {
    /// After this many steps: the lower layer holds the filesystem then, the upper one what
    /// the later steps changed.
    Step(usize),
    /// These absolute paths: the lower layer holds them as the result has them, the upper one
    /// everything else that differs.
    Paths(Vec<String>),
}

/// What the squash is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Squash {
    /// Everything in one layer: the plain bytes count the base (as one tar of its tree).
    Full,
    /// The base's layers kept: the plain bytes count what the steps added above it.
    Base {
        /// The base image's layers.
        layers: usize,
    },
}

/// Reads a build step by step (the filesystem after each), keeping only the last filesystem and
/// what each of its paths cost, and makes the [`Report`] at the end. It can be saved after some
/// steps and read back to go on ([`Accounting::save`], [`Accounting::load`]), so that a step
/// of ours the build cache keeps can hold what the first steps cost.
#[derive(Debug, Serialize, Deserialize)]
pub struct Accounting {
    squash: Squash,
    /// The filesystem the squash starts from: the base's in base mode, empty in full mode.
    base: Listing,
    before: Listing,
    names: Vec<String>,
    plain: u64,
    /// Every path of the current filesystem that a step wrote: the step that last wrote it
    /// and its size (0 for all but the first name of an inode in that step). The base's own
    /// paths are not kept: one deleted or replaced is no step's waste.
    owner: HashMap<Vec<u8>, (usize, u64)>,
    /// Files a step added and a later one deleted or replaced: their size, path, and the two
    /// steps, and whether the later one replaced it (see [`Wasted::replaced`]). A saved
    /// accounting keeps only the largest ([`Accounting::save`]); the count and the bytes of all
    /// are kept beside them.
    wasted: Vec<(u64, Vec<u8>, usize, usize, bool)>,
    wasted_files: u64,
    wasted_bytes: u64,
    /// With a split after a step: the files a step up to the split added and a later one
    /// deleted or replaced (how many, and their bytes), which the lower layer still holds.
    below: (u64, u64),
    split: Option<SplitAt>,
    /// With a split after a step, once that step is read: the lower layer's bytes and the
    /// filesystem it ends with (`None` while that is still the last one read, so that it is
    /// neither copied nor saved twice).
    lower: Option<(u64, Option<Listing>)>,
    /// With [`Accounting::lower`] set: the paths the steps read since then can have changed,
    /// while every one of them came with its [`Touched`] paths (`None` once one did not); the
    /// upper layer is then counted over those paths alone.
    upper: Option<Touched>,
}

/// Why a saved [`Accounting`] cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccountingError {
    /// The bytes are not an accounting of this version.
    #[error("the saved accounting of the first steps does not read: {0}")]
    Load(#[from] postcard::Error),
}

impl Accounting {
    /// Starts on `base`, the filesystem the first step started from (empty for `scratch`).
    pub fn new(base: Listing, squash: Squash) -> Accounting {
        Accounting {
            plain: match squash {
                Squash::Full => layer_bytes(&Listing::new(), &base),
                Squash::Base { .. } => 0,
            },
            squash,
            // Full mode starts from nothing: the base's own filesystem is not kept twice.
            base: match squash {
                Squash::Full => Listing::new(),
                Squash::Base { .. } => base.clone(),
            },
            before: base,
            names: Vec::new(),
            owner: HashMap::new(),
            wasted: Vec::new(),
            wasted_files: 0,
            wasted_bytes: 0,
            below: (0, 0),
            split: None,
            lower: None,
            upper: None,
        }
    }

    /// Counts the squash as two layers, split at `split` (see [`SplitAt`]).
    pub fn with_split(mut self, split: Option<SplitAt>) -> Accounting {
        self.split = split;
        self
    }

    /// How many steps it has read.
    pub fn steps_read(&self) -> usize {
        self.names.len()
    }

    /// The last filesystem it read (the base's, before any step).
    pub fn last(&self) -> &Listing {
        &self.before
    }

    /// The accounting as bytes, to [`Accounting::load`] in a later step whose report names the
    /// `top` largest wasted files: only those are kept by name (a build that installs and
    /// purges a toolchain wastes thousands, which every later load would read again).
    pub fn save(&mut self, top: usize) -> Vec<u8> {
        self.sort_wasted();
        self.wasted.truncate(top);
        postcard::to_stdvec(self).expect("plain data serialises")
    }

    /// Largest first; among equal sizes, by path.
    fn sort_wasted(&mut self) {
        self.wasted
            .sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    }

    /// An accounting [`Accounting::save`]d.
    pub fn load(bytes: &[u8]) -> Result<Accounting, AccountingError> {
        Ok(postcard::from_bytes(bytes)?)
    }

    /// The next step, `name` as the build's progress shows it (`[3/7] RUN apt-get ...`), and
    /// the filesystem after it.
    pub fn step(&mut self, name: &str, after: Listing) {
        self.step_at(name, after, None);
    }

    /// [`Accounting::step`] where `after` can differ from the last filesystem only in
    /// `touched`: only those paths are looked at, so the time it takes follows what the step
    /// changed, not the size of the filesystem.
    pub fn step_touched(&mut self, name: &str, after: Listing, touched: &Touched) {
        self.step_at(name, after, Some(touched));
    }

    fn step_at(&mut self, name: &str, after: Listing, touched: Option<&Touched>) {
        let k = self.names.len();
        self.names.push(name.to_string());
        let before = &self.before;
        self.plain += layer_bytes_in(before, &after, touched);
        // Gone or replaced: what an earlier step of this build had added is wasted.
        for (path, old) in entries_in(before, touched) {
            let now = after.get(path);
            if now.is_none_or(|new| new.changed_from(old)) {
                if let Some((by, bytes)) = self.owner.remove(path) {
                    let kept_below =
                        matches!(self.split, Some(SplitAt::Step(n)) if by < n && k >= n);
                    if kept_below && bytes > 0 {
                        self.below.0 += 1;
                        self.below.1 += bytes;
                    } else if bytes > 0 {
                        self.wasted
                            .push((bytes, path.clone(), by, k, now.is_some()));
                        self.wasted_files += 1;
                        self.wasted_bytes += bytes;
                    }
                }
            }
        }
        charge(&mut self.owner, before, &after, touched, k);
        let split_before = self.lower.is_some();
        let before = std::mem::replace(&mut self.before, after);
        if let Some((_, at @ None)) = &mut self.lower {
            *at = Some(before);
        }
        if split_before {
            self.upper = match (self.upper.take(), touched) {
                (Some(mut upper), Some(paths)) => {
                    upper.extend(paths.iter().cloned());
                    Some(upper)
                }
                _ => None,
            };
        }
        if self.split == Some(SplitAt::Step(k + 1)) {
            self.lower = Some((layer_bytes(&self.base, &self.before), None));
            self.upper = Some(Touched::new());
            // Counted: a split after a step needs the base no more (and is saved without it).
            self.base = Listing::new();
        }
    }

    /// The bytes of the squashed layer, or of the split's two layers together.
    fn squashed_bytes(&self) -> u64 {
        let start = &self.base;
        let last = &self.before;
        match (&self.split, &self.lower) {
            (Some(SplitAt::Step(_)), Some((lower, at))) => {
                lower + layer_bytes_in(at.as_ref().unwrap_or(last), last, self.upper.as_ref())
            }
            (Some(SplitAt::Paths(paths)), _) => {
                // The lower layer: the start with those paths as the result has them.
                let under = |p: &[u8]| {
                    paths.iter().any(|q| {
                        let q = q.trim_start_matches('/').as_bytes();
                        p.starts_with(q) && (p.len() == q.len() || p[q.len()] == b'/')
                    })
                };
                let lower: Listing = start
                    .iter()
                    .filter(|(p, _)| !under(p))
                    .chain(last.iter().filter(|(p, _)| under(p)))
                    .map(|(p, e)| (p.clone(), e.clone()))
                    .collect();
                layer_bytes(start, &lower) + layer_bytes(&lower, last)
            }
            _ => layer_bytes(start, last),
        }
    }

    /// The report: `layers_before` is the image's layer count; `top` how many wasted files to
    /// name.
    pub fn report(mut self, layers_before: usize, top: usize) -> Report {
        let squashed = self.squashed_bytes();
        self.sort_wasted();
        let names = &self.names;
        let (mode, base_layers) = match self.squash {
            Squash::Full => ("full", 0),
            Squash::Base { layers } => ("base", layers),
        };
        let new_layers = if self.split.is_some() { 2 } else { 1 };
        Report {
            schema: SCHEMA.into(),
            frontend: crate::version::describe(),
            mode: mode.into(),
            layers_before,
            layers_after: base_layers + new_layers,
            plain_bytes: self.plain,
            squashed_bytes: squashed,
            reclaimed_bytes: self.plain.saturating_sub(squashed),
            base_layers,
            new_layers,
            wasted: self
                .wasted
                .iter()
                .take(top)
                .map(|(bytes, path, by, k, replaced)| Wasted {
                    path: format!("/{}", String::from_utf8_lossy(path)),
                    bytes: *bytes,
                    added_by: names[*by].clone(),
                    removed_by: names[*k].clone(),
                    replaced: *replaced,
                })
                .collect(),
            wasted_files: self.wasted_files,
            wasted_file_bytes: self.wasted_bytes,
            kept_below_split_files: self.below.0,
            kept_below_split_bytes: self.below.1,
        }
    }
}

/// Records which step wrote each new or changed path of `after` (where it can differ from
/// `before` only in `touched`: among those alone), with its file size (an inode counted once in
/// the step).
fn charge(
    owner: &mut HashMap<Vec<u8>, (usize, u64)>,
    before: &Listing,
    after: &Listing,
    touched: Option<&Touched>,
    step: usize,
) {
    let mut seen = HashSet::new();
    for (path, e) in entries_in(after, touched) {
        if !before.get(path).is_none_or(|old| e.changed_from(old)) {
            continue;
        }
        let bytes = if e.kind == Kind::File && (e.nlink < 2 || seen.insert(e.inode)) {
            e.size
        } else {
            0
        };
        owner.insert(path.clone(), (step, bytes));
    }
}

/// What the layer that takes `before` to `after` adds, in tar bytes (see the module's docs): a
/// header and the data (in 512-byte blocks) of each new or changed entry, a header for each
/// whiteout. The directories above them and the closing blocks, which every layer repeats, are
/// left out, so that a build that deletes and replaces nothing adds as much in its layers as in
/// one.
pub fn layer_bytes(before: &Listing, after: &Listing) -> u64 {
    let gone = before.keys().filter(|p| !after.contains_key(*p));
    layer_bytes_at(before, after, after.keys().chain(gone))
}

/// The entries of `listing` (in order), among the `touched` paths alone where given.
fn entries_in<'a>(
    listing: &'a Listing,
    touched: Option<&'a Touched>,
) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Entry)> + 'a> {
    match touched {
        Some(paths) => Box::new(paths.iter().filter_map(|p| listing.get_key_value(p))),
        None => Box::new(listing.iter()),
    }
}

/// [`layer_bytes`], over the `touched` paths alone where given (`before` and `after` can then
/// differ only in those).
fn layer_bytes_in(before: &Listing, after: &Listing, touched: Option<&Touched>) -> u64 {
    match touched {
        Some(paths) => layer_bytes_at(before, after, paths.iter()),
        None => layer_bytes(before, after),
    }
}

/// [`layer_bytes`] where `before` and `after` can differ only in `paths` (each named once;
/// files in the order of the listing, so that the same name of a hardlinked inode carries its
/// data).
fn layer_bytes_at<'a>(
    before: &Listing,
    after: &Listing,
    paths: impl Iterator<Item = &'a Vec<u8>>,
) -> u64 {
    let header = |len: usize| if len > 100 { 1536 } else { 512 };
    let mut total = 0;
    let mut inodes = HashSet::new();
    for path in paths {
        match (before.get(path), after.get(path)) {
            (old, Some(e)) => {
                if !old.is_none_or(|old| e.changed_from(old)) {
                    continue;
                }
                total += header(path.len());
                if e.kind == Kind::File && (e.nlink < 2 || inodes.insert(e.inode)) {
                    total += e.size.div_ceil(512) * 512;
                }
            }
            // A whiteout (`.wh.<name>`) for a path gone whose directory is still there: a
            // whole directory gone is one whiteout.
            (Some(_), None) => {
                let parent_stays = match path.iter().rposition(|b| *b == b'/') {
                    Some(i) => after.contains_key(&path[..i]),
                    None => true,
                };
                if parent_stays {
                    total += header(path.len() + 4);
                }
            }
            (None, None) => {}
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64, mtime: i64) -> Entry {
        Entry {
            kind: Kind::File,
            size,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: (mtime, 0),
            inode: (1, (size << 20) ^ mtime as u64),
            nlink: 1,
            target: vec![],
        }
    }

    fn dir() -> Entry {
        Entry {
            kind: Kind::Dir,
            size: 0,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: (0, 0),
            inode: (1, 0),
            nlink: 2,
            target: vec![],
        }
    }

    /// Asserts that a line of `r` as printed ends with `end`.
    #[track_caller]
    fn assert_line_ends_with(r: &Report, end: &str) {
        assert!(
            r.lines().iter().any(|l| l.ends_with(end)),
            "no line ends with {end:?}: {:?}",
            r.lines()
        );
    }

    fn listing(items: &[(&str, Entry)]) -> Listing {
        items
            .iter()
            .map(|(p, e)| (p.as_bytes().to_vec(), e.clone()))
            .collect()
    }

    #[test]
    fn a_file_added_then_deleted_is_reclaimed_and_named() {
        let base = listing(&[("bin", dir()), ("bin/sh", file(1000, 1))]);
        let s1 = listing(&[
            ("bin", dir()),
            ("bin/sh", file(1000, 1)),
            ("big", file(10_000_000, 2)),
        ]);
        let s2 = listing(&[("bin", dir()), ("bin/sh", file(1000, 1))]);
        let mut a = Accounting::new(base.clone(), Squash::Full);
        a.step("[2/3] RUN add", s1);
        a.step("[3/3] RUN rm", s2);
        let r = a.report(3, 10);
        assert_eq!(r.wasted_files, 1);
        assert_eq!(
            r.wasted,
            [Wasted {
                path: "/big".into(),
                bytes: 10_000_000,
                added_by: "[2/3] RUN add".into(),
                removed_by: "[3/3] RUN rm".into(),
                replaced: false,
            }]
        );
        assert_line_ends_with(&r, "/big  added by [2/3], removed by [3/3]");
        // The labels' steps, whole, once each, in the order the lines name them.
        let lines = r.lines();
        assert_eq!(
            lines[lines.len() - 3..],
            [
                format!("  {STEPS_NAMED}"),
                "    [2/3] RUN add".to_string(),
                "    [3/3] RUN rm".to_string()
            ]
        );
        // The plain layers hold the base, the big file and a whiteout; the squash only the base.
        assert_eq!(r.squashed_bytes, layer_bytes(&Listing::new(), &base));
        let big = 10_000_000u64.div_ceil(512) * 512 + 512;
        assert_eq!(
            r.reclaimed_bytes,
            big + 512,
            "the file and its whiteout: {r:?}"
        );
        assert!(r
            .lines()
            .iter()
            .any(|l| l.contains("/big") && l.contains("10.0 MB")));
        assert!(
            r.lines()
                .iter()
                .any(|l| l.starts_with("  1 file (10.0 MB) was added by one step")),
            "one file, in the singular: {:?}",
            r.lines()
        );
    }

    #[test]
    fn steps_are_named_by_their_labels_when_each_has_its_own() {
        assert_eq!(label("[2/6] RUN make"), Some("[2/6]"));
        assert_eq!(label("[deps 2/3] COPY a /a"), Some("[deps 2/3]"));
        for none in ["RUN make", "[2/6]", "[2/6]RUN", "[2/6 RUN make", "one"] {
            assert_eq!(label(none), None, "{none}");
        }
        let labelled = StepLabels::new(["[2/3] RUN a", "[3/3] RUN b", "[2/3] RUN a"].into_iter());
        assert_eq!(labelled.short("[3/3] RUN b"), "[3/3]");
        assert_eq!(labelled.legend(), Some(&["[2/3] RUN a", "[3/3] RUN b"][..]));
        // Two steps with one label (or one step without any): whole names, no legend.
        for names in [["[2/3] RUN a", "[2/3] RUN b"], ["[2/3] RUN a", "RUN b"]] {
            let whole = StepLabels::new(names.into_iter());
            assert_eq!(whole.short("[2/3] RUN a"), "[2/3] RUN a");
            assert_eq!(whole.legend(), None);
        }
    }

    #[test]
    fn a_mode_changed_alone_is_named_replaced() {
        let base = listing(&[("etc", dir())]);
        let added = file(9000, 2);
        let s1 = listing(&[("etc", dir()), ("etc/big", added.clone())]);
        let s2 = listing(&[
            ("etc", dir()),
            (
                "etc/big",
                Entry {
                    mode: 0o600,
                    ..added
                },
            ),
        ]);
        let mut a = Accounting::new(base, Squash::Full);
        a.step("[2/3] RUN add", s1);
        a.step("[3/3] RUN chmod", s2);
        let r = a.report(3, 10);
        assert_eq!(r.wasted.len(), 1, "{r:?}");
        assert!(r.wasted[0].replaced);
        assert_line_ends_with(&r, "/etc/big  added by [2/3], replaced by [3/3]");
    }

    #[test]
    fn overwrites_and_base_mode() {
        let base = listing(&[("etc", dir()), ("etc/conf", file(100, 1))]);
        let s1 = listing(&[("etc", dir()), ("etc/conf", file(5000, 2))]);
        let s2 = listing(&[("etc", dir()), ("etc/conf", file(7000, 3))]);
        let mut a = Accounting::new(base.clone(), Squash::Base { layers: 1 });
        a.step("one", s1.clone());
        a.step("two", s2.clone());
        let r = a.report(3, 10);
        // The base's own file is no waste of this build; the first overwrite is.
        assert_eq!(r.wasted.len(), 1);
        assert_eq!(
            (r.wasted[0].bytes, r.wasted[0].added_by.as_str()),
            (5000, "one")
        );
        assert!(r.wasted[0].replaced, "written again, not deleted");
        // Names without a label are printed whole, and no list of steps follows.
        assert_line_ends_with(&r, "/etc/conf  added by one, replaced by two");
        assert!(!r.lines().iter().any(|l| l.contains(STEPS_NAMED)));
        assert_eq!((r.layers_before, r.layers_after, r.base_layers), (3, 2, 1));
        assert_eq!(r.squashed_bytes, layer_bytes(&base, &s2));
        assert_eq!(
            r.plain_bytes,
            layer_bytes(&base, &s1) + layer_bytes(&s1, &s2)
        );
        // One base layer, in the singular; more, in the plural.
        assert!(r.lines()[1].starts_with("  plain image layers above the base layer: "));
        let r = Report {
            base_layers: 3,
            ..r
        };
        assert!(r.lines()[1].starts_with("  plain image layers above the 3 base layers: "));
        // What a host pulls: less, or (to the shown precision) as much.
        let pulls = |r: &Report| r.lines()[4].clone();
        assert!(
            pulls(&r).ends_with(&format!(
                "pulls {} instead of {}",
                human(r.squashed_bytes),
                human(r.plain_bytes)
            )),
            "{}",
            pulls(&r)
        );
        let r = Report {
            squashed_bytes: 7_512_000,
            plain_bytes: 7_548_000,
            ..r
        };
        assert_eq!(
            pulls(&r),
            "  a host that has the base pulls 7.5 MB, as it would without the squash"
        );
    }

    #[test]
    fn hardlinks_count_once_and_deleted_dirs_whiteout_once() {
        let mut a = file(4096, 5);
        a.nlink = 2;
        a.inode = (1, 77);
        let base = listing(&[]);
        let s1 = listing(&[
            ("d", dir()),
            ("d/a", a.clone()),
            ("d/b", a.clone()),
            ("d/c", file(10, 5)),
        ]);
        let s2 = listing(&[]);
        let mut acc = Accounting::new(base.clone(), Squash::Full);
        acc.step("add", s1.clone());
        acc.step("rm", s2.clone());
        let r = acc.report(2, 10);
        assert_eq!(r.wasted_file_bytes, 4096 + 10, "the linked pair once");
        // One whiteout for /d, not one per child.
        assert_eq!(layer_bytes(&s1, &s2), 512);
        // Data for the pair once: 4096 + 512 (10 bytes), four headers.
        assert_eq!(layer_bytes(&base, &s1), 4096 + 512 + 4 * 512);
    }

    #[test]
    fn a_split_counts_both_layers_and_an_accounting_goes_on_where_it_was_saved() {
        let base = listing(&[("etc", dir()), ("etc/conf", file(100, 1))]);
        let deps = listing(&[
            ("etc", dir()),
            ("etc/conf", file(100, 1)),
            ("lib", dir()),
            ("lib/dep", file(9000, 2)),
        ]);
        let app = listing(&[
            ("etc", dir()),
            ("etc/conf", file(100, 1)),
            ("lib", dir()),
            ("lib/dep", file(9500, 3)),
            ("app", file(700, 3)),
        ]);
        let names = ["[deps 2/2] RUN deps", "[app 1/1] RUN app"];
        let split = Some(SplitAt::Step(1));
        let whole = |split: Option<SplitAt>| {
            let mut a = Accounting::new(base.clone(), Squash::Base { layers: 1 }).with_split(split);
            a.step(names[0], deps.clone());
            a.step(names[1], app.clone());
            a.report(3, 10)
        };
        let one = whole(None);
        let two = whole(split.clone());
        // The app step rewrote a file of the lower layer: the two layers both hold it.
        assert_eq!(one.squashed_bytes, layer_bytes(&base, &app));
        assert_eq!(
            two.squashed_bytes,
            layer_bytes(&base, &deps) + layer_bytes(&deps, &app)
        );
        assert!(two.squashed_bytes > one.squashed_bytes);
        assert_eq!(two.reclaimed_bytes, 0, "nothing was deleted: {two:?}");
        // Saved after the first step and read back, it ends where the whole run ends.
        let mut first =
            Accounting::new(base.clone(), Squash::Base { layers: 1 }).with_split(split.clone());
        first.step(names[0], deps.clone());
        let mut again = Accounting::load(&first.save(10)).unwrap();
        assert_eq!(again.steps_read(), 1);
        assert_eq!(again.last(), &deps);
        again.step(names[1], app.clone());
        assert_eq!(again.report(3, 10), two);
        assert!(Accounting::load(b"not an accounting").is_err());

        // By paths: /lib below, the rest above.
        let mut by_paths = Accounting::new(base.clone(), Squash::Base { layers: 1 })
            .with_split(Some(SplitAt::Paths(vec!["/lib".into()])));
        by_paths.step(names[0], deps.clone());
        by_paths.step(names[1], app.clone());
        let lower = listing(&[
            ("etc", dir()),
            ("etc/conf", file(100, 1)),
            ("lib", dir()),
            ("lib/dep", file(9500, 3)),
        ]);
        assert_eq!(
            by_paths.report(3, 10).squashed_bytes,
            layer_bytes(&base, &lower) + layer_bytes(&lower, &app)
        );
    }

    /// Counting steps over the paths they touched gives what counting them over whole
    /// filesystems gives: the plain bytes, the wasted files, both layers of a split (after a
    /// saved accounting too), with deletions of files and trees, rewrites and hardlinks.
    #[test]
    fn counting_only_the_touched_paths_equals_counting_whole_filesystems() {
        let linked = |size: u64, ino: u64| Entry {
            inode: (1, ino),
            nlink: 2,
            ..file(size, 5)
        };
        let base = listing(&[("etc", dir()), ("etc/conf", file(100, 1))]);
        let deps = listing(&[
            ("etc", dir()),
            ("etc/conf", file(100, 1)),
            ("opt", dir()),
            ("opt/tool", dir()),
            ("opt/tool/bin", file(50_000, 2)),
            ("opt/tool/lib", file(70_000, 2)),
            ("var", dir()),
            ("var/cache", file(9000, 2)),
        ]);
        let app = listing(&[
            ("etc", dir()),
            ("etc/conf", file(120, 3)),
            ("app", file(700, 3)),
            ("app.hl", linked(4000, 77)),
            ("app.hl2", linked(4000, 77)),
            ("var", dir()),
        ]);
        let last = listing(&[
            ("etc", dir()),
            ("etc/conf", file(120, 3)),
            ("app", file(800, 4)),
            ("app.hl", linked(4000, 77)),
            ("app.hl2", linked(4000, 77)),
            ("var", dir()),
        ]);
        let differs = |a: &Listing, b: &Listing| -> Touched {
            a.keys()
                .chain(b.keys())
                .filter(|k| a.get(*k) != b.get(*k))
                .cloned()
                .collect()
        };
        let names = [
            "[deps 2/2] RUN deps",
            "[app 1/2] RUN app",
            "[app 2/2] RUN more",
        ];
        let steps = [&deps, &app, &last];
        for split in [None, Some(SplitAt::Step(1)), Some(SplitAt::Step(2))] {
            let whole = {
                let mut a = Accounting::new(base.clone(), Squash::Base { layers: 1 })
                    .with_split(split.clone());
                for (name, s) in names.iter().zip(steps) {
                    a.step(name, s.clone());
                }
                a.report(4, 10)
            };
            assert!(
                whole.wasted_files + whole.kept_below_split_files >= 3,
                "{whole:?}"
            );
            if split == Some(SplitAt::Step(1)) {
                // The deps step's files the app's steps removed stay in the lower layer.
                assert_eq!(
                    (whole.kept_below_split_files, whole.kept_below_split_bytes),
                    (3, 129_000),
                    "{whole:?}"
                );
                assert!(whole.lines().iter().any(|l| l.starts_with(
                    "  3 files (129.0 kB) were added up to the split and removed or replaced after it: the lower layer still holds them"
                )));
            }
            // The exact paths, and more than those (a directory read again, say).
            for extra in [&[][..], &[b"etc".to_vec(), b"etc/conf".to_vec()][..]] {
                let mut a = Accounting::new(base.clone(), Squash::Base { layers: 1 })
                    .with_split(split.clone());
                let mut before = &base;
                for (name, s) in names.iter().zip(steps) {
                    let mut touched = differs(before, s);
                    touched.extend(extra.iter().cloned());
                    a.step_touched(name, s.clone(), &touched);
                    before = s;
                }
                assert_eq!(a.report(4, 10), whole, "split {split:?}, extra {extra:?}");
            }
            // Saved after the first step, and gone on from with the touched paths.
            let mut first =
                Accounting::new(base.clone(), Squash::Base { layers: 1 }).with_split(split.clone());
            first.step(names[0], deps.clone());
            let mut again = Accounting::load(&first.save(10)).unwrap();
            again.step_touched(names[1], app.clone(), &differs(&deps, &app));
            again.step(names[2], last.clone());
            assert_eq!(again.report(4, 10), whole, "resumed, split {split:?}");
            // Saved keeping the largest wasted file alone: the report naming one says what the
            // whole one does, counts and bytes of all included.
            let mut first =
                Accounting::new(base.clone(), Squash::Base { layers: 1 }).with_split(split.clone());
            first.step(names[0], deps.clone());
            first.step(names[1], app.clone());
            let mut again = Accounting::load(&first.save(1)).unwrap();
            again.step(names[2], last.clone());
            let one = again.report(4, 1);
            assert_eq!(one.wasted.len(), 1);
            assert_eq!(one.wasted[..], whole.wasted[..1]);
            assert_eq!(
                Report {
                    wasted: whole.wasted.clone(),
                    ..one
                },
                whole
            );
        }
    }

    #[test]
    fn nothing_deleted_reclaims_nothing() {
        let base = listing(&[("a", file(10, 1))]);
        let s1 = listing(&[("a", file(10, 1)), ("b", file(20, 2))]);
        let mut a = Accounting::new(base, Squash::Base { layers: 1 });
        a.step("add", s1);
        let r = a.report(2, 10);
        assert_eq!(r.wasted_files, 0);
        assert_eq!(r.reclaimed_bytes, 0, "{r:?}");
        assert_eq!(r.plain_bytes, r.squashed_bytes);
        assert!(r.lines().iter().any(|l| l.contains("no file was added")));
    }

    #[test]
    fn min_saving_forms() {
        let ok = |v: &str| MinSaving::parse(v).ok();
        assert_eq!(ok("10MB"), Some(MinSaving::Bytes(10_000_000)));
        assert_eq!(ok(" 512 KiB "), Some(MinSaving::Bytes(524_288)));
        assert_eq!(ok("1.5GB"), Some(MinSaving::Bytes(1_500_000_000)));
        assert_eq!(ok("0"), Some(MinSaving::Bytes(0)));
        assert_eq!(ok("5%"), Some(MinSaving::Percent(5.0)));
        // Of no valid form: the choices alone say what is valid.
        for bad in ["", "ten", "%", "1.2.3MB"] {
            assert_eq!(MinSaving::parse(bad), Err(None), "{bad}");
        }
        // Of a valid form, but out of range or with a unit there is not: said in words.
        for (bad, why) in [
            ("-1MB", "a size cannot be negative"),
            ("101%", "a share is between 0% and 100%, not 101%"),
            ("-5%", "a share is between 0% and 100%, not -5%"),
            ("150.5%", "a share is between 0% and 100%, not 150.5%"),
            ("NaN%", "a share is between 0% and 100%, not NaN%"),
            ("5 parsecs", "parsecs is not a unit"),
            ("10XB", "XB is not a unit"),
            ("1e99GB", "e99GB is not a unit"),
            (
                "99999999999999999999999GB",
                "more bytes than any image holds",
            ),
        ] {
            assert_eq!(MinSaving::parse(bad), Err(Some(why.into())), "{bad}");
        }
        let mut r = Accounting::new(Listing::new(), Squash::Full).report(1, 10);
        assert_eq!((r.layers_after, r.new_layers), (1, 1));
        let split = Accounting::new(Listing::new(), Squash::Full)
            .with_split(Some(SplitAt::Paths(vec!["/usr".into()])))
            .report(1, 10);
        assert_eq!((split.layers_after, split.new_layers), (2, 2));
        assert!(split
            .lines()
            .iter()
            .any(|l| l.starts_with("  squashed layers (2, together): ")));
        r.plain_bytes = 1000;
        r.reclaimed_bytes = 100;
        assert!(MinSaving::Bytes(100).met_by(&r) && !MinSaving::Bytes(101).met_by(&r));
        assert!(MinSaving::Percent(10.0).met_by(&r) && !MinSaving::Percent(10.5).met_by(&r));
    }

    #[test]
    fn the_shown_share_is_all_or_nothing_only_when_it_is() {
        let mut r = Accounting::new(Listing::new(), Squash::Full).report(1, 10);
        let shown = |r: &Report| {
            let line = r
                .lines()
                .into_iter()
                .find(|l| l.starts_with("  reclaimed: "));
            line.and_then(|l| l.rsplit(", ").next().map(str::to_string))
        };
        for (plain, reclaimed, want) in [
            (5_000_005, 5_000_000, "99.9 %)"),
            (5_000_000, 5_000_000, "100.0 %)"),
            (5_000_000, 1, "0.1 %)"),
            (5_000_000, 0, "0.0 %)"),
            (0, 0, "0.0 %)"),
            (1000, 125, "12.5 %)"),
        ] {
            (r.plain_bytes, r.reclaimed_bytes) = (plain, reclaimed);
            assert_eq!(shown(&r).as_deref(), Some(want), "{plain} {reclaimed}");
        }
    }

    #[test]
    fn the_request_round_trips() {
        let req = Request {
            squash: Squash::Base { layers: 4 },
            layers_before: 6,
            states: "/squash/states".into(),
            steps: vec!["[2/3] RUN a".into()],
            top: 10,
            min_saving: Some(MinSaving::Percent(5.0)),
            split: Some(SplitAt::Paths(vec!["/usr".into()])),
            resume: Some(Resume {
                file: "/squash/states/resume/accounting".into(),
                steps: 1,
            }),
            changed: true,
        };
        // A request without the fields added later reads as no split, no resume, no diffs.
        let old = r#"{"squash":"full","layers_before":2,"new_layers":1,"states":"/s","steps":[],"top":10,"min_saving":null}"#;
        let old: Request = serde_json::from_str(old).unwrap();
        assert_eq!((old.split, old.resume, old.changed), (None, None, false));
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), req);
    }

    #[test]
    fn units() {
        assert_eq!(human(999), "999 B");
        assert_eq!(human(1500), "1.5 kB");
        assert_eq!(human(121_400_000), "121.4 MB");
    }
}
