//! `rampart verify`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct VerifyArgs {}

pub fn verify(_a: VerifyArgs) -> ExitCode {
    super::not_yet("verify")
}
