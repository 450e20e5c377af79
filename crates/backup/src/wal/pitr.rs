//! `restore --at TIME --as NEWDB`: the newest base backup finished before
//! TIME, recovered with the archived WAL up to TIME in a temporary cluster,
//! then one database dumped from it and handed over as a snapshot restore
//! is (new name, its filestore, `--neutralize`, `--swap`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;

use super::base::{BaseBackup, STALE, list_base_backups};
use super::cluster::{TempCluster, os_user_ids, running_as_root, untar};
use super::fetch::{Archive, answer_requests};
use crate::config::BackupConfig;
use crate::filestore;
use crate::hash::is_sha1_hex;
use crate::pg::Pg;
use crate::progress::{Progress, human_bytes};
use crate::restore::{cleanup, finish, prepare, swap};
use crate::seal::Identities;
use crate::snapshot::{fetch_blob, list_snapshots, read_manifest};
use crate::target::Target;

/// How `rampart restore --at` restores a database to a moment.
#[derive(Debug, Clone)]
pub struct PitrOptions {
    /// The moment to restore to.
    pub at: jiff::Timestamp,
    /// The database to take from the recovered cluster; default the only
    /// Odoo database in it.
    pub db: Option<String>,
    /// The new database (and filestore directory) name.
    pub new_db: String,
    /// Run each installed module's data/neutralize.sql (staging copy).
    pub neutralize: bool,
    /// After success, rename the old database aside and give the new one its name.
    pub swap: bool,
    /// age identity file (private key).
    pub identity: PathBuf,
    /// The rampart executable: the recovery's restore_command runs it.
    pub exe: PathBuf,
}

/// What a point-in-time restore did.
#[derive(Debug, Clone)]
pub struct PitrReport {
    /// The name the database ended up with.
    pub db: String,
    /// The base backup the restore started from.
    pub base_backup: String,
    /// The last transaction replayed (the state restored is as of then).
    pub replayed_until: Option<String>,
    /// True when the archive ends before `at` (no commit after it yet).
    pub archive_ended_first: bool,
    /// Filestore files the database refers to that no backup holds.
    pub missing_files: Vec<String>,
}

/// Restores a database as it was at `opts.at`: a base backup, then the
/// WAL replayed up to that moment.
pub async fn restore_at(
    cfg: &BackupConfig,
    target: &Target,
    opts: &PitrOptions,
    progress: &Progress,
) -> Result<PitrReport> {
    let ids = Identities::from_file(&opts.identity)?;
    let at = opts.at;
    let bases = list_base_backups(target).await?;
    let mut base = None;
    for b in bases.iter().rev() {
        if b.finished_at()? <= at {
            base = Some(b.clone());
            break;
        }
    }
    let Some(base) = base else {
        bail!(
            "target {:?} has no base backup finished before {at}{}",
            target.name,
            bases
                .first()
                .map(|b| format!(" (the oldest finished at {})", b.finished))
                .unwrap_or_else(|| " (none at all: is backup.wal on?)".into())
        );
    };
    progress.line(format!(
        "base backup {} (finished {})",
        base.id, base.finished
    ));
    let live = Pg::connect(&cfg.pg, cfg.pg_bin.as_deref())?;
    if let Some(db) = &opts.db {
        crate::snapshot::check_db_name(db)?;
    }
    // Refuse a taken name before the long part.
    let staging = prepare(&live, &cfg.data_dir, &opts.new_db)?;
    let result = async {
        crate::spool::clear_stale(&cfg.spool_dir(), STALE);
        let work = tempfile::Builder::new()
            .prefix(".rampart-pitr-")
            .tempdir_in(cfg.spool_dir())
            .with_context(|| format!("creating a work dir in {}", cfg.spool_dir().display()))?;
        // Only this process writes here (the work dir becomes the
        // recovery cluster's user's): the dump, answers, config files.
        let private = tempfile::Builder::new()
            .prefix(".rampart-pitr-")
            .tempdir_in(cfg.spool_dir())
            .with_context(|| format!("creating a work dir in {}", cfg.spool_dir().display()))?;
        let dump = private.path().join("db.dump");
        let recovered = recover(
            cfg,
            target,
            &ids,
            &base,
            opts,
            (work.path(), private.path()),
            &dump,
            progress,
        )
        .await?;
        progress.line(format!(
            "{}: dumped from the recovered cluster ({})",
            recovered.db,
            human_bytes(std::fs::metadata(&dump).map(|m| m.len()).unwrap_or(0))
        ));
        live.create_database(&opts.new_db, cfg.db_owner.as_deref())?;
        live.restore_dump(&opts.new_db, &dump, cfg.db_owner.as_deref())?;
        drop(work);
        let missing = fill_filestore(target, &ids, &recovered, at, &staging, progress).await?;
        finish(
            cfg,
            &live,
            &opts.new_db,
            &staging,
            opts.neutralize,
            !opts.swap,
        )?;
        Ok::<_, anyhow::Error>((recovered, missing))
    }
    .await;
    let (recovered, missing) = match result {
        Ok(r) => r,
        Err(e) => {
            cleanup(&live, &opts.new_db, &staging);
            return Err(e);
        }
    };
    let mut db = opts.new_db.clone();
    if opts.swap {
        swap(&live, &cfg.data_dir, &opts.new_db, &recovered.db, progress)?;
        db = recovered.db.clone();
    }
    Ok(PitrReport {
        db,
        base_backup: base.id,
        replayed_until: recovered.replayed_until,
        archive_ended_first: recovered.archive_ended_first,
        missing_files: missing,
    })
}

