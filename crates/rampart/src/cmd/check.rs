//! `rampart check`: what `serve` would do with a config, without serving.
//! Beyond parsing it loads the certificate files and keys, opens the ban
//! table, reads the admin token, resolves the upstream names and checks
//! that the paths serve writes to or reads from are there and usable.
//!
//! Exit codes: 0 serve would start (warnings may be printed), 1 serve
//! would refuse or fail (an error finding), 2 the file does not parse or
//! the usage is wrong.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rampart_certs::Problem;
use serde::Serialize;

use super::{CmdError, Outcome};
use crate::config::Config;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The file to check (same as the global --config).
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// Print the effective config, every default filled in, as TOML
    /// (secrets masked).
    #[arg(long)]
    print: bool,
    /// Print the findings (and with --print the config) as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Finding {
    /// "error": serve would refuse or fail; "warning": serve would start.
    severity: &'static str,
    key: String,
    message: String,
}

impl From<Problem> for Finding {
    fn from(p: Problem) -> Self {
        Finding {
            severity: if p.fatal { "error" } else { "warning" },
            key: p.key,
            message: p.message,
        }
    }
}

fn problem(key: impl Into<String>, message: impl Into<String>, fatal: bool) -> Problem {
    Problem {
        key: key.into(),
        message: message.into(),
        fatal,
    }
}

pub fn check(config: Option<&Path>, a: CheckArgs) -> Outcome {
    let Some(path) = a.file.as_deref().or(config) else {
        return Err(CmdError::usage(
            "name the file to check: rampart check --config rampart.toml",
        ));
    };
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            if a.json {
                let out = serde_json::json!({
                    "file": path,
                    "ok": false,
                    "findings": [{"severity": "error", "key": e.key, "message": e.to_string()}],
                });
                println!("{out:#}");
                return Ok(ExitCode::from(super::EXIT_USAGE));
            }
            return Err(CmdError::usage(e));
        }
    };
    let findings: Vec<Finding> = findings(&cfg)
        .into_iter()
        .map(|mut p| {
            p.message = cfg.secrets.scrub(&p.message, Some(&p.key));
            Finding::from(p)
        })
        .collect();
    let errors = findings.iter().filter(|f| f.severity == "error").count();
    if a.json {
        let mut out = serde_json::json!({
            "file": path,
            "ok": errors == 0,
            "sites": cfg.site.len(),
            "findings": findings,
        });
        if a.print {
            let mut shown = serde_json::to_value(&cfg).expect("config serialises");
            cfg.secrets.mask_json(&mut shown);
            out["config"] = shown;
        }
        println!("{out:#}");
    } else {
        for f in &findings {
            eprintln!(
                "{}: {}: {}",
                f.severity,
                f.key,
                crate::scrub::text(&f.message)
            );
        }
        if a.print {
            let t = cfg
                .secrets
                .print_toml(&cfg)
                .map_err(|e| CmdError::failure(format!("cannot print the config as TOML: {e}")))?;
            print!("{t}");
        }
        let summary = match (errors, findings.len() - errors) {
            (0, 0) => format!("ok ({} site(s))", cfg.site.len()),
            (0, w) => format!("ok ({} site(s)), {w} warning(s)", cfg.site.len()),
            (e, w) => {
                format!("{e} error(s), {w} warning(s): `rampart serve` would not run with this")
            }
        };
        // With --print, stdout is the TOML alone.
        if a.print {
            eprintln!("{}: {summary}", path.display());
        } else {
            println!("{}: {summary}", path.display());
        }
    }
    Ok(if errors > 0 {
        ExitCode::from(super::EXIT_FINDINGS)
    } else {
        ExitCode::SUCCESS
    })
}

/// Everything serve would refuse or trip over, in config order.
fn findings(cfg: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    state_dir(&cfg.state_dir, &mut out);
    if cfg.state_dir.is_dir()
        && let Err(e) = rampart_guard::Guard::open(&cfg.guard, &cfg.state_dir)
    {
        out.push(problem("state_dir", e.to_string(), true));
    }
    out.extend(rampart_certs::preflight(cfg.acme.as_ref(), &cfg.site_tls()));
    out.extend(rampart_edge::preflight::preflight(
        &super::serve::edge_config(cfg),
    ));
    if let Some(log) = &cfg.guard.odoo_log
        && let Err(e) = std::fs::File::open(log)
    {
        out.push(problem(
            "guard.odoo_log",
            format!(
                "{}: {e}: login failures in Odoo's log will not be counted",
                log.display()
            ),
            false,
        ));
    }
    if let Some(b) = &cfg.backup {
        for (i, t) in b.targets.iter().enumerate() {
            for (field, p) in [("key", &t.key), ("known_hosts", &t.known_hosts)] {
                if let Some(p) = p
                    && let Err(e) = std::fs::File::open(p)
                {
                    out.push(problem(
                        format!("backup.target[{i}].{field}"),
                        format!("{}: {e}", p.display()),
                        true,
                    ));
                }
            }
        }
        if b.schedule.is_some() && !b.data_dir.join("filestore").is_dir() {
            out.push(problem(
                "backup.data_dir",
                format!("{} has no filestore directory", b.data_dir.display()),
                false,
            ));
        }
    }
    out
}

/// Serve creates the state dir when missing and writes the CA, ban table
/// and certificates into it.
fn state_dir(dir: &Path, out: &mut Vec<Problem>) {
    let target = if dir.exists() {
        if !dir.is_dir() {
            out.push(problem(
                "state_dir",
                format!("{} is not a directory", dir.display()),
                true,
            ));
            return;
        }
        dir.to_path_buf()
    } else {
        // The nearest existing ancestor must take the new directories.
        let mut p = dir.parent();
        while let Some(q) = p {
            if q.as_os_str().is_empty() {
                p = Some(Path::new("."));
                break;
            }
            if q.exists() {
                break;
            }
            p = q.parent();
        }
        p.unwrap_or(Path::new("/")).to_path_buf()
    };
    if let Err(e) = rampart_edge::preflight::writable_dir(&target) {
        out.push(problem("state_dir", e, true));
    }
}
