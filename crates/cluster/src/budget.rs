//! Cluster-wide login budgets: the guard's [`Shared`] over
//! `rampart.reserve` / `rampart.finish`.
//!
//! Login names are attacker-controlled: they reach PostgreSQL only as an
//! HMAC under the cluster's key (never in clear, never in SQL text), and
//! the (address, login) pairs a success makes known likewise.

use std::time::{Duration, Instant, SystemTime};

use rampart_guard::{BoxFut, Finish, Reserve, Shared, SharedBan, SharedVerdict};
use ring::hmac;

use crate::bans::Op;
use crate::{Cluster, LEASE, error_text};

/// How long a success makes an address known for a login (as the guard).
const KNOWN_FOR: Duration = Duration::from_secs(90 * 24 * 3600);
/// Giving a reservation back is off the request path: a longer deadline.
const FINISH_DEADLINE: Duration = Duration::from_secs(5);

fn keyed(key: &hmac::Key, domain: &str, parts: &[&str]) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(domain.as_bytes());
    for p in parts {
        ctx.update(b"\0");
        ctx.update(p.as_bytes());
    }
    ctx.sign()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn int(n: u32) -> i32 {
    n.min(i32::MAX as u32) as i32
}

impl Shared for Cluster {
    fn reserve(&self, r: Reserve) -> BoxFut<'_, Option<SharedVerdict>> {
        Box::pin(async move {
            let Some(link) = self.link() else {
                self.fallback("PostgreSQL unreachable");
                return None;
            };
            let login = r
                .login
                .as_ref()
                .map(|l| keyed(&link.key, "login", &[&l.login]));
            let pair = r
                .login
                .as_ref()
                .map(|l| keyed(&link.key, "pair", &[&r.addr, &l.login]));
            let (lmax, lwithin) = r
                .login
                .as_ref()
                .map(|l| (int(l.max), l.within.as_secs_f64()))
                .unwrap_or((0, 0.0));
            let started = Instant::now();
            let deadline = self.cfg.deadline.get();
            match tokio::time::timeout(
                deadline,
                link.client.query_one(
                    &link.reserve,
                    &[
                        &r.addr,
                        &int(r.addr_max),
                        &r.addr_within.as_secs_f64(),
                        &login,
                        &pair,
                        &lmax,
                        &lwithin,
                        &LEASE.as_secs_f64(),
                    ],
                ),
            )
            .await
            {
                Ok(Ok(row)) => {
                    self.metrics
                        .reserve_seconds
                        .observe(started.elapsed().as_secs_f64());
                    let verdict: String = row.get(0);
                    let af: i32 = row.get(1);
                    let lf: i32 = row.get(2);
                    let counted: bool = row.get(3);
                    Some(match verdict.as_str() {
                        "go" => SharedVerdict::Go {
                            login_failures: lf.max(0) as u32,
                            login_counted: counted,
                        },
                        other => SharedVerdict::Refused {
                            addr_failures: af.max(0) as u32,
                            login_locked: other == "login",
                        },
                    })
                }
                Ok(Err(e)) => {
                    self.fallback(&error_text(&e));
                    None
                }
                Err(_) => {
                    self.fallback(&format!(
                        "no answer within the {:?} deadline",
                        self.cfg.deadline.get()
                    ));
                    None
                }
            }
        })
    }

    fn finish(&self, f: Finish) -> BoxFut<'_, Option<u32>> {
        Box::pin(async move {
            // The reservation's lease frees it if this cannot be written.
            let link = self.link()?;
            let login = f
                .login
                .as_ref()
                .map(|(l, _)| keyed(&link.key, "login", &[l]));
            let pair = f
                .login
                .as_ref()
                .filter(|_| f.succeeded)
                .map(|(l, _)| keyed(&link.key, "pair", &[&f.addr, l]));
            let counted = f.login.as_ref().is_some_and(|(_, c)| *c);
            match tokio::time::timeout(
                FINISH_DEADLINE,
                link.client.query_one(
                    &link.finish,
                    &[
                        &f.addr,
                        &f.addr_within.as_secs_f64(),
                        &login,
                        &counted,
                        &f.login_within.as_secs_f64(),
                        &f.failed,
                        &pair,
                        &f.succeeded,
                        &KNOWN_FOR.as_secs_f64(),
                    ],
                ),
            )
            .await
            {
                Ok(Ok(row)) => Some(row.get::<_, i32>(0).max(0) as u32),
                Ok(Err(e)) => {
                    tracing::warn!(target: "rampart::cluster", "cannot give a login reservation back: {}", error_text(&e));
                    None
                }
                Err(_) => None,
            }
        })
    }

    fn ban(&self, b: SharedBan) {
        self.queue(Op::Ban(b));
    }

    fn unban(&self, net: &str, at: SystemTime) {
        self.queue(Op::Unban {
            net: net.to_string(),
            at,
        });
    }
}
