//! `rampart certs`.

use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct CertsArgs {}

pub fn run(_config: Option<&Path>, _a: CertsArgs) -> ExitCode {
    super::not_yet("certs")
}
