//! The in-process schedule for `rampart serve`: `daily HH:MM` in the
//! server's local time zone (what an admin means by "04:13"), `hourly
//! :MM`, or `weekly sun HH:MM` (drills). A systemd timer calling `rampart
//! backup` works as well.

use std::future::Future;
use std::str::FromStr;

use crate::config::BackupConfig;
use crate::progress::Progress;
use crate::snapshot::{BackupOptions, backup};
use anyhow::{Error, Result};

/// When `rampart serve` runs backups or drills on its own, in server local time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// `daily HH:MM`.
    Daily {
        /// Hour of the day, 0 to 23.
        hour: i8,
        /// Minute of the hour, 0 to 59.
        minute: i8,
    },
    /// `hourly :MM`.
    Hourly {
        /// Minute of the hour, 0 to 59.
        minute: i8,
    },
    /// `weekly sun HH:MM`.
    Weekly {
        /// Day of the week.
        weekday: jiff::civil::Weekday,
        /// Hour of the day, 0 to 23.
        hour: i8,
        /// Minute of the hour, 0 to 59.
        minute: i8,
    },
}

impl FromStr for Schedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Schedule> {
        let bad = || {
            anyhow::Error::msg(format!(
                "schedule {s:?}: expected \"daily HH:MM\", \"hourly :MM\" or \"weekly sun HH:MM\""
            ))
        };
        let mut words = s.split_whitespace();
        let kind = words.next().ok_or_else(bad)?;
        let weekday = if kind == "weekly" {
            Some(weekday(words.next().ok_or_else(bad)?).ok_or_else(bad)?)
        } else {
            None
        };
        let at = words.next().ok_or_else(bad)?;
        if words.next().is_some() {
            return Err(bad());
        }
        let (h, m) = at.split_once(':').ok_or_else(bad)?;
        let minute: i8 = m
            .parse()
            .ok()
            .filter(|m| (0..60).contains(m))
            .ok_or_else(bad)?;
        match kind {
            "daily" => {
                let hour: i8 = h
                    .parse()
                    .ok()
                    .filter(|h| (0..24).contains(h))
                    .ok_or_else(bad)?;
                Ok(Schedule::Daily { hour, minute })
            }
            "weekly" => {
                let hour: i8 = h
                    .parse()
                    .ok()
                    .filter(|h| (0..24).contains(h))
                    .ok_or_else(bad)?;
                let weekday = weekday.expect("parsed above");
                Ok(Schedule::Weekly {
                    weekday,
                    hour,
                    minute,
                })
            }
            "hourly" if h.is_empty() => Ok(Schedule::Hourly { minute }),
            _ => Err(bad()),
        }
    }
}

/// `sun`, `Sunday`… (English, any case, three letters or whole).
fn weekday(s: &str) -> Option<jiff::civil::Weekday> {
    use jiff::civil::Weekday::*;
    let s = s.to_ascii_lowercase();
    let all = [
        ("monday", Monday),
        ("tuesday", Tuesday),
        ("wednesday", Wednesday),
        ("thursday", Thursday),
        ("friday", Friday),
        ("saturday", Saturday),
        ("sunday", Sunday),
    ];
    all.into_iter()
        .find(|(name, _)| s == *name || (s.len() == 3 && name.starts_with(&s)))
        .map(|(_, d)| d)
}

impl Schedule {
    /// How long from one run to the next.
    pub fn period(&self) -> jiff::SignedDuration {
        match self {
            Schedule::Daily { .. } => jiff::SignedDuration::from_hours(24),
            Schedule::Hourly { .. } => jiff::SignedDuration::from_hours(1),
            Schedule::Weekly { .. } => jiff::SignedDuration::from_hours(7 * 24),
        }
    }

