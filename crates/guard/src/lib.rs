//! The guard: which address a request comes from, per-client rate limits,
//! login failures counted with zero leak, and bans that persist.
//!
//! fail2ban reads Odoo's log after the fact, so a fast attacker gets many
//! attempts in before the ban lands, it cannot see XML-RPC attempts (logged
//! "from n/a"), and behind a wrong proxy_mode it bans the proxy. The guard
//! sits in the request path instead: it sees every login attempt as it
//! passes, holds a slot for each one in flight, and refuses the attempt that
//! would exceed the threshold before it reaches Odoo.
//!
//! # How the edge uses it
//! 0. On accept, when [`Guard::expects_proxy_header`]: [`parse_proxy_header`];
//!    its source stands for the socket peer from then on.
//! 1. [`Guard::client_addr`] for every request (the same address goes to
//!    Odoo as the last X-Forwarded-For entry and into the access log).
//! 2. Before routing, with the normalised headers: [`Guard::proven_session`]
//!    (a session the guard saw log in is its own client), then
//!    [`Guard::admit_request`]: 403 when banned, 429 + Retry-After when
//!    limited; [`Guard::end_session`] on [`ends_session`] paths.
//! 3. For a secret check ([`classify`]; logins once their body named the
//!    login): [`Guard::admit_login`], then [`Guard::begin_check_as`]; an
//!    error means 403/429 without touching Odoo; wait
//!    [`LoginAttempt::delay`]. Then [`LoginAttempt::finish_answer`] (or
//!    `finish`) with [`login_outcome`] of the proxied response (dropping
//!    the attempt releases its slot as an unknown outcome).
//! 4. [`Guard::housekeeping`] every few seconds, [`Guard::flush`] at shutdown
//!    (automatic bans are written by housekeeping; admin bans at once).
//! 5. [`Guard::admin`] on the admin listener, [`Guard::register_metrics`],
//!    [`Guard::spawn_log_follower`] when `odoo_log` is set.
//!
//! # Log lines (stable, for fail2ban)
//! ```text
//! rampart[guard]: ban 203.0.113.7 for 900s reason="10 failed logins in 1m"
//! rampart[guard]: ban 2001:db8:1:2::/64 for 3600s reason="banned by an administrator"
//! rampart[guard]: unban 203.0.113.7 reason="expired"
//! ```
//! Addresses are IPv4 addresses, IPv6 addresses, or IPv6 /64 networks (the
//! unit IPv6 clients are counted by). Each line goes to `tracing` (target
//! `rampart::guard`, WARN for bans) and, prefixed with an RFC 3339 time, to
//! `<state_dir>/bans.log`, which only the guard writes: `rampart fail2ban`
//! points its jail there, because a filter on a log that also carries
//! client-controlled text (a User-Agent in the access log) could be fed a
//! forged ban line.

#![warn(missing_docs)]

/// The arms of a serde `Visitor<Value = ()>` that looks only inside maps:
/// every other JSON value (a sequence read through, a scalar) is accepted
/// and ignored. Shared by the JSON readers that scan one key.
macro_rules! accept_any_other_value {
    () => {
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(())
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
    };
}
pub(crate) use accept_any_other_value;

mod addr;
mod admin;
mod admission;
mod attempt;
mod ban_log;
mod banning;
mod bans;
mod checks;
mod classify;
mod config;
mod error;
pub mod fail2ban;
mod failures;
mod follow;
mod limits;
mod login_ceiling;
mod login_name;
mod metrics;
mod outcome;
mod per_login;
mod proven;
mod proxy_protocol;
pub mod refusals;
pub mod rpc;
mod sessions;
mod shared;
mod shared_check;

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use ipnet::IpNet;

pub use addr::{canonical_ip, client_key};
pub use admin::{admin_ban_body, admin_error, parse_bans_json};
pub use attempt::{LoginAttempt, Refused};
pub use ban_log::BAN_LOG_FILE;
pub use bans::{BanInfo, MAX_BAN};
pub use classify::{
    AnswerRead, Decision, LoginRoute, answer_read, classify, is_login_call, login_route, reads_body,
};
pub use config::{
    GuardConfig, LoginFailuresConfig, LoginRateConfig, PerLoginFailuresConfig, RateConfig,
    SessionsConfig,
};
pub use error::GuardError;
pub use follow::login_failure_addr;
pub use login_name::form_login;
pub use outcome::{LoginOutcome, login_outcome, rpc_access_denied};
pub use proxy_protocol::{ProxyHeader, parse_proxy_header, read_proxy_header};
pub use sessions::{SessionKey, ends_session, request_session_id};
pub use shared::{BoxFut, Finish, LoginReserve, Reserve, Shared, SharedBan, SharedVerdict};

