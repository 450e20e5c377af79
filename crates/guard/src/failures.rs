//! Failed logins per client, counting attempts still in flight.
//!
//! Zero leak: a password check takes Odoo 0.3-0.5 s, so a burst of 200
//! concurrent attempts would all be in flight before the first failure comes
//! back. Counting in-flight attempts against the threshold means at most
//! `max` ever reach Odoo; the rest are refused at the front.
//!
//! One failure may be seen twice, on the proxied response and in Odoo's log.
//! Each source keeps the failures the other has not confirmed yet; a failure
//! that matches one of the other source's is the same attempt and is not
//! counted again.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;

/// Default hard cap on tracked clients.
pub const DEFAULT_MAX_CLIENTS: usize = 100_000;

#[derive(Default)]
struct Client {
    failures: VecDeque<Instant>,
    in_flight: u32,
    /// Failures seen on responses, not yet seen in the log.
    edge_only: VecDeque<Instant>,
    /// Failures seen in the log, not yet seen on a response.
    log_only: VecDeque<Instant>,
}

impl Client {
    fn expire(&mut self, now: Instant, within: Duration) {
        for q in [&mut self.failures, &mut self.edge_only, &mut self.log_only] {
            while q.front().is_some_and(|t| now.duration_since(*t) >= within) {
                q.pop_front();
            }
        }
    }
    fn idle(&self) -> bool {
        self.in_flight == 0
            && self.failures.is_empty()
            && self.edge_only.is_empty()
            && self.log_only.is_empty()
    }
}

/// What `begin` decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// Go ahead; a slot is held until `finish`.
    Go,
    /// Over the threshold counting attempts in flight. `failures` is the
    /// confirmed count; when it alone reaches the threshold the client is banned.
    Refuse { failures: u32 },
}

pub struct Failures {
    clients: Mutex<HashMap<IpNet, Client>>,
    max_clients: usize,
}

impl Failures {
    pub fn new(max_clients: usize) -> Self {
        Failures {
            clients: Mutex::new(HashMap::new()),
            max_clients: max_clients.max(1),
        }
    }

    pub fn begin(&self, key: IpNet, now: Instant, max: u32, within: Duration) -> Begin {
        let mut clients = self.lock();
        self.make_room(&mut clients, &key, now, within);
        let c = clients.entry(key).or_default();
        c.expire(now, within);
        let failures = c.failures.len() as u32;
        if failures + c.in_flight >= max {
            return Begin::Refuse { failures };
        }
        c.in_flight += 1;
        Begin::Go
    }

    /// Ends an attempt. Returns the failure count when this was a new failure.
    pub fn finish_failure(&self, key: IpNet, now: Instant, within: Duration) -> Option<u32> {
        let mut clients = self.lock();
        let c = clients.entry(key).or_default();
        c.in_flight = c.in_flight.saturating_sub(1);
        c.expire(now, within);
        if c.log_only.pop_front().is_some() {
            return None; // the log already counted this one
        }
        c.edge_only.push_back(now);
        c.failures.push_back(now);
        Some(c.failures.len() as u32)
    }

    /// Outcome unknown (error page, dropped connection): release the slot only.
    pub fn release(&self, key: IpNet) {
        let mut clients = self.lock();
        if let Some(c) = clients.get_mut(&key) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
    }

    /// A failure read from Odoo's log. Returns the failure count when new.
    pub fn log_failure(&self, key: IpNet, now: Instant, within: Duration) -> Option<u32> {
        let mut clients = self.lock();
        self.make_room(&mut clients, &key, now, within);
        let c = clients.entry(key).or_default();
        c.expire(now, within);
        if c.edge_only.pop_front().is_some() {
            return None; // the response already counted this one
        }
        c.log_only.push_back(now);
        c.failures.push_back(now);
        Some(c.failures.len() as u32)
    }

    /// A wrong password on an RPC call that is not a login (execute_kw):
    /// Odoo logs nothing for these, so nothing to deduplicate against.
    pub fn rpc_failure(&self, key: IpNet, now: Instant, within: Duration) -> Option<u32> {
        let mut clients = self.lock();
        self.make_room(&mut clients, &key, now, within);
        let c = clients.entry(key).or_default();
        c.expire(now, within);
        c.failures.push_back(now);
        Some(c.failures.len() as u32)
    }

    /// After a ban the count starts over (the ban is the consequence).
    pub fn clear(&self, key: &IpNet) {
        let mut clients = self.lock();
        if let Some(c) = clients.get_mut(key) {
            c.failures.clear();
            c.edge_only.clear();
            c.log_only.clear();
        }
    }

