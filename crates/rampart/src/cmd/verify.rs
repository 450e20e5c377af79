//! `rampart verify`: the live checklist against a URL, from outside.
//! The checks live in the `rampart-verify` crate; this is wiring and
//! exit codes (0 no FAIL, 1 any FAIL, 2 bad usage, 3 target unreachable).

use std::path::PathBuf;
use std::process::ExitCode;

use rampart_verify::{Options, RunError, Status};

use super::{CmdError, EXIT_FINDINGS, Outcome};

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The site, e.g. https://erp.example.com or https://erp.example.com:8443
    /// (http://HOST:PORT checks an unprotected server: every TLS check fails).
    #[arg(value_name = "URL")]
    url: String,
    /// Connect to this address instead of resolving the name; SNI and Host
    /// stay the URL's (HOST:ADDR or HOST:ADDR:PORT, like curl).
    #[arg(long, value_name = "HOST:ADDR")]
    resolve: Option<String>,
    /// Trust exactly the CA certificates in this PEM file instead of the
    /// system roots (e.g. <state_dir>/ca/root.pem for `tls = "local"`).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The plain-HTTP port the redirect check uses (default 80).
    #[arg(long, value_name = "N")]
    http_port: Option<u16>,
    /// Print a JSON array of {check, status, detail, fix}.
    #[arg(long)]
    json: bool,
}

pub fn verify(a: VerifyArgs) -> Outcome {
    let opts = Options {
        url: a.url,
        resolve: a.resolve,
        ca: a.ca,
        http_port: a.http_port,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CmdError::failure(format!("cannot start the async runtime: {e}")))?;
    let checks = runtime
        .block_on(rampart_verify::run(&opts))
        .map_err(|e| match e {
            RunError::Usage(m) => CmdError::usage(m),
            RunError::Unreachable(m) => CmdError::failure(m),
        })?;
    if a.json {
        print!("{}", rampart_verify::render_json(&checks));
    } else {
        print!("{}", rampart_verify::render_table(&checks));
    }
    Ok(if checks.iter().any(|c| c.status == Status::Fail) {
        ExitCode::from(EXIT_FINDINGS)
    } else {
        ExitCode::SUCCESS
    })
}
