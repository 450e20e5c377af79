//! Memory for RPC bodies held whole while the guard reads them (stage 5),
//! bounded per client address and overall: without it one address opening
//! 40 connections of 7 MiB each held 300 MB. A request over either budget
//! is answered 503 before its body is read.
//!
//! The reservation is taken up front (the declared length, or the whole
//! inspection limit when the length is not declared) and released when
//! the request is done with the body.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};

/// Bytes of inspected bodies one client address may hold at once.
pub const PER_CLIENT: u64 = 32 * 1024 * 1024;
/// Bytes of inspected bodies all clients together may hold at once.
pub const TOTAL: u64 = 256 * 1024 * 1024;

#[derive(Default)]
struct Held {
    by_client: HashMap<IpAddr, u64>,
    total: u64,
}

pub struct Budget {
    held: Mutex<Held>,
    per_client: u64,
    total: u64,
}

/// Bytes held for one request; given back when dropped.
pub struct Reservation {
    budget: &'static Budget,
    client: IpAddr,
    bytes: u64,
}

impl Budget {
    pub fn new(per_client: u64, total: u64) -> Budget {
        Budget {
            held: Mutex::new(Held {
                by_client: HashMap::new(),
                total: 0,
            }),
            per_client,
            total,
        }
    }

    /// The process-wide budget.
    pub fn global() -> &'static Budget {
        static GLOBAL: OnceLock<Budget> = OnceLock::new();
        GLOBAL.get_or_init(|| Budget::new(PER_CLIENT, TOTAL))
    }

    /// Holds `bytes` for `client`, or None when either budget would be exceeded.
    pub fn reserve(&'static self, client: IpAddr, bytes: u64) -> Option<Reservation> {
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mine = h.by_client.get(&client).copied().unwrap_or(0);
        if mine + bytes > self.per_client || h.total + bytes > self.total {
            return None;
        }
        *h.by_client.entry(client).or_default() += bytes;
        h.total += bytes;
        Some(Reservation {
            budget: self,
            client,
            bytes,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut h = self.budget.held.lock().unwrap_or_else(|e| e.into_inner());
        h.total = h.total.saturating_sub(self.bytes);
        if let Some(n) = h.by_client.get_mut(&self.client) {
            *n = n.saturating_sub(self.bytes);
            if *n == 0 {
                h.by_client.remove(&self.client);
            }
        }
    }
}

/// What a body about to be inspected reserves: its declared length (it
/// cannot be longer: hyper enforces it), else the whole inspection limit.
pub fn needed(declared: Option<u64>, inspect: usize) -> u64 {
    declared.unwrap_or(inspect as u64).min(inspect as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_and_total_budgets_hold_and_release() {
        let budget: &'static Budget = Box::leak(Box::new(Budget::new(10, 25)));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        let r1 = budget.reserve(a, 7).unwrap();
        assert!(budget.reserve(a, 4).is_none(), "over a's budget");
        let r2 = budget.reserve(a, 3).unwrap();
        let _r3 = budget.reserve(b, 10).unwrap();
        assert!(budget.reserve(c, 6).is_none(), "over the total");
        drop(r1);
        assert!(budget.reserve(c, 6).is_some());
        drop(r2);
        assert!(!budget.held.lock().unwrap().by_client.contains_key(&a));
        assert_eq!(needed(Some(5), 8), 5);
        assert_eq!(needed(Some(50), 8), 8);
        assert_eq!(needed(None, 8), 8);
    }
}
