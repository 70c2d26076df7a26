//! The `sync` step of a base-preserving squash, run inside the build: makes the writable base
//! mount equal to the finished image, touching only what differs (see the `treesync` crate).

use std::path::Path;

/// Mirrors `final_dir` onto `base_dir` and describes what changed.
pub fn run(final_dir: &Path, base_dir: &Path) -> Result<String, treesync::SyncError> {
    let stats = treesync::sync_tree(final_dir, base_dir, &treesync::SyncOptions::default())?;
    Ok(stats.to_string())
}
