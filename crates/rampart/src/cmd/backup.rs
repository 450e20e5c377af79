//! `rampart backup | backups | restore | prune`: argument parsing and
//! printing only; the work is in rampart-backup.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rampart_backup::{BackupOptions, Keep, Progress, RestoreOptions, Target, block_on};

use super::backup_section::{chosen_targets, fail, open_one, section};
use super::{CmdError, EXIT_FAILURE, EXIT_FINDINGS, Outcome};

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
    /// Read and hash every filestore file, trusting no cached hash (by
    /// default a file whose size, times, inode and device are unchanged
    /// is not read again; each is re-read after [backup] rehash_days).
    #[arg(long)]
    rehash: bool,
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
        /// age identity file (the private key kept off the server): checks
        /// the checksums inside the sealed files too.
        #[arg(long, env = "RAMPART_BACKUP_IDENTITY", value_name = "KEYFILE")]
        identity: Option<PathBuf>,
        #[command(flatten)]
        at: Where,
    },
    /// Restore drill now: the newest snapshot of each database into a
    /// scratch database, checked against its manifest (row counts,
    /// modules, files; an Odoo login with drill_odoo_url), then dropped.
    /// The result is recorded for the metrics and the status page.
    Drill {
        /// age identity file; default [backup] drill_identity.
        #[arg(long, env = "RAMPART_BACKUP_IDENTITY", value_name = "KEYFILE")]
        identity: Option<PathBuf>,
        /// A configured target by name; default the first one.
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
    },
    /// Write a snapshot as an Odoo backup zip (dump.sql + filestore/ + manifest.json).
    Export {
        /// Snapshot id, unique prefix, or `latest`.
        snapshot: String,
        /// The zip file to write (replaced whole, never half-written).
        #[arg(long = "odoo-zip", value_name = "FILE")]
        odoo_zip: PathBuf,
        /// age identity file (the private key kept off the server).
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
    /// With `latest`: the latest snapshot of this database; with
    /// `restore --at`: the database to restore (default the only one).
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
    /// A target URL not in the config (e.g. file:///srv/rampart on the receiver).
    #[arg(long, value_name = "URL", conflicts_with = "target")]
    url: Option<String>,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// Snapshot id, unique prefix, or `latest` (not with --odoo-zip).
    #[arg(required_unless_present_any = ["odoo_zip", "at_time"], conflicts_with = "odoo_zip")]
    snapshot: Option<String>,
    /// A point in time instead of a snapshot (needs `wal = true`):
    /// "2026-11-30 15:59:30" is the LOCAL time of this machine; add an
    /// offset ("2026-11-30 15:59:30+01:00", "…Z") for another zone.
    #[arg(long = "at", value_name = "TIME", conflicts_with_all = ["odoo_zip", "snapshot"])]
    at_time: Option<String>,
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
    /// A target URL not in the config (e.g. file:///srv/rampart on the receiver).
    #[arg(long, value_name = "URL", conflicts_with = "target")]
    url: Option<String>,
}

