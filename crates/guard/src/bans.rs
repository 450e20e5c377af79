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
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn net(s: &str) -> IpNet {
        parse_ban_target(s).unwrap()
    }

    #[test]
    fn round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let t = BanTable::open(dir.path(), 100).unwrap();
        assert!(t.list(now).is_empty(), "missing file = no bans");
        t.insert(
            net("203.0.113.7"),
            now + Duration::from_secs(900),
            "10 failed logins in 1m".into(),
            now,
        )
        .unwrap();
        t.insert(
            net("2001:db8:1:2::/64"),
            now + Duration::from_secs(60),
            "x".into(),
            now,
        )
        .unwrap();
        t.flush().unwrap();
        let again = BanTable::open(dir.path(), 100).unwrap();
        assert_eq!(again.list(now), t.list(now));
        let ips: Vec<IpAddr> = vec!["203.0.113.7".parse().unwrap()];
        assert!(again.active_until(&[IpNet::from(ips[0])], now).is_some());
        let text = std::fs::read_to_string(dir.path().join("bans.json")).unwrap();
        assert!(text.contains("\"2001:db8:1:2::/64\""), "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("bans.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bans.json");
        std::fs::write(
            &path,
            "{\"version\": 1, \"bans\": [ {\"addr\": \"203.0.113.7\",\n",
        )
        .unwrap();
        let err = BanTable::open(dir.path(), 100)
            .err()
            .expect("corrupt file must not load");
        let shown = err.to_string();
        assert!(shown.contains(&path.display().to_string()), "{shown}");
        assert!(shown.contains("line 2"), "{shown}");
        // Valid JSON, bad address.
        std::fs::write(&path, r#"{"version":1,"bans":[{"addr":"nope","until":"2030-01-01T00:00:00Z","reason":"","count":1}]}"#)
            .unwrap();
        let shown = BanTable::open(dir.path(), 100).err().unwrap().to_string();
        assert!(
            shown.contains("bans[0]") && shown.contains("nope"),
            "{shown}"
        );
        // The corrupt file is left for the administrator, not replaced.
        assert!(std::fs::read_to_string(&path).unwrap().contains("nope"));
    }

    #[test]
    fn expiry_is_reported_once_and_history_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = SystemTime::now();
        let t = BanTable::open(dir.path(), 100).unwrap();
        let n = net("198.51.100.1");
        t.insert(n, t0 + Duration::from_secs(10), "r".into(), t0)
            .unwrap();
        assert!(
            t.insert(n, t0 + Duration::from_secs(99), "again".into(), t0)
                .is_none(),
            "already banned"
        );
        assert!(t.expire(t0 + Duration::from_secs(5)).is_empty());
        let later = t0 + Duration::from_secs(11);
        assert_eq!(t.expire(later), vec![n]);
        assert!(t.expire(later).is_empty(), "logged once");
        assert!(t.active_until(&[n], later).is_none());
        assert!(t.list(later).is_empty());
        assert_eq!(t.previous_count(&n), 1, "remembered for the repeat factor");
        t.expire(t0 + REMEMBER + Duration::from_secs(11));
        assert_eq!(t.previous_count(&n), 0, "forgotten after a week");
    }

    #[test]
    fn cap_drops_soonest_ending_bans() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let t = BanTable::open(dir.path(), 100).unwrap();
        for i in 0..1000u32 {
            let n = IpNet::from(IpAddr::V4(i.into()));
            t.insert(n, now + Duration::from_secs(60 + i as u64), "r".into(), now);
            assert!(t.active_count(now) <= 100);
        }
        // The longest ban survives.
        assert!(
            t.active_until(&[IpNet::from(IpAddr::V4(999u32.into()))], now)
                .is_some()
        );
    }

    #[test]
    fn an_unreadable_table_is_an_error_not_an_empty_one() {
        // A read error other than "absent" (here: a directory in its place)
        // must not start the guard with every attacker freed.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bans.json")).unwrap();
        let err = BanTable::open(dir.path(), 100)
            .err()
            .expect("an unreadable table must not load as empty");
        assert!(err.to_string().contains("bans.json"), "{err}");
    }

    #[test]
    fn after_a_restart_each_ban_end_is_logged_once() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let (ended, active) = (net("198.51.100.7"), net("198.51.100.8"));
        {
            let t = BanTable::open(dir.path(), 100).unwrap();
            t.set(ended, now - Duration::from_secs(60), "r".into(), now);
            t.set(active, now + Duration::from_secs(3600), "r".into(), now);
            assert_eq!(t.expire(now), vec![ended]);
            t.save().unwrap();
        }
        let t = BanTable::open(dir.path(), 100).unwrap();
        let later = now + Duration::from_secs(7200);
        assert_eq!(
            t.expire(later),
            vec![active],
            "the ended one was logged before"
        );
        assert_eq!(t.previous_count(&ended), 1, "still remembered");
    }

    #[test]
    fn bans_last_at_most_a_week_and_are_remembered_for_one() {
        assert_eq!(MAX_BAN, Duration::from_secs(7 * 86400));
        let dir = tempfile::tempdir().unwrap();
        let t0 = SystemTime::now();
        let t = BanTable::open(dir.path(), 100).unwrap();
        let n = net("192.0.2.77");
        t.insert(n, t0 + Duration::from_secs(900), "r".into(), t0);
        // Coming back three days after the ban ended still counts as a repeat.
        let back = t0 + Duration::from_secs(900 + 3 * 86400);
        t.expire(back);
        assert_eq!(t.previous_count(&n), 1);
        let again = t.insert(n, back + Duration::from_secs(900), "r".into(), back);
        assert_eq!(again.unwrap().count, 2);
    }

    #[test]
    fn new_bans_under_the_cap_keep_every_repeat_offenders_history() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = SystemTime::now();
        let t = BanTable::open(dir.path(), 100).unwrap();
        let old = net("198.51.100.20");
        t.insert(old, t0 + Duration::from_secs(10), "r".into(), t0);
        let t1 = t0 + Duration::from_secs(20);
        assert_eq!(t.active_count(t1), 0, "served");
        // An automatic ban and an administrator's ban of others...
        t.insert(
            net("198.51.100.21"),
            t1 + Duration::from_secs(60),
            "r".into(),
            t1,
        );
        t.set(
            net("198.51.100.22"),
            t1 + Duration::from_secs(60),
            "admin".into(),
            t1,
        );
        assert_eq!(t.active_count(t1), 2);
        // ...leave the served one remembered as a repeat offender.
        assert_eq!(t.previous_count(&old), 1);
        // An administrator's ban of it is its second, and the next
        // automatic one its third (longer each time).
        assert_eq!(
            t.set(old, t1 + Duration::from_secs(5), "admin".into(), t1)
                .count,
            2
        );
        let t2 = t1 + Duration::from_secs(10);
        assert_eq!(t.active_count(t2), 2);
        let third = t.insert(old, t2 + Duration::from_secs(60), "r".into(), t2);
        assert_eq!(third.unwrap().count, 3);
    }

    #[test]
    fn administrators_bans_stay_under_the_cap_too() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let t = BanTable::open(dir.path(), 4).unwrap();
        for i in 0..20u32 {
            let n = IpNet::from(IpAddr::V4(i.into()));
            t.set(
                n,
                now + Duration::from_secs(60 + i as u64),
                "admin".into(),
                now,
            );
            assert!(t.active_count(now) <= 4, "{} bans", t.active_count(now));
        }
        let last = IpNet::from(IpAddr::V4(19u32.into()));
        assert!(t.active_until(&[last], now).is_some(), "the longest stays");
    }

    #[test]
    fn housekeeping_writes_the_file_only_when_the_table_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bans.json");
        let t0 = SystemTime::now();
        let t = BanTable::open(dir.path(), 100).unwrap();
        t.insert(
            net("203.0.113.30"),
            t0 + Duration::from_secs(10),
            "r".into(),
            t0,
        );
        t.flush().unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("203.0.113.30")
        );
        // Nothing changed: no write (a marker file is left alone).
        std::fs::write(&path, "marker").unwrap();
        t.expire(t0 + Duration::from_secs(5));
        t.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "marker");
        // A record past its memory is forgotten on disk as well.
        t.expire(t0 + REMEMBER + Duration::from_secs(11));
        t.flush().unwrap();
        assert!(
            !std::fs::read_to_string(&path)
                .unwrap()
                .contains("203.0.113.30")
        );
    }

    #[test]
    fn a_full_table_drops_the_quarter_ending_soonest_and_a_ban_ends_at_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let t = BanTable::open(dir.path(), 8).unwrap();
        let n = |i: u32| IpNet::from(IpAddr::V4((0xcb00_7100 + i).into()));
        let until = |i: u32| now + Duration::from_secs(60 * (i as u64 + 1));
        for i in 0..9 {
            t.insert(n(i), until(i), "r".into(), now);
        }
        // Full at 8: the two ending soonest go (down to 6), then the 9th.
        assert_eq!(t.active_count(now), 7);
        for i in 0..2 {
            assert_eq!(t.active_until(&[n(i)], now), None, "{i} ends soonest");
        }
        for i in 2..9 {
            assert_eq!(t.active_until(&[n(i)], now), Some(until(i)), "{i} kept");
        }
        // A ban is over at its end time, not a moment later.
        assert_eq!(t.active_until(&[n(2)], until(2)), None);
    }
}
