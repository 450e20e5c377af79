//! Where snapshots go: a local directory, an SFTP receiver, an S3 bucket.
//!
//! Every target offers the same few operations on flat names (`blobs/…`,
//! `data/…`, `index/…`). `put` is write-if-absent: it never replaces an
//! object that exists, so a compromised or confused writer cannot destroy
//! what is already stored (with the receiver-side settings below it could
//! not even if it tried). Its existence check first only saves uploading
//! what is there; the guarantee is each target's conditional write
//! ([`Target::write_if_absent`]: link-if-absent, SFTP's exclusive hard link,
//! S3's `If-None-Match: *`), which also holds when two writers race past
//! the check together.

mod fs;
mod s3;
mod sftp;

use std::path::{Path, PathBuf};

use crate::config::TargetConfig;
use anyhow::{Context, Result, bail};

/// What to upload: small objects from memory, large ones from a spool file.
pub enum Payload<'a> {
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// A file on disk.
    File(&'a Path),
}

impl Payload<'_> {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Payload::Bytes(b) => b.len() as u64,
            Payload::File(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
        }
    }
}

/// One object in a listing.
#[derive(Debug, Clone)]
pub struct Object {
    /// The name inside its directory.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// When known (prune spares recent objects: a backup may be running).
    pub modified: Option<std::time::SystemTime>,
}

/// A name for an upload in progress: its time first, so `prune` can tell
/// a leftover of a killed run (old) from a run going on now (recent).
pub fn tmp_name() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("tmp/{secs}-{}", crate::hash::random_hex(8))
}

/// A target URL, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetUrl {
    /// `file:///path`.
    File(PathBuf),
    /// `sftp://user@host:port/path`.
    Sftp {
        /// The SSH user, when the URL names one.
        user: Option<String>,
        /// The SSH server.
        host: String,
        /// The SSH port, when the URL names one.
        port: Option<u16>,
        /// The directory on the server.
        path: String,
    },
    /// `s3://bucket/prefix`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix inside it.
        prefix: String,
    },
}

impl TargetUrl {
    /// Parses a `[[backup.target]] url`, with an error naming what is wrong.
    pub fn parse(url: &str) -> Result<TargetUrl> {
        if let Some(p) = url.strip_prefix("file://") {
            if !p.starts_with('/') {
                bail!("{url:?}: a file URL needs an absolute path (file:///srv/backups)");
            }
            return Ok(TargetUrl::File(PathBuf::from(p)));
        }
        if let Some(rest) = url.strip_prefix("sftp://") {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let (user, hostport) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u.to_string()), h),
                None => (None, authority),
            };
            let (host, port) = match hostport.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
                    let port = p
                        .parse::<u16>()
                        .map_err(|_| anyhow::Error::msg(format!("{url:?}: bad port {p:?}")))?;
                    (h.trim_matches(['[', ']']).to_string(), Some(port))
                }
                _ => (hostport.to_string(), None),
            };
            if host.is_empty() {
                bail!("{url:?}: no host (sftp://user@host:port/path)");
            }
            // "/~/x" or "" is relative to the login (or forced -d) directory.
            let path = match path.strip_prefix("/~") {
                Some(rel) => rel.trim_start_matches('/').to_string(),
                None => path.to_string(),
            };
            return Ok(TargetUrl::Sftp {
                user,
                host,
                port,
                path,
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("{url:?}: no bucket (s3://bucket/prefix)");
            }
            return Ok(TargetUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        bail!(
            "{url:?}: unknown target; use file:///path, sftp://user@host/path or s3://bucket/prefix"
        )
    }
}

/// One opened target.
pub struct Target {
    /// The target's name from the config.
    pub name: String,
    kind: Kind,
}

enum Kind {
    Fs(fs::FsTarget),
    Sftp(sftp::SftpTarget),
    S3(s3::S3Target),
}

