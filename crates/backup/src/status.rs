//! What the status page shows about backups: per target and database the
//! last snapshot and its age, stale when the schedule's latest run should
//! have produced a newer one.
//!
//! Only the `index/` listing is read (one LIST per target, no object
//! fetched): a snapshot exists once its index entry does, and its id starts
//! with the instant it was taken (`20261201T041300Z-<db>-<hex>`).
//!
//! Stale: with a `schedule`, the latest scheduled run at or before now has
//! had half a period (12 h daily, 30 min hourly) to finish and no snapshot
//! of that database is at least as new as that run; a target with no
//! snapshot at all is stale too. Without a schedule (a systemd timer or cron
//! runs `rampart backup`) nothing is marked stale: Rampart does not know
//! what is expected.

use serde::Serialize;

use crate::config::BackupConfig;
use crate::drill::DrillRecord;
use crate::schedule::Schedule;
use crate::target::Target;

/// One target's listing, as last read.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The target's name.
    pub target: String,
    /// (database, the instant of its newest snapshot, that snapshot's id).
    pub last: Vec<(String, jiff::Timestamp, String)>,
    /// Why the target could not be listed, when it could not.
    pub error: Option<String>,
}

/// Lists every configured target's `index/` (errors kept per target).
pub async fn list_targets(cfg: &BackupConfig) -> Vec<Listing> {
    let mut out = Vec::new();
    for tc in &cfg.targets {
        let listed = async {
            let t = Target::open(tc).await?;
            t.list("index").await
        }
        .await;
        out.push(match listed {
            Ok(objects) => Listing {
                target: tc.name.clone(),
                last: newest_per_db(objects.iter().map(|o| o.name.as_str())),
                error: None,
            },
            Err(e) => Listing {
                target: tc.name.clone(),
                last: Vec::new(),
                error: Some(e.to_string()),
            },
        });
    }
    out
}

/// `<time>-<db>-<hex>.json` names → the newest per database, by database.
fn newest_per_db<'a>(
    names: impl Iterator<Item = &'a str>,
) -> Vec<(String, jiff::Timestamp, String)> {
    let mut best: std::collections::BTreeMap<String, (jiff::Timestamp, String)> =
        Default::default();
    for name in names {
        let Some(id) = name.strip_suffix(".json") else {
            continue;
        };
        let Some((time, rest)) = id.split_once('-') else {
            continue;
        };
        let Some((db, _)) = rest.rsplit_once('-') else {
            continue;
        };
        let Ok(dt) = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", time) else {
            continue;
        };
        let Ok(ts) = dt.to_zoned(jiff::tz::TimeZone::UTC).map(|z| z.timestamp()) else {
            continue;
        };
        let e = best.entry(db.to_string()).or_insert((ts, id.to_string()));
        if ts > e.0 {
            *e = (ts, id.to_string());
        }
    }
    best.into_iter().map(|(db, (t, id))| (db, t, id)).collect()
}

/// One (target, database) row of the backup status.
#[derive(Debug, Serialize, PartialEq)]
pub struct TargetStatus {
    /// The target's name.
    pub target: String,
    /// Empty when the target holds no snapshot (or could not be listed).
    pub db: String,
    /// The newest snapshot's id, empty when none.
    pub last: String,
    /// Seconds since the newest snapshot; None when there is none.
    pub age_secs: Option<u64>,
    /// The schedule's latest run should have left a newer snapshot (or the
    /// target could not be listed).
    pub stale: bool,
    /// Why the target could not be listed, when it could not.
    pub error: Option<String>,
}

/// [`status_json`] now, in the server's time zone (the schedule's).
pub fn status_now(
    cfg: &BackupConfig,
    listings: &[Listing],
    drill: Option<&DrillRecord>,
) -> serde_json::Value {
    status_json(cfg, listings, drill, &jiff::Zoned::now())
}

/// The `/v1/status` backups object: `{"schedule", "targets": [...],
/// "drill": {"schedule", "last", "ok", "age_secs", "target", "summary"}}`.
pub fn status_json(
    cfg: &BackupConfig,
    listings: &[Listing],
    drill: Option<&DrillRecord>,
    now: &jiff::Zoned,
) -> serde_json::Value {
    let schedule: Option<Schedule> = cfg.schedule.as_deref().and_then(|s| s.parse().ok());
    let due = schedule.and_then(|s| due_since(&s, now));
    let mut rows = Vec::new();
    for l in listings {
        if l.last.is_empty() {
            rows.push(TargetStatus {
                target: l.target.clone(),
                db: String::new(),
                last: String::new(),
                age_secs: None,
                stale: schedule.is_some() || l.error.is_some(),
                error: l.error.clone(),
            });
        }
        for (db, ts, id) in &l.last {
            let age = now.timestamp().duration_since(*ts);
            rows.push(TargetStatus {
                target: l.target.clone(),
                db: db.clone(),
                last: id.clone(),
                age_secs: Some(age.as_secs().max(0) as u64),
                stale: due.is_some_and(|d| *ts < d),
                error: None,
            });
        }
    }
    let drill = drill.map(|d| {
        let age = d
            .timestamp()
            .map(|t| now.timestamp().duration_since(t).as_secs().max(0));
        serde_json::json!({
            "last": d.time,
            "ok": d.ok,
            "age_secs": age,
            "target": d.target,
            "snapshots": d.snapshots,
            "summary": d.summary,
        })
    });
    serde_json::json!({
        "schedule": cfg.schedule,
        "targets": rows,
        "drill": {
            "schedule": cfg.drill,
            "last": drill,
        },
    })
}

