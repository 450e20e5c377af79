//! What a `[backup]` section can get wrong that serde cannot see, each
//! named by its key. Kept apart from config.rs because it asks the
//! owners (targets' URL parser, the WAL settings) while they read the
//! config types: with the checks in config.rs the two imported each other.

use crate::config::BackupConfig;

impl BackupConfig {
    /// Problems a config file can have that serde cannot see: the key and
    /// the message.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, r) in self.recipients.iter().enumerate() {
            if r.parse::<age::x25519::Recipient>().is_err() {
                return Err((
                    format!("backup.recipients[{i}]"),
                    format!("{r:?} is not an age public key (age1…)"),
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            if !names.insert(t.name.as_str()) {
                return Err((
                    format!("backup.target[{i}].name"),
                    format!("two targets are named {:?}", t.name),
                ));
            }
            if let Err(e) = crate::target::TargetUrl::parse(&t.url) {
                return Err((format!("backup.target[{i}].url"), e.to_string()));
            }
        }
        if let Some(s) = &self.schedule
            && let Err(e) = s.parse::<crate::Schedule>()
        {
            return Err(("backup.schedule".into(), e.to_string()));
        }
        crate::wal::validate(self)?;
        if let Some(s) = &self.drill {
            if let Err(e) = s.parse::<crate::Schedule>() {
                return Err(("backup.drill".into(), e.to_string()));
            }
            if self.drill_identity.is_none() {
                return Err((
                    "backup.drill".into(),
                    "a scheduled drill needs drill_identity (the age identity file it decrypts with)"
                        .into(),
                ));
            }
        }
        if self.drill_odoo_url.is_some()
            && (self.drill_login.is_none() || self.drill_password.is_none())
        {
            return Err((
                "backup.drill_odoo_url".into(),
                "the login check needs drill_login and drill_password".into(),
            ));
        }
        if !(1..=19).contains(&self.zstd_level) {
            return Err((
                "backup.zstd_level".into(),
                "must be between 1 and 19".into(),
            ));
        }
        Ok(())
    }
}
