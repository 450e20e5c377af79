//! `rampart plan | passwd | init | dbfilter | audit`.

use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct PlanArgs {}
#[derive(clap::Args)]
pub struct PasswdArgs {}
#[derive(clap::Args)]
pub struct InitArgs {}
#[derive(clap::Args)]
pub struct DbfilterArgs {}
#[derive(clap::Args)]
pub struct AuditArgs {}

pub fn plan(_a: PlanArgs) -> ExitCode {
    super::not_yet("plan")
}
pub fn passwd(_a: PasswdArgs) -> ExitCode {
    super::not_yet("passwd")
}
pub fn init(_a: InitArgs) -> ExitCode {
    super::not_yet("init")
}
pub fn dbfilter(_a: DbfilterArgs) -> ExitCode {
    super::not_yet("dbfilter")
}
pub fn audit(_config: Option<&Path>, _a: AuditArgs) -> ExitCode {
    super::not_yet("audit")
}
