//! Prometheus metrics for the edge; other crates register theirs in the
//! same registry, served on the admin listener's `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub site: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabels {
    pub site: String,
}

/// A queue wait: the site, and whose queue (`session`: a proven
/// session's own; `address`: requests grouped by client address).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub site: String,
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub site: String,
    pub upstream: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub upstream_seconds: Family<SiteLabels, Histogram>,
    pub upstream_healthy: Family<UpstreamLabels, Gauge>,
    pub queue_seconds: Family<QueueLabels, Histogram>,
    pub client_cap_refusals: Family<SiteLabels, Counter>,
    pub websocket_tunnels: Gauge,
    pub connections: Gauge,
    pub tls_failures: Counter,
    pub access_log_dropped: Counter,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            requests: Family::default(),
            upstream_seconds: Family::new_with_constructor(|| {
                Histogram::new([
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0, 720.0,
                ])
            }),
            upstream_healthy: Family::default(),
            queue_seconds: Family::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
            }),
            client_cap_refusals: Family::default(),
            websocket_tunnels: Gauge::default(),
            connections: Gauge::default(),
            tls_failures: Counter::default(),
            access_log_dropped: Counter::default(),
        };
        registry.register(
            "rampart_requests",
            "Requests answered, by site and status",
            m.requests.clone(),
        );
        registry.register(
            "rampart_upstream_response_seconds",
            "Time from sending a request to Odoo to its response headers",
            m.upstream_seconds.clone(),
        );
        registry.register(
            "rampart_upstream_healthy",
            "1 when the upstream passes its health check",
            m.upstream_healthy.clone(),
        );
        registry.register(
            "rampart_upstream_queue_seconds",
            "Time a request waited for an Odoo worker slot, by queue class (session or address)",
            m.queue_seconds.clone(),
        );
        registry.register(
            "rampart_client_cap_refusals",
            "Requests refused because their client already held its share of the pool",
            m.client_cap_refusals.clone(),
        );
        registry.register(
            "rampart_websocket_tunnels_open",
            "Open websocket tunnels",
            m.websocket_tunnels.clone(),
        );
        registry.register(
            "rampart_connections_open",
            "Open client connections",
            m.connections.clone(),
        );
        registry.register(
            "rampart_tls_handshake_failures",
            "Failed or timed-out TLS handshakes",
            m.tls_failures.clone(),
        );
        registry.register(
            "rampart_access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            m.access_log_dropped.clone(),
        );
        m
    }
}