struct Recovered {
    db: String,
    replayed_until: Option<String>,
    archive_ended_first: bool,
    /// ir_attachment.store_fname of every stored file at that moment.
    store_fnames: Vec<String>,
}

/// Unpacks the base backup, recovers to `at`, dumps the database.
#[allow(clippy::too_many_arguments)]
async fn recover(
    cfg: &BackupConfig,
    target: &Target,
    ids: &Identities,
    base: &BaseBackup,
    opts: &PitrOptions,
    (work, private): (&Path, &Path),
    dump: &Path,
    progress: &Progress,
) -> Result<Recovered> {
    let owner = if running_as_root() {
        Some(os_user_ids(&cfg.wal_os_user)?)
    } else {
        None
    };
    let data = work.join("data");
    let stage = work.join("stage");
    std::fs::create_dir(&stage).context("creating the stage dir")?;
    let task = progress.bytes("base backup: fetching and unpacking", 0);
    for (object, into) in [
        (base.tar_object(), data.clone()),
        (base.wal_tar_object(), data.join("pg_wal")),
    ] {
        let sealed = work.join("sealed.tmp");
        target.get_to_file(&object, &sealed).await?;
        let plain = work.join("plain.tar");
        {
            let f = std::fs::File::open(&sealed).context("spool")?;
            let mut out = std::fs::File::create(&plain).context("spool")?;
            std::io::copy(&mut ids.open(f)?, &mut out)
                .with_context(|| format!("decrypting {object}"))?;
        }
        std::fs::remove_file(&sealed).context("spool")?;
        untar(&plain, &into)?;
        std::fs::remove_file(&plain).context("spool")?;
    }
    task.done("unpacked");
    let bin = cfg
        .pg_bin
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/usr/lib/postgresql/{}/bin", base.pg_major)));
    if !bin.join("postgres").exists() {
        bail!(
            "the base backup is of PostgreSQL {}: its server programs are needed ({} has no \
             postgres; install postgresql-{0} or set backup.pg_bin)",
            base.pg_major,
            bin.display()
        );
    }
    let restore_command = format!(
        "{} wal-fetch --from {} %f %p",
        shell_quote(&opts.exe.display().to_string()),
        shell_quote(&stage.display().to_string())
    );
    let user = owner.map(|_| cfg.wal_os_user.clone());
    let mut cluster = TempCluster::prepare(
        work,
        private,
        data,
        bin,
        user,
        owner,
        base.superuser.clone(),
        &restore_command,
    )?;
    // Only now the cluster's user owns it: everything above was written
    // where no other user could plant a link.
    set_mode_owner(work, owner)?;
    let at_text = opts.at.strftime("%Y-%m-%d %H:%M:%S%.f+00").to_string();
    cluster.set_target(Some(&at_text))?;
    let archive = Archive::open(target, ids, base.seg_size).await?;
    let task = progress.bytes(&format!("recovering to {}", opts.at), 0);
    let mut archive_ended_first = false;
    loop {
        cluster.start()?;
        let outcome = tokio::select! {
            r = answer_requests(stage.clone(), private.to_path_buf(), &archive, owner) => Err(r.err().unwrap_or_else(|| anyhow::Error::msg("stopped"))),
            r = wait_promoted(&cluster) => r,
        };
        match outcome {
            Ok(()) => break,
            Err(e) => {
                let log = cluster.log_text();
                if !archive_ended_first
                    && log.contains("recovery ended before configured recovery target was reached")
                {
                    // The archive holds no commit after `at` yet: its end
                    // is the state at `at`, as far as anything was sent.
                    archive_ended_first = true;
                    cluster.set_target(None)?;
                    continue;
                }
                bail!("recovery failed: {e:#}\n{}", cluster.log_tail());
            }
        }
    }
    let client = cluster.client();
    let replayed_until = client
        .query_one(
            "postgres",
            "SELECT coalesce(pg_last_xact_replay_timestamp()::text, '')",
        )
        .ok()
        .filter(|s| !s.is_empty());
    task.done(&format!(
        "recovered{}",
        replayed_until
            .as_deref()
            .map(|t| format!(" (last transaction {t})"))
            .unwrap_or_default()
    ));
    let db = match &opts.db {
        Some(db) => {
            if !client.database_exists(db)? {
                bail!("database {db:?} did not exist at {}", opts.at);
            }
            db.clone()
        }
        None => {
            let dbs = client.odoo_databases()?;
            match dbs.as_slice() {
                [one] => one.clone(),
                [] => bail!("no Odoo database in the cluster at {}", opts.at),
                many => bail!(
                    "several Odoo databases at {}: {many:?}; choose one with --db",
                    opts.at
                ),
            }
        }
    };
    let store_fnames =
        if client.query_one(&db, "SELECT to_regclass('ir_attachment') IS NOT NULL")? == "t" {
            client
                .query(
                    &db,
                    "SELECT DISTINCT store_fname FROM ir_attachment \
                 WHERE store_fname IS NOT NULL AND store_fname <> '' ORDER BY 1",
                )?
                .into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect()
        } else {
            Vec::new()
        };
    let out = Command::new(client.program("pg_dump"))
        .args(["-Fc", "--no-owner", "-f"])
        .arg(dump)
        .arg("-d")
        .arg(client.conn_for(&db))
        .stdin(Stdio::null())
        .output()
        .context("running pg_dump")?;
    if !out.status.success() {
        bail!(
            "pg_dump of {db:?} from the recovered cluster failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Recovered {
        db,
        replayed_until,
        archive_ended_first,
        store_fnames,
    })
}

