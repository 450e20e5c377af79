//! `rampart_certificate_days_left{site,name}` and renewal failures,
//! computed at scrape time so the value never goes stale.

use std::sync::{Arc, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::local_ca::unix_now;
use crate::store::CertStore;

#[derive(Debug)]
struct CertCollector(Weak<CertStore>);

impl Collector for CertCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(store) = self.0.upgrade() else {
            return Ok(());
        };
        let now = unix_now();
        let table = store.table();
        let mut days = encoder.encode_descriptor(
            "rampart_certificate_days_left",
            "Days until the certificate in service expires (fractional; negative once expired)",
            None,
            MetricType::Gauge,
        )?;
        for s in &table.sites {
            let left = (s.loaded.meta.not_after - now) as f64 / 86_400.0;
            for name in &s.hosts {
                let labels = [("site", s.site.to_string()), ("name", name.clone())];
                ConstGauge::new(left).encode(days.encode_family(&labels)?)?;
            }
        }
        let mut failed = encoder.encode_descriptor(
            "rampart_certificate_renewal_failures",
            "Failed certificate issue or renewal attempts since start",
            None,
            MetricType::Counter,
        )?;
        let failures = store.failures.lock().unwrap().clone();
        for s in &table.sites {
            let n = failures.get(&s.site).copied().unwrap_or(0);
            let labels = [("site", s.site.to_string())];
            prometheus_client::metrics::counter::ConstCounter::new(n)
                .encode(failed.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl CertStore {
    /// Registers the certificate metrics (read at each scrape).
    pub fn register_metrics(self: &Arc<Self>, registry: &mut Registry) {
        registry.register_collector(Box::new(CertCollector(Arc::downgrade(self))));
    }
}
