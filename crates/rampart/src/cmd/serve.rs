//! `rampart serve`, `rampart check`, `rampart reload`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ServeArgs {}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The file to check (same as the global --config).
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ReloadArgs {}

pub fn serve(config: Option<&Path>, _a: ServeArgs) -> ExitCode {
    let _config = match super::load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    super::not_yet("serve")
}

pub fn check(config: Option<&Path>, a: CheckArgs) -> ExitCode {
    let Some(path) = a.file.as_deref().or(config) else {
        eprintln!("error: name the file to check: rampart check --config rampart.toml");
        return ExitCode::from(super::EXIT_USAGE);
    };
    match super::load_config(Some(path)) {
        Ok(c) => {
            println!("{}: ok ({} site(s))", path.display(), c.site.len());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

pub fn reload(_config: Option<&Path>, _a: ReloadArgs) -> ExitCode {
    super::not_yet("reload")
}
