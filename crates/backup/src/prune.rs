//! Retention by grandfather-father-son generations, then garbage
//! collection of blobs no kept snapshot uses.
//!
//! Meant to run where deleting is allowed (the receiver, or an admin
//! machine with a key that may delete), never with the writer's
//! credentials. It needs no private key: the plaintext index entries name
//! every object a snapshot uses.
//!
//! A backup may be running while prune runs: objects younger than
//! [`GRACE`] are never collected (a running backup has written blobs and
//! data but not yet its index entry), and the index is listed again just
//! before blobs are deleted, so a snapshot that completed meanwhile keeps
//! the blobs it reuses.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

use jiff::tz::TimeZone;

use crate::progress::{Progress, human_bytes};
use crate::snapshot::{IndexEntry, list_snapshots};
use crate::target::Target;
use anyhow::Result;

/// How long an unreferenced object is left alone.
pub const GRACE: Duration = Duration::from_secs(24 * 3600);

/// How many of each generation to keep, per database.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Keep {
    /// The last this many days that have snapshots keep their newest (UTC).
    pub daily: usize,
    /// The last this many ISO weeks that have snapshots keep their newest.
    pub weekly: usize,
    /// The last this many months that have snapshots keep their newest.
    pub monthly: usize,
}

/// What a prune kept and removed (or would, in a dry run).
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// Snapshot ids kept.
    pub kept: Vec<String>,
    /// Snapshot ids removed.
    pub removed: Vec<String>,
    /// Blobs no kept snapshot uses any more.
    pub blobs_removed: usize,
    /// Bytes those removals give back.
    pub bytes_freed: u64,
    /// Old `data/` objects of no live snapshot, and old uploads left in `tmp/`.
    pub leftovers_removed: usize,
}

impl PruneReport {
    /// One line for the command's output.
    pub fn summary(&self) -> String {
        format!(
            "kept {} snapshot(s), removed {}; {} unreferenced blob(s) and {} leftover(s) removed, {} freed",
            self.kept.len(),
            self.removed.len(),
            self.blobs_removed,
            self.leftovers_removed,
            human_bytes(self.bytes_freed)
        )
    }
}

/// Which snapshots the generations keep: per database, the newest of each
/// of the last `daily` days, `weekly` ISO weeks and `monthly` months that
/// have snapshots (UTC). The newest snapshot of each database is always kept.
pub fn select(snapshots: &[IndexEntry], keep: Keep) -> Result<BTreeSet<String>> {
    let mut kept = BTreeSet::new();
    let dbs: BTreeSet<&str> = snapshots.iter().map(|s| s.db.as_str()).collect();
    for db in dbs {
        let mut of_db: Vec<(&IndexEntry, jiff::Timestamp)> = Vec::new();
        for s in snapshots.iter().filter(|s| s.db == db) {
            of_db.push((s, s.timestamp()?));
        }
        // Newest first.
        of_db.sort_by_key(|e| std::cmp::Reverse(e.1));
        let of_db: Vec<(&IndexEntry, jiff::civil::Date)> = of_db
            .into_iter()
            .map(|(s, t)| (s, t.to_zoned(TimeZone::UTC).date()))
            .collect();
        if let Some((newest, _)) = of_db.first() {
            kept.insert(newest.id.clone());
        }
        let mut generation = |n: usize, key: &dyn Fn(jiff::civil::Date) -> (i32, i32)| {
            let mut seen = HashSet::new();
            for (s, d) in &of_db {
                if seen.len() >= n {
                    break;
                }
                if seen.insert(key(*d)) {
                    kept.insert(s.id.clone());
                }
            }
        };
        generation(keep.daily, &|d| (d.year() as i32, d.day_of_year() as i32));
        generation(keep.weekly, &|d| {
            let w = d.iso_week_date();
            (w.year() as i32, w.week() as i32)
        });
        generation(keep.monthly, &|d| (d.year() as i32, d.month() as i32));
    }
    Ok(kept)
}

