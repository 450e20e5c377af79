//! The ban table: active bans plus a memory of past ones (for repeat
//! offenders), persisted in `<state_dir>/bans.json`.
//!
//! The file is replaced atomically (temp file, fsync, rename, fsync of the
//! directory), so a crash leaves the old table or the new one, never half of
//! one. A file that does not parse is an error naming it: silently starting
//! with no bans would free every attacker at the next restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::GuardError;
use crate::addr::{display_net, parse_ban_target};
use rampart_config::time::{parse_rfc3339, rfc3339};

/// Longest ban, however often an address comes back.
pub const MAX_BAN: Duration = Duration::from_secs(7 * 86400);
/// How long an expired ban is remembered for the repeat factor.
pub const REMEMBER: Duration = Duration::from_secs(7 * 86400);
/// Hard cap on records; the oldest are forgotten first.
pub const DEFAULT_MAX_RECORDS: usize = 100_000;

/// One ban, as `GET /v1/bans` and `rampart bans list --json` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanInfo {
    /// `203.0.113.7`, or `2001:db8:1:2::/64`.
    pub addr: String,
    /// RFC 3339 UTC.
    pub until: String,
    /// Why the address was banned.
    pub reason: String,
    /// How many times this address has been banned (this one included).
    pub count: u32,
}

#[derive(Debug, Clone)]
pub struct Record {
    pub until: SystemTime,
    pub reason: String,
    pub count: u32,
    /// The expiry has been logged (so it is logged once).
    pub expiry_logged: bool,
}

impl Record {
    pub fn active(&self, now: SystemTime) -> bool {
        self.until > now
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    version: u32,
    bans: Vec<BanInfo>,
}

pub struct BanTable {
    path: PathBuf,
    records: RwLock<HashMap<IpNet, Record>>,
    dirty: AtomicBool,
    /// Serialises writers so an older snapshot never lands after a newer one.
    write_lock: Mutex<()>,
    max_records: usize,
}

impl BanTable {
    /// Loads `<state_dir>/bans.json`; a missing file is an empty table.
    pub fn open(state_dir: &Path, max_records: usize) -> Result<BanTable, GuardError> {
        let path = state_dir.join("bans.json");
        let mut records = HashMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let file: FileFormat =
                    serde_json::from_slice(&bytes).map_err(|e| GuardError::Corrupt {
                        path: path.clone(),
                        message: format!("line {} column {}: {e}", e.line(), e.column()),
                    })?;
                if file.version != 1 {
                    return Err(GuardError::Corrupt {
                        path,
                        message: format!(
                            "unknown version {} (this rampart reads version 1)",
                            file.version
                        ),
                    });
                }
                let now = SystemTime::now();
                for (i, b) in file.bans.into_iter().enumerate() {
                    let corrupt = |m: String| GuardError::Corrupt {
                        path: path.clone(),
                        message: format!("bans[{i}]: {m}"),
                    };
                    let net = parse_ban_target(&b.addr).map_err(corrupt)?;
                    let until = parse_rfc3339(&b.until).map_err(corrupt)?;
                    let record = Record {
                        until,
                        reason: b.reason,
                        count: b.count,
                        expiry_logged: until <= now,
                    };
                    if forgotten(&record, now) {
                        continue;
                    }
                    records.insert(net, record);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(GuardError::Io { path, source: e }),
        }
        Ok(BanTable {
            path,
            records: RwLock::new(records),
            dirty: AtomicBool::new(false),
            write_lock: Mutex::new(()),
            max_records: max_records.max(1),
        })
    }

    /// When the first of `nets` that is banned is free again.
    pub fn active_until(&self, nets: &[IpNet], now: SystemTime) -> Option<SystemTime> {
        let records = self.read();
        nets.iter()
            .filter_map(|n| records.get(n))
            .find(|r| r.active(now))
            .map(|r| r.until)
    }

    /// Bans so far of `net` that are still remembered.
    pub fn previous_count(&self, net: &IpNet) -> u32 {
        self.read().get(net).map(|r| r.count).unwrap_or(0)
    }

    /// Records a ban unless one is already active (two concurrent failures
    /// crossing the threshold ban once). Returns the stored record when new.
    pub fn insert(
        &self,
        net: IpNet,
        until: SystemTime,
        reason: String,
        now: SystemTime,
    ) -> Option<Record> {
        let mut records = self.write();
        let count = match records.get(&net) {
            Some(r) if r.active(now) => return None,
            Some(r) => r.count + 1,
            None => 1,
        };
        if records.len() >= self.max_records && !records.contains_key(&net) {
            make_room(&mut records, self.max_records, now);
        }
        let record = Record {
            until,
            reason,
            count,
            expiry_logged: false,
        };
        records.insert(net, record.clone());
        self.dirty.store(true, Ordering::Release);
        Some(record)
    }

    /// Sets a ban whatever was there (an administrator's decision).
    pub fn set(&self, net: IpNet, until: SystemTime, reason: String, now: SystemTime) -> Record {
        let mut records = self.write();
        let count = records.get(&net).map(|r| r.count + 1).unwrap_or(1);
        if records.len() >= self.max_records && !records.contains_key(&net) {
            make_room(&mut records, self.max_records, now);
        }
        let record = Record {
            until,
            reason,
            count,
            expiry_logged: false,
        };
        records.insert(net, record.clone());
        self.dirty.store(true, Ordering::Release);
        record
    }

