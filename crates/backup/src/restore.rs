//! Restore: always into a NEW database and filestore; the old one is only
//! replaced (`--swap`) after the new one fully succeeded.

use std::collections::HashMap;

use futures_util::StreamExt;
use std::path::{Path, PathBuf};

use crate::config::BackupConfig;
use crate::filestore;
use crate::hash::{random_hex, uuid4};
use crate::pg::{Pg, literal};
use crate::progress::{Progress, human_bytes};
use crate::seal::Identities;
use crate::snapshot::{IndexEntry, fetch_blob, fetch_dump, read_manifest};
use crate::target::Target;
use anyhow::{Context, Result, bail};

/// How `rampart restore` restores a snapshot.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The new database (and filestore directory) name.
    pub new_db: String,
    /// Run each installed module's data/neutralize.sql (staging copy).
    pub neutralize: bool,
    /// After success, rename the snapshot's database to `<db>_old_<time>`
    /// and the new one to the snapshot's name.
    pub swap: bool,
    /// age identity file (private key).
    pub identity: PathBuf,
}

/// Restores a snapshot; returns the name the database ended up with.
pub async fn restore(
    cfg: &BackupConfig,
    target: &Target,
    entry: &IndexEntry,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<String> {
    let ids = Identities::from_file(&opts.identity)?;
    let pg = Pg::connect(&cfg.pg, cfg.pg_bin.as_deref())?;
    let staging = prepare(&pg, &cfg.data_dir, &opts.new_db)?;
    let result = async {
        load_snapshot(
            cfg,
            &pg,
            target,
            entry,
            &ids,
            &opts.new_db,
            &staging,
            progress,
        )
        .await?;
        finish(
            cfg,
            &pg,
            &opts.new_db,
            &staging,
            opts.neutralize,
            !opts.swap,
        )
    }
    .await;
    if let Err(e) = result {
        cleanup(&pg, &opts.new_db, &staging);
        return Err(e);
    }
    if opts.swap {
        swap(&pg, &cfg.data_dir, &opts.new_db, &entry.db, progress)?;
        return Ok(entry.db.clone());
    }
    Ok(opts.new_db.clone())
}

/// Refuses an existing database or filestore; returns a staging directory
/// for the filestore beside the final one (same filesystem: rename works).
pub(crate) fn prepare(pg: &Pg, data_dir: &Path, new_db: &str) -> Result<PathBuf> {
    crate::snapshot::check_db_name(new_db)?;
    if pg.database_exists(new_db)? {
        bail!(
            "database {new_db:?} already exists: restore goes into a new database (choose another --as)"
        );
    }
    let final_dir = filestore::dir(data_dir, new_db);
    if final_dir.exists() {
        bail!(
            "{} already exists: restore goes into a new filestore",
            final_dir.display()
        );
    }
    let parent = data_dir.join("filestore");
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = parent.join(format!(".restore-{new_db}-{}", random_hex(4)));
    std::fs::create_dir(&staging).with_context(|| format!("creating {}", staging.display()))?;
    Ok(staging)
}

/// Undoes a failed restore: nothing half-made stays behind.
pub(crate) fn cleanup(pg: &Pg, new_db: &str, staging: &Path) {
    let _ = pg.drop_database(new_db);
    let _ = std::fs::remove_dir_all(staging);
}

#[allow(clippy::too_many_arguments)]
async fn load_snapshot(
    cfg: &BackupConfig,
    pg: &Pg,
    target: &Target,
    entry: &IndexEntry,
    ids: &Identities,
    new_db: &str,
    staging: &Path,
    progress: &Progress,
) -> Result<()> {
    let manifest = read_manifest(target, entry, ids).await?;
    let dump = tempfile::Builder::new()
        .prefix(".rampart-restore-")
        .tempfile_in(cfg.spool_dir())
        .context("creating a temp file")?;
    fetch_dump(target, entry, &manifest, ids, dump.path()).await?;
    progress.line(format!(
        "{new_db}: dump fetched ({}), loading",
        human_bytes(manifest.dump_bytes)
    ));
    pg.create_database(new_db, cfg.db_owner.as_deref())?;
    pg.restore_dump(new_db, dump.path(), cfg.db_owner.as_deref())?;
    drop(dump);

    let total: u64 = manifest.files.iter().map(|f| f.size).sum();
    let task = progress.bytes(&format!("{new_db}: filestore"), total);
    // Each content once (two names may share it), several in flight.
    let mut by_blob: HashMap<&str, Vec<&crate::snapshot::FileEntry>> = HashMap::new();
    for f in &manifest.files {
        by_blob.entry(f.sha1.as_str()).or_default().push(f);
    }
    let mut fetched = futures_util::stream::iter(by_blob)
        .map(|(sha1, files)| async move { (files, fetch_blob(target, sha1, ids).await) })
        .buffer_unordered(8);
    while let Some((files, data)) = fetched.next().await {
        let data = data?;
        for f in files {
            let dest = filestore::safe_join(staging, &f.path)?;
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&dest, &data).with_context(|| format!("writing {}", dest.display()))?;
            task.inc(f.size);
        }
    }
    task.done(&format!(
        "{} files, {}",
        manifest.files.len(),
        human_bytes(total)
    ));
    Ok(())
}

