//! Odoo's filestore: `<data_dir>/filestore/<db>/<xx>/<sha1>`, files named
//! by the SHA-1 of their content and never modified in place.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub fn dir(data_dir: &Path, db: &str) -> PathBuf {
    data_dir.join("filestore").join(db)
}

/// Every regular file under `root`, as paths relative to it with `/`,
/// sorted (stable manifests, stable progress). A missing root is an empty
/// filestore: a database without attachments has none.
pub fn list(root: &Path) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    if !root.exists() {
        return Ok(out);
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e.with_context(|| format!("reading {}", d.display()))?;
            let ft = e.file_type().context("file type")?;
            let p = e.path();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let rel = p
                    .strip_prefix(root)
                    .expect("walked under root")
                    .to_string_lossy()
                    .replace('\\', "/");
                let len = e.metadata().context("metadata")?.len();
                out.push((rel, len));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A relative path from a manifest or a zip must stay inside the
/// filestore: no `..`, no absolute path.
pub fn safe_join(root: &Path, rel: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if rel.is_empty()
        || p.components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        anyhow::bail!("unsafe filestore path {rel:?}");
    }
    Ok(root.join(p))
}

/// Gives `path` the owner of `like` (restores run as root, Odoo reads
/// its filestore as its own user).
pub fn chown_like(path: &Path, like: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata(like) {
        let _ = std::os::unix::fs::chown(path, Some(m.uid()), Some(m.gid()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_join_refuses_escapes() {
        let r = Path::new("/fs");
        assert_eq!(safe_join(r, "ab/abc").unwrap(), Path::new("/fs/ab/abc"));
        assert!(safe_join(r, "../etc/passwd").is_err());
        assert!(safe_join(r, "/etc/passwd").is_err());
        assert!(safe_join(r, "").is_err());
    }
}