/// Keeps the generations `keep` asks for on `target` and removes the rest,
/// with the blobs and leftovers nothing uses any more.
pub async fn prune(
    target: &Target,
    keep: Keep,
    dry_run: bool,
    progress: &Progress,
) -> Result<PruneReport> {
    if keep == Keep::default() {
        anyhow::bail!("give at least one of --keep-daily, --keep-weekly, --keep-monthly");
    }
    let snapshots = list_snapshots(target).await?;
    let kept = select(&snapshots, keep)?;
    let mut report = PruneReport::default();
    for s in &snapshots {
        if kept.contains(&s.id) {
            report.kept.push(s.id.clone());
            continue;
        }
        progress.line(format!(
            "{}remove {}",
            if dry_run { "would " } else { "" },
            s.id
        ));
        report.removed.push(s.id.clone());
        if !dry_run {
            // The index entry first: from then on the snapshot is gone as
            // a whole, even if the rest is interrupted.
            target.delete(&s.index_object()).await?;
            target.delete(&s.dump_object()).await?;
            target.delete(&s.manifest_object()).await?;
            report.bytes_freed += s.dump_size;
        }
    }

    let now = SystemTime::now();
    let old =
        |m: Option<SystemTime>| m.is_none_or(|t| now.duration_since(t).unwrap_or_default() > GRACE);
    // Listed again now: a snapshot finished meanwhile keeps its blobs.
    let live = list_snapshots(target).await?;
    let live_ids: HashSet<&str> = live.iter().map(|s| s.id.as_str()).collect();
    let removed: HashSet<&str> = report.removed.iter().map(String::as_str).collect();
    let used: HashSet<&str> = live
        .iter()
        .filter(|s| !(dry_run && removed.contains(s.id.as_str())))
        .flat_map(|s| s.blobs.iter().map(String::as_str))
        .collect();
    for b in target.list("blobs").await? {
        if used.contains(b.name.as_str()) || !old(b.modified) {
            continue;
        }
        report.blobs_removed += 1;
        report.bytes_freed += b.size;
        if !dry_run {
            target.delete(&format!("blobs/{}", b.name)).await?;
        }
    }
    // Data of runs that never wrote an index entry (killed, failed).
    for d in target.list("data").await? {
        let id = d
            .name
            .strip_suffix(".dump")
            .or_else(|| d.name.strip_suffix(".manifest"))
            .unwrap_or(&d.name);
        // Removed snapshots' data went with them above; in a dry run it is
        // still listed under a live id.
        if live_ids.contains(id) || removed.contains(id) || !old(d.modified) {
            continue;
        }
        report.leftovers_removed += 1;
        report.bytes_freed += d.size;
        if !dry_run {
            target.delete(&format!("data/{}", d.name)).await?;
        }
    }
    for t in target.list("tmp").await? {
        if !old(t.modified) {
            continue;
        }
        report.leftovers_removed += 1;
        if !dry_run {
            target.delete(&format!("tmp/{}", t.name)).await?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(db: &str, time: &str) -> IndexEntry {
        IndexEntry {
            format: 1,
            id: format!("{time}-{db}"),
            db: db.into(),
            time: time.into(),
            dump_size: 0,
            blobs: vec![],
            filestore_bytes: 0,
        }
    }

    #[test]
    fn generations_keep_the_newest_of_each_period() {
        let mut s = Vec::new();
        // Two a day for 60 days, from 2026-01-01 (a Thursday).
        let start: jiff::Timestamp = "2026-01-01T03:00:00Z".parse().unwrap();
        for day in 0..60 {
            for h in [0, 12] {
                let t = start + jiff::SignedDuration::from_hours(day * 24 + h);
                s.push(snap("erp", &t.to_string()));
            }
        }
        let kept = select(
            &s,
            Keep {
                daily: 3,
                weekly: 2,
                monthly: 2,
            },
        )
        .unwrap();
        let times: Vec<&str> = s
            .iter()
            .filter(|e| kept.contains(&e.id))
            .map(|e| e.time.as_str())
            .collect();
        assert_eq!(
            times,
            vec![
                "2026-02-22T15:00:00Z", // newest of ISO week 8 (a Sunday)
                "2026-02-27T15:00:00Z", // a day
                "2026-02-28T15:00:00Z", // a day, and the newest of February
                "2026-03-01T15:00:00Z", // newest: its day, week 9, March
            ]
        );
    }

    #[test]
    fn each_database_has_its_own_generations() {
        let s = vec![
            snap("a", "2026-03-01T01:00:00Z"),
            snap("a", "2026-03-02T01:00:00Z"),
            snap("b", "2026-02-01T01:00:00Z"),
        ];
        let kept = select(
            &s,
            Keep {
                daily: 1,
                weekly: 0,
                monthly: 0,
            },
        )
        .unwrap();
        assert_eq!(kept.len(), 2);
        assert!(kept.contains("2026-03-02T01:00:00Z-a"));
        assert!(kept.contains("2026-02-01T01:00:00Z-b"));
    }
}
