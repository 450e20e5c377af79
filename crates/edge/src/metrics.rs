//! Prometheus metrics for the edge; other crates register theirs in the
//! same registry, served on the admin listener's `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `rampart_requests` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The site's name.
    pub site: String,
    /// The status sent.
    pub status: u16,
}

/// Labels of series kept per site.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabels {
    /// The site's name.
    pub site: String,
}

/// A queue wait: the site, and whose queue (`session`: a proven
/// session's own; `address`: requests grouped by client address).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The site's name.
    pub site: String,
    /// `session` or `address`.
    pub class: &'static str,
}

/// `rampart_upstream_healthy` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// The site's name.
    pub site: String,
    /// The upstream's `host:port`.
    pub upstream: String,
}

/// One site's series, resolved once when the runtime is built: a label
/// lookup per request hashed and cloned the site name three times
/// (profiled under the bench). Handles share the family's series, so
/// they survive reloads and `/metrics` sees every count.
#[derive(Clone)]
pub struct SiteMeters {
    /// `rampart_upstream_response_seconds` for this site.
    pub upstream_seconds: Histogram,
    queue_session: Histogram,
    queue_address: Histogram,
    /// `requests{status="200"}`, by far the most common series.
    ok: Counter,
    requests: Family<RequestLabels, Counter>,
    site: String,
}

impl SiteMeters {
    /// Resolves the site's series in `m`.
    pub fn new(m: &Metrics, site: &str) -> SiteMeters {
        let queue = |class| {
            m.queue_seconds
                .get_or_create(&QueueLabels {
                    site: site.to_string(),
                    class,
                })
                .clone()
        };
        SiteMeters {
            upstream_seconds: m
                .upstream_seconds
                .get_or_create(&SiteLabels {
                    site: site.to_string(),
                })
                .clone(),
            queue_session: queue("session"),
            queue_address: queue("address"),
            ok: m
                .requests
                .get_or_create(&RequestLabels {
                    site: site.to_string(),
                    status: 200,
                })
                .clone(),
            requests: m.requests.clone(),
            site: site.to_string(),
        }
    }

    /// Counts one answered request.
    pub fn request(&self, status: u16) {
        if status == 200 {
            self.ok.inc();
        } else {
            self.requests
                .get_or_create(&RequestLabels {
                    site: self.site.clone(),
                    status,
                })
                .inc();
        }
    }

    /// The queue wait histogram of a class (`Ctx::queue_class`).
    pub fn queue(&self, class: &str) -> &Histogram {
        if class == "session" {
            &self.queue_session
        } else {
            &self.queue_address
        }
    }
}

/// The edge's metric families, registered once per process.
#[derive(Clone)]
pub struct Metrics {
    /// `rampart_requests`: requests answered, by site and status.
    pub requests: Family<RequestLabels, Counter>,
    /// `rampart_upstream_response_seconds`: time to Odoo's response headers.
    pub upstream_seconds: Family<SiteLabels, Histogram>,
    /// `rampart_upstream_healthy`: 1 while an upstream passes its check.
    pub upstream_healthy: Family<UpstreamLabels, Gauge>,
    /// `rampart_upstream_queue_seconds`: waits for a worker slot, by queue class.
    pub queue_seconds: Family<QueueLabels, Histogram>,
    /// `rampart_client_cap_refusals`: refused because the client held its share.
    pub client_cap_refusals: Family<SiteLabels, Counter>,
    /// `rampart_websocket_tunnels_open`.
    pub websocket_tunnels: Gauge,
    /// `rampart_connections_open`: open client connections.
    pub connections: Gauge,
    /// `rampart_tls_handshake_failures`: failed or timed-out handshakes.
    pub tls_failures: Counter,
    /// `rampart_access_log_dropped`: lines dropped because the writer fell behind.
    pub access_log_dropped: Counter,
}

impl Metrics {
    /// Creates the families and registers them in `registry`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_handles_count_in_the_families() {
        let m = Metrics::new(&mut Registry::default());
        let site = SiteMeters::new(&m, "erp.example.com");
        // A second runtime (reload) shares the same series.
        let again = SiteMeters::new(&m, "erp.example.com");
        site.request(200);
        again.request(200);
        site.request(404);
        site.queue("session").observe(0.5);
        again.upstream_seconds.observe(0.1);
        let req = |status| {
            m.requests
                .get(&RequestLabels {
                    site: "erp.example.com".into(),
                    status,
                })
                .map(|c| c.get())
        };
        assert_eq!(req(200), Some(2));
        assert_eq!(req(404), Some(1));
        let mut text = String::new();
        let mut reg = Registry::default();
        reg.register("q", "", m.queue_seconds.clone());
        reg.register("u", "", m.upstream_seconds.clone());
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(
            text.contains("q_count{site=\"erp.example.com\",class=\"session\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("u_count{site=\"erp.example.com\"} 1"),
            "{text}"
        );
    }
}
