//! Recent refusals (ban, rate limit) for the status page: the last 50,
//! and a count per address. Both are bounded: an attacker rotating
//! addresses cannot grow them; when the count table is full, addresses
//! seen only once are forgotten first.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

const RECENT: usize = 50;
const ADDRS: usize = 4096;

/// One refused request, for the status page.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// RFC 3339 UTC.
    pub at: String,
    /// The refused client's address.
    pub addr: String,
    /// "banned" or "rate limited".
    pub reason: &'static str,
}

/// An address and how many of its requests were refused.
#[derive(Debug, Clone, Serialize)]
pub struct RefusedAddr {
    /// The address, as text.
    pub addr: String,
    /// Refusals counted since the address was first seen (bounded table).
    pub count: u64,
}

/// Recent refusals and per-address counts, bounded against address rotation.
#[derive(Default)]
pub struct Refusals {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    recent: VecDeque<(SystemTime, IpAddr, &'static str)>,
    counts: HashMap<IpAddr, u64>,
}

impl Refusals {
    /// Notes one refused request from `addr`.
    pub fn record(&self, addr: IpAddr, reason: &'static str) {
        let mut g = self.inner.lock().unwrap();
        if g.recent.len() == RECENT {
            g.recent.pop_front();
        }
        g.recent.push_back((SystemTime::now(), addr, reason));
        if g.counts.len() >= ADDRS && !g.counts.contains_key(&addr) {
            g.counts.retain(|_, n| *n > 1);
            if g.counts.len() >= ADDRS {
                g.counts.clear();
            }
        }
        *g.counts.entry(addr).or_default() += 1;
    }

    /// Newest first.
    pub fn recent(&self) -> Vec<Refusal> {
        let g = self.inner.lock().unwrap();
        g.recent
            .iter()
            .rev()
            .map(|(t, a, r)| Refusal {
                at: rampart_config::time::rfc3339(*t),
                addr: a.to_string(),
                reason: r,
            })
            .collect()
    }

    /// The `n` addresses refused most often.
    pub fn top(&self, n: usize) -> Vec<RefusedAddr> {
        let g = self.inner.lock().unwrap();
        let mut v: Vec<_> = g.counts.iter().map(|(a, c)| (*c, *a)).collect();
        v.sort_by(|x, y| y.cmp(x));
        v.into_iter()
            .take(n)
            .map(|(count, a)| RefusedAddr {
                addr: a.to_string(),
                count,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_ordered() {
        let r = Refusals::default();
        for i in 0..10_000u32 {
            r.record(IpAddr::from(i.to_be_bytes()), "banned");
        }
        let a: IpAddr = "203.0.113.9".parse().unwrap();
        for _ in 0..5 {
            r.record(a, "rate limited");
        }
        assert_eq!(r.recent().len(), RECENT);
        assert_eq!(r.recent()[0].addr, "203.0.113.9");
        assert_eq!(r.top(1)[0].addr, "203.0.113.9");
        assert_eq!(r.top(1)[0].count, 5);
        assert!(r.inner.lock().unwrap().counts.len() <= ADDRS);
    }
}
