//! The hash cache: lets an unchanged filestore file skip being read.
//!
//! Hashing every file is what made an incremental run cost nearly as much
//! as a full one. `<state_dir>/backup-hashes/<db>.json` remembers, per file,
//! the SHA-1 read last time with the metadata it had then; a file whose
//! metadata is the same now is taken to hold the same bytes.
//!
//! The metadata is chosen so that a changed file cannot look unchanged:
//! - size, mtime, **ctime**, inode and device, all compared. mtime alone is
//!   not enough: `touch -d`, `tar x` and `rsync -a` set it back, but nothing
//!   in user space can set ctime, and a new file in a reused inode, a copy
//!   restored with old times, or a filestore moved to another disk each
//!   change at least one of ctime, inode or device.
//! - racy entries (git's "racy git") are never trusted: a file changed twice
//!   within one timestamp tick (a second on some file systems) keeps its
//!   mtime and ctime. An entry is recorded only when the file's mtime and
//!   ctime are [`RACY`] older than the moment it was looked at, and only
//!   when the file did not change while it was read, so a later write
//!   always lands on a later tick. (A file server whose clock is more than
//!   [`RACY`] behind this machine's would defeat that: `rehash_days` and
//!   `--rehash` are the backstop.)
//! - every entry is read again after `rehash_days`, and `--rehash` reads
//!   everything; `backup verify` never uses the cache.
//! - a cache that does not parse, has another format, another filestore
//!   root, or a malformed hash is ignored whole, with a warning.
//! - a cached hash is only ever used to *reference* a blob that every
//!   target already has; when a blob must be uploaded the file is read and
//!   hashed again, so a wrong entry can never put other bytes under a name.
//!
//! The file is replaced atomically (temp, fsync, rename).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::hash::is_sha1_hex;

const FORMAT: u32 = 1;

/// How much older than the moment it was looked at a file's mtime and
/// ctime must be for its hash to be remembered: covers 1 s and 2 s (FAT)
/// timestamp granularity and the kernel's coarse clock.
pub const RACY: Duration = Duration::from_secs(3);

/// What a file looked like: compared whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
}

impl Stat {
    pub fn of(m: &std::fs::Metadata) -> Stat {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Stat {
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
        }
    }