    pub fn prune(&self, now: Instant, within: Duration) {
        let mut clients = self.lock();
        clients.retain(|_, c| {
            c.expire(now, within);
            !c.idle()
        });
        clients.shrink_to_fit();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Keeps the table under its cap when a new client arrives: expired
    /// windows first, then clients with a single failure and nothing in
    /// flight (the shape of an address-rotation flood), then anyone idle.
    fn make_room(
        &self,
        clients: &mut HashMap<IpNet, Client>,
        key: &IpNet,
        now: Instant,
        within: Duration,
    ) {
        if clients.len() < self.max_clients || clients.contains_key(key) {
            return;
        }
        let target = self.max_clients / 4 * 3;
        clients.retain(|_, c| {
            c.expire(now, within);
            !c.idle()
        });
        if clients.len() > target {
            clients.retain(|_, c| c.in_flight > 0 || c.failures.len() > 1);
        }
        if clients.len() > target {
            clients.retain(|_, c| c.in_flight > 0);
        }
        tracing::debug!(
            clients = clients.len(),
            "login failure table pruned at its cap"
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpNet, Client>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn key(s: &str) -> IpNet {
        IpNet::from(s.parse::<IpAddr>().unwrap())
    }
    const W: Duration = Duration::from_secs(60);

    #[test]
    fn in_flight_attempts_count_against_the_threshold() {
        let f = Failures::new(100);
        let now = Instant::now();
        let k = key("203.0.113.7");
        for _ in 0..3 {
            assert_eq!(f.begin(k, now, 3, W), Begin::Go);
        }
        assert_eq!(f.begin(k, now, 3, W), Begin::Refuse { failures: 0 });
        f.release(k);
        assert_eq!(
            f.begin(k, now, 3, W),
            Begin::Go,
            "an unknown outcome frees the slot"
        );
        assert_eq!(f.finish_failure(k, now, W), Some(1));
        assert_eq!(f.finish_failure(k, now, W), Some(2));
        assert_eq!(f.finish_failure(k, now, W), Some(3));
        assert_eq!(f.begin(k, now, 3, W), Begin::Refuse { failures: 3 });
    }

    #[test]
    fn failures_expire_with_the_window_and_success_resets() {
        let f = Failures::new(100);
        let t0 = Instant::now();
        let k = key("203.0.113.7");
        f.begin(k, t0, 2, W);
        f.finish_failure(k, t0, W);
        f.begin(k, t0, 2, W);
        f.finish_failure(k, t0, W);
        assert_eq!(f.begin(k, t0, 2, W), Begin::Refuse { failures: 2 });
        assert_eq!(
            f.begin(k, t0 + W, 2, W),
            Begin::Go,
            "60 s later the window is empty"
        );
        f.finish_failure(k, t0 + W, W);
        f.begin(k, t0 + W, 2, W);
        f.release(k);
        assert_eq!(f.begin(k, t0 + W, 2, W), Begin::Go);
        assert_eq!(
            f.finish_failure(k, t0 + W, W),
            Some(2),
            "a released slot forgets nothing"
        );
    }

    #[test]
    fn a_failure_seen_on_the_response_and_in_the_log_counts_once() {
        let f = Failures::new(100);
        let now = Instant::now();
        let k = key("203.0.113.7");
        f.begin(k, now, 10, W);
        assert_eq!(f.finish_failure(k, now, W), Some(1));
        assert_eq!(f.log_failure(k, now, W), None, "same attempt, from the log");
        // Log first, response second.
        f.begin(k, now, 10, W);
        assert_eq!(f.log_failure(k, now, W), Some(2));
        assert_eq!(f.finish_failure(k, now, W), None);
        // Log only (a request that did not pass through the front).
        assert_eq!(f.log_failure(k, now, W), Some(3));
    }

    #[test]
    fn table_stays_under_its_cap() {
        let f = Failures::new(1000);
        let now = Instant::now();
        for n in 0..50_000u32 {
            let k = IpNet::from(IpAddr::V4(n.into()));
            f.log_failure(k, now, W);
            assert!(f.len() <= 1000);
        }
        // A client with attempts in flight is never forgotten by the cap.
        let f = Failures::new(10);
        let k = key("192.0.2.1");
        f.begin(k, now, 10, W);
        for n in 0..1000u32 {
            f.log_failure(IpNet::from(IpAddr::V4(((n + 1) << 8).into())), now, W);
        }
        f.finish_failure(k, now, W);
        f.begin(k, now, 10, W);
        assert_eq!(f.finish_failure(k, now, W), Some(2));
    }

    /// A client with attempts in flight: a second concurrent attempt at
    /// `max = 1` is refused while the first still holds its slot.
    fn holds_a_slot(f: &Failures, k: IpNet, now: Instant) -> bool {
        f.begin(k, now, 1, W) != Begin::Go
    }

    #[test]
    fn every_failure_outside_a_slot_counts_towards_the_ban() {
        // Proven credentials that stopped working: no slot held, each
        // wrong answer still counts, and the third refuses the next try.
        let f = Failures::new(100);
        let now = Instant::now();
        let k = key("203.0.113.7");
        assert_eq!(f.rpc_failure(k, now, W), Some(1));
        assert_eq!(f.rpc_failure(k, now, W), Some(2));
        assert_eq!(f.rpc_failure(k, now, W), Some(3));
        assert_eq!(f.begin(k, now, 3, W), Begin::Refuse { failures: 3 });
        // After the ban the count starts over, for this client only.
        let other = key("203.0.113.8");
        f.rpc_failure(other, now, W);
        f.clear(&k);
        assert_eq!(f.begin(k, now, 3, W), Begin::Go);
        assert_eq!(f.rpc_failure(other, now, W), Some(2));
    }

    #[test]
    fn housekeeping_forgets_a_client_only_once_its_window_has_passed() {
        let f = Failures::new(100);
        let t0 = Instant::now();
        // Seen on the response and in the log: one failure, nothing pending.
        let confirmed = key("198.51.100.1");
        f.begin(confirmed, t0, 10, W);
        f.finish_failure(confirmed, t0, W);
        f.log_failure(confirmed, t0, W);
        // A wrong password on execute_kw: counted, nothing to deduplicate.
        let rpc = key("198.51.100.2");
        f.rpc_failure(rpc, t0, W);
        // Only in Odoo's log, and only on the response.
        let logged = key("198.51.100.3");
        f.log_failure(logged, t0, W);
        let answered = key("198.51.100.4");
        f.begin(answered, t0, 10, W);
        f.finish_failure(answered, t0, W);
        // An attempt in flight, no failure yet.
        let busy = key("198.51.100.5");
        f.begin(busy, t0, 10, W);

        f.prune(t0 + W / 2, W);
        assert!(holds_a_slot(&f, busy, t0 + W / 2), "in-flight slot kept");
        let t = t0 + W / 2;
        for k in [confirmed, rpc, logged, answered] {
            assert_eq!(f.rpc_failure(k, t, W), Some(2), "{k}: first failure kept");
        }
        f.release(busy);
        f.release(busy);
        // A minute after the last failure everything is forgotten.
        f.prune(t + W, W);
        assert_eq!(f.len(), 0, "expired and idle clients are dropped");
    }

    /// `max_clients = 8` makes room down to 6: expired windows first,
    /// then clients with one failure and nothing in flight, then anyone
    /// with nothing in flight.
    #[test]
    fn making_room_forgets_the_least_suspicious_first() {
        let t0 = Instant::now();
        let t1 = t0 + W / 2;
        let t2 = t0 + W;
        let addr = |n: u32| IpNet::from(IpAddr::V4((0xc633_6400 + n).into()));
        let newcomer = key("192.0.2.99");

        // Under the cap nothing is forgotten, however many have one failure.
        let f = Failures::new(8);
        for n in 0..7 {
            f.log_failure(addr(n), t0, W);
        }
        f.log_failure(newcomer, t0, W);
        for n in 0..7 {
            assert_eq!(f.rpc_failure(addr(n), t0, W), Some(2), "under the cap");
        }

        // At the cap, forgetting two expired windows is enough room (8 → 6).
        let f = Failures::new(8);
        for n in 0..2 {
            f.log_failure(addr(n), t0, W);
        }
        for n in 2..8 {
            f.log_failure(addr(n), t1, W);
        }
        f.log_failure(newcomer, t2, W);
        for n in 2..8 {
            assert_eq!(f.rpc_failure(addr(n), t2, W), Some(2), "live window kept");
        }

        // Nothing expired: single failures go, repeat failures and attempts
        // in flight stay. Five repeaters + one in flight = 6: done.
        let f = Failures::new(8);
        for n in 0..5 {
            f.log_failure(addr(n), t0, W);
            f.log_failure(addr(n), t0, W);
        }
        f.begin(addr(5), t0, 10, W);
        for n in 6..8 {
            f.log_failure(addr(n), t0, W);
        }
        f.log_failure(newcomer, t0, W);
        assert!(f.len() <= 8);
        assert!(holds_a_slot(&f, addr(5), t0), "in-flight slot kept");
        for n in 0..5 {
            assert_eq!(f.rpc_failure(addr(n), t0, W), Some(3), "repeater kept");
        }

        // Fewer left than the target after the second step: the third
        // step (dropping repeaters) must not run.
        let f = Failures::new(8);
        for n in 0..2 {
            f.log_failure(addr(n), t0, W);
            f.log_failure(addr(n), t0, W);
        }
        f.begin(addr(2), t0, 10, W);
        for n in 3..8 {
            f.log_failure(addr(n), t0, W);
        }
        f.log_failure(newcomer, t0, W);
        assert!(holds_a_slot(&f, addr(2), t0), "in-flight slot kept");
        for n in 0..2 {
            assert_eq!(f.rpc_failure(addr(n), t0, W), Some(3), "repeater kept");
        }

        // Still over the target after that: only attempts in flight stay,
        // and the table never passes its cap.
        let f = Failures::new(8);
        for n in 0..7 {
            f.log_failure(addr(n), t0, W);
            f.log_failure(addr(n), t0, W);
        }
        f.begin(addr(7), t0, 10, W);
        f.log_failure(newcomer, t0, W);
        assert!(f.len() <= 8, "{} clients", f.len());
        assert!(holds_a_slot(&f, addr(7), t0), "in-flight slot kept");
    }
}
