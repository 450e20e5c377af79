//! Drills: a backup nobody restored is a hope, so the newest snapshot of
//! each database is restored on a schedule (`[backup] drill`) or on demand
//! (`rampart backup drill`), checked, and thrown away.
//!
//! A drill, per database: verify the snapshot on the target (every object
//! present, the dump's checksum), restore it into a scratch database
//! `rampart_drill_<hex>` on the configured PostgreSQL and a scratch
//! filestore (every blob's SHA-1 checked as it comes back), hold the copy to
//! the manifest (row counts of the core tables, counted in the dump's own
//! snapshot; installed modules; filestore files; at least one user), sign
//! in through Odoo when `drill_odoo_url` is set, then drop the copy. The
//! result is written to `<state_dir>/backup-drill.json`, which the metrics
//! and the status page read.
//!
//! `verify --restore-test` is the same check without the record or login.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::BackupConfig;
use crate::filestore;
use crate::hash::random_hex;
use crate::pg::Pg;
use crate::progress::Progress;
use crate::restore::{RestoreOptions, restore};
use crate::seal::Identities;
use crate::snapshot::{
    IndexEntry, Manifest, count_rows_sql, list_snapshots, parse_counts, read_manifest, verify,
};
use crate::target::Target;
use anyhow::{Context, Result, bail};

/// The last drill, as `<state_dir>/backup-drill.json` keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DrillRecord {
    /// When it finished, RFC 3339 UTC.
    pub time: String,
    /// Whether the drill passed.
    pub ok: bool,
    /// The target restored from.
    pub target: String,
    /// The snapshots restored (or tried).
    pub snapshots: Vec<String>,
    /// What was seen, or what failed.
    pub summary: String,
    /// How long it took, in seconds.
    pub duration_secs: f64,
}

impl DrillRecord {
    /// `time`, parsed; None when it is not a valid timestamp.
    pub fn timestamp(&self) -> Option<jiff::Timestamp> {
        self.time.parse().ok()
    }
}

pub const RECORD_FILE: &str = "backup-drill.json";

