//! Files in the state dir: written whole or not at all.
//!
//! A crash or a full disk while renewing must never leave a half-written
//! certificate or key where the next start would read it, so every write
//! goes through [`rampart_config::atomic`] (temporary file, fsync, rename).

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use crate::CertError;

/// Mode for private keys and the account key.
pub const PRIVATE: u32 = 0o600;
/// Mode for certificates (public).
pub const PUBLIC: u32 = 0o644;

/// Creates `dir` (and parents) with mode 0700 when missing.
pub fn ensure_dir(dir: &Path) -> Result<(), CertError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CertError::file(dir, format!("cannot create the directory: {e}")))
}

/// Replaces `path` with `data` atomically, with the given mode
/// ([`rampart_config::atomic::write_atomic`]), creating its directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), CertError> {
    ensure_dir(path.parent().unwrap_or(Path::new(".")))?;
    rampart_config::atomic::write_atomic(path, data, mode)
        .map_err(|e| CertError::file(path, format!("cannot write: {e}")))
}

/// Reads a file, with an error naming it.
pub fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    fs::read(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "file not found".to_string(),
            _ => format!("cannot read: {e}"),
        };
        CertError::file(path, why)
    })
}
