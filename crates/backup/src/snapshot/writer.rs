//! Taking snapshots: dump, filestore blobs, manifest, index entry last.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    FORMAT, FileEntry, IndexEntry, Manifest, check_db_name, core_tables_sql, count_rows_sql,
    odoo_series, parse_counts,
};
use crate::config::BackupConfig;
use crate::filestore;
use crate::hash::{HashingReader, is_sha1_hex, random_hex, sha1_hex};
use crate::hash_cache::{HashCache, Stat, now_ns};
use crate::pg::Pg;
use crate::progress::{Progress, human_bytes};
use crate::seal::Recipients;
use crate::target::{Payload, Target};
use anyhow::{Context, Error, Result, bail};

/// Files above this are sealed through a spool file instead of memory.
const IN_MEMORY_LIMIT: u64 = 64 * 1024 * 1024;

/// Blob uploads in flight at once (round trips to a remote target
/// overlap), and the sealed bytes they may hold in memory together.
const MAX_UPLOADS: usize = 16;
const MAX_UPLOAD_BYTES: u64 = 256 * 1024 * 1024;
/// How `rampart backup` runs, beyond the config.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Override `[backup] databases`.
    pub databases: Vec<String>,
    /// Only these targets (names); empty = all.
    pub targets: Vec<String>,
    /// Read and hash every filestore file, trusting no cached hash.
    pub rehash: bool,
}

/// What one backup run did on one target.
#[derive(Debug, Clone, Default)]
pub struct TargetOutcome {
    /// The target's name.
    pub target: String,
    /// Snapshot ids completed on this target.
    pub snapshots: Vec<String>,
    /// Sealed bytes uploaded (blobs already there are not counted).
    pub bytes_new: u64,
    /// Why the target failed, when it did.
    pub error: Option<String>,
}

/// What one `rampart backup` run did.
#[derive(Debug, Clone, Default)]
pub struct BackupReport {
    /// Each target's outcome.
    pub targets: Vec<TargetOutcome>,
    /// Databases that could not be snapshot at all (pg_dump failed…).
    pub db_errors: Vec<String>,
    /// Bytes read from the databases and filestores.
    pub bytes_read: u64,
    /// Filestore files read and hashed, and taken from the hash cache.
    pub files_hashed: usize,
    /// Filestore files whose hash came from the cache.
    pub files_cached: usize,
    /// How long the run took.
    pub duration: Duration,
}

impl BackupReport {
    /// True when every database was snapshot on every target.
    pub fn ok(&self) -> bool {
        self.db_errors.is_empty() && self.targets.iter().all(|t| t.error.is_none())
    }
    /// Sealed bytes uploaded, all targets together.
    pub fn bytes_new(&self) -> u64 {
        self.targets.iter().map(|t| t.bytes_new).sum()
    }
    /// One line for the command's output.
    pub fn summary(&self) -> String {
        let snaps: usize = self.targets.iter().map(|t| t.snapshots.len()).sum();
        let failed: Vec<&str> = self
            .targets
            .iter()
            .filter(|t| t.error.is_some())
            .map(|t| t.target.as_str())
            .collect();
        let mut s = format!(
            "{snaps} snapshot(s) stored; read {} ({} files hashed, {} unchanged), new bytes stored {}, took {:.1}s",
            human_bytes(self.bytes_read),
            self.files_hashed,
            self.files_cached,
            human_bytes(self.bytes_new()),
            self.duration.as_secs_f64()
        );
        if !failed.is_empty() {
            s.push_str(&format!("; FAILED targets: {}", failed.join(", ")));
        }
        if !self.db_errors.is_empty() {
            s.push_str(&format!("; FAILED databases: {}", self.db_errors.len()));
        }
        s
    }
}

/// A target during a run: what it holds, and whether it has failed.
struct Live {
    /// None when the target could not even be opened.
    target: Option<Arc<Target>>,
    /// Blobs it has, or that are on their way to it.
    blobs: HashSet<String>,
    outcome: TargetOutcome,
}

impl Live {
    fn alive(&self) -> bool {
        self.outcome.error.is_none()
    }
    fn fail(&mut self, e: Error, progress: &Progress) {
        progress.line(format!("target {}: FAILED: {e:#}", self.outcome.target));
        self.outcome.error = Some(format!("{e:#}"));
    }
}

