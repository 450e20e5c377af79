//! `rampart backup | backups | restore | prune`: argument parsing and
//! printing only; the work is in rampart-backup.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rampart_backup::{
    BackupConfig, BackupOptions, Keep, Progress, RestoreOptions, Target, TargetConfig, block_on,
};

use super::{EXIT_FAILURE, EXIT_FINDINGS, EXIT_USAGE, load_config};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    action: Option<BackupAction>,
    /// Only this database (repeat for several); default [backup] databases.
    #[arg(long = "db", value_name = "NAME")]
    db: Vec<String>,
    /// Only this target (repeat for several); default every [[backup.target]].
    #[arg(long = "target", value_name = "NAME")]
    target: Vec<String>,
}

#[derive(clap::Subcommand)]
enum BackupAction {
    /// Check that a snapshot is complete on a target (and its checksums,
    /// with --identity); --restore-test restores it into a scratch database.
    Verify {
        /// Snapshot id, unique prefix, or `latest`.
        snapshot: String,
        /// Also restore it into a scratch database and filestore, run
        /// sanity queries (users, installed modules, files), drop them.
        #[arg(long)]
        restore_test: bool,
        #[arg(long, env = "RAMPART_BACKUP_IDENTITY", value_name = "KEYFILE")]
        identity: Option<PathBuf>,
        #[command(flatten)]
        at: Where,
    },
    /// Write a snapshot as an Odoo backup zip (dump.sql + filestore/ + manifest.json).
    Export {
        snapshot: String,
        #[arg(long = "odoo-zip", value_name = "FILE")]
        odoo_zip: PathBuf,
        #[arg(long, env = "RAMPART_BACKUP_IDENTITY", value_name = "KEYFILE")]
        identity: PathBuf,
        #[command(flatten)]
        at: Where,
    },
}

/// Which target to read: a configured one by name, or any URL.
#[derive(clap::Args, Clone, Default)]
struct Where {
    /// A configured target by name; default the first one.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// A target URL not in the config (e.g. file:///srv/rampart on the receiver).
    #[arg(long, value_name = "URL", conflicts_with = "target")]
    url: Option<String>,
    /// With `latest`: the latest snapshot of this database.
    #[arg(long, value_name = "NAME")]
    db: Option<String>,
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupsArgs {
    #[command(subcommand)]
    action: Option<BackupsAction>,
    #[command(flatten)]
    list: ListArgs,
}

#[derive(clap::Subcommand)]
enum BackupsAction {
    /// List complete snapshots (the default).
    List(ListArgs),
}

#[derive(clap::Args, Clone, Default)]
struct ListArgs {
    /// One JSON array (index entries, with their target).
    #[arg(long)]
    json: bool,
    /// A configured target by name; default every configured target.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    #[arg(long, value_name = "URL", conflicts_with = "target")]
    url: Option<String>,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// Snapshot id, unique prefix, or `latest` (not with --odoo-zip).
    #[arg(required_unless_present = "odoo_zip", conflicts_with = "odoo_zip")]
    snapshot: Option<String>,
    /// The NEW database name (an existing name is refused).
    #[arg(long = "as", value_name = "NEWDB")]
    new_db: String,
    /// Make a staging copy: run each installed module's data/neutralize.sql.
    #[arg(long)]
    neutralize: bool,
    /// After success, put the new database in place of the snapshot's
    /// (the old one is renamed <db>_old_<time>).
    #[arg(long, conflicts_with = "odoo_zip")]
    swap: bool,
    /// age identity file (the private key kept off the server).
    #[arg(long, env = "RAMPART_BACKUP_IDENTITY", value_name = "KEYFILE")]
    identity: Option<PathBuf>,
    /// Restore an Odoo backup zip instead of a snapshot.
    #[arg(long = "odoo-zip", value_name = "FILE")]
    odoo_zip: Option<PathBuf>,
    #[command(flatten)]
    at: Where,
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Keep the newest snapshot of each of the last N days (per database).
    #[arg(long, default_value_t = 0)]
    keep_daily: usize,
    /// Keep the newest of each of the last N ISO weeks.
    #[arg(long, default_value_t = 0)]
    keep_weekly: usize,
    /// Keep the newest of each of the last N months.
    #[arg(long, default_value_t = 0)]
    keep_monthly: usize,
    /// Say what would go, delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// A configured target by name; default every configured target.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    #[arg(long, value_name = "URL", conflicts_with = "target")]
    url: Option<String>,
}

/// The [backup] section, validated; exit code 2 when missing or wrong.
fn section(config: Option<&Path>, required: bool) -> Result<BackupConfig, ExitCode> {
    let c = load_config(config)?;
    let b = match c.backup {
        Some(b) => b,
        None if !required => BackupConfig::default(),
        None => {
            eprintln!("error: no [backup] section in the config (give --config FILE)");
            return Err(ExitCode::from(EXIT_USAGE));
        }
    };
    if let Err((key, msg)) = b.validate() {
        match config.and_then(|p| std::fs::read_to_string(p).ok().map(|t| (p, t))) {
            Some((path, text)) => {
                eprintln!(
                    "error: {}",
                    rampart_config::ConfigError::at_key(path, &text, &key, msg)
                )
            }
            None => eprintln!("error: {key}: {msg}"),
        }
        return Err(ExitCode::from(EXIT_USAGE));
    }
    Ok(b)
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_FAILURE)
}