/// The last drill's record, if any was kept (and it parses).
pub fn last_drill(state_dir: &Path) -> Option<DrillRecord> {
    let bytes = std::fs::read(state_dir.join(RECORD_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Runs a drill now on `target` (default the first configured one) and
/// records its result in the state dir; a failure is a record with
/// `ok: false`, not an error.
pub async fn drill(
    cfg: &BackupConfig,
    identity: &Path,
    target: Option<&str>,
    progress: &Progress,
) -> DrillRecord {
    let started = Instant::now();
    let mut snapshots = Vec::new();
    let tc = match target {
        Some(n) => cfg.target(n),
        None => cfg.targets.first(),
    };
    let target_name = tc.map(|t| t.name.clone()).unwrap_or_default();
    let r = async {
        let Some(tc) = tc else {
            bail!("no such target: add a [[backup.target]] (or check --target)");
        };
        let t = Target::open(tc).await?;
        // Oldest first: the last one of each database is its newest.
        let mut newest: BTreeMap<String, IndexEntry> = BTreeMap::new();
        for e in list_snapshots(&t).await? {
            if cfg.databases.is_empty() || cfg.databases.contains(&e.db) {
                newest.insert(e.db.clone(), e);
            }
        }
        if newest.is_empty() && !cfg.wal {
            bail!("target {:?} has no snapshot to restore", t.name);
        }
        let mut seen = Vec::new();
        for e in newest.values() {
            snapshots.push(e.id.clone());
            let s = restore_test(cfg, &t, e, identity, true, progress)
                .await
                .with_context(|| format!("snapshot {}", e.id))?;
            seen.push(format!("{}: {s}", e.id));
        }
        if cfg.wal {
            // The databases backed up, else the only one in the cluster.
            let mut dbs: Vec<Option<String>> = if cfg.databases.is_empty() {
                newest.keys().cloned().map(Some).collect()
            } else {
                cfg.databases.iter().cloned().map(Some).collect()
            };
            if dbs.is_empty() {
                dbs.push(None);
            }
            for db in dbs {
                let s = pitr_test(cfg, &t, db.as_deref(), identity, progress)
                    .await
                    .with_context(|| {
                        format!(
                            "point in time of {}",
                            db.as_deref().unwrap_or("the database")
                        )
                    })?;
                seen.push(s);
            }
        }
        Ok(seen.join("; "))
    }
    .await;
    let record = DrillRecord {
        time: jiff::Timestamp::now().to_string(),
        ok: r.is_ok(),
        target: target_name,
        snapshots,
        summary: match &r {
            Ok(s) => s.clone(),
            Err(e) => format!("{e:#}"),
        },
        duration_secs: started.elapsed().as_secs_f64(),
    };
    match &r {
        Ok(s) => tracing::info!("backup drill passed: {s}"),
        Err(e) => tracing::error!("backup drill FAILED: {e:#}"),
    }
    if let Some(dir) = &cfg.state_dir {
        let saved = serde_json::to_vec_pretty(&record)
            .map_err(anyhow::Error::from)
            .and_then(|b| {
                std::fs::create_dir_all(dir)?;
                rampart_config::atomic::write_atomic(&dir.join(RECORD_FILE), &b, 0o600)?;
                Ok(())
            });
        if let Err(e) = saved {
            tracing::error!("backup drill result not saved: {e:#}");
        }
    }
    record
}

/// Restores `entry` into a scratch database and filestore, holds the copy
/// to its manifest (and, with `login`, signs in through Odoo), drops both.
/// Returns what it saw.
pub async fn restore_test(
    cfg: &BackupConfig,
    target: &Target,
    entry: &IndexEntry,
    identity: &Path,
    login: bool,
    progress: &Progress,
) -> Result<String> {
    let ids = Identities::from_file(identity)?;
    // Presence only: the restore checks the dump's and each blob's hash.
    let report = verify(target, entry, None).await?;
    if !report.ok() {
        bail!("{}", report.problems.join("; "));
    }
    let scratch =
        tempfile::tempdir_in(cfg.spool_dir()).context("creating a scratch filestore directory")?;
    let mut c = cfg.clone();
    c.data_dir = scratch.path().to_path_buf();
    let name = format!("rampart_drill_{}", random_hex(4));
    let opts = RestoreOptions {
        new_db: name.clone(),
        neutralize: false,
        swap: false,
        identity: identity.to_path_buf(),
    };
    let restored = restore(&c, target, entry, &opts, progress).await;
    let pg = Pg::connect(&cfg.pg, cfg.pg_bin.as_deref())?;
    let checks = async {
        restored?;
        let m = read_manifest(target, entry, &ids).await?;
        let mut seen = check_copy(&pg, &name, &m, &c.data_dir)?;
        if login && let Some(url) = &cfg.drill_odoo_url {
            let (user, password) = match (&cfg.drill_login, &cfg.drill_password) {
                (Some(l), Some(p)) => (l.as_str(), p.as_str()),
                _ => bail!("drill_odoo_url needs drill_login and drill_password"),
            };
            odoo_login(url, &name, user, password).await?;
            seen.push_str(&format!(", {user} signed in through Odoo"));
        }
        Ok(seen)
    }
    .await;
    drop_scratch(&pg, &name);
    checks
}

/// With `wal = true`: the database as it was two upload intervals ago
/// (so its WAL has reached the target), through the newest base backup
/// before then and the WAL (`restore --at`), into a scratch database and
/// filestore; it must have users. Both are dropped after.
async fn pitr_test(
    cfg: &BackupConfig,
    target: &Target,
    db: Option<&str>,
    identity: &Path,
    progress: &Progress,
) -> Result<String> {
    let scratch =
        tempfile::tempdir_in(cfg.spool_dir()).context("creating a scratch filestore directory")?;
    let mut c = cfg.clone();
    c.data_dir = scratch.path().to_path_buf();
    let name = format!("rampart_drill_{}", random_hex(4));
    let ago = jiff::SignedDuration::try_from(cfg.wal_upload_interval.get() * 2)
        .context("wal_upload_interval")?;
    let at = jiff::Timestamp::now()
        .checked_sub(ago)
        .context("wal_upload_interval")?;
    let opts = crate::wal::PitrOptions {
        at,
        db: db.map(str::to_owned),
        new_db: name.clone(),
        neutralize: false,
        swap: false,
        identity: identity.to_path_buf(),
        exe: std::env::current_exe().context("the rampart executable (for restore_command)")?,
    };
    let restored = crate::wal::restore_at(&c, target, &opts, progress).await;
    let pg = Pg::connect(&cfg.pg, cfg.pg_bin.as_deref())?;
    let checked = (|| {
        let report = restored?;
        let users: u64 = pg
            .query_one(&name, "SELECT count(*) FROM res_users")?
            .parse()
            .unwrap_or(0);
        if users == 0 {
            bail!("the database recovered to {at} has no res_users row");
        }
        Ok(format!(
            "point in time {at} from base backup {}: {users} users{}",
            report.base_backup,
            if report.missing_files.is_empty() {
                String::new()
            } else {
                format!(", {} filestore files missing", report.missing_files.len())
            }
        ))
    })();
    drop_scratch(&pg, &name);
    checked
}

/// Drops a drill's scratch database, whatever happened to it.
fn drop_scratch(pg: &Pg, name: &str) {
    if pg.database_exists(name).unwrap_or(true)
        && let Err(e) = pg.drop_database(name)
    {
        tracing::error!("drill: could not drop the scratch database {name}: {e:#}");
    }
}

/// Sanity queries on the restored copy against the manifest.
fn check_copy(pg: &Pg, db: &str, m: &Manifest, data_dir: &Path) -> Result<String> {
    let users: u64 = pg
        .query_one(db, "SELECT count(*) FROM res_users")?
        .parse()
        .unwrap_or(0);
    if users == 0 {
        bail!("the restored database has no res_users row");
    }
    let modules: usize = pg
        .query_one(
            db,
            "SELECT count(*) FROM ir_module_module WHERE state = 'installed'",
        )?
        .parse()
        .unwrap_or(0);
    if modules != m.module_count {
        bail!(
            "{modules} installed modules restored, the manifest says {}",
            m.module_count
        );
    }
    let tables: Vec<String> = m.row_counts.keys().cloned().collect();
    let counts = match count_rows_sql(&tables) {
        Some(sql) => parse_counts(pg.query(db, &sql)?)?,
        None => BTreeMap::new(),
    };
    for (t, want) in &m.row_counts {
        let got = counts.get(t).copied().unwrap_or(0);
        if got != *want {
            bail!("{t}: {got} rows restored, the manifest says {want}");
        }
    }
    let files = filestore::list(&filestore::dir(data_dir, db))?.len();
    if files != m.files.len() {
        bail!(
            "{files} filestore files restored, the manifest says {}",
            m.files.len()
        );
    }
    let rows: u64 = m.row_counts.values().sum();
    Ok(format!(
        "{users} users, {modules} installed modules, {files} filestore files, {} tables ({rows} rows) as counted",
        m.row_counts.len()
    ))
}

/// JSON-RPC `/web/session/authenticate` on the scratch database: Odoo
/// answers HTTP 200 either way, a failure with an `error` object.
async fn odoo_login(url: &str, db: &str, login: &str, password: &str) -> Result<()> {
    let endpoint = format!("{}/web/session/authenticate", url.trim_end_matches('/'));
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "method": "call",
        "id": 1,
        "params": {"db": db, "login": login, "password": password},
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("HTTP client")?;
    let resp = client
        .post(&endpoint)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("login check: POST {endpoint}"))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .with_context(|| format!("login check: reading the answer of {endpoint}"))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("login check: {endpoint} answered {status}, not JSON-RPC"))?;
    if let Some(e) = v.get("error") {
        let msg = e
            .pointer("/data/message")
            .or_else(|| e.get("message"))
            .and_then(|m| m.as_str())
            .unwrap_or("error");
        bail!("login check: Odoo refused {login:?} on the restored copy: {msg}");
    }
    match v.pointer("/result/uid") {
        Some(uid) if uid.is_u64() => Ok(()),
        _ => bail!("login check: {endpoint} answered {status} without a uid"),
    }
}

/// Runs drills on `cfg.drill` until `shutdown` resolves (for `rampart
/// serve`); needs `drill_identity`. Returns at once without a schedule.
pub async fn run_drills(cfg: &BackupConfig, shutdown: impl std::future::Future<Output = ()>) {
    let Some(spec) = &cfg.drill else { return };
    let schedule: crate::Schedule = match spec.parse() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("backup drills not started: {e:#}");
            return;
        }
    };
    let Some(identity) = cfg.drill_identity.clone() else {
        tracing::error!("backup drills not started: [backup] drill needs drill_identity");
        return;
    };
    tokio::pin!(shutdown);
    loop {
        let now = jiff::Zoned::now();
        let next = match schedule.next_after(&now) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("backup drills stopped: {e:#}");
                return;
            }
        };
        tracing::info!(next = %next, "next backup drill");
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(now.duration_until(&next).unsigned_abs()) => {}
        }
        // On a thread of its own: a drill is mostly waiting on psql and
        // pg_restore, and the restore's future is not Send.
        let (c, id) = (cfg.clone(), identity.clone());
        let ran = tokio::task::spawn_blocking(move || {
            crate::block_on(drill(&c, &id, None, &Progress::quiet()))
        })
        .await;
        if let Err(e) = ran {
            tracing::error!("backup drill: {e}");
        }
    }
}
