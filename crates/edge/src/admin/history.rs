//! The last 15 minutes of each site's traffic for the status page: every
//! 10 s the request counters (the same ones `/metrics` exports) are read
//! and the difference kept, 90 points per site, nothing more.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics::RequestLabels;
use crate::state::Shared;

/// Time between two points.
pub const STEP: Duration = Duration::from_secs(10);
/// Points kept per site (15 minutes).
pub const POINTS: usize = 90;

/// One 10 s step of one site.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Point {
    /// Requests per second over the step.
    pub rps: f64,
    /// Share of answers with a 5xx status, 0..1 (0 when there were none).
    pub error_rate: f64,
}

/// The recent traffic of every site, one point per step.
#[derive(Default)]
pub struct History {
    last: HashMap<String, (u64, u64)>,
    /// Each site's points, oldest first.
    pub sites: HashMap<String, VecDeque<Point>>,
}

impl History {
    /// Records the counters' totals (all answers, 5xx answers) of `site`.
    pub fn record(&mut self, site: &str, total: u64, errors: u64) {
        let (t0, e0) = self
            .last
            .insert(site.to_string(), (total, errors))
            .unwrap_or((total, errors));
        let (dt, de) = (total.saturating_sub(t0), errors.saturating_sub(e0));
        let points = self.sites.entry(site.to_string()).or_default();
        if points.len() == POINTS {
            points.pop_front();
        }
        points.push_back(Point {
            rps: dt as f64 / STEP.as_secs_f64(),
            error_rate: if dt == 0 { 0.0 } else { de as f64 / dt as f64 },
        });
    }

    /// `site`'s points, oldest first.
    pub fn points(&self, site: &str) -> Vec<Point> {
        self.sites
            .get(site)
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// All answers and 5xx answers of `site` so far.
pub fn totals(shared: &Shared, site: &str) -> (u64, u64) {
    let (mut total, mut errors) = (0, 0);
    let mut labels = RequestLabels {
        site: site.to_string(),
        status: 0,
    };
    for status in 100..600 {
        labels.status = status;
        if let Some(c) = shared.metrics.requests.get(&labels) {
            let n = c.get();
            total += n;
            if status >= 500 {
                errors += n;
            }
        }
    }
    (total, errors)
}

/// Samples every site's counters each [`STEP`] until `stop`.
pub fn spawn_sampler(shared: Arc<Shared>, history: Arc<Mutex<History>>, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(STEP);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let names: Vec<String> = shared
                .runtime
                .load()
                .sites
                .iter()
                .map(|s| s.name.clone())
                .collect();
            let counts: Vec<_> = names.iter().map(|n| (n, totals(&shared, n))).collect();
            let mut h = history.lock().unwrap();
            for (name, (t, e)) in counts {
                h.record(name, t, e);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_per_step_bounded() {
        let mut h = History::default();
        h.record("a", 100, 0);
        h.record("a", 200, 10);
        let p = h.points("a");
        assert_eq!(p[0], Point::default());
        assert_eq!(p[1].rps, 10.0);
        assert_eq!(p[1].error_rate, 0.1);
        for i in 0..200 {
            h.record("a", 200 + i, 10);
        }
        assert_eq!(h.points("a").len(), POINTS);
    }
}