/// Waits until the cluster has left recovery; fails when it stopped.
async fn wait_promoted(cluster: &TempCluster) -> Result<()> {
    let client = cluster.client();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok(v) = client.query_one("postgres", "SELECT pg_is_in_recovery()") {
            if v == "f" {
                return Ok(());
            }
        } else if !cluster.running() {
            bail!("the recovery cluster stopped");
        }
    }
}

/// The work dir and everything in it: 0700 and the cluster user's.
fn set_mode_owner(dir: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| dir.display().to_string())?;
    std::fs::set_permissions(dir.join("data"), std::fs::Permissions::from_mode(0o700))
        .with_context(|| dir.display().to_string())?;
    if let Some((u, g)) = owner {
        let out = Command::new("chown")
            .arg("-R")
            .arg(format!("{u}:{g}"))
            .arg(dir)
            .output()
            .context("running chown")?;
        if !out.status.success() {
            bail!(
                "chown -R {}: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The filestore as the database saw it at `at`: every stored file it
/// refers to, from the blobs (the stream sends new files as they appear;
/// a file not named by its hash is found in the newest snapshot's
/// manifest before `at`). Returns what no backup holds.
async fn fill_filestore(
    target: &Target,
    ids: &Identities,
    recovered: &Recovered,
    at: jiff::Timestamp,
    staging: &Path,
    progress: &Progress,
) -> Result<Vec<String>> {
    let blobs: HashSet<String> = target
        .list("blobs")
        .await?
        .into_iter()
        .map(|o| o.name)
        .collect();
    let mut by_path: HashMap<String, String> = HashMap::new();
    let odd: Vec<&String> = recovered
        .store_fnames
        .iter()
        .filter(|p| !is_sha1_hex(p.rsplit('/').next().unwrap_or("")))
        .collect();
    if !odd.is_empty() {
        let mut before = Vec::new();
        for e in list_snapshots(target).await? {
            if e.db == recovered.db && e.timestamp()? <= at {
                before.push(e);
            }
        }
        if let Some(e) = before.last() {
            for f in read_manifest(target, e, ids).await?.files {
                by_path.insert(f.path, f.sha1);
            }
        }
    }
    let mut wanted: Vec<(String, String)> = Vec::new();
    let mut missing = Vec::new();
    for p in &recovered.store_fnames {
        let name = p.rsplit('/').next().unwrap_or("");
        let sha = if is_sha1_hex(name) {
            Some(name.to_string())
        } else {
            by_path.get(p).cloned()
        };
        match sha {
            Some(s) if blobs.contains(&s) => wanted.push((p.clone(), s)),
            _ => missing.push(p.clone()),
        }
    }
    let task = progress.bytes(&format!("{}: filestore", recovered.db), 0);
    let mut fetched = futures_util::stream::iter(wanted)
        .map(|(p, sha)| async move { (p, fetch_blob(target, &sha, ids).await) })
        .buffer_unordered(8);
    let mut n = 0;
    while let Some((p, data)) = fetched.next().await {
        let data = data?;
        let dest = filestore::safe_join(staging, &p)?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).with_context(|| parent.display().to_string())?;
        }
        std::fs::write(&dest, &data).with_context(|| dest.display().to_string())?;
        task.inc(data.len() as u64);
        n += 1;
    }
    task.done(&format!("{n} files, {} not in any backup", missing.len()));
    Ok(missing)
}
