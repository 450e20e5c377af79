//! rampart.toml: every crate's section composed into one file.

use std::path::{Path, PathBuf};

use rampart_config::ConfigError;
use rampart_edge::config::{ListenConfig, LogConfig, SiteConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// ACME account, certificates, local CA, ban table, backup catalog.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub listen: ListenConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default = "default_sites")]
    pub site: Vec<SiteConfig>,
    #[serde(default)]
    pub acme: Option<rampart_certs::AcmeConfig>,
    #[serde(default)]
    pub guard: rampart_guard::GuardConfig,
    #[serde(default)]
    pub backup: Option<rampart_backup::BackupConfig>,
    /// Several nodes sharing bans and login budgets through PostgreSQL.
    #[serde(default)]
    pub cluster: Option<rampart_cluster::ClusterConfig>,
    /// Values taken from `${VAR}` or `{ file = … }`: never printed.
    #[serde(skip)]
    pub secrets: rampart_config::Secrets,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: default_state_dir(),
            listen: ListenConfig::default(),
            log: LogConfig::default(),
            site: default_sites(),
            acme: None,
            guard: Default::default(),
            backup: None,
            cluster: None,
            secrets: Default::default(),
        }
    }
}

/// /var/lib/rampart for root (a system service), ./.rampart otherwise.
fn default_state_dir() -> PathBuf {
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        })
        .unwrap_or(false);
    if is_root && std::env::var_os("RAMPART_STATE_DIR").is_none() {
        PathBuf::from("/var/lib/rampart")
    } else {
        std::env::var_os("RAMPART_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".rampart"))
    }
}

fn default_sites() -> Vec<SiteConfig> {
    vec![SiteConfig::embedded()]
}

impl Config {
    /// Reads, parses and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot read the config file: {e}"),
            source_line: None,
        })?;
        let (mut config, secrets): (Config, _) =
            rampart_config::from_str_with_secrets(path, &text)?;
        config.secrets = secrets;
        // From here on, anything printed to stderr masks these values.
        crate::scrub::register(&config.secrets);
        if let Some(b) = config.backup.as_mut() {
            b.state_dir = Some(config.state_dir.clone());
        }
        config.validate().map_err(|(key, msg)| {
            let msg = config.secrets.scrub(&msg, Some(&key));
            ConfigError::at_key(path, &text, &key, msg)
        })?;
        Ok(config)
    }

    /// Each site as the certificate store sees it.
    pub fn site_tls(&self) -> Vec<rampart_certs::SiteTls> {
        self.site
            .iter()
            .enumerate()
            .map(|(i, s)| rampart_certs::SiteTls {
                site: i,
                hosts: s.hosts.clone(),
                source: s.tls.clone(),
            })
            .collect()
    }

    /// What every node of a cluster should share (sites, guard, ACME),
    /// hashed for `rampart cluster status`; listeners, paths and the node
    /// name may differ.
    pub fn cluster_hash(&self) -> String {
        let shared = serde_json::json!({
            "site": self.site,
            "guard": self.guard,
            "acme": self.acme,
        });
        rampart_cluster::config_hash(shared.to_string().as_bytes())
    }

    /// Checks that span fields or sections; returns the key and the problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        rampart_edge::config::validate_sites(&self.site)?;
        if let Some(backup) = &self.backup {
            backup.validate()?;
        }
        if let Some(cluster) = &self.cluster {
            cluster
                .pg_config()
                .map_err(|e| ("cluster.pg".to_string(), e))?;
            let acme = self
                .site
                .iter()
                .any(|s| s.tls == rampart_certs::TlsSource::Acme);
            if acme && cluster.secret_key_file.is_none() {
                return Err((
                    "cluster.secret_key_file".to_string(),
                    "needed with tls = \"acme\" sites: the key that encrypts the shared ACME account \
                     and certificate keys in PostgreSQL (create it with `rampart cluster new-key FILE` \
                     and copy the same file to every node)"
                        .into(),
                ));
            }
        }
        for (i, site) in self.site.iter().enumerate() {
            if site.tls == rampart_certs::TlsSource::Acme && self.acme.is_none() {
                return Err((
                    format!("site[{i}].tls"),
                    "tls = \"acme\" needs an [acme] section with at least an email".into(),
                ));
            }
        }
        Ok(())
    }
}
