//! Admission: who a request counts as (a proven session, else its
//! address) for `rate`, and the login budgets taken once a login's name is
//! known. Kept apart from `lib.rs` so the guard's entry points stay short.

use std::net::IpAddr;
use std::time::Instant;

use crate::attempt::{self, LoginAttempt, Refused};
use crate::classify::LoginRoute;
use crate::config::GuardConfig;
use crate::{
    Admission, Guard, KNOWN_FOR, RateKey, SessionKey, canonical_ip, client_key, is_allowed, limits,
    login_name, per_login, rpc, sessions,
};

impl Guard {
    /// Before routing: banned, over the per-client rate (login routes also
    /// over `login_rate`, for an unknown login name), or admitted. `allow`
    /// networks are always admitted.
    pub fn admit(&self, client: IpAddr, login_route: bool) -> Admission {
        match self.admit_request(client, None) {
            Admission::Admitted if login_route => self.admit_login(client, None),
            other => other,
        }
    }

    /// The proven session a request carries: the session id Odoo reads
    /// from its Cookie header, if the guard saw it log in and it is alive.
    /// Using it keeps it alive. Pass the headers after stage 1 joined the
    /// cookie fields.
    pub fn proven_session(&self, headers: &http::HeaderMap) -> Option<SessionKey> {
        let sid = sessions::request_session_id(headers)?;
        let key = self.core.sessions.key_of(sid);
        let lifetime = self.core.cfg().sessions.lifetime.get();
        self.core
            .sessions
            .touch(&key, Instant::now(), lifetime)
            .then_some(key)
    }

    /// A logout: the session is no longer its own client.
    pub fn end_session(&self, session: SessionKey) {
        self.core.sessions.forget(&session);
    }

    /// Before routing: banned, over the rate, or admitted. The rate is
    /// the proven session's own when there is one (and the address's
    /// sessions together stay under `sessions.per_address` × `rate`),
    /// else the address's. Bans stay per address.
    pub fn admit_request(&self, client: IpAddr, session: Option<SessionKey>) -> Admission {
        let client = canonical_ip(client);
        let cfg = self.core.cfg();
        if is_allowed(&cfg, client) {
            return Admission::Admitted;
        }
        if let Some(until) = self.core.banned_until(client) {
            self.refusals.record(client, "banned");
            return Admission::Banned { until };
        }
        let key = client_key(client);
        let verdict = match session {
            None => self.rate.check(&RateKey::Net(key)),
            Some(s) => self
                .rate
                .check(&RateKey::Session(s))
                .and_then(|()| self.session_ceiling.check(&key)),
        };
        self.limited(client, verdict)
    }

    /// The login rate, checked once the login name is known (the body
    /// read): per (address, login name; None when it cannot be read),
    /// under a ceiling per address that successful logins give their
    /// token back to ([`LoginAttempt::finish`]). So colleagues behind one
    /// address do not spend one budget, while guessing stays bounded by
    /// the ceiling and by `login_failures`.
    pub fn admit_login(&self, client: IpAddr, login: Option<&str>) -> Admission {
        let client = canonical_ip(client);
        if is_allowed(&self.core.cfg(), client) {
            return Admission::Admitted;
        }
        let key = client_key(client);
        let name = login.map(|l| {
            self.core
                .sessions
                .hash(b"login", login_name::normalise(l).as_bytes())
        });
        let verdict = self
            .login_rate
            .check(&(key, name))
            .and_then(|()| self.core.login_ceiling.take(key, Instant::now()));
        self.limited(client, verdict)
    }

    fn limited(&self, client: IpAddr, verdict: Result<(), std::time::Duration>) -> Admission {
        match verdict {
            Ok(()) => Admission::Admitted,
            Err(retry_after) => {
                self.core.metrics.rate_limited.inc();
                self.refusals.record(client, "rate limited");
                Admission::Limited { retry_after }
            }
        }
    }

    /// [`Guard::begin_check`] for a check whose login name is known (the
    /// edge read it from the body): a login is also held to
    /// `per_login_failures`, counted per login name across addresses; the
    /// attempt may then have to wait [`LoginAttempt::delay`] first.
    pub fn begin_check_as(
        &self,
        client: IpAddr,
        route: LoginRoute,
        proof: Option<rpc::Credential>,
        login: Option<&str>,
    ) -> Result<LoginAttempt, Refused> {
        let cfg = self.core.cfg();
        let plf = cfg.per_login_failures;
        let canon = canonical_ip(client);
        if plf.max == 0 || is_allowed(&cfg, canon) {
            return self.begin_check(client, route, proof);
        }
        // Credentials proven right from this address are not a guess.
        if let Some(p) = &proof
            && self.core.proven.contains(
                &self.core.proven.digest(client_key(canon), p),
                Instant::now(),
            )
        {
            return self.begin_check(client, route, proof);
        }
        // Whose password is checked: the login's name; for an `object`
        // call its uid (classify); a login whose name cannot be read (a
        // multipart form) counts under one name shared by all such
        // attempts, or spreading guesses over addresses in that form
        // would escape the budget (red team 4 F2). The 2FA step follows a
        // right password: per address only.
        let login = match (route, login) {
            (LoginRoute::WebLoginTotp, _) => None,
            (_, Some(l)) if route.is_login() || route.is_object_call() => Some(l),
            (_, None) if route.is_login() => Some(UNREADABLE_LOGIN),
            _ => None,
        };
        let Some(login) = login else {
            return self.begin_check(client, route, proof);
        };
        let name = self
            .core
            .sessions
            .hash(b"login", login_name::normalise(login).as_bytes());
        let mut pair_bytes = client_key(canon).to_string().into_bytes();
        pair_bytes.push(0);
        pair_bytes.extend_from_slice(&name);
        let pair = self.core.known_logins.key_of(&pair_bytes);
        let now = Instant::now();
        let known = self.core.known_logins.touch(&pair, now, KNOWN_FOR);
        let (delay, counted) = match self.core.per_login.begin(
            name,
            known,
            now,
            plf.max,
            plf.within.get(),
            plf.delay.get(),
        ) {
            per_login::Verdict::Go { delay, counted } => (delay, counted),
            per_login::Verdict::Refuse => {
                self.core.metrics.logins_refused.inc();
                self.refusals.record(canon, "login locked");
                return Err(Refused::LoginLocked);
            }
        };
        match self.begin_check(client, route, proof) {
            Ok(mut a) => {
                a.hold_login(attempt::PerLoginHold {
                    login: name,
                    counted,
                    pair,
                    delay,
                });
                Ok(a)
            }
            Err(e) => {
                self.core.per_login.finish(name, counted, false, now);
                Err(e)
            }
        }
    }
}

/// The per-login budget's name for logins whose name cannot be read (the
/// NUL keeps it apart from every login name).
const UNREADABLE_LOGIN: &str = "\0unreadable";

/// The `rate` of all the proven sessions used from one address together.
pub(crate) fn session_ceiling(cfg: &GuardConfig) -> governor::Quota {
    let n = cfg.sessions.per_address;
    let times = |v: std::num::NonZeroU32| v.saturating_mul(n);
    limits::per_second(times(cfg.rate.per_second), times(cfg.rate.burst))
}
