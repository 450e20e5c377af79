//! Base backups: `pg_basebackup -Ft -X stream` of the whole cluster, with
//! the WAL it needs inside (a base backup alone is consistent, whatever
//! the stream did meanwhile), sealed and written like everything else; its
//! index entry last.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::config::BackupConfig;
use crate::hash::random_hex;
use crate::pg::Pg;
use crate::progress::{Progress, human_bytes};
use crate::seal::Recipients;
use crate::target::{Payload, Target};

/// `wal/base-<id>.json`: plaintext, written last.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BaseBackup {
    /// The layout version.
    pub format: u32,
    /// The base backup's id.
    pub id: String,
    /// RFC 3339, UTC: when pg_basebackup started and when it had finished
    /// (the backup is consistent at some moment in between).
    pub started: String,
    /// When pg_basebackup had finished.
    pub finished: String,
    /// The server's major version: the recovery needs the same binaries.
    pub pg_major: u32,
    /// The bootstrap superuser (oid 10): the role the recovery connects as.
    pub superuser: String,
    /// "write-ahead log start point" as pg_basebackup printed it.
    pub start_lsn: Option<String>,
    /// The cluster's WAL segment size (a segment sent in pieces is padded
    /// to it for the recovery).
    pub seg_size: u64,
    /// Sealed size of `wal/base-<id>.tar` (the data directory).
    pub tar_size: u64,
    /// Sealed size of `wal/base-<id>.wal.tar` (the WAL the backup needs).
    pub wal_tar_size: u64,
}

impl BaseBackup {
    /// Where the data directory's tar is on the target.
    pub fn tar_object(&self) -> String {
        format!("wal/base-{}.tar", self.id)
    }
    /// Where the WAL tar is on the target.
    pub fn wal_tar_object(&self) -> String {
        format!("wal/base-{}.wal.tar", self.id)
    }
    /// Where this entry is on the target.
    pub fn index_object(&self) -> String {
        format!("wal/base-{}.json", self.id)
    }
    /// `finished`, parsed: the earliest moment this base backup can restore to.
    pub fn finished_at(&self) -> Result<jiff::Timestamp> {
        self.finished
            .parse()
            .with_context(|| format!("base backup {}: bad time {:?}", self.id, self.finished))
    }
}

/// Spool dirs of base backups and recoveries a killed run left behind.
pub(crate) const STALE: &[&str] = &[".rampart-base-", ".rampart-pitr-"];

