//! The guard's side of `[cluster]` (issue 13): what several nodes share.
//!
//! The guard stays local and synchronous; a [`Shared`] (crates/cluster,
//! PostgreSQL) adds one reservation per login attempt on top of the local
//! budget, and carries bans both ways. Without one, nothing here runs.
//! The local budget is always taken first, so a cluster that is away or
//! slow ([`Shared::reserve`] answers None) leaves each node bounded by its
//! own `max`: at most `max × nodes` in total, never unbounded.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::addr::{display_net, parse_ban_target};
use crate::attempt::{LoginAttempt, Refused};
use crate::bans::Record;
use crate::classify::LoginRoute;
use crate::{Guard, canonical_ip, client_key, is_allowed, login_name, rpc};

/// The boxed future a [`Shared`] answers with.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A cluster-wide in-flight reservation for one login attempt.
#[derive(Debug, Clone)]
pub struct Reserve {
    /// The address key as bans show it (`203.0.113.7`, `2001:db8:1:2::/64`).
    pub addr: String,
    /// Failures (plus attempts in flight) the address may have cluster-wide.
    pub addr_max: u32,
    /// The window those are counted in.
    pub addr_within: Duration,
    /// The per-login part, when the attempt names a login and it is limited.
    pub login: Option<LoginReserve>,
}

/// The per-login part: the normalised login name (hashed by the cluster
/// under its own key; never stored in clear).
#[derive(Debug, Clone)]
pub struct LoginReserve {
    /// The normalised login name.
    pub login: String,
    /// Failures the login may have cluster-wide.
    pub max: u32,
    /// The window those are counted in.
    pub within: Duration,
}

/// What the cluster decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedVerdict {
    /// Go; `login_failures`: the login's failures cluster-wide (for the
    /// delay); `login_counted`: a per-login slot is held.
    Go {
        /// The login's failures cluster-wide.
        login_failures: u32,
        /// Whether a per-login slot is held.
        login_counted: bool,
    },
    /// Over the budget cluster-wide. `addr_failures`: confirmed failures of
    /// the address; `login_locked`: the login's budget refused it.
    Refused {
        /// The address's confirmed failures.
        addr_failures: u32,
        /// Whether the login's budget refused it.
        login_locked: bool,
    },
}

/// How an attempt that held a cluster reservation ended.
#[derive(Debug, Clone)]
pub struct Finish {
    /// The address key the reservation was made under.
    pub addr: String,
    /// The window the address's failures are counted in.
    pub addr_within: Duration,
    /// (normalised login, whether a per-login slot was held).
    pub login: Option<(String, bool)>,
    /// The window the login's failures are counted in.
    pub login_within: Duration,
    /// Odoo refused the credentials.
    pub failed: bool,
    /// Odoo accepted the credentials.
    pub succeeded: bool,
}

/// A ban decided on this node, for the others.
#[derive(Debug, Clone)]
pub struct SharedBan {
    /// The banned address or network (`203.0.113.7`, `2001:db8:1:2::/64`).
    pub net: String,
    /// When the ban ends.
    pub until: SystemTime,
    /// Why, as the ban log says it.
    pub reason: String,
    /// How many times this address has been banned (this one included).
    pub count: u32,
    /// An administrator's ban replaces whatever is there; an automatic
    /// one only lengthens.
    pub admin: bool,
    /// When it was decided (a ban queued while PostgreSQL was away does
    /// not overwrite a newer decision when replayed).
    pub at: SystemTime,
}

/// What a cluster gives the guard. Implementations must never block:
/// `ban` and `unban` queue, the futures carry their own deadline.
pub trait Shared: Send + Sync {
    /// None: the cluster did not answer in time (the local budget decides).
    fn reserve(&self, r: Reserve) -> BoxFut<'_, Option<SharedVerdict>>;
    /// The address's failures cluster-wide after this one, when known.
    fn finish(&self, f: Finish) -> BoxFut<'_, Option<u32>>;
    /// Queues a ban for the other nodes.
    fn ban(&self, b: SharedBan);
    /// Queues the end of a ban (`at`: when it was decided).
    fn unban(&self, net: &str, at: SystemTime);
}

/// What a cluster reservation needs to be given back.
pub(crate) struct SharedHold {
    pub shared: Arc<dyn Shared>,
    pub addr: String,
    pub addr_within: Duration,
    pub login: Option<(String, bool)>,
    pub login_within: Duration,
}

impl SharedHold {
    /// Gives the reservation back off the request path; a failure that
    /// takes the address to `max` cluster-wide bans it here (and so on
    /// every node).
    pub fn finish(self, core: &Arc<crate::Core>, failed: bool, succeeded: bool) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let core = core.clone();
        rt.spawn(async move {
            let f = Finish {
                addr: self.addr.clone(),
                addr_within: self.addr_within,
                login: self.login,
                login_within: self.login_within,
                failed,
                succeeded,
            };
            let n = self.shared.finish(f).await;
            if let (Some(n), Ok(net)) = (n, parse_ban_target(&self.addr))
                && n >= core.cfg().login_failures.max.get()
            {
                core.auto_ban(net, n);
            }
        });
    }
}

