//! Leftovers in the spool dir of runs killed before they could clean up.

use std::path::Path;
use std::time::Duration;

/// Removes entries (files or directories) whose name starts with one of
/// `prefixes` and that are over a day old, so a run going on now keeps
/// its own.
pub(crate) fn clear_stale(dir: &Path, prefixes: &[&str]) {
    let day = Duration::from_secs(24 * 3600);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !prefixes.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > day);
        if old {
            let _ = if meta.is_dir() {
                std::fs::remove_dir_all(e.path())
            } else {
                std::fs::remove_file(e.path())
            };
        }
    }
}
