//! Private spool files for bodies too large to keep in memory: request
//! bodies received whole before Odoo is asked, and Odoo's answers read as
//! fast as Odoo writes them while a slow client takes its time.
//!
//! Files live in `<state_dir>/spool` (a 0700 directory), are created 0600
//! with `O_EXCL` and unlinked the moment they are open, so nothing is left
//! behind when the body is done or the process is killed; whatever a crash
//! between create and unlink left is removed at start. The bytes on disk
//! are bounded by one budget for the process (`spool_max`) and a share of
//! it per client address (`spool_per_client`), so one client cannot fill
//! the spool for everyone: a write that would go over either fails like a
//! full disk.
//!
//! Each open spool file is a file descriptor. One address holds at most
//! `FILES_PER_CLIENT`, and all together at most a quarter of the process's
//! RLIMIT_NOFILE soft limit (`files_max_for_limit`), so that many
//! addresses cannot spend the descriptors connections need (red team 3:
//! ~220 addresses × 256 files = LimitNOFILE 65536). Past either, a request
//! body that needs a file gets 507 and an answer that would be spooled is
//! served at its client's pace, holding only that client's slot.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ipnet::IpNet;
use prometheus_client::metrics::counter::Counter;

use crate::body_memory::BodyMemory;

/// Private spool files under `<state_dir>/spool`, within one byte budget.
pub struct Spool {
    dir: PathBuf,
    budget: u64,
    used: AtomicU64,
    per_client: u64,
    clients: Mutex<HashMap<IpNet, u64>>,
    /// Spool files open per client: each is a file descriptor, and many
    /// HTTP/2 streams from one address must not spend the process's.
    files: Mutex<Files>,
    /// Spool files all clients together may have open.
    files_max: usize,
    next: AtomicU64,
    /// Bytes written to spool files, for metrics.
    pub written: Counter,
    /// What buffered bodies keep in memory before they are spooled, per
    /// client: charged here so that one set of shares covers both.
    pub memory: Arc<BodyMemory>,
}

#[derive(Default)]
struct Files {
    by_client: HashMap<IpNet, usize>,
    total: usize,
}

/// The spool budget is spent, or the disk is full.
#[derive(Debug)]
pub struct SpoolFull;

impl std::fmt::Display for SpoolFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the spool is full (spool_max or the disk)")
    }
}
impl std::error::Error for SpoolFull {}

impl Spool {
    /// Creates `<state_dir>/spool` (0700) and removes what a killed
    /// process left in it.
    pub fn open(
        state_dir: &Path,
        budget: u64,
        per_client: u64,
        memory: BodyMemory,
        files_max: usize,
    ) -> io::Result<Arc<Spool>> {
        let dir = state_dir.join("spool");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let mut stale = 0;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let removed = if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Ok(()) => stale += 1,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove a stale spool file")
                }
            }
        }
        if stale > 0 {
            tracing::info!(dir = %dir.display(), files = stale, "removed stale spool files");
        }
        Ok(Arc::new(Spool {
            dir,
            budget,
            used: AtomicU64::new(0),
            per_client,
            clients: Mutex::default(),
            files: Mutex::default(),
            files_max,
            next: AtomicU64::new(0),
            written: Counter::default(),
            memory: Arc::new(memory),
        }))
    }

    /// `<state_dir>/spool`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes the spool files hold now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// A new, already unlinked, spool file, counted against `owner`'s share.
    pub async fn create(self: &Arc<Self>, owner: IpAddr) -> io::Result<SpoolFile> {
        let owner = rampart_guard::client_key(owner);
        let slot = FileSlot::take(self.clone(), owner)
            .ok_or_else(|| io::Error::new(io::ErrorKind::StorageFull, SpoolFull))?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{}-{n}", std::process::id()));
        let file = tokio::task::spawn_blocking(move || {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc_o_nofollow())
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok::<_, io::Error>(f)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(SpoolFile {
            file: Arc::new(file),
            len: 0,
            owner,
            spool: self.clone(),
            _slot: slot,
        })
    }

    fn reserve(&self, owner: IpNet, n: u64) -> bool {
        let mut clients = self.clients.lock().expect("spool lock");
        let mine = clients.get(&owner).copied().unwrap_or(0);
        if mine.saturating_add(n) > self.per_client {
            return false;
        }
        let global = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= self.budget)
            });
        if global.is_err() {
            return false;
        }
        clients.insert(owner, mine + n);
        true
    }

    fn give_back(&self, owner: IpNet, n: u64) {
        if n == 0 {
            return;
        }
        self.used.fetch_sub(n, Ordering::AcqRel);
        let mut clients = self.clients.lock().expect("spool lock");
        if let Some(mine) = clients.get_mut(&owner) {
            *mine = mine.saturating_sub(n);
            if *mine == 0 {
                clients.remove(&owner);
            }
        }
    }
}