/// The target configs a command works on: a URL, a name, or (with
/// `all_by_default`) every configured target, else the first.
fn chosen_targets(
    cfg: &BackupConfig,
    name: Option<&str>,
    url: Option<&str>,
    all_by_default: bool,
) -> Result<Vec<TargetConfig>, ExitCode> {
    if let Some(u) = url {
        return Ok(vec![TargetConfig {
            name: u.to_string(),
            url: u.to_string(),
            ..Default::default()
        }]);
    }
    let chosen: Vec<TargetConfig> = match name {
        Some(n) => match cfg.target(n) {
            Some(t) => vec![t.clone()],
            None => {
                eprintln!("error: no target named {n:?} in [[backup.target]]");
                return Err(ExitCode::from(EXIT_USAGE));
            }
        },
        None if all_by_default => cfg.targets.clone(),
        None => cfg.targets.iter().take(1).cloned().collect(),
    };
    if chosen.is_empty() {
        eprintln!("error: no target: add a [[backup.target]] or give --url");
        return Err(ExitCode::from(EXIT_USAGE));
    }
    Ok(chosen)
}

/// Opens the one target a command reads from.
async fn open_one(
    cfg: &BackupConfig,
    name: Option<&str>,
    url: Option<&str>,
) -> Result<Target, ExitCode> {
    let tc = chosen_targets(cfg, name, url, false)?;
    Target::open(&tc[0]).await.map_err(fail)
}

