//! Credentials proven right recently, per client: an integration making
//! many concurrent `execute_kw` calls with a good password must not queue
//! behind the login budget, while a guesser's calls each take a slot.
//!
//! Only a keyed hash (HMAC-SHA256 under a key drawn at start) of client
//! network + credentials is kept, never the password; the table is bounded
//! and entries expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use ring::hmac;

use crate::rpc::Credential;

/// How long a success vouches for the same credentials from the same client.
pub const PROVEN_FOR: Duration = Duration::from_secs(600);
/// Default cap on remembered (client, credentials) pairs.
pub const DEFAULT_MAX_PROVEN: usize = 10_000;

pub type Digest = [u8; 32];

pub struct Proven {
    key: hmac::Key,
    table: Mutex<HashMap<Digest, Instant>>,
    max: usize,
}

impl Proven {
    pub fn new(max: usize) -> Proven {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .expect("the system random source is available");
        Proven {
            key,
            table: Mutex::new(HashMap::new()),
            max: max.max(1),
        }
    }

    pub fn digest(&self, client: IpNet, credential: &Credential) -> Digest {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(client.to_string().as_bytes());
        ctx.update(b"\0");
        ctx.update(&credential.0);
        let tag = ctx.sign();
        let mut d = [0u8; 32];
        d.copy_from_slice(tag.as_ref());
        d
    }

    pub fn contains(&self, d: &Digest, now: Instant) -> bool {
        self.lock()
            .get(d)
            .is_some_and(|t| now.duration_since(*t) < PROVEN_FOR)
    }

    /// Remembers a success; when full, expired entries go first, and if
    /// none did the success is not remembered (its next call takes a slot).
    pub fn insert(&self, d: Digest, now: Instant) {
        let mut t = self.lock();
        if t.len() >= self.max && !t.contains_key(&d) {
            t.retain(|_, at| now.duration_since(*at) < PROVEN_FOR);
            if t.len() >= self.max {
                return;
            }
        }
        t.insert(d, now);
    }

    /// A refusal: the password changed, or never was right.
    pub fn remove(&self, d: &Digest) {
        self.lock().remove(d);
    }

    pub fn prune(&self, now: Instant) {
        let mut t = self.lock();
        t.retain(|_, at| now.duration_since(*at) < PROVEN_FOR);
        t.shrink_to_fit();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Instant>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_client_expires_and_stays_bounded() {
        let p = Proven::new(3);
        let a: IpNet = "203.0.113.7/32".parse().unwrap();
        let b: IpNet = "203.0.113.8/32".parse().unwrap();
        let c = Credential(b"db\0 2\0 pw".to_vec());
        let t0 = Instant::now();
        let da = p.digest(a, &c);
        assert_ne!(da, p.digest(b, &c), "keyed by client");
        assert!(!p.contains(&da, t0));
        p.insert(da, t0);
        assert!(p.contains(&da, t0));
        assert!(!p.contains(&da, t0 + PROVEN_FOR), "expires");
        p.remove(&da);
        assert!(!p.contains(&da, t0));
        for n in 0..10u8 {
            p.insert(p.digest(a, &Credential(vec![n])), t0);
        }
        assert!(p.lock().len() <= 3);
    }

    #[test]
    fn a_full_table_makes_room_from_expired_entries_and_prune_forgets_them() {
        let p = Proven::new(2);
        let a: IpNet = "203.0.113.7/32".parse().unwrap();
        let d = |n: u8| p.digest(a, &Credential(vec![n]));
        let t0 = Instant::now();
        p.insert(d(1), t0);
        p.insert(d(2), t0 + Duration::from_secs(1));
        // Full, nothing expired: the new success is not remembered, and a
        // remembered one is refreshed.
        p.insert(d(3), t0 + Duration::from_secs(2));
        assert!(!p.contains(&d(3), t0 + Duration::from_secs(2)));
        p.insert(d(1), t0 + Duration::from_secs(5));
        assert!(p.contains(&d(1), t0 + PROVEN_FOR + Duration::from_secs(2)));
        // Full, d(2) expired: it makes room, the live d(1) stays.
        let later = t0 + PROVEN_FOR + Duration::from_secs(1);
        p.insert(d(3), later);
        assert!(p.contains(&d(3), later));
        assert!(p.contains(&d(1), later));
        assert!(!p.contains(&d(2), later));
        assert_eq!(p.lock().len(), 2);
        // prune forgets exactly the expired ones.
        p.prune(t0 + PROVEN_FOR + Duration::from_secs(5));
        assert_eq!(
            p.lock().len(),
            1,
            "d(1) refreshed at 5 s expires at PROVEN_FOR + 5 s"
        );
        p.prune(later + PROVEN_FOR - Duration::from_secs(1));
        assert_eq!(p.lock().len(), 1, "d(3) is still live");
    }
}
