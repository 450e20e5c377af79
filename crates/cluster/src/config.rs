//! The `[cluster]` section of rampart.toml.

use rampart_config::Duration;
use serde::{Deserialize, Serialize};

/// `[cluster]`: several nodes share bans and login budgets through a
/// PostgreSQL database of their own. Absent: one node, state in state_dir.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// libpq URI or key=value string of Rampart's own database
    /// (`postgresql://rampart@db.internal/rampart`); `${VAR}` or
    /// `{ file = "…" }` keep the password out of the file.
    #[serde(serialize_with = "rampart_config::secret::mask_password_in")]
    pub pg: String,
    /// This node's name in `rampart cluster status`; default: the hostname.
    #[serde(default)]
    pub node: Option<String>,
    /// How long a login attempt waits for its cluster-wide reservation
    /// before the local budget decides alone.
    #[serde(default = "default_deadline")]
    pub deadline: Duration,
    /// How often the node says it is alive (and checks the connection).
    #[serde(default = "default_heartbeat")]
    pub heartbeat: Duration,
}

fn default_deadline() -> Duration {
    Duration(std::time::Duration::from_millis(250))
}

fn default_heartbeat() -> Duration {
    Duration(std::time::Duration::from_secs(5))
}

impl ClusterConfig {
    /// The node name: `node`, else the kernel's hostname.
    pub fn node_name(&self) -> String {
        if let Some(n) = self.node.as_deref().filter(|n| !n.is_empty()) {
            return n.to_string();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "rampart".to_string())
    }

    /// The parsed connection settings, with a connect timeout and TCP
    /// keepalives so a vanished server is noticed.
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, String> {
        let mut c: tokio_postgres::Config =
            self.pg.parse().map_err(|e| format!("[cluster].pg: {e}"))?;
        if c.get_connect_timeout().is_none() {
            c.connect_timeout(std::time::Duration::from_secs(5));
        }
        c.keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(10))
            .application_name("rampart");
        Ok(c)
    }
}
