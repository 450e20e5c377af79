//! `rampart wal-stream | wal-base | wal-fetch` and `restore --at`:
//! argument parsing and printing only; the work is in rampart_backup::wal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rampart_backup::{BackupConfig, Progress, Target, block_on};

use super::backup_section::{fail, open_one, section};
use super::{CmdError, Outcome, load_config};

#[derive(clap::Args)]
pub struct WalStreamArgs {}

#[derive(clap::Args)]
pub struct WalBaseArgs {
    /// Only this target (repeat for several); default every [[backup.target]].
    #[arg(long = "target", value_name = "NAME")]
    target: Vec<String>,
}

#[derive(clap::Args)]
pub struct WalFetchArgs {
    /// The directory `restore --at` answers requests in (it writes this
    /// into the recovery's restore_command).
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// %f: the WAL file PostgreSQL asks for.
    name: String,
    /// %p: where to put it.
    dest: PathBuf,
}

/// `[backup]` with `wal_dir` defaulting to `<state_dir>/wal`.
pub fn wal_section(config: Option<&Path>) -> Result<BackupConfig, CmdError> {
    let state_dir = load_config(config)?.state_dir;
    let mut b = section(config, true)?;
    if b.wal_dir.is_none() {
        b.wal_dir = Some(state_dir.join("wal"));
    }
    Ok(b)
}

/// The foreground streamer (what `rampart serve` runs when `wal = true`).
pub fn stream(config: Option<&Path>, _a: WalStreamArgs) -> Outcome {
    let cfg = wal_section(config)?;
    if !cfg.wal {
        return Err(CmdError::usage(
            "backup.wal is not true: set wal = true in [backup]",
        ));
    }
    super::logging::init_tracing(Default::default());
    block_on(async {
        let stop = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        rampart_backup::wal::run_stream(&cfg, stop)
            .await
            .map_err(fail)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// One base backup now, to every target (or the ones named).
pub fn base(config: Option<&Path>, a: WalBaseArgs) -> Outcome {
    let cfg = wal_section(config)?;
    for n in &a.target {
        if cfg.target(n).is_none() {
            return Err(CmdError::usage(format!(
                "no target named {n:?} in [[backup.target]]"
            )));
        }
    }
    let progress = Progress::auto();
    block_on(async {
        let mut targets = Vec::new();
        for tc in cfg
            .targets
            .iter()
            .filter(|t| a.target.is_empty() || a.target.contains(&t.name))
        {
            targets.push(Target::open(tc).await.map_err(fail)?);
        }
        if targets.is_empty() {
            return Err(CmdError::usage("no target: add a [[backup.target]]"));
        }
        let refs: Vec<&Target> = targets.iter().collect();
        let b = rampart_backup::wal::base_backup(&cfg, &refs, &progress)
            .await
            .map_err(fail)?;
        println!("base backup {} stored (finished {})", b.id, b.finished);
        Ok(ExitCode::SUCCESS)
    })
}

/// The recovery's restore_command: exit 0 fetched, 1 not archived, 255 error.
pub fn fetch(a: WalFetchArgs) -> Outcome {
    let code = rampart_backup::wal::fetch_client(&a.from, &a.name, &a.dest);
    Ok(ExitCode::from(code as u8))
}

/// `restore --at TIME --as NEWDB`.
#[allow(clippy::too_many_arguments)]
pub fn restore_at(
    config: Option<&Path>,
    at: &str,
    db: Option<String>,
    new_db: String,
    neutralize: bool,
    swap: bool,
    identity: PathBuf,
    target: Option<&str>,
    url: Option<&str>,
) -> Outcome {
    let cfg = section(config, true)?;
    let at = rampart_backup::wal::parse_at(at).map_err(|e| CmdError::usage(format!("{e:#}")))?;
    let exe = std::env::current_exe()
        .map_err(|e| CmdError::failure(format!("cannot find the rampart executable: {e}")))?;
    let opts = rampart_backup::wal::PitrOptions {
        at,
        db,
        new_db,
        neutralize,
        swap,
        identity,
        exe,
    };
    let progress = Progress::auto();
    block_on(async {
        let t = open_one(&cfg, target, url).await?;
        let r = rampart_backup::wal::restore_at(&cfg, &t, &opts, &progress)
            .await
            .map_err(fail)?;
        if r.archive_ended_first {
            println!(
                "note: the archived WAL ends before {at} (no later commit was sent); restored to its end"
            );
        }
        if !r.missing_files.is_empty() {
            println!(
                "WARNING: {} filestore file(s) the database refers to are in no backup: {}",
                r.missing_files.len(),
                r.missing_files
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        println!(
            "{at} restored into database {} (base backup {}, last transaction {})",
            r.db,
            r.base_backup,
            r.replayed_until.as_deref().unwrap_or("none")
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// `rampart serve` with `wal = true`: the streamer runs beside the edge.
pub fn spawn_in_serve(config: &crate::config::Config, stop: tokio_util::sync::CancellationToken) {
    let Some(mut cfg) = config.backup.clone().filter(|b| b.wal) else {
        return;
    };
    if cfg.wal_dir.is_none() {
        cfg.wal_dir = Some(config.state_dir.join("wal"));
    }
    tokio::spawn(async move {
        if let Err(e) = rampart_backup::wal::run_stream(&cfg, stop.cancelled()).await {
            tracing::error!("WAL streaming cannot run: {e:#}");
        }
    });
}
