//! One file per command family. Exit codes scripts can rely on:
//! 0 success, 1 the command ran and found a problem (a failed check,
//! a high-severity finding), 2 bad usage or config, 3 a runtime failure.

pub mod admin;
pub mod backup;
mod backup_section;
mod backup_status;
pub mod cache;
pub mod certs;
pub mod check;
pub mod cluster;
pub mod docs;
pub mod guard;
mod logging;
pub mod odoo;
pub mod serve;
pub mod verify;
pub mod wal;

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;

pub const EXIT_FINDINGS: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_FAILURE: u8 = 3;

/// Why a command stopped short: the exit code and the message `main`
/// prints as `error: {msg}` — the one error path of the CLI. A command that
/// ran and has its own answer (findings, JSON on stdout) returns
/// `Ok(ExitCode)` instead.
#[derive(Debug)]
pub struct CmdError {
    pub code: u8,
    pub msg: String,
}

impl CmdError {
    /// Bad usage or config: exit code 2.
    pub fn usage(msg: impl std::fmt::Display) -> Self {
        CmdError {
            code: EXIT_USAGE,
            msg: msg.to_string(),
        }
    }

    /// The command could not do its work: exit code 3.
    pub fn failure(msg: impl std::fmt::Display) -> Self {
        CmdError {
            code: EXIT_FAILURE,
            msg: msg.to_string(),
        }
    }

    /// The command ran and found a problem: exit code 1.
    pub fn findings(msg: impl std::fmt::Display) -> Self {
        CmdError {
            code: EXIT_FINDINGS,
            msg: msg.to_string(),
        }
    }
}

/// What every command returns.
pub type Outcome = Result<ExitCode, CmdError>;

/// Loads the config file, or the embedded defaults without one; a bad file
/// (its error names the file, line and key) is exit code 2.
pub fn load_config(path: Option<&Path>) -> Result<Config, CmdError> {
    match path {
        None => Ok(Config::default()),
        Some(p) => Config::load(p).map_err(CmdError::usage),
    }
}
