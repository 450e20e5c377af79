//! The guard's use of a cluster ([`Shared`]): joining one, the
//! cluster-wide reservation of each login attempt, and bans both ways.
//! The interface itself is in `shared.rs`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::addr::{display_net, parse_ban_target};
use crate::attempt::{LoginAttempt, Refused, SharedHold};
use crate::bans::Record;
use crate::classify::LoginRoute;
use crate::shared::{LoginReserve, Reserve, Shared, SharedVerdict};
use crate::{Guard, canonical_ip, client_key, is_allowed, login_name, rpc};

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
