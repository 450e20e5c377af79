//! `rampart completions` and `rampart man`: generated from the same clap
//! definitions the parser uses, so they cannot drift from the real
//! options. The .deb ships both (see the packaging metadata).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Write rampart.1 and one page per command (rampart-serve.1, ...)
    /// into this directory instead of printing rampart.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn completions(a: CompletionsArgs) -> super::Outcome {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "rampart", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

pub fn man(a: ManArgs) -> super::Outcome {
    let cmd = crate::Cli::command();
    let result = match &a.dir {
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(cmd, dir))
            .map_err(|e| format!("{}: {e}", dir.display())),
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout())
            .map_err(|e| e.to_string()),
    };
    result.map_err(super::CmdError::failure)?;
    Ok(ExitCode::SUCCESS)
}
