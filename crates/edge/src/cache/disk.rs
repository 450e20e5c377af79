//! The optional disk tier of the edge cache, under `<state_dir>/cache`:
//! entries survive a restart and outgrow memory. A site turns it on with
//! `[site.cache] disk = "1GiB"` (its bound on disk).
//!
//! One file per entry, named by the SHA-256 of its key: a first line
//! `rampart-cache 1`, a JSON line (the key, kept headers, validators, expiry,
//! the body's length and SHA-256), then the body. Files are written 0600 to
//! a temp name, fsynced and renamed, so a crash leaves either the old state
//! or a temp file, which the start removes along with anything that does
//! not parse, is the wrong length or has expired. The body's checksum is
//! checked when it is read back; a file that fails is removed and counts as
//! a miss.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::Key;

const MAGIC: &str = "rampart-cache 1\n";
/// The JSON line is small (headers of one answer); a longer one is not ours.
const MAX_META: u64 = 256 * 1024;

/// What a file holds besides the body.
#[derive(Serialize, Deserialize)]
pub struct Meta {
    /// The site's name.
    pub site: String,
    /// The `Host` sent to Odoo.
    pub host: String,
    /// The request-target sent to Odoo.
    pub target: String,
    /// The kept headers, as names and raw values.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The entry's strong validator.
    pub etag: String,
    /// Seconds since the epoch of Last-Modified, when Odoo sent one.
    pub last_modified: Option<u64>,
    /// How long Odoo took to answer, in milliseconds.
    pub upstream_ms: u64,
    /// Seconds since the epoch.
    pub expires: u64,
    /// Body length in bytes, checked on load.
    pub body_len: u64,
    /// SHA-256 of the body in hex, checked on load.
    pub body_sha256: String,
}

impl Meta {
    fn key(&self) -> Key {
        Key {
            site: self.site.clone(),
            host: self.host.clone(),
            target: self.target.clone(),
        }
    }

    /// The kept headers; a name or value that does not parse is left out.
    pub fn header_map(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in &self.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.as_bytes()),
                HeaderValue::from_bytes(v),
            ) {
                h.append(n, v);
            }
        }
        h
    }

    /// How long the entry stays fresh from now; `None` when it has expired.
    pub fn remaining(&self) -> Option<Duration> {
        let left = self.expires.checked_sub(now())?;
        (left > 0).then(|| Duration::from_secs(left))
    }
}

struct Item {
    path: PathBuf,
    size: u64,
    seq: u64,
}

#[derive(Default)]
struct Index {
    items: HashMap<Key, Item>,
    /// Per site: write order → key (the front is dropped first).
    order: HashMap<String, BTreeMap<u64, Key>>,
    bytes: HashMap<String, u64>,
    seq: u64,
}

