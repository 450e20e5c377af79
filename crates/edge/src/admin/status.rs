//! What the status page shows, gathered in one place so that `/` (HTML)
//! and `/v1/status` (JSON) can never disagree. Everything here is already
//! in memory: building it touches no disk and no network.

use std::sync::OnceLock;
use std::time::Instant;

use serde::Serialize;

use super::history::{History, Point};
use crate::state::Shared;

/// Set by the binary: its version line (commit, build date, target).
pub static VERSION: OnceLock<String> = OnceLock::new();
static STARTED: OnceLock<(Instant, std::time::SystemTime)> = OnceLock::new();

/// Call once at startup so uptime counts from there.
pub fn mark_started() {
    STARTED.get_or_init(|| (Instant::now(), std::time::SystemTime::now()));
}

/// Everything the status page shows (`/` and `/v1/status`).
#[derive(Debug, Serialize)]
pub struct Status {
    /// The binary's version line.
    pub version: String,
    /// When the process started, RFC 3339 UTC.
    pub started: String,
    /// Seconds since then.
    pub uptime_secs: u64,
    /// Each site, in config order.
    pub sites: Vec<SiteStatus>,
    /// Each site's certificate.
    pub certificates: Vec<rampart_certs::CertInfo>,
    /// Bans and refusals.
    pub guard: GuardStatus,
    /// From the binary (`GET /v1/status/backups` hook), when it knows.
    pub backups: serde_json::Value,
}

/// One site on the status page.
#[derive(Debug, Serialize)]
pub struct SiteStatus {
    /// The site's name (its first host).
    pub name: String,
    /// The site's host names.
    pub hosts: Vec<String>,
    /// Its Odoo and websocket upstreams.
    pub upstreams: Vec<UpstreamStatus>,
    /// Requests per second over the last 10 s step.
    pub rps: f64,
    /// 5xx share over the last 15 minutes.
    pub error_rate_15m: f64,
    /// One point per 10 s, oldest first, at most 15 minutes.
    pub history: Vec<Point>,
}

/// One upstream on the status page.
#[derive(Debug, Serialize)]
pub struct UpstreamStatus {
    /// "odoo" or "websocket".
    pub role: &'static str,
    /// `host:port` as configured.
    pub addr: String,
    /// Whether it passes its health check.
    pub healthy: bool,
    /// Requests it is serving now.
    pub in_flight: usize,
}

/// The guard's part of the status page.
#[derive(Debug, Serialize)]
pub struct GuardStatus {
    /// Bans in force.
    pub active_bans: Vec<rampart_guard::BanInfo>,
    /// The latest refusals, newest first.
    pub recent_refusals: Vec<rampart_guard::refusals::Refusal>,
    /// The addresses refused most.
    pub top_refused: Vec<rampart_guard::refusals::RefusedAddr>,
}

/// The status as of now, from what is already in memory.
pub fn collect(shared: &Shared, history: &History) -> Status {
    let (t0, started) = *STARTED.get_or_init(|| (Instant::now(), std::time::SystemTime::now()));
    let rt = shared.runtime.load();
    let sites = rt
        .sites
        .iter()
        .map(|s| {
            let upstreams = s
                .odoo
                .upstreams
                .iter()
                .map(|u| ("odoo", u))
                .chain(s.websocket.upstreams.iter().map(|u| ("websocket", u)))
                .map(|(role, u)| UpstreamStatus {
                    role,
                    addr: u.addr.clone(),
                    healthy: u.is_healthy(),
                    in_flight: u.active(),
                })
                .collect();
            let history = history.points(&s.name);
            let (req, err) = history.iter().fold((0.0, 0.0), |(r, e), p| {
                (r + p.rps, e + p.rps * p.error_rate)
            });
            SiteStatus {
                name: s.name.clone(),
                hosts: s.config.hosts.clone(),
                upstreams,
                rps: history.last().map(|p| p.rps).unwrap_or(0.0),
                error_rate_15m: if req > 0.0 { err / req } else { 0.0 },
                history,
            }
        })
        .collect();
    let backups = shared
        .admin_hooks
        .iter()
        .find_map(|h| h("GET", "/v1/status/backups", b""))
        .and_then(|(_, body)| serde_json::from_str(&body).ok())
        .unwrap_or(serde_json::Value::Null);
    Status {
        version: VERSION
            .get()
            .cloned()
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
        started: rampart_config::time::rfc3339(started),
        uptime_secs: t0.elapsed().as_secs(),
        sites,
        certificates: shared.certs.certificates(),
        guard: GuardStatus {
            active_bans: shared.guard.bans(),
            recent_refusals: shared.guard.refusals().recent(),
            top_refused: shared.guard.refusals().top(10),
        },
        backups,
    }
}
