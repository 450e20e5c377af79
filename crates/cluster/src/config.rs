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
    /// The key (32 random bytes, from `rampart cluster new-key FILE`) that
    /// encrypts the private keys stored in PostgreSQL (the ACME account,
    /// certificates): the same file on every node, never in the database.
    /// Needed when a site uses `tls = "acme"`.
    #[serde(default)]
    pub secret_key_file: Option<std::path::PathBuf>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[derive(Deserialize, Serialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Top {
        cluster: Option<ClusterConfig>,
    }

    fn parse(text: &str) -> Result<Top, rampart_config::ConfigError> {
        rampart_config::from_str::<Top>(Path::new("r.toml"), text)
    }

    #[test]
    fn defaults_names_and_mistakes() {
        let c = parse("[cluster]\npg = \"postgresql://rampart@db.internal/rampart\"\n")
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(c.deadline.get(), std::time::Duration::from_millis(250));
        assert_eq!(c.heartbeat.get(), std::time::Duration::from_secs(5));
        assert!(!c.node_name().is_empty(), "the hostname by default");
        assert!(c.pg_config().is_ok());
        let named = ClusterConfig {
            node: Some("front-1".into()),
            ..c.clone()
        };
        assert_eq!(named.node_name(), "front-1");
        assert!(parse("").unwrap().cluster.is_none(), "absent: one node");
        let err = parse("[cluster]\nnode = \"a\"\n").unwrap_err();
        assert!(err.to_string().contains("pg"), "{err}");
        let err = parse("[cluster]\npg = \"x\"\nnodes = \"a\"\n").unwrap_err();
        assert!(err.to_string().contains("nodes"), "{err}");
        let bad = ClusterConfig {
            pg: "host=/x port=notaport".into(),
            ..c
        };
        assert!(bad.pg_config().unwrap_err().contains("[cluster].pg"));
    }

    #[test]
    fn the_password_is_never_printed() {
        let top = parse("[cluster]\npg = \"postgresql://rampart:s3cret@db/rampart\"\n").unwrap();
        let text = toml::to_string(&top).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
    }
}
