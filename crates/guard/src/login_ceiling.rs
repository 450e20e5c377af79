//! The per-address ceiling above the per-(address, login) `login_rate`
//! buckets: token buckets that a successful login refills.
//!
//! A governor GCRA cannot give a cell back, and the ceiling must: thirty
//! colleagues logging in from one office address within a minute each
//! succeed, so their successes must not use up what a thirty-first needs.
//! What stays spent is what did not succeed (wrong passwords, unknown
//! outcomes), which `login_failures` bounds per address anyway. Logins
//! are rare, so one mutex over a bounded map is enough; when the map is
//! full, buckets back to full (idle addresses) go first, then everything
//! (the rate limiter's rule: a flood of addresses loses rate state, never
//! memory).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct Ceiling {
    inner: Mutex<Inner>,
}

struct Inner {
    per_sec: f64,
    burst: f64,
    max_keys: usize,
    table: HashMap<IpNet, Bucket>,
}

impl Inner {
    fn level(&self, b: &Bucket, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + dt * self.per_sec).min(self.burst)
    }
}

impl Ceiling {
    pub fn new(per_minute: u32, burst: u32, max_keys: usize) -> Ceiling {
        Ceiling {
            inner: Mutex::new(Inner {
                per_sec: f64::from(per_minute.max(1)) / 60.0,
                burst: f64::from(burst.max(1)),
                max_keys: max_keys.max(1),
                table: HashMap::new(),
            }),
        }
    }

    /// Takes one token, or says how long until one is there.
    pub fn take(&self, key: IpNet, now: Instant) -> Result<(), Duration> {
        let mut g = self.lock();
        if g.table.len() >= g.max_keys && !g.table.contains_key(&key) {
            let burst = g.burst;
            let full: Vec<IpNet> = g
                .table
                .iter()
                .filter(|(_, b)| g.level(b, now) >= burst)
                .map(|(k, _)| *k)
                .collect();
            for k in full {
                g.table.remove(&k);
            }
            if g.table.len() > g.max_keys / 4 * 3 {
                g.table.clear();
            }
        }
        let level = match g.table.get(&key) {
            Some(b) => g.level(b, now),
            None => g.burst,
        };
        if level < 1.0 {
            return Err(Duration::from_secs_f64((1.0 - level) / g.per_sec));
        }
        g.table.insert(
            key,
            Bucket {
                tokens: level - 1.0,
                at: now,
            },
        );
        Ok(())
    }

    /// Gives one token back (a login that succeeded).
    pub fn refund(&self, key: IpNet, now: Instant) {
        let mut g = self.lock();
        if let Some(b) = g.table.get(&key) {
            let level = (g.level(b, now) + 1.0).min(g.burst);
            g.table.insert(
                key,
                Bucket {
                    tokens: level,
                    at: now,
                },
            );
        }
    }

    /// New rate (SIGHUP); buckets keep their level.
    pub fn set(&self, per_minute: u32, burst: u32) {
        let mut g = self.lock();
        g.per_sec = f64::from(per_minute.max(1)) / 60.0;
        g.burst = f64::from(burst.max(1));
    }

    /// Drops buckets back to full.
    pub fn prune(&self, now: Instant) {
        let mut g = self.lock();
        let (per_sec, burst) = (g.per_sec, g.burst);
        g.table.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec < burst
        });
        g.table.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.lock().table.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn successes_give_their_token_back_failures_do_not() {
        let c = Ceiling::new(60, 3, 100);
        let (a, t0) = (net("203.0.113.1/32"), Instant::now());
        for _ in 0..100 {
            c.take(a, t0).unwrap();
            c.refund(a, t0);
        }
        for _ in 0..3 {
            c.take(a, t0).unwrap();
        }
        let wait = c.take(a, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1), "one token a second");
        assert!(c.take(net("203.0.113.2/32"), t0).is_ok(), "per address");
        c.take(a, t0 + Duration::from_secs(1)).unwrap();
        // A refund never lifts a bucket above its burst.
        for _ in 0..10 {
            c.refund(a, t0 + Duration::from_secs(1));
        }
        for _ in 0..3 {
            c.take(a, t0 + Duration::from_secs(1)).unwrap();
        }
        assert!(c.take(a, t0 + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn bounded_under_an_address_flood() {
        let c = Ceiling::new(60, 10, 1000);
        let t0 = Instant::now();
        for n in 0..100_000u32 {
            let a = IpNet::from(std::net::IpAddr::from(n.to_be_bytes()));
            c.take(a, t0).unwrap();
            assert!(c.len() <= 1000);
        }
        c.prune(t0 + Duration::from_secs(60));
        assert_eq!(c.len(), 0);
    }
}