/// The latest scheduled run at or before `now`, once it has had half a
/// period to finish; `None` while it may still be running.
fn due_since(s: &Schedule, now: &jiff::Zoned) -> Option<jiff::Timestamp> {
    let period = s.period();
    let before = now.checked_sub(period).ok()?;
    let latest = s.next_after(&before).ok()?;
    let grace_over = latest.timestamp().checked_add(period / 2).ok()?;
    (now.timestamp() >= grace_over).then(|| latest.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(schedule: Option<&str>) -> BackupConfig {
        BackupConfig {
            schedule: schedule.map(str::to_string),
            ..Default::default()
        }
    }

    fn listing(names: &[&str]) -> Listing {
        Listing {
            target: "t".into(),
            last: newest_per_db(names.iter().copied()),
            error: None,
        }
    }

    #[test]
    fn newest_per_database_from_names() {
        let l = listing(&[
            "20261130T041300Z-odoo-prod-a1b2c3.json",
            "20261201T041300Z-odoo-prod-d4e5f6.json",
            "20261201T050000Z-staging-000000.json",
            "garbage.json",
            "20261301T000000Z-bad-000000.json",
        ]);
        let dbs: Vec<_> = l
            .last
            .iter()
            .map(|(d, _, id)| (d.as_str(), id.as_str()))
            .collect();
        assert_eq!(
            dbs,
            vec![
                ("odoo-prod", "20261201T041300Z-odoo-prod-d4e5f6"),
                ("staging", "20261201T050000Z-staging-000000")
            ]
        );
    }

    #[test]
    fn stale_once_the_latest_run_had_time_to_finish() {
        let l = listing(&["20261201T041300Z-odoo-a1b2c3.json"]);
        let at = |s: &str| -> jiff::Zoned { s.parse().unwrap() };
        let daily = cfg(Some("daily 04:13"));
        let stale = |c: &BackupConfig, now: &str| {
            status_json(c, std::slice::from_ref(&l), None, &at(now))["targets"][0]["stale"]
                .as_bool()
                .unwrap()
        };
        // The next day's run is at 04:13; it may run until 16:13.
        assert!(!stale(&daily, "2026-12-02T10:00:00[UTC]"));
        assert!(!stale(&daily, "2026-12-02T16:12:00[UTC]"));
        assert!(stale(&daily, "2026-12-02T16:14:00[UTC]"));
        assert!(!stale(&daily, "2026-12-01T23:00:00[UTC]"));
        // No schedule: not judged.
        assert!(!stale(&cfg(None), "2027-06-01T00:00:00[UTC]"));
        let hourly = cfg(Some("hourly :13"));
        assert!(!stale(&hourly, "2026-12-01T04:40:00[UTC]"));
        assert!(stale(&hourly, "2026-12-01T05:44:00[UTC]"));
        // Nothing on a scheduled target: stale; age is measured.
        let v = status_json(
            &daily,
            &[listing(&[])],
            None,
            &at("2026-12-01T05:00:00[UTC]"),
        );
        assert_eq!(v["targets"][0]["stale"], true);
        let v = status_json(
            &daily,
            std::slice::from_ref(&l),
            None,
            &at("2026-12-01T05:13:00[UTC]"),
        );
        assert_eq!(v["targets"][0]["age_secs"], 3600);
        assert_eq!(v["drill"]["last"], serde_json::Value::Null);
        let d = DrillRecord {
            time: "2026-12-01T04:13:00Z".into(),
            ok: false,
            target: "t".into(),
            snapshots: vec!["x".into()],
            summary: "blob y holds other content".into(),
            duration_secs: 1.0,
        };
        let v = status_json(&daily, &[], Some(&d), &at("2026-12-01T05:13:00[UTC]"));
        assert_eq!(v["drill"]["last"]["ok"], false);
        assert_eq!(v["drill"]["last"]["age_secs"], 3600);
    }
}