/// Takes one snapshot of each database and writes it to every target.
/// A failing target is reported and skipped; the others carry on.
pub async fn backup(
    cfg: &BackupConfig,
    opts: &BackupOptions,
    progress: &Progress,
) -> Result<BackupReport> {
    let started = Instant::now();
    let recipients = Recipients::parse(&cfg.recipients, cfg.zstd_level)?;
    let configs: Vec<_> = cfg
        .targets
        .iter()
        .filter(|t| opts.targets.is_empty() || opts.targets.contains(&t.name))
        .collect();
    if configs.is_empty() {
        bail!("no backup target: add a [[backup.target]] (or check --target)");
    }
    for name in &opts.targets {
        if cfg.target(name).is_none() {
            bail!("no target named {name:?} in [[backup.target]]");
        }
    }
    crate::spool::clear_stale(&cfg.spool_dir(), &[".rampart-dump-", ".rampart-blob-"]);
    let pg = Pg::connect(&cfg.pg, cfg.pg_bin.as_deref())?;
    pg.check_dump_version()?;
    let databases = if !opts.databases.is_empty() {
        opts.databases.clone()
    } else if !cfg.databases.is_empty() {
        cfg.databases.clone()
    } else {
        pg.odoo_databases()?
    };
    if databases.is_empty() {
        bail!("no database to back up (backup.databases is empty and none has Odoo's tables)");
    }

    let mut live = Vec::new();
    for tc in configs {
        let mut outcome = TargetOutcome {
            target: tc.name.clone(),
            ..Default::default()
        };
        let opened = async {
            let t = Target::open(tc).await?;
            let blobs = t.list("blobs").await?.into_iter().map(|o| o.name).collect();
            Ok::<_, Error>((t, blobs))
        }
        .await;
        match opened {
            Ok((target, blobs)) => live.push(Live {
                target: Some(Arc::new(target)),
                blobs,
                outcome,
            }),
            Err(e) => {
                progress.line(format!("target {}: FAILED: {e:#}", tc.name));
                outcome.error = Some(format!("{e:#}"));
                live.push(Live {
                    target: None,
                    blobs: HashSet::new(),
                    outcome,
                });
            }
        }
    }

    let mut report = BackupReport::default();
    for db in &databases {
        if !live.iter().any(Live::alive) {
            break;
        }
        match snapshot_db(cfg, opts, &pg, &recipients, db, &mut live, progress).await {
            Ok(read) => {
                report.bytes_read += read.bytes;
                report.files_hashed += read.hashed;
                report.files_cached += read.cached;
            }
            Err(e) => {
                progress.line(format!("{db}: FAILED: {e:#}"));
                report.db_errors.push(format!("{db}: {e:#}"));
            }
        }
    }
    report.targets = live.into_iter().map(|l| l.outcome).collect();
    report.duration = started.elapsed();
    Ok(report)
}
/// What one database's snapshot read: bytes, and files hashed or
/// taken from the hash cache.
struct DbRead {
    bytes: u64,
    hashed: usize,
    cached: usize,
}

