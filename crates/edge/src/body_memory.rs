//! Memory that buffered bodies hold, per client address and in all.
//!
//! Request bodies are received whole and Odoo's answers drained as fast as
//! Odoo writes them, each kept in memory up to a small size and spooled past
//! it. Each body alone is small, but nothing bounded how many a client
//! keeps: one address opening HTTP/2 streams it never reads held 256 KiB per
//! answer, hundreds of megabytes in all (red team 2). So every byte a
//! buffered body keeps in memory is charged to its client address; past
//! `buffer_memory_per_client` that client's bodies go to the spool (its own
//! disk share), and when that is spent too, Odoo's answer waits for the
//! client as a plain stream would — holding only that client's own upstream
//! slots, which are capped per client already.
//!
//! Shares alone let enough addresses together spend the process's memory
//! (red team 3: 20 addresses × 200 queued 60 KiB bodies, 24 MB → 327 MB),
//! so all bodies together keep at most `buffer_memory_max`; past it every
//! client's bodies go to the spool, as past its own share.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

/// Bytes buffered bodies hold in memory, per client address and in all.
pub struct BodyMemory {
    per_client: usize,
    /// All clients together (`buffer_memory_max`).
    max: usize,
    clients: Mutex<HashMap<IpNet, usize>>,
    total: AtomicUsize,
    /// `total`, for metrics.
    pub gauge: Gauge,
    /// Woken when some client's bytes are given back: a drain waiting for
    /// room may find it now.
    freed: Notify,
}

impl BodyMemory {
    /// `per_client` bytes per address, `max` for all together.
    pub fn new(per_client: usize, max: usize) -> BodyMemory {
        BodyMemory {
            per_client,
            max,
            clients: Mutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
            gauge: Gauge::default(),
            freed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpNet, usize>> {
        self.clients.lock().expect("body memory lock")
    }

    /// Charges `n` bytes to `owner` if its share has room for them.
    pub fn try_take(&self, owner: IpAddr, n: usize) -> bool {
        let owner = rampart_guard::client_key(owner);
        let mut clients = self.lock();
        let mine = clients.get(&owner).copied().unwrap_or(0);
        if mine.saturating_add(n) > self.per_client || self.used().saturating_add(n) > self.max {
            return false;
        }
        clients.insert(owner, mine + n);
        self.add(n);
        true
    }

    /// Charges `n` bytes whether or not there is room: for the one piece a
    /// drain already holds when neither memory nor the spool can take it
    /// (it then waits with `has_room` before reading more).
    pub fn force_take(&self, owner: IpAddr, n: usize) {
        *self
            .lock()
            .entry(rampart_guard::client_key(owner))
            .or_insert(0) += n;
        self.add(n);
    }

    fn add(&self, n: usize) {
        self.total.fetch_add(n, Ordering::Relaxed);
        self.gauge.inc_by(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Whether `owner` may keep more in memory.
    pub fn has_room(&self, owner: IpAddr) -> bool {
        self.lock()
            .get(&rampart_guard::client_key(owner))
            .copied()
            .unwrap_or(0)
            < self.per_client
            && self.used() < self.max
    }

    /// Returns `n` bytes of `owner`'s share.
    pub fn give_back(&self, owner: IpAddr, n: usize) {
        if n == 0 {
            return;
        }
        {
            let owner = rampart_guard::client_key(owner);
            let mut clients = self.lock();
            if let Some(mine) = clients.get_mut(&owner) {
                *mine = mine.saturating_sub(n);
                if *mine == 0 {
                    clients.remove(&owner);
                }
            }
        }
        self.total.fetch_sub(n, Ordering::Relaxed);
        self.gauge.dec_by(i64::try_from(n).unwrap_or(i64::MAX));
        self.freed.notify_waiters();
    }

    /// Bytes all buffered bodies hold in memory now.
    pub fn used(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Completes after the next `give_back` (call `enable` on it before
    /// checking for room, so a give-back in between is not missed).
    pub fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }
}

/// Bytes charged to a client, given back when dropped.
pub struct Charge {
    memory: Arc<BodyMemory>,
    owner: IpAddr,
    n: usize,
}

impl Charge {
    /// A charge to `owner`, empty so far.
    pub fn new(memory: Arc<BodyMemory>, owner: IpAddr) -> Charge {
        Charge {
            memory,
            owner,
            n: 0,
        }
    }

    /// Charges `n` more bytes; false, and nothing charged, when over a share.
    pub fn try_add(&mut self, n: usize) -> bool {
        let ok = self.memory.try_take(self.owner, n);
        if ok {
            self.n += n;
        }
        ok
    }
}

impl Charge {
    /// Charges `n` more bytes whether or not there is room: for bytes
    /// already held (a gzip a little longer than the page it was made from).
    pub fn force_add(&mut self, n: usize) {
        self.memory.force_take(self.owner, n);
        self.n += n;
    }

    /// Gives back `n` of the bytes charged (at most all of them).
    pub fn release(&mut self, n: usize) {
        let n = n.min(self.n);
        self.memory.give_back(self.owner, n);
        self.n -= n;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.memory.give_back(self.owner, self.n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn one_ipv6_slash_64_is_one_client() {
        let m = BodyMemory::new(100, 1000);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        assert!(m.try_take(a, 100));
        assert!(!m.try_take(b, 1), "same /64, same share");
        assert!(!m.has_room(b));
        m.give_back(b, 100);
        assert!(m.lock().is_empty());
    }

    #[test]
    fn one_client_cannot_take_more_than_its_share_and_others_keep_theirs() {
        let m = BodyMemory::new(100, 1000);
        assert!(m.try_take(A, 60));
        assert!(m.try_take(A, 40));
        assert!(!m.try_take(A, 1), "A's share is spent");
        assert!(!m.has_room(A));
        assert!(m.try_take(B, 100), "B is not charged for A's bytes");
        assert_eq!(m.used(), 200);
        m.give_back(A, 50);
        assert!(m.has_room(A));
        assert!(m.try_take(A, 50));
        assert!(!m.try_take(A, 1));
        m.give_back(A, 100);
        m.give_back(B, 100);
        assert_eq!(m.used(), 0);
        assert!(m.lock().is_empty(), "no entry is kept for idle clients");
    }

    #[test]
    fn a_charge_gives_its_bytes_back_when_dropped() {
        let m = Arc::new(BodyMemory::new(100, 1000));
        {
            let mut c = Charge::new(m.clone(), A);
            assert!(c.try_add(70));
            assert!(!c.try_add(31));
            assert_eq!(m.used(), 70);
        }
        assert_eq!(m.used(), 0);
        assert!(m.try_take(A, 100));
    }

    #[test]
    fn all_clients_together_stay_under_the_ceiling() {
        let m = BodyMemory::new(100, 250);
        assert!(m.try_take(A, 100));
        assert!(m.try_take(B, 100));
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        assert!(!m.try_take(c, 51), "over the process's ceiling");
        assert!(m.try_take(c, 50));
        assert!(!m.has_room(c), "C's share has room, the process has none");
        m.give_back(A, 100);
        assert!(m.has_room(c));
        assert!(m.try_take(c, 50));
    }
}
