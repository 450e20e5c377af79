//! The edge cache of Odoo's immutable public answers.
//!
//! What is kept: asset bundles (`/web/assets/<hash>/<bundle>`), and
//! `/web/image/...` and `/web/content/...` answers whose URL carries a
//! `unique` token, when Odoo's own answer is a 200 that says
//! `Cache-Control: public` with a max-age of at least a day and sets no
//! cookie (`policy`). Odoo names these by content (a new version gets a
//! new URL) and answers them with a one-year max-age, so an edge copy is
//! never stale, and every copy served is an Odoo worker not taken.
//!
//! Why sharing them is safe: Odoo marks an answer `public` only when any
//! visitor may have it (bundles; attachments flagged public; a record's
//! image as the anonymous user sees it) and `private` whenever it depends
//! on the session (a logged-in user's images), and a `Set-Cookie` makes
//! an answer uncacheable. An answer is kept under the site, the `Host`
//! Odoo was sent and the exact request-target Odoo was sent, and only when
//! that target is the one spelling werkzeug routes on, so no request can
//! store an answer under another request's key. Only a plain GET without a
//! body fills an entry (never HEAD, Range or a conditional request; a
//! request with a body never uses the cache: Odoo's `request.params` lets a
//! form body override the query), bodies are bounded
//! per entry and in total per site (least recently used evicted first),
//! and a request carrying `Authorization` neither fills nor reads it.
//!
//! Served from an entry: ETag/If-None-Match and Last-Modified →
//! 304, one byte range → 206 (416 when unsatisfiable), and a compressed
//! variant per encoding made once (`variants`) and kept with the entry.
//! With `disk`, entries are also written under `<state_dir>/cache`
//! (`disk`) and read back after a restart or an eviction from memory.

pub mod answer;
pub mod disk;
mod metrics;
pub mod policy;
pub(crate) mod variants;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::watch;

use crate::config::CacheConfig;
use crate::metrics::SiteLabels;
pub use metrics::CacheMetrics;
pub use policy::{Candidate, Key};

/// One kept answer.
pub struct Entry {
    /// The identity body.
    pub body: Bytes,
    /// The kept headers (`policy::KEPT_HEADERS`), without ETag.
    pub headers: HeaderMap,
    /// A strong validator: Odoo's when it sent a strong one, else made
    /// from the body.
    pub etag: String,
    /// Seconds since the epoch of Last-Modified, when Odoo sent one.
    pub last_modified: Option<u64>,
    /// How long Odoo took to answer when this was fetched: what each hit saves.
    pub upstream_time: Duration,
    expires: Instant,
    variants: variants::Variants,
    /// Its bytes in its site's live count until the last reader lets go.
    charge: Charge,
}

/// Bytes counted in a site's `live` total (every entry's body and
/// variants, in the cache or held by an answer being sent) until dropped.
/// An answer made from an entry is the entry's bytes: a client that never
/// reads it keeps them alive after the cache evicted them (red team 4 F3),
/// so fills stop while such bytes would pass `max_memory`.
pub struct Charge {
    live: Arc<AtomicU64>,
    n: AtomicU64,
}

impl Charge {
    fn add(&self, k: u64) {
        self.live.fetch_add(k, Ordering::Relaxed);
        self.n.fetch_add(k, Ordering::Relaxed);
    }