use ban_log::BanLog;
use bans::BanTable;
use failures::Failures;
use limits::Limiter;
use login_ceiling::Ceiling;
use metrics::Metrics;
use per_login::PerLogin;
use proven::Proven;
use sessions::Sessions;

/// How long a successful login makes its address known for that login
/// (`per_login_failures` never refuses it there).
const KNOWN_FOR: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);

/// Who a `rate` budget belongs to: an address (IPv6 by /64), or a proven
/// session wherever it is used from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum RateKey {
    Net(IpNet),
    Session(SessionKey),
}

/// What the guard says about a request before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Let through to routing.
    Admitted,
    /// Answer 403.
    Banned {
        /// When the ban ends.
        until: SystemTime,
    },
    /// Answer 429 with `Retry-After: retry_after_secs()`.
    Limited {
        /// How long the client should wait.
        retry_after: std::time::Duration,
    },
}

impl Admission {
    /// Retry-After in whole seconds, rounded up (0 would invite an immediate retry).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Admission::Limited { retry_after } => {
                Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0))
                    .map(|s| s.max(1))
            }
            _ => None,
        }
    }
}

/// What a login attempt needs to report back after the edge is done with it.
struct Core {
    cfg: RwLock<Arc<GuardConfig>>,
    bans: BanTable,
    failures: Failures,
    metrics: Metrics,
    ban_log: BanLog,
    proven: Proven,
    sessions: Sessions,
    /// Per address, above the (address, login) buckets; successes refill it.
    login_ceiling: Ceiling,
    per_login: PerLogin,
    /// (address, login) pairs that logged in successfully: the same
    /// bounded keyed-hash table as the sessions.
    known_logins: Sessions,
    /// `[cluster]`: bans and login reservations shared with other nodes.
    shared: std::sync::OnceLock<Arc<dyn Shared>>,
}

/// The guard one server shares across its connections: addresses, limits,
/// login slots and bans.
pub struct Guard {
    core: Arc<Core>,
    rate: Limiter<RateKey>,
    /// Per address, over the requests of the proven sessions used from it.
    session_ceiling: Limiter,
    /// Per (address, keyed hash of the login name; None when unknown).
    login_rate: Limiter<(IpNet, Option<SessionKey>)>,
    refusals: refusals::Refusals,
}

impl Guard {
    /// Loads the persisted ban table from `<state_dir>/bans.json` (missing =
    /// empty; corrupt = an error naming the file).
    pub fn open(cfg: &GuardConfig, state_dir: &Path) -> Result<Arc<Guard>, GuardError> {
        Guard::open_with_caps(cfg, state_dir, Caps::default())
    }

    fn open_with_caps(
        cfg: &GuardConfig,
        state_dir: &Path,
        caps: Caps,
    ) -> Result<Arc<Guard>, GuardError> {
        let bans = BanTable::open(state_dir, caps.bans)?;
        let metrics = Metrics::default();
        metrics
            .bans_active
            .set(bans.active_count(SystemTime::now()) as i64);
        let core = Arc::new(Core {
            cfg: RwLock::new(Arc::new(cfg.clone())),
            bans,
            failures: Failures::new(caps.clients),
            metrics,
            ban_log: BanLog::new(state_dir.join(BAN_LOG_FILE)),
            proven: Proven::new(caps.proven),
            sessions: Sessions::new(),
            login_ceiling: Ceiling::new(
                cfg.login_rate.address_per_minute.get(),
                cfg.login_rate.address_burst.get(),
                caps.rate_keys,
            ),
            per_login: PerLogin::new(per_login::DEFAULT_MAX_LOGINS),
            known_logins: Sessions::new(),
            shared: std::sync::OnceLock::new(),
        });
        Ok(Arc::new(Guard {
            core,
            rate: Limiter::new(
                limits::per_second(cfg.rate.per_second, cfg.rate.burst),
                caps.rate_keys,
            ),
            session_ceiling: Limiter::new(admission::session_ceiling(cfg), caps.rate_keys),
            login_rate: Limiter::new(
                limits::per_minute(cfg.login_rate.per_minute, cfg.login_rate.burst),
                caps.rate_keys,
            ),
            refusals: refusals::Refusals::default(),
        }))
    }

