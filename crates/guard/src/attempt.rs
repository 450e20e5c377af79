//! A secret check in flight: it holds a slot of the client's login budget
//! until its outcome is known, and reports that outcome; with a cluster,
//! it also holds the cluster-wide reservation ([`SharedHold`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::Core;
use crate::addr::parse_ban_target;
use crate::classify::LoginRoute;
use crate::outcome::LoginOutcome;
use crate::proven::Digest;
use crate::sessions::SessionKey;
use crate::shared::{Finish, Shared};

/// Why [`crate::Guard::begin_check`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Banned, or confirmed failures reached `login_failures.max`: 403.
    Banned,
    /// Checks in flight fill the budget (no verdict yet): 429, retry soon.
    Busy,
    /// Too many failures for this login name, across addresses, and this
    /// address never logged in as it: 403.
    LoginLocked,
}

/// The per-login part of an attempt: the login's keyed hash, whether an
/// in-flight slot of it is held, and the address-and-login pair a success
/// makes known.
pub(crate) struct PerLoginHold {
    pub login: SessionKey,
    pub counted: bool,
    pub pair: SessionKey,
    pub delay: std::time::Duration,
}

/// A check holding a slot until it is finished or dropped.
pub struct LoginAttempt {
    core: Arc<Core>,
    client: IpAddr,
    /// None for `allow`ed clients: not counted.
    key: Option<IpNet>,
    /// Whether a slot is held (proven credentials skip it).
    slot: bool,
    route: LoginRoute,
    proof: Option<Digest>,
    per_login: Option<PerLoginHold>,
    /// `[cluster]`: the reservation held in PostgreSQL.
    shared: Option<SharedHold>,
    /// The cluster's per-login delay, when longer than the local one.
    shared_delay: std::time::Duration,
}

impl LoginAttempt {
    pub(crate) fn new(
        core: &Arc<Core>,
        client: IpAddr,
        key: Option<IpNet>,
        slot: bool,
        route: LoginRoute,
        proof: Option<Digest>,
    ) -> LoginAttempt {
        LoginAttempt {
            core: core.clone(),
            client,
            key,
            slot,
            route,
            proof,
            per_login: None,
            shared: None,
            shared_delay: std::time::Duration::ZERO,
        }
    }

    pub(crate) fn hold_shared(&mut self, hold: SharedHold) {
        self.shared = Some(hold);
    }

    pub(crate) fn at_least_delay(&mut self, d: std::time::Duration) {
        self.shared_delay = self.shared_delay.max(d);
    }

    pub(crate) fn hold_login(&mut self, hold: PerLoginHold) {
        self.per_login = Some(hold);
    }

    /// How long to wait before sending it to Odoo: the login's failures
    /// from other addresses slow attempts from an address it is not known
    /// at ([`crate::PerLoginFailuresConfig`]).
    pub fn delay(&self) -> Option<std::time::Duration> {
        let d = self
            .per_login
            .as_ref()
            .map(|h| h.delay)
            .unwrap_or_default()
            .max(self.shared_delay);
        (!d.is_zero()).then_some(d)
    }

    /// The address this attempt is counted for.
    pub fn client(&self) -> IpAddr {
        self.client
    }

    /// The kind of check, which says how to read its outcome.
    pub fn route(&self) -> LoginRoute {
        self.route
    }

    /// Whether it holds a slot of the budget (false for proven
    /// credentials and `allow`ed clients).
    pub fn holds_slot(&self) -> bool {
        self.slot && self.key.is_some()
    }

    /// Reports how the check ended. A success marks its credentials as
    /// proven and frees the slot; it never forgets the address's failures
    /// (one working account, a portal user's, would otherwise reset the
    /// count between guesses at another).
    pub fn finish(mut self, outcome: LoginOutcome) {
        let core = self.core.clone();
        let now = Instant::now();
        if let Some(h) = self.shared.take() {
            h.finish(
                &core,
                outcome == LoginOutcome::Failure,
                outcome == LoginOutcome::Success,
            );
        }
        if let Some(h) = self.per_login.take() {
            let failed = outcome == LoginOutcome::Failure;
            core.per_login.finish(h.login, h.counted, failed, now);
            if outcome == LoginOutcome::Success {
                core.known_logins.remember(
                    h.pair,
                    now,
                    crate::per_login::DEFAULT_MAX_LOGINS,
                    crate::KNOWN_FOR,
                );
            }
        }
        // A login that worked gives its token back to the address's
        // `login_rate` ceiling (colleagues behind one address).
        if outcome == LoginOutcome::Success && self.route.is_login() && self.key.is_some() {
            core.login_ceiling
                .refund(crate::client_key(crate::canonical_ip(self.client)), now);
        }
        match (outcome, &self.proof) {
            (LoginOutcome::Success, Some(d)) => core.proven.insert(*d, now),
            (LoginOutcome::Failure, Some(d)) => core.proven.remove(d),
            _ => {}
        }
        let Some(key) = self.key.take() else { return };
        if !self.slot {
            if outcome == LoginOutcome::Failure {
                core.rpc_failure(self.client);
            }
            return;
        }
        match outcome {
            LoginOutcome::Success | LoginOutcome::Unknown => core.failures.release(key),
            LoginOutcome::Failure => {
                let within = core.cfg().login_failures.within.get();
                let count = core.failures.finish_failure(key, now, within);
                core.record_failure(key, count);
            }
        }
    }
}

impl LoginAttempt {
    /// [`LoginAttempt::finish`], and when the answer is a successful
    /// web login (the form, its 2FA step, /web/session/authenticate):
    /// remember the session id Odoo set in it (Odoo gives a new one at
    /// login) as a proven session, its own client from now on.
    pub fn finish_answer(self, outcome: LoginOutcome, answer: &http::HeaderMap) {
        if outcome == LoginOutcome::Success
            && matches!(
                self.route,
                LoginRoute::WebLogin | LoginRoute::WebLoginTotp | LoginRoute::SessionAuthenticate
            )
            && let Some(sid) = crate::sessions::answer_session_id(answer)
        {
            let core = &self.core;
            let cfg = core.cfg();
            let key = core.sessions.key_of(sid);
            core.sessions.remember(
                key,
                Instant::now(),
                cfg.sessions.max.get() as usize,
                cfg.sessions.lifetime.get(),
            );
        }
        self.finish(outcome);
    }
}

impl Drop for LoginAttempt {
    fn drop(&mut self) {
        if let Some(h) = self.shared.take() {
            h.finish(&self.core, false, false);
        }
        if let Some(h) = self.per_login.take() {
            self.core
                .per_login
                .finish(h.login, h.counted, false, Instant::now());
        }
        // Dropped without finish: the outcome is unknown, free the slot.
        if let Some(key) = self.key.take()
            && self.slot
        {
            self.core.failures.release(key);
        }
    }
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
    pub fn finish(self, core: &Arc<Core>, failed: bool, succeeded: bool) {
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
