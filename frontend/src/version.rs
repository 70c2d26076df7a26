//! Which squash-frontend this is: the version and revision a release build compiles in
//! (`SQUASH_FRONTEND_VERSION`, `SQUASH_FRONTEND_REVISION`, set by the image's Dockerfile from
//! its `VERSION` and `REVISION` build arguments), shown by `--version`, in the squash step's
//! progress line and in the history entry it writes, so that an image says which frontend
//! squashed it.

/// The version: the release's (`1.2.3`), else the crate's.
pub const VERSION: &str = pick(
    option_env!("SQUASH_FRONTEND_VERSION"),
    "dev",
    env!("CARGO_PKG_VERSION"),
);

/// The source revision (a commit), or empty when the build did not say.
pub const REVISION: &str = pick(option_env!("SQUASH_FRONTEND_REVISION"), "unknown", "");

/// `given`, unless it is absent, empty or `placeholder`; then `fallback`.
const fn pick(
    given: Option<&'static str>,
    placeholder: &str,
    fallback: &'static str,
) -> &'static str {
    match given {
        Some(v) if !v.is_empty() && !eq(v, placeholder) => v,
        _ => fallback,
    }
}

const fn eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// `squash-frontend 1.2.3 (0123456789ab)`: the version, and the revision's first 12 characters
/// when there is one.
pub fn describe() -> String {
    describe_with(VERSION, REVISION)
}

fn describe_with(version: &str, revision: &str) -> String {
    let short: String = revision.chars().take(12).collect();
    if short.is_empty() {
        format!("squash-frontend {version}")
    } else {
        format!("squash-frontend {version} ({short})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_and_short_revision() {
        assert_eq!(
            describe_with("1.2.3", "0123456789abcdef0123"),
            "squash-frontend 1.2.3 (0123456789ab)"
        );
        assert_eq!(describe_with("1.2.3", ""), "squash-frontend 1.2.3");
        assert!(describe().starts_with(&format!("squash-frontend {VERSION}")));
    }

    #[test]
    fn placeholders_fall_back() {
        assert_eq!(pick(Some("2.0.0"), "dev", "0.1.0"), "2.0.0");
        assert_eq!(pick(Some("dev"), "dev", "0.1.0"), "0.1.0");
        assert_eq!(pick(Some(""), "dev", "0.1.0"), "0.1.0");
        assert_eq!(pick(None, "dev", "0.1.0"), "0.1.0");
    }
}