/// Takes one base backup and writes it to every target given; fails if
/// any target failed (the others keep theirs: a complete backup there).
pub async fn base_backup(
    cfg: &BackupConfig,
    targets: &[&Target],
    progress: &Progress,
) -> Result<BaseBackup> {
    let recipients = Recipients::parse(&cfg.recipients, cfg.zstd_level)?;
    let pg = Pg::connect(&cfg.pg, cfg.pg_bin.as_deref())?;
    let pg_major = pg.server_major()?;
    let superuser = pg.query_one("postgres", "SELECT rolname FROM pg_roles WHERE oid = 10")?;
    let seg_size: u64 = pg
        .query_one(
            "postgres",
            "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'",
        )?
        .parse()
        .context("wal_segment_size")?;
    let now = jiff::Timestamp::now();
    let id = format!("{}-{}", now.strftime("%Y%m%dT%H%M%SZ"), random_hex(3));
    crate::spool::clear_stale(&cfg.spool_dir(), STALE);
    let work = tempfile::Builder::new()
        .prefix(".rampart-base-")
        .tempdir_in(cfg.spool_dir())
        .with_context(|| format!("creating a spool dir in {}", cfg.spool_dir().display()))?;
    let out = work.path().join("out");
    let task = progress.bytes("base backup: pg_basebackup", 0);
    let started = jiff::Timestamp::now();
    let run = Command::new(pg.program("pg_basebackup"))
        .args(["-Ft", "-X", "stream", "--checkpoint=fast", "--no-manifest"])
        .args(["-v", "-w", "-l"])
        .arg(format!("rampart {id}"))
        .arg("-d")
        .arg(pg.conn_for("postgres"))
        .arg("-D")
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", pg.program("pg_basebackup").display()))?;
    let stderr = String::from_utf8_lossy(&run.stderr);
    if !run.status.success() {
        bail!("pg_basebackup failed ({}): {}", run.status, stderr.trim());
    }
    let finished = jiff::Timestamp::now();
    let start_lsn = stderr.lines().find_map(|l| {
        let rest = l.split("write-ahead log start point: ").nth(1)?;
        Some(rest.split_whitespace().next()?.to_string())
    });
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .with_context(|| out.display().to_string())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names != ["base.tar", "pg_wal.tar"] {
        bail!(
            "pg_basebackup wrote {names:?}; only a cluster without extra tablespaces is supported"
        );
    }
    let tar = seal_and_remove(&recipients, &out.join("base.tar"), work.path())?;
    let wal_tar = seal_and_remove(&recipients, &out.join("pg_wal.tar"), work.path())?;
    let entry = BaseBackup {
        format: 1,
        id,
        started: started.to_string(),
        finished: finished.to_string(),
        pg_major,
        superuser,
        start_lsn,
        seg_size,
        tar_size: file_size(&tar),
        wal_tar_size: file_size(&wal_tar),
    };
    task.done(&format!(
        "{} + {} sealed",
        human_bytes(entry.tar_size),
        human_bytes(entry.wal_tar_size)
    ));
    let json = serde_json::to_vec_pretty(&entry).context("base backup index")?;
    let mut failed = Vec::new();
    for t in targets {
        let r = async {
            t.put(&entry.tar_object(), Payload::File(&tar)).await?;
            t.put(&entry.wal_tar_object(), Payload::File(&wal_tar))
                .await?;
            if !t.put(&entry.index_object(), Payload::Bytes(&json)).await? {
                bail!("{} already exists", entry.index_object());
            }
            Ok(())
        }
        .await;
        match r {
            Ok(()) => progress.line(format!(
                "target {}: base backup {} stored",
                t.name, entry.id
            )),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    if !failed.is_empty() {
        bail!("base backup {}: {}", entry.id, failed.join("; "));
    }
    Ok(entry)
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Seals `plain` next to it and removes it (disk is the scarce thing here).
fn seal_and_remove(r: &Recipients, plain: &Path, dir: &Path) -> Result<PathBuf> {
    let sealed = dir.join(format!(
        "{}.sealed",
        plain.file_name().unwrap_or_default().to_string_lossy()
    ));
    let input = std::fs::File::open(plain).with_context(|| plain.display().to_string())?;
    let out = std::fs::File::create(&sealed).with_context(|| sealed.display().to_string())?;
    r.seal(input, out)?
        .sync_all()
        .context("syncing a spool file")?;
    std::fs::remove_file(plain).with_context(|| plain.display().to_string())?;
    Ok(sealed)
}

/// Every complete base backup on a target, oldest first.
pub async fn list_base_backups(target: &Target) -> Result<Vec<BaseBackup>> {
    let mut out = Vec::new();
    for o in target.list("wal").await? {
        let Some(id) = o
            .name
            .strip_prefix("base-")
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let bytes = target.get(&format!("wal/{}", o.name)).await?;
        let b: BaseBackup = serde_json::from_slice(&bytes)
            .with_context(|| format!("target {:?}: wal/{}", target.name, o.name))?;
        if b.id != id {
            bail!("target {:?}: wal/{} names {:?}", target.name, o.name, b.id);
        }
        crate::snapshot::check_db_name(&b.superuser).with_context(|| format!("wal/{}", o.name))?;
        out.push((b.finished_at()?, b));
    }
    out.sort_by_key(|a| a.0);
    Ok(out.into_iter().map(|(_, b)| b).collect())
}