async fn snapshot_db(
    cfg: &BackupConfig,
    opts: &BackupOptions,
    pg: &Pg,
    recipients: &Recipients,
    db: &str,
    live: &mut [Live],
    progress: &Progress,
) -> Result<DbRead> {
    check_db_name(db)?;
    if !pg.database_exists(db)? {
        bail!("database {db:?} does not exist");
    }
    let now = jiff::Timestamp::now();
    let id = format!("{}-{db}-{}", now.strftime("%Y%m%dT%H%M%SZ"), random_hex(3));
    let time = now.to_string();

    // Versions first, inside the same moment as the dump as near as we can.
    let pg_version = pg.server_version()?;
    let modules: BTreeMap<String, String> = pg
        .query(
            db,
            "SELECT name, coalesce(latest_version, '') FROM ir_module_module \
             WHERE state = 'installed' ORDER BY name",
        )
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| Some((r.first()?.clone(), r.get(1).cloned().unwrap_or_default())))
        .collect();
    let odoo_version = modules.get("base").map(|v| odoo_series(v));

    // 1. The dump, spooled sealed: one encryption for every target.
    let spool = tempfile::Builder::new()
        .prefix(".rampart-dump-")
        .tempfile_in(cfg.spool_dir())
        .with_context(|| format!("creating a spool file in {}", cfg.spool_dir().display()))?;
    let dump_task = progress.bytes(&format!("{db}: pg_dump"), 0);
    let mut row_counts = BTreeMap::new();
    let (dump_sha256, dump_bytes) = {
        let stderr_file = tempfile::tempfile().context("temp file")?;
        let stderr_read = stderr_file.try_clone().context("temp file")?;
        // Row counts in the dump's own snapshot, so a drill can hold a
        // restored copy to them exactly however busy the database is.
        let held = pg.hold_snapshot(db).and_then(|mut h| {
            let present: Vec<String> = h
                .query(&core_tables_sql())?
                .into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect();
            let counts = match count_rows_sql(&present) {
                Some(sql) => parse_counts(h.query(&sql)?)?,
                None => BTreeMap::new(),
            };
            Ok((h, counts))
        });
        let held = match held {
            Ok((h, counts)) => {
                row_counts = counts;
                Some(h)
            }
            Err(e) => {
                tracing::warn!("{db}: row counts not recorded (no exported snapshot): {e:#}");
                None
            }
        };
        let mut child = pg.spawn_dump(db, held.as_ref().map(|h| h.id.as_str()), stderr_file)?;
        let stdout = child.stdout.take().expect("piped");
        let mut hashing = HashingReader::sha256(stdout);
        let sealed = recipients.seal(&mut hashing, spool.as_file());
        let status = child.wait().context("waiting for pg_dump")?;
        drop(held);
        if !status.success() {
            let mut err = String::new();
            let mut r = stderr_read;
            use std::io::Seek;
            let _ = r.seek(std::io::SeekFrom::Start(0));
            let _ = r.read_to_string(&mut err);
            bail!("pg_dump of {db:?} failed ({status}): {}", err.trim());
        }
        sealed.with_context(|| format!("spooling the dump of {db:?}"))?;
        spool
            .as_file()
            .sync_all()
            .context("syncing the spool file")?;
        hashing.finish()
    };
    let dump_size = spool.as_file().metadata().context("spool")?.len();
    dump_task.done(&format!(
        "{} dumped, {} sealed",
        human_bytes(dump_bytes),
        human_bytes(dump_size)
    ));
    let mut bytes_read = dump_bytes;

    // 2. The filestore: each file once per target, by content hash.
    let root = filestore::dir(&cfg.data_dir, db);
    let files = filestore::list(&root)?;
    let total: u64 = files.iter().map(|f| f.1).sum();
    let task = progress.bytes(&format!("{db}: filestore"), total);
    let mut entries = Vec::with_capacity(files.len());
    let mut new_blobs = 0usize;
    let mut uploads = tokio::task::JoinSet::new();
    let mut in_flight_bytes = 0u64;
    let mut cache = HashCache::open(
        cfg.state_dir.as_deref(),
        db,
        &root,
        cfg.rehash_days,
        opts.rehash,
    );
    let (mut hashed, mut cached) = (0usize, 0usize);
    for (rel, _) in &files {
        let path = root.join(rel);
        let before = stat(&path)?;
        let missing_from = |sha1: &str| -> Vec<usize> {
            (0..live.len())
                .filter(|&i| live[i].alive() && !live[i].blobs.contains(sha1))
                .collect()
        };
        // A remembered hash only ever names a blob every target has: when
        // one must be uploaded, the file is read and hashed again.
        if let Some(sha1) = cache.lookup(rel, &before)
            && missing_from(sha1).is_empty()
        {
            entries.push(FileEntry {
                path: rel.clone(),
                sha1: sha1.to_string(),
                size: before.size,
            });
            cache.keep(rel);
            cached += 1;
            task.inc(before.size);
            continue;
        }
        let seen = now_ns();
        let (sha1, size, data) = read_and_hash(&path)?;
        cache.record(rel, &before, &stat(&path)?, &sha1, seen);
        hashed += 1;
        bytes_read += size;
        task.inc(size);
        let name_hash = rel.rsplit('/').next().unwrap_or("");
        if name_hash != sha1 && is_sha1_hex(name_hash) {
            tracing::warn!(file = %path.display(), real = %sha1, "filestore file name is not its SHA-1; stored by its real hash");
        }
        entries.push(FileEntry {
            path: rel.clone(),
            sha1: sha1.clone(),
            size,
        });
        let missing = missing_from(&sha1);
        if missing.is_empty() {
            continue;
        }
        let sealed = Arc::new(seal_file(recipients, &path, data, cfg)?);
        let n = sealed.size();
        for i in missing {
            // Claimed now: the same content under another name is not sent twice.
            live[i].blobs.insert(sha1.clone());
            let target = live[i].target.clone().expect("alive");
            let sealed = sealed.clone();
            let object = format!("blobs/{sha1}");
            in_flight_bytes += n;
            uploads.spawn(async move { (i, n, target.put(&object, sealed.payload()).await) });
        }
        while !uploads.is_empty()
            && (uploads.len() >= MAX_UPLOADS || in_flight_bytes > MAX_UPLOAD_BYTES)
        {
            let done = uploads.join_next().await.expect("not empty");
            in_flight_bytes -= settle(done, live, &mut new_blobs, progress);
        }
    }
    while let Some(done) = uploads.join_next().await {
        settle(done, live, &mut new_blobs, progress);
    }
    task.done(&format!(
        "{} files, {}, {hashed} read, {cached} unchanged (hash cache), {new_blobs} new blob upload(s)",
        files.len(),
        human_bytes(total)
    ));
    if let Err(e) = cache.save() {
        tracing::warn!("hash cache not saved (the next run reads every file): {e:#}");
    }

    // 3. The dump, then the manifest, then the index entry: in that order,
    // so that a snapshot is listed only when everything it needs is there.
    let manifest = Manifest {
        format: FORMAT,
        id: id.clone(),
        db: db.to_string(),
        time: time.clone(),
        odoo_version,
        pg_version,
        module_count: modules.len(),
        modules,
        dump_sha256,
        dump_bytes,
        files: entries,
        row_counts,
    };
    let sealed_manifest =
        recipients.seal_bytes(&serde_json::to_vec(&manifest).context("manifest")?)?;
    let mut blobs: Vec<String> = manifest.files.iter().map(|f| f.sha1.clone()).collect();
    blobs.sort();
    blobs.dedup();
    let index = IndexEntry {
        format: FORMAT,
        id: id.clone(),
        db: db.to_string(),
        time,
        dump_size,
        blobs,
        filestore_bytes: total,
    };
    let index_json = serde_json::to_vec_pretty(&index).context("index")?;
    for l in live.iter_mut().filter(|l| l.alive()) {
        let t = l.target.as_ref().expect("alive");
        let r = async {
            t.put(&index.dump_object(), Payload::File(spool.path()))
                .await?;
            t.put(&index.manifest_object(), Payload::Bytes(&sealed_manifest))
                .await?;
            if !t
                .put(&index.index_object(), Payload::Bytes(&index_json))
                .await?
            {
                bail!("{} already exists", index.index_object());
            }
            Ok::<_, Error>(())
        }
        .await;
        match r {
            Ok(()) => {
                l.outcome.bytes_new +=
                    dump_size + sealed_manifest.len() as u64 + index_json.len() as u64;
                l.outcome.snapshots.push(id.clone());
                progress.line(format!("target {}: snapshot {id} stored", l.outcome.target));
            }
            Err(e) => l.fail(e, progress),
        }
    }
    Ok(DbRead {
        bytes: bytes_read,
        hashed,
        cached,
    })
}

