//! Snapshots: the objects on a target and what they mean.
//!
//! The dump is stored whole, not chunked: pg_dump -Fc compresses each
//! table, so chunk-level deduplication between days would only work with
//! compression off, and an Odoo database is usually small next to its
//! filestore, which is where the incremental saving is. One object per
//! dump also keeps restore a single stream and the fault model simple.
//!
//! The index entry (plaintext, `index/<id>.json`) is written last; it is
//! what makes a snapshot exist. It reveals the database name, the time,
//! object sizes and which blob names (SHA-1 of file contents, already
//! visible as object names) the snapshot uses: enough to list, verify
//! presence and prune without the private key. The manifest, with file
//! names, versions, modules and the dump checksum, is encrypted.
//!
//! [`writer`] takes snapshots; [`reader`] lists, opens and verifies them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use anyhow::{Context, Result, bail};

mod reader;
mod writer;

pub use reader::{
    VerifyReport, fetch_blob, fetch_dump, find_snapshot, list_snapshots, read_manifest,
    snapshots_json, verify,
};
pub use writer::{BackupOptions, BackupReport, TargetOutcome, backup};

pub const FORMAT: u32 = 1;

/// `index/<id>.json`: plaintext, written last.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexEntry {
    /// The layout version (`FORMAT`).
    pub format: u32,
    /// The snapshot's id.
    pub id: String,
    /// The database snapshot.
    pub db: String,
    /// RFC 3339, UTC.
    pub time: String,
    /// Sealed size of `data/<id>.dump`.
    pub dump_size: u64,
    /// SHA-1 names of every blob the snapshot uses (`blobs/<sha1>`).
    pub blobs: Vec<String>,
    /// Plaintext bytes of the filestore in this snapshot.
    pub filestore_bytes: u64,
}

impl IndexEntry {
    /// Where the snapshot's dump is on the target.
    pub fn dump_object(&self) -> String {
        format!("data/{}.dump", self.id)
    }
    /// Where the snapshot's manifest is on the target.
    pub fn manifest_object(&self) -> String {
        format!("data/{}.manifest", self.id)
    }
    /// Where this entry is on the target.
    pub fn index_object(&self) -> String {
        format!("index/{}.json", self.id)
    }
    /// `time`, parsed.
    pub fn timestamp(&self) -> Result<jiff::Timestamp> {
        self.time
            .parse()
            .with_context(|| format!("snapshot {}: bad time {:?}", self.id, self.time))
    }
}

/// `data/<id>.manifest`: encrypted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// The layout version (`FORMAT`).
    pub format: u32,
    /// The snapshot's id (the index entry's).
    pub id: String,
    /// The database snapshot.
    pub db: String,
    /// RFC 3339, UTC.
    pub time: String,
    /// e.g. "18.0", from base's latest_version; None if not an Odoo database.
    pub odoo_version: Option<String>,
    /// PostgreSQL server version, "15.18"-style.
    pub pg_version: String,
    /// Installed modules: name → latest_version (what Odoo's manifest.json has).
    pub modules: BTreeMap<String, String>,
    /// How many modules are installed.
    pub module_count: usize,
    /// SHA-256 of the plaintext pg_dump -Fc output, and its size.
    pub dump_sha256: String,
    /// Plaintext size of the dump in bytes.
    pub dump_bytes: u64,
    /// Every filestore file in the snapshot.
    pub files: Vec<FileEntry>,
    /// Rows in each of [`CORE_TABLES`] present, counted in the dump's own
    /// snapshot; what a drill expects after restoring (empty in snapshots
    /// taken before this was recorded).
    #[serde(default)]
    pub row_counts: BTreeMap<String, u64>,
}

/// Tables whose row counts a snapshot records and a drill checks: the
/// records an ERP cannot lose (those that exist in the database).
pub const CORE_TABLES: &[&str] = &[
    "res_users",
    "res_partner",
    "res_company",
    "ir_module_module",
    "ir_attachment",
    "account_move",
    "account_move_line",
    "sale_order",
    "purchase_order",
    "stock_move",
    "mail_message",
];

/// `SELECT name, count(*)` over those of [`CORE_TABLES`] in `present`.
pub(crate) fn count_rows_sql(present: &[String]) -> Option<String> {
    let parts: Vec<String> = CORE_TABLES
        .iter()
        .filter(|t| present.iter().any(|p| p == *t))
        .map(|t| format!("SELECT '{t}', count(*) FROM public.\"{t}\""))
        .collect();
    (!parts.is_empty()).then(|| parts.join(" UNION ALL ") + ";")
}

/// Which of [`CORE_TABLES`] exist (plain tables in `public`).
pub(crate) fn core_tables_sql() -> String {
    let names: Vec<String> = CORE_TABLES.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname IN ({});",
        names.join(", ")
    )
}

/// Parses `name, count` rows.
pub(crate) fn parse_counts(rows: Vec<Vec<String>>) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for r in rows {
        let (Some(name), Some(n)) = (r.first(), r.get(1)) else {
            bail!("row count: unexpected row {r:?}");
        };
        let n: u64 = n
            .parse()
            .with_context(|| format!("row count of {name}: {n:?}"))?;
        out.insert(name.clone(), n);
    }
    Ok(out)
}

/// One filestore file: its path under filestore/<db>/ and the blob holding
/// it. `sha1` differs from the file name when a file's name is not the
/// hash of its content (copied by hand, or damaged): stored by real hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    pub path: String,
    pub sha1: String,
    pub size: u64,
}

/// Odoo allows these in database names; ids and object names rely on it.
pub(crate) fn check_db_name(db: &str) -> Result<()> {
    if db.is_empty()
        || !db
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        bail!("database name {db:?}: only letters, digits, '_', '.' and '-' are supported");
    }
    Ok(())
}
/// "18.0.1.3" → "18.0"; "saas~17.4.1.0" → "saas~17.4".
pub fn odoo_series(latest_version: &str) -> String {
    latest_version
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odoo_series_from_latest_version() {
        assert_eq!(odoo_series("18.0.1.3"), "18.0");
        assert_eq!(odoo_series("saas~17.4.1.0"), "saas~17.4");
    }

    #[test]
    fn database_names_are_checked() {
        assert!(check_db_name("erp_prod-2.x").is_ok());
        assert!(check_db_name("a/b").is_err());
        assert!(check_db_name("").is_err());
    }
}
