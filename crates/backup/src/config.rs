//! `[backup]` in rampart.toml.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[backup]` in rampart.toml.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Databases to snapshot; empty means every Odoo database on the server
    /// (every database that has an `ir_module_module` table).
    #[serde(default)]
    pub databases: Vec<String>,
    /// Odoo's data_dir: the filestore is `<data_dir>/filestore/<db>/`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// libpq connection string or URI, without a database name (one is
    /// added per database); empty means the PG* environment.
    #[serde(default, serialize_with = "rampart_config::secret::mask_password_in")]
    pub pg: String,
    /// Directory holding pg_dump, pg_restore and psql; by default the
    /// Debian directory matching the server's major version, else PATH.
    #[serde(default)]
    pub pg_bin: Option<PathBuf>,
    /// Role that owns restored databases (`CREATE DATABASE … OWNER`,
    /// `pg_restore --role`): Odoo's role. Default: the connecting role.
    #[serde(default)]
    pub db_owner: Option<String>,
    /// age public keys (`age1…`); the private key stays off the server.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// `daily HH:MM` (server local time) or `hourly :MM`, for `rampart serve`.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Odoo's addons_path, for `--neutralize` (each module's data/neutralize.sql).
    #[serde(default)]
    pub addons_path: Vec<PathBuf>,
    /// Where the encrypted dump is spooled before upload; default the temp dir.
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
    /// zstd level (1..=19); 3 is zstd's own default, fast and decent.
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// The `[[backup.target]]` sections: where snapshots are stored.
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetConfig>,

    // --- Point-in-time recovery (crate::wal): the `wal*` keys. ---
    /// Stream the cluster's WAL (pg_receivewal on a replication slot,
    /// supervised by `rampart serve` or `rampart wal-stream`) to the
    /// targets, with a base backup on `schedule`.
    #[serde(default)]
    pub wal: bool,
    /// Local directory pg_receivewal writes into (persistent disk);
    /// default `<state_dir>/wal`.
    #[serde(default)]
    pub wal_dir: Option<PathBuf>,
    /// The physical replication slot's name.
    #[serde(default = "default_wal_slot")]
    pub wal_slot: String,
    /// How often the part of the current segment written so far, and new
    /// filestore files, are sent: bounds the data at risk (RPO).
    #[serde(default = "default_wal_upload_interval")]
    pub wal_upload_interval: rampart_config::Duration,
    /// WAL allowed to wait unsent, on the server (the slot) and in
    /// wal_dir each; past it streaming stops with a loud error rather
    /// than fill a disk.
    #[serde(default = "default_wal_max_behind")]
    pub wal_max_behind: rampart_config::ByteSize,
    /// When Rampart runs as root: the OS user the temporary recovery
    /// cluster of `restore --at` runs as (PostgreSQL refuses root).
    #[serde(default = "default_wal_os_user")]
    pub wal_os_user: String,
    // --- end of the wal keys ---
    // --- incremental hashing, drills (issue 14 §1, §3) ---
    /// Days after which a filestore file is read and hashed again even if
    /// its metadata is unchanged; 0 turns the hash cache off.
    #[serde(default = "default_rehash_days")]
    pub rehash_days: u32,
    /// When `rampart serve` restores the newest snapshot into a scratch
    /// database to prove it works, e.g. `weekly sun 05:00`.
    #[serde(default)]
    pub drill: Option<String>,
    /// age identity file the drill decrypts with (it must be on this server
    /// for a scheduled drill; `rampart backup drill --identity` otherwise).
    #[serde(default)]
    pub drill_identity: Option<PathBuf>,
    /// Odoo's URL for the drill's login check (the scratch database is
    /// selected with `?db=`); none: no login check.
    #[serde(default)]
    pub drill_odoo_url: Option<String>,
    /// Login and password the drill signs in with (a user of the
    /// production database, present in the restored copy).
    #[serde(default)]
    pub drill_login: Option<String>,
    /// The drill's password (masked when the config is shown).
    #[serde(default, serialize_with = "rampart_config::secret::mask_opt")]
    pub drill_password: Option<String>,
    /// Not a key: the top-level `state_dir`, set by the binary (the hash
    /// cache and the drill record live there).
    #[serde(skip)]
    pub state_dir: Option<PathBuf>,
}