/// Common end of every restore (snapshot or Odoo zip): the filestore moves
/// into place, the copy gets its own identity, and is neutralized if asked.
pub(crate) fn finish(
    cfg: &BackupConfig,
    pg: &Pg,
    new_db: &str,
    staging: &Path,
    neutralize_it: bool,
    new_identity: bool,
) -> Result<()> {
    if new_identity {
        regenerate_identity(pg, new_db)?;
    }
    if neutralize_it {
        neutralize(pg, new_db, &cfg.addons_path)?;
    }
    let final_dir = filestore::dir(&cfg.data_dir, new_db);
    sync_tree(staging);
    std::fs::rename(staging, &final_dir)
        .with_context(|| format!("moving {} to {}", staging.display(), final_dir.display()))?;
    chown_tree(&final_dir, &cfg.data_dir.join("filestore"));
    Ok(())
}

fn sync_tree(dir: &Path) {
    for (rel, _) in filestore::list(dir).unwrap_or_default() {
        if let Ok(f) = std::fs::File::open(dir.join(rel)) {
            let _ = f.sync_all();
        }
    }
}

fn chown_tree(dir: &Path, like: &Path) {
    filestore::chown_like(dir, like);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            filestore::chown_like(&p, like);
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
}

/// A copy must not share the original's identity: Odoo signs sessions with
/// database.secret and reports database.uuid (ODOO-FACTS.md); Odoo does the
/// same when it restores "as a copy".
pub(crate) fn regenerate_identity(pg: &Pg, db: &str) -> Result<()> {
    let params = [
        ("database.uuid", uuid4()),
        ("database.secret", uuid4()),
        (
            "database.create_date",
            jiff::Timestamp::now()
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string(),
        ),
    ];
    let mut sql = String::from("BEGIN;\n");
    for (k, v) in &params {
        sql.push_str(&format!(
            "UPDATE ir_config_parameter SET value = {v} WHERE key = {k};\n\
             INSERT INTO ir_config_parameter (key, value) SELECT {k}, {v} \
             WHERE NOT EXISTS (SELECT 1 FROM ir_config_parameter WHERE key = {k});\n",
            k = literal(k),
            v = literal(v)
        ));
    }
    sql.push_str("COMMIT;");
    pg.query(db, &sql)
        .map(|_| ())
        .with_context(|| format!("giving {db:?} a new database.uuid and database.secret"))
}

/// Odoo's own neutralize: every installed module's data/neutralize.sql
/// found in the addons paths, in one transaction, then the flag Odoo sets.
pub(crate) fn neutralize(pg: &Pg, db: &str, addons_path: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if addons_path.is_empty() {
        bail!(
            "--neutralize needs backup.addons_path (Odoo's addons_path) to find each module's data/neutralize.sql"
        );
    }
    let modules = pg.query(
        db,
        "SELECT name FROM ir_module_module WHERE state IN ('installed', 'to upgrade', 'to remove') ORDER BY name",
    )?;
    let mut files = Vec::new();
    for row in &modules {
        let m = &row[0];
        if let Some(f) = addons_path
            .iter()
            .map(|a| a.join(m).join("data").join("neutralize.sql"))
            .find(|f| f.is_file())
        {
            files.push(f);
        }
    }
    let mut sql = String::new();
    for f in &files {
        sql.push_str(&format!("-- {}\n", f.display()));
        sql.push_str(
            &std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
        );
        sql.push_str(";\n");
    }
    sql.push_str(
        "INSERT INTO ir_config_parameter (key, value) SELECT 'database.is_neutralized', 'True' \
         WHERE NOT EXISTS (SELECT 1 FROM ir_config_parameter WHERE key = 'database.is_neutralized');\n\
         UPDATE ir_config_parameter SET value = 'True' WHERE key = 'database.is_neutralized';\n",
    );
    let tmp = tempfile::NamedTempFile::new().context("temp file")?;
    std::fs::write(tmp.path(), sql).context("temp file")?;
    pg.run_file(db, tmp.path(), true)
        .with_context(|| format!("neutralizing {db:?}"))?;
    Ok(files)
}

/// Puts the new database (and filestore) in place of `old`, keeping the
/// old one under `<old>_old_<time>`.
pub(crate) fn swap(
    pg: &Pg,
    data_dir: &Path,
    new_db: &str,
    old: &str,
    progress: &Progress,
) -> Result<()> {
    // The name comes from the target's index: never let it reach paths
    // or SQL unchecked.
    crate::snapshot::check_db_name(old)?;
    let stamp = jiff::Timestamp::now().strftime("%Y%m%d%H%M%S").to_string();
    let aside = format!("{old}_old_{stamp}");
    let old_fs = filestore::dir(data_dir, old);
    let aside_fs = filestore::dir(data_dir, &aside);
    let new_fs = filestore::dir(data_dir, new_db);
    let had_old = pg.database_exists(old)?;
    if had_old {
        pg.rename_database(old, &aside)?;
    }
    if let Err(e) = pg.rename_database(new_db, old) {
        if had_old {
            let _ = pg.rename_database(&aside, old);
        }
        return Err(e);
    }
    if old_fs.exists() {
        std::fs::rename(&old_fs, &aside_fs)
            .with_context(|| format!("moving {} aside", old_fs.display()))?;
    }
    std::fs::rename(&new_fs, &old_fs)
        .with_context(|| format!("moving {} to {}", new_fs.display(), old_fs.display()))?;
    progress.line(format!(
        "swapped: {new_db} is now {old}{}",
        if had_old {
            format!("; the previous {old} is kept as {aside}")
        } else {
            String::new()
        }
    ));
    Ok(())
}