macro_rules! each {
    ($self:ident, $t:ident => $e:expr) => {
        match &$self.kind {
            Kind::Fs($t) => $e,
            Kind::Sftp($t) => $e,
            Kind::S3($t) => $e,
        }
    };
}

impl Target {
    /// Opens (connects to) a configured target; errors name the target.
    pub async fn open(cfg: &TargetConfig) -> Result<Target> {
        let url = TargetUrl::parse(&cfg.url).with_context(|| format!("target {:?}", cfg.name))?;
        let kind: Result<Kind> = async {
            Ok(match url {
                TargetUrl::File(p) => Kind::Fs(fs::FsTarget::open(p)?),
                TargetUrl::Sftp {
                    user,
                    host,
                    port,
                    path,
                } => Kind::Sftp(sftp::SftpTarget::connect(cfg, user, host, port, path).await?),
                TargetUrl::S3 { bucket, prefix } => {
                    Kind::S3(s3::S3Target::open(cfg, bucket, prefix)?)
                }
            })
        }
        .await;
        let kind = kind.with_target(&cfg.name)?;
        Ok(Target {
            name: cfg.name.clone(),
            kind,
        })
    }

    /// A target given by URL alone (e.g. `prune --url` on the receiver).
    pub async fn open_url(url: &str) -> Result<Target> {
        let cfg = TargetConfig {
            name: url.to_string(),
            url: url.to_string(),
            ..Default::default()
        };
        Target::open(&cfg).await
    }

    /// The objects in `dir` (names without the directory).
    pub async fn list(&self, dir: &str) -> Result<Vec<Object>> {
        each!(self, t => t.list(dir).await).with_target(&self.name)
    }

    /// Writes `path` unless it exists; true when this call wrote it.
    pub async fn put(&self, path: &str, payload: Payload<'_>) -> Result<bool> {
        // Only an optimisation (no upload of a blob already stored): the
        // conditional write below is what never overwrites.
        if self.exists(path).await? {
            return Ok(false);
        }
        self.write_if_absent(path, payload).await
    }

    /// The conditional write alone, without `put`'s existence check: the
    /// object appears whole under `path` only if no other writer's did
    /// first, even when both started together. True when this call wrote it.
    pub async fn write_if_absent(&self, path: &str, payload: Payload<'_>) -> Result<bool> {
        each!(self, t => t.write_if_absent(path, payload).await)
            .with_context(|| format!("writing {path}"))
            .with_target(&self.name)
    }

    /// The whole object at `path`.
    pub async fn get(&self, path: &str) -> Result<Vec<u8>> {
        each!(self, t => t.get(path).await)
            .with_context(|| format!("reading {path}"))
            .with_target(&self.name)
    }

    /// Downloads `path` into the file `dest` (created); returns its size.
    pub async fn get_to_file(&self, path: &str, dest: &Path) -> Result<u64> {
        each!(self, t => t.get_to_file(path, dest).await)
            .with_context(|| format!("reading {path}"))
            .with_target(&self.name)
    }

    /// Whether an object is at `path`.
    pub async fn exists(&self, path: &str) -> Result<bool> {
        each!(self, t => t.exists(path).await).with_target(&self.name)
    }

    /// Only `prune` deletes, and only where its credentials allow it.
    pub async fn delete(&self, path: &str) -> Result<()> {
        each!(self, t => t.delete(path).await)
            .with_context(|| format!("deleting {path}"))
            .with_target(&self.name)
    }
}

trait WithTarget<T> {
    fn with_target(self, name: &str) -> Result<T>;
}

impl<T> WithTarget<T> for Result<T> {
    fn with_target(self, name: &str) -> Result<T> {
        self.map_err(|e| {
            if e.to_string().starts_with("target ") {
                e
            } else {
                e.context(format!("target {name:?}"))
            }
        })
    }
}

