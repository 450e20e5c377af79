//! The edge cache's counters and gauges, per site.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::SiteLabels;

/// Bytes, entries and counters, per site and in total.
#[derive(Clone, Default)]
pub struct CacheMetrics {
    /// `rampart_cache_hits`.
    pub hits: Family<SiteLabels, Counter>,
    /// `rampart_cache_misses`: cacheable requests that went to Odoo.
    pub misses: Family<SiteLabels, Counter>,
    /// `rampart_cache_evictions`: entries dropped to stay within `max_memory`.
    pub evictions: Family<SiteLabels, Counter>,
    /// `rampart_cache_bytes`: bodies and compressed variants held.
    pub bytes: Family<SiteLabels, Gauge>,
    /// `rampart_cache_entries`.
    pub entries: Family<SiteLabels, Gauge>,
    /// `rampart_cache_odoo_seconds_saved`: Odoo's time on the original fetch, per hit.
    pub saved_seconds: Family<SiteLabels, Counter<f64>>,
}

impl CacheMetrics {
    /// Registers the families in `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "rampart_cache_hits",
            "Requests answered from the edge cache",
            self.hits.clone(),
        );
        r.register(
            "rampart_cache_misses",
            "Cacheable requests that went to Odoo",
            self.misses.clone(),
        );
        r.register(
            "rampart_cache_evictions",
            "Entries dropped to stay within max_memory",
            self.evictions.clone(),
        );
        r.register(
            "rampart_cache_bytes",
            "Bytes held by the edge cache (bodies and compressed variants)",
            self.bytes.clone(),
        );
        r.register(
            "rampart_cache_entries",
            "Entries in the edge cache",
            self.entries.clone(),
        );
        r.register(
            "rampart_cache_odoo_seconds_saved",
            "Odoo worker-seconds saved: for each hit, the time Odoo took for the original fetch",
            self.saved_seconds.clone(),
        );
    }
}