    /// The first run time strictly after `now`.
    pub fn next_after(&self, now: &jiff::Zoned) -> Result<jiff::Zoned> {
        let e = |e: jiff::Error| anyhow::Error::msg(format!("schedule: {e}"));
        if let Schedule::Weekly {
            weekday,
            hour,
            minute,
        } = *self
        {
            // The daily run at that time, moved on to the weekday.
            let mut t = Schedule::Daily { hour, minute }.next_after(now)?;
            while t.weekday() != weekday {
                t = t.checked_add(jiff::Span::new().days(1)).map_err(e)?;
            }
            return Ok(t);
        }
        let candidate = match *self {
            Schedule::Weekly { .. } => unreachable!("handled above"),
            Schedule::Daily { hour, minute } => now
                .with()
                .hour(hour)
                .minute(minute)
                .second(0)
                .subsec_nanosecond(0)
                .build()
                .map_err(e)?,
            Schedule::Hourly { minute } => now
                .with()
                .minute(minute)
                .second(0)
                .subsec_nanosecond(0)
                .build()
                .map_err(e)?,
        };
        if &candidate > now {
            return Ok(candidate);
        }
        let step = match self {
            Schedule::Hourly { .. } => jiff::Span::new().hours(1),
            _ => jiff::Span::new().days(1),
        };
        candidate.checked_add(step).map_err(e)
    }
}

/// Runs backups on `cfg.schedule` until `shutdown` resolves; for `rampart
/// serve`. Each run's summary (or failure) goes to the log; a failed run
/// does not stop the schedule. Returns at once without a schedule.
pub async fn run_scheduled(cfg: &BackupConfig, shutdown: impl Future<Output = ()>) {
    let Some(spec) = &cfg.schedule else {
        return;
    };
    let schedule: Schedule = match spec.parse() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("backup schedule not started: {e:#}");
            return;
        }
    };
    tokio::pin!(shutdown);
    loop {
        let now = jiff::Zoned::now();
        let next = match schedule.next_after(&now) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("backup schedule stopped: {e:#}");
                return;
            }
        };
        let wait = now.duration_until(&next).unsigned_abs();
        tracing::info!(next = %next, "next backup");
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match backup(cfg, &BackupOptions::default(), &Progress::quiet()).await {
            Ok(r) if r.ok() => tracing::info!("backup: {}", r.summary()),
            Ok(r) => tracing::error!("backup: {}", r.summary()),
            Err(e) => tracing::error!("backup failed: {e:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse() {
        assert_eq!(
            "daily 04:13".parse::<Schedule>().unwrap(),
            Schedule::Daily {
                hour: 4,
                minute: 13
            }
        );
        assert_eq!(
            "hourly :05".parse::<Schedule>().unwrap(),
            Schedule::Hourly { minute: 5 }
        );
        assert_eq!(
            "weekly sun 05:00".parse::<Schedule>().unwrap(),
            Schedule::Weekly {
                weekday: jiff::civil::Weekday::Sunday,
                hour: 5,
                minute: 0
            }
        );
        assert!("weekly Sunday 05:00".parse::<Schedule>().is_ok());
        for bad in [
            "daily",
            "daily 24:00",
            "weekly 04:00",
            "weekly su 04:00",
            "weekly sun",
            "daily sun 04:00",
            "daily 4:60",
            "hourly 3:00",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn next_run_is_strictly_later() {
        let now: jiff::Zoned = "2026-03-10T05:00:00[UTC]".parse().unwrap();
        let d = Schedule::Daily {
            hour: 4,
            minute: 13,
        };
        assert_eq!(
            d.next_after(&now).unwrap().to_string(),
            "2026-03-11T04:13:00+00:00[UTC]"
        );
        let d = Schedule::Daily { hour: 5, minute: 0 };
        assert_eq!(
            d.next_after(&now).unwrap().to_string(),
            "2026-03-11T05:00:00+00:00[UTC]"
        );
        // 2026-03-10 is a Tuesday.
        let w = "weekly sun 05:00".parse::<Schedule>().unwrap();
        assert_eq!(
            w.next_after(&now).unwrap().to_string(),
            "2026-03-15T05:00:00+00:00[UTC]"
        );
        let w = "weekly tue 05:30".parse::<Schedule>().unwrap();
        assert_eq!(
            w.next_after(&now).unwrap().to_string(),
            "2026-03-10T05:30:00+00:00[UTC]"
        );
        let w = "weekly tue 04:59".parse::<Schedule>().unwrap();
        assert_eq!(
            w.next_after(&now).unwrap().to_string(),
            "2026-03-17T04:59:00+00:00[UTC]"
        );
        let h = Schedule::Hourly { minute: 30 };
        assert_eq!(
            h.next_after(&now).unwrap().to_string(),
            "2026-03-10T05:30:00+00:00[UTC]"
        );
    }
}