pub fn backup(config: Option<&Path>, a: BackupArgs) -> Outcome {
    let needs_config = matches!(a.action, None | Some(BackupAction::Drill { .. }));
    let cfg = section(config, needs_config)?;
    let progress = Progress::auto();
    match a.action {
        None => {
            let opts = BackupOptions {
                databases: a.db,
                targets: a.target,
                rehash: a.rehash,
            };
            // Failures were reported as they happened; the summary
            // names the failed targets again.
            let r = block_on(rampart_backup::backup(&cfg, &opts, &progress)).map_err(fail)?;
            println!("{}", r.summary());
            Ok(if r.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILURE)
            })
        }
        Some(BackupAction::Verify {
            snapshot,
            restore_test,
            identity,
            at,
        }) => block_on(async {
            if restore_test && identity.is_none() {
                return Err(CmdError::usage("--restore-test needs --identity KEYFILE"));
            }
            let t = open_one(&cfg, at.target.as_deref(), at.url.as_deref()).await?;
            let t = &t;
            let (report, tested) = async {
                let entry = rampart_backup::find_snapshot(t, &snapshot, at.db.as_deref()).await?;
                let ids = identity
                    .as_deref()
                    .map(rampart_backup::seal_identities)
                    .transpose()?;
                let report = rampart_backup::verify(t, &entry, ids.as_ref()).await?;
                let mut tested = None;
                if restore_test && report.ok() {
                    let key = identity.as_deref().expect("checked");
                    tested = Some(
                        rampart_backup::restore_test(&cfg, t, &entry, key, false, &progress)
                            .await?,
                    );
                }
                Ok::<_, rampart_backup::Error>((report, tested))
            }
            .await
            .map_err(fail)?;
            for p in &report.problems {
                println!("PROBLEM {}: {p}", report.id);
            }
            if !report.ok() {
                return Ok(ExitCode::from(EXIT_FINDINGS));
            }
            println!(
                "{}: complete on {} ({} blobs)",
                report.id, t.name, report.checked_blobs
            );
            if let Some(s) = tested {
                println!("{}: restore test passed: {s}", report.id);
            }
            Ok(ExitCode::SUCCESS)
        }),
        Some(BackupAction::Drill { identity, target }) => {
            let Some(key) = identity.or_else(|| cfg.drill_identity.clone()) else {
                return Err(CmdError::usage(
                    "a drill needs --identity KEYFILE or [backup] drill_identity",
                ));
            };
            let r = block_on(rampart_backup::drill(
                &cfg,
                &key,
                target.as_deref(),
                &progress,
            ));
            if r.ok {
                println!(
                    "drill passed on {} in {:.1}s: {}",
                    r.target, r.duration_secs, r.summary
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!("drill FAILED on {}: {}", r.target, r.summary);
                Ok(ExitCode::from(EXIT_FINDINGS))
            }
        }
        Some(BackupAction::Export {
            snapshot,
            odoo_zip,
            identity,
            at,
        }) => block_on(async {
            let t = open_one(&cfg, at.target.as_deref(), at.url.as_deref()).await?;
            let id = async {
                let entry = rampart_backup::find_snapshot(&t, &snapshot, at.db.as_deref()).await?;
                rampart_backup::export_odoo_zip(&cfg, &t, &entry, &identity, &odoo_zip, &progress)
                    .await?;
                Ok::<_, rampart_backup::Error>(entry.id)
            }
            .await
            .map_err(fail)?;
            println!("{id} written to {}", odoo_zip.display());
            Ok(ExitCode::SUCCESS)
        }),
    }
}

pub fn backups(config: Option<&Path>, a: BackupsArgs) -> Outcome {
    let args = match a.action {
        Some(BackupsAction::List(l)) => l,
        None => a.list,
    };
    let cfg = section(config, args.url.is_none())?;
    block_on(async {
        let chosen = chosen_targets(&cfg, args.target.as_deref(), args.url.as_deref(), true)?;
        // One unreachable target does not hide the others' snapshots: each
        // failure is said here, and the exit code is 3 at the end.
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
                    eprintln!("error: {}", crate::scrub::text(&format!("{e:#}")));
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
        Ok(if failed {
            ExitCode::from(EXIT_FAILURE)
        } else {
            ExitCode::SUCCESS
        })
    })
}

pub fn restore(config: Option<&Path>, a: RestoreArgs) -> Outcome {
    let cfg = section(config, true)?;
    let progress = Progress::auto();
    if let Some(zip) = &a.odoo_zip {
        block_on(rampart_backup::import_odoo_zip(
            &cfg,
            zip,
            &a.new_db,
            a.neutralize,
            &progress,
        ))
        .map_err(fail)?;
        println!("{} restored into database {}", zip.display(), a.new_db);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(identity) = a.identity.clone() else {
        return Err(CmdError::usage(
            "restoring a snapshot needs --identity KEYFILE (the age private key)",
        ));
    };
    if let Some(at) = &a.at_time {
        return super::wal::restore_at(
            config,
            at,
            a.at.db.clone(),
            a.new_db.clone(),
            a.neutralize,
            a.swap,
            identity,
            a.at.target.as_deref(),
            a.at.url.as_deref(),
        );
    }
    let snapshot = a.snapshot.clone().unwrap_or_default();
    block_on(async {
        let t = open_one(&cfg, a.at.target.as_deref(), a.at.url.as_deref()).await?;
        let (id, db) = async {
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
        .await
        .map_err(fail)?;
        println!("{id} restored into database {db}");
        Ok(ExitCode::SUCCESS)
    })
}

pub fn prune(config: Option<&Path>, a: PruneArgs) -> Outcome {
    let cfg = section(config, a.url.is_none())?;
    let keep = Keep {
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
    };
    if keep == Keep::default() {
        return Err(CmdError::usage(
            "give at least one of --keep-daily, --keep-weekly, --keep-monthly",
        ));
    }
    let progress = Progress::auto();
    block_on(async {
        let chosen = chosen_targets(&cfg, a.target.as_deref(), a.url.as_deref(), true)?;
        // Every target is tried; each failure is said here, exit code 3 at the end.
        let mut failed = false;
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
                Err(e) => {
                    eprintln!("error: {}", crate::scrub::text(&format!("{e:#}")));
                    failed = true;
                }
            }
        }
        Ok(if failed {
            ExitCode::from(EXIT_FAILURE)
        } else {
            ExitCode::SUCCESS
        })
    })
}