impl Guard {
    /// Joins this guard to a cluster: its bans go there, login attempts
    /// reserve there ([`Guard::begin_check_shared`]). Set once, at start.
    pub fn set_shared(&self, shared: Arc<dyn Shared>) {
        let _ = self.core.shared.set(shared);
    }

    /// [`Guard::begin_check_as`], then (with a cluster) the cluster-wide
    /// reservation: one round trip per login attempt, never for other
    /// requests. The cluster's refusal is final; its silence leaves the
    /// local decision standing (logged and counted by the cluster).
    pub async fn begin_check_shared(
        &self,
        client: IpAddr,
        route: LoginRoute,
        proof: Option<rpc::Credential>,
        login: Option<&str>,
    ) -> Result<LoginAttempt, Refused> {
        let Some(shared) = self.core.shared.get().cloned() else {
            return self.begin_check_as(client, route, proof, login);
        };
        // This node's own count may lock a login for an address the
        // cluster knows (the user logged in through another node): the
        // cluster decides then, and only a known address gets through.
        let mut locked_here = false;
        let mut attempt = match self.begin_check_as(client, route, proof.clone(), login) {
            Err(Refused::LoginLocked) => {
                locked_here = true;
                self.begin_check(client, route, proof)?
            }
            other => other?,
        };
        let cfg = self.core.cfg();
        let canon = canonical_ip(client);
        if !attempt.holds_slot() {
            if locked_here {
                self.core.metrics.logins_refused.inc();
                return Err(Refused::LoginLocked);
            }
            return Ok(attempt);
        }
        let key = client_key(canon);
        let plf = cfg.per_login_failures;
        let login = login
            .filter(|_| route.is_login() && plf.max > 0 && !is_allowed(&cfg, canon))
            .map(|l| LoginReserve {
                login: login_name::normalise(l),
                max: plf.max,
                within: plf.within.get(),
            });
        let addr = display_net(&key);
        let r = Reserve {
            addr: addr.clone(),
            addr_max: cfg.login_failures.max.get(),
            addr_within: cfg.login_failures.within.get(),
            login: login.clone(),
        };
        let locked = |attempt: LoginAttempt| {
            drop(attempt);
            self.core.metrics.logins_refused.inc();
            self.refusals.record(canon, "login locked");
            Err(Refused::LoginLocked)
        };
        match shared.reserve(r).await {
            None if locked_here => locked(attempt),
            None => Ok(attempt),
            Some(SharedVerdict::Go {
                login_failures,
                login_counted,
            }) => {
                if login_counted {
                    let steps = (login_failures + 1).saturating_sub((plf.max / 2).max(1));
                    attempt.at_least_delay(plf.delay.get().saturating_mul(steps));
                }
                attempt.hold_shared(SharedHold {
                    shared,
                    addr,
                    addr_within: cfg.login_failures.within.get(),
                    login: login.map(|l| (l.login, login_counted)),
                    login_within: plf.within.get(),
                });
                // Counted: not known in the cluster either.
                if locked_here && login_counted {
                    return locked(attempt);
                }
                Ok(attempt)
            }
            Some(SharedVerdict::Refused {
                addr_failures,
                login_locked,
            }) => {
                if addr_failures >= cfg.login_failures.max.get() {
                    drop(attempt);
                    self.core.metrics.logins_refused.inc();
                    self.core.auto_ban(key, addr_failures);
                    Err(Refused::Banned)
                } else if login_locked || locked_here {
                    locked(attempt)
                } else {
                    drop(attempt);
                    self.core.metrics.logins_refused.inc();
                    Err(Refused::Busy)
                }
            }
        }
    }

    /// A ban from the cluster (a NOTIFY, a reload): applied here without
    /// being sent back. Unchanged bans are not logged again.
    pub fn apply_cluster_ban(
        &self,
        net: &str,
        until: SystemTime,
        reason: &str,
        count: u32,
    ) -> Result<(), String> {
        let net = parse_ban_target(net)?;
        let now = SystemTime::now();
        if until <= now {
            // Ended or lifted: kept with its count (the repeat factor is
            // the cluster's), enforced no more.
            let was = self.core.bans.active_until(&[net], now).is_some();
            let record = Record {
                until,
                reason: reason.to_string(),
                count,
                expiry_logged: true,
            };
            self.core.bans.put(net, record, now);
            if was {
                self.core.failures.clear(&net);
                self.core.ban_log.unban(&net, "lifted in the cluster");
                self.core
                    .metrics
                    .bans_active
                    .set(self.core.bans.active_count(now) as i64);
            }
            return Ok(());
        }
        let record = Record {
            until,
            reason: reason.to_string(),
            count,
            expiry_logged: false,
        };
        if self.core.bans.put(net, record, now) {
            let left = until.duration_since(now).unwrap_or_default();
            self.core.ban_log.ban(&net, left, reason);
            self.core
                .metrics
                .bans_active
                .set(self.core.bans.active_count(now) as i64);
        }
        Ok(())
    }

    /// Active bans here as the cluster stores them: (net, until, reason, count).
    pub fn active_bans(&self) -> Vec<(String, SystemTime, String, u32)> {
        self.core.bans.active(SystemTime::now())
    }
}
