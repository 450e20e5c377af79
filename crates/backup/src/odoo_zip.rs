//! Odoo's own backup zip, both ways, so backups move to and from Odoo's
//! database manager and hosted Odoo: `dump.sql` (plain SQL, first in the
//! zip), `filestore/` and `manifest.json`.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::config::BackupConfig;
use crate::filestore;
use crate::pg::Pg;
use crate::progress::{Progress, human_bytes};
use crate::restore::{cleanup, finish, prepare};
use crate::seal::Identities;
use crate::snapshot::{IndexEntry, fetch_blob, fetch_dump, read_manifest};
use crate::target::Target;
use anyhow::{Context, Result, bail};

/// Writes a snapshot as an Odoo backup zip at `out` (temp file + rename).
pub async fn export_odoo_zip(
    cfg: &BackupConfig,
    target: &Target,
    entry: &IndexEntry,
    identity: &Path,
    out: &Path,
    progress: &Progress,
) -> Result<()> {
    let ids = Identities::from_file(identity)?;
    let m = read_manifest(target, entry, &ids).await?;
    let work = tempfile::tempdir().context("temp dir")?;
    let dump = work.path().join("dump.custom");
    let sql = work.path().join("dump.sql");
    fetch_dump(target, entry, &m, &ids, &dump).await?;
    Pg::tools(cfg.pg_bin.as_deref()).dump_to_sql(&dump, &sql)?;
    std::fs::remove_file(&dump).ok();

    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".rampart-zip-")
        .tempfile_in(parent)
        .with_context(|| format!("creating a temp file in {}", parent.display()))?;
    let mut zip = zip::ZipWriter::new(tmp.as_file());
    let deflate = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    // dump.sql first: Odoo's own zips have it first, and tools that stream
    // the zip find the database before the files.
    zip.start_file("dump.sql", deflate).context("zip")?;
    let mut f = std::fs::File::open(&sql).context("dump.sql")?;
    std::io::copy(&mut f, &mut zip).context("writing dump.sql into the zip")?;
    let total: u64 = m.files.iter().map(|f| f.size).sum();
    let task = progress.bytes(&format!("{}: zip filestore", entry.db), total);
    for fe in &m.files {
        filestore::safe_join(Path::new("/"), &fe.path)?;
        let data = fetch_blob(target, &fe.sha1, &ids).await?;
        zip.start_file(format!("filestore/{}", fe.path), deflate)
            .context("zip")?;
        zip.write_all(&data).context("zip")?;
        task.inc(fe.size);
    }
    task.done(&format!("{} files, {}", m.files.len(), human_bytes(total)));
    let series = m.odoo_version.clone().unwrap_or_default();
    let mut parts = series.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let manifest = json!({
        "odoo_dump": "1",
        "db_name": m.db,
        "version": series,
        "version_info": [major, minor, 0, "final", 0, ""],
        "major_version": series,
        "pg_version": m.pg_version,
        "modules": m.modules,
    });
    zip.start_file("manifest.json", deflate).context("zip")?;
    zip.write_all(
        serde_json::to_string_pretty(&manifest)
            .context("json")?
            .as_bytes(),
    )
    .context("zip")?;
    zip.finish().context("finishing the zip")?;
    tmp.as_file().sync_all().context("syncing the zip")?;
    tmp.persist(out)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Restores an Odoo backup zip into a new database, as Odoo's database
/// manager does (`psql -f dump.sql`, filestore moved into place), and gives
/// the copy its own identity.
pub async fn import_odoo_zip(
    cfg: &BackupConfig,
    zip_path: &Path,
    new_db: &str,
    neutralize: bool,
    progress: &Progress,
) -> Result<()> {
    let file =
        std::fs::File::open(zip_path).with_context(|| format!("opening {}", zip_path.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a zip file", zip_path.display()))?;
    if zip.by_name("dump.sql").is_err() {
        bail!(
            "{} has no dump.sql: not an Odoo backup zip",
            zip_path.display()
        );
    }
    let pg = Pg::connect(&cfg.pg, cfg.pg_bin.as_deref())?;
    let staging = prepare(&pg, &cfg.data_dir, new_db)?;
    let result = (|| {
        let work = tempfile::tempdir().context("temp dir")?;
        let sql = work.path().join("dump.sql");
        {
            let mut entry = zip.by_name("dump.sql").context("dump.sql")?;
            let mut out = std::fs::File::create(&sql).context("temp file")?;
            std::io::copy(&mut entry, &mut out).context("extracting dump.sql")?;
        }
        pg.create_database(new_db, cfg.db_owner.as_deref())?;
        pg.run_file_lenient(new_db, &sql)?;
        if pg.query_one(new_db, "SELECT to_regclass('ir_module_module') IS NOT NULL")? != "t" {
            bail!("dump.sql did not create Odoo's tables (ir_module_module is missing)");
        }
        let mut files = 0usize;
        let mut bytes = 0u64;
        for i in 0..zip.len() {
            let mut e = zip.by_index(i).context("zip entry")?;
            let name = e.name().context("zip entry name")?;
            let Some(rel) = name.strip_prefix("filestore/").map(str::to_string) else {
                continue;
            };
            if e.is_dir() || rel.is_empty() {
                continue;
            }
            let dest = filestore::safe_join(&staging, &rel)?;
            if let Some(p) = dest.parent() {
                std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
            }
            let mut out = std::fs::File::create(&dest)
                .with_context(|| format!("writing {}", dest.display()))?;
            // Streamed: attachments can be large.
            bytes += std::io::copy(&mut e, &mut out)
                .with_context(|| format!("extracting {rel} to {}", dest.display()))?;
            files += 1;
        }
        progress.line(format!(
            "{new_db}: {files} filestore files, {}",
            human_bytes(bytes)
        ));
        finish(cfg, &pg, new_db, &staging, neutralize, true)
    })();
    if let Err(e) = result {
        cleanup(&pg, new_db, &staging);
        return Err(e);
    }
    Ok(())
}