    /// Stores a ban (or an ended one, kept for the repeat factor) as the
    /// cluster has it. True when it changed anything.
    pub fn put(&self, net: IpNet, record: Record, now: SystemTime) -> bool {
        let mut records = self.write();
        let same = records.get(&net).is_some_and(|r| {
            r.active(now) == record.active(now)
                && same_time(r.until, record.until)
                && r.reason == record.reason
                && r.count == record.count
        });
        if same {
            return false;
        }
        if records.len() >= self.max_records && !records.contains_key(&net) {
            make_room(&mut records, self.max_records, now);
        }
        records.insert(net, record);
        self.dirty.store(true, Ordering::Release);
        true
    }

    /// Active bans: (net, until, reason, count).
    pub fn active(&self, now: SystemTime) -> Vec<(String, SystemTime, String, u32)> {
        self.read()
            .iter()
            .filter(|(_, r)| r.active(now))
            .map(|(n, r)| (display_net(n), r.until, r.reason.clone(), r.count))
            .collect()
    }

    /// Forgets `net` entirely (ban and history). True if it was banned.
    pub fn remove(&self, net: &IpNet, now: SystemTime) -> bool {
        let removed = self.write().remove(net);
        if removed.is_some() {
            self.dirty.store(true, Ordering::Release);
        }
        removed.is_some_and(|r| r.active(now))
    }

    /// Active bans, soonest to expire first.
    pub fn list(&self, now: SystemTime) -> Vec<BanInfo> {
        let records = self.read();
        let mut out: Vec<(SystemTime, BanInfo)> = records
            .iter()
            .filter(|(_, r)| r.active(now))
            .map(|(n, r)| (r.until, info(n, r)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.addr.cmp(&b.1.addr)));
        out.into_iter().map(|(_, i)| i).collect()
    }

    pub fn active_count(&self, now: SystemTime) -> usize {
        self.read().values().filter(|r| r.active(now)).count()
    }

    /// Bans that ended since the last call (to log them once), and forgets
    /// records past their memory.
    pub fn expire(&self, now: SystemTime) -> Vec<IpNet> {
        let mut records = self.write();
        let mut ended = Vec::new();
        let before = records.len();
        records.retain(|net, r| {
            if !r.active(now) && !r.expiry_logged {
                r.expiry_logged = true;
                ended.push(*net);
            }
            !forgotten(r, now)
        });
        if records.len() != before {
            self.dirty.store(true, Ordering::Release);
        }
        ended
    }

    /// Writes the table if it changed since the last write.
    pub fn flush(&self) -> Result<(), GuardError> {
        if self.dirty.load(Ordering::Acquire) {
            self.save()
        } else {
            Ok(())
        }
    }

    /// Writes the table now: temp file, fsync, rename, fsync the directory.
    pub fn save(&self) -> Result<(), GuardError> {
        let _writing = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Cleared before the snapshot: a change racing this write marks it dirty again.
        self.dirty.store(false, Ordering::Release);
        let snapshot = {
            let records = self.read();
            let mut bans: Vec<BanInfo> = records.iter().map(|(n, r)| info(n, r)).collect();
            bans.sort_by(|a, b| a.addr.cmp(&b.addr));
            FileFormat { version: 1, bans }
        };
        let mut json = serde_json::to_vec_pretty(&snapshot).expect("ban table serialises");
        json.push(b'\n');
        write_atomically(&self.path, &json)
            .inspect_err(|_| self.dirty.store(true, Ordering::Release))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<IpNet, Record>> {
        self.records.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<IpNet, Record>> {
        self.records.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Equal to the millisecond (PostgreSQL keeps microseconds, the clock nanoseconds).
fn same_time(a: SystemTime, b: SystemTime) -> bool {
    let d = a.duration_since(b).or_else(|_| b.duration_since(a));
    d.is_ok_and(|d| d < Duration::from_millis(1))
}

fn info(net: &IpNet, r: &Record) -> BanInfo {
    BanInfo {
        addr: display_net(net),
        until: rfc3339(r.until),
        reason: r.reason.clone(),
        count: r.count,
    }
}

fn forgotten(r: &Record, now: SystemTime) -> bool {
    !r.active(now) && now.duration_since(r.until).unwrap_or_default() >= REMEMBER
}

/// Forgets expired records, then (still full: a flood of distinct attackers)
/// the bans that end soonest.
fn make_room(records: &mut HashMap<IpNet, Record>, max: usize, now: SystemTime) {
    records.retain(|_, r| r.active(now));
    if records.len() < max {
        return;
    }
    let mut ends: Vec<SystemTime> = records.values().map(|r| r.until).collect();
    let drop = records.len() - max / 4 * 3;
    let (_, cutoff, _) = ends.select_nth_unstable(drop.saturating_sub(1));
    let cutoff = *cutoff;
    records.retain(|_, r| r.until > cutoff);
    tracing::warn!(
        kept = records.len(),
        "ban table reached its cap; the bans ending soonest were dropped"
    );
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), GuardError> {
    let io = |source| GuardError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).map_err(io)?;
    rampart_config::atomic::write_atomic(path, bytes, 0o600).map_err(io)
}

#[cfg(test)]
mod tests;
