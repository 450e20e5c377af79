//! Bans both ways: this node's decisions queued and written to
//! `rampart.bans`, the others' read from it.
//!
//! What an attacker (or bad luck) could try, and why it does not work:
//! - a stale or replayed NOTIFY: the payload is only the name of a row;
//!   the row is read again, so the node applies what is true now;
//! - a ban decided while this node was cut off: it waits in the queue and
//!   is written first thing at reconnect, stamped with the time it was
//!   decided, so it never overwrites a newer decision taken elsewhere;
//! - a ban lifted elsewhere while this node was cut off: the node writes
//!   only its own queued decisions, never its whole table, then reloads,
//!   so a lifted ban is not resurrected;
//! - odd strings: addresses are parsed by the guard before and after
//!   the database, and every value is a bind parameter.

use std::time::SystemTime;

use rampart_guard::{Guard, SharedBan};
use tokio_postgres::Client;

use crate::{Cluster, MAX_PENDING, error_text};

/// A change decided here, waiting to be written.
pub enum Op {
    Ban(SharedBan),
    Unban { net: String, at: SystemTime },
}

impl Cluster {
    pub(crate) fn queue(&self, op: Op) {
        let mut q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= MAX_PENDING {
            q.pop_front();
            tracing::warn!(target: "rampart::cluster", "too many ban changes waiting for PostgreSQL: the oldest was dropped");
        }
        q.push_back(op);
        self.metrics.bans_pending.set(q.len() as i64);
        drop(q);
        self.wake.notify_one();
    }

    /// Writes the queued changes in order; one that fails stays first.
    pub(crate) async fn write_pending(&self, client: &Client) -> Result<usize, String> {
        let mut n = 0;
        loop {
            let op = {
                let mut q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                match q.pop_front() {
                    Some(op) => op,
                    None => return Ok(n),
                }
            };
            if let Err(e) = self.write(client, &op).await {
                let mut q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                q.push_front(op);
                return Err(e);
            }
            n += 1;
            let q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            self.metrics.bans_pending.set(q.len() as i64);
        }
    }

    async fn write(&self, client: &Client, op: &Op) -> Result<(), String> {
        let r = match op {
            // An administrator's ban replaces an older decision; an
            // automatic one only lengthens what is there.
            Op::Ban(b) => client
                .execute(
                    "INSERT INTO rampart.bans AS b (net, until, reason, count, changed, by_node)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (net) DO UPDATE SET until = EXCLUDED.until,
                            reason = EXCLUDED.reason,
                            count = CASE WHEN b.until <= now() THEN b.count + 1
                                         ELSE greatest(b.count, EXCLUDED.count) END,
                            changed = EXCLUDED.changed, by_node = EXCLUDED.by_node
                         WHERE ($7 AND b.changed <= EXCLUDED.changed)
                            OR (NOT $7 AND b.until < EXCLUDED.until)",
                    &[
                        &b.net,
                        &b.until,
                        &b.reason,
                        &(b.count.min(i32::MAX as u32) as i32),
                        &b.at,
                        &self.node,
                        &b.admin,
                    ],
                )
                .await,
            Op::Unban { net, at } => {
                // Lifting a ban forgets the address's failures, here as on
                // one node (else its next attempt would ban it again).
                client
                    .execute(
                        "DELETE FROM rampart.budgets WHERE kind = 'a' AND key = $1",
                        &[net],
                    )
                    .await
                    .map_err(|e| error_text(&e))?;
                client
                    .execute(
                        "UPDATE rampart.bans SET until = least(until, $2), count = 0,
                            changed = $2, by_node = $3
                         WHERE net = $1 AND changed <= $2",
                        &[net, at, &self.node],
                    )
                    .await
            }
        };
        r.map(|_| ()).map_err(|e| error_text(&e))
    }

    /// A NOTIFY named `net`: read its row and apply what it says now.
    pub(crate) async fn apply_one(
        &self,
        guard: &Guard,
        client: &Client,
        net: &str,
    ) -> Result<(), String> {
        let row = client
            .query_opt(
                "SELECT until, reason, count, until > now() FROM rampart.bans WHERE net = $1",
                &[&net],
            )
            .await
            .map_err(|e| error_text(&e))?;
        let Some(row) = row else { return Ok(()) };
        self.apply_row(guard, net, row.get(0), row.get(1), row.get(2), row.get(3));
        Ok(())
    }

    fn apply_row(
        &self,
        guard: &Guard,
        net: &str,
        until: SystemTime,
        reason: String,
        count: i32,
        active: bool,
    ) {
        // PostgreSQL's clock says whether it is over; an ended ban is
        // still stored (its count makes the next ban longer).
        let until = if active {
            until
        } else {
            until.min(SystemTime::now())
        };
        let r = guard.apply_cluster_ban(net, until, &reason, count.max(0) as u32);
        match r {
            Ok(()) => {
                self.metrics.bans_received.inc();
            }
            Err(e) => {
                tracing::warn!(target: "rampart::cluster", "ignoring a ban row the guard cannot read ({net:?}): {e}")
            }
        }
    }

    /// The whole table: applies every row, then writes the bans active
    /// here that the table does not know (bans from before this node
    /// joined). Returns the number of active bans.
    pub(crate) async fn reload(&self, guard: &Guard, client: &Client) -> Result<usize, String> {
        let rows = client
            .query(
                "SELECT net, until, reason, count, until > now() FROM rampart.bans",
                &[],
            )
            .await
            .map_err(|e| error_text(&e))?;
        let mut known = std::collections::HashSet::new();
        let mut active = 0;
        for row in rows {
            let net: String = row.get(0);
            let is_active: bool = row.get(4);
            active += usize::from(is_active);
            self.apply_row(guard, &net, row.get(1), row.get(2), row.get(3), is_active);
            known.insert(net);
        }
        let now = SystemTime::now();
        for (net, until, reason, count) in guard.active_bans() {
            if !known.contains(&net) {
                self.write(
                    client,
                    &Op::Ban(SharedBan {
                        net,
                        until,
                        reason,
                        count,
                        admin: false,
                        at: now,
                    }),
                )
                .await?;
                active += 1;
            }
        }
        Ok(active)
    }
}
