//! What the backup commands (backup.rs, wal.rs) share: the `[backup]`
//! section they run on, the targets they are pointed at, and how a
//! backup error becomes an exit code. Its own file so that wal.rs and
//! backup.rs (which calls `restore --at` in wal.rs) do not import each other.

use std::path::Path;

use rampart_backup::{BackupConfig, Target, TargetConfig};

use super::{CmdError, load_config};

/// The [backup] section, validated; exit code 2 when missing or wrong.
pub(super) fn section(config: Option<&Path>, required: bool) -> Result<BackupConfig, CmdError> {
    let c = load_config(config)?;
    let b = match c.backup {
        Some(b) => b,
        None if !required => BackupConfig {
            state_dir: Some(c.state_dir.clone()),
            ..Default::default()
        },
        None => {
            return Err(CmdError::usage(
                "no [backup] section in the config (give --config FILE)",
            ));
        }
    };
    if let Err((key, msg)) = b.validate() {
        return Err(CmdError::usage(
            match config.and_then(|p| std::fs::read_to_string(p).ok().map(|t| (p, t))) {
                Some((path, text)) => {
                    rampart_config::ConfigError::at_key(path, &text, &key, msg).to_string()
                }
                None => format!("{key}: {msg}"),
            },
        ));
    }
    Ok(b)
}

/// A backup error, with its causes, as exit code 3.
pub(super) fn fail(e: rampart_backup::Error) -> CmdError {
    CmdError::failure(format!("{e:#}"))
}

/// The target configs a command works on: a URL, a name, or (with
/// `all_by_default`) every configured target, else the first.
pub(super) fn chosen_targets(
    cfg: &BackupConfig,
    name: Option<&str>,
    url: Option<&str>,
    all_by_default: bool,
) -> Result<Vec<TargetConfig>, CmdError> {
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
                return Err(CmdError::usage(format!(
                    "no target named {n:?} in [[backup.target]]"
                )));
            }
        },
        None if all_by_default => cfg.targets.clone(),
        None => cfg.targets.iter().take(1).cloned().collect(),
    };
    if chosen.is_empty() {
        return Err(CmdError::usage(
            "no target: add a [[backup.target]] or give --url",
        ));
    }
    Ok(chosen)
}

/// Opens the one target a command reads from.
pub(super) async fn open_one(
    cfg: &BackupConfig,
    name: Option<&str>,
    url: Option<&str>,
) -> Result<Target, CmdError> {
    let tc = chosen_targets(cfg, name, url, false)?;
    Target::open(&tc[0]).await.map_err(fail)
}
