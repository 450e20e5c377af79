//! A local directory (or a mounted disk). Objects appear atomically: the
//! bytes go to `tmp/`, are synced, then hard-linked to their name; link(2)
//! fails when the name exists, so nothing is ever overwritten, even by two
//! writers racing.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Object, Payload, tmp_name};

pub struct FsTarget {
    root: PathBuf,
}

impl FsTarget {
    pub fn open(root: PathBuf) -> Result<FsTarget> {
        Ok(FsTarget { root })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub async fn list(&self, dir: &str) -> Result<Vec<Object>> {
        let d = self.path(dir);
        if !self.root.exists() {
            anyhow::bail!("{} does not exist", self.root.display());
        }
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("reading {}", d.display())),
        };
        for e in rd {
            let e = e.with_context(|| format!("reading {}", d.display()))?;
            let m = e.metadata().context("metadata")?;
            if m.is_file() {
                out.push(Object {
                    name: e.file_name().to_string_lossy().into_owned(),
                    size: m.len(),
                    modified: m.modified().ok(),
                });
            }
        }
        Ok(out)
    }

    /// Link-if-absent; `Target::put` checks for the name first.
    pub async fn write_if_absent(&self, name: &str, payload: Payload<'_>) -> Result<bool> {
        let dest = self.path(name);
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir)
            .with_context(|| format!("creating {}", tmp_dir.display()))?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let tmp = self.root.join(tmp_name());
        let result = write_then_link(&tmp, &dest, payload);
        let _ = std::fs::remove_file(&tmp);
        result
    }

    pub async fn get(&self, name: &str) -> Result<Vec<u8>> {
        let p = self.path(name);
        std::fs::read(&p).with_context(|| p.display().to_string())
    }

    pub async fn get_to_file(&self, name: &str, dest: &Path) -> Result<u64> {
        let p = self.path(name);
        std::fs::copy(&p, dest).with_context(|| p.display().to_string())
    }

    pub async fn exists(&self, name: &str) -> Result<bool> {
        Ok(self.path(name).exists())
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        let p = self.path(name);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| p.display().to_string())
            }
            _ => Ok(()),
        }
    }
}

fn write_then_link(tmp: &Path, dest: &Path, payload: Payload<'_>) -> Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    match payload {
        Payload::Bytes(b) => f.write_all(b),
        Payload::File(src) => {
            let mut s =
                std::fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
            std::io::copy(&mut s, &mut f).map(|_| ())
        }
    }
    .with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    match std::fs::hard_link(tmp, dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("linking {}", dest.display())),
    }
    if let Some(parent) = dest.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn write_never_replaces_and_leaves_read_only_files() {
        let dir = tempfile::tempdir().unwrap();
        let t = FsTarget::open(dir.path().to_path_buf()).unwrap();
        assert!(
            t.write_if_absent("index/a.json", Payload::Bytes(b"first"))
                .await
                .unwrap()
        );
        assert!(
            !t.write_if_absent("index/a.json", Payload::Bytes(b"second"))
                .await
                .unwrap()
        );
        assert_eq!(t.get("index/a.json").await.unwrap(), b"first");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("index/a.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444);
        // The upload's temporary name is gone.
        assert!(t.list("tmp").await.unwrap().is_empty());
        let names: Vec<String> = t
            .list("index")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, vec!["a.json"]);
    }
}
