//! `rampart certs [--json]` lists the certificates stored for the config's
//! sites (read-only: it never creates or issues anything);
//! `rampart certs renew [--force] [HOST]` asks the running server, through
//! its admin listener, to renew now.

use std::path::Path;
use std::process::ExitCode;

use rampart_certs::{CertInfo, CertStore};

use super::{CmdError, EXIT_FAILURE, EXIT_FINDINGS, EXIT_USAGE, Outcome, load_config};
use crate::config::Config;

#[derive(clap::Args)]
pub struct CertsArgs {
    /// One JSON object per certificate list, for scripts.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    action: Option<CertsAction>,
}

#[derive(clap::Subcommand)]
enum CertsAction {
    /// Ask the running server to renew now (ACME certificates are renewed
    /// in the background; local ones are re-issued, files re-read).
    Renew {
        /// Renew even if the certificate is not due yet.
        #[arg(long)]
        force: bool,
        /// Only the site serving this host name (default: every site).
        host: Option<String>,
    },
}

pub fn run(config: Option<&Path>, a: CertsArgs) -> Outcome {
    let config = load_config(config)?;
    match a.action {
        None => Ok(list(&config, a.json)),
        Some(CertsAction::Renew { force, host }) => renew(&config, force, host, a.json),
    }
}

fn list(config: &Config, json: bool) -> ExitCode {
    let certs = CertStore::inspect(&config.state_dir, config.acme.as_ref(), &config.site_tls());
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&certs).unwrap_or_default()
        );
    } else {
        print_table(&certs);
        let root = config.state_dir.join("ca").join("root.pem");
        if root.exists() {
            println!(
                "\nlocal CA (add to trust stores to trust \"local\" certificates): {}",
                root.display()
            );
        }
    }
    let expired_or_missing = certs.iter().any(|c| c.problem.is_some() || c.days_left < 0);
    if expired_or_missing {
        ExitCode::from(EXIT_FINDINGS)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_table(certs: &[CertInfo]) {
    println!(
        "{:<5} {:<7} {:<32} {:<20} {:>9}  ISSUER",
        "SITE", "SOURCE", "NAMES", "NOT AFTER (UTC)", "DAYS LEFT"
    );
    for c in certs {
        let names = if c.names.is_empty() {
            c.hosts.join(",")
        } else {
            c.names.join(",")
        };
        match &c.problem {
            Some(p) => println!("{:<5} {:<7} {:<32} {p}", c.site, c.source, names),
            None => println!(
                "{:<5} {:<7} {:<32} {:<20} {:>9}  {}",
                c.site,
                c.source,
                names,
                utc(c.not_after),
                c.days_left,
                c.issuer
            ),
        }
    }
}

/// `2026-11-24 01:02` from unix seconds.
fn utc(secs: i64) -> String {
    rampart_config::time::utc_unix(secs, "%Y-%m-%d %H:%M")
}

fn renew(config: &Config, force: bool, host: Option<String>, json: bool) -> Outcome {
    let body = serde_json::json!({ "host": host, "force": force }).to_string();
    let (status, body) = super::admin::call(config, "POST", "/v1/certs/renew", Some(body))
        .map_err(CmdError::failure)?;
    if json {
        println!("{body}");
    } else {
        describe_renewal(&body);
    }
    Ok(match status {
        200 | 202 => ExitCode::SUCCESS,
        404 | 400 => ExitCode::from(EXIT_USAGE),
        _ => ExitCode::from(EXIT_FAILURE),
    })
}

fn describe_renewal(body: &str) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        println!("{body}");
        return;
    };
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        eprintln!("error: {}", crate::scrub::text(e));
    }
    let hosts = |x: &serde_json::Value| {
        x["hosts"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter_map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    for d in v["done"].as_array().into_iter().flatten() {
        let what = if d["renewed"].as_bool() == Some(true) {
            "renewed"
        } else {
            "still valid, kept (use --force)"
        };
        println!("site {} ({}): {what}", d["site"], hosts(d));
    }
    for q in v["queued"].as_array().into_iter().flatten() {
        println!(
            "site {} ({}): ACME renewal started in the background; see the server log, then `rampart certs`",
            q["site"],
            hosts(q)
        );
    }
    for e in v["errors"].as_array().into_iter().flatten() {
        eprintln!(
            "site {}: {}",
            e["site"],
            crate::scrub::text(e["error"].as_str().unwrap_or(""))
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00");
        assert_eq!(super::utc(1_795_479_117), "2026-11-24 00:11");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00");
    }
}