type Upload = (usize, u64, Result<bool>);

/// Books one finished upload; returns its size (no longer in flight).
fn settle(
    done: std::result::Result<Upload, tokio::task::JoinError>,
    live: &mut [Live],
    new_blobs: &mut usize,
    progress: &Progress,
) -> u64 {
    let (i, n, r) = done.expect("an upload task panicked");
    match r {
        Ok(true) => {
            live[i].outcome.bytes_new += n;
            *new_blobs += 1;
        }
        Ok(false) => {}
        // Only the first error of a target is its story.
        Err(e) if live[i].alive() => live[i].fail(e, progress),
        Err(_) => {}
    }
    n
}
fn stat(path: &Path) -> Result<Stat> {
    let m =
        std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Stat::of(&m))
}

/// Reads a file, hashing it; keeps the bytes when small enough to seal
/// from memory (most attachments), else they are re-read when sealing.
fn read_and_hash(path: &Path) -> Result<(String, u64, Option<Vec<u8>>)> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len <= IN_MEMORY_LIMIT {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let h = sha1_hex(&data);
        let n = data.len() as u64;
        return Ok((h, n, Some(data)));
    }
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut r = HashingReader::sha1(f);
    std::io::copy(&mut r, &mut std::io::sink())
        .with_context(|| format!("reading {}", path.display()))?;
    let (h, n) = r.finish();
    Ok((h, n, None))
}

enum Sealed {
    Bytes(Vec<u8>),
    File(tempfile::NamedTempFile),
}

impl Sealed {
    fn payload(&self) -> Payload<'_> {
        match self {
            Sealed::Bytes(b) => Payload::Bytes(b),
            Sealed::File(f) => Payload::File(f.path()),
        }
    }
    fn size(&self) -> u64 {
        self.payload().size()
    }
}

fn seal_file(
    recipients: &Recipients,
    path: &Path,
    data: Option<Vec<u8>>,
    cfg: &BackupConfig,
) -> Result<Sealed> {
    match data {
        Some(d) => Ok(Sealed::Bytes(recipients.seal_bytes(&d)?)),
        None => {
            let spool = tempfile::Builder::new()
                .prefix(".rampart-blob-")
                .tempfile_in(cfg.spool_dir())
                .context("creating a spool file")?;
            let f =
                std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
            recipients.seal(f, spool.as_file())?;
            Ok(Sealed::File(spool))
        }
    }
}
