//! Per-client GCRA rate limits (governor) with a hard cap on remembered keys.
//!
//! A governor keyed limiter keeps every key it has ever seen unless pruned,
//! so a flood from rotating addresses would grow it without bound. Idle keys
//! are pruned by housekeeping; between prunes, reaching the cap first drops
//! idle keys and, if that frees too little (every key is busy: a flood), starts
//! a fresh table. Losing rate state during a flood of a million addresses costs
//! nothing a per-client limit could have saved; running out of memory would.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;

/// Default hard cap on keys per limiter: ~100 bytes a key, so ~20 MB at most.
pub const DEFAULT_MAX_KEYS: usize = 200_000;

type Keyed<K, C> = RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// What a limiter can be keyed by: an address (or IPv6 /64), a proven
/// session, an (address, login) pair.
pub trait Key: std::hash::Hash + Eq + Clone {}
impl<T: std::hash::Hash + Eq + Clone> Key for T {}

pub struct Limiter<K: Key = IpNet, C: Clock = DefaultClock> {
    clock: C,
    max_keys: usize,
    quota: RwLock<Quota>,
    table: RwLock<Arc<Keyed<K, C>>>,
    resets: AtomicU64,
}

impl<K: Key> Limiter<K, DefaultClock> {
    pub fn new(quota: Quota, max_keys: usize) -> Self {
        Limiter::with_clock(quota, max_keys, DefaultClock::default())
    }
}

impl<K: Key, C: Clock + Clone> Limiter<K, C> {
    pub fn with_clock(quota: Quota, max_keys: usize, clock: C) -> Self {
        let table = Arc::new(RateLimiter::new(
            quota,
            DashMapStateStore::default(),
            clock.clone(),
        ));
        Limiter {
            clock,
            max_keys: max_keys.max(1),
            quota: RwLock::new(quota),
            table: RwLock::new(table),
            resets: AtomicU64::new(0),
        }
    }

    /// Ok, or how long until this key may send again.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let mut table = self.current();
        if table.len() >= self.max_keys {
            self.make_room();
            table = self.current();
        }
        match table.check_key(key) {
            Ok(()) => Ok(()),
            Err(not_until) => Err(not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Drops keys whose state is back to fresh, and the memory they held.
    pub fn prune(&self) {
        let table = self.current();
        table.retain_recent();
        table.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.current().len()
    }

    #[cfg(test)]
    /// How often the cap forced a fresh table (a flood of distinct clients).
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }

    /// New limits (SIGHUP). governor cannot change a quota in place, so a
    /// changed quota starts a fresh table; an unchanged one keeps the state.
    pub fn set_quota(&self, quota: Quota) {
        let mut q = self.quota.write().unwrap_or_else(|e| e.into_inner());
        if *q == quota {
            return;
        }
        *q = quota;
        let fresh = Arc::new(RateLimiter::new(
            quota,
            DashMapStateStore::default(),
            self.clock.clone(),
        ));
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    }

    fn current(&self) -> Arc<Keyed<K, C>> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn make_room(&self) {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        if table.len() < self.max_keys {
            return; // another thread made room already
        }
        table.retain_recent();
        table.shrink_to_fit();
        // Freeing less than a quarter would mean pruning again a few requests
        // later, each time a full scan: start over instead.
        if table.len() > self.max_keys / 4 * 3 {
            let quota = *self.quota.read().unwrap_or_else(|e| e.into_inner());
            *table = Arc::new(RateLimiter::new(
                quota,
                DashMapStateStore::default(),
                self.clock.clone(),
            ));
            self.resets.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                max_keys = self.max_keys,
                "rate limiter reached its key cap with every client active (address-rotation flood?); starting a fresh table"
            );
        }
    }
}

/// `rate = { per_second, burst }`.
pub fn per_second(rate: NonZeroU32, burst: NonZeroU32) -> Quota {
    Quota::per_second(rate).allow_burst(burst)
}

