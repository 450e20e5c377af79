//! `rampart_cluster_*`: whether PostgreSQL is there, and what the node
//! decided alone while it was not.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub struct Metrics {
    pub up: Gauge,
    pub fallbacks: Counter,
    pub reconnects: Counter,
    pub bans_received: Counter,
    pub bans_pending: Gauge,
    pub reserve_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            up: Gauge::default(),
            fallbacks: Counter::default(),
            reconnects: Counter::default(),
            bans_received: Counter::default(),
            bans_pending: Gauge::default(),
            // 0.25 ms .. ~1 s
            reserve_seconds: Histogram::new(exponential_buckets(0.00025, 2.0, 13)),
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("rampart_cluster");
        r.register(
            "up",
            "1 while this node is connected to the cluster's PostgreSQL",
            self.up.clone(),
        );
        r.register(
            "fallbacks",
            "Login attempts decided by the local budget alone (PostgreSQL away or slower than the deadline)",
            self.fallbacks.clone(),
        );
        r.register(
            "reconnects",
            "Connections to PostgreSQL made after the first",
            self.reconnects.clone(),
        );
        r.register(
            "bans_received",
            "Ban changes applied from the cluster (NOTIFY and reloads)",
            self.bans_received.clone(),
        );
        r.register(
            "bans_pending",
            "Ban changes made here and not yet written to PostgreSQL",
            self.bans_pending.clone(),
        );
        r.register(
            "reserve_seconds",
            "Round trip of one login attempt's cluster-wide reservation",
            self.reserve_seconds.clone(),
        );
    }
}
