//! What `rampart serve` tells about backups: the status page's backups
//! section and the freshness metrics, both from one listing of each
//! target's `index/` (one LIST per target, at start and every few minutes:
//! reaching SFTP or S3 is too slow for each page view or scrape) and from
//! the last drill's record in the state dir (read when asked).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use rampart_backup::BackupConfig;
use rampart_backup::status::Listing;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

const LISTING_EVERY: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub struct BackupStatus {
    config: Option<Arc<BackupConfig>>,
    listings: Arc<Mutex<Option<Vec<Listing>>>>,
}

impl BackupStatus {
    pub fn new(config: &Config) -> BackupStatus {
        BackupStatus {
            config: config.backup.clone().map(Arc::new),
            listings: Arc::default(),
        }
    }

    pub fn spawn_refresh(&self, shutdown: CancellationToken) {
        let Some(cfg) = self.config.clone() else {
            return;
        };
        let listings = self.listings.clone();
        tokio::spawn(async move {
            loop {
                let l = rampart_backup::status::list_targets(&cfg).await;
                *listings.lock().unwrap() = Some(l);
                tokio::select! {
                    _ = tokio::time::sleep(LISTING_EVERY) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        });
    }

    fn last_drill(cfg: &BackupConfig) -> Option<rampart_backup::DrillRecord> {
        cfg.state_dir
            .as_deref()
            .and_then(rampart_backup::last_drill)
    }

    /// The `/v1/status/backups` answer.
    pub fn json(&self) -> String {
        let Some(cfg) = &self.config else {
            return serde_json::json!({
                "note": "no [backup] section: nothing is backed up by rampart"
            })
            .to_string();
        };
        let drill = Self::last_drill(cfg);
        match &*self.listings.lock().unwrap() {
            None => serde_json::json!({ "note": "listing the backup targets…" }).to_string(),
            Some(l) => rampart_backup::status::status_now(cfg, l, drill.as_ref()).to_string(),
        }
    }

    /// Freshness gauges, read at scrape time.
    pub fn register_metrics(&self, registry: &mut Registry) {
        if self.config.is_some() {
            registry.register_collector(Box::new(self.clone()));
        }
    }
}

impl Collector for BackupStatus {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(cfg) = &self.config else {
            return Ok(());
        };
        let listings = self.listings.lock().unwrap().clone();
        if let Some(listings) = &listings {
            let mut last = encoder.encode_descriptor(
                "rampart_backup_last_snapshot_timestamp_seconds",
                "When the newest complete snapshot of a database on a target was taken (Unix seconds)",
                None,
                MetricType::Gauge,
            )?;
            for l in listings {
                for (db, ts, _) in &l.last {
                    let labels = [("target", l.target.clone()), ("db", db.clone())];
                    ConstGauge::new(ts.as_second()).encode(last.encode_family(&labels)?)?;
                }
            }
            let mut up = encoder.encode_descriptor(
                "rampart_backup_target_up",
                "1 when the target's snapshots could be listed at the last look, else 0",
                None,
                MetricType::Gauge,
            )?;
            for l in listings {
                let labels = [("target", l.target.clone())];
                ConstGauge::new(i64::from(l.error.is_none())).encode(up.encode_family(&labels)?)?;
            }
        }
        let wal = rampart_backup::wal::freshness::caught_up();
        if cfg.wal && !wal.is_empty() {
            let mut caught_up = encoder.encode_descriptor(
                "rampart_backup_wal_caught_up_timestamp_seconds",
                "When the target last held all the WAL the streamer had received (Unix seconds; \
                 refreshed every wal_upload_interval while streaming works)",
                None,
                MetricType::Gauge,
            )?;
            for (target, t) in wal {
                ConstGauge::new(t).encode(caught_up.encode_family(&[("target", target)])?)?;
            }
        }
        if let Some(d) = Self::last_drill(cfg) {
            let mut when = encoder.encode_descriptor(
                "rampart_backup_drill_last_timestamp_seconds",
                "When the last restore drill finished (Unix seconds)",
                None,
                MetricType::Gauge,
            )?;
            let t = d.timestamp().map(|t| t.as_second()).unwrap_or(0);
            ConstGauge::new(t).encode(when.encode_family(&[("target", d.target.clone())])?)?;
            let mut ok = encoder.encode_descriptor(
                "rampart_backup_drill_last_success",
                "1 when the last restore drill passed, 0 when it failed",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::from(d.ok)).encode(ok.encode_family(&[("target", d.target)])?)?;
        }
        Ok(())
    }
}