/// The disk tier: one file per entry under `<state_dir>/cache`.
pub struct Disk {
    dir: PathBuf,
    index: Mutex<Index>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// SHA-256 of `b`, lower-case hex.
pub fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn file_name(key: &Key) -> String {
    let joined = format!("{}\0{}\0{}", key.site, key.host, key.target);
    sha256_hex(joined.as_bytes())
}

/// Reads the two header lines; returns the meta and where the body starts.
fn read_meta(r: &mut BufReader<fs::File>) -> Option<(Meta, u64)> {
    let mut magic = String::new();
    r.by_ref().take(64).read_line(&mut magic).ok()?;
    if magic != MAGIC {
        return None;
    }
    let mut line = String::new();
    r.by_ref().take(MAX_META).read_line(&mut line).ok()?;
    if !line.ends_with('\n') {
        return None;
    }
    let meta: Meta = serde_json::from_str(line.trim_end()).ok()?;
    Some((meta, (magic.len() + line.len()) as u64))
}

impl Disk {
    /// Opens (creating, 0700) `dir`, removing temp files and anything that
    /// is not a whole, unexpired entry.
    pub fn open(dir: &Path) -> std::io::Result<Disk> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mut index = Index::default();
        let mut found: Vec<(u64, Key, PathBuf, u64)> = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = fs::symlink_metadata(&path)?;
            let valid = if meta.is_file() && !name.starts_with('.') {
                Self::check(&path, &name, meta.len()).map(|(m, _)| (m, meta.len()))
            } else {
                None
            };
            match valid {
                Some((m, len)) => {
                    let mtime = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(0);
                    found.push((mtime, m.key(), path, len));
                }
                None => {
                    tracing::info!(file = %path.display(), "cache: removed an invalid or expired file");
                    let _ = if meta.is_dir() {
                        fs::remove_dir_all(&path)
                    } else {
                        fs::remove_file(&path)
                    };
                }
            }
        }
        // Oldest first, so the write order survives the restart.
        found.sort();
        for (_, key, path, size) in found {
            index.add(key, path, size);
        }
        Ok(Disk {
            dir: dir.to_path_buf(),
            index: Mutex::new(index),
        })
    }

    /// A file's meta when it parses, names its own key, has the length it
    /// says and has not expired.
    fn check(path: &Path, name: &str, len: u64) -> Option<(Meta, u64)> {
        let mut r = BufReader::new(fs::File::open(path).ok()?);
        let (m, start) = read_meta(&mut r)?;
        (file_name(&m.key()) == name && start + m.body_len == len && m.remaining().is_some())
            .then_some((m, start))
    }

    /// Whether a file for `key` is indexed.
    pub fn contains(&self, key: &Key) -> bool {
        self.index.lock().unwrap().items.contains_key(key)
    }

    /// The entry for `key` read back and checked; a file that fails is removed.
    pub fn load(&self, key: &Key) -> Option<(Meta, Bytes)> {
        let path = self.index.lock().unwrap().items.get(key)?.path.clone();
        let read = (|| {
            let f = fs::File::open(&path).ok()?;
            let len = f.metadata().ok()?.len();
            let mut r = BufReader::new(f);
            let (m, start) = read_meta(&mut r)?;
            if m.key() != *key || start + m.body_len != len || m.remaining().is_none() {
                return None;
            }
            let mut body = Vec::with_capacity(m.body_len as usize);
            r.read_to_end(&mut body).ok()?;
            (sha256_hex(&body) == m.body_sha256).then(|| (m, Bytes::from(body)))
        })();
        if read.is_none() {
            tracing::warn!(file = %path.display(), "cache: a disk entry failed its check; removed");
            self.remove(key);
        }
        read
    }

    /// Writes an entry (temp, fsync, rename), then drops the site's oldest
    /// files beyond `max` bytes.
    pub fn store(&self, meta: &Meta, body: &[u8], max: u64) -> std::io::Result<()> {
        let key = meta.key();
        let name = file_name(&key);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".tmp-{name}-{}", std::process::id()));
        let write = || -> std::io::Result<u64> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            let line = serde_json::to_string(meta).map_err(std::io::Error::other)?;
            f.write_all(MAGIC.as_bytes())?;
            f.write_all(line.as_bytes())?;
            f.write_all(b"\n")?;
            f.write_all(body)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(&self.dir)?.sync_all()?;
            Ok((MAGIC.len() + line.len() + 1 + body.len()) as u64)
        };
        let size = match write() {
            Ok(s) => s,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let doomed = {
            let mut index = self.index.lock().unwrap();
            index.add(key, path, size);
            index.over(&meta.site, max)
        };
        for p in doomed {
            let _ = fs::remove_file(p);
        }
        Ok(())
    }

    /// Forgets `key` and removes its file.
    pub fn remove(&self, key: &Key) {
        let item = self.index.lock().unwrap().take(key);
        if let Some(i) = item {
            let _ = fs::remove_file(i.path);
        }
    }

    /// Keys of `site` (all sites when `None`) whose target starts with `prefix`.
    pub fn keys(&self, site: Option<&str>, prefix: &str) -> Vec<Key> {
        self.index
            .lock()
            .unwrap()
            .items
            .keys()
            .filter(|k| site.is_none_or(|s| s == k.site) && k.target.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Entries and bytes on disk for `site`.
    pub fn usage(&self, site: &str) -> (usize, u64) {
        let index = self.index.lock().unwrap();
        let n = index.order.get(site).map_or(0, |o| o.len());
        (n, index.bytes.get(site).copied().unwrap_or(0))
    }
}

impl Index {
    fn add(&mut self, key: Key, path: PathBuf, size: u64) {
        self.take(&key);
        self.seq += 1;
        let seq = self.seq;
        self.order
            .entry(key.site.clone())
            .or_default()
            .insert(seq, key.clone());
        *self.bytes.entry(key.site.clone()).or_default() += size;
        self.items.insert(key, Item { path, size, seq });
    }

    fn take(&mut self, key: &Key) -> Option<Item> {
        let item = self.items.remove(key)?;
        if let Some(o) = self.order.get_mut(&key.site) {
            o.remove(&item.seq);
        }
        if let Some(b) = self.bytes.get_mut(&key.site) {
            *b -= item.size;
        }
        Some(item)
    }

    /// Drops the oldest entries of `site` until it fits `max`; their paths.
    fn over(&mut self, site: &str, max: u64) -> Vec<PathBuf> {
        let mut doomed = Vec::new();
        while self.bytes.get(site).copied().unwrap_or(0) > max {
            let Some((_, key)) = self.order.get_mut(site).and_then(|o| o.pop_first()) else {
                break;
            };
            if let Some(item) = self.items.remove(&key) {
                if let Some(b) = self.bytes.get_mut(site) {
                    *b -= item.size;
                }
                doomed.push(item.path);
            }
        }
        doomed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "rampart-cache-disk-{tag}-{}-{}",
            std::process::id(),
            now()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn meta(target: &str, body: &[u8], expires: u64) -> Meta {
        Meta {
            site: "s".into(),
            host: "h".into(),
            target: target.into(),
            headers: vec![("content-type".into(), b"text/css".to_vec())],
            etag: "\"e\"".into(),
            last_modified: Some(5),
            upstream_ms: 250,
            expires,
            body_len: body.len() as u64,
            body_sha256: sha256_hex(body),
        }
    }

    fn key(target: &str) -> Key {
        Key {
            site: "s".into(),
            host: "h".into(),
            target: target.into(),
        }
    }

    #[test]
    fn survives_a_restart_and_is_private() {
        let d = dir("restart");
        let disk = Disk::open(&d).unwrap();
        let year = now() + 31_536_000;
        disk.store(&meta("/a", b"body a", year), b"body a", 1 << 20)
            .unwrap();
        drop(disk);
        let disk = Disk::open(&d).unwrap();
        let (m, body) = disk.load(&key("/a")).expect("kept across the restart");
        assert_eq!(&body[..], b"body a");
        assert_eq!(m.header_map()["content-type"], "text/css");
        let file = d.join(file_name(&key("/a")));
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_start_removes_temp_truncated_foreign_and_expired_files() {
        let d = dir("clean");
        let disk = Disk::open(&d).unwrap();
        let year = now() + 31_536_000;
        disk.store(&meta("/good", b"good", year), b"good", 1 << 20)
            .unwrap();
        disk.store(&meta("/cut", b"0123456789", year), b"0123456789", 1 << 20)
            .unwrap();
        disk.store(&meta("/old", b"old", now() - 1), b"old", 1 << 20)
            .unwrap();
        drop(disk);
        let cut = d.join(file_name(&key("/cut")));
        let len = fs::metadata(&cut).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&cut)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        fs::write(d.join(".tmp-half-written"), b"rampart-cache 1\n{").unwrap();
        fs::write(d.join("notes.txt"), b"not an entry").unwrap();
        let disk = Disk::open(&d).unwrap();
        let mut left: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, vec![file_name(&key("/good"))]);
        assert!(disk.load(&key("/good")).is_some());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_corrupted_body_is_a_miss_and_removed() {
        let d = dir("corrupt");
        let disk = Disk::open(&d).unwrap();
        let year = now() + 31_536_000;
        disk.store(&meta("/a", b"original", year), b"original", 1 << 20)
            .unwrap();
        let file = d.join(file_name(&key("/a")));
        let mut bytes = fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&file, bytes).unwrap();
        assert!(disk.load(&key("/a")).is_none());
        assert!(!file.exists());
        assert!(!disk.contains(&key("/a")));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bounded_per_site_oldest_first() {
        let d = dir("bound");
        let disk = Disk::open(&d).unwrap();
        let year = now() + 31_536_000;
        let body = vec![b'x'; 1000];
        for t in ["/1", "/2", "/3"] {
            disk.store(&meta(t, &body, year), &body, 3000).unwrap();
        }
        assert!(!disk.contains(&key("/1")));
        assert!(disk.contains(&key("/2")) && disk.contains(&key("/3")));
        assert!(disk.usage("s").1 <= 3000);
        assert_eq!(fs::read_dir(&d).unwrap().count(), 2);
        fs::remove_dir_all(&d).unwrap();
    }
}
