//! The live checklist (`rampart verify`): what a browser, and an attacker,
//! see of an Odoo site from outside.
//!
//! `audit` reads files on the server; this crate only talks to the site
//! over the network, so it catches what the files cannot show: a front
//! that forgets its headers on some paths, a proxy that normalises
//! `/web/%64atabase/manager` differently from its block rule, a
//! certificate about to expire, TLS 1.0 still offered. Each check is one
//! line: PASS/FAIL/WARN, what was seen, and why it matters with the fix.
//!
//! HTTP/1.1 checks write their requests byte for byte over TCP or TLS
//! (so encoded paths reach the server unnormalised); the HTTP/2 check
//! uses hyper; TLS 1.0/1.1 are probed with a hand-built ClientHello
//! because rustls cannot speak them.

#![warn(missing_docs)]

mod checks;
mod http1;
mod legacy_tls;
mod report;
mod target;
mod tls;

use std::path::PathBuf;

pub use report::{Check, Status, render_json, render_table};

/// What `rampart verify` was asked to check.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `https://HOST[:PORT]` (or `http://` to see what an unprotected
    /// server gives away; every TLS check then fails).
    pub url: String,
    /// `HOST:ADDR` or `HOST:ADDR:PORT`: connect there, keep SNI and Host
    /// from the URL.
    pub resolve: Option<String>,
    /// Trust exactly the CAs in this PEM file instead of the system roots.
    pub ca: Option<PathBuf>,
    /// The plain-HTTP port for the redirect check (default 80).
    pub http_port: Option<u16>,
}

/// Why no checklist could be produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// The command line is wrong (URL, --resolve, --ca file).
    Usage(String),
    /// The target could not be resolved or connected to.
    Unreachable(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Usage(m) | RunError::Unreachable(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for RunError {}

/// Runs every check against the target, in a fixed order.
pub async fn run(opts: &Options) -> Result<Vec<Check>, RunError> {
    let target = target::Target::from_options(opts).await?;
    let tls = tls::TlsSetup::new(opts.ca.as_deref()).map_err(RunError::Usage)?;
    target.ensure_reachable().await?;
    let site = checks::Site::new(target, tls);
    Ok(site.run_all().await)
}
