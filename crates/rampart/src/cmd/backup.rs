//! `rampart backup | backups | restore | prune`.

use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct BackupArgs {}
#[derive(clap::Args)]
pub struct BackupsArgs {}
#[derive(clap::Args)]
pub struct RestoreArgs {}
#[derive(clap::Args)]
pub struct PruneArgs {}

pub fn backup(_config: Option<&Path>, _a: BackupArgs) -> ExitCode {
    super::not_yet("backup")
}
pub fn backups(_config: Option<&Path>, _a: BackupsArgs) -> ExitCode {
    super::not_yet("backups")
}
pub fn restore(_config: Option<&Path>, _a: RestoreArgs) -> ExitCode {
    super::not_yet("restore")
}
pub fn prune(_config: Option<&Path>, _a: PruneArgs) -> ExitCode {
    super::not_yet("prune")
}
