//! Prometheus metrics of the guard.

use std::sync::atomic::AtomicI64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Default)]
pub struct Metrics {
    pub bans_active: Gauge<i64, AtomicI64>,
    pub bans: Counter,
    pub rate_limited: Counter,
    pub login_failures: Counter,
    pub logins_refused: Counter,
    pub rate_limiter_keys: Gauge<i64, AtomicI64>,
    pub proven_sessions: Gauge<i64, AtomicI64>,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("rampart_guard");
        r.register(
            "bans_active",
            "Client addresses banned right now",
            self.bans_active.clone(),
        );
        r.register(
            "bans",
            "Bans imposed (automatic and by an administrator)",
            self.bans.clone(),
        );
        r.register(
            "rate_limited",
            "Requests answered 429 by the per-client rate limits",
            self.rate_limited.clone(),
        );
        r.register(
            "login_failures",
            "Failed logins seen on responses or in Odoo's log",
            self.login_failures.clone(),
        );
        r.register(
            "logins_refused",
            "Login attempts refused before reaching Odoo because failures plus attempts in flight reached the threshold (requests from banned addresses are counted by the ban, not here)",
            self.logins_refused.clone(),
        );
        r.register(
            "rate_limiter_keys",
            "Clients remembered by the rate limiters (bounded; pruned by housekeeping)",
            self.rate_limiter_keys.clone(),
        );
        r.register(
            "proven_sessions",
            "Odoo sessions seen logging in and still alive, each its own client (bounded by sessions.max)",
            self.proven_sessions.clone(),
        );
    }
}