    /// Counts `n` bytes instead of what was reserved.
    pub fn set(&self, n: u64) {
        let old = self.n.swap(n, Ordering::Relaxed);
        self.live.fetch_add(n, Ordering::Relaxed);
        self.live.fetch_sub(old, Ordering::Relaxed);
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.live
            .fetch_sub(self.n.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

impl Entry {
    /// What an entry costs besides its body and variants.
    const OVERHEAD: u64 = 512;
}

/// An entry in its site's store: when it was last used, what it costs.
struct Slot {
    entry: Arc<Entry>,
    tick: u64,
    size: u64,
}

#[derive(Default)]
struct SiteStore {
    entries: HashMap<Key, Slot>,
    /// Last use tick → key: the front is the least recently used.
    order: BTreeMap<u64, Key>,
    bytes: u64,
    /// Bytes of this site's live entries, kept or not ([`Charge`]).
    live: Arc<AtomicU64>,
}

#[derive(Default)]
struct Inner {
    sites: HashMap<String, SiteStore>,
    /// Keys being fetched now: later requests wait for that one fetch.
    filling: HashMap<Key, watch::Receiver<()>>,
    tick: u64,
}

/// The cache, shared by every site (each with its own budget).
#[derive(Default)]
pub struct Cache {
    inner: Mutex<Inner>,
    /// Hits, misses, bytes and entries per site.
    pub metrics: CacheMetrics,
    /// The disk tier, when the state directory could hold one.
    disk: Option<Arc<disk::Disk>>,
    /// Purges so far: an answer fetched (or read back from disk) while a
    /// purge ran is served but not kept, so a purge is never undone by a
    /// fill that started before it.
    purges: Arc<AtomicU64>,
}

/// What a lookup found.
pub enum Lookup {
    /// Kept: the answer is made from this.
    Hit(Arc<Entry>),
    /// Not kept: this request fetches it; others wait until the guard drops.
    Fill(FillGuard),
    /// Not kept, and this request may not fill (or gave up waiting).
    Pass,
}

/// What [`Cache::lookup`] does next, decided under the lock.
enum Step {
    Hit(Arc<Entry>),
    Wait(watch::Receiver<()>),
    Disk,
    Pass,
}

/// Held while one request fetches a key; dropping it wakes the waiters.
pub struct FillGuard {
    cache: Arc<Cache>,
    key: Key,
    /// `Cache::purges` when the fetch began.
    purges: u64,
    _done: watch::Sender<()>,
}

impl FillGuard {
    /// The key being fetched.
    pub fn key(&self) -> &Key {
        &self.key
    }
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        self.cache.inner.lock().unwrap().filling.remove(&self.key);
    }
}

/// How long a request waits for another request's fetch of the same key
/// before going to Odoo itself.
const COALESCE_WAIT: Duration = Duration::from_secs(10);

impl Cache {
    /// A cache whose disk tier lives in `dir` (opened and cleaned now).
    pub fn with_disk(dir: &std::path::Path) -> std::io::Result<Cache> {
        Ok(Cache {
            disk: Some(Arc::new(disk::Disk::open(dir)?)),
            ..Cache::default()
        })
    }

    /// Counts `n` bytes for a new entry of `site`, unless the bytes of its
    /// entries no longer kept but still held by readers would then pass
    /// `max_memory`: the answer then goes by as if uncacheable.
    pub fn reserve(&self, site: &str, n: u64, cfg: &CacheConfig) -> Option<Charge> {
        let mut inner = self.inner.lock().unwrap();
        let store = inner.sites.entry(site.to_string()).or_default();
        let live = store.live.load(Ordering::Relaxed);
        let held = live.saturating_sub(store.bytes);
        if held.saturating_add(n) > cfg.max_memory.get() {
            return None;
        }
        let c = Charge {
            live: store.live.clone(),
            n: AtomicU64::new(0),
        };
        c.add(n);
        Some(c)
    }

    /// An entry of the disk tier, read back off the async threads and put
    /// in memory.
    async fn read_back(&self, key: &Key, cfg: &CacheConfig) -> Option<Arc<Entry>> {
        let disk = self
            .disk
            .clone()
            .filter(|d| cfg.disk.get() > 0 && d.contains(key))?;
        let k = key.clone();
        let purges = self.purges.load(Ordering::SeqCst);
        let (meta, body) = tokio::task::spawn_blocking(move || disk.load(&k))
            .await
            .ok()??;
        let charge = self.reserve(&key.site, body.len() as u64, cfg)?;
        let entry = Arc::new(Entry {
            headers: meta.header_map(),
            etag: meta.etag.clone(),
            last_modified: meta.last_modified,
            upstream_time: Duration::from_millis(meta.upstream_ms),
            expires: Instant::now() + meta.remaining()?,
            body,
            variants: variants::Variants::default(),
            charge,
        });
        self.put(key, cfg, entry.clone(), purges);
        Some(entry)
    }

    /// Finds `c.key` (in memory, then on disk); on a miss the first
    /// fillable request fetches it and the others wait for that fetch
    /// (bounded) and look again.
    ///
    /// Every decision is taken under one lock that also looks for the
    /// entry: a fetch may end (entry kept, guard dropped) between two
    /// looks, and a request that saw "no entry" then "no fetch" would
    /// otherwise fetch a kept key again (CI 2026-12-03).
    pub async fn lookup(self: &Arc<Self>, c: &Candidate, cfg: &CacheConfig) -> Lookup {
        let site = SiteLabels {
            site: c.key.site.clone(),
        };
        let (mut waited, mut disk_tried) = (false, false);
        loop {
            let step = {
                let mut inner = self.inner.lock().unwrap();
                match inner.get(&c.key) {
                    Some(e) => Step::Hit(e),
                    None => {
                        self.sync_gauges(&inner, &c.key.site);
                        match inner.filling.get(&c.key) {
                            Some(rx) if !waited => Step::Wait(rx.clone()),
                            Some(_) => Step::Pass,
                            None if !disk_tried => Step::Disk,
                            None if c.fill && !waited => {
                                let (tx, rx) = watch::channel(());
                                inner.filling.insert(c.key.clone(), rx);
                                self.metrics.misses.get_or_create(&site).inc();
                                return Lookup::Fill(FillGuard {
                                    cache: self.clone(),
                                    key: c.key.clone(),
                                    purges: self.purges.load(Ordering::SeqCst),
                                    _done: tx,
                                });
                            }
                            None => Step::Pass,
                        }
                    }
                }
            };
            match step {
                Step::Hit(e) => return self.hit(&site, e),
                Step::Pass => {
                    self.metrics.misses.get_or_create(&site).inc();
                    return Lookup::Pass;
                }
                Step::Disk => {
                    disk_tried = true;
                    if let Some(e) = self.read_back(&c.key, cfg).await {
                        return self.hit(&site, e);
                    }
                }
                Step::Wait(mut rx) => {
                    // Ends when the fetching request's guard drops (the sender).
                    let _ = tokio::time::timeout(COALESCE_WAIT, rx.changed()).await;
                    waited = true;
                }
            }
        }
    }

    /// A hit, counted with the Odoo time it saved.
    fn hit(&self, site: &SiteLabels, e: Arc<Entry>) -> Lookup {
        self.metrics.hits.get_or_create(site).inc();
        self.metrics
            .saved_seconds
            .get_or_create(site)
            .inc_by(e.upstream_time.as_secs_f64());
        Lookup::Hit(e)
    }

    /// Keeps an answer fetched under `guard`, evicting the least recently
    /// used entries of its site beyond `cfg.max_memory`.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &self,
        guard: &FillGuard,
        cfg: &CacheConfig,
        body: Bytes,
        headers: HeaderMap,
        etag: String,
        last_modified: Option<u64>,
        max_age: Duration,
        upstream_time: Duration,
        charge: Charge,
    ) -> Arc<Entry> {
        charge.set(body.len() as u64);
        let entry = Arc::new(Entry {
            body,
            headers,
            etag,
            last_modified,
            upstream_time,
            expires: Instant::now() + max_age,
            variants: variants::Variants::default(),
            charge,
        });
        if !self.put(&guard.key, cfg, entry.clone(), guard.purges) {
            tracing::debug!(target = %guard.key.target, "not cached: purged while it was fetched");
            return entry;
        }
        if let Some(disk) = self.disk.clone().filter(|_| cfg.disk.get() > 0) {
            let meta = disk::Meta {
                site: guard.key.site.clone(),
                host: guard.key.host.clone(),
                target: guard.key.target.clone(),
                headers: entry
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                    .collect(),
                etag: entry.etag.clone(),
                last_modified: entry.last_modified,
                upstream_ms: upstream_time.as_millis() as u64,
                expires: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
                    + max_age.as_secs(),
                body_len: entry.body.len() as u64,
                body_sha256: disk::sha256_hex(&entry.body),
            };
            let (body, max) = (entry.body.clone(), cfg.disk.get());
            let (purges, since) = (self.purges.clone(), guard.purges);
            let key = guard.key.clone();
            tokio::task::spawn_blocking(move || {
                if purges.load(Ordering::SeqCst) != since {
                    return;
                }
                if let Err(e) = disk.store(&meta, &body, max) {
                    tracing::warn!(target = %meta.target, error = %e, "cache: cannot write a disk entry");
                }
                // A purge that listed the disk before this file was there
                // counted on it not being written.
                if purges.load(Ordering::SeqCst) != since {
                    disk.remove(&key);
                }
            });
        }
        entry
    }

    /// Puts `entry` in memory under `key`, evicting the site's least
    /// recently used entries beyond `cfg.max_memory`, unless a purge ran
    /// since `since` (`Cache::purges` when the entry's fetch or read-back
    /// began): decided under the lock the purge's sweep takes, so no purge
    /// can finish between the check and the put. False when not kept.
    fn put(&self, key: &Key, cfg: &CacheConfig, entry: Arc<Entry>, since: u64) -> bool {
        let mut inner = self.inner.lock().unwrap();
        if self.purges.load(Ordering::SeqCst) != since {
            return false;
        }
        let tick = inner.next_tick();
        let site = inner.sites.entry(key.site.clone()).or_default();
        site.remove(key);
        let size = entry.body.len() as u64 + Entry::OVERHEAD;
        site.bytes += size;
        site.entries.insert(key.clone(), Slot { entry, tick, size });
        site.order.insert(tick, key.clone());
        let evicted = site.evict_to(cfg.max_memory.get());
        self.metrics
            .evictions
            .get_or_create(&SiteLabels {
                site: key.site.clone(),
            })
            .inc_by(evicted);
        self.sync_gauges(&inner, &key.site);
        true
    }

    /// A compressed variant of `entry` for `enc`, made once (off the async
    /// threads) and counted in its site's budget.
    pub async fn variant(
        &self,
        key: &Key,
        entry: &Arc<Entry>,
        enc: crate::encoding::Encoding,
        cfg: &CacheConfig,
    ) -> Bytes {
        let (bytes, made) = entry.variants.get(enc, &entry.body).await;
        if made {
            entry.charge.add(bytes.len() as u64);
            let mut inner = self.inner.lock().unwrap();
            if let Some(site) = inner.sites.get_mut(&key.site)
                && let Some(slot) = site.entries.get_mut(key)
                && Arc::ptr_eq(&slot.entry, entry)
            {
                slot.size += bytes.len() as u64;
                site.bytes += bytes.len() as u64;
                let evicted = site.evict_to(cfg.max_memory.get());
                self.metrics
                    .evictions
                    .get_or_create(&SiteLabels {
                        site: key.site.clone(),
                    })
                    .inc_by(evicted);
            }
            self.sync_gauges(&inner, &key.site);
        }
        bytes
    }

    /// Drops the entries of `site` (all sites when `None`) whose target
    /// starts with `prefix`; returns how many.
    pub fn purge(&self, site: Option<&str>, prefix: &str) -> usize {
        // First: fills under way from here on are not kept.
        self.purges.fetch_add(1, Ordering::SeqCst);
        let mut on_disk: std::collections::HashSet<Key> = std::collections::HashSet::new();
        if let Some(disk) = &self.disk {
            for k in disk.keys(site, prefix) {
                disk.remove(&k);
                on_disk.insert(k);
            }
        }
        let mut inner = self.inner.lock().unwrap();
        // Again, under the lock of the sweep: a read-back that began after
        // the first count but loaded a file before its removal above is
        // refused by `put` now.
        self.purges.fetch_add(1, Ordering::SeqCst);
        let mut dropped = 0;
        let names: Vec<String> = inner.sites.keys().cloned().collect();
        for name in names {
            if site.is_some_and(|s| s != name) {
                continue;
            }
            let store = inner.sites.get_mut(&name).expect("listed");
            let doomed: Vec<Key> = store
                .entries
                .keys()
                .filter(|k| k.target.starts_with(prefix))
                .cloned()
                .collect();
            for k in doomed {
                store.remove(&k);
                if !on_disk.contains(&k) {
                    dropped += 1;
                }
            }
            self.sync_gauges(&inner, &name);
        }
        dropped + on_disk.len()
    }

    /// Per site: entries, bytes, hits, misses, evictions, seconds saved.
    pub fn stats(&self) -> serde_json::Value {
        let inner = self.inner.lock().unwrap();
        let mut sites: Vec<_> = inner.sites.keys().cloned().collect();
        sites.sort();
        let list: Vec<_> = sites
            .iter()
            .map(|name| {
                let s = &inner.sites[name];
                let l = SiteLabels { site: name.clone() };
                let (disk_entries, disk_bytes) =
                    self.disk.as_ref().map_or((0, 0), |d| d.usage(name));
                serde_json::json!({
                    "site": name,
                    "entries": s.entries.len(),
                    "bytes": s.bytes,
                    "disk_entries": disk_entries,
                    "disk_bytes": disk_bytes,
                    "hits": self.metrics.hits.get_or_create(&l).get(),
                    "misses": self.metrics.misses.get_or_create(&l).get(),
                    "evictions": self.metrics.evictions.get_or_create(&l).get(),
                    "odoo_seconds_saved": self.metrics.saved_seconds.get_or_create(&l).get(),
                })
            })
            .collect();
        serde_json::json!({ "sites": list })
    }

    fn sync_gauges(&self, inner: &Inner, site: &str) {
        let l = SiteLabels {
            site: site.to_string(),
        };
        let (n, b) = inner
            .sites
            .get(site)
            .map(|s| (s.entries.len() as i64, s.bytes as i64))
            .unwrap_or((0, 0));
        self.metrics.entries.get_or_create(&l).set(n);
        self.metrics.bytes.get_or_create(&l).set(b);
    }
}

impl Inner {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// A live entry (and marks it used); an expired one is dropped.
    fn get(&mut self, key: &Key) -> Option<Arc<Entry>> {
        let tick = self.next_tick();
        let site = self.sites.get_mut(&key.site)?;
        let slot = site.entries.get_mut(key)?;
        if slot.entry.expires <= Instant::now() {
            site.remove(key);
            return None;
        }
        let e = slot.entry.clone();
        let old = std::mem::replace(&mut slot.tick, tick);
        site.order.remove(&old);
        site.order.insert(tick, key.clone());
        Some(e)
    }
}

impl SiteStore {
    fn remove(&mut self, key: &Key) {
        if let Some(slot) = self.entries.remove(key) {
            self.order.remove(&slot.tick);
            self.bytes -= slot.size;
        }
    }

    /// Evicts least recently used entries until `bytes <= max`.
    fn evict_to(&mut self, max: u64) -> u64 {
        let mut n = 0;
        while self.bytes > max {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some(slot) = self.entries.remove(&key) {
                self.bytes -= slot.size;
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests;
