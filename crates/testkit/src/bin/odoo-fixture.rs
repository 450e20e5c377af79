//! Runs the Odoo-like test upstream on fixed ports, for manual tries and benchmarks:
//! `odoo-fixture --http 127.0.0.1:8069 --ws 127.0.0.1:8072 [--filestore DIR] [--log FILE] [--db NAME] [--password PW] [--totp-secret TEXT] [--api-key KEY]`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use rampart_testkit::{FixtureOptions, OdooFixture};

const USAGE: &str = "usage: odoo-fixture --http ADDR:PORT --ws ADDR:PORT [--filestore DIR] [--log FILE] [--db NAME] [--password PW] [--totp-secret TEXT] [--api-key KEY]";

fn parse_args() -> Result<FixtureOptions, String> {
    let mut opts = FixtureOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_string());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let addr = |v: &str| {
            v.parse::<SocketAddr>()
                .map_err(|e| format!("{flag} {v}: {e} (expected e.g. 127.0.0.1:8069)"))
        };
        match flag.as_str() {
            "--http" => opts.http_bind = Some(addr(&value)?),
            "--ws" => opts.ws_bind = Some(addr(&value)?),
            "--filestore" => opts.filestore_dir = Some(PathBuf::from(value)),
            "--log" => opts.log_file = Some(PathBuf::from(value)),
            "--db" => opts.db = value,
            "--password" => opts.password = value,
            // The TOTP key's raw bytes (an authenticator takes their base32).
            "--totp-secret" => opts.totp_secret = Some(value.into_bytes()),
            "--api-key" => opts.api_key = value,
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    Ok(opts)
}

#[tokio::main]
async fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let fixture = OdooFixture::start_with(opts).await;
    println!(
        "odoo fixture: http on {}, websocket on {}, filestore {}",
        fixture.http_addr,
        fixture.ws_addr,
        fixture.filestore_dir().display()
    );
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
