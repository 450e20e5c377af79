//! The minimum pace of a request body received whole
//! (`client_body_min_rate`, `client_body_grace`; 408 when missed).
//!
//! Two rules, both after the grace:
//! - the average: by `grace + t`, at least `min_rate × t` bytes in all;
//! - every window: each successive period of `grace` (1 s when the grace
//!   is 0) must bring at least `min_rate × grace` bytes of its own.
//!
//! The average alone let a client send most of a body at once and then
//! one byte every 15 s: its average stayed above the rate for days while
//! its spool share (and, from 4 addresses, the whole spool) stayed held
//! (red team 3). With the windows, once the fast part is over the rest
//! must keep coming at `min_rate`, so such a body is held at most
//! (what is left of it) / `min_rate`. Fixed windows rather than a sliding
//! one: the state is two numbers, and a client that meets every window
//! averages `min_rate` whatever it does inside them.

use std::time::Duration;

use tokio::time::Instant;

/// The body arrived slower than the minimum pace.
#[derive(Debug, PartialEq, Eq)]
pub struct TooSlow;

/// Where a body stands against the minimum pace.
pub struct Pace {
    /// When the grace ends: the average is counted from here and the first
    /// window starts here.
    from: Instant,
    min_rate: u64,
    window: Duration,
    window_end: Instant,
    in_window: u64,
    seen: u64,
}

impl Pace {
    /// None when the check is off (`min_rate` 0).
    pub fn new(start: Instant, min_rate: u64, grace: Duration) -> Option<Pace> {
        if min_rate == 0 {
            return None;
        }
        let window = if grace.is_zero() {
            Duration::from_secs(1)
        } else {
            grace
        };
        let from = start + grace;
        Some(Pace {
            from,
            min_rate,
            window,
            window_end: from + window,
            in_window: 0,
            seen: 0,
        })
    }

    /// Bytes each window must bring.
    fn per_window(&self) -> u64 {
        (self.min_rate as f64 * self.window.as_secs_f64()).ceil() as u64
    }

    /// By when the bytes seen so far are all the average allows.
    fn earned(&self) -> Instant {
        self.from + Duration::from_secs_f64(self.seen as f64 / self.min_rate as f64)
    }

    /// Whether the body is still on pace at `now` (windows that ended are
    /// judged and left behind).
    pub fn check(&mut self, now: Instant) -> Result<(), TooSlow> {
        if self.earned() <= now {
            return Err(TooSlow);
        }
        while self.window_end <= now {
            if self.in_window < self.per_window() {
                return Err(TooSlow);
            }
            self.in_window = 0;
            self.window_end += self.window;
        }
        Ok(())
    }

    /// `n` bytes arrived at `now`.
    pub fn arrived(&mut self, n: u64, now: Instant) -> Result<(), TooSlow> {
        self.check(now)?;
        self.seen += n;
        if now >= self.from {
            self.in_window += n;
        }
        Ok(())
    }

    /// The next moment `check` could fail if nothing arrives.
    pub fn next_check(&self) -> Instant {
        self.earned().min(self.window_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn off_when_the_rate_is_zero() {
        assert!(Pace::new(Instant::now(), 0, S).is_none());
    }

    #[test]
    fn a_steady_body_at_the_rate_passes() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0, 1000, 10 * S).unwrap();
        for i in 0..100u32 {
            p.arrived(1000, t0 + i * S).unwrap();
        }
        p.check(t0 + 100 * S).unwrap();
    }

    #[test]
    fn silence_during_the_grace_is_allowed_then_the_average_counts() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0, 1000, 10 * S).unwrap();
        p.check(t0 + 9 * S).unwrap();
        assert_eq!(p.next_check(), t0 + 10 * S);
        assert_eq!(p.check(t0 + 10 * S), Err(TooSlow));
    }

    #[test]
    fn a_fast_start_does_not_buy_a_trickle() {
        // The red team's upload: most of it at once, then 1 byte a second.
        // The average stays above the rate for hours; the window does not.
        let t0 = Instant::now();
        let mut p = Pace::new(t0, 1024, S).unwrap();
        p.arrived(1024 * 1024, t0).unwrap();
        let mut failed_at = None;
        for i in 1..100u32 {
            let now = t0 + i * S;
            if p.arrived(1, now).is_err() {
                failed_at = Some(i);
                break;
            }
        }
        assert_eq!(
            failed_at,
            Some(2),
            "the first window after the grace fell short"
        );
    }

    #[test]
    fn each_window_must_bring_its_share() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0, 100, 10 * S).unwrap();
        p.arrived(100_000, t0 + S).unwrap();
        // Window [10 s, 20 s) needs 1000 bytes.
        p.arrived(999, t0 + 15 * S).unwrap();
        assert_eq!(p.next_check(), t0 + 20 * S);
        assert_eq!(p.check(t0 + 20 * S), Err(TooSlow));
        let mut q = Pace::new(t0, 100, 10 * S).unwrap();
        q.arrived(100_000, t0 + S).unwrap();
        q.arrived(1000, t0 + 19 * S).unwrap();
        q.check(t0 + 20 * S).unwrap();
        assert_eq!(q.check(t0 + 30 * S), Err(TooSlow), "the next one is empty");
    }
}
