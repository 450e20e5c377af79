//! `rampart cache stats|purge`: the running server's edge cache, through
//! its admin listener (the cache lives in the server's memory).

use std::path::Path;
use std::process::ExitCode;

use super::{CmdError, Outcome};

#[derive(clap::Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    action: CacheAction,
}

#[derive(clap::Subcommand)]
enum CacheAction {
    /// Entries, bytes, hits, misses, evictions and Odoo seconds saved, per site.
    Stats {
        /// The server's JSON as is.
        #[arg(long)]
        json: bool,
    },
    /// Drop entries: all of them, one site's, or those under a path prefix.
    Purge {
        /// Only this site (its first host name).
        #[arg(long)]
        site: Option<String>,
        /// Only targets starting with this, e.g. /web/assets/
        prefix: Option<String>,
        /// The server's JSON as is.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: Option<&Path>, a: CacheArgs) -> Outcome {
    let cfg = super::load_config(config)?;
    let (method, path, body, json) = match &a.action {
        CacheAction::Stats { json } => ("GET", "/v1/cache", None, *json),
        CacheAction::Purge { site, prefix, json } => (
            "POST",
            "/v1/cache/purge",
            Some(serde_json::json!({ "site": site, "prefix": prefix }).to_string()),
            *json,
        ),
    };
    let (status, answer) =
        super::admin::call(&cfg, method, path, body).map_err(CmdError::failure)?;
    let value: Option<serde_json::Value> = serde_json::from_str(&answer).ok();
    if !(200..300).contains(&status) {
        let message = value
            .as_ref()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| {
                format!("the server on listen.admin answered {status} to {method} {path}")
            });
        return Err(if (400..500).contains(&status) {
            CmdError::usage(message)
        } else {
            CmdError::failure(message)
        });
    }
    if json {
        println!("{}", answer.trim());
        return Ok(ExitCode::SUCCESS);
    }
    let Some(v) = value else {
        return Err(CmdError::failure(format!(
            "the server's answer to {method} {path} is not JSON"
        )));
    };
    match a.action {
        CacheAction::Stats { .. } => print!("{}", stats_table(&v)),
        CacheAction::Purge { .. } => println!("purged {} entries", v["purged"]),
    }
    Ok(ExitCode::SUCCESS)
}

fn stats_table(v: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<32} {:>8} {:>12} {:>10} {:>10} {:>10} {:>12}\n",
        "SITE", "ENTRIES", "BYTES", "HITS", "MISSES", "EVICTED", "ODOO_S_SAVED"
    );
    for s in v["sites"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<32} {:>8} {:>12} {:>10} {:>10} {:>10} {:>12.3}\n",
            s["site"].as_str().unwrap_or("-"),
            s["entries"],
            s["bytes"],
            s["hits"],
            s["misses"],
            s["evictions"],
            s["odoo_seconds_saved"].as_f64().unwrap_or(0.0),
        ));
    }
    out
}
