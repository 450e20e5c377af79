//! Secret checks: the slot a login (or any other check of a secret) takes
//! before Odoo sees it, and the failures counted from outside a slot
//! (Odoo's log file, proven credentials that stopped working). Apart from
//! `banning` because this is where a failure is counted; a ban is only its
//! consequence.

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;

use crate::failures::{Begin, Failures};
use crate::{
    Core, Guard, LoginAttempt, LoginRoute, Refused, canonical_ip, client_key, follow, is_allowed,
    login_failure_addr, rpc,
};

impl Guard {
    /// A login attempt about to be sent to Odoo, or None: the edge answers
    /// 403 without touching Odoo. The same as [`Guard::begin_check`] for
    /// the login form.
    pub fn begin_login(&self, client: IpAddr) -> Option<LoginAttempt> {
        self.begin_check(client, LoginRoute::WebLogin, None).ok()
    }

    /// A secret check (a login, a 2FA code, an `object` call's password,
    /// the master password, an API key) about to be sent to Odoo, or the
    /// reason to refuse it without touching Odoo. Checks in flight count
    /// against `login_failures.max`, so of any burst at most `max` reach
    /// Odoo.
    ///
    /// Refusing and banning are separate on purpose: the attempt that would
    /// exceed the threshold counting in-flight ones is refused, and the ban
    /// falls when confirmed failures reach `max` (at once if they already
    /// have). So a burst of concurrent *successful* logins is never banned,
    /// and a burst of failures is banned as soon as its failures come back.
    ///
    /// `proof`: credentials that, proven right from this client within
    /// [`proven::PROVEN_FOR`], skip the slot (a refusal still counts).
    pub fn begin_check(
        &self,
        client: IpAddr,
        route: LoginRoute,
        proof: Option<rpc::Credential>,
    ) -> Result<LoginAttempt, Refused> {
        let client = canonical_ip(client);
        let cfg = self.core.cfg();
        let key = client_key(client);
        let digest = proof.map(|p| self.core.proven.digest(key, &p));
        if is_allowed(&cfg, client) {
            return Ok(LoginAttempt::new(
                &self.core, client, None, false, route, digest,
            ));
        }
        if self.core.banned_until(client).is_some() {
            self.core.metrics.logins_refused.inc();
            return Err(Refused::Banned);
        }
        let now = Instant::now();
        if let Some(d) = &digest
            && self.core.proven.contains(d, now)
        {
            return Ok(LoginAttempt::new(
                &self.core,
                client,
                Some(key),
                false,
                route,
                digest,
            ));
        }
        let lf = &cfg.login_failures;
        match self
            .core
            .failures
            .begin(key, now, lf.max.get(), lf.within.get())
        {
            Begin::Go => Ok(LoginAttempt::new(
                &self.core,
                client,
                Some(key),
                true,
                route,
                digest,
            )),
            Begin::Refuse { failures } => {
                self.core.metrics.logins_refused.inc();
                if failures >= lf.max.get() {
                    self.core.auto_ban(key, failures);
                    Err(Refused::Banned)
                } else {
                    Err(Refused::Busy)
                }
            }
        }
    }

    /// Follows `odoo_log` (when set): each "Login failed ... from ADDR" line
    /// counts as a failure for ADDR ("from n/a" is ignored). Survives
    /// rotation by rename and by copytruncate. Stops when `shutdown` completes.
    pub fn spawn_log_follower(
        self: &Arc<Self>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let path = self.core.cfg().odoo_log.clone()?;
        Some(self.spawn_follower_every(path, std::time::Duration::from_millis(500), shutdown))
    }

    pub(crate) fn spawn_follower_every(
        self: &Arc<Self>,
        path: PathBuf,
        every: std::time::Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let core = self.core.clone();
        tokio::spawn(async move {
            let shown = path.display().to_string();
            let mut follower = follow::Follower::new(path);
            let mut first = true;
            tokio::pin!(shutdown);
            loop {
                // File reads off the async workers: after a rotation the new
                // file is read from its start, which may be large.
                let polled = tokio::task::spawn_blocking(move || {
                    let lines = follower.poll();
                    (follower, lines)
                })
                .await;
                let Ok((f, lines)) = polled else {
                    tracing::error!(target: "rampart::guard", "the Odoo log follower stopped");
                    return;
                };
                follower = f;
                if first {
                    // Said once the file is open and positioned: every line
                    // written from now on is counted (the first open starts
                    // at the end, so earlier lines are not).
                    tracing::info!(target: "rampart::guard", "following {shown} for failed logins");
                    first = false;
                }
                for line in lines {
                    if let Some(addr) = login_failure_addr(&line) {
                        core.log_failure(addr);
                    }
                }
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        })
    }
}

impl Core {
    pub(crate) fn record_failure(&self, key: IpNet, count: Option<u32>) {
        let Some(count) = count else { return };
        self.metrics.login_failures.inc();
        if count >= self.cfg().login_failures.max.get() {
            self.auto_ban(key, count);
        }
    }

    /// A failure read from Odoo's log (deduplicated against the proxied answer).
    pub(crate) fn log_failure(&self, addr: IpAddr) {
        self.count_failure(addr, Failures::log_failure);
    }

    /// A refusal of a check that held no slot (proven credentials that
    /// stopped working).
    pub(crate) fn rpc_failure(&self, addr: IpAddr) {
        self.count_failure(addr, Failures::rpc_failure);
    }

    /// Counts a failure seen outside a login attempt's slot, unless `allow`ed.
    pub(crate) fn count_failure(
        &self,
        addr: IpAddr,
        count: fn(&Failures, IpNet, Instant, std::time::Duration) -> Option<u32>,
    ) {
        let addr = canonical_ip(addr);
        let cfg = self.cfg();
        if is_allowed(&cfg, addr) {
            return;
        }
        let key = client_key(addr);
        let n = count(
            &self.failures,
            key,
            Instant::now(),
            cfg.login_failures.within.get(),
        );
        self.record_failure(key, n);
    }
}
