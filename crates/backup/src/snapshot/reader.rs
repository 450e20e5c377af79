//! Reading snapshots: listing, finding, opening and verifying them.

use std::path::Path;

use super::{IndexEntry, Manifest};
use crate::hash::{HashingReader, sha1_hex};
use crate::seal::Identities;
use crate::target::Target;
use anyhow::{Context, Result, bail};

/// Every complete snapshot on a target, oldest first.
pub async fn list_snapshots(target: &Target) -> Result<Vec<IndexEntry>> {
    let mut out = Vec::new();
    for o in target.list("index").await? {
        let name = o.name;
        let Some(id) = name.strip_suffix(".json") else {
            continue;
        };
        let bytes = target.get(&format!("index/{name}")).await?;
        let entry: IndexEntry = serde_json::from_slice(&bytes)
            .with_context(|| format!("target {:?}: index/{name}", target.name))?;
        if entry.id != id {
            bail!(
                "target {:?}: index/{name} names snapshot {:?}",
                target.name,
                entry.id
            );
        }
        out.push(entry);
    }
    // By instant, not by text: RFC 3339 strings with and without a
    // fraction of a second do not sort as text.
    let mut keyed = Vec::with_capacity(out.len());
    for e in out {
        keyed.push((e.timestamp()?, e));
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
    Ok(keyed.into_iter().map(|(_, e)| e).collect())
}

/// `backups list --json`: index entries with their target, the blob list
/// replaced by its length (a listing, not a manifest).
pub fn snapshots_json(list: &[(String, IndexEntry)]) -> String {
    let v: Vec<serde_json::Value> = list
        .iter()
        .map(|(t, e)| {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.remove("blobs");
                o.insert("blob_count".into(), e.blobs.len().into());
                o.insert("target".into(), t.clone().into());
            }
            v
        })
        .collect();
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// A snapshot by id, unique id prefix, or `latest` (optionally of one db).
pub async fn find_snapshot(target: &Target, spec: &str, db: Option<&str>) -> Result<IndexEntry> {
    let all = list_snapshots(target).await?;
    let mut matching: Vec<IndexEntry> = all
        .into_iter()
        .filter(|e| db.is_none_or(|d| e.db == d))
        .collect();
    if spec == "latest" {
        return matching.pop().ok_or_else(|| {
            anyhow::Error::msg(format!("target {:?} has no snapshot", target.name))
        });
    }
    if let Some(e) = matching.iter().find(|e| e.id == spec) {
        return Ok(e.clone());
    }
    let prefixed: Vec<_> = matching.iter().filter(|e| e.id.starts_with(spec)).collect();
    match prefixed.len() {
        1 => Ok(prefixed[0].clone()),
        0 => bail!(
            "target {:?} has no snapshot {spec:?} (see `rampart backups list`)",
            target.name
        ),
        n => bail!("{spec:?} matches {n} snapshots; give more of the id"),
    }
}

/// Reads and decrypts a snapshot's manifest, refusing one that names another snapshot.
pub async fn read_manifest(
    target: &Target,
    entry: &IndexEntry,
    ids: &Identities,
) -> Result<Manifest> {
    let sealed = target.get(&entry.manifest_object()).await?;
    let m: Manifest = serde_json::from_slice(&ids.open_bytes(&sealed)?)
        .with_context(|| format!("manifest of {}", entry.id))?;
    if m.id != entry.id || m.db != entry.db {
        bail!(
            "the manifest of {} names another snapshot ({})",
            entry.id,
            m.id
        );
    }
    Ok(m)
}

/// Downloads and opens a snapshot's dump into `dest`, checking its SHA-256.
pub async fn fetch_dump(
    target: &Target,
    entry: &IndexEntry,
    manifest: &Manifest,
    ids: &Identities,
    dest: &Path,
) -> Result<()> {
    let sealed = tempfile::NamedTempFile::new().context("temp file")?;
    target
        .get_to_file(&entry.dump_object(), sealed.path())
        .await?;
    let f = std::fs::File::open(sealed.path()).context("temp file")?;
    let mut r = HashingReader::sha256(ids.open(f)?);
    let mut out = std::fs::File::create(dest).with_context(|| dest.display().to_string())?;
    std::io::copy(&mut r, &mut out).context("decrypting the dump")?;
    let (sha, n) = r.finish();
    if sha != manifest.dump_sha256 || n != manifest.dump_bytes {
        bail!(
            "the dump of {} does not match its checksum (got {sha}, {n} bytes; manifest {}, {} bytes)",
            entry.id,
            manifest.dump_sha256,
            manifest.dump_bytes
        );
    }
    Ok(())
}

/// Downloads and opens one blob, checking it is what its name says.
pub async fn fetch_blob(target: &Target, sha1: &str, ids: &Identities) -> Result<Vec<u8>> {
    let data = ids
        .open_bytes(&target.get(&format!("blobs/{sha1}")).await?)
        .with_context(|| format!("blob {sha1} on target {:?}", target.name))?;
    let got = sha1_hex(&data);
    if got != sha1 {
        bail!(
            "blob {sha1} on target {:?} holds other content ({got})",
            target.name
        );
    }
    Ok(data)
}

/// What checking one snapshot found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// The snapshot checked.
    pub id: String,
    /// Everything found wrong; empty when the snapshot is sound.
    pub problems: Vec<String>,
    /// Blobs checked.
    pub checked_blobs: usize,
}

impl VerifyReport {
    /// True when nothing was found wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks that everything a snapshot needs is on the target; with the
/// identity, also that the manifest matches the index and the dump its
/// checksum.
pub async fn verify(
    target: &Target,
    entry: &IndexEntry,
    ids: Option<&Identities>,
) -> Result<VerifyReport> {
    let mut r = VerifyReport {
        id: entry.id.clone(),
        ..Default::default()
    };
    let blobs: std::collections::HashMap<String, u64> = target
        .list("blobs")
        .await?
        .into_iter()
        .map(|o| (o.name, o.size))
        .collect();
    let data: std::collections::HashMap<String, u64> = target
        .list("data")
        .await?
        .into_iter()
        .map(|o| (o.name, o.size))
        .collect();
    match data.get(&format!("{}.dump", entry.id)) {
        None => r
            .problems
            .push(format!("{} is missing", entry.dump_object())),
        Some(&n) if n != entry.dump_size => r.problems.push(format!(
            "{} is {n} bytes, the index says {}",
            entry.dump_object(),
            entry.dump_size
        )),
        _ => {}
    }
    if !data.contains_key(&format!("{}.manifest", entry.id)) {
        r.problems
            .push(format!("{} is missing", entry.manifest_object()));
    }
    for b in &entry.blobs {
        if !blobs.contains_key(b) {
            r.problems.push(format!("blobs/{b} is missing"));
        }
    }
    r.checked_blobs = entry.blobs.len();
    if let Some(ids) = ids
        && r.problems.is_empty()
    {
        let m = read_manifest(target, entry, ids).await?;
        let mut from_manifest: Vec<String> = m.files.iter().map(|f| f.sha1.clone()).collect();
        from_manifest.sort();
        from_manifest.dedup();
        if from_manifest != entry.blobs {
            r.problems
                .push("the index and the manifest list different blobs".to_string());
        }
        let tmp = tempfile::NamedTempFile::new().context("temp file")?;
        if let Err(e) = fetch_dump(target, entry, &m, ids, tmp.path()).await {
            r.problems.push(format!("{e:#}"));
        }
    }
    Ok(r)
}