    /// New limits and lists (SIGHUP). Bans and failure counts are kept;
    /// rate state is kept unless that limit changed. `odoo_log` is read when
    /// the follower is spawned and does not move with a reload.
    pub fn reconfigure(&self, cfg: &GuardConfig) {
        self.rate
            .set_quota(limits::per_second(cfg.rate.per_second, cfg.rate.burst));
        self.session_ceiling
            .set_quota(admission::session_ceiling(cfg));
        self.core.login_ceiling.set(
            cfg.login_rate.address_per_minute.get(),
            cfg.login_rate.address_burst.get(),
        );
        self.login_rate.set_quota(limits::per_minute(
            cfg.login_rate.per_minute,
            cfg.login_rate.burst,
        ));
        *self.core.cfg.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg.clone());
    }

    /// Whether a connection from `peer` must start with a PROXY protocol
    /// header ([`parse_proxy_header`]): `proxy_protocol` is on and the peer
    /// is a trusted proxy. The header's source then stands for the peer in
    /// [`Guard::client_addr`].
    pub fn expects_proxy_header(&self, peer: IpAddr) -> bool {
        let cfg = self.core.cfg();
        cfg.proxy_protocol && cfg.trusted_proxies.iter().any(|c| c.contains(peer))
    }

    /// The client address: the socket peer, unless the peer is in
    /// `trusted_proxies`; then X-Forwarded-For walked right to left past
    /// trusted hops; an unparsable entry stops the walk at the last good one.
    pub fn client_addr(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        addr::client_addr(&self.core.cfg().trusted_proxies, peer, headers)
    }

    /// Whether `peer` is one of `trusted_proxies` (whose request headers,
    /// such as X-Request-ID, are believed).
    pub fn trusts_proxy(&self, peer: IpAddr) -> bool {
        self.core
            .cfg()
            .trusted_proxies
            .iter()
            .any(|c| c.contains(peer))
    }

    /// Recent refusals and the addresses refused most, for the status page.
    pub fn refusals(&self) -> &refusals::Refusals {
        &self.refusals
    }

    /// Prunes expired bans (logging each end), idle rate-limiter keys and
    /// old failure windows, and writes the ban table if it changed. Call
    /// every few seconds; the write is a small fsync'd file, so from async
    /// code prefer `spawn_blocking`.
    pub fn housekeeping(&self) {
        let now = SystemTime::now();
        for net in self.core.bans.expire(now) {
            self.core.ban_log.unban(&net, "expired");
        }
        self.core
            .metrics
            .bans_active
            .set(self.core.bans.active_count(now) as i64);
        self.rate.prune();
        self.session_ceiling.prune();
        self.login_rate.prune();
        let now = Instant::now();
        self.core.login_ceiling.prune(now);
        let keys = self.rate.len()
            + self.session_ceiling.len()
            + self.login_rate.len()
            + self.core.login_ceiling.len();
        self.core.metrics.rate_limiter_keys.set(keys as i64);
        self.core
            .failures
            .prune(Instant::now(), self.core.cfg().login_failures.within.get());
        self.core.proven.prune(now);
        let cfg = self.core.cfg();
        self.core.sessions.prune(now, cfg.sessions.lifetime.get());
        self.core.known_logins.prune(now, KNOWN_FOR);
        self.core
            .per_login
            .prune(now, cfg.per_login_failures.within.get());
        self.core
            .metrics
            .proven_sessions
            .set(self.core.sessions.len() as i64);
        if let Err(e) = self.core.bans.flush() {
            tracing::error!(target: "rampart::guard", "cannot save the ban table: {e}");
        }
    }

    /// Writes pending ban changes now. Call at shutdown (also done on drop).
    pub fn flush(&self) -> Result<(), GuardError> {
        self.core.bans.flush()
    }

    /// Registers `rampart_guard_{bans_active, bans_total, rate_limited_total,
    /// login_failures_total, logins_refused_total, rate_limiter_keys}`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.core.metrics.register(registry);
    }

    /// Admin API: `GET /v1/bans`, `POST /v1/bans {"addr": "...", "for": "1h",
    /// "reason": ".."}`, `DELETE /v1/bans/<addr>`. None for other paths.
    pub fn admin(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
        admin::handle(self, method, path, body)
    }

    #[cfg(test)]
    fn rate_keys(&self) -> usize {
        self.rate.len()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.core.bans.flush() {
            tracing::error!(target: "rampart::guard", "cannot save the ban table: {e}");
        }
    }
}

impl Core {
    fn cfg(&self) -> Arc<GuardConfig> {
        self.cfg.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn is_allowed(cfg: &GuardConfig, ip: IpAddr) -> bool {
    cfg.allow.iter().any(|c| c.contains(ip))
}

/// Caps on what a flood can make the guard remember.
#[derive(Clone, Copy)]
struct Caps {
    rate_keys: usize,
    clients: usize,
    bans: usize,
    proven: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            rate_keys: limits::DEFAULT_MAX_KEYS,
            clients: failures::DEFAULT_MAX_CLIENTS,
            bans: bans::DEFAULT_MAX_RECORDS,
            proven: proven::DEFAULT_MAX_PROVEN,
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_sessions;
#[cfg(test)]
mod tests_shared;
