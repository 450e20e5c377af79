//! Snapshots, targets, encryption, retention and restore (the backups issue).

use serde::Deserialize;

/// `[backup]` in rampart.toml.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {}
