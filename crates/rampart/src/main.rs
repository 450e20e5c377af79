//! `rampart`: the command line. Wiring only; each capability lives in its
//! own crate (see DESIGN.md), each command family in `cmd/`.

mod cmd;
mod config;
mod notify;
mod scrub;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc rather than the libc's malloc: see Cargo.toml for the measure.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `rampart --version`: the commit, build date and target come from
/// build.rs; the TLS stack is fixed at build time.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RAMPART_COMMIT"),
    ", built ",
    env!("RAMPART_BUILD_DATE"),
    ", ",
    env!("RAMPART_TARGET"),
    ", TLS: rustls with ring)"
);

/// Puts an Odoo server into production safely: the HTTPS front,
/// certificates, brute-force guard, hardened odoo.conf, audits, backups.
#[derive(Parser)]
#[command(name = "rampart", version = VERSION, about)]
struct Cli {
    /// rampart.toml; without it, the embedded defaults.
    #[arg(
        short,
        long,
        global = true,
        env = "RAMPART_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTPS front (certificates renewed in process).
    Serve(cmd::serve::ServeArgs),
    /// Validate a config file; errors name the file, line and key.
    Check(cmd::check::CheckArgs),
    /// Ask the running server to re-read its config (like SIGHUP).
    Reload(cmd::serve::ReloadArgs),
    /// List certificates, or ask the running server to renew.
    Certs(cmd::certs::CertsArgs),
    /// List, add or remove bans on the running server.
    Bans(cmd::guard::BansArgs),
    /// Several nodes as one through PostgreSQL: create the schema, status.
    Cluster(cmd::cluster::ClusterArgs),
    /// The running server's edge cache: stats, purge.
    Cache(cmd::cache::CacheArgs),
    /// Print a fail2ban filter and jail for Odoo's own log.
    Fail2ban(cmd::guard::Fail2banArgs),
    /// Size Odoo's workers and memory limits for a machine.
    Plan(cmd::odoo::PlanArgs),
    /// Make a random master password and its odoo.conf hash line.
    Passwd(cmd::odoo::PasswdArgs),
    /// Write rampart.toml, a hardened odoo.conf, role SQL, systemd units.
    Init(cmd::odoo::InitArgs),
    /// Show which databases Odoo would serve for a host.
    Dbfilter(cmd::odoo::DbfilterArgs),
    /// Check odoo.conf, PostgreSQL roles and rampart.toml, offline.
    Audit(cmd::odoo::AuditArgs),
    /// The live checklist against a URL, from outside.
    Verify(cmd::verify::VerifyArgs),
    /// Take a snapshot (database + filestore), or verify or export one.
    Backup(cmd::backup::BackupArgs),
    /// List snapshots.
    Backups(cmd::backup::BackupsArgs),
    /// Restore a snapshot (or an Odoo backup zip) into a new database.
    Restore(cmd::backup::RestoreArgs),
    /// Delete old snapshots by generations (run where the writer cannot).
    Prune(cmd::backup::PruneArgs),
    /// Stream the cluster's WAL to the backup targets (point-in-time
    /// recovery; `rampart serve` does this itself when [backup] wal = true).
    WalStream(cmd::wal::WalStreamArgs),
    /// Take a base backup (pg_basebackup) of the cluster now.
    WalBase(cmd::wal::WalBaseArgs),
    /// restore_command of a `restore --at` recovery (run by PostgreSQL).
    WalFetch(cmd::wal::WalFetchArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions(cmd::docs::CompletionsArgs),
    /// Print the manual page (roff), or write one per command to a directory.
    Man(cmd::docs::ManArgs),
}

fn main() -> ExitCode {
    scrub::install_panic_hook();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(cmd::CmdError { code, msg }) => {
            // The one error path: a secret from the config is never shown.
            eprintln!("error: {}", scrub::text(&msg));
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> cmd::Outcome {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve(a) => cmd::serve::serve(config, a),
        Command::Check(a) => cmd::check::check(config, a),
        Command::Reload(a) => cmd::serve::reload(config, a),
        Command::Certs(a) => cmd::certs::run(config, a),
        Command::Bans(a) => cmd::guard::bans(config, a),
        Command::Cluster(a) => cmd::cluster::run(config, a),
        Command::Cache(a) => cmd::cache::run(config, a),
        Command::Fail2ban(a) => cmd::guard::fail2ban(config, a),
        Command::Plan(a) => cmd::odoo::plan(a),
        Command::Passwd(a) => cmd::odoo::passwd(a),
        Command::Init(a) => cmd::odoo::init(a),
        Command::Dbfilter(a) => cmd::odoo::dbfilter(a),
        Command::Audit(a) => cmd::odoo::audit(config, a),
        Command::Verify(a) => cmd::verify::verify(a),
        Command::Backup(a) => cmd::backup::backup(config, a),
        Command::Backups(a) => cmd::backup::backups(config, a),
        Command::Restore(a) => cmd::backup::restore(config, a),
        Command::Prune(a) => cmd::backup::prune(config, a),
        Command::WalStream(a) => cmd::wal::stream(config, a),
        Command::WalBase(a) => cmd::wal::base(config, a),
        Command::WalFetch(a) => cmd::wal::fetch(a),
        Command::Completions(a) => cmd::docs::completions(a),
        Command::Man(a) => cmd::docs::man(a),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `rampart help`, the man pages and completions show every option and
    /// command with a line saying what it does.
    #[test]
    fn every_option_and_command_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if a.get_help().is_none() && !matches!(id, "help" | "version") {
                    missing.push(format!("{path} {id}"));
                }
            }
            for s in cmd.get_subcommands() {
                let sub = format!("{path} {}", s.get_name());
                if s.get_about().is_none() && s.get_name() != "help" {
                    missing.push(sub.clone());
                }
                walk(s, &sub, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&crate::Cli::command(), "rampart", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
