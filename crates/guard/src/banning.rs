//! Bans made and lifted: by an administrator (written to disk before the
//! call returns) and automatically, when confirmed failures reach
//! `login_failures.max` (the length growing with each repeat, capped at
//! [`MAX_BAN`]). Each change goes to the ban log, the metrics and, with
//! `[cluster]`, the other nodes. The table itself is in `bans`.

use std::net::IpAddr;
use std::time::SystemTime;

use ipnet::IpNet;
use rampart_config::time::rfc3339;

use crate::addr::{display_net, host_net};
use crate::{BanInfo, Core, Guard, GuardError, MAX_BAN, SharedBan, canonical_ip, client_key};

impl Guard {
    /// Bans one address for `for_` (an administrator's decision; replaces
    /// any current ban of it). Written to disk before returning.
    pub fn ban(
        &self,
        addr: IpAddr,
        for_: std::time::Duration,
        reason: &str,
    ) -> Result<(), GuardError> {
        self.ban_net(host_net(addr), for_, reason).map(|_| ())
    }

    /// Lifts the ban of `addr` (and of its IPv6 /64) and forgets its
    /// history and failures. True if a ban was active. Written to disk before returning.
    pub fn unban(&self, addr: IpAddr) -> Result<bool, GuardError> {
        let addr = canonical_ip(addr);
        let mut any = self.unban_net(host_net(addr))?;
        if addr.is_ipv6() {
            any |= self.unban_net(client_key(addr))?;
        }
        Ok(any)
    }

    /// Active bans, for the status page and `GET /v1/bans`.
    pub fn bans(&self) -> Vec<BanInfo> {
        self.core.bans.list(SystemTime::now())
    }

    pub(crate) fn ban_net(
        &self,
        net: IpNet,
        for_: std::time::Duration,
        reason: &str,
    ) -> Result<BanInfo, GuardError> {
        let cfg = self.core.cfg();
        if cfg
            .allow
            .iter()
            .any(|c| c.contains(net.network()) || c.contains(net.broadcast()))
        {
            return Err(GuardError::Allowed(display_net(&net)));
        }
        let now = SystemTime::now();
        let for_ = for_.min(MAX_BAN);
        let record = self.core.bans.set(net, now + for_, reason.to_string(), now);
        self.core.ban_log.ban(&net, for_, reason);
        if let Some(shared) = self.core.shared.get() {
            shared.ban(SharedBan {
                net: display_net(&net),
                until: record.until,
                reason: record.reason.clone(),
                count: record.count,
                admin: true,
                at: now,
            });
        }
        self.core.metrics.bans.inc();
        self.core
            .metrics
            .bans_active
            .set(self.core.bans.active_count(now) as i64);
        self.core.bans.save()?;
        Ok(BanInfo {
            addr: display_net(&net),
            until: rfc3339(record.until),
            reason: record.reason,
            count: record.count,
        })
    }

    pub(crate) fn unban_net(&self, net: IpNet) -> Result<bool, GuardError> {
        let now = SystemTime::now();
        let was_banned = self.core.bans.remove(&net, now);
        self.core.failures.clear(&net);
        if let Some(shared) = self.core.shared.get() {
            shared.unban(&display_net(&net), now);
        }
        if was_banned {
            self.core.ban_log.unban(&net, "by administrator");
            self.core
                .metrics
                .bans_active
                .set(self.core.bans.active_count(now) as i64);
        }
        self.core.bans.flush()?;
        Ok(was_banned)
    }
}

impl Core {
    pub(crate) fn banned_until(&self, client: IpAddr) -> Option<SystemTime> {
        let now = SystemTime::now();
        if client.is_ipv6() {
            self.bans
                .active_until(&[host_net(client), client_key(client)], now)
        } else {
            self.bans.active_until(&[host_net(client)], now)
        }
    }

    /// Bans `key` for `ban × repeat_factor^(previous bans)`, capped at [`MAX_BAN`].
    pub(crate) fn auto_ban(&self, key: IpNet, failures: u32) {
        let lf = self.cfg().login_failures;
        let previous = self.bans.previous_count(&key);
        let length = ban_length(lf.ban.get(), lf.repeat_factor.get(), previous);
        let reason = format!("{failures} failed logins in {}", lf.within);
        let now = SystemTime::now();
        if let Some(record) = self.bans.insert(key, now + length, reason.clone(), now) {
            if let Some(shared) = self.shared.get() {
                shared.ban(SharedBan {
                    net: display_net(&key),
                    until: record.until,
                    reason: record.reason,
                    count: record.count,
                    admin: false,
                    at: now,
                });
            }
            self.failures.clear(&key);
            self.ban_log.ban(&key, length, &reason);
            self.metrics.bans.inc();
            self.metrics.bans_active.inc();
        }
    }
}

pub(crate) fn ban_length(
    base: std::time::Duration,
    factor: u32,
    previous: u32,
) -> std::time::Duration {
    let mult = (factor as u64).saturating_pow(previous.min(64));
    let secs = base.as_secs().saturating_mul(mult);
    std::time::Duration::from_secs(secs).min(MAX_BAN)
}
