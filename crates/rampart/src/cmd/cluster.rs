//! `rampart cluster init | status | forget`: the PostgreSQL side of
//! `[cluster]`. Exit codes: 0 all is well; 1 status found a problem (a
//! node silent for longer than `--stale`, nodes whose configs differ);
//! 2 no `[cluster]` section; 3 PostgreSQL unreachable or its schema
//! missing or too old.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use rampart_cluster::{ClusterConfig, schema, status};

use super::{CmdError, Outcome};

#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    action: ClusterAction,
}

#[derive(clap::Subcommand)]
enum ClusterAction {
    /// Create or migrate Rampart's schema in `[cluster].pg` (safe to re-run).
    Init,
    /// The nodes, their last heartbeat, version and config hash.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// A node silent for longer than this is reported (and exit code 1).
        #[arg(long, default_value = "30s", value_name = "DURATION")]
        stale: rampart_config::Duration,
    },
    /// Remove a node that left the cluster for good from the status list.
    Forget {
        /// The node's name, as `rampart cluster status` shows it.
        node: String,
    },
    /// Write a new random key for `[cluster] secret_key_file` (mode 0600;
    /// an existing file is never replaced). Copy the same file to every node.
    NewKey {
        /// Where to write it.
        file: std::path::PathBuf,
    },
}

pub fn run(config: Option<&Path>, a: ClusterArgs) -> Outcome {
    if let ClusterAction::NewKey { file } = &a.action {
        return new_key(file);
    }
    let cfg = super::load_config(config)?;
    let Some(cluster) = cfg.cluster.clone() else {
        return Err(CmdError::usage(
            "no [cluster] section in the config: add one with at least pg = \"postgresql://…\"",
        ));
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CmdError::failure)?;
    rt.block_on(async move {
        match a.action {
            ClusterAction::Init => init(&cluster).await,
            ClusterAction::Status { json, stale } => status(&cluster, json, stale.get()).await,
            ClusterAction::Forget { node } => forget(&cluster, &node).await,
            ClusterAction::NewKey { .. } => unreachable!("handled above"),
        }
    })
}

async fn connect(cluster: &ClusterConfig) -> Result<rampart_cluster::Client, CmdError> {
    rampart_cluster::connect(cluster)
        .await
        .map_err(|e| CmdError::failure(format!("cannot reach the cluster's PostgreSQL: {e}")))
}

async fn init(cluster: &ClusterConfig) -> Outcome {
    let mut client = connect(cluster).await?;
    let (before, now) = schema::init(&mut client)
        .await
        .map_err(|e| CmdError::failure(rampart_cluster::error_text(&e)))?;
    if before == now {
        println!("cluster schema already at version {now}: nothing to do");
    } else {
        println!("cluster schema at version {now} (was {before})");
    }
    Ok(ExitCode::SUCCESS)
}

async fn usable_client(cluster: &ClusterConfig) -> Result<rampart_cluster::Client, CmdError> {
    let client = connect(cluster).await?;
    let v = schema::version(&client)
        .await
        .map_err(|e| CmdError::failure(rampart_cluster::error_text(&e)))?;
    schema::usable(v).map_err(CmdError::failure)?;
    Ok(client)
}

async fn status(cluster: &ClusterConfig, json: bool, stale: Duration) -> Outcome {
    let client = usable_client(cluster).await?;
    let nodes = status::nodes(&client).await.map_err(CmdError::failure)?;
    let bans = status::active_bans(&client)
        .await
        .map_err(CmdError::failure)?;
    let stale_s = stale.as_secs_f64();
    let silent: Vec<&str> = nodes
        .iter()
        .filter(|n| n.last_seen_secs > stale_s)
        .map(|n| n.name.as_str())
        .collect();
    let mut hashes: Vec<&str> = nodes
        .iter()
        .filter(|n| n.last_seen_secs <= stale_s)
        .map(|n| n.config_hash.as_str())
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    let differ = hashes.len() > 1;
    if json {
        let v = serde_json::json!({
            "schema_version": schema::VERSION,
            "bans_active": bans,
            "nodes": nodes,
            "stale": silent,
            "configs_differ": differ,
        });
        println!("{v:#}");
    } else {
        println!(
            "{:<20} {:<10} {:>14} {:<17} {:>8}",
            "NODE", "VERSION", "LAST HEARTBEAT", "CONFIG", "PID"
        );
        for n in &nodes {
            let version = n.version.split(' ').next().unwrap_or(&n.version);
            println!(
                "{:<20} {:<10} {:>14} {:<17} {:>8}",
                n.name,
                version,
                format!("{:.0}s ago", n.last_seen_secs),
                n.config_hash,
                n.pid
            );
        }
        println!("{bans} active ban(s) in the cluster");
        for s in &silent {
            eprintln!(
                "warning: node {s} has not been seen for more than {stale:?} (stopped? `rampart cluster forget {s}` if it left for good)"
            );
        }
        if differ {
            eprintln!(
                "warning: the live nodes' configs differ ({}): sites, [guard] and [acme] should be the same on every node",
                hashes.join(", ")
            );
        }
    }
    if nodes.is_empty() || !silent.is_empty() || differ {
        return Ok(ExitCode::from(super::EXIT_FINDINGS));
    }
    Ok(ExitCode::SUCCESS)
}

async fn forget(cluster: &ClusterConfig, node: &str) -> Outcome {
    let client = usable_client(cluster).await?;
    let n = client
        .execute("DELETE FROM rampart.nodes WHERE name = $1", &[&node])
        .await
        .map_err(|e| CmdError::failure(rampart_cluster::error_text(&e)))?;
    if n == 0 {
        return Err(CmdError::findings(format!("no node named {node:?}")));
    }
    println!("forgot node {node}");
    Ok(ExitCode::SUCCESS)
}

/// `rampart cluster new-key FILE`: 32 random bytes as hex, 0600, written
/// whole or not at all; refuses to replace a key (the stored private
/// keys would no longer open).
fn new_key(file: &Path) -> Outcome {
    if file.exists() {
        return Err(CmdError::usage(format!(
            "{} exists: not replacing a key (the keys stored with it would no longer open)",
            file.display()
        )));
    }
    let key = rampart_cluster::sealed::SecretKey::generate();
    rampart_config::atomic::write_atomic(file, key.as_bytes(), 0o600)
        .map_err(|e| CmdError::failure(format!("{}: {e}", file.display())))?;
    println!(
        "wrote a new key to {}: copy it to every node and name it in [cluster] secret_key_file",
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}
