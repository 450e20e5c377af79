//! Failed logins per login name, across all addresses (issue 13 §4).
//!
//! The per-address budget stops one address guessing; a botnet spreading
//! a few guesses each over a thousand addresses against `admin` never
//! reaches it. So failures are also counted per login name (a keyed hash of
//! it): from half of `max` on, an attempt for that login from an address
//! that has not logged in as it before waits a little longer each time;
//! at `max` (failures plus such attempts in flight, so a burst cannot slip
//! past) those attempts are refused, while the real user, from an address
//! they logged in from before, still gets in. Logins whose name cannot be
//! read (a multipart form, an unreadable RPC body) are bounded per address
//! only.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sessions::SessionKey;

/// Default cap on login names tracked.
pub const DEFAULT_MAX_LOGINS: usize = 100_000;

#[derive(Default)]
struct Login {
    failures: VecDeque<Instant>,
    /// Attempts from addresses not known for this login, in flight.
    in_flight: u32,
}

/// What [`PerLogin::begin`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead after waiting `delay`; `counted`: an in-flight slot is held.
    Go {
        delay: Duration,
        counted: bool,
    },
    Refuse,
}

pub struct PerLogin {
    logins: Mutex<HashMap<SessionKey, Login>>,
    max_logins: usize,
}

impl PerLogin {
    pub fn new(max_logins: usize) -> PerLogin {
        PerLogin {
            logins: Mutex::new(HashMap::new()),
            max_logins: max_logins.max(1),
        }
    }

    /// An attempt for `login` from an address that is `known` for it (it
    /// logged in as it before) or not.
    pub fn begin(
        &self,
        login: SessionKey,
        known: bool,
        now: Instant,
        max: u32,
        within: Duration,
        delay: Duration,
    ) -> Verdict {
        let mut t = self.lock();
        if t.len() >= self.max_logins && !t.contains_key(&login) {
            self.make_room(&mut t, now, within);
        }
        let l = t.entry(login).or_default();
        expire(l, now, within);
        if known {
            return Verdict::Go {
                delay: Duration::ZERO,
                counted: false,
            };
        }
        let failures = l.failures.len() as u32;
        if failures + l.in_flight >= max {
            return Verdict::Refuse;
        }
        l.in_flight += 1;
        let half = max / 2;
        let steps = (failures + 1).saturating_sub(half.max(1));
        Verdict::Go {
            delay: delay.saturating_mul(steps),
            counted: true,
        }
    }

    /// The attempt ended (`counted` as [`Verdict::Go`] said).
    pub fn finish(&self, login: SessionKey, counted: bool, failed: bool, now: Instant) {
        let mut t = self.lock();
        let l = t.entry(login).or_default();
        if counted {
            l.in_flight = l.in_flight.saturating_sub(1);
        }
        if failed {
            l.failures.push_back(now);
        }
    }

    pub fn prune(&self, now: Instant, within: Duration) {
        let mut t = self.lock();
        t.retain(|_, l| {
            expire(l, now, within);
            l.in_flight > 0 || !l.failures.is_empty()
        });
        t.shrink_to_fit();
    }

    /// Full: idle names go, then the eighth with the fewest failures (a
    /// flood of names forgets the least attacked ones first).
    fn make_room(&self, t: &mut HashMap<SessionKey, Login>, now: Instant, within: Duration) {
        t.retain(|_, l| {
            expire(l, now, within);
            l.in_flight > 0 || !l.failures.is_empty()
        });
        if t.len() < self.max_logins {
            return;
        }
        let mut counts: Vec<(usize, SessionKey)> = t
            .iter()
            .filter(|(_, l)| l.in_flight == 0)
            .map(|(k, l)| (l.failures.len(), *k))
            .collect();
        counts.sort_unstable();
        for (_, k) in counts.iter().take((self.max_logins / 8).max(1)) {
            t.remove(k);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Login>> {
        self.logins.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn expire(l: &mut Login, now: Instant, within: Duration) {
    while l
        .failures
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= within)
    {
        l.failures.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const D: Duration = Duration::from_millis(100);

    #[test]
    fn delays_then_refuses_unknown_addresses_never_known_ones() {
        let p = PerLogin::new(100);
        let (admin, t0) = ([1u8; 16], Instant::now());
        let mut delays = Vec::new();
        for _ in 0..10 {
            match p.begin(admin, false, t0, 10, MIN, D) {
                Verdict::Go { delay, counted } => {
                    assert!(counted);
                    delays.push(delay.as_millis());
                    p.finish(admin, counted, true, t0);
                }
                Verdict::Refuse => panic!("refused early"),
            }
        }
        assert_eq!(delays, [0, 0, 0, 0, 0, 100, 200, 300, 400, 500]);
        assert_eq!(p.begin(admin, false, t0, 10, MIN, D), Verdict::Refuse);
        assert_eq!(
            p.begin(admin, true, t0, 10, MIN, D),
            Verdict::Go {
                delay: Duration::ZERO,
                counted: false
            },
            "the real user from a known address"
        );
        assert!(matches!(
            p.begin([2u8; 16], false, t0, 10, MIN, D),
            Verdict::Go { .. }
        ));
        assert!(matches!(
            p.begin(admin, false, t0 + MIN, 10, MIN, D),
            Verdict::Go { .. }
        ));
    }

    #[test]
    fn a_burst_in_flight_cannot_slip_past() {
        let p = PerLogin::new(100);
        let (admin, t0) = ([1u8; 16], Instant::now());
        let went = (0..200)
            .filter(|_| matches!(p.begin(admin, false, t0, 10, MIN, D), Verdict::Go { .. }))
            .count();
        assert_eq!(went, 10);
    }

    #[test]
    fn bounded_under_a_flood_of_names() {
        let p = PerLogin::new(64);
        let t0 = Instant::now();
        for n in 0..10_000u32 {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&n.to_be_bytes());
            if let Verdict::Go { counted, .. } = p.begin(k, false, t0, 10, MIN, D) {
                p.finish(k, counted, true, t0);
            }
            assert!(p.len() <= 64);
        }
    }
}