/// `login_rate = { per_minute, burst }`.
pub fn per_minute(rate: NonZeroU32, burst: NonZeroU32) -> Quota {
    Quota::per_minute(rate).allow_burst(burst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::net::{IpAddr, Ipv4Addr};

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }
    fn key(n: u32) -> IpNet {
        IpNet::from(IpAddr::V4(Ipv4Addr::from(n)))
    }

    #[test]
    fn burst_then_steady_rate_with_exact_retry_after() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(per_second(nz(20), nz(200)), 1000, clock.clone());
        for i in 0..200 {
            assert!(l.check(&key(1)).is_ok(), "request {i} of the burst");
        }
        let wait = l.check(&key(1)).unwrap_err();
        assert_eq!(wait, Duration::from_millis(50), "one cell per 1/20 s");
        // Another client is unaffected.
        assert!(l.check(&key(2)).is_ok());
        clock.advance(Duration::from_millis(50));
        assert!(l.check(&key(1)).is_ok());
        assert!(l.check(&key(1)).is_err());
    }

    #[test]
    fn login_rate_per_minute() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(per_minute(nz(10), nz(10)), 1000, clock.clone());
        for _ in 0..10 {
            l.check(&key(7)).unwrap();
        }
        assert_eq!(l.check(&key(7)).unwrap_err(), Duration::from_secs(6));
        clock.advance(Duration::from_secs(6));
        assert!(l.check(&key(7)).is_ok());
    }

    #[test]
    fn prune_forgets_idle_clients() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(per_second(nz(20), nz(200)), 1000, clock.clone());
        for n in 0..100 {
            l.check(&key(n)).unwrap();
        }
        assert_eq!(l.len(), 100);
        clock.advance(Duration::from_secs(1));
        l.prune();
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn key_count_stays_under_the_cap_with_a_million_rotating_addresses() {
        let cap = 10_000;
        let l = Limiter::new(per_second(nz(20), nz(200)), cap);
        let mut most = 0;
        for n in 0..1_000_000u32 {
            l.check(&key(0x0a00_0000 + n)).unwrap();
            if n % 97 == 0 {
                most = most.max(l.len());
            }
        }
        most = most.max(l.len());
        assert!(most <= cap, "{most} keys held, cap {cap}");
        assert!(l.resets() > 0, "the flood forced fresh tables");
        // Limiting still works after the flood.
        for _ in 0..200 {
            let _ = l.check(&key(1));
        }
        assert!(l.check(&key(1)).is_err());
    }

    #[test]
    fn reaching_the_cap_drops_idle_keys_and_keeps_busy_ones_up_to_three_quarters() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(per_second(nz(1), nz(1)), 8, clock.clone());
        for n in 0..2 {
            l.check(&key(n)).unwrap();
        }
        clock.advance(Duration::from_secs(5)); // keys 0 and 1 are idle again
        for n in 10..16 {
            l.check(&key(n)).unwrap(); // six busy keys: exactly three quarters of 8
        }
        assert_eq!(l.len(), 8);
        l.check(&key(100)).unwrap();
        // The idle keys went; the busy ones kept their state (no fresh table).
        assert_eq!(l.len(), 7);
        assert_eq!(l.resets(), 0);
        for n in 10..16 {
            assert!(l.check(&key(n)).is_err(), "key {n} lost its rate state");
        }
    }

    #[test]
    fn changed_quota_applies_unchanged_keeps_state() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(per_second(nz(1), nz(1)), 100, clock.clone());
        l.check(&key(1)).unwrap();
        assert!(l.check(&key(1)).is_err());
        l.set_quota(per_second(nz(1), nz(1)));
        assert!(l.check(&key(1)).is_err(), "same quota: state kept");
        l.set_quota(per_second(nz(1), nz(3)));
        for _ in 0..3 {
            l.check(&key(1)).unwrap();
        }
        assert!(l.check(&key(1)).is_err());
    }
}