/// The authorized_keys line for the backup user on an SFTP receiver.
///
/// `restrict` turns off forwarding, ptys and rc files; the forced command
/// runs OpenSSH's in-process SFTP server started in `dir`, with a umask of
/// 0222 so every file the writer creates is read-only, and with the
/// requests that could delete, rename over, or change modes denied. The
/// writer can add files but never change or remove them. `dir` must hold
/// the directories `blobs data index tmp wal`, owned by the backup user, made
/// before the first run (directories the writer made itself would be
/// read-only too).
///
/// ```
/// let line = rampart_backup::sftp_authorized_keys_line("ssh-ed25519 AAAA backup@erp\n", "/srv/rampart");
/// assert!(line.starts_with("restrict,command=\"internal-sftp -d /srv/rampart -u 0222 -P remove,"));
/// assert!(line.ends_with(" ssh-ed25519 AAAA backup@erp"));
/// ```
pub fn sftp_authorized_keys_line(pubkey: &str, dir: &str) -> String {
    format!(
        "restrict,command=\"internal-sftp -d {dir} -u 0222 -P {DENIED}\" {}",
        pubkey.trim()
    )
}

/// SFTP requests an append-only writer never needs.
const DENIED: &str = "remove,rmdir,rename,posix-rename,setstat,fsetstat,lsetstat,symlink,copy-data";

/// What to set up on an S3 bucket so the server cannot destroy backups.
pub fn s3_object_lock_advice(bucket: &str) -> String {
    format!(
        "S3 target {bucket}: make the backups undeletable by this server.\n\
         1. Create the bucket with Object Lock enabled (it cannot be turned on later for an\n\
            existing bucket on every provider): versioning is switched on with it.\n\
         2. Set a default retention: COMPLIANCE mode (or GOVERNANCE if an admin must be able\n\
            to override) for at least as long as your oldest kept snapshot plus a margin, e.g.\n\
            aws s3api put-object-lock-configuration --bucket {bucket} --object-lock-configuration \\\n\
              '{{\"ObjectLockEnabled\":\"Enabled\",\"Rule\":{{\"DefaultRetention\":{{\"Mode\":\"COMPLIANCE\",\"Days\":200}}}}}}'\n\
         3. Give this server a key that may only s3:PutObject, s3:GetObject and s3:ListBucket\n\
            on the bucket: no s3:DeleteObject, no s3:PutBucket*, no s3:BypassGovernanceRetention.\n\
         4. Run `rampart prune` elsewhere, with a key that may delete; locked versions stay\n\
            until their retention ends, so a stolen writer key cannot erase history.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            TargetUrl::parse("file:///srv/b").unwrap(),
            TargetUrl::File("/srv/b".into())
        );
        assert_eq!(
            TargetUrl::parse("sftp://backup@vault.example.com:2222/srv/rampart").unwrap(),
            TargetUrl::Sftp {
                user: Some("backup".into()),
                host: "vault.example.com".into(),
                port: Some(2222),
                path: "/srv/rampart".into()
            }
        );
        assert_eq!(
            TargetUrl::parse("sftp://vault/~/rampart").unwrap(),
            TargetUrl::Sftp {
                user: None,
                host: "vault".into(),
                port: None,
                path: "rampart".into()
            }
        );
        assert_eq!(
            TargetUrl::parse("s3://bucket/a/b/").unwrap(),
            TargetUrl::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert!(TargetUrl::parse("ftp://x").is_err());
        assert!(TargetUrl::parse("file://relative").is_err());
        assert!(TargetUrl::parse("sftp://u@h:99999/x").is_err());
    }

    #[test]
    fn authorized_keys_line_forces_an_append_only_sftp() {
        let l = sftp_authorized_keys_line("ssh-ed25519 AAAAC3 rampart@erp\n", "/srv/rampart");
        assert!(l.starts_with("restrict,command=\"internal-sftp -d /srv/rampart -u 0222 -P "));
        assert!(l.contains("remove,rmdir,rename,posix-rename"));
        assert!(l.ends_with("\" ssh-ed25519 AAAAC3 rampart@erp"));
    }
}