/// `[[backup.target]]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The name commands and status use for the target.
    pub name: String,
    /// `file:///path`, `sftp://user@host:port/path`, `s3://bucket/prefix`.
    pub url: String,
    /// SFTP: private key file for the backup user.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// SFTP: known_hosts file holding the receiver's host key.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// S3: endpoint for S3-compatible stores (MinIO, Garage, Wasabi…).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// S3: region; default AWS_REGION or us-east-1.
    #[serde(default)]
    pub region: Option<String>,
    /// S3: access key; default AWS_ACCESS_KEY_ID.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// S3: secret key; default AWS_SECRET_ACCESS_KEY.
    #[serde(default, serialize_with = "rampart_config::secret::mask_opt")]
    pub secret_access_key: Option<String>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            databases: Vec::new(),
            data_dir: default_data_dir(),
            pg: String::new(),
            pg_bin: None,
            db_owner: None,
            recipients: Vec::new(),
            schedule: None,
            addons_path: Vec::new(),
            spool_dir: None,
            zstd_level: default_zstd_level(),
            targets: Vec::new(),
            wal: false,
            wal_dir: None,
            wal_slot: default_wal_slot(),
            wal_upload_interval: default_wal_upload_interval(),
            wal_max_behind: default_wal_max_behind(),
            wal_os_user: default_wal_os_user(),
            rehash_days: default_rehash_days(),
            drill: None,
            drill_identity: None,
            drill_odoo_url: None,
            drill_login: None,
            drill_password: None,
            state_dir: None,
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/odoo")
}

fn default_zstd_level() -> i32 {
    3
}

fn default_wal_slot() -> String {
    "rampart".into()
}
fn default_wal_upload_interval() -> rampart_config::Duration {
    rampart_config::Duration(std::time::Duration::from_secs(30))
}
fn default_wal_max_behind() -> rampart_config::ByteSize {
    rampart_config::ByteSize(4 << 30)
}
fn default_wal_os_user() -> String {
    "postgres".into()
}
fn default_rehash_days() -> u32 {
    7
}

impl BackupConfig {
    /// Where spool files and scratch directories go: `spool_dir`, else the
    /// system's temp dir.
    pub fn spool_dir(&self) -> PathBuf {
        self.spool_dir.clone().unwrap_or_else(std::env::temp_dir)
    }

    /// The target called `name`, if configured.
    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_an_empty_section() {
        let d = BackupConfig::default();
        assert!(d.validate().is_ok());
        let parsed: BackupConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, d);
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut c = BackupConfig {
            recipients: vec!["age1nope".into()],
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "backup.recipients[0]");
        c.recipients.clear();
        c.targets = vec![TargetConfig {
            name: "x".into(),
            url: "ftp://h".into(),
            ..Default::default()
        }];
        assert_eq!(c.validate().unwrap_err().0, "backup.target[0].url");
        c.targets.clear();
        c.schedule = Some("weekly".into());
        assert_eq!(c.validate().unwrap_err().0, "backup.schedule");
        c.schedule = None;
        c.drill = Some("weekly sun 05:00".into());
        assert_eq!(c.validate().unwrap_err().0, "backup.drill");
        c.drill_identity = Some("/etc/rampart/drill.key".into());
        assert!(c.validate().is_ok());
        c.drill = Some("weekly xyz 05:00".into());
        assert_eq!(c.validate().unwrap_err().0, "backup.drill");
        c.drill = None;
        c.drill_odoo_url = Some("http://127.0.0.1:8069".into());
        assert_eq!(c.validate().unwrap_err().0, "backup.drill_odoo_url");
    }
}
