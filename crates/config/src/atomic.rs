//! Replacing a file so that nothing half-written ever stands in for a good
//! one: the one way Rampart writes odoo.conf and the files `init` makes,
//! certificates and keys, and the ban table.
//!
//! The bytes go to a temporary file in the same directory (tempfile names
//! it and removes it if anything fails), which is fsynced, given its mode,
//! then renamed over the target; the directory is fsynced last so the
//! rename itself survives a crash. A crash leaves the old file or the new
//! one, never a mix.

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Replaces `path` with `data`, with permission bits exactly `mode` (the
/// umask does not narrow them). The directory must exist.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("odoo.conf");
/// rampart_config::atomic::write_atomic(&path, b"[options]\n", 0o640)?;
/// assert_eq!(std::fs::read(&path)?, b"[options]\n");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn replaces_with_exact_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bans.json");
        fs::write(&p, "old").unwrap();
        for mode in [0o640, 0o600, 0o644] {
            write_atomic(&p, b"new", mode).unwrap();
            assert_eq!(fs::read_to_string(&p).unwrap(), "new");
            assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, mode);
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let e = write_atomic(&dir.path().join("missing/x"), b"x", 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        // A failed rename (the target is a directory) leaves the old state alone.
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/keep"), "k").unwrap();
        assert!(write_atomic(&dir.path().join("d"), b"x", 0o600).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
