//! An SFTP receiver, through the system's OpenSSH client (its config,
//! agent, known_hosts and key handling, rather than a second SSH stack).
//!
//! Uploads go to `tmp/<random>` (created exclusively) and are then
//! hard-linked to their name: the hardlink request fails when the name
//! exists, so nothing is overwritten, and it works under the forced command
//! of [`super::sftp_authorized_keys_line`], which denies rename and remove.
//! The `tmp/` name stays behind as a second link to the same bytes (no
//! space used); `prune`, which runs on the receiver, clears `tmp/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use openssh::{KnownHosts, SessionBuilder};
use openssh_sftp_client::{Sftp, SftpOptions};

use crate::config::TargetConfig;
use anyhow::{Context, Result};

use super::{Object, Payload, tmp_name};

pub struct SftpTarget {
    sftp: Sftp,
    root: PathBuf,
}

const CHUNK: usize = 256 * 1024;

impl SftpTarget {
    pub async fn connect(
        cfg: &TargetConfig,
        user: Option<String>,
        host: String,
        port: Option<u16>,
        path: String,
    ) -> Result<SftpTarget> {
        let mut b = SessionBuilder::default();
        if let Some(u) = user {
            b.user(u);
        }
        if let Some(p) = port {
            b.port(p);
        }
        if let Some(k) = &cfg.key {
            b.keyfile(k);
        }
        if let Some(kh) = &cfg.known_hosts {
            b.user_known_hosts_file(kh);
        }
        // Never trust a new host key silently: a backup sent to an impostor
        // is encrypted, but it is also not a backup.
        b.known_hosts_check(KnownHosts::Strict);
        b.connect_timeout(Duration::from_secs(15));
        b.server_alive_interval(Duration::from_secs(30));
        b.control_directory(std::env::temp_dir());
        let session = b
            .connect(&host)
            .await
            .with_context(|| format!("ssh to {host}"))?;
        let sftp = Sftp::from_session(session, SftpOptions::default())
            .await
            .context("starting sftp")?;
        let root = if path.is_empty() {
            PathBuf::from(".")
        } else {
            PathBuf::from(path)
        };
        let t = SftpTarget { sftp, root };
        for d in ["blobs", "data", "index", "tmp"] {
            t.ensure_dir(d).await?;
        }
        Ok(t)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    async fn ensure_dir(&self, dir: &str) -> Result<()> {
        let mut fs = self.sftp.fs();
        let p = self.path(dir);
        if fs.metadata(&p).await.is_ok() {
            return Ok(());
        }
        let mut cur = PathBuf::new();
        for c in p.components() {
            cur.push(c);
            if fs.metadata(&cur).await.is_err() {
                fs.create_dir(&cur)
                    .await
                    .with_context(|| format!("creating {}", cur.display()))?;
            }
        }
        Ok(())
    }

    pub async fn list(&self, dir: &str) -> Result<Vec<Object>> {
        let p = self.path(dir);
        let d = self
            .sftp
            .fs()
            .open_dir(&p)
            .await
            .with_context(|| format!("listing {}", p.display()))?;
        let mut out = Vec::new();
        let mut entries = std::pin::pin!(d.read_dir());
        while let Some(e) = entries.next().await {
            let e = e.with_context(|| format!("listing {}", p.display()))?;
            let m = e.metadata();
            if m.file_type().is_some_and(|t| t.is_file()) {
                out.push(Object {
                    name: e.filename().to_string_lossy().into_owned(),
                    size: m.len().unwrap_or(0),
                    modified: m.modified().map(|t| t.as_system_time()),
                });
            }
        }
        Ok(out)
    }

    /// Exclusive temp file, then hard link; `Target::put` checks for the name first.
    pub async fn write_if_absent(&self, name: &str, payload: Payload<'_>) -> Result<bool> {
        let dest = self.path(name);
        let mut fs = self.sftp.fs();
        let tmp = self.path(&tmp_name());
        let mut f = self
            .sftp
            .options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .await
            .with_context(|| format!("creating {}", tmp.display()))?;
        match payload {
            Payload::Bytes(b) => {
                for c in b.chunks(CHUNK) {
                    f.write_all(c).await.context("writing")?;
                }
            }
            Payload::File(src) => {
                use std::io::Read;
                let mut s = std::fs::File::open(src)
                    .with_context(|| format!("opening {}", src.display()))?;
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = s.read(&mut buf).context("reading the spool file")?;
                    if n == 0 {
                        break;
                    }
                    f.write_all(&buf[..n]).await.context("writing")?;
                }
            }
        }
        if self.sftp.support_fsync() {
            f.sync_all().await.context("fsync")?;
        }
        f.close().await.context("closing")?;
        let linked = fs.hard_link(&tmp, &dest).await;
        // Best effort: the receiver's forced command may deny removal.
        let _ = fs.remove_file(&tmp).await;
        match linked {
            Ok(()) => Ok(true),
            Err(_) if fs.metadata(&dest).await.is_ok() => Ok(false),
            Err(e) => Err(e).with_context(|| format!("linking {}", dest.display())),
        }
    }

    pub async fn get(&self, name: &str) -> Result<Vec<u8>> {
        let p = self.path(name);
        let mut f = self
            .sftp
            .open(&p)
            .await
            .with_context(|| format!("opening {}", p.display()))?;
        let mut out = Vec::new();
        read_all(&mut f, |b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    pub async fn get_to_file(&self, name: &str, dest: &Path) -> Result<u64> {
        use std::io::Write;
        let p = self.path(name);
        let mut f = self
            .sftp
            .open(&p)
            .await
            .with_context(|| format!("opening {}", p.display()))?;
        let mut out =
            std::fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
        read_all(&mut f, |b| {
            out.write_all(b)
                .with_context(|| format!("writing {}", dest.display()))
        })
        .await
    }

    pub async fn exists(&self, name: &str) -> Result<bool> {
        Ok(self.sftp.fs().metadata(self.path(name)).await.is_ok())
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        let p = self.path(name);
        if !self.exists(name).await? {
            return Ok(());
        }
        self.sftp
            .fs()
            .remove_file(&p)
            .await
            .with_context(|| format!("removing {}", p.display()))
    }
}

async fn read_all(
    f: &mut openssh_sftp_client::file::File,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let mut total = 0u64;
    let n = CHUNK as u32;
    loop {
        match f
            .read(n, bytes::BytesMut::with_capacity(n as usize))
            .await
            .context("reading")?
        {
            None => break,
            Some(b) if b.is_empty() => break,
            Some(b) => {
                total += b.len() as u64;
                sink(&b)?;
            }
        }
    }
    Ok(total)
}