/// O_NOFOLLOW on Linux; the name is fresh and the directory private, so
/// this is belt and braces.
fn libc_o_nofollow() -> i32 {
    0o400000
}

/// One spool file: appended to by one writer, read at any offset below
/// `len` by readers. Its budget is given back when it is dropped.
pub struct SpoolFile {
    file: Arc<File>,
    len: u64,
    owner: IpNet,
    spool: Arc<Spool>,
    _slot: FileSlot,
}

/// Spool files one client address may have open at once.
pub const FILES_PER_CLIENT: usize = 256;

/// Spool files all clients may have open at once: a quarter of the
/// RLIMIT_NOFILE soft limit (read with rustix, already in the tree),
/// leaving the rest to connections, upstream sockets and files.
pub fn files_max() -> usize {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    files_max_for_limit(lim.current.unwrap_or(u64::MAX))
}

/// A quarter of `soft` descriptors, at least 16 (an infinite limit counts
/// as 4 million).
pub fn files_max_for_limit(soft: u64) -> usize {
    usize::try_from((soft.min(1 << 22) / 4).max(16)).unwrap_or(usize::MAX)
}

/// One of a client's `FILES_PER_CLIENT`, given back when dropped.
struct FileSlot {
    spool: Arc<Spool>,
    owner: IpNet,
}

impl FileSlot {
    fn take(spool: Arc<Spool>, owner: IpNet) -> Option<FileSlot> {
        {
            let mut files = spool.files.lock().expect("spool lock");
            if files.total >= spool.files_max {
                return None;
            }
            let mine = files.by_client.entry(owner).or_insert(0);
            if *mine >= FILES_PER_CLIENT {
                return None;
            }
            *mine += 1;
            files.total += 1;
        }
        Some(FileSlot { spool, owner })
    }
}

impl Drop for FileSlot {
    fn drop(&mut self) {
        let mut files = self.spool.files.lock().expect("spool lock");
        files.total -= 1;
        if let Some(mine) = files.by_client.get_mut(&self.owner) {
            *mine -= 1;
            if *mine == 0 {
                files.by_client.remove(&self.owner);
            }
        }
    }
}

impl SpoolFile {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `data`; `SpoolFull` (as the error's inner) when the budget
    /// or the disk is full.
    pub async fn append(&mut self, data: Bytes) -> io::Result<()> {
        let n = data.len() as u64;
        if !self.spool.reserve(self.owner, n) {
            return Err(io::Error::new(io::ErrorKind::StorageFull, SpoolFull));
        }
        let file = self.file.clone();
        let at = self.len;
        let r = tokio::task::spawn_blocking(move || file.write_all_at(&data, at))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r);
        match r {
            Ok(()) => {
                self.len += n;
                self.spool.written.inc_by(n);
                Ok(())
            }
            Err(e) => {
                self.spool.give_back(self.owner, n);
                Err(e)
            }
        }
    }

    /// A handle for reading what was written so far.
    pub fn reader(&self) -> SpoolReader {
        SpoolReader {
            file: self.file.clone(),
        }
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        self.spool.give_back(self.owner, self.len);
    }
}

/// Reads a spool file while it is still being written.
#[derive(Clone)]
pub struct SpoolReader {
    file: Arc<File>,
}