    /// Changed too recently before `seen_ns` for a later change to be
    /// sure to show (or dated in the future: a skewed clock).
    fn racy(&self, seen_ns: i64) -> bool {
        let limit = seen_ns.saturating_sub(RACY.as_nanos() as i64);
        self.mtime_ns.max(self.ctime_ns) > limit
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    #[serde(flatten)]
    stat: Stat,
    sha1: String,
    /// Unix seconds when the bytes were last read.
    hashed: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    format: u32,
    /// The filestore directory the entries are relative to.
    root: PathBuf,
    entries: HashMap<String, Entry>,
}

/// One database's cache during a run: what was known, and what is known now.
#[derive(Debug)]
pub struct HashCache {
    /// None: no state_dir (or `rehash_days = 0`): nothing kept.
    path: Option<PathBuf>,
    root: PathBuf,
    old: HashMap<String, Entry>,
    new: HashMap<String, Entry>,
    rehash_after: Duration,
    now: i64,
}

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl HashCache {
    /// Loads `<state_dir>/backup-hashes/<db>.json`. `rehash` (or no
    /// state_dir, or `rehash_days == 0`) starts from nothing; a file that
    /// cannot be trusted is ignored with a warning.
    pub fn open(
        state_dir: Option<&Path>,
        db: &str,
        root: &Path,
        rehash_days: u32,
        rehash: bool,
    ) -> HashCache {
        let path = state_dir
            .filter(|_| rehash_days > 0)
            .map(|d| d.join("backup-hashes").join(format!("{db}.json")));
        let mut c = HashCache {
            path,
            root: root.to_path_buf(),
            old: HashMap::new(),
            new: HashMap::new(),
            rehash_after: Duration::from_secs(u64::from(rehash_days) * 86_400),
            now: now_ns() / 1_000_000_000,
        };
        if rehash {
            return c;
        }
        let Some(p) = &c.path else { return c };
        match std::fs::read(p) {
            Ok(bytes) => match c.parse(&bytes) {
                Ok(old) => c.old = old,
                Err(why) => tracing::warn!(
                    cache = %p.display(),
                    "hash cache ignored ({why}): every file is read this time"
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(cache = %p.display(), "hash cache ignored: {e}"),
        }
        c
    }

    fn parse(&self, bytes: &[u8]) -> Result<HashMap<String, Entry>, String> {
        let f: File = serde_json::from_slice(bytes).map_err(|e| format!("does not parse: {e}"))?;
        if f.format != FORMAT {
            return Err(format!("format {} is not {FORMAT}", f.format));
        }
        if f.root != self.root {
            return Err(format!("it is for {}", f.root.display()));
        }
        if let Some((rel, _)) = f.entries.iter().find(|(_, e)| !is_sha1_hex(&e.sha1)) {
            return Err(format!("malformed hash for {rel:?}"));
        }
        Ok(f.entries)
    }

    /// The remembered SHA-1 of `rel`, if it may be trusted for a file that
    /// looks like `now`.
    pub fn lookup(&self, rel: &str, now: &Stat) -> Option<&str> {
        let e = self.old.get(rel)?;
        let fresh = self.now.saturating_sub(e.hashed) < self.rehash_after.as_secs() as i64;
        (e.stat == *now && fresh).then_some(e.sha1.as_str())
    }

    /// Keeps a cached entry for the next run (the file was not read).
    pub fn keep(&mut self, rel: &str) {
        if let Some(e) = self.old.get(rel) {
            self.new.insert(rel.to_string(), e.clone());
        }
    }

    /// Remembers what reading `rel` gave: `before` was taken (at `seen_ns`)
    /// before the read, `after` after it. Kept only when the file did not
    /// change meanwhile and is not racy.
    pub fn record(&mut self, rel: &str, before: &Stat, after: &Stat, sha1: &str, seen_ns: i64) {
        if before != after || before.racy(seen_ns) {
            return;
        }
        self.new.insert(
            rel.to_string(),
            Entry {
                stat: *before,
                sha1: sha1.to_string(),
                hashed: seen_ns / 1_000_000_000,
            },
        );
    }

    /// Writes what is known now (files gone since are forgotten).
    pub fn save(&self) -> anyhow::Result<()> {
        use anyhow::Context;
        let Some(p) = &self.path else { return Ok(()) };
        let dir = p.parent().expect("joined");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let f = File {
            format: FORMAT,
            root: self.root.clone(),
            entries: self.new.clone(),
        };
        let bytes = serde_json::to_vec(&f).context("hash cache")?;
        rampart_config::atomic::write_atomic(p, &bytes, 0o600)
            .with_context(|| format!("writing {}", p.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn stat(p: &Path) -> Stat {
        Stat::of(&fs::symlink_metadata(p).unwrap())
    }

    /// Looked at long after the file was written: not racy.
    fn later(s: &Stat) -> i64 {
        s.mtime_ns.max(s.ctime_ns) + 10_000_000_000
    }

    /// A file last changed an hour ago.
    fn an_hour_old() -> Stat {
        let t = now_ns() - 3_600_000_000_000;
        Stat {
            size: 3,
            mtime_ns: t,
            ctime_ns: t,
            ino: 42,
            dev: 7,
        }
    }

    fn cache(state: &Path, root: &Path) -> HashCache {
        HashCache::open(Some(state), "erp", root, 7, false)
    }

    /// Records `rel` as hashed, saves, and opens the cache again.
    fn remembered(state: &Path, root: &Path, rel: &str, s: &Stat) -> HashCache {
        let mut c = cache(state, root);
        c.record(rel, s, s, SHA_A, later(s));
        c.save().unwrap();
        cache(state, root)
    }

    #[test]
    fn an_unchanged_file_is_found_after_a_save() {
        let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let f = root.path().join("x");
        fs::write(&f, b"one").unwrap();
        let s = stat(&f);
        let c = remembered(state.path(), root.path(), "x", &s);
        assert_eq!(c.lookup("x", &stat(&f)), Some(SHA_A));
        assert_eq!(c.lookup("y", &stat(&f)), None);
        // --rehash starts from nothing.
        let c = HashCache::open(Some(state.path()), "erp", root.path(), 7, true);
        assert_eq!(c.lookup("x", &stat(&f)), None);
    }

    #[test]
    fn same_size_and_mtime_put_back_is_still_a_change() {
        let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let f = root.path().join("x");
        fs::write(&f, b"one").unwrap();
        let s = stat(&f);
        let c = remembered(state.path(), root.path(), "x", &s);
        let mtime = fs::metadata(&f).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&f, b"two").unwrap();
        let file = fs::File::options().write(true).open(&f).unwrap();
        file.set_modified(mtime).unwrap();
        let now = stat(&f);
        assert_eq!((now.size, now.mtime_ns), (s.size, s.mtime_ns));
        assert_eq!(c.lookup("x", &now), None, "ctime must tell the change");
    }

    #[test]
    fn a_new_file_in_place_or_on_another_device_is_a_miss() {
        let s = an_hour_old();
        let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let c = remembered(state.path(), root.path(), "x", &s);
        assert_eq!(c.lookup("x", &s), Some(SHA_A));
        // The same inode number reused on another disk.
        assert_eq!(c.lookup("x", &Stat { dev: 8, ..s }), None);
        // Another inode, everything else equal (copied with times kept).
        assert_eq!(c.lookup("x", &Stat { ino: 43, ..s }), None);
        // Same inode reused, times put back, but a new ctime.
        let reborn = Stat {
            ctime_ns: s.ctime_ns + 1,
            ..s
        };
        assert_eq!(c.lookup("x", &reborn), None);
    }

    #[test]
    fn racy_or_changing_files_are_not_remembered() {
        let s = an_hour_old();
        let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut c = cache(state.path(), root.path());
        // Looked at 1 s after its last change: a second change in the same
        // tick would not show.
        c.record("racy", &s, &s, SHA_A, s.ctime_ns + 1_000_000_000);
        // Dated in the future (a skewed clock).
        c.record("future", &s, &s, SHA_A, s.ctime_ns - 1);
        // Changed while it was read.
        let moved = Stat {
            ctime_ns: s.ctime_ns + 5,
            ..s
        };
        c.record("moving", &s, &moved, SHA_A, later(&moved));
        c.record("fine", &s, &s, SHA_A, later(&s));
        c.save().unwrap();
        let c = cache(state.path(), root.path());
        for rel in ["racy", "future", "moving"] {
            assert_eq!(c.lookup(rel, &s), None, "{rel}");
        }
        assert_eq!(c.lookup("fine", &s), Some(SHA_A));
    }

    #[test]
    fn old_entries_are_read_again() {
        let s = an_hour_old();
        let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let day = 86_400 * 1_000_000_000;
        let s = Stat {
            mtime_ns: s.mtime_ns - 9 * day,
            ctime_ns: s.ctime_ns - 9 * day,
            ..s
        };
        for (days_ago, found) in [(6, true), (8, false)] {
            let mut c = cache(state.path(), root.path());
            // Hashed that many days ago; rehash_days = 7.
            c.record("x", &s, &s, SHA_A, now_ns() - days_ago * day);
            c.save().unwrap();
            let c = cache(state.path(), root.path());
            assert_eq!(c.lookup("x", &s).is_some(), found, "{days_ago}");
        }
    }

    #[test]
    fn a_damaged_or_foreign_cache_is_ignored_whole() {
        let s = an_hour_old();
        let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        remembered(state.path(), root.path(), "x", &s);
        let p = state.path().join("backup-hashes/erp.json");
        let good = fs::read_to_string(&p).unwrap();
        for bad in [
            good[..good.len() / 2].to_string(),
            good.replace(SHA_A, "not-a-hash"),
            good.replace("\"format\":1", "\"format\":9"),
            String::from_utf8(vec![0xff, 0, 1]).unwrap_or_default(),
        ] {
            fs::write(&p, &bad).unwrap();
            assert_eq!(
                cache(state.path(), root.path()).lookup("x", &s),
                None,
                "{bad}"
            );
        }
        // Another filestore's cache (data_dir changed).
        fs::write(&p, &good).unwrap();
        let other = tempfile::tempdir().unwrap();
        assert_eq!(cache(state.path(), other.path()).lookup("x", &s), None);
        // No state_dir, or rehash_days = 0: nothing is kept.
        let c = HashCache::open(None, "erp", root.path(), 7, false);
        assert_eq!(c.lookup("x", &s), None);
        c.save().unwrap();
        let c = HashCache::open(Some(state.path()), "erp", root.path(), 0, false);
        assert_eq!(c.lookup("x", &s), None);
    }

    #[test]
    fn the_cache_file_is_replaced_whole_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let s = an_hour_old();
        let (state, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // Still there and not read again: kept.
        let mut c = remembered(state.path(), root.path(), "x", &s);
        c.keep("x");
        c.save().unwrap();
        assert_eq!(
            cache(state.path(), root.path()).lookup("x", &s),
            Some(SHA_A)
        );
        // Not looked at this run (the file is gone): forgotten.
        cache(state.path(), root.path()).save().unwrap();
        assert_eq!(cache(state.path(), root.path()).lookup("x", &s), None);
        let dir = state.path().join("backup-hashes");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["erp.json"]);
        let mode = fs::metadata(dir.join("erp.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
