//! Sending: finished segments and history files, the received part of
//! the open segment, new filestore files; the local spool's bound.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Streamer;
use crate::filestore;
use crate::hash::{is_sha1_hex, sha1_hex};
use crate::seal::Recipients;
use crate::target::Payload;
use crate::wal::{is_history, parse_segment, piece_name};

impl Streamer {
    /// Finished segments and history files, to every target; deleted
    /// here once all have them (the newest segment stays: pg_receivewal
    /// finds its place by it).
    pub(super) async fn send_finished(&mut self) -> Result<()> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .with_context(|| self.dir.display().to_string())?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| parse_segment(n, self.seg_size).is_some() || is_history(n))
            .collect();
        names.sort();
        let newest_segment = names
            .iter()
            .rev()
            .find(|n| !is_history(n))
            .cloned()
            .unwrap_or_default();
        let mut waiting = 0u64;
        for name in &names {
            let path = self.dir.join(name);
            let missing: Vec<usize> = (0..self.dests.len())
                .filter(|&i| !self.dests[i].have.contains(name))
                .collect();
            if missing.is_empty() {
                if *name != newest_segment && !is_history(name) {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                }
                continue;
            }
            waiting += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if missing.iter().all(|&i| self.dests[i].target.is_none()) {
                continue;
            }
            let sealed = seal_file(&self.recipients, &path, 0, None).await?;
            for i in missing {
                let Some(t) = self.dests[i].target.clone() else {
                    continue;
                };
                match t.put(&format!("wal/{name}"), Payload::Bytes(&sealed)).await {
                    Ok(_) => {
                        self.dests[i].have.insert(name.clone());
                        self.dests[i].pieces.remove(name);
                    }
                    Err(e) => {
                        tracing::warn!("WAL streaming: {e:#}");
                        self.dests[i].target = None;
                    }
                }
            }
        }
        self.bound_the_spool(waiting);
        Ok(())
    }

    /// Unsent WAL in wal_dir past the bound stops pg_receivewal (the slot
    /// then holds it on the server, bounded there); half of it resumes.
    fn bound_the_spool(&mut self, waiting: u64) {
        let max = self.cfg.wal_max_behind.get();
        if !self.spool_full && waiting > max {
            tracing::error!(
                "{waiting} bytes of WAL wait in {} for unreachable targets, more than \
                 backup.wal_max_behind: pg_receivewal STOPPED until they are sent",
                self.dir.display()
            );
            self.spool_full = true;
            if let Some(c) = &mut self.child {
                let _ = c.start_kill();
            }
            self.child = None;
        } else if self.spool_full && waiting <= max / 2 {
            tracing::info!("WAL spool drained: pg_receivewal resumes");
            self.spool_full = false;
        }
    }

    /// The received part of the open segment, as a new piece object.
    pub(super) async fn send_open_segment(&mut self, flushed: u64) -> Result<()> {
        let partial = std::fs::read_dir(&self.dir)
            .with_context(|| self.dir.display().to_string())?
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let seg = n.strip_suffix(".partial")?.to_string();
                parse_segment(&seg, self.seg_size).map(|(_, no)| (seg, no))
            })
            .max_by_key(|(_, no)| *no);
        let Some((seg, segno)) = partial else {
            return Ok(());
        };
        let start = segno * self.seg_size;
        if flushed <= start || flushed >= start + self.seg_size {
            return Ok(());
        }
        let end = flushed - start;
        let path = self.dir.join(format!("{seg}.partial"));
        for i in 0..self.dests.len() {
            let d = &self.dests[i];
            let Some(t) = d.target.clone() else { continue };
            let from = d.pieces.get(&seg).copied().unwrap_or(0);
            if d.have.contains(&seg) || from >= end {
                continue;
            }
            let sealed = seal_file(&self.recipients, &path, from, Some(end)).await?;
            match t
                .put(&piece_name(&seg, from, end), Payload::Bytes(&sealed))
                .await
            {
                Ok(_) => {
                    self.dests[i].pieces.insert(seg.clone(), end);
                }
                Err(e) => {
                    tracing::warn!("WAL streaming: {e:#}");
                    self.dests[i].target = None;
                }
            }
        }
        Ok(())
    }

    /// Filestore files that appeared since the last look (named by their
    /// SHA-1 by Odoo, never rewritten): sent as blobs at once, so a point
    /// in time between snapshots has its attachments.
    pub(super) async fn send_new_files(&mut self) -> Result<()> {
        let stale = self
            .databases
            .1
            .is_none_or(|t| t.elapsed() > Duration::from_secs(600));
        if stale {
            let dbs = if self.cfg.databases.is_empty() {
                self.pg.odoo_databases()?
            } else {
                self.cfg.databases.clone()
            };
            self.databases = (dbs, Some(Instant::now()));
        }
        for db in self.databases.0.clone() {
            let root = filestore::dir(&self.cfg.data_dir, &db);
            if !root.exists() {
                continue;
            }
            for (rel, _) in filestore::list(&root)? {
                let name = rel.rsplit('/').next().unwrap_or("").to_string();
                if !is_sha1_hex(&name) {
                    continue;
                }
                let missing: Vec<usize> = (0..self.dests.len())
                    .filter(|&i| {
                        self.dests[i].target.is_some() && !self.dests[i].blobs.contains(&name)
                    })
                    .collect();
                if missing.is_empty() {
                    continue;
                }
                let path = root.join(&rel);
                let data = std::fs::read(&path).with_context(|| path.display().to_string())?;
                if sha1_hex(&data) != name {
                    continue; // the next snapshot stores it by its real hash
                }
                let r = self.recipients.clone();
                let sealed = tokio::task::spawn_blocking(move || r.seal_bytes(&data))
                    .await
                    .context("sealing")??;
                for i in missing {
                    let Some(t) = self.dests[i].target.clone() else {
                        continue;
                    };
                    match t
                        .put(&format!("blobs/{name}"), Payload::Bytes(&sealed))
                        .await
                    {
                        Ok(_) => {
                            self.dests[i].blobs.insert(name.clone());
                        }
                        Err(e) => {
                            tracing::warn!("filestore streaming: {e:#}");
                            self.dests[i].target = None;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Seals bytes [from, to) of a file (to the end without `to`), off the
/// async threads.
async fn seal_file(r: &Recipients, path: &Path, from: u64, to: Option<u64>) -> Result<Vec<u8>> {
    let r = r.clone();
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path).with_context(|| path.display().to_string())?;
        f.seek(SeekFrom::Start(from))
            .with_context(|| path.display().to_string())?;
        let mut data = Vec::new();
        match to {
            Some(to) => {
                f.take(to - from)
                    .read_to_end(&mut data)
                    .with_context(|| path.display().to_string())?;
                if (data.len() as u64) < to - from {
                    bail!("{} is shorter than its flushed position", path.display());
                }
            }
            None => {
                f.read_to_end(&mut data)
                    .with_context(|| path.display().to_string())?;
            }
        }
        r.seal_bytes(&data)
    })
    .await
    .context("sealing")?
}