impl SpoolReader {
    /// Up to `max` bytes from `at`.
    pub async fn read_at(&self, at: u64, max: usize) -> io::Result<Bytes> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; max];
            let mut filled = 0;
            while filled < max {
                match file.read_at(&mut buf[filled..], at + filled as u64) {
                    Ok(0) => break,
                    Ok(k) => filled += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            buf.truncate(filled);
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// Whether an IO error means "no room" (the budget or the disk).
pub fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || e.raw_os_error() == Some(28)
        || e.get_ref().is_some_and(|i| i.is::<SpoolFull>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "rampart-spool-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn files_are_private_unlinked_and_budgeted() {
        let state = temp();
        std::fs::create_dir_all(state.join("spool")).unwrap();
        std::fs::write(state.join("spool").join("123-4"), b"left by a kill -9").unwrap();
        let spool = Spool::open(&state, 16, 10, BodyMemory::new(1 << 20, 1 << 20), 1000).unwrap();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        assert_eq!(
            std::fs::read_dir(spool.dir()).unwrap().count(),
            0,
            "stale file removed"
        );
        let mode = std::fs::metadata(spool.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let mut f = spool.create(a).await.unwrap();
        assert_eq!(
            std::fs::read_dir(spool.dir()).unwrap().count(),
            0,
            "unlinked at once"
        );
        f.append(Bytes::from_static(b"hello")).await.unwrap();
        f.append(Bytes::from_static(b"world")).await.unwrap();
        let e = f.append(Bytes::from_static(b"!")).await.unwrap_err();
        assert!(is_full(&e), "{e}");
        assert_eq!(f.len(), 10);
        let r = f.reader();
        assert_eq!(&r.read_at(3, 4).await.unwrap()[..], b"lowo");
        assert_eq!(&r.read_at(8, 100).await.unwrap()[..], b"ld");
        // The global budget has room left, another client's share too.
        let mut other = spool.create(b).await.unwrap();
        other.append(Bytes::from_static(b"012345")).await.unwrap();
        let e = other.append(Bytes::from_static(b"!")).await.unwrap_err();
        assert!(is_full(&e), "the global budget: {e}");
        drop(f);
        assert_eq!(spool.used(), 6);
        let mut g = spool.create(a).await.unwrap();
        g.append(Bytes::from_static(b"0123456789")).await.unwrap();
        std::fs::remove_dir_all(&state).unwrap();
    }

    #[tokio::test]
    async fn one_ipv6_slash_64_is_one_client() {
        let state = temp();
        let spool = Spool::open(&state, 100, 10, BodyMemory::new(1, 1), 1000).unwrap();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        let mut f = spool.create(a).await.unwrap();
        f.append(Bytes::from_static(b"0123456789")).await.unwrap();
        let mut g = spool.create(b).await.unwrap();
        let e = g.append(Bytes::from_static(b"!")).await.unwrap_err();
        assert!(is_full(&e), "same /64, same share: {e}");
        std::fs::remove_dir_all(state).unwrap();
    }

    #[tokio::test]
    async fn one_client_cannot_hold_more_than_its_spool_files() {
        // Each spool file is a descriptor: many unread HTTP/2 answers from
        // one address must not spend the process's.
        let state = temp();
        let spool = Spool::open(
            &state,
            1 << 30,
            1 << 30,
            BodyMemory::new(1 << 20, 1 << 20),
            1000,
        )
        .unwrap();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let mut held = Vec::new();
        for _ in 0..FILES_PER_CLIENT {
            held.push(spool.create(a).await.unwrap());
        }
        let e = spool.create(a).await.err().expect("one file too many");
        assert!(is_full(&e), "{e}");
        let other = spool
            .create(b)
            .await
            .expect("another client keeps its files");
        drop(other);
        held.pop();
        spool
            .create(a)
            .await
            .expect("a closed file gives its place back");
        std::fs::remove_dir_all(state).unwrap();
    }

    #[tokio::test]
    async fn all_clients_together_hold_at_most_files_max() {
        let state = temp();
        let spool = Spool::open(&state, 1 << 30, 1 << 30, BodyMemory::new(1, 1), 3).unwrap();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let f1 = spool.create(a).await.unwrap();
        let _f2 = spool.create(a).await.unwrap();
        let _f3 = spool.create(b).await.unwrap();
        let e = spool
            .create(b)
            .await
            .err()
            .expect("over the process's files");
        assert!(is_full(&e), "{e}");
        drop(f1);
        spool
            .create(b)
            .await
            .expect("a closed file gives its place back");
        assert_eq!(files_max_for_limit(65536), 16384);
        assert_eq!(files_max_for_limit(1024), 256);
        assert_eq!(files_max_for_limit(20), 16);
        assert_eq!(files_max_for_limit(u64::MAX), 1 << 20);
        std::fs::remove_dir_all(state).unwrap();
    }
}
