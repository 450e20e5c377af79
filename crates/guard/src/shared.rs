//! The guard's side of `[cluster]` (issue 13): what several nodes share.
//!
//! The guard stays local and synchronous; a [`Shared`] (crates/cluster,
//! PostgreSQL) adds one reservation per login attempt on top of the local
//! budget, and carries bans both ways. Without one, nothing here runs.
//! The local budget is always taken first, so a cluster that is away or
//! slow ([`Shared::reserve`] answers None) leaves each node bounded by its
//! own `max`: at most `max × nodes` in total, never unbounded.
//!
//! This file is the interface only; the guard's use of it is in
//! `shared_check.rs` and the reservation a login attempt holds in
//! `attempt.rs`, so neither imports the other through here.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

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
