//! `rampart bans`, `rampart fail2ban`.

use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct BansArgs {}

#[derive(clap::Args)]
pub struct Fail2banArgs {}

pub fn bans(_config: Option<&Path>, _a: BansArgs) -> ExitCode {
    super::not_yet("bans")
}

pub fn fail2ban(_config: Option<&Path>, _a: Fail2banArgs) -> ExitCode {
    super::not_yet("fail2ban")
}
