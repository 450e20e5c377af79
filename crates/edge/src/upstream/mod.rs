//! Upstream pools: Odoo's HTTP workers and its evented worker(s).
//!
//! Odoo runs a fixed number of worker processes, so each upstream has a
//! concurrency cap (`max_conns`, alias `workers`); requests over it wait
//! in Rampart (up to `queue_timeout`, then 503) instead of piling onto a
//! server that can only queue them anyway. Waiting requests sit in one
//! queue per client (a proven session, else an address: thirty people
//! behind one office NAT are thirty clients once logged in), and a freed
//! slot goes to the next client in
//! round-robin order: one client with sixty requests in the queue delays
//! another's single request by at most one of its own. A client holding
//! its share (`per_client` slots) gets no more while others wait, so two
//! addresses cannot fill a busy pool; when nobody else waits it may use
//! what is free (an idle Odoo serves one user's page load at full speed).
//! The proven sessions used from one address together hold at most half
//! the pool while others wait, so minting sessions cannot fill it.
//! A client with `WAITING_PER_CLIENT` requests waiting is refused at once.
//! Among healthy upstreams the one
//! with the fewest requests in flight is chosen. An active check takes a
//! failing upstream out after `fall` failures and puts it back after
//! `rise` successes; when every upstream is out, requests still try them
//! (a fresh 502 beats a guess).
//!
//! The parts: this file holds [`Upstream`], one address and its health
//! counters, which both other parts update; `pool` is the fair queue
//! in front of a site's upstreams (who gets the next slot); `health` is
//! the active check (who is in rotation).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

mod health;
mod pool;
#[cfg(test)]
mod tests;

pub use health::{Check, CheckSettings, HealthObserver, spawn_checks};
pub use pool::{Client, Lease, Pool, Refused};

/// One Odoo worker address, with its slots in use and its health.
pub struct Upstream {
    /// `host:port` as configured.
    pub addr: String,
    active: AtomicUsize,
    healthy: AtomicBool,
    fails: AtomicU32,
    oks: AtomicU32,
}

impl Upstream {
    /// Whether it passes its health check now.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
    /// Requests holding a slot on it now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Records a check or request outcome; returns Some(new state) when it flips.
    pub fn record(&self, ok: bool, fall: u32, rise: u32) -> Option<bool> {
        if ok {
            self.fails.store(0, Ordering::Relaxed);
            let oks = self.oks.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.is_healthy() && oks >= rise {
                self.healthy.store(true, Ordering::Relaxed);
                return Some(true);
            }
        } else {
            self.oks.store(0, Ordering::Relaxed);
            let fails = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
            if self.is_healthy() && fails >= fall {
                self.healthy.store(false, Ordering::Relaxed);
                return Some(false);
            }
        }
        None
    }
}