pub fn backup(config: Option<&Path>, a: BackupArgs) -> ExitCode {
    let needs_config = a.action.is_none();
    let cfg = match section(config, needs_config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let progress = Progress::auto();
    match a.action {
        None => {
            let opts = BackupOptions {
                databases: a.db,
                targets: a.target,
            };
            match block_on(rampart_backup::backup(&cfg, &opts, &progress)) {
                // Failures were reported as they happened; the summary
                // names the failed targets again.
                Ok(r) => {
                    println!("{}", r.summary());
                    if r.ok() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(EXIT_FAILURE)
                    }
                }
                Err(e) => fail(e),
            }
        }
        Some(BackupAction::Verify {
            snapshot,
            restore_test,
            identity,
            at,
        }) => block_on(async {
            if restore_test && identity.is_none() {
                eprintln!("error: --restore-test needs --identity KEYFILE");
                return ExitCode::from(EXIT_USAGE);
            }
            let t = match open_one(&cfg, at.target.as_deref(), at.url.as_deref()).await {
                Ok(t) => t,
                Err(code) => return code,
            };
            let t = &t;
            let r = async {
                let entry = rampart_backup::find_snapshot(t, &snapshot, at.db.as_deref()).await?;
                let ids = identity
                    .as_deref()
                    .map(rampart_backup::seal_identities)
                    .transpose()?;
                let report = rampart_backup::verify(t, &entry, ids.as_ref()).await?;
                let mut tested = None;
                if restore_test && report.ok() {
                    let key = identity.as_deref().expect("checked");
                    tested =
                        Some(rampart_backup::restore_test(&cfg, t, &entry, key, &progress).await?);
                }
                Ok::<_, rampart_backup::Error>((report, tested))
            }
            .await;
            match r {
                Ok((report, tested)) => {
                    for p in &report.problems {
                        println!("PROBLEM {}: {p}", report.id);
                    }
                    if report.ok() {
                        println!(
                            "{}: complete on {} ({} blobs)",
                            report.id, t.name, report.checked_blobs
                        );
                        if let Some(s) = tested {
                            println!("{}: restore test passed: {s}", report.id);
                        }
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(EXIT_FINDINGS)
                    }
                }
                Err(e) => fail(e),
            }
        }),
        Some(BackupAction::Export {
            snapshot,
            odoo_zip,
            identity,
            at,
        }) => block_on(async {
            let t = match open_one(&cfg, at.target.as_deref(), at.url.as_deref()).await {
                Ok(t) => t,
                Err(code) => return code,
            };
            let r = async {
                let entry = rampart_backup::find_snapshot(&t, &snapshot, at.db.as_deref()).await?;
                rampart_backup::export_odoo_zip(&cfg, &t, &entry, &identity, &odoo_zip, &progress)
                    .await?;
                Ok::<_, rampart_backup::Error>(entry.id)
            }
            .await;
            match r {
                Ok(id) => {
                    println!("{id} written to {}", odoo_zip.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }),
    }
}

pub fn backups(config: Option<&Path>, a: BackupsArgs) -> ExitCode {
    let args = match a.action {
        Some(BackupsAction::List(l)) => l,
        None => a.list,
    };
    let cfg = match section(config, args.url.is_none()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    block_on(async {
        let chosen = match chosen_targets(&cfg, args.target.as_deref(), args.url.as_deref(), true) {
            Ok(c) => c,
            Err(code) => return code,
        };
        // One unreachable target does not hide the others' snapshots.
        let mut all = Vec::new();
        let mut failed = false;
        for tc in &chosen {
            let listed = async {
                let t = Target::open(tc).await?;
                rampart_backup::list_snapshots(&t).await
            }
            .await;
            match listed {
                Ok(list) => all.extend(list.into_iter().map(|e| (tc.name.clone(), e))),
                Err(e) => {
                    eprintln!("error: {e}");
                    failed = true;
                }
            }
        }
        if args.json {
            println!("{}", rampart_backup::snapshots_json(&all));
        } else {
            println!(
                "{:<12} {:<40} {:<16} {:>8} {:>12}",
                "TARGET", "SNAPSHOT", "DATABASE", "FILES", "DUMP"
            );
            for (t, e) in &all {
                println!(
                    "{:<12} {:<40} {:<16} {:>8} {:>12}",
                    t,
                    e.id,
                    e.db,
                    e.blobs.len(),
                    e.dump_size
                );
            }
        }
        if failed {
            ExitCode::from(EXIT_FAILURE)
        } else {
            ExitCode::SUCCESS
        }
    })
}

pub fn restore(config: Option<&Path>, a: RestoreArgs) -> ExitCode {
    let cfg = match section(config, true) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let progress = Progress::auto();
    if let Some(zip) = &a.odoo_zip {
        return match block_on(rampart_backup::import_odoo_zip(
            &cfg,
            zip,
            &a.new_db,
            a.neutralize,
            &progress,
        )) {
            Ok(()) => {
                println!("{} restored into database {}", zip.display(), a.new_db);
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    let Some(identity) = a.identity.clone() else {
        eprintln!("error: restoring a snapshot needs --identity KEYFILE (the age private key)");
        return ExitCode::from(EXIT_USAGE);
    };
    let snapshot = a.snapshot.clone().unwrap_or_default();
    block_on(async {
        let t = match open_one(&cfg, a.at.target.as_deref(), a.at.url.as_deref()).await {
            Ok(t) => t,
            Err(code) => return code,
        };
        let r = async {
            let entry = rampart_backup::find_snapshot(&t, &snapshot, a.at.db.as_deref()).await?;
            let opts = RestoreOptions {
                new_db: a.new_db.clone(),
                neutralize: a.neutralize,
                swap: a.swap,
                identity,
            };
            let db = rampart_backup::restore(&cfg, &t, &entry, &opts, &progress).await?;
            Ok::<_, rampart_backup::Error>((entry.id, db))
        }
        .await;
        match r {
            Ok((id, db)) => {
                println!("{id} restored into database {db}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    })
}

pub fn prune(config: Option<&Path>, a: PruneArgs) -> ExitCode {
    let cfg = match section(config, a.url.is_none()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let keep = Keep {
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
    };
    if keep == Keep::default() {
        eprintln!("error: give at least one of --keep-daily, --keep-weekly, --keep-monthly");
        return ExitCode::from(EXIT_USAGE);
    }
    let progress = Progress::auto();
    block_on(async {
        let chosen = match chosen_targets(&cfg, a.target.as_deref(), a.url.as_deref(), true) {
            Ok(c) => c,
            Err(code) => return code,
        };
        let mut code = ExitCode::SUCCESS;
        for tc in &chosen {
            let pruned = async {
                let t = Target::open(tc).await?;
                rampart_backup::prune(&t, keep, a.dry_run, &progress).await
            }
            .await;
            match pruned {
                Ok(r) => println!(
                    "{}: {}{}",
                    tc.name,
                    if a.dry_run { "(dry run) " } else { "" },
                    r.summary()
                ),
                Err(e) => code = fail(e),
            }
        }
        code
    })
}
