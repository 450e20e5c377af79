//! `rampart cluster status`: the nodes, their last heartbeat, version and
//! config hash, as the database has them.

use serde::Serialize;
use tokio_postgres::Client;

use crate::error_text;

/// One node as `rampart.nodes` has it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    /// The node's name (`[cluster] node`, else its hostname).
    pub name: String,
    /// The Rampart version it runs.
    pub version: String,
    /// The hash of what every node should share (sites, guard, ACME): nodes
    /// that differ show different hashes.
    pub config_hash: String,
    /// The cluster schema version it runs with.
    pub schema_version: i32,
    /// Its process id.
    pub pid: i32,
    /// Seconds since its last heartbeat (the database's clock).
    pub last_seen_secs: f64,
    /// Seconds since it started.
    pub up_secs: f64,
}

/// Every node that ever joined, most recently seen first.
pub async fn nodes(client: &Client) -> Result<Vec<NodeRow>, String> {
    let rows = client
        .query(
            "SELECT name, version, config_hash, schema_version, pid,
                    extract(epoch FROM now() - last_seen)::float8,
                    extract(epoch FROM now() - started)::float8
             FROM rampart.nodes ORDER BY last_seen DESC, name",
            &[],
        )
        .await
        .map_err(|e| error_text(&e))?;
    Ok(rows
        .iter()
        .map(|r| NodeRow {
            name: r.get(0),
            version: r.get(1),
            config_hash: r.get(2),
            schema_version: r.get(3),
            pid: r.get(4),
            last_seen_secs: r.get(5),
            up_secs: r.get(6),
        })
        .collect())
}

/// Active bans in the cluster.
pub async fn active_bans(client: &Client) -> Result<i64, String> {
    client
        .query_one("SELECT count(*) FROM rampart.bans WHERE until > now()", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| error_text(&e))
}
