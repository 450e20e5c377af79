//! One file per command family. Exit codes scripts can rely on:
//! 0 success, 1 the command ran and found a problem (a failed check,
//! a high-severity finding), 2 bad usage or config, 3 a runtime failure.

pub mod admin;
pub mod backup;
pub mod cache;
pub mod certs;
pub mod check;
pub mod docs;
pub mod guard;
pub mod odoo;
pub mod serve;
pub mod verify;

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;

pub const EXIT_FINDINGS: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_FAILURE: u8 = 3;

/// Loads the config file, or the embedded defaults without one; prints the
/// error (file, line, key) and gives exit code 2 when it is bad.
pub fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    match path {
        None => Ok(Config::default()),
        Some(p) => Config::load(p).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_USAGE)
        }),
    }
}
